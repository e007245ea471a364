"""Does a linear probe read "I have read about this person" from the hidden states?

Chapter 14.2 shows that the SFT model's surprise at a surname separates
held-out people (read about in pretraining only) from unknown people (names it
never saw) almost perfectly, while the refusal DPO learns, P(the reply starts
with "I"), does so with AUC 0.75-0.80 (issue 12). This script asks where the
bit "I know this person" lives: it fits a logistic-regression probe (L2,
plain torch) to predict "unknown person" from a hidden state of each question

* at the last prompt token, ``<|assistant|>``, where the reply begins, and
* at the last token of the person's surname inside the question,

for every layer: the embedding (a control: at ``<|assistant|>`` it is the same
vector for every question), the residual stream after each block, and the
final norm's output (what the LM head reads). Models: ``tinyworld-sft``,
``tinyworld-dpo`` (the book's DPO recipe: the short refusal with RPO) and
``tinyworld-dpo-first`` (the first recipe); questions: chapter 12's
``sft_eval_heldout`` / ``sft_eval_unknown`` / ``sft_eval_seen`` splits.

Folds are by person, never by question, so a probe cannot memorise names:

* ``heldout``: 5-fold over held-out and unknown people together (each fold
  tests on 16 held-out and 8 unknown people it never trained on), repeated
  with ``--repeats`` shuffles;
* ``seen``: transfer, as DPO's data is built: trained on every seen (SFT)
  person against 4/5 of the unknown people, tested on every held-out person
  against the other 1/5.

Per test fold: the AUC of "unknown ranks above held-out", and, at the
threshold that refuses 95% of the fold's unknown-people questions (chosen on
the test fold itself: a point of the ROC curve, not a deployable threshold),
the share of held-out questions refused too. The same folds score two
things that need no training: the surname's in-question surprisal and
P("I" first), and a positive control for the probe ("match": the terms of
the surname's first logit, see ``minillm.probes.question_features``), which
shows that these few people suffice when the signal is a linear one. For
``tinyworld-sft`` also: other L2 weights, and 1/2 or 9/10 of the people in
training. The features, the probe, the AUC and the folds are
``minillm.probes``'s; chapter 14.2 recomputes one row live.

    OMP_NUM_THREADS=1 .venv/bin/python bench/probe_familiarity.py

Writes ``bench/results/familiarity_probe.json`` (under a minute on one core).
"""
from __future__ import annotations

import argparse
import json
import random
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from minillm import tinyworld, zoo  # noqa: E402
from minillm.probes import (cross_validate, auc, false_refusal,  # noqa: E402
                            group_folds, layer_names, question_features)

OUT = ROOT / "bench" / "results" / "familiarity_probe.json"
MODELS = ("tinyworld-sft", "tinyworld-dpo", "tinyworld-dpo-first")
SPLITS = ("heldout", "unknown", "seen")
REFUSE_UNKNOWN = 0.95  # chapter 14's target: refuse >= 95% of the unknown's questions


def folds(persons: dict, k: int, repeats: int, seed: int) -> dict:
    """{scheme: [(train, test), ...]}, k * repeats folds per scheme, each side
    a {split: boolean mask over that split's questions [N]}.

    persons: {split: [the person of each question]}. Both schemes share the
    unknown people's folds; "heldout" also folds the held-out people."""
    rng = random.Random(seed)
    everyone = {s: torch.ones(len(persons[s]), dtype=torch.bool) for s in SPLITS}
    out = {"heldout": [], "seen": []}
    for _ in range(repeats):
        held = group_folds(persons["heldout"], k, rng)
        unknown = group_folds(persons["unknown"], k, rng)
        for test_h, test_u in zip(held, unknown):
            out["heldout"].append(
                ({"heldout": ~test_h, "unknown": ~test_u, "seen": ~everyone["seen"]},
                 {"heldout": test_h, "unknown": test_u}))
            out["seen"].append(
                ({"heldout": ~everyone["heldout"], "unknown": ~test_u,
                  "seen": everyone["seen"]},
                 {"heldout": everyone["heldout"], "unknown": test_u}))
    return out


def stacked(scheme: list) -> list:
    """The scheme's folds as masks over all questions, splits in SPLITS order
    (a split a side leaves out counts as all False)."""
    def cat(side, split_sizes):
        return torch.cat([side.get(s, torch.zeros(n, dtype=torch.bool))
                          for s, n in split_sizes.items()])
    sizes = {s: len(scheme[0][0][s]) for s in SPLITS}
    return [(cat(train, sizes), cat(test, sizes)) for train, test in scheme]


def summarise(aucs: list[float], refusals: list[float]) -> dict:
    """Mean, min and max over the test folds (rounded for the JSON)."""
    t = torch.tensor(aucs)
    r = torch.tensor(refusals)
    return {"auc_mean": round(t.mean().item(), 4), "auc_min": round(t.min().item(), 4),
            "auc_max": round(t.max().item(), 4),
            "false_refusal_mean": round(r.mean().item(), 4),
            "false_refusal_max": round(r.max().item(), 4)}


def evaluate_scheme(feats: dict, scheme: list, l2: float, layers: dict,
                    baselines: bool = True) -> list[dict]:
    """Probe AUCs per position and layer ({position: [layer names]}), and the
    training-free scores, over the scheme's folds."""
    rows = []
    for position, names in layers.items():
        for layer_index, layer in enumerate(names):
            if layer is None:  # not asked for
                continue
            x = torch.cat([feats[s][position][layer_index] for s in SPLITS])
            y = torch.cat([torch.full((len(feats[s]["surprisal"]),),
                                      float(s == "unknown"), dtype=torch.double)
                           for s in SPLITS])  # 1 = a question about an unknown
            aucs, refusals = cross_validate(x, y, stacked(scheme), l2, REFUSE_UNKNOWN)
            rows.append({"score": "probe", "position": position, "layer": layer,
                         **summarise(aucs, refusals)})
    for name, position in (("surprisal", "name"), ("p_first_i", "reply")):
        if not baselines:  # only the probes
            continue
        pairs = [(feats["unknown"][name][test["unknown"]],
                  feats["heldout"][name][test["heldout"]]) for _, test in scheme]
        rows.append({"score": name, "position": position, "layer": None,
                     **summarise([auc(u, h) for u, h in pairs],
                                 [false_refusal(u, h, REFUSE_UNKNOWN)
                                  for u, h in pairs])})
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--folds", type=int, default=5, help="folds by person")
    parser.add_argument("--repeats", type=int, default=4, help="shuffles of the folds")
    parser.add_argument("--l2", type=float, default=1e-2, help="the probe's L2 weight")
    parser.add_argument("--seed", type=int, default=0, help="the folds' shuffle seed")
    args = parser.parse_args()
    torch.set_num_threads(1)
    start = time.time()
    records = {s: tinyworld.load(f"sft_eval_{s}") for s in SPLITS}
    persons = {s: [r["person"] for r in records[s]] for s in SPLITS}
    counts = {s: {"questions": len(records[s]), "people": len(set(persons[s]))}
              for s in SPLITS}
    schemes = folds(persons, args.folds, args.repeats, args.seed)
    results, sensitivity, learning_curve = [], [], []
    for name in MODELS:
        model, tokenizer = zoo.load(name)
        stack = layer_names(model)
        layers = {"reply": stack, "name": stack, "match": ["final_norm x embedding"]}
        feats = {s: question_features(model, tokenizer, records[s]) for s in SPLITS}
        for scheme, scheme_folds in schemes.items():
            for row in evaluate_scheme(feats, scheme_folds, args.l2, layers):
                results.append({"model": name, "train": scheme, **row})
        if name == "tinyworld-sft":  # is the answer the L2 weight's?
            final_only = {"reply": [None] * (len(stack) - 1) + ["final_norm"]}
            for l2 in (1e-3, 1e-1, 1.0):
                for row in evaluate_scheme(feats, schemes["heldout"], l2, final_only,
                                           baselines=False):
                    sensitivity.append({"model": name, "train": "heldout", "l2": l2,
                                        **row})
            # Would more people help? Train on 1/2, 4/5 or 9/10 of them.
            probes = {"reply": final_only["reply"], "match": layers["match"]}
            for k in (2, 5, 10):
                more = folds(persons, k, args.folds * args.repeats // k, args.seed)
                for scheme, scheme_folds in more.items():
                    for row in evaluate_scheme(feats, scheme_folds, args.l2, probes,
                                               baselines=False):
                        learning_curve.append({"model": name, "train": scheme,
                                               "folds": k, **row})
        print(f"{name}: {time.time() - start:.0f} s", flush=True)
    report = {
        "command": "OMP_NUM_THREADS=1 .venv/bin/python bench/probe_familiarity.py",
        "counts": counts,
        "probe": {"folds": args.folds, "repeats": args.repeats, "l2": args.l2,
                  "seed": args.seed, "test_folds": args.folds * args.repeats,
                  "refuse_unknown": REFUSE_UNKNOWN},
        "seconds": round(time.time() - start),
        "results": results,
        "l2_sensitivity": sensitivity,
        "learning_curve": learning_curve,
    }
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text(json.dumps(report, indent=1) + "\n")
    for row in results:
        if row["layer"] != "embed" and not str(row["layer"]).startswith("block"):
            print(json.dumps(row))


if __name__ == "__main__":
    main()

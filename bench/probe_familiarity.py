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
the surname's first logit, see ``features``), which shows that these few
people suffice when the signal is a linear one. For ``tinyworld-sft`` also:
other L2 weights, and 1/2 or 9/10 of the people in training.

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
from minillm.chat import encode_chat  # noqa: E402
from minillm.generate import left_pad  # noqa: E402

OUT = ROOT / "bench" / "results" / "familiarity_probe.json"
MODELS = ("tinyworld-sft", "tinyworld-dpo", "tinyworld-dpo-first")
SPLITS = ("heldout", "unknown", "seen")
REFUSE_UNKNOWN = 0.95  # chapter 14's target: refuse >= 95% of the unknown's questions


def surname_end(ids: list[int], person: str, tokenizer) -> tuple[int, int]:
    """(first, last) index of the person's surname tokens in a prompt."""
    surname = tokenizer.encode(" " + person.split(" ", 1)[1])
    at = next(i for i in range(len(ids)) if ids[i:i + len(surname)] == surname)
    return at, at + len(surname) - 1


@torch.no_grad()
def features(model, tokenizer, records, batch_size: int = 128) -> dict:
    """Hidden states and the two training-free scores, per question.

    Returns {"reply": [L, N, d], "name": [L, N, d], "match": [1, N, d],
    "surprisal": [N], "p_first_i": [N]}, L = n_layers + 2 (the embedding, each
    block's output, the final norm's output), N questions, d = d_model.
    "match" is the final norm's output just before the surname times the
    surname's first token's output embedding, elementwise: its sum is the
    logit of that token, so a linear probe can read the surprise from it.
    Prompts are left-padded with positions that start at 0 on each row's
    first real token, as ``bench_dpo.first_token_refusal`` and generation do.
    """
    first_i = tokenizer.encode(tinyworld.IDK)[0]
    pad = tokenizer.special_tokens["<|pad|>"]
    captured = []  # one [B, T, d] tensor per layer, in forward order
    modules = [model.embed, *model.blocks, model.norm]
    hooks = [m.register_forward_hook(lambda m, i, out: captured.append(out))
             for m in modules]
    out = {"reply": [], "name": [], "match": [], "surprisal": [], "p_first_i": []}
    try:
        for start in range(0, len(records), batch_size):
            chunk = records[start:start + batch_size]
            prompts = [encode_chat(r["messages"][:-1], tokenizer,
                                   add_generation_prompt=True)[0] for r in chunk]
            ids, mask = left_pad(prompts, pad)
            positions = (mask.cumsum(-1) - 1).clamp(min=0)
            captured.clear()
            logits = model(ids, attention_mask=mask, position_ids=positions)
            logp = logits.log_softmax(-1)  # [B, T, V]
            states = torch.stack(captured)  # [L, B, T, d]
            rows = torch.arange(len(chunk))
            shift = [ids.shape[1] - len(p) for p in prompts]  # left padding
            spans = [surname_end(p, r["person"], tokenizer)
                     for p, r in zip(prompts, chunk)]
            name_at = torch.tensor([s + last for s, (_, last) in zip(shift, spans)])
            out["reply"].append(states[:, :, -1])
            out["name"].append(states[:, rows, name_at])
            # The positive control: the final state before the surname times the
            # surname's first token embedding; summed, it is that token's logit.
            before = torch.tensor([s + first - 1
                                   for s, (first, _) in zip(shift, spans)])
            out["match"].append((states[-1, rows, before]
                                 * model.lm_head.weight[ids[rows, before + 1]])[None])
            out["p_first_i"].append(logp[:, -1, first_i].exp())
            for b, (s, (first, last)) in enumerate(zip(shift, spans)):
                at = torch.arange(s + first, s + last + 1)  # surname tokens, padded
                targets = ids[b, at]
                out["surprisal"].append(-logp[b, at - 1, targets].sum())
    finally:
        for hook in hooks:
            hook.remove()
    return {**{k: torch.cat(out[k], 1).double() for k in ("reply", "name", "match")},
            "surprisal": torch.stack(out["surprisal"]).double(),
            "p_first_i": torch.cat(out["p_first_i"]).double()}


def fit_probe(x: torch.Tensor, y: torch.Tensor, l2: float, steps: int = 30):
    """Logistic regression on standardised features, classes weighted equally.

    x [N, d], y [N] (1 = unknown person). Minimises the class-balanced mean
    cross-entropy + l2/2 * |w|^2 (the bias is not penalised) by Newton's
    method: with d = 128 the Hessian is small, and a few steps converge.
    Returns score(x) -> logits [N]."""
    mean, std = x.mean(0), x.std(0).clamp(min=1e-8)
    z = torch.cat([(x - mean) / std, torch.ones(len(x), 1, dtype=x.dtype)], 1)
    weight = torch.where(y == 1, 0.5 / y.mean(), 0.5 / (1 - y.mean())) / len(y)
    penalty = torch.full((z.shape[1],), l2, dtype=x.dtype)
    penalty[-1] = 0.0
    w = torch.zeros(z.shape[1], dtype=x.dtype)  # [d + 1], the bias last
    for _ in range(steps):
        p = torch.sigmoid(z @ w)
        grad = z.T @ (weight * (p - y)) + penalty * w
        hessian = (z.T * (weight * p * (1 - p))) @ z + torch.diag(penalty)
        step = torch.linalg.solve(hessian, grad)
        w = w - step
        if step.abs().max() < 1e-8:
            break
    return lambda x_new: ((x_new - mean) / std) @ w[:-1] + w[-1]


def auc(unknown: torch.Tensor, known: torch.Tensor) -> float:
    """P(an unknown question scores above a known one), ties counted half."""
    above = (unknown[:, None] > known[None, :]).double().mean()
    tied = (unknown[:, None] == known[None, :]).double().mean()
    return (above + 0.5 * tied).item()


def false_refusal(unknown: torch.Tensor, known: torch.Tensor) -> float:
    """Share of known questions refused at the highest threshold that still
    refuses >= 95% of the unknown ones (refuse when score >= threshold)."""
    threshold = unknown.sort().values[int((1 - REFUSE_UNKNOWN) * len(unknown))]
    return (known >= threshold).double().mean().item()


def person_folds(people: list[str], k: int, rng: random.Random) -> list[set[str]]:
    """The people, shuffled, in k groups of (nearly) equal size."""
    people = sorted(set(people))
    rng.shuffle(people)
    return [set(people[i::k]) for i in range(k)]


def folds(persons: dict, k: int, repeats: int, seed: int) -> dict:
    """{scheme: [(train, test), ...]}, k * repeats folds per scheme, each side
    a {split: boolean mask over that split's questions [N]}.

    persons: {split: [the person of each question]}. Both schemes share the
    unknown people's folds; "heldout" also folds the held-out people."""
    rng = random.Random(seed)

    def asked_about(split, people):  # [N]: is the question about one of them?
        return torch.tensor([p in people for p in persons[split]])

    everyone = {s: torch.ones(len(persons[s]), dtype=torch.bool) for s in SPLITS}
    out = {"heldout": [], "seen": []}
    for _ in range(repeats):
        held = person_folds(persons["heldout"], k, rng)
        unknown = person_folds(persons["unknown"], k, rng)
        for i in range(k):
            test_h = asked_about("heldout", held[i])
            test_u = asked_about("unknown", unknown[i])
            out["heldout"].append(
                ({"heldout": ~test_h, "unknown": ~test_u, "seen": ~everyone["seen"]},
                 {"heldout": test_h, "unknown": test_u}))
            out["seen"].append(
                ({"heldout": ~everyone["heldout"], "unknown": ~test_u,
                  "seen": everyone["seen"]},
                 {"heldout": everyone["heldout"], "unknown": test_u}))
    return out


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
            aucs, refusals = [], []
            state = {s: feats[s][position][layer_index] for s in SPLITS}  # [N, d]
            for train, test in scheme:
                x = torch.cat([state[s][train[s]] for s in SPLITS])
                y = torch.cat([torch.full((int(train[s].sum()),), float(s == "unknown"),
                                          dtype=torch.double) for s in SPLITS])
                score = fit_probe(x, y, l2)
                u = score(state["unknown"][test["unknown"]])
                h = score(state["heldout"][test["heldout"]])
                aucs.append(auc(u, h))
                refusals.append(false_refusal(u, h))
            rows.append({"score": "probe", "position": position, "layer": layer,
                         **summarise(aucs, refusals)})
    for name, position in (("surprisal", "name"), ("p_first_i", "reply")):
        if not baselines:  # only the probes
            continue
        pairs = [(feats["unknown"][name][test["unknown"]],
                  feats["heldout"][name][test["heldout"]]) for _, test in scheme]
        rows.append({"score": name, "position": position, "layer": None,
                     **summarise([auc(u, h) for u, h in pairs],
                                 [false_refusal(u, h) for u, h in pairs])})
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
        n_layers = len(model.blocks)
        stack = ["embed", *(f"block{i + 1}" for i in range(n_layers)), "final_norm"]
        layers = {"reply": stack, "name": stack, "match": ["final_norm x embedding"]}
        feats = {s: features(model, tokenizer, records[s]) for s in SPLITS}
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

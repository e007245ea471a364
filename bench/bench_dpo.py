"""DPO on TinyWorld: every run chapter 14, notebook 2 plots (not a timed test).

Each run starts from the ``tinyworld-sft`` model, trains DPO (``minillm.dpo``:
the shared Trainer with ``DPOLoss`` as its loss_fn, the SFT model's
reference log-probs precomputed once) and then measures, greedily:

* refusal rate on unknown people (``sft_eval_unknown``),
* false refusals and QA accuracy on known people (``sft_eval_heldout``:
  people only read about in pretraining; ``sft_eval_seen``: SFT people, new
  phrasings),
* every ``--track`` steps, the summed log-probs of chosen and rejected
  replies on a fixed sample of ``dpo_eval`` pairs, by kind (unknown person;
  known person, wrong value; known person, needless refusal).

    OMP_NUM_THREADS=1 python bench/bench_dpo.py --group sft_then_dpo   # 3 seeds
    OMP_NUM_THREADS=1 python bench/bench_dpo.py --group beta lr average plain
    OMP_NUM_THREADS=1 python bench/bench_dpo.py --group rpo short_refusal  # the repairs
    OMP_NUM_THREADS=1 python bench/bench_dpo.py --list

Results go to ``chapters/14_preference_optimization/bench_dpo.jsonl``, one
line per run (a rerun replaces the line of the same name); experiments the
notebook does not read (``--group names`` / ``names_dev`` / ``names_heldout_half`` /
``self_knowledge``: unknown-people pairs about 480 invented names, and the SFT dev
people or half of the held-out people answering, or the known-people pairs rebuilt
from the SFT model's own right and wrong answers) go to ``bench/results/dpo_experiments.jsonl``. One run took
3.4-9 minutes of training on one thread of a busy 2-core machine (all ten
runs, with evaluation, about 80 minutes).
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from minillm import dpo, tinyworld, zoo  # noqa: E402
from minillm.evals import accuracy_by, answer_questions, refusal_rate  # noqa: E402
from minillm.checkpoint import save_model  # noqa: E402
from minillm.train import TrainConfig  # noqa: E402

OUT = ROOT / "chapters" / "14_preference_optimization" / "bench_dpo.jsonl"
EXPERIMENTS = ROOT / "bench" / "results" / "dpo_experiments.jsonl"
CACHE = ROOT / ".cache" / "bench_dpo"
KINDS = ("unknown", "known_wrong", "known_refusal")
N_TRACK = 32  # tracked dpo_eval pairs per kind

# Plain DPO from the SFT model (the textbook recipe), and variations of it.
PLAIN = dict(beta=0.1, loss_type="sigmoid", label_smoothing=0.0, average=False, sft_weight=0.0,
             sft_steps=0, sft_lr=3e-4, steps=120, batch_size=32, lr=1e-4, min_lr=1e-5,
             warmup_steps=10)
# First SFT on the chosen replies (with the SFT data replayed), then DPO from there.
SFT_THEN_DPO = dict(PLAIN, sft_steps=150, steps=60)


def variant(name: str, base: dict = PLAIN, **change) -> dict:
    return {"name": name, **base, "seed": 0, **change}


GROUPS = {
    "plain": [variant(f"plain-seed{s}", seed=s) for s in (0, 1, 2)],
    "beta": [variant(f"plain-beta{b:g}", beta=b) for b in (0.01, 1.0)],
    "lr": [variant("plain-lr0.001", lr=1e-3, min_lr=1e-4)],
    "average": [variant("plain-average", average=True)],
    "sft_then_dpo": [variant(f"sft-dpo-seed{s}", SFT_THEN_DPO, seed=s) for s in (0, 1, 2)],
    # The recipe with the unknown-people pairs about 480 invented names (2 questions
    # each, 960 pairs) instead of the release's 40 names x 24 questions.
    "names": [variant("sft-dpo-names480x2", SFT_THEN_DPO, unknown_names=480, per_name=2)],
    # ... and the 16 SFT dev people (read about in pretraining, never asked about in
    # SFT) on the answering side: every "wide" phrasing, true answer over a refusal.
    "names_dev": [variant("sft-dpo-names480x2-dev", SFT_THEN_DPO, unknown_names=480, per_name=2,
                          dev_known=True)],
    # ... and instead half of the held-out people (40, read about in pretraining, never
    # asked about in SFT) on the answering side; the other 40 stay untouched, and the
    # evaluation reports the two halves apart: does "known from biographies only ->
    # answer" carry over to people never asked about anywhere?
    "names_heldout_half": [variant("sft-dpo-names480x2-heldout40", SFT_THEN_DPO,
                                   unknown_names=480, per_name=2, heldout_known=40)],
    # Two repairs of the recipe, each on 3 seeds: DPO with the chosen replies' NLL
    # added (weight 1, RPO; it keeps the chosen reply likely while the margin grows),
    # and that with every refusal in the training pairs shortened to "I don't know."
    # (the release's refusals end with the person's name, as every answer begins with it).
    "rpo": [variant(f"sft-dpo-rpo-seed{s}", SFT_THEN_DPO, seed=s, sft_weight=1.0) for s in (0, 1, 2)],
    "short_refusal": [variant(f"sft-dpo-short-rpo-seed{s}", SFT_THEN_DPO, seed=s, sft_weight=1.0,
                              short_refusal=True) for s in (0, 1, 2)],
    # Refusal data from the model's own knowledge (R-Tuning, Zhang et al. 2023): each
    # known-people question of dpo_train is put to the SFT model; where its greedy answer
    # is right, the true answer beats a refusal; where it is wrong, a refusal beats the
    # model's own wrong answer. "Was asked about in training" then no longer separates
    # the two sides: only what the model knows does.
    # ... and with half of the held-out people among the questions (the model gets more
    # of theirs wrong), the other half evaluated apart.
    "self_knowledge": [variant("sft-dpo-names480x2-self", SFT_THEN_DPO, unknown_names=480,
                               per_name=2, self_knowledge=True),
                       variant("sft-dpo-names480x2-self-heldout40", SFT_THEN_DPO,
                               unknown_names=480, per_name=2, self_knowledge=True,
                               heldout_known=40)],
}


def self_knowledge_pairs(records: list[dict], model, tokenizer) -> list[dict]:
    """The known-people pairs of ``records`` rebuilt from ``model``'s own greedy
    answers: right -> (true answer > refusal), wrong -> (refusal > its answer)."""
    from minillm.tinyworld import tasks
    from minillm.tinyworld.world import generate_world

    facts = {p.name: p for p in generate_world().people}
    known = [r for r in records if r["kind"] != "unknown"]
    questions = [{"messages": r["prompt"] + [{"role": "assistant", "content": ""}],
                  "answer": facts[r["person"]].fact(r["attribute"])} for r in known]
    rows = answer_questions(model, tokenizer, questions)
    out = []
    for r, row in zip(known, rows):
        person = facts[r["person"]]
        right = tasks.canonical_sentence(person, r["attribute"])
        if row["correct"]:
            out.append({**r, "chosen": right, "rejected": tasks.refusal(person.name),
                        "kind": "known_refusal"})
        elif row["reply"].strip() and not row["refused"]:  # a wrong answer to prefer less
            out.append({**r, "chosen": tasks.refusal(person.name), "rejected": row["reply"],
                        "kind": "self_unknown"})
    return [r for r in records if r["kind"] == "unknown"] + out


def heldout_trained(spec: dict) -> set[str]:
    """The held-out people a spec puts on the answering side (the first
    ``heldout_known`` by name), or none."""
    people = sorted({r["person"] for r in tinyworld.load("sft_eval_heldout")})
    return set(people[:spec.get("heldout_known", 0)])


def training_records(spec: dict) -> list[dict]:
    """The release's dpo_train pairs, or (``unknown_names``) its known-people
    pairs plus unknown-people pairs about that many invented names."""
    records = dpo.load_pairs("dpo_train")
    if not spec.get("unknown_names"):
        return records
    import random

    from bench_refusal_pretrain import invented_unknowns
    from minillm.tinyworld import tasks
    from minillm.tinyworld.world import ATTRIBUTES, generate_world

    world, rng = generate_world(), random.Random(f"dpo-unknowns/{spec['unknown_names']}")
    unknown = [tasks.dpo_pair(world, p, a, rng.choice(tasks.QUESTION_TEMPLATES["train"][a]), rng)
               for p in invented_unknowns(spec["unknown_names"])
               for a in rng.sample(ATTRIBUTES, spec["per_name"])]
    records = [r for r in records if r["kind"] != "unknown"] + unknown
    if spec.get("dev_known") or spec.get("heldout_known"):
        known = heldout_trained(spec) if spec.get("heldout_known") else {
            r["person"] for r in tinyworld.load("sft_dev")}
        people = [p for p in world.people if p.name in known]
        records += [dict(tasks.dpo_pair(world, p, a, t, rng), chosen=tasks.canonical_sentence(p, a),
                         rejected=tasks.refusal(p.name), kind="known_refusal")
                    for p in people for a in ATTRIBUTES
                    for t in tasks.question_templates("wide")[a]]
    rng.shuffle(records)
    return records


def data(tokenizer) -> dict:
    """Encoded training pairs and the tracked dpo_eval sample (cached on disk)."""
    CACHE.mkdir(parents=True, exist_ok=True)
    path = CACHE / "pairs.pt"
    if path.exists():
        return torch.load(path)
    records = dpo.load_pairs("dpo_eval")
    track = [r for k in KINDS for r in [r for r in records if r["kind"] == k][:N_TRACK]]
    out = {"train": dpo.encode_pairs(dpo.load_pairs("dpo_train"), tokenizer),
           "track": dpo.encode_pairs(track, tokenizer), "track_kinds": [r["kind"] for r in track]}
    torch.save(out, path)
    return out


class Track:
    """Callback: tracked pairs' mean chosen/rejected log-probs by kind (every
    ``every`` steps of each phase), and the QA evaluation when the SFT phase ends."""

    def __init__(self, pairs: dict, kinds: list[str], every: int, tokenizer):
        self.pairs, self.kinds, self.every, self.rows = pairs, kinds, every, []
        self.tokenizer, self.after_sft = tokenizer, None

    def after_step(self, trainer, record) -> None:
        step, phase = record["step"], record.get("phase", "dpo")
        if phase == "sft" and step == trainer.config.steps:
            self.after_sft = evaluate(trainer.model, self.tokenizer)
            trainer.model.train()
        if step % self.every and step != trainer.config.steps:
            return
        self.measure(trainer.model, step, phase)
        trainer.model.train()

    def measure(self, model, step: int, phase: str = "dpo") -> None:
        scores = dpo.evaluate_pairs(model, self.pairs)
        row = {"step": step, "phase": phase}
        for kind in KINDS:
            pick = torch.tensor([k == kind for k in self.kinds])
            for key in ("chosen", "rejected"):
                row[f"{kind}_{key}"] = scores[key][pick].mean().item()
        self.rows.append(row)


def first_token_refusal(model, tokenizer, records) -> torch.Tensor:
    """P(the reply starts with "I", the refusal's first token) per question:
    greedy refuses exactly when this wins the first step (no name starts with "I")."""
    from minillm.chat import encode_chat
    from minillm.generate import left_pad

    first = tokenizer.encode(tinyworld.IDK)[0]
    prompts = [encode_chat(r["messages"][:-1], tokenizer, add_generation_prompt=True)[0]
               for r in records]
    out = []
    with torch.no_grad():
        for i in range(0, len(prompts), 128):
            ids, mask = left_pad(prompts[i:i + 128], tokenizer.special_tokens["<|pad|>"])
            positions = (mask.cumsum(-1) - 1).clamp(min=0)
            logits = model(ids, attention_mask=mask, position_ids=positions)[:, -1]
            out.append(logits.softmax(-1)[:, first])
    return torch.cat(out)


def evaluate(model, tokenizer, trained: set[str] = frozenset(),
             sft_correct: dict | None = None) -> dict:
    """Refusals and accuracy on chapter 12's splits; with ``trained`` (held-out
    people a run answered about in training), the held-out split also apart:
    ``heldout_trained_*`` and ``heldout_untouched_*``; with ``sft_correct``
    ({question id: the SFT model answered it right}), ``heldout_sft_right_*``
    and ``heldout_sft_wrong_*``."""
    out, examples, p_first = {}, {}, {}
    for split in ("sft_eval_unknown", "sft_eval_heldout", "sft_eval_seen"):
        records = tinyworld.load(split)
        rows = answer_questions(model, tokenizer, records)
        short = split.removeprefix("sft_eval_")
        out[f"{short}_refusal"] = refusal_rate(rows)
        out[f"{short}_accuracy"] = accuracy_by(rows)
        if short == "heldout":  # the held-out split in halves, where a run asks for them
            halves = []
            if sft_correct:  # where the SFT model was right / wrong
                halves.append((("sft_right", "sft_wrong"), lambda r: sft_correct[r["id"]]))
            if trained:
                halves.append((("trained", "untouched"), lambda r: r["person"] in trained))
            for names, inside in halves:
                for part, keep in zip(names, (True, False)):
                    mine = [r for r in rows if inside(r) == keep]
                    out[f"heldout_{part}_refusal"] = refusal_rate(mine)
                    out[f"heldout_{part}_accuracy"] = accuracy_by(mine)
        examples[short] = [r["reply"] for r in rows[:3]]
        p_first[short] = first_token_refusal(model, tokenizer, records)
        out[f"{short}_p_refuse"] = p_first[short].mean().item()
    u, h = p_first["unknown"], p_first["heldout"]
    out["auc_unknown_vs_heldout"] = (u[:, None] > h[None, :]).float().mean().item()
    out["examples"] = examples
    return out


def run(spec: dict, track_every: int = 10) -> dict:
    model, tokenizer = zoo.load("tinyworld-sft")
    pairs = data(tokenizer)
    records = training_records(spec)
    sft_heldout = None
    if spec.get("self_knowledge"):
        records = self_knowledge_pairs(records, model, tokenizer)
        kinds = [r["kind"] for r in records]
        print({k: kinds.count(k) for k in sorted(set(kinds))}, flush=True)
        sft_heldout = {r["id"]: r["correct"] for r in answer_questions(
            model, tokenizer, tinyworld.load("sft_eval_heldout"))}
    if spec.get("short_refusal"):  # last, so that it covers every pair built above
        records = dpo.shorten_refusals(records)
    if spec.get("unknown_names") or spec.get("short_refusal"):
        pairs = {**pairs, "train": dpo.encode_pairs(records, tokenizer)}
    torch.manual_seed(spec["seed"])
    config = TrainConfig(steps=spec["steps"], batch_size=spec["batch_size"], lr=spec["lr"],
                         min_lr=spec["min_lr"], warmup_steps=spec["warmup_steps"],
                         weight_decay=0.0, grad_clip=1.0, precision="fp32", eval_every=0,
                         seed=spec["seed"])
    options = {k: spec[k] for k in ("beta", "loss_type", "label_smoothing", "average",
                                     "sft_weight", "sft_steps", "sft_lr")}
    if spec["sft_steps"]:
        options["sft_blocks"] = dpo.chosen_sft_blocks(
            records, tokenizer, tinyworld.load(dpo.SFT_REPLAY), seed=spec["seed"])
    track = Track(pairs["track"], pairs["track_kinds"], track_every, tokenizer)
    track.measure(model, 0, "sft" if spec["sft_steps"] else "dpo")
    model.train()
    start = time.time()
    history, _ = dpo.train_dpo(model, pairs["train"], config, callbacks=[track], **options)
    seconds = time.time() - start
    model.eval()
    (CACHE / "models").mkdir(parents=True, exist_ok=True)
    save_model(model, CACHE / "models" / f"{spec['name']}.safetensors")
    keep = ("step", "phase", "loss", "dpo_loss", "sft_loss", "reward_margin",
            "reward_accuracy", "chosen_logp", "rejected_logp")
    return {**spec, "train_seconds": round(seconds, 1),
            **evaluate(model, tokenizer, heldout_trained(spec), sft_heldout),
            "after_sft": track.after_sft, "track": track.rows,
            "history": [{k: v for k, v in r.items() if k in keep} for r in history]}


def save(result: dict) -> None:
    # Experiments the notebook does not read go to bench/results, not next to it.
    out = EXPERIMENTS if result.get("unknown_names") else OUT
    rows = [json.loads(line) for line in out.read_text().splitlines()] if out.exists() else []
    rows = [r for r in rows if r["name"] != result["name"]] + [result]
    out.write_text("".join(json.dumps(r) + "\n" for r in rows))


def sft_baseline() -> dict:
    model, tokenizer = zoo.load("tinyworld-sft")
    return {"name": "sft", **evaluate(model, tokenizer)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--group", nargs="*", default=[], choices=sorted(GROUPS))
    parser.add_argument("--only", nargs="*", default=[], help="run names to run")
    parser.add_argument("--list", action="store_true")
    parser.add_argument("--baseline", action="store_true", help="measure the SFT model")
    parser.add_argument("--set", nargs="*", default=[], help="key=value overrides (experiments)")
    args = parser.parse_args()
    torch.set_num_threads(1)
    specs = [s for g in args.group for s in GROUPS[g]]
    specs += [s for g in GROUPS.values() for s in g if s["name"] in args.only]
    if args.list:
        for g, members in GROUPS.items():
            print(g, [s["name"] for s in members])
        return
    if args.baseline:
        result = sft_baseline()
        save(result)
        print(json.dumps(result), flush=True)
    for spec in specs:
        for item in args.set:
            key, value = item.split("=")
            spec[key] = type(spec[key])(value) if key in spec else float(value)
            spec["name"] = f"{spec['name']}-{key}{value}"
        result = run(spec)
        save(result)
        print(json.dumps({k: v for k, v in result.items() if k not in ("track", "history")}),
              flush=True)


if __name__ == "__main__":
    main()

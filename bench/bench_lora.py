"""Full fine-tuning vs LoRA vs QLoRA with chapter 12's SFT recipe and splits (chapter 13).

    .venv/bin/python bench/bench_lora.py                  # every group, appends results
    .venv/bin/python bench/bench_lora.py --only rank lr   # some groups
    .venv/bin/python bench/bench_lora.py --summary        # the tables from the results

Every run is chapter 12's supervised fine-tuning, done by chapter 12's own
code: ``minillm.sft.train_sft`` with the ``tinyworld-sft`` recipe's settings
(``sft_train_wide`` packed into 128-token blocks, loss on the assistant's
tokens only, 16 blocks per AdamW step, warmup then cosine to lr/10, clipping
at 1, the weights of the best greedy accuracy on ``sft_dev`` kept, step 0
competing) with the learning rate, steps, dev-check interval and seed of the
run spec: 150 steps checked every 25 (the recipe's length) in ``main`` and
``long``, 60 steps checked at the start and the end (chapter 12's short SFT of
the base model) in the other groups. The parent is a zoo model (``parent``;
default ``tinyworld-base``, pretrained on biographies only, so the chat questions
must teach it to *extract* what it stored; the mixed ``tinyworld-pretrain``
answers 73% of held-out questions before any SFT, leaving a method little to
show, which the ``pretrain`` group measures). LoRA freezes it and wraps the
target layers (``minillm.lora.inject_lora``); QLoRA first stores the block
matrices in NF4 with double quantization (``minillm.quant.quantize_model``).

Accuracy is chapter 12's: ``minillm.evals.answer_questions`` (greedy, exact
match) and ``accuracy_by`` on ``sft_eval_heldout`` (people read about in
pretraining, never asked about: knowledge extraction; every run), and in the
``main``, ``short``, ``long`` and ``pretrain`` groups also on ``sft_eval_seen``
without the dev people (as chapter 12 reports it) and, in ``main`` and
``short``, the refusal rate on ``sft_eval_unknown``. Each run records its
trainable parameters, the bytes of its stored weights, the bytes of AdamW's
state (read from the optimizer of a ``minillm.train.Trainer`` after a step)
and the median seconds of a training step (5 steps of that Trainer after a
warm-up one; the CPU was shared, so compare ratios, not absolute times).

Groups (``runs``): ``main`` (150 steps: full SFT at lr 3e-4, LoRA r=4 on all
linear layers (alpha 8, 3.7% of the parameters) at 1e-2 and QLoRA with the
same adapters at 1e-2, each method's best learning rate in ``long``; seeds 0,
1, 2), ``long`` (the 150-step learning-rate sweep: full, LoRA r=4 and r=8,
QLoRA at three or two rates, seeds 0, 1, 2; run on a GPU, its results are in
bench/results/lora_long_cuda.jsonl), ``short`` (the 60-step comparison: full
at 1e-3, LoRA and QLoRA r=4 at 1e-2, seeds 0, 1, 2), ``live`` (a 20-step
LoRA run the chapter recomputes), ``rank`` (r = 1..64 on all linear layers,
alpha = 2r), ``rank8`` (r = 8 on seeds 0, 1, 2), ``lr`` (learning rates for
LoRA and full), ``targets`` (q,v / attention / MLP / all linear at r = 8),
``pretrain`` (full vs LoRA from ``tinyworld-pretrain``),
``alpha`` (r = 64 with alpha fixed at 8, with and without rsLoRA). One JSON
line per run is appended to ``--out`` (default
chapters/13_lora_and_qlora/sft_runs.jsonl, read by the chapter's third
notebook); a run already there is skipped, so an interrupted bench resumes.
"""

from __future__ import annotations

import argparse
import copy
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from minillm import seed_everything, tinyworld, zoo  # noqa: E402
from minillm.evals import accuracy_by, answer_questions, refusal_rate  # noqa: E402
from minillm.lora import ALL_LINEAR, ATTENTION, MLP, count_trainable, inject_lora  # noqa: E402
from minillm.pipeline import TINYWORLD_SFT  # noqa: E402
from minillm.quant import quantize_model, stored_bytes  # noqa: E402
from minillm.sft import encode_examples, pack_examples, train_sft  # noqa: E402
from minillm.train import TrainConfig, Trainer  # noqa: E402

OUT = ROOT / "chapters/13_lora_and_qlora/sft_runs.jsonl"
TARGETS = {"qv": ("q_proj", "v_proj"), "attn": ATTENTION, "mlp": MLP, "all": ALL_LINEAR}
SEEDS = (0, 1, 2)
#: The settings every run starts from (a spec overrides some of them).
FULL = dict(method="full", lr=1e-3, r=0, alpha=0, rslora=False, targets="-",
            parent="tinyworld-base", steps=60, eval_every=60, seed=0)
LORA = dict(FULL, method="lora", lr=1e-2, r=4, alpha=8, targets="all")
#: Chapter 12's SFT length: 150 steps, the dev people checked every 25.
RECIPE_LENGTH = dict(steps=150, eval_every=25)


def runs(group: str) -> list[dict]:
    """The run specs of a group (dicts with FULL's keys)."""
    lora = dict(LORA)
    if group == "main":  # the recipe's 150 steps, each method at its best lr in `long`
        specs = [dict(FULL, lr=3e-4, **RECIPE_LENGTH), dict(lora, **RECIPE_LENGTH),
                 dict(lora, method="qlora", **RECIPE_LENGTH)]
        return [dict(spec, seed=s) for s in SEEDS for spec in specs]
    if group == "short":  # the 60-step comparison (dev checked at steps 0 and 60 only)
        specs = [FULL, lora, dict(lora, method="qlora")]
        return [dict(spec, seed=s) for s in SEEDS for spec in specs]
    if group == "lr":
        return [dict(lora, lr=lr) for lr in (1e-3, 3e-2)] + [
            dict(FULL, lr=lr) for lr in (3e-4, 3e-3)] + [dict(lora, lr=3e-3)]
    if group == "rank":  # alpha = 2r: the scale alpha/r stays 2
        return [dict(lora, r=r, alpha=2 * r) for r in (1, 2, 8, 16, 32, 64)]
    if group == "rank8":  # the rank sweep's best rank on two more seeds
        return [dict(lora, r=8, alpha=16, seed=s) for s in SEEDS]
    if group == "targets":  # r = 8 on each set
        return [dict(lora, r=8, alpha=16, targets=t) for t in ("qv", "attn", "mlp", "all")]
    if group == "alpha":  # r = 64, alpha fixed at 8: scale 8/64, or 8/sqrt(64) (rsLoRA)
        return [dict(lora, r=64, alpha=8), dict(lora, r=64, alpha=8, rslora=True)]
    if group == "long":  # the learning-rate sweep at the recipe's length
        return [dict(spec, seed=s, **RECIPE_LENGTH, lr=lr) for s in SEEDS for spec, lrs in (
            (FULL, (1e-4, 3e-4, 1e-3)), (lora, (1e-3, 3e-3, 1e-2)),
            (dict(lora, r=8, alpha=16), (1e-3, 3e-3, 1e-2)),
            (dict(lora, method="qlora"), (3e-3, 1e-2))) for lr in lrs]
    if group == "live":  # short enough for the notebook to recompute
        return [dict(lora, steps=20)]
    if group == "pretrain":
        return [dict(spec, parent="tinyworld-pretrain", lr=lr)
                for spec, lr in ((FULL, 3e-4), (lora, 3e-3))]
    raise ValueError(f"unknown group {group!r}; choose from {GROUPS}")


GROUPS = ("main", "short", "live", "rank", "lr", "targets", "pretrain", "alpha",
          "rank8", "long")


def key(spec: dict) -> str:
    """The identity of a run: every setting of its spec."""
    return json.dumps({k: spec[k] for k in FULL}, sort_keys=True)


def build(parent: torch.nn.Module, spec: dict, device: str = "cpu") -> torch.nn.Module:
    """A copy of ``parent`` ready to fine-tune as ``spec`` says (seeds the adapters' A)."""
    model = copy.deepcopy(parent).to(device)
    seed_everything(spec["seed"])
    if spec["method"] == "qlora":
        quantize_model(model, double_quant=True)
    if spec["method"] in ("lora", "qlora"):
        inject_lora(model, TARGETS[spec["targets"]], r=spec["r"], alpha=spec["alpha"],
                    rslora=spec["rslora"])
    return model


def train_config(spec: dict) -> TrainConfig:
    """The ``tinyworld-sft`` recipe's settings with the spec's lr, steps and seed."""
    return TrainConfig(**{**TINYWORLD_SFT.train, "lr": spec["lr"], "min_lr": spec["lr"] / 10,
                          "steps": spec["steps"], "warmup_steps": spec["steps"] // 10,
                          "seed": spec["seed"]})


def step_cost(model: torch.nn.Module, blocks, config: TrainConfig, steps: int = 5):
    """(median seconds per training step, bytes of AdamW's state) of ``model`` on a
    minillm Trainer: one warm-up step, then ``steps`` timed ones (on a copy)."""
    trainer = Trainer(copy.deepcopy(model), config, blocks, progress=False)
    trainer.train_step()
    times = []
    for _ in range(steps):
        start = time.perf_counter()
        trainer.train_step()
        times.append(time.perf_counter() - start)
    state = sum(t.numel() * t.element_size() for s in trainer.optimizer.state.values()
                for t in s.values() if torch.is_tensor(t))
    return statistics.median(times), state


def eval_splits() -> dict[str, list[dict]]:
    """Chapter 12's three splits; "seen" without the dev people (never trained on)."""
    dev_people = {r["person"] for r in tinyworld.load("sft_dev")}
    return {"heldout": tinyworld.load("sft_eval_heldout"),
            "seen": [r for r in tinyworld.load("sft_eval_seen")
                     if r["person"] not in dev_people],
            "unknown": tinyworld.load("sft_eval_unknown")}


def evaluate(model, tokenizer, splits) -> dict[str, float]:
    """Accuracy on each of ``splits`` (a fraction); on "unknown" the refusal rate."""
    rows = {name: answer_questions(model, tokenizer, recs) for name, recs in splits.items()}
    return {("unknown_refusal" if name == "unknown" else name):
            (refusal_rate(r) if name == "unknown" else accuracy_by(r))
            for name, r in rows.items()}


#: The splits each group is measured on: held-out always; unknown people only in
#: ``main`` and ``short`` (no run here learns to refuse); ``live`` held-out only.
GROUP_SPLITS = {"main": ("heldout", "seen", "unknown"),
                "short": ("heldout", "seen", "unknown"),
                "pretrain": ("heldout", "seen"), "long": ("heldout", "seen")}


def run(spec: dict, parent, tokenizer, splits, time_steps: bool = True,
        device: str = "cpu") -> dict:
    """Fine-tune ``parent`` as ``spec`` says with chapter 12's ``train_sft``; its row."""
    model = build(parent, spec, device)
    config = train_config(spec)
    trainable, total = count_trainable(model)
    row = {"key": key(spec), **spec, "trainable": trainable, "total": total,
           "weight_bytes": stored_bytes(model)}
    if time_steps:
        blocks = pack_examples(encode_examples(tinyworld.load("sft_train_wide"), tokenizer),
                               128, tokenizer.special_tokens["<|pad|>"])
        row["step_seconds"], row["optimizer_state_bytes"] = step_cost(model, blocks, config)
    start = time.perf_counter()
    seed_everything(spec["seed"])
    with tempfile.TemporaryDirectory() as work:
        history, facts = train_sft(model, tokenizer, tinyworld.load("sft_train_wide"),
                                   tinyworld.load("sft_dev"), config, work=work,
                                   eval_every=spec["eval_every"])
    row["train_seconds"] = time.perf_counter() - start
    row.update(facts)
    row["final_loss"] = statistics.mean(r["loss"] for r in history[-10:])
    row.update(evaluate(model, tokenizer, splits))
    return row


def load_rows(path: Path = OUT) -> list[dict]:
    """The stored runs, one dict per JSON line."""
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def summary(path: Path) -> None:
    """One line per configuration: held-out accuracy (mean, min, max over seeds, %)
    and the configuration's costs."""
    import pandas as pd

    df = pd.DataFrame(load_rows(path))
    df["heldout"] *= 100
    settings = ["parent", "method", "targets", "r", "alpha", "rslora", "lr", "steps"]
    table = df.groupby(settings).agg(
        seeds=("seed", "count"), heldout=("heldout", "mean"),
        heldout_min=("heldout", "min"), heldout_max=("heldout", "max"),
        trainable=("trainable", "first"), state_bytes=("optimizer_state_bytes", "first"),
        step_s=("step_seconds", "median"))
    with pd.option_context("display.width", 200, "display.max_columns", 20):
        print(table.round(2).to_string())


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--only", nargs="*", default=list(GROUPS), choices=GROUPS)
    parser.add_argument("--seeds", type=int, nargs="*", default=None, help="only these seeds")
    parser.add_argument("--methods", nargs="*", default=None, help="only these methods")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--out", type=Path, default=OUT)
    parser.add_argument("--summary", action="store_true")
    parser.add_argument("--device", default="cpu",
                        help="cpu (the book's numbers) or cuda (sweeps; not bit-identical)")
    args = parser.parse_args(argv)
    if args.summary:
        summary(args.out)
        return 0
    torch.set_num_threads(args.threads)
    done = {row["key"] for row in load_rows(args.out)}
    specs = [(group, s) for group in args.only for s in runs(group)
             if (args.seeds is None or s["seed"] in args.seeds)
             and (args.methods is None or s["method"] in args.methods)]
    splits, parents = eval_splits(), {}
    for group, spec in specs:
        if key(spec) in done:
            continue
        done.add(key(spec))
        if spec["parent"] not in parents:
            parents[spec["parent"]] = zoo.load(spec["parent"])
        parent, tokenizer = parents[spec["parent"]]
        names = GROUP_SPLITS.get(group, ("heldout",))
        row = run(spec, parent, tokenizer, {n: splits[n] for n in names},
                  time_steps=group != "live", device=args.device)
        row["device"] = args.device
        with open(args.out, "a") as f:
            f.write(json.dumps(row) + "\n")
        print({k: (round(v, 4) if isinstance(v, float) else v) for k, v in row.items()
               if k != "key"}, flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

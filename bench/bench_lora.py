"""Full fine-tuning vs LoRA vs QLoRA on TinyWorld question answering (chapter 13).

    .venv/bin/python bench/bench_lora.py              # every run below, appends results
    .venv/bin/python bench/bench_lora.py --only main  # one group of runs
    .venv/bin/python bench/bench_lora.py --summary    # the tables from the results

Each run fine-tunes the zoo's ``tinyworld-base`` on ``sft_train`` (chat
examples, loss on the assistant's tokens only) for ``--steps`` AdamW steps of
``--batch-size`` examples (warmup, then cosine to 0; clipping at 1), then
answers the questions of ``sft_eval_seen`` (people and facts trained on, new
wording), ``sft_eval_heldout`` (people whose biographies were pretrained but
who were never asked about in SFT: knowledge extraction) and
``sft_eval_unknown`` (people the model never saw; the right answer is "I
don't know") by greedy decoding; an answer counts as correct if it contains
the gold answer. It records the trainable parameters, the bytes of the
stored weights and of AdamW's state, and the median time per step.

Groups: ``main`` (full SFT, LoRA all-linear r=8, QLoRA all-linear r=8 with an
NF4 + double-quantized frozen base; 3 seeds each), ``lr`` (LoRA at other
learning rates, and full SFT at LoRA's), ``rank`` (r = 1..64, alpha = 2r),
``targets`` (q,v / attention / all linear). Results are appended, one JSON
line per run, to ``--out`` (default: chapters/13_lora_and_qlora/sft_runs.jsonl,
which the chapter's third notebook reads); a run already in the file is
skipped, so an interrupted bench resumes.

The training loop is a plain one (not ``minillm.train.Trainer``) so that the
optimizer sees exactly the trainable parameters and its state can be
measured directly.
"""

from __future__ import annotations

import argparse
import copy
import hashlib
import json
import math
import random
import statistics
import sys
import time
from collections import defaultdict
from pathlib import Path

import torch
import torch.nn.functional as F

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from minillm import tinyworld, zoo  # noqa: E402
from minillm.checkpoint import load_model  # noqa: E402
from minillm.chat import encode_chat, reply_text  # noqa: E402
from minillm.generate import greedy  # noqa: E402
from minillm.lora import (
    ALL_LINEAR,
    ATTENTION,
    count_trainable,
    inject_lora,
)  # noqa: E402
from minillm.quant import Linear4bit, quantize_model  # noqa: E402
from minillm.tokenizer import load_book_tokenizer  # noqa: E402

IGNORE = -100
SPLITS = ("sft_eval_seen", "sft_eval_heldout", "sft_eval_unknown")
TARGETS = {"all": ALL_LINEAR, "attn": ATTENTION, "qv": ("q_proj", "v_proj")}


def runs(group: str) -> list[dict]:
    """The run specs of a group: method, lr, rank, targets, seed."""
    full = dict(method="full", lr=1e-3, r=0, targets="-")
    lora = dict(method="lora", lr=1e-2, r=8, targets="all")
    qlora = dict(lora, method="qlora")
    if group == "main":
        return [dict(spec, seed=s) for s in (0, 1, 2) for spec in (full, lora, qlora)]
    if group == "lr":
        return [dict(lora, lr=lr, seed=0) for lr in (1e-3, 3e-3, 3e-2)] + [
            dict(full, lr=lr, seed=0) for lr in (3e-4, 3e-3)
        ]
    if group == "rank":
        return [dict(lora, r=r, seed=0) for r in (1, 2, 4, 16, 32, 64)]
    if group == "targets":
        return [dict(lora, targets=t, seed=0) for t in ("qv", "attn")]
    raise ValueError(f"unknown group {group!r}; choose main, lr, rank or targets")


def key(spec: dict, args) -> str:
    return json.dumps(
        {
            **{k: spec[k] for k in ("method", "lr", "r", "targets", "seed")},
            "steps": args.steps,
            "batch_size": args.batch_size,
        },
        sort_keys=True,
    )


def batch_of(examples: list[tuple[list[int], list[bool]]], pad_id: int):
    """Right-padded (input_ids, labels) [B, T]; labels -100 off the assistant's tokens.
    Causal attention never lets a real token see the padding after it: no mask needed.
    """
    T = max(len(ids) for ids, _ in examples)
    x = torch.full((len(examples), T), pad_id)
    y = torch.full((len(examples), T), IGNORE)
    for row, (ids, mask) in enumerate(examples):
        t = torch.tensor(ids)
        x[row, : len(ids)] = t
        y[row, : len(ids)] = t.masked_fill(~torch.tensor(mask), IGNORE)
    return x, y


def weights_sha(model) -> str:
    """12 hex digits of a hash of the model's weights: which base a result came from."""
    h = hashlib.sha256()
    for name, tensor in sorted(model.state_dict().items()):
        h.update(name.encode() + tensor.detach().contiguous().numpy().tobytes())
    return h.hexdigest()[:12]


def build(base, spec: dict):
    model = copy.deepcopy(base)
    torch.manual_seed(spec["seed"])  # the adapters' A
    if spec["method"] == "qlora":
        quantize_model(model, double_quant=True)
    if spec["method"] in ("lora", "qlora"):
        inject_lora(model, TARGETS[spec["targets"]], r=spec["r"], alpha=2 * spec["r"])
    return model


def weight_bytes(model) -> int:
    """Stored weight bytes: parameters (a tied tensor once) + 4-bit layers' buffers."""
    params = sum(p.numel() * p.element_size() for p in model.parameters())
    return params + sum(
        m.nbytes() for m in model.modules() if isinstance(m, Linear4bit)
    )


def finetune(model, examples, pad_id, spec, args) -> dict:
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=spec["lr"], betas=(0.9, 0.95), weight_decay=0.0)
    rng = random.Random(spec["seed"])
    order, losses, times = [], [], []
    model.train()
    warmup = max(1, args.steps // 10)
    for step in range(args.steps):
        if len(order) < args.batch_size:
            order += rng.sample(range(len(examples)), len(examples))  # epoch by epoch
        idx, order = order[: args.batch_size], order[args.batch_size :]
        lr = spec["lr"] * (
            (step + 1) / warmup
            if step < warmup
            else 0.5 * (1 + math.cos(math.pi * (step - warmup) / (args.steps - warmup)))
        )
        for group in opt.param_groups:
            group["lr"] = lr
        x, y = batch_of([examples[i] for i in idx], pad_id)
        start = time.perf_counter()
        logits = model(x)
        loss = F.cross_entropy(
            logits[:, :-1].flatten(0, 1), y[:, 1:].flatten(), ignore_index=IGNORE
        )
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        opt.zero_grad(set_to_none=True)
        times.append(time.perf_counter() - start)
        losses.append(loss.item())
    model.eval()
    state_bytes = sum(
        t.numel() * t.element_size()
        for s in opt.state.values()
        for t in s.values()
        if torch.is_tensor(t) and t.dim() > 0
    )
    return {
        "final_loss": statistics.mean(losses[-10:]),
        "ms_per_step": 1e3 * statistics.median(times),
        "optimizer_state_bytes": state_bytes,
    }


@torch.no_grad()
def qa_accuracy(model, tokenizer, split: str, limit: int | None = None) -> float:
    """Greedy replies to a split's questions; correct if one holds the gold answer."""
    records = tinyworld.load(split)[:limit]
    by_length = defaultdict(list)
    for record in records:
        ids, _ = encode_chat(
            record["messages"][:-1], tokenizer, add_generation_prompt=True
        )
        by_length[len(ids)].append((record, ids))
    correct = 0
    for group in by_length.values():
        out = greedy(model, torch.tensor([ids for _, ids in group]), 16)
        for (record, _), new in zip(group, out.tolist()):
            correct += record["answer"].lower() in reply_text(new, tokenizer).lower()
    return correct / len(records)


def run(base, tokenizer, examples, spec, args) -> dict:
    model = build(base, spec)
    trainable, total = count_trainable(model)
    result = {
        "key": key(spec, args),
        **spec,
        "steps": args.steps,
        "batch_size": args.batch_size,
        "trainable": trainable,
        "total": total,
        "weight_bytes": weight_bytes(model),
    }
    result.update(
        finetune(model, examples, tokenizer.special_tokens["<|pad|>"], spec, args)
    )
    for split in SPLITS:
        result[split.removeprefix("sft_eval_")] = qa_accuracy(
            model, tokenizer, split, args.eval_limit
        )
    return result


def summary(path: Path) -> None:
    import pandas as pd

    rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    df = pd.DataFrame(rows)
    cols = [
        "seen",
        "heldout",
        "unknown",
        "final_loss",
        "ms_per_step",
        "trainable",
        "optimizer_state_bytes",
        "weight_bytes",
    ]
    print(
        df.groupby(["method", "targets", "r", "lr"])[cols]
        .agg(["mean", "count"])
        .to_string()
    )


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--only", nargs="*", default=["main", "lr", "rank", "targets"])
    parser.add_argument("--steps", type=int, default=150)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument(
        "--eval-limit", type=int, default=None, help="questions per split (default all)"
    )
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument(
        "--seeds", type=int, nargs="*", default=None, help="only these seeds"
    )
    parser.add_argument(
        "--methods",
        nargs="*",
        default=None,
        help="only these methods (full, lora, qlora)",
    )
    parser.add_argument(
        "--out", type=Path, default=ROOT / "chapters/13_lora_and_qlora/sft_runs.jsonl"
    )
    parser.add_argument(
        "--base",
        type=Path,
        default=None,
        help="a model.safetensors to fine-tune instead of zoo.load('tinyworld-base')",
    )
    parser.add_argument("--summary", action="store_true")
    args = parser.parse_args(argv)
    if args.summary:
        summary(args.out)
        return 0
    torch.set_num_threads(args.threads)
    base, tokenizer = (
        zoo.load("tinyworld-base")
        if args.base is None
        else (load_model(args.base).eval(), load_book_tokenizer())
    )
    base_sha = weights_sha(base)
    examples = [
        encode_chat(r["messages"], tokenizer) for r in tinyworld.load("sft_train")
    ]
    done = set()
    if args.out.exists():
        done = {
            json.loads(line)["key"]
            for line in args.out.read_text().splitlines()
            if line.strip()
        }
    specs = [s for group in args.only for s in runs(group)]
    if args.seeds is not None:
        specs = [s for s in specs if s["seed"] in args.seeds]
    if args.methods is not None:
        specs = [s for s in specs if s["method"] in args.methods]
    for spec in specs:
        if key(spec, args) in done:
            continue
        start = time.time()
        result = run(base, tokenizer, examples, spec, args)
        result["wall_seconds"] = round(time.time() - start, 1)
        result["base_sha"] = base_sha
        with open(args.out, "a") as f:
            f.write(json.dumps(result) + "\n")
        print(
            {
                k: result[k]
                for k in (
                    "method",
                    "targets",
                    "r",
                    "lr",
                    "seed",
                    "seen",
                    "heldout",
                    "unknown",
                    "final_loss",
                    "ms_per_step",
                    "wall_seconds",
                )
            },
            flush=True,
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

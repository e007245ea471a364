"""A peak-learning-rate sweep of the base model's recipe, on three seeds.

    OMP_NUM_THREADS=1 .venv/bin/python bench/bench_lr_sweep.py   # ~10 CPU-minutes

Trains the ``tinyworld-base`` model (4 layers, d_model 128, 1.05M parameters)
from scratch with ``minillm.sweeps.short_pretrain`` for every peak learning
rate in ``--lrs`` and every seed in ``--seeds``: ``--steps`` optimizer steps of
``--batch-size`` blocks of 128 tokens, warmup of ``--warmup`` steps, cosine
down to a tenth of the peak, the recipe's AdamW and clipping otherwise. Each
run records its held-out loss on ``pretrain_val`` at the end and its CPU time.
Results go to ``bench/results/lr_sweep.json`` (rewritten after every run, so
an interrupted sweep keeps what it finished); chapter 7.1 reads that file,
plots it and recomputes one run live.
"""
from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from minillm import sweeps, zoo  # noqa: E402
from minillm.tokenizer import load_book_tokenizer  # noqa: E402

OUT = Path(__file__).resolve().parent / "results" / "lr_sweep.json"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lrs", type=float, nargs="+", default=[3e-4, 1e-3, 3e-3, 1e-2, 3e-2])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--steps", type=int, default=200)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--warmup", type=int, default=10)
    parser.add_argument("--out", type=Path, default=OUT)
    args = parser.parse_args()

    recipe, tokenizer = zoo.TINYWORLD_BASE, load_book_tokenizer()
    result = {
        "recipe": recipe.name,
        "setup": {"steps": args.steps, "batch_size": args.batch_size,
                  "warmup_steps": args.warmup, "min_lr_ratio": 0.1,
                  "block_size": recipe.block_size, "threads": 1},
        "lrs": args.lrs, "seeds": args.seeds,
        "machine": {"torch": torch.__version__, "python": platform.python_version(),
                    "processor": platform.machine()},
        "runs": [],
    }
    for lr in args.lrs:
        for seed in args.seeds:
            cpu = time.process_time()
            run = sweeps.short_pretrain(recipe, lr=lr, seed=seed, steps=args.steps,
                                        batch_size=args.batch_size,
                                        warmup_steps=args.warmup, tokenizer=tokenizer)
            run.update(lr=lr, seed=seed, cpu_seconds=round(time.process_time() - cpu, 1))
            result["runs"].append(run)
            args.out.write_text(json.dumps(result, indent=1) + "\n")
            print(f"lr {lr:.0e} seed {seed}: held-out {run['val_loss']:.4f} "
                  f"(train {run['train_loss']:.4f}, {run['cpu_seconds']:.0f} CPU s)",
                  flush=True)

    print(f"\n{'lr':>8} " + " ".join(f"seed {s:>2}" for s in args.seeds) + "    mean")
    for lr in args.lrs:
        losses = [r["val_loss"] for r in result["runs"] if r["lr"] == lr]
        print(f"{lr:>8.0e} " + " ".join(f"{v:>7.4f}" for v in losses)
              + f" {sum(losses) / len(losses):>7.4f}")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()

"""GRPO on LoRA adapters instead of every weight: does it take a larger learning rate?

Chapter 15's full fine-tune gains only at lr <= 1e-5 and collapses at 1e-4
(``bench_grpo.py``). Schulman and Thinking Machines (*LoRA Without Regret*,
2025) report that LoRA, even of low rank, matches full fine-tuning in RL, at a
learning rate about 10 times higher. This script trains the same GRPO loop
(``minillm.grpo.train_grpo``, the book's ``GRPO_OPTIONS``) on LoRA adapters of
every linear layer of the cold-start model (``tinyworld-reasoning-sft``),
merges them at each of ``--evals`` step counts and scores the merged model
greedily on ``reasoning_test`` (as chapter 15 does).

    OMP_NUM_THREADS=1 .venv/bin/python bench/grpo_lora.py --lr 1e-4 --seeds 0 1 2

One thread per process (as the pipeline's stage). Results are appended to
``bench/results/grpo_lora_cpu.jsonl``, one line per (lr, rank, seed, steps).
"""
from __future__ import annotations

import argparse
import copy
import json
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import torch  # noqa: E402

from bench_grpo import window  # noqa: E402  (this folder is on sys.path)
from minillm import grpo, tinyworld  # noqa: E402
from minillm.checkpoint import load_model  # noqa: E402
from minillm.lora import count_trainable, inject_lora, merge_lora  # noqa: E402
from minillm.pipeline import GRPO_OPTIONS, REASONING_SFT, build  # noqa: E402
from minillm.tokenizer import load_book_tokenizer  # noqa: E402

OUT = ROOT / "bench" / "results" / "grpo_lora_cpu.jsonl"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--lr", type=float, required=True)
    parser.add_argument("--rank", type=int, default=8)
    parser.add_argument("--alpha", type=float, default=None, help="default: 2 x rank")
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument("--evals", nargs="+", type=int, default=[50, 100, 150])
    parser.add_argument("--out", type=Path, default=OUT)
    args = parser.parse_args(argv)
    alpha = args.alpha if args.alpha is not None else 2.0 * args.rank

    torch.set_num_threads(1)
    tokenizer = load_book_tokenizer()
    train, test = tinyworld.load("reasoning_train"), tinyworld.load("reasoning_test")
    cold_folder = build(REASONING_SFT.name, verbose=False)
    cold = load_model(cold_folder / "model.safetensors").eval()
    before = grpo.summarize(grpo.evaluate(cold, tokenizer, test))
    print(f"cold start: greedy accuracy {before['accuracy']:.3f}", flush=True)
    for seed in args.seeds:
        model = inject_lora(copy.deepcopy(cold), targets="all-linear", r=args.rank,
                            alpha=alpha)
        trainable, total = count_trainable(model)
        with tempfile.TemporaryDirectory() as tmp:
            for steps in sorted(args.evals):
                # The run resumes from its own checkpoint: evaluating at 50 and
                # 100 steps is the run of 100 steps (the learning rate is constant).
                config = grpo.GRPOConfig(**{**GRPO_OPTIONS, "lr": args.lr, "seed": seed,
                                            "steps": steps})
                state = Path(tmp) / "state.safetensors"
                history = grpo.train_grpo(model, tokenizer, train, config,
                                          checkpoint_path=state)
                merged = merge_lora(copy.deepcopy(model)).eval()
                after = grpo.summarize(grpo.evaluate(merged, tokenizer, test))
                row = {"lr": args.lr, "rank": args.rank, "alpha": alpha, "seed": seed,
                       "steps": steps, "trainable": trainable, "parameters": total,
                       "cold_greedy": before, "grpo_greedy": after,
                       "gain": round(100 * (after["accuracy"] - before["accuracy"]), 2),
                       "sample_accuracy_first10": window(history, "accuracy", False),
                       "sample_accuracy_last10": window(history, "accuracy", True),
                       "seconds": round(sum(r["seconds"] for r in history), 1),
                       "date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
                with open(args.out, "a") as f:
                    f.write(json.dumps(row) + "\n")
                print(f"lr {args.lr:g} rank {args.rank} seed {seed} step {steps}: "
                      f"greedy {after['accuracy']:.3f} (gain {row['gain']:+.1f}), "
                      f"{row['seconds']:.0f} s of GRPO", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())

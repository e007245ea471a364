"""Training throughput: one process vs two ranks under DDP, side by side.

    .venv/bin/python bench/bench_distributed.py            # CPU: gloo; a GPU box: nccl

Times AdamW training steps on the same global batch (16 sequences of 64 tokens
by default) of two model sizes: one process with 1 thread, one process with
2 threads (all the cores a 2-core laptop has), and 2 ranks with 1 thread
each under DistributedDataParallel. Every configuration runs in fresh
processes started by ``minillm.distributed.launch``, which time ``--repeats``
rounds of ``--steps`` steps after a warm-up; the table shows the median
tokens/s (all ranks start and stop the clock together at a barrier).
With CUDA, each rank gets its own GPU (if there are two).
"""
from __future__ import annotations

import argparse
import statistics

import torch

from minillm.ddp import MODEL, throughput
from minillm.distributed import launch

SIZES = {
    "chapter model (d=64, 2 layers)": {**MODEL, "vocab_size": 2048},
    "tiny preset (d=128, 4 layers)": dict(vocab_size=2048, d_model=128, n_layers=4, n_heads=4,
                                           n_kv_heads=2, d_ff=384, max_seq_len=256),
}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=30)
    ap.add_argument("--batch-size", type=int, default=16)
    ap.add_argument("--seq-len", type=int, default=64)
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()
    gpus = torch.cuda.device_count()
    setups = {"1 process, 1 thread": (1, 1), "1 process, 2 threads": (1, 2),
              "2 ranks (DDP), 1 thread each": (2, 1)}
    if gpus:
        setups = {"1 process, 1 GPU": (1, 1)}
        if gpus >= 2:
            setups["2 ranks (DDP, nccl), 1 GPU each"] = (2, 1)
    print(f"device: {'cuda x %d' % gpus if gpus else 'cpu'}; global batch {args.batch_size} x "
          f"{args.seq_len} tokens, {args.steps} timed steps, median of {args.repeats}\n")
    print(f"| model | {' | '.join(setups)} | 2 ranks vs best 1 process |")
    print(f"|---|{'---:|' * len(setups)}---:|")
    for name, config in SIZES.items():
        med = {}
        for setup, (world, threads) in setups.items():
            # One launch per setup (starting processes costs more than the timing);
            # the repeats run inside it. Every rank stops the clock at a barrier.
            ranks = launch(throughput, world, config, steps=args.steps, batch_size=args.batch_size,
                           seq_len=args.seq_len, repeats=args.repeats, threads=threads, timeout=900)
            med[setup] = statistics.median(ranks[0]["tokens_per_s"])
        single = max(v for s, v in med.items() if s.startswith("1 process"))
        multi = [v for s, v in med.items() if s.startswith("2 ranks")]
        ratio = f"{multi[0] / single:.2f}x" if multi else "n/a"
        print(f"| {name} | {' | '.join(f'{v:,.0f} tok/s' for v in med.values())} | {ratio} |")


if __name__ == "__main__":
    main()

"""Chapter 10's training runs in five precisions, on three seeds.

    OMP_NUM_THREADS=1 .venv/bin/python bench/bench_precision.py    # ~10 min on 1 core

``minillm.precision.precision_experiment``: a 2-block transformer learns
TinyWorld's biographies byte by byte (``PRECISION_EXPERIMENT``) for 150 AdamW
steps, from the same initialisation and the same batches, in each of
``TRAINING_MODES``, for seeds 0, 1, 2. Then fp16 autocast with a fixed loss
scale S < 1 (every gradient S times smaller, as in a model whose gradients are
tiny) on the same seeds, and one bf16 autocast run at the smallest S (bf16 has
fp32's range, so it must equal the S = 1 run bit for bit).

16-bit matrix products are emulated on CPUs without bf16/fp16 instructions
(slower than fp32, not faster), which is why chapter 10.1 runs seed 0 live
and reads the other seeds from ``bench/results/precision_runs.json``; it
asserts that its live runs agree with the stored ones. Everything runs on one
thread, so the results are reproducible bit for bit on the same machine
(``seconds`` is wall-clock time, on a machine shared with other jobs).
"""
from __future__ import annotations

import json
import math
import time
from pathlib import Path

import torch

from minillm.precision import PRECISION_EXPERIMENT, TRAINING_MODES, precision_experiment

OUT = Path(__file__).resolve().parent / "results" / "precision_runs.json"
SEEDS = (0, 1, 2)
SHRINK = (2.0 ** -8, 2.0 ** -12, 2.0 ** -16, 2.0 ** -20)  # fixed loss scales S < 1 for fp16


def main() -> None:
    torch.set_num_threads(1)
    results = {"config": PRECISION_EXPERIMENT, "torch": torch.__version__, "runs": []}
    jobs = [(mode, seed, 1.0) for seed in SEEDS for mode in TRAINING_MODES]
    jobs += [("fp16 autocast", seed, s) for s in SHRINK for seed in SEEDS]
    jobs += [("bf16 autocast", 0, SHRINK[-1])]
    for mode, seed, scale in jobs:
        start = time.perf_counter()
        run = precision_experiment(mode, seed, loss_scale=scale)
        seconds = time.perf_counter() - start
        results["runs"].append({"mode": mode, "seed": seed, "loss_scale": scale,
                                "seconds": seconds, "val_loss": run["val_loss"],
                                "records": run["records"]})
        print(f"{mode:18s} seed {seed} S=2^{math.log2(scale):+.0f}: held-out loss "
              f"{run['val_loss']:.4f}, {seconds:.1f} s", flush=True)
        OUT.parent.mkdir(parents=True, exist_ok=True)
        OUT.write_text(json.dumps(results))
    by_key = {(r["mode"], r["seed"], r["loss_scale"]): r["records"] for r in results["runs"]}
    plain = [r["loss"] for r in by_key[("bf16 autocast", 0, 1.0)]]
    shrunk = [r["loss"] for r in by_key[("bf16 autocast", 0, SHRINK[-1])]]
    print("bf16 autocast at S = 2^-20 equals S = 1 bit for bit:", plain == shrunk)


if __name__ == "__main__":
    main()

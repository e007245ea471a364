"""Run many bench jobs at once on a GPU machine (for sweeps; the book's numbers are CPU runs).

    python bench/device_sweep.py OUT_DIR SECONDS

The GRPO sweep of ``bench/results/grpo_sweep_cuda.jsonl`` (H200, 2026-11-30) is
``jobs()`` as it stands; the LoRA sweep of ``lora_long_cuda.jsonl`` was the same
runner with ``bench_lora.py --device cuda --only long --seeds S --methods M``
jobs (seeds 0-2 x full/lora/qlora).

Each job is one bench command line (``jobs()``); ``WORKERS`` run at a time, each
with one CPU thread, all on ``cuda``; results go to OUT_DIR/grpo.jsonl and
OUT_DIR/lora.jsonl, logs to OUT_DIR/log.txt. Jobs still running after
SECONDS are killed (what they wrote so far stays).
"""
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
WORKERS = 12


def jobs(out: Path) -> list[list[str]]:
    grpo = [sys.executable, "bench/bench_grpo.py", "--device", "cuda", "--out", str(out / "grpo.jsonl")]
    lora = [sys.executable, "bench/bench_lora.py", "--device", "cuda", "--out", str(out / "lora.jsonl"),
            "--only", "long"]
    evals = ["--evals", "25", "50", "100", "200"]
    variants = [("lr3e-5", ["lr=3e-5"]), ("lr1e-5", ["lr=1e-5"]), ("lr3e-6", ["lr=3e-6"]),
                ("lr1e-6", ["lr=1e-6"]), ("lr1e-4", ["lr=1e-4"]),
                ("lr1e-4-beta0.04", ["lr=1e-4", "beta=0.04"]),
                ("lr1e-4-t0.7", ["lr=1e-4", "temperature=0.7"]),
                ("lr3e-5-t0.7", ["lr=3e-5", "temperature=0.7"]),
                ("lr1e-4-p32", ["lr=1e-4", "prompts_per_step=32"]),
                ("lr3e-5-p32", ["lr=3e-5", "prompts_per_step=32"]),
                ("lr1e-4-grpo", ["lr=1e-4", "loss_type=grpo"]),
                ("lr1e-4-noscale", ["lr=1e-4", "scale_rewards=false"]),
                ("lr3e-4-beta0.1", ["lr=3e-4", "beta=0.1"]),
                ("lr1e-5-p32-g16", ["lr=1e-5", "prompts_per_step=32", "group_size=16"])]
    out_jobs = [grpo + ["--name", name, "--seeds", "0", "--set", *sets] + evals for name, sets in variants]
    out_jobs += [grpo + ["--name", "cold100-lr3e-5", "--cold-steps", "100", "--seeds", "0",
                         "--set", "lr=3e-5"] + evals]
    # after the first cold100 job has built that cold start (two would race to build it)
    out_jobs += [grpo + ["--name", "cold100-lr1e-4", "--cold-steps", "100", "--seeds", "0",
                         "--set", "lr=1e-4"] + evals]
    out_jobs += [grpo + ["--name", name, "--seeds", "1", "2", "--set", *sets] + evals
                 for name, sets in variants[:5]]
    return out_jobs


def main() -> int:
    out, seconds = Path(sys.argv[1]), float(sys.argv[2])
    out.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}
    queue, running, start = jobs(out), [], time.time()
    log = open(out / "log.txt", "w")
    while (queue or running) and time.time() - start < seconds:
        running = [p for p in running if p.poll() is None]
        while queue and len(running) < WORKERS:
            cmd = queue.pop(0)
            log.write(f"{time.time() - start:6.0f}s start {' '.join(cmd[1:])}\n")
            log.flush()
            running.append(subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=log, stderr=log))
        time.sleep(2)
    for p in running:
        p.kill()
    log.write(f"{time.time() - start:6.0f}s done; {len(queue)} jobs never started, "
              f"{len(running)} killed\n")
    log.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Dense vs mixture of experts on fresh TinyWorld text, several seeds (chapter 9.2).

    OMP_NUM_THREADS=1 .venv/bin/python bench/bench_moe.py            # ~20-40 min, 1 core
    OMP_NUM_THREADS=1 .venv/bin/python bench/bench_moe.py --part balancing   # ~5 min
    .venv/bin/python bench/bench_moe.py --summary                    # the tables

Every model of ``minillm.moe_study.study_configs`` (dense with the MoE's
active MLP width, dense with its total width, two balanced MoE layouts and an
unbalanced MoE) trains with ``minillm.moe_study.train`` on
``fresh_biographies`` (new paraphrases of TinyWorld's people, every block
seen once) for ``--steps`` steps on each seed; the held-out loss on
``pretrain_val`` is logged every ``--eval-every`` steps. For the MoE models
the bench also measures, on the held-out blocks, the share of assignments
dropped at capacity factors 0.5 to 2 (``capacity_drops``). One record per
run goes into ``--out`` (default bench/results/moe.json, read by the
notebook), written after every run; a run already there is skipped, so an
interrupted bench resumes. The notebook re-runs one record live and checks
that it matches.

``--part balancing`` runs chapter 9.1's three routers (no balancing, Switch's
aux loss, the aux-loss-free bias; 2 layers, d = 64, 8 experts of width 64,
top-2, 150 steps on ``pretrain`` in 64-token blocks) on each seed and writes
their held-out loss and load imbalance to bench/results/moe_balancing.json;
chapter 9.1 runs seed 0 live and checks it against the stored record.
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from minillm import tinyworld  # noqa: E402
from minillm.config import ModelConfig, MoEConfig, active_parameters, count_parameters  # noqa: E402
from minillm.evals import dataset_loss  # noqa: E402
from minillm.moe import load_imbalance  # noqa: E402
from minillm.data import pack_texts  # noqa: E402
from minillm.moe_study import capacity_drops, fresh_biographies, study_configs, train  # noqa: E402
from minillm.tokenizer import load_book_tokenizer  # noqa: E402

FACTORS = [0.5, 0.75, 1.0, 1.25, 1.5, 2.0]


def summary(results: dict) -> str:
    rows = {}
    for run in results["runs"]:
        rows.setdefault(run["model"], []).append(run["val"][str(results["steps"])])
    lines = [f"{'model':<28} {'seeds':>5} {'mean':>7} {'sd':>6}  per seed"]
    for name, vals in rows.items():
        sd = statistics.stdev(vals) if len(vals) > 1 else 0.0
        lines.append(f"{name:<28} {len(vals):>5} {statistics.mean(vals):>7.4f} {sd:>6.4f}  "
                     + " ".join(f"{v:.4f}" for v in vals))
    return "\n".join(lines)


BALANCING = {"no balancing": None, "aux loss": "aux", "bias (aux-loss-free)": "bias"}


def balancing_config(vocab_size: int, router_balance: str | None) -> ModelConfig:
    """Chapter 9.1's MoE model: 2 layers, d = 64, 8 SwiGLU experts of width 64, top-2."""
    return ModelConfig(vocab_size=vocab_size, d_model=64, n_layers=2, n_heads=2, max_seq_len=64,
                       moe=MoEConfig(n_experts=8, experts_top_k=2, expert_d_ff=64,
                                     router_balance=router_balance))


def run_balancing(seeds: list[int], out: Path, steps: int = 150) -> None:
    tokenizer = load_book_tokenizer()
    blocks = pack_texts([r["text"] for r in tinyworld.load("pretrain")], tokenizer, 64,
                        shuffle_seed=0)
    val = pack_texts([r["text"] for r in tinyworld.load("pretrain_val")], tokenizer, 64)
    results = (json.loads(out.read_text()) if out.exists()
               else {"steps": steps, "lr": 3e-3, "batch_size": 16, "runs": []})
    done = {(r["router"], r["seed"]) for r in results["runs"]}
    for seed in seeds:
        for name, balance in BALANCING.items():
            if (name, seed) in done:
                continue
            config = balancing_config(tokenizer.vocab_size, balance)
            model, log = train(config, blocks, steps, lr=results["lr"], seed=seed,
                               batch_size=results["batch_size"], record_load=True)
            results["runs"].append({
                "router": name, "seed": seed, "val_loss": dataset_loss(model, *val),
                # max/mean load over the last 20 steps, per layer
                "imbalance_last_20": load_imbalance(log["load"][-20:].sum(0)).tolist(),
                # each step's imbalance, worse layer
                "imbalance_per_step": load_imbalance(log["load"]).max(-1).values.tolist()})
            out.parent.mkdir(parents=True, exist_ok=True)
            out.write_text(json.dumps(results, indent=1) + "\n")
            run = results["runs"][-1]
            print(f"{name:<22} seed {seed}: held-out {run['val_loss']:.4f}, imbalance "
                  f"{max(run['imbalance_last_20']):.2f}", flush=True)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--steps", type=int, default=600)
    ap.add_argument("--eval-every", type=int, default=100)
    ap.add_argument("--models", nargs="+", default=None, help="names from study_configs")
    ap.add_argument("--out", default=str(ROOT / "bench/results/moe.json"))
    ap.add_argument("--summary", action="store_true")
    ap.add_argument("--part", choices=["dense_vs_moe", "balancing"], default="dense_vs_moe")
    args = ap.parse_args(argv)
    out = Path(args.out)
    torch.set_num_threads(1)
    if args.part == "balancing":
        if args.out == ap.get_default("out"):
            out = ROOT / "bench/results/moe_balancing.json"
        run_balancing(args.seeds, out)
        return 0

    if out.exists():
        results = json.loads(out.read_text())
        if results["steps"] != args.steps:
            raise SystemExit(f"{out} holds {results['steps']}-step runs; use another --out")
    else:
        results = {"steps": args.steps, "lr": 3e-3, "batch_size": 16, "block_size": 64,
                   "per_person": 60, "factors": FACTORS, "runs": []}
    if args.summary:
        print(summary(results))
        return 0

    tokenizer = load_book_tokenizer()
    blocks = fresh_biographies(tokenizer, per_person=results["per_person"])
    val = pack_texts([r["text"] for r in tinyworld.load("pretrain_val")], tokenizer, 64)
    results["train_blocks"], results["val_blocks"] = len(blocks[0]), len(val[0])
    configs = study_configs(tokenizer.vocab_size)
    done = {(r["model"], r["seed"]) for r in results["runs"]}
    for seed in args.seeds:
        for name, config in configs.items():
            if (args.models and name not in args.models) or (name, seed) in done:
                continue
            start = time.perf_counter()
            model, log = train(config, blocks, args.steps, lr=results["lr"], seed=seed,
                               batch_size=results["batch_size"], val=val,
                               eval_every=args.eval_every)
            run = {"model": name, "seed": seed, "seconds": time.perf_counter() - start,
                   "total_params": count_parameters(config),
                   "active_params": active_parameters(config),
                   "val": {str(s): v for s, v in log["val"].items()},
                   "train_loss_every_10": [sum(log["train"][i:i + 10]) / 10
                                           for i in range(0, args.steps, 10)]}
            if config.moe is not None:
                run["capacity"] = {str(c): capacity_drops(model, val, c)
                                   for c in FACTORS + [None]}
            results["runs"].append(run)
            out.parent.mkdir(parents=True, exist_ok=True)
            out.write_text(json.dumps(results, indent=1) + "\n")
            print(f"{name:<28} seed {seed}: held-out {log['val'][args.steps]:.4f} "
                  f"({run['seconds']:.0f} s)", flush=True)
    print(summary(results))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

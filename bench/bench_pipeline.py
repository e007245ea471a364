"""The capstone's budget and its proof: train the assistant from scratch, time
every stage, and compare every report-card number with the book's shipped models.

    .venv/bin/python bench/bench_pipeline.py [--out DIR] [--keep]   # ~10-25 min on 2 cores

Runs ``python -m minillm.pipeline --out DIR`` in a subprocess (nothing reused
from the cache: every stage trains), measures the whole command's wall time,
then reads each stage's ``recipe.json`` (training seconds) and ``evals.json``
(the report card's metrics) and compares them with the shipped models of the
same recipes (``data/zoo/<name>-<key>/evals.json``). Prints one table and
writes it as JSON to ``bench/results/pipeline.json``.

Tolerances: the command trains on every core by default (``--threads``),
the shipped models were built on one thread; more threads may add sums up in
another order, round the weights differently and flip a few greedy answers,
and another CPU's float kernels may too. (On the 2-core machine that built
them, 2 threads gave the shipped weights bit for bit.) The bench reports the
largest difference and flags any beyond ``TOLERANCE`` (3 points of accuracy
or refusal, 0.05 of perplexity). The budget: the whole command in at most 10
minutes on 2 CPU cores.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from minillm import pipeline, report  # noqa: E402
from minillm.cache import ship  # noqa: E402

TOLERANCE = {**{m: 0.03 for m in report.METRICS}, "val_perplexity": 0.05}
BUDGET_SECONDS = 600


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default=None, help="run folder (default: a temporary one)")
    parser.add_argument("--keep", action="store_true", help="keep the run folder")
    parser.add_argument("--results", default=str(ROOT / "bench" / "results" / "pipeline.json"))
    parser.add_argument("--ship", action="store_true",
                        help="ship the stages that have no shipped model yet from this run (they "
                             "are then compared with themselves: the table says so)")
    args = parser.parse_args()
    out = Path(args.out or tempfile.mkdtemp(prefix="minillm-run-")) / "run"
    env = {**os.environ, "MINILLM_CACHE": str(out.parent / "cache")}  # an empty cache: train all
    load = os.getloadavg()[0]
    start = time.time()
    subprocess.run([sys.executable, "-m", "minillm.pipeline", "--out", str(out)], cwd=ROOT, env=env,
                   check=True)
    wall = time.time() - start
    rows = []
    for i, recipe in enumerate(pipeline.assistant_chain(), 1):
        folder = out / f"{i}-{recipe.stage}"
        mine = {**json.loads((folder / "evals.json").read_text()), **report.stage_costs(folder)}
        book = pipeline.book_numbers(recipe)
        shipped_here = book is None and args.ship
        if shipped_here:  # name the folder as the cache would, then ship it
            named = out.parent / "ship" / f"{recipe.name}-{recipe.key()}"
            shutil.copytree(folder, named)
            ship(named)
            book = pipeline.book_numbers(recipe)
        diff = {m: abs(mine[m] - book[m]) for m in report.METRICS} if book else {}
        rows.append({"stage": recipe.stage, "recipe": recipe.name, "key": recipe.key(), "run": mine,
                     "book": book, "difference": diff, "shipped_from_this_run": shipped_here,
                     "within_tolerance": all(diff[m] <= TOLERANCE[m] for m in diff) if book else None})
    result = {"wall_seconds": round(wall, 1), "budget_seconds": BUDGET_SECONDS,
              "load_average_at_start": load, "cpus": os.cpu_count(), "stages": rows}
    Path(args.results).parent.mkdir(parents=True, exist_ok=True)
    Path(args.results).write_text(json.dumps(result, indent=1) + "\n")
    print(f"\nwhole run: {wall:.0f} s (budget {BUDGET_SECONDS} s), load average at start {load:.1f}")
    print(f"| stage | train s | {' | '.join(report.TITLES[m] for m in report.METRICS)} | vs book |")
    print("|---|---:|" + "---:|" * len(report.METRICS) + "---|")
    for row in rows:
        cells = " | ".join(report.format_cell(m, row["run"][m]) for m in report.METRICS)
        verdict = ("no shipped model" if row["book"] is None else
                   "shipped from this run" if row["shipped_from_this_run"] else
                   f"max diff {max(row['difference'].values()):.3f}"
                   + ("" if row["within_tolerance"] else " OUTSIDE TOLERANCE"))
        print(f"| {row['stage']} | {row['run']['seconds']:.0f} | {cells} | {verdict} |")
    if not args.keep and args.out is None:
        shutil.rmtree(out.parent, ignore_errors=True)
    return 0 if all(r["within_tolerance"] is not False for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())

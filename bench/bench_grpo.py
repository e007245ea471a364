"""GRPO settings on TinyWorld's addition chains: which ones make RL pay (not a timed test).

Every run starts from the book's cold-start model (``tinyworld-reasoning-sft``,
or with ``--cold-steps N`` a cold start of N steps, built here with the
pipeline's ``run_cold_start``) and trains with the pipeline's own GRPO stage
(``minillm.grpo.run_grpo``, the loop the book ships) on a variant of the
book's ``GRPO_OPTIONS``. At each of ``--evals`` step counts the stage is
stopped, its model scored greedily on ``reasoning_test`` (``grpo.evaluate`` +
``summarize``, as chapter 15 does), and then resumed from its own checkpoint
(the stage is resumable, and the learning rate is constant, so a run
evaluated at 50 and 100 steps is the run of 100 steps).

The runs chapter 15, notebook 2 shows (about 100 minutes on 2 busy cores):

    B="OMP_NUM_THREADS=1 python bench/bench_grpo.py"
    $B --name lr1e-4 --set lr=1e-4 --evals 25 50 --seeds 0
    $B --name lr1e-4 --set lr=1e-4 --evals 25 --seeds 1 2
    $B --name t0.6-lr1e-4 --set lr=1e-4 temperature=0.6 --evals 25 --seeds 0
    $B --name cold150-lr3e-5 --cold-steps 150 --set lr=3e-5 --evals 25 50 --seeds 0
    $B --name p32-lr5e-5 --set lr=5e-5 prompts_per_step=32 --evals 8 16 --seeds 0
    $B --name t0.5-lr3e-5 --set lr=3e-5 temperature=0.5 --evals 20 40 70 100 --seeds 0
    $B --name t0.5-lr3e-5 --set lr=3e-5 temperature=0.5 --evals 40 100 --seeds 1 2
    $B --name lr1e-5 --set lr=1e-5 --evals 50 100 --seeds 0 1 2
    $B --name t0.7-lr1e-5 --set lr=1e-5 temperature=0.7 --evals 50 100 --seeds 0 1 2
    $B --name t0.5-lr1e-5 --set lr=1e-5 temperature=0.5 --evals 50 100 --seeds 0 1 2
    $B --name step1-lr1e-5 --set lr=1e-5 step_weight=1.0 --evals 50 100 --seeds 0 1 2

Results go to ``chapters/15_reasoning_with_rl/bench_grpo.jsonl``, one line per
(name, seed, step count): the settings, the cold start's and the GRPO model's
greedy format and accuracy (overall and by number of terms), the gain in
points, the stage's seconds so far and the sample curves' first and last 10
steps. One process at a time, with OMP_NUM_THREADS=1 (the stage runs on one
thread, as in the pipeline).
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from minillm import grpo, tinyworld  # noqa: E402
from minillm.cache import cache_root  # noqa: E402
from minillm.checkpoint import load_model  # noqa: E402
from minillm.pipeline import GRPO_OPTIONS, REASONING_SFT, Recipe, build  # noqa: E402
from minillm.tokenizer import load_book_tokenizer  # noqa: E402

OUT = ROOT / "chapters" / "15_reasoning_with_rl" / "bench_grpo.jsonl"


def parse_value(text: str):
    for cast in (int, float):
        try:
            return cast(text)
        except ValueError:
            pass
    return {"true": True, "false": False}.get(text.lower(), text)


def cold_start(steps: int | None, device: str = "cpu") -> tuple[Path, str]:
    """The cold-start model's folder: the book's recipe, or one of ``steps`` steps
    (same recipe otherwise), built once into the cache with ``run_cold_start``."""
    if steps is None or steps == REASONING_SFT.train["steps"]:
        return build(REASONING_SFT.name, verbose=True), REASONING_SFT.name
    recipe = dataclasses.replace(REASONING_SFT, name=f"bench-cold-{steps}",
                                 train={**REASONING_SFT.train, "steps": steps})
    folder = cache_root() / "bench_grpo" / f"{recipe.name}-{recipe.key()}"
    if not (folder / "model.safetensors").exists():
        work = folder.with_name(folder.name + ".work")
        folder.mkdir(parents=True, exist_ok=True)
        work.mkdir(parents=True, exist_ok=True)
        grpo.run_cold_start(recipe, build(REASONING_SFT.parent), folder, work,
                            verbose=False, device=device)
    return folder, recipe.name


def window(history: list[dict], key: str, last: bool) -> float:
    """Mean of ``key`` over a run's first (or last) 10 steps, rounded to 4 digits."""
    part = history[-10:] if last else history[:10]
    return round(sum(r[key] for r in part) / len(part), 4)


def score(folder: Path, tokenizer, test, device: str = "cpu") -> dict:
    model = load_model(folder / "model.safetensors").to(device).eval()
    return grpo.summarize(grpo.evaluate(model, tokenizer, test))


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--name", required=True, help="the variant's name in the results")
    parser.add_argument("--set", nargs="*", default=[], metavar="KEY=VALUE",
                        help="GRPOConfig options over the book's GRPO_OPTIONS")
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument("--evals", nargs="+", type=int, default=None,
                        help="step counts at which to score the model (default: the run's steps)")
    parser.add_argument("--cold-steps", type=int, default=None,
                        help="cold-start steps (default: the book's recipe)")
    parser.add_argument("--out", type=Path, default=OUT)
    parser.add_argument("--device", default="cpu",
                        help="cpu (the book's numbers) or cuda (for sweeps; not bit-identical)")
    args = parser.parse_args(argv)

    options = {**GRPO_OPTIONS, **{k: parse_value(v) for k, v in (s.split("=", 1) for s in args.set)}}
    evals = sorted(args.evals or [options["steps"]])
    tokenizer, test = load_book_tokenizer(), tinyworld.load("reasoning_test")
    parent, parent_name = cold_start(args.cold_steps, args.device)
    before = score(parent, tokenizer, test, args.device)
    print(f"{parent_name}: greedy format {before['format']:.3f} accuracy {before['accuracy']:.3f}",
          flush=True)
    for seed in args.seeds:
        with tempfile.TemporaryDirectory() as tmp:
            work = Path(tmp) / "work"
            work.mkdir()
            for steps in evals:
                run_options = {**options, "seed": seed, "steps": steps}
                recipe = Recipe(name=f"bench-grpo-{args.name}", stage="grpo", parent=REASONING_SFT.name,
                                model=None, train=dict(seed=seed), data=("reasoning_train",),
                                keep_best=False, options=run_options)
                out = Path(tmp) / f"out-{steps}"
                out.mkdir()
                t0 = time.time()
                grpo.run_grpo(recipe, parent, out, work, verbose=False, device=args.device)
                wall = time.time() - t0
                history = json.loads((out / "history.json").read_text())
                after = score(out, tokenizer, test, args.device)

                row = {"name": args.name, "device": args.device, "seed": seed, "steps": steps, "cold": parent_name,
                       "options": run_options, "cold_greedy": before, "grpo_greedy": after,
                       "gain": round(100 * (after["accuracy"] - before["accuracy"]), 2),
                       "seconds": round(sum(r["seconds"] for r in history), 1),
                       "wall_this_leg": round(wall, 1),
                       "curves": {f"{k} {w}": window(history, k, w == "last") for k in
                                  ("reward", "accuracy", "length", "zero_std", "group_std")
                                  for w in ("first", "last")},
                       "date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
                with open(args.out, "a") as f:
                    f.write(json.dumps(row) + "\n")
                print(f"{args.name} seed {seed} step {steps}: greedy accuracy "
                      f"{after['accuracy']:.3f} (gain {row['gain']:+.1f} points), format "
                      f"{after['format']:.3f}, {row['seconds']:.0f} s of GRPO", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Training benchmark: the book's base model end to end, and the trainer's overhead.

    .venv/bin/python bench/bench_train.py --threads 1     # about 5-10 minutes on 2 busy cores

1. End to end: trains the zoo recipe ``tinyworld-base`` from its seed (in a
   temporary cache, the real one is left alone) and reports wall time, this
   process's CPU time, tokens/s, the held-out loss and perplexity on
   TinyWorld's ``pretrain_val`` biographies, and the attribute-completion
   accuracy on every pretrained person (sft + heldout splits), per attribute.
2. Overhead: the same model, data and hyperparameters trained by
   ``minillm.train.Trainer`` and by a plain hand-written PyTorch loop (same
   AdamW groups, schedule, autocast, clipping), in alternating rounds
   (plain, trainer, trainer, plain, ...) so that load changes hit both alike.
   Each round runs ``--steps`` optimizer steps from the same initial weights;
   the overhead is the median of per-round time ratios.
"""
from __future__ import annotations

import argparse
import math
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from minillm import evals, seed_everything, tinyworld, zoo  # noqa: E402
from minillm.data import Batches  # noqa: E402
from minillm.loss import lm_loss  # noqa: E402
from minillm.model import Transformer  # noqa: E402
from minillm.tokenizer import load_book_tokenizer  # noqa: E402
from minillm.train import Trainer, param_groups, resolve_precision  # noqa: E402


def end_to_end(recipe: zoo.Recipe, device: str) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        os.environ["MINILLM_CACHE"] = tmp
        wall, cpu = time.perf_counter(), time.process_time()
        folder = zoo.path(recipe, verbose=True, device=device)
        wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
        model, tok = zoo.load(recipe, device=device)
        history = zoo.history(recipe)
        chosen = zoo.info(recipe)["chosen_step"]
    _, val = zoo.corpus(recipe, tok)
    val_loss = evals.dataset_loss(model, *val)
    people = [p for p in tinyworld.load_people() if p.known]
    rows = evals.probe(model, tok, people)
    split_of = {p.name: p.split for p in people}
    by_split = {split: evals.attribute_accuracy([r for r in rows if split_of[r["person"]] == split])
                for split in ("sft", "heldout")}
    tokens = history[-1]["tokens"]
    return {"folder": folder, "wall": wall, "cpu": cpu, "tokens": tokens, "val_loss": val_loss,
            "accuracy": evals.attribute_accuracy(rows), "by_split": by_split, "n_people": len(people),
            "params": sum(p.numel() for p in model.parameters()), "chosen": chosen}


def plain_loop(model, config, batches, device, steps):
    """The hand-written baseline: what every PyTorch tutorial's loop does."""
    optimizer = torch.optim.AdamW(param_groups(model, config.weight_decay), lr=config.lr,
                                  betas=config.betas, eps=config.eps)
    dtype = resolve_precision(config.precision, device)
    for step in range(steps):
        for group in optimizer.param_groups:
            group["lr"] = config.lr_at(step)
        x, y = next(batches)
        x, y = x.to(device), y.to(device)
        with torch.autocast(torch.device(device).type, dtype=dtype or torch.float32, enabled=dtype is not None):
            loss = lm_loss(model(x), y)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), config.grad_clip)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
    return loss.item()


def overhead(recipe: zoo.Recipe, device: str, rounds: int, steps: int) -> dict:
    tok = load_book_tokenizer()
    train, _ = zoo.corpus(recipe, tok)
    config = recipe.train_config()
    seed_everything(0)
    init = Transformer(recipe.model_config()).state_dict()
    times = {"plain": [], "trainer": []}
    for r in range(rounds):
        for kind in ("plain", "trainer") if r % 2 == 0 else ("trainer", "plain"):
            model = Transformer(recipe.model_config()).to(device)
            model.load_state_dict(init)
            if device.startswith("cuda"):
                torch.cuda.synchronize()
            start = time.perf_counter()
            if kind == "plain":
                plain_loop(model, config, Batches(*train, config.batch_size, seed=config.seed), device, steps)
            else:
                Trainer(model, config.__class__(**{**config.to_dict(), "steps": steps, "eval_every": 0}),
                        train, progress=False).fit()
            if device.startswith("cuda"):
                torch.cuda.synchronize()
            times[kind].append(time.perf_counter() - start)
    ratios = [t / p for t, p in zip(times["trainer"], times["plain"])]
    tokens = steps * config.batch_size * recipe.block_size
    return {"plain": tokens / statistics.median(times["plain"]), "trainer": tokens / statistics.median(times["trainer"]),
            "overhead": statistics.median(ratios) - 1, "rounds": rounds, "steps": steps}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--rounds", type=int, default=6)
    parser.add_argument("--steps", type=int, default=30, help="optimizer steps per overhead round")
    parser.add_argument("--skip-end-to-end", action="store_true")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    recipe = zoo.RECIPES["tinyworld-base"]
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    print(f"device {args.device}, torch {torch.__version__}, {torch.get_num_threads()} threads, "
          f"{os.cpu_count()} cores, load average {load:.1f} at start")
    print(f"recipe {recipe.name} ({recipe.key()}): {recipe.description}\n")
    if not args.skip_end_to_end:
        e = end_to_end(recipe, args.device)
        print(f"| {recipe.name}: end to end | value |\n|---|---:|")
        print(f"| parameters | {e['params']:,} |")
        print(f"| training tokens | {e['tokens']:,} |")
        print(f"| wall time (incl. tokenizing, packing, evals) | {e['wall']:.0f} s |")
        print(f"| CPU time of this process | {e['cpu']:.0f} s |")
        print(f"| tokens/s (wall) | {e['tokens'] / e['wall']:,.0f} |")
        print(f"| weights kept (lowest held-out loss) | step {e['chosen']} of {recipe.train['steps']} |")
        print(f"| held-out loss (pretrain_val) | {e['val_loss']:.3f} nats/token |")
        print(f"| held-out perplexity | {math.exp(e['val_loss']):.2f} |")
        print(f"| attribute accuracy, all {e['n_people']} pretrained people | {e['accuracy']['all']:.1%} |")
        print("\n| attribute | all known | sft people | heldout people |\n|---|---:|---:|---:|")
        for attribute in (*tinyworld.ATTRIBUTES, "all"):
            print(f"| {attribute} | {e['accuracy'][attribute]:.1%} | {e['by_split']['sft'][attribute]:.1%} | "
                  f"{e['by_split']['heldout'][attribute]:.1%} |")
        print()
    o = overhead(recipe, args.device, args.rounds, args.steps)
    print(f"| training throughput ({o['rounds']} alternating rounds x {o['steps']} steps) | tokens/s |\n|---|---:|")
    print(f"| plain PyTorch loop | {o['plain']:,.0f} |")
    print(f"| minillm.train.Trainer | {o['trainer']:,.0f} |")
    print(f"| trainer overhead (median of per-round ratios) | {o['overhead']:+.1%} |")
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    print(f"\nload average {load:.1f} at the end")


if __name__ == "__main__":
    main()

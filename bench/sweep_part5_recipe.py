"""Which pretraining recipe lets chapter 12's SFT reach 85% on held-out people? (exploration)

    python bench/sweep_part5_recipe.py VARIANT OUT.jsonl [--device cuda]
    python bench/sweep_part5_recipe.py --list

Each variant changes Part V's mixed-training pretraining (``tinyworld-pretrain``:
steps, how often the biographies are read, model width and depth), trains it
with the pipeline's own stages (``pipeline.train_stage``: ``run_pretrain`` then
``run_sft`` with the ``tinyworld-sft`` recipe, or a variant of its lr), and
scores the SFT model greedily with chapter 12's ``evals.answer_questions`` on
the held-out people and the seen people (dev people excluded), and the
pretrained model on the held-out people before any SFT. One JSON line per
variant. Models go to ``$MINILLM_CACHE`` (set it to a scratch folder).
Used for a GPU sweep (fp32 on the GPU: not bit-identical to the CPU runs).
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from minillm import pipeline, tinyworld  # noqa: E402
from minillm.checkpoint import load_model  # noqa: E402
from minillm.evals import accuracy_by, answer_questions  # noqa: E402
from minillm.tokenizer import load_book_tokenizer  # noqa: E402

BASE, SFT = pipeline.TINYWORLD_PRETRAIN, pipeline.TINYWORLD_SFT
WIDE = dict(d_model=192, d_ff=576, n_heads=6, n_kv_heads=2)
DEEP = dict(n_layers=6)
BIOS2 = ("pretrain",)  # the biographies once more per epoch
FULL2 = ("pretrain_fullname",)
#: name -> (steps, extra data files, model changes, SFT lr)
VARIANTS = {
    "recipe": (1200, (), {}, 3e-4),
    "steps2000": (2000, (), {}, 3e-4),
    "steps3000": (3000, (), {}, 3e-4),
    "bios2-steps2000": (2000, BIOS2, {}, 3e-4),
    "bios2-full2-steps3000": (3000, BIOS2 + FULL2, {}, 3e-4),
    "wide-steps1200": (1200, (), WIDE, 3e-4),
    "wide-steps2000": (2000, (), WIDE, 3e-4),
    "deep-steps2000": (2000, (), DEEP, 3e-4),
    "wide-bios2-steps3000": (3000, BIOS2, WIDE, 3e-4),
    "recipe-sft1e-4": (1200, (), {}, 1e-4),
    "steps3000-sft1e-3": (3000, (), {}, 1e-3),
}


def recipes(name: str):
    steps, extra, model, lr = VARIANTS[name]
    pre = pipeline.register(dataclasses.replace(
        BASE, name=f"sweep-{name}-pretrain", model={**BASE.model, **model},
        train={**BASE.train, "steps": steps}, data=BASE.data + extra))
    sft = pipeline.register(dataclasses.replace(
        SFT, name=f"sweep-{name}-sft", parent=pre.name,
        train={**SFT.train, "lr": lr, "min_lr": lr / 10}))
    return pre, sft


def heldout(folder: Path, tokenizer, records, device: str) -> float:
    model = load_model(folder / "model.safetensors").to(device).eval()
    return accuracy_by(answer_questions(model, tokenizer, records))


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("variant", nargs="?", choices=list(VARIANTS))
    parser.add_argument("out", nargs="?", type=Path)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--list", action="store_true")
    args = parser.parse_args(argv)
    if args.list or args.variant is None:
        print("\n".join(f"{k}: {v}" for k, v in VARIANTS.items()))
        return 0
    tokenizer = load_book_tokenizer()
    dev_people = {r["person"] for r in tinyworld.load("sft_dev")}
    held = tinyworld.load("sft_eval_heldout")
    seen = [r for r in tinyworld.load("sft_eval_seen") if r["person"] not in dev_people]
    pre, sft = recipes(args.variant)
    t0 = time.time()
    pre_folder = pipeline.train_stage(pre, None, pipeline.folder_of(pre), device=args.device)
    t1 = time.time()
    sft_folder = pipeline.train_stage(sft, pre_folder, pipeline.folder_of(sft), device=args.device)
    t2 = time.time()
    info = json.loads((pre_folder / "recipe.json").read_text())
    model = load_model(sft_folder / "model.safetensors").to(args.device).eval()
    row = {"variant": args.variant, "device": args.device, "settings": VARIANTS[args.variant],
           "parameters": sum(p.numel() for p in model.parameters()),
           "pretrain_seconds": round(t1 - t0, 1), "sft_seconds": round(t2 - t1, 1),
           "chosen_step": info["chosen_step"], "chosen_val_loss": info["chosen_val_loss"],
           "pretrain_heldout": heldout(pre_folder, tokenizer, held, args.device),
           "sft_heldout": accuracy_by(answer_questions(model, tokenizer, held)),
           "sft_seen": accuracy_by(answer_questions(model, tokenizer, seen)),
           "sft_chosen_step": json.loads((sft_folder / "recipe.json").read_text())["chosen_step"]}
    with open(args.out, "a") as f:
        f.write(json.dumps(row) + "\n")
    print(row, flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())

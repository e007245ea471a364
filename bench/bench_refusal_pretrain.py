"""Can "I don't know" be learned where the facts are stored? (an experiment, not a timed test)

Chapter 14's DPO teaches refusals after SFT and reaches ~59% refusals on unknown
people with ~21% false refusals on held-out ones, although the SFT model's own
surprise at a surname separates known from unknown people well (measured here
as an AUC). This script tries the data-side alternative: Part V's mixed
pretraining (``tinyworld-pretrain``: biographies + full-name biographies + the
SFT people's questions as chats) plus refusal chats about ``--names`` invented
people who appear nowhere else ("What is X's hometown?" -> "I don't know
anything about X."), and measures the pretrained model directly (no SFT, no
DPO), greedily, on chapter 12's splits: refusals on unknown people
(``sft_eval_unknown``: 40 names never seen in training), false refusals and
accuracy on held-out and seen people.

    OMP_NUM_THREADS=1 python bench/bench_refusal_pretrain.py --names 480 --per-name 2 --seed 0
    OMP_NUM_THREADS=1 python bench/bench_refusal_pretrain.py --surprisal   # the AUC only

Results are appended to ``bench/results/refusal_pretrain.jsonl``. One run is
the whole pretraining recipe (1200 steps x 16 blocks): ~8 minutes on an idle
core, ~25 minutes on a loaded 2-core machine.
"""
from __future__ import annotations

import argparse
import json
import random
import sys
import tempfile
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from bench_dpo import evaluate  # noqa: E402
from minillm import seed_everything, tinyworld, zoo  # noqa: E402
from minillm.chat import encode_chat  # noqa: E402
from minillm.checkpoint import load_weights  # noqa: E402
from minillm.model import Transformer  # noqa: E402
from minillm.pipeline import TINYWORLD_PRETRAIN, KeepBest, corpus  # noqa: E402
from minillm.tinyworld import tasks  # noqa: E402
from minillm.tinyworld.world import ATTRIBUTES, Person, generate_world  # noqa: E402
from minillm.tokenizer import load_book_tokenizer  # noqa: E402
from minillm.train import Trainer  # noqa: E402

OUT = ROOT / "bench" / "results" / "refusal_pretrain.jsonl"


def invented_unknowns(n: int, seed: int = 0) -> list[Person]:
    """``n`` new full names from TinyWorld's own first and last names, none of
    them a person of the world (so neither a known nor an evaluation name)."""
    world = generate_world()
    firsts = sorted({p.name.split(" ", 1)[0] for p in world.people})
    lasts = sorted({p.name.split(" ", 1)[1] for p in world.people})
    taken, rng, people = {p.name for p in world.people}, random.Random(f"unknowns/{seed}"), []
    while len(people) < n:
        name = f"{rng.choice(firsts)} {rng.choice(lasts)}"
        if name not in taken:
            taken.add(name)
            people.append(Person(name, "unknown_dpo"))
    return people


def refusal_chats(people: list[Person], per_name: int, seed: int = 0) -> list[dict]:
    rng = random.Random(f"refusals/{seed}")
    templates = tasks.QUESTION_TEMPLATES["train"]
    return [tasks.qa_record(p, a, rng.choice(templates[a]))
            for p in people for a in rng.sample(ATTRIBUTES, per_name)]


def surname_surprisal(model, tokenizer, records) -> torch.Tensor:
    """-log p(surname | everything before it) in each question, in nats."""
    out = []
    with torch.no_grad():
        for r in records:
            ids = encode_chat(r["messages"][:-1], tokenizer, add_generation_prompt=True)[0]
            last = tokenizer.encode(" " + r["person"].split(" ", 1)[1])
            at = next(i for i in range(len(ids)) if ids[i:i + len(last)] == last)
            logp = model(torch.tensor([ids])).log_softmax(-1)[0]
            out.append(-sum(logp[at + k - 1, t].item() for k, t in enumerate(last)))
    return torch.tensor(out)


def surprisal_auc(model, tokenizer) -> dict:
    s = {split: surname_surprisal(model, tokenizer, tinyworld.load(f"sft_eval_{split}"))
         for split in ("unknown", "heldout")}
    return {"surname_nats_unknown": s["unknown"].mean().item(),
            "surname_nats_heldout": s["heldout"].mean().item(),
            "surname_auc": (s["unknown"][:, None] > s["heldout"][None, :]).float().mean().item()}


def pretrain(names: int, per_name: int, seed: int):
    recipe, tokenizer = TINYWORLD_PRETRAIN, load_book_tokenizer()
    refusals = refusal_chats(invented_unknowns(names, seed), per_name, seed)
    train, val = corpus(recipe, tokenizer, extra_records=refusals)
    config = recipe.train_config()
    seed_everything(config.seed)
    model = Transformer(recipe.model_config())
    with tempfile.TemporaryDirectory() as folder:  # KeepBest's lowest-val-loss weights
        best = Path(folder) / "best.safetensors"
        Trainer(model, config, train, val, callbacks=[KeepBest(best)], progress=False).fit()
        load_weights(model, best)
    return model.eval(), tokenizer


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--names", type=int, default=480, help="invented unknown people")
    parser.add_argument("--per-name", type=int, default=2, help="refusal chats per person")
    parser.add_argument("--seed", type=int, default=0, help="which invented names")
    parser.add_argument("--surprisal", action="store_true", help="only the shipped models' AUC")
    args = parser.parse_args()
    torch.set_num_threads(1)
    if args.surprisal:
        for name in ("tinyworld-pretrain", "tinyworld-sft", "tinyworld-dpo"):
            model, tokenizer = zoo.load(name)
            print(json.dumps({"model": name, **surprisal_auc(model.eval(), tokenizer)}), flush=True)
        return
    start = time.time()
    model, tokenizer = pretrain(args.names, args.per_name, args.seed)
    row = {"names": args.names, "per_name": args.per_name, "seed": args.seed,
           "seconds": round(time.time() - start), **surprisal_auc(model, tokenizer)}
    row.update({k: v for k, v in evaluate(model, tokenizer).items() if k != "examples"})
    OUT.parent.mkdir(parents=True, exist_ok=True)
    with OUT.open("a") as f:
        f.write(json.dumps(row) + "\n")
    print(json.dumps(row), flush=True)


if __name__ == "__main__":
    main()

"""Chapter 12's report card: what each model of the SFT chain knows and answers.

    .venv/bin/python bench/bench_sft.py [--out sft.json]   # builds missing stages first

For ``tinyworld-base``, ``tinyworld-pretrain`` (mixed training) and
``tinyworld-sft``: greedy exact-match QA accuracy on the three evaluation
splits (seen people with new phrasings, the dev people left out; held-out
people; unknown people), per attribute; the confident-answer rate on unknown
people; probe accuracy on held-out and on all known people; the held-out
biography loss; and each stage's training wall time (``recipe.json``).
Prints a table and writes the numbers as JSON.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from minillm import evals, tinyworld, zoo  # noqa: E402
from minillm.data import pack_texts  # noqa: E402
from minillm.tokenizer import load_book_tokenizer  # noqa: E402

MODELS = ("tinyworld-base", "tinyworld-pretrain", "tinyworld-sft")
SPLITS = ("sft_eval_seen", "sft_eval_heldout", "sft_eval_unknown")


def report(name: str, tokenizer) -> dict:
    model, _ = zoo.load(name, verbose=True)
    dev_people = {r["person"] for r in tinyworld.load("sft_dev")}
    people = tinyworld.load_people()
    out = {"train_seconds": zoo.info(name)["train_seconds"],
           "chosen_step": zoo.info(name).get("chosen_step")}
    for split in SPLITS:
        records = [r for r in tinyworld.load(split) if r["person"] not in dev_people]
        rows = evals.answer_questions(model, tokenizer, records)
        out[split] = evals.accuracy_by(rows)
        out[split + "_by_attribute"] = evals.accuracy_by(rows, "attribute")
        if split == "sft_eval_unknown":
            out["unknown_confident_answer_rate"] = evals.confident_answer_rate(rows)
    heldout = [p for p in people if p.split == "heldout"]
    known = [p for p in people if p.split in ("sft", "heldout")]
    out["probe_heldout"] = evals.attribute_accuracy(evals.probe(model, tokenizer, heldout))["all"]
    out["probe_known"] = evals.attribute_accuracy(evals.probe(model, tokenizer, known))["all"]
    val = pack_texts([r["text"] for r in tinyworld.load("pretrain_val")], tokenizer, 128)
    out["heldout_bio_loss"] = evals.dataset_loss(model, *val)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("sft.json"))
    args = parser.parse_args()
    tokenizer = load_book_tokenizer()
    start = time.time()
    results = {name: report(name, tokenizer) for name in MODELS}
    args.out.write_text(json.dumps(results, indent=1))
    keys = ("sft_eval_seen", "sft_eval_heldout", "unknown_confident_answer_rate", "probe_heldout",
            "heldout_bio_loss", "train_seconds")
    print(f"{'model':20s}" + "".join(f"{k[:16]:>18s}" for k in keys))
    for name, r in results.items():
        print(f"{name:20s}" + "".join(f"{r[k]:18.3f}" for k in keys))
    print(f"wrote {args.out} ({time.time() - start:.0f} s)")


if __name__ == "__main__":
    main()

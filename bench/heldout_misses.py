"""Which held-out questions does a Part V model miss? (chapter 12's 85% target, issue 10)

    OMP_NUM_THREADS=1 .venv/bin/python bench/heldout_misses.py [RECIPE]   # default tinyworld-sft

Answers ``sft_eval_heldout`` greedily with chapter 12's
``evals.answer_questions`` and breaks the accuracy down three ways: by
attribute, by person (how many of a person's six questions are right), and by
how many tokens the book tokenizer spends on the person's name (with a
leading space, as the name appears in a question).
"""
from __future__ import annotations

import collections
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from minillm import tinyworld, zoo  # noqa: E402
from minillm.evals import accuracy_by, answer_questions  # noqa: E402


def main(argv=None) -> int:
    name = (argv if argv is not None else sys.argv[1:]) or ["tinyworld-sft"]
    model, tokenizer = zoo.load(name[0])
    rows = answer_questions(model, tokenizer, tinyworld.load("sft_eval_heldout"))
    print(f"{name[0]}: held-out accuracy {accuracy_by(rows):.1%} on {len(rows)} questions")
    for attribute, acc in accuracy_by(rows, "attribute").items():
        print(f"  {attribute:12s} {acc:.1%}")
    people = collections.defaultdict(list)
    for row in rows:
        people[row["person"]].append(row["correct"])
    shares = collections.Counter(f"{sum(v)}/{len(v)}" for v in people.values())
    print("people by questions right:", dict(sorted(shares.items())))
    by_length = collections.defaultdict(list)  # name length in tokens -> people's answers
    for person, right in people.items():
        by_length[len(tokenizer.encode(" " + person))].append(right)
    for length, answers in sorted(by_length.items()):
        right = [ok for person in answers for ok in person]
        print(f"  names of {length} tokens: {len(answers):3d} people, "
              f"accuracy {sum(right) / len(right):.1%}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

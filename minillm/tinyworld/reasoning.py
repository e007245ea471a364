"""Arithmetic problems with worked traces, for the reasoning chapter (R1-style RL).

Each problem adds a short chain of single digits, "What is 7 + 5 + 9 + 2?",
and its worked solution takes one small step per ``+``:

    <think>7 + 5 = 12. 12 + 9 = 21. 21 + 2 = 23.</think><answer>23</answer>

Why this task and not word problems: a 1M-parameter model cannot do
multi-digit arithmetic in its head (on word problems it stayed near 0-6%
accuracy even after cold-start SFT and GRPO), but it can learn one step at a
time if each step is a copy plus one fact. So every running total stays at
most ``MAX_TOTAL`` = 28: the book tokenizer has a single token for each of
" 0" ... " 28" (with its leading space), so each step reads two tokens (the
previous total and the next digit) and writes one token (the new total), a
fact from a table of 28 x 9 entries. Longer chains need more steps in a row,
each of which can go wrong: that gives the chapter its difficulty levels
(``TEMPLATES``: 3, 4 or 5 numbers, i.e. 2, 3 or 4 steps).

Problems are deduplicated by question text and then split, so no question
appears in both train and test.
"""
from __future__ import annotations

import random
import re

from minillm.tinyworld.world import World, stage_rng

#: The largest running total: the book tokenizer spells " 0" ... " 28" as one token each.
MAX_TOTAL = 28
#: template name -> how many numbers are added (one trace step per "+").
TEMPLATES = {"3 numbers": 3, "4 numbers": 4, "5 numbers": 5}


def run_steps(numbers: list[int]) -> tuple[list[str], int]:
    """The trace lines of adding ``numbers`` left to right, and the total."""
    lines, total = [], numbers[0]
    for n in numbers[1:]:
        lines.append(f"{total} + {n} = {total + n}.")
        total += n
    return lines, total


def make_trace(lines: list[str], answer: int) -> str:
    return f"<think>{' '.join(lines)}</think><answer>{answer}</answer>"


def problem(template: str, rng: random.Random) -> dict:
    """One problem: {"question", "answer", "trace", "template"}: digits 1-9,
    redrawn until the total is at most ``MAX_TOTAL``."""
    if template not in TEMPLATES:
        raise ValueError(f"unknown reasoning template {template!r}; choose one of {sorted(TEMPLATES)}")
    while True:
        numbers = [rng.randint(1, 9) for _ in range(TEMPLATES[template])]
        if sum(numbers) <= MAX_TOTAL:
            break
    lines, answer = run_steps(numbers)
    question = "What is " + " + ".join(map(str, numbers)) + "?"
    return {"question": question, "answer": answer, "trace": make_trace(lines, answer), "template": template}


def reasoning_problems(world: World, n_train: int, n_test: int) -> tuple[list[dict], list[dict]]:
    """Distinct problems, templates in turn, split by problem into (train, test).
    (``world`` only seeds the random stream; the problems name no one.)"""
    rng, seen, problems = stage_rng(world.config, "reasoning"), set(), []
    order = sorted(TEMPLATES)
    attempt = 0
    while len(problems) < n_train + n_test:
        if attempt == 20 * (n_train + n_test):
            raise RuntimeError(f"could only make {len(problems)} distinct problems")
        record = problem(order[attempt % len(order)], rng)
        attempt += 1
        if record["question"] not in seen:  # a set is used for membership only, never iterated
            seen.add(record["question"])
            problems.append(record)
    rng.shuffle(problems)
    return problems[:n_train], problems[n_train:]


ANSWER_RE = re.compile(r"<answer>\s*(-?\d+)\s*</answer>")


def parse_answer(completion: str) -> int | None:
    """The integer inside the last <answer>...</answer>, or None when there is none.
    (Lenient, for reading the data; the RL rewards use ``minillm.rewards``.)"""
    found = ANSWER_RE.findall(completion)
    return int(found[-1]) if found else None

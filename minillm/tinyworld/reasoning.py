"""TinyWorld arithmetic word problems for the reasoning chapter (R1-style RL).

Each problem is set in the world (names of sft people, cities, employers,
universities), needs two or three small steps (+, -, x, /), and has an integer
answer that a program can verify. Its worked solution is a trace in exactly
the form the model is taught to produce:

    <think>After the gift: 12 + 5 = 17. After giving away: 17 - 3 = 14.</think><answer>14</answer>

Problems are deduplicated by question text and then split, so no question
appears in both train and test.
"""
from __future__ import annotations

import operator
import random
import re

from minillm.tinyworld.world import World, stage_rng

OPS = {"+": operator.add, "-": operator.sub, "*": operator.mul, "/": operator.floordiv}
ITEMS = ("apples", "books", "stamps", "pencils", "tickets", "shells")


def run_steps(start: int, steps: list[tuple[str, str, int]]) -> tuple[list[str], int]:
    """Apply steps (label, op, operand) to a running value; return the trace lines and the result."""
    lines, value = [], start
    for label, op, operand in steps:
        result = OPS[op](value, operand)
        if (op == "/" and value % operand) or result < 0:  # answers are natural numbers
            raise ValueError(f"step {value} {op} {operand} does not give a natural number")
        lines.append(f"{label}: {value} {op} {operand} = {result}.")
        value = result
    return lines, value


def _gift(w, r, a, b, c, e, u):
    x, y, item = r.randint(3, 30), r.randint(2, 20), r.choice(ITEMS)
    z = r.randint(1, min(10, x + y))
    q = (f"{a} has {x} {item}. {b} gives {a} {y} more, and then {a} gives {z} to a friend from {c}. "
         f"How many {item} does {a} have now?")
    return q, x, [("After the gift", "+", y), ("After giving some away", "-", z)]


def _desks(w, r, a, b, c, e, u):
    n, k = r.randint(2, 9), r.randint(3, 12)
    m = r.randint(1, min(10, n * k))
    q = (f"{e} has {n} offices in {c}, with {k} desks in each office. {m} of the desks are empty. "
         f"How many desks are in use?")
    return q, n, [("Desks in all", "*", k), ("Desks in use", "-", m)]


def _train(w, r, a, b, c, e, u):
    c2 = r.choice([x for x in w.cities if x != c])
    n, off, on = r.randint(20, 90), r.randint(1, 19), r.randint(1, 19)
    q = (f"A train leaves {c} for {c2} with {n} passengers. At the only stop, {off} passengers get off "
         f"and {on} get on. How many passengers arrive in {c2}?")
    return q, n, [("After some get off", "-", off), ("After some get on", "+", on)]


def _wages(w, r, a, b, c, e, u):
    h1, h2, rate = r.randint(2, 9), r.randint(2, 9), r.randint(2, 12)
    q = (f"{a} works for {e} and earns {rate} coins an hour. {a} works {h1} hours on Monday and "
         f"{h2} hours on Tuesday. How many coins does {a} earn on those two days?")
    return q, h1, [("Hours worked", "+", h2), ("Coins earned", "*", rate)]


def _classes(w, r, a, b, c, e, u):
    size, count, more = r.randint(4, 15), r.randint(2, 9), r.randint(1, 6)
    q = (f"{u} has {size * count} students of {r.choice(w.fields)}, in classes of {size}. "
         f"Next year {more} more classes open. How many classes will there be?")
    return q, size * count, [("Classes now", "/", size), ("Classes next year", "+", more)]


def _reports(w, r, a, b, c, e, u):
    x, y = r.randint(2, 25), r.randint(1, 15)
    q = (f"{a} and {b} work at {e}. {a} wrote {x} reports this month, and {b} wrote {y} more than {a}. "
         f"How many reports did they write together?")
    return q, x, [(f"Reports by {b}", "+", y), ("Together", "+", x)]


def _shelves(w, r, a, b, c, e, u):
    n, k = r.randint(2, 9), r.randint(5, 12)
    m = r.randint(1, min(15, n * k))
    back = r.randint(1, m)
    q = (f"The library of {u} has {n} shelves with {k} books on each. Students borrow {m} books "
         f"and later return {back} of them. How many books are on the shelves now?")
    return q, n, [("Books at first", "*", k), ("After borrowing", "-", m), ("After returns", "+", back)]


def _market(w, r, a, b, c, e, u):
    price, qty, paid_extra = r.randint(2, 9), r.randint(2, 8), r.randint(1, 20)
    q = (f"At the market in {c}, {a} buys {qty} {r.choice(ITEMS)} for {price} coins each and pays with "
         f"{price * qty + paid_extra} coins. How much change does {a} get?")
    return q, price * qty + paid_extra, [("Cost", "-", price * qty)]


TEMPLATES = {"gift": _gift, "desks": _desks, "train": _train, "wages": _wages, "classes": _classes,
             "reports": _reports, "shelves": _shelves, "market": _market}


def make_trace(lines: list[str], answer: int) -> str:
    return f"<think>{' '.join(lines)}</think><answer>{answer}</answer>"


def problem(world: World, template: str, rng: random.Random) -> dict:
    """One problem: {"question", "answer", "trace", "template"}."""
    names = [p.name for p in world.split("sft")]
    a, b = rng.sample(names, 2)
    question, start, steps = TEMPLATES[template](world, rng, a, b, rng.choice(world.cities),
                                                 rng.choice(list(world.employers)),
                                                 rng.choice(list(world.universities)))
    lines, answer = run_steps(start, steps)
    return {"question": question, "answer": answer, "trace": make_trace(lines, answer), "template": template}


def reasoning_problems(world: World, n_train: int, n_test: int) -> tuple[list[dict], list[dict]]:
    """Distinct problems, templates in turn, split by problem into (train, test)."""
    if len(world.split("sft")) < 2:
        raise ValueError("reasoning problems need at least 2 sft people")
    rng, seen, problems = stage_rng(world.config, "reasoning"), set(), []
    order = sorted(TEMPLATES)
    attempt = 0
    while len(problems) < n_train + n_test:
        if attempt == 20 * (n_train + n_test):
            raise RuntimeError(f"could only make {len(problems)} distinct problems")
        record = problem(world, order[attempt % len(order)], rng)
        attempt += 1
        if record["question"] not in seen:  # a set is used for membership only, never iterated
            seen.add(record["question"])
            problems.append(record)
    rng.shuffle(problems)
    return problems[:n_train], problems[n_train:]


ANSWER_RE = re.compile(r"<answer>\s*(-?\d+)\s*</answer>")


def parse_answer(completion: str) -> int | None:
    """The integer inside the last <answer>...</answer>, or None when there is none."""
    found = ANSWER_RE.findall(completion)
    return int(found[-1]) if found else None

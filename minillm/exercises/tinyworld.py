"""Checkers for the exercises of "TinyWorld: the book's data"."""
from __future__ import annotations

import math

from minillm.exercises import ExerciseError, call, expect_close, passed


def _inventory_sizes() -> tuple[int, dict[str, int]]:
    from minillm import tinyworld as tw

    config = tw.TinyWorldConfig()
    world = tw.generate_world(config)
    n_known = sum(p.known for p in tw.load_people())
    sizes = {"birth_city": len(world.cities), "university": len(world.universities),
             "field": len(world.fields), "employer": len(world.employers),
             "work_city": len(world.cities),
             "birth_date": 28 * 12 * (config.last_year - config.first_year + 1)}
    return n_known, sizes


def check_fact_bits(fact_bits) -> None:
    """fact_bits(n_people, sizes) -> bits needed to store the facts of n_people TinyWorld
    people whose attribute values are uniform over inventories of the given sizes
    (work_city is the employer's city, so it adds nothing)."""
    n, sizes = _inventory_sizes()
    want = n * sum(math.log2(size) for a, size in sizes.items() if a != "work_city")
    got = call(fact_bits, n, dict(sizes))
    with_work_city = n * sum(math.log2(size) for size in sizes.values())
    try:
        value = float(got)
    except (TypeError, ValueError):
        raise ExerciseError(f"fact_bits: expected a number of bits, got {got!r}") from None
    if math.isclose(value, with_work_city, rel_tol=1e-6):
        raise ExerciseError(f"fact_bits({n}, sizes) should be {want:,.0f} bits, got {value:,.0f}: work_city is "
                            "always the city of the employer, so once the employer is stored it costs 0 bits")
    if math.isclose(value, want / n, rel_tol=1e-6):
        raise ExerciseError(f"fact_bits({n}, sizes) should be {want:,.0f} bits, got {value:,.1f}: that is one "
                            "person; multiply by the number of people")
    if math.isclose(value, n * sum(s for a, s in sizes.items() if a != "work_city"), rel_tol=1e-6):
        raise ExerciseError("a uniform choice among k values costs log2(k) bits, not k")
    expect_close(value, want, f"fact_bits({n}, sizes)", rel=1e-6)
    expect_close(call(fact_bits, 1, {"birth_city": 8, "work_city": 8, "employer": 4}), 5.0,
                 "fact_bits(1, {'birth_city': 8, 'work_city': 8, 'employer': 4})")
    passed(f"{n} known people x {want / n:.1f} bits = {want:,.0f} bits, about {want / 8 / 1024:.1f} KiB of "
           "facts: a model must store that much, and chapter 7 asks where")


def _grams(text: str, n: int) -> set[tuple[str, ...]]:
    words = text.split()
    return {tuple(words[i:i + n]) for i in range(len(words) - n + 1)}


def _contaminated(train_texts, test_texts, n: int) -> float:
    seen = set().union(*(_grams(t, n) for t in train_texts))
    return sum(bool(_grams(t, n) & seen) for t in test_texts) / len(test_texts)


def check_contaminated_fraction(contaminated_fraction) -> None:
    """contaminated_fraction(train_texts, test_texts, n) -> the fraction of test texts that
    share at least one whitespace-separated word n-gram with some train text."""
    train = ["the cat sat on the mat", "a dog ran in the park today"]
    cases = [(["the cat sat on a rug", "birds fly", "a dog ran in the rain"], 3, 2 / 3),
             (["the cat sat on a rug", "birds fly", "a dog ran in the rain"], 5, 1 / 3),
             (["mat a dog", "birds fly"], 3, 0.0),            # n-grams do not cross texts
             (["the cat"], 3, 0.0)]
    for test, n, want in cases:
        what = f"contaminated_fraction(train, {test}, n={n})"
        got = call(contaminated_fraction, list(train), list(test), n)
        if test == ["mat a dog", "birds fly"] and math.isclose(float(got), 0.5):
            raise ExerciseError(f"{what} should be 0, got 0.5: 'mat a dog' is not an n-gram of the train "
                                "texts; build n-grams inside each text, never across two texts")
        expect_close(got, want, what)
    from minillm import tinyworld as tw

    pretrain = [r["text"] for r in tw.load("pretrain")]
    held_out = [r["text"] for r in tw.load("pretrain_val")]
    got8 = float(call(contaminated_fraction, pretrain, held_out, 8))
    expect_close(got8, _contaminated(pretrain, held_out, 8), "contaminated_fraction(pretrain, pretrain_val, 8)")
    got13 = _contaminated(pretrain, held_out, 13)
    passed(f"{got8:.0%} of the unseen pretrain_val paraphrases share an 8-gram with pretraining, {got13:.0%} a "
           "13-gram: on templated text an overlap test flags phrasing, not leaked facts, and n decides")

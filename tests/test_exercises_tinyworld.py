import math

import pytest

from minillm.exercises import ExerciseError, ExerciseNotImplemented
from minillm.exercises.tinyworld import check_contaminated_fraction, check_fact_bits


def stub(*args):
    raise NotImplementedError


def fact_bits(n_people, sizes):
    return n_people * sum(math.log2(s) for a, s in sizes.items() if a != "work_city")


def grams(text, n):
    words = text.split()
    return {tuple(words[i:i + n]) for i in range(len(words) - n + 1)}


def contaminated(train, test, n):
    seen = set().union(*(grams(t, n) for t in train))
    return sum(bool(grams(t, n) & seen) for t in test) / len(test)


def contaminated_across_texts(train, test, n):
    return contaminated([" ".join(train)], test, n)


@pytest.mark.parametrize("check, right, wrongs", [
    (check_fact_bits, fact_bits, [
        (lambda n, sizes: n * sum(math.log2(s) for s in sizes.values()), "costs 0 bits"),
        (lambda n, sizes: fact_bits(1, sizes), "one person"),
        (lambda n, sizes: n * sum(s for a, s in sizes.items() if a != "work_city"), "log2")]),
    (check_contaminated_fraction, contaminated, [
        (contaminated_across_texts, "across two texts"),
        (lambda train, test, n: contaminated(train, test, n - 1), "expected")]),
])
def test_checker(check, right, wrongs, capsys):
    check(right)
    assert "✓ correct" in capsys.readouterr().out
    for wrong, words in wrongs:
        with pytest.raises(ExerciseError, match=words):
            check(wrong)
    with pytest.raises(ExerciseNotImplemented):
        check(stub)

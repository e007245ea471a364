import math

import pytest

from minillm.exercises import ExerciseError, ExerciseNotImplemented
from minillm.exercises.decoding import check_distinct_2, check_keep_top_k


def keep_top_k(logits, k):
    order = sorted(range(len(logits)), key=lambda i: (-logits[i], i))
    keep = set(order[:k])
    return [x if i in keep else -math.inf for i, x in enumerate(logits)]


def distinct_2(sequences):
    grams = [tuple(s[i:i + 2]) for s in sequences for i in range(len(s) - 1)]
    return len(set(grams)) / len(grams) if grams else 0.0


def stub(*args):
    raise NotImplementedError


def test_keep_top_k_accepts_correct(capsys):
    check_keep_top_k(keep_top_k)
    assert "✓ correct" in capsys.readouterr().out


@pytest.mark.parametrize("wrong, words", [
    (lambda logits, k: [x if r < k else -math.inf for r, x in enumerate(sorted(logits))], "expected"),
    (lambda logits, k: list(logits), "kept"),
    (lambda logits, k: [x if i in sorted(range(len(logits)), key=lambda j: -logits[j])[:k] else math.inf
                        for i, x in enumerate(logits)], r"\+inf"),
    (lambda logits, k: [x if i in sorted(range(len(logits)), key=lambda j: logits[j])[:k] else -math.inf
                        for i, x in enumerate(logits)], "LARGEST"),
    (lambda logits, k: 3, "list"),
])
def test_keep_top_k_rejects_wrong(wrong, words):
    with pytest.raises(ExerciseError, match=words):
        check_keep_top_k(wrong)


def test_keep_top_k_stub():
    with pytest.raises(ExerciseNotImplemented):
        check_keep_top_k(stub)


def test_distinct_2_accepts_correct(capsys):
    check_distinct_2(distinct_2)
    assert "✓ correct" in capsys.readouterr().out


def joined(sequences):
    return distinct_2([[t for s in sequences for t in s]])


def no_set(sequences):
    grams = [tuple(s[i:i + 2]) for s in sequences for i in range(len(s) - 1)]
    return 1.0 if grams else 0.0


def divides_by_zero(sequences):
    grams = [tuple(s[i:i + 2]) for s in sequences for i in range(len(s) - 1)]
    return len(set(grams)) / len(grams)


@pytest.mark.parametrize("wrong, words", [(joined, "join"), (no_set, "expected"),
                                          (divides_by_zero, "divided by zero"),
                                          (lambda s: "x", "number")])
def test_distinct_2_rejects_wrong(wrong, words):
    with pytest.raises(ExerciseError, match=words):
        check_distinct_2(wrong)


def test_distinct_2_stub():
    with pytest.raises(ExerciseNotImplemented):
        check_distinct_2(stub)

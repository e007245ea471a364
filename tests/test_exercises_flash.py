"""The FlashAttention-appendix checkers accept right answers, reject wrong ones, and spot stubs."""
import math

import pytest

from minillm.exercises import ExerciseError, ExerciseNotImplemented
from minillm.exercises.flash import check_causal_tiles, check_merge_softmax


def stub(*args):
    raise NotImplementedError


def merge(m1, l1, m2, l2):
    m = max(m1, m2)
    return m, l1 * math.exp(m1 - m) + l2 * math.exp(m2 - m)


def test_merge_accepts_correct(capsys):
    check_merge_softmax(merge)
    assert "✓ correct" in capsys.readouterr().out


@pytest.mark.parametrize("wrong, words", [
    (lambda m1, l1, m2, l2: (max(m1, m2), l1 + l2), "rescale"),
    (lambda m1, l1, m2, l2: (min(m1, m2), merge(m1, l1, m2, l2)[1]), "maximum"),
    (lambda m1, l1, m2, l2: merge(m1, l1, m2, l2)[1], "pair"),
])
def test_merge_rejects_wrong(wrong, words):
    with pytest.raises(ExerciseError, match=words):
        check_merge_softmax(wrong)


def test_merge_stub():
    with pytest.raises(ExerciseNotImplemented):
        check_merge_softmax(stub)


def causal_tiles(T, block):
    n = math.ceil(T / block)
    return n * (n + 1) // 2


def test_causal_tiles_accepts_correct(capsys):
    check_causal_tiles(causal_tiles)
    assert "✓ correct" in capsys.readouterr().out


@pytest.mark.parametrize("wrong, words", [
    (lambda T, b: math.ceil(T / b) ** 2, "every tile"),
    (lambda T, b: math.ceil(T / b) * (math.ceil(T / b) - 1) // 2, "diagonal"),
    (lambda T, b: causal_tiles(T, b) + 1, "expected"),
])
def test_causal_tiles_rejects_wrong(wrong, words):
    with pytest.raises(ExerciseError, match=words):
        check_causal_tiles(wrong)


def test_causal_tiles_stub():
    with pytest.raises(ExerciseNotImplemented):
        check_causal_tiles(stub)

"""Checkers for the exercises of chapter 8 (decoding strategies)."""
from __future__ import annotations

import math

import torch

from minillm.exercises import ExerciseError, call, expect_close, passed
from minillm.generate import distinct_n, top_k_filter


def _as_float_list(got, what: str, n: int) -> list[float]:
    if isinstance(got, torch.Tensor):
        got = got.tolist()
    try:
        values = [float(x) for x in got]
    except (TypeError, ValueError):
        raise ExerciseError(f"{what}: expected a list of {n} numbers, got {got!r}") from None
    if len(values) != n:
        raise ExerciseError(f"{what}: expected {n} numbers, got {len(values)}")
    return values


def check_keep_top_k(keep_top_k) -> None:
    """keep_top_k(logits, k) -> list: the k largest logits kept, the others -inf
    (ties at the k-th place: lower index wins)."""
    cases = [([2.0, -1.0, 0.5, 3.0], 2), ([0.1, 0.2, 0.3], 1), ([1.0, 5.0, -2.0, 0.0, 4.0], 3),
             ([-3.0, -1.0, -2.0], 3), ([1.0, 2.0], 5), ([1.0, 1.0, 0.0, 1.0], 2)]
    for logits, k in cases:
        what = f"keep_top_k({logits}, k={k})"
        got = _as_float_list(call(keep_top_k, list(logits), k), what, len(logits))
        want = top_k_filter(torch.tensor([logits], dtype=torch.float64), k)[0].tolist()
        kept = sum(not math.isinf(x) for x in got)
        if kept != min(k, len(logits)):
            raise ExerciseError(f"{what} kept {kept} logits, expected {min(k, len(logits))}: "
                                f"keep exactly k (all of them if k >= the vocabulary size)")
        if any(not (g == w or math.isclose(g, w, rel_tol=1e-6)) for g, w in zip(got, want)):
            if any(math.isinf(g) and g > 0 for g in got):
                raise ExerciseError(f"{what}: removed tokens must get -inf (probability 0), not +inf")
            raise ExerciseError(f"{what}: expected {want}, got {got}: keep the k LARGEST logits "
                                f"unchanged (on a tie, the lower index first)")
    passed("top-k keeps the k largest logits and sets the rest to -inf")


def check_distinct_2(distinct_2) -> None:
    """distinct_2(sequences) -> float: distinct bigrams / all bigrams over a list of sequences."""
    cases = [[[1, 2, 3, 4]], [[1, 2, 1, 2, 1, 2]], [[1, 2, 3], [1, 2, 3]], [[5, 5, 5, 5]],
             [[1, 2], [2, 1], [1, 2]], [[7], [1, 2, 3]]]
    for sequences in cases:
        what = f"distinct_2({sequences})"
        got = call(distinct_2, [list(s) for s in sequences])
        want = distinct_n(sequences, 2)
        joined = distinct_n([[t for s in sequences for t in s]], 2)
        try:
            value = float(got)
        except (TypeError, ValueError):
            raise ExerciseError(f"{what}: expected a number, got {got!r}") from None
        if not math.isclose(value, want, rel_tol=1e-9) and math.isclose(value, joined, rel_tol=1e-9):
            raise ExerciseError(f"{what}: expected {want:.4g}, got {value:.4g}: did you join the sequences "
                                f"into one? A bigram must not span two different samples")
        expect_close(value, want, what)
    try:
        empty = float(call(distinct_2, [[1], [2]]))
    except ZeroDivisionError:
        raise ExerciseError("distinct_2([[1], [2]]) divided by zero: with no bigram at all, return 0.0") from None
    expect_close(empty, 0.0, "distinct_2([[1], [2]]) (no bigram at all)")
    passed("distinct-2 = distinct bigrams / all bigrams, counted within each sample")

"""Checkers for the exercises of the FlashAttention appendix."""
from __future__ import annotations

import math

from minillm.exercises import ExerciseError, call, expect_close, passed


def check_merge_softmax(merge) -> None:
    """merge(m1, l1, m2, l2) -> (m, l) for floats: the (max, sum of exp(x - max)) of a union."""
    cases = [([1.0, 2.0], [0.5, 3.0, -1.0]), ([10.0], [-5.0, -7.0]), ([0.0, 0.0], [0.0]), ([-3.0], [40.0, 39.0])]
    for a, b in cases:
        m1, m2 = max(a), max(b)
        l1, l2 = sum(math.exp(x - m1) for x in a), sum(math.exp(x - m2) for x in b)
        want_m = max(a + b)
        want_l = sum(math.exp(x - want_m) for x in a + b)
        what = f"merge({m1}, {l1:.4g}, {m2}, {l2:.4g})"
        got = call(merge, m1, l1, m2, l2)
        if not (isinstance(got, tuple) and len(got) == 2):
            raise ExerciseError(f"{what}: return a pair (m, l), got {got!r}")
        m, l = got
        expect_close(m, want_m, f"{what}: the new maximum")
        if math.isclose(float(l), l1 + l2, rel_tol=1e-9) and not math.isclose(l1 + l2, want_l, rel_tol=1e-9):
            raise ExerciseError(f"{what}: l1 and l2 are sums of exp(x - m1) and exp(x - m2), measured from "
                                f"different maxima; rescale each by exp(m_i - m) before adding")
        expect_close(l, want_l, f"{what}: the new sum", rel=1e-9)
    passed("m = max(m1, m2), l = l1 exp(m1 - m) + l2 exp(m2 - m): the union's statistics")


def check_causal_tiles(causal_tiles) -> None:
    """causal_tiles(T, block) -> number of block x block tiles a causal FlashAttention computes."""
    from minillm.flash import tiles_visited

    for T, block in [(64, 16), (100, 32), (7, 3), (1024, 64), (5, 8)]:
        want = tiles_visited(T, block, block)[0]
        what = f"causal_tiles({T}, {block})"
        got = call(causal_tiles, T, block)
        n = math.ceil(T / block)
        if got == want:
            continue
        if got == n * n:
            raise ExerciseError(f"{what}: that is every tile; causal attention skips tiles entirely above "
                                f"the diagonal (all their keys are in the queries' future)")
        if got == n * (n - 1) // 2:
            raise ExerciseError(f"{what}: the tiles ON the diagonal are needed too (half masked, not empty)")
        if got != want:
            raise ExerciseError(f"{what}: expected {want}, got {got!r}")
    passed("n(n+1)/2 tiles for n = ceil(T / block): the diagonal and everything below it")

"""Checkers for the exercises of chapter 7 (pretraining)."""
from __future__ import annotations

import math

from minillm.exercises import ExerciseError, call, expect_close, passed
from minillm.train import lr_at

IGNORE = -100


def check_lr_schedule(lr_schedule) -> None:
    """lr_schedule(step, peak_lr, warmup_steps, total_steps, min_lr) == minillm.train.lr_at."""
    cases = [(0, 1e-3, 10, 100, 1e-4), (4, 1e-3, 10, 100, 1e-4), (9, 1e-3, 10, 100, 1e-4),
             (10, 1e-3, 10, 100, 1e-4), (55, 1e-3, 10, 100, 1e-4), (99, 1e-3, 10, 100, 1e-4),
             (100, 1e-3, 10, 100, 1e-4), (150, 1e-3, 10, 100, 1e-4), (37, 3e-3, 0, 80, 0.0)]
    for step, peak, warmup, total, floor in cases:
        what = f"lr_schedule({step}, {peak}, {warmup}, {total}, {floor})"
        want = lr_at(step, peak, warmup, total, floor)
        got = call(lr_schedule, step, peak, warmup, total, floor)
        try:
            value = float(got)
        except (TypeError, ValueError):
            raise ExerciseError(f"{what}: expected a number, got {got!r}") from None
        if math.isclose(value, want, rel_tol=1e-6, abs_tol=1e-12):
            continue
        if step < warmup and math.isclose(value, peak * step / warmup, rel_tol=1e-6, abs_tol=1e-12):
            raise ExerciseError(f"{what}: warmup should reach peak*(step+1)/warmup_steps, so step 0 already "
                                f"gets a small positive rate (a rate of 0 wastes the first step); got {value:.6g}")
        if step >= warmup:
            progress = min(1.0, (step - warmup) / max(1, total - warmup))
            if math.isclose(value, peak * 0.5 * (1 + math.cos(math.pi * progress)), rel_tol=1e-6, abs_tol=1e-12):
                raise ExerciseError(f"{what}: the cosine should end at min_lr, not 0: "
                                    f"min_lr + (peak - min_lr) * 0.5 * (1 + cos(pi * progress)); got {value:.6g}")
        expect_close(value, want, what)
    passed("linear warmup, then a half cosine from peak_lr down to min_lr")


def check_next_token_targets(next_token_targets) -> None:
    """next_token_targets(ids, keep) -> targets[t] = ids[t+1] if keep[t+1] else -100; last -100."""
    cases = [([5, 6, 7, 8], [True, True, True, True]),
             ([1, 9, 9, 2, 1, 4], [False, True, True, True, False, True]),
             ([3, 4, 5], [True, False, True]),
             ([7], [True])]
    for ids, keep in cases:
        what = f"next_token_targets({ids}, {keep})"
        want = [ids[t + 1] if keep[t + 1] else IGNORE for t in range(len(ids) - 1)] + [IGNORE]
        got = call(next_token_targets, list(ids), list(keep))
        try:
            got = [int(v) for v in got]
        except (TypeError, ValueError):
            raise ExerciseError(f"{what}: expected a list of integers, got {got!r}") from None
        if got == want:
            continue
        if len(got) != len(ids):
            raise ExerciseError(f"{what}: expected {len(ids)} targets (one per position), got {len(got)}")
        unshifted = [i if k else IGNORE for i, k in zip(ids, keep)]
        if got == unshifted:
            raise ExerciseError(f"{what}: these are the labels, not shifted: position t must predict "
                                f"the NEXT token, ids[t + 1]; expected {want}")
        if got[:-1] == [ids[t + 1] if keep[t] else IGNORE for t in range(len(ids) - 1)]:
            raise ExerciseError(f"{what}: use the mask of the token being predicted (keep[t + 1]): "
                                f"expected {want}, got {got}")
        raise ExerciseError(f"{what}: expected {want}, got {got}")
    passed("targets[t] = ids[t + 1], -100 where that token is ignored and at the end")

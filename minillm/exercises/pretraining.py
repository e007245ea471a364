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


# ----------------------------------------------------------------- notebook 2

def check_clip_global_norm(clip_global_norm) -> None:
    """clip_global_norm(grads, max_norm) -> (clipped copies, global norm before clipping)."""
    import torch

    generator = torch.Generator().manual_seed(7)
    for shapes, max_norm in [([(3, 4), (5,), (2, 2, 2)], 0.5), ([(6,), (3, 3)], 100.0), ([(4, 4)], 1.0)]:
        grads = [torch.randn(*shape, generator=generator) for shape in shapes]
        originals = [g.clone() for g in grads]
        what = f"clip_global_norm(<{len(grads)} tensors>, {max_norm})"
        got = call(clip_global_norm, grads, max_norm)
        if not (isinstance(got, tuple) and len(got) == 2):
            raise ExerciseError(f"{what}: return a pair (clipped tensors, total norm), got {type(got).__name__}")
        clipped, total = got
        if any(not torch.equal(g, o) for g, o in zip(grads, originals)):
            raise ExerciseError(f"{what}: the input tensors were modified; return scaled copies instead")
        want_total = math.sqrt(sum(float((g.double() ** 2).sum()) for g in grads))
        per_tensor = [float(g.norm()) for g in grads]
        if len(grads) > 1 and math.isclose(float(total), sum(per_tensor), rel_tol=1e-5):
            raise ExerciseError(f"{what}: the global norm is sqrt of the sum of *squared* entries over all "
                                f"tensors, not the sum of the tensors' norms")
        expect_close(total, want_total, f"{what}: total norm", rel=1e-5)
        factor = min(1.0, max_norm / want_total)
        if len(clipped) != len(grads):
            raise ExerciseError(f"{what}: expected {len(grads)} clipped tensors, got {len(clipped)}")
        for i, (c, g) in enumerate(zip(clipped, grads)):
            if torch.allclose(c, g.clamp(-max_norm, max_norm)) and not torch.allclose(c, g * factor):
                raise ExerciseError(f"{what}: that clamps each entry; global-norm clipping multiplies every "
                                    f"tensor by the same factor min(1, max_norm / total_norm)")
            if torch.allclose(c, g * min(1.0, max_norm / per_tensor[i])) and not torch.allclose(c, g * factor):
                raise ExerciseError(f"{what}: tensor {i} was scaled by its own norm; use one factor from the "
                                    f"global norm of all tensors together")
            if not torch.allclose(c, g * factor, rtol=1e-5, atol=1e-7):
                raise ExerciseError(f"{what}: tensor {i} should be the input times {factor:.6g}")
    passed("one factor min(1, c/||g||) for all tensors, from the norm of all entries together")


def check_adamw_checkpoint_bytes(adamw_checkpoint_bytes) -> None:
    """adamw_checkpoint_bytes(shapes) -> bytes of fp32 weights + AdamW m, v + one step counter per tensor."""
    cases = [[(10, 4), (4,)], [(2048, 128), (128,), (384, 128), (128, 384)], [(7,)]]
    for shapes in cases:
        values = sum(math.prod(s) for s in shapes)
        want = 12 * values + 4 * len(shapes)
        what = f"adamw_checkpoint_bytes({shapes})"
        got = call(adamw_checkpoint_bytes, shapes)
        if not isinstance(got, (int, float)) or isinstance(got, bool):
            raise ExerciseError(f"{what}: expected a number of bytes, got {got!r}")
        if got == 12 * values:
            raise ExerciseError(f"{what}: almost: PyTorch's AdamW also stores a float32 step counter "
                                f"for every parameter tensor (4 bytes each)")
        if got in (4 * values + 4 * len(shapes), 8 * values + 4 * len(shapes), 4 * values):
            raise ExerciseError(f"{what}: a training checkpoint holds the weights AND both AdamW moments "
                                f"(m and v), each 4 bytes per value in fp32")
        if got != want:
            raise ExerciseError(f"{what}: expected {want:,} bytes, got {got:,}")
    passed("12 bytes per parameter (weights, m, v in fp32) plus 4 bytes per tensor for Adam's step")

"""The chapter-7 checkers accept right answers, reject wrong ones, and spot stubs."""
import math

import pytest

from minillm.exercises import ExerciseError, ExerciseNotImplemented
from minillm.exercises.pretraining import (check_adamw_checkpoint_bytes, check_clip_global_norm,
                                           check_lr_schedule, check_next_token_targets)


def stub(*args):
    raise NotImplementedError


def lr_schedule(step, peak, warmup, total, floor, off_by_one=False, to_zero=False):
    if step < warmup:
        return peak * (step if off_by_one else step + 1) / warmup
    progress = min(1.0, (step - warmup) / max(1, total - warmup))
    low = 0.0 if to_zero else floor
    return low + (peak - low) * 0.5 * (1 + math.cos(math.pi * progress))


def test_lr_schedule_accepts_correct(capsys):
    check_lr_schedule(lr_schedule)
    assert "✓ correct" in capsys.readouterr().out


@pytest.mark.parametrize("wrong, words", [
    (lambda *a: lr_schedule(*a, off_by_one=True), "warmup should reach"),
    (lambda *a: lr_schedule(*a, to_zero=True), "min_lr"),
    (lambda *a: a[1], "expected"),
    (lambda *a: "fast", "a number"),
])
def test_lr_schedule_rejects_wrong(wrong, words):
    with pytest.raises(ExerciseError, match=words):
        check_lr_schedule(wrong)


def next_token_targets(ids, keep):
    return [ids[t + 1] if keep[t + 1] else -100 for t in range(len(ids) - 1)] + [-100]


def test_next_token_targets_accepts_correct(capsys):
    check_next_token_targets(next_token_targets)
    assert "✓ correct" in capsys.readouterr().out


@pytest.mark.parametrize("wrong, words", [
    (lambda ids, keep: [i if k else -100 for i, k in zip(ids, keep)], "not shifted"),
    (lambda ids, keep: [ids[t + 1] if keep[t] else -100 for t in range(len(ids) - 1)] + [-100], r"keep\[t \+ 1\]"),
    (lambda ids, keep: ids[1:], "targets"),
    (lambda ids, keep: None, "list of integers"),
])
def test_next_token_targets_rejects_wrong(wrong, words):
    with pytest.raises(ExerciseError, match=words):
        check_next_token_targets(wrong)


@pytest.mark.parametrize("check", [check_lr_schedule, check_next_token_targets])
def test_stub_is_reported(check):
    with pytest.raises(ExerciseNotImplemented):
        check(stub)


# --- clip_global_norm

def clip_global_norm(grads, max_norm, mode="global", in_place=False):
    total = math.sqrt(sum(float((g.double() ** 2).sum()) for g in grads))
    if mode == "sum_of_norms":
        total = sum(float(g.norm()) for g in grads)
    if mode == "clamp":
        return [g.clamp(-max_norm, max_norm) for g in grads], total
    if mode == "per_tensor":
        return [g * min(1.0, max_norm / float(g.norm())) for g in grads], total
    factor = min(1.0, max_norm / total)
    if in_place:
        for g in grads:
            g.mul_(factor)
        return grads, total
    return [g * factor for g in grads], total


def test_clip_global_norm_accepts_correct(capsys):
    check_clip_global_norm(clip_global_norm)
    assert "✓ correct" in capsys.readouterr().out


@pytest.mark.parametrize("wrong, words", [
    (lambda g, c: clip_global_norm(g, c, mode="sum_of_norms"), "squared"),
    (lambda g, c: clip_global_norm(g, c, mode="clamp"), "clamps each entry"),
    (lambda g, c: clip_global_norm(g, c, mode="per_tensor"), "its own norm"),
    (lambda g, c: clip_global_norm(g, c, in_place=True), "modified"),
    (lambda g, c: clip_global_norm(g, c)[0], "pair"),
])
def test_clip_global_norm_rejects_wrong(wrong, words):
    with pytest.raises(ExerciseError, match=words):
        check_clip_global_norm(wrong)


def test_clip_global_norm_stub():
    with pytest.raises(ExerciseNotImplemented):
        check_clip_global_norm(stub)


# --- adamw_checkpoint_bytes

def adamw_checkpoint_bytes(shapes, moments=2, step=True):
    values = sum(math.prod(s) for s in shapes)
    return 4 * (1 + moments) * values + (4 * len(shapes) if step else 0)


def test_adamw_checkpoint_bytes_accepts_correct(capsys):
    check_adamw_checkpoint_bytes(adamw_checkpoint_bytes)
    assert "✓ correct" in capsys.readouterr().out


@pytest.mark.parametrize("wrong, words", [
    (lambda s: adamw_checkpoint_bytes(s, step=False), "step counter"),
    (lambda s: adamw_checkpoint_bytes(s, moments=0), "both AdamW moments"),
    (lambda s: adamw_checkpoint_bytes(s, moments=1), "both AdamW moments"),
    (lambda s: adamw_checkpoint_bytes(s) + 1, "expected"),
    (lambda s: "many", "number of bytes"),
])
def test_adamw_checkpoint_bytes_rejects_wrong(wrong, words):
    with pytest.raises(ExerciseError, match=words):
        check_adamw_checkpoint_bytes(wrong)


def test_adamw_checkpoint_bytes_stub():
    with pytest.raises(ExerciseNotImplemented):
        check_adamw_checkpoint_bytes(stub)

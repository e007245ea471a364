"""The chapter-7 checkers accept right answers, reject wrong ones, and spot stubs."""
import math

import pytest

from minillm.exercises import ExerciseError, ExerciseNotImplemented
from minillm.exercises.pretraining import check_lr_schedule, check_next_token_targets


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

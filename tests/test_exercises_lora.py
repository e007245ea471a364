"""The chapter-13 checkers accept right answers, reject wrong ones, and spot stubs."""

import math

import pytest
import torch

from minillm.exercises import ExerciseError, ExerciseNotImplemented
from minillm.exercises.lora import check_merge_lora_weight, check_quantize_block


def stub(*args, **kwargs):
    raise NotImplementedError


def merge(W, A, B, alpha, r, rslora=False):
    return W + (alpha / math.sqrt(r) if rslora else alpha / r) * B @ A


def quantize_block(x, code):
    absmax = x.abs().max()
    return (x / absmax - code[:, None]).abs().argmin(0), absmax


def test_accept_correct(capsys):
    check_merge_lora_weight(merge)
    check_quantize_block(quantize_block)
    assert capsys.readouterr().out.count("✓ correct") == 2


@pytest.mark.parametrize(
    "check, wrong, words",
    [
        (
            check_merge_lora_weight,
            lambda W, A, B, alpha, r, rslora=False: W,
            "equals W",
        ),
        (
            check_merge_lora_weight,
            lambda W, A, B, alpha, r, rslora=False: W + B @ A,
            "scaled",
        ),
        (
            check_merge_lora_weight,
            lambda W, A, B, alpha, r, rslora=False: merge(
                W, A, B, alpha, r, not rslora
            ),
            "wrong scale",
        ),
        (
            check_merge_lora_weight,
            lambda W, A, B, alpha, r, rslora=False: merge(W, A, B, alpha, r, rslora).T,
            "shape",
        ),
        (check_quantize_block, lambda x, code: quantize_block(x, code)[0], "pair"),
        (
            check_quantize_block,
            lambda x, code: (quantize_block(x, code)[0], x.max()),
            "absmax",
        ),
        (
            check_quantize_block,
            lambda x, code: (
                (x / x.abs().max() - code[:, None]).abs().argmax(0),
                x.abs().max(),
            ),
            "nearer",
        ),
    ],
)
def test_reject_wrong(check, wrong, words):
    with pytest.raises(ExerciseError, match=words):
        check(wrong)


def test_stub():
    for check in (check_merge_lora_weight, check_quantize_block):
        with pytest.raises(ExerciseNotImplemented):
            check(stub)

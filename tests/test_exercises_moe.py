"""The chapter-9 checkers accept right answers, reject wrong ones, and spot stubs."""
import math

import pytest
import torch

from minillm.exercises import ExerciseError, ExerciseNotImplemented
from minillm.exercises.moe import check_bias_update, check_expert_capacity, check_switch_balance_loss, \
    check_top_k_gates


def stub(*args):
    raise NotImplementedError


def top_k_gates(logits, k):
    top = logits.topk(k, dim=-1)
    return top.indices, top.values.softmax(-1)


def switch_balance_loss(probs, experts, n_experts, per_token=False):
    counts = torch.bincount(experts.flatten(), minlength=n_experts).float()
    f = counts / (experts.shape[0] if per_token else experts.numel())
    return n_experts * (f * probs.mean(0)).sum()


def bias_update(bias, load, rate, flipped=False):
    step = rate * torch.sign(load.mean() - load)
    return bias - step if flipped else bias + step


def capacity(n, e, k, c):
    return math.ceil(c * n * k / e)


def test_accept_correct(capsys):
    check_top_k_gates(top_k_gates)
    check_top_k_gates(lambda logits, k: tuple(t.flip(-1) for t in top_k_gates(logits, k)))  # any order
    check_switch_balance_loss(switch_balance_loss)
    check_bias_update(bias_update)
    check_expert_capacity(capacity)
    assert capsys.readouterr().out.count("✓ correct") == 5


@pytest.mark.parametrize("check, wrong, words", [
    (check_top_k_gates, lambda l, k: (l.topk(k, -1).indices, l.softmax(-1).topk(k, -1).values), "renormalise"),
    (check_top_k_gates, lambda l, k: (l.topk(k, -1, largest=False).indices, l.topk(k, -1).values.softmax(-1)),
     "wrong experts"),
    (check_top_k_gates, lambda l, k: (l.topk(k, -1).indices, torch.full((l.shape[0], k), 1 / k)), "softmax over"),
    (check_top_k_gates, lambda l, k: l.topk(k, -1).indices, "pair"),
    (check_switch_balance_loss, lambda p, e, n: switch_balance_loss(p, e, n, per_token=True), "k=2 times"),
    (check_switch_balance_loss, lambda p, e, n: (p.mean(0) ** 2).sum(), "expected"),
    (check_bias_update, lambda b, l, r: bias_update(b, l, r, flipped=True), "sign is flipped"),
    (check_bias_update, lambda b, l, r: b + r * (l.mean() - l), "rate \\* sign"),
    (check_expert_capacity, lambda n, e, k, c: math.ceil(c * n / e), "top_k"),
    (check_expert_capacity, lambda n, e, k, c: math.floor(c * n * k / e), "round up"),
    (check_expert_capacity, lambda n, e, k, c: c * n * k / e, "whole number"),
])
def test_reject_wrong(check, wrong, words):
    with pytest.raises(ExerciseError, match=words):
        check(wrong)


@pytest.mark.parametrize("check", [check_top_k_gates, check_switch_balance_loss, check_bias_update,
                                   check_expert_capacity])
def test_stub_is_reported(check):
    with pytest.raises(ExerciseNotImplemented):
        check(stub)

"""The chapter-14 checkers accept right answers, reject wrong ones, and spot stubs."""
import pytest
import torch
import torch.nn.functional as F

from minillm.exercises import ExerciseError, ExerciseNotImplemented
from minillm.exercises.dpo import check_completion_log_prob, check_dpo_sigmoid_loss, check_optimal_policy


def stub(*args):
    raise NotImplementedError


def completion_log_prob(logits, ids, prompt_len, shift=1, start=None, probs=False):
    logp = logits.log_softmax(-1)
    start = prompt_len if start is None else start
    terms = [logp[t - shift, ids[t]] for t in range(start, len(ids))]
    return sum(t.exp() for t in terms) if probs else sum(terms)


def dpo_sigmoid_loss(c, r, rc, rr, beta, reference=True, sign=1, use_beta=True, mean=True):
    delta = (c - rc) - (r - rr) if reference else c - r
    losses = -F.logsigmoid(sign * (beta if use_beta else 1) * delta)
    return losses.mean() if mean else losses


def optimal_policy(ref, rewards, beta, times=False, normalise=True):
    p = ref * torch.exp(rewards * beta if times else rewards / beta)
    return p / p.sum() if normalise else p


def test_accept_correct(capsys):
    check_completion_log_prob(completion_log_prob)
    check_dpo_sigmoid_loss(dpo_sigmoid_loss)
    check_optimal_policy(optimal_policy)
    assert capsys.readouterr().out.count("✓ correct") == 3


@pytest.mark.parametrize("check, wrong, words", [
    (check_completion_log_prob, lambda l, i, p: completion_log_prob(l, i, p, shift=0), "off by one"),
    (check_completion_log_prob, lambda l, i, p: completion_log_prob(l, i, p, start=1), "prompt tokens"),
    (check_completion_log_prob, lambda l, i, p: completion_log_prob(l, i, p, probs=True), "LOG-prob"),
    (check_dpo_sigmoid_loss, lambda *a: dpo_sigmoid_loss(*a, reference=False), "reference model"),
    (check_dpo_sigmoid_loss, lambda *a: dpo_sigmoid_loss(*a, sign=-1), "sign is flipped"),
    (check_dpo_sigmoid_loss, lambda *a: dpo_sigmoid_loss(*a, use_beta=False), "beta is missing"),
    (check_dpo_sigmoid_loss, lambda *a: dpo_sigmoid_loss(*a, mean=False), "one number"),
    (check_optimal_policy, lambda *a: optimal_policy(*a, times=True), "divide the rewards"),
    (check_optimal_policy, lambda *a: optimal_policy(*a, normalise=False), "partition function"),
    (check_optimal_policy, lambda ref, r, b: ref, "expected"),
])
def test_reject_wrong(check, wrong, words):
    with pytest.raises(ExerciseError, match=words):
        check(wrong)


@pytest.mark.parametrize("check", [check_completion_log_prob, check_dpo_sigmoid_loss, check_optimal_policy])
def test_stub_is_named(check):
    with pytest.raises(ExerciseNotImplemented):
        check(stub)

"""The chapter-15 checkers accept right answers, reject wrong ones, and spot stubs."""
import re

import pytest
import torch

from minillm.exercises import ExerciseError, ExerciseNotImplemented
from minillm.exercises.grpo import check_format_reward, check_group_advantages, check_k3


def stub(*args):
    raise NotImplementedError


def advantages(rewards, g):
    groups = rewards.view(-1, g)
    return ((groups - groups.mean(1, keepdim=True)) / (groups.std(1, keepdim=True) + 1e-4)).flatten()


def k3(logp, ref):
    d = ref - logp
    return d.exp() - d - 1


TAG_FREE = r"(?:(?!</?think>|</?answer>).)*"


def format_ok(text):
    m = re.fullmatch(rf"<think>({TAG_FREE})</think><answer>({TAG_FREE})</answer>", text, re.S)
    return float(bool(m) and m[1].strip() != "" and m[2].strip() != "")


def test_accept_correct(capsys):
    check_group_advantages(advantages)
    check_k3(k3)
    check_format_reward(format_ok)
    assert capsys.readouterr().out.count("✓ correct") == 3


@pytest.mark.parametrize("check, wrong, words", [
    (check_group_advantages, lambda r, g: advantages(r, g) * 0 + (r - r.mean()) / (r.std() + 1e-4),
     "whole batch"),
    (check_group_advantages, lambda r, g: ((r.view(-1, g) - r.view(-1, g).mean(1, keepdim=True))
                                           / r.view(-1, g).std(1, keepdim=True)).flatten(), "NaN"),
    (check_group_advantages, lambda r, g: ((r.view(-1, g) - r.view(-1, g).mean(1, keepdim=True))
                                           / (r.view(-1, g).std(1, keepdim=True, unbiased=False) + 1e-4)
                                           ).flatten(), "sample std"),
    (check_k3, lambda logp, ref: k3(ref, logp), "swapped"),
    (check_k3, lambda logp, ref: logp - ref, "never negative"),
    (check_format_reward, lambda t: float("<think>" in t and "<answer>" in t), "must reject"),
    (check_format_reward, lambda t: float(bool(re.search(r"<think>.*</think><answer>.*</answer>", t))),
     "must reject"),
    (check_format_reward, lambda t: "yes", "1.0 or 0.0"),
])
def test_reject_wrong(check, wrong, words):
    with pytest.raises(ExerciseError, match=words):
        check(wrong)


@pytest.mark.parametrize("check", [check_group_advantages, check_k3, check_format_reward])
def test_stub_is_named(check):
    with pytest.raises(ExerciseNotImplemented):
        check(stub)

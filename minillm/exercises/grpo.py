"""Checkers for the exercises of chapter 15 (reasoning with RL: rewards and GRPO)."""
from __future__ import annotations

import torch

from minillm.exercises import ExerciseError, call, expect_tensor, passed
from minillm.grpo import group_advantages, k3_kl
from minillm.rewards import format_reward


def check_group_advantages(advantages_fn) -> None:
    """advantages_fn(rewards [N], group_size) -> [N]: (r - group mean) / (group std + 1e-4)."""
    cases = [(torch.tensor([1.0, 0.0, 0.0, 0.0, 2.0, 2.0, 2.0, 2.0]), 4),  # one group gives no signal
             (torch.tensor([2.0, 0.0, 1.0, 1.0]), 4),
             (torch.tensor([0.0, 2.0, 1.0, 2.0, 0.0, 0.0]), 3),
             (torch.rand(16, generator=torch.Generator().manual_seed(0)).round(), 8)]
    for rewards, g in cases:
        what = f"advantages_fn({rewards.tolist()}, group_size={g})"
        got = expect_tensor(call(advantages_fn, rewards.clone(), g), tuple(rewards.shape), what)
        want = group_advantages(rewards, g)[0].double()
        if torch.isnan(got).any():
            raise ExerciseError(f"{what}: got NaN. A group whose rewards are all equal has std 0; add "
                                f"eps = 1e-4 to the std so its advantages come out 0, not 0 / 0")
        groups = rewards.view(-1, g)
        whole = (rewards - rewards.mean()) / (rewards.std() + 1e-4)
        if len(groups) > 1 and torch.allclose(got, whole.double(), atol=1e-5):
            raise ExerciseError(f"{what}: you normalised over the whole batch; GRPO compares each "
                                f"completion with the other completions of the *same prompt* (its group "
                                f"of {g} consecutive entries)")
        biased = ((groups - groups.mean(1, keepdim=True)) / (groups.std(1, unbiased=False)[:, None] + 1e-4))
        if torch.allclose(got, biased.flatten().double(), atol=1e-5) and not torch.allclose(got, want, atol=1e-5):
            raise ExerciseError(f"{what}: use the sample std (n - 1 in the denominator, torch's default "
                                f"``.std()``), as trl does")
        if not torch.allclose(got, want, atol=1e-5):
            raise ExerciseError(f"{what}: expected {[round(x, 4) for x in want.tolist()]}, "
                                f"got {[round(x, 4) for x in got.tolist()]}")
    passed("group-relative advantages: zero-sum within each group, 0 for all-equal groups")


def check_k3(k3_fn) -> None:
    """k3_fn(logp [N], ref_logp [N]) -> [N]: exp(ref - logp) - (ref - logp) - 1."""
    g = torch.Generator().manual_seed(3)
    logp, ref = -torch.rand(12, generator=g) * 3, -torch.rand(12, generator=g) * 3
    what = "k3_fn(logp [12], ref_logp [12])"
    got = expect_tensor(call(k3_fn, logp.clone(), ref.clone()), (12,), what)
    want = k3_kl(logp, ref).double()
    if torch.allclose(got, k3_kl(ref, logp).double(), atol=1e-6):
        raise ExerciseError(f"{what}: the two log-probs are swapped: with d = ref_logp - logp, "
                            f"k3 = exp(d) - d - 1 (samples come from the policy, not the reference)")
    if (got < -1e-9).any():
        raise ExerciseError(f"{what}: k3 is never negative (e^d >= 1 + d), but you returned "
                            f"{got.min().item():.4f}; did you compute k1 = logp - ref_logp?")
    if not torch.allclose(got, want, atol=1e-6):
        raise ExerciseError(f"{what}: expected {want[:3].tolist()}... got {got[:3].tolist()}...")
    passed("k3: non-negative, zero where the policy agrees with the reference")


#: (completion, what a strict format reward must say, why) for check_format_reward.
FORMAT_CASES = [
    ("<think>3 + 5 = 8.</think><answer>8</answer>", 1.0, "a well-formed completion"),
    ("<think>3 + 5 = 8.</think><answer>8</answer><answer>8</answer>", 0.0, "the answer block repeated"),
    ("<think></think><answer>8</answer>", 0.0, "an empty think block"),
    ("<think>3 + 5 = 8.</think><answer>8</answer> 8", 0.0, "text after the answer"),
    ("8 <think>3 + 5 = 8.</think><answer>8</answer>", 0.0, "text before the think block"),
    ("<think>3 + 5 = 8.</think>8", 0.0, "the answer outside the tags"),
    ("<answer>8</answer><think>3 + 5 = 8.</think>", 0.0, "the blocks in the wrong order"),
    ("<think>3 + 5 <think>= 8.</think><answer>8</answer>", 0.0, "a tag inside the think block"),
    ("<think>3 + 5 = 8.</think><answer> </answer>", 0.0, "a blank answer"),
]


def check_format_reward(format_fn) -> None:
    """format_fn(text) -> 1.0 or 0.0, as strict as ``minillm.rewards.format_reward``."""
    for text, want, why in FORMAT_CASES:
        assert format_reward(text) == want  # the book's own rule agrees with the table
        got = call(format_fn, text)
        if got not in (0, 1, 0.0, 1.0, True, False):
            raise ExerciseError(f"format_fn({text!r}) should return 1.0 or 0.0, got {got!r}")
        if float(got) != want:
            verdict = "accept" if want else "reject"
            raise ExerciseError(f"format_fn({text!r}) returned {float(got)}: a strict format reward must "
                                f"{verdict} {why}. Whatever a reward lets through, RL will find")
    passed(f"all {len(FORMAT_CASES)} cases, including {len(FORMAT_CASES) - 1} reward hacks")

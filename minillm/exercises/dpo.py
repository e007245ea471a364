"""Checkers for the exercises of chapter 14 (preference optimization)."""
from __future__ import annotations

import torch
import torch.nn.functional as F

from minillm.dpo import dpo_loss
from minillm.exercises import ExerciseError, expect_number, call, expect_close, expect_tensor, passed


def check_completion_log_prob(completion_log_prob) -> None:
    """completion_log_prob(logits [T, V], ids [T], prompt_len) -> sum over the
    completion ids[prompt_len:] of log p(ids[t] | ids[:t]); logits[t] predicts ids[t + 1]."""
    gen = torch.Generator().manual_seed(0)
    for T, V, prompt_len in [(6, 5, 2), (9, 7, 5), (4, 3, 3)]:
        logits = torch.randn(T, V, generator=gen, dtype=torch.float64) * 2
        ids = torch.randint(V, (T,), generator=gen)
        what = f"completion_log_prob(logits [{T}, {V}], ids [{T}], prompt_len={prompt_len})"
        logp = logits.log_softmax(-1)
        want = sum(logp[t - 1, ids[t]] for t in range(prompt_len, T)).item()
        got = expect_number(call(completion_log_prob, logits.clone(), ids.clone(), prompt_len), what)
        unshifted = sum(logp[t, ids[t]] for t in range(prompt_len, T)).item()
        with_prompt = sum(logp[t - 1, ids[t]] for t in range(1, T)).item()
        probs = sum(logp[t - 1, ids[t]].exp() for t in range(prompt_len, T)).item()
        if abs(got - unshifted) < 1e-9 and abs(want - unshifted) > 1e-9:
            raise ExerciseError(f"{what}: off by one position: token ids[t] is scored by the logits "
                                f"at t - 1 (the model predicts the NEXT token)")
        if abs(got - with_prompt) < 1e-9 and prompt_len > 1:
            raise ExerciseError(f"{what}: the prompt tokens were counted too; sum only over the "
                                f"completion, ids[prompt_len:]")
        if abs(got - probs) < 1e-9:
            raise ExerciseError(f"{what}: that is a sum of probabilities; sum LOG-probabilities "
                                f"(log_softmax), so the sequence's probability is their product")
        expect_close(got, want, what, rel=1e-6)
    passed("sum of the completion's token log-probs, each scored by the previous position")


def check_dpo_sigmoid_loss(dpo_sigmoid_loss) -> None:
    """dpo_sigmoid_loss(chosen, rejected, ref_chosen, ref_rejected, beta) -> mean loss;
    the first four are summed log-probs [B]."""
    gen = torch.Generator().manual_seed(1)
    for B, beta in [(4, 0.1), (7, 0.5), (1, 2.0)]:
        logps = [-20 * torch.rand(B, generator=gen, dtype=torch.float64) for _ in range(4)]
        what = f"dpo_sigmoid_loss(4 x [{B}] log-probs, beta={beta})"
        want = dpo_loss(*logps, beta=beta)[0].mean().item()
        got = expect_number(call(dpo_sigmoid_loss, *[x.clone() for x in logps], beta), what)
        c, r, rc, rr = logps
        no_reference = (-F.logsigmoid(beta * (c - r))).mean().item()
        flipped = (-F.logsigmoid(-beta * ((c - rc) - (r - rr)))).mean().item()
        no_beta = (-F.logsigmoid((c - rc) - (r - rr))).mean().item()
        if abs(got - no_reference) < 1e-9:
            raise ExerciseError(f"{what}: the reference model is missing: each reply's implicit "
                                f"reward is beta * (log pi - log pi_ref)")
        if abs(got - flipped) < 1e-9:
            raise ExerciseError(f"{what}: the sign is flipped: the loss must be small when the "
                                f"CHOSEN reply's reward is the larger one")
        if beta != 1 and abs(got - no_beta) < 1e-9:
            raise ExerciseError(f"{what}: beta is missing: multiply the reward difference by beta")
        expect_close(got, want, what, rel=1e-6)
    passed("-log sigmoid(beta * (chosen log-ratio - rejected log-ratio)), averaged over pairs")


def check_optimal_policy(optimal_policy) -> None:
    """optimal_policy(ref_probs [K], rewards [K], beta) -> probs [K] maximising
    E_pi[r] - beta * KL(pi || pi_ref): pi_ref * exp(r / beta) / Z."""
    gen = torch.Generator().manual_seed(2)
    for K, beta in [(4, 1.0), (6, 0.2), (3, 5.0)]:
        ref = torch.rand(K, generator=gen, dtype=torch.float64) + 0.1
        ref = ref / ref.sum()
        rewards = torch.randn(K, generator=gen, dtype=torch.float64)
        what = f"optimal_policy(ref_probs [{K}], rewards [{K}], beta={beta})"
        got = expect_tensor(call(optimal_policy, ref.clone(), rewards.clone(), beta), (K,), what)
        want = (ref.log() + rewards / beta).softmax(-1)
        times_beta = (ref.log() + rewards * beta).softmax(-1)
        unnormalised = ref * (rewards / beta).exp()
        if beta != 1 and torch.allclose(got, times_beta, atol=1e-9):
            raise ExerciseError(f"{what}: divide the rewards by beta (a large beta keeps pi close "
                                f"to pi_ref), do not multiply them")
        if torch.allclose(got, unnormalised, atol=1e-9):
            raise ExerciseError(f"{what}: the probabilities do not sum to 1: divide by the "
                                f"partition function Z = sum_y pi_ref(y) exp(r(y) / beta)")
        if not torch.allclose(got, want, atol=1e-9):
            raise ExerciseError(f"{what}: expected {[round(p, 4) for p in want.tolist()]}, "
                                f"got {[round(p, 4) for p in got.tolist()]}")
    passed("pi*(y) = pi_ref(y) exp(r(y) / beta) / Z")

"""Checkers for the exercises of chapter 9 (mixture of experts)."""
from __future__ import annotations

import math

import torch

from minillm.exercises import ExerciseError, call, expect_close, expect_tensor, passed
from minillm.moe import balance_loss, expert_capacity, route


def _by_expert(experts: torch.Tensor, gates: torch.Tensor):
    """Sort each token's (expert, gate) pairs by expert id, so any order is accepted."""
    order = experts.argsort(-1)
    return experts.gather(-1, order), gates.gather(-1, order)


def check_top_k_gates(top_k_gates) -> None:
    """top_k_gates(logits [N, E], k) -> (experts [N, k], gates [N, k]), Mixtral's rule."""
    torch.manual_seed(0)
    for N, E, k in [(5, 4, 2), (3, 8, 1), (6, 8, 3), (2, 3, 3)]:
        logits = torch.randn(N, E) * 2
        what = f"top_k_gates(logits [{N}, {E}], k={k})"
        got = call(top_k_gates, logits.clone(), k)
        if not isinstance(got, (tuple, list)) or len(got) != 2:
            raise ExerciseError(f"{what}: expected a pair (experts, gates), got {type(got).__name__}")
        experts = expect_tensor(got[0], (N, k), f"{what} experts").long()
        gates = expect_tensor(got[1], (N, k), f"{what} gates")
        want_experts, want_gates = route(logits.double().softmax(-1), k)
        want_experts, want_gates = _by_expert(want_experts, want_gates)
        experts, gates = _by_expert(experts, gates)
        if not torch.equal(experts, want_experts):
            raise ExerciseError(f"{what}: wrong experts chosen; each token takes the k experts with the "
                                f"largest logits, expected {want_experts.tolist()}, got {experts.tolist()}")
        if torch.allclose(gates, logits.double().softmax(-1).gather(-1, want_experts), atol=1e-6) and k < E:
            raise ExerciseError(f"{what}: the gates are softmax probabilities over all {E} experts; renormalise "
                                f"them over the k chosen ones so each token's gates sum to 1")
        if not torch.allclose(gates, want_gates, atol=1e-6):
            raise ExerciseError(f"{what}: gates should be a softmax over the k chosen logits, expected "
                                f"{want_gates[0].tolist()} for token 0, got {gates[0].tolist()}")
    passed("top-k experts, and a softmax over their logits (Mixtral's gates)")


def check_switch_balance_loss(switch_balance_loss) -> None:
    """switch_balance_loss(probs [N, E], experts [N, k], n_experts) -> E * sum_i f_i P_i."""
    torch.manual_seed(1)
    uniform = (torch.full((4, 4), 0.25), torch.tensor([[0, 1], [2, 3], [0, 1], [2, 3]]), 4)
    skewed_probs = torch.tensor([[0.7, 0.1, 0.1, 0.1]]).repeat(6, 1)
    skewed = (skewed_probs, torch.tensor([[0, 1]]).repeat(6, 1), 4)
    probs = torch.randn(10, 5).softmax(-1)
    rand = (probs, probs.topk(2, -1).indices, 5)
    single = (probs, probs.topk(1, -1).indices, 5)
    for probs_, experts, E in (uniform, skewed, rand, single):
        what = f"switch_balance_loss(probs {list(probs_.shape)}, experts {list(experts.shape)}, {E})"
        want = balance_loss(probs_, experts, E).item()
        got = call(switch_balance_loss, probs_.clone(), experts.clone(), E)
        got = float(got.detach()) if isinstance(got, torch.Tensor) else got
        k = experts.shape[1]
        if k > 1 and isinstance(got, float) and math.isclose(got, k * want, rel_tol=1e-5):
            raise ExerciseError(f"{what}: got {got:.4f}, k={k} times too big: f_i is the share of all N*k "
                                f"assignments (divide the counts by N*k, not N), so uniform routing gives 1")
        expect_close(got, want, what, rel=1e-5)
    passed("E * sum_i f_i P_i: 1 when uniform, more when skewed")


def check_bias_update(bias_update) -> None:
    """bias_update(bias [E], load [E], rate) -> bias + rate * sign(mean(load) - load)."""
    cases = [(torch.zeros(4), torch.tensor([10.0, 2.0, 2.0, 2.0]), 0.1),
             (torch.tensor([0.3, -0.2, 0.0]), torch.tensor([5.0, 5.0, 8.0]), 0.01),
             (torch.tensor([0.1, 0.1]), torch.tensor([3.0, 3.0]), 0.5)]
    for bias, load, rate in cases:
        what = f"bias_update({bias.tolist()}, {load.tolist()}, {rate})"
        want = bias + rate * torch.sign(load.mean() - load)
        got = expect_tensor(call(bias_update, bias.clone(), load.clone(), rate), tuple(bias.shape), what)
        if torch.allclose(got, (bias - rate * torch.sign(load.mean() - load)).double()) and not torch.equal(want, bias):
            raise ExerciseError(f"{what}: the sign is flipped: an overloaded expert (load above the mean) "
                                f"must get a LOWER bias so it is chosen less often")
        if not torch.allclose(got, want.double(), atol=1e-9):
            raise ExerciseError(f"{what}: expected {want.tolist()}, got {got.tolist()} (the step is rate * sign, "
                                f"not proportional to the load gap)")
    passed("underloaded experts go up by rate, overloaded ones down")


def check_expert_capacity(capacity) -> None:
    """capacity(n_tokens, n_experts, top_k, capacity_factor) -> ceil(c * N * k / E)."""
    for n, E, k, c in [(1024, 8, 2, 1.0), (1000, 8, 2, 1.25), (7, 4, 1, 1.0), (100, 64, 6, 1.5), (10, 3, 2, 0.5)]:
        what = f"capacity({n}, {E}, {k}, {c})"
        want = expert_capacity(n, E, k, c)
        got = call(capacity, n, E, k, c)
        if isinstance(got, float) and not got.is_integer():
            raise ExerciseError(f"{what}: a capacity is a whole number of tokens; round UP (math.ceil), got {got}")
        if got == math.ceil(c * n / E) and k > 1:
            raise ExerciseError(f"{what}: each token makes k={k} assignments, so multiply by top_k; got {got}")
        if got == math.floor(c * n * k / E) != want:
            raise ExerciseError(f"{what}: round up, not down (math.ceil): got {got}, expected {want}")
        expect_close(got, want, what)
    passed("ceil(c * N * k / E) tokens per expert")

"""Mixture of experts: many SwiGLU MLPs per layer, each token uses only k of them.

    probs   = softmax(x W_r)                  router: a probability per expert [N, E]
    chosen  = top-k of (probs + bias)         bias: aux-loss-free balancing (selection only)
    gates   = probs[chosen] / sum(...)        renormalised over the k chosen experts
    y       = sum_j gates_j * expert_j(x) + shared(x)

Renormalising the top-k softmax probabilities is the same as a softmax over
the k chosen logits (Mixtral, Jiang et al. 2024; also GShard's top-2). Switch
(k = 1, Fedus et al. 2022) and DeepSeek-V2 keep the unrenormalised probability
(``router_norm_topk=False``): with k = 1 a renormalised gate is always 1, and
the router would get no gradient from the language-model loss at all.
(DeepSeek-V3 scores experts with a sigmoid and does normalise the chosen
scores to sum to 1; this module's router is a softmax.)

Dispatch is honest about compute: each expert runs only on the tokens routed
to it (gather with ``index_select``, scatter back with ``index_add_``). With a
``capacity_factor`` c an expert takes at most ceil(c * N * k / E) of its tokens,
first come first served in token order; the rest are *dropped*: that expert
adds nothing for them, and a token dropped by all its experts passes through
the block on the residual stream unchanged.

Balancing. Left alone, a router tends to favour the experts that happen to be
trained most, which makes them better, which makes them favoured: *collapse*.
Two cures: Switch's auxiliary loss ``balance_loss`` (added to the LM loss by
``Transformer.forward``), or DeepSeek-V3's per-expert bias (Wang et al. 2024),
nudged after every optimizer step by ``update_router_biases`` (in training,
pass ``RouterBiasUpdate()`` to the Trainer's callbacks); it changes which
experts are chosen but never the gate weights, and it gets no gradient.

This module is a leaf: it defines its own expert MLP (the same SwiGLU as
``minillm.model``'s, with the same parameter names) so that the model imports
the mixture and never the reverse.

Shapes: B batch, T tokens, N = B*T tokens, d d_model, E experts, k top-k.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from .config import ModelConfig


class Expert(nn.Module):
    """One expert: down(silu(gate(x)) * up(x)), d -> d_ff -> d (a SwiGLU MLP)."""

    def __init__(self, d_model: int, d_ff: int, bias: bool = False):
        super().__init__()
        self.gate_proj = nn.Linear(d_model, d_ff, bias=bias)
        self.up_proj = nn.Linear(d_model, d_ff, bias=bias)
        self.down_proj = nn.Linear(d_ff, d_model, bias=bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.down_proj(F.silu(self.gate_proj(x)) * self.up_proj(x))


def expert_capacity(n_tokens: int, n_experts: int, top_k: int, capacity_factor: float | None) -> int | None:
    """Most tokens one expert may take: ceil(c * N * k / E); None means no cap."""
    if capacity_factor is None:
        return None
    return math.ceil(capacity_factor * n_tokens * top_k / n_experts)


def route(probs: torch.Tensor, top_k: int, bias: torch.Tensor | None = None,
          norm_topk: bool = True) -> tuple[torch.Tensor, torch.Tensor]:
    """Choose k experts per token: probs [N, E] -> (experts [N, k] long, gates [N, k]).

    ``bias`` [E] shifts the scores used to *choose* only; the gates are always
    the router's own probabilities (renormalised over the k when ``norm_topk``).
    """
    if top_k > probs.shape[-1]:
        raise ValueError(f"top_k={top_k} is larger than the number of experts {probs.shape[-1]}")
    scores = probs if bias is None else probs + bias
    experts = scores.topk(top_k, dim=-1).indices
    gates = probs.gather(-1, experts)
    if norm_topk:
        gates = gates / gates.sum(-1, keepdim=True)
    return experts, gates


def balance_loss(probs: torch.Tensor, experts: torch.Tensor, n_experts: int) -> torch.Tensor:
    """Switch's load-balancing loss E * sum_i f_i P_i (Fedus et al. 2022).

    probs [N, E]: router probabilities; experts [N, k]: the chosen experts.
    f_i = share of the N*k assignments that go to expert i (not differentiable),
    P_i = mean router probability of expert i (differentiable). Both uniform
    gives exactly 1; any skew that the router's probabilities follow gives more.
    """
    f = torch.bincount(experts.flatten(), minlength=n_experts).to(probs.dtype) / experts.numel()
    P = probs.mean(0)
    return n_experts * (f * P).sum()


class MoE(nn.Module):
    """A mixture-of-experts MLP, [B, T, d] -> [B, T, d] (a drop-in for SwiGLU).

    After each forward, ``stats`` holds the routing of that batch: ``load`` [E]
    (assignments each expert was asked to take), ``kept`` [E] (what it took,
    after the capacity cap), ``dropped`` (assignments over capacity), and
    ``aux_loss`` holds the balance loss (a tensor with gradient).
    """

    def __init__(self, config: ModelConfig):
        super().__init__()
        if config.moe is None:
            raise ValueError("MoE needs a config with a mixture of experts (moe=MoEConfig(...))")
        self.config = config.moe
        d, E, f, bias = config.d_model, config.moe.n_experts, config.expert_d_ff, config.mlp_bias
        self.router = nn.Linear(d, E, bias=False)
        self.experts = nn.ModuleList(Expert(d, f, bias) for _ in range(E))
        # n shared experts of width f are one SwiGLU of width n*f: the same sum.
        n_shared = config.moe.n_shared_experts
        self.shared = Expert(d, n_shared * f, bias) if n_shared else None
        # Aux-loss-free balancing: a buffer (saved with the model, no gradient),
        # plus the load counted since the last update.
        self.register_buffer("router_bias", torch.zeros(E))
        self.register_buffer("load_since_update", torch.zeros(E), persistent=False)
        self.stats: dict = {}
        self.aux_loss: torch.Tensor | None = None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        B, T, d = x.shape
        cfg = self.config
        h = x.reshape(B * T, d)
        probs = self.router(h).float().softmax(-1)                                  # [N, E]
        bias = self.router_bias if cfg.router_balance == "bias" else None
        experts, gates = route(probs, cfg.experts_top_k, bias, cfg.router_norm_topk)  # [N, k]
        self.aux_loss = balance_loss(probs, experts, cfg.n_experts)

        # One row per (token, expert) assignment, in token order.
        flat_expert = experts.flatten()                                             # [N*k]
        flat_token = torch.arange(B * T, device=x.device).repeat_interleave(cfg.experts_top_k)
        flat_gate = gates.flatten().to(x.dtype)
        capacity = expert_capacity(B * T, cfg.n_experts, cfg.experts_top_k, cfg.capacity_factor)
        out = torch.zeros_like(h)
        kept = torch.zeros(cfg.n_experts, dtype=torch.long)
        for e, expert in enumerate(self.experts):
            rows = (flat_expert == e).nonzero().squeeze(1)  # this expert's assignments
            rows = rows[:capacity]                          # over capacity: dropped
            kept[e] = rows.numel()
            if rows.numel():
                tokens = flat_token[rows]
                y = expert(h.index_select(0, tokens)) * flat_gate[rows, None]
                out.index_add_(0, tokens, y)
        if self.shared is not None:
            out = out + self.shared(h)

        load = torch.bincount(flat_expert, minlength=cfg.n_experts).cpu()
        self.stats = {"load": load, "kept": kept, "dropped": int((load - kept).sum())}
        if self.training:
            self.load_since_update += load.to(self.load_since_update)
        return out.reshape(B, T, d)

    @torch.no_grad()
    def update_bias(self, rate: float | None = None) -> None:
        """DeepSeek-V3's rule: b_i += rate * sign(mean load - load_i), using the
        load counted since the last call (then reset). Underloaded experts
        become easier to choose, overloaded ones harder."""
        rate = self.config.bias_update_rate if rate is None else rate
        load = self.load_since_update
        self.router_bias += rate * torch.sign(load.mean() - load)
        load.zero_()


def moe_layers(model: nn.Module) -> list[MoE]:
    """Every MoE layer of ``model``, in order."""
    return [m for m in model.modules() if isinstance(m, MoE)]


def aux_loss(model: nn.Module) -> torch.Tensor:
    """Mean balance loss over the model's MoE layers, from its last forward."""
    layers = moe_layers(model)
    if not layers or any(m.aux_loss is None for m in layers):
        raise ValueError("aux_loss: the model has no MoE layer, or has not run a forward yet")
    return torch.stack([m.aux_loss for m in layers]).mean()


def update_router_biases(model: nn.Module, rate: float | None = None) -> None:
    """Call after each optimizer step: ``update_bias`` on every MoE layer."""
    for layer in moe_layers(model):
        layer.update_bias(rate)


class RouterBiasUpdate:
    """Trainer callback for ``router_balance="bias"``: after every optimizer
    step, ``update_router_biases`` on the (unwrapped) model.

        Trainer(model, cfg, data, callbacks=[RouterBiasUpdate()])
    """

    def __init__(self, rate: float | None = None):
        self.rate = rate

    def after_update(self, trainer) -> None:
        update_router_biases(getattr(trainer.model, "module", trainer.model), self.rate)


def expert_load(model: nn.Module) -> torch.Tensor:
    """Assignments per expert in the last forward, one row per layer: [L, E]."""
    return torch.stack([m.stats["load"] for m in moe_layers(model)])


def load_imbalance(load: torch.Tensor) -> torch.Tensor:
    """max load / mean load over the last dim: 1 is perfectly balanced, E is
    total collapse onto one expert."""
    load = load.float()
    return load.max(-1).values / load.mean(-1)

"""The book's transformer: a decoder-only model in the Llama / Qwen2 style.

    tokens -> embedding -> n_layers x Block -> RMSNorm -> LM head -> logits
    Block:  x = x + Attention(RMSNorm(x));  x = x + MLP(RMSNorm(x))   (pre-norm)

Attention (with GQA and the KV cache) lives in ``minillm.attention``, RoPE in
``minillm.rope``, the mixture of experts in ``minillm.moe`` and the
next-token loss in ``minillm.loss``; this file holds the rest and reads top to
bottom. Like nanoGPT's, the forward returns the loss when given labels, so
every training stage (and a DDP wrapper) goes through one call:

    logits = model(input_ids)                          # [B, T, V]
    logits, loss = model(input_ids, labels=labels)     # + the mean next-token loss Parameter
names are stable and close to HF's (``minillm.hf`` maps them one to one):

    embed.weight, blocks.{i}.attn_norm.weight, blocks.{i}.attn.{q,k,v,o}_proj.*,
    blocks.{i}.mlp_norm.weight, blocks.{i}.mlp.{gate,up,down}_proj.*,
    norm.weight, lm_head.weight (the same tensor as embed.weight when tied)

Extension points: the MLP of every block comes from ``build_mlp(config)``
(``config.moe`` puts a mixture of experts there, chapter 9), and every weight
matrix is a plain ``nn.Linear`` attribute (chapter 13 wraps them with LoRA by
name).

Shapes: B batch, T tokens, V vocabulary, d d_model.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .attention import Attention, KVCache
from .config import ModelConfig
from .loss import IGNORE_INDEX, REDUCTIONS, lm_loss  # noqa: F401  (IGNORE_INDEX: re-export)
from .moe import MoE, aux_loss
from .rope import rope_cos_sin


class RMSNorm(nn.Module):
    """x / sqrt(mean(x^2) + eps) * weight, per row (over the last dim, one token).

    Each token is rescaled by its own root mean square; unlike LayerNorm there
    is no mean subtraction and no bias. The statistics are computed in float32
    (at least): in bf16 a sum of d squares keeps only ~3 significant digits.
    """

    def __init__(self, dim: int, eps: float = 1e-5):
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        dtype = x.dtype
        h = x.to(torch.promote_types(dtype, torch.float32))
        h = h * torch.rsqrt(h.pow(2).mean(-1, keepdim=True) + self.eps)
        return self.weight * h.to(dtype)


class SwiGLU(nn.Module):
    """down(silu(gate(x)) * up(x)): a gated MLP, d -> d_ff -> d (Shazeer 2020)."""

    def __init__(self, config: ModelConfig):
        super().__init__()
        d, f, bias = config.d_model, config.d_ff, config.mlp_bias
        self.gate_proj = nn.Linear(d, f, bias=bias)
        self.up_proj = nn.Linear(d, f, bias=bias)
        self.down_proj = nn.Linear(f, d, bias=bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.down_proj(F.silu(self.gate_proj(x)) * self.up_proj(x))


class ReluMLP(nn.Module):
    """down(relu(up(x))): the original transformer's feed-forward layer."""

    def __init__(self, config: ModelConfig):
        super().__init__()
        self.up_proj = nn.Linear(config.d_model, config.d_ff, bias=config.mlp_bias)
        self.down_proj = nn.Linear(config.d_ff, config.d_model, bias=config.mlp_bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.down_proj(F.relu(self.up_proj(x)))


#: config.mlp -> layer class. Add an entry to give blocks a new kind of MLP.
MLP_CLASSES: dict[str, type[nn.Module]] = {"swiglu": SwiGLU, "relu": ReluMLP}


def build_mlp(config: ModelConfig) -> nn.Module:
    """The feed-forward layer of one block, [B, T, d] -> [B, T, d]: a mixture of
    experts when ``config.moe`` is set, else ``MLP_CLASSES[config.mlp]``."""
    if config.moe is not None:
        return MoE(config)
    return MLP_CLASSES[config.mlp](config)


class Block(nn.Module):
    """One pre-norm transformer block. The residual stream x is never normalised
    itself, only the copies read by attention and the MLP: gradients flow
    through the additions untouched, which keeps deep stacks trainable."""

    def __init__(self, config: ModelConfig, layer_idx: int):
        super().__init__()
        self.attn_norm = RMSNorm(config.d_model, config.norm_eps)
        self.attn = Attention(config, layer_idx)
        self.mlp_norm = RMSNorm(config.d_model, config.norm_eps)
        self.mlp = build_mlp(config)

    def forward(self, x, cos, sin, mask=None, kv_cache=None):
        """x [B, T, d] -> [B, T, d]; arguments as in ``Attention.forward``."""
        x = x + self.attn(self.attn_norm(x), cos, sin, mask, kv_cache)
        return x + self.mlp(self.mlp_norm(x))


def build_attention_mask(padding_mask: torch.Tensor | None, T: int, S: int,
                         device: torch.device | str | None = None) -> torch.Tensor | None:
    """Boolean "may attend" mask [B, 1, T, S] for T new queries over S positions.

    padding_mask [B, S]: 1 for real tokens, 0 for padding (past and new).
    Returns None when SDPA needs no mask (plain causal, or one new token
    without padding), which lets it take its fastest path.
    """
    if padding_mask is not None and bool(padding_mask.all()):
        padding_mask = None
    if padding_mask is None and (T == S or T == 1):
        return None
    key_pos = torch.arange(S, device=device)
    query_pos = torch.arange(S - T, S, device=device)  # new tokens come after the past
    mask = (key_pos[None, :] <= query_pos[:, None])[None, None]  # [1, 1, T, S]
    if padding_mask is not None:
        mask = mask & padding_mask.bool()[:, None, None, :]
        # A padding query may have nothing to attend to. An all-False row is
        # softmax over nothing, 0/0: NaN in several PyTorch versions and
        # kernels, and NaN spreads. Let it see everything (its output is unused).
        mask = mask | ~mask.any(dim=-1, keepdim=True)
    return mask


class Transformer(nn.Module):
    """Decoder-only language model: ``model(input_ids) -> logits``, and
    ``model(input_ids, labels=labels) -> (logits, loss)``."""

    def __init__(self, config: ModelConfig):
        super().__init__()
        self.config = config
        self.embed = nn.Embedding(config.vocab_size, config.d_model)
        self.blocks = nn.ModuleList(Block(config, i) for i in range(config.n_layers))
        self.norm = RMSNorm(config.d_model, config.norm_eps)
        self.lm_head = nn.Linear(config.d_model, config.vocab_size, bias=False)
        if config.tie_embeddings:  # one matrix reads tokens in and scores them out
            self.lm_head.weight = self.embed.weight
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """Normal(0, init_std) weights, zero biases, unit norms. The projections
        that write into the residual stream (o_proj, down_proj) get init_std /
        sqrt(2 n_layers) so the stream's variance does not grow with depth."""
        std = self.config.init_std
        for name, module in self.named_modules():
            if isinstance(module, (nn.Linear, nn.Embedding)):
                residual = name.endswith(("o_proj", "down_proj"))
                nn.init.normal_(module.weight, 0.0, std / (2 * self.config.n_layers) ** 0.5 if residual else std)
                if getattr(module, "bias", None) is not None:
                    nn.init.zeros_(module.bias)
            elif isinstance(module, RMSNorm):
                nn.init.ones_(module.weight)

    def new_kv_cache(self) -> KVCache:
        return KVCache(self.config.n_layers)

    def forward(self, input_ids: torch.Tensor, labels: torch.Tensor | None = None,
                attention_mask: torch.Tensor | None = None, kv_cache: KVCache | None = None,
                position_ids: torch.Tensor | None = None, logits_to_keep: int = 0,
                reduction: str = "mean"):
        """input_ids [B, T] -> logits [B, T, V]; with labels, (logits, loss).

        labels: [B, T] aligned with input_ids (``labels = input_ids`` for plain
        language modelling; IGNORE_INDEX = -100 where no loss is wanted); the
        shift by one happens inside (``minillm.loss``). ``reduction``: "mean"
        over the target tokens (plus ``aux_loss_weight`` times the balance loss
        of a mixture of experts with ``router_balance="aux"``), "sum", or
        "none" for the per-position losses [B, T] (minus them are the
        log-probs of the next tokens, which DPO and GRPO sum).
        attention_mask: [B, past + T] with 1 = token, 0 = padding (optional).
        kv_cache: a ``KVCache``; the new keys/values are appended to it in place.
        position_ids: [B, T]; default past, past + 1, ... (with left padding,
        pass positions that start at 0 on each row's first real token).
        logits_to_keep: if > 0, score only the last that many positions
        ([B, logits_to_keep, V]); generation needs just the last one, and the
        LM head is the widest matrix product of a small model.
        """
        if input_ids.dim() != 2:
            raise ValueError(f"input_ids must be [B, T], got shape {tuple(input_ids.shape)}")
        if labels is not None and logits_to_keep:
            raise ValueError("labels need the logits of every position: drop logits_to_keep")
        B, T = input_ids.shape
        past = len(kv_cache) if kv_cache is not None else 0
        if attention_mask is not None and attention_mask.shape != (B, past + T):
            raise ValueError(f"attention_mask must be [B, past + T] = {(B, past + T)}, "
                             f"got {tuple(attention_mask.shape)}")
        if position_ids is None:
            position_ids = torch.arange(past, past + T, device=input_ids.device)[None]
        x = self.embed(input_ids)
        cos, sin = rope_cos_sin(self.config, position_ids, x.dtype)  # shared by all layers
        mask = build_attention_mask(attention_mask, T, past + T, input_ids.device)
        for block in self.blocks:
            x = block(x, cos, sin, mask, kv_cache)
        logits = self.lm_head(self.norm(x[:, -logits_to_keep:]))  # -0: all positions
        if labels is None:
            return logits
        loss = lm_loss(logits, labels, reduction)
        moe = self.config.moe
        if reduction == "mean" and moe is not None and moe.router_balance == "aux":
            loss = loss + moe.aux_loss_weight * aux_loss(self)
        return logits, loss

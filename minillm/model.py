"""The book's transformer: a decoder-only model in the Llama / Qwen2 style.

    tokens -> embedding -> n_layers x Block -> RMSNorm -> LM head -> logits
    Block:  x = x + Attention(RMSNorm(x));  x = x + MLP(RMSNorm(x))   (pre-norm)

Attention (with GQA and the KV cache) lives in ``minillm.attention`` and RoPE in
``minillm.rope``; this file holds the rest and reads top to bottom. Parameter
names are stable and close to HF's (``minillm.hf`` maps them one to one):

    embed.weight, blocks.{i}.attn_norm.weight, blocks.{i}.attn.{q,k,v,o}_proj.*,
    blocks.{i}.mlp_norm.weight, blocks.{i}.mlp.{gate,up,down}_proj.*,
    norm.weight, lm_head.weight (the same tensor as embed.weight when tied)

Extension points: the MLP of every block comes from ``build_mlp(config)``
(chapter 9 adds a mixture of experts there), and every weight matrix is a
plain ``nn.Linear`` attribute (chapter 13 wraps them with LoRA by name).

Shapes: B batch, T tokens, V vocabulary, d d_model.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .attention import Attention, KVCache
from .config import ModelConfig
from .rope import rope_cos_sin

IGNORE_INDEX = -100  # label value that contributes no loss (padding, prompts)


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
#: ("moe", ``minillm.moe.MoE``, is looked up in ``build_mlp``: its experts are
#: built from SwiGLU above, so moe.py imports this module, not the reverse.)
MLP_CLASSES: dict[str, type[nn.Module]] = {"swiglu": SwiGLU, "relu": ReluMLP}


def build_mlp(config: ModelConfig) -> nn.Module:
    """The feed-forward layer of one block, [B, T, d] -> [B, T, d]."""
    if config.mlp == "moe":
        from .moe import MoE
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


def lm_loss(logits: torch.Tensor, labels: torch.Tensor, ignore_index: int = IGNORE_INDEX) -> torch.Tensor:
    """Mean next-token cross-entropy: logits [B, T, V] at t predict labels[t + 1].

    This is the one place where targets are shifted by one: ``labels`` are
    aligned with the inputs (often ``labels = input_ids``). Positions whose
    label is ``ignore_index`` (-100) do not count. The labels are shifted
    rather than the logits: the logits are the largest tensor in the model and
    slicing them would copy it. The softmax runs in float32 at least.
    """
    if logits.shape[:2] != labels.shape:
        raise ValueError(f"logits {tuple(logits.shape)} and labels {tuple(labels.shape)} disagree on [B, T]")
    targets = F.pad(labels, (0, 1), value=ignore_index)[:, 1:]  # targets[t] = labels[t + 1]
    logits = logits.to(torch.promote_types(logits.dtype, torch.float32))
    return F.cross_entropy(logits.flatten(0, 1), targets.flatten(), ignore_index=ignore_index)


class Transformer(nn.Module):
    """Decoder-only language model: ``model(input_ids) -> logits``."""

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

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None,
                kv_cache: KVCache | None = None, position_ids: torch.Tensor | None = None,
                logits_to_keep: int = 0) -> torch.Tensor:
        """input_ids [B, T] -> logits [B, T, V].

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
        return self.lm_head(self.norm(x[:, -logits_to_keep:]))  # -0: all positions

    def loss(self, input_ids: torch.Tensor, labels: torch.Tensor | None = None,
             attention_mask: torch.Tensor | None = None) -> torch.Tensor:
        """Next-token loss (``lm_loss``); labels default to input_ids, minus padding.
        A mixture of experts with ``router_balance="aux"`` adds
        ``aux_loss_weight`` times its balance loss (``minillm.moe.aux_loss``)."""
        if labels is None:
            labels = input_ids if attention_mask is None else input_ids.masked_fill(attention_mask == 0, IGNORE_INDEX)
        loss = lm_loss(self(input_ids, attention_mask=attention_mask), labels)
        if self.config.mlp == "moe" and self.config.router_balance == "aux":
            from .moe import aux_loss
            loss = loss + self.config.aux_loss_weight * aux_loss(self)
        return loss


@torch.no_grad()
def greedy_decode(model: Transformer, input_ids: torch.Tensor, max_new_tokens: int,
                  use_cache: bool = True) -> torch.Tensor:
    """Append ``max_new_tokens`` argmax tokens to input_ids [B, T] -> [B, T + n].

    With the cache each step feeds only the newest token; without it, each step
    re-reads the whole sequence (same result, quadratic cost).
    """
    cache = model.new_kv_cache() if use_cache else None
    ids, step_input = input_ids, input_ids
    for _ in range(max_new_tokens):
        logits = model(step_input, kv_cache=cache, logits_to_keep=1)  # [B, 1, V]
        next_id = logits[:, -1].argmax(dim=-1, keepdim=True)
        ids = torch.cat((ids, next_id), dim=1)
        step_input = next_id if use_cache else ids
    return ids

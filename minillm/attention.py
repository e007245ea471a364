"""Causal self-attention with grouped key/value heads (GQA) and a KV cache.

Its own module because chapter 4 takes attention apart piece by piece; the
model (``minillm.model``) only calls ``Attention``. Two neighbours compute the
same thing differently: ``minillm.flash`` gets the same outputs tile by tile
without ever forming the [T, S] score matrix (FlashAttention, written to be
read, not to be fast), and ``minillm.attention_viz`` recomputes and draws the
weight matrices that this module's fused kernel (SDPA) never shows.

Shapes: B batch, T new tokens, S = past + T positions attended to, H query
heads, K key/value heads (H = K * groups), D head_dim, d_model = H * D.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .config import ModelConfig
from .rope import apply_rope

# SDPA can share kv heads itself since torch 2.5 (``enable_gqa``), without
# materialising the repeated keys: faster, and the same numbers.
_SDPA_GQA = tuple(int(p) for p in torch.__version__.split(".")[:2]) >= (2, 5)


def repeat_kv(x: torch.Tensor, groups: int) -> torch.Tensor:
    """[B, K, S, D] -> [B, K*groups, S, D]: each kv head serves ``groups`` query heads.

    Query head h uses kv head h // groups, so kv head 0 must come out repeated
    in place: (k0, k0, k1, k1), exactly ``x.repeat_interleave(groups, dim=1)``.
    ``x.repeat(1, groups, 1, 1)`` would tile instead, (k0, k1, k0, k1), and
    silently pair query heads with the wrong keys. expand + reshape builds the
    interleaved order with one copy and no index arithmetic.
    """
    if groups == 1:
        return x
    B, K, S, D = x.shape
    return x[:, :, None].expand(B, K, groups, S, D).reshape(B, K * groups, S, D)


class KVCache:
    """Keys and values of the positions seen so far, one pair per layer.

    Generation feeds one new token at a time; its query must attend to every
    earlier key, and recomputing those would make step t cost O(t) projections.
    The cache keeps them instead. ``update`` appends and returns the full
    [B, K, S, D] tensors. Keys are stored after RoPE, so they never change.
    """

    def __init__(self, n_layers: int):
        self.keys: list[torch.Tensor | None] = [None] * n_layers
        self.values: list[torch.Tensor | None] = [None] * n_layers

    def __len__(self) -> int:
        """Number of cached positions."""
        return 0 if self.keys[0] is None else self.keys[0].shape[2]

    def update(self, layer: int, k: torch.Tensor, v: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        if self.keys[layer] is not None:
            k = torch.cat((self.keys[layer], k), dim=2)
            v = torch.cat((self.values[layer], v), dim=2)
        self.keys[layer], self.values[layer] = k, v
        return k, v

    def nbytes(self) -> int:
        """Memory held by the cache: 2 * layers * B * K * S * D * bytes per element."""
        return sum(t.numel() * t.element_size() for t in self.keys + self.values if t is not None)


class Attention(nn.Module):
    """Multi-head causal self-attention: q/k/v projections, RoPE, SDPA, output projection.

    The four projections are plain ``nn.Linear`` attributes with the names HF
    uses (q_proj, k_proj, v_proj, o_proj), so LoRA can wrap them by name.
    """

    def __init__(self, config: ModelConfig, layer_idx: int):
        super().__init__()
        d, D = config.d_model, config.head_dim
        self.layer_idx = layer_idx
        self.n_heads, self.n_kv_heads, self.head_dim = config.n_heads, config.n_kv_heads, D
        qkv_bias = config.qkv_bias or config.attention_bias
        self.q_proj = nn.Linear(d, config.n_heads * D, bias=qkv_bias)
        self.k_proj = nn.Linear(d, config.n_kv_heads * D, bias=qkv_bias)
        self.v_proj = nn.Linear(d, config.n_kv_heads * D, bias=qkv_bias)
        self.o_proj = nn.Linear(config.n_heads * D, d, bias=config.attention_bias)

    def project(self, x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor):
        """x [B, T, d_model] -> q [B, H, T, D] and k, v [B, K, T, D], q and k rotated by RoPE."""
        B, T, _ = x.shape
        # [B, T, heads*D] -> [B, heads, T, D]: SDPA wants heads before time.
        q = self.q_proj(x).view(B, T, self.n_heads, self.head_dim).transpose(1, 2)
        k = self.k_proj(x).view(B, T, self.n_kv_heads, self.head_dim).transpose(1, 2)
        v = self.v_proj(x).view(B, T, self.n_kv_heads, self.head_dim).transpose(1, 2)
        return apply_rope(q, cos, sin), apply_rope(k, cos, sin), v

    def forward(self, x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor,
                mask: torch.Tensor | None = None, kv_cache: KVCache | None = None) -> torch.Tensor:
        """x [B, T, d_model], cos/sin [B, T, D] -> [B, T, d_model].

        mask: None for plain causal attention over x alone, else a boolean
        [B, 1, T, S] "may attend" mask (causal and padding combined, see
        ``minillm.model.build_attention_mask``).
        """
        B, T, _ = x.shape
        q, k, v = self.project(x, cos, sin)
        if kv_cache is not None:
            k, v = kv_cache.update(self.layer_idx, k, v)
        # is_causal is only right when queries and keys are the same positions;
        # with cached keys or padding the caller must pass an explicit mask.
        if mask is None and 1 < T != k.shape[2]:
            raise ValueError(f"{T} new tokens after {k.shape[2] - T} cached ones need an explicit mask")
        groups = self.n_heads // self.n_kv_heads
        if groups > 1 and _SDPA_GQA and mask is None:  # as HF does: the fused kernels take it unmasked
            out = F.scaled_dot_product_attention(q, k, v, is_causal=T > 1, enable_gqa=True)
        else:
            k, v = repeat_kv(k, groups), repeat_kv(v, groups)
            out = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, is_causal=mask is None and T > 1)
        return self.o_proj(out.transpose(1, 2).reshape(B, T, self.n_heads * self.head_dim))

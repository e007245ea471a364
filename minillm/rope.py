"""Rotary position embedding (RoPE) and the ways to stretch it to longer contexts.

A separate module from the model because chapter 6 studies it on its own:
every frequency rule below is a small function you can plot. This is what the
model *runs*; its neighbour ``minillm.positions`` holds the schemes the model
does not use (sinusoids, learned positions, ALiBi) and the tools that *study*
RoPE (wavelengths, loss by position, attention far beyond the trained length).

RoPE (Su et al. 2021) rotates each pair of query/key dimensions by an angle
proportional to the position, ``angle = position * inv_freq[i]`` with
``inv_freq[i] = theta ** (-2i / head_dim)``. A query at position m and a key at
position n then score ``q . R(n - m) k``: only their distance matters.

We use the "rotate_half" layout of Llama/Qwen2/HF: dimension i is paired with
i + head_dim/2 (not with i + 1 as in the paper). The two layouts are the same
up to a fixed permutation of the q/k projection rows, and this one is what
checkpoints in the HF format expect.

Context extension (all relative to the training length L and a factor s):
  linear  (position interpolation, Chen et al. 2023): every frequency / s;
  ntk     (NTK-aware, bloc97 2023): theta * s^(d/(d-2)): high frequencies kept,
          the lowest one divided by s;
  dynamic (dynamic NTK, emozilla 2023): ntk with s chosen from the current
          length, so nothing changes below L;
  yarn    (Peng et al. 2023): per-dimension blend of "keep" and "interpolate"
          by how many turns a dimension makes in L, plus a softmax temperature.

Frequencies are computed in float32 with the same operations as HF
``transformers``, so an exported model rotates by bit-identical angles.
"""
from __future__ import annotations

import math

import torch

from .config import ModelConfig


def default_inv_freq(head_dim: int, theta: float) -> torch.Tensor:
    """inv_freq[i] = theta^(-2i/head_dim), i < head_dim/2. Shape [head_dim/2], float32."""
    exponents = torch.arange(0, head_dim, 2, dtype=torch.int64).float() / head_dim
    return 1.0 / (theta ** exponents)


def ntk_theta(theta: float, factor: float, head_dim: int) -> float:
    """NTK-aware base: stretches the lowest frequency exactly ``factor`` times."""
    return theta * factor ** (head_dim / (head_dim - 2))


def yarn_inv_freq(head_dim: int, theta: float, factor: float, original_len: int,
                  beta_fast: float = 32.0, beta_slow: float = 1.0) -> tuple[torch.Tensor, float]:
    """YaRN frequencies [head_dim/2] and its attention scale (multiplies cos and sin).

    A dimension that turns more than ``beta_fast`` times within the original
    length is left alone (it already sees every angle in training); one that
    turns fewer than ``beta_slow`` times is interpolated like ``linear``; in
    between, a linear ramp blends the two.
    """
    def dim_of_turns(turns: float) -> float:  # which dimension makes `turns` rotations in L
        return head_dim * math.log(original_len / (turns * 2 * math.pi)) / (2 * math.log(theta))

    low = max(math.floor(dim_of_turns(beta_fast)), 0)
    high = min(math.ceil(dim_of_turns(beta_slow)), head_dim - 1)
    if low == high:
        high += 0.001  # avoid dividing by zero in the ramp
    ramp = ((torch.arange(head_dim // 2, dtype=torch.float32) - low) / (high - low)).clamp(0, 1)
    keep = 1 - ramp  # 1: extrapolate (original frequency), 0: interpolate (divided by s)
    base = theta ** (torch.arange(0, head_dim, 2).float() / head_dim)
    inv_freq = (1.0 / (factor * base)) * (1 - keep) + (1.0 / base) * keep
    # sqrt(1/t) = 0.1 ln(s) + 1: sharpens attention that long contexts would flatten.
    attention_scale = 0.1 * math.log(factor) + 1.0 if factor > 1 else 1.0
    return inv_freq, attention_scale


def rope_frequencies(config: ModelConfig, seq_len: int) -> tuple[torch.Tensor, float]:
    """inv_freq [head_dim/2] (float32) and a cos/sin scale for ``config``'s RoPE.

    ``seq_len`` (the largest position + 1) matters only to ``dynamic`` scaling.
    """
    d, theta, s = config.head_dim, config.rope_theta, config.rope_factor
    kind, original = config.rope_scaling, config.rope_original_max_seq_len
    if kind is None:
        return default_inv_freq(d, theta), 1.0
    if kind == "linear":
        return default_inv_freq(d, theta) / s, 1.0
    if kind == "ntk":
        return default_inv_freq(d, ntk_theta(theta, s, d)), 1.0
    if kind == "dynamic":
        # s grows with the length: 1 up to L (plain RoPE), then s*len/L - (s-1).
        current = s * max(seq_len, original) / original - (s - 1)
        return default_inv_freq(d, ntk_theta(theta, current, d)), 1.0
    if kind == "yarn":
        return yarn_inv_freq(d, theta, s, original, config.yarn_beta_fast, config.yarn_beta_slow)
    raise ValueError(f"unknown rope_scaling {kind!r}")


def rope_cos_sin(config: ModelConfig, position_ids: torch.Tensor,
                 dtype: torch.dtype = torch.float32) -> tuple[torch.Tensor, torch.Tensor]:
    """cos and sin of every rotation angle, each [B, T, head_dim] in ``dtype``.

    position_ids: [B, T] (or [T]) integer positions. Angles are computed in
    float32 (float64 for a float64 model), never in bf16: at position 1000 a
    bf16 angle is off by up to ~4 radians, which destroys the position signal.
    """
    if position_ids.dim() == 1:
        position_ids = position_ids[None]
    seq_len = int(position_ids.max()) + 1 if config.rope_scaling == "dynamic" else 0
    inv_freq, scale = rope_frequencies(config, seq_len)
    work = torch.float64 if dtype == torch.float64 else torch.float32
    angles = position_ids[..., None].to(work) * inv_freq.to(position_ids.device, work)  # [B, T, d/2]
    angles = torch.cat((angles, angles), dim=-1)  # rotate_half layout: pair i with i + d/2
    return (angles.cos() * scale).to(dtype), (angles.sin() * scale).to(dtype)


def rotate_half(x: torch.Tensor) -> torch.Tensor:
    """(x1, x2) -> (-x2, x1) on the two halves of the last dimension."""
    x1, x2 = x.chunk(2, dim=-1)
    return torch.cat((-x2, x1), dim=-1)


def apply_rope(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """Rotate queries or keys x [B, H, T, head_dim] by angles cos/sin [B, T, head_dim].

    Pair (x1, x2) becomes (x1 cos - x2 sin, x2 cos + x1 sin): a 2-D rotation.
    """
    cos, sin = cos[:, None], sin[:, None]  # broadcast over heads
    return x * cos + rotate_half(x) * sin

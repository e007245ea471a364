"""Position information for attention: sinusoids, ALiBi, and RoPE's wavelengths.

Attention on its own is blind to order: permute the tokens and its outputs are
permuted the same way. A model learns word order only from what we add:

* sinusoidal encodings (Vaswani et al. 2017), added to the token embeddings;
* learned absolute positions (GPT-2): an ``nn.Embedding`` over positions;
* RoPE (Su et al. 2021), rotations of query/key pairs: see ``minillm.rope``;
* ALiBi (Press et al. 2022): no embedding at all, a penalty on attention scores
  that grows linearly with the distance between query and key.

What it adds over ``minillm.rope`` (the rotation the model runs): the
alternatives to compare it with, and the measurements. This module holds the
sinusoids, ALiBi, and the small tools chapter 6 uses to
study RoPE beyond its training length: wavelengths per dimension, the
frequencies each context-extension method uses, and the loss at every position.

Shapes: T positions, d width, H heads, B batch.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from .config import ModelConfig
from .rope import rope_frequencies


def _positive_int(value, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise ValueError(f"{name} must be a positive integer, got {value!r}")
    return value


# ----------------------------------------------------------------- sinusoids

def sinusoidal_encoding(num_positions: int, d_model: int, base: float = 10000.0) -> torch.Tensor:
    """The original transformer's position encodings, [num_positions, d_model] float32.

    PE[p, 2i] = sin(p / base^(2i/d)),  PE[p, 2i+1] = cos(p / base^(2i/d)).
    Each pair of columns is a clock turning at its own speed, from one radian
    per position (i = 0) down to a turn every ~2 pi base positions.
    """
    _positive_int(num_positions, "num_positions")
    _positive_int(d_model, "d_model")
    if d_model % 2:
        raise ValueError(f"d_model must be even (sin and cos come in pairs), got {d_model}")
    position = torch.arange(num_positions, dtype=torch.float64)[:, None]    # [T, 1]
    inv_freq = base ** (-torch.arange(0, d_model, 2, dtype=torch.float64) / d_model)  # [d/2]
    angles = position * inv_freq                                              # [T, d/2]
    pe = torch.empty(num_positions, d_model, dtype=torch.float64)
    pe[:, 0::2], pe[:, 1::2] = angles.sin(), angles.cos()
    return pe.float()


# ----------------------------------------------------------------- ALiBi

def alibi_slopes(n_heads: int) -> torch.Tensor:
    """ALiBi's per-head slopes m_h, [n_heads] float32 (Press et al. 2022).

    For n a power of two: a geometric sequence starting at and with ratio
    2^(-8/n), so the heads span 1/2 ... 1/256 (n = 8). Otherwise the paper's
    code takes the slopes of the nearest smaller power of two 2^k and adds
    every other slope of the 2^(k+1) sequence.
    """
    _positive_int(n_heads, "n_heads")

    def power_of_two_slopes(n: int) -> list[float]:
        start = 2.0 ** (-8.0 / n)
        return [start ** (h + 1) for h in range(n)]

    closest = 2 ** math.floor(math.log2(n_heads))
    slopes = power_of_two_slopes(closest)
    if closest < n_heads:
        slopes += power_of_two_slopes(2 * closest)[0::2][: n_heads - closest]
    return torch.tensor(slopes, dtype=torch.float32)


def alibi_bias(n_heads: int, seq_len: int, causal: bool = True) -> torch.Tensor:
    """ALiBi's additive attention bias, [n_heads, seq_len, seq_len] float32.

    bias[h, i, j] = -m_h * |i - j|: a query i pays m_h per token of distance
    to key j. With ``causal`` the future (j > i) is -inf, so the tensor is a
    complete float mask for ``F.scaled_dot_product_attention(attn_mask=...)``.
    """
    _positive_int(seq_len, "seq_len")
    pos = torch.arange(seq_len)
    distance = (pos[:, None] - pos[None, :]).abs().float()         # [T, T]
    bias = -alibi_slopes(n_heads)[:, None, None] * distance          # [H, T, T]
    if causal:
        bias = bias.masked_fill(pos[None, :] > pos[:, None], float("-inf"))
    return bias


# ----------------------------------------------------------------- RoPE wavelengths

def wavelengths(inv_freq: torch.Tensor) -> torch.Tensor:
    """Positions per full turn of each RoPE pair: 2 pi / inv_freq, [head_dim/2] float64.

    With the default frequencies this is 2 pi theta^(2i/head_dim).
    """
    return 2 * math.pi / inv_freq.double()


def turns_within(inv_freq: torch.Tensor, length: int) -> torch.Tensor:
    """How many full rotations each pair makes over ``length`` positions, [head_dim/2].

    Fewer than 1: the model never saw that pair's angle come back around, so
    any angle past ``length * inv_freq`` is new to it.
    """
    _positive_int(length, "length")
    return length * inv_freq.double() / (2 * math.pi)


def extension_frequencies(config: ModelConfig, factor: float, seq_len: int,
                          methods=("linear", "ntk", "dynamic", "yarn")) -> dict[str, torch.Tensor]:
    """inv_freq [head_dim/2] of plain RoPE and of each context-extension method.

    Every method stretches ``config``'s training length (``max_seq_len``) by
    ``factor``, as ``minillm.rope`` implements it; ``seq_len`` is the current
    length (only ``dynamic`` depends on it). Keys: "rope" and ``methods``.
    """
    out = {"rope": rope_frequencies(config.replace(rope_scaling=None), seq_len)[0]}
    for method in methods:
        scaled = config.replace(rope_scaling=method, rope_factor=float(factor),
                                rope_original_max_seq_len=config.max_seq_len)
        out[method] = rope_frequencies(scaled, seq_len)[0]
    return out


# ----------------------------------------------------------------- loss by position

@torch.no_grad()
def loss_by_position(model, input_ids: torch.Tensor, chunk_ends=None) -> torch.Tensor:
    """Next-token loss at every position, averaged over the batch: [T - 1] float32.

    input_ids: [B, T]. Entry t is the loss of predicting token t + 1 from
    tokens 0..t. By default one forward pass covers the whole sequence. With
    ``chunk_ends`` (increasing lengths ending at T, e.g. (64, 128, 256)) the
    model is run on each prefix ``input_ids[:, :end]`` and only positions past
    the previous end are kept: a causal model with fixed RoPE frequencies gives
    the same numbers, but ``dynamic`` scaling then sees (roughly) the length
    it would see while generating, instead of the full T at every position.
    """
    if input_ids.dim() != 2 or input_ids.shape[1] < 2:
        raise ValueError(f"input_ids must be [B, T] with T >= 2, got shape {tuple(input_ids.shape)}")
    T = input_ids.shape[1]
    ends = [T] if chunk_ends is None else [int(e) for e in chunk_ends]
    if ends[-1] != T or any(b <= a for a, b in zip(ends, ends[1:])) or ends[0] < 2:
        raise ValueError(f"chunk_ends must increase from >= 2 and end at T={T}, got {list(ends)}")
    starts = [0] + [end - 1 for end in ends[:-1]]           # predict tokens start+1 .. end-1
    return _window_losses(model, input_ids, [(0, end, start, end - 1) for start, end in zip(starts, ends)])


@torch.no_grad()
def loss_with_context_limit(model, input_ids: torch.Tensor, limit: int) -> torch.Tensor:
    """Like ``loss_by_position``, but the model never sees more than ``limit`` tokens.

    input_ids [B, T] -> [T - 1] float32. The sequence is read in overlapping
    windows of at most ``limit`` tokens that advance by limit // 2; each
    prediction past the first window uses the last limit/2 .. limit tokens
    before it. With ``limit`` equal to the training length this is how a model
    is evaluated on text longer than its context without ever showing it a
    position or an offset it was not trained on: the reference a
    context-extension method has to beat.
    """
    _positive_int(limit, "limit")
    if limit < 2:
        raise ValueError(f"limit must be at least 2, got {limit}")
    if input_ids.dim() != 2 or input_ids.shape[1] < 2:
        raise ValueError(f"input_ids must be [B, T] with T >= 2, got shape {tuple(input_ids.shape)}")
    T, half = input_ids.shape[1], limit // 2
    windows = []
    for first in range(0, T - 1, half):                     # predict tokens first+1 .. last
        last = min(first + half, T - 1)
        windows.append((max(0, last - limit), last, first, last))   # at most `limit` inputs
    return _window_losses(model, input_ids, windows)


def _window_losses(model, input_ids: torch.Tensor, windows) -> torch.Tensor:
    """Per-position losses, averaged over the batch, concatenated over windows.

    Each window (start, stop, first, last) runs the model on
    input_ids[:, start:stop] and keeps its predictions of tokens first+1 ..
    last, made from positions first .. last-1 (start <= first < last <= stop).
    """
    pieces = []
    for start, stop, first, last in windows:
        logits = model(input_ids[:, start:stop])[:, first - start:last - start].float()
        targets = input_ids[:, first + 1:last + 1]
        loss = F.cross_entropy(logits.flatten(0, 1), targets.flatten(), reduction="none")
        pieces.append(loss.view(input_ids.shape[0], -1).mean(0))
    return torch.cat(pieces)


def far_attention_mass(weights: torch.Tensor, min_distance: int) -> torch.Tensor:
    """Attention each query gives to keys at least ``min_distance`` tokens back.

    weights [..., T, T] (rows: queries, columns: keys; causal) -> [..., T].
    With ``min_distance`` = the training length L, this is the share of
    attention that goes to offsets the model never saw in training: 0 for
    every query before position L by construction.
    """
    _positive_int(min_distance, "min_distance")
    if weights.dim() < 2 or weights.shape[-1] != weights.shape[-2]:
        raise ValueError(f"weights must be [..., T, T], got shape {tuple(weights.shape)}")
    T = weights.shape[-1]
    pos = torch.arange(T, device=weights.device)
    far = (pos[:, None] - pos[None, :]) >= min_distance   # [T, T]: key j is far from query i
    return (weights * far).sum(-1)

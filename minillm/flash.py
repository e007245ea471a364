"""FlashAttention's two ideas in plain PyTorch: tiling and the online softmax.

What it adds over ``minillm.attention`` (which calls PyTorch's fused kernel):
the algorithm inside such a kernel, in a loop you can step through, checked to
give the same outputs.

Standard attention writes the whole score matrix S = Q K^T / sqrt(D), [T, T]
per head, to memory, reads it back for the softmax, writes P, reads it again
for P V. FlashAttention (Dao et al. 2022) never forms S: it walks over blocks
of keys and values and keeps, for every query, three running quantities

    m  the largest score seen so far          (for a stable exp)
    l  the sum of exp(score - m) so far       (the softmax denominator)
    o  the sum of exp(score - m) * v so far   (the unnormalised output)

When a new block raises the maximum from m to m', everything accumulated so
far is rescaled by exp(m - m'), which is exactly what it would have been had
m' been known from the start. At the end, out = o / l, and the only thing kept
for the backward pass is the log-sum-exp m + log l: one number per query and
head instead of T.

This module is for understanding, not speed: the loops run in Python, where
the real kernel keeps each tile in on-chip memory. The point is that the
arithmetic is exact: ``flash_attention`` equals ``attention_reference`` (and
PyTorch's SDPA) to float rounding, for any block sizes.

Shapes: B batch, H heads, T queries, S keys, D head dim.
"""
from __future__ import annotations

import math

import torch

from .positions import _positive_int


def merge_softmax_states(m1: torch.Tensor, l1: torch.Tensor, m2: torch.Tensor,
                         l2: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Combine two partial softmax statistics of disjoint parts of a row.

    (m_i, l_i) = (max of part i, sum of exp(x - m_i) over part i). Returns
    (m, l) of the union: m = max(m1, m2), l = l1 e^(m1 - m) + l2 e^(m2 - m).
    Works elementwise on tensors of any (equal) shape; a part that is empty
    has m = -inf and l = 0.
    """
    m = torch.maximum(m1, m2)
    safe = torch.where(torch.isinf(m), torch.zeros_like(m), m)   # two empty parts: avoid inf - inf
    return m, l1 * torch.exp(m1 - safe) + l2 * torch.exp(m2 - safe)


def online_softmax(x: torch.Tensor, block: int) -> torch.Tensor:
    """softmax over the last dim of x, reading it ``block`` entries at a time.

    One pass keeps the running (max, sum) with ``merge_softmax_states``; a
    second pass normalises. Equals ``torch.softmax(x, -1)``.
    """
    _positive_int(block, "block")
    m = torch.full(x.shape[:-1], -math.inf, dtype=x.dtype, device=x.device)
    l = torch.zeros_like(m)
    for start in range(0, x.shape[-1], block):
        chunk = x[..., start:start + block]
        chunk_max = chunk.max(-1).values
        m, l = merge_softmax_states(m, l, chunk_max, torch.exp(chunk - chunk_max[..., None]).sum(-1))
    return torch.exp(x - m[..., None]) / l[..., None]


def attention_reference(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor,
                        causal: bool = True) -> tuple[torch.Tensor, torch.Tensor]:
    """Textbook attention that forms the full score matrix.

    q [..., T, D], k and v [..., S, D] -> (out [..., T, D], logsumexp [..., T]).
    With ``causal``, query i (the last T of the S positions) sees keys up to
    its own position.
    """
    scores = q @ k.transpose(-1, -2) / math.sqrt(q.shape[-1])           # [..., T, S]
    if causal:
        T, S = q.shape[-2], k.shape[-2]
        future = torch.ones(T, S, dtype=torch.bool, device=q.device).triu(S - T + 1)
        scores = scores.masked_fill(future, -math.inf)
    return scores.softmax(-1) @ v, scores.logsumexp(-1)


def flash_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, block_q: int = 64,
                    block_k: int = 64, causal: bool = True) -> tuple[torch.Tensor, torch.Tensor]:
    """Tiled attention with the online softmax; never forms more than a
    [block_q, block_k] tile of scores. Same arguments and results as
    ``attention_reference``. Key blocks entirely in a query block's future
    are skipped (about half of all tiles for a long causal sequence).
    """
    _positive_int(block_q, "block_q"), _positive_int(block_k, "block_k")
    if q.shape[-1] != k.shape[-1] or k.shape[-2] != v.shape[-2]:
        raise ValueError(f"need q [..., T, D], k [..., S, D], v [..., S, Dv]; got {tuple(q.shape)}, "
                         f"{tuple(k.shape)}, {tuple(v.shape)}")
    T, S = q.shape[-2], k.shape[-2]
    offset = S - T                      # query i sits at position offset + i
    scale = 1 / math.sqrt(q.shape[-1])
    out = torch.empty(*q.shape[:-1], v.shape[-1], dtype=q.dtype, device=q.device)
    lse = torch.empty(q.shape[:-1], dtype=q.dtype, device=q.device)
    for q0 in range(0, T, block_q):
        qb = q[..., q0:q0 + block_q, :] * scale                          # [..., bq, D]
        rows = torch.arange(q0, q0 + qb.shape[-2], device=q.device) + offset
        m = torch.full(qb.shape[:-1], -math.inf, dtype=q.dtype, device=q.device)
        l = torch.zeros_like(m)
        o = torch.zeros(*qb.shape[:-1], v.shape[-1], dtype=q.dtype, device=q.device)
        for k0 in range(0, S, block_k):
            if causal and k0 > rows[-1]:
                break                                                    # this and later tiles: all future
            s = qb @ k[..., k0:k0 + block_k, :].transpose(-1, -2)        # [..., bq, bk]: one tile
            if causal:
                cols = torch.arange(k0, k0 + s.shape[-1], device=q.device)
                s = s.masked_fill(cols[None, :] > rows[:, None], -math.inf)
            tile_max = s.max(-1).values
            new_m = torch.maximum(m, tile_max)
            p = torch.exp(s - new_m[..., None])                          # this tile's unnormalised weights
            rescale = torch.exp(m - new_m)                               # old sums, as if new_m all along
            l = l * rescale + p.sum(-1)
            o = o * rescale[..., None] + p @ v[..., k0:k0 + block_k, :]
            m = new_m
        out[..., q0:q0 + block_q, :] = o / l[..., None]
        lse[..., q0:q0 + block_q] = m + torch.log(l)
    return out, lse


def tiles_visited(T: int, block_q: int, block_k: int, causal: bool = True) -> tuple[int, int]:
    """(tiles computed, tiles in the full T x T grid) for ``flash_attention``."""
    total = math.ceil(T / block_q) * math.ceil(T / block_k)
    if not causal:
        return total, total
    visited = sum(min(math.ceil(T / block_k), (min(q0 + block_q, T) - 1) // block_k + 1)
                  for q0 in range(0, T, block_q))
    return visited, total

"""Tests of minillm.flash: tiled attention with the online softmax is exact."""
import math

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st

from minillm.flash import (attention_reference, flash_attention, merge_softmax_states, online_softmax,
                           tiles_visited)


@settings(max_examples=30, deadline=None)
@given(st.integers(1, 40), st.integers(1, 17))
def test_online_softmax_equals_softmax(n, block):
    x = torch.randn(3, n, dtype=torch.float64) * 20          # large scores: exp would overflow unshifted
    torch.testing.assert_close(online_softmax(x, block), torch.softmax(x, -1))


def test_merge_is_the_statistics_of_the_union():
    x = torch.randn(10, dtype=torch.float64)
    a, b = x[:4], x[4:]
    m, l = merge_softmax_states(a.max(), torch.exp(a - a.max()).sum(), b.max(), torch.exp(b - b.max()).sum())
    assert m == x.max() and torch.isclose(l, torch.exp(x - x.max()).sum())
    empty = (torch.tensor(-math.inf, dtype=torch.float64), torch.tensor(0.0, dtype=torch.float64))
    assert merge_softmax_states(*empty, *empty)[1] == 0                    # no NaN from inf - inf


@pytest.mark.parametrize("T, S, causal", [(37, 37, True), (37, 37, False), (5, 29, True), (64, 64, True)])
@pytest.mark.parametrize("block_q, block_k", [(1, 5), (8, 16), (16, 8), (64, 64), (100, 7)])
def test_flash_equals_reference_and_sdpa(T, S, causal, block_q, block_k):
    torch.manual_seed(0)
    q, k, v = torch.randn(2, 3, T, 16), torch.randn(2, 3, S, 16), torch.randn(2, 3, S, 16)
    out, lse = flash_attention(q, k, v, block_q, block_k, causal)
    ref_out, ref_lse = attention_reference(q, k, v, causal)
    torch.testing.assert_close(out, ref_out, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(lse, ref_lse, atol=1e-5, rtol=1e-5)
    if T == S:
        torch.testing.assert_close(out, F.scaled_dot_product_attention(q, k, v, is_causal=causal),
                                   atol=1e-5, rtol=1e-5)


def test_tiles_visited_counts_the_loop():
    for T, bq, bk in [(64, 16, 16), (100, 32, 16), (7, 3, 5), (1024, 64, 64)]:
        visited, total = tiles_visited(T, bq, bk)
        counted = sum(1 for q0 in range(0, T, bq) for k0 in range(0, T, bk) if k0 <= min(q0 + bq, T) - 1)
        assert visited == counted and total == math.ceil(T / bq) * math.ceil(T / bk)
        assert tiles_visited(T, bq, bk, causal=False) == (total, total)
    visited, total = tiles_visited(4096, 64, 64)
    assert abs(visited / total - 0.5) < 0.01                              # causal: about half the tiles


def test_bad_input_is_named():
    q = torch.randn(1, 4, 8)
    with pytest.raises(ValueError, match="block_q"):
        flash_attention(q, q, q, block_q=0)
    with pytest.raises(ValueError, match="need q"):
        flash_attention(q, torch.randn(1, 4, 6), q)
    with pytest.raises(ValueError, match="block"):
        online_softmax(q, 0)

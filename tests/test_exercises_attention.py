import math

import pytest
import torch

from minillm.exercises import ExerciseError, ExerciseNotImplemented
from minillm.exercises.attention import (check_causal_attention, check_kv_cache_bytes, check_masked_softmax,
                                         check_repeat_kv, check_softmax_jacobian, check_split_heads)


def stub(*args):
    raise NotImplementedError


def accepts(checker, fn, capsys):
    checker(fn)
    assert "✓ correct" in capsys.readouterr().out


# --- softmax_jacobian

def softmax_jacobian(p):
    return torch.diag(p) - torch.outer(p, p)


def test_softmax_jacobian(capsys):
    accepts(check_softmax_jacobian, softmax_jacobian, capsys)
    with pytest.raises(ExerciseError, match="wrong sign"):
        check_softmax_jacobian(lambda p: -softmax_jacobian(p))
    with pytest.raises(ExerciseError, match="outer product"):
        check_softmax_jacobian(torch.diag)
    with pytest.raises(ExerciseError, match="shape"):
        check_softmax_jacobian(lambda p: p)
    with pytest.raises(ExerciseNotImplemented):
        check_softmax_jacobian(stub)


# --- causal_attention

def causal_attention(q, k, v, scale=None, causal=True, dim=-1, diagonal=0):
    scores = q @ k.transpose(-2, -1) * (q.shape[-1] ** -0.5 if scale is None else scale)
    if causal:
        T, S = scores.shape[-2:]
        scores = scores.masked_fill(~torch.ones(T, S, dtype=torch.bool).tril(diagonal), float("-inf"))
    return torch.softmax(scores, dim=dim) @ v


def test_causal_attention(capsys):
    accepts(check_causal_attention, causal_attention, capsys)


@pytest.mark.parametrize("wrong, words", [
    (lambda q, k, v: causal_attention(q, k, v, scale=1.0), "did not scale"),
    (lambda q, k, v: causal_attention(q, k, v, scale=1 / q.shape[-1]), "divided the scores by d"),
    (lambda q, k, v: causal_attention(q, k, v, causal=False), "no causal mask"),
    (lambda q, k, v: causal_attention(q, k, v, dim=-2), "over queries"),
    (lambda q, k, v: causal_attention(q, k, v, diagonal=-1), "NaN"),
    (lambda q, k, v: torch.nan_to_num(causal_attention(q, k, v, diagonal=-1)), "diagonal"),
    (lambda q, k, v: v, "differs"),
    (lambda q, k, v: q @ k.transpose(-2, -1), "shape"),
])
def test_causal_attention_rejects(wrong, words):
    with pytest.raises(ExerciseError, match=words):
        check_causal_attention(wrong)


def test_causal_attention_stub():
    with pytest.raises(ExerciseNotImplemented):
        check_causal_attention(stub)


# --- masked_softmax

def masked_softmax(scores, mask):
    weights = torch.softmax(scores.masked_fill(~mask, float("-inf")), dim=-1)
    return torch.nan_to_num(weights, nan=0.0)


def test_masked_softmax(capsys):
    accepts(check_masked_softmax, masked_softmax, capsys)
    with pytest.raises(ExerciseError, match="NaN"):
        check_masked_softmax(lambda s, m: torch.softmax(s.masked_fill(~m, float("-inf")), dim=-1))
    with pytest.raises(ExerciseError, match="uniform"):
        check_masked_softmax(lambda s, m: torch.softmax(s.masked_fill(~m, torch.finfo(s.dtype).min), dim=-1))
    with pytest.raises(ExerciseError, match="nonzero weight"):
        check_masked_softmax(lambda s, m: torch.softmax(s, dim=-1))
    with pytest.raises(ExerciseError, match="allowed scores only"):
        check_masked_softmax(lambda s, m: torch.softmax(s, dim=-1) * m)
    with pytest.raises(ExerciseNotImplemented):
        check_masked_softmax(stub)


# --- split_heads

def split_heads(x, n_heads):
    B, T, _ = x.shape
    return x.view(B, T, n_heads, -1).transpose(1, 2)


def test_split_heads(capsys):
    accepts(check_split_heads, split_heads, capsys)
    with pytest.raises(ExerciseError, match="mixes time and features"):
        check_split_heads(lambda x, h: x.reshape(x.shape[0], h, x.shape[1], -1))
    with pytest.raises(ExerciseError, match=r"\(D, H\)"):
        check_split_heads(lambda x, h: x.view(x.shape[0], x.shape[1], -1, h).permute(0, 3, 1, 2))
    with pytest.raises(ExerciseNotImplemented):
        check_split_heads(stub)


# --- repeat_kv

def test_repeat_kv(capsys):
    from minillm.attention import repeat_kv
    accepts(check_repeat_kv, repeat_kv, capsys)
    with pytest.raises(ExerciseError, match="tiles"):
        check_repeat_kv(lambda x, g: x.repeat(1, g, 1, 1))
    with pytest.raises(ExerciseError, match="shape"):
        check_repeat_kv(lambda x, g: x.repeat_interleave(g, dim=2))
    with pytest.raises(ExerciseNotImplemented):
        check_repeat_kv(stub)


# --- kv_cache_bytes

def kv_cache_bytes(n_layers, n_kv_heads, head_dim, seq_len, batch_size, bytes_per_element):
    return 2 * n_layers * n_kv_heads * head_dim * seq_len * batch_size * bytes_per_element


def test_kv_cache_bytes(capsys):
    accepts(check_kv_cache_bytes, kv_cache_bytes, capsys)
    with pytest.raises(ExerciseError, match="keys AND values"):
        check_kv_cache_bytes(lambda *a: kv_cache_bytes(*a) // 2)
    with pytest.raises(ExerciseError, match="batch_size"):
        check_kv_cache_bytes(lambda L, K, D, T, B, n: kv_cache_bytes(L, K, D, T, 1, n))
    with pytest.raises(ExerciseError, match="bytes_per_element"):
        check_kv_cache_bytes(lambda L, K, D, T, B, n: kv_cache_bytes(L, K, D, T, B, 1))
    with pytest.raises(ExerciseError, match="number of bytes"):
        check_kv_cache_bytes(lambda *a: "lots")
    with pytest.raises(ExerciseNotImplemented):
        check_kv_cache_bytes(stub)
    assert math.isclose(kv_cache_bytes(32, 32, 128, 4096, 1, 2), 2 ** 31)


# --- the idea exercises (chapter 4 after the review) ---------------------------

from minillm.exercises.attention import (check_mispaired_heads, check_mla_cache_bytes,  # noqa: E402
                                         check_score_scale, check_sliding_window_mask)


def test_score_scale(capsys):
    accepts(check_score_scale, lambda d, vq, vk: 1 / math.sqrt(d * vq * vk), capsys)
    with pytest.raises(ExerciseError, match="unit"):
        check_score_scale(lambda d, vq, vk: 1 / math.sqrt(d))
    with pytest.raises(ExerciseError, match="square roots"):
        check_score_scale(lambda d, vq, vk: 1 / math.sqrt(d) / (vq * vk))
    with pytest.raises(ExerciseNotImplemented):
        check_score_scale(stub)


def window(T, w, extra=0):
    i, j = torch.arange(T)[:, None], torch.arange(T)[None, :]
    return (j <= i) & (i - j < w + extra)


def test_sliding_window_mask(capsys):
    accepts(check_sliding_window_mask, window, capsys)
    with pytest.raises(ExerciseError, match="off by one"):
        check_sliding_window_mask(lambda T, w: window(T, w, 1))
    with pytest.raises(ExerciseError, match="inverted"):
        check_sliding_window_mask(lambda T, w: ~window(T, w))
    with pytest.raises(ExerciseError, match="boolean"):
        check_sliding_window_mask(lambda T, w: window(T, w).int())
    with pytest.raises(ExerciseNotImplemented):
        check_sliding_window_mask(stub)


def test_mispaired_heads(capsys):
    accepts(check_mispaired_heads,
            lambda H, K: sum(h % K != h // (H // K) for h in range(H)), capsys)
    with pytest.raises(ExerciseError, match="not always half"):
        check_mispaired_heads(lambda H, K: H // 2)
    with pytest.raises(ExerciseNotImplemented):
        check_mispaired_heads(stub)


def test_mla_cache_bytes(capsys):
    def right(L, r, d_rope, T, B, n):
        return L * (r + d_rope) * T * B * n
    accepts(check_mla_cache_bytes, right, capsys)
    with pytest.raises(ExerciseError, match="factor 2"):
        check_mla_cache_bytes(lambda *a: 2 * right(*a))
    with pytest.raises(ExerciseError, match="RoPE"):
        check_mla_cache_bytes(lambda L, r, d_rope, T, B, n: L * r * T * B * n)
    with pytest.raises(ExerciseNotImplemented):
        check_mla_cache_bytes(stub)

"""Tests of minillm.rope: RoPE's properties and the context-extension variants."""
import math

import pytest
import torch

from minillm.config import ModelConfig
from minillm.rope import (
    apply_rope, default_inv_freq, ntk_theta, rope_cos_sin, rope_frequencies, rotate_half, yarn_inv_freq,
)


def config(**overrides) -> ModelConfig:
    base = dict(vocab_size=11, d_model=64, n_heads=4, n_layers=1, max_seq_len=64)  # head_dim 16
    return ModelConfig(**{**base, **overrides})


def rotate(x, positions, cfg=None):
    """x [T, D] rotated to the given positions [T]."""
    cos, sin = rope_cos_sin(cfg or config(), torch.as_tensor(positions), torch.float64)
    return apply_rope(x[None, None], cos, sin)[0, 0]


def test_default_frequencies():
    inv = default_inv_freq(16, 10000.0)
    assert inv.dtype == torch.float32 and inv.shape == (8,)
    torch.testing.assert_close(inv.double(), 10000.0 ** (-torch.arange(0, 16, 2).double() / 16))


def test_rotation_keeps_norms_and_scores_depend_only_on_distance():
    q, k = torch.randn(1, 16, dtype=torch.float64), torch.randn(1, 16, dtype=torch.float64)
    torch.testing.assert_close(rotate(q, [37]).norm(), q.norm())
    scores = [(rotate(q, [m]) * rotate(k, [m - 5])).sum() for m in (5, 12, 40, 1000)]
    for s in scores[1:]:
        torch.testing.assert_close(s, scores[0], rtol=1e-9, atol=1e-9)


def test_rotate_half_and_interleaved_layouts_are_a_permutation():
    """The paper pairs (0,1), (2,3), ...; Llama pairs (i, i + D/2). Same rotation, permuted dims."""
    D, pos = 16, torch.arange(6)
    x = torch.randn(6, D, dtype=torch.float64)
    angles = pos[:, None].double() * default_inv_freq(D, 10000.0).double()  # [T, D/2]
    x_even, x_odd = x[:, 0::2], x[:, 1::2]
    interleaved = torch.stack((x_even * angles.cos() - x_odd * angles.sin(),
                               x_odd * angles.cos() + x_even * angles.sin()), dim=-1).flatten(1)
    perm = torch.cat((torch.arange(0, D, 2), torch.arange(1, D, 2)))  # evens first, then odds
    half = rotate(x[:, perm], pos)
    torch.testing.assert_close(half, interleaved[:, perm])
    assert torch.equal(rotate_half(torch.arange(4.0)), torch.tensor([-2.0, -3.0, 0.0, 1.0]))


def test_complex_form_equals_real_form():
    D = 16
    x = torch.randn(5, D, dtype=torch.float64)
    angles = torch.arange(5)[:, None].double() * default_inv_freq(D, 10000.0).double()
    z = torch.complex(x[:, : D // 2], x[:, D // 2:]) * torch.polar(torch.ones_like(angles), angles)
    torch.testing.assert_close(rotate(x, torch.arange(5)), torch.cat((z.real, z.imag), dim=-1))


def test_linear_is_position_interpolation():
    x = torch.randn(3, 16, dtype=torch.float64)
    stretched = rotate(x, [4, 10, 30], config(rope_scaling="linear", rope_factor=2.0))
    torch.testing.assert_close(stretched, rotate(x, [2, 5, 15]))


def test_ntk_keeps_high_frequencies_and_stretches_the_lowest():
    base, _ = rope_frequencies(config(), 0)
    ntk, _ = rope_frequencies(config(rope_scaling="ntk", rope_factor=4.0), 0)
    assert ntk[0] == base[0] == 1.0
    torch.testing.assert_close(ntk[-1] * 4, base[-1])
    assert math.isclose(ntk_theta(10000.0, 4.0, 16), 10000.0 * 4 ** (16 / 14))


def test_dynamic_ntk_changes_nothing_within_the_training_length():
    cfg = config(rope_scaling="dynamic", rope_factor=2.0, rope_original_max_seq_len=32)
    plain, _ = rope_frequencies(config(), 0)
    assert torch.equal(rope_frequencies(cfg, 32)[0], plain)
    longer, _ = rope_frequencies(cfg, 64)  # effective factor 2 * 64/32 - 1 = 3
    torch.testing.assert_close(longer, default_inv_freq(16, ntk_theta(10000.0, 3.0, 16)))


def test_yarn_blends_by_rotations():
    s, L = 4.0, 4096
    inv, scale = yarn_inv_freq(16, 10000.0, s, L)
    plain = default_inv_freq(16, 10000.0)
    turns = plain * L / (2 * math.pi)  # rotations each pair makes within the training length
    step = 10000.0 ** (2 / 16)  # turns ratio of neighbouring pairs; YaRN rounds its bounds to whole pairs
    fast, slow = turns > 32 * step, turns < 1 / step
    assert fast.any() and slow.any()
    torch.testing.assert_close(inv[fast], plain[fast])  # many turns: extrapolate (keep)
    torch.testing.assert_close(inv[slow], plain[slow] / s)  # under one turn: interpolate
    assert math.isclose(scale, 0.1 * math.log(s) + 1)
    cos, sin = rope_cos_sin(config(rope_scaling="yarn", rope_factor=s, rope_original_max_seq_len=64),
                            torch.arange(3), torch.float64)
    torch.testing.assert_close(cos.pow(2) + sin.pow(2), torch.full_like(cos, scale ** 2))


def test_angles_are_computed_in_float32_for_bf16():
    pos = torch.tensor([[1000, 2047]])
    cos16, _ = rope_cos_sin(config(), pos, torch.bfloat16)
    cos32, _ = rope_cos_sin(config(), pos, torch.float32)
    assert cos16.dtype == torch.bfloat16 and torch.equal(cos16, cos32.bfloat16())


@pytest.mark.parametrize("kind, extra", [
    ("linear", {}), ("dynamic", {}), ("yarn", {"original_max_position_embeddings": 32}),
])
def test_frequencies_match_transformers_bit_for_bit(kind, extra):
    transformers = pytest.importorskip("transformers")
    from transformers.modeling_rope_utils import ROPE_INIT_FUNCTIONS

    max_pos = 32 if kind == "dynamic" else 128
    hf_config = transformers.LlamaConfig(
        hidden_size=64, num_attention_heads=4, max_position_embeddings=max_pos,
        rope_parameters={"rope_type": kind, "rope_theta": 500.0, "factor": 4.0, **extra})
    ours = config(rope_theta=500.0, rope_scaling=kind, rope_factor=4.0, max_seq_len=128,
                  rope_original_max_seq_len=32)
    for seq_len in (16, 100):
        theirs, their_scale = ROPE_INIT_FUNCTIONS[kind](hf_config, None, seq_len=seq_len)
        inv, scale = rope_frequencies(ours, seq_len)
        assert torch.equal(inv, theirs) and scale == their_scale

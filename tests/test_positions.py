"""Tests of minillm.positions: sinusoids, ALiBi, RoPE wavelengths, loss by position."""
import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from minillm.config import ModelConfig
from minillm.model import Transformer
from minillm.positions import (alibi_bias, alibi_slopes, extension_frequencies, far_attention_mass,
                               loss_by_position, loss_with_context_limit,
                               sinusoidal_encoding, turns_within, wavelengths)
from minillm.rope import default_inv_freq


def test_sinusoidal_values_and_layout():
    pe = sinusoidal_encoding(50, 8)
    assert pe.shape == (50, 8) and pe.dtype == torch.float32
    p, i = 7, 1  # column 2i is sin, 2i + 1 is cos, of p / 10000^(2i/d)
    angle = p / 10000 ** (2 * i / 8)
    assert pe[p, 2 * i].item() == pytest.approx(math.sin(angle), abs=1e-6)
    assert pe[p, 2 * i + 1].item() == pytest.approx(math.cos(angle), abs=1e-6)
    torch.testing.assert_close(pe[0], torch.tensor([0.0, 1.0] * 4))


@settings(max_examples=25, deadline=None)
@given(st.integers(0, 200), st.integers(0, 200), st.integers(0, 300))
def test_sinusoidal_dot_product_depends_only_on_offset(a, b, shift):
    pe = sinusoidal_encoding(600, 16).double()
    assert (pe[a] @ pe[b]).item() == pytest.approx((pe[a + shift] @ pe[b + shift]).item(), abs=1e-5)


@pytest.mark.parametrize("bad", [dict(num_positions=0, d_model=8), dict(num_positions=4, d_model=7),
                                 dict(num_positions=2.5, d_model=8)])
def test_sinusoidal_rejects_bad_input(bad):
    with pytest.raises(ValueError):
        sinusoidal_encoding(**bad)


def test_alibi_slopes_match_the_paper():
    torch.testing.assert_close(alibi_slopes(8), torch.tensor([2.0 ** -k for k in range(1, 9)]))
    torch.testing.assert_close(alibi_slopes(4), torch.tensor([2.0 ** -k for k in (2, 4, 6, 8)]))
    # 12 heads: the 8-head slopes, then every other slope of the 16-head sequence.
    sixteen = [2.0 ** (-k / 2) for k in range(1, 17)]
    want = [2.0 ** -k for k in range(1, 9)] + sixteen[0::2][:4]
    torch.testing.assert_close(alibi_slopes(12), torch.tensor(want))
    with pytest.raises(ValueError, match="n_heads"):
        alibi_slopes(0)


def test_alibi_bias_is_linear_in_distance_and_causal():
    bias = alibi_bias(4, 6)
    assert bias.shape == (4, 6, 6)
    m = alibi_slopes(4)
    assert bias[2, 5, 1].item() == pytest.approx(-m[2].item() * 4)
    assert torch.isinf(bias[:, 1, 3]).all() and (torch.diagonal(bias, dim1=1, dim2=2) == 0).all()
    full = alibi_bias(4, 6, causal=False)
    torch.testing.assert_close(full, full.transpose(1, 2))
    assert torch.isfinite(full).all()


def test_wavelengths_and_turns():
    inv = default_inv_freq(32, 10000.0)
    wl = wavelengths(inv)
    torch.testing.assert_close(wl, 2 * math.pi * 10000.0 ** (torch.arange(0, 32, 2).double() / 32),
                               rtol=1e-6, atol=0)
    turns = turns_within(inv, 64)
    torch.testing.assert_close(turns, 64 / wl)
    assert turns[0] > 1 > turns[-1]
    with pytest.raises(ValueError, match="length"):
        turns_within(inv, 0)


def test_extension_frequencies():
    cfg = ModelConfig(vocab_size=11, d_model=64, n_heads=2, n_layers=1, max_seq_len=64)
    f = extension_frequencies(cfg, 4.0, seq_len=256)
    assert list(f) == ["rope", "linear", "ntk", "dynamic", "yarn"]
    torch.testing.assert_close(f["linear"], f["rope"] / 4)
    # NTK keeps the fastest pair and divides the slowest exactly by the factor.
    assert f["ntk"][0] == f["rope"][0]
    assert (f["rope"][-1] / f["ntk"][-1]).item() == pytest.approx(4.0, rel=1e-4)
    # Dynamic at 4x the length with factor 4 uses NTK with 4*4 - 3 = 13.
    assert (f["rope"][-1] / f["dynamic"][-1]).item() == pytest.approx(13.0, rel=1e-4)
    assert torch.equal(extension_frequencies(cfg, 4.0, seq_len=64)["dynamic"], f["rope"])


def test_loss_by_position_chunks_agree_for_fixed_frequencies():
    torch.manual_seed(0)
    model = Transformer(ModelConfig(vocab_size=20, d_model=32, n_heads=2, n_layers=1, max_seq_len=8)).eval()
    ids = torch.randint(0, 20, (3, 16))
    whole = loss_by_position(model, ids)
    assert whole.shape == (15,)
    torch.testing.assert_close(loss_by_position(model, ids, chunk_ends=(4, 8, 16)), whole)
    logits = model(ids)
    manual = torch.nn.functional.cross_entropy(logits[:, :-1].flatten(0, 1), ids[:, 1:].flatten())
    assert whole.mean().item() == pytest.approx(manual.item(), rel=1e-5)
    with pytest.raises(ValueError, match="chunk_ends"):
        loss_by_position(model, ids, chunk_ends=(8, 4, 16))
    with pytest.raises(ValueError, match="input_ids"):
        loss_by_position(model, ids[0])


def _tiny_model(seed=0, **overrides):
    torch.manual_seed(seed)
    return Transformer(ModelConfig.preset("tiny", **overrides)).eval()


def test_loss_with_context_limit_equals_full_loss_inside_the_limit_and_brute_force_beyond():
    model = _tiny_model()
    ids = torch.randint(0, model.config.vocab_size, (2, 23))
    limited = loss_with_context_limit(model, ids, limit=8)
    assert limited.shape == (22,)
    full = loss_by_position(model, ids)
    torch.testing.assert_close(limited[:7], full[:7])          # the first window sees everything
    # Brute force: target t+1 is predicted from the window of the schedule's last <= 8 tokens.
    for t in range(22):
        last = min((t // 4) * 4 + 4, 22)
        start = max(0, last - 8)
        logits = model(ids[:, start:t + 1])[:, -1]
        expected = torch.nn.functional.cross_entropy(logits, ids[:, t + 1], reduction="none").mean()
        assert t - start + 1 <= 8
        torch.testing.assert_close(limited[t], expected, atol=1e-5, rtol=1e-5)


def test_loss_with_context_limit_rejects_bad_input():
    model = _tiny_model()
    with pytest.raises(ValueError, match="limit"):
        loss_with_context_limit(model, torch.zeros(1, 10, dtype=torch.long), limit=1)
    with pytest.raises(ValueError, match="input_ids"):
        loss_with_context_limit(model, torch.zeros(10, dtype=torch.long), limit=4)


def test_far_attention_mass():
    T = 6
    uniform = torch.tril(torch.ones(T, T)) / torch.arange(1, T + 1)[:, None]   # causal, uniform rows
    far = far_attention_mass(uniform, 2)
    expected = torch.tensor([max(0, i - 1) / (i + 1) for i in range(T)])    # keys 0..i-2 of i+1 keys
    torch.testing.assert_close(far, expected)
    assert far_attention_mass(torch.eye(T)[None, None], 1).abs().max() == 0   # attends to itself only
    with pytest.raises(ValueError, match="weights"):
        far_attention_mass(torch.ones(3, 4), 1)
    with pytest.raises(ValueError, match="min_distance"):
        far_attention_mass(uniform, 0)

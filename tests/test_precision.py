"""minillm.precision: float layouts, derived limits, rounding, the loss scaler."""
import math
import struct

import pytest
import torch
from hypothesis import given, settings, strategies as st

from minillm.precision import (FORMATS, LossScaler, bits_of, decode, flushed_to_zero, get_format,
                               join_bits, round_to_format, spacing, split_bits)

float32s = st.floats(width=32, allow_nan=False, allow_infinity=False)


@pytest.mark.parametrize("name", sorted(FORMATS))
def test_limits_match_torch_finfo(name):
    fmt = FORMATS[name]
    info = torch.finfo(fmt.dtype)
    assert fmt.bits == info.bits
    assert fmt.max == info.max
    assert fmt.smallest_normal == info.smallest_normal
    assert fmt.eps == info.eps
    int_type = {32: torch.int32, 16: torch.int16, 8: torch.uint8}[fmt.bits]
    bit_pattern_one = torch.tensor([1], dtype=int_type).view(fmt.dtype)  # the last number before 0
    assert fmt.smallest_subnormal == bit_pattern_one.double().item() == decode(1, fmt)


def test_fp32_bits_match_struct():
    for x in (1.0, 0.1, -2.5, 65504.0, 1e-8, 3.4e38):
        want = struct.unpack("<I", struct.pack("<f", x))[0]
        assert bits_of(x, "fp32") == want
    assert split_bits(bits_of(1.0, "fp32"), "fp32") == (0, 127, 0)
    assert split_bits(bits_of(-2.5, "fp32"), "fp32") == (1, 128, 2 ** 21)


@settings(max_examples=300, deadline=None)
@given(float32s, st.sampled_from(["fp32", "fp16", "bf16", "fp8_e5m2"]))
def test_round_decode_and_fields_agree_with_torch(x, name):
    fmt = FORMATS[name]
    want = torch.tensor([x], dtype=torch.float32).to(fmt.dtype).double().item()
    got = round_to_format(x, fmt)
    assert got == want or (math.isnan(got) and math.isnan(want))
    bits = bits_of(x, fmt)
    decoded = decode(bits, fmt)
    assert decoded == want or (math.isnan(decoded) and math.isnan(want))
    assert join_bits(*split_bits(bits, fmt), fmt) == bits


@settings(max_examples=200, deadline=None)
@given(st.floats(min_value=-440, max_value=440, allow_nan=False, width=32))
def test_e4m3_rounding_in_range(x):
    want = torch.tensor([x]).to(torch.float8_e4m3fn).double().item()
    assert round_to_format(x, "fp8_e4m3") == want
    assert decode(bits_of(x, "fp8_e4m3"), "fp8_e4m3") == want


def test_ties_to_even_and_overflow():
    assert round_to_format(1 + 2 ** -11, "fp16") == 1.0          # halfway: to the even mantissa 0
    assert round_to_format(1 + 3 * 2 ** -11, "fp16") == 1 + 2 ** -9  # halfway: up to the even one
    assert round_to_format(65519.0, "fp16") == 65504.0
    assert round_to_format(65520.0, "fp16") == math.inf
    assert round_to_format(1 + 1e-3, "bf16") == 1.0
    assert spacing(1.0, "bf16") == 2 ** -7 and spacing(1024.0, "fp16") == 1.0


def test_special_values_decode():
    assert decode(0x7C00, "fp16") == math.inf and decode(0xFC00, "fp16") == -math.inf
    assert math.isnan(decode(0x7E00, "fp16")) and math.isnan(decode(0x7F, "fp8_e4m3"))
    assert decode(0x0001, "fp16") == 2.0 ** -24


def test_bad_input_is_named():
    with pytest.raises(ValueError, match="fp12"):
        get_format("fp12")
    with pytest.raises(ValueError, match="65536"):
        split_bits(65536, "fp16")
    with pytest.raises(ValueError, match="growth_interval"):
        LossScaler(growth_interval=0)


def test_flushed_to_zero():
    g = torch.tensor([1e-3, 1e-8, 1e-9, 0.0])
    assert flushed_to_zero(g, "fp16").tolist() == [False, True, True, False]  # 2^-24 = 6e-8 is the floor
    assert flushed_to_zero(g, "fp16", scale=2.0 ** 10).tolist() == [False] * 4
    assert not flushed_to_zero(g, "bf16").any()


def test_loss_scaler_matches_torch_gradscaler():
    torch.manual_seed(0)
    w = torch.nn.Parameter(torch.ones(3))
    opt = torch.optim.SGD([w], lr=0.0)
    ours = LossScaler(init_scale=8.0, growth_interval=2)
    theirs = torch.amp.GradScaler("cpu", init_scale=8.0, growth_interval=2)
    pattern = [False, False, False, True, False, False, True, True, False, False, False]
    for overflow in pattern:
        assert ours.scale == theirs.get_scale()
        factor = math.inf if overflow else 1.0
        w.grad = None
        theirs.scale((w * factor).sum()).backward()
        theirs.unscale_(opt)
        theirs.step(opt)
        theirs.update()
        w.grad = None
        ((w * factor).sum() * ours.scale).backward()
        skipped = ours.update(ours.unscale_([w]))
        assert skipped == overflow
    assert ours.scale == theirs.get_scale()
    assert [s for _, s in ours.history] == pattern


def _tiny_run(mode, steps=3, loss_scale=1.0, seed=0):
    from minillm.config import ModelConfig
    from minillm.data import Batches
    from minillm.model import Transformer
    from minillm.precision import train_in_precision

    torch.manual_seed(seed)
    config = ModelConfig(vocab_size=32, d_model=16, n_layers=1, n_heads=2, max_seq_len=8,
                         tie_embeddings=False)
    model = Transformer(config)
    ids = torch.randint(0, 32, (16, 8), generator=torch.Generator().manual_seed(seed))
    records = train_in_precision(model, mode, Batches(ids, ids.clone(), batch_size=4, seed=seed),
                                 steps, 1e-2, warmup_steps=1, loss_scale=loss_scale)
    return model, records


def test_train_in_precision_modes_run_and_record():
    from minillm.precision import TRAINING_MODES

    for mode in TRAINING_MODES:
        model, records = _tiny_run(mode)
        assert [r["step"] for r in records] == [0, 1, 2]
        assert all(math.isfinite(r["loss"]) and 0 <= r["unchanged"] <= 1 for r in records)
        dtype = torch.bfloat16 if mode == "pure bf16" else torch.float32
        assert all(p.dtype == dtype for p in model.parameters())
    assert records[0]["scale"] == 2.0 ** 16  # GradScaler's default start


def test_power_of_two_loss_scale_is_exact_in_fp32_and_flushes_fp16():
    _, plain = _tiny_run("fp32")
    _, shrunk = _tiny_run("fp32", loss_scale=2.0 ** -20)
    assert [r["loss"] for r in plain] == [r["loss"] for r in shrunk]
    _, fp16 = _tiny_run("fp16 autocast")
    _, fp16_shrunk = _tiny_run("fp16 autocast", loss_scale=2.0 ** -20)
    assert fp16_shrunk[0]["zero_grads"] > fp16[0]["zero_grads"]
    assert fp16_shrunk[0]["zero_grads"] > 0.5


def test_train_in_precision_rejects_bad_arguments():
    with pytest.raises(ValueError, match="mode"):
        _tiny_run("fp8")
    with pytest.raises(ValueError, match="GradScaler"):
        _tiny_run("fp16 + GradScaler", loss_scale=0.5)

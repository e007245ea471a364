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

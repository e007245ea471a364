"""The checkers of chapter 10 accept right answers and reject wrong ones."""
import math

import pytest
import torch

from minillm.exercises import ExerciseError, ExerciseNotImplemented
from minillm.exercises import precision as ex


def stub(*args):
    raise NotImplementedError


# ----------------------------------------------------------------- decode_bf16

def decode_bf16(bits):
    sign, exponent, mantissa = bits >> 15, (bits >> 7) & 0xFF, bits & 0x7F
    if exponent == 255:
        return math.nan if mantissa else (-1) ** sign * math.inf
    if exponent == 0:
        return (-1) ** sign * 2.0 ** -126 * mantissa / 128
    return (-1) ** sign * 2.0 ** (exponent - 127) * (1 + mantissa / 128)


def no_subnormals(bits):
    sign, exponent, mantissa = bits >> 15, (bits >> 7) & 0xFF, bits & 0x7F
    if exponent == 0:
        return (-1) ** sign * 2.0 ** -127 * (1 + mantissa / 128)
    return decode_bf16(bits)


@pytest.mark.parametrize("wrong, hint", [
    (lambda b: 2.0 ** ((b >> 7) & 0xFF) * (1 + (b & 0x7F) / 128), "bias"),
    (lambda b: decode_bf16(b & 0x7FFF), "sign"),
    (lambda b: 2.0 ** (((b >> 7) & 0xFF) - 127) * ((b & 0x7F) / 128), "hidden"),
    (no_subnormals, "subnormal"),
    (lambda b: decode_bf16(b) if (b >> 7) & 0xFF != 255 else 3.4e38, "infinity"),
    (lambda b: torch.tensor([b], dtype=torch.int32).to(torch.int16).view(torch.float16).item(), "should be"),
    (lambda b: None, "number"),
])
def test_decode_bf16(wrong, hint, capsys):
    ex.check_decode_bf16(decode_bf16)
    assert "✓ correct" in capsys.readouterr().out
    with pytest.raises(ExerciseError, match=hint):
        ex.check_decode_bf16(wrong)
    with pytest.raises(ExerciseNotImplemented):
        ex.check_decode_bf16(stub)


# ----------------------------------------------------------------- underflow

def underflow(grads, scale):
    nonzero = grads != 0
    flushed = nonzero & ((grads * scale).to(torch.float16) == 0)
    return (flushed.sum() / nonzero.sum()).item()


@pytest.mark.parametrize("wrong, hint", [
    (lambda g, s: underflow(g, 1.0), "multiply"),
    (lambda g, s: ((g * s).abs() < 2.0 ** -14)[g != 0].float().mean().item(), "NORMAL"),
    (lambda g, s: ((g * s).to(torch.float16) == 0).float().mean().item(), "NONZERO"),
    (lambda g, s: underflow(g, s) + 0.1, "should be"),
])
def test_fp16_underflow_fraction(wrong, hint, capsys):
    ex.check_fp16_underflow_fraction(underflow)
    assert "✓ correct" in capsys.readouterr().out
    with pytest.raises(ExerciseError, match=hint):
        ex.check_fp16_underflow_fraction(wrong)
    with pytest.raises(ExerciseNotImplemented):
        ex.check_fp16_underflow_fraction(stub)


# ----------------------------------------------------------------- activations

def per_block(batch, seq, d_model, d_ff, n_heads, n_kv_heads):
    kv = n_kv_heads * (d_model // n_heads)
    return 4 * batch * seq * (8 * d_model + 2 * kv + 4 * d_ff + n_heads + 2)


@pytest.mark.parametrize("wrong, hint", [
    (lambda *a: per_block(*a) // 4, "BYTES"),
    (lambda B, T, d, f, H, K: per_block(B, T, d, f, H, H), "GQA"),
    (lambda B, T, d, f, H, K: per_block(B, T, d, f, H, K) - 4 * B * T * H, "logsumexp"),
    (lambda B, T, d, f, H, K: per_block(B, T, d, f, H, K) - 4 * B * T * 2, "rsqrt"),
    (lambda B, T, d, f, H, K: per_block(B, T, d, f, H, K) - 4 * B * T * f, "FOUR"),
    (lambda B, T, d, f, H, K: per_block(B, T, d, f, H, K) + 4 * B * T * H * T, "probabilities"),
    (lambda *a: per_block(*a) + 1, "should be"),
])
def test_activation_bytes_per_block(wrong, hint, capsys):
    ex.check_activation_bytes_per_block(per_block)
    assert "✓ correct" in capsys.readouterr().out
    with pytest.raises(ExerciseError, match=hint):
        ex.check_activation_bytes_per_block(wrong)
    with pytest.raises(ExerciseNotImplemented):
        ex.check_activation_bytes_per_block(stub)


# ----------------------------------------------------------------- batch size

def max_batch(memory, n_params, act):
    return max(0, int((memory - 16 * n_params) // act))


@pytest.mark.parametrize("wrong, hint", [
    (lambda m, n, a: max(0, int((m - 2 * n) // a)), "16-bit weights"),
    (lambda m, n, a: max(0, int((m - 12 * n) // a)), "fp32 states"),
    (lambda m, n, a: int((m - 16 * n) // a), "negative"),
    (lambda m, n, a: max(0.0, (m - 16 * n) / a), "whole number"),
    (lambda m, n, a: max_batch(m, n, a) + 1, "should be"),
])
def test_max_batch_size(wrong, hint, capsys):
    ex.check_max_batch_size(max_batch)
    assert "✓ correct" in capsys.readouterr().out
    with pytest.raises(ExerciseError, match=hint):
        ex.check_max_batch_size(wrong)
    with pytest.raises(ExerciseNotImplemented):
        ex.check_max_batch_size(stub)

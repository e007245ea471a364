"""Checkers for the exercises of chapter 10, "Mixed precision and memory"
(notebook 1: floating point and mixed precision; notebook 2: where the memory
goes). Each takes the reader's function and raises ExerciseError with a hint
when an answer is wrong."""
from __future__ import annotations

import math
import struct

import torch

from minillm.config import ModelConfig
from minillm.exercises import ExerciseError, call, expect_number, passed
from minillm.memory import activation_bytes


# ------------------------------------------------------------ notebook 1

def _bf16_value(bits: int) -> float:
    """The book's answer: a bf16 is the top half of an fp32, so append 16 zero bits."""
    return struct.unpack("<f", struct.pack("<I", bits << 16))[0]


def check_decode_bf16(decode_bf16) -> None:
    """``decode_bf16(bits)``: the value of a 16-bit bf16 pattern (an int in [0, 65535])."""
    cases = {
        0x3F80: "1.0", 0xC020: "-2.5", 0x3DCD: "0.1 rounded", 0x4780: "65536",
        0x0080: "the smallest normal, 2^-126", 0x0001: "the smallest subnormal, 2^-133",
        0x0040: "a subnormal", 0x7F7F: "the largest finite bf16", 0x7F80: "+inf", 0xFF80: "-inf",
        0x0000: "zero",
    }
    for bits, name in cases.items():
        want = _bf16_value(bits)
        got = expect_number(call(decode_bf16, bits), f"decode_bf16({bits:#06x})")
        if got == want:
            continue
        hint = ""
        if bits == 0x3F80 and got == 2.0 ** 127:
            hint = ": the exponent field is stored with a bias of 127; subtract it"
        elif bits == 0x3F80 and got == 0.0:
            hint = ": normal numbers have a hidden leading 1, value = 2^(e - 127) * (1 + m / 128)"
        elif bits in (0x0001, 0x0040):
            hint = (": a zero exponent field means a subnormal: no hidden 1, and the exponent is "
                    "fixed at 1 - 127 = -126, value = 2^-126 * m / 128")
        elif bits in (0x7F80, 0xFF80):
            hint = ": an all-ones exponent (255) with a zero mantissa is infinity"
        elif bits == 0xC020:
            hint = ": the top bit is the sign"
        raise ExerciseError(f"decode_bf16({bits:#06x}) ({name}) should be {want!r}, got {got!r}{hint}")
    if not math.isnan(expect_number(call(decode_bf16, 0x7FC0), "decode_bf16(0x7fc0)")):
        raise ExerciseError("decode_bf16(0x7fc0) should be NaN: all-ones exponent with a nonzero mantissa")
    passed("1 sign bit, 8 exponent bits (bias 127), 7 mantissa bits: the top half of an fp32")


def _underflow_fraction(grads: torch.Tensor, scale: float) -> float:
    nonzero = grads != 0
    flushed = nonzero & ((grads.double() * scale).to(torch.float16) == 0)
    return flushed.sum().item() / nonzero.sum().item()


def check_fp16_underflow_fraction(fp16_underflow_fraction) -> None:
    """``fp16_underflow_fraction(grads, scale)``: among the nonzero entries of
    grads (an fp32 tensor), the fraction that becomes exactly 0 when
    ``grads * scale`` is stored in fp16."""
    g = torch.Generator().manual_seed(0)
    magnitudes = torch.exp2(torch.empty(10_000).uniform_(-40, 0, generator=g))
    grads = magnitudes * torch.randn(10_000, generator=g).sign()
    grads[:1000] = 0.0  # exact zeros are not underflow
    nonzero = grads != 0
    for scale in (1.0, 2.0 ** 8, 2.0 ** 16):
        want = _underflow_fraction(grads, scale)
        what = f"fp16_underflow_fraction(grads, scale={scale:g})"
        got = expect_number(call(fp16_underflow_fraction, grads.clone(), scale), what)
        if math.isclose(got, want, abs_tol=1e-6):
            continue
        scaled = grads.double() * scale
        mistakes = {
            ": multiply the gradients by `scale` before converting to fp16": _underflow_fraction(grads, 1.0),
            (": values below the smallest NORMAL fp16 (2^-14) are not lost, they become subnormals "
             "down to 2^-24; count only values that become exactly 0"):
                (scaled.abs() < 2.0 ** -14)[nonzero].double().mean().item(),
            ": the exact zeros were zero already; divide by the number of NONZERO gradients":
                (scaled.to(torch.float16) == 0).double().mean().item(),
        }
        hint = next((h for h, value in mistakes.items() if math.isclose(got, value, abs_tol=1e-6)), "")
        raise ExerciseError(f"{what} should be {want:.4f}, got {got:.4f}{hint}")
    passed("gradients below half of fp16's smallest subnormal (2^-25) flush to zero; scaling rescues them")


# ------------------------------------------------------------ notebook 2

def check_activation_bytes_per_block(activation_bytes_per_block) -> None:
    """``activation_bytes_per_block(batch, seq, d_model, d_ff, n_heads, n_kv_heads)``:
    bytes one minillm block saves for backward in fp32 with SDPA's fused
    (flash) attention."""
    shapes = [(2, 64, 128, 384, 4, 2), (1, 10, 64, 160, 8, 8), (3, 7, 96, 256, 6, 1)]
    for B, T, d, f, H, K in shapes:
        config = ModelConfig(vocab_size=64, d_model=d, n_layers=1, n_heads=H, n_kv_heads=K, d_ff=f)
        parts = activation_bytes(config, B, T)
        want = parts["blocks"]
        what = f"activation_bytes_per_block(batch={B}, seq={T}, d_model={d}, d_ff={f}, n_heads={H}, n_kv_heads={K})"
        got = expect_number(call(activation_bytes_per_block, B, T, d, f, H, K), what)
        if got == want:
            continue
        n, kv = B * T, K * (d // H)
        hints = {
            want // 4: "count BYTES: fp32 numbers take 4 each",
            want + 4 * n * 2 * (d - kv): "k and v have n_kv_heads * head_dim numbers per token, not d (GQA)",
            want - 4 * n * H: "the fused kernel also keeps one logsumexp per head and token",
            want - 4 * n * 2: "each RMSNorm also keeps its rsqrt, one number per token",
            want - 4 * n * f: "SwiGLU keeps FOUR hidden-size tensors: gate, up, silu(gate) and their product",
            want + 4 * n * H * T: "the fused (flash) kernel does NOT keep the T x T attention probabilities",
        }
        hint = next((f": {h}" for w, h in hints.items() if got == w), "")
        raise ExerciseError(f"{what} should be {want:,} bytes, got {got:,.0f}{hint}")
    passed("(8d + 2 n_kv_heads head_dim + 4 d_ff + n_heads + 2) numbers x 4 bytes per token per block")


def check_max_batch_size(max_batch_size) -> None:
    """``max_batch_size(memory_bytes, n_params, activation_bytes_per_sequence)``:
    the largest batch (sequences) that fits when mixed-precision AdamW holds
    16 bytes per parameter and each sequence adds its activations; 0 if even
    the model states do not fit."""
    cases = [(80e9, 1e9, 2e9), (80e9, 7e9, 1e9), (24e9, 1e9, 3e8), (16e9, 1e9, 1e8), (40e9, 3e9, 7e8)]
    for memory, n, act in cases:
        want = max(0, math.floor((memory - 16 * n) / act))
        what = f"max_batch_size({memory:.3g}, n_params={n:.3g}, activation_bytes_per_sequence={act:.3g})"
        got = call(max_batch_size, memory, n, act)
        if isinstance(got, float) and got.is_integer():
            got = int(got)
        if not isinstance(got, int):
            raise ExerciseError(f"{what}: expected a whole number of sequences (int), got {got!r}")
        if got == want:
            continue
        hint = ""
        for per_param, mistake in ((2, "only the 16-bit weights"), (4, "only fp32 weights"),
                                   (12, "only the fp32 states, not the 16-bit weights and gradients")):
            if got == max(0, math.floor((memory - per_param * n) / act)):
                hint = f": you counted {mistake}; mixed-precision AdamW holds 2+2+4+4+4 = 16 bytes per parameter"
        if got < 0:
            hint = ": when the model states alone do not fit, the answer is 0, not negative"
        raise ExerciseError(f"{what} should be {want}, got {got}{hint}")
    passed("model states first (16 bytes per parameter), then whole sequences of activations")

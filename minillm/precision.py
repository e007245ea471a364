"""Floating-point formats as data, rounding to them by hand, and a loss scaler.

A binary float is three bit fields, sign s, exponent e (E bits) and mantissa m
(M bits), read as

    normal    (e != 0):  (-1)^s * 2^(e - bias) * (1 + m / 2^M)      bias = 2^(E-1) - 1
    subnormal (e == 0):  (-1)^s * 2^(1 - bias) * (m / 2^M)

The exponent width sets the *range* (largest and smallest magnitudes), the
mantissa width the *precision* (relative spacing 2^-M). fp16 and bf16 spend
the same 16 bits differently: fp16 has 5 exponent bits and 10 mantissa bits,
bf16 keeps fp32's 8 exponent bits and only 7 mantissa bits (Kalamkar et al.
2019). Everything below is derived from (E, M) and checked against
``torch.finfo`` and ``tensor.to(dtype)`` in the tests.

``LossScaler`` is the dynamic loss scaling of mixed-precision training
(Micikevicius et al. 2018) in a dozen readable lines, with the same rules and
defaults as ``torch.amp.GradScaler``.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class FloatFormat:
    """A binary floating-point format: 1 sign bit, ``exponent_bits``, ``mantissa_bits``.

    ``ieee``: the all-ones exponent means inf/NaN (fp32, fp16, bf16, fp8 e5m2).
    fp8 e4m3 ("fn": finite) gives that exponent back to numbers and keeps only
    the all-ones pattern for NaN, which buys one more binade of range.
    """

    name: str
    exponent_bits: int
    mantissa_bits: int
    dtype: torch.dtype
    ieee: bool = True

    @property
    def bits(self) -> int:
        return 1 + self.exponent_bits + self.mantissa_bits

    @property
    def bias(self) -> int:
        return 2 ** (self.exponent_bits - 1) - 1

    @property
    def min_exponent(self) -> int:
        """Unbiased exponent of the smallest normal number, 1 - bias."""
        return 1 - self.bias

    @property
    def max_exponent(self) -> int:
        """Unbiased exponent of the largest finite number."""
        top = 2 ** self.exponent_bits - 1  # the all-ones exponent field
        return (top - 1 if self.ieee else top) - self.bias

    @property
    def max(self) -> float:
        """Largest finite value: all mantissa bits set (e4m3fn: all but the NaN pattern)."""
        top_mantissa = 2 ** self.mantissa_bits - (1 if self.ieee else 2)
        return 2.0 ** self.max_exponent * (1 + top_mantissa / 2 ** self.mantissa_bits)

    @property
    def smallest_normal(self) -> float:
        return 2.0 ** self.min_exponent

    @property
    def smallest_subnormal(self) -> float:
        """The last number before zero: 2^(1 - bias - M)."""
        return 2.0 ** (self.min_exponent - self.mantissa_bits)

    @property
    def eps(self) -> float:
        """Machine epsilon: the gap between 1 and the next number, 2^-M."""
        return 2.0 ** -self.mantissa_bits


FORMATS: dict[str, FloatFormat] = {
    "fp32": FloatFormat("fp32", 8, 23, torch.float32),
    "fp16": FloatFormat("fp16", 5, 10, torch.float16),
    "bf16": FloatFormat("bf16", 8, 7, torch.bfloat16),
    "fp8_e4m3": FloatFormat("fp8_e4m3", 4, 3, torch.float8_e4m3fn, ieee=False),
    "fp8_e5m2": FloatFormat("fp8_e5m2", 5, 2, torch.float8_e5m2),
}
_INT_OF_WIDTH = {32: torch.int32, 16: torch.int16, 8: torch.uint8}


def get_format(fmt: str | FloatFormat) -> FloatFormat:
    if isinstance(fmt, FloatFormat):
        return fmt
    if fmt not in FORMATS:
        raise ValueError(f"unknown float format {fmt!r}; choose one of {sorted(FORMATS)}")
    return FORMATS[fmt]


def bits_of(x: float, fmt: str | FloatFormat) -> int:
    """The bit pattern (an unsigned int) of x after torch rounds it to ``fmt``."""
    fmt = get_format(fmt)
    stored = torch.tensor([x], dtype=torch.float32).to(fmt.dtype)
    return int(stored.view(_INT_OF_WIDTH[fmt.bits]).item()) % 2 ** fmt.bits  # two's complement -> unsigned


def split_bits(bits: int, fmt: str | FloatFormat) -> tuple[int, int, int]:
    """bits -> (sign, exponent field, mantissa field), the three integers of the layout."""
    fmt = get_format(fmt)
    if not isinstance(bits, int) or not 0 <= bits < 2 ** fmt.bits:
        raise ValueError(f"bits must be an integer in [0, 2^{fmt.bits}) for {fmt.name}, got {bits!r}")
    mantissa = bits & (2 ** fmt.mantissa_bits - 1)
    exponent = (bits >> fmt.mantissa_bits) & (2 ** fmt.exponent_bits - 1)
    return bits >> (fmt.bits - 1), exponent, mantissa


def join_bits(sign: int, exponent: int, mantissa: int, fmt: str | FloatFormat) -> int:
    """Inverse of ``split_bits``."""
    fmt = get_format(fmt)
    return (sign << (fmt.bits - 1)) | (exponent << fmt.mantissa_bits) | mantissa


def decode(bits: int, fmt: str | FloatFormat) -> float:
    """The value of a bit pattern, by the formula in the module docstring."""
    fmt = get_format(fmt)
    sign, exponent, mantissa = split_bits(bits, fmt)
    top = 2 ** fmt.exponent_bits - 1
    if fmt.ieee and exponent == top:
        return math.nan if mantissa else (-1) ** sign * math.inf
    if not fmt.ieee and exponent == top and mantissa == 2 ** fmt.mantissa_bits - 1:
        return math.nan
    if exponent == 0:  # subnormal: no hidden 1, exponent pinned at 1 - bias
        return (-1) ** sign * 2.0 ** fmt.min_exponent * (mantissa / 2 ** fmt.mantissa_bits)
    return (-1) ** sign * 2.0 ** (exponent - fmt.bias) * (1 + mantissa / 2 ** fmt.mantissa_bits)


def spacing(x: float, fmt: str | FloatFormat) -> float:
    """Gap between |x| and the next representable number above it (one ulp).

    Inside the normal range the gap is 2^(floor(log2|x|) - M): it doubles with
    every power of two, so the *relative* gap stays about 2^-M. Below the
    smallest normal it stays at the subnormal step.
    """
    fmt = get_format(fmt)
    exponent = math.frexp(abs(x))[1] - 1 if x != 0 else fmt.min_exponent
    return 2.0 ** (max(exponent, fmt.min_exponent) - fmt.mantissa_bits)


def round_to_format(x: float, fmt: str | FloatFormat) -> float:
    """x rounded to the nearest value of ``fmt``, ties to even (IEEE's default).

    Scale |x| by its spacing so representable numbers become integers, round
    to the nearest integer (Python's ``round`` sends .5 to the even one), scale
    back. Too large: inf (NaN for e4m3, which has no inf).
    """
    fmt = get_format(fmt)
    if math.isnan(x) or math.isinf(x):
        return x if fmt.ieee else math.nan
    step = spacing(x, fmt)
    value = math.copysign(round(abs(x) / step) * step, x)
    if abs(value) > fmt.max:  # rounds past the largest finite number
        return math.copysign(math.inf, x) if fmt.ieee else math.nan
    return value


def flushed_to_zero(values: torch.Tensor, fmt: str | FloatFormat, scale: float = 1.0) -> torch.Tensor:
    """Boolean mask: nonzero ``values * scale`` that become 0 when stored in ``fmt``."""
    fmt = get_format(fmt)
    scaled = values.double() * scale
    return (scaled != 0) & (scaled.to(fmt.dtype) == 0)


class LossScaler:
    """Dynamic loss scaling, as ``torch.amp.GradScaler`` does it.

    Multiply the loss by ``scale`` before backward so small gradients stay
    above fp16's underflow; divide the gradients by it before the optimizer
    step. If any gradient came out inf/NaN, the scale was too big: skip the
    step and multiply the scale by ``backoff_factor``. After
    ``growth_interval`` good steps in a row, try a bigger scale.
    ``history`` records (scale used, step skipped?) for every step.
    """

    def __init__(self, init_scale: float = 2.0 ** 16, growth_factor: float = 2.0,
                 backoff_factor: float = 0.5, growth_interval: int = 2000):
        if not init_scale > 0 or not growth_factor > 1 or not 0 < backoff_factor < 1:
            raise ValueError(f"need init_scale > 0, growth_factor > 1, 0 < backoff_factor < 1; got "
                             f"{init_scale}, {growth_factor}, {backoff_factor}")
        if not isinstance(growth_interval, int) or growth_interval < 1:
            raise ValueError(f"growth_interval must be a positive integer, got {growth_interval!r}")
        self.scale, self.growth_factor, self.backoff_factor = float(init_scale), growth_factor, backoff_factor
        self.growth_interval, self.good_steps = growth_interval, 0
        self.history: list[tuple[float, bool]] = []

    def unscale_(self, parameters) -> bool:
        """Divide every .grad by the scale in place; return True if any is inf/NaN."""
        found_inf = False
        for p in parameters:
            if p.grad is not None:
                p.grad.div_(self.scale)
                found_inf |= not bool(torch.isfinite(p.grad).all())
        return found_inf

    def update(self, found_inf: bool) -> bool:
        """Record this step and adjust the scale; returns True if the step must be skipped."""
        self.history.append((self.scale, found_inf))
        if found_inf:
            self.scale *= self.backoff_factor
            self.good_steps = 0
        else:
            self.good_steps += 1
            if self.good_steps == self.growth_interval:
                self.scale *= self.growth_factor
                self.good_steps = 0
        return found_inf

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

``train_in_precision`` trains a model in one of ``TRAINING_MODES`` (fp32, bf16
or fp16 autocast with fp32 master weights, pure bf16, fp16 with a GradScaler)
and records, per step, what the format did to it: gradient entries that came
out exactly zero, weight updates that rounded away. ``precision_experiment`` is
chapter 10's five-way comparison built on it.
"""
from __future__ import annotations

import copy
import functools
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
        """Record this step, adjust the scale; True if the step must be skipped."""
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


#: The five ways to train that chapter 10 compares (``train_in_precision``).
TRAINING_MODES = ("fp32", "bf16 autocast", "pure bf16", "fp16 autocast", "fp16 + GradScaler")
#: The dtype each mode's ``torch.autocast`` region computes matrix products in (None: no autocast).
AUTOCAST_DTYPES = {"fp32": None, "bf16 autocast": torch.bfloat16, "pure bf16": None,
                   "fp16 autocast": torch.float16, "fp16 + GradScaler": torch.float16}


def train_in_precision(model: torch.nn.Module, mode: str, batches, steps: int, lr: float, *,
                       warmup_steps: int = 10, min_lr: float | None = None,
                       weight_decay: float = 0.1, grad_clip: float | None = 1.0,
                       loss_scale: float = 1.0, optimizer: torch.optim.Optimizer | None = None,
                       diagnostics: bool = True) -> list[dict]:
    """Train ``model`` in place with AdamW in one of ``TRAINING_MODES``; one record per step.

    fp32: weights, gradients and Adam's m, v in fp32. "bf16 autocast" and
    "fp16 autocast": the same fp32 tensors (the weights *are* the master copy);
    inside ``torch.autocast`` matrix products run in 16 bits, and backward
    returns each gradient in its parameter's dtype, fp32. "pure bf16": the
    model is cast to bf16 (``model.to``), so weights, gradients, m and v are
    all bf16 and there is no fp32 copy anywhere. "fp16 + GradScaler": fp16
    autocast with ``torch.amp.GradScaler`` (its defaults: S = 2^16, dynamic).

    ``loss_scale`` is a fixed factor S for the other modes: backward runs on
    S * loss and the gradients are divided by S before clipping, so S < 1
    makes every gradient S times smaller while the optimizer still sees the
    true one (in fp32 a power of two changes nothing; in fp16 it decides what
    underflows). The schedule and parameter groups are ``minillm.train``'s:
    linear warmup, cosine to ``min_lr`` (default lr / 10), betas (0.9, 0.95),
    weight decay on matrices only; gradients clipped at ``grad_clip``.
    ``batches`` yields (input_ids, labels), each [B, T]. ``optimizer``: pass
    your own (built after any cast) to inspect its state afterwards.

    Returns, per step: ``loss`` (unscaled); ``zero_grads``, the fraction of
    gradient entries exactly 0 after unscaling, outside the input embedding
    (whose rows for tokens absent from the batch are 0 in any precision);
    ``unchanged``, the fraction of those weight entries that the optimizer step
    left bit-for-bit unchanged (an update below half a gap of the weight's
    format rounds away); ``scale`` (S used) and ``skipped`` (GradScaler found inf).
    """
    from minillm.train import lr_at, param_groups  # here: train imports much of minillm

    if mode not in TRAINING_MODES:
        raise ValueError(f"mode must be one of {TRAINING_MODES}, got {mode!r}")
    if mode == "fp16 + GradScaler" and loss_scale != 1.0:
        raise ValueError("fp16 + GradScaler chooses its own scale; leave loss_scale at 1")
    if not loss_scale > 0:
        raise ValueError(f"loss_scale must be > 0, got {loss_scale!r}")
    if mode == "pure bf16":
        model.to(torch.bfloat16)
    autocast_dtype = AUTOCAST_DTYPES[mode]
    scaler = torch.amp.GradScaler("cpu") if mode == "fp16 + GradScaler" else None
    params = [p for p in model.parameters() if p.requires_grad]
    embeddings = {id(m.weight) for m in model.modules() if isinstance(m, torch.nn.Embedding)}
    watched = [p for p in params if id(p) not in embeddings]
    n_watched = sum(p.numel() for p in watched)
    if optimizer is None:
        optimizer = torch.optim.AdamW(param_groups(model, weight_decay), lr=lr, betas=(0.9, 0.95))
    min_lr = lr / 10 if min_lr is None else min_lr
    records = []
    for step in range(steps):
        for group in optimizer.param_groups:
            group["lr"] = lr_at(step, lr, warmup_steps, steps, min_lr)
        input_ids, labels = next(batches)
        with torch.autocast("cpu", dtype=autocast_dtype or torch.float32,
                            enabled=autocast_dtype is not None):
            loss = model(input_ids, labels=labels)[1]
        scale = scaler.get_scale() if scaler else loss_scale
        (scaler.scale(loss) if scaler else loss * scale).backward()
        if scaler:
            scaler.unscale_(optimizer)
        elif scale != 1.0:
            for p in params:
                p.grad.div_(scale)
        zero = unchanged = None
        if diagnostics:
            zero = sum(int((p.grad == 0).sum()) for p in watched) / n_watched
        if grad_clip is not None:
            torch.nn.utils.clip_grad_norm_(params, grad_clip)
        before = [p.detach().clone() for p in watched] if diagnostics else []
        if scaler:
            scaler.step(optimizer)  # skipped if a gradient is inf/NaN
            scaler.update()
        else:
            optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        if diagnostics:
            same = sum(int((p.detach() == b).sum()) for p, b in zip(watched, before))
            unchanged = same / n_watched
        records.append({"step": step, "loss": loss.item(), "zero_grads": zero, "unchanged": unchanged,
                        "scale": scale, "skipped": bool(scaler and scaler.get_scale() < scale)})
    return records


#: Chapter 10's five-way training comparison: a 2-block transformer reads
#: TinyWorld's biographies byte by byte (``precision_experiment``).
PRECISION_EXPERIMENT = {"block_size": 32, "batch_size": 8, "d_model": 32, "n_layers": 2,
                        "n_heads": 2, "steps": 150, "lr": 3e-3, "tie_embeddings": False,
                        "val_blocks": 256}


@functools.lru_cache(maxsize=4)
def byte_level_tinyworld(block_size: int) -> tuple[torch.Tensor, torch.Tensor, int]:
    """TinyWorld's pretraining documents packed into byte-level blocks.

    The book's tokenizer with no merges is a byte tokenizer: ids 0-255 are the
    bytes, then the special tokens. Returns (input_ids, labels, vocab_size),
    both [N, block_size], from ``minillm.data.pack_texts`` (documents shuffled
    with seed 0, the last partial block dropped).
    """
    from minillm import tinyworld
    from minillm.data import pack_texts
    from minillm.tokenizer import Tokenizer

    tokenizer = Tokenizer([])
    texts = [record["text"] for record in tinyworld.load("pretrain")]
    ids, labels = pack_texts(texts, tokenizer, block_size, shuffle_seed=0, drop_last=True)
    return ids, labels, tokenizer.vocab_size


def precision_experiment(mode: str, seed: int, loss_scale: float = 1.0,
                         config: dict | None = None) -> dict:
    """One run of chapter 10's comparison; the same init and batches for a seed, whatever the mode.

    The last ``config["val_blocks"]`` blocks are held out; the rest feed
    ``train_in_precision``. Returns {"records": per-step records, "val_loss":
    the final weights' mean loss on the held-out blocks, computed in fp32 (so
    it measures the training, not the evaluation), "model": the trained model
    (still in bf16 after "pure bf16")}.
    """
    from minillm.config import ModelConfig
    from minillm.data import Batches
    from minillm.model import Transformer

    config = PRECISION_EXPERIMENT if config is None else config
    ids, labels, vocab_size = byte_level_tinyworld(config["block_size"])
    n_val = config["val_blocks"]
    model_config = ModelConfig(vocab_size=vocab_size, d_model=config["d_model"],
                               n_layers=config["n_layers"], n_heads=config["n_heads"],
                               max_seq_len=config["block_size"],
                               tie_embeddings=config["tie_embeddings"])
    torch.manual_seed(seed)
    model = Transformer(model_config)
    batches = Batches(ids[:-n_val], labels[:-n_val], batch_size=config["batch_size"], seed=seed)
    records = train_in_precision(model, mode, batches, config["steps"], config["lr"],
                                 loss_scale=loss_scale)
    evaluated = copy.deepcopy(model).float()
    with torch.no_grad():
        val_loss = evaluated(ids[-n_val:], labels=labels[-n_val:])[1].item()
    return {"records": records, "val_loss": val_loss, "model": model}

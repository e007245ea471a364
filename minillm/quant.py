"""Weight quantization: integers and 4-bit codebooks with per-block scales, up to NF4.

What this adds over ``minillm.precision`` (floats with fewer bits, the same
for every tensor): a *scale* per group of weights, chosen from the weights
themselves, and a small set of levels the scaled weights are rounded to.

    absmax (symmetric):  q = round(x / s),  s = max|x| / (2^(b-1) - 1),  x ~ s q
    zero-point (affine): q = round(x / s) + z,  s = (max - min) / (2^b - 1),
                         x ~ s (q - z)
    codebook (4-bit):    q = argmin_k |x / s - code[k]|,  s = max|x|,  x ~ s code[q]

Scales are per tensor, per output channel (``dim``) or per block of
``blocksize`` consecutive weights (``to_blocks``): the smaller the group, the
less one outlier costs its neighbours, and the more scales to store. NF4
(Dettmers et al. 2023, QLoRA) is the codebook of 16 normal quantiles, with 0
exact; ``nf4_codebook`` builds it, and ``tests/test_quant.py`` checks it and
``quantize_4bit`` against bitsandbytes. Double quantization stores the
float32 block scales themselves in 8 bits (blocks of 256, bitsandbytes'
dynamic 8-bit code), cutting their cost from 0.5 to ~0.127 bits/parameter.

``Linear4bit`` holds an ``nn.Linear``'s weight as packed 4-bit codes (two per
byte, the first in the high nibble, as bitsandbytes) plus scales, and
dequantizes it on the fly in forward: a frozen base for QLoRA
(``minillm.lora`` wraps it like any linear layer).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


# ------------------------------------------------------------ integers
def _check_bits(bits: int) -> None:
    if not isinstance(bits, int) or not 2 <= bits <= 8:
        raise ValueError(f"bits must be an integer in [2, 8], got {bits!r}")


def absmax_quantize(x: torch.Tensor, bits: int = 8, dim: int | None = None):
    """Symmetric: x -> (q int8, scale); x ~ scale * q, q in [-(2^(b-1)-1), 2^(b-1)-1].
    dim=None: one scale for the tensor; else one per slice along ``dim`` (kept)."""
    _check_bits(bits)
    qmax = 2 ** (bits - 1) - 1
    amax = x.abs().amax() if dim is None else x.abs().amax(dim=dim, keepdim=True)
    scale = (
        amax.float().clamp(min=1e-12) / qmax
    )  # an all-zero group gets q = 0, not 0/0
    return torch.round(x / scale).clamp(-qmax, qmax).to(torch.int8), scale


def absmax_dequantize(q: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    return q.float() * scale


def zeropoint_quantize(x: torch.Tensor, bits: int = 8, dim: int | None = None):
    """Affine: x -> (q uint8, scale, zero); x ~ scale * (q - zero), q in [0, 2^b - 1].
    Uses the whole range [min, max] even when it is lopsided (e.g. after a ReLU)."""
    _check_bits(bits)
    qmax = 2**bits - 1
    lo = x.amin() if dim is None else x.amin(dim=dim, keepdim=True)
    hi = x.amax() if dim is None else x.amax(dim=dim, keepdim=True)
    lo, hi = lo.float().clamp(max=0), hi.float().clamp(min=0)  # 0 must be representable
    scale = (hi - lo).clamp(min=1e-12) / qmax
    zero = torch.round(-lo / scale)
    return (torch.round(x / scale) + zero).clamp(0, qmax).to(torch.uint8), scale, zero


def zeropoint_dequantize(
    q: torch.Tensor, scale: torch.Tensor, zero: torch.Tensor
) -> torch.Tensor:
    return (q.float() - zero) * scale


def to_blocks(x: torch.Tensor, blocksize: int) -> torch.Tensor:
    """x (any shape, n values) -> [ceil(n / blocksize), blocksize], row-major,
    the last block padded with zeros (which change no block's absmax)."""
    if not isinstance(blocksize, int) or blocksize < 1:
        raise ValueError(f"blocksize must be a positive integer, got {blocksize!r}")
    flat = x.reshape(-1)
    return F.pad(flat, (0, -flat.numel() % blocksize)).view(-1, blocksize)


def from_blocks(blocks: torch.Tensor, shape) -> torch.Tensor:
    """Inverse of ``to_blocks``: drop the padding, restore ``shape``."""
    n = torch.Size(shape).numel()
    return blocks.reshape(-1)[:n].view(shape)


# ------------------------------------------------------------ codebooks
def nf4_codebook(offset: float = 0.9677083) -> torch.Tensor:
    """The 16 NF4 levels in [-1, 1], sorted [16]: quantiles of N(0, 1).

    8 positive quantiles at probabilities linspace(offset, 0.5, 9)[:-1] and 7
    negative ones at linspace(offset, 0.5, 8)[:-1], plus an exact 0; each half
    divided by the largest value. The halves differ (8 vs 7) so that 0 is a level:
    a symmetric set of 16 would have none. ``offset`` = 1/2 (1/32 + 1/30) midway
    between the outermost quantiles of 16 and 15 bins, as in the QLoRA paper.
    """
    normal = torch.distributions.Normal(torch.tensor(0.0, dtype=torch.float64), 1.0)

    def quantiles(n):  # linspace in float32 as bitsandbytes builds it, icdf in float64
        return normal.icdf(torch.linspace(offset, 0.5, n)[:-1].double())

    values = torch.cat(
        [quantiles(9), torch.zeros(1, dtype=torch.float64), -quantiles(8)]
    ).float()
    values = values.sort().values
    return values / values.max()


def fp4_codebook() -> torch.Tensor:
    """bitsandbytes' FP4 levels, sorted [15] in [-1, 1]: 1 sign, 2 exponent and
    1 mantissa bit; normal numbers 2^e (1 + m/2), e in 1..3, m in {0, 1}
    (2, 3, 4, 6, 8, 12), a subnormal 1/16 and 0; divided by 12."""
    normal = [2.0**e * (1 + m / 2) for e in (1, 2, 3) for m in (0, 1)]
    magnitudes = torch.tensor([0.0, 0.0625] + normal) / 12
    return torch.cat([-magnitudes[1:].flip(0), magnitudes])


def int4_codebook() -> torch.Tensor:
    """Symmetric 4-bit integers k / 7, k = -7..7, sorted [15] (absmax int4)."""
    return torch.arange(-7, 8, dtype=torch.float32) / 7


def dynamic_codebook() -> torch.Tensor:
    """bitsandbytes' signed dynamic 8-bit code [256], sorted (Dettmers 2015):
    a sign, a run of zeros that sets a power of ten, a 1, then a linear fraction;
    used for the double-quantized block scales."""
    data, exp_bits = [], 7
    for i in range(exp_bits):
        edges = torch.linspace(0.1, 1, 2**i + 1)
        means = ((edges[:-1] + edges[1:]) / 2 * 10 ** (i - exp_bits + 1)).tolist()
        data += means + [-m for m in means]
    return torch.tensor(data + [0.0, 1.0]).sort().values


def quantize_codebook(x: torch.Tensor, code: torch.Tensor, blocksize: int = 64):
    """Blockwise codebook quantization: x -> (idx uint8 [n_blocks, blocksize],
    absmax float32 [n_blocks]). Each block is scaled into [-1, 1] by its absmax
    and every value takes its nearest level (a tie, the lower). ``code`` sorted."""
    blocks = to_blocks(x.float(), blocksize)
    absmax = blocks.abs().amax(dim=1)
    # x * (1 / absmax), not x / absmax: bitsandbytes' kernels, to the last bit.
    scaled = (blocks * (1.0 / absmax.clamp(min=1e-38))[:, None]).clamp(-1, 1)
    idx = torch.bucketize(scaled, (code[:-1] + code[1:]) / 2)
    return idx.to(torch.uint8), absmax


def dequantize_codebook(
    idx: torch.Tensor, absmax: torch.Tensor, code: torch.Tensor, shape
) -> torch.Tensor:
    """Inverse of ``quantize_codebook``: code[idx] * absmax, as float32 of ``shape``."""
    if idx.dim() != 2 or idx.shape[0] != absmax.shape[0]:
        raise ValueError(
            f"idx must be [n_blocks, blocksize] with n_blocks = len(absmax) = "
            f"{absmax.shape[0]}, got {tuple(idx.shape)}"
        )
    return from_blocks(code[idx.long()] * absmax[:, None], shape)


def pack_4bit(idx: torch.Tensor) -> torch.Tensor:
    """Two 4-bit codes per byte, the first in the high nibble: [n] -> [ceil(n / 2)]."""
    flat = idx.reshape(-1).to(torch.uint8)
    flat = F.pad(flat, (0, flat.numel() % 2))
    return (flat[0::2] << 4) | flat[1::2]


def unpack_4bit(packed: torch.Tensor, n: int) -> torch.Tensor:
    """Inverse of ``pack_4bit``: [ceil(n / 2)] bytes -> [n] codes."""
    return torch.stack((packed >> 4, packed & 0xF), dim=1).reshape(-1)[:n]


def bits_per_parameter(
    blocksize: int = 64,
    double_quant: bool = False,
    dq_blocksize: int = 256,
    bits: int = 4,
) -> float:
    """Stored bits per weight: ``bits`` + a float32 scale per block, or with double
    quantization an 8-bit scale per block + a float32 scale per ``dq_blocksize``
    scales (the one float32 offset per tensor is left out)."""
    if double_quant:
        return bits + 8 / blocksize + 32 / (blocksize * dq_blocksize)
    return bits + 32 / blocksize


# ------------------------------------------------------------ the 4-bit layer
CODEBOOKS = {"nf4": nf4_codebook, "fp4": fp4_codebook}


class Linear4bit(nn.Module):
    """A frozen ``nn.Linear`` stored in 4 bits: x [..., in] -> [..., out].

    Buffers: ``packed`` uint8 [out * in / 2]; with ``double_quant`` the block
    scales as ``qabsmax`` uint8 [n_blocks] + ``absmax2`` float32
    [ceil(n_blocks / 256)] + one float32 ``offset`` (their mean, subtracted
    first so the signed 8-bit code is used on both sides), else ``absmax``
    float32 [n_blocks]. Nothing here has a gradient; the weight is rebuilt in
    ``compute_dtype`` at every forward and dropped afterwards.
    """

    def __init__(
        self,
        linear: nn.Linear,
        quant_type: str = "nf4",
        blocksize: int = 64,
        double_quant: bool = True,
        compute_dtype: torch.dtype = torch.float32,
    ):
        super().__init__()
        if quant_type not in CODEBOOKS:
            raise ValueError(
                f"quant_type must be one of {sorted(CODEBOOKS)}, got {quant_type!r}"
            )
        self.in_features, self.out_features = linear.in_features, linear.out_features
        self.quant_type, self.blocksize, self.double_quant = (
            quant_type,
            blocksize,
            double_quant,
        )
        self.compute_dtype, self.shape = compute_dtype, tuple(linear.weight.shape)
        code = CODEBOOKS[quant_type]().to(linear.weight.device)
        self.register_buffer("code", code, persistent=False)
        idx, absmax = quantize_codebook(linear.weight.detach(), code, blocksize)
        n = (
            linear.weight.numel()
        )  # an odd n packs one padding code, that of 0.0, as bnb
        self.register_buffer("packed", pack_4bit(idx.reshape(-1)[: n + n % 2]))
        if double_quant:
            offset = absmax.mean()
            qabsmax, absmax2 = quantize_codebook(
                absmax - offset, dynamic_codebook().to(absmax.device), 256
            )
            self.register_buffer("qabsmax", qabsmax.reshape(-1)[: absmax.numel()])
            self.register_buffer("absmax2", absmax2)
            self.register_buffer("offset", offset)
        else:
            self.register_buffer("absmax", absmax)
        bias = linear.bias.detach().clone() if linear.bias is not None else None
        self.register_buffer("bias", bias)

    def block_scales(self) -> torch.Tensor:
        """Every block's float32 absmax [n_blocks] (rebuilt if double-quantized)."""
        if not self.double_quant:
            return self.absmax
        code = dynamic_codebook().to(self.qabsmax.device)
        idx = to_blocks(self.qabsmax, 256)
        return (
            dequantize_codebook(idx, self.absmax2, code, self.qabsmax.shape)
            + self.offset
        )

    def dequantize(self) -> torch.Tensor:
        """The weight [out, in] in ``compute_dtype``."""
        n = self.out_features * self.in_features
        idx = to_blocks(unpack_4bit(self.packed, n), self.blocksize)
        return dequantize_codebook(idx, self.block_scales(), self.code, self.shape).to(
            self.compute_dtype
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        bias = self.bias.to(x.dtype) if self.bias is not None else None
        return F.linear(x, self.dequantize().to(x.dtype), bias)

    def nbytes(self) -> int:
        """Bytes of the stored weight: codes + scales (the bias not included)."""
        names = (
            ("packed", "qabsmax", "absmax2", "offset")
            if self.double_quant
            else ("packed", "absmax")
        )
        return sum(
            getattr(self, n).numel() * getattr(self, n).element_size() for n in names
        )

    def extra_repr(self) -> str:
        return (
            f"in={self.in_features}, out={self.out_features}, {self.quant_type}, "
            f"blocksize={self.blocksize}, double_quant={self.double_quant}"
        )


def _replace(model: nn.Module, kind: type, make, targets=None) -> nn.Module:
    """Swap each ``kind`` named by ``targets`` (suffixes; None: all) for make(it)."""
    names = [
        n
        for n, m in model.named_modules()
        if isinstance(m, kind)
        and (targets is None or any(n == t or n.endswith("." + t) for t in targets))
    ]
    if not names:
        raise ValueError(f"no {kind.__name__} of the model matches targets {targets}")
    for name in names:
        parent_name, _, child = name.rpartition(".")
        parent = model.get_submodule(parent_name) if parent_name else model
        setattr(parent, child, make(getattr(parent, child)))
    return model


def quantize_model(
    model: nn.Module,
    targets=(
        "q_proj",
        "k_proj",
        "v_proj",
        "o_proj",
        "gate_proj",
        "up_proj",
        "down_proj",
    ),
    **kwargs,
) -> nn.Module:
    """Replace the target ``nn.Linear`` layers by ``Linear4bit(layer, **kwargs)``, in
    place; the rest (embedding, norms, LM head) stays as it was, and frozen."""
    for p in model.parameters():
        p.requires_grad_(False)
    return _replace(model, nn.Linear, lambda m: Linear4bit(m, **kwargs), list(targets))


def dequantize_model(model: nn.Module) -> nn.Module:
    """Replace each ``Linear4bit`` by an ``nn.Linear`` of its dequantized weight."""

    def make(q: Linear4bit) -> nn.Linear:
        linear = nn.Linear(
            q.in_features,
            q.out_features,
            bias=q.bias is not None,
            device=q.packed.device,
            dtype=q.compute_dtype,
        )
        with torch.no_grad():
            linear.weight.copy_(q.dequantize())
            if q.bias is not None:
                linear.bias.copy_(q.bias)
        return linear.requires_grad_(False)

    return _replace(model, Linear4bit, make)


def stored_bytes(model: nn.Module) -> int:
    """Bytes of a model's stored weights: its parameters (a tied tensor once)
    plus each ``Linear4bit``'s codes and scales (``Linear4bit.nbytes``)."""
    params = sum(p.numel() * p.element_size() for p in model.parameters())
    return params + sum(m.nbytes() for m in model.modules() if isinstance(m, Linear4bit))

"""minillm.quant: integers, codebooks and the 4-bit layer, against bitsandbytes.

Reached on CPU with bitsandbytes 0.50.2 (torch 2.13): the NF4, FP4 and dynamic
8-bit codebooks equal bitsandbytes' constants exactly; blockwise NF4 and FP4
(blocksize 64) give the same packed bytes, the same float32 block scales and
the same dequantized weights, bit for bit. With double quantization the
4-bit codes are identical too, and so are the second-level scales and the
offset; for the 8-bit codes of the block scales, bitsandbytes' native CPU
kernel sends a few scales that lie near a midpoint (0-11 of 4,688 here) to
the farther of the two levels, one code step away; minillm takes the nearest.
"""

import logging

import pytest
import torch

from minillm.quant import (
    Linear4bit,
    absmax_dequantize,
    absmax_quantize,
    bits_per_parameter,
    dequantize_codebook,
    dequantize_model,
    dynamic_codebook,
    fp4_codebook,
    from_blocks,
    int4_codebook,
    nf4_codebook,
    pack_4bit,
    quantize_codebook,
    quantize_model,
    stored_bytes,
    to_blocks,
    unpack_4bit,
    zeropoint_dequantize,
    zeropoint_quantize,
)


def test_absmax_int8_error_is_at_most_half_a_step():
    torch.manual_seed(0)
    x = torch.randn(64, 32)
    for dim in (None, 1):
        q, scale = absmax_quantize(x, 8, dim)
        assert q.dtype == torch.int8 and q.abs().max() == 127
        assert ((absmax_dequantize(q, scale) - x).abs() <= scale / 2 + 1e-7).all()
    assert absmax_quantize(torch.zeros(3))[0].abs().sum() == 0  # no 0/0
    with pytest.raises(ValueError, match="bits"):
        absmax_quantize(x, 1)


def test_zeropoint_uses_the_whole_range_and_keeps_zero_exact():
    x = torch.relu(torch.randn(1000)) + 0.0  # lopsided: all >= 0
    q, scale, zero = zeropoint_quantize(x, 8)
    assert q.min() == 0 and q.max() == 255 and zero == 0
    assert ((zeropoint_dequantize(q, scale, zero) - x).abs() <= scale / 2 + 1e-6).all()
    q_abs, s_abs = absmax_quantize(x, 8)
    assert scale < s_abs  # affine spends all 256 levels on [0, max], absmax only 128
    y = torch.tensor([-1.0, 0.0, 3.0])
    q, scale, zero = zeropoint_quantize(y, 4)
    assert zeropoint_dequantize(q, scale, zero)[1] == 0


def test_blocks_round_trip_and_packing():
    x = torch.arange(10.0).view(2, 5)
    blocks = to_blocks(x, 4)
    assert blocks.shape == (3, 4) and blocks[-1, -2:].eq(0).all()
    assert torch.equal(from_blocks(blocks, x.shape), x)
    codes = torch.tensor([1, 15, 0, 7, 9], dtype=torch.uint8)
    packed = pack_4bit(codes)
    assert packed.tolist() == [0x1F, 0x07, 0x90]  # first code in the high nibble
    assert torch.equal(unpack_4bit(packed, 5), codes)
    with pytest.raises(ValueError, match="blocksize"):
        to_blocks(x, 0)


def test_codebooks():
    nf4 = nf4_codebook()
    assert (
        nf4.shape == (16,) and nf4[0] == -1 and nf4[-1] == 1 and (nf4 == 0).sum() == 1
    )
    assert (nf4.diff() > 0).all() and (nf4 > 0).sum() == 8 and (nf4 < 0).sum() == 7
    assert int4_codebook().shape == fp4_codebook().shape == (15,)
    assert dynamic_codebook().shape == (256,)


def test_bits_per_parameter():
    assert bits_per_parameter(64) == 4.5
    assert bits_per_parameter(64, double_quant=True) == pytest.approx(
        4.127, abs=1e-3
    )  # QLoRA paper


def test_linear4bit_nbytes_forward_and_dequantize_model():
    torch.manual_seed(0)
    linear = torch.nn.Linear(128, 96)
    for dq, bits in ((False, 4.5), (True, bits_per_parameter(64, True))):
        q = Linear4bit(linear, double_quant=dq)
        # the per-tensor offset and the last, partial scale block: a few bytes more
        assert abs(8 * q.nbytes() / linear.weight.numel() - bits) < 0.02
        x = torch.randn(3, 128)
        torch.testing.assert_close(
            q(x), torch.nn.functional.linear(x, q.dequantize(), linear.bias)
        )
        rel = (q.dequantize() - linear.weight).norm() / linear.weight.norm()
        assert rel < 0.15  # 4 bits: ~10% relative error on uniform weights
    model = torch.nn.Sequential(torch.nn.Linear(8, 64), torch.nn.ReLU())
    quantize_model(model, targets=("0",))
    assert isinstance(model[0], Linear4bit) and not any(
        p.requires_grad for p in model.parameters()
    )
    # stored bytes: layer 0's 4-bit codes and scales (no parameters left; its bias,
    # a buffer, is not counted: the book's models have none); then 4 bytes a float
    assert stored_bytes(model) == model[0].nbytes()
    dequantize_model(model)
    assert isinstance(model[0], torch.nn.Linear)
    assert stored_bytes(model) == 4 * (8 * 64 + 64)
    with pytest.raises(ValueError, match="quant_type"):
        Linear4bit(linear, quant_type="int3")
    with pytest.raises(ValueError, match="no Linear of the model matches"):
        quantize_model(torch.nn.Sequential(torch.nn.Linear(2, 2)), targets=("q_proj",))


# ------------------------------------------------------------ bitsandbytes parity
logging.getLogger("bitsandbytes").setLevel(logging.ERROR)  # an optional-kernels notice
bnb = pytest.importorskip("bitsandbytes")
F = pytest.importorskip("bitsandbytes.functional")


def test_codebooks_equal_bitsandbytes_constants():
    assert torch.equal(nf4_codebook(), F.get_4bit_type("nf4", device="cpu"))
    assert torch.equal(fp4_codebook(), F.get_4bit_type("fp4", device="cpu").unique())
    # (bitsandbytes 0.50.2 fails to build its "int4" entry: it divides an int
    # tensor in place)
    assert torch.equal(dynamic_codebook(), F.create_dynamic_map().sort().values)


SHAPES = [(128, 64), (384, 128), (7, 9), (1000, 300)]


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("quant_type", ["nf4", "fp4"])
def test_quantize_4bit_matches_bitsandbytes(shape, quant_type):
    torch.manual_seed(sum(shape))
    linear = torch.nn.Linear(shape[1], shape[0], bias=False)
    with torch.no_grad():
        linear.weight.normal_(0, 0.02)
    packed, state = F.quantize_4bit(
        linear.weight.detach(), blocksize=64, quant_type=quant_type
    )
    ours = Linear4bit(linear, quant_type=quant_type, double_quant=False)
    assert torch.equal(ours.absmax, state.absmax)
    assert torch.equal(ours.dequantize(), F.dequantize_4bit(packed, state))
    if (
        quant_type == "nf4"
    ):  # FP4 numbers its levels in bit-pattern order, we in value order
        assert torch.equal(ours.packed, packed.reshape(-1))


@pytest.mark.parametrize("shape", SHAPES)
def test_double_quantization_matches_bitsandbytes(shape):
    torch.manual_seed(sum(shape))
    linear = torch.nn.Linear(shape[1], shape[0], bias=False)
    with torch.no_grad():
        linear.weight.normal_(0, 0.02)
    w = linear.weight.detach()
    packed, state = F.quantize_4bit(
        w, blocksize=64, quant_type="nf4", compress_statistics=True
    )
    ours = Linear4bit(linear, double_quant=True)
    assert torch.equal(ours.packed, packed.reshape(-1))
    assert torch.equal(ours.offset, state.offset) and torch.equal(
        ours.absmax2, state.state2.absmax
    )
    # bitsandbytes' native CPU kernel for the 8-bit scales: at most one code step away,
    # on a few scales near a midpoint, where minillm's level is the nearer one.
    _, absmax = quantize_codebook(w, nf4_codebook(), 64)
    scaled = to_blocks(absmax - absmax.mean(), 256) / ours.absmax2[:, None].clamp(
        min=1e-38
    )
    scaled = scaled.reshape(-1)[: absmax.numel()]
    code = dynamic_codebook()
    ours_err = (scaled - code[ours.qabsmax.long()]).abs()
    theirs_err = (scaled - code[state.absmax.long()]).abs()
    steps = (ours.qabsmax.long() - state.absmax.long()).abs()
    if absmax.numel() > 1:  # one block: absmax - mean = 0 and bnb divides 0 by 0
        assert steps.max() <= 1 and steps.float().mean() < 0.01
        assert (ours_err <= theirs_err + 1e-9).all()
    scale = ours.block_scales().repeat_interleave(64)[: w.numel()].view_as(w)
    assert (
        (ours.dequantize() - F.dequantize_4bit(packed, state)).abs() <= 0.03 * scale
    ).all()


def test_linear4bit_forward_matches_bitsandbytes():
    torch.manual_seed(0)
    linear = torch.nn.Linear(128, 96)
    layer = bnb.nn.Linear4bit(
        128,
        96,
        bias=True,
        compute_dtype=torch.float32,
        quant_type="nf4",
        compress_statistics=False,
    )
    layer.weight = bnb.nn.Params4bit(
        linear.weight.detach().clone(),
        requires_grad=False,
        quant_type="nf4",
        compress_statistics=False,
        blocksize=64,
    )
    layer.bias = torch.nn.Parameter(linear.bias.detach().clone())
    layer = layer.to("cpu")  # quantizes the weight
    x = torch.randn(2, 5, 128)
    with torch.no_grad():
        want = layer(x)
    got = Linear4bit(linear, double_quant=False)(x)
    assert (got - want).abs().max() < 1e-5

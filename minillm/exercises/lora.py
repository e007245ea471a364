"""Checkers for the exercises of chapter 13 (LoRA and quantization)."""

from __future__ import annotations

import math

import torch

from minillm.exercises import ExerciseError, call, expect_tensor, passed
from minillm.quant import nf4_codebook, quantize_codebook


def check_merge_lora_weight(merge_lora_weight) -> None:
    """merge_lora_weight(W [out, in], A [r, in], B [out, r], alpha, r, rslora=False)
    -> W + scale * B @ A, scale = alpha / r (alpha / sqrt(r) with rslora)."""
    g = torch.Generator().manual_seed(0)
    for out_f, in_f, r, alpha in [
        (5, 7, 2, 4.0),
        (8, 3, 4, 8.0),
        (6, 6, 1, 1.0),
        (4, 9, 9, 18.0),
    ]:
        W, A, B = (
            torch.randn(*s, generator=g, dtype=torch.float64)
            for s in ((out_f, in_f), (r, in_f), (out_f, r))
        )
        for rslora in (False, True):
            what = (
                f"merge_lora_weight(W [{out_f}, {in_f}], A [{r}, {in_f}], "
                f"B [{out_f}, {r}], "
                f"alpha={alpha}, r={r}, rslora={rslora})"
            )
            got = expect_tensor(
                call(
                    merge_lora_weight,
                    W.clone(),
                    A.clone(),
                    B.clone(),
                    alpha,
                    r,
                    rslora=rslora,
                ),
                (out_f, in_f),
                what,
            )
            scale = alpha / math.sqrt(r) if rslora else alpha / r
            want = W + scale * B @ A
            if torch.allclose(got, W):
                raise ExerciseError(
                    f"{what}: the result equals W; add the update scale * B @ A"
                )
            if r > 1 and torch.allclose(
                got, W + B @ A * (alpha / r if rslora else alpha / math.sqrt(r))
            ):
                raise ExerciseError(
                    f"{what}: wrong scale: plain LoRA uses alpha / r, "
                    "rsLoRA alpha / sqrt(r)"
                )
            if r > 1 and torch.allclose(got, W + B @ A):
                raise ExerciseError(
                    f"{what}: the update must be scaled (alpha / r, or alpha / sqrt(r))"
                )
            if not torch.allclose(got, want, atol=1e-9):
                raise ExerciseError(
                    f"{what}: expected W + {scale:g} * B @ A; entry [0, 0] should be "
                    f"{want[0, 0].item():.6g}, got {got[0, 0].item():.6g}"
                )
    passed("W + (alpha / r) B A, and alpha / sqrt(r) for rsLoRA")


def check_quantize_block(quantize_block) -> None:
    """quantize_block(x [n], code [k] sorted) -> (idx long [n], absmax float):
    x / absmax rounded to the nearest level of code."""
    code = nf4_codebook()
    g = torch.Generator().manual_seed(1)
    cases = [
        torch.randn(64, generator=g),
        torch.randn(16, generator=g) * 3,
        torch.tensor([0.0, 1.0, -2.0, 0.5, -0.25]),
        torch.rand(32, generator=g),
    ]
    for x in cases:
        what = f"quantize_block(x [{len(x)}], NF4 code)"
        got = call(quantize_block, x.clone(), code.clone())
        if not isinstance(got, (tuple, list)) or len(got) != 2:
            raise ExerciseError(
                f"{what}: expected a pair (idx, absmax), got {type(got).__name__}"
            )
        idx = expect_tensor(got[0], (len(x),), f"{what} idx").long()
        absmax = float(got[1])
        want_idx, want_absmax = quantize_codebook(x, code, len(x))
        if not math.isclose(absmax, want_absmax.item(), rel_tol=1e-6):
            raise ExerciseError(
                f"{what}: absmax should be max |x| = {want_absmax.item():.6g}, "
                f"got {absmax:.6g}"
            )
        if idx.min() < 0 or idx.max() >= len(code):
            raise ExerciseError(f"{what}: idx must index the code (0..{len(code) - 1})")
        err = (code[idx] * absmax - x).abs()
        best = (code[want_idx.view(-1).long()] * want_absmax - x).abs()
        bad = (err > best + 1e-6).nonzero()
        if len(bad):
            i = bad[0].item()
            raise ExerciseError(
                f"{what}: x[{i}] = {x[i].item():.4g} -> level "
                f"{code[idx[i]].item():.4g} * absmax, but level "
                f"{code[want_idx.view(-1)[i].long()].item():.4g} is nearer "
                f"to x / absmax = {(x[i] / want_absmax).item():.4g}"
            )
    passed("scale by absmax, then the nearest level of the codebook")

"""Checkers for the exercises of chapter 5, "The Transformer block"
(notebook 1: residuals and normalization; notebook 2: the MLP and the full
model). Each takes the reader's function and raises ExerciseError with a hint
when an answer is wrong."""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from minillm.config import ModelConfig, count_parameters
from minillm.exercises import (ExerciseError, call, expect_close, expect_number, expect_tensor,
                               passed)


_tensor = expect_tensor  # shared with the other chapters' checkers


def _close(a: torch.Tensor, b: torch.Tensor) -> bool:
    return torch.allclose(a, b.double(), rtol=1e-4, atol=1e-5)


def _name_the_mistake(name: str, got: torch.Tensor, want: torch.Tensor, wrong: dict) -> None:
    """If ``got`` is not ``want`` but equals one of the ``wrong`` answers
    ({hint: tensor}), say which mistake it is."""
    for hint, value in wrong.items():
        if _close(got, value) and not _close(got, want):
            raise ExerciseError(f"{name} is wrong: you {hint}")


def _inputs(seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(3, 5, 8, generator=g) * 3 + 1  # rows with a nonzero mean and rms far from 1
    weight = torch.rand(8, generator=g) + 0.5
    bias = torch.randn(8, generator=g)
    return x, weight, bias


# ------------------------------------------------------------ notebook 1

def check_rms_norm(rms_norm) -> None:
    """``rms_norm(x, weight, eps)``: x / sqrt(mean(x^2 over the last dim) + eps) * weight."""
    x, weight, _ = _inputs()
    eps = 1e-5
    got = _tensor(call(rms_norm, x.clone(), weight.clone(), eps), tuple(x.shape), "rms_norm(x [3, 5, 8], weight, eps)")
    want = x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + eps) * weight
    wrong = {
        "normalised the whole tensor at once: take the mean over the LAST dimension only "
        "(mean(-1, keepdim=True)), so that each token is normalised by its own statistics":
            x * torch.rsqrt(x.pow(2).mean() + eps) * weight,
        "subtracted the mean: that is LayerNorm; RMSNorm only divides by the root mean square":
            F.layer_norm(x, (8,), weight, None, eps),
        "forgot to multiply by `weight` (the learned per-feature gain)":
            x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + eps),
        "divided by the mean square, not its square ROOT":
            x / (x.pow(2).mean(-1, keepdim=True) + eps) * weight,
    }
    _name_the_mistake("rms_norm", got, want, wrong)
    if not _close(got, want):
        raise ExerciseError(f"rms_norm(x) differs from x / sqrt(mean(x^2) + eps) * weight by up to "
                            f"{(got - want.double()).abs().max().item():.3g}")
    tiny = x[:1, :1] * 1e-3  # mean square ~1e-5: eps matters here
    got = _tensor(call(rms_norm, tiny.clone(), weight.clone(), eps), tuple(tiny.shape), "rms_norm of a tiny row")
    want = tiny * torch.rsqrt(tiny.pow(2).mean(-1, keepdim=True) + eps) * weight
    if not _close(got, want):
        raise ExerciseError("rms_norm is right for ordinary rows but not for a row with tiny values: add eps "
                            "INSIDE the square root, sqrt(mean(x^2) + eps), not after it")
    other = x.clone()
    other[1] *= 100
    got0 = _tensor(call(rms_norm, other, weight.clone(), eps), tuple(x.shape), "rms_norm(x)")[0]
    if not _close(got0, x[0] * torch.rsqrt(x[0].pow(2).mean(-1, keepdim=True) + eps) * weight):
        raise ExerciseError("changing one row changed another row's output: normalise each row on its own")
    passed("every token is divided by its own root mean square, then scaled by the weight")


def check_layer_norm(layer_norm) -> None:
    """``layer_norm(x, weight, bias, eps)``: (x - mean) / sqrt(var + eps) * weight + bias,
    with the mean and the (biased) variance over the last dimension."""
    x, weight, bias = _inputs(1)
    eps = 1e-5
    got = _tensor(call(layer_norm, x.clone(), weight.clone(), bias.clone(), eps), tuple(x.shape),
                  "layer_norm(x [3, 5, 8], weight, bias, eps)")
    want = F.layer_norm(x.double(), (8,), weight.double(), bias.double(), eps)
    mu = x.mean(-1, keepdim=True)
    wrong = {
        "used the unbiased variance (divides by d - 1): torch.var and torch.std default to that; "
        "LayerNorm divides by d, use x.var(-1, unbiased=False, keepdim=True) or ((x - mean)**2).mean(-1)":
            (x - mu) / torch.sqrt(x.var(-1, keepdim=True) + eps) * weight + bias,
        "normalised the whole tensor at once: the mean and variance must be over the LAST dimension only":
            F.layer_norm(x, tuple(x.shape), None, None, eps) * weight + bias,
        "forgot the bias (the learned shift added at the end)":
            F.layer_norm(x, (8,), weight, None, eps),
        "forgot to multiply by `weight` (the learned per-feature gain)":
            F.layer_norm(x, (8,), None, None, eps) + bias,
        "did not subtract the mean: LayerNorm centres each row before dividing by its standard deviation":
            x / torch.sqrt(x.var(-1, unbiased=False, keepdim=True) + eps) * weight + bias,
    }
    _name_the_mistake("layer_norm", got, want, wrong)
    if not _close(got, want):
        raise ExerciseError(f"layer_norm(x) differs from torch.nn.functional.layer_norm by up to "
                            f"{(got - want).abs().max().item():.3g}")
    passed("matches torch.nn.functional.layer_norm: each token centred and scaled by its own statistics")


# ------------------------------------------------------------ notebook 2

_GQA_CASES = [  # (d_model, n_heads, n_kv_heads, d_ff)
    (128, 4, 2, 384),        # the book's tiny preset
    (4096, 32, 8, 11008),    # Llama-2 7B's shape, made GQA
    (8192, 64, 8, 22016),    # Llama-2 70B's width and heads, 8/3 d rounded up
    (768, 12, 1, 2048),      # multi-query attention
    (512, 8, 8, 1365),       # no change
]


def _gqa_config(d: int, H: int, K: int, f: int) -> ModelConfig:
    return ModelConfig(vocab_size=256, d_model=d, n_layers=1, n_heads=H, n_kv_heads=K, d_ff=f)


def check_gqa_matched_d_ff(gqa_matched_d_ff) -> None:
    """gqa_matched_d_ff(d_model, n_heads, n_kv_heads, d_ff) -> the largest SwiGLU width f'
    with which a block with n_kv_heads key/value heads has at most the parameters of the
    same block with full multi-head attention (n_kv_heads = n_heads) and width d_ff."""
    for d, H, K, f in _GQA_CASES:
        what = f"gqa_matched_d_ff(d_model={d}, n_heads={H}, n_kv_heads={K}, d_ff={f})"
        got = call(gqa_matched_d_ff, d, H, K, f)
        if isinstance(got, float) and got.is_integer():
            got = int(got)
        if not isinstance(got, int):
            raise ExerciseError(f"{what}: expected a whole number of hidden units, got {got!r}")
        d_kv = K * (d // H)
        want = f + 2 * (d - d_kv) // 3
        budget = count_parameters(_gqa_config(d, H, H, f))
        if got == want:
            assert count_parameters(_gqa_config(d, H, K, got)) <= budget
            assert count_parameters(_gqa_config(d, H, K, got + 1)) > budget
            continue
        hints = [
            (f + (d - d_kv) // 3, "GQA shrinks BOTH k_proj and v_proj: the saving is 2 d (d - d_kv)"),
            (f + (d - d_kv), "each extra SwiGLU unit costs 3 d parameters (a row of gate and up, a "
                             "column of down), not 2 d"),
            (f + 2 * (d - K) // 3, "d_kv is n_kv_heads * head_dim (head_dim = d_model / n_heads), "
                                   "not the number of heads"),
            (f + -(-2 * (d - d_kv) // 3), "round DOWN: rounding up puts the GQA block over the "
                                          "parameter budget"),
            (2 * (d - d_kv) // 3, "return the whole new width d_ff + extra, not only the extra units"),
        ]
        for value, hint in hints:
            if got == value and value != want:
                raise ExerciseError(f"{what} should be {want}, got {got}: {hint}")
        if count_parameters(_gqa_config(d, H, K, max(got, 1))) > budget:
            raise ExerciseError(f"{what} = {got} gives the GQA block more parameters than the "
                                f"multi-head one; the answer is {want}")
        raise ExerciseError(f"{what} should be {want}, got {got}")
    d, H, K, f = _GQA_CASES[1]
    passed(f"Llama-2 7B's shape with 8 KV heads instead of 32: d_ff {f} -> "
           f"{f + 2 * (d - K * (d // H)) // 3} spends the attention saving in the MLP")


def _swiglu(x, W_gate, W_up, W_down):
    return (F.silu(x @ W_gate.T) * (x @ W_up.T)) @ W_down.T


def check_product_swiglu(product_swiglu) -> None:
    """product_swiglu(d, i, j) -> (W_gate [h, d], W_up [h, d], W_down [d, h]) of a SwiGLU
    whose output's first feature is exactly x[i] * x[j] for every input x and whose
    other features are 0."""
    g = torch.Generator().manual_seed(0)
    for d, i, j in ((4, 0, 1), (6, 3, 3), (5, 4, 2)):
        what = f"product_swiglu(d={d}, i={i}, j={j})"
        got = call(product_swiglu, d, i, j)
        if not isinstance(got, (tuple, list)) or len(got) != 3:
            raise ExerciseError(f"{what} should return (W_gate, W_up, W_down), got {got!r}")
        if not all(isinstance(w, torch.Tensor) for w in got):
            raise ExerciseError(f"{what}: W_gate, W_up and W_down should be torch tensors")
        h = got[0].shape[0]
        W_gate = expect_tensor(got[0], (h, d), f"{what}: W_gate")
        W_up = expect_tensor(got[1], (h, d), f"{what}: W_up")
        W_down = expect_tensor(got[2], (d, h), f"{what}: W_down (shape [d, h], as nn.Linear(h, d).weight)")
        x = torch.randn(2000, d, generator=g, dtype=torch.float64) * 3
        y = _swiglu(x, W_gate, W_up, W_down)
        want = torch.zeros_like(y)
        want[:, 0] = x[:, i] * x[:, j]
        if torch.allclose(y, want, atol=1e-8):
            continue
        if y[:, 1:].abs().max() > 1e-8:
            raise ExerciseError(f"{what}: every output feature but the first must be 0")
        positive = x[:, i] > 0
        one_unit = F.silu(x[:, i]) * x[:, j]
        if torch.allclose(y[:, 0], one_unit, atol=1e-8) or torch.allclose(y[positive, 0], want[positive, 0],
                                                                          rtol=0.05, atol=0.5):
            raise ExerciseError(f"{what}: right for large positive x[i] only. SiLU(z) is close to z for "
                                "z >> 0 and to 0 for z << 0; which combination of SiLU(z) and SiLU(-z) "
                                "is exactly z?")
        err = (y[:, 0] - want[:, 0]).abs().max().item()
        raise ExerciseError(f"{what}: the first output differs from x[i] * x[j] by up to {err:.3g}")
    passed("SiLU(z) - SiLU(-z) = z, so two gated units multiply exactly; a ReLU FFN is "
           "piecewise linear and can only approximate a product")


def check_training_days(training_days) -> None:
    """``training_days(n_params, n_tokens, n_gpus, peak_flops, mfu)``: wall-clock days
    to train with 6ND FLOPs on n_gpus that each sustain mfu * peak_flops FLOP/s."""
    args = (7e9, 2e12, 1024, 989e12, 0.4)  # a 7B model on 2T tokens, 1024 H100s (dense bf16 peak)
    want = 6 * args[0] * args[1] / (args[2] * args[3] * args[4]) / 86400
    got = call(training_days, *args)
    try:
        value = float(got)
    except (TypeError, ValueError):
        raise ExerciseError(f"training_days{args}: expected a number of days, got {got!r}") from None
    hints = [
        (want / 3, "that counts only the forward pass (2ND); training costs 6ND"),
        (want * 2 / 3, "training costs 6ND (forward 2ND + backward 4ND), not 4ND"),
        (want * 86400, "that is seconds; divide by 86,400 seconds per day"),
        (want * 24, "that is hours; divide by 24 more"),
        (want * args[4], "you forgot to divide by the utilization (mfu): GPUs do not reach their peak"),
        (want * args[4] ** 2, "multiply the peak by mfu (the achieved fraction), do not divide by it"),
        (want * args[2], "you forgot to divide the work among the n_gpus"),
    ]
    for wrong, hint in hints:
        if math.isclose(value, wrong, rel_tol=1e-6):
            raise ExerciseError(f"training_days{args} should be {want:.2f} days, got {value:.4g}: {hint}")
    expect_close(value, want, f"training_days{args}")
    expect_close(call(training_days, 1e9, 1e9, 1, 6e18 / 86400, 1.0), 1.0,
                 "training_days(1e9, 1e9, 1, 6e18 / 86400, 1.0) (6e18 FLOPs at 6e18 FLOPs per day)")
    passed(f"a 7B model on 2T tokens takes {want:.1f} days on 1024 GPUs at 40% utilization")


# --- notebook 1, idea exercises (QK-norm, folding a norm's gain) -----------------

def check_qk_norm_max_weight(qk_norm_max_weight) -> None:
    """qk_norm_max_weight(head_dim, n_keys): the largest weight one key can get when
    q and k are RMS-normalised (unit gains) before q.k / sqrt(head_dim): every
    score lies in [-sqrt(D), sqrt(D)], so the best case is one key at +sqrt(D)
    and the n_keys - 1 others at -sqrt(D)."""
    for D, S in ((64, 2), (64, 1000), (16, 100), (128, 4096)):
        what = f"qk_norm_max_weight(head_dim={D}, n_keys={S})"
        got = expect_number(call(qk_norm_max_weight, D, S), what)
        r = math.sqrt(D)
        want = 1 / (1 + (S - 1) * math.exp(-2 * r))
        if math.isclose(got, want, rel_tol=1e-6):
            continue
        if math.isclose(got, 1 / (1 + (S - 1) * math.exp(-r)), rel_tol=1e-6):
            raise ExerciseError(f"{what}: the other keys can score as low as -sqrt(D), not 0; "
                                f"the gap between best and worst score is 2 sqrt(D)")
        if math.isclose(got, 1 / (1 + (S - 1) * math.exp(-2 * D)), rel_tol=1e-6):
            raise ExerciseError(f"{what}: an RMS-normalised vector has norm sqrt(D), so "
                                f"|q.k| <= D and the scaled score is at most sqrt(D), not D")
        raise ExerciseError(f"{what}: expected {want:.6g}, got {got:.6g}")
    passed("scores are confined to [-√D, √D] (unit gains): with D = 64 one key can take 99.99% "
           "of the weight among 1,000 keys but at most 47% among 10 million")


def check_fold_norm_gain(fold_norm_gain) -> None:
    """fold_norm_gain(gain [d], weight [out, d]) -> W' with
    x_hat @ W'.T == (x_hat * gain) @ weight.T: each input column j of W scaled by gain[j]."""
    for seed, (d, out) in enumerate(((16, 16), (4, 3), (8, 5))):
        g = torch.Generator().manual_seed(seed)
        gain = torch.rand(d, generator=g, dtype=torch.float64) + 0.5
        weight = torch.randn(out, d, generator=g, dtype=torch.float64)
        what = f"fold_norm_gain(gain [{d}], weight [{out}, {d}])"
        got = expect_tensor(call(fold_norm_gain, gain.clone(), weight.clone()), (out, d), what)
        want = weight * gain[None, :]
        if torch.allclose(got, want):
            continue
        if d == out and torch.allclose(got, weight * gain[:, None]):
            raise ExerciseError(f"{what}: you scaled the rows (outputs); the gain multiplies "
                                f"input feature j, which meets column j of the weight")
        raise ExerciseError(f"{what}: Linear(W')(x_hat) must equal Linear(W)(x_hat * gain) "
                            f"for every x_hat")
    passed("W' = W * gain[None, :]: a norm's gain folds into the next layer's input columns")

"""The checkers of chapter 5 accept right answers and reject wrong ones."""
import pytest
import torch

from minillm.exercises import ExerciseError, ExerciseNotImplemented
from minillm.exercises import block as ex


def stub(*args):
    raise NotImplementedError


# ----------------------------------------------------------------- RMSNorm

def rms_norm(x, weight, eps=1e-5):
    return x / torch.sqrt(x.pow(2).mean(-1, keepdim=True) + eps) * weight


def test_rms_norm_accepts_a_correct_answer(capsys):
    ex.check_rms_norm(rms_norm)
    assert "✓ correct" in capsys.readouterr().out


@pytest.mark.parametrize("wrong, hint", [
    (lambda x, w, eps: x / torch.sqrt(x.pow(2).mean() + eps) * w, "whole tensor"),
    (lambda x, w, eps: torch.nn.functional.layer_norm(x, x.shape[-1:], w, None, eps), "LayerNorm"),
    (lambda x, w, eps: x / torch.sqrt(x.pow(2).mean(-1, keepdim=True) + eps), "weight"),
    (lambda x, w, eps: x / (x.pow(2).mean(-1, keepdim=True) + eps) * w, "square ROOT"),
    (lambda x, w, eps: x / (torch.sqrt(x.pow(2).mean(-1, keepdim=True)) + eps) * w, "INSIDE"),
    (lambda x, w, eps: x / torch.sqrt(x.pow(2).mean(0, keepdim=True) + eps) * w, "differs"),
    (lambda x, w, eps: (x / torch.sqrt(x.pow(2).mean(-1, keepdim=True) + eps) * w)[0], "shape"),
    (lambda x, w, eps: (x / torch.sqrt(x.pow(2).mean(-1, keepdim=True) + eps) * w).tolist(), "tensor"),
])
def test_rms_norm_rejects_wrong_answers(wrong, hint):
    with pytest.raises(ExerciseError, match=hint):
        ex.check_rms_norm(wrong)


def test_rms_norm_stub():
    with pytest.raises(ExerciseNotImplemented, match="not implemented"):
        ex.check_rms_norm(stub)


# ----------------------------------------------------------------- LayerNorm

def layer_norm(x, weight, bias, eps=1e-5):
    mean = x.mean(-1, keepdim=True)
    var = (x - mean).pow(2).mean(-1, keepdim=True)
    return (x - mean) / torch.sqrt(var + eps) * weight + bias


def test_layer_norm_accepts_a_correct_answer(capsys):
    ex.check_layer_norm(layer_norm)
    assert "✓ correct" in capsys.readouterr().out


@pytest.mark.parametrize("wrong, hint", [
    (lambda x, w, b, eps: (x - x.mean(-1, keepdim=True)) / torch.sqrt(x.var(-1, keepdim=True) + eps) * w + b,
     "unbiased"),
    (lambda x, w, b, eps: (x - x.mean()) / torch.sqrt(x.var(unbiased=False) + eps) * w + b, "whole tensor"),
    (lambda x, w, b, eps: layer_norm(x, w, 0 * b, eps), "bias"),
    (lambda x, w, b, eps: layer_norm(x, 1 + 0 * w, b, eps), "weight"),
    (lambda x, w, b, eps: x / torch.sqrt(x.var(-1, unbiased=False, keepdim=True) + eps) * w + b, "mean"),
    (lambda x, w, b, eps: layer_norm(x, w, b, eps) * 1.01, "differs"),
])
def test_layer_norm_rejects_wrong_answers(wrong, hint):
    with pytest.raises(ExerciseError, match=hint):
        ex.check_layer_norm(wrong)


def test_layer_norm_stub():
    with pytest.raises(ExerciseNotImplemented, match="not implemented"):
        ex.check_layer_norm(stub)


# ----------------------------------------------------------------- GQA-matched MLP width

def gqa_matched_d_ff(d_model, n_heads, n_kv_heads, d_ff):
    d_kv = n_kv_heads * (d_model // n_heads)
    return d_ff + 2 * d_model * (d_model - d_kv) // (3 * d_model)


def test_gqa_matched_d_ff(capsys):
    ex.check_gqa_matched_d_ff(gqa_matched_d_ff)
    assert "✓ correct" in capsys.readouterr().out


@pytest.mark.parametrize("wrong, hint", [
    (lambda d, H, K, f: f + (d - K * (d // H)) // 3, "BOTH"),
    (lambda d, H, K, f: f + (d - K * (d // H)), "3 d"),
    (lambda d, H, K, f: f + 2 * (d - K) // 3, "head_dim"),
    (lambda d, H, K, f: f - (-2 * (d - K * (d // H)) // 3), "round DOWN"),
    (lambda d, H, K, f: gqa_matched_d_ff(d, H, K, f) - f, "whole new width"),
    (lambda d, H, K, f: gqa_matched_d_ff(d, H, K, f) + 5, "more parameters"),
    (lambda d, H, K, f: gqa_matched_d_ff(d, H, K, f) - 1, "should be"),
    (lambda d, H, K, f: 8 * d / 3, "whole number"),
])
def test_gqa_matched_d_ff_rejects(wrong, hint):
    with pytest.raises(ExerciseError, match=hint):
        ex.check_gqa_matched_d_ff(wrong)


# ----------------------------------------------------------------- a gated unit multiplies

def product_swiglu(d, i, j, one_unit=False):
    W_gate, W_up, W_down = torch.zeros(2, d), torch.zeros(2, d), torch.zeros(d, 2)
    W_gate[0, i], W_gate[1, i] = 1.0, -1.0  # SiLU(x_i) and SiLU(-x_i)
    W_up[:, j] = 1.0
    W_down[0] = torch.tensor([1.0, 0.0 if one_unit else -1.0])  # SiLU(z) - SiLU(-z) = z
    return W_gate, W_up, W_down


def test_product_swiglu(capsys):
    ex.check_product_swiglu(product_swiglu)
    assert "✓ correct" in capsys.readouterr().out


def product_everywhere(d, i, j):
    W_gate, W_up, W_down = product_swiglu(d, i, j)
    W_down[:] = W_down[0]
    return W_gate, W_up, W_down


@pytest.mark.parametrize("wrong, hint", [
    (lambda d, i, j: product_swiglu(d, i, j, one_unit=True), "SiLU\\(-z\\)"),
    (product_everywhere, "must be 0"),
    (lambda d, i, j: tuple(w.T for w in product_swiglu(d, i, j)), "shape"),
    (lambda d, i, j: product_swiglu(d, i, j)[:2], "should return"),
    (lambda d, i, j: product_swiglu(d, j, (j + 1) % d), "differs"),
])
def test_product_swiglu_rejects(wrong, hint):
    with pytest.raises(ExerciseError, match=hint):
        ex.check_product_swiglu(wrong)


@pytest.mark.parametrize("checker", [ex.check_gqa_matched_d_ff, ex.check_product_swiglu])
def test_notebook_2_stubs(checker):
    with pytest.raises(ExerciseNotImplemented, match="not implemented"):
        checker(stub)


# ----------------------------------------------------------------- training days

def training_days(n_params, n_tokens, n_gpus, peak_flops, mfu):
    return 6 * n_params * n_tokens / (n_gpus * peak_flops * mfu) / 86400


def test_training_days_accepts_a_correct_answer(capsys):
    ex.check_training_days(training_days)
    assert "✓ correct" in capsys.readouterr().out


@pytest.mark.parametrize("wrong, hint", [
    (lambda N, D, n, p, u: training_days(N, D, n, p, u) / 3, "forward"),
    (lambda N, D, n, p, u: training_days(N, D, n, p, u) * 2 / 3, "4ND"),
    (lambda N, D, n, p, u: training_days(N, D, n, p, u) * 86400, "seconds"),
    (lambda N, D, n, p, u: training_days(N, D, n, p, u) * 24, "hours"),
    (lambda N, D, n, p, u: training_days(N, D, n, p, 1.0), "utilization"),
    (lambda N, D, n, p, u: 6 * N * D * u / (n * p) / 86400, "multiply the peak"),
    (lambda N, D, n, p, u: training_days(N, D, 1, p, u), "n_gpus"),
    (lambda N, D, n, p, u: training_days(N, D, n, p, u) + 1, "expected"),
    (lambda N, D, n, p, u: "a month", "number of days"),
])
def test_training_days_rejects_wrong_answers(wrong, hint):
    with pytest.raises(ExerciseError, match=hint):
        ex.check_training_days(wrong)


def test_training_days_stub():
    with pytest.raises(ExerciseNotImplemented, match="not implemented"):
        ex.check_training_days(stub)


def test_qk_norm_max_weight(capsys):
    import math

    def right(D, S):
        return 1 / (1 + (S - 1) * math.exp(-2 * math.sqrt(D)))
    ex.check_qk_norm_max_weight(right)
    assert "✓ correct" in capsys.readouterr().out
    with pytest.raises(ExerciseError, match="2 sqrt"):
        ex.check_qk_norm_max_weight(lambda D, S: 1 / (1 + (S - 1) * math.exp(-math.sqrt(D))))
    with pytest.raises(ExerciseNotImplemented):
        ex.check_qk_norm_max_weight(stub)


def test_fold_norm_gain(capsys):
    ex.check_fold_norm_gain(lambda gain, w: w * gain[None, :])
    assert "✓ correct" in capsys.readouterr().out
    with pytest.raises(ExerciseError, match="rows"):
        ex.check_fold_norm_gain(lambda gain, w: w * gain[:, None])
    with pytest.raises(ExerciseNotImplemented):
        ex.check_fold_norm_gain(stub)

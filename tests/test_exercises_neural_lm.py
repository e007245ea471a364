"""The checkers of chapter 3 accept right answers and reject wrong ones."""
import pytest
import torch

from minillm.exercises import ExerciseError, ExerciseNotImplemented
from minillm.exercises import neural_lm as ex


def stub(*args):
    raise NotImplementedError


def accepts(checker, fn, capsys):
    checker(fn)
    assert "✓ correct" in capsys.readouterr().out


# ------------------------------------------------------------ cross-entropy

def ce_grad(logits, targets):
    probs = torch.softmax(logits, dim=-1)
    return (probs - torch.nn.functional.one_hot(targets, logits.shape[-1]).to(probs.dtype)) / len(targets)


def test_cross_entropy_grad(capsys):
    accepts(ex.check_cross_entropy_grad, ce_grad, capsys)


@pytest.mark.parametrize("wrong, hint", [
    (lambda z, y: ce_grad(z, y) * len(y), "batch size"),
    (lambda z, y: -ce_grad(z, y), "sign"),
    (lambda z, y: torch.softmax(z, -1) / len(y), "one-hot"),
    (lambda z, y: (z.exp() / z.exp().sum(-1, keepdim=True)
                   - torch.nn.functional.one_hot(y, z.shape[-1])) / len(y), "NaN"),
])
def test_cross_entropy_grad_rejects(wrong, hint):
    with pytest.raises(ExerciseError, match=hint):
        ex.check_cross_entropy_grad(wrong)


# ------------------------------------------------------------ parameter count

def count(V, c, d, h):
    return V * d + c * d * h + h + h * V + V


def test_parameter_count(capsys):
    accepts(ex.check_mlp_parameter_count, count, capsys)


@pytest.mark.parametrize("wrong, hint", [
    (lambda V, c, d, h: V * d + c * d * h + h * V, "biases"),
    (lambda V, c, d, h: V * d + d * h + h + h * V + V, "CONCATENATION"),
    (lambda V, c, d, h: c * d * h + h + h * V + V, "embedding matrix"),
    (lambda V, c, d, h: 2 * V * d, "should be"),
    (lambda V, c, d, h: "many", "expected an int"),
])
def test_parameter_count_rejects(wrong, hint):
    with pytest.raises(ExerciseError, match=hint):
        ex.check_mlp_parameter_count(wrong)


# ------------------------------------------------------------ nearest neighbours

def neighbours(E, i, k):
    unit = E / E.norm(dim=1, keepdim=True)
    sims = unit @ unit[i]
    sims[i] = -float("inf")
    return sims.topk(k).indices.tolist()


def by_dot(E, i, k):
    sims = E @ E[i]
    sims[i] = -float("inf")
    return sims.topk(k).indices.tolist()


def with_self(E, i, k):
    unit = E / E.norm(dim=1, keepdim=True)
    return (unit @ unit[i]).topk(k).indices.tolist()


def ascending(E, i, k):
    unit = E / E.norm(dim=1, keepdim=True)
    sims = unit @ unit[i]
    sims[i] = float("inf")
    return (-sims).topk(k).indices.tolist()


def test_neighbours(capsys):
    accepts(ex.check_nearest_neighbours, neighbours, capsys)


@pytest.mark.parametrize("wrong, hint", [(by_dot, "dot product"), (with_self, "itself"), (ascending, "LEAST")])
def test_neighbours_rejects(wrong, hint):
    with pytest.raises(ExerciseError, match=hint):
        ex.check_nearest_neighbours(wrong)


# ------------------------------------------------------------ notebook 2

def gru_keep_bias(k, fraction):
    import math

    keep = fraction ** (1 / k)
    return math.log(keep / (1 - keep))


def test_gru_keep_bias(capsys):
    accepts(ex.check_gru_keep_bias, gru_keep_bias, capsys)


@pytest.mark.parametrize("wrong, hint", [
    (lambda k, f: -gru_keep_bias(k, f), "fraction KEPT"),
    (lambda k, f: f ** (1 / k), "BIAS"),
    (lambda k, f: gru_keep_bias(k, f) / 2, "two biases"),
    (lambda k, f: gru_keep_bias(1 / k, f), "fraction\\^\\(1/k\\)"),
    (lambda k, f: gru_keep_bias(k, f) + 0.1, "expected"),
])
def test_gru_keep_bias_rejects(wrong, hint):
    with pytest.raises(ExerciseError, match=hint):
        ex.check_gru_keep_bias(wrong)


def shift_register(k, n_symbols, transpose=False, keep_last=False):
    n = (k + 1) * n_symbols
    W = torch.zeros(n, n)
    W[n_symbols:, :-n_symbols] = torch.eye(n - n_symbols)  # slot j -> slot j + 1
    if keep_last:
        W[-n_symbols:, -n_symbols:] = torch.eye(n_symbols)
    U = torch.zeros(n, n_symbols)
    U[:n_symbols] = torch.eye(n_symbols)
    return (W.T if transpose else W), U


def test_shift_register(capsys):
    accepts(ex.check_shift_register, shift_register, capsys)


@pytest.mark.parametrize("wrong, hint", [
    (lambda k, S: shift_register(k, S, transpose=True), "transposed"),
    (lambda k, S: (torch.eye((k + 1) * S), shift_register(k, S)[1]), "leaves the slot"),
    (lambda k, S: (shift_register(k, S)[0], shift_register(k, S)[1].flip(0)), "slot 0"),
    (lambda k, S: shift_register(k, S, keep_last=True), "falls off the end"),
    (lambda k, S: shift_register(k + 1, S), "shape"),
    (lambda k, S: shift_register(k, S)[0], "should return"),
])
def test_shift_register_rejects(wrong, hint):
    with pytest.raises(ExerciseError, match=hint):
        ex.check_shift_register(wrong)


def score_gap(n_keys, weight):
    import math

    return math.log(weight * (n_keys - 1) / (1 - weight))


def test_score_gap(capsys):
    accepts(ex.check_score_gap, score_gap, capsys)


@pytest.mark.parametrize("wrong, hint", [
    (lambda n, w: score_gap(2, w), "two keys"),
    (lambda n, w: score_gap(n + 1, w), "n_keys - 1 others"),
    (lambda n, w: w * (n - 1) / (1 - w), "logarithm"),
    (lambda n, w: score_gap(n, w) * 1.01, "expected"),
])
def test_score_gap_rejects(wrong, hint):
    with pytest.raises(ExerciseError, match=hint):
        ex.check_score_gap(wrong)


# ------------------------------------------------------------ stubs

@pytest.mark.parametrize("checker", [ex.check_cross_entropy_grad, ex.check_mlp_parameter_count,
                                     ex.check_nearest_neighbours, ex.check_gru_keep_bias, ex.check_shift_register,
                                     ex.check_score_gap])
def test_stubs_are_reported_as_not_implemented(checker):
    with pytest.raises(ExerciseNotImplemented, match="not implemented"):
        checker(stub)

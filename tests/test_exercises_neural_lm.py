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


# ------------------------------------------------------------ RNN step and Jacobian

def test_rnn_step(capsys):
    accepts(ex.check_rnn_step, lambda h, x, W, U, b: torch.tanh(h @ W.T + x @ U.T + b), capsys)


@pytest.mark.parametrize("wrong, hint", [
    (lambda h, x, W, U, b: torch.tanh(h @ W + x @ U.T + b), "transposed"),
    (lambda h, x, W, U, b: h @ W.T + x @ U.T + b, "tanh"),
    (lambda h, x, W, U, b: torch.tanh(h @ W.T + x @ U + b), "shapes"),
    (lambda h, x, W, U, b: torch.tanh(h @ W.T + x @ U.T), "does not equal"),
])
def test_rnn_step_rejects(wrong, hint):
    with pytest.raises(ExerciseError, match=hint):
        ex.check_rnn_step(wrong)


def test_rnn_jacobian(capsys):
    accepts(ex.check_rnn_jacobian, lambda h, W: (1 - h ** 2)[:, None] * W, capsys)


@pytest.mark.parametrize("wrong, hint", [
    (lambda h, W: W * (1 - h ** 2)[None, :], "ROWS"),
    (lambda h, W: (1 - h ** 2)[:, None] * W.T, "transposed"),
    (lambda h, W: W.clone(), "returned W"),
    (lambda h, W: (1 - h)[:, None] * W, "autograd"),
])
def test_rnn_jacobian_rejects(wrong, hint):
    with pytest.raises(ExerciseError, match=hint):
        ex.check_rnn_jacobian(wrong)


# ------------------------------------------------------------ attention read-out

def test_attention_readout(capsys):
    accepts(ex.check_attention_readout, lambda q, K, V: torch.softmax(K @ q, 0) @ V, capsys)


@pytest.mark.parametrize("wrong, hint", [
    (lambda q, K, V: (K @ q) @ V, "not normalised"),
    (lambda q, K, V: V.mean(0), "plain mean"),
    (lambda q, K, V: V[(K @ q).argmax()], "hard argmax"),
    (lambda q, K, V: torch.softmax(K @ q / 10, 0) @ V, "should be"),
])
def test_attention_readout_rejects(wrong, hint):
    with pytest.raises(ExerciseError, match=hint):
        ex.check_attention_readout(wrong)


# ------------------------------------------------------------ stubs

@pytest.mark.parametrize("checker", [ex.check_cross_entropy_grad, ex.check_mlp_parameter_count,
                                     ex.check_nearest_neighbours, ex.check_rnn_step, ex.check_rnn_jacobian,
                                     ex.check_attention_readout])
def test_stubs_are_reported_as_not_implemented(checker):
    with pytest.raises(ExerciseNotImplemented, match="not implemented"):
        checker(stub)

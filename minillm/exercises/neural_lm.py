"""Checkers for the exercises of chapter 3, "Neural language models"
(notebook 1: the MLP language model; notebook 2: RNNs and why attention).
Each takes the reader's function and raises ExerciseError with a hint when an
answer is wrong."""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from minillm.exercises import ExerciseError, expect_number, expect_tensor, call, expect_close, passed


_tensor = expect_tensor  # shared with the other chapters' checkers


# ------------------------------------------------------------ notebook 1

def check_cross_entropy_grad(cross_entropy_grad) -> None:
    """cross_entropy_grad(logits (B, V), targets (B,)) -> d mean CE / d logits, shape (B, V)."""
    torch.manual_seed(0)
    cases = [(torch.randn(4, 7, dtype=torch.float64), torch.tensor([0, 3, 6, 3])),
             (torch.tensor([[1000.0, 1001.0, 999.0]], dtype=torch.float64), torch.tensor([0]))]
    for logits, targets in cases:
        z = logits.clone().requires_grad_(True)
        F.cross_entropy(z, targets).backward()
        want = z.grad.detach()
        what = f"cross_entropy_grad(logits of shape {tuple(logits.shape)}, targets={targets.tolist()})"
        got = expect_tensor(call(cross_entropy_grad, logits.clone(), targets.clone()), tuple(logits.shape), what)
        if torch.isnan(got).any():
            raise ExerciseError(f"{what} contains NaN: exp(1000) overflows; use torch.softmax, which "
                                "subtracts the row maximum first")
        B = len(targets)
        if torch.allclose(got, want * B, atol=1e-9) and B > 1:
            raise ExerciseError(f"{what}: you forgot to divide by the batch size B = {B}; the loss is a MEAN "
                                "over positions, so each row's gradient is (softmax - one-hot) / B")
        if torch.allclose(got, -want, atol=1e-9):
            raise ExerciseError(f"{what}: the sign is flipped; the gradient is softmax MINUS one-hot "
                                "(the correct logit is pushed up by gradient DEscent)")
        if torch.allclose(got, torch.softmax(logits, -1) / B, atol=1e-9):
            raise ExerciseError(f"{what}: you left out the one-hot term: subtract 1 at each row's target")
        if not torch.allclose(got, want, atol=1e-9):
            raise ExerciseError(f"{what}: differs from autograd by up to {(got - want).abs().max():.2e}")
    passed("d CE / d z = softmax(z) - one_hot(y), divided by B for a mean: each row sums to zero")


def _mlp_numel(V: int, c: int, d: int, h: int) -> int:
    from minillm.neural_lm import MLPLanguageModel

    return sum(p.numel() for p in MLPLanguageModel(V, c, d, h).parameters())


def check_mlp_parameter_count(mlp_parameter_count) -> None:
    """``mlp_parameter_count(vocab_size, context_size, embed_dim, hidden_dim)`` == numel of MLPLanguageModel."""
    for V, c, d, h in [(10, 2, 3, 4), (2219, 3, 32, 128), (50, 5, 8, 16), (1000, 1, 64, 7)]:
        want = _mlp_numel(V, c, d, h)
        got = call(mlp_parameter_count, V, c, d, h)
        what = f"mlp_parameter_count({V}, {c}, {d}, {h})"
        if isinstance(got, float) and got.is_integer():
            got = int(got)
        if not isinstance(got, int):
            raise ExerciseError(f"{what}: expected an int, got {got!r}")
        if got == want:
            continue
        if got == want - h - V:
            raise ExerciseError(f"{what} should be {want}, got {got}: you forgot the biases "
                                f"(hidden_dim of them in the hidden layer, vocab_size in the output layer)")
        if got == want - (c - 1) * d * h:
            raise ExerciseError(f"{what} should be {want}, got {got}: the hidden layer reads the "
                                "CONCATENATION of context_size embeddings, so its input has context_size * embed_dim "
                                "features")
        if got == want - V * d:
            raise ExerciseError(f"{what} should be {want}, got {got}: you forgot the embedding matrix E "
                                "(vocab_size x embed_dim)")
        raise ExerciseError(f"{what} should be {want}, got {got}")
    passed("V*d + c*d*n_h + n_h + n_h*V + V")


def check_nearest_neighbours(nearest_neighbours) -> None:
    """``nearest_neighbours(E, i, k)``: the k most cosine-similar rows to row i, excluding i, best first."""
    # Row 1 points the same way as row 0 but is short; row 2 is long and less aligned:
    # by dot product row 2 wins, by cosine row 1 wins.
    E = torch.tensor([[1.0, 0.0], [0.1, 0.01], [5.0, 4.0], [-1.0, 0.2], [0.0, 1.0]])
    got = call(nearest_neighbours, E.clone(), 0, 2)
    try:
        got = [int(j) for j in got]
    except (TypeError, ValueError):
        raise ExerciseError(f"nearest_neighbours(E, 0, 2) should return a list of indices, got {got!r}") from None
    if got and got[0] == 0:
        raise ExerciseError("nearest_neighbours(E, 0, 2) returned row 0 itself: exclude the query row "
                            "(its similarity to itself is always 1)")
    if got == [2, 1]:
        raise ExerciseError("nearest_neighbours(E, 0, 2) should be [1, 2], got [2, 1]: that is the ranking by "
                            "dot product; divide by the norms (cosine similarity) so that long vectors do not win")
    if got == [3, 4] or got == [4, 3]:
        raise ExerciseError(f"nearest_neighbours(E, 0, 2) should be [1, 2], got {got}: those are the LEAST "
                            "similar rows; sort in descending order of similarity")
    if got != [1, 2]:
        raise ExerciseError(f"nearest_neighbours(E, 0, 2) should be [1, 2], got {got}")
    R = torch.randn(30, 6, generator=torch.Generator().manual_seed(0))
    unit = F.normalize(R, dim=1)
    for i, k in [(3, 5), (17, 1), (0, 29)]:
        sims = unit @ unit[i]
        sims[i] = -math.inf
        want = sims.topk(k).indices.tolist()
        got = [int(j) for j in call(nearest_neighbours, R.clone(), i, k)]
        if got != want:
            raise ExerciseError(f"nearest_neighbours(random E, {i}, {k}) should be {want}, got {got}")
    passed("cosine similarity ranks directions, not lengths")


# ------------------------------------------------------------ notebook 2

def check_rnn_step(rnn_step) -> None:
    """``rnn_step(h, x, W, U, b)``: tanh(W h + U x + b) for a batch, h (B, H), x (B, E)."""
    g = torch.Generator().manual_seed(0)
    B, H, E = 3, 4, 5
    h, x = torch.randn(B, H, generator=g), torch.randn(B, E, generator=g)
    W, U, b = torch.randn(H, H, generator=g), torch.randn(H, E, generator=g), torch.randn(H, generator=g)
    want = torch.tanh(h @ W.T + x @ U.T + b).double()
    try:
        got = call(rnn_step, h.clone(), x.clone(), W.clone(), U.clone(), b.clone())
    except RuntimeError as err:
        raise ExerciseError(f"rnn_step failed with shapes h {tuple(h.shape)}, x {tuple(x.shape)}, W {tuple(W.shape)}, "
                            f"U {tuple(U.shape)}: {err}. The rows of h and x are batch elements, so W h becomes "
                            "h @ W.T") from None
    got = _tensor(got, (B, H), "rnn_step(h, x, W, U, b) with B=3, H=4, E=5")
    if torch.allclose(got, torch.tanh(h @ W + x @ U.T + b).double(), atol=1e-5):
        raise ExerciseError("rnn_step: W is applied transposed. With batch rows, W h_{t-1} is h @ W.T")
    if torch.allclose(got, (h @ W.T + x @ U.T + b).double(), atol=1e-5):
        raise ExerciseError("rnn_step: the result is not squashed: apply tanh")
    if not torch.allclose(got, want, atol=1e-5):
        raise ExerciseError("rnn_step(h, x, W, U, b) does not equal tanh(h @ W.T + x @ U.T + b); "
                            f"first row: expected {want[0].tolist()}, got {got[0].tolist()}")
    passed("h_t = tanh(W h_{t-1} + U x_t + b)")


def check_rnn_jacobian(rnn_jacobian) -> None:
    """``rnn_jacobian(h_next, W)``: d h_t / d h_{t-1} = diag(1 - h_t^2) W, shape (H, H)."""
    g = torch.Generator().manual_seed(1)
    H, E = 5, 3
    W, U, b = torch.randn(H, H, generator=g), torch.randn(H, E, generator=g), torch.randn(H, generator=g)
    h_prev, x = torch.randn(H, generator=g), torch.randn(E, generator=g)
    step = lambda h: torch.tanh(W @ h + U @ x + b)  # noqa: E731
    h_next = step(h_prev)
    want = torch.autograd.functional.jacobian(step, h_prev).double()
    got = _tensor(call(rnn_jacobian, h_next.clone(), W.clone()), (H, H), "rnn_jacobian(h_next, W) with H=5")
    d = (1 - h_next ** 2).double()
    if torch.allclose(got, W.double() * d[None, :], atol=1e-5):
        raise ExerciseError("rnn_jacobian: you computed W diag(1 - h^2); the derivative of tanh scales the "
                            "ROWS (output units): diag(1 - h^2) W, i.e. (1 - h^2)[:, None] * W")
    if torch.allclose(got, d[:, None] * W.T.double(), atol=1e-5):
        raise ExerciseError("rnn_jacobian: W is transposed. Entry (i, j) is d h_t[i] / d h_{t-1}[j] = "
                            "(1 - h_t[i]^2) W[i, j]")
    if torch.allclose(got, W.double(), atol=1e-5):
        raise ExerciseError("rnn_jacobian: you returned W; include the tanh derivative 1 - h_t^2")
    if torch.allclose(got, (1 - h_prev ** 2).double()[:, None] * W.double(), atol=1e-5):
        raise ExerciseError("rnn_jacobian: use the NEW state h_t (the output of tanh), not h_{t-1}")
    if not torch.allclose(got, want, atol=1e-5):
        raise ExerciseError("rnn_jacobian(h_next, W) does not match the Jacobian computed by autograd: "
                            "it should be diag(1 - h_next^2) @ W")
    passed("d h_t / d h_{t-1} = diag(1 - h_t^2) W")


def check_attention_readout(attention_readout) -> None:
    """``attention_readout(query, keys, values)``: softmax(keys @ query) @ values."""
    g = torch.Generator().manual_seed(2)
    T, d, dv = 6, 4, 3
    q, K, Vv = torch.randn(d, generator=g), torch.randn(T, d, generator=g), torch.randn(T, dv, generator=g)
    weights = torch.softmax(K @ q, dim=0)
    want = (weights @ Vv).double()
    got = _tensor(call(attention_readout, q.clone(), K.clone(), Vv.clone()), (dv,),
                  "attention_readout(query (4,), keys (6, 4), values (6, 3))")
    if torch.allclose(got, ((K @ q) @ Vv).double(), atol=1e-5):
        raise ExerciseError("attention_readout: the scores are not normalised: apply softmax to keys @ query, "
                            "so the weights are positive and sum to 1")
    if torch.allclose(got, Vv.mean(0).double(), atol=1e-5):
        raise ExerciseError("attention_readout returned the plain mean of the values: weight them by "
                            "softmax(keys @ query)")
    if torch.allclose(got, Vv[weights.argmax()].double(), atol=1e-5):
        raise ExerciseError("attention_readout returned only the best-matching value (a hard argmax): use the "
                            "softmax-weighted average of ALL values")
    if not torch.allclose(got, want, atol=1e-5):
        raise ExerciseError(f"attention_readout should be softmax(keys @ query) @ values = {want.tolist()}, "
                            f"got {got.tolist()}")
    # A query aligned with one key (and large) must pick out that value.
    K = torch.eye(T) * 20
    got = _tensor(call(attention_readout, K[2].clone(), K.clone(), Vv[:, :].clone()), (dv,), "a sharp query")
    if not torch.allclose(got, Vv[2].double(), atol=1e-4):
        raise ExerciseError("attention_readout: a query equal to key 2 (times 20) should return value 2 almost "
                            f"exactly, got {got.tolist()} instead of {Vv[2].tolist()}")
    passed("a soft, differentiable lookup: softmax(K q) @ V")

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

def _gru_carry(bias: float, k: int) -> float:
    """d h_k / d h_0 of an nn.GRUCell with zero weights and update-gate bias ``bias``
    (the sum of its two biases): the carry path alone, measured by autograd."""
    torch.manual_seed(0)
    cell = torch.nn.GRUCell(1, 1).double()
    with torch.no_grad():
        for p in cell.parameters():
            p.zero_()
        cell.bias_ih[1] = bias  # gate order in PyTorch: reset, update (z), new
    h0 = torch.zeros(1, 1, dtype=torch.float64, requires_grad=True)
    h, x = h0, torch.zeros(1, 1, dtype=torch.float64)
    for _ in range(k):
        h = cell(x, h)
    (grad,) = torch.autograd.grad(h.sum(), h0)
    return grad.item()


def check_gru_keep_bias(gru_keep_bias) -> None:
    """gru_keep_bias(k, fraction) -> the update-gate bias b (PyTorch's GRU, z = sigmoid(b)
    multiplies the old state) with which the carry path keeps ``fraction`` of the
    gradient across k steps: sigmoid(b)^k = fraction."""
    for k, fraction in ((32, 0.5), (59, 0.1), (8, 0.9), (1, 0.25)):
        what = f"gru_keep_bias(k={k}, fraction={fraction})"
        got = expect_number(call(gru_keep_bias, k, fraction), what)
        keep = fraction ** (1 / k)
        want = math.log(keep / (1 - keep))
        if math.isclose(got, want, rel_tol=1e-6, abs_tol=1e-9):
            continue
        if math.isclose(got, -want, rel_tol=1e-6, abs_tol=1e-9):
            raise ExerciseError(f"{what} = {got:.4g}: the sign is flipped. In PyTorch's GRU, "
                                "h_t = (1 - z) * n + z * h_(t-1): z is the fraction KEPT, so the "
                                "carry path multiplies the gradient by z, not 1 - z")
        if math.isclose(got, keep, rel_tol=1e-6):
            raise ExerciseError(f"{what} = {got:.4g} is the gate value z = fraction^(1/k); the "
                                "exercise asks for the BIAS b with sigmoid(b) = z: b = log(z / (1 - z))")
        if math.isclose(got, want / 2, rel_tol=1e-6):
            raise ExerciseError(f"{what} = {got:.4g}: b is the sum of the gate's two biases (b_iz + b_hz), "
                                "not one half of it")
        wrong_k = fraction ** k
        if 0 < wrong_k < 1 and math.isclose(got, math.log(wrong_k / (1 - wrong_k)), rel_tol=1e-6):
            raise ExerciseError(f"{what}: over k steps the gate multiplies the gradient k times, so "
                                "z^k = fraction and z = fraction^(1/k), not fraction^k")
        raise ExerciseError(f"{what}: expected {want:.6g}, got {got:.6g}")
    b = call(gru_keep_bias, 32, 0.5)
    measured = _gru_carry(float(b), 32)
    if not math.isclose(measured, 0.5, rel_tol=1e-6):
        raise ExerciseError(f"an nn.GRUCell with update-gate bias {b:.4g} keeps {measured:.4g} of the "
                            "gradient over 32 steps, not 0.5")
    passed(f"bias {b:.2f} (z = {1 / (1 + math.exp(-b)):.4f}): an nn.GRUCell with zero weights keeps "
           f"{measured:.2f} of the gradient across 32 steps, measured by autograd")


def _run_linear_rnn(W, U, x_onehot):
    h = torch.zeros(x_onehot.shape[0], W.shape[0], dtype=torch.float64)
    for t in range(x_onehot.shape[1]):
        h = h @ W.T + x_onehot[:, t] @ U.T
    return h


def check_shift_register(shift_register) -> None:
    """shift_register(k, n_symbols) -> (W, U): a linear RNN h_t = W h_(t-1) + U x_t on
    one-hot inputs x_t (n_symbols,), state (k + 1) * n_symbols, whose slot j (entries
    j*S .. (j+1)*S - 1) holds the one-hot of the symbol j steps before the last."""
    for k, S in ((3, 4), (0, 5), (7, 8)):
        n = (k + 1) * S
        what = f"shift_register(k={k}, n_symbols={S})"
        got = call(shift_register, k, S)
        if not isinstance(got, (tuple, list)) or len(got) != 2:
            raise ExerciseError(f"{what} should return (W, U), got {got!r}")
        W = expect_tensor(got[0], (n, n), f"{what}: W")
        U = expect_tensor(got[1], (n, S), f"{what}: U")
        eye = torch.eye(S, dtype=torch.float64)
        written = U @ eye  # column s: where symbol s lands
        if not torch.allclose(written[:S], eye) or written[S:].abs().sum() > 1e-9:
            raise ExerciseError(f"{what}: U must write the one-hot x_t into slot 0 (the first "
                                f"{S} entries of the state) and nowhere else")
        for j in range(k):
            slot = torch.zeros(n, S, dtype=torch.float64)
            slot[j * S:(j + 1) * S] = eye
            moved = W @ slot
            target = torch.zeros(n, S, dtype=torch.float64)
            target[(j + 1) * S:(j + 2) * S] = eye
            if not torch.allclose(moved, target):
                hint = ""
                if torch.allclose(W.T @ slot, target):
                    hint = " Yours moves slot j + 1 into slot j: W is transposed."
                elif torch.allclose(moved, slot):
                    hint = " Yours leaves the slot where it is: W must move it, not keep it."
                raise ExerciseError(f"{what}: W must move slot {j} into slot {j + 1} unchanged "
                                    f"(W[(j+1)S + s, jS + s] = 1).{hint}")
        g = torch.Generator().manual_seed(k)
        x = torch.randint(S, (64, 33), generator=g)
        h = _run_linear_rnn(W, U, torch.nn.functional.one_hot(x, S).double())
        slot_k = h[:, k * S:(k + 1) * S]
        if not torch.allclose(slot_k, torch.nn.functional.one_hot(x[:, -1 - k], S).double()):
            raise ExerciseError(f"{what}: after 33 random symbols slot {k} does not hold the one-hot "
                                f"of the symbol {k} steps before the last (does the last slot keep "
                                f"what falls off the end? W must drop it)")
    passed("a state of (k + 1) x 8 numbers recalls exactly at distance k: with H = 64 that "
           "reaches k = 7; the weights exist, gradient descent has to find them")


def check_score_gap(score_gap) -> None:
    """score_gap(n_keys, weight) -> the margin c by which one key's score must exceed
    the n_keys - 1 others (all equal) for softmax to give it ``weight``:
    e^c / (e^c + n_keys - 1) = weight."""
    for n, w in ((33, 0.99), (2, 0.5), (1000, 0.9), (100_000, 0.99), (8, 0.2)):
        what = f"score_gap(n_keys={n}, weight={w})"
        got = expect_number(call(score_gap, n, w), what)
        want = math.log(w * (n - 1) / (1 - w))
        if math.isclose(got, want, rel_tol=1e-6, abs_tol=1e-9):
            continue
        if n > 2 and math.isclose(got, math.log(w / (1 - w)), rel_tol=1e-6, abs_tol=1e-9):
            raise ExerciseError(f"{what} = {got:.4g}: that is the gap for two keys. The other "
                                f"{n - 1} keys share the remaining weight: e^c / (e^c + n - 1) = weight")
        if math.isclose(got, math.log(w * n / (1 - w)), rel_tol=1e-6):
            raise ExerciseError(f"{what} = {got:.4g}: the denominator has the key itself plus "
                                "n_keys - 1 others, not n_keys others")
        if math.isclose(got, w * (n - 1) / (1 - w), rel_tol=1e-6):
            raise ExerciseError(f"{what} = {got:.4g}: that is e^c; the gap is its logarithm")
        raise ExerciseError(f"{what}: expected {want:.6g}, got {got:.6g}")
    passed(f"99% on one of 33 positions needs a gap of {math.log(0.99 * 32 / 0.01):.1f}, of "
           f"100,000 positions {math.log(0.99 * 99_999 / 0.01):.1f}: the gap grows like log n")

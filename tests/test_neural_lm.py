"""minillm.neural_lm: context windows, the MLP and RNN language models, model_nll."""
import math

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st

from minillm.neural_lm import ElmanRNN, MLPLanguageModel, RNNLanguageModel, context_windows, model_nll, target_log_probs


@settings(max_examples=50, deadline=None)
@given(ids=st.lists(st.integers(0, 50), min_size=2, max_size=40), c=st.integers(1, 6))
def test_context_windows_match_slicing(ids, c):
    if len(ids) <= c:
        with pytest.raises(ValueError, match="no window"):
            context_windows(ids, c)
        return
    contexts, targets = context_windows(ids, c)
    assert contexts.shape == (len(ids) - c, c) and targets.shape == (len(ids) - c,)
    for i in range(len(ids) - c):
        assert contexts[i].tolist() == ids[i:i + c] and targets[i].item() == ids[i + c]


@pytest.mark.parametrize("bad", [0, -1, 2.0, True])
def test_context_windows_rejects_bad_context_size(bad):
    with pytest.raises(ValueError, match="context_size"):
        context_windows([1, 2, 3], bad)


def test_mlp_shapes_parameters_and_forward_formula():
    torch.manual_seed(0)
    V, c, d, h = 30, 3, 4, 5
    model = MLPLanguageModel(V, c, d, h)
    assert sum(p.numel() for p in model.parameters()) == V * d + c * d * h + h + h * V + V
    x = torch.randint(V, (7, c))
    logits = model(x)
    assert logits.shape == (7, V)
    hidden = torch.tanh(model.embedding.weight[x].flatten(1) @ model.hidden.weight.T + model.hidden.bias)
    assert torch.allclose(logits, hidden @ model.output.weight.T + model.output.bias, atol=1e-6)


def test_mlp_errors_name_the_problem():
    with pytest.raises(ValueError, match="vocab_size"):
        MLPLanguageModel(0, 3, 4, 5)
    with pytest.raises(ValueError, match="dropout"):
        MLPLanguageModel(10, 3, 4, 5, dropout=1.0)
    with pytest.raises(ValueError, match=r"\(batch, 3\)"):
        MLPLanguageModel(10, 3, 4, 5)(torch.zeros(2, 4, dtype=torch.long))


def test_untrained_loss_is_about_log_v():
    torch.manual_seed(0)
    V = 500
    model = MLPLanguageModel(V, 2, 8, 16)
    x, y = torch.randint(V, (1000, 2)), torch.randint(V, (1000,))
    assert abs(model_nll(model, x, y) - math.log(V)) < 0.1


def test_mlp_learns_a_deterministic_sequence():
    torch.manual_seed(0)
    ids = [i % 7 for i in range(200)]                      # next token = (previous + 1) mod 7
    x, y = context_windows(ids, 2)
    model = MLPLanguageModel(7, 2, 8, 16)
    opt = torch.optim.Adam(model.parameters(), lr=0.05)
    for _ in range(100):
        loss = F.cross_entropy(model(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert model_nll(model, x, y) < 0.05


def test_elman_rnn_matches_its_formula_and_torch():
    torch.manual_seed(0)
    rnn = ElmanRNN(3, 4).double()
    xs = torch.randn(2, 5, 3, dtype=torch.float64)
    states, last = rnn(xs)
    h = torch.zeros(2, 4, dtype=torch.float64)
    for t in range(5):
        h = torch.tanh(h @ rnn.W.T + xs[:, t] @ rnn.U.T + rnn.b)
        assert torch.allclose(states[:, t], h)
    assert torch.equal(last, states[:, -1])
    ref = torch.nn.RNN(3, 4, batch_first=True).double()
    with torch.no_grad():
        ref.weight_hh_l0.copy_(rnn.W)
        ref.weight_ih_l0.copy_(rnn.U)
        ref.bias_ih_l0.copy_(rnn.b)
        ref.bias_hh_l0.zero_()
    assert torch.allclose(ref(xs)[0], states)


def test_elman_rnn_carries_state_across_chunks():
    torch.manual_seed(0)
    lm = RNNLanguageModel(11, 4, 6)
    ids = torch.randint(11, (2, 8))
    full, _ = lm(ids)
    first, h = lm(ids[:, :5])
    second, _ = lm(ids[:, 5:], h)
    assert full.shape == (2, 8, 11)
    assert torch.allclose(torch.cat([first, second], dim=1), full, atol=1e-6)


def test_rnn_errors_name_the_problem():
    with pytest.raises(ValueError, match="hidden_dim"):
        ElmanRNN(3, 0)
    with pytest.raises(ValueError, match="batch, time, features"):
        ElmanRNN(3, 4)(torch.zeros(5, 3))
    with pytest.raises(ValueError, match="batch, time"):
        RNNLanguageModel(10, 3, 4)(torch.zeros(5, dtype=torch.long))


def test_mean_nll_matches_cross_entropy_for_both_models():
    torch.manual_seed(0)
    mlp = MLPLanguageModel(20, 2, 4, 8)
    x, y = torch.randint(20, (50, 2)), torch.randint(20, (50,))
    assert math.isclose(model_nll(mlp, x, y, batch_size=7), F.cross_entropy(mlp(x), y).item(), rel_tol=1e-5)
    rnn = RNNLanguageModel(20, 4, 8)
    ids, targets = torch.randint(20, (3, 9)), torch.randint(20, (3, 9))
    want = F.cross_entropy(rnn(ids)[0].flatten(0, 1), targets.flatten()).item()
    assert math.isclose(model_nll(rnn, ids, targets, batch_size=2), want, rel_tol=1e-5)
    with pytest.raises(ValueError, match="differ in length"):
        model_nll(mlp, x, y[:10])


def test_target_log_probs_are_per_token_and_model_nll_is_their_mean():
    torch.manual_seed(0)
    mlp = MLPLanguageModel(11, 2, embed_dim=4, hidden_dim=8)
    x, y = torch.randint(11, (20, 2)), torch.randint(11, (20,))
    lp = target_log_probs(mlp, x, y, batch_size=3)
    want = -F.cross_entropy(mlp(x).double(), y, reduction="none")
    assert lp.dtype == torch.float64 and torch.allclose(lp, want, atol=1e-6)
    assert math.isclose(model_nll(mlp, x, y), -lp.mean().item(), rel_tol=1e-12)

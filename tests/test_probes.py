"""minillm.probes on hand-made cases: probes, AUC, folds, and captured states."""
import random

import pytest
import torch

from minillm import tinyworld, zoo
from minillm.chat import encode_chat
from minillm.config import ModelConfig
from minillm.model import Transformer
from minillm.probes import (auc, cross_validate, false_refusal, fit_logistic,
                            group_folds, layer_names, layer_states, question_features)


def two_blobs(n=200, d=8, gap=4.0, seed=0):
    """x [n, d], y [n]: class 1 shifted by gap along the first axis."""
    g = torch.Generator().manual_seed(seed)
    y = (torch.arange(n) % 2).double()
    x = torch.randn(n, d, generator=g, dtype=torch.double)
    x[:, 0] += gap * y
    return x, y


def test_auc_counts_ties_half():
    assert auc([3.0, 4.0], [1.0, 2.0]) == 1.0
    assert auc([1.0, 2.0], [3.0, 4.0]) == 0.0
    assert auc([1.0], [1.0]) == 0.5
    assert auc([2.0, 1.0], [1.0, 0.0]) == pytest.approx((1 + 1 + 0.5 + 1) / 4)


def test_false_refusal_at_the_threshold_that_refuses_95_percent():
    unknown = torch.arange(100, dtype=torch.double)  # threshold: the 6th lowest, 5
    known = torch.tensor([4.0, 5.0, 6.0, -1.0])
    assert false_refusal(unknown, known) == 0.5
    assert (unknown >= 5).double().mean() == 0.95
    assert false_refusal(unknown, known, refuse=1.0) == 0.75  # threshold 0


def test_a_separable_set_gets_auc_1_and_a_random_one_about_half():
    x, y = two_blobs(gap=20.0)
    score = fit_logistic(x[:100], y[:100])
    test = score(x[100:])
    assert auc(test[y[100:] == 1], test[y[100:] == 0]) == 1.0
    noise = torch.randn(400, 8, generator=torch.Generator().manual_seed(1),
                        dtype=torch.double)
    labels = (torch.arange(400) % 2).double()
    score = fit_logistic(noise[:200], labels[:200])
    test = score(noise[200:])
    assert abs(auc(test[labels[200:] == 1], test[labels[200:] == 0]) - 0.5) < 0.1


def test_fit_logistic_reaches_the_minimum():
    """At the optimum the penalised, class-weighted gradient is zero."""
    x, y = two_blobs(gap=1.0)
    y[:10] = 1.0  # unbalanced classes
    l2 = 0.1
    score = fit_logistic(x, y, l2)
    z = (x - x.mean(0)) / x.std(0)
    w = torch.zeros(8, dtype=torch.double, requires_grad=True)
    b = torch.zeros((), dtype=torch.double, requires_grad=True)
    with torch.no_grad():  # recover w, b from the scores of the standardised data
        b0 = score(x.mean(0, keepdim=True))[0]
        w0 = torch.stack([score((x.mean(0) + x.std(0) * e)[None])[0] - b0
                          for e in torch.eye(8, dtype=torch.double)])
        w.copy_(w0)
        b.copy_(b0)
    weight = torch.where(y == 1, 0.5 / y.mean(), 0.5 / (1 - y.mean())) / len(y)
    loss = (weight * torch.nn.functional.binary_cross_entropy_with_logits(
        z @ w + b, y, reduction="none")).sum() + l2 / 2 * (w ** 2).sum()
    loss.backward()
    assert w.grad.abs().max() < 1e-9 and b.grad.abs() < 1e-9


def test_folds_never_put_one_group_on_both_sides():
    groups = [f"person{i // 6}" for i in range(6 * 23)]  # 23 people, 6 items each
    masks = group_folds(groups, 5, random.Random(0))
    assert len(masks) == 5
    assert torch.stack(masks).sum(0).eq(1).all()  # every item tested exactly once
    for test in masks:
        inside = {g for g, t in zip(groups, test) if t}
        outside = {g for g, t in zip(groups, test) if not t}
        assert inside and not inside & outside
        assert len(inside) in (4, 5)  # 23 people dealt into 5 near-equal folds
    again = group_folds(groups, 5, random.Random(0))
    assert all(torch.equal(a, b) for a, b in zip(masks, again))


def test_cross_validate_on_blobs_folded_by_group():
    x, y = two_blobs(n=120, gap=20.0)
    groups = [i // 2 for i in range(120)]  # each pair holds one item of each class
    folds = [(~test, test) for test in group_folds(groups, 4, random.Random(0))]
    aucs, refusals = cross_validate(x, y, folds)
    assert aucs == [1.0] * 4 and refusals == [0.0] * 4


def test_layer_states_match_a_plain_forward():
    torch.manual_seed(0)
    config = ModelConfig(vocab_size=97, d_model=32, n_layers=2, n_heads=4,
                         n_kv_heads=2, d_ff=48, max_seq_len=64)
    model = Transformer(config).double().eval()
    ids = torch.randint(0, 97, (3, 11))
    logits, states = layer_states(model, ids)
    assert layer_names(model) == ["embed", "block1", "block2", "final_norm"]
    assert states.shape == (4, 3, 11, 32)
    torch.testing.assert_close(logits, model(ids))
    torch.testing.assert_close(states[-1] @ model.lm_head.weight.T, logits)
    torch.testing.assert_close(states[0], model.embed(ids))
    assert not model.embed._forward_hooks and not model.norm._forward_hooks


def test_question_features_match_unpadded_forwards():
    model, tokenizer = zoo.load("tinyworld-sft")
    records = (tinyworld.load("sft_eval_unknown")[:3]
               + tinyworld.load("sft_eval_heldout")[:2])
    feats = question_features(model, tokenizer, records, batch_size=4)
    assert feats["reply"].shape == (len(layer_names(model)), 5, model.config.d_model)
    first_i = tokenizer.encode(tinyworld.IDK)[0]
    for n, record in enumerate(records):
        ids = encode_chat(record["messages"][:-1], tokenizer,
                          add_generation_prompt=True)[0]
        logits, states = layer_states(model, torch.tensor([ids]))
        torch.testing.assert_close(feats["reply"][:, n], states[:, 0, -1].double(),
                                   atol=1e-4, rtol=1e-4)
        p = logits[0, -1].softmax(-1)[first_i].item()
        assert feats["p_first_i"][n].item() == pytest.approx(p, abs=1e-5)
        # The control's terms sum to the surname's first logit.
        surname = tokenizer.encode(" " + record["person"].split(" ", 1)[1])
        at = next(i for i in range(len(ids)) if ids[i:i + len(surname)] == surname)
        logit = logits[0, at - 1, surname[0]].item()
        assert feats["match"][0, n].sum().item() == pytest.approx(logit, abs=1e-3)
        logp = logits[0].log_softmax(-1)
        surprisal = -sum(logp[at - 1 + j, t].item() for j, t in enumerate(surname))
        assert feats["surprisal"][n].item() == pytest.approx(surprisal, abs=1e-3)

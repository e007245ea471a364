import math
from collections import Counter

import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from minillm.temperature import (BigramChain, temper_probs, softmax_with_temperature,
                                 total_variation)

# Probability vectors with no vanishingly small entries (so p^(1/T) stays representable).
weights = st.lists(st.floats(0.01, 1.0), min_size=2, max_size=8)
temperatures = st.floats(0.05, 20.0)


def normalise(w):
    w = np.asarray(w, dtype=np.float64)
    return w / w.sum()


def test_worked_example():
    np.testing.assert_allclose(temper_probs([0.4, 0.6], 0.5), [0.16 / 0.52, 0.36 / 0.52])
    assert temper_probs([0.4, 0.6], 0.2)[1] == pytest.approx(0.6**5 / (0.4**5 + 0.6**5))


@given(weights)
def test_T1_is_identity(w):
    p = normalise(w)
    np.testing.assert_allclose(temper_probs(p, 1.0), p, rtol=1e-12)


@given(weights, temperatures)
def test_result_is_a_distribution_and_order_is_preserved(w, T):
    p = normalise(w)
    q = temper_probs(p, T)
    assert q.sum() == pytest.approx(1.0)
    assert (q >= 0).all()
    for i in range(len(p)):
        for j in range(len(p)):
            if p[i] < p[j]:
                assert q[i] <= q[j]


@given(weights, temperatures)
def test_equals_softmax_of_scaled_logits(w, T):
    p = normalise(w)
    logits = np.log(p) + 3.0  # any shift of the logits gives the same softmax
    np.testing.assert_allclose(softmax_with_temperature(logits, T), temper_probs(p, T), rtol=1e-9)


@given(weights, st.floats(0.1, 0.9), st.floats(1.1, 10.0))
def test_lower_temperature_sharpens(w, T_low, T_high):
    p = normalise(w)
    assert temper_probs(p, T_low).max() >= temper_probs(p, T_high).max() - 1e-12


def test_limits():
    p = [0.1, 0.5, 0.4, 0.0]
    np.testing.assert_array_equal(temper_probs(p, 0), [0, 1, 0, 0])
    np.testing.assert_allclose(temper_probs(p, 1e-3), [0, 1, 0, 0], atol=1e-12)
    np.testing.assert_allclose(temper_probs(p, math.inf), [1 / 3, 1 / 3, 1 / 3, 0])
    np.testing.assert_allclose(temper_probs(p, 1e6), [1 / 3, 1 / 3, 1 / 3, 0], atol=1e-5)
    # ties split evenly at T = 0
    np.testing.assert_allclose(temper_probs([0.4, 0.2, 0.4], 0), [0.5, 0, 0.5])
    np.testing.assert_allclose(softmax_with_temperature([1.0, -math.inf, 1.0], 0), [0.5, 0, 0.5])
    np.testing.assert_allclose(softmax_with_temperature([5.0, -math.inf, 1.0], math.inf), [0.5, 0, 0.5])


def test_extreme_logits_are_stable():
    out = softmax_with_temperature([1e10, 0.0, -1e10], 1e-300)
    np.testing.assert_array_equal(out, [1, 0, 0])
    out = softmax_with_temperature([1000.0, 999.0], 1.0)
    assert np.isfinite(out).all() and out.sum() == pytest.approx(1)


def test_torch_batched_last_dim():
    logits = torch.randn(2, 3, 5, generator=torch.Generator().manual_seed(0))
    q = softmax_with_temperature(logits, 0.7)
    assert isinstance(q, torch.Tensor) and q.shape == (2, 3, 5)
    torch.testing.assert_close(q, torch.softmax(logits / 0.7, dim=-1))
    p = torch.softmax(logits, dim=-1)
    torch.testing.assert_close(temper_probs(p, 0.7), q, rtol=1e-5, atol=1e-6)
    greedy = temper_probs(p, 0)
    torch.testing.assert_close(greedy.argmax(-1), p.argmax(-1))


@pytest.mark.parametrize("T, error, words", [
    (-0.5, ValueError, ">= 0"), (float("nan"), ValueError, "NaN"), ("hot", TypeError, "number"),
    (True, TypeError, "number")])
def test_bad_temperature(T, error, words):
    with pytest.raises(error, match=words):
        temper_probs([0.5, 0.5], T)


@pytest.mark.parametrize("probs, words", [
    ([0.4, 0.5], "sum to 1"), ([-0.2, 1.2], ">= 0"), ([float("nan"), 1.0], "NaN"),
    ([[0.5, 0.5], [0.3, 0.3]], "0.6")])
def test_bad_probabilities(probs, words):
    with pytest.raises(ValueError, match=words):
        temper_probs(probs, 1.0)


def test_bad_logits():
    with pytest.raises(ValueError, match="no finite"):
        softmax_with_temperature([-math.inf, -math.inf], 1.0)
    with pytest.raises(ValueError, match="NaN"):
        softmax_with_temperature([float("nan"), 0.0], 1.0)


def test_total_variation():
    assert total_variation([1, 0], [0, 1]) == 1.0
    assert total_variation([0.5, 0.5], [0.5, 0.5]) == 0.0
    with pytest.raises(ValueError, match="same shape"):
        total_variation([1, 0], [1, 0, 0])


# ----------------------------------------------------------- sequences

EOS = 3
START = [0.45, 0.35, 0.2, 0.0]
P = [[0.2, 0.25, 0.25, 0.3], [0.05, 0.0, 0.05, 0.9], [0.3, 0.3, 0.1, 0.3], [0, 0, 0, 0]]


@pytest.fixture
def chain():
    return BigramChain(START, P, EOS, max_len=3)


def test_enumeration_sums_to_one(chain):
    seqs, p = chain.per_step_distribution(1.0)
    assert p.sum() == pytest.approx(1.0)
    assert len(set(seqs)) == len(seqs) and all(s[-1] == EOS for s in seqs)
    assert max(len(s) for s in seqs) == chain.max_len + 1
    assert (1, 1, EOS) not in seqs  # p(ok -> ok) = 0 prunes it
    assert chain.sequence_prob((1, EOS)) == pytest.approx(0.35 * 0.9)
    assert chain.sequence_prob((0, 0, 0, EOS)) == pytest.approx(0.45 * 0.2 * 0.2)  # eos forced


@pytest.mark.parametrize("T", [0.3, 0.5, 2.0, 5.0])
def test_both_sequence_distributions_are_distributions(chain, T):
    assert chain.per_step_distribution(T)[1].sum() == pytest.approx(1.0)
    assert chain.annealed_distribution(T)[1].sum() == pytest.approx(1.0)


def test_per_step_and_annealed_agree_at_T1_only(chain):
    _, q = chain.per_step_distribution(1.0)
    _, r = chain.annealed_distribution(1.0)
    assert total_variation(q, r) < 1e-12
    for T in (0.5, 2.0):
        assert total_variation(chain.per_step_distribution(T)[1], chain.annealed_distribution(T)[1]) > 0.05


def test_deterministic_continuations_make_them_agree():
    P_det = [[0, 1, 0, 0], [0, 0, 0, 1], [0, 0, 0, 1], [0, 0, 0, 0]]
    chain = BigramChain(START, P_det, EOS, max_len=3)
    for T in (0.5, 2.0):
        assert total_variation(chain.per_step_distribution(T)[1], chain.annealed_distribution(T)[1]) < 1e-12


def test_greedy_is_not_the_most_likely_sequence(chain):
    seqs, greedy = chain.per_step_distribution(0.0)
    _, mode = chain.annealed_distribution(0.0)
    assert seqs[int(greedy.argmax())] == (0, EOS) and greedy.max() == 1
    assert seqs[int(mode.argmax())] == (1, EOS) and mode.max() == 1


def test_per_step_equals_joint_over_local_normalisers(chain):
    T = 0.5
    seqs, q = chain.per_step_distribution(T)
    for seq, qx in zip(seqs, q):
        norm, prev = 1.0, None
        for t in range(min(len(seq), chain.max_len)):
            row = np.asarray(START if prev is None else P[prev])
            norm *= (row ** (1 / T)).sum()
            prev = seq[t]
        assert qx == pytest.approx(chain.sequence_prob(seq) ** (1 / T) / norm)


def test_sampling_matches_enumeration(chain):
    n, T = 20_000, 0.5
    counts = Counter(chain.sample(n, T, np.random.default_rng(0)))
    seqs, q = chain.per_step_distribution(T)
    assert set(counts) <= set(seqs)
    for seq, qx in zip(seqs, q):
        assert abs(counts[seq] / n - qx) <= 5 * math.sqrt(qx * (1 - qx) / n) + 1e-9


def test_chain_validation():
    with pytest.raises(ValueError, match="shape"):
        BigramChain([0.5, 0.5], P, EOS, 3)
    with pytest.raises(ValueError, match="eos"):
        BigramChain(START, P, 7, 3)
    with pytest.raises(ValueError, match="summing to 1"):
        BigramChain([0.5, 0.2, 0.2, 0.0], P, EOS, 3)
    with pytest.raises(ValueError, match="max_len"):
        BigramChain(START, P, EOS, -1)
    with pytest.raises(ValueError, match="eos"):
        BigramChain(START, P, EOS, 3).sequence_prob((0, 1))

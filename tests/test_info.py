"""Tests of minillm.info: entropy, cross-entropy, KL divergence, perplexity."""
import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from minillm.info import (
    as_distribution,
    cross_entropy,
    entropy,
    kl_divergence,
    mean_nll,
    perplexity_from_cross_entropy,
    perplexity_from_log_probs,
    perplexity_geometric_mean,
)


# ----------------------------------------------------------------- strategies

@st.composite
def distributions(draw, size=None, min_size=1, max_size=12, strictly_positive=False):
    """A random probability vector (some zeros allowed unless strictly_positive)."""
    n = size if size is not None else draw(st.integers(min_size, max_size))
    low = 1e-3 if strictly_positive else 0.0
    weights = draw(st.lists(st.floats(low, 1.0), min_size=n, max_size=n))
    if sum(weights) == 0:
        weights[0] = 1.0
    total = sum(weights)
    return np.array(weights) / total


@st.composite
def pairs(draw):
    n = draw(st.integers(1, 12))
    return draw(distributions(size=n)), draw(distributions(size=n, strictly_positive=True))


# ----------------------------------------------------------------- known values

def test_fair_coin_has_one_bit():
    assert entropy([0.5, 0.5]) == pytest.approx(1.0)


def test_biased_coin_entropy():
    assert round(entropy([0.9, 0.1]), 3) == 0.469


def test_bits_and_nats_differ_by_ln2():
    p = [0.2, 0.3, 0.5]
    assert entropy(p, base=math.e) == pytest.approx(entropy(p) * math.log(2))


def test_dyadic_distribution_and_prefix_codes():
    p = [1 / 2, 1 / 4, 1 / 8, 1 / 8]
    assert entropy(p) == pytest.approx(1.75)
    assert cross_entropy(p, [1 / 4] * 4) == pytest.approx(2.0)
    q = [1 / 4, 1 / 8, 1 / 2, 1 / 8]  # code lengths 2, 3, 1, 3
    assert cross_entropy(p, q) == pytest.approx(2.25)
    assert kl_divergence(p, q) == pytest.approx(0.5)


def test_certain_outcome_has_zero_entropy_and_not_minus_zero():
    h = entropy([0.0, 1.0, 0.0])
    assert h == 0.0 and math.copysign(1, h) == 1


def test_kl_of_identical_distributions_is_zero():
    assert kl_divergence([0.1, 0.9], [0.1, 0.9]) == 0.0


def test_kl_is_not_symmetric():
    p, q = [0.5, 0.5], [0.9, 0.1]
    assert kl_divergence(p, q) != pytest.approx(kl_divergence(q, p))


def test_zero_q_where_p_positive_gives_infinity():
    assert cross_entropy([0.5, 0.5], [1.0, 0.0]) == math.inf
    assert kl_divergence([0.5, 0.5], [1.0, 0.0]) == math.inf
    # ... but q = 0 where p = 0 is harmless
    assert kl_divergence([1.0, 0.0], [1.0, 0.0]) == 0.0
    assert cross_entropy([1.0, 0.0], [0.5, 0.5]) == pytest.approx(1.0)


def test_accepts_lists_numpy_and_torch():
    p = [0.25, 0.75]
    want = entropy(p)
    assert entropy(tuple(p)) == want
    assert entropy(np.array(p, dtype=np.float32)) == pytest.approx(want)
    assert entropy(torch.tensor(p)) == pytest.approx(want)
    assert isinstance(entropy(torch.tensor(p)), float)
    logits = torch.randn(1000, generator=torch.Generator().manual_seed(0))
    q = torch.softmax(logits, dim=0)  # float32: sums to 1 only approximately
    assert kl_divergence(q, q) == pytest.approx(0.0, abs=1e-9)


# ----------------------------------------------------------------- validation

@pytest.mark.parametrize("bad, message", [
    ([0.5, 0.6], "sum to 1.1"),
    ([1.5, -0.5], "negative probability -0.5"),
    ([], "empty"),
    ([[0.5, 0.5]], "1-D"),
    ([0.5, float("nan")], "NaN"),
    ([float("inf"), 0.0], "infinite"),
])
def test_invalid_distributions_are_rejected(bad, message):
    with pytest.raises(ValueError, match=message):
        entropy(bad)


def test_sum_error_names_the_sum():
    with pytest.raises(ValueError, match=r"sum to 0\.9"):
        as_distribution([0.3, 0.6])


def test_non_numeric_input_is_a_type_error():
    with pytest.raises(TypeError, match="sequence of numbers"):
        entropy(["a", "b"])


def test_lengths_must_match():
    with pytest.raises(ValueError, match="same number of outcomes, got 2 and 3"):
        cross_entropy([0.5, 0.5], [0.2, 0.3, 0.5])


@pytest.mark.parametrize("base", [0, -2, 1, 1.0, float("inf")])
def test_invalid_base(base):
    with pytest.raises(ValueError, match="base must be positive"):
        entropy([0.5, 0.5], base=base)


def test_non_numeric_base():
    with pytest.raises(TypeError, match="base must be a number"):
        kl_divergence([0.5, 0.5], [0.5, 0.5], base="2")


# ----------------------------------------------------------------- properties

@settings(max_examples=200, deadline=None)
@given(pairs())
def test_gibbs_inequality(pq):
    p, q = pq
    assert kl_divergence(p, q) >= 0.0


@settings(max_examples=200, deadline=None)
@given(pairs())
def test_cross_entropy_is_entropy_plus_kl(pq):
    p, q = pq
    assert cross_entropy(p, q) == pytest.approx(entropy(p) + kl_divergence(p, q), rel=1e-9, abs=1e-9)


@settings(max_examples=200, deadline=None)
@given(distributions())
def test_entropy_is_between_zero_and_log_v(p):
    assert -1e-12 <= entropy(p) <= math.log2(len(p)) + 1e-9


@settings(max_examples=200, deadline=None)
@given(distributions(min_size=2))
def test_uniform_maximizes_entropy(p):
    uniform = np.full(len(p), 1 / len(p))
    assert entropy(p) <= entropy(uniform) + 1e-9
    assert entropy(uniform) == pytest.approx(math.log2(len(p)))


@settings(max_examples=100, deadline=None)
@given(pairs(), st.sampled_from([2, math.e, 10, 0.5]))
def test_bases_are_rescalings(pq, base):
    p, q = pq
    assert kl_divergence(p, q, base=base) == pytest.approx(kl_divergence(p, q, base=math.e) / math.log(base),
                                                           rel=1e-9, abs=1e-12)


# ----------------------------------------------------------------- perplexity

def test_three_forms_of_perplexity_agree():
    rng = np.random.default_rng(0)
    probs = rng.uniform(1e-4, 1.0, size=5000)
    log_probs = np.log(probs)
    ppl = perplexity_from_log_probs(log_probs)
    assert perplexity_geometric_mean(probs) == pytest.approx(ppl, rel=1e-9)
    assert perplexity_from_cross_entropy(mean_nll(log_probs, base=2)) == pytest.approx(ppl, rel=1e-9)
    assert np.prod(probs) == 0.0  # the naive product underflows, the three forms do not


def test_uniform_model_has_perplexity_v():
    v = 3111
    assert perplexity_from_log_probs([-math.log(v)] * 500) == pytest.approx(v, rel=1e-12)
    assert perplexity_geometric_mean([1 / v] * 500) == pytest.approx(v, rel=1e-12)


def test_a_zero_probability_makes_perplexity_infinite():
    assert perplexity_from_log_probs([-1.0, -math.inf]) == math.inf
    assert perplexity_geometric_mean([0.5, 0.0]) == math.inf
    assert perplexity_from_cross_entropy(math.inf) == math.inf
    assert perplexity_from_cross_entropy(2000.0) == math.inf  # overflow becomes inf, not an error


def test_perplexity_accepts_torch():
    lp = torch.log_softmax(torch.randn(8, 5, generator=torch.Generator().manual_seed(0)), dim=-1)
    targets = torch.arange(8) % 5
    token_lp = lp[torch.arange(8), targets]
    nll = torch.nn.functional.nll_loss(lp, targets)
    assert perplexity_from_log_probs(token_lp) == pytest.approx(math.exp(nll.item()), rel=1e-6)


def test_perplexity_validation():
    with pytest.raises(ValueError, match=r"log_probs must be <= 0.*0\.5 at index 1"):
        perplexity_from_log_probs([-1.0, 0.5])
    with pytest.raises(ValueError, match="empty"):
        perplexity_from_log_probs([])
    with pytest.raises(ValueError, match=r"probs must lie in \[0, 1\], got -0\.5"):
        perplexity_geometric_mean([0.5, -0.5])
    with pytest.raises(ValueError, match="cross-entropy is >= 0"):
        perplexity_from_cross_entropy(-1.0)


@settings(max_examples=100, deadline=None)
@given(st.lists(st.floats(1e-6, 1.0), min_size=1, max_size=50))
def test_perplexity_forms_agree_property(probs):
    probs = np.array(probs)
    ppl = perplexity_from_log_probs(np.log(probs))
    assert 1.0 - 1e-12 <= ppl <= 1 / probs.min() + 1e-6
    assert perplexity_geometric_mean(probs) == pytest.approx(ppl, rel=1e-9)
    assert perplexity_from_cross_entropy(mean_nll(np.log(probs), base=2)) == pytest.approx(ppl, rel=1e-9)

"""Tests of minillm.ngram: counts, normalization, smoothing, errors, sampling."""
import math
import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from minillm.ngram import (BOS, EOS, SMOOTHINGS, UNK, NGramModel, as_sentences, fit_interpolation_weights,
                           ngrams, pad)

TINY = [["the", "cat", "sat"], ["the", "dog", "sat"], ["the", "cat", "ran"], ["a", "cat", "sat"]]


def total_prob(model, context):
    return math.fsum(model.next_token_probs(context).values())


def test_pad_and_ngrams():
    assert pad(["a", "b"], 3) == [BOS, BOS, "a", "b", EOS]
    assert ngrams(["a", "b"], 2) == [(BOS, "a"), ("a", "b"), ("b", EOS)]
    assert ngrams([], 1) == [(EOS,)]


def test_as_sentences_accepts_flat_or_nested():
    assert as_sentences(["a", "b"]) == [["a", "b"]]
    assert as_sentences([["a"], ["b"]]) == [["a"], ["b"]]
    with pytest.raises(TypeError, match="string"):
        as_sentences("the cat")
    with pytest.raises(TypeError, match="mixed"):
        as_sentences([["a"], "b"])


def test_bigram_mle_matches_hand_counts():
    m = NGramModel(2, min_count=1).fit(TINY)
    assert m.prob("cat", ["the"]) == pytest.approx(2 / 3)   # c(the cat)=2, c(the .)=3
    assert m.prob("the", []) == pytest.approx(3 / 4)        # 3 of 4 sentences start with "the"
    assert m.prob(EOS, ["sat"]) == 1.0
    assert m.prob(BOS, ["the"]) == 0.0
    assert m.count(("the", "cat")) == 2 and m.count(("cat",)) == 3 and m.count(("zebra", "cat")) == 0
    # log-prob is the sum over positions, </s> included
    want = math.log(3 / 4) + math.log(2 / 3) + math.log(2 / 3) + math.log(1.0)
    assert m.log_prob_sequence(["the", "cat", "sat"]) == pytest.approx(want)
    assert m.perplexity(["the", "cat", "sat"]) == pytest.approx(math.exp(-want / 4))


def test_unigram_mle_and_vocab():
    m = NGramModel(1, min_count=2).fit(TINY)
    # words seen once ("dog", "ran", "a") become <unk>; <s> is not in the vocabulary
    assert set(m.vocab) == {UNK, EOS, "the", "cat", "sat"}
    assert BOS not in m.vocab
    assert m.prob("zebra") == m.prob(UNK) == pytest.approx(3 / 16)  # 3 unks of 12 words + 4 </s>
    assert m.map_unk(["cat", "zebra"]) == ["cat", UNK]


@pytest.mark.parametrize("smoothing", SMOOTHINGS)
@pytest.mark.parametrize("n", [1, 2, 3, 4])
def test_probabilities_sum_to_one(smoothing, n):
    m = NGramModel(n, smoothing, k=0.5, min_count=1).fit(TINY)  # so <unk> is an unseen context
    seen_contexts = [[], ["the"], ["the", "cat"], ["the", "cat", "sat"], ["a", "cat", "sat"]]
    for context in seen_contexts:
        assert total_prob(m, context) == pytest.approx(1.0, abs=1e-9), context
    unseen = ["sat", "the", "zebra"]
    if smoothing == "mle" and n > 1:
        # documented: after an unseen context MLE gives every word probability 0
        assert total_prob(m, unseen) == 0.0
    else:
        assert total_prob(m, unseen) == pytest.approx(1.0, abs=1e-9)
    if smoothing != "mle":
        assert min(m.next_token_probs(unseen).values()) > 0


@settings(max_examples=30, deadline=None)
@given(corpus=st.lists(st.lists(st.sampled_from("abcde"), max_size=6), min_size=1, max_size=6),
       n=st.integers(1, 4), smoothing=st.sampled_from(SMOOTHINGS[1:]),
       context=st.lists(st.sampled_from("abcdez"), max_size=4))
def test_smoothed_models_normalize_property(corpus, n, smoothing, context):
    if not any(corpus):
        corpus = corpus + [["a"]]
    m = NGramModel(n, smoothing, k=0.3, min_count=1).fit(corpus)
    assert total_prob(m, context) == pytest.approx(1.0, abs=1e-9)
    assert min(m.next_token_probs(context).values()) > 0


def test_add_k_formula_and_large_k_is_uniform():
    m = NGramModel(2, "add_k", k=1).fit(TINY)
    V = len(m.vocab)
    assert m.prob("cat", ["the"]) == pytest.approx((2 + 1) / (3 + V))
    m.k = 0.5  # k can be tuned without refitting
    assert m.prob("cat", ["the"]) == pytest.approx((2 + 0.5) / (3 + 0.5 * V))
    with pytest.raises(ValueError, match="k must be"):
        m.k = 0
    uniform = NGramModel(2, "add_k", k=1e12).fit(TINY)
    assert uniform.perplexity([["the", "cat"], ["a", "zebra"]]) == pytest.approx(V, rel=1e-6)


def test_mle_heldout_perplexity_is_infinite():
    m = NGramModel(2, min_count=1).fit(TINY)
    assert m.log_prob_sequence(["the", "sat"]) == -math.inf
    assert m.perplexity(["the", "sat"]) == math.inf


def test_interpolation_em_improves_dev_likelihood():
    dev = [["the", "dog", "ran"], ["a", "cat", "ran"]]
    m = NGramModel(3, "interpolated", min_count=1).fit(TINY)
    before = m.log_prob_sequence(dev)
    lambdas = fit_interpolation_weights(m, dev)
    assert len(lambdas) == 4 and sum(lambdas) == pytest.approx(1.0) and min(lambdas) >= 0
    assert m.log_prob_sequence(dev) > before
    with pytest.raises(ValueError, match="interpolated"):
        fit_interpolation_weights(NGramModel(2, "kneser_ney").fit(TINY), dev)


def test_kneser_ney_bigram_matches_direct_formula():
    m = NGramModel(2, "kneser_ney", discount=0.75, min_count=1).fit(TINY)
    V, D = len(m.vocab), 0.75
    bigrams = [g for s in TINY for g in ngrams(s, 2)]
    types = set(bigrams)

    def p_cont(w):  # unigram level: distinct left neighbours, interpolated with uniform
        n_w = sum(1 for (_, b) in types if b == w)
        return (max(n_w - D, 0) + D * len({b for _, b in types}) / V) / len(types)

    for h, w in [("the", "cat"), ("the", "sat"), ("cat", EOS), (BOS, "a")]:
        c_hw = bigrams.count((h, w))
        c_h = sum(1 for a, _ in bigrams if a == h)
        n_h = len({b for a, b in types if a == h})
        want = (max(c_hw - D, 0) + D * n_h * p_cont(w)) / c_h
        assert m.prob(w, [h]) == pytest.approx(want)


def test_kneser_ney_discount_estimate():
    m = NGramModel(2, "kneser_ney", min_count=1).fit(TINY)
    from collections import Counter
    count_of_counts = Counter(Counter(g for s in TINY for g in ngrams(s, 2)).values())
    n1, n2 = count_of_counts[1], count_of_counts[2]
    assert m.discounts[2] == pytest.approx(n1 / (n1 + 2 * n2))
    assert all(0 < d < 1 for d in m.discounts[1:])


def test_sample_is_reproducible_and_follows_counts():
    m = NGramModel(2, min_count=1).fit(TINY)
    a = [m.sample(random.Random(3)) for _ in range(5)]
    b = [m.sample(random.Random(3)) for _ in range(5)]
    assert a == b
    seen = {g for s in TINY for g in ngrams(s, 2)}
    for seed in range(20):
        sentence = m.sample(random.Random(seed), max_len=10)
        assert all(g in seen for g in ngrams(sentence, 2)[:-1])  # MLE only reuses seen bigrams
    assert m.sample(random.Random(0), prefix=["a"])[0] == "a"
    assert len(NGramModel(1, "add_k").fit(TINY).sample(random.Random(0), max_len=3)) <= 3
    with pytest.raises(ValueError, match="never occurred"):
        m.sample(random.Random(0), prefix=["zebra"])


@pytest.mark.parametrize("kwargs, match", [
    (dict(n=0), "n must be"), (dict(n=2.0), "n must be"), (dict(n=True), "n must be"),
    (dict(n=2, smoothing="laplace"), "mle, add_k, interpolated, kneser_ney"),
    (dict(n=2, smoothing="add_k", k=-1), "k must be"),
    (dict(n=2, discount=1.0), "discount"), (dict(n=2, discount=0), "discount"),
    (dict(n=2, lambdas=(0.5, 0.6, 0.1)), "sum to 1"), (dict(n=2, lambdas=(0.5, 0.5)), "n\\+1 = 3"),
    (dict(n=2, min_count=0), "min_count"),
])
def test_bad_arguments_raise_clear_errors(kwargs, match):
    with pytest.raises(ValueError, match=match):
        NGramModel(**kwargs)


def test_bad_fit_and_unfitted_use():
    with pytest.raises(ValueError, match="empty corpus"):
        NGramModel(2).fit([])
    with pytest.raises(ValueError, match="empty corpus"):
        NGramModel(2).fit([[], []])
    with pytest.raises(ValueError, match="reserved"):
        NGramModel(2).fit([[BOS, "a"]])
    with pytest.raises(RuntimeError, match="not fitted"):
        NGramModel(2).prob("a", [])
    with pytest.raises(RuntimeError, match="not fitted"):
        NGramModel(2).perplexity(["a"])


def test_real_corpus_ordering():
    from minillm.corpora import python_reference, words
    train = [words(p) for p in python_reference("train").split("\n\n")]
    dev = [words(p) for p in python_reference("dev").split("\n\n")][:60]
    ppl = {s: NGramModel(3, s, k=0.01).fit(train).perplexity(dev) for s in ("add_k", "kneser_ney")}
    assert ppl["kneser_ney"] < ppl["add_k"] < 1000

"""The n-gram exercise checkers accept right answers and explain wrong ones."""
import math

import pytest

from minillm.exercises import ExerciseError, ExerciseNotImplemented
from minillm.exercises.ngrams import (check_bigram_mle_prob, check_continuation_count,
                                      check_perplexity_of_probs, check_stupid_backoff)


def stub(*args):
    raise NotImplementedError


# ---- bigram_mle_prob
def bigram_right(counts, prev, word):
    total = sum(c for (a, _), c in counts.items() if a == prev)
    return counts.get((prev, word), 0) / total if total else 0.0


def bigram_all_bigrams(counts, prev, word):
    return counts.get((prev, word), 0) / sum(counts.values())


def bigram_by_word(counts, prev, word):
    total = sum(c for (_, b), c in counts.items() if b == word)
    return counts.get((prev, word), 0) / total if total else 0.0


def bigram_crashes_unseen(counts, prev, word):
    total = sum(c for (a, _), c in counts.items() if a == prev)
    return counts.get((prev, word), 0) / total


# ---- stupid_backoff
def sb_right(counts, context, word, alpha):
    if not context:
        return counts.get((word,), 0) / sum(c for g, c in counts.items() if len(g) == 1)
    if counts.get(context + (word,), 0) > 0:
        return counts[context + (word,)] / counts[context]
    return alpha * sb_right(counts, context[1:], word, alpha)


def sb_alpha_once(counts, context, word, alpha):
    for start in range(len(context) + 1):
        h = context[start:]
        if counts.get(h + (word,), 0) > 0:
            total = sum(c for g, c in counts.items() if len(g) == 1)
            return (counts[h + (word,)] / (counts[h] if h else total)) * (alpha if start else 1)
    return 0.0


def sb_no_alpha(counts, context, word, alpha):
    return sb_right(counts, context, word, 1.0)


# ---- perplexity_of_probs
def ppl_right(probs):
    if min(probs) == 0:
        return math.inf
    return math.exp(-sum(math.log(p) for p in probs) / len(probs))


def ppl_base2(probs):
    if min(probs) == 0:
        return math.inf
    return 2 ** (-sum(math.log2(p) for p in probs) / len(probs))


def ppl_sum(probs):
    return math.exp(-sum(math.log(p) for p in probs)) if min(probs) > 0 else math.inf


def ppl_no_exp(probs):
    return -sum(math.log(p) for p in probs) / len(probs) if min(probs) > 0 else math.inf


def ppl_crashes_on_zero(probs):
    return math.exp(-sum(math.log(p) for p in probs) / len(probs))


# ---- continuation_count
def cont_right(counts, word):
    return len({a for (a, b), c in counts.items() if b == word and c > 0})


def cont_ignores_zero_counts(counts, word):
    return len({a for (a, b) in counts if b == word})


def cont_occurrences(counts, word):
    return sum(c for (a, b), c in counts.items() if b == word)


@pytest.mark.parametrize("checker, right", [
    (check_bigram_mle_prob, bigram_right), (check_stupid_backoff, sb_right),
    (check_perplexity_of_probs, ppl_right), (check_perplexity_of_probs, ppl_base2),
    (check_continuation_count, cont_right),
])
def test_right_answers_pass(checker, right, capsys):
    checker(right)
    assert capsys.readouterr().out.startswith("✓ correct")


@pytest.mark.parametrize("checker, wrong, match", [
    (check_bigram_mle_prob, bigram_all_bigrams, "not by all bigrams"),
    (check_bigram_mle_prob, bigram_by_word, "not by how often 'cat'"),
    (check_stupid_backoff, sb_alpha_once, "applied alpha once"),
    (check_stupid_backoff, sb_no_alpha, "multiplies by alpha"),
    (check_perplexity_of_probs, ppl_sum, "MEAN"),
    (check_perplexity_of_probs, ppl_no_exp, "exp of it"),
    (check_perplexity_of_probs, ppl_crashes_on_zero, "return math.inf"),
    (check_continuation_count, cont_occurrences, "DISTINCT"),
    (check_continuation_count, cont_ignores_zero_counts, "count only counts > 0"),
])
def test_wrong_answers_are_explained(checker, wrong, match):
    with pytest.raises(ExerciseError, match=match):
        checker(wrong)


def test_bigram_unseen_context_division_by_zero_is_explained():
    with pytest.raises(ExerciseError, match="divided by zero"):
        check_bigram_mle_prob(bigram_crashes_unseen)


@pytest.mark.parametrize("checker", [check_bigram_mle_prob, check_stupid_backoff, check_perplexity_of_probs,
                                     check_continuation_count])
def test_stubs_are_reported_as_not_implemented(checker):
    with pytest.raises(ExerciseNotImplemented, match="not implemented yet"):
        checker(stub)


def test_checkers_are_reexported():
    from minillm.exercises import check_bigram_mle_prob as reexported
    assert reexported is check_bigram_mle_prob

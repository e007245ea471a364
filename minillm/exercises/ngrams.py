"""Checkers for the exercises of "Language models as probability: counting n-grams"."""
from __future__ import annotations

import math

from minillm.exercises import ExerciseError, call, expect_close, passed

BIGRAMS = {("the", "cat"): 2, ("the", "dog"): 1, ("a", "cat"): 2, ("cat", "sat"): 3}


def check_bigram_mle_prob(fn) -> None:
    """fn(bigram_counts, prev, word) -> P_MLE(word | prev) = c(prev, word) / sum_w c(prev, w)."""
    cases = [("the", "cat", 2 / 3), ("the", "dog", 1 / 3), ("cat", "sat", 1.0), ("a", "dog", 0.0)]
    for prev, word, want in cases:
        got = call(fn, dict(BIGRAMS), prev, word)
        if prev == "the" and word == "cat" and _close(got, 2 / 8):
            raise ExerciseError("bigram_mle_prob(counts, 'the', 'cat') should be 2/3, got 2/8: divide by the "
                                "number of bigrams that START with 'the' (3), not by all bigrams (8)")
        if prev == "the" and word == "cat" and _close(got, 2 / 4):
            raise ExerciseError("bigram_mle_prob(counts, 'the', 'cat') should be 2/3, got 2/4: divide by how "
                                "often the context 'the' occurs (3), not by how often 'cat' occurs (4)")
        expect_close(got, want, f"bigram_mle_prob(counts, {prev!r}, {word!r})")
    try:
        got = call(fn, dict(BIGRAMS), "zebra", "cat")
    except ZeroDivisionError:
        raise ExerciseError("bigram_mle_prob(counts, 'zebra', 'cat') divided by zero: the context 'zebra' "
                            "was never seen; return 0.0 in that case (no evidence for any word)") from None
    if got != 0:
        raise ExerciseError(f"bigram_mle_prob(counts, 'zebra', 'cat') should be 0.0 (the context was never "
                            f"seen, so there is no evidence for any word), got {got!r}")
    passed("P(cat | the) = c(the cat) / c(the ·) = 2/3")


STUPID_TEXT = "the cat sat on the mat . the cat ran . a dog sat on the cat .".split()


def _ngram_counts(tokens: list[str], n: int) -> dict[tuple, int]:
    counts: dict[tuple, int] = {}
    for order in range(1, n + 1):
        for i in range(len(tokens) - order + 1):
            gram = tuple(tokens[i:i + order])
            counts[gram] = counts.get(gram, 0) + 1
    return counts


def _stupid_backoff(counts: dict, context: tuple, word: str, alpha: float) -> float:
    if not context:
        return counts.get((word,), 0) / sum(c for g, c in counts.items() if len(g) == 1)
    if counts.get(context + (word,), 0) > 0:
        return counts[context + (word,)] / counts[context]
    return alpha * _stupid_backoff(counts, context[1:], word, alpha)


def check_stupid_backoff(fn) -> None:
    """fn(counts, context, word, alpha) -> the stupid-backoff score S(word | context)."""
    counts = _ngram_counts(STUPID_TEXT, 3)
    n_tokens = len(STUPID_TEXT)
    cases = [(("the", "cat"), "sat", 0.4), (("the", "cat"), "ran", 0.4), (("on", "the"), "cat", 0.4),
             (("a", "dog"), "ran", 0.4), (("the", "dog"), "on", 0.5), (("a", "dog"), "mat", 0.4),
             (("sat", "on"), "zebra", 0.4), ((), "cat", 0.4)]
    for context, word, alpha in cases:
        want = _stupid_backoff(counts, context, word, alpha)
        what = f"stupid_backoff(counts, {context}, {word!r}, alpha={alpha})"
        got = call(fn, dict(counts), tuple(context), word, alpha)
        if context == ("a", "dog") and word == "ran":   # trigram and bigram unseen: two back-offs
            if _close(got, counts[("ran",)] / n_tokens) and not _close(got, want):
                raise ExerciseError(f"{what} should be {want:.4g}, got {got:.4g}: each back-off step "
                                    "multiplies by alpha; here two steps (trigram, then bigram unseen), "
                                    "so alpha**2 times the unigram score")
            if _close(got, alpha * counts[("ran",)] / n_tokens) and not _close(got, want):
                raise ExerciseError(f"{what} should be {want:.4g}, got {got:.4g}: you applied alpha once, "
                                    "but backed off twice (the trigram AND the bigram are unseen)")
        if not _close(got, want) and context and counts.get(context + (word,), 0) > 0:
            raise ExerciseError(f"{what} should be {want:.4g}, got {got!r}: the full n-gram was seen, so "
                                "the score is its relative frequency c(context, word) / c(context), "
                                "no back-off and no alpha")
        expect_close(got, want, what)
    total = sum(_stupid_backoff(counts, ("the", "dog"), w, 0.4) for w in set(STUPID_TEXT))
    passed(f"the scores after 'the dog' sum to {total:.2f} over the vocabulary, not 1: "
           "stupid backoff ranks continuations cheaply but is not a distribution")


def check_perplexity_of_probs(fn) -> None:
    """fn(probs) -> exp(-mean(log p)) for the probabilities a model gave each token; inf if one is 0."""
    cases = [([0.25] * 4, 4.0), ([0.5, 0.125], 4.0), ([1.0, 1.0], 1.0), ([0.1, 0.2, 0.4], 0.008 ** (-1 / 3))]
    for probs, want in cases:
        got = call(fn, list(probs))
        logs = [math.log(p) for p in probs]
        if _close(got, math.exp(-sum(logs))) and not _close(got, want):
            raise ExerciseError(f"perplexity_of_probs({probs}) should be {want:.4g}, got {got:.4g}: take the "
                                "MEAN negative log-probability per token, not the sum")
        if _close(got, -sum(logs) / len(logs)) and not _close(got, want):
            raise ExerciseError(f"perplexity_of_probs({probs}) should be {want:.4g}, got {got:.4g}: that is the "
                                "cross-entropy in nats; perplexity is exp of it")
        expect_close(got, want, f"perplexity_of_probs({probs})")
    try:
        got = call(fn, [0.5, 0.0])
    except ValueError as err:  # math.log(0) raises "math domain error"
        raise ExerciseError(f"perplexity_of_probs([0.5, 0.0]) raised ValueError ({err}): a probability of 0 "
                            "means the model finds the text impossible, so return math.inf") from None
    if got != math.inf:
        raise ExerciseError(f"perplexity_of_probs([0.5, 0.0]) should be inf (one impossible token), got {got!r}")
    passed("a model that gives every token probability 1/4 has perplexity 4")


def check_continuation_count(fn) -> None:
    """fn(bigram_counts, word) -> number of distinct words seen right before ``word``."""
    counts = {("san", "francisco"): 5, ("the", "cat"): 1, ("a", "cat"): 1, ("my", "cat"): 2, ("cat", "sat"): 1}
    for zero in [("your", "cat"), ("her", "cat"), ("the", "zebra")]:
        counts[zero] = 0                  # a count of zero is no evidence: it must not count
    for word, want in [("francisco", 1), ("cat", 3), ("sat", 1), ("zebra", 0)]:
        got = call(fn, dict(counts), word)
        if word == "francisco" and got == 5:
            raise ExerciseError("continuation_count(counts, 'francisco') should be 1, got 5: count DISTINCT "
                                "left neighbours (only 'san'), not occurrences")
        if word == "cat" and got == 4:
            raise ExerciseError("continuation_count(counts, 'cat') should be 3 ('the', 'a', 'my'), got 4: "
                                "count distinct left neighbours, not the total count")
        if got != want and got == len({a for (a, b) in counts if b == word}):
            raise ExerciseError(f"continuation_count(counts, {word!r}) should be {want}, got {got!r}: a "
                                "bigram stored with count 0 was never seen; count only counts > 0")
        if got != want:
            raise ExerciseError(f"continuation_count(counts, {word!r}) should be {want}, got {got!r}")
    passed("'francisco' is frequent (5) but follows only 1 word; 'cat' follows 3")


def _close(got, want: float) -> bool:
    try:
        return math.isclose(float(got), want, rel_tol=1e-6, abs_tol=1e-12)
    except (TypeError, ValueError):
        return False

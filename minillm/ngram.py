"""Counting n-gram language models: MLE, add-k, interpolation, Kneser-Ney.

An n-gram model predicts each token from the n-1 tokens before it (the Markov
assumption) with probabilities estimated by counting:

    P(w | h) = c(h, w) / c(h)                     (maximum likelihood, "mle")

Every sentence is padded with n-1 start symbols ``<s>`` (so the first word has
a context) and one end symbol ``</s>`` (so the model also decides where a
sentence stops). Training words seen fewer than ``min_count`` times become
``<unk>``, which gives the model a probability for words it has never seen.
The vocabulary is ``<unk>``, ``</s>`` and the kept words; ``<s>`` is never
predicted. Tokens may be any hashable values (the book uses word strings).

Smoothed models give every vocabulary word a nonzero probability in every
context, and their probabilities over the vocabulary always sum to 1. The MLE
model sums to 1 after every context seen in training; after an unseen context
the ratio 0/0 is undefined and this module returns probability 0 for every
word (so held-out perplexity is infinite, which is the honest answer).
"""
from __future__ import annotations

import math
from collections import Counter, defaultdict
from typing import Hashable, Iterable, Iterator, Sequence

BOS, EOS, UNK = "<s>", "</s>", "<unk>"
SMOOTHINGS = ("mle", "add_k", "interpolated", "kneser_ney")


def pad(sentence: Sequence[Hashable], n: int) -> list:
    """``[<s>] * (n-1) + sentence + [</s>]``."""
    return [BOS] * (n - 1) + list(sentence) + [EOS]


def ngrams(sentence: Sequence[Hashable], n: int) -> list[tuple]:
    """The n-grams of a padded sentence, one per predicted token (len(sentence) + 1)."""
    padded = pad(sentence, n)
    return [tuple(padded[i - n + 1: i + 1]) for i in range(n - 1, len(padded))]


def as_sentences(data: Iterable) -> list[list]:
    """Accept a list of sentences (each a list of tokens) or one flat list of
    tokens (one sentence); return a list of sentences."""
    if isinstance(data, str):
        raise TypeError(f"expected a list of tokens, got the string {data[:30]!r}: "
                        "split it into tokens first, e.g. with minillm.corpora.words")
    data = list(data)
    is_list = [isinstance(s, list) for s in data]
    if data and all(is_list):
        return data
    if any(is_list):
        raise TypeError("mixed input: pass either a list of sentences (lists of tokens) or one flat list of tokens")
    return [data]


class NGramModel:
    """An n-gram language model estimated by counting.

    smoothing: ``"mle"``; ``"add_k"`` (add k to every count; Laplace at k=1);
    ``"interpolated"`` (Jelinek-Mercer: lambdas[0] * uniform + sum over orders
    j=1..n of lambdas[j] * MLE of order j; tune them with
    :func:`fit_interpolation_weights`); ``"kneser_ney"`` (interpolated
    Kneser-Ney with absolute discount D per order, estimated as n1/(n1+2 n2)
    unless ``discount`` is given; continuation counts for lower orders; a
    uniform base distribution).
    """

    def __init__(self, n: int, smoothing: str = "mle", k: float = 1.0, discount: float | None = None,
                 lambdas: Sequence[float] | None = None, min_count: int = 2):
        if not isinstance(n, int) or isinstance(n, bool) or n < 1:
            raise ValueError(f"n must be an integer >= 1 (1 = unigram, 2 = bigram, ...), got {n!r}")
        if smoothing not in SMOOTHINGS:
            raise ValueError(f"unknown smoothing {smoothing!r}: choose one of {', '.join(SMOOTHINGS)}")
        if discount is not None and not (isinstance(discount, (int, float)) and 0 < discount < 1):
            raise ValueError(f"discount must be in the open interval (0, 1), got {discount!r}")
        if not isinstance(min_count, int) or min_count < 1:
            raise ValueError(f"min_count must be an integer >= 1, got {min_count!r}")
        self.n, self.smoothing, self.k, self.discount, self.min_count = n, smoothing, k, discount, min_count
        self.lambdas = lambdas if lambdas is not None else (1 / (n + 1),) * (n + 1)
        self.vocab: tuple = ()

    @property
    def k(self) -> float:
        """The pseudo-count of add-k smoothing (it may be changed after fitting)."""
        return self._k

    @k.setter
    def k(self, value: float) -> None:
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0:
            raise ValueError(f"k must be a number > 0 (k=1 is Laplace smoothing), got {value!r}")
        self._k = float(value)

    @property
    def lambdas(self) -> tuple[float, ...]:
        """Interpolation weights: (uniform, order 1, ..., order n); they sum to 1."""
        return self._lambdas

    @lambdas.setter
    def lambdas(self, values: Sequence[float]) -> None:
        values = tuple(float(v) for v in values)
        if len(values) != self.n + 1:
            raise ValueError(f"lambdas needs n+1 = {self.n + 1} weights (uniform, then orders 1..{self.n}), "
                             f"got {len(values)}")
        if min(values) < 0 or not math.isclose(sum(values), 1.0, abs_tol=1e-6):
            raise ValueError(f"lambdas must be >= 0 and sum to 1, got {values} (sum {sum(values):.6g})")
        self._lambdas = values

    def __repr__(self) -> str:
        return f"NGramModel(n={self.n}, smoothing={self.smoothing!r}, vocab={len(self.vocab)} words)"

    # ------------------------------------------------------------- training
    def fit(self, data: Iterable) -> "NGramModel":
        """Count n-grams of orders 1..n in ``data`` (sentences, or one token list)."""
        sentences = as_sentences(data)
        word_counts = Counter(w for s in sentences for w in s)
        if not word_counts:
            raise ValueError("cannot fit on an empty corpus: it has no tokens")
        if BOS in word_counts or EOS in word_counts:
            raise ValueError(f"the corpus contains the reserved symbol {BOS!r} or {EOS!r}: the model adds them itself")
        kept = [w for w, c in word_counts.items() if c >= self.min_count and w != UNK]  # first-seen order
        self.vocab = (UNK, EOS, *kept)
        self._known = set(self.vocab)
        n = self.n
        # counts[j][context][w] = c(context, w) for order j; a context has j-1 tokens.
        self._counts = [None] + [defaultdict(Counter) for _ in range(n)]
        for sentence in sentences:
            padded = pad(self.map_unk(sentence), n)
            for i in range(n - 1, len(padded)):
                for j in range(1, n + 1):
                    self._counts[j][tuple(padded[i - j + 1:i])][padded[i]] += 1
        # Kneser-Ney's lower orders count *distinct left neighbours* (continuation
        # counts): cont[j][h][w] = |{x : c(x, h, w) > 0}|, read off order j+1.
        self._cont = [None] * (n + 1)
        for j in range(1, n):
            cont = defaultdict(Counter)
            for context, nexts in self._counts[j + 1].items():
                for w in nexts:
                    cont[context[1:]][w] += 1
            self._cont[j] = cont
        self._cont[n] = self._counts[n]  # the highest order uses raw counts
        self._totals = [None] + [{h: sum(c.values()) for h, c in self._counts[j].items()} for j in range(1, n + 1)]
        self._cont_totals = [None] + [{h: sum(c.values()) for h, c in self._cont[j].items()} for j in range(1, n + 1)]
        self.discounts = [None] + [self.discount or _estimate_discount(self._cont[j]) for j in range(1, n + 1)]
        return self

    def map_unk(self, tokens: Iterable[Hashable]) -> list:
        """Replace every token outside the vocabulary (except ``<s>``) by ``<unk>``."""
        self._check_fitted()
        return [t if t in self._known or t == BOS else UNK for t in tokens]

    def count(self, ngram: Sequence[Hashable]) -> int:
        """How often the n-gram (a tuple of 1..n tokens, already unk-mapped) was seen."""
        self._check_fitted()
        ngram = tuple(ngram)
        if not 1 <= len(ngram) <= self.n:
            raise ValueError(f"an n-gram of this model has 1..{self.n} tokens, got {len(ngram)}: {ngram!r}")
        nexts = self._counts[len(ngram)].get(ngram[:-1])
        return nexts[ngram[-1]] if nexts else 0

    # ------------------------------------------------------------ prediction
    def prob(self, token: Hashable, context: Sequence[Hashable] = ()) -> float:
        """P(token | context). Only the last n-1 tokens of the context matter; a
        shorter context means "near the start of a sentence" (padded with <s>).
        Unknown tokens are scored as <unk>; ``<s>`` has probability 0."""
        self._check_fitted()
        if token == BOS:
            return 0.0
        return self._prob(self.map_unk([token])[0], self._context(context))

    def next_token_probs(self, context: Sequence[Hashable] = ()) -> dict:
        """{word: P(word | context)} for every vocabulary word, in vocab order."""
        self._check_fitted()
        h = self._context(context)
        return {w: self._prob(w, h) for w in self.vocab}

    def log_prob_sequence(self, data: Iterable) -> float:
        """Natural-log probability of a sentence (or a list of sentences), </s>
        included: the sum of log P(w_i | context) over all predicted positions.
        ``-inf`` when some position has probability 0."""
        total = 0.0
        for w, h in self._positions(as_sentences(data)):
            p = self._prob(w, h)
            if p <= 0.0:
                return -math.inf
            total += math.log(p)
        return total

    def perplexity(self, data: Iterable) -> float:
        """exp(mean negative log-likelihood per predicted token, </s> included);
        ``inf`` when some token has probability 0 (as MLE does on new text)."""
        sentences = as_sentences(data)
        n_predicted = sum(len(s) + 1 for s in sentences)
        return math.exp(-self.log_prob_sequence(sentences) / n_predicted)

    def sample(self, rng, max_len: int = 30, prefix: Sequence[Hashable] = ()) -> list:
        """Generate a sentence: prefix + sampled tokens, stopping at </s> (not
        included) or after max_len new tokens. ``rng`` is anything with a
        ``.random()`` method (``random.Random(0)``, ``numpy.random.default_rng(0)``)."""
        tokens = list(prefix)
        for _ in range(max_len):
            probs = self.next_token_probs(tokens)
            total = sum(probs.values())
            if total == 0:
                raise ValueError(f"the context {self._context(tokens)!r} never occurred in training, so the MLE "
                                 "model has no distribution to sample from: use a smoothed model or another prefix")
            r, acc = rng.random() * total, 0.0
            for w, p in probs.items():
                acc += p
                if r < acc:
                    break
            if w == EOS:
                break
            tokens.append(w)
        return tokens

    # ------------------------------------------------------------- internals
    def _check_fitted(self) -> None:
        if not self.vocab:
            raise RuntimeError("this NGramModel is not fitted yet: call .fit(sentences) first")

    def _context(self, context: Sequence[Hashable]) -> tuple:
        """The last n-1 tokens, unk-mapped, left-padded with <s>."""
        if self.n == 1:
            return ()
        h = self.map_unk(list(context)[-(self.n - 1):])
        return tuple([BOS] * (self.n - 1 - len(h)) + h)

    def _positions(self, sentences: list[list]) -> Iterator[tuple]:
        """(word, context) for every predicted position of every sentence."""
        self._check_fitted()
        for sentence in sentences:
            padded = pad(self.map_unk(sentence), self.n)
            for i in range(self.n - 1, len(padded)):
                yield padded[i], tuple(padded[i - self.n + 1:i])

    def _mle(self, j: int, h: tuple, w) -> float | None:
        """MLE of order j with context h[-(j-1):]; None when that context is unseen."""
        h = h[len(h) - (j - 1):]
        nexts = self._counts[j].get(h)
        return nexts[w] / self._totals[j][h] if nexts else None

    def _prob(self, w, h: tuple) -> float:
        """P(w | h) with h exactly n-1 tokens and w in the vocabulary."""
        if self.smoothing == "mle":
            return self._mle(self.n, h, w) or 0.0
        if self.smoothing == "add_k":
            nexts = self._counts[self.n].get(h)
            count, total = (nexts[w], self._totals[self.n][h]) if nexts else (0, 0)
            return (count + self.k) / (total + self.k * len(self.vocab))
        if self.smoothing == "interpolated":
            return sum(lam * p for lam, p in zip(self.lambdas, self._components(w, h)))
        return self._kneser_ney(w, h)

    def _components(self, w, h: tuple) -> list[float]:
        """[1/V, P_1(w), P_2(w|h), ..., P_n(w|h)]: component j is the MLE with the
        longest *seen* context of at most j-1 tokens, so each is a distribution."""
        probs = [1 / len(self.vocab)]
        for j in range(1, self.n + 1):
            p = self._mle(j, h, w)
            probs.append(probs[-1] if p is None else p)
        return probs

    def _kneser_ney(self, w, h: tuple) -> float:
        """Interpolated KN, built bottom-up from the uniform distribution:
        P_j(w|h) = (max(c_j(h,w) - D_j, 0) + D_j * N1+(h .) * P_{j-1}(w|h')) / c_j(h)."""
        p = 1 / len(self.vocab)
        for j in range(1, self.n + 1):
            context = h[len(h) - (j - 1):]
            nexts = self._cont[j].get(context)
            if not nexts:  # unseen context: all mass goes to the lower order
                continue
            d = self.discounts[j]
            p = (max(nexts[w] - d, 0.0) + d * len(nexts) * p) / self._cont_totals[j][context]
        return p


def _estimate_discount(table: dict) -> float:
    """D = n1 / (n1 + 2 n2) from the counts-of-counts (Ney, Essen & Kneser 1994);
    0.5 when the corpus has no n-grams seen once or none seen twice."""
    counts = Counter(c for nexts in table.values() for c in nexts.values())
    n1, n2 = counts[1], counts[2]
    return n1 / (n1 + 2 * n2) if n1 and n2 else 0.5


def fit_interpolation_weights(model: NGramModel, dev: Iterable, max_iter: int = 200,
                              tol: float = 1e-7) -> tuple[float, ...]:
    """Tune an interpolated model's lambdas on held-out ``dev`` data by EM
    (maximizing dev likelihood), store them in the model and return them.

    E-step: for every dev position, the posterior share of each component,
    lambda_j P_j / sum_i lambda_i P_i. M-step: lambda_j = mean share.
    """
    import numpy as np

    if model.smoothing != "interpolated":
        raise ValueError(f"interpolation weights apply to smoothing='interpolated', not {model.smoothing!r}")
    components = np.array([model._components(w, h) for w, h in model._positions(as_sentences(dev))])  # (T, n+1)
    if len(components) == 0:
        raise ValueError("cannot tune interpolation weights on empty dev data")
    lambdas = np.full(model.n + 1, 1 / (model.n + 1))
    for _ in range(max_iter):
        weighted = components * lambdas
        new = (weighted / weighted.sum(axis=1, keepdims=True)).mean(axis=0)
        done = np.abs(new - lambdas).max() < tol
        lambdas = new
        if done:
            break
    model.lambdas = tuple(float(x) for x in lambdas / lambdas.sum())
    return model.lambdas

"""Temperature: reshaping a distribution, one step or a whole sequence at a time.

Temperature ``T`` turns probabilities ``p`` into

    q_i = p_i^(1/T) / sum_j p_j^(1/T)        (= softmax(logits / T))

``T = 1`` changes nothing, ``T < 1`` sharpens, ``T > 1`` flattens. The limits
are part of the definition here: ``T = 0`` is greedy (a one-hot on the argmax,
ties split evenly) and ``T = inf`` is uniform over the support (the tokens
with non-zero probability, or finite logits).

The second half is the book's sequence-level experiment. A language model that
samples with temperature applies it *per step*, to each next-token
distribution. That is not the same as sampling whole sequences from the
annealed joint ``p(x)^(1/T) / Z``. :class:`BigramChain` is a tiny bigram model
whose sequences can all be enumerated, so both distributions can be computed
exactly and compared with :func:`total_variation`.
"""
from __future__ import annotations

import itertools
import math
from dataclasses import dataclass

import numpy as np
import torch

#: How far a float64 row of probabilities may sum from 1 before we call it a mistake.
SUM_TOLERANCE = 1e-6


def _check_temperature(T) -> float:
    if isinstance(T, bool) or not isinstance(T, (int, float, np.floating, np.integer)):
        raise TypeError(f"temperature must be a number, got {type(T).__name__}: {T!r}")
    T = float(T)
    if math.isnan(T):
        raise ValueError("temperature is NaN: pass a number T >= 0 (0 = greedy, inf = uniform)")
    if T < 0:
        raise ValueError(f"temperature must be >= 0 (0 = greedy, inf = uniform), got T={T}")
    return T


def _as_tensor(x) -> tuple[torch.Tensor, bool]:
    """``x`` as a float tensor, and whether the caller gave a tensor (else NumPy goes back)."""
    if isinstance(x, torch.Tensor):
        return (x if x.is_floating_point() else x.double()), True
    return torch.as_tensor(np.asarray(x, dtype=np.float64)), False


def _tempered_softmax(scores: torch.Tensor, T: float) -> torch.Tensor:
    """softmax(scores / T) along the last dim, with the limits T = 0 and T = inf.

    ``scores`` are logits or log-probabilities; ``-inf`` marks a token outside
    the support, which keeps probability 0 at every temperature.
    """
    if scores.dim() == 0 or scores.shape[-1] == 0:
        raise ValueError(f"need at least one entry along the last dim, got shape {tuple(scores.shape)}")
    if torch.isnan(scores).any() or (scores == math.inf).any():
        raise ValueError("logits contain NaN or +inf")
    top = scores.max(dim=-1, keepdim=True).values
    if (top == -math.inf).any():
        raise ValueError("a row has no finite logit (every token has probability 0)")
    if T == 0:  # greedy: all mass on the maximum, split evenly between ties
        mask = (scores == top).to(scores.dtype)
        return mask / mask.sum(dim=-1, keepdim=True)
    if T == math.inf:  # uniform over the support
        mask = (scores > -math.inf).to(scores.dtype)
        return mask / mask.sum(dim=-1, keepdim=True)
    # Subtracting the maximum first keeps (scores - top) / T <= 0: exp never
    # overflows, even for a tiny T that would push scores / T to +inf.
    return torch.softmax((scores - top) / T, dim=-1)


def softmax_with_temperature(logits, T: float):
    """softmax(logits / T) along the last dim, numerically stable.

    logits: (..., V) tensor, NumPy array or nested sequence; ``-inf`` allowed
    (that token gets probability 0). T >= 0: 0 is greedy (one-hot on the
    argmax, ties split evenly), ``math.inf`` is uniform over the finite logits.
    Returns the same shape: a tensor for a tensor input, else a NumPy array.
    """
    T = _check_temperature(T)
    scores, is_tensor = _as_tensor(logits)
    out = _tempered_softmax(scores, T)
    return out if is_tensor else out.numpy()


def temper_probs(probs, T: float):
    """Reshape probabilities: p_i^(1/T) / sum_j p_j^(1/T), along the last dim.

    probs: (..., V), each row non-negative and summing to 1 (tensor, NumPy
    array or nested sequence). T >= 0 as in :func:`softmax_with_temperature`;
    zeros stay zero at every T. Returns the same shape: a tensor for a tensor
    input, else a NumPy array.
    """
    T = _check_temperature(T)
    p, is_tensor = _as_tensor(probs)
    if torch.isnan(p).any():
        raise ValueError("probabilities contain NaN")
    if (p < 0).any():
        raise ValueError(f"probabilities must be >= 0, got a minimum of {p.min().item():.6g}")
    if p.dim() == 0:
        raise ValueError(f"need a vector of probabilities (..., V), got the scalar {p.item()}")
    sums = p.sum(dim=-1).flatten()
    error = (sums - 1).abs()
    # float32 rows (e.g. a softmax over a large vocabulary) miss 1 by more than float64 rows do.
    tolerance = SUM_TOLERANCE if p.dtype == torch.float64 else 1e-3
    if error.numel() and error.max() > tolerance:
        raise ValueError(f"probabilities must sum to 1 along the last dim; a row sums to "
                         f"{sums[error.argmax()].item():.6g} (use softmax_with_temperature for logits)")
    # p^(1/T) / Z = softmax(log p / T): the log form never underflows to 0/0.
    out = _tempered_softmax(torch.log(p), T)
    return out if is_tensor else out.numpy()


def total_variation(p, q) -> float:
    """Total variation distance 0.5 * sum_i |p_i - q_i| between two distributions
    on the same outcomes (shape (N,) each): the largest difference in the
    probability the two give to any one event, between 0 and 1."""
    p, q = np.asarray(p, dtype=np.float64), np.asarray(q, dtype=np.float64)
    if p.shape != q.shape:
        raise ValueError(f"distributions must have the same shape, got {p.shape} and {q.shape}")
    return float(0.5 * np.abs(p - q).sum())


@dataclass(frozen=True)
class BigramChain:
    """A bigram language model with an end token, truncated at ``max_len`` tokens.

    start: (V,) probabilities of the first token.
    transitions: (V, V), ``transitions[a, b] = p(next = b | current = a)``; the
        row of ``eos`` is never used.
    eos: index of the end-of-sequence token.
    max_len: at most this many tokens before ``eos``. After ``max_len`` tokens
        the end token is *forced* (probability 1), so the finitely many
        sequences carry all the mass: their probabilities sum to exactly 1.

    A sequence is a tuple of token ids ending with ``eos``, e.g. ``(0, 2, eos)``.
    """

    start: np.ndarray
    transitions: np.ndarray
    eos: int
    max_len: int

    def __post_init__(self):
        start = np.asarray(self.start, dtype=np.float64)
        P = np.asarray(self.transitions, dtype=np.float64)
        V = start.shape[0] if start.ndim == 1 else -1
        if start.ndim != 1 or P.shape != (V, V):
            raise ValueError(f"need start of shape (V,) and transitions of shape (V, V), "
                             f"got {start.shape} and {P.shape}")
        if not 0 <= self.eos < V:
            raise ValueError(f"eos must be a token id in 0..{V - 1}, got {self.eos}")
        if isinstance(self.max_len, bool) or not isinstance(self.max_len, (int, np.integer)) or self.max_len < 0:
            raise ValueError(f"max_len must be >= 0, got {self.max_len}")
        rows = np.delete(np.vstack([start, P]), 1 + self.eos, axis=0)  # eos row unused
        if (rows < 0).any() or np.abs(rows.sum(axis=1) - 1).max() > SUM_TOLERANCE:
            raise ValueError("start and every non-eos row of transitions must be probabilities summing to 1")
        object.__setattr__(self, "start", start)
        object.__setattr__(self, "transitions", P)

    @property
    def vocab_size(self) -> int:
        return self.start.shape[0]

    def tempered_tables(self, T: float) -> tuple[np.ndarray, np.ndarray]:
        """(start_T (V,), transitions_T (V, V)): every next-token distribution
        with temperature T applied. The unused eos row becomes uniform."""
        rows = self.transitions.copy()
        rows[self.eos] = 1.0 / self.vocab_size
        return temper_probs(self.start, T), temper_probs(rows, T)

    def sequences(self) -> list[tuple]:
        """Every sequence of probability > 0 under the model, each ending with eos;
        shortest first, then in lexicographic order of token ids."""
        words = [v for v in range(self.vocab_size) if v != self.eos]
        candidates = (body + (self.eos,) for n in range(self.max_len + 1)
                      for body in itertools.product(words, repeat=n))
        tables = self.tempered_tables(1.0)
        return [seq for seq in candidates if self.sequence_prob(seq, tables=tables) > 0]

    def sequence_prob(self, seq: tuple, T: float = 1.0, tables=None) -> float:
        """Probability of ``seq`` when every step is sampled with temperature T:
        prod_t q_T(x_t | x_<t). At T = 1 this is the model's p(x). ``tables``:
        the result of ``tempered_tables(T)``, to reuse across many sequences."""
        if not seq or seq[-1] != self.eos or self.eos in seq[:-1] or len(seq) > self.max_len + 1:
            raise ValueError(f"a sequence has at most max_len={self.max_len} tokens, then "
                             f"eos={self.eos}; got {seq}")
        start, P = tables if tables is not None else self.tempered_tables(T)
        prob, prev = 1.0, None
        for t, token in enumerate(seq):
            if t == self.max_len:  # truncation: eos is forced, probability 1
                break
            prob *= (start if prev is None else P[prev])[token]
            prev = token
        return float(prob)

    def per_step_distribution(self, T: float) -> tuple[list[tuple], np.ndarray]:
        """(sequences, probs): what per-step temperature sampling produces. probs: (N,)."""
        seqs, tables = self.sequences(), self.tempered_tables(T)
        return seqs, np.array([self.sequence_prob(s, tables=tables) for s in seqs])

    def annealed_distribution(self, T: float) -> tuple[list[tuple], np.ndarray]:
        """(sequences, probs): the annealed joint p(x)^(1/T) / Z over the same
        sequences, i.e. temperature applied once, to whole sequences. probs: (N,)."""
        seqs, p = self.per_step_distribution(1.0)
        return seqs, temper_probs(p / p.sum(), T)  # p.sum() is 1 up to rounding

    def sample(self, n: int, T: float, rng: np.random.Generator) -> list[tuple]:
        """Draw ``n`` sequences with per-step temperature T, all n advancing one
        token at a time. rng: a NumPy Generator. Returns n tuples ending with eos."""
        start, P = self.tempered_tables(T)
        tokens = np.full((n, self.max_len + 1), self.eos)  # eos at max_len is forced
        alive = np.ones(n, dtype=bool)
        for t in range(self.max_len):
            probs = np.broadcast_to(start, (n, self.vocab_size)) if t == 0 else P[tokens[:, t - 1]]
            # Inverse CDF: the token whose cumulative interval holds u ~ U[0, 1).
            cdf = np.cumsum(probs, axis=1)
            cdf /= cdf[:, -1:]  # the last entry becomes exactly 1, so u < 1 always lands
            drawn = (rng.random(n)[:, None] >= cdf).sum(axis=1)
            tokens[:, t] = np.where(alive, drawn, self.eos)
            alive &= tokens[:, t] != self.eos
        return [tuple(row[: row.index(self.eos) + 1]) for row in tokens.tolist()]

"""Information measures on discrete distributions: entropy, cross-entropy, KL
divergence and perplexity.

A *distribution* here is a 1-D sequence of probabilities over the same ordered
outcomes: a Python list or tuple, a NumPy array, or a torch tensor (moved to
the CPU and converted to float64). Probabilities must be non-negative and sum
to 1 within ``SUM_TOLERANCE``; nothing is renormalised behind your back.
Every function returns a plain Python ``float``.

Conventions (the standard ones, see Cover & Thomas, *Elements of Information
Theory*, ch. 2):

* ``0 * log 0 = 0``: outcomes with p(x) = 0 contribute nothing.
* If q(x) = 0 for some x with p(x) > 0, then H(p, q) and KL(p || q) are
  ``inf``: a code built for q has no codeword for x, a model q says x is
  impossible, and it happens anyway.
* ``base=2`` measures in bits, ``base=math.e`` in nats.

Perplexity works on a *sample*: the per-token log-probabilities (natural log)
that a model gave to the tokens of a text. Three equivalent forms:

    PPL = (prod_i 1/q(x_i))^(1/N)        geometric mean of inverse probabilities
        = exp(-(1/N) sum_i ln q(x_i))    exp of the mean negative log-likelihood
        = 2^(H in bits)                   2 to the per-token cross-entropy in bits
"""
from __future__ import annotations

import math
from typing import Any

import numpy as np

#: How far from 1 the sum of a distribution may be (float32 softmax outputs
#: over tens of thousands of outcomes are off by ~1e-6).
SUM_TOLERANCE = 1e-5


# ----------------------------------------------------------------- validation

def _to_numpy(x: Any, name: str) -> np.ndarray:
    """A list, array or torch tensor as a 1-D float64 NumPy array."""
    if hasattr(x, "detach"):  # a torch tensor; torch is not imported unless needed
        x = x.detach().cpu().double().numpy()
    try:
        array = np.asarray(x, dtype=np.float64)
    except (TypeError, ValueError):
        raise TypeError(f"{name} must be a sequence of numbers, got {type(x).__name__}: {x!r:.80}") from None
    if array.ndim != 1:
        raise ValueError(f"{name} must be 1-D (one probability per outcome), got shape {array.shape}")
    if array.size == 0:
        raise ValueError(f"{name} is empty: a distribution needs at least one outcome")
    if np.isnan(array).any():
        raise ValueError(f"{name} contains NaN at index {int(np.flatnonzero(np.isnan(array))[0])}")
    return array


def as_distribution(p: Any, name: str = "p", tol: float = SUM_TOLERANCE) -> np.ndarray:
    """Validate a probability distribution and return it as a float64 array, shape (V,).

    Raises ValueError if an entry is negative or not finite, or if the entries
    do not sum to 1 within ``tol`` (the message gives the sum).
    """
    array = _to_numpy(p, name)
    if not np.isfinite(array).all():
        raise ValueError(f"{name} contains an infinite value at index {int(np.flatnonzero(~np.isfinite(array))[0])}")
    if (array < 0).any():
        i = int(np.flatnonzero(array < 0)[0])
        raise ValueError(f"{name} has a negative probability {float(array[i])!r} at index {i}")
    total = float(array.sum())
    if abs(total - 1.0) > tol:
        raise ValueError(f"{name} must sum to 1, but its {array.size} probabilities sum to {total:.8g}")
    return array


def _log_of_base(base: float) -> float:
    """ln(base), after checking that logarithms in this base make sense."""
    if isinstance(base, bool) or not isinstance(base, (int, float)):
        raise TypeError(f"base must be a number (2 for bits, math.e for nats), got {base!r}")
    if not base > 0 or base == 1 or math.isinf(base):
        raise ValueError(f"base must be positive, finite and not 1 (2 for bits, math.e for nats), got {base!r}")
    return math.log(base)


def _pair(p: Any, q: Any) -> tuple[np.ndarray, np.ndarray]:
    p, q = as_distribution(p, "p"), as_distribution(q, "q")
    if p.shape != q.shape:
        raise ValueError(f"p and q must have the same number of outcomes, got {p.size} and {q.size}")
    return p, q


# ----------------------------------------------------------------- distributions

def entropy(p: Any, base: float = 2) -> float:
    """H(p) = -sum_x p(x) log p(x): the expected surprise of an outcome of p.

    ``p``: probabilities, shape (V,). In bits for ``base=2``. 0 <= H <= log|V|.
    """
    p = as_distribution(p, "p")
    log_base = _log_of_base(base)
    support = p > 0  # 0 log 0 = 0
    return float(-(p[support] * np.log(p[support])).sum() / log_base) + 0.0  # + 0.0 turns -0.0 into 0.0


def cross_entropy(p: Any, q: Any, base: float = 2) -> float:
    """H(p, q) = -sum_x p(x) log q(x): the mean code length (surprise) when
    outcomes come from p but we use a code (model) built for q.

    ``p``, ``q``: probabilities over the same outcomes, shape (V,).
    Returns ``inf`` if q(x) = 0 for some x with p(x) > 0.
    """
    p, q = _pair(p, q)
    log_base = _log_of_base(base)
    support = p > 0
    if (q[support] == 0).any():
        return math.inf
    return float(-(p[support] * np.log(q[support])).sum() / log_base) + 0.0


def kl_divergence(p: Any, q: Any, base: float = 2) -> float:
    """KL(p || q) = sum_x p(x) log(p(x) / q(x)) = H(p, q) - H(p) >= 0.

    The extra cost of using q when the truth is p. Not symmetric.
    ``p``, ``q``: shape (V,). Returns ``inf`` if q(x) = 0 where p(x) > 0.
    """
    p, q = _pair(p, q)
    log_base = _log_of_base(base)
    support = p > 0
    if (q[support] == 0).any():
        return math.inf
    # Summed term by term (not as H(p,q) - H(p)) so that tiny values stay accurate.
    kl_nats = float((p[support] * (np.log(p[support]) - np.log(q[support]))).sum())
    return max(kl_nats, 0.0) / log_base  # Gibbs' inequality: clamp rounding noise like -1e-17


# ----------------------------------------------------------------- perplexity

def _log_probs(log_probs: Any) -> np.ndarray:
    """Per-token natural-log probabilities as a float64 array, shape (N,)."""
    lp = _to_numpy(log_probs, "log_probs")
    if (lp > 0).any():
        i = int(np.flatnonzero(lp > 0)[0])
        raise ValueError(f"log_probs must be <= 0 (log of a probability), got {float(lp[i])!r} at index {i}: "
                         "did you pass probabilities or negative log-likelihoods instead?")
    return lp


def mean_nll(log_probs: Any, base: float = math.e) -> float:
    """Mean negative log-likelihood -(1/N) sum_i log q(x_i) of a sample.

    ``log_probs``: natural-log probabilities of the N tokens, shape (N,).
    In nats by default; with ``base=2`` this is the per-token cross-entropy in bits.
    Returns ``inf`` if some token had probability 0 (log-prob -inf).
    """
    lp = _log_probs(log_probs)
    return float(-lp.mean() / _log_of_base(base)) + 0.0


def perplexity_from_log_probs(log_probs: Any) -> float:
    """PPL = exp(mean NLL) = exp(-(1/N) sum_i ln q(x_i)).

    ``log_probs``: natural-log probabilities a model gave the N tokens, shape (N,).
    A single -inf (probability 0) makes the perplexity ``inf``.
    """
    return _exp_or_inf(mean_nll(log_probs))


def perplexity_geometric_mean(probs: Any) -> float:
    """PPL = (prod_i 1/q(x_i))^(1/N), the geometric mean of inverse probabilities.

    ``probs``: probabilities (not logs) of the N tokens, shape (N,), each in [0, 1].
    Computed as prod_i q(x_i)^(-1/N): each factor is close to 1, so the running
    product never underflows the way prod_i q(x_i) itself does.
    """
    q = _to_numpy(probs, "probs")
    if ((q < 0) | (q > 1)).any():
        i = int(np.flatnonzero((q < 0) | (q > 1))[0])
        raise ValueError(f"probs must lie in [0, 1], got {float(q[i])!r} at index {i}: did you pass log-probabilities?")
    if (q == 0).any():
        return math.inf
    with np.errstate(over="ignore"):  # a product beyond 1.8e308 is inf, as it should be
        return float(np.prod(q ** (-1.0 / q.size)))


def perplexity_from_cross_entropy(cross_entropy_per_token: float, base: float = 2) -> float:
    """PPL = base ** H, for a per-token cross-entropy H measured in ``base`` (bits by default)."""
    if not cross_entropy_per_token >= 0:
        raise ValueError(f"a cross-entropy is >= 0, got {cross_entropy_per_token!r}")
    return _exp_or_inf(cross_entropy_per_token * _log_of_base(base))


def _exp_or_inf(x: float) -> float:
    """exp(x), but inf (not OverflowError) when the result is too big for a float."""
    return math.exp(x) if x < 709.78 else math.inf

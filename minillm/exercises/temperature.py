"""Checkers for the exercises of chapter 1, notebook 3 (temperature)."""
from __future__ import annotations

import math

import numpy as np

from minillm.exercises import ExerciseError, call, expect_close, passed
from minillm.temperature import apply_temperature


def _as_floats(got, what: str, n: int) -> np.ndarray:
    try:
        values = np.asarray([float(x) for x in got], dtype=np.float64)
    except (TypeError, ValueError):
        raise ExerciseError(f"{what}: expected a list of {n} numbers, got {got!r}") from None
    if values.shape != (n,):
        raise ExerciseError(f"{what}: expected {n} numbers, got {len(values)}")
    return values


def _diagnose_distribution(got: np.ndarray, probs: np.ndarray, T: float, what: str, want: np.ndarray) -> None:
    """Raise an ExerciseError naming the likely mistake, unless got == want."""
    if np.allclose(got, want, rtol=1e-6, atol=1e-9):
        return
    if not math.isclose(got.sum(), 1.0, rel_tol=1e-6):
        raise ExerciseError(f"{what} sums to {got.sum():.6g}, not 1: divide every p^(1/T) "
                            f"by their sum so the result is a distribution")
    if np.allclose(got, probs ** T / (probs ** T).sum(), rtol=1e-6):
        raise ExerciseError(f"{what}: you raised p to the power T; temperature uses p^(1/T) "
                            f"(T < 1 must sharpen, T > 1 must flatten)")
    raise ExerciseError(f"{what}: expected {np.round(want, 4).tolist()}, got {np.round(got, 4).tolist()}")


def check_temper(temper) -> None:
    """temper(probs, T) -> list: p_i^(1/T) / sum_j p_j^(1/T) for T > 0."""
    cases = [([0.4, 0.6], 0.5), ([0.4, 0.6], 0.2), ([0.2, 0.3, 0.5], 2.0),
             ([0.1, 0.0, 0.9], 0.3), ([0.25, 0.75], 1.0)]
    for probs, T in cases:
        what = f"temper({probs}, T={T})"
        got = _as_floats(call(temper, list(probs), T), what, len(probs))
        _diagnose_distribution(got, np.array(probs), T, what, apply_temperature(probs, T))
    passed("p^(1/T), renormalised: T = 0.5 turns 0.4/0.6 into 0.308/0.692")


def _target_temperature(p: float, target: float) -> float:
    # q/(1-q) = (p/(1-p))^(1/T): temperature scales the log-odds by 1/T.
    return math.log(p / (1 - p)) / math.log(target / (1 - target))


def check_temperature_for_target(temperature_for_target) -> None:
    """temperature_for_target(p, target) -> T such that the larger probability
    of the two-way distribution (p, 1 - p), p > 0.5, becomes ``target``."""
    for p, target in [(0.6, 0.9), (0.6, 0.7), (0.7, 0.6), (0.8, 0.8), (0.55, 0.99)]:
        want = _target_temperature(p, target)
        what = f"temperature_for_target(p={p}, target={target})"
        got = call(temperature_for_target, p, target)
        try:
            value = float(got)
        except (TypeError, ValueError):
            raise ExerciseError(f"{what}: expected a number, got {got!r}") from None
        if math.isclose(value, 1 / want, rel_tol=1e-6) and not math.isclose(want, 1.0):
            raise ExerciseError(f"{what}: you returned 1/T = {value:.4g}; the temperature is "
                                f"its inverse, {want:.4g}")
        expect_close(value, want, what, rel=1e-6)
    passed("temperature scales the log-odds by 1/T, so T = log-odds(p) / log-odds(target)")


def check_annealed_joint(annealed_joint) -> None:
    """annealed_joint(seq_probs, T) -> list: p(x)^(1/T) / sum_y p(y)^(1/T) over
    the listed sequences (their probabilities need not sum to 1)."""
    cases = [([0.315, 0.135, 0.1012, 0.06], 0.5), ([0.315, 0.135, 0.1012, 0.06], 2.0),
             ([0.5, 0.3, 0.2], 1.0), ([0.02, 0.01], 1.0)]
    for seq_probs, T in cases:
        what = f"annealed_joint({seq_probs}, T={T})"
        got = _as_floats(call(annealed_joint, list(seq_probs), T), what, len(seq_probs))
        p = np.array(seq_probs)
        want = p ** (1 / T) / (p ** (1 / T)).sum()
        _diagnose_distribution(got, p, T, what, want)
    passed("the annealed joint applies temperature once, to whole sequences, and renormalises over them")


def _per_step_path_prob(start, P, path, T) -> float:
    prob = float(apply_temperature(start, T)[path[0]])
    for prev, token in zip(path, path[1:]):
        prob *= float(apply_temperature(P[prev], T)[token])
    return prob


def check_per_step_path_prob(per_step_path_prob) -> None:
    """per_step_path_prob(start, P, path, T) -> float: the probability that
    sampling with temperature T at every step produces ``path``."""
    start = [0.45, 0.35, 0.2]
    P = [[0.2, 0.4, 0.4], [0.1, 0.1, 0.8], [0.5, 0.25, 0.25]]
    for path, T in [([0, 1], 0.5), ([1, 2, 0], 0.5), ([2, 2], 2.0), ([0, 2, 1, 1], 1.0), ([1], 0.3)]:
        want = _per_step_path_prob(start, P, path, T)
        what = f"per_step_path_prob(start, P, path={path}, T={T})"
        got = call(per_step_path_prob, list(start), [list(r) for r in P], list(path), T)
        try:
            value = float(got)
        except (TypeError, ValueError):
            raise ExerciseError(f"{what}: expected a number, got {got!r}") from None
        joint = _per_step_path_prob(start, P, path, 1.0) ** (1 / T)
        if not math.isclose(want, joint) and math.isclose(value, joint, rel_tol=1e-6):
            raise ExerciseError(f"{what}: you computed p(path)^(1/T) = {value:.6g}; per-step "
                                f"temperature renormalises every step's distribution, which gives {want:.6g}")
        expect_close(value, want, what, rel=1e-6)
    passed("per-step temperature: a product of locally renormalised steps")

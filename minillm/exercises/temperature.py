"""Checkers for the exercises of chapter 1, notebook 3 (temperature)."""
from __future__ import annotations

import math

import numpy as np

from minillm.exercises import ExerciseError, call, expect_close, passed
from minillm.temperature import temper_probs


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
        _diagnose_distribution(got, np.array(probs), T, what, temper_probs(probs, T))
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


def check_cold_limit_entropy(cold_limit_entropy) -> None:
    """cold_limit_entropy(probs) -> the entropy in bits of lim_{T -> 0} of temperature
    applied to ``probs``: log2 of the number of tokens tied at the maximum."""
    cases = [([0.4, 0.6], 0.0), ([0.4, 0.2, 0.4], 1.0), ([0.25] * 4, 2.0), ([0.3, 0.3, 0.3, 0.1], math.log2(3)),
             ([0.41, 0.4, 0.19], 0.0), ([0.2, 0.0, 0.2, 0.2, 0.2, 0.2], math.log2(5)), ([1.0], 0.0)]
    for probs, want in cases:
        what = f"cold_limit_entropy({probs})"
        got = call(cold_limit_entropy, list(probs))
        if want > 0 and _is_number(got) and float(got) == 0.0:
            raise ExerciseError(f"{what} should be {want:.4g} bits, got 0: as T -> 0 the mass goes to the "
                                "argmax, but when several tokens TIE for the maximum it is split evenly "
                                "among them, and the limit keeps log2(number tied) bits")
        if probs == [0.41, 0.4, 0.19] and _is_number(got) and math.isclose(float(got), 1.0):
            raise ExerciseError(f"{what} should be 0 bits, got 1: 0.41 and 0.4 are not tied; the ratio "
                                "(0.41/0.4)^(1/T) still grows without bound as T -> 0")
        if probs == [0.2, 0.0, 0.2, 0.2, 0.2, 0.2] and _is_number(got) and math.isclose(float(got), math.log2(6)):
            raise ExerciseError(f"{what} should be log2(5) bits, got log2(6): a token of probability 0 "
                                "stays at 0 at every temperature, so it is never among the tied tokens")
        expect_close(got, want, what, abs_=1e-9)
    passed("the T -> 0 limit is uniform over the tied maxima: 0 bits only when the argmax is unique")


def _is_number(x) -> bool:
    try:
        float(x)
        return True
    except (TypeError, ValueError):
        return False


def _per_step_path_prob(start, P, path, T) -> float:
    prob = float(temper_probs(start, T)[path[0]])
    for prev, token in zip(path, path[1:]):
        prob *= float(temper_probs(P[prev], T)[token])
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

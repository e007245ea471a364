import math

import pytest

from minillm.exercises import ExerciseError, ExerciseNotImplemented
from minillm.exercises.temperature import (check_cold_limit_entropy, check_per_step_path_prob,
                                           check_temper, check_temperature_for_target)


def temper(probs, T):
    weights = [p ** (1 / T) for p in probs]
    return [w / sum(weights) for w in weights]


def stub(*args):
    raise NotImplementedError


# --- temper

def test_temper_accepts_correct(capsys):
    check_temper(temper)
    assert "✓ correct" in capsys.readouterr().out


@pytest.mark.parametrize("wrong, words", [
    (lambda probs, T: [p ** (1 / T) for p in probs], "sums to"),
    (lambda probs, T: [p ** T / sum(q ** T for q in probs) for p in probs], "power T"),
    (lambda probs, T: list(probs), "expected"),
    (lambda probs, T: 0.5, "list"),
])
def test_temper_rejects_wrong(wrong, words):
    with pytest.raises(ExerciseError, match=words):
        check_temper(wrong)


def test_temper_stub():
    with pytest.raises(ExerciseNotImplemented):
        check_temper(stub)


# --- temperature_for_target

def temperature_for_target(p, target):
    return math.log(p / (1 - p)) / math.log(target / (1 - target))


def test_target_accepts_correct(capsys):
    check_temperature_for_target(temperature_for_target)
    assert "✓ correct" in capsys.readouterr().out


def test_target_rejects_wrong():
    with pytest.raises(ExerciseError, match="1/T"):
        check_temperature_for_target(lambda p, t: 1 / temperature_for_target(p, t))
    with pytest.raises(ExerciseError, match="expected"):
        check_temperature_for_target(lambda p, t: math.log(p) / math.log(t))
    with pytest.raises(ExerciseNotImplemented):
        check_temperature_for_target(stub)


# --- cold_limit_entropy

def cold_right(probs):
    import math
    top = max(probs)
    return math.log2(sum(p == top for p in probs))


def test_cold_limit_entropy_accepts_correct(capsys):
    check_cold_limit_entropy(cold_right)
    assert "correct" in capsys.readouterr().out


@pytest.mark.parametrize("wrong, match", [
    (lambda probs: 0.0, "TIE"),
    (lambda probs: __import__("math").log2(sum(abs(p - max(probs)) < 0.02 for p in probs)), "not tied"),
])
def test_cold_limit_entropy_rejects_wrong(wrong, match):
    with pytest.raises(ExerciseError, match=match):
        check_cold_limit_entropy(wrong)
    with pytest.raises(ExerciseError):
        check_cold_limit_entropy(stub)

# --- per_step_path_prob

def per_step_path_prob(start, P, path, T):
    prob = temper(start, T)[path[0]]
    for prev, token in zip(path, path[1:]):
        prob *= temper(P[prev], T)[token]
    return prob


def joint_power(start, P, path, T):
    prob = start[path[0]]
    for prev, token in zip(path, path[1:]):
        prob *= P[prev][token]
    return prob ** (1 / T)


def test_path_prob_accepts_correct(capsys):
    check_per_step_path_prob(per_step_path_prob)
    assert "✓ correct" in capsys.readouterr().out


def test_path_prob_rejects_wrong():
    with pytest.raises(ExerciseError, match="renormalises every step"):
        check_per_step_path_prob(joint_power)
    with pytest.raises(ExerciseError, match="expected"):
        check_per_step_path_prob(lambda start, P, path, T: per_step_path_prob(start, P, path, 1.0))
    with pytest.raises(ExerciseNotImplemented):
        check_per_step_path_prob(stub)

"""The chapter-6 checkers accept right answers, reject wrong ones, and spot stubs."""
import math

import pytest

from minillm.exercises import ExerciseError, ExerciseNotImplemented
from minillm.exercises.positions import (check_alibi_slopes, check_far_mass, check_ntk_inv_freq,
                                         check_rope_rotate,
                                         check_rope_score, check_sinusoidal)


def stub(*args):
    raise NotImplementedError


# --- sinusoidal

def sinusoidal(n, d, order="interleaved", scale=2):
    rows = []
    for p in range(n):
        sines = [math.sin(p * 10000 ** (-scale * i / d)) for i in range(d // 2)]
        cosines = [math.cos(p * 10000 ** (-scale * i / d)) for i in range(d // 2)]
        if order == "interleaved":
            rows.append([v for pair in zip(sines, cosines) for v in pair])
        elif order == "swapped":
            rows.append([v for pair in zip(cosines, sines) for v in pair])
        else:
            rows.append(sines + cosines)
    return rows


def test_sinusoidal_accepts_correct(capsys):
    check_sinusoidal(sinusoidal)
    assert "✓ correct" in capsys.readouterr().out


@pytest.mark.parametrize("wrong, words", [
    (lambda n, d: sinusoidal(n, d, order="swapped"), "swapped"),
    (lambda n, d: sinusoidal(n, d, order="concat"), "sines first"),
    (lambda n, d: sinusoidal(n, d, scale=1), "10000"),
    (lambda n, d: sinusoidal(n, d)[:-1], "shape"),
    (lambda n, d: [[0.0] * d for _ in range(n)], "row"),
])
def test_sinusoidal_rejects_wrong(wrong, words):
    with pytest.raises(ExerciseError, match=words):
        check_sinusoidal(wrong)


def test_sinusoidal_stub():
    with pytest.raises(ExerciseNotImplemented):
        check_sinusoidal(stub)


# --- rope_rotate

def rope_rotate(x, position, base=10000.0, sign=1, layout="interleaved"):
    d = len(x)
    out = [0.0] * d
    for i in range(d // 2):
        angle = sign * position * base ** (-2 * i / d)
        j, k = (2 * i, 2 * i + 1) if layout == "interleaved" else (i, i + d // 2)
        a, b = x[j], x[k]
        out[j], out[k] = a * math.cos(angle) - b * math.sin(angle), a * math.sin(angle) + b * math.cos(angle)
    return out


def test_rope_rotate_accepts_correct(capsys):
    check_rope_rotate(rope_rotate)
    assert "✓ correct" in capsys.readouterr().out


@pytest.mark.parametrize("wrong, words", [
    (lambda x, p, base=1e4: rope_rotate(x, p, base, sign=-1), "clockwise"),
    (lambda x, p, base=1e4: rope_rotate(x, p, base, layout="half"), "rotate_half"),
    (lambda x, p, base=1e4: [2 * v for v in rope_rotate(x, p, base)], "length"),
    (lambda x, p, base=1e4: rope_rotate(x, p, 10000.0), "expected"),
])
def test_rope_rotate_rejects_wrong(wrong, words):
    with pytest.raises(ExerciseError, match=words):
        check_rope_rotate(wrong)


def test_rope_rotate_stub():
    with pytest.raises(ExerciseNotImplemented):
        check_rope_rotate(stub)


# --- rope_score

def rope_score(q, m, k, n):
    return sum(a * b for a, b in zip(q, rope_rotate(k, n - m)))


def test_rope_score_accepts_correct(capsys):
    check_rope_score(rope_score)
    assert "✓ correct" in capsys.readouterr().out


@pytest.mark.parametrize("wrong, words", [
    (lambda q, m, k, n: sum(a * b for a, b in zip(q, rope_rotate(k, m - n))), "m - n"),
    (lambda q, m, k, n: sum(a * b for a, b in zip(q, k)), "expected"),
    (lambda q, m, k, n: "zero", "number"),
])
def test_rope_score_rejects_wrong(wrong, words):
    with pytest.raises(ExerciseError, match=words):
        check_rope_score(wrong)


def test_rope_score_stub():
    with pytest.raises(ExerciseNotImplemented):
        check_rope_score(stub)


# --- alibi_slopes

def alibi_slopes(n):
    def power_of_two(k):
        return [2 ** (-8 * (h + 1) / k) for h in range(k)]
    closest = 2 ** math.floor(math.log2(n))
    return power_of_two(closest) + power_of_two(2 * closest)[0::2][: n - closest]


def test_alibi_accepts_correct(capsys):
    check_alibi_slopes(alibi_slopes)
    assert "✓ correct" in capsys.readouterr().out


@pytest.mark.parametrize("wrong, words", [
    (lambda n: [2 ** (-8 * (h + 1) / n) for h in range(n)], "power of two"),
    (lambda n: alibi_slopes(n)[::-1], "reversed"),
    (lambda n: [2 ** (-(h + 1)) for h in range(n)], "expected"),
])
def test_alibi_rejects_wrong(wrong, words):
    with pytest.raises(ExerciseError, match=words):
        check_alibi_slopes(wrong)


def test_alibi_stub():
    with pytest.raises(ExerciseNotImplemented):
        check_alibi_slopes(stub)


# --- ntk_inv_freq

def ntk_inv_freq(d, base, s):
    new_base = base * s ** (d / (d - 2))
    return [new_base ** (-2 * i / d) for i in range(d // 2)]


def test_ntk_accepts_correct(capsys):
    check_ntk_inv_freq(ntk_inv_freq)
    assert "✓ correct" in capsys.readouterr().out


@pytest.mark.parametrize("wrong, words", [
    (lambda d, base, s: [(base * s) ** (-2 * i / d) for i in range(d // 2)], "multiplied the base"),
    (lambda d, base, s: [base ** (-2 * i / d) / s for i in range(d // 2)], "interpolation"),
    (lambda d, base, s: [base ** (-2 * i / d) for i in range(d // 2)], "expected"),
])
def test_ntk_rejects_wrong(wrong, words):
    with pytest.raises(ExerciseError, match=words):
        check_ntk_inv_freq(wrong)


def test_ntk_stub():
    with pytest.raises(ExerciseNotImplemented):
        check_ntk_inv_freq(stub)


# --- far_mass

def far_mass(weights, min_distance, strict=False, transposed=False):
    import torch
    T = weights.shape[-1]
    i, j = torch.arange(T)[:, None], torch.arange(T)[None, :]
    offset = (j - i) if transposed else (i - j)
    far = offset > min_distance if strict else offset >= min_distance
    return (weights * far).sum(-1)


def test_far_mass_accepts_correct(capsys):
    check_far_mass(far_mass)
    check_far_mass(lambda w, d: far_mass(w, d).tolist())        # a list is fine too
    assert "✓ correct" in capsys.readouterr().out


@pytest.mark.parametrize("wrong, words", [
    (lambda w, d: far_mass(w, d, strict=True), ">="),
    (lambda w, d: far_mass(w, d, transposed=True), "rows are queries"),
    (lambda w, d: far_mass(w.T, d), "rows are queries"),
    (lambda w, d: far_mass(w, d) * 2, "expected"),
    (lambda w, d: far_mass(w, d)[:-1], "shape"),
])
def test_far_mass_rejects_wrong(wrong, words):
    with pytest.raises(ExerciseError, match=words):
        check_far_mass(wrong)


def test_far_mass_stub():
    with pytest.raises(ExerciseNotImplemented):
        check_far_mass(stub)

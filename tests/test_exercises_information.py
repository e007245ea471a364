"""The checkers of chapter 1, notebook 2 accept right answers and reject wrong ones."""
import math

import numpy as np
import pytest

from minillm.exercises import ExerciseError, ExerciseNotImplemented
from minillm.exercises import information as ex


def stub(*args):
    raise NotImplementedError


# ----------------------------------------------------------------- entropy

def entropy_bits(p):
    return -sum(x * math.log2(x) for x in p if x > 0)


def test_entropy_accepts_a_correct_answer(capsys):
    ex.check_entropy_bits(entropy_bits)
    assert "✓ correct" in capsys.readouterr().out


@pytest.mark.parametrize("wrong, hint", [
    (lambda p: -sum(x * math.log(x) for x in p if x > 0), "natural log"),
    (lambda p: sum(x * math.log2(x) for x in p if x > 0), "MINUS"),
    (lambda p: -sum(x * math.log2(x) if x > 0 else math.nan for x in p), "0 \\* log 0"),
    (lambda p: math.log2(len(p)), "expected"),
])
def test_entropy_rejects_wrong_answers(wrong, hint):
    with pytest.raises(ExerciseError, match=hint):
        ex.check_entropy_bits(wrong)


def test_entropy_stub():
    with pytest.raises(ExerciseNotImplemented, match="not implemented"):
        ex.check_entropy_bits(stub)


# ----------------------------------------------------------------- KL

def kl_bits(p, q):
    return sum(a * math.log2(a / b) for a, b in zip(p, q) if a > 0)


def test_kl_accepts_a_correct_answer(capsys):
    ex.check_kl_divergence_bits(kl_bits)
    assert "✓ correct" in capsys.readouterr().out


@pytest.mark.parametrize("wrong, hint", [
    (lambda p, q: kl_bits(q, p), "swapped"),
    (lambda p, q: kl_bits(p, q) * math.log(2), "nats"),
    (lambda p, q: -kl_bits(p, q), "sign"),
    (lambda p, q: sum(a * math.log2(a / b) for a, b in zip(p, q)) if 0 not in p else math.nan, "nan"),
    (lambda p, q: sum(abs(a - b) for a, b in zip(p, q)), "expected"),
])
def test_kl_rejects_wrong_answers(wrong, hint):
    with pytest.raises(ExerciseError, match=hint):
        ex.check_kl_divergence_bits(wrong)


def test_kl_stub():
    with pytest.raises(ExerciseNotImplemented):
        ex.check_kl_divergence_bits(stub)


# ----------------------------------------------------------------- bits per byte

def bpb(ppl, n_tokens, n_bytes):
    return n_tokens * math.log2(ppl) / n_bytes


def test_bits_per_byte_accepts_a_correct_answer(capsys):
    ex.check_bits_per_byte(bpb)
    assert "✓ correct" in capsys.readouterr().out


@pytest.mark.parametrize("wrong, hint", [
    (lambda p, n, b: math.log2(p) / b, "ONE token"),
    (lambda p, n, b: math.log2(p), "bits per TOKEN"),
    (lambda p, n, b: n * math.log(p) / b, "nats per byte"),
    (lambda p, n, b: p * n / b, "not a cost in bits"),
    (lambda p, n, b: b / (n * math.log2(p)), "upside down"),
])
def test_bits_per_byte_rejects_wrong_answers(wrong, hint):
    with pytest.raises(ExerciseError, match=hint):
        ex.check_bits_per_byte(wrong)


def test_bits_per_byte_stub():
    with pytest.raises(ExerciseNotImplemented):
        ex.check_bits_per_byte(stub)


# ----------------------------------------------------------------- mixture

def mix_log_probs(log_probs, eps, vocab_size):
    return [math.log((1 - eps) * math.exp(lp) + eps / vocab_size) for lp in log_probs]


def test_mix_accepts_a_correct_answer(capsys):
    ex.check_mix_log_probs(mix_log_probs)
    ex.check_mix_log_probs(lambda lp, eps, v: np.logaddexp(np.log1p(-eps) + np.asarray(lp), np.log(eps / v))
                           if eps > 0 else np.asarray(lp))
    assert capsys.readouterr().out.count("✓ correct") == 2


@pytest.mark.parametrize("wrong, hint", [
    (lambda lp, eps, v: [math.exp(x) for x in mix_log_probs(lp, eps, v)], "probabilities"),
    (lambda lp, eps, v: mix_log_probs(lp, 1 - eps, v), "swapped"),
    (lambda lp, eps, v: [math.log(math.exp(x) + eps / v) for x in lp], "1 \\+ eps"),
    (lambda lp, eps, v: mix_log_probs(lp, eps, v)[:-1], "one log-prob per token"),
    (lambda lp, eps, v: [math.log((1 - eps) * math.exp(x) + eps) for x in lp], "should be"),
    (lambda lp, eps, v: "nope", "list of numbers"),
])
def test_mix_rejects_wrong_answers(wrong, hint):
    with pytest.raises(ExerciseError, match=hint):
        ex.check_mix_log_probs(wrong)


def test_mix_stub():
    with pytest.raises(ExerciseNotImplemented):
        ex.check_mix_log_probs(stub)


def test_checkers_are_reexported():
    from minillm.exercises import (check_entropy_bits, check_kl_divergence_bits, check_mix_log_probs,
                                   check_bits_per_byte)
    assert check_entropy_bits is ex.check_entropy_bits
    assert check_bits_per_byte is ex.check_bits_per_byte
    assert check_kl_divergence_bits is ex.check_kl_divergence_bits
    assert check_mix_log_probs is ex.check_mix_log_probs

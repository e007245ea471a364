"""Checkers for the exercises of "Entropy, cross-entropy and perplexity"
(chapter 1, notebook 2). Each takes the reader's function and raises
ExerciseError with a hint when an answer is wrong."""
from __future__ import annotations

import math

import numpy as np

from minillm.exercises import ExerciseError, expect_number, call, expect_close, passed
from minillm.info import entropy, kl_divergence, perplexity_from_log_probs


def check_entropy_bits(entropy_bits) -> None:
    """``entropy_bits(p)``: the entropy in bits of p, a list of probabilities."""
    got = expect_number(call(entropy_bits, [0.5, 0.5]), "entropy_bits([0.5, 0.5])")
    if math.isclose(got, math.log(2), rel_tol=1e-6):
        raise ExerciseError(f"entropy_bits([0.5, 0.5]) should be 1.0 bit, got {got:.4f}: "
                            "that is the answer in nats; did you use the natural log instead of log2?")
    if math.isclose(got, -1.0, rel_tol=1e-6):
        raise ExerciseError("entropy_bits([0.5, 0.5]) should be 1.0, got -1.0: entropy is MINUS sum p log p")
    expect_close(got, 1.0, "entropy_bits([0.5, 0.5]) (a fair coin)")
    got = expect_number(call(entropy_bits, [1.0, 0.0]), "entropy_bits([1.0, 0.0])")
    if math.isnan(got):
        raise ExerciseError("entropy_bits([1.0, 0.0]) gave nan: 0 * log 0 counts as 0, so skip outcomes with p = 0")
    expect_close(got, 0.0, "entropy_bits([1.0, 0.0]) (a certain outcome)")
    for p in ([0.9, 0.1], [0.25] * 4, [0.5, 0.25, 0.125, 0.125], [0.7, 0.2, 0.1, 0.0]):
        expect_close(call(entropy_bits, list(p)), entropy(p), f"entropy_bits({p})")
    passed("a fair coin carries 1 bit, a 90/10 coin only 0.469 bits")


def check_kl_divergence_bits(kl_divergence_bits) -> None:
    """``kl_divergence_bits(p, q)``: KL(p || q) in bits."""
    p, q = [0.5, 0.5], [0.9, 0.1]
    got = expect_number(call(kl_divergence_bits, p, q), f"kl_divergence_bits({p}, {q})")
    want = kl_divergence(p, q)
    if math.isclose(got, kl_divergence(q, p), rel_tol=1e-6):
        raise ExerciseError(f"kl_divergence_bits({p}, {q}) should be {want:.4f}, got {got:.4f}, which is "
                            "KL(q || p): the arguments are swapped. KL(p || q) = sum_x p(x) log2(p(x) / q(x))")
    if math.isclose(got, kl_divergence(p, q, base=math.e), rel_tol=1e-6):
        raise ExerciseError(f"kl_divergence_bits({p}, {q}) should be {want:.4f} bits, got {got:.4f}: "
                            "that is nats; use log2")
    if math.isclose(got, -want, rel_tol=1e-6):
        raise ExerciseError(f"kl_divergence_bits({p}, {q}) should be {want:.4f}, got {got:.4f}: the sign is flipped; "
                            "KL is never negative (Gibbs' inequality)")
    expect_close(got, want, f"kl_divergence_bits({p}, {q})")
    expect_close(call(kl_divergence_bits, [0.2, 0.8], [0.2, 0.8]), 0.0, "KL of a distribution with itself")
    got = expect_number(call(kl_divergence_bits, [1.0, 0.0], [0.5, 0.5]), "kl_divergence_bits([1.0, 0.0], [0.5, 0.5])")
    if math.isnan(got):
        raise ExerciseError("kl_divergence_bits([1.0, 0.0], [0.5, 0.5]) gave nan: terms with p(x) = 0 contribute 0")
    expect_close(got, 1.0, "kl_divergence_bits([1.0, 0.0], [0.5, 0.5])")
    p, q = [0.5, 0.25, 0.125, 0.125], [0.25, 0.125, 0.5, 0.125]
    expect_close(call(kl_divergence_bits, p, q), kl_divergence(p, q), f"kl_divergence_bits({p}, {q})")
    passed("KL(p || q) >= 0, zero only when q = p, and not symmetric")


def check_bits_per_byte(bits_per_byte) -> None:
    """``bits_per_byte(ppl, n_tokens, n_bytes)``: the bits per byte of a text of ``n_bytes``
    UTF-8 bytes that a model coded as ``n_tokens`` tokens at per-token perplexity ``ppl``."""
    ppl, n_tokens, n_bytes = 8.0, 1000, 2500
    want = n_tokens * math.log2(ppl) / n_bytes  # 1.2
    what = f"bits_per_byte(ppl={ppl}, n_tokens={n_tokens}, n_bytes={n_bytes})"
    got = expect_number(call(bits_per_byte, ppl, n_tokens, n_bytes), what)
    hints = [
        (math.log2(ppl) / n_bytes, "log2(ppl) is the cost of ONE token; the text has n_tokens of them"),
        (math.log2(ppl), "that is bits per TOKEN; divide the total bits of the text by its bytes"),
        (n_tokens * math.log(ppl) / n_bytes, "that is nats per byte: log2(ppl) bits per token, not ln(ppl)"),
        (ppl * n_tokens / n_bytes, "perplexity is not a cost in bits: each token costs log2(ppl) bits"),
        (n_bytes / (n_tokens * math.log2(ppl)), "upside down: bits per byte = total bits / bytes"),
    ]
    for wrong, hint in hints:
        if math.isclose(got, wrong, rel_tol=1e-6) and not math.isclose(got, want, rel_tol=1e-6):
            raise ExerciseError(f"{what} should be {want:.4g}, got {got:.4g}: {hint}")
    expect_close(got, want, what)
    for args in [(20.0, 1000, 3000), (60.0, 600, 3000), (1.0, 10, 10)]:
        expect_close(call(bits_per_byte, *args), args[1] * math.log2(args[0]) / args[2],
                     f"bits_per_byte{args}")
    a, b = 1000 * math.log2(20) / 3000, 600 * math.log2(60) / 3000
    passed(f"on the same 3000 bytes, PPL 20 over 1000 tokens is {a:.3f} bits/byte, PPL 60 over 600 "
           f"tokens {b:.3f}: the tokenizer with the higher perplexity codes the text better")


def _mix_reference(log_probs, eps, vocab_size):
    return np.log((1 - eps) * np.exp(np.asarray(log_probs, dtype=float)) + eps / vocab_size)


def check_mix_log_probs(mix_log_probs) -> None:
    """``mix_log_probs(log_probs, eps, vocab_size)``: the natural-log probabilities
    that q = (1 - eps) p + eps * uniform gives the same tokens, shape (N,)."""
    log_probs = [math.log(0.5), math.log(0.01), math.log(1e-6)]
    eps, vocab_size = 0.05, 100
    raw = call(mix_log_probs, list(log_probs), eps, vocab_size)
    try:
        got = np.asarray(raw, dtype=float).reshape(-1)
    except (TypeError, ValueError):
        raise ExerciseError(f"mix_log_probs should return a list of numbers, got {raw!r:.80}") from None
    if got.shape != (3,):
        raise ExerciseError(f"mix_log_probs should return one log-prob per token (3 here), got {got.size} values")
    want = _mix_reference(log_probs, eps, vocab_size)
    if np.allclose(got, np.exp(want), rtol=1e-6):
        raise ExerciseError("mix_log_probs returned probabilities: return their natural logs")
    if np.allclose(got, _mix_reference(log_probs, 1 - eps, vocab_size), rtol=1e-6):
        raise ExerciseError("eps and 1 - eps are swapped: q = (1 - eps) * p + eps / vocab_size")
    if np.allclose(got, np.log(np.exp(log_probs) + eps / vocab_size), rtol=1e-6):
        raise ExerciseError("q = p + eps / vocab_size sums to 1 + eps: scale p by (1 - eps) so q sums to 1")
    if not np.allclose(got, want, rtol=1e-6, atol=1e-9):
        raise ExerciseError(f"mix_log_probs({[round(x, 3) for x in log_probs]}, eps=0.05, vocab_size=100) should be "
                            f"{np.round(want, 4).tolist()}, got {np.round(got, 4).tolist()}")
    same = np.asarray(call(mix_log_probs, list(log_probs), 0.0, vocab_size), dtype=float)
    if not np.allclose(same, log_probs, rtol=1e-9):
        raise ExerciseError("with eps = 0 the mixture is p itself, so mix_log_probs should return log_probs unchanged")
    # The bound of the notebook: PPL_q <= PPL_p / (1 - eps).
    rng = np.random.default_rng(1)
    many = np.log(rng.uniform(1e-5, 1.0, size=500))
    for eps in (0.01, 0.2):
        mixed = np.asarray(call(mix_log_probs, list(many), eps, 1000), dtype=float)
        expect_close(perplexity_from_log_probs(mixed), perplexity_from_log_probs(_mix_reference(many, eps, 1000)),
                     f"perplexity after mixing with eps={eps}")
    passed("mixing in eps of uniform never raises perplexity more than 1/(1 - eps)")

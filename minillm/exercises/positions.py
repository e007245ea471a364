"""Checkers for the exercises of chapter 6 (positions)."""
from __future__ import annotations

import math

import numpy as np

from minillm.exercises import ExerciseError, call, passed
from minillm.positions import alibi_slopes, far_attention_mass


def _matrix(got, what: str, shape: tuple[int, ...]) -> np.ndarray:
    try:
        values = np.asarray(got, dtype=np.float64)
    except (TypeError, ValueError):
        raise ExerciseError(f"{what}: expected numbers in shape {shape}, got {type(got).__name__}") from None
    if values.shape != shape:
        raise ExerciseError(f"{what}: expected shape {shape}, got {values.shape}")
    return values


def _angles(num_positions: int, d: int, base: float = 10000.0, exponent_scale: float = 2.0) -> np.ndarray:
    """p * base^(-scale*i/d), [num_positions, d/2] (scale 2 is right; 1 is a common slip)."""
    i = np.arange(d // 2)
    return np.arange(num_positions)[:, None] * base ** (-exponent_scale * i / d)


def _interleave(first: np.ndarray, second: np.ndarray) -> np.ndarray:
    out = np.empty(first.shape[:-1] + (2 * first.shape[-1],))
    out[..., 0::2], out[..., 1::2] = first, second
    return out


# ----------------------------------------------------------------- notebook 1

def check_sinusoidal(sinusoidal) -> None:
    """sinusoidal(num_positions, d_model) -> rows [sin(p w_0), cos(p w_0), sin(p w_1), ...]."""
    for n, d in [(6, 4), (20, 8), (3, 2), (50, 16)]:
        what = f"sinusoidal({n}, {d})"
        got = _matrix(call(sinusoidal, n, d), what, (n, d))
        angles = _angles(n, d)
        want = _interleave(np.sin(angles), np.cos(angles))
        if np.allclose(got, want, atol=1e-6):
            continue
        if np.allclose(got, _interleave(np.cos(angles), np.sin(angles)), atol=1e-6):
            raise ExerciseError(f"{what}: sine and cosine are swapped; column 2i holds sin(p w_i)")
        if np.allclose(got, np.concatenate((np.sin(angles), np.cos(angles)), axis=1), atol=1e-6):
            raise ExerciseError(f"{what}: you put all sines first, then all cosines; interleave them: "
                                f"column 2i is sin(p w_i) and column 2i+1 is cos(p w_i)")
        slip = _angles(n, d, exponent_scale=1.0)
        if np.allclose(got, _interleave(np.sin(slip), np.cos(slip)), atol=1e-6):
            raise ExerciseError(f"{what}: the frequency of pair i is 10000^(-2i/d), not 10000^(-i/d)")
        row = int(np.abs(got - want).max(axis=1).argmax())
        raise ExerciseError(f"{what}: row {row} should be {np.round(want[row], 4).tolist()}, "
                            f"got {np.round(got[row], 4).tolist()}")
    passed("PE(p) interleaves sin and cos of p / 10000^(2i/d)")


def _rotate(x: np.ndarray, position: float, base: float, layout: str = "interleaved") -> np.ndarray:
    d = len(x)
    angle = position * base ** (-2 * np.arange(d // 2) / d)
    a, b = (x[0::2], x[1::2]) if layout == "interleaved" else (x[: d // 2], x[d // 2:])
    first, second = a * np.cos(angle) - b * np.sin(angle), a * np.sin(angle) + b * np.cos(angle)
    if layout == "interleaved":
        return _interleave(first, second)
    return np.concatenate((first, second))


def check_rope_rotate(rope_rotate) -> None:
    """rope_rotate(x, position, base) -> x with pair (x[2i], x[2i+1]) rotated by position*base^(-2i/d)."""
    rng = np.random.default_rng(6)
    for d, position, base in [(2, 1, 10000.0), (4, 3, 10000.0), (8, 10, 10000.0), (16, 1000, 10000.0),
                              (8, 7, 100.0), (6, 0, 10000.0)]:
        x = rng.normal(size=d)
        what = f"rope_rotate(x of length {d}, position={position}, base={base:g})"
        got = _matrix(call(rope_rotate, x.tolist(), position, base), what, (d,))
        want = _rotate(x, position, base)
        if np.allclose(got, want, atol=1e-8):
            continue
        if np.allclose(got, _rotate(x, -position, base), atol=1e-8):
            raise ExerciseError(f"{what}: you rotated clockwise; (a, b) becomes "
                                f"(a cos - b sin, a sin + b cos)")
        if np.allclose(got, _rotate(x, position, base, layout="half"), atol=1e-8):
            raise ExerciseError(f"{what}: you paired x[i] with x[i + d/2] (the rotate_half layout); "
                                f"this exercise uses the paper's pairs (x[2i], x[2i+1])")
        if not math.isclose(np.linalg.norm(got), np.linalg.norm(x), rel_tol=1e-6):
            raise ExerciseError(f"{what}: the length changed from {np.linalg.norm(x):.4f} to "
                                f"{np.linalg.norm(got):.4f}; a rotation keeps lengths")
        raise ExerciseError(f"{what}: expected {np.round(want, 4).tolist()}, got {np.round(got, 4).tolist()}")
    passed("each pair turns by position * base^(-2i/d), and lengths are kept")


def check_rope_score(rope_score) -> None:
    """rope_score(q, m, k, n) -> (R_m q) . (R_n k) with base 10000, interleaved layout."""
    rng = np.random.default_rng(7)
    for d, m, n in [(2, 0, 1), (4, 5, 2), (8, 3, 9), (16, 100, 40), (16, 12345, 12300), (8, 4, 4)]:
        q, k = rng.normal(size=d), rng.normal(size=d)
        what = f"rope_score(q, m={m}, k, n={n}) with d={d}"
        got = call(rope_score, q.tolist(), m, k.tolist(), n)
        try:
            value = float(got)
        except (TypeError, ValueError):
            raise ExerciseError(f"{what}: expected a number, got {got!r}") from None
        want = float(_rotate(q, m, 1e4) @ _rotate(k, n, 1e4))
        if math.isclose(value, want, rel_tol=1e-6, abs_tol=1e-8):
            continue
        if math.isclose(value, float(q @ _rotate(k, m - n, 1e4)), rel_tol=1e-6, abs_tol=1e-8):
            raise ExerciseError(f"{what}: you rotated k by m - n; the key must turn by n - m "
                                f"(R_m^T R_n = R_(n-m))")
        raise ExerciseError(f"{what}: expected {want:.6g}, got {value:.6g}")
    passed("(R_m q) . (R_n k) = q . (R_(n-m) k): only the offset matters")


# ----------------------------------------------------------------- notebook 2

def check_alibi_slopes(slopes_fn) -> None:
    """slopes_fn(n_heads) -> list of ALiBi slopes, including non-powers of two."""
    for n in (1, 2, 4, 8, 16, 6, 12, 3):
        what = f"alibi_slopes({n})"
        got = _matrix(call(slopes_fn, n), what, (n,))
        want = alibi_slopes(n).double().numpy()
        if np.allclose(got, want, rtol=1e-6):
            continue
        naive = np.array([2.0 ** (-8.0 * (h + 1) / n) for h in range(n)])
        if n & (n - 1) and np.allclose(got, naive, rtol=1e-6):
            raise ExerciseError(f"{what}: {n} is not a power of two; the paper does not use "
                                f"2^(-8h/n) then but the slopes of the closest smaller power of two "
                                f"plus every other slope of the next one")
        if np.allclose(got, want[::-1], rtol=1e-6):
            raise ExerciseError(f"{what}: the order is reversed; head 0 gets the largest slope")
        raise ExerciseError(f"{what}: expected {np.round(want, 5).tolist()}, got {np.round(got, 5).tolist()}")
    passed("a geometric sequence 2^(-8/n), 2^(-16/n), ... with the paper's rule for other head counts")


def check_ntk_inv_freq(ntk_inv_freq) -> None:
    """ntk_inv_freq(head_dim, base, factor) -> list of head_dim/2 NTK-aware frequencies."""
    for d, base, s in [(32, 10000.0, 4.0), (8, 10000.0, 2.0), (64, 500000.0, 8.0), (16, 10000.0, 1.0)]:
        what = f"ntk_inv_freq({d}, {base:g}, {s:g})"
        got = _matrix(call(ntk_inv_freq, d, base, s), what, (d // 2,))
        i = np.arange(d // 2)
        want = (base * s ** (d / (d - 2))) ** (-2 * i / d)
        if np.allclose(got, want, rtol=1e-9):
            continue
        if np.allclose(got, (base * s) ** (-2 * i / d), rtol=1e-9):
            raise ExerciseError(f"{what}: you multiplied the base by s; then the slowest pair is "
                                f"slowed by less than s. Use base * s^(d/(d-2))")
        if np.allclose(got, base ** (-2 * i / d) / s, rtol=1e-9):
            raise ExerciseError(f"{what}: dividing every frequency by s is position interpolation, "
                                f"not NTK-aware scaling; change the base instead")
        raise ExerciseError(f"{what}: expected {np.round(want, 6).tolist()}, got {np.round(got, 6).tolist()}")
    passed("base * s^(d/(d-2)): the fastest pair is untouched and the slowest is slowed exactly s times")


def check_far_mass(far_mass) -> None:
    """far_mass(weights [T, T] tensor, min_distance) -> [T]: attention on keys >= min_distance back."""
    import torch

    generator = torch.Generator().manual_seed(6)
    for T, distance in [(6, 2), (9, 1), (12, 4), (5, 5), (7, 3)]:
        scores = torch.randn(T, T, generator=generator, dtype=torch.float64)
        weights = scores.masked_fill(torch.ones(T, T, dtype=torch.bool).triu(1), float("-inf")).softmax(-1)
        what = f"far_mass(<causal {T}x{T} weights>, {distance})"
        got = _matrix(call(far_mass, weights.clone(), distance), what, (T,))
        want = far_attention_mass(weights, distance).numpy()
        if np.allclose(got, want, atol=1e-9):
            continue
        if distance > 1 and np.allclose(got, far_attention_mass(weights, distance + 1).numpy(), atol=1e-9):
            raise ExerciseError(f"{what}: a key exactly {distance} tokens back counts as far too (use >=, not >)")
        if np.allclose(got, far_attention_mass(weights.T.contiguous(), distance).numpy(), atol=1e-9) or \
                np.allclose(got, (weights * (torch.arange(T)[None, :] - torch.arange(T)[:, None] >= distance))
                            .sum(-1).numpy(), atol=1e-9):
            raise ExerciseError(f"{what}: rows are queries and columns keys; a far key j sits at "
                                f"i - j >= {distance} (before the query i), and you sum over j (the last dim)")
        raise ExerciseError(f"{what}: expected {np.round(want, 4).tolist()}, got {np.round(got, 4).tolist()}")
    passed("for each query i, the weights of keys j with i - j >= min_distance, summed over j")

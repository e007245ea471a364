"""Checkers for the exercises of chapter 4 (attention).

Notebook 1: ``score_scale``, ``sliding_window_mask``, ``masked_softmax``.
Notebook 2: ``mispaired_heads``, ``mla_cache_bytes``, ``repeat_kv``.
(``softmax_jacobian``, ``causal_attention``, ``split_heads`` and
``kv_cache_bytes`` were earlier exercises; their checkers stay for courses
that still assign them.)

Each checker runs the reader's function on small random tensors (seeded, so a
message is reproducible), compares with PyTorch's own answer, and, when the
answer is wrong, tests it against the usual mistakes to say which one it is.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from minillm.exercises import ExerciseError, call, expect_close, expect_number, passed


def _as_tensor(got, what: str, shape: tuple[int, ...]) -> torch.Tensor:
    if not isinstance(got, torch.Tensor):
        raise ExerciseError(f"{what}: expected a torch.Tensor, got {type(got).__name__}")
    if tuple(got.shape) != shape:
        raise ExerciseError(f"{what}: expected shape {shape}, got {tuple(got.shape)}")
    return got.detach().to(torch.float64)


def _close(a: torch.Tensor, b: torch.Tensor) -> bool:
    return a.shape == b.shape and torch.allclose(a, b.to(a.dtype), rtol=1e-5, atol=1e-7, equal_nan=False)


def _rand(*shape: int, seed: int) -> torch.Tensor:
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)


# --- notebook 1 ---------------------------------------------------------------

def check_softmax_jacobian(softmax_jacobian) -> None:
    """softmax_jacobian(p) -> J (n, n) with J[i, j] = d p_i / d z_j = p_i (1[i=j] - p_j)."""
    for seed, n in enumerate((2, 3, 6)):
        z = _rand(n, seed=seed) * 2
        p = torch.softmax(z, dim=0)
        what = f"softmax_jacobian(p) for n = {n}"
        got = _as_tensor(call(softmax_jacobian, p.clone()), what, (n, n))
        want = torch.autograd.functional.jacobian(lambda x: torch.softmax(x, dim=0), z)
        if _close(got, want):
            continue
        if _close(got, -want):
            raise ExerciseError(f"{what} has the wrong sign: it is diag(p) - p p^T, not p p^T - diag(p)")
        if _close(got, torch.diag(p)):
            raise ExerciseError(f"{what}: you returned diag(p); changing z_j also lowers every other "
                                f"p_i (they must sum to 1), so subtract the outer product p p^T")
        if _close(got, torch.diag(p) - torch.diag(p * p)):
            raise ExerciseError(f"{what}: only the diagonal is right; off the diagonal "
                                f"J[i, j] = -p_i p_j (use the full outer product p p^T)")
        raise ExerciseError(f"{what}: expected {want.numpy().round(4).tolist()}, got {got.numpy().round(4).tolist()}")
    p = torch.tensor([1.0 - 2e-9, 1e-9, 1e-9], dtype=torch.float64)
    norm = float(torch.linalg.matrix_norm(_as_tensor(call(softmax_jacobian, p), "softmax_jacobian(one-hot)", (3, 3))))
    expect_close(norm, 0.0, "‖softmax_jacobian(almost one-hot p)‖", abs_=1e-7)
    passed("J = diag(p) - p pᵀ, and it vanishes when p is one-hot (a saturated softmax passes no gradient)")


def _causal_reference(q, k, v, scale, causal=True, dim=-1, diagonal=0):
    scores = q @ k.transpose(-2, -1) * scale
    if causal:
        T, S = scores.shape[-2:]
        allowed = torch.ones(T, S, dtype=torch.bool).tril(diagonal)
        scores = scores.masked_fill(~allowed, float("-inf"))
    return torch.softmax(scores, dim=dim) @ v


def check_causal_attention(causal_attention) -> None:
    """causal_attention(q, k, v) -> softmax(q kᵀ / sqrt(d) + causal mask) v, over the last two dims."""
    shapes = [((5, 4), (5, 3)), ((2, 3, 6, 8), (2, 3, 6, 8)), ((1, 1, 1, 2), (1, 1, 1, 2))]
    for seed, (qk_shape, v_shape) in enumerate(shapes):
        q, k, v = _rand(*qk_shape, seed=seed), _rand(*qk_shape, seed=seed + 10), _rand(*v_shape, seed=seed + 20)
        d = qk_shape[-1]
        what = f"causal_attention(q, k, v) with q, k {tuple(qk_shape)} and v {tuple(v_shape)}"
        got = call(causal_attention, q.clone(), k.clone(), v.clone())
        out_shape = tuple(qk_shape[:-1]) + (v_shape[-1],)
        got = _as_tensor(got, what, out_shape)
        want = F.scaled_dot_product_attention(q, k, v, is_causal=True)
        if _close(got, want):
            continue
        if torch.isnan(got).any():
            raise ExerciseError(f"{what} contains NaN: the first query must still see itself; "
                                f"the mask allows key j for query i when j <= i (torch.tril keeps the diagonal)")
        mistakes = [
            (dict(scale=1.0), "you did not scale the scores: divide q kᵀ by sqrt(d) = sqrt(q.shape[-1])"),
            (dict(scale=1 / d), "you divided the scores by d; the scale is 1/sqrt(d)"),
            (dict(scale=d ** -0.5, causal=False), "no causal mask: query i must not see keys j > i "
                                                  "(set those scores to -inf before the softmax)"),
            (dict(scale=d ** -0.5, dim=-2), "the softmax runs over queries (dim -2); "
                                            "each query's weights over the keys must sum to 1: use dim=-1"),
            (dict(scale=d ** -0.5, diagonal=-1), "your mask hides the diagonal too: a query may attend to itself"),
        ]
        for kwargs, message in mistakes:
            wrong = torch.nan_to_num(_causal_reference(q, k, v, **kwargs), nan=0.0)
            if _close(got, wrong):
                raise ExerciseError(f"{what}: {message}")
        raise ExerciseError(f"{what}: differs from F.scaled_dot_product_attention(q, k, v, is_causal=True) "
                            f"by up to {float((got - want).abs().max()):.3g}")
    passed("softmax(q kᵀ / √d with future keys at -inf) v, the same as F.scaled_dot_product_attention(is_causal=True)")


def check_masked_softmax(masked_softmax) -> None:
    """masked_softmax(scores, mask) -> softmax over the allowed (True) entries of
    each row, 0 elsewhere; a row with nothing allowed is all zeros (never NaN)."""
    scores = _rand(4, 5, seed=3) * 3
    mask = torch.tensor([[1, 1, 1, 1, 1], [1, 0, 1, 0, 0], [0, 0, 0, 0, 0], [0, 0, 0, 1, 0]], dtype=torch.bool)
    what = "masked_softmax(scores, mask) for a 4 x 5 score matrix whose third row is fully masked"
    got = _as_tensor(call(masked_softmax, scores.clone(), mask.clone()), what, (4, 5))
    if torch.isnan(got).any():
        rows = torch.isnan(got).any(-1).nonzero().flatten().tolist()
        raise ExerciseError(f"{what}: row(s) {rows} are NaN. A row with every entry at -inf is "
                            f"softmax over nothing, exp(-inf - (-inf)) = NaN: give such rows zeros")
    if (got[~mask].abs() > 1e-12).any():
        if torch.allclose(got[2], torch.full((5,), 0.2, dtype=got.dtype)):
            raise ExerciseError(f"{what}: the fully masked row is uniform (0.2 each), which is what a "
                                f"large finite negative fill gives; it must be all zeros, attending to nothing")
        raise ExerciseError(f"{what}: masked entries (mask False) got nonzero weight, "
                            f"e.g. {float(got[~mask].abs().max()):.3g}")
    want = torch.nan_to_num(torch.softmax(scores.masked_fill(~mask, float("-inf")), dim=-1), nan=0.0)
    if not _close(got, want):
        raise ExerciseError(f"{what}: the allowed entries of each row must be softmax over the allowed "
                            f"scores only; expected {want.numpy().round(3).tolist()}, got {got.numpy().round(3).tolist()}")
    batched = _rand(2, 3, 4, 4, seed=4)
    bmask = torch.ones(4, 4, dtype=torch.bool).tril().expand(2, 3, 4, 4)
    got = _as_tensor(call(masked_softmax, batched.clone(), bmask.clone()), "masked_softmax on [2, 3, 4, 4]", (2, 3, 4, 4))
    if not _close(got, torch.softmax(batched.masked_fill(~bmask, float("-inf")), dim=-1)):
        raise ExerciseError("masked_softmax must work on any leading dims, softmax over the last one")
    passed("masked entries get exactly 0, and a row with nothing to attend to is all zeros instead of NaN")


# --- notebook 2 ---------------------------------------------------------------

def check_split_heads(split_heads) -> None:
    """split_heads(x, n_heads): [B, T, H*D] -> [B, H, T, D], head h = features h*D:(h+1)*D."""
    for seed, (B, T, H, D) in enumerate([(2, 5, 3, 4), (1, 7, 4, 2), (3, 1, 2, 6)]):
        x = _rand(B, T, H * D, seed=seed)
        what = f"split_heads(x of shape {(B, T, H * D)}, n_heads={H})"
        got = _as_tensor(call(split_heads, x.clone(), H), what, (B, H, T, D))
        want = x.view(B, T, H, D).transpose(1, 2)
        if _close(got, want):
            continue
        if _close(got, x.reshape(B, H, T, D)):
            raise ExerciseError(f"{what}: x.view(B, H, T, D) has the right shape but mixes time and "
                                f"features: reshape to (B, T, H, D) first, then transpose(1, 2)")
        if _close(got, x.view(B, T, D, H).permute(0, 3, 1, 2)):
            raise ExerciseError(f"{what}: you split the features as (D, H); head h owns the contiguous "
                                f"block of features h*D ... (h+1)*D - 1: view as (B, T, H, D)")
        raise ExerciseError(f"{what}: wrong values; head h at time t must be x[b, t, h*D:(h+1)*D]")
    passed("view(B, T, H, D).transpose(1, 2): heads become a batch dimension, time stays in order")


def check_repeat_kv(repeat_kv) -> None:
    """repeat_kv(x, groups): [B, K, S, D] -> [B, K*groups, S, D], kv head h // groups at position h."""
    for seed, (B, K, S, D, g) in enumerate([(1, 2, 3, 4, 4), (2, 3, 5, 2, 2), (1, 4, 2, 2, 1), (1, 1, 3, 2, 3)]):
        x = _rand(B, K, S, D, seed=seed)
        what = f"repeat_kv(x of shape {(B, K, S, D)}, groups={g})"
        got = _as_tensor(call(repeat_kv, x.clone(), g), what, (B, K * g, S, D))
        want = x.repeat_interleave(g, dim=1)
        if _close(got, want):
            continue
        if _close(got, x.repeat(1, g, 1, 1)):
            raise ExerciseError(f"{what}: this is x.repeat(1, groups, 1, 1), which tiles the heads "
                                f"(k0, k1, k0, k1, ...): query head h would use kv head h % K instead "
                                f"of h // groups. Repeat each head in place: (k0, k0, k1, k1, ...)")
        raise ExerciseError(f"{what}: output head h must be input kv head h // groups")
    passed("each kv head repeated in place, the same as x.repeat_interleave(groups, dim=1)")


def check_kv_cache_bytes(kv_cache_bytes) -> None:
    """kv_cache_bytes(n_layers, n_kv_heads, head_dim, seq_len, batch_size, bytes_per_element) -> int."""
    cases = [(32, 32, 128, 4096, 1, 2), (32, 8, 128, 4096, 4, 2), (4, 2, 32, 256, 1, 4), (1, 1, 1, 1, 3, 1)]
    for L, K, D, T, B, nbytes in cases:
        what = f"kv_cache_bytes(n_layers={L}, n_kv_heads={K}, head_dim={D}, seq_len={T}, batch_size={B}, bytes_per_element={nbytes})"
        got = call(kv_cache_bytes, L, K, D, T, B, nbytes)
        want = 2 * L * K * D * T * B * nbytes
        try:
            value = float(got)
        except (TypeError, ValueError):
            raise ExerciseError(f"{what}: expected a number of bytes, got {got!r}") from None
        if math.isclose(value, want / 2):
            raise ExerciseError(f"{what}: {value:.0f} is half the answer: the cache holds keys AND values (factor 2)")
        if B > 1 and math.isclose(value, want / B):
            raise ExerciseError(f"{what}: every sequence of the batch has its own cache: multiply by batch_size")
        if nbytes > 1 and math.isclose(value, want / nbytes):
            raise ExerciseError(f"{what}: you counted elements; multiply by bytes_per_element")
        expect_close(value, want, what, rel=1e-12)
    passed("2 × layers × kv_heads × head_dim × tokens × batch × bytes: 2 GiB for one 4096-token Llama-2-7B sequence in fp16")


# --- notebook 1, idea exercises -------------------------------------------------

def check_score_scale(score_scale) -> None:
    """score_scale(d_k, var_q, var_k) -> c with Var(c q.k) = 1 for independent,
    mean-0 entries of variances var_q and var_k: c = 1 / sqrt(d_k var_q var_k)."""
    for d_k, var_q, var_k in ((64, 1.0, 1.0), (16, 4.0, 1.0), (128, 0.25, 9.0), (8, 2.0, 0.5)):
        what = f"score_scale(d_k={d_k}, var_q={var_q}, var_k={var_k})"
        got = expect_number(call(score_scale, d_k, var_q, var_k), what)
        want = 1 / math.sqrt(d_k * var_q * var_k)
        if math.isclose(got, want, rel_tol=1e-6):
            continue
        if math.isclose(got, 1 / math.sqrt(d_k), rel_tol=1e-6):
            raise ExerciseError(f"{what}: you returned 1/sqrt(d_k), which is right only for unit "
                                f"variances; each product q_m k_m has variance var_q * var_k")
        if math.isclose(got, 1 / math.sqrt(d_k) / (var_q * var_k), rel_tol=1e-6):
            raise ExerciseError(f"{what}: you divided by the variances; a scale c multiplies "
                                f"the variance by c^2, so divide by their square roots")
        if math.isclose(got, 1 / (d_k * var_q * var_k), rel_tol=1e-6):
            raise ExerciseError(f"{what}: you divided by the variance of q.k; the scale must "
                                f"divide by its standard deviation (Var(c x) = c^2 Var(x))")
        raise ExerciseError(f"{what}: expected {want:.6g}, got {got:.6g}")
    passed("Var(q·k) = d_k var_q var_k, so c = 1/sqrt(d_k var_q var_k); 1/sqrt(d_k) assumes unit variances")


def _window_reference(T: int, window: int) -> torch.Tensor:
    i = torch.arange(T)[:, None]
    j = torch.arange(T)[None, :]
    return (j <= i) & (i - j < window)


def check_sliding_window_mask(sliding_window_mask) -> None:
    """sliding_window_mask(T, window) -> bool [T, T]: query i may attend key j
    when j <= i and i - j < window (the query itself and window - 1 before it)."""
    for T, window in ((6, 3), (5, 1), (8, 4), (4, 10)):
        what = f"sliding_window_mask(T={T}, window={window})"
        got = call(sliding_window_mask, T, window)
        if not isinstance(got, torch.Tensor):
            raise ExerciseError(f"{what}: expected a torch.Tensor, got {type(got).__name__}")
        if tuple(got.shape) != (T, T):
            raise ExerciseError(f"{what}: expected shape {(T, T)}, got {tuple(got.shape)}")
        if got.dtype != torch.bool:
            raise ExerciseError(f"{what}: expected a boolean mask (True = may attend), got {got.dtype}")
        want = _window_reference(T, window)
        if torch.equal(got, want):
            continue
        if torch.equal(got, _window_reference(T, window + 1)):
            raise ExerciseError(f"{what}: off by one; a window of {window} keys is the query "
                                f"itself and the {window - 1} before it (i - j < window)")
        if torch.equal(got, _window_reference(T, window) | _window_reference(T, window).T):
            raise ExerciseError(f"{what}: your mask lets queries see future keys; keep j <= i")
        if torch.equal(got, ~want):
            raise ExerciseError(f"{what}: True must mean 'may attend'; your mask is inverted")
        raise ExerciseError(f"{what}: expected\n{want.int()}\ngot\n{got.int()}")
    passed("each query sees itself and the window - 1 keys before it; a window >= T is the causal mask")


# --- notebook 2, idea exercises -------------------------------------------------

def check_mispaired_heads(mispaired_heads) -> None:
    """mispaired_heads(n_heads, n_kv_heads) -> how many query heads ``.repeat``
    (tiling) pairs with a different kv head than repeat_interleave."""
    cases = ((8, 2), (32, 8), (64, 8), (28, 4), (8, 1), (8, 8), (12, 3))
    for H, K in cases:
        groups = H // K
        want = sum(1 for h in range(H) if h % K != h // groups)
        what = f"mispaired_heads(n_heads={H}, n_kv_heads={K})"
        got = expect_number(call(mispaired_heads, H, K), what)
        if got == want:
            continue
        if got == H // 2 and want != H // 2:
            raise ExerciseError(f"{what}: it is not always half; compare h % n_kv_heads (what "
                                f".repeat gives head h) with h // (n_heads // n_kv_heads)")
        if got == H - want:
            raise ExerciseError(f"{what}: you counted the heads that are paired correctly")
        raise ExerciseError(f"{what}: expected {want}, got {got:g}")
    passed("tiling gives head h kv head h % K, interleaving h // (H/K): 4 of 8 for K = 2, "
           "28 of 32 for Llama 3 8B, none for MQA or MHA")


def check_mla_cache_bytes(mla_cache_bytes) -> None:
    """mla_cache_bytes(n_layers, kv_lora_rank, rope_dim, seq_len, batch, bytes_per_number):
    MLA caches one latent (kv_lora_rank) and one shared RoPE key (rope_dim) per
    token and layer, no separate keys and values."""
    cases = ((61, 512, 64, 4096, 1, 2), (27, 512, 64, 1000, 3, 2), (4, 32, 8, 100, 2, 4))
    for L, r, d_rope, T, B, nbytes in cases:
        what = (f"mla_cache_bytes(n_layers={L}, kv_lora_rank={r}, rope_dim={d_rope}, "
                f"seq_len={T}, batch={B}, bytes_per_number={nbytes})")
        got = expect_number(call(mla_cache_bytes, L, r, d_rope, T, B, nbytes), what)
        want = L * (r + d_rope) * T * B * nbytes
        if got == want:
            continue
        if got == 2 * want:
            raise ExerciseError(f"{what}: you doubled it as for keys and values; MLA caches one "
                                f"latent from which both are reconstructed, so no factor 2")
        if got == L * r * T * B * nbytes:
            raise ExerciseError(f"{what}: you left out the decoupled RoPE key (rope_dim numbers "
                                f"per token and layer, shared by all heads)")
        if got == want // nbytes:
            raise ExerciseError(f"{what}: that is the count of numbers; multiply by bytes_per_number")
        raise ExerciseError(f"{what}: expected {want:,}, got {got:,.0f}")
    passed("(kv_lora_rank + rope_dim) numbers per token and layer: DeepSeek-V3 caches 576 "
           "where 128 full heads would cache 40,960")

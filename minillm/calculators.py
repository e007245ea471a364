"""Back-of-the-envelope calculators: parameters, FLOPs, time and memory.

These work from a model's *published shape* alone, so they answer questions
about models far too big to build: how many parameters does GPT-3 have, how
much compute did it take to train, how long would that take on a given cluster.

The parameter formulas are for the GPT-2 / GPT-3 family (Radford et al. 2019;
Brown et al. 2020): learned position embeddings, LayerNorm with a bias, a
ReLU/GELU MLP of width ``d_ff`` (4 d by default), biases on every linear layer
and an LM head tied to the token embedding. For the book's own Llama-style
model use ``minillm.config.count_parameters`` instead.

    >>> gpt_parameter_count(**GPT2_SMALL)
    124439808
    >>> f"{training_flops(175e9, 300e9):.3g}"
    '3.15e+23'
"""
from __future__ import annotations

SECONDS_PER_DAY = 86_400

#: Published shapes (vocabulary 50257 for both: GPT-3 reuses GPT-2's tokenizer).
GPT2_SMALL = dict(n_layers=12, d_model=768, vocab_size=50257, n_ctx=1024)
GPT3_175B = dict(n_layers=96, d_model=12288, vocab_size=50257, n_ctx=2048)

#: GPT-3 Table 2.1 (Brown et al. 2020): name -> (n_layers, d_model, published n_params).
GPT3_TABLE: dict[str, tuple[int, int, float]] = {
    "GPT-3 Small": (12, 768, 125e6),
    "GPT-3 Medium": (24, 1024, 350e6),
    "GPT-3 Large": (24, 1536, 760e6),
    "GPT-3 XL": (24, 2048, 1.3e9),
    "GPT-3 2.7B": (32, 2560, 2.7e9),
    "GPT-3 6.7B": (32, 4096, 6.7e9),
    "GPT-3 13B": (40, 5140, 13.0e9),
    "GPT-3 175B": (96, 12288, 175.0e9),
}


def _positive(**values) -> None:
    for name, value in values.items():
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0:
            raise ValueError(f"{name} must be a positive number, got {value!r}")


def gpt_parameter_breakdown(n_layers: int, d_model: int, vocab_size: int, n_ctx: int,
                            d_ff: int | None = None, tie_embeddings: bool = True) -> dict[str, int]:
    """Parameters of a GPT-2/3-style model, split by part.

    Per block (d = d_model, f = d_ff):
      attention: fused q,k,v projection d x 3d plus bias 3d, output d x d plus bias d
      mlp:       d x f plus bias f, f x d plus bias d
      norms:     two LayerNorms, each a scale and a bias of d
    plus the token embedding V x d, the position embedding n_ctx x d, the final
    LayerNorm 2d and, only if untied, an LM head V x d.
    With f = 4d one block holds 12 d^2 + 13 d parameters.
    """
    d_ff = 4 * d_model if d_ff is None else d_ff
    _positive(n_layers=n_layers, d_model=d_model, vocab_size=vocab_size, n_ctx=n_ctx, d_ff=d_ff)
    d, f, L = d_model, d_ff, n_layers
    return {
        "token embedding": vocab_size * d,
        "position embedding": n_ctx * d,
        "attention": L * (3 * d * d + 3 * d + d * d + d),
        "mlp": L * (d * f + f + f * d + d),
        "norms": L * 2 * (2 * d) + 2 * d,
        "lm head": 0 if tie_embeddings else vocab_size * d,
    }


def gpt_parameter_count(n_layers: int, d_model: int, vocab_size: int, n_ctx: int,
                        d_ff: int | None = None, tie_embeddings: bool = True) -> int:
    """Total of ``gpt_parameter_breakdown``: e.g. 124,439,808 for GPT-2 small."""
    return sum(gpt_parameter_breakdown(n_layers, d_model, vocab_size, n_ctx, d_ff, tie_embeddings).values())


def training_flops(n_params: float, n_tokens: float) -> float:
    """Training compute C = 6 N D FLOPs (Kaplan et al. 2020).

    Each of the N weights does one multiply-add (2 FLOPs) per token in the
    forward pass; the backward pass computes gradients for both the
    activations and the weights, twice the forward work: 2 + 4 = 6 per token.
    Ignores attention's own T-dependent term (``attention_flops_per_token``).
    """
    _positive(n_params=n_params, n_tokens=n_tokens)
    return 6.0 * n_params * n_tokens


def attention_flops_per_token(n_layers: int, seq_len: int, d_model: int, training: bool = True) -> float:
    """The attention scores and the weighted sum, which no weight matrix counts.

    Per layer and token: q.k against T keys (T d multiply-adds) and the weighted
    sum of T values (T d more): 4 L T d FLOPs forward, 12 L T d to train.
    Counted over the full T x T square, as in PaLM's 6N + 12LTd.
    """
    _positive(n_layers=n_layers, seq_len=seq_len, d_model=d_model)
    forward = 4.0 * n_layers * seq_len * d_model
    return 3 * forward if training else forward


def pf_days(flops: float) -> float:
    """FLOPs expressed in petaflop/s-days (1e15 FLOP/s for a day), GPT-3's unit."""
    return flops / (1e15 * SECONDS_PER_DAY)


def training_days(flops: float, n_devices: int, peak_flops_per_device: float, utilization: float) -> float:
    """Wall-clock days to spend ``flops`` on ``n_devices`` accelerators that each
    reach ``utilization`` (0 < u <= 1; 0.3-0.5 is typical) of their peak FLOP/s."""
    _positive(flops=flops, n_devices=n_devices, peak_flops_per_device=peak_flops_per_device, utilization=utilization)
    if utilization > 1:
        raise ValueError(f"utilization is a fraction of peak, at most 1, got {utilization!r}")
    return flops / (n_devices * peak_flops_per_device * utilization) / SECONDS_PER_DAY


def weight_bytes(n_params: float, bytes_per_param: float = 2) -> float:
    """Memory for the weights alone: 2 bytes each in bf16/fp16, 4 in fp32."""
    _positive(n_params=n_params, bytes_per_param=bytes_per_param)
    return n_params * bytes_per_param


#: Bytes per parameter of mixed-precision Adam (Rajbhandari et al. 2020): fp16/bf16
#: weights (2) and gradients (2); K = 12 of optimizer states: an fp32 master copy
#: of the weights and Adam's two fp32 moments, 4 + 4 + 4.
ZERO_BYTES = dict(weight_bytes=2, grad_bytes=2, optimizer_bytes=12)


def zero_model_state_bytes(n_params: float, stage: int, n_devices: int, weight_bytes: float = 2,
                           grad_bytes: float = 2, optimizer_bytes: float = 12) -> dict[str, float]:
    """Model-state bytes on each of ``n_devices`` data-parallel devices under ZeRO.

    With Psi parameters, N devices and K = optimizer_bytes:
      stage 0 (plain DP): (2 + 2 + K) Psi   everything replicated
      stage 1:  2 Psi + 2 Psi + K Psi / N   optimizer states sharded
      stage 2:  2 Psi + (2 + K) Psi / N     + gradients sharded
      stage 3:  (2 + 2 + K) Psi / N         + weights sharded
    Activations, buffers and fragmentation come on top (ZeRO does not shard
    activations). Returns {"weights", "gradients", "optimizer states", "total"}.
    """
    _positive(n_params=n_params, n_devices=n_devices)
    if stage not in (0, 1, 2, 3):
        raise ValueError(f"ZeRO stage must be 0, 1, 2 or 3, got {stage!r}")
    if isinstance(n_devices, float) and not n_devices.is_integer():
        raise ValueError(f"n_devices must be a whole number, got {n_devices!r}")
    shard = [stage >= 3, stage >= 2, stage >= 1]  # weights, gradients, optimizer states
    parts = [("weights", weight_bytes), ("gradients", grad_bytes), ("optimizer states", optimizer_bytes)]
    out = {name: n_params * b / (n_devices if sharded else 1) for (name, b), sharded in zip(parts, shard)}
    out["total"] = sum(out.values())
    return out


def devices_needed(n_params: float, stage: int, device_bytes: float = 80e9, max_devices: int = 100_000,
                   **bytes_per_param) -> int | None:
    """The fewest data-parallel devices whose memory holds the model states under
    ZeRO ``stage`` (``zero_model_state_bytes``), or None if no number does: below
    stage 3 the replicated part alone may not fit, however many devices share the rest."""
    _positive(device_bytes=device_bytes, max_devices=max_devices)
    if zero_model_state_bytes(n_params, stage, max_devices, **bytes_per_param)["total"] > device_bytes:
        return None  # the memory per device only falls as devices are added
    return next(n for n in range(1, max_devices + 1)
                if zero_model_state_bytes(n_params, stage, n, **bytes_per_param)["total"] <= device_bytes)


def counted_flops(fn) -> dict[str, float]:
    """FLOPs of the matrix products that ``fn()`` runs, counted op by op.

    Uses ``torch.utils.flop_counter.FlopCounterMode``, which knows the cost of
    every matrix product (``mm``, ``addmm``, ``bmm``, attention kernels) from
    its shapes: an [m, k] @ [k, n] product is 2 m k n FLOPs. Call a forward
    pass and ``backward()`` inside ``fn`` to count a training step. Elementwise
    work (norms, activations, softmax, the optimizer) counts zero, as in the
    6N rule. Attention is counted over the full T x T square even when causal,
    as PaLM's 12 L T d does. PyTorch's CPU attention kernel has no formula of
    its own, so it is given the same as the GPU kernels.

    Returns ``{op name: FLOPs}`` plus ``"total"``.
    """
    import torch
    from torch.utils import flop_counter

    aten = torch.ops.aten
    cpu_attention = {  # (query, key, value, ...) and (grad_out, query, key, value, ...)
        aten._scaled_dot_product_flash_attention_for_cpu:
            lambda q, k, v, *args, **kwargs: flop_counter.sdpa_flop_count(q, k, v),
        aten._scaled_dot_product_flash_attention_for_cpu_backward:
            lambda g, q, k, v, *args, **kwargs: flop_counter.sdpa_backward_flop_count(g, q, k, v),
    }
    with flop_counter.FlopCounterMode(display=False, custom_mapping=cpu_attention) as counter:
        fn()
    by_op = {str(op).removeprefix("aten."): float(n)
             for op, n in counter.get_flop_counts()["Global"].items()}
    return {**by_op, "total": float(counter.get_total_flops())}


def matmul_flops_per_second(size: int = 1024, seconds: float = 0.5) -> float:
    """This machine's measured float32 matrix-product rate (FLOP/s) with the
    current ``torch.get_num_threads()``: [size, size] @ [size, size] products,
    repeated for about ``seconds`` of this process's CPU time. CPU time, not
    wall time, so that other programs on a busy machine do not count; the best
    of five timings, since interruptions only ever slow a product down.
    The denominator of a CPU's model FLOPs utilisation."""
    import time

    import torch

    a, b = torch.randn(size, size), torch.randn(size, size)
    a @ b  # warm up
    start = time.process_time()
    a @ b
    once = max(time.process_time() - start, 1e-4)
    repeats = max(1, int(seconds / 5 / once))
    best = float("inf")
    for _ in range(5):
        start = time.process_time()
        for _ in range(repeats):
            a @ b
        best = min(best, (time.process_time() - start) / repeats)
    return 2 * size ** 3 / best

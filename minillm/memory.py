"""Where training memory goes: parameter states, activations, and checkpointing.

Two kinds of memory fill an accelerator while a model trains:

* **model states**, a fixed number of bytes per parameter: weights, gradients,
  AdamW's two moments and, in mixed precision, an fp32 master copy of the
  weights (``BYTES_PER_PARAMETER``; the "16 bytes per parameter" of
  Rajbhandari et al. 2020);
* **activations**, the tensors autograd saves during the forward pass for the
  backward pass. They grow with batch size and sequence length.

``activation_bytes`` writes the activation count term by term for the book's
block (``minillm.model.Block``) in fp32, and ``saved_tensor_bytes`` measures
it on any device by summing the tensors autograd actually saves.
``gradient_checkpointing(model)`` keeps only each block's input and recomputes
the rest during backward (Chen et al. 2016).
"""
from __future__ import annotations

from contextlib import contextmanager

import torch
from torch.utils.checkpoint import checkpoint

from minillm.config import ModelConfig

#: Bytes per parameter for AdamW training. fp32: weights, gradients and both
#: moments in fp32. mixed: 16-bit weights and gradients for the forward and
#: backward passes, plus an fp32 master copy that the optimizer updates (a
#: 16-bit weight cannot absorb an update 1000x smaller than itself).
#: autocast: ``torch.autocast``'s layout of the same 16 bytes: the fp32
#: parameters are the master copy, gradients arrive in fp32, and the 16-bit
#: copies of the weights are cached until the autocast region ends (and saved
#: for backward, so they count among the activations, not here).
#: pure bf16: the model cast to bf16, Adam's moments too, no fp32 copy at all.
BYTES_PER_PARAMETER: dict[str, dict[str, int]] = {
    "fp32": {"weights": 4, "gradients": 4, "master weights": 0, "adam m": 4, "adam v": 4},
    "mixed": {"weights": 2, "gradients": 2, "master weights": 4, "adam m": 4, "adam v": 4},
    "autocast": {"weights": 4, "gradients": 4, "master weights": 0, "adam m": 4, "adam v": 4},
    "pure bf16": {"weights": 2, "gradients": 2, "master weights": 0, "adam m": 2, "adam v": 2},
}


def model_state_bytes(n_params: int | float, precision: str = "mixed") -> dict[str, float]:
    """Bytes of each model state for ``n_params`` parameters trained with AdamW."""
    if precision not in BYTES_PER_PARAMETER:
        raise ValueError(f"precision must be one of {sorted(BYTES_PER_PARAMETER)}, got {precision!r}")
    if isinstance(n_params, bool) or not isinstance(n_params, (int, float)) or not n_params > 0:
        raise ValueError(f"n_params must be a positive number, got {n_params!r}")
    return {name: n_params * b for name, b in BYTES_PER_PARAMETER[precision].items()}


def held_state_bytes(model: torch.nn.Module, optimizer: torch.optim.Optimizer) -> dict[str, int]:
    """Bytes of the model states PyTorch actually holds: every parameter, its
    ``.grad`` (0 if None) and each tensor in the optimizer's state (AdamW:
    ``exp_avg`` = m, ``exp_avg_sq`` = v; the scalar step counter is skipped).
    Returns {"weights", "gradients", "adam m", "adam v", ...} in bytes."""
    names = {"exp_avg": "adam m", "exp_avg_sq": "adam v"}
    held = {"weights": 0, "gradients": 0}
    for p in model.parameters():
        held["weights"] += p.numel() * p.element_size()
        if p.grad is not None:
            held["gradients"] += p.grad.numel() * p.grad.element_size()
        for name, state in optimizer.state.get(p, {}).items():
            if torch.is_tensor(state) and state.dim() > 0:
                key = names.get(name, name)
                held[key] = held.get(key, 0) + state.numel() * state.element_size()
    return held


def activation_terms(config: ModelConfig, attention: str = "flash") -> dict[str, int]:
    """Numbers saved for backward per token and per block, by the tensor that holds them.

    attention="flash": SDPA's fused kernel (PyTorch's default for causal
    attention without a padding mask) saves q, k, v, its output and one
    logsumexp per head and query: no T x T matrix. attention="math": the
    unfused path saves the softmax probabilities, H x T per token (so the
    total grows like T^2), and k, v already repeated to all H heads.
    Returns {term: count}; "probs" is per token per key position (multiply by T).
    """
    if attention not in ("flash", "math"):
        raise ValueError(f"attention must be 'flash' or 'math', got {attention!r}")
    if config.mlp != "swiglu" or config.qkv_bias or config.attention_bias or config.mlp_bias:
        raise ValueError("activation_terms counts the book's default block (SwiGLU, no biases)")
    d, f, H = config.d_model, config.d_ff, config.n_heads
    kv = (config.n_kv_heads if attention == "flash" else H) * config.head_dim
    terms = {
        "attn_norm: input x, x*rsqrt, output (the q/k/v input)": 3 * d,
        "attn_norm: rsqrt(mean x^2)": 1,
        "attention: q (after RoPE)": d,
        "attention: k and v": 2 * kv,
        "attention: output (the o_proj input)": d,
        "mlp_norm: input, x*rsqrt, output (the gate/up input)": 3 * d,
        "mlp_norm: rsqrt(mean x^2)": 1,
        "mlp: gate, up, silu(gate), silu(gate)*up": 4 * f,
    }
    if attention == "flash":
        terms["attention: logsumexp per head"] = H
    else:
        terms["attention: softmax probs per head (x T)"] = H
    return terms


def activation_bytes(config: ModelConfig, batch: int, seq: int, attention: str = "flash",
                     checkpointing: bool = False) -> dict[str, int]:
    """Bytes autograd saves for one fp32 training forward of ``Transformer.loss``.

    Per block: ``activation_terms`` x batch x seq x 4 bytes (the probs term
    x seq once more). With ``checkpointing`` a block keeps only its input,
    d numbers per token. Outside the blocks: the token ids and shifted targets
    (int64), RoPE's cos and sin (T x head_dim each, shared by all blocks), the
    final norm like a block's norm, and log_softmax's output over the
    vocabulary (the largest single tensor of a small model), plus the loss's
    4-byte token count. Returns {"blocks", "embedding and rope", "head", "total"}.
    """
    for name, value in (("batch", batch), ("seq", seq)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"{name} must be a positive integer, got {value!r}")
    n, d = batch * seq, config.d_model
    if checkpointing:
        per_token = d
    else:
        terms = activation_terms(config, attention)
        per_token = sum(v * (seq if "x T" in k else 1) for k, v in terms.items())
    blocks = config.n_layers * n * per_token * 4
    embedding = n * 8 + 2 * seq * config.head_dim * 4
    # lm_loss flattens the shifted targets: a copy of B*T ids, except at batch 1,
    # where the flat view keeps the padded [1, T + 1] labels alive instead.
    targets = (seq + 1) * 8 if batch == 1 else n * 8
    head = n * (3 * d + 1) * 4 + n * config.vocab_size * 4 + targets + 4
    return {"blocks": blocks, "embedding and rope": embedding, "head": head,
            "total": blocks + embedding + head}


def saved_tensor_bytes(fn, exclude=()) -> tuple[object, int]:
    """Run ``fn()`` and measure the bytes of every tensor autograd saves for backward.

    Each saved tensor is counted by its storage, once (a view saved twice, or
    the same activation saved by two ops, costs memory once). Storages of the
    tensors in ``exclude`` (pass ``model.parameters()``) are not counted:
    weights are saved too, but they live in memory anyway.
    Returns (fn's result, bytes).
    """
    skip = {t.untyped_storage().data_ptr() for t in exclude}
    seen: dict[int, int] = {}

    def pack(tensor):
        storage = tensor.untyped_storage()
        if storage.data_ptr() not in skip:
            seen[storage.data_ptr()] = storage.nbytes()
        return tensor

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda tensor: tensor):
        result = fn()
    return result, sum(seen.values())


@contextmanager
def gradient_checkpointing(model: torch.nn.Module):
    """Inside the ``with``, each ``model.blocks[i]`` recomputes its forward in backward.

    Each block's forward is replaced, on the instance only (the class and
    model.py are untouched), by ``torch.utils.checkpoint.checkpoint`` around
    the original: the forward runs without saving its intermediate tensors,
    only the block's inputs are kept, and backward re-runs the block to get
    them back. Calls without gradients or with a KV cache (generation) run the
    block normally: recomputing would append to the cache twice.
    """
    if not hasattr(model, "blocks"):
        raise TypeError("gradient_checkpointing needs a model with .blocks, "
                        f"got {type(model).__name__}")

    def wrap(forward):
        def checkpointed(x, cos, sin, mask=None, kv_cache=None):
            if kv_cache is not None or not torch.is_grad_enabled():
                return forward(x, cos, sin, mask, kv_cache)
            return checkpoint(forward, x, cos, sin, mask, use_reentrant=False)
        return checkpointed

    for block in model.blocks:
        if "forward" in vars(block):
            raise RuntimeError("gradient_checkpointing is already active on this model")
        block.forward = wrap(block.forward)
    try:
        yield model
    finally:
        for block in model.blocks:
            del block.forward  # the class's forward shows through again


def peak_memory_bytes(fn, device: str | torch.device) -> tuple[object, int]:
    """Run ``fn()`` on a CUDA device; return (result, peak bytes allocated above
    the memory in use before the call). CUDA only: on CPU, PyTorch keeps no
    allocator statistics, so use ``saved_tensor_bytes`` there."""
    device = torch.device(device)
    if device.type != "cuda":
        raise ValueError(f"peak_memory_bytes needs a CUDA device, got {device}; use saved_tensor_bytes on CPU")
    torch.cuda.synchronize(device)
    torch.cuda.reset_peak_memory_stats(device)
    before = torch.cuda.memory_allocated(device)
    result = fn()
    torch.cuda.synchronize(device)
    return result, torch.cuda.max_memory_allocated(device) - before


def peak_tensor_bytes(fn) -> tuple[object, int]:
    """Run ``fn()`` on any device; return (result, the peak bytes of tensor
    storages that ``fn`` allocated and that were alive at the same time).

    Every PyTorch operation inside ``fn`` (forward, autograd's backward, the
    optimizer, autocast's casts) passes through a ``TorchDispatchMode``; each
    new storage an operation returns is counted until Python frees it (a
    ``weakref.finalize`` on the storage). Storages that existed before the call
    (weights, optimizer states) are not counted, nor outputs that alias an
    input (views, in-place updates). Memory a kernel uses internally and frees
    before returning is invisible, so this is a lower bound on the allocator's
    peak; on CUDA ``peak_memory_bytes`` asks the allocator itself.
    """
    import weakref

    from torch.utils._python_dispatch import TorchDispatchMode
    from torch.utils._pytree import tree_leaves

    live = {"now": 0, "peak": 0}
    counted: set[int] = set()

    def freed(key: int, nbytes: int) -> None:
        counted.discard(key)
        live["now"] -= nbytes

    class Tracker(TorchDispatchMode):
        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            out = func(*args, **(kwargs or {}))
            inputs = {t.untyped_storage().data_ptr() for t in tree_leaves((args, kwargs))
                      if isinstance(t, torch.Tensor) and t.layout == torch.strided}
            for t in tree_leaves(out):
                if not isinstance(t, torch.Tensor) or t.layout != torch.strided:
                    continue
                storage = t.untyped_storage()
                key = storage.data_ptr()
                if key in inputs or key in counted or storage.nbytes() == 0:
                    continue
                counted.add(key)
                live["now"] += storage.nbytes()
                live["peak"] = max(live["peak"], live["now"])
                weakref.finalize(storage, freed, key, storage.nbytes())
            return out

    with Tracker():
        result = fn()
    return result, live["peak"]

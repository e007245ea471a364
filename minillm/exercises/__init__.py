"""Autochecks for the book's exercises.

Every exercise asks the reader to write a function. The cell after it calls a
checker from this package, e.g. ``check_entropy(entropy_bits)``. A checker
calls the reader's function on a few inputs, compares with the book's answer,
and raises :class:`ExerciseError` with a message that says what went wrong.

In the student edition the body of the function is ``raise NotImplementedError``;
the checkers then say so, rather than failing with a bare traceback.

Checkers live in one module per chapter topic (``minillm.exercises.ngrams``,
...) and are re-exported here.
"""
from __future__ import annotations

import math
from typing import Any, Callable


class ExerciseError(AssertionError):
    """An exercise answer is missing or wrong; the message says why."""


class ExerciseNotImplemented(ExerciseError):
    """The exercise function still raises ``NotImplementedError``."""


def call(fn: Callable, *args: Any, **kwargs: Any) -> Any:
    """Call the reader's ``fn``; turn a stub's NotImplementedError into advice."""
    name = getattr(fn, "__name__", repr(fn))
    if not callable(fn):
        raise ExerciseError(f"expected a function, got {type(fn).__name__}: pass the function itself, not its result")
    try:
        return fn(*args, **kwargs)
    except NotImplementedError:
        raise ExerciseNotImplemented(
            f"`{name}` is not implemented yet: replace the line `raise NotImplementedError` "
            f"in its body with your solution, run that cell, then run this check again."
        ) from None


def expect_number(value: Any, what: str) -> float:
    """``value`` as a float; ExerciseError naming ``what`` if it is not one number
    (a one-element tensor counts; a longer tensor gets its own hint)."""
    shape = getattr(value, "shape", None)
    if shape is not None and getattr(value, "numel", lambda: 1)() != 1:
        raise ExerciseError(f"{what}: expected one number (e.g. a mean), "
                            f"got a tensor of shape {tuple(shape)}")
    try:
        return float(value.detach() if hasattr(value, "detach") else value)
    except (TypeError, ValueError):
        raise ExerciseError(f"{what}: expected a number, got {value!r}") from None


def expect_close(got: Any, want: float, what: str, rel: float = 1e-6, abs_: float = 1e-9) -> None:
    """Raise ExerciseError unless ``got`` is a number close to ``want``."""
    value = expect_number(got, what)
    if not math.isclose(value, want, rel_tol=rel, abs_tol=abs_):
        raise ExerciseError(f"{what}: expected {want:.6g}, got {value:.6g}")


def expect_tensor(value: Any, shape: tuple, what: str):
    """Raise ExerciseError unless ``value`` is a torch tensor of ``shape``;
    return it detached, in float64, ready to compare with the book's answer."""
    import torch

    if not isinstance(value, torch.Tensor):
        raise ExerciseError(f"{what}: expected a torch tensor, got {type(value).__name__}")
    if tuple(value.shape) != tuple(shape):
        raise ExerciseError(f"{what}: expected shape {tuple(shape)}, got {tuple(value.shape)}")
    return value.detach().double()


def passed(message: str = "") -> None:
    """Print the success line every checker ends with."""
    print("✓ correct" + (f": {message}" if message else ""))


# Every chapter's checkers, re-exported so a notebook can write
# `from minillm.exercises import check_x` (the helpers above come first: the
# topic modules import them from here).
from minillm.exercises.attention import (  # noqa: E402,F401
    check_softmax_jacobian, check_causal_attention, check_masked_softmax,
    check_split_heads, check_repeat_kv, check_kv_cache_bytes, check_score_scale,
    check_sliding_window_mask, check_mispaired_heads, check_mla_cache_bytes,
)
from minillm.exercises.block import (  # noqa: E402,F401
    check_rms_norm, check_layer_norm, check_gqa_matched_d_ff, check_product_swiglu,
    check_training_days, check_qk_norm_max_weight, check_fold_norm_gain,
)
from minillm.exercises.decoding import (  # noqa: E402,F401
    check_keep_top_k, check_distinct_2,
)
from minillm.exercises.distributed import (  # noqa: E402,F401
    check_all_reduce_bytes, check_average_gradients, check_zero_bytes_per_device,
)
from minillm.exercises.dpo import (  # noqa: E402,F401
    check_completion_log_prob, check_dpo_sigmoid_loss, check_optimal_policy,
)
from minillm.exercises.flash import (  # noqa: E402,F401
    check_merge_softmax, check_causal_tiles,
)
from minillm.exercises.grpo import (  # noqa: E402,F401
    check_group_advantages, check_k3, check_format_reward,
)
from minillm.exercises.information import (  # noqa: E402,F401
    check_entropy_bits, check_kl_divergence_bits, check_bits_per_byte,
    check_mix_log_probs,
)
from minillm.exercises.lora import (  # noqa: E402,F401
    check_merge_lora_weight, check_quantize_block,
)
from minillm.exercises.moe import (  # noqa: E402,F401
    check_top_k_gates, check_switch_balance_loss, check_bias_update,
    check_expert_capacity,
)
from minillm.exercises.neural_lm import (  # noqa: E402,F401
    check_cross_entropy_grad, check_mlp_parameter_count, check_nearest_neighbours,
    check_gru_keep_bias, check_shift_register, check_score_gap,
)
from minillm.exercises.ngrams import (  # noqa: E402,F401
    check_bigram_mle_prob, check_stupid_backoff, check_perplexity_of_probs,
    check_continuation_count,
)
from minillm.exercises.positions import (  # noqa: E402,F401
    check_sinusoidal, check_rope_rotate, check_rope_score, check_alibi_slopes,
    check_ntk_inv_freq, check_far_mass,
)
from minillm.exercises.precision import (  # noqa: E402,F401
    check_decode_bf16, check_fp16_underflow_fraction,
    check_activation_bytes_per_block, check_max_batch_size,
)
from minillm.exercises.pretraining import (  # noqa: E402,F401
    check_lr_schedule, check_next_token_targets, check_clip_global_norm,
    check_adamw_checkpoint_bytes,
)
from minillm.exercises.sft import (  # noqa: E402,F401
    check_chat_loss_mask,
)
from minillm.exercises.temperature import (  # noqa: E402,F401
    check_temper, check_temperature_for_target, check_cold_limit_entropy,
    check_per_step_path_prob,
)
from minillm.exercises.tinyworld import (  # noqa: E402,F401
    check_fact_bits, check_contaminated_fraction,
)
from minillm.exercises.tokenization import (  # noqa: E402,F401
    check_stream_text, check_encode_with_specials, check_merge_order_example,
    check_split_without_space, check_pair_count_delta,
)

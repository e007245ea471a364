"""Checkers for the exercises of chapter 11 (distributed training)."""
from __future__ import annotations

import math

import torch

from minillm.calculators import zero_model_state_bytes
from minillm.distributed import ring_bytes
from minillm.exercises import ExerciseError, call, expect_close, expect_tensor, passed


def check_all_reduce_bytes(all_reduce_bytes) -> None:
    """all_reduce_bytes(n_bytes, world_size) -> bytes each rank sends in a ring all-reduce."""
    for n, N in [(1000, 2), (4000, 4), (1200, 3), (10**9, 8), (500, 1)]:
        what = f"all_reduce_bytes({n}, {N})"
        got = call(all_reduce_bytes, n, N)
        want = ring_bytes(n, N)
        if N > 1 and isinstance(got, (int, float)) and not math.isclose(got, want):
            if math.isclose(got, (N - 1) / N * n):
                raise ExerciseError(f"{what}: {got:g} is only the reduce-scatter half; a ring all-reduce "
                                    f"then all-gathers the reduced chunks, sending as much again")
            if math.isclose(got, 2 * n) or math.isclose(got, (N - 1) * n):
                raise ExerciseError(f"{what}: {got:g} would be sending whole tensors; in a ring each "
                                    f"step sends one chunk of n / N bytes")
        expect_close(got, want, what)
    passed("2 (N - 1) / N x the tensor, almost 2x for any N")


def check_average_gradients(average_gradients) -> None:
    """average_gradients(grads [N, P]) -> [P]: what all-reduce + divide gives every rank."""
    torch.manual_seed(0)
    for N, P in [(2, 5), (4, 3), (1, 4)]:
        grads = torch.randn(N, P)
        what = f"average_gradients(grads [{N}, {P}])"
        got = expect_tensor(call(average_gradients, grads.clone()), (P,), what)
        if N > 1 and torch.allclose(got, grads.sum(0).double(), atol=1e-6):
            raise ExerciseError(f"{what}: that is the sum; each rank's loss is a mean over its share of "
                                f"the batch, so the N gradients must be averaged (divide by N) to equal "
                                f"the gradient of the mean loss over the whole batch")
        if not torch.allclose(got, grads.mean(0).double(), atol=1e-6):
            raise ExerciseError(f"{what}: expected the mean over ranks {grads.mean(0).tolist()}, "
                                f"got {got.tolist()}")
    passed("the mean over ranks, as if one process saw the whole batch")


def check_zero_bytes_per_device(zero_bytes_per_device) -> None:
    """zero_bytes_per_device(n_params, stage, n_devices) -> total model-state bytes
    per device for mixed-precision Adam (2 + 2 + 12 bytes per parameter)."""
    hints = {
        1: "stage 1 shards only the optimizer states (K = 12 bytes), not the gradients",
        2: "stage 2 shards gradients and optimizer states, but every device keeps all weights",
        3: "stage 3 shards everything: weights, gradients and optimizer states",
    }
    for psi, stage, N in [(1e9, 0, 8), (1e9, 1, 8), (7e9, 2, 4), (7e9, 3, 16), (70e9, 1, 64), (1e6, 2, 1)]:
        what = f"zero_bytes_per_device({psi:g}, stage={stage}, n_devices={N})"
        want = zero_model_state_bytes(psi, stage, N)["total"]
        got = call(zero_bytes_per_device, psi, stage, N)
        try:
            expect_close(got, want, what, rel=1e-9)
        except ExerciseError:
            if stage in hints:
                raise ExerciseError(f"{what}: expected {want:.4g} bytes, got {got!r}; {hints[stage]}") from None
            raise
    passed("(2 + 2 + 12) Psi, with the sharded parts divided by N")

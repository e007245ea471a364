"""The checkers of chapter 11 accept right answers and reject wrong ones."""
import pytest

from minillm.exercises import ExerciseError, ExerciseNotImplemented
from minillm.exercises.distributed import check_all_reduce_bytes, check_average_gradients, \
    check_zero_bytes_per_device


def stub(*args):
    raise NotImplementedError


def zero_bytes(psi, stage, n, shard=None):
    shard = shard or (stage >= 3, stage >= 2, stage >= 1)
    return sum(psi * b / (n if s else 1) for b, s in zip((2, 2, 12), shard))


def test_accept_correct(capsys):
    check_all_reduce_bytes(lambda n, N: 2 * (N - 1) / N * n)
    check_average_gradients(lambda g: g.mean(0))
    check_zero_bytes_per_device(zero_bytes)
    assert capsys.readouterr().out.count("✓ correct") == 3


@pytest.mark.parametrize("check, wrong, words", [
    (check_all_reduce_bytes, lambda n, N: (N - 1) / N * n, "reduce-scatter half"),
    (check_all_reduce_bytes, lambda n, N: 2 * n, "whole tensors"),
    (check_all_reduce_bytes, lambda n, N: (N - 1) * n, "whole tensors"),
    (check_all_reduce_bytes, lambda n, N: 2 * n / N, "expected"),
    (check_average_gradients, lambda g: g.sum(0), "that is the sum"),
    (check_average_gradients, lambda g: g[0], "expected the mean"),
    (check_average_gradients, lambda g: g.mean(1), "shape"),
    (check_zero_bytes_per_device, lambda p, s, n: zero_bytes(p, s, n, (s >= 3, s >= 1, s >= 1)), "stage 1"),
    (check_zero_bytes_per_device, lambda p, s, n: zero_bytes(p, s, n, (s >= 2, s >= 2, s >= 1)), "stage 2"),
    (check_zero_bytes_per_device, lambda p, s, n: zero_bytes(p, s, n, (False, s >= 2, s >= 1)), "stage 3"),
    (check_zero_bytes_per_device, lambda p, s, n: 16 * p / n, "expected"),
])
def test_reject_wrong(check, wrong, words):
    with pytest.raises(ExerciseError, match=words):
        check(wrong)


@pytest.mark.parametrize("check", [check_all_reduce_bytes, check_average_gradients,
                                   check_zero_bytes_per_device])
def test_stub_is_named(check):
    with pytest.raises(ExerciseNotImplemented, match="not implemented"):
        check(stub)

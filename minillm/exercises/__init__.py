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


def __getattr__(name: str) -> Any:
    """Let notebooks write ``from minillm.exercises import check_x`` for a
    checker defined in any topic module of this package."""
    import importlib
    import pkgutil

    if name.startswith("check_"):
        for info in pkgutil.iter_modules(__path__):
            module = importlib.import_module(f"{__name__}.{info.name}")
            if hasattr(module, name):
                return getattr(module, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")

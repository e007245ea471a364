"""Argument checks shared by the whole package: one message format everywhere.

A bad argument should fail at once, with an error that names it and says what
was expected, rather than as a shape error three calls later. These two
helpers are that check; every module uses them instead of writing its own.

    >>> check_int(0, "n_layers")
    Traceback (most recent call last):
    ValueError: n_layers must be a positive integer, got 0
"""
from __future__ import annotations

import math


def check_int(value, name: str, minimum: int = 1) -> int:
    """``value`` if it is an int >= ``minimum`` (a bool is not), else ValueError."""
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        expected = "a positive integer" if minimum == 1 else f"an integer >= {minimum}"
        raise ValueError(f"{name} must be {expected}, got {value!r}")
    return value


def check_positive(value, name: str, allow_zero: bool = False) -> float:
    """``value`` if it is a real number > 0 (>= 0 with ``allow_zero``), else ValueError."""
    ok = (not isinstance(value, bool) and isinstance(value, (int, float)) and not math.isnan(value)
          and (value >= 0 if allow_zero else value > 0))
    if not ok:
        expected = "a number >= 0" if allow_zero else "a positive number"
        raise ValueError(f"{name} must be {expected}, got {value!r}")
    return value

"""The exercise package: checker names are unique across topic modules (the
package re-exports them by name), and the shared helpers behave."""
import importlib
import pkgutil

import pytest

import minillm.exercises as ex


def test_checker_names_are_unique_across_modules():
    owners: dict[str, str] = {}
    for info in pkgutil.iter_modules(ex.__path__):
        module = importlib.import_module(f"minillm.exercises.{info.name}")
        for name in dir(module):
            if name.startswith("check_") and callable(getattr(module, name)):
                if getattr(module, name).__module__ != module.__name__:
                    continue  # imported from elsewhere, not defined here
                assert name not in owners, f"{name} is defined in both {owners[name]} and {info.name}"
                owners[name] = info.name
    assert owners, "no checkers found"


def test_reexport_and_unknown_name():
    name = next(n for n in dir(importlib.import_module("minillm.exercises.information")) if n.startswith("check_"))
    assert callable(getattr(ex, name))
    with pytest.raises(AttributeError):
        ex.check_does_not_exist


def test_call_turns_a_stub_into_advice():
    def stub():
        raise NotImplementedError

    with pytest.raises(ex.ExerciseNotImplemented, match="`stub` is not implemented yet"):
        ex.call(stub)
    with pytest.raises(ex.ExerciseError, match="expected a function"):
        ex.call(3)


def test_expect_close():
    ex.expect_close(1.0 + 1e-9, 1.0, "x")
    with pytest.raises(ex.ExerciseError, match="x: expected 1, got 2"):
        ex.expect_close(2.0, 1.0, "x")
    with pytest.raises(ex.ExerciseError, match="expected a number"):
        ex.expect_close("one", 1.0, "x")

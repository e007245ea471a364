"""The model zoo: the notebooks' thin face on the pipeline's trained models.

Later chapters need the book's trained models without retraining them each
time:

    from minillm import zoo
    model, tokenizer = zoo.load("tinyworld-base")   # trains once (minutes), then loads (a second)

What this module adds over ``minillm.pipeline`` (which owns the recipes, the
training and the cache): loading, in eval mode, on a device, quietly. ``load``
prints nothing unless ``verbose=True`` (so a notebook's output is the same
whether the cache exists or not); ``verbose`` reports what it does and shows
a progress bar on stderr. A first call trains the recipe (and any parent it
lacks); parallel callers wait on the cache lock and then load the result.
"""
from __future__ import annotations

import json
from pathlib import Path

from minillm.checkpoint import load_model
from minillm.pipeline import (RECIPES, TINYWORLD_BASE, Recipe, corpus, get_recipe,  # noqa: F401
                              one_thread_on_cpu)
from minillm.pipeline import build as _build


def path(name: str | Recipe, verbose: bool = False, device: str = "cpu") -> Path:
    """The cache folder of a trained model (model.safetensors, history.json,
    recipe.json), training it on ``device`` first if it is not there yet."""
    return _build(name, verbose, device)


def load(name: str | Recipe, device: str = "cpu", verbose: bool = False):
    """``(model, tokenizer)`` of a trained model, in eval mode on ``device``.

    The first call trains it (``tinyworld-base``: about 4 minutes on 2 CPU
    cores) and caches the weights; later calls, in any process, load them in
    about a second. Prints nothing unless ``verbose``.
    """
    from minillm.tokenizer import load_book_tokenizer

    model = load_model(path(name, verbose, device) / "model.safetensors")
    return model.to(device).eval(), load_book_tokenizer()


def history(name: str | Recipe, verbose: bool = False) -> list[dict]:
    """The training history of a model (one dict per step, see ``Trainer``)."""
    return json.loads((path(name, verbose) / "history.json").read_text())


def info(name: str | Recipe, verbose: bool = False) -> dict:
    """The recipe of a trained model plus what training chose and took:
    ``key``, ``train_seconds`` and the stage's own facts (for pretraining,
    ``chosen_step`` and ``chosen_val_loss``: the kept weights)."""
    return json.loads((path(name, verbose) / "recipe.json").read_text())

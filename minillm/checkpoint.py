"""Safe model checkpoints: safetensors files, checked against the model.

Why safetensors and not ``torch.save``: a pickle file can run arbitrary code
when it is loaded; a safetensors file is a JSON header plus raw bytes, so
loading one only ever produces tensors. (If you must read a ``.pt`` file, use
``torch.load(path, weights_only=True)``.)

Why the checks: ``load_state_dict`` on a checkpoint from another config fails
with a long traceback, or, with ``strict=False``, silently keeps random
weights. ``check_state_dict`` lists every missing key, unexpected key and shape
mismatch in one error instead.
"""
from __future__ import annotations

import json
import os
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from .config import ModelConfig


class CheckpointError(ValueError):
    """A checkpoint is unreadable or does not fit the model; the message says how."""


def expected_shapes(model: torch.nn.Module) -> dict[str, tuple[int, ...]]:
    """name -> shape of every tensor a checkpoint of ``model`` must hold.

    A tied LM head is the embedding under a second name; it is stored once.
    """
    shapes = {name: tuple(t.shape) for name, t in model.state_dict().items()}
    if getattr(getattr(model, "config", None), "tie_embeddings", False):
        shapes.pop("lm_head.weight", None)
    return shapes


def check_state_dict(model: torch.nn.Module, state: dict[str, torch.Tensor]) -> None:
    """Raise CheckpointError listing everything in ``state`` that does not fit ``model``."""
    want = expected_shapes(model)
    missing = sorted(set(want) - set(state))
    unexpected = sorted(set(state) - set(want))
    shapes = [f"{name}: checkpoint {tuple(state[name].shape)} vs model {want[name]}"
              for name in sorted(set(want) & set(state)) if tuple(state[name].shape) != want[name]]
    problems = []
    if missing:
        problems.append(f"missing keys ({len(missing)}): {', '.join(missing)}")
    if unexpected:
        problems.append(f"unexpected keys ({len(unexpected)}): {', '.join(unexpected)}")
    if shapes:
        problems.append(f"shape mismatches ({len(shapes)}): " + "; ".join(shapes))
    if problems:
        raise CheckpointError("checkpoint does not match the model:\n  " + "\n  ".join(problems))


def write_safetensors(tensors: dict[str, torch.Tensor], path: str | Path,
                      metadata: dict[str, str] | None = None) -> Path:
    """Write tensors atomically: a crash mid-write never leaves a half file at ``path``."""
    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    save_file({k: v.detach().contiguous() for k, v in tensors.items()}, str(tmp), metadata=metadata)
    os.replace(tmp, path)
    return path


def read_safetensors(path: str | Path) -> dict[str, torch.Tensor]:
    """All tensors of a safetensors file; CheckpointError if it is missing or corrupt."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint file not found: {path}")
    try:
        return load_file(str(path))
    except (SafetensorError, OSError, ValueError) as error:
        raise CheckpointError(f"{path} is not a readable safetensors file ({error})") from None


def read_metadata(path: str | Path) -> dict[str, str]:
    """The string metadata stored in a safetensors header."""
    from safetensors import safe_open

    try:
        with safe_open(str(path), framework="pt") as f:
            return f.metadata() or {}
    except (SafetensorError, OSError, ValueError) as error:
        raise CheckpointError(f"{path} is not a readable safetensors file ({error})") from None


def save_model(model: torch.nn.Module, path: str | Path) -> Path:
    """Weights and config of a minillm ``Transformer`` in one safetensors file."""
    keep = expected_shapes(model)
    state = {k: v for k, v in model.state_dict().items() if k in keep}
    return write_safetensors(state, path, metadata={"minillm_config": json.dumps(model.config.to_dict())})


def load_model(path: str | Path, config: ModelConfig | None = None) -> torch.nn.Module:
    """A ``Transformer`` from ``save_model``'s file; ``config`` (optional) must match it."""
    from .model import Transformer

    meta = read_metadata(path)
    if config is None:
        if "minillm_config" not in meta:
            raise CheckpointError(f"{path} stores no minillm config; pass config=")
        config = ModelConfig.from_dict(json.loads(meta["minillm_config"]))
    model = Transformer(config)
    load_weights(model, path)
    return model


def load_weights(model: torch.nn.Module, path: str | Path) -> torch.nn.Module:
    """Load a safetensors file into ``model`` after checking that every key and shape fits."""
    state = read_safetensors(path)
    check_state_dict(model, state)
    model.load_state_dict(state, strict=False)  # strict already checked, minus the tied head
    return model

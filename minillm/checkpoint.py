"""Safe checkpoints: model files and exact training state, as safetensors files.

Two kinds of file, both one safetensors file (tensors + a JSON header):

    save_model / load_model            weights + config: what a trained model *is*
    save_training_state / load_...     + AdamW's moments, the step, the data
                                       position, the loss scale, the history and
                                       every random state: what a run *was doing*

A training-state file is what lets a killed run resume and end with the same
weights, bit for bit on a CPU, as a run never interrupted. Both unwrap a
``DistributedDataParallel`` (or any ``.module``) wrapper first (``unwrap``),
so a checkpoint written under ``torchrun`` loads into a plain model.

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
import random
from pathlib import Path

import numpy as np
import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from .config import ModelConfig


TRAINING_STATE_FORMAT = "minillm-trainer/1"


class CheckpointError(ValueError):
    """A checkpoint is unreadable or does not fit the model; the message says how."""


def unwrap(model: torch.nn.Module) -> torch.nn.Module:
    """The model inside a ``DistributedDataParallel`` (or similar ``.module``) wrapper."""
    while hasattr(model, "module") and isinstance(model.module, torch.nn.Module):
        model = model.module
    return model


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
    model = unwrap(model)
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


# ----------------------------------------------------------- training state

def save_training_state(path: str | Path, model: torch.nn.Module, optimizer: torch.optim.Optimizer,
                        *, step: int, train_config: dict, data_state: dict, history: list,
                        scaler_state: dict | None = None) -> Path:
    """Everything a run needs to continue exactly, in one safetensors file (atomic).

    Tensors: ``model/<name>`` (the unwrapped model's weights), ``optimizer/<i>/<key>``
    (AdamW's exp_avg, exp_avg_sq and step per parameter), ``rng/torch``,
    ``rng/numpy`` (and ``rng/cuda``). The JSON header: the step, both configs,
    the optimizer's groups, the data position, the loss scale, the history and
    Python's random state.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    model = unwrap(model)
    keep = expected_shapes(model)
    tensors = {f"model/{k}": v for k, v in model.state_dict().items() if k in keep}
    optim = optimizer.state_dict()
    for index, state in optim["state"].items():
        for key, value in state.items():
            tensors[f"optimizer/{index}/{key}"] = torch.as_tensor(value)
    np_state = np.random.get_state()
    tensors["rng/torch"] = torch.get_rng_state()
    tensors["rng/numpy"] = torch.from_numpy(np_state[1].astype(np.int64))
    if torch.cuda.is_available():
        tensors["rng/cuda"] = torch.stack(torch.cuda.get_rng_state_all())
    header = {
        "format": TRAINING_STATE_FORMAT, "step": step, "train_config": train_config,
        "model_config": model.config.to_dict() if hasattr(model, "config") else None,
        "optimizer_groups": optim["param_groups"], "data": data_state,
        "scaler": scaler_state, "history": history,
        "python_rng": random.getstate(), "numpy_rng": [np_state[0], *map(_plain, np_state[2:])],
    }
    return write_safetensors(tensors, path, metadata={"minillm_trainer": json.dumps(header)})


def load_training_state(path: str | Path, model: torch.nn.Module, optimizer: torch.optim.Optimizer,
                        data=None) -> dict:
    """Restore a ``save_training_state`` file into ``model``, ``optimizer``, the
    random generators and ``data`` (anything with ``load_state_dict``).

    Returns the header (``step``, ``history``, ``scaler``, ...). Raises
    CheckpointError naming what does not fit: another format, another model
    config (field by field), missing or misshapen tensors, another data set.
    """
    path = Path(path)
    tensors = read_safetensors(path)
    header = _read_header(path)
    if header.get("format") != TRAINING_STATE_FORMAT:
        raise CheckpointError(f"{path} is not a trainer checkpoint ({TRAINING_STATE_FORMAT}); "
                              f"its format is {header.get('format')!r}")
    model = unwrap(model)
    mine = model.config.to_dict() if hasattr(model, "config") else None
    if header["model_config"] != mine:
        theirs, mine = header["model_config"] or {}, mine or {}
        changed = sorted(k for k in set(theirs) | set(mine) if theirs.get(k) != mine.get(k))
        raise CheckpointError(f"{path} was written for another model config: " + ", ".join(
            f"{k} is {theirs.get(k)!r} in the checkpoint but {mine.get(k)!r} here" for k in changed))
    model_state = {k[len("model/"):]: v for k, v in tensors.items() if k.startswith("model/")}
    try:
        check_state_dict(model, model_state)
    except CheckpointError as error:
        raise CheckpointError(f"{path}: {error}") from None
    model.load_state_dict(model_state, strict=False)
    optim_state: dict[int, dict] = {}
    for key, value in tensors.items():
        if key.startswith("optimizer/"):
            _, index, name = key.split("/")
            optim_state.setdefault(int(index), {})[name] = value
    try:
        optimizer.load_state_dict({"state": optim_state, "param_groups": header["optimizer_groups"]})
        if data is not None:
            data.load_state_dict(header["data"])
    except (ValueError, KeyError) as error:
        raise CheckpointError(f"{path} does not fit this run: {error}") from None
    random.setstate(_tuples(header["python_rng"]))
    np.random.set_state((header["numpy_rng"][0], tensors["rng/numpy"].numpy().astype(np.uint32),
                         *header["numpy_rng"][1:]))
    torch.set_rng_state(tensors["rng/torch"])
    if "rng/cuda" in tensors and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(list(tensors["rng/cuda"]))
    return header


def _read_header(path: Path) -> dict:
    meta = read_metadata(path)
    if "minillm_trainer" not in meta:
        raise CheckpointError(f"{path} holds no trainer state (is it a model-only file from save_model?)")
    try:
        return json.loads(meta["minillm_trainer"])
    except json.JSONDecodeError as error:
        raise CheckpointError(f"{path} has a corrupt trainer header: {error}") from None


def _plain(x):
    """NumPy scalars -> Python numbers (for JSON)."""
    return x.item() if hasattr(x, "item") else x


def _tuples(x):
    """JSON turned random.getstate()'s tuples into lists; turn them back."""
    return tuple(_tuples(v) for v in x) if isinstance(x, list) else x

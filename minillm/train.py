"""The training loop: AdamW, warmup + cosine, clipping, accumulation, mixed
precision, evaluation, and checkpoints that resume exactly.

One optimizer step, in order (``Trainer.train_step``):

    lr = lr_at(step)                          warmup, then cosine decay
    for each of grad_accum micro-batches:     accumulate gradients
        with autocast: loss = model.loss(...) bf16/fp16 matmuls, fp32 softmax; lm_loss
                                              (+ the balance loss of a mixture of experts)
        (loss * its share of the targets).backward()
    unscale (fp16 only) -> clip the global gradient norm -> AdamW step
    (mixture of experts with router_balance="bias": update the router biases)

The micro-batch losses are weighted by their share of the step's target
tokens, so accumulating k micro-batches gives exactly the gradient of one
k-times bigger batch (a plain average of micro-batch means would weight a
token in a mostly-masked micro-batch more).

Weight decay is *decoupled* (AdamW, Loshchilov & Hutter 2019): the weights
shrink by lr * wd each step, outside Adam's normalisation, instead of adding
wd * w to the gradient (Adam + L2), where Adam would rescale the penalty away.
Only matrices decay: norms' gains and biases set scales and offsets, and an
embedding row is only updated when its token appears, so decaying embeddings
would shrink rare tokens most.

Checkpoints (``save_checkpoint``) hold everything the next step depends on:
weights, AdamW's moments, the step (the schedule is a pure function of it),
the data position, the fp16 loss scale, the history and the Python, NumPy and
PyTorch random states. That is why a run killed and resumed ends with the same
weights, bit for bit on a CPU, as a run never interrupted. A checkpoint is one
safetensors file (tensors + a JSON header), written to a temporary name and
renamed, so a crash mid-write leaves the previous checkpoint intact.
"""
from __future__ import annotations

import dataclasses
import json
import math
import random
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from tqdm.auto import tqdm

from minillm.checkpoint import CheckpointError, check_state_dict, expected_shapes, read_safetensors, \
    write_safetensors
from minillm.data import Batches
from minillm.model import IGNORE_INDEX, lm_loss

PRECISIONS = ("fp32", "bf16", "fp16", "auto")
CHECKPOINT_FORMAT = "minillm-trainer/1"


@dataclass
class TrainConfig:
    """Hyperparameters of one run (a recipe: no paths, no devices).

    One optimizer step sees ``batch_size * grad_accum`` blocks. The learning
    rate warms up linearly to ``lr`` over ``warmup_steps``, then follows a
    cosine down to ``min_lr`` at ``steps``. ``grad_clip`` caps the global
    gradient norm (None: no clipping). ``precision``: "fp32", "bf16", "fp16"
    (with a GradScaler) or "auto" (bf16 on a GPU that has it, else fp32).
    ``eval_every`` / ``checkpoint_every``: every that many steps (0: only at
    the end / never). ``seed`` fixes the data order.
    """

    steps: int = 1000
    batch_size: int = 16
    grad_accum: int = 1
    lr: float = 3e-3
    min_lr: float = 3e-4
    warmup_steps: int = 50
    weight_decay: float = 0.1
    betas: tuple[float, float] = (0.9, 0.95)
    eps: float = 1e-8
    grad_clip: float | None = 1.0
    precision: str = "fp32"
    decay_embeddings: bool = False
    eval_every: int = 100
    eval_batch_size: int = 64
    checkpoint_every: int = 0
    seed: int = 0

    def __post_init__(self):
        self.betas = tuple(self.betas)
        for name in ("steps", "batch_size", "grad_accum", "eval_batch_size"):
            if not isinstance(getattr(self, name), int) or getattr(self, name) < 1:
                raise ValueError(f"TrainConfig.{name} must be a positive integer, got {getattr(self, name)!r}")
        for name in ("warmup_steps", "eval_every", "checkpoint_every"):
            if not isinstance(getattr(self, name), int) or getattr(self, name) < 0:
                raise ValueError(f"TrainConfig.{name} must be an integer >= 0, got {getattr(self, name)!r}")
        if not 0 <= self.min_lr <= self.lr:
            raise ValueError(f"TrainConfig needs 0 <= min_lr <= lr, got min_lr={self.min_lr}, lr={self.lr}")
        if self.grad_clip is not None and not self.grad_clip > 0:
            raise ValueError(f"TrainConfig.grad_clip must be > 0 or None, got {self.grad_clip!r}")
        if self.precision not in PRECISIONS:
            raise ValueError(f"TrainConfig.precision={self.precision!r} is unknown; choose one of {PRECISIONS}")

    def lr_at(self, step: int) -> float:
        return lr_at(step, self.lr, self.warmup_steps, self.steps, self.min_lr)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


def lr_at(step: int, peak_lr: float, warmup_steps: int, total_steps: int, min_lr: float = 0.0) -> float:
    """Learning rate of optimizer step ``step`` (0, 1, ...): linear warmup from
    peak/warmup to ``peak_lr`` over ``warmup_steps`` steps, then a half cosine
    from ``peak_lr`` down to ``min_lr`` at ``total_steps`` (and after)."""
    if step < warmup_steps:
        return peak_lr * (step + 1) / warmup_steps
    progress = min(1.0, (step - warmup_steps) / max(1, total_steps - warmup_steps))
    return min_lr + (peak_lr - min_lr) * 0.5 * (1 + math.cos(math.pi * progress))


def split_decay(model: torch.nn.Module, decay_embeddings: bool = False) -> tuple[list[str], list[str]]:
    """Names of the parameters that get weight decay (weight matrices) and
    those that do not (norm gains, biases: 1-D; embeddings unless chosen).
    A tied LM head is the embedding, listed once under its first name."""
    decay, no_decay = [], []
    embeddings = {id(m.weight) for m in model.modules() if isinstance(m, torch.nn.Embedding)}
    for name, p in model.named_parameters():
        is_embedding = id(p) in embeddings
        (decay if p.dim() >= 2 and (decay_embeddings or not is_embedding) else no_decay).append(name)
    return decay, no_decay


def param_groups(model: torch.nn.Module, weight_decay: float, decay_embeddings: bool = False) -> list[dict]:
    """AdamW parameter groups: ``[{decayed params, weight_decay}, {the rest, 0.0}]``."""
    params = dict(model.named_parameters())
    decay, no_decay = split_decay(model, decay_embeddings)
    return [{"params": [params[n] for n in decay], "weight_decay": weight_decay},
            {"params": [params[n] for n in no_decay], "weight_decay": 0.0}]


def resolve_precision(precision: str, device: str | torch.device) -> torch.dtype | None:
    """The autocast dtype for ``precision`` on ``device`` (None: plain fp32)."""
    kind = torch.device(device).type
    if precision == "auto":
        if kind == "cuda" and torch.cuda.is_bf16_supported():
            return torch.bfloat16
        return torch.float16 if kind == "cuda" else None
    return {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}[precision]


def count_targets(labels: torch.Tensor) -> int:
    """How many positions of labels [B, T] are scored by ``lm_loss`` (not the first
    position, nothing ignored): the weight of a batch in a token average."""
    return int((labels[:, 1:] != IGNORE_INDEX).sum())


@torch.no_grad()
def evaluate_loss(model: torch.nn.Module, input_ids: torch.Tensor, labels: torch.Tensor,
                  batch_size: int = 64, precision: str = "fp32") -> float:
    """Mean next-token loss (nats per target token) of ``model`` over all blocks
    [N, T]; exp of it is the perplexity. The model is left in the mode it was in."""
    device = next(model.parameters()).device
    dtype = resolve_precision(precision, device)
    was_training, total, count = model.training, 0.0, 0
    model.eval()
    for i in range(0, len(input_ids), batch_size):
        x, y = input_ids[i:i + batch_size].to(device), labels[i:i + batch_size].to(device)
        n = count_targets(y)
        if n:
            with torch.autocast(device.type, dtype=dtype or torch.float32, enabled=dtype is not None):
                total += lm_loss(model(x), y).item() * n
            count += n
    model.train(was_training)
    if count == 0:
        raise ValueError("evaluate_loss: the labels have no target tokens (all ignored)")
    return total / count


class Trainer:
    """Trains ``model`` on packed blocks (``minillm.data.pack``) with ``config``.

        trainer = Trainer(model, TrainConfig(steps=300), (x, y), val=(vx, vy))
        history = trainer.fit()       # list of dicts, one per step

    ``history[i]`` has ``step`` (after the update, 1-based), ``lr``, ``loss``
    (token-weighted over the step's batch), ``grad_norm`` (before clipping),
    ``tokens`` (inputs seen so far) and, on evaluation steps, ``val_loss``.
    With ``checkpoint_path``, a checkpoint is written every
    ``config.checkpoint_every`` steps and at the end; ``load_checkpoint``
    restores one before ``fit`` continues from it.
    """

    def __init__(self, model: torch.nn.Module, config: TrainConfig, train: tuple[torch.Tensor, torch.Tensor],
                 val: tuple[torch.Tensor, torch.Tensor] | None = None,
                 checkpoint_path: str | Path | None = None, progress: bool = True):
        self.model, self.config, self.val, self.progress = model, config, val, progress
        self.device = next(model.parameters()).device
        self.checkpoint_path = Path(checkpoint_path) if checkpoint_path is not None else None
        self.batches = Batches(*train, batch_size=config.batch_size * config.grad_accum, seed=config.seed)
        self.optimizer = torch.optim.AdamW(param_groups(model, config.weight_decay, config.decay_embeddings),
                                           lr=config.lr, betas=config.betas, eps=config.eps)
        self.autocast_dtype = resolve_precision(config.precision, self.device)
        self.scaler = (torch.amp.GradScaler(self.device.type) if self.autocast_dtype == torch.float16 else None)
        self.step, self.history = 0, []
        self.update_router_biases = None  # DeepSeek-V3 balancing of a mixture of experts, after each step
        if getattr(getattr(model, "config", None), "router_balance", None) == "bias":
            from minillm.moe import update_router_biases
            self.update_router_biases = update_router_biases

    def train_step(self) -> dict:
        """One optimizer step (``grad_accum`` micro-batches); returns its record."""
        cfg, model = self.config, self.model
        lr = cfg.lr_at(self.step)
        for group in self.optimizer.param_groups:
            group["lr"] = lr
        x, y = next(self.batches)
        n_targets = count_targets(y)
        loss_sum = 0.0
        for xm, ym in zip(x.chunk(cfg.grad_accum), y.chunk(cfg.grad_accum)):
            xm, ym = xm.to(self.device, non_blocking=True), ym.to(self.device, non_blocking=True)
            with torch.autocast(self.device.type, dtype=self.autocast_dtype or torch.float32,
                                enabled=self.autocast_dtype is not None):
                loss = model.loss(xm, ym) * (count_targets(ym) / n_targets)  # lm_loss (+ MoE aux loss)
            loss_sum += loss.item()
            (self.scaler.scale(loss) if self.scaler else loss).backward()
        if self.scaler:
            self.scaler.unscale_(self.optimizer)  # clip the true gradients, not the scaled ones
        max_norm = cfg.grad_clip if cfg.grad_clip is not None else math.inf
        grad_norm = torch.nn.utils.clip_grad_norm_(model.parameters(), max_norm).item()
        if self.scaler:
            self.scaler.step(self.optimizer)  # skipped if a gradient is inf/nan
            self.scaler.update()
        else:
            self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)
        if self.update_router_biases:
            self.update_router_biases(model)
        self.step += 1
        record = {"step": self.step, "lr": lr, "loss": loss_sum, "grad_norm": grad_norm,
                  "tokens": self.step * x.numel()}
        if self.scaler:
            record["loss_scale"] = self.scaler.get_scale()
        return record

    def evaluate(self) -> float:
        """Held-out loss on ``val`` (see ``evaluate_loss``)."""
        return evaluate_loss(self.model, *self.val, self.config.eval_batch_size, self.config.precision)

    def fit(self, on_step=None) -> list[dict]:
        """Train until ``config.steps``; returns the history. ``on_step(trainer,
        record)`` is called after every step (and after its checkpoint)."""
        cfg = self.config
        self.model.train()
        bar = tqdm(total=cfg.steps, initial=self.step, desc="train", disable=not self.progress)
        while self.step < cfg.steps:
            record = self.train_step()
            last = self.step == cfg.steps
            if self.val is not None and (last or (cfg.eval_every and self.step % cfg.eval_every == 0)):
                record["val_loss"] = self.evaluate()
            self.history.append(record)
            bar.update(1)
            bar.set_postfix(loss=f"{record['loss']:.3f}", refresh=False)
            if self.checkpoint_path and (last or (cfg.checkpoint_every and self.step % cfg.checkpoint_every == 0)):
                self.save_checkpoint(self.checkpoint_path)
            if on_step is not None:
                on_step(self, record)
        bar.close()
        return self.history

    # ------------------------------------------------------------- checkpoints
    def save_checkpoint(self, path: str | Path) -> Path:
        """Everything needed to continue exactly, in one safetensors file (atomic)."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        keep = expected_shapes(self.model)
        tensors = {f"model/{k}": v for k, v in self.model.state_dict().items() if k in keep}
        optim = self.optimizer.state_dict()
        for index, state in optim["state"].items():
            for key, value in state.items():
                tensors[f"optimizer/{index}/{key}"] = torch.as_tensor(value)
        np_state = np.random.get_state()
        tensors["rng/torch"] = torch.get_rng_state()
        tensors["rng/numpy"] = torch.from_numpy(np_state[1].astype(np.int64))
        if torch.cuda.is_available():
            tensors["rng/cuda"] = torch.stack(torch.cuda.get_rng_state_all())
        header = {
            "format": CHECKPOINT_FORMAT, "step": self.step, "train_config": self.config.to_dict(),
            "model_config": self.model.config.to_dict() if hasattr(self.model, "config") else None,
            "optimizer_groups": optim["param_groups"], "data": self.batches.state_dict(),
            "scaler": self.scaler.state_dict() if self.scaler else None, "history": self.history,
            "python_rng": random.getstate(), "numpy_rng": [np_state[0], *map(_plain, np_state[2:])],
        }
        return write_safetensors(tensors, path, metadata={"minillm_trainer": json.dumps(header)})

    def load_checkpoint(self, path: str | Path) -> None:
        """Restore a ``save_checkpoint`` file; CheckpointError says what is wrong."""
        path = Path(path)
        tensors = read_safetensors(path)
        header = _read_header(path)
        if header.get("format") != CHECKPOINT_FORMAT:
            raise CheckpointError(f"{path} is not a trainer checkpoint ({CHECKPOINT_FORMAT}); "
                                  f"its format is {header.get('format')!r}")
        mine = self.model.config.to_dict() if hasattr(self.model, "config") else None
        if header["model_config"] != mine:
            theirs = header["model_config"] or {}
            changed = sorted(k for k in set(theirs) | set(mine or {}) if theirs.get(k) != (mine or {}).get(k))
            raise CheckpointError(f"{path} was written for another model config: " + ", ".join(
                f"{k} is {theirs.get(k)!r} in the checkpoint but {(mine or {}).get(k)!r} here" for k in changed))
        model_state = {k[len("model/"):]: v for k, v in tensors.items() if k.startswith("model/")}
        try:
            check_state_dict(self.model, model_state)
        except CheckpointError as error:
            raise CheckpointError(f"{path}: {error}") from None
        self.model.load_state_dict(model_state, strict=False)
        optim_state: dict[int, dict] = {}
        for key, value in tensors.items():
            if key.startswith("optimizer/"):
                _, index, name = key.split("/")
                optim_state.setdefault(int(index), {})[name] = value
        try:
            self.optimizer.load_state_dict({"state": optim_state, "param_groups": header["optimizer_groups"]})
            self.batches.load_state_dict(header["data"])
        except (ValueError, KeyError) as error:
            raise CheckpointError(f"{path} does not fit this run: {error}") from None
        if self.scaler and header["scaler"]:
            self.scaler.load_state_dict(header["scaler"])
        self.step, self.history = header["step"], header["history"]
        random.setstate(_tuples(header["python_rng"]))
        np.random.set_state((header["numpy_rng"][0], tensors["rng/numpy"].numpy().astype(np.uint32),
                             *header["numpy_rng"][1:]))
        torch.set_rng_state(tensors["rng/torch"])
        if "rng/cuda" in tensors and torch.cuda.is_available():
            torch.cuda.set_rng_state_all(list(tensors["rng/cuda"]))


def _read_header(path: Path) -> dict:
    from minillm.checkpoint import read_metadata

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

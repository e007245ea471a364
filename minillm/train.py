"""The training loop: AdamW, warmup + cosine, clipping, accumulation, mixed
precision, evaluation, callbacks, and checkpoints that resume exactly.

One optimizer step, in order (``Trainer.train_step``):

    lr = lr_at(step)                          warmup, then cosine decay
    for each of grad_accum micro-batches:     accumulate gradients
        with autocast: loss = loss_fn(model, micro_batch)
                                              default: model(x, labels=y)[1], the mean
                                              next-token loss (+ a mixture's balance loss)
        (loss * its share of the step's targets).backward()
    unscale (fp16 only) -> clip the global gradient norm -> AdamW step
    callbacks' after_update (e.g. the router-bias update of a mixture of experts)

Every stage of the book is this loop with another ``loss_fn`` and other
batches: pretraining (packed blocks), SFT (the same loss with the prompt
masked out of the labels), DPO (a loss on pairs of sequences). The loop
touches the model only through ``model(...)``, never a method of it, so a
``DistributedDataParallel`` wrapper sees every forward and synchronises the
gradients (chapter 11); checkpoints unwrap it.

The micro-batch losses are weighted by their share of the step's targets
(tokens with a label; rows for a batch without labels), so accumulating k
micro-batches gives exactly the gradient of one k-times bigger batch (a plain
average of micro-batch means would weight a token in a mostly-masked
micro-batch more). Under ``torch.distributed`` the count is summed over the
ranks first, for the same reason.

Weight decay is *decoupled* (AdamW, Loshchilov & Hutter 2019): the weights
shrink by lr * wd each step, outside Adam's normalisation, instead of adding
wd * w to the gradient (Adam + L2), where Adam would rescale the penalty away.
Only matrices decay: norms' gains and biases set scales and offsets, and an
embedding row is only updated when its token appears, so decaying embeddings
would shrink rare tokens most. Frozen parameters (``requires_grad=False``, as
under LoRA) are left out of the optimizer altogether.

Checkpoints (``minillm.checkpoint.save_training_state``) hold everything the
next step depends on, which is why a run killed and resumed ends with the same
weights, bit for bit on a CPU, as a run never interrupted.
"""
from __future__ import annotations

import dataclasses
import math
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import torch
from tqdm.auto import tqdm

from minillm.checkpoint import load_training_state, save_training_state, unwrap
from minillm.data import Batches
from minillm.evals import dataset_loss, resolve_precision  # noqa: F401  (re-export)
from minillm.loss import count_targets
from minillm.validate import check_int

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
            check_int(getattr(self, name), f"TrainConfig.{name}")
        for name in ("warmup_steps", "eval_every", "checkpoint_every"):
            check_int(getattr(self, name), f"TrainConfig.{name}", minimum=0)
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
    """Names of the trainable parameters that get weight decay (weight
    matrices) and those that do not (norm gains, biases: 1-D; embeddings
    unless chosen). A tied LM head is the embedding, listed once under its
    first name. Frozen parameters are in neither list."""
    decay, no_decay = [], []
    embeddings = {id(m.weight) for m in model.modules() if isinstance(m, torch.nn.Embedding)}
    for name, p in model.named_parameters():
        if not p.requires_grad:  # frozen (e.g. a LoRA base): not trained at all
            continue
        is_embedding = id(p) in embeddings
        (decay if p.dim() >= 2 and (decay_embeddings or not is_embedding) else no_decay).append(name)
    return decay, no_decay


def param_groups(model: torch.nn.Module, weight_decay: float, decay_embeddings: bool = False) -> list[dict]:
    """AdamW parameter groups: ``[{decayed params, weight_decay}, {the rest, 0.0}]``."""
    params = dict(model.named_parameters())
    decay, no_decay = split_decay(model, decay_embeddings)
    return [{"params": [params[n] for n in decay], "weight_decay": weight_decay},
            {"params": [params[n] for n in no_decay], "weight_decay": 0.0}]


def batch_weight(batch) -> int:
    """What a batch counts for in a step's average: its target tokens when it
    has labels (a tuple ``(input_ids, labels, ...)`` or a dict with
    ``"labels"``), else its number of rows (e.g. DPO pairs)."""
    labels = batch.get("labels") if isinstance(batch, dict) else (
        batch[1] if isinstance(batch, (tuple, list)) and len(batch) > 1 else None)
    if labels is not None:
        return count_targets(labels)
    first = next(iter(batch.values())) if isinstance(batch, dict) else batch[0]
    return len(first)


def language_model_loss(model: torch.nn.Module, batch) -> torch.Tensor:
    """The default ``loss_fn``: the mean next-token loss of ``(input_ids,
    labels)`` or of a dict with ``input_ids``, ``labels`` (and optionally
    ``attention_mask``), through ``model(...)`` so that wrappers see it."""
    if isinstance(batch, dict):
        return model(batch["input_ids"], labels=batch["labels"],
                     attention_mask=batch.get("attention_mask"))[1]
    input_ids, labels = batch[:2]
    return model(input_ids, labels=labels)[1]


def _split(batch, n: int) -> list:
    """A batch (tensor tuple or dict of tensors, leading dim B) -> n micro-batches."""
    if n == 1:
        return [batch]
    if isinstance(batch, dict):
        parts = {k: v.chunk(n) for k, v in batch.items()}
        return [{k: v[i] for k, v in parts.items()} for i in range(n)]
    return list(zip(*(t.chunk(n) for t in batch)))


def _to(batch, device: torch.device):
    if isinstance(batch, dict):
        return {k: v.to(device, non_blocking=True) for k, v in batch.items()}
    return tuple(t.to(device, non_blocking=True) for t in batch)


def _distributed() -> tuple[int, int]:
    """(rank, world size) of the running torch.distributed job, (0, 1) without one."""
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        return torch.distributed.get_rank(), torch.distributed.get_world_size()
    return 0, 1


def _all_reduce_sum(value: float, device: torch.device) -> float:
    t = torch.tensor([value], dtype=torch.float64, device=device)
    torch.distributed.all_reduce(t)
    return t.item()


class Trainer:
    """Trains ``model`` on ``batches`` with ``config``.

        trainer = Trainer(model, TrainConfig(steps=300), (x, y), val=(vx, vy))
        history = trainer.fit()       # list of dicts, one per step

    batches: packed blocks ``(input_ids, labels)`` [N, T] (drawn by
        ``minillm.data.Batches`` with ``config.batch_size * grad_accum`` blocks
        per step and ``config.seed``), or any iterator of batches (tuples or
        dicts of tensors) with ``state_dict``/``load_state_dict`` for resuming.
    loss_fn: ``loss_fn(model, micro_batch) -> mean loss`` (default
        ``language_model_loss``); micro-batches are weighted by ``batch_weight``.
    callbacks: objects with optional ``after_update(trainer)`` (right after each
        optimizer step) and ``after_step(trainer, record)`` (after that step's
        evaluation, before its checkpoint, so what a callback adds to the record
        is saved), e.g. ``minillm.moe.RouterBiasUpdate()``.

    ``history[i]`` has ``step`` (after the update, 1-based), ``lr``, ``loss``
    (weighted over the step's batch; over all ranks when distributed),
    ``grad_norm`` (before clipping), ``tokens`` (inputs seen so far, this rank)
    and, on evaluation steps, ``val_loss``. With ``checkpoint_path``, a
    checkpoint is written every ``config.checkpoint_every`` steps and at the
    end (by rank 0 only); ``load_checkpoint`` restores one before ``fit``
    continues from it.
    """

    def __init__(self, model: torch.nn.Module, config: TrainConfig, batches,
                 val: tuple[torch.Tensor, torch.Tensor] | None = None, loss_fn=None,
                 callbacks=(), checkpoint_path: str | Path | None = None, progress: bool = True):
        self.model, self.config, self.val, self.progress = model, config, val, progress
        self.loss_fn = loss_fn or language_model_loss
        self.callbacks = list(callbacks)
        self.device = next(model.parameters()).device
        self.checkpoint_path = Path(checkpoint_path) if checkpoint_path is not None else None
        if isinstance(batches, (tuple, list)):
            rank, world_size = _distributed()
            batches = Batches(*batches, batch_size=config.batch_size * config.grad_accum,
                              seed=config.seed, rank=rank, world_size=world_size)
        self.batches = batches
        self.optimizer = torch.optim.AdamW(param_groups(model, config.weight_decay, config.decay_embeddings),
                                           lr=config.lr, betas=config.betas, eps=config.eps)
        self.autocast_dtype = resolve_precision(config.precision, self.device)
        self.scaler = (torch.amp.GradScaler(self.device.type) if self.autocast_dtype == torch.float16 else None)
        self.step, self.history = 0, []

    def train_step(self) -> dict:
        """One optimizer step (``grad_accum`` micro-batches); returns its record."""
        cfg, model = self.config, self.model
        lr = cfg.lr_at(self.step)
        for group in self.optimizer.param_groups:
            group["lr"] = lr
        batch = next(self.batches)
        micro_batches = _split(batch, cfg.grad_accum)
        weights = [batch_weight(m) for m in micro_batches]
        _, world_size = _distributed()
        total = sum(weights) if world_size == 1 else _all_reduce_sum(sum(weights), self.device)
        # DDP averages gradients over ranks; * world_size turns that into the
        # token-weighted mean over the global batch.
        loss_sum = 0.0
        for micro, weight in zip(micro_batches, weights):
            micro = _to(micro, self.device)
            with torch.autocast(self.device.type, dtype=self.autocast_dtype or torch.float32,
                                enabled=self.autocast_dtype is not None):
                loss = self.loss_fn(model, micro) * (weight / total * world_size)
            loss_sum += loss.item() / world_size
            (self.scaler.scale(loss) if self.scaler else loss).backward()
        if world_size > 1:
            loss_sum = _all_reduce_sum(loss_sum, self.device)
        if self.scaler:
            self.scaler.unscale_(self.optimizer)  # clip the true gradients, not the scaled ones
        max_norm = cfg.grad_clip if cfg.grad_clip is not None else math.inf
        trainable = [p for p in model.parameters() if p.requires_grad]
        grad_norm = torch.nn.utils.clip_grad_norm_(trainable, max_norm).item()
        if self.scaler:
            self.scaler.step(self.optimizer)  # skipped if a gradient is inf/nan
            self.scaler.update()
        else:
            self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)
        self.step += 1
        for callback in self.callbacks:
            if hasattr(callback, "after_update"):
                callback.after_update(self)
        first = next(iter(batch.values())) if isinstance(batch, dict) else batch[0]
        record = {"step": self.step, "lr": lr, "loss": loss_sum, "grad_norm": grad_norm,
                  "tokens": self.step * first.numel()}
        if self.scaler:
            record["loss_scale"] = self.scaler.get_scale()
        return record

    def evaluate(self) -> float:
        """Held-out loss on ``val`` (``minillm.evals.dataset_loss``)."""
        return dataset_loss(unwrap(self.model), *self.val, self.config.eval_batch_size,
                            self.config.precision)

    def fit(self, on_step=None) -> list[dict]:
        """Train until ``config.steps``; returns the history. ``on_step(trainer,
        record)`` is called after every step, after its checkpoint."""
        cfg = self.config
        self.model.train()
        rank, _ = _distributed()
        bar = tqdm(total=cfg.steps, initial=self.step, desc="train", disable=not self.progress or rank)
        while self.step < cfg.steps:
            record = self.train_step()
            last = self.step == cfg.steps
            if self.val is not None and (last or (cfg.eval_every and self.step % cfg.eval_every == 0)):
                record["val_loss"] = self.evaluate()
            self.history.append(record)
            bar.update(1)
            bar.set_postfix(loss=f"{record['loss']:.3f}", refresh=False)
            for callback in self.callbacks:  # before the checkpoint, so what they add to
                if hasattr(callback, "after_step"):  # the record is saved with it
                    callback.after_step(self, record)
            if self.checkpoint_path and (last or (cfg.checkpoint_every and self.step % cfg.checkpoint_every == 0)):
                self.save_checkpoint(self.checkpoint_path)
            if on_step is not None:
                on_step(self, record)
        bar.close()
        return self.history

    def save_checkpoint(self, path: str | Path) -> Path:
        """Everything needed to continue exactly, in one safetensors file
        (atomic; written by rank 0 only when distributed)."""
        if _distributed()[0] != 0:
            return Path(path)
        if not hasattr(self.batches, "state_dict"):
            raise TypeError(f"cannot checkpoint: the batches ({type(self.batches).__name__}) "
                            f"have no state_dict(), so a resumed run could not continue the data")
        return save_training_state(
            path, self.model, self.optimizer, step=self.step, train_config=self.config.to_dict(),
            data_state=self.batches.state_dict(), history=self.history,
            scaler_state=self.scaler.state_dict() if self.scaler else None)

    def load_checkpoint(self, path: str | Path) -> None:
        """Restore a ``save_checkpoint`` file; CheckpointError says what is wrong."""
        state = load_training_state(path, self.model, self.optimizer, data=self.batches)
        if self.scaler and state["scaler"]:
            self.scaler.load_state_dict(state["scaler"])
        self.step, self.history = state["step"], state["history"]


#: CPU threads ``one_thread_on_cpu`` trains with: 1 unless ``training_threads`` says otherwise.
_TRAINING_THREADS = 1


@contextmanager
def one_thread_on_cpu(device: str):
    """Train on one CPU thread (or on the number a surrounding
    ``training_threads`` block sets). On a busy machine (parallel notebook
    workers) threads wait on each other: we measured 2 threads 2.6x slower
    than 1 there. One thread also makes the weights independent of the
    machine's core count, so the cache's models are always built on one."""
    threads = torch.get_num_threads()
    if torch.device(device).type == "cpu":
        torch.set_num_threads(_TRAINING_THREADS)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


@contextmanager
def training_threads(n: int):
    """Let the training stages inside this block use ``n`` CPU threads (the
    capstone's ``--threads``). On an idle 2-core machine a pretraining step
    of the book's model took 173-181 ms on 2 threads against 282-309 ms on
    one. More threads may add up a sum in another order and round the
    weights differently (on that machine they did not: the capstone's five
    stages came out bit for bit the same on 2 threads as on one)."""
    global _TRAINING_THREADS
    if not isinstance(n, int) or n < 1:
        raise ValueError(f"threads must be a positive integer, got {n!r}")
    before, _TRAINING_THREADS = _TRAINING_THREADS, n
    try:
        yield
    finally:
        _TRAINING_THREADS = before

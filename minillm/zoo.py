"""The model zoo: named, reproducible recipes that train on first use and cache.

Later chapters need the book's base model without retraining it each time:

    from minillm import zoo
    model, tokenizer = zoo.load("tinyworld-base")   # trains once (minutes), then loads (a second)

A ``Recipe`` is everything that decides the weights: the model config, the
training config (with its seed), the corpus, the block size, the document
shuffle, and ``keep_best`` (keep the weights of the evaluation step with the
lowest held-out loss: early stopping without guessing the step). The cache
folder's name holds a hash of the recipe, the tokenizer and the data files, so
changing any of them trains a new model instead of loading a stale one.

Where: ``<repo>/.cache/zoo/`` (gitignored), or ``$MINILLM_CACHE/zoo/``.
Concurrency: callers in different processes (parallel nbval workers) take an
exclusive lock on ``<name>-<hash>.lock`` first; one trains, the others wait and
then load its result. The lock is ``fcntl.flock`` on Linux and macOS and
``msvcrt.locking`` on Windows; the OS drops it if the process dies, so a
crashed run never leaves the cache locked. Training writes a checkpoint every
100 steps, so a kernel killed mid-training resumes where it stopped.
Finished results are written to a temporary folder and renamed into place.

Quiet by default: ``load`` prints nothing (so a notebook's output is the same
whether the cache exists or not); ``verbose=True`` reports what it does and
shows a progress bar on stderr.

``probe`` and ``attribute_accuracy`` measure what a base model knows: greedy
completions of TinyWorld's probe prompts ("Mira Tolven was born in").
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import os
import shutil
import sys
import time
from collections import defaultdict
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import torch

from minillm import ROOT, seed_everything
from minillm.checkpoint import load_model, load_weights, save_model
from minillm.config import ModelConfig
from minillm.data import pack_texts
from minillm.model import Transformer, greedy_decode
from minillm.train import TrainConfig, Trainer

#: Bump when the code that turns a recipe into weights changes meaning.
ZOO_VERSION = 1


@dataclass(frozen=True)
class Recipe:
    """How to make one zoo model. ``minutes``: about how long the first call
    trains on 2 CPU cores (for messages and docs; not part of the hash)."""

    name: str
    model: dict
    train: dict
    corpus: str = "tinyworld"
    block_size: int = 128
    shuffle_seed: int | None = 0
    keep_best: bool = True
    description: str = ""
    minutes: float = field(default=1.0, compare=False)

    def model_config(self) -> ModelConfig:
        return ModelConfig(**self.model)

    def train_config(self) -> TrainConfig:
        return TrainConfig(**self.train)

    def key(self) -> str:
        """12 hex digits that change whenever the weights would."""
        spec = {"version": ZOO_VERSION, "model": self.model_config().to_dict(),
                "train": self.train_config().to_dict(), "corpus": self.corpus,
                "block_size": self.block_size,
                "shuffle_seed": self.shuffle_seed, "keep_best": self.keep_best, "inputs": _input_digest(self.corpus)}
        return hashlib.sha256(json.dumps(spec, sort_keys=True).encode()).hexdigest()[:12]


#: The book's base model: the "tiny" preset (4 layers, d_model 128, 1.05M
#: parameters) with context 128, pretrained on TinyWorld's biographies.
#: Calibrated on 2 CPU cores: ~3.7 CPU-minutes (one thread, fp32), the
#: held-out loss bottoms out near step 550 (~10 epochs) and then rises as the
#: model memorises its 2,478 documents, so the weights with the lowest held-out
#: loss are kept (they complete ~85% of probe prompts of pretrained people).
TINYWORLD_BASE = Recipe(
    name="tinyworld-base",
    description="tiny preset (4 layers, d_model 128, 1.05M parameters), context 128; TinyWorld pretraining "
                "text, shuffled; 1000 steps x 16 blocks (2.0M tokens, ~17 epochs); keeps the weights with "
                "the lowest held-out loss (evaluated every 50 steps)",
    model=dict(vocab_size=2048, d_model=128, n_layers=4, n_heads=4, n_kv_heads=2, d_ff=384, max_seq_len=128),
    train=dict(steps=1000, batch_size=16, lr=3e-3, min_lr=3e-4, warmup_steps=50, weight_decay=0.1,
               grad_clip=1.0, precision="auto", eval_every=50, checkpoint_every=100, seed=0),
    minutes=4.0,
)
RECIPES: dict[str, Recipe] = {r.name: r for r in (TINYWORLD_BASE,)}


def get_recipe(name: str | Recipe) -> Recipe:
    if isinstance(name, Recipe):
        return name
    if name not in RECIPES:
        raise ValueError(f"unknown zoo model {name!r}; choose one of {sorted(RECIPES)}")
    return RECIPES[name]


def cache_dir() -> Path:
    """``$MINILLM_CACHE/zoo`` if that variable is set, else ``<repo>/.cache/zoo``."""
    return Path(os.environ.get("MINILLM_CACHE") or ROOT / ".cache") / "zoo"


def corpus(recipe: Recipe, tokenizer) -> tuple[tuple[torch.Tensor, torch.Tensor], tuple[torch.Tensor, torch.Tensor]]:
    """(train, val) packed blocks, each (input_ids, labels) [N, block_size]."""
    if recipe.corpus != "tinyworld":
        raise ValueError(f"recipe {recipe.name!r}: unknown corpus {recipe.corpus!r} (known: 'tinyworld')")
    from minillm import tinyworld

    def texts(split):
        return [record["text"] for record in tinyworld.load(split)]

    return (pack_texts(texts("pretrain"), tokenizer, recipe.block_size, recipe.shuffle_seed),
            pack_texts(texts("pretrain_val"), tokenizer, recipe.block_size))


def path(name: str | Recipe, verbose: bool = False, device: str = "cpu") -> Path:
    """The cache folder of a zoo model (model.safetensors, history.json,
    recipe.json), training it on ``device`` first if it is not there yet."""
    recipe = get_recipe(name)
    folder = cache_dir() / f"{recipe.name}-{recipe.key()}"
    if (folder / "model.safetensors").exists():
        return folder
    folder.parent.mkdir(parents=True, exist_ok=True)
    lock = folder.with_name(folder.name + ".lock")
    if verbose:
        _say(f"zoo: {recipe.name!r} is not cached; waiting for the lock {lock}")
    with file_lock(lock):
        if not (folder / "model.safetensors").exists():  # someone may have trained it while we waited
            train(recipe, folder, verbose, device)
    return folder


def load(name: str | Recipe, device: str = "cpu", verbose: bool = False):
    """``(model, tokenizer)`` of a zoo model, in eval mode on ``device``.

    The first call trains it (``tinyworld-base``: about 4 minutes on 2 CPU
    cores) and caches the weights; later calls, in any process, load them in
    about a second. Prints nothing unless ``verbose``.
    """
    from minillm.tokenizer import load_book_tokenizer

    model = load_model(path(name, verbose, device) / "model.safetensors")
    return model.to(device).eval(), load_book_tokenizer()


def history(name: str | Recipe, verbose: bool = False) -> list[dict]:
    """The training history of a zoo model (one dict per step, see ``Trainer``)."""
    return json.loads((path(name, verbose) / "history.json").read_text())


def info(name: str | Recipe, verbose: bool = False) -> dict:
    """The recipe of a cached zoo model plus what training chose: ``chosen_step``
    and ``chosen_val_loss`` (the kept weights), ``train_seconds``."""
    return json.loads((path(name, verbose) / "recipe.json").read_text())


def train(recipe: Recipe, folder: Path, verbose: bool = False, device: str = "cpu") -> None:
    """Train ``recipe`` from its seed and write ``folder`` (atomically, by renaming)."""
    from minillm.tokenizer import load_book_tokenizer

    if verbose:
        _say(f"zoo: training {recipe.name!r} on {device} (first use only: about "
             f"{recipe.minutes:g} minutes on 2 CPU cores); it will be cached in {folder}")
    start = time.time()
    train_data, val_data = corpus(recipe, load_book_tokenizer())
    seed_everything(recipe.train_config().seed)  # the initial weights
    model = Transformer(recipe.model_config()).to(device)
    partial = folder.with_name(folder.name + ".partial.safetensors")
    best = folder.with_name(folder.name + ".best.safetensors")

    def keep_best(trainer, record):
        """Early stopping, without stopping: save the weights with the lowest held-out loss."""
        if "val_loss" in record and record["val_loss"] <= min(r.get("val_loss", math.inf) for r in trainer.history):
            save_model(trainer.model, best)

    trainer = Trainer(model, recipe.train_config(), train_data, val_data, checkpoint_path=partial, progress=verbose)
    if partial.exists():  # a previous first call was interrupted: continue it
        trainer.load_checkpoint(partial)
        if recipe.keep_best and trainer.history:  # it may have died between checkpoint and best weights
            keep_best(trainer, trainer.history[-1])
    with one_thread_on_cpu(device):
        history = trainer.fit(on_step=keep_best if recipe.keep_best else None)
    if recipe.keep_best:
        load_weights(model, best)
    tmp = folder.with_name(f"{folder.name}.tmp-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    save_model(model, tmp / "model.safetensors")
    (tmp / "history.json").write_text(json.dumps(history))
    evals = [r for r in history if "val_loss" in r]
    chosen = min(evals, key=lambda r: r["val_loss"]) if recipe.keep_best else evals[-1]
    info = {**dataclasses.asdict(recipe), "key": recipe.key(), "train_seconds": round(time.time() - start, 1),
            "chosen_step": chosen["step"], "chosen_val_loss": chosen["val_loss"]}
    (tmp / "recipe.json").write_text(json.dumps(info, indent=1))
    os.replace(tmp, folder)
    partial.unlink(missing_ok=True)
    best.unlink(missing_ok=True)
    if verbose:
        _say(f"zoo: trained {recipe.name!r} in {time.time() - start:.0f} s")


# ----------------------------------------------------------------- probing

def probe(model, tokenizer, people, max_new_tokens: int = 10) -> list[dict]:
    """Greedy completions of TinyWorld's probe prompts ("Mira Tolven was born in").

    people: ``tinyworld.Person`` objects (known people: their attributes are set).
    Returns one dict per (person, attribute): ``person``, ``attribute``,
    ``prompt``, ``gold``, ``completion``, ``correct``
    (``tinyworld.completion_is_correct``). Prompts start with ``<|bos|>``, like
    the documents; prompts of equal token length run as one batch (no padding).
    """
    from minillm import tinyworld

    rows = []
    for person in people:
        for attribute, (prompt, gold) in zip(tinyworld.ATTRIBUTES, tinyworld.completion_probes([person])):
            rows.append({"person": person.name, "attribute": attribute, "prompt": prompt, "gold": gold})
    bos = tokenizer.special_tokens["<|bos|>"]
    by_length = defaultdict(list)
    for row in rows:
        ids = [bos, *tokenizer.encode(row["prompt"])]
        by_length[len(ids)].append((row, ids))
    device = next(model.parameters()).device
    was_training = model.training
    model.eval()
    for n, group in sorted(by_length.items()):
        out = greedy_decode(model, torch.tensor([ids for _, ids in group], device=device), max_new_tokens)
        for (row, _), ids in zip(group, out[:, n:].tolist()):
            row["completion"] = tokenizer.decode(ids)
            row["correct"] = tinyworld.completion_is_correct(row["completion"], row["gold"])
    model.train(was_training)
    return rows


def attribute_accuracy(rows: list[dict]) -> dict[str, float]:
    """Fraction of correct completions per attribute (``probe``'s rows), plus "all"."""
    by_attribute = defaultdict(list)
    for row in rows:
        by_attribute[row["attribute"]].append(row["correct"])
        by_attribute["all"].append(row["correct"])
    return {k: sum(v) / len(v) for k, v in by_attribute.items()}


# ----------------------------------------------------------------- plumbing

@contextmanager
def file_lock(lock_path: Path):
    """Hold an exclusive lock on ``lock_path`` (created if needed) across processes."""
    with open(lock_path, "a+b") as f:
        try:
            import fcntl
        except ImportError:  # Windows: lock the file's first byte, retrying while another holds it
            import msvcrt

            while True:
                try:
                    msvcrt.locking(f.fileno(), msvcrt.LK_LOCK, 1)
                    break
                except OSError:  # LK_LOCK gives up after ~10 s
                    continue
            try:
                yield
            finally:
                f.seek(0)
                msvcrt.locking(f.fileno(), msvcrt.LK_UNLCK, 1)
            return
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


@contextmanager
def one_thread_on_cpu(device: str):
    """Train zoo models on one CPU thread. The book model's matrices are small,
    so a second thread buys little on an idle machine, and on a busy one
    (parallel notebook workers) threads wait on each other: we measured 2
    threads 2.6x slower than 1 there. One thread also makes the weights
    independent of the machine's core count."""
    threads = torch.get_num_threads()
    if torch.device(device).type == "cpu":
        torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


def _input_digest(corpus_name: str) -> str:
    """Hash of the files a recipe reads: the tokenizer and the corpus manifest."""
    from minillm import tinyworld
    from minillm.tokenizer import BOOK_TOKENIZER_FILE

    h = hashlib.sha256(Path(BOOK_TOKENIZER_FILE).read_bytes())
    if corpus_name == "tinyworld":
        h.update((tinyworld.RELEASE_DIR / "manifest.json").read_bytes())
    return h.hexdigest()


def _say(message: str) -> None:
    print(message, file=sys.stderr, flush=True)

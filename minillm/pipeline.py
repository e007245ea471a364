"""The training pipeline: named stage recipes, each starting from its parent.

    pretrain  ->  sft  ->  dpo  ->  grpo

A ``Recipe`` is everything that decides one stage's weights: its stage, its
parent recipe (whose weights it starts from), the model config (pretraining
only; later stages inherit the parent's), the training config with its seed,
the data files it reads and the stage's own options. Its ``key()`` hashes all
of that, the parent's key and the bytes of the files read, so changing
anything upstream retrains everything downstream instead of loading a stale
model. ``build(name)`` makes a stage's artifacts (building missing parents
first) in a cache folder ``<name>-<key>``:

    model.safetensors   the weights and config (``minillm.checkpoint``)
    history.json        one record per optimizer step (``Trainer.history``)
    recipe.json         the recipe, its key, and what training chose and took

Each stage is a function registered in ``STAGES``: ``run(recipe, parent,
out, work, verbose, device) -> dict`` writes ``model.safetensors`` and
``history.json`` into ``out`` and returns facts for ``recipe.json``; ``work``
is a folder that survives an interrupted run (its checkpoints make a killed
stage resume where it stopped). Locks and atomic folders: ``minillm.cache``.
Notebooks use the thin face ``minillm.zoo`` (``zoo.load(name)``).

    python -m minillm.pipeline --list              the recipes and their parents
    python -m minillm.pipeline tinyworld-base      build one (and its parents)
"""
from __future__ import annotations

import argparse
import dataclasses
import functools
import hashlib
import json
import math
import os
import shutil
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch

from minillm import dpo, seed_everything
from minillm.cache import SHIPPED_DIR, atomic_folder, cache_root, file_lock, ship, shipped_folder
from minillm.checkpoint import load_weights, save_model
from minillm.config import ModelConfig
from minillm.data import pack_texts
from minillm.grpo import run_cold_start, run_grpo
from minillm.model import Transformer
from minillm.train import TrainConfig, Trainer, one_thread_on_cpu, training_threads

#: Bump when the code that turns a recipe into weights changes meaning.
PIPELINE_VERSION = 2
STAGE_NAMES = ("pretrain", "sft", "dpo", "cold_start", "grpo")


@dataclass(frozen=True)
class Recipe:
    """How to make one stage's model. ``minutes``: about how long it trains on
    2 CPU cores (for messages and docs; not part of the key).

    ``corpus``/``block_size``/``shuffle_seed`` describe a pretraining corpus;
    ``keep_best`` keeps the weights of the evaluation step with the lowest
    held-out loss (early stopping without guessing the step); ``data`` lists
    the TinyWorld release files the stage reads (their bytes are in the key);
    ``options`` holds a later stage's own settings.
    """

    name: str
    model: dict | None
    train: dict
    stage: str = "pretrain"
    parent: str | None = None
    corpus: str = "tinyworld"
    data: tuple[str, ...] = ("pretrain", "pretrain_val")
    block_size: int = 128
    shuffle_seed: int | None = 0
    keep_best: bool = True
    options: dict = field(default_factory=dict)
    description: str = ""
    minutes: float = field(default=1.0, compare=False)

    def __post_init__(self):
        if self.stage not in STAGE_NAMES:
            raise ValueError(f"recipe {self.name!r}: unknown stage {self.stage!r}; choose one of {STAGE_NAMES}")
        if (self.parent is None) != (self.stage == "pretrain"):
            raise ValueError(f"recipe {self.name!r}: a {self.stage} stage "
                             f"{'must not' if self.stage == 'pretrain' else 'must'} have a parent")

    def model_config(self) -> ModelConfig:
        if self.model is None:
            raise ValueError(f"recipe {self.name!r} inherits its model config from {self.parent!r}")
        return ModelConfig(**self.model)

    def train_config(self) -> TrainConfig:
        return TrainConfig(**self.train)

    def key(self) -> str:
        """12 hex digits that change whenever the weights would."""
        spec = {"version": PIPELINE_VERSION, "stage": self.stage,
                "parent": get_recipe(self.parent).key() if self.parent else None,
                "model": self.model_config().to_dict() if self.model is not None else None,
                "train": self.train_config().to_dict(), "corpus": self.corpus,
                "block_size": self.block_size, "shuffle_seed": self.shuffle_seed,
                "keep_best": self.keep_best, "options": self.options,
                "inputs": input_digest(self.data)}
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
RECIPES: dict[str, Recipe] = {}


def register(recipe: Recipe) -> Recipe:
    """Add a recipe to ``RECIPES`` (its parent must be registered first)."""
    if recipe.parent is not None and recipe.parent not in RECIPES:
        raise ValueError(f"recipe {recipe.name!r}: parent {recipe.parent!r} is not registered")
    RECIPES[recipe.name] = recipe
    return recipe


register(TINYWORLD_BASE)

#: Part V's pretraining: the base model's recipe and size, on "mixed training"
#: (Allen-Zhu & Li 2023, Physics of Language Models 3.1): the biographies,
#: full-name paraphrases of them, and the SFT people's questions as chats
#: (loss on the answers only), shuffled together. Reading question-answer
#: pairs about some people while it stores everyone's facts teaches the model
#: to store each fact where a question can reach it; the held-out people are
#: never asked about (chapter 12 measures them). pretrain_val is the same
#: held-out loss as tinyworld-base's.
TINYWORLD_PRETRAIN = register(Recipe(
    name="tinyworld-pretrain",
    description="tinyworld-base's model and optimiser; mixed training on the biographies, full-name "
                "biographies and the SFT people's questions (assistant-only loss), 1200 steps x 16 blocks; "
                "keeps the weights with the lowest held-out loss",
    model=TINYWORLD_BASE.model,
    train={**TINYWORLD_BASE.train, "steps": 1200},
    data=("pretrain", "pretrain_val", "pretrain_fullname", "sft_train_wide"),
    minutes=5.0,
))

#: Chapter 12's supervised fine-tuning: the SFT people's questions (two to
#: four phrasings per fact, loss on the answers), a low learning rate, and
#: early stopping on the dev people's questions (never the held-out people).
TINYWORLD_SFT = register(Recipe(
    name="tinyworld-sft",
    stage="sft",
    parent="tinyworld-pretrain",
    description="tinyworld-pretrain fine-tuned on sft_train_wide (assistant-only loss), lr 3e-4, "
                "150 steps x 16 blocks; keeps the step with the best greedy accuracy on sft_dev",
    model=None,
    train=dict(steps=150, batch_size=16, lr=3e-4, min_lr=3e-5, warmup_steps=15, weight_decay=0.0,
               grad_clip=1.0, precision="auto", eval_every=0, checkpoint_every=50, seed=0),
    data=("sft_train_wide", "sft_dev"),
    keep_best=False,
    options={"eval_every": 25},
    minutes=1.5,
))


#: Chapter 14's DPO from the SFT model (the recipes live next to the loss, in
#: minillm.dpo): the book's recipe, and the first one, which chapter 14 dissects.
TINYWORLD_DPO = register(Recipe(**dpo.RECIPE))
TINYWORLD_DPO_FIRST = register(Recipe(**dpo.FIRST_RECIPE))


# Chapter 15's settings (measured on 2 busy CPU cores; see the chapter).
COLD_STEPS, GRPO_STEPS, GRPO_P, GRPO_LR, GRPO_HIGH_LR = 300, 100, 8, 1e-5, 1e-3

#: Chapter 15's cold start: SFT of the base model on worked addition traces
#: (loss on the trace and <|end|> only). Deliberately short: it teaches the
#: format and part of the arithmetic, and leaves room for RL.
REASONING_SFT = register(Recipe(
    name="tinyworld-reasoning-sft",
    stage="cold_start",
    parent="tinyworld-base",
    description="tinyworld-base fine-tuned on reasoning_train's worked traces (completion-only loss), "
                f"{COLD_STEPS} steps x 32 problems, lr 1e-3",
    model=None,
    train=dict(steps=COLD_STEPS, batch_size=32, lr=1e-3, min_lr=1e-4, warmup_steps=20, weight_decay=0.0,
               grad_clip=1.0, precision="fp32", eval_every=0, checkpoint_every=50, seed=0),
    data=("reasoning_train",),
    keep_best=False,
    options={"tag_weight": 1.0},
    minutes=1.5,
))

#: Chapter 15's GRPO runs from the cold start: three seeds of the book's
#: settings, and one with a learning rate high enough to collapse.
GRPO_OPTIONS = dict(steps=GRPO_STEPS, prompts_per_step=GRPO_P, group_size=8, lr=GRPO_LR, beta=0.0, epsilon=0.2,
                    loss_type="dapo", temperature=1.0, max_new_tokens=64)
for _name, _options in [("tinyworld-grpo", {"seed": 0}), ("tinyworld-grpo-seed1", {"seed": 1}),
                        ("tinyworld-grpo-seed2", {"seed": 2}),
                        ("tinyworld-grpo-high-lr", {"seed": 0, "lr": GRPO_HIGH_LR})]:
    register(Recipe(name=_name, stage="grpo", parent="tinyworld-reasoning-sft", model=None,
                    train=dict(seed=_options["seed"]), data=("reasoning_train",), keep_best=False,
                    options={**GRPO_OPTIONS, **_options},
                    description=f"GRPO from tinyworld-reasoning-sft: {({**GRPO_OPTIONS, **_options})}",
                    minutes=4.0))


#: Chapter 16's assistant: one chain through every stage, pretrain -> SFT ->
#: DPO -> cold start -> GRPO. The first three are chapters 12-14's recipes;
#: the reasoning stages repeat chapter 15's from the DPO model instead of the
#: base model. The cold start replays what the earlier stages trained on (SFT
#: chats, DPO's chosen replies, biographies) among the traces: without that
#: replay, learning the <think> format erased the refusals DPO taught and
#: part of the QA (measured in chapter 16's notes, bench/README.md).
ASSISTANT_COLD_START = register(Recipe(
    name="tinyworld-assistant-cold-start",
    stage="cold_start",
    parent="tinyworld-dpo",
    description="tinyworld-dpo fine-tuned on reasoning_train's worked traces with 1,000 sft_train_wide "
                "chats, 1,000 chosen replies of dpo_train (refusals shortened as tinyworld-dpo's; loss "
                "on the replies) and 1,000 pretraining biographies replayed among them, 300 steps x "
                "32, lr 1e-3",
    model=None,
    train=dict(steps=300, batch_size=32, lr=1e-3, min_lr=1e-4, warmup_steps=20, weight_decay=0.0,
               grad_clip=1.0, precision="fp32", eval_every=0, checkpoint_every=50, seed=0),
    data=("reasoning_train", "sft_train_wide", "pretrain", "dpo_train"),
    keep_best=False,
    options={"tag_weight": 1.0, "replay": 1000, "replay_text": 1000, "replay_pairs": 1000,
             "short_refusal": dpo.RECIPE["options"]["short_refusal"]},
    minutes=1.5,
))
#: The assistant's own settings (its parents differ from chapter 15's, so
#: chapter 15's constants are not imported: a change there does not retrain it).
#: Chapter 15's learning rate (its sweeps: 3e-5 lost points on every seed), for
#: 40 steps instead of 100 to keep the whole run near its 10-minute budget.
ASSISTANT_GRPO = dict(steps=40, prompts_per_step=8, group_size=8, lr=1e-5, beta=0.0, epsilon=0.2,
                      loss_type="dapo", temperature=1.0, max_new_tokens=64, seed=0)
ASSISTANT = register(Recipe(
    name="tinyworld-assistant", stage="grpo", parent=ASSISTANT_COLD_START.name, model=None,
    train=dict(seed=0), data=("reasoning_train",), keep_best=False, options=ASSISTANT_GRPO,
    description=f"GRPO from tinyworld-assistant-cold-start: {ASSISTANT_GRPO}", minutes=3.0))
#: The recipes ``python -m minillm.pipeline`` runs, oldest first.
ASSISTANT_CHAIN = ("tinyworld-pretrain", "tinyworld-sft", "tinyworld-dpo", ASSISTANT_COLD_START.name,
                   ASSISTANT.name)

#: The size dial. "tiny" is the book's recipes as they are
#: (bench/bench_pipeline.py times them on 2 CPU cores); the larger sizes widen
#: and deepen the model and pretrain longer, for a reader with a GPU. Later
#: stages keep their settings.
SIZES = {
    "tiny": None,
    "small": dict(model=dict(d_model=256, n_layers=6, n_heads=8, n_kv_heads=4, d_ff=768),
                  steps=2, lr=2e-3, minutes=40),
    "base": dict(model=dict(d_model=512, n_layers=8, n_heads=8, n_kv_heads=4, d_ff=1536),
                 steps=4, lr=1e-3, minutes=300),
}


def assistant_chain(size: str = "tiny") -> list[Recipe]:
    """The recipes of the assistant at a size, oldest first; other sizes than
    "tiny" are registered on first use as ``<name>-<size>``."""
    if size not in SIZES:
        raise ValueError(f"unknown size {size!r}; choose one of {list(SIZES)}")
    chain = [get_recipe(name) for name in ASSISTANT_CHAIN]
    if SIZES[size] is None:
        return chain
    dial, sized = SIZES[size], []
    for recipe in chain:
        changes = {"name": f"{recipe.name}-{size}", "parent": sized[-1].name if sized else None}
        if recipe.stage == "pretrain":
            changes.update(model={**recipe.model, **dial["model"]}, minutes=dial["minutes"],
                           train={**recipe.train, "steps": recipe.train["steps"] * dial["steps"],
                                  "lr": dial["lr"], "min_lr": dial["lr"] / 10})
        sized.append(RECIPES.get(changes["name"]) or register(dataclasses.replace(recipe, **changes)))
    return sized


def get_recipe(name: str | Recipe) -> Recipe:
    if isinstance(name, Recipe):
        return name
    if name not in RECIPES:
        raise ValueError(f"unknown recipe {name!r}; choose one of {sorted(RECIPES)}")
    return RECIPES[name]


def lineage(name: str | Recipe) -> list[Recipe]:
    """The recipe and its ancestors, oldest first (pretrain ... name)."""
    chain = [get_recipe(name)]
    while chain[0].parent is not None:
        chain.insert(0, get_recipe(chain[0].parent))
    return chain


@functools.lru_cache(maxsize=None)
def input_digest(files: tuple[str, ...]) -> str:
    """Hash of what a recipe reads: the book tokenizer and the named TinyWorld
    release files (only those, so adding a file to the release retrains nothing)."""
    from minillm import tinyworld
    from minillm.tokenizer import BOOK_TOKENIZER_FILE

    h = hashlib.sha256(Path(BOOK_TOKENIZER_FILE).read_bytes())
    for name in files:
        h.update(name.encode())
        h.update((tinyworld.RELEASE_DIR / f"{name}.jsonl").read_bytes())
    return h.hexdigest()


def folder_of(name: str | Recipe) -> Path:
    recipe = get_recipe(name)
    return cache_root() / "zoo" / f"{recipe.name}-{recipe.key()}"


def build(name: str | Recipe, verbose: bool = False, device: str = "cpu") -> Path:
    """The cache folder of a recipe's finished stage, training it (and any
    missing parent, first) on ``device`` if it is not there yet."""
    recipe = get_recipe(name)
    found = cached(recipe)
    if found is not None:
        return found
    parent = build(recipe.parent, verbose, device) if recipe.parent else None
    return train_stage(recipe, parent, folder_of(recipe), verbose, device)


def cached(name: str | Recipe) -> Path | None:
    """The finished folder of this exact recipe (same key) in the cache or
    among the book's shipped models, or None."""
    folder = folder_of(name)
    if (folder / "model.safetensors").exists():
        return folder
    return shipped_folder(folder.name)  # the book's own copy, if this exact recipe was shipped


def train_stage(recipe: Recipe, parent: Path | None, folder: Path, verbose: bool = False,
                device: str = "cpu") -> Path:
    """Train one stage from its ``parent`` folder's weights into ``folder``
    (``model.safetensors``, ``history.json``, ``recipe.json``), under a lock,
    atomically: ``folder`` appears complete or not at all. Checkpoints go to
    ``<folder>.work``, so a killed run resumes inside the stage."""
    lock = folder.with_name(folder.name + ".lock")
    if verbose:
        _say(f"pipeline: {recipe.name!r} is not built; waiting for the lock {lock}")
    with file_lock(lock):
        if (folder / "model.safetensors").exists():  # another process built it while we waited
            return folder
        if verbose:
            _say(f"pipeline: training {recipe.name!r} ({recipe.stage}) on {device} (about "
                 f"{recipe.minutes:g} minutes on 2 CPU cores) into {folder}")
        start = time.time()
        work = folder.with_name(folder.name + ".work")
        work.mkdir(parents=True, exist_ok=True)
        with atomic_folder(folder) as out:
            facts = STAGES[recipe.stage](recipe, parent, out, work, verbose, device)
            info = {**dataclasses.asdict(recipe), "key": recipe.key(),
                    "train_seconds": round(time.time() - start, 1), **facts}
            (out / "recipe.json").write_text(json.dumps(info, indent=1))
        shutil.rmtree(work, ignore_errors=True)
        if verbose:
            _say(f"pipeline: trained {recipe.name!r} in {time.time() - start:.0f} s")
    return folder


# ----------------------------------------------------------------- stages

def corpus(recipe: Recipe, tokenizer, extra_records=()
           ) -> tuple[tuple[torch.Tensor, torch.Tensor], tuple[torch.Tensor, torch.Tensor]]:
    """(train, val) packed blocks of a pretraining recipe, each (input_ids, labels) [N, block_size].
    ``extra_records``: more documents or chats shuffled into a mixed-training
    corpus (for experiments; a recipe's own data never needs them)."""
    if recipe.corpus != "tinyworld":
        raise ValueError(f"recipe {recipe.name!r}: unknown corpus {recipe.corpus!r} (known: 'tinyworld')")
    if extra_records and len(recipe.data) <= 2:
        raise ValueError(f"recipe {recipe.name!r} is not mixed training: extra_records need "
                         "a recipe with chats among its data")
    from minillm import tinyworld

    train_file, val_file = recipe.data[:2]

    def texts(split):
        return [record["text"] for record in tinyworld.load(split)]

    val = pack_texts(texts(val_file), tokenizer, recipe.block_size)
    if len(recipe.data) > 2:  # mixed training: more documents, and chats (assistant-only loss)
        from minillm.sft import mixed_blocks

        records = [r for name in (train_file, *recipe.data[2:]) for r in tinyworld.load(name)]
        records += list(extra_records)
        return mixed_blocks(records, tokenizer, recipe.block_size, recipe.shuffle_seed), val
    return pack_texts(texts(train_file), tokenizer, recipe.block_size, recipe.shuffle_seed), val


class KeepBest:
    """Trainer callback: early stopping without stopping. Saves the weights of
    every evaluation step whose held-out loss is the lowest so far to ``path``."""

    def __init__(self, path: Path):
        self.path = path

    def after_step(self, trainer, record) -> None:
        if "val_loss" in record and record["val_loss"] <= min(
                r.get("val_loss", math.inf) for r in trainer.history):
            save_model(trainer.model, self.path)


def run_pretrain(recipe: Recipe, parent: Path | None, out: Path, work: Path, verbose: bool,
                 device: str) -> dict:
    """Pretrain from random weights (seeded) on the recipe's corpus."""
    from minillm.tokenizer import load_book_tokenizer

    train_data, val_data = corpus(recipe, load_book_tokenizer())
    seed_everything(recipe.train_config().seed)  # the initial weights
    model = Transformer(recipe.model_config()).to(device)
    partial, best = work / "partial.safetensors", work / "best.safetensors"
    callbacks = [KeepBest(best)] if recipe.keep_best else []
    trainer = Trainer(model, recipe.train_config(), train_data, val_data, callbacks=callbacks,
                      checkpoint_path=partial, progress=verbose)
    if partial.exists():  # a previous first call was interrupted: continue it
        trainer.load_checkpoint(partial)
        if recipe.keep_best and trainer.history:  # it may have died between checkpoint and best weights
            callbacks[0].after_step(trainer, trainer.history[-1])
    with one_thread_on_cpu(device):
        history = trainer.fit()
    if recipe.keep_best:
        load_weights(model, best)
    save_model(model, out / "model.safetensors")
    (out / "history.json").write_text(json.dumps(history))
    evals = [r for r in history if "val_loss" in r]
    chosen = min(evals, key=lambda r: r["val_loss"]) if recipe.keep_best else evals[-1]
    return {"chosen_step": chosen["step"], "chosen_val_loss": chosen["val_loss"]}


def run_sft(recipe: Recipe, parent: Path | None, out: Path, work: Path, verbose: bool,
            device: str) -> dict:
    """Fine-tune the parent on chat examples (``minillm.sft.train_sft``):
    ``data`` = (training chats, dev chats); early stopping on dev accuracy."""
    from minillm import tinyworld
    from minillm.checkpoint import load_model
    from minillm.sft import train_sft
    from minillm.tokenizer import load_book_tokenizer

    train_file, dev_file = recipe.data[:2]
    model = load_model(parent / "model.safetensors").to(device)
    seed_everything(recipe.train_config().seed)
    with one_thread_on_cpu(device):
        history, facts = train_sft(model, load_book_tokenizer(), tinyworld.load(train_file),
                                   tinyworld.load(dev_file), recipe.train_config(),
                                   block_size=recipe.block_size, work=work, progress=verbose,
                                   **recipe.options)
    save_model(model, out / "model.safetensors")
    (out / "history.json").write_text(json.dumps(history))
    return facts


#: stage name -> the function that trains it (see the module docstring).
STAGES = {"pretrain": run_pretrain, "sft": run_sft, "dpo": dpo.run_stage, "cold_start": run_cold_start,
          "grpo": run_grpo}


def _say(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


# ----------------------------------------------------------------- a whole run

def check_stages(stages: str | list[str] | None, chain: list[Recipe]) -> list[Recipe]:
    """The first recipes of ``chain`` named by ``stages`` ("pretrain,sft" or a
    list; None: all), which must be a prefix of the chain's stages."""
    order = [recipe.stage for recipe in chain]
    if stages is None:
        return chain
    names = stages.split(",") if isinstance(stages, str) else list(stages)
    names = [name.strip() for name in names if name.strip()]
    unknown = [name for name in names if name not in order]
    if unknown or not names:
        raise ValueError(f"unknown stage(s) {unknown or names}; the stages are {','.join(order)}")
    if names != order[:len(names)]:
        raise ValueError(f"--stages must be a prefix of {','.join(order)} (each stage starts from "
                         f"the one before it), got {','.join(names)}")
    return chain[:len(names)]


def book_numbers(recipe: Recipe) -> dict | None:
    """The report-card numbers of the book's shipped model of exactly this
    recipe (its ``evals.json`` and costs), or None."""
    from minillm.report import stage_costs

    folder = shipped_folder(f"{recipe.name}-{recipe.key()}")
    if folder is None or not (folder / "evals.json").exists():
        return None
    return {**json.loads((folder / "evals.json").read_text()), **stage_costs(folder)}


def evaluate_stage(folder: Path, device: str = "cpu") -> dict:
    """The report card's metrics of a finished stage, computed once and kept
    in ``evals.json`` next to its weights."""
    from minillm.checkpoint import load_model
    from minillm.report import stage_metrics
    from minillm.tokenizer import load_book_tokenizer

    path = folder / "evals.json"
    if not path.exists():
        model = load_model(folder / "model.safetensors").to(device).eval()
        metrics = stage_metrics(model, load_book_tokenizer())
        path.write_text(json.dumps(metrics, indent=1))
    return json.loads(path.read_text())


def run(out: str | Path, size: str = "tiny", stages=None, resume: bool = False, reuse: bool = False,
        device: str = "cpu", verbose: bool = True, threads: int = 1) -> list[dict]:
    """Train the assistant stage after stage into ``out``; returns the report card's rows.

    ``out/<i>-<stage>/`` gets each stage's weights, history, recipe and
    ``evals.json``; ``out/run.json`` the run's recipes and keys;
    ``out/log.jsonl`` every evaluation (training-time and report card);
    ``out/report.md`` and ``out/report.png`` the report card; ``out/hf/`` the
    last stage exported for ``transformers``. ``resume`` continues a killed run
    (finished stages are kept, an unfinished one resumes from its checkpoint);
    ``reuse`` copies stages whose exact recipe is already cached or shipped
    instead of training them (chapter 16 does this; the default trains all).
    ``threads``: CPU threads each stage trains with (1: the weights are the
    book's bit for bit on the machine that built them; more is faster on an
    idle machine and may round differently).
    """
    import matplotlib.pyplot as plt

    from minillm.report import plot_run, stage_costs

    chain = check_stages(stages, assistant_chain(size))
    out = Path(out)
    keys = {recipe.name: recipe.key() for recipe in chain}
    plan_path = out / "run.json"
    if out.exists() and any(out.iterdir()):
        if not resume:
            raise ValueError(f"{out} is not empty: pass --resume to continue the run in it, or choose "
                             "another --out")
        if plan_path.exists():
            before = json.loads(plan_path.read_text())["keys"]
            changed = [name for name in keys if name in before and before[name] != keys[name]]
            if changed:
                raise ValueError(f"{out} holds a run of other recipes ({', '.join(changed)} changed "
                                 "since); start a new run with another --out")
    out.mkdir(parents=True, exist_ok=True)
    plan_path.write_text(json.dumps({"size": size, "device": device, "keys": keys,
                                     "recipes": [dataclasses.asdict(r) for r in chain]}, indent=1))
    rows, folders, parent = [], [], None
    for i, recipe in enumerate(chain, 1):
        folder = out / f"{i}-{recipe.stage}"
        done = (folder / "model.safetensors").exists()
        if verbose:
            _say(f"[{i}/{len(chain)}] {recipe.stage} ({recipe.name}): " +
                 ("finished before, kept" if done else recipe.description))
        if not done:
            found = cached(recipe) if reuse else None
            if found is not None:
                shutil.copytree(found, folder)
            else:
                with training_threads(threads):
                    train_stage(recipe, parent, folder, verbose=verbose, device=device)
        metrics = evaluate_stage(folder, device)
        row = {"stage": recipe.stage, "recipe": recipe.name, **metrics, **stage_costs(folder)}
        if not done:
            _log(out, recipe, folder, metrics)
        rows.append(row)
        folders.append(folder)
        parent = folder
        if verbose:
            print(f"[{i}/{len(chain)}] {recipe.stage}: {_summary(row)}", flush=True)
    reference = {r.name: n for r in chain if (n := book_numbers(r)) is not None}
    _write_report(out, rows, reference, size)
    plt.close(plot_run(folders, out / "report.png"))  # saved, not shown
    _export(folders[-1], out / "hf")
    return rows


def _summary(row: dict) -> str:
    return (f"held-out QA {row['heldout_accuracy']:.1%}, seen QA {row['seen_accuracy']:.1%}, "
            f"refuses unknown {row['unknown_refusal']:.1%}, arithmetic {row['reasoning_accuracy']:.1%} "
            f"(format {row['reasoning_format']:.1%}), val ppl {row['val_perplexity']:.2f}; "
            f"{row['seconds']:.0f} s")


def _log(out: Path, recipe: Recipe, folder: Path, metrics: dict) -> None:
    """Append a stage's evaluations to ``out/log.jsonl``: each training-time
    evaluation (held-out loss, dev accuracy) and the report card's metrics."""
    history = json.loads((folder / "history.json").read_text())
    with open(out / "log.jsonl", "a") as f:
        for record in history:
            evals = {k: v for k, v in record.items() if k in ("val_loss", "dev_accuracy")}
            if evals:
                f.write(json.dumps({"stage": recipe.stage, "step": record["step"], **evals}) + "\n")
        f.write(json.dumps({"stage": recipe.stage, "step": "final", **metrics}) + "\n")


def _write_report(out: Path, rows: list[dict], reference: dict, size: str) -> None:
    from minillm.report import card_table

    total = sum(row["seconds"] for row in rows)
    text = [f"# Report card: the TinyWorld assistant ({size})", "",
            f"{len(rows)} stages, {total / 60:.1f} minutes of training in all. Greedy decoding; "
            "every number computed by `minillm.report.stage_metrics` on TinyWorld's held-out "
            "splits. Rows marked (book) are the book's shipped models of the same recipes.", "",
            card_table(rows, reference), "", "![curves](report.png)", ""]
    (out / "report.md").write_text("\n".join(text))


def _export(folder: Path, target: Path) -> None:
    """The last stage's model, tokenizer and chat template for ``transformers``."""
    from minillm.checkpoint import load_model
    from minillm.hf import export
    from minillm.tokenizer import load_book_tokenizer

    export(load_model(folder / "model.safetensors"), load_book_tokenizer(), target)


# ----------------------------------------------------------------- command line

def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m minillm.pipeline",
        description="Train the TinyWorld assistant from nothing: pretrain -> SFT -> DPO -> cold-start "
                    "SFT -> GRPO, each stage from the one before, with a report card (at --size "
                    "tiny, about 10 minutes on an idle 2-core CPU, half of it pretraining: see "
                    "bench/bench_pipeline.py). With recipe names, build those models into the "
                    "cache instead (the book's notebooks load them from there).")
    parser.add_argument("recipes", nargs="*",
                        help="recipe names to build into the cache (see --list); none: run the pipeline")
    parser.add_argument("--out", default=None,
                        help="folder for the run (default: runs/assistant-<size>); must be empty "
                             "unless --resume")
    parser.add_argument("--size", default="tiny", choices=list(SIZES),
                        help="model and pretraining size: tiny is the book's (CPU), small and base "
                             "are wider, deeper and longer, for a GPU (default: tiny)")
    parser.add_argument("--stages", default=None,
                        help="run only the first stages, comma-separated, e.g. pretrain,sft "
                             f"(default: all of {','.join(r.stage for r in assistant_chain())})")
    parser.add_argument("--resume", action="store_true",
                        help="continue a killed run in --out: finished stages are kept, the "
                             "unfinished one resumes from its last checkpoint")
    parser.add_argument("--reuse", action="store_true",
                        help="copy stages whose exact recipe is already cached or shipped with "
                             "the book instead of training them")
    parser.add_argument("--device", default="cpu", help="cpu, cuda or mps (default: cpu)")
    parser.add_argument("--threads", type=int, default=None,
                        help="CPU threads each stage trains with (default: all "
                             f"{os.cpu_count()} cores of this machine; 1 reproduces the book's "
                             "shipped models exactly, more is faster on an idle machine and "
                             "may round differently). "
                             "Recipe names always build on one thread")
    parser.add_argument("--list", action="store_true", help="list the recipes and exit")
    parser.add_argument("--ship", action="store_true",
                        help="with recipe names: copy the built models into data/zoo/ (the book's "
                             "shipped checkpoints)")
    args = parser.parse_args(argv)
    if args.list:
        for recipe in RECIPES.values():
            print(f"{recipe.name:32s} {recipe.stage:10s} parent={recipe.parent or '-':32s} "
                  f"key={recipe.key()}")
        return 0
    if args.device not in ("cpu", "mps") and not args.device.startswith("cuda"):
        parser.error(f"unknown --device {args.device!r}; use cpu, cuda, cuda:N or mps")
    if args.device.startswith("cuda") and not torch.cuda.is_available():
        parser.error("--device cuda: no CUDA GPU is visible to PyTorch here")
    if args.threads is not None and args.threads < 1:
        parser.error(f"--threads must be at least 1, got {args.threads}")
    if args.recipes:
        if args.threads is not None:
            parser.error("--threads is for a pipeline run; recipe names build the cache on one "
                         "thread (its models must not depend on the machine's core count)")
        for name in args.recipes:
            try:
                folder = build(name, verbose=True, device=args.device)
            except ValueError as error:
                parser.error(str(error))
            if args.ship:  # with the report card's metrics, computed once here
                evaluate_stage(folder, args.device)
                print(f"  shipped to {ship(folder)}")
            info = json.loads((folder / "recipe.json").read_text())
            print(f"{name}: {folder} ({info['train_seconds']} s)")
        return 0
    if args.ship:
        parser.error("--ship needs recipe names")
    out = args.out or f"runs/assistant-{args.size}"
    try:
        rows = run(out, args.size, args.stages, args.resume, args.reuse, args.device,
                   threads=args.threads or os.cpu_count() or 1)
    except ValueError as error:
        parser.error(str(error))
    print(f"report card: {Path(out) / 'report.md'}; model for transformers: {Path(out) / 'hf'}")
    return 0 if rows else 1


if __name__ == "__main__":
    sys.exit(main())

"""Short pretraining runs for hyperparameter sweeps.

A sweep trains the same model many times with one setting changed. Each run
here is a shortened copy of a pretraining recipe: the recipe's model, corpus
and optimizer, with its own step budget, batch size, peak learning rate and
seed, and the same shape of schedule (linear warmup, cosine down to a tenth
of the peak). It returns the held-out loss at the end.

    from minillm import sweeps, zoo
    loss = sweeps.short_pretrain(zoo.TINYWORLD_BASE, lr=1e-2, seed=1, steps=200)

Chapter 7 sweeps the peak learning rate this way (``bench/bench_lr_sweep.py``
writes the table, the notebook recomputes one row).
"""
from __future__ import annotations

import dataclasses

from minillm import seed_everything
from minillm.evals import dataset_loss
from minillm.model import Transformer
from minillm.pipeline import Recipe, corpus
from minillm.train import Trainer, one_thread_on_cpu


def short_pretrain(recipe: Recipe, lr: float, seed: int, steps: int, batch_size: int = 8,
                   warmup_steps: int = 10, min_lr_ratio: float = 0.1, tokenizer=None,
                   device: str = "cpu") -> dict:
    """Pretrain ``recipe``'s model from scratch for ``steps`` optimizer steps of
    ``batch_size`` blocks with peak learning rate ``lr`` (warmup, then cosine to
    ``min_lr_ratio * lr``); ``seed`` sets the initial weights and the data order.

    Returns ``{"val_loss": held-out loss at the end (nats per token),
    "train_loss": mean training loss of the last 10 steps, "tokens": tokens seen}``.
    Runs on one CPU thread, so a run repeats exactly on the same machine.
    """
    if tokenizer is None:
        from minillm.tokenizer import load_book_tokenizer

        tokenizer = load_book_tokenizer()
    train_data, val_data = corpus(recipe, tokenizer)
    config = dataclasses.replace(recipe.train_config(), steps=steps, batch_size=batch_size,
                                 lr=lr, min_lr=min_lr_ratio * lr, warmup_steps=warmup_steps,
                                 eval_every=0, checkpoint_every=0, seed=seed)
    seed_everything(seed)  # the initial weights
    model = Transformer(recipe.model_config()).to(device)
    trainer = Trainer(model, config, train_data, progress=False)
    with one_thread_on_cpu(device):
        history = trainer.fit()
        val_loss = dataset_loss(model, *val_data, config.eval_batch_size, config.precision)
    last = history[-10:]
    return {"val_loss": float(val_loss),
            "train_loss": sum(r["loss"] for r in last) / len(last),
            "tokens": history[-1]["tokens"]}

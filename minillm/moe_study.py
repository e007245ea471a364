"""Chapter 9.2's experiment: dense vs mixture-of-experts models on fresh TinyWorld text.

One place for the code that ``bench/bench_moe.py`` runs on several seeds and
the notebook re-runs live for one seed, so that both compute the same thing:

- ``fresh_biographies``: new paraphrased biographies of TinyWorld's known
  people, from the world generator with a stage name of its own (the same
  facts as ``pretrain``, new sentences), so a run of a few hundred steps never
  sees a block twice and a bigger model is not held back by repetition;
- ``study_configs``: the compared models (dense with the MoE's active width,
  dense with its total width, two MoE layouts, and an unbalanced MoE);
- ``train``: AdamW on a fixed batch order, router biases nudged after every
  step when the config balances with the bias (chapter 9.1 trains its three
  routers with it too);
- ``capacity_drops``: held-out loss and the share of dropped assignments with
  every MoE layer capped at a capacity factor.
"""
from __future__ import annotations

import random

import torch

from . import seed_everything
from .config import ModelConfig, MoEConfig
from .data import Batches, pack_texts
from .evals import dataset_loss, eval_mode
from .loss import count_targets, lm_loss
from .model import Transformer
from .moe import expert_load, moe_layers, update_router_biases

ACTIVE_WIDTH, TOTAL_WIDTH = 32, 128     # MLP hidden units per token / stored


def fresh_biographies(tokenizer, per_person: int = 60, block_size: int = 64,
                      stage: str = "moe_study") -> tuple[torch.Tensor, torch.Tensor]:
    """``per_person`` new biographies of every known TinyWorld person, shuffled
    and packed: (input_ids, labels), [N, block_size]. The generator's stage name
    seeds its own random stream, so the sentences are new but the facts are the
    ones ``pretrain`` and ``pretrain_val`` state."""
    from .tinyworld.bios import biographies
    from .tinyworld.world import TinyWorldConfig, generate_world

    records = biographies(generate_world(TinyWorldConfig()), stage, per_person,
                          canonical_first=False)
    texts = [r["text"] for r in records]
    random.Random(0).shuffle(texts)     # one person's biographies apart
    return pack_texts(texts, tokenizer, block_size)


def study_configs(vocab_size: int) -> dict[str, ModelConfig]:
    """The compared models: 2 layers, d = 64; MLP hidden units per token and
    stored (ACTIVE_WIDTH, TOTAL_WIDTH) as the names say."""
    base = dict(vocab_size=vocab_size, d_model=64, n_layers=2, n_heads=2, max_seq_len=64)
    width = TOTAL_WIDTH // 8

    def moe(**kw):
        return ModelConfig(**base, moe=MoEConfig(expert_d_ff=width, **kw))

    return {
        "dense, equal active": ModelConfig(**base, d_ff=ACTIVE_WIDTH),
        "dense, equal total": ModelConfig(**base, d_ff=TOTAL_WIDTH),
        "MoE 8x16 top-2": moe(n_experts=8, experts_top_k=2, router_balance="bias"),
        "MoE 1 shared + 7x16 top-1": moe(n_experts=7, experts_top_k=1, n_shared_experts=1,
                                         router_balance="bias", router_norm_topk=False),
        "MoE 8x16 top-2, unbalanced": moe(n_experts=8, experts_top_k=2, router_balance=None),
    }


def train(config: ModelConfig, blocks: tuple[torch.Tensor, torch.Tensor], steps: int,
          lr: float = 3e-3, seed: int = 0, batch_size: int = 16,
          val: tuple[torch.Tensor, torch.Tensor] | None = None,
          eval_every: int | None = None, record_load: bool = False
          ) -> tuple[Transformer, dict]:
    """AdamW (no weight decay) on ``batch_size`` blocks a step, the batches in
    the order of ``Batches(seed=seed)``. Returns the model and a log:
    ``train`` (each step's loss), ``val`` ({step: held-out loss}, every
    ``eval_every`` steps and at the end, when ``val`` is given) and, with
    ``record_load``, ``load`` [steps, L, E]: each step's assignments per expert."""
    seed_everything(seed)
    model = Transformer(config)
    optimizer = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.0)
    batches = Batches(*blocks, batch_size=batch_size, seed=seed)
    balance_by_bias = config.moe is not None and config.moe.router_balance == "bias"
    log = {"train": [], "val": {}, "load": []}
    for step in range(1, steps + 1):
        x, y = next(batches)
        _, loss = model(x, labels=y)    # + the aux loss if router_balance="aux"
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        if balance_by_bias:
            update_router_biases(model)  # b_i += u * sign(mean load - load_i)
        log["train"].append(loss.item())
        if record_load:
            log["load"].append(expert_load(model))
        if val is not None and (step == steps or (eval_every and step % eval_every == 0)):
            log["val"][step] = dataset_loss(model, *val)
    if record_load:
        log["load"] = torch.stack(log["load"])
    return model, log


@torch.no_grad()
def capacity_drops(model: Transformer, blocks: tuple[torch.Tensor, torch.Tensor],
                   capacity_factor: float | None, batch_size: int = 64) -> dict:
    """Held-out loss and routing with every MoE layer capped at
    ``capacity_factor`` (None: no cap), ``batch_size`` blocks per forward (the
    capacity is counted per forward). Returns ``loss`` (nats per target token),
    ``dropped`` (share of all assignments over capacity) and ``top_share``
    (the busiest expert's share of its layer's assignments, worst layer)."""
    layers = moe_layers(model)
    saved = [layer.config for layer in layers]
    for layer in layers:
        layer.config = layer.config.replace(capacity_factor=capacity_factor)
    total, count, dropped, assigned = 0.0, 0, 0, 0
    load = torch.zeros(len(layers), layers[0].config.n_experts) if layers else None
    try:
        with eval_mode(model):
            for i in range(0, len(blocks[0]), batch_size):
                x, y = blocks[0][i:i + batch_size], blocks[1][i:i + batch_size]
                n = count_targets(y)
                total += lm_loss(model(x), y).item() * n
                count += n
                for j, layer in enumerate(layers):
                    dropped += layer.stats["dropped"]
                    assigned += int(layer.stats["load"].sum())
                    load[j] += layer.stats["load"]
    finally:
        for layer, config in zip(layers, saved):
            layer.config = config
    top_share = (load.max(-1).values / load.sum(-1)).max().item() if layers else 0.0
    return {"loss": total / count, "dropped": dropped / max(assigned, 1),
            "top_share": top_share}

"""Direct preference optimization (DPO, Rafailov et al. 2023), and its data.

A preference pair is a prompt with two replies, one preferred ("chosen") and
one not ("rejected"). DPO trains the policy pi directly on such pairs, with no
reward model and no sampling, by minimising

    L = -log sigmoid(beta * [(log pi(y_w|x) - log pi_ref(y_w|x))
                             - (log pi(y_l|x) - log pi_ref(y_l|x))])

where pi_ref is the frozen starting model (the SFT model) and a reply's
log-probability is the *sum* over its tokens (prompt tokens not counted).
``beta * (log pi - log pi_ref)`` is the reply's *implicit reward*; the loss is
a logistic regression that pushes the chosen reward above the rejected one.

Pipeline, in the order a training run uses it:

    load_pairs("dpo_train")            validated records; a bad one is named
    encode_pairs(records, tokenizer)   padded tensors, prompt masked in labels
    add_reference_log_probs(ref, data) pi_ref's log-probs, once, before training
    PairBatches(data, batch_size)      reproducible, resumable batches
    DPOLoss(beta)                      the Trainer's loss_fn; records metrics

``dpo_loss`` is the loss on given log-probs (what the tests compare with
``trl``): the sigmoid loss, IPO (Azar et al. 2023; trl's form, each reply's
log-ratio averaged over its tokens) and the robust loss (Chowdhury et al.
2024, for a known rate of flipped labels). ``average=True`` scores a reply by
its mean token log-prob instead of the sum (length-normalised).

Shapes: N pairs, B pairs in a batch, T tokens.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from minillm.chat import END, check_messages, encode_chat
from minillm.model import IGNORE_INDEX
from minillm.tinyworld.tasks import IDK

LOSS_TYPES = ("sigmoid", "ipo", "robust")
PAIR_KEYS = ("id", "prompt", "chosen", "rejected")


# ------------------------------------------------------------------- data

def check_pair(record, where: str) -> dict:
    """The record, validated; a ValueError names ``where`` (file:line) and the id."""
    if not isinstance(record, dict):
        raise ValueError(f"{where}: expected a JSON object, got {type(record).__name__}")
    missing = [k for k in PAIR_KEYS if k not in record]
    if missing:
        raise ValueError(f"{where}: missing key {missing[0]!r} (record has keys {sorted(record)})")
    name = f"{where} (id {record['id']!r})"
    try:
        prompt = check_messages(record["prompt"])
    except ValueError as error:
        raise ValueError(f"{name}: bad prompt: {error}") from None
    if prompt[-1]["role"] != "user":
        raise ValueError(f"{name}: the prompt must end with a user message, "
                         f"not {prompt[-1]['role']!r}")
    for key in ("chosen", "rejected"):
        if not isinstance(record[key], str) or not record[key].strip():
            raise ValueError(f"{name}: {key!r} must be a non-empty string, got {record[key]!r}")
    if record["chosen"] == record["rejected"]:
        raise ValueError(f"{name}: chosen and rejected are the same reply "
                         f"({record['chosen']!r}): the pair prefers nothing")
    return record


def load_pairs(source: str | Path, data_dir: str | Path | None = None) -> list[dict]:
    """Preference records from a TinyWorld split ("dpo_train", "dpo_eval") or a
    JSONL path. Each needs ``id``, ``prompt`` (chat messages ending with the
    user's), ``chosen`` and ``rejected`` (different non-empty strings)."""
    from minillm import tinyworld

    if str(source) in ("dpo_train", "dpo_eval"):
        path = Path(data_dir or tinyworld.RELEASE_DIR) / f"{source}.jsonl"
        records = tinyworld.load(str(source), data_dir)
    else:
        path = Path(source)
        records = tinyworld.load_jsonl(path)
    return [check_pair(r, f"{path}:{i}") for i, r in enumerate(records, start=1)]


def encode_pair(record: dict, tokenizer) -> tuple[list[int], list[int], list[int]]:
    """(prompt, chosen, rejected) ids. The prompt ends with ``<|assistant|>``;
    a reply is its text and ``<|end|>``, exactly the tokens SFT trained on."""
    prompt, _ = encode_chat(record["prompt"], tokenizer, add_generation_prompt=True)
    end = tokenizer.special_tokens[END]
    return (prompt, tokenizer.encode(record["chosen"]) + [end],
            tokenizer.encode(record["rejected"]) + [end])


def encode_pairs(records: list[dict], tokenizer) -> dict[str, torch.Tensor]:
    """Pad every pair to one length T (right padding with ``<|pad|>``).

    Returns ``chosen_ids``, ``rejected_ids`` [N, T] (prompt + reply) and
    ``chosen_labels``, ``rejected_labels`` [N, T]: the reply's ids, IGNORE_INDEX
    on the prompt and padding. (No key is called ``labels``: a DPO batch is
    weighted by pairs, not by target tokens.)
    """
    if not records:
        raise ValueError("encode_pairs needs at least one record")
    pad = tokenizer.special_tokens["<|pad|>"]
    rows = {"chosen": [], "rejected": []}
    for record in records:
        prompt, *replies = encode_pair(record, tokenizer)
        for key, reply in zip(rows, replies):
            rows[key].append((prompt + reply, [IGNORE_INDEX] * len(prompt) + reply))
    T = max(len(ids) for pairs in rows.values() for ids, _ in pairs)
    data = {}
    for key, pairs in rows.items():
        data[f"{key}_ids"] = torch.tensor([ids + [pad] * (T - len(ids)) for ids, _ in pairs])
        data[f"{key}_labels"] = torch.tensor([y + [IGNORE_INDEX] * (T - len(y)) for _, y in pairs])
    return data


class PairBatches:
    """Endless, reproducible batches of pairs: a new permutation of the N pairs
    each epoch (NumPy seeded with ``[seed, epoch]``), the last ``N % batch_size``
    of each epoch's order skipped. ``state_dict`` is where to resume."""

    def __init__(self, data: dict[str, torch.Tensor], batch_size: int, seed: int = 0):
        n = {len(v) for v in data.values()}
        if len(n) != 1:
            raise ValueError(f"every tensor of the pair data must have N rows, got {sorted(n)}")
        self.data, self.n = data, n.pop()
        if not isinstance(batch_size, int) or not 1 <= batch_size <= self.n:
            raise ValueError(f"batch_size must be an integer in [1, {self.n}], got {batch_size!r}")
        self.batch_size, self.seed, self.epoch, self.batch = batch_size, seed, 0, 0

    def __iter__(self):
        return self

    def __next__(self) -> dict[str, torch.Tensor]:
        if self.batch >= self.n // self.batch_size:
            self.epoch, self.batch = self.epoch + 1, 0
        order = np.random.default_rng([self.seed, self.epoch]).permutation(self.n)
        index = torch.from_numpy(order[self.batch * self.batch_size:][:self.batch_size])
        self.batch += 1
        return {k: v[index] for k, v in self.data.items()}

    def state_dict(self) -> dict:
        return {"epoch": self.epoch, "batch": self.batch, "seed": self.seed,
                "batch_size": self.batch_size, "n_pairs": self.n}

    def load_state_dict(self, state: dict) -> None:
        for key in ("seed", "batch_size", "n_pairs"):
            if state.get(key) != self.state_dict()[key]:
                raise ValueError(f"cannot resume: saved {key}={state.get(key)!r}, "
                                 f"these batches have {self.state_dict()[key]!r}")
        self.epoch, self.batch = int(state["epoch"]), int(state["batch"])


# ------------------------------------------------------- log-probabilities

def completion_log_probs(model, input_ids: torch.Tensor, labels: torch.Tensor,
                         ) -> tuple[torch.Tensor, torch.Tensor]:
    """Summed log-probs of the labelled tokens and their count: [B, T] -> [B], [B].

    The logits at t score labels[t + 1]; positions labelled IGNORE_INDEX (the
    prompt, padding) contribute nothing. Trailing columns that are padding in
    every row are cut first: they cost compute and change nothing (causal).
    """
    width = int((labels != IGNORE_INDEX).any(0).nonzero().max()) + 1
    input_ids, labels = input_ids[:, :width], labels[:, :width]
    logits = model(input_ids)
    logits = logits.to(torch.promote_types(logits.dtype, torch.float32))
    targets = F.pad(labels, (0, 1), value=IGNORE_INDEX)[:, 1:]  # targets[t] = labels[t + 1]
    token_nll = F.cross_entropy(logits.transpose(1, 2), targets, ignore_index=IGNORE_INDEX,
                                reduction="none")  # [B, T], 0 where ignored
    return -token_nll.sum(-1), (targets != IGNORE_INDEX).sum(-1)


def pair_log_probs(model, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Chosen and rejected replies in one forward pass of 2B rows.

    Returns ``chosen``, ``rejected`` (summed log-probs [B]) and
    ``chosen_tokens``, ``rejected_tokens`` (reply lengths [B])."""
    B = len(batch["chosen_ids"])
    ids = torch.cat((batch["chosen_ids"], batch["rejected_ids"]))
    labels = torch.cat((batch["chosen_labels"], batch["rejected_labels"]))
    logp, count = completion_log_probs(model, ids, labels)
    return {"chosen": logp[:B], "rejected": logp[B:],
            "chosen_tokens": count[:B], "rejected_tokens": count[B:]}


@torch.no_grad()
def add_reference_log_probs(ref_model, data: dict[str, torch.Tensor],
                            batch_size: int = 128) -> dict[str, torch.Tensor]:
    """``data`` plus ``ref_chosen`` and ``ref_rejected`` [N]: the frozen reference
    model's summed log-probs, computed once so training runs one model, not two."""
    device = next(ref_model.parameters()).device
    was_training = ref_model.training
    ref_model.eval()
    out = {"chosen": [], "rejected": []}
    N = len(data["chosen_ids"])
    for i in range(0, N, batch_size):
        batch = {k: data[f"{k}"][i:i + batch_size].to(device) for k in
                 ("chosen_ids", "chosen_labels", "rejected_ids", "rejected_labels")}
        logp = pair_log_probs(ref_model, batch)
        out["chosen"].append(logp["chosen"].cpu())
        out["rejected"].append(logp["rejected"].cpu())
    ref_model.train(was_training)
    return {**data, "ref_chosen": torch.cat(out["chosen"]), "ref_rejected": torch.cat(out["rejected"])}


# ----------------------------------------------------------------- the loss

def dpo_loss(chosen: torch.Tensor, rejected: torch.Tensor, ref_chosen: torch.Tensor,
             ref_rejected: torch.Tensor, beta: float = 0.1, loss_type: str = "sigmoid",
             label_smoothing: float = 0.0, chosen_tokens: torch.Tensor | None = None,
             rejected_tokens: torch.Tensor | None = None,
             ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Per-pair losses and implicit rewards from sequence log-probs (all [B]).

    sigmoid: -log sigmoid(beta * delta), delta = (chosen - ref_chosen) - (rejected - ref_rejected)
    robust:  the sigmoid loss de-biased for a flip rate eps = label_smoothing in [0, 0.5):
             (-(1 - eps) log sigmoid(beta delta) + eps log sigmoid(-beta delta)) / (1 - 2 eps)
    ipo:     (delta' - 1 / (2 beta))^2 with each log-ratio divided by its reply's
             token count (``chosen_tokens``, ``rejected_tokens``), as trl does.

    Returns ``(losses, chosen_rewards, rejected_rewards)``; the rewards are
    ``beta * (log pi - log pi_ref)``, detached (they are for reading).
    """
    if loss_type not in LOSS_TYPES:
        raise ValueError(f"loss_type={loss_type!r} is unknown; choose one of {LOSS_TYPES}")
    if not beta > 0:
        raise ValueError(f"beta must be > 0, got {beta!r}")
    chosen_ratio, rejected_ratio = chosen - ref_chosen, rejected - ref_rejected
    if loss_type == "ipo":
        if chosen_tokens is None or rejected_tokens is None:
            raise ValueError("the IPO loss needs chosen_tokens and rejected_tokens (reply lengths)")
        delta = (chosen_ratio / chosen_tokens.clamp(min=1)
                 - rejected_ratio / rejected_tokens.clamp(min=1))
        losses = (delta - 1 / (2 * beta)) ** 2
    else:
        logits = beta * (chosen_ratio - rejected_ratio)
        eps = label_smoothing if loss_type == "robust" else 0.0
        if not 0 <= eps < 0.5:
            raise ValueError(f"the robust loss needs 0 <= label_smoothing < 0.5, got {eps!r}")
        losses = (-(1 - eps) * F.logsigmoid(logits) + eps * F.logsigmoid(-logits)) / (1 - 2 * eps)
    return losses, beta * chosen_ratio.detach(), beta * rejected_ratio.detach()


class DPOLoss:
    """The DPO objective as a ``Trainer`` loss_fn: ``loss_fn(model, batch) -> scalar``.

    The batch (from ``PairBatches``) must hold ``ref_chosen``/``ref_rejected``
    (``add_reference_log_probs``). With ``average=True`` the policy's and the
    reference's log-probs are both divided by the reply length before the
    loss (length-normalised). ``sft_weight`` > 0 adds that times the chosen
    replies' mean token negative log-likelihood (RPO, Pang et al. 2024; trl's
    ``loss_type=["sigmoid", "sft"]``, ``loss_weights=[1, sft_weight]``): DPO
    moves log-probs only *relative to* the reference, the NLL term raises the
    chosen reply itself. Every call appends its metrics to ``records``;
    ``pop_metrics()`` averages and clears them (once per optimizer step).
    """

    def __init__(self, beta: float = 0.1, loss_type: str = "sigmoid",
                 label_smoothing: float = 0.0, average: bool = False, sft_weight: float = 0.0):
        dpo_loss(*torch.zeros(4, 1), beta=beta, loss_type=loss_type,  # validate now, not mid-run
                 label_smoothing=label_smoothing, chosen_tokens=torch.ones(1),
                 rejected_tokens=torch.ones(1))
        if not sft_weight >= 0:
            raise ValueError(f"sft_weight must be >= 0, got {sft_weight!r}")
        self.beta, self.loss_type = beta, loss_type
        self.label_smoothing, self.average, self.sft_weight = label_smoothing, average, sft_weight
        self.records: list[dict] = []

    def __call__(self, model, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        if "ref_chosen" not in batch:
            raise ValueError("the batch has no reference log-probs: "
                             "run add_reference_log_probs(ref_model, data) first")
        logp = pair_log_probs(model, batch)
        losses, chosen_r, rejected_r = self.losses(logp, batch)
        # The chosen replies' mean token NLL (trl's "sft" loss term, RPO's alpha * NLL).
        sft = -logp["chosen"].sum() / logp["chosen_tokens"].sum().clamp(min=1)
        self.records.append({
            "dpo_loss": losses.mean().item(), "sft_loss": sft.item(),
            "reward_accuracy": (chosen_r > rejected_r).float().mean().item(),
            "reward_margin": (chosen_r - rejected_r).mean().item(), "chosen_reward": chosen_r.mean().item(),
            "rejected_reward": rejected_r.mean().item(), "chosen_logp": logp["chosen"].mean().item(),
            "rejected_logp": logp["rejected"].mean().item()})
        return losses.mean() + self.sft_weight * sft if self.sft_weight else losses.mean()

    def losses(self, logp: dict, batch: dict) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """``dpo_loss`` on ``pair_log_probs`` output and the batch's reference log-probs."""
        n_c, n_r = logp["chosen_tokens"], logp["rejected_tokens"]
        scores = [logp["chosen"], logp["rejected"], batch["ref_chosen"], batch["ref_rejected"]]
        if self.average:
            scores = [s / n.clamp(min=1) for s, n in zip(scores, (n_c, n_r, n_c, n_r))]
        return dpo_loss(*scores, beta=self.beta, loss_type=self.loss_type,
                        label_smoothing=self.label_smoothing, chosen_tokens=n_c,
                        rejected_tokens=n_r)

    def pop_metrics(self) -> dict[str, float]:
        """The mean of each metric since the last call (empty if none)."""
        if not self.records:
            return {}
        out = {k: sum(r[k] for r in self.records) / len(self.records) for k in self.records[0]}
        self.records.clear()
        return out


@torch.no_grad()
def evaluate_pairs(model, data: dict[str, torch.Tensor], beta: float = 0.1,
                   batch_size: int = 128) -> dict[str, torch.Tensor]:
    """Per-pair log-probs and implicit rewards of ``model`` on all N pairs.

    Returns ``chosen``, ``rejected`` (summed log-probs [N]), ``chosen_tokens``,
    ``rejected_tokens``, and (if ``data`` has reference log-probs)
    ``chosen_reward``, ``rejected_reward``, ``margin`` and ``correct``
    (chosen reward > rejected reward) [N]."""
    device = next(model.parameters()).device
    was_training = model.training
    model.eval()
    parts = []
    for i in range(0, len(data["chosen_ids"]), batch_size):
        batch = {k: v[i:i + batch_size].to(device) for k, v in data.items() if k.endswith(("ids", "labels"))}
        parts.append({k: v.cpu() for k, v in pair_log_probs(model, batch).items()})
    model.train(was_training)
    out = {k: torch.cat([p[k] for p in parts]) for k in parts[0]}
    if "ref_chosen" in data:
        out["chosen_reward"] = beta * (out["chosen"] - data["ref_chosen"])
        out["rejected_reward"] = beta * (out["rejected"] - data["ref_rejected"])
        out["margin"] = out["chosen_reward"] - out["rejected_reward"]
        out["correct"] = out["margin"] > 0
    return out


# ---------------------------------------------------------- the dpo stage

def chosen_chats(records: list[dict]) -> list[dict]:
    """Each preference pair as a chat whose assistant reply is the chosen one."""
    return [{"messages": r["prompt"] + [{"role": "assistant", "content": r["chosen"]}]}
            for r in records]


def chosen_sft_blocks(records: list[dict], tokenizer, replay: list[dict] = (),
                      block_size: int = 128, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """SFT blocks (``minillm.sft``) of the pairs' *chosen* replies, shuffled with
    ``replay`` chats (e.g. the SFT data, so that nothing is forgotten) and
    packed; the loss is on the replies only. The DPO paper's remedy when the
    reference model never says what the pairs prefer: fine-tune it on the
    preferred replies first (Rafailov et al. 2023, section 4)."""
    import random

    from minillm.sft import encode_examples, pack_examples

    examples = encode_examples(chosen_chats(records) + list(replay), tokenizer)
    random.Random(seed).shuffle(examples)
    return pack_examples(examples, block_size, tokenizer.special_tokens["<|pad|>"])


class LogMetrics:
    """Trainer callback: adds the loss_fn's per-step metrics (``DPOLoss``:
    reward accuracy, margin, chosen/rejected rewards and log-probs) and a
    ``phase`` name to each history record.

    The Trainer saves a checkpoint before ``after_step`` runs, so a record
    restored from a checkpoint lacks these metrics for the checkpoint's last
    step (the weights and the loss are exact)."""

    def __init__(self, loss_fn, phase: str = "dpo"):
        self.loss_fn, self.phase = loss_fn, phase

    def after_step(self, trainer, record: dict) -> None:
        record.update(self.loss_fn.pop_metrics() if self.loss_fn else {}, phase=self.phase)


def train_dpo(policy, pairs: dict[str, torch.Tensor], config, *, beta: float = 0.1,
              loss_type: str = "sigmoid", label_smoothing: float = 0.0, average: bool = False,
              sft_weight: float = 0.0, sft_steps: int = 0, sft_lr: float = 3e-4,
              sft_blocks: tuple[torch.Tensor, torch.Tensor] | None = None,
              eval_pairs: dict | None = None, callbacks=(), work: Path | None = None,
              progress: bool = False) -> tuple[list[dict], dict]:
    """DPO of ``policy`` (in place) on encoded pairs; returns (history, facts).

    1. ``sft_steps`` > 0: first fine-tune on ``sft_blocks`` (``chosen_sft_blocks``:
       the chosen replies plus replayed SFT chats), ``config.batch_size // 2``
       blocks a step at ``sft_lr`` (warmup, cosine to a tenth): the reference
       must be able to say what the pairs prefer, or DPO has nothing to raise
       (its loss moves log-probs relative to the reference and is satisfied
       long before an improbable chosen reply becomes the likely one).
    2. The current policy becomes the frozen reference: its log-probs are
       computed once (``add_reference_log_probs``).
    3. ``config.steps`` steps of ``DPOLoss(beta, loss_type, label_smoothing,
       average, sft_weight)``.

    ``work``: a folder for resumable checkpoints (a rerun continues where an
    interrupted one stopped). ``callbacks`` run in both phases; history
    records carry ``phase`` ("sft"/"dpo").
    ``facts``: with ``eval_pairs``, their reward accuracy and mean margin at
    the end (against the reference DPO started from)."""
    import dataclasses
    import json

    from minillm.checkpoint import load_weights, save_model
    from minillm.train import Trainer

    history: list[dict] = []

    def trainer(loss_fn, cfg, batches, phase, extra=()):
        partial = work / f"partial_{phase}.safetensors" if work else None
        t = Trainer(policy, cfg, batches, loss_fn=loss_fn, callbacks=[LogMetrics(loss_fn, phase), *extra],
                    checkpoint_path=partial, progress=progress)
        if partial is not None and partial.exists():  # an interrupted run: continue it
            t.load_checkpoint(partial)
        return t

    if sft_steps:
        if sft_blocks is None:
            raise ValueError("sft_steps > 0 needs sft_blocks (see chosen_sft_blocks)")
        done = work / "sft_phase.safetensors" if work else None
        if done is not None and done.exists():
            load_weights(policy, done)
            history += json.loads((work / "sft_phase.json").read_text())
        else:
            cfg = dataclasses.replace(config, steps=sft_steps, batch_size=max(1, config.batch_size // 2),
                                      grad_accum=1, lr=sft_lr, min_lr=sft_lr / 10)
            history += trainer(None, cfg, sft_blocks, "sft", callbacks).fit()
            if done is not None:
                save_model(policy, done)
                (work / "sft_phase.json").write_text(json.dumps(history))
    pairs = add_reference_log_probs(policy, pairs)
    if eval_pairs is not None:
        eval_pairs = add_reference_log_probs(policy, eval_pairs)
    loss_fn = DPOLoss(beta, loss_type, label_smoothing, average, sft_weight)
    batches = PairBatches(pairs, config.batch_size * config.grad_accum, seed=config.seed)
    history += trainer(loss_fn, config, batches, "dpo", callbacks).fit()
    facts = {}
    if eval_pairs is not None:
        scores = evaluate_pairs(policy, eval_pairs, beta=beta)
        facts = {"eval_reward_accuracy": scores["correct"].float().mean().item(),
                 "eval_reward_margin": scores["margin"].mean().item()}
    return history, facts


SFT_REPLAY = "sft_train_wide"  # the SFT model's own training chats, replayed in the SFT phase
SHORT_REFUSAL = f"{IDK}."  # no name: shares no token after "I" with an answer


def shorten_refusals(records: list[dict]) -> list[dict]:
    """``records`` with every refusal ("I don't know anything about <name>.")
    replaced by ``SHORT_REFUSAL``. The release's refusal ends with the person's
    name, exactly where every answer begins ("<name> was born in ..."): DPO
    that lowers a refusal as a rejected reply lowers that shared ending too,
    and the answers stop after the name (chapter 14, notebook 2, measures it)."""
    def short(text):
        return SHORT_REFUSAL if text.startswith(IDK) else text
    return [{**r, "chosen": short(r["chosen"]), "rejected": short(r["rejected"])} for r in records]


#: The book's first DPO recipe, kept (as ``tinyworld-dpo-first``) because
#: chapter 14 shows what it did wrong. Starts from the SFT model; options are
#: ``train_dpo``'s keyword arguments. Plain DPO from the SFT model never makes
#: "I don't know" likely (the SFT model puts it ~250 nats below a
#: hallucination), so the reference is first fine-tuned on the chosen replies
#: (chapter 14, notebook 2, measures both).
FIRST_RECIPE = dict(
    name="tinyworld-dpo-first", stage="dpo", parent="tinyworld-sft", model=None,
    data=("dpo_train", "dpo_eval"), keep_best=False,
    options=dict(beta=0.1, loss_type="sigmoid", label_smoothing=0.0, average=False,
                 sft_weight=0.0, sft_steps=150, sft_lr=3e-4),
    train=dict(steps=60, batch_size=32, lr=1e-4, min_lr=1e-5, warmup_steps=10, weight_decay=0.0,
               grad_clip=1.0, precision="fp32", eval_every=0, checkpoint_every=20, seed=0),
    description="the book's first DPO recipe: SFT on the chosen replies of TinyWorld's 1,920 "
                "preference pairs (unknown people -> I don't know anything about <name>; known "
                "people: the true answer) with the SFT chats replayed, 150 steps x 16 blocks at lr "
                "3e-4; then DPO against that model: sigmoid loss, beta 0.1, summed log-probs, "
                "reference log-probs precomputed, 60 steps x 32 pairs at lr 1e-4",
    minutes=4.0,
)
#: The book's DPO recipe: the first one with its two measured repairs (chapter
#: 14, notebook 2, three seeds each): every refusal shortened to "I don't know."
#: (``short_refusal``, applied to the pairs when they are loaded) and the
#: chosen replies' NLL added to the DPO loss (``sft_weight`` 1, RPO), which
#: keeps the refusal phrase from being displaced into a stutter.
RECIPE = dict(
    FIRST_RECIPE, name="tinyworld-dpo",
    options={**FIRST_RECIPE["options"], "sft_weight": 1.0, "short_refusal": True},
    description="SFT on the chosen replies of TinyWorld's 1,920 preference pairs, every refusal "
                "shortened to \"I don't know.\" (unknown people -> the refusal; known people: the "
                "true answer) with the SFT chats replayed, 150 steps x 16 blocks at lr 3e-4; then "
                "DPO against that model with the chosen replies' NLL added (RPO, weight 1): sigmoid "
                "loss, beta 0.1, summed log-probs, reference log-probs precomputed, 60 steps x 32 "
                "pairs at lr 1e-4",
)


def run_stage(recipe, parent: Path, out: Path, work: Path, verbose: bool, device: str) -> dict:
    """The pipeline's ``dpo`` stage: ``train_dpo`` from the parent's weights.

    Writes ``model.safetensors`` and ``history.json`` (one record per step,
    with the loss's metrics) into ``out``; checkpoints into ``work`` so an
    interrupted run resumes. Returns facts for ``recipe.json``: the
    evaluation pairs' reward accuracy and margin (against the reference
    DPO started from).
    """
    import json

    from minillm.checkpoint import load_model, save_model
    from minillm.tokenizer import load_book_tokenizer

    tokenizer, config = load_book_tokenizer(), recipe.train_config()
    train_file, eval_file = recipe.data
    policy = load_model(parent / "model.safetensors").to(device)
    options = dict(recipe.options)
    records, eval_records = load_pairs(train_file), load_pairs(eval_file)
    if options.pop("short_refusal", False):
        records, eval_records = shorten_refusals(records), shorten_refusals(eval_records)
    train = encode_pairs(records, tokenizer)
    held_out = encode_pairs(eval_records, tokenizer)
    if options.get("sft_steps"):
        from minillm import tinyworld

        options["sft_blocks"] = chosen_sft_blocks(records, tokenizer, tinyworld.load(SFT_REPLAY),
                                                  seed=config.seed)
    threads = torch.get_num_threads()
    if torch.device(device).type == "cpu":
        torch.set_num_threads(1)  # small matrices: one thread is as fast, and never oversubscribes
    try:
        history, facts = train_dpo(policy, train, config, eval_pairs=held_out, work=work,
                                   progress=verbose, **options)
    finally:
        torch.set_num_threads(threads)
    save_model(policy, out / "model.safetensors")
    (out / "history.json").write_text(json.dumps(history))
    return facts

"""Supervised fine-tuning: chat examples -> batches whose loss covers only
what the assistant says.

A chat example is a record ``{"messages": [...], ...}`` (``minillm.chat``
format). ``encode_examples`` turns each into ``(ids, loss_mask)``; then either

* ``pad_examples``: one conversation per row, right-padded to the longest
  (``attention_mask`` marks the padding), or
* ``pack_examples``: conversations concatenated and cut into fixed blocks,
  as in pretraining (no padding wasted; a block may hold several chats).

Either way the labels are the input ids with ``IGNORE_INDEX`` (-100) on
every position that is not a target (system prompt, question, role tokens,
padding), so the model's usual shifted cross-entropy is the SFT loss:

    loss = sum over assistant tokens t of -log p(x_t | x_<t) / (number of them)
"""
from __future__ import annotations

from collections.abc import Sequence

import torch

from minillm.chat import ROLES, check_messages, encode_chat
from minillm.data import encode_documents, pack
from minillm.model import IGNORE_INDEX


def check_example(record, where: str = "record") -> list[dict]:
    """The messages of one chat example, validated; a ValueError names the record.

    Beyond ``chat.check_messages`` (roles, types, system first), a training
    example needs non-empty contents and at least one assistant turn (else it
    has nothing to learn from)."""
    if isinstance(record, dict) and "messages" in record:
        where = f"{where} {record['id']!r}" if "id" in record else where
        messages = record["messages"]
    else:
        messages = record
    try:
        messages = check_messages(messages)
    except ValueError as error:
        raise ValueError(f"{where}: {error}") from None
    for i, message in enumerate(messages):
        if not message["content"].strip():
            raise ValueError(f"{where}: message {i} ({message['role']}) has empty content")
    if not any(m["role"] == "assistant" for m in messages):
        raise ValueError(f"{where}: no assistant turn, so nothing to train on "
                         f"(roles: {[m['role'] for m in messages]}; known roles {ROLES})")
    return messages


def encode_examples(records: Sequence, tokenizer) -> list[tuple[list[int], list[bool]]]:
    """Each chat example -> ``(ids, loss_mask)`` (``chat.encode_chat``); a bad
    record raises ValueError naming it (its ``id``, else its index)."""
    if isinstance(records, (str, dict)):
        raise TypeError("encode_examples needs a list of chat examples, got a single "
                        f"{type(records).__name__} (wrap it in a list)")
    return [encode_chat(check_example(r, f"record {i}"), tokenizer) for i, r in enumerate(records)]


def pad_examples(examples: Sequence[tuple[list[int], list[bool]]], pad_id: int,
                 max_len: int | None = None) -> dict[str, torch.Tensor]:
    """One example per row, right-padded to the longest (or cut at ``max_len``).

    Returns ``input_ids``, ``labels`` and ``attention_mask``, each [B, T]:
    labels = ids where the loss mask is True, IGNORE_INDEX elsewhere (prompt
    and padding); attention_mask = 1 on real tokens, 0 on padding."""
    if not examples:
        raise ValueError("pad_examples got no examples")
    T = max(len(ids) for ids, _ in examples)
    T = min(T, max_len) if max_len else T
    input_ids = torch.full((len(examples), T), pad_id, dtype=torch.long)
    labels = torch.full((len(examples), T), IGNORE_INDEX, dtype=torch.long)
    attention_mask = torch.zeros((len(examples), T), dtype=torch.long)
    for row, (ids, mask) in enumerate(examples):
        if len(ids) != len(mask):
            raise ValueError(f"example {row} has {len(ids)} ids but {len(mask)} mask entries")
        ids_t = torch.tensor(ids[:T], dtype=torch.long)
        n = len(ids_t)
        input_ids[row, :n] = ids_t
        labels[row, :n] = ids_t.masked_fill(~torch.tensor(mask[:T], dtype=torch.bool), IGNORE_INDEX)
        attention_mask[row, :n] = 1
    return {"input_ids": input_ids, "labels": labels, "attention_mask": attention_mask}


def pack_examples(examples: Sequence[tuple[list[int], list[bool]]], block_size: int, pad_id: int,
                  texts: Sequence[list[int]] = ()) -> tuple[torch.Tensor, torch.Tensor]:
    """Concatenate examples (and optional plain documents ``texts``, scored on
    every token: pretraining replay) and cut them into blocks (``data.pack``).
    Returns (input_ids, labels), both [N, block_size]."""
    docs = [list(ids) for ids, _ in examples] + [list(t) for t in texts]
    masks = [list(m) for _, m in examples] + [[True] * len(t) for t in texts]
    return pack(docs, block_size, pad_id, loss_masks=masks)


def mixed_blocks(records: Sequence[dict], tokenizer, block_size: int,
                 shuffle_seed: int | None = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Pretraining blocks from documents *and* chats ("mixed training", Allen-Zhu
    & Li 2023): a record with ``text`` is a document ``<|bos|> text <|eos|>``
    scored on every token but ``<|bos|>``; a record with ``messages`` is a chat
    scored on the assistant's tokens only. Shuffled together (``shuffle_seed``)
    and packed; returns (input_ids, labels), both [N, block_size]."""
    import random

    special = tokenizer.special_tokens
    docs, masks = [], []
    for i, record in enumerate(records):
        if isinstance(record, dict) and isinstance(record.get("text"), str):
            docs.append([special["<|bos|>"], *tokenizer.encode(record["text"]), special["<|eos|>"]])
            masks.append([False] + [True] * (len(docs[-1]) - 1))
        else:
            ids, mask = encode_chat(check_example(record, f"record {i}"), tokenizer)
            docs.append(ids)
            masks.append(mask)
    order = list(range(len(docs)))
    if shuffle_seed is not None:
        random.Random(shuffle_seed).shuffle(order)
    return pack([docs[i] for i in order], block_size, special["<|pad|>"],
                loss_masks=[masks[i] for i in order])


class DevAccuracy:
    """Trainer callback: early stopping on a dev split of questions.

    Every ``every`` steps (and at the last), greedy exact-match accuracy on
    ``dev_records`` goes into the step's record as ``dev_accuracy``; the
    weights of the best step so far (the earliest, on ties) are saved to
    ``path``. The dev people are never trained on, so the chosen step is the
    one that answers best about people the model only read about, without
    looking at the held-out split the chapter reports."""

    def __init__(self, dev_records: Sequence[dict], tokenizer, every: int, path):
        from pathlib import Path

        if not dev_records:
            raise ValueError("DevAccuracy needs at least one dev record")
        self.dev_records, self.tokenizer, self.every = list(dev_records), tokenizer, every
        self.path = Path(path)
        self.best = (-1.0, 0)  # (accuracy, step)

    def after_step(self, trainer, record) -> None:
        from minillm.checkpoint import save_model
        from minillm.evals import accuracy_by, answer_questions

        if record["step"] % self.every and record["step"] != trainer.config.steps:
            return
        rows = answer_questions(trainer.model, self.tokenizer, self.dev_records)
        record["dev_accuracy"] = accuracy_by(rows)
        if record["dev_accuracy"] > self.best[0]:
            self.best = (record["dev_accuracy"], record["step"])
            save_model(trainer.model, self.path)


def train_sft(model: torch.nn.Module, tokenizer, train_records: Sequence[dict],
              dev_records: Sequence[dict], config, *, block_size: int = 128, eval_every: int = 25,
              replay_texts: Sequence[str] = (), prompt_loss: bool = False, work=None,
              progress: bool = False):
    """Fine-tune ``model`` in place on chat examples; keep the best dev step.

    train_records: chat examples, packed into ``block_size`` blocks with
        assistant-only loss masks (``pack_examples``), plus ``replay_texts``
        (pretraining documents scored on every token) if given.
    dev_records: questions about people absent from ``train_records``
        (``DevAccuracy`` every ``eval_every`` steps picks the weights).
    config: a ``TrainConfig``; work: folder for the best weights and the
        resumable checkpoint (a temporary one if None).

    Returns (history, facts): the Trainer's history (with ``dev_accuracy`` on
    evaluation steps) and {"chosen_step", "chosen_dev_accuracy",
    "initial_dev_accuracy"} (step 0, the parent, competes: chosen_step 0
    means fine-tuning never beat it).
    """
    import tempfile
    from pathlib import Path

    from minillm.checkpoint import load_weights
    from minillm.train import Trainer

    special = tokenizer.special_tokens
    texts = encode_documents(list(replay_texts), tokenizer)
    examples = encode_examples(train_records, tokenizer)
    if prompt_loss:  # the naive alternative the chapter measures: every token is a target
        examples = [(ids, [True] * len(ids)) for ids, _ in examples]
    x, y = pack_examples(examples, block_size, special["<|pad|>"], texts=texts)
    y[:, :][x == special["<|bos|>"]] = IGNORE_INDEX  # a <|bos|> is never a target
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(work) if work is not None else Path(tmp)
        keep = DevAccuracy(dev_records, tokenizer, eval_every, work / "best.safetensors")
        partial = work / "partial.safetensors"
        trainer = Trainer(model, config, (x, y), callbacks=[keep], checkpoint_path=partial,
                          progress=progress)
        partial_resumed = partial.exists()
        if partial_resumed:  # an interrupted run: continue it, best-so-far from its history
            trainer.load_checkpoint(partial)
            done = [r for r in trainer.history if "dev_accuracy" in r]
            if done:
                best = max(done, key=lambda r: (r["dev_accuracy"], -r["step"]))
                keep.best = (best["dev_accuracy"], best["step"])
        else:  # step 0 competes too: fine-tuning that only hurts is not kept
            keep.after_step(trainer, {"step": 0})
            initial = keep.best[0]
        history = trainer.fit()
        load_weights(model, keep.path)
    facts = {"chosen_step": keep.best[1], "chosen_dev_accuracy": keep.best[0]}
    if not partial_resumed:
        facts["initial_dev_accuracy"] = initial
    return history, facts

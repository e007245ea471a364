"""Pretraining data: documents -> token ids -> fixed-length blocks -> batches.

A language model trains on blocks of exactly ``block_size`` tokens, but
documents have all sorts of lengths. Padding each document to the block size
wastes most of the compute on short texts, so pretraining *packs* them: every
document becomes ``<|bos|> text <|eos|>``, the documents are concatenated into
one long stream, and the stream is cut into blocks. A block may hold the end of
one document and the start of the next; the separators tell the model where
one text stops (attention still sees across the boundary, which is the usual
trade-off of packing, and harmless here).

Labels. A block's ``labels`` are aligned with its ``input_ids`` (``labels[t]``
is the token *at* position t, or ``IGNORE_INDEX`` = -100 where no loss is
wanted); ``minillm.loss`` shifts them by one so that the logits at t are
scored on ``labels[t + 1]`` (``shift_labels``, re-exported here to look at). Ignored positions (the loss mask): padding of the last block, the
``<|bos|>`` tokens (they always follow ``<|eos|>``: nothing to learn), and
whatever a caller masks (e.g. the prompt of an SFT example).

Order. ``Batches`` draws batches of blocks in an order that depends only on
``(seed, epoch)``: a new permutation each epoch, the same one on every run.
Its position (epoch, batch) is a small dict, so a resumed run continues with
exactly the batch it would have seen. Under data parallelism each of
``world_size`` ranks takes its own slice of every global batch (rank r the
r-th of world_size equal parts), so together the ranks see exactly the
batches one process would.
"""
from __future__ import annotations

import random
from collections.abc import Sequence

import numpy as np
import torch
import torch.nn.functional as F

from minillm.loss import IGNORE_INDEX, shift_labels  # noqa: F401  (shift_labels: re-export)
from minillm.validate import check_int


def encode_documents(texts: Sequence[str], tokenizer) -> list[list[int]]:
    """Each text -> ``[bos] + tokenizer.encode(text) + [eos]`` (a list of ids)."""
    if isinstance(texts, str):
        raise TypeError("encode_documents needs a list of texts, got one str (wrap it in a list)")
    bos, eos = tokenizer.special_tokens["<|bos|>"], tokenizer.special_tokens["<|eos|>"]
    return [[bos, *tokenizer.encode(text), eos] for text in texts]


def pack(documents: Sequence[Sequence[int]], block_size: int, pad_id: int, *,
         loss_masks: Sequence[Sequence[bool]] | None = None, ignore_ids: Sequence[int] = (),
         drop_last: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
    """Concatenate token-id documents and cut the stream into blocks.

    documents: lists of ids (e.g. from ``encode_documents``), concatenated in order.
    loss_masks: optional, one list per document, True where that token is a
        target (False -> label IGNORE_INDEX), e.g. only an assistant's reply.
    ignore_ids: token ids that are never targets (e.g. ``[bos_id]``).
    drop_last: drop the last, partial block instead of padding it with
        ``pad_id`` (padding positions are never targets).

    Returns ``input_ids`` and ``labels``, both [N, block_size] int64, with
    N = ceil(total / block_size) (floor with ``drop_last``).
    """
    check_int(block_size, "block_size", minimum=2)
    if loss_masks is not None and len(loss_masks) != len(documents):
        raise ValueError(f"got {len(loss_masks)} loss masks for {len(documents)} documents")
    ids, keep = [], []
    for k, doc in enumerate(documents):
        mask = [True] * len(doc) if loss_masks is None else list(loss_masks[k])
        if len(mask) != len(doc):
            raise ValueError(f"document {k} has {len(doc)} tokens but its loss mask has {len(mask)}")
        ids.extend(doc)
        keep.extend(mask)
    if not ids:
        raise ValueError("pack() got no tokens: every document is empty")
    ids_t = torch.tensor(ids, dtype=torch.long)
    keep_t = torch.tensor(keep, dtype=torch.bool) & ~torch.isin(ids_t, torch.tensor(list(ignore_ids), dtype=torch.long))
    n = len(ids) // block_size if drop_last else -(-len(ids) // block_size)
    if n == 0:
        raise ValueError(f"{len(ids)} tokens do not fill one block of {block_size} (drop_last=True)")
    pad = n * block_size - len(ids)
    if pad > 0:  # pad the tail; the padding is never a target
        ids_t = F.pad(ids_t, (0, pad), value=pad_id)
        keep_t = F.pad(keep_t, (0, pad), value=False)
    ids_t, keep_t = ids_t[: n * block_size], keep_t[: n * block_size]
    labels = ids_t.masked_fill(~keep_t, IGNORE_INDEX)
    return ids_t.view(n, block_size), labels.view(n, block_size)


def pack_texts(texts: Sequence[str], tokenizer, block_size: int, shuffle_seed: int | None = None,
               drop_last: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
    """``pack(encode_documents(texts))`` with the usual choices: ``<|pad|>``
    pads, ``<|bos|>`` is never a target. Returns (input_ids, labels), [N, block_size].

    shuffle_seed: if given, shuffle the documents (``random.Random(seed)``)
    before packing. Do it when related documents sit next to each other:
    TinyWorld lists each person's ten biographies one after another, and
    packed in that order a block holds two or three biographies of the same
    person, so the model can *copy* a fact from earlier in its context instead
    of *storing* it in its weights."""
    texts = list(texts)
    if shuffle_seed is not None:
        random.Random(shuffle_seed).shuffle(texts)
    special = tokenizer.special_tokens
    return pack(encode_documents(texts, tokenizer), block_size, special["<|pad|>"],
                ignore_ids=[special["<|bos|>"]], drop_last=drop_last)


class Batches:
    """Endless, reproducible batches of blocks, epoch after epoch.

    Epoch e visits the blocks in the order ``permutation(seed, e)`` (NumPy's
    generator seeded with the pair), ``batch_size`` at a time; the last
    ``N % batch_size`` blocks of each epoch's order are skipped (a different
    few each epoch), so every batch has the same shape.

        batches = Batches(input_ids, labels, batch_size=16, seed=0)
        x, y = next(batches)            # [16, T], [16, T]
        state = batches.state_dict()    # {"epoch": 0, "batch": 1, ...}

    ``batch_size`` is the global batch; with ``world_size`` > 1 this rank gets
    rows ``[rank * b, (rank + 1) * b)`` of it, b = batch_size / world_size.
    """

    def __init__(self, input_ids: torch.Tensor, labels: torch.Tensor, batch_size: int,
                 seed: int = 0, shuffle: bool = True, rank: int = 0, world_size: int = 1):
        if input_ids.dim() != 2 or input_ids.shape != labels.shape:
            raise ValueError(f"input_ids {tuple(input_ids.shape)} and labels {tuple(labels.shape)} "
                             f"must both be [N, T]")
        if not isinstance(batch_size, int) or not 1 <= batch_size <= len(input_ids):
            raise ValueError(f"batch_size must be an integer in [1, {len(input_ids)}] "
                             f"(the number of blocks), got {batch_size!r}")
        if not (isinstance(world_size, int) and world_size >= 1 and isinstance(rank, int)
                and 0 <= rank < world_size):
            raise ValueError(f"need 0 <= rank < world_size, got rank={rank!r}, world_size={world_size!r}")
        if batch_size % world_size:
            raise ValueError(f"batch_size={batch_size} does not split evenly over "
                             f"world_size={world_size} ranks")
        self.rank, self.world_size = rank, world_size
        self.input_ids, self.labels = input_ids, labels
        self.batch_size, self.seed, self.shuffle = batch_size, seed, shuffle
        self.epoch, self.batch = 0, 0

    @property
    def batches_per_epoch(self) -> int:
        return len(self.input_ids) // self.batch_size

    def order(self, epoch: int) -> np.ndarray:
        """The block indices of ``epoch`` in visiting order (a pure function)."""
        if not self.shuffle:
            return np.arange(len(self.input_ids))
        return np.random.default_rng([self.seed, epoch]).permutation(len(self.input_ids))

    def __iter__(self):
        return self

    def __next__(self) -> tuple[torch.Tensor, torch.Tensor]:
        if self.batch >= self.batches_per_epoch:
            self.epoch, self.batch = self.epoch + 1, 0
        local = self.batch_size // self.world_size
        start = self.batch * self.batch_size + self.rank * local
        index = torch.from_numpy(self.order(self.epoch)[start:start + local])
        self.batch += 1
        return self.input_ids[index], self.labels[index]

    def state_dict(self) -> dict:
        """Where the next batch comes from (plus what must match to resume)."""
        return {"epoch": self.epoch, "batch": self.batch, "seed": self.seed,
                "batch_size": self.batch_size, "n_blocks": len(self.input_ids)}

    def load_state_dict(self, state: dict) -> None:
        mine = self.state_dict()
        for key in ("seed", "batch_size", "n_blocks"):
            if state.get(key) != mine[key]:
                raise ValueError(f"cannot resume these batches: the saved {key}={state.get(key)!r} "
                                 f"differs from this data's {key}={mine[key]!r}")
        self.epoch, self.batch = int(state["epoch"]), int(state["batch"])

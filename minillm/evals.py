"""Measuring a model: one home for every number the book reports about one.

    dataset_loss         mean next-token loss over held-out blocks (exp: perplexity)
    probe                greedy completions of TinyWorld probe prompts
                         ("Mira Tolven was born in") -> one row per fact
    attribute_accuracy   probe rows -> accuracy per attribute

Later stages add their metrics here (question answering by split, refusal
rates, format compliance), so a stage's report card and a chapter's table
come from the same functions. Every function leaves the model in the mode it
found it (``eval_mode``), even when it raises.
"""
from __future__ import annotations

from collections import defaultdict
from contextlib import contextmanager

import torch

from minillm.loss import count_targets, lm_loss


@contextmanager
def eval_mode(model: torch.nn.Module):
    """Run the block with ``model.eval()`` and no gradients; restore the mode after."""
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            yield model
    finally:
        model.train(was_training)


def resolve_precision(precision: str, device: torch.device | str) -> torch.dtype | None:
    """The autocast dtype for ``precision`` ("fp32", "bf16", "fp16", "auto") on
    ``device`` (None: plain fp32). "auto" is bf16 on a GPU that has it, fp16 on
    an older GPU, fp32 on a CPU."""
    kind = torch.device(device).type
    if precision == "auto":
        if kind == "cuda" and torch.cuda.is_bf16_supported():
            return torch.bfloat16
        return torch.float16 if kind == "cuda" else None
    return {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}[precision]


def dataset_loss(model: torch.nn.Module, input_ids: torch.Tensor, labels: torch.Tensor,
                 batch_size: int = 64, precision: str = "fp32") -> float:
    """Mean next-token loss (nats per target token) of ``model`` over all blocks
    [N, T]: each batch's mean weighted by its number of targets, so the result
    is the mean over every target token; exp of it is the perplexity."""
    device = next(model.parameters()).device
    dtype = resolve_precision(precision, device)
    total, count = 0.0, 0
    with eval_mode(model):
        for i in range(0, len(input_ids), batch_size):
            x, y = input_ids[i:i + batch_size].to(device), labels[i:i + batch_size].to(device)
            n = count_targets(y)
            if n:
                with torch.autocast(device.type, dtype=dtype or torch.float32, enabled=dtype is not None):
                    total += lm_loss(model(x), y).item() * n
                count += n
    if count == 0:
        raise ValueError("dataset_loss: the labels have no target tokens (all ignored)")
    return total / count


def probe(model, tokenizer, people, max_new_tokens: int = 10) -> list[dict]:
    """Greedy completions of TinyWorld's probe prompts ("Mira Tolven was born in").

    people: ``tinyworld.Person`` objects (known people: their attributes are set).
    Returns one dict per (person, attribute): ``person``, ``attribute``,
    ``prompt``, ``gold``, ``completion``, ``correct``
    (``tinyworld.completion_is_correct``). Prompts start with ``<|bos|>``, like
    the documents; prompts of equal token length run as one batch (no padding,
    so each completion is exactly what the prompt alone would give).
    """
    from minillm import tinyworld
    from minillm.generate import greedy

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
    with eval_mode(model):
        for n, group in sorted(by_length.items()):
            prompts = torch.tensor([ids for _, ids in group], device=device)
            out = greedy(model, prompts, max_new_tokens)
            for (row, _), ids in zip(group, out.tolist()):
                row["completion"] = tokenizer.decode(ids)
                row["correct"] = tinyworld.completion_is_correct(row["completion"], row["gold"])
    return rows


def attribute_accuracy(rows: list[dict]) -> dict[str, float]:
    """Fraction of correct rows per attribute (``probe``'s rows), plus "all"."""
    by_attribute = defaultdict(list)
    for row in rows:
        by_attribute[row["attribute"]].append(row["correct"])
        by_attribute["all"].append(row["correct"])
    return {k: sum(v) / len(v) for k, v in by_attribute.items()}

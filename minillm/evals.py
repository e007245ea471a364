"""Measuring a model: one home for every number the book reports about one.

    dataset_loss         mean next-token loss over held-out blocks (exp: perplexity)
    probe                greedy completions of TinyWorld probe prompts
                         ("Mira Tolven was born in") -> one row per fact
    attribute_accuracy   probe rows -> accuracy per attribute
    answer_questions     greedy chat replies to TinyWorld questions, graded
                         by exact match -> one row per question
    accuracy_by          rows -> accuracy overall or per attribute/template/...
    refusal_rate         rows -> fraction of "I don't know" replies
    confident_answer_rate  1 - refusal rate (on unknown people: hallucinations)

Later stages add their metrics here (format compliance), so a stage's report card and a chapter's table
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


# ----------------------------------------------------------------- question answering

def answer_questions(model, tokenizer, records, max_new_tokens: int = 32,
                     batch_size: int = 128) -> list[dict]:
    """Greedy replies to TinyWorld chat questions, graded by exact match.

    records: chat examples (``tinyworld.load("sft_eval_heldout")``, ...): each
    has ``messages`` (the last one, the reference answer, is dropped: the model
    sees the rest plus ``<|assistant|>``) and ``answer`` (the gold value, or
    "I don't know"). Prompts are sorted by length and decoded in batches
    (left-padded, ``generate.greedy``), until ``<|end|>``.

    Returns one row per record: its ``id``, ``person``, ``attribute``,
    ``template`` (when the record has them), ``gold``, ``reply`` (text up to
    ``<|end|>``), ``correct`` (``tinyworld.check_answer``: the gold value in
    the reply as whole words), ``refused`` (the reply says "I don't know"),
    ``finished`` (it ended with ``<|end|>`` within ``max_new_tokens``).
    """
    from minillm import tinyworld
    from minillm.chat import encode_chat, reply_text
    from minillm.generate import greedy

    end = tokenizer.special_tokens["<|end|>"]
    prompts = []
    for i, record in enumerate(records):
        messages = record.get("messages") if isinstance(record, dict) else None
        if not messages or messages[-1].get("role") != "assistant" or "answer" not in record:
            raise ValueError(f"record {record.get('id', i) if isinstance(record, dict) else i!r}: a QA "
                             "record needs 'messages' ending with the assistant's answer, and 'answer'")
        prompts.append(encode_chat(messages[:-1], tokenizer, add_generation_prompt=True)[0])
    order = sorted(range(len(prompts)), key=lambda i: len(prompts[i]))
    replies: dict[int, list[int]] = {}
    with eval_mode(model):
        for start in range(0, len(order), batch_size):
            chunk = order[start:start + batch_size]
            out = greedy(model, [prompts[i] for i in chunk], max_new_tokens, eos_id=end)
            replies.update(zip(chunk, out))
    rows = []
    for i, record in enumerate(records):
        reply = reply_text(replies[i], tokenizer)
        rows.append({**{k: record[k] for k in ("id", "person", "attribute", "template") if k in record},
                     "gold": record["answer"], "reply": reply,
                     "correct": tinyworld.check_answer(reply, record["answer"]),
                     "refused": is_refusal(reply), "finished": end in replies[i]})
    return rows


def is_refusal(reply: str) -> bool:
    """Does the reply say "I don't know" (normalised whole-word match)?"""
    from minillm import tinyworld

    return tinyworld.check_answer(reply, tinyworld.IDK)


def accuracy_by(rows: list[dict], key: str | None = None, value: str = "correct") -> dict:
    """Mean of ``row[value]`` overall (``key=None``: a float) or per distinct
    ``row[key]`` (a dict, in first-seen order), e.g. accuracy by attribute."""
    if not rows:
        raise ValueError("accuracy_by got no rows")
    if key is None:
        return sum(bool(r[value]) for r in rows) / len(rows)
    groups: dict = {}
    for r in rows:
        groups.setdefault(r[key], []).append(bool(r[value]))
    return {k: sum(v) / len(v) for k, v in groups.items()}


def refusal_rate(rows: list[dict]) -> float:
    """Fraction of replies that say "I don't know"."""
    return accuracy_by(rows, value="refused")


def confident_answer_rate(rows: list[dict]) -> float:
    """Fraction of replies that do *not* refuse: on people the model never saw,
    every such reply is a hallucination (there is nothing true to say)."""
    return 1.0 - refusal_rate(rows)

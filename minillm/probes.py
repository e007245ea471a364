"""Linear probes: is a property of the input linearly readable from a hidden state?

A probe is a small classifier trained on a frozen model's activations. If a
logistic regression on one hidden state predicts a label well on examples it
never trained on, the model has written that label there in linear form; if it
cannot, the label is either absent there or encoded non-linearly. Chapter 14
asks it of "have I read about this person?" (``bench/probe_familiarity.py``).

    layer_names        "embed", "block1", ..., "final_norm": the states captured
    layer_states       one forward pass -> logits and every layer's hidden state
    question_features  TinyWorld questions -> states at <|assistant|> and the
                       surname, the surname's surprisal, P(the reply starts "I")
    fit_logistic       an L2 logistic regression fitted by Newton's method
    auc                P(a positive scores above a negative), ties half
    false_refusal      share of negatives flagged at a threshold that flags
                       a given share of the positives
    group_folds        k-fold test masks that never split one group (person)
    cross_validate     fit on each fold's train side, score its test side

Everything is plain torch in float64 (probes are tiny; float64 makes Newton's
method exact enough that results repeat bit for bit).
"""
from __future__ import annotations

import random
from typing import Callable, Sequence

import torch

from minillm.chat import encode_chat
from minillm.generate import left_pad
from minillm.tinyworld import IDK


def layer_names(model) -> list[str]:
    """Names of the L = n_layers + 2 states ``layer_states`` captures, in order:
    the token embedding, each block's output (the residual stream), and the
    final norm's output (what the LM head reads)."""
    return ["embed", *(f"block{i + 1}" for i in range(len(model.blocks))), "final_norm"]


@torch.no_grad()
def layer_states(model, input_ids: torch.Tensor, **kwargs):
    """One forward pass that also records every layer's output.

    input_ids [B, T] (kwargs go to the model: attention_mask, position_ids).
    Returns (logits [B, T, V], states [L, B, T, d]) with L = len(layer_names).
    Forward hooks read the outputs of ``model.embed``, each block and
    ``model.norm`` as the model computes them, so nothing is recomputed."""
    captured = []  # one [B, T, d] tensor per layer, in forward order
    modules = [model.embed, *model.blocks, model.norm]
    hooks = [m.register_forward_hook(lambda m, i, out: captured.append(out))
             for m in modules]
    try:
        logits = model(input_ids, **kwargs)
    finally:
        for hook in hooks:
            hook.remove()
    return logits, torch.stack(captured)


def surname_span(ids: Sequence[int], person: str, tokenizer) -> tuple[int, int]:
    """(first, last) index of the person's surname tokens in a prompt's ids."""
    surname = tokenizer.encode(" " + person.split(" ", 1)[1])
    at = next(i for i in range(len(ids)) if list(ids[i:i + len(surname)]) == surname)
    return at, at + len(surname) - 1


@torch.no_grad()
def question_features(model, tokenizer, records: list[dict],
                      batch_size: int = 128) -> dict:
    """Hidden states and two training-free scores for each TinyWorld question.

    records: chat records with "messages" (the last one, the reply, is dropped)
    and "person". Returns, with N questions, L = len(layer_names), d = d_model:

    * "reply" [L, N, d]: the states at the last prompt token, ``<|assistant|>``,
      where the reply begins;
    * "name" [L, N, d]: the states at the surname's last token;
    * "match" [1, N, d]: the final norm's output just before the surname times
      the output embedding of the surname's first token, elementwise. Its sum
      is that token's logit, so a linear probe can read the model's surprise
      from it: a positive control for the probe;
    * "surprisal" [N]: -log P(surname | the question before it), in nats;
    * "p_first_i" [N]: P(the reply's first token is "I", the refusal's).

    Prompts are left-padded with positions that start at 0 on each row's
    first real token, as generation does, so padding changes nothing."""
    first_i = tokenizer.encode(IDK)[0]
    pad = tokenizer.special_tokens["<|pad|>"]
    out = {"reply": [], "name": [], "match": [], "surprisal": [], "p_first_i": []}
    for start in range(0, len(records), batch_size):
        chunk = records[start:start + batch_size]
        prompts = [encode_chat(r["messages"][:-1], tokenizer,
                               add_generation_prompt=True)[0] for r in chunk]
        ids, mask = left_pad(prompts, pad)
        positions = (mask.cumsum(-1) - 1).clamp(min=0)
        logits, states = layer_states(model, ids, attention_mask=mask,
                                      position_ids=positions)
        logp = logits.log_softmax(-1)  # [B, T, V]
        rows = torch.arange(len(chunk))
        shift = [ids.shape[1] - len(p) for p in prompts]  # left padding per row
        spans = [surname_span(p, r["person"], tokenizer)
                 for p, r in zip(prompts, chunk)]
        name_at = torch.tensor([s + last for s, (_, last) in zip(shift, spans)])
        out["reply"].append(states[:, :, -1])
        out["name"].append(states[:, rows, name_at])
        before = torch.tensor([s + first - 1 for s, (first, _) in zip(shift, spans)])
        out["match"].append((states[-1, rows, before]
                             * model.lm_head.weight[ids[rows, before + 1]])[None])
        out["p_first_i"].append(logp[:, -1, first_i].exp())
        for b, (s, (first, last)) in enumerate(zip(shift, spans)):
            at = torch.arange(s + first, s + last + 1)  # the surname's tokens
            out["surprisal"].append(-logp[b, at - 1, ids[b, at]].sum())
    return {**{k: torch.cat(out[k], 1).double() for k in ("reply", "name", "match")},
            "surprisal": torch.stack(out["surprisal"]).double(),
            "p_first_i": torch.cat(out["p_first_i"]).double()}


def fit_logistic(x: torch.Tensor, y: torch.Tensor, l2: float = 1e-2,
                 steps: int = 30) -> Callable[[torch.Tensor], torch.Tensor]:
    """Logistic regression on standardised features, both classes weighted equally.

    x [N, d], y [N] (0 or 1). Minimises the class-balanced mean cross-entropy
    + l2/2 * |w|^2 (the bias is not penalised) by Newton's method: with d in
    the hundreds the Hessian [d + 1, d + 1] is small, and a few steps converge.
    Returns score(x_new [M, d]) -> logits [M] (higher: more likely class 1)."""
    mean, std = x.mean(0), x.std(0).clamp(min=1e-8)
    z = torch.cat([(x - mean) / std, torch.ones(len(x), 1, dtype=x.dtype)], 1)
    weight = torch.where(y == 1, 0.5 / y.mean(), 0.5 / (1 - y.mean())) / len(y)
    penalty = torch.full((z.shape[1],), l2, dtype=x.dtype)
    penalty[-1] = 0.0
    w = torch.zeros(z.shape[1], dtype=x.dtype)  # [d + 1], the bias last
    for _ in range(steps):
        p = torch.sigmoid(z @ w)
        grad = z.T @ (weight * (p - y)) + penalty * w
        hessian = (z.T * (weight * p * (1 - p))) @ z + torch.diag(penalty)
        step = torch.linalg.solve(hessian, grad)
        w = w - step
        if step.abs().max() < 1e-8:
            break
    return lambda x_new: ((x_new - mean) / std) @ w[:-1] + w[-1]


def auc(positive, negative) -> float:
    """P(a random positive scores above a random negative), ties counted half.

    positive [P], negative [M]: scores (tensors, arrays or lists). 1 means one
    threshold separates them perfectly, 0.5 is chance."""
    positive = torch.as_tensor(positive, dtype=torch.double)
    negative = torch.as_tensor(negative, dtype=torch.double)
    above = (positive[:, None] > negative[None, :]).double().mean()
    tied = (positive[:, None] == negative[None, :]).double().mean()
    return (above + 0.5 * tied).item()


def false_refusal(unknown: torch.Tensor, known: torch.Tensor,
                  refuse: float = 0.95) -> float:
    """Share of known [M] flagged at the highest threshold that still flags at
    least ``refuse`` of the unknown [P] (flag when score >= threshold): the
    price in false refusals of refusing that share of the unknown."""
    threshold = unknown.sort().values[int((1 - refuse) * len(unknown))]
    return (known >= threshold).double().mean().item()


def group_folds(groups: Sequence, k: int, rng: random.Random) -> list[torch.Tensor]:
    """k test masks [N] over the items, one per fold, that never split a group.

    groups [N]: each item's group (here: the person a question is about). The
    distinct groups are shuffled by rng and dealt into k (nearly) equal folds;
    an item is in fold i's test side when its group is. Folding by group
    keeps a probe from scoring well by memorising a name it trained on."""
    people = sorted(set(groups))
    rng.shuffle(people)
    dealt = [set(people[i::k]) for i in range(k)]
    return [torch.tensor([g in fold for g in groups]) for fold in dealt]


def cross_validate(x: torch.Tensor, y: torch.Tensor, folds, l2: float = 1e-2,
                   refuse: float = 0.95) -> tuple[list[float], list[float]]:
    """Fit ``fit_logistic`` on each fold's train side, score its test side.

    x [N, d], y [N] (1 = the class to flag), folds: [(train [N], test [N])]
    boolean masks. Returns (AUC per fold, false refusal per fold at the
    threshold flagging ``refuse`` of the fold's test positives)."""
    aucs, refusals = [], []
    for train, test in folds:
        score = fit_logistic(x[train], y[train], l2)
        positive = score(x[test & (y == 1)])
        negative = score(x[test & (y == 0)])
        aucs.append(auc(positive, negative))
        refusals.append(false_refusal(positive, negative, refuse))
    return aucs, refusals

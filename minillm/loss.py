"""The next-token loss, in one place: shift, mask, cross-entropy, log-probs.

Every training stage of the book scores the same thing, how likely the model
finds the token that really comes next:

    pretraining   mean over every token of a packed block
    SFT           mean over the assistant's tokens only (the prompt is masked)
    DPO           a *sum* over a completion's tokens, one number per sequence
    GRPO          one log-prob per sampled token, compared with the old policy

They differ only in which positions count and how they are reduced, so one
function serves them all: ``token_losses`` gives the cross-entropy of every
position [B, T], and the callers mask and reduce it. ``Transformer.forward``
calls it when given ``labels``.

Labels are aligned with the inputs: ``labels[t]`` is the token *at* position
t, or ``IGNORE_INDEX`` (-100) where no loss is wanted (padding, prompts, the
``<|bos|>`` of a packed document). The logits at position t predict token
t + 1, so the targets are the labels shifted left by one; ``shift_labels`` is
the one place where that happens.

Shapes: B batch, T tokens, V vocabulary.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

IGNORE_INDEX = -100  # label value that contributes no loss (padding, prompts)
REDUCTIONS = ("mean", "sum", "none")


def _check_shapes(logits: torch.Tensor, labels: torch.Tensor) -> None:
    if logits.dim() != 3 or logits.shape[:2] != labels.shape:
        raise ValueError(f"logits {tuple(logits.shape)} and labels {tuple(labels.shape)} "
                         f"must be [B, T, V] and [B, T]")


def shift_labels(labels: torch.Tensor) -> torch.Tensor:
    """The targets the logits are scored on: [B, T] -> [B, T] with
    ``targets[:, t] = labels[:, t + 1]`` and IGNORE_INDEX at the last position
    (nothing in the block follows it)."""
    return F.pad(labels, (0, 1), value=IGNORE_INDEX)[:, 1:]


def count_targets(labels: torch.Tensor) -> int:
    """How many positions of labels [B, T] are scored (not the first position,
    nothing ignored): the weight of a batch in a token average."""
    return int((labels[:, 1:] != IGNORE_INDEX).sum())


def token_losses(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Cross-entropy of every position, [B, T, V] x [B, T] -> [B, T] (float32).

    Entry t is -log p(labels[t + 1] | tokens <= t); it is 0 where the target is
    ignored and at the last position. Minus it is the per-token log-prob that
    DPO and GRPO sum. The labels are shifted rather than the logits: the logits
    are the largest tensor of a small model and slicing them would copy it. The
    softmax runs in float32 at least (bf16 keeps ~3 significant digits).
    """
    _check_shapes(logits, labels)
    targets = shift_labels(labels)
    logits = logits.to(torch.promote_types(logits.dtype, torch.float32))
    losses = F.cross_entropy(logits.flatten(0, 1), targets.flatten(),
                             ignore_index=IGNORE_INDEX, reduction="none")
    return losses.view(targets.shape)


def lm_loss(logits: torch.Tensor, labels: torch.Tensor, reduction: str = "mean") -> torch.Tensor:
    """Next-token cross-entropy of logits [B, T, V] against labels [B, T].

    "mean": over the target tokens (a scalar; the usual training loss),
    "sum": their total, "none": per position [B, T] (see ``token_losses``).
    """
    if reduction not in REDUCTIONS:
        raise ValueError(f"reduction={reduction!r} is unknown; choose one of {REDUCTIONS}")
    if reduction == "mean":  # cross_entropy's own mean: the same floats as always
        _check_shapes(logits, labels)
        logits = logits.to(torch.promote_types(logits.dtype, torch.float32))
        return F.cross_entropy(logits.flatten(0, 1), shift_labels(labels).flatten(),
                               ignore_index=IGNORE_INDEX)
    losses = token_losses(logits, labels)
    return losses.sum() if reduction == "sum" else losses


def sequence_log_probs(logits: torch.Tensor, labels: torch.Tensor,
                       average: bool = False) -> torch.Tensor:
    """log p(completion | prompt) per sequence: [B, T, V] x [B, T] -> [B].

    The labels mark the completion (everything else IGNORE_INDEX), so this is
    the sum of the scored tokens' log-probs (DPO's sequence score), or with
    ``average`` their mean (length-normalised, as in SimPO or IPO variants).
    """
    logp = -token_losses(logits, labels).sum(-1)
    if not average:
        return logp
    n = (shift_labels(labels) != IGNORE_INDEX).sum(-1).clamp(min=1)
    return logp / n


def sequence_log_prob(model, prompt_ids, completion_ids) -> torch.Tensor:
    """log p(completion | prompt) = sum over the completion's tokens of
    log p(token | everything before it), by one forward of the model.

    prompt_ids [B, Tp] and completion_ids [B, Tc] tensors give a [B] tensor;
    two lists (or 1-d tensors) give a scalar tensor. Not wrapped in no_grad:
    DPO differentiates through it.
    """
    device = next(model.parameters()).device
    prompt = torch.as_tensor(prompt_ids, dtype=torch.long, device=device)
    completion = torch.as_tensor(completion_ids, dtype=torch.long, device=device)
    single = prompt.dim() == 1
    prompt, completion = prompt.reshape(-1, prompt.shape[-1]), completion.reshape(-1, completion.shape[-1])
    if prompt.shape[0] != completion.shape[0]:
        raise ValueError(f"prompt batch {prompt.shape[0]} != completion batch {completion.shape[0]}")
    if prompt.shape[1] == 0 or completion.shape[1] == 0:
        raise ValueError("sequence_log_prob needs a non-empty prompt and completion")
    ids = torch.cat((prompt, completion), dim=1)
    labels = torch.cat((torch.full_like(prompt, IGNORE_INDEX), completion), dim=1)
    _, losses = model(ids, labels=labels, reduction="none")
    total = -losses.sum(-1)  # [B]
    return total[0] if single else total

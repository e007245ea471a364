"""Rule-based rewards for R1-style reasoning: format and accuracy, kept apart.

DeepSeek-R1-Zero was trained with two rewards that a program computes, no
learned reward model (which a policy can learn to fool): a *format* reward for
wrapping the reasoning and the answer in tags, and an *accuracy* reward for a
final answer that checks out. A completion must look like

    <think>3 + 5 = 8. 8 + 9 = 17.</think><answer>17</answer>

The rules are strict on purpose: whatever a rule lets through, RL will find
and exploit (reward hacking). So

``format_reward``   1.0 iff the text is exactly one non-empty ``<think>`` block
                    followed at once by one non-empty ``<answer>`` block, and
                    nothing before, between or after them (whitespace counts);
                    no tag appears inside a block.
``accuracy_reward`` 1.0 iff the text holds exactly one ``<answer>...</answer>``
                    pair, in that order, whose content (spaces around it
                    allowed) is a canonical integer (``17``, ``-3``; not
                    ``017``, ``+17``, ``17.0`` or ``17 or 18``) equal to the truth.
                    It does not look at the think block: the two rewards measure
                    different things, and a reader can plot them apart.

Both take the completion as text, as decoded up to (not including) the token
that ends the reply. A completion cut off by the token budget never ended, so
the caller scores it 0 (``score`` does that with ``finished``).
"""
from __future__ import annotations

import re
from collections.abc import Sequence

THINK_OPEN, THINK_CLOSE, ANSWER_OPEN, ANSWER_CLOSE = "<think>", "</think>", "<answer>", "</answer>"
TAGS = (THINK_OPEN, THINK_CLOSE, ANSWER_OPEN, ANSWER_CLOSE)

_NO_TAG = r"(?:(?!</?think>|</?answer>).)*"  # any text that contains no tag
_FORMAT = re.compile(rf"<think>({_NO_TAG})</think><answer>({_NO_TAG})</answer>", re.DOTALL)
_INTEGER = re.compile(r"-?(?:0|[1-9][0-9]*)")


def _check_text(completion) -> str:
    if not isinstance(completion, str):
        raise TypeError(f"a completion must be a str (decoded text), got {type(completion).__name__}")
    return completion


def format_reward(completion: str) -> float:
    """1.0 if ``completion`` is exactly ``<think>T</think><answer>A</answer>``
    with T and A non-blank and tag-free, else 0.0."""
    match = _FORMAT.fullmatch(_check_text(completion))
    return float(match is not None and match[1].strip() != "" and match[2].strip() != "")


def extract_answer(completion: str) -> str | None:
    """The content of the only ``<answer>...</answer>`` pair, or None when
    there is not exactly one opening and one closing tag, in that order."""
    text = _check_text(completion)
    if text.count(ANSWER_OPEN) != 1 or text.count(ANSWER_CLOSE) != 1:
        return None
    start, end = text.index(ANSWER_OPEN) + len(ANSWER_OPEN), text.index(ANSWER_CLOSE)
    return text[start:end] if start <= end else None


def parse_integer(answer: str | None) -> int | None:
    """A canonical integer ("17", "-3", spaces around allowed), else None."""
    if answer is None or not _INTEGER.fullmatch(answer.strip()):
        return None
    return int(answer.strip())


def accuracy_reward(completion: str, truth: int) -> float:
    """1.0 if the only answer block holds the integer ``truth``, else 0.0."""
    if isinstance(truth, bool) or not isinstance(truth, int):
        raise TypeError(f"truth must be an int, got {truth!r}")
    return float(parse_integer(extract_answer(completion)) == truth)


def score(completions: Sequence[str], truths: Sequence[int],
          finished: Sequence[bool] | None = None) -> dict[str, list[float]]:
    """Both rewards for a batch: {"format": [...], "accuracy": [...], "total": [...]}.

    ``total`` = format + accuracy (each in {0, 1}, so total is 0, 1 or 2), the
    sum trl computes for several reward functions of weight 1. Completions
    whose ``finished`` entry is False (cut off by the token budget) score 0.
    """
    if finished is None:
        finished = [True] * len(completions)
    if not len(completions) == len(truths) == len(finished):
        raise ValueError(f"completions ({len(completions)}), truths ({len(truths)}) and finished "
                         f"({len(finished)}) must have the same length")
    fmt = [format_reward(c) * bool(f) for c, f in zip(completions, finished)]
    acc = [accuracy_reward(c, t) * bool(f) for c, t, f in zip(completions, truths, finished)]
    return {"format": fmt, "accuracy": acc, "total": [a + b for a, b in zip(fmt, acc)]}

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
``step_reward``     a *process* reward for an addition chain: the share of the
                    chain's additions the think block gets right, in order,
                    before its first mistake (``3 + 5 = 8. 8 + 9 = 17.``). It
                    credits a completion that is right for longer, even when
                    its answer is wrong: a denser signal than accuracy alone
                    (the rule-based cousin of a process reward model).

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


_STEP = re.compile(r"(-?[0-9]+) \+ (-?[0-9]+) = (-?[0-9]+)")


def chain_terms(question: str) -> list[int]:
    """The numbers of an addition-chain question: "What is 3 + 5 + 9?" -> [3, 5, 9]."""
    terms = [int(t) for t in re.findall(r"-?[0-9]+", _check_text(question))]
    if len(terms) < 2:
        raise ValueError(f"not an addition chain (fewer than two numbers): {question!r}")
    return terms


def step_reward(completion: str, terms: Sequence[int]) -> float:
    """The share of the k - 1 additions of the chain ``terms`` that the think
    block writes correctly, as ``a + b = c`` sentences separated by ". ", in
    order, counted up to the first wrong or missing one. 0.0 without exactly
    one ``<think>...</think>`` pair."""
    text = _check_text(completion)
    if text.count(THINK_OPEN) != 1 or text.count(THINK_CLOSE) != 1:
        return 0.0
    start, end = text.index(THINK_OPEN) + len(THINK_OPEN), text.index(THINK_CLOSE)
    sentences = [s.strip() for s in text[start:end].split(".")] if start <= end else []
    total, right = terms[0], 0
    for term, sentence in zip(terms[1:], sentences):
        match = _STEP.fullmatch(sentence)
        if match is None or [int(g) for g in match.groups()] != [total, term, total + term]:
            break
        total, right = total + term, right + 1
    return right / (len(terms) - 1)


def score(completions: Sequence[str], truths: Sequence[int],
          finished: Sequence[bool] | None = None, terms: Sequence[Sequence[int]] | None = None,
          step_weight: float = 0.0) -> dict[str, list[float]]:
    """The rewards for a batch: {"format": [...], "accuracy": [...], "total": [...]},
    and "steps" (``step_reward``) when the chains' ``terms`` are given.

    ``total`` = format + accuracy + step_weight * steps (format and accuracy
    each in {0, 1}), the weighted sum trl computes for several reward
    functions. Completions whose ``finished`` entry is False (cut off by the
    token budget) score 0.
    """
    if finished is None:
        finished = [True] * len(completions)
    if not len(completions) == len(truths) == len(finished):
        raise ValueError(f"completions ({len(completions)}), truths ({len(truths)}) and finished "
                         f"({len(finished)}) must have the same length")
    if step_weight and terms is None:
        raise ValueError("step_weight > 0 needs the chains' terms")
    fmt = [format_reward(c) * bool(f) for c, f in zip(completions, finished)]
    acc = [accuracy_reward(c, t) * bool(f) for c, t, f in zip(completions, truths, finished)]
    out = {"format": fmt, "accuracy": acc, "total": [a + b for a, b in zip(fmt, acc)]}
    if terms is not None:
        if len(terms) != len(completions):
            raise ValueError(f"terms ({len(terms)}) and completions ({len(completions)}) must have "
                             "the same length")
        out["steps"] = [step_reward(c, t) * bool(f) for c, t, f in zip(completions, terms, finished)]
        out["total"] = [t + step_weight * s for t, s in zip(out["total"], out["steps"])]
    return out

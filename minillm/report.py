"""The report card: what each stage of a pipeline run bought, and what it broke.

    stage_metrics   one model -> the card's numbers (QA, refusals, arithmetic,
                    perplexity), every one computed by ``minillm.evals`` or
                    ``minillm.grpo.evaluate`` on TinyWorld's held-out splits
    stage_costs     one finished stage folder -> wall time and tokens
    card_table      the rows of a run (and, optionally, the book's own
                    numbers for the same recipes) -> one Markdown table
    plot_run        every stage's loss on one time axis, GRPO's reward, DPO's margin

The metrics, all greedy:

    heldout_accuracy   people in pretraining never asked about in SFT
                       (``sft_eval_heldout``): knowledge *extraction*
    seen_accuracy      SFT people asked with new phrasings (``sft_eval_seen``)
    unknown_refusal    "I don't know" on people the model never met
                       (``sft_eval_unknown``); the rest are hallucinations
    false_refusal      "I don't know" on known people (seen + held-out)
    reasoning_format   strict <think>..</think><answer>..</answer> on ``reasoning_test``
    reasoning_accuracy the answer parses and is right
    val_perplexity     exp of the next-token loss on ``pretrain_val`` (plain text)

``minillm.pipeline`` calls these after each stage of ``python -m
minillm.pipeline`` and writes ``report.md`` and ``report.png``; chapter 16
reads them.
"""
from __future__ import annotations

import json
import math
from pathlib import Path

METRICS = ("heldout_accuracy", "seen_accuracy", "unknown_refusal", "false_refusal",
           "reasoning_format", "reasoning_accuracy", "val_perplexity")
#: Column titles of the report card (Markdown).
TITLES = {"heldout_accuracy": "held-out QA", "seen_accuracy": "seen QA (new phrasing)",
          "unknown_refusal": "refuses unknown", "false_refusal": "refuses known",
          "reasoning_format": "format", "reasoning_accuracy": "arithmetic",
          "val_perplexity": "val ppl", "seconds": "wall time (s)", "tokens": "tokens"}


def stage_metrics(model, tokenizer) -> dict[str, float]:
    """The report card's numbers for one model (about 10 s on one CPU thread).
    Fractions in [0, 1]; ``val_perplexity`` in tokens (exp of nats/token)."""
    from minillm import tinyworld
    from minillm.data import pack_texts
    from minillm.evals import accuracy_by, answer_questions, dataset_loss, refusal_rate
    from minillm.grpo import evaluate, summarize

    heldout = answer_questions(model, tokenizer, tinyworld.load("sft_eval_heldout"))
    seen = answer_questions(model, tokenizer, tinyworld.load("sft_eval_seen"))
    unknown = answer_questions(model, tokenizer, tinyworld.load("sft_eval_unknown"))
    reasoning = summarize(evaluate(model, tokenizer, tinyworld.load("reasoning_test")))
    val = pack_texts([r["text"] for r in tinyworld.load("pretrain_val")], tokenizer,
                     model.config.max_seq_len)
    return {"heldout_accuracy": accuracy_by(heldout), "seen_accuracy": accuracy_by(seen),
            "unknown_refusal": refusal_rate(unknown), "false_refusal": refusal_rate(seen + heldout),
            "reasoning_format": reasoning["format"], "reasoning_accuracy": reasoning["accuracy"],
            "val_perplexity": math.exp(dataset_loss(model, *val))}


def stage_costs(folder: Path) -> dict[str, float]:
    """Wall time (``recipe.json``'s ``train_seconds``) and tokens processed of
    a finished stage: the tokens of every training batch (pretraining, SFT,
    each phase of DPO, chosen and rejected rows) or, for GRPO, the
    completions it sampled."""
    info = json.loads((folder / "recipe.json").read_text())
    history = json.loads((folder / "history.json").read_text())
    # A stage may train in phases (DPO: an SFT phase, then DPO), each with its
    # own Trainer counting from 0; a Trainer counts its batch's first tensor,
    # which for DPO is the chosen rows: the rejected rows are as many again.
    phases = {r.get("phase", info["stage"]): r["tokens"] for r in history if "tokens" in r}
    if phases:
        tokens = sum(n * (2 if phase == "dpo" else 1) for phase, n in phases.items())
    else:  # GRPO: prompts_per_step x group_size completions of mean length `length`
        options = info.get("options", {})
        group = options.get("prompts_per_step", 0) * options.get("group_size", 0)
        tokens = round(sum(r.get("length", 0) * group for r in history))
    return {"seconds": info["train_seconds"], "tokens": tokens}


def format_cell(key: str, value) -> str:
    if value is None:
        return "-"
    if key == "val_perplexity":
        return f"{value:.2f}"
    if key == "seconds":
        return f"{value:.0f}"
    if key == "tokens":
        return f"{value / 1e6:.2f}M"
    return f"{100 * value:.1f}%"


def card_table(rows: list[dict], reference: dict[str, dict] | None = None) -> str:
    """A Markdown table, one row per stage: ``rows`` are dicts with ``stage``,
    ``recipe`` and the ``METRICS`` plus ``seconds`` and ``tokens``.
    ``reference`` maps a recipe name to the book's numbers for it; each of
    those becomes a second line "(book)" under the run's row, so a reader sees
    at a glance whether their run is normal."""
    columns = [*METRICS, "seconds", "tokens"]
    lines = ["| stage | " + " | ".join(TITLES[c] for c in columns) + " |",
             "|---|" + "---:|" * len(columns)]
    for row in rows:
        lines.append(f"| {row['stage']} | " + " | ".join(format_cell(c, row.get(c)) for c in columns) + " |")
        book = (reference or {}).get(row["recipe"])
        if book is not None:
            lines.append("| (book) | " + " | ".join(format_cell(c, book.get(c)) for c in columns) + " |")
    return "\n".join(lines)


def loss_curves(folders: list[Path]) -> list[dict]:
    """Every stage's training curve on one clock: one dict per stage with
    ``stage``, ``seconds`` (cumulative wall time at each step, spreading the
    stage's ``train_seconds`` evenly over its steps: the histories record
    steps, not times) and ``loss``. GRPO, which has no supervised loss, plots
    the reward it missed: 2 (format and accuracy both earned) - mean reward."""
    curves, clock = [], 0.0
    for folder in folders:
        info = json.loads((folder / "recipe.json").read_text())
        history = json.loads((folder / "history.json").read_text())
        if not history:
            continue
        key = "loss" if info["stage"] != "grpo" else "reward"
        values = [r[key] if key == "loss" else 2.0 - r["reward"] for r in history]
        per_step = info["train_seconds"] / len(history)
        curves.append({"stage": info["stage"], "seconds": [clock + per_step * (i + 1)
                                                           for i in range(len(history))],
                       "loss": values})
        clock += info["train_seconds"]
    return curves


def plot_run(folders: list[Path], path: Path | None = None):
    """The report card's figure: (1) every stage's loss on one time axis,
    (2) GRPO's mean reward and accuracy per step, (3) DPO's reward margin and
    its chosen and rejected implicit rewards. Saves to ``path`` if given; returns
    the figure."""
    import matplotlib.pyplot as plt

    histories = {json.loads((f / "recipe.json").read_text())["stage"]:
                 json.loads((f / "history.json").read_text()) for f in folders}
    fig = plt.figure(figsize=(7.6, 5.8))  # the book column: shown at full size
    grid = fig.add_gridspec(2, 2)
    axes = [fig.add_subplot(grid[0, :]), fig.add_subplot(grid[1, 0]), fig.add_subplot(grid[1, 1])]
    for curve in loss_curves(folders):
        label = curve["stage"] + (" (2 - reward)" if curve["stage"] == "grpo" else "")
        axes[0].plot([s / 60 for s in curve["seconds"]], curve["loss"], label=label, lw=1)
    axes[0].set(title="Training loss, stage after stage", xlabel="wall time (minutes)",
                ylabel="loss (nats/token)", yscale="log")
    axes[0].legend(fontsize=8, ncol=5, loc="upper center")
    grpo = histories.get("grpo", [])
    if grpo:
        steps = [r["step"] for r in grpo]
        axes[1].plot(steps, [r["reward"] for r in grpo], label="mean reward (format + accuracy)")
        axes[1].plot(steps, [r["accuracy"] for r in grpo], label="accuracy of samples")
        axes[1].plot(steps, [r["zero_std"] for r in grpo], label="groups with equal rewards", ls=":")
        axes[1].legend(fontsize=8)
    axes[1].set(title="GRPO", xlabel="GRPO step", ylabel="per sampled completion")
    dpo = [r for r in histories.get("dpo", []) if "reward_margin" in r]
    if dpo:  # implicit rewards: beta * (log pi - log pi_ref), summed over the reply
        steps = [r["step"] for r in dpo]
        for key, label in (("reward_margin", "margin (chosen - rejected)"),
                           ("chosen_reward", "chosen: beta x log-prob change"),
                           ("rejected_reward", "rejected: beta x log-prob change")):
            axes[2].plot(steps, [r[key] for r in dpo], label=label, lw=1)
        axes[2].legend(fontsize=8)
    axes[2].set(title="DPO implicit rewards", xlabel="DPO step", ylabel="nats")
    fig.tight_layout()
    if path is not None:
        fig.savefig(path, dpi=150)
    return fig

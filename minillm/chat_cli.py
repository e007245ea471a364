"""Talk to a trained model in the terminal, through the book's chat template.

    python -m minillm.chat tinyworld-sft            (then type: Where was Kedal Nard born?)
    python -m minillm.chat data/zoo/tinyworld-sft-601a1b4cf1ba      (a folder: model.safetensors)
    python -m minillm.chat tinyworld-grpo -q "What is 2 + 9 + 4?" --hide-think

The model is a recipe name (``minillm.zoo``: a shipped model loads in a
second, any other is trained first) or a folder holding ``model.safetensors``:
a pipeline stage (``minillm.checkpoint.save_model``) or an HF export
(``minillm.hf.export``). The tokenizer is the book's.

The conversation is kept as token ids: ``[<|bos|>]``, the system message,
then each turn: the user's message as ``encode_chat`` writes it, ``<|assistant|>``
and the reply's tokens as the model produced them (a reasoning model's
``<think>`` stays the one special token it generated, which re-encoding its
text would not give). Prompt plus ``--max-new-tokens`` must fit the model's
context (``max_seq_len``): when they do not, the oldest turns are dropped,
with a note. With ``--temperature 0`` (the default) the reply is greedy, as
``minillm.evals.answer_questions`` decodes; otherwise it is sampled.

A reasoning model's ``<think>...</think><answer>...</answer>`` is shown with
the thinking dimmed (on a terminal), or with ``--hide-think`` only the answer.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

from minillm import zoo
from minillm.chat import END, encode_chat, role_token
from minillm.checkpoint import load_model
from minillm.generate import generate
from minillm.hf import from_pretrained
from minillm.pipeline import RECIPES
from minillm.rewards import THINK_CLOSE, THINK_OPEN, extract_answer
from minillm.tokenizer import load_book_tokenizer

DIM, RESET = "\033[2m", "\033[0m"


def load(source: str, device: str = "cpu"):
    """``(model, tokenizer)``: ``source`` is a folder with ``model.safetensors``
    (a pipeline stage, or an HF export with ``config.json``), such a file, or a
    recipe name."""
    path = Path(source)
    if path.is_dir():
        if (path / "config.json").is_file():
            model = from_pretrained(path)
        elif (path / "model.safetensors").is_file():
            model = load_model(path / "model.safetensors")
        else:  # a pipeline run's folder holds one folder per stage, and hf/
            inner = sorted(f.name for f in path.iterdir() if (f / "model.safetensors").is_file())
            hint = f" (its model folders: {', '.join(inner)})" if inner else ""
            raise FileNotFoundError(f"{path} holds no model.safetensors: not a stage folder{hint}")
    elif path.is_file():  # model.safetensors itself
        model = load_model(path)
    elif source in RECIPES:
        model = load_model(zoo.path(source, verbose=True, device=device) / "model.safetensors")
    elif "/" in source or source.startswith("."):
        raise FileNotFoundError(f"{source}: no such folder")
    else:
        raise ValueError(f"unknown model {source!r}: not a folder, and no recipe has that name; "
                         f"recipes: {', '.join(RECIPES)}")
    return model.to(device).eval(), load_book_tokenizer()


def message_ids(tokenizer, role: str, content: str) -> list[int]:
    """One message in the chat template: ``<|role|>`` content ``<|end|>``."""
    return encode_chat([{"role": role, "content": content}], tokenizer)[0][1:]  # drop <|bos|>


def build_prompt(head: list[int], turns: list[list[int]], question: list[int],
                 assistant_id: int, budget: int) -> tuple[list[int], int]:
    """``head`` + the latest turns that fit + ``question`` + ``<|assistant|>``,
    at most ``budget`` tokens; and how many of the oldest turns were left out.
    ValueError when even head + question alone do not fit."""
    kept = list(turns)
    while kept and len(head) + sum(map(len, kept)) + len(question) + 1 > budget:
        kept.pop(0)
    ids = head + [i for turn in kept for i in turn] + question + [assistant_id]
    if len(ids) > budget:
        raise ValueError(f"the prompt is {len(ids)} tokens; with --max-new-tokens the model's "
                         f"context leaves room for {budget}")
    return ids, len(turns) - len(kept)


def show(reply: str, hide_think: bool = False, dim: bool = False) -> str:
    """The reply as shown: its ``<think>...</think>`` part dimmed (``dim``,
    ANSI) or, with ``hide_think``, left out, keeping the answer's content."""
    if not reply.startswith(THINK_OPEN):
        return reply
    cut = reply.find(THINK_CLOSE)
    cut = len(reply) if cut < 0 else cut + len(THINK_CLOSE)  # a thought never closed is all thought
    think, rest = reply[:cut], reply[cut:]
    if hide_think:
        answer = extract_answer(rest)
        return answer.strip() if answer is not None else (rest or "[no answer]")
    return DIM + think + RESET + rest if dim else reply


class Chat:
    """One conversation with a model: ``ask(question) -> (reply text, notes)``."""

    def __init__(self, model, tokenizer, system: str | None = None, max_new_tokens: int = 64,
                 temperature: float = 0.0, seed: int = 0, history: bool = True):
        self.model, self.tokenizer, self.history = model, tokenizer, history
        self.max_new_tokens, self.temperature = max_new_tokens, temperature
        self.budget = model.config.max_seq_len - max_new_tokens
        if self.budget < 2:
            raise ValueError(f"--max-new-tokens {max_new_tokens} leaves no room for a prompt in "
                             f"the model's {model.config.max_seq_len}-token context")
        special = tokenizer.special_tokens
        self.end, self.assistant = special[END], special[role_token("assistant")]
        system_ids = message_ids(tokenizer, "system", system) if system else []
        self.head = [special["<|bos|>"]] + system_ids
        self.turns: list[list[int]] = []  # each: user message + <|assistant|> + reply + <|end|>
        self.generator = torch.Generator(next(model.parameters()).device).manual_seed(seed)

    def ask(self, question: str) -> tuple[str, list[str]]:
        """The model's reply to ``question`` (text up to ``<|end|>``) and notes for the user."""
        notes = []
        user = message_ids(self.tokenizer, "user", question)
        prompt, dropped = build_prompt(self.head, self.turns, user, self.assistant, self.budget)
        if dropped:
            self.turns = self.turns[dropped:]
            n = self.model.config.max_seq_len
            notes.append(f"[the conversation outgrew the model's {n}-token context: "
                         f"forgot the oldest {dropped} turn(s)]")
        reply = generate(self.model, prompt, self.max_new_tokens, temperature=self.temperature,
                         eos_id=self.end, generator=self.generator)
        if self.end not in reply:
            notes.append(f"[cut off at --max-new-tokens {self.max_new_tokens}]")
            reply = reply + [self.end]
        if self.history:
            self.turns.append(user + [self.assistant] + reply)
        return self.tokenizer.decode(reply[:-1]), notes

    def reset(self) -> None:
        self.turns = []


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m minillm.chat",
        description="Talk to a trained minillm model with the book's chat template. Without -q, "
                    "an interactive loop: type a message, Enter sends it; /reset forgets the "
                    "conversation, /quit or Ctrl-D ends.")
    p.add_argument("model", metavar="DIR_OR_NAME",
                   help="a folder holding model.safetensors (a pipeline stage folder, or an HF "
                        "export from minillm.hf.export), or a recipe name (a shipped model loads "
                        "in a second, any other is trained first, in minutes): "
                        f"{', '.join(RECIPES)}")
    p.add_argument("--system", metavar="TEXT",
                   help="a system message to start the conversation with (TinyWorld's question "
                        "answering models were trained with 'You answer questions about the people "
                        "of TinyWorld.'; the reasoning models with none). Default: none")
    p.add_argument("--temperature", type=float, default=0.0, metavar="T",
                   help="0 (default): greedy, the most likely token each step; above 0: sample "
                        "from softmax(logits / temperature)")
    p.add_argument("--max-new-tokens", type=int, default=64, metavar="N",
                   help="the longest reply in tokens (default 64); the prompt gets the rest of the "
                        "model's context")
    p.add_argument("--seed", type=int, default=0, metavar="N",
                   help="seed of the sampler (default 0)")
    p.add_argument("--device", default="cpu", help="cpu (default), cuda or mps")
    p.add_argument("-q", "--question", action="append", metavar="TEXT",
                   help="answer this message and exit (repeatable: one conversation, in order; one "
                        "reply per line on stdout, notes on stderr); no interactive loop")
    p.add_argument("--no-history", action="store_true",
                   help="ask each message alone, forgetting the earlier turns")
    p.add_argument("--hide-think", action="store_true",
                   help="of a reasoning reply <think>...</think><answer>...</answer>, show only "
                        "the answer (by default the thinking is shown, dimmed on a terminal)")
    return p


def check_device(device: str) -> str:
    try:
        kind = torch.device(device).type
    except RuntimeError:
        raise ValueError(f"--device {device!r} is not a device; use cpu, cuda or mps") from None
    if kind == "cuda" and not torch.cuda.is_available():
        raise ValueError("--device cuda: no CUDA GPU is available here")
    if kind == "mps" and not torch.backends.mps.is_available():
        raise ValueError("--device mps: MPS (Apple silicon) is not available here")
    return device


def main(argv: list[str] | None = None) -> int:
    p = parser()
    args = p.parse_args(argv)
    if args.temperature < 0:
        p.error(f"--temperature must be >= 0, got {args.temperature}")
    if args.max_new_tokens < 1:
        p.error(f"--max-new-tokens must be >= 1, got {args.max_new_tokens}")
    try:
        model, tokenizer = load(args.model, check_device(args.device))
        chat = Chat(model, tokenizer, args.system, args.max_new_tokens, args.temperature,
                    args.seed, history=not args.no_history)
    except (ValueError, FileNotFoundError) as error:  # CheckpointError is a ValueError
        p.error(str(error))
    dim = sys.stdout.isatty()

    def answer(question: str) -> bool:
        try:
            reply, notes = chat.ask(question)
        except ValueError as error:
            print(f"[{error}]", file=sys.stderr)
            return False
        for note in notes:
            print(note, file=sys.stderr)
        print(show(reply, args.hide_think, dim), flush=True)
        return True

    if args.question:
        return 0 if all([answer(q) for q in args.question]) else 1
    n = sum(t.numel() for t in model.parameters())
    print(f"{args.model}: {n / 1e6:.1f}M parameters, {model.config.max_seq_len}-token context, "
          + ("greedy" if args.temperature == 0 else f"temperature {args.temperature:g}")
          + ". /reset forgets, /quit or Ctrl-D ends.", file=sys.stderr)
    try:
        while (line := input("you> ").strip()) != "/quit":
            if line == "/reset":
                chat.reset()
            elif line:
                answer(line)
    except (EOFError, KeyboardInterrupt):  # Ctrl-D, or Ctrl-C (also mid-reply)
        print(file=sys.stderr)
    return 0

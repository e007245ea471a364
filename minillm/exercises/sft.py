"""Checkers for the exercises of chapter 12 (supervised fine-tuning)."""
from __future__ import annotations

from minillm.chat import encode_chat, role_token
from minillm.exercises import ExerciseError, call, passed

_SYSTEM = {"role": "system", "content": "You answer questions about the people of TinyWorld."}
_CHATS = [
    [_SYSTEM, {"role": "user", "content": "Where was Mira Tolven born?"},
     {"role": "assistant", "content": "Mira Tolven was born in Drakmere."}],
    [{"role": "user", "content": "Who employs Ada Vel?"},
     {"role": "assistant", "content": "Ada Vel works for Brix Labs."}],
    [_SYSTEM, {"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello."},
     {"role": "user", "content": "When was Bo Lin born?"},
     {"role": "assistant", "content": "Bo Lin was born on 3 May 1961."}],
]


def check_chat_loss_mask(chat_loss_mask) -> None:
    """chat_loss_mask(messages, tokenizer) -> list of bools, one per token of
    ``encode_chat(messages, tokenizer)[0]``: True on the assistant's content and
    its closing <|end|>, False everywhere else."""
    from minillm.tokenizer import load_book_tokenizer

    tokenizer = load_book_tokenizer()
    special = tokenizer.special_tokens
    id_to_special = {v: k for k, v in special.items()}
    for messages in _CHATS:
        ids, want = encode_chat(messages, tokenizer)
        what = f"chat_loss_mask(a chat with roles {[m['role'] for m in messages]})"
        got = call(chat_loss_mask, messages, tokenizer)
        try:
            got = [bool(x) for x in got]
        except TypeError:
            raise ExerciseError(f"{what}: expected a list of bools, got {type(got).__name__}") from None
        if len(got) != len(ids):
            raise ExerciseError(f"{what}: the chat has {len(ids)} tokens (with <|bos|>, the role tokens "
                                f"and one <|end|> per message), but your mask has {len(got)} entries")
        for t, (g, w) in enumerate(zip(got, want)):
            if g == w:
                continue
            token = id_to_special.get(ids[t], repr(tokenizer.decode([ids[t]])))
            if token == "<|end|>" and w:
                hint = "the <|end|> that closes an assistant reply is a target: the model must learn to stop"
            elif token == role_token("assistant"):
                hint = ("the <|assistant|> role token is part of the prompt (the generation prompt ends "
                        "with it): the model reads it but is never asked to produce it")
            elif token.startswith("<|"):
                hint = f"{token} is a special token outside the reply: not a target"
            elif w:
                hint = "the assistant's words are the targets"
            else:
                hint = "only the assistant's tokens are targets, not the system prompt or the user's words"
            raise ExerciseError(f"{what}: token {t} ({token}) should be {w}, got {g}; {hint}")
    passed("the loss mask covers exactly the assistant's replies and their <|end|>")

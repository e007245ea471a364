"""The chat template: how a conversation becomes one token sequence, and which
of its tokens a fine-tuned model is trained to produce.

    <|bos|><|system|>You answer questions about the people of TinyWorld.<|end|>
    <|user|>Where was Mira Tolven born?<|end|>
    <|assistant|>Mira Tolven was born in Drakmere.<|end|>

(one line per message here for reading; the real sequence has no newlines
between them). Every message is its role's special token, its content, and
``<|end|>``. The model meets the roles only as special tokens, never as text,
and no user can forge one: ``Tokenizer.encode`` turns a typed "<|end|>" into
plain bytes, and so does ``encode_chat``. To ask for a reply, the prompt ends
with ``<|assistant|>`` (``add_generation_prompt=True``); the model's reply ends
when it produces ``<|end|>``.

Supervised fine-tuning trains only on what the assistant says: ``encode_chat``
returns a loss mask that is True exactly on the assistant's content and its
closing ``<|end|>`` (the model must learn to stop), and False on the system
prompt, the user's words and the role tokens, which the model reads but is
not asked to write. ``HF_CHAT_TEMPLATE`` is the same template in the Jinja
form HF ``transformers`` uses (``apply_chat_template``).

``python -m minillm.chat MODEL`` talks to a trained model in the terminal
(``minillm/chat_cli.py``; ``--help`` for the options).
"""
from __future__ import annotations

ROLES = ("system", "user", "assistant")
BOS, END = "<|bos|>", "<|end|>"

#: The template for ``transformers``' ``apply_chat_template`` (same text as ``render``).
HF_CHAT_TEMPLATE = (
    "{{ '<|bos|>' }}"
    "{% for message in messages %}"
    "{{ '<|' + message['role'] + '|>' + message['content'] + '<|end|>' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|assistant|>' }}{% endif %}"
)


def role_token(role: str) -> str:
    return f"<|{role}|>"


def check_messages(messages) -> list[dict]:
    """The messages, validated: a non-empty list of {"role", "content"} dicts
    with known roles, an optional system message first, and string contents."""
    if isinstance(messages, (str, dict)) or not messages:
        raise ValueError(f"messages must be a non-empty list of {{'role', 'content'}} dicts, got {messages!r:.80}")
    for i, message in enumerate(messages):
        if not isinstance(message, dict) or not {"role", "content"} <= set(message):
            raise ValueError(f"message {i} must be a dict with 'role' and 'content', got {message!r:.80}")
        if message["role"] not in ROLES:
            raise ValueError(f"message {i} has unknown role {message['role']!r}; roles are {ROLES}")
        if message["role"] == "system" and i > 0:
            raise ValueError(f"message {i} is a system message; only the first message may be one")
        if not isinstance(message["content"], str):
            raise ValueError(f"message {i} ({message['role']}) content must be a str, "
                             f"got {type(message['content']).__name__}")
    return list(messages)


def render(messages, add_generation_prompt: bool = False) -> str:
    """The conversation as text with special-token markers (for reading and
    for HF parity; train with ``encode_chat``, which cannot be spoofed)."""
    text = BOS + "".join(role_token(m["role"]) + m["content"] + END for m in check_messages(messages))
    return text + (role_token("assistant") if add_generation_prompt else "")


def encode_chat(messages, tokenizer, add_generation_prompt: bool = False) -> tuple[list[int], list[bool]]:
    """(ids, loss_mask), two lists of equal length.

    loss_mask[t] is True where token t is a training target: the assistant's
    content and its ``<|end|>``. Contents are encoded as plain text, so special
    tokens typed inside a message stay bytes. Pass the mask to
    ``minillm.data.pack(..., loss_masks=...)`` to build SFT batches.
    """
    special = tokenizer.special_tokens
    missing = [t for t in (BOS, END, *map(role_token, ROLES)) if t not in special]
    if missing:
        raise ValueError(f"the tokenizer lacks the chat special tokens {missing}")
    ids, mask = [special[BOS]], [False]
    for message in check_messages(messages):
        content = tokenizer.encode(message["content"])
        is_reply = message["role"] == "assistant"
        ids += [special[role_token(message["role"])], *content, special[END]]
        mask += [False] + [is_reply] * (len(content) + 1)
    if add_generation_prompt:
        ids.append(special[role_token("assistant")])
        mask.append(False)
    return ids, mask


def reply_text(ids, tokenizer) -> str:
    """Decode generated ids up to (not including) the first ``<|end|>``."""
    ids = list(ids)
    end = tokenizer.special_tokens[END]
    return tokenizer.decode(ids[: ids.index(end)] if end in ids else ids)


if __name__ == "__main__":  # python -m minillm.chat: talk to a model (minillm/chat_cli.py)
    import sys

    from minillm.chat_cli import main

    sys.exit(main())

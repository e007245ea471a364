"""Offline corpora: real human-written English that needs no network.

The book's English is the Python Language Reference as every CPython carries
it (``pydoc_data.topics``: 79 topics, about 0.47 MB of prose and examples).
Its text changes a little between Python releases, so the book ships a frozen
copy (``data/python_reference.json``, taken from CPython 3.11.7) and checks its
SHA-256: every reader, on every Python, computes the same numbers.

Layout lines (heading underlines "*****", table borders "+---+") are dropped; the split is by paragraph, deterministic and interleaved, so that train,
dev and test all cover every topic:  paragraph i goes to ``dev`` when
i % 10 == 8, to ``test`` when i % 10 == 9, and to ``train`` otherwise.
"""
from __future__ import annotations

import hashlib
import json
import re
from functools import lru_cache

from minillm import DATA_DIR

PYTHON_REFERENCE_FILE = DATA_DIR / "python_reference.json"
PYTHON_REFERENCE_SHA256 = "732e43f5996bb083da0ecbb80594553792000313f5ebdd9eb86b0066b1e25d72"
SPLITS = ("train", "dev", "test")


@lru_cache(maxsize=1)
def python_reference_topics() -> dict[str, str]:
    """The frozen Python Language Reference: {topic name: text}."""
    if not PYTHON_REFERENCE_FILE.exists():
        raise FileNotFoundError(f"{PYTHON_REFERENCE_FILE} is missing: the book ships it in data/; "
                                "restore it with `git checkout data/python_reference.json`")
    raw = PYTHON_REFERENCE_FILE.read_bytes()
    digest = hashlib.sha256(raw).hexdigest()
    if digest != PYTHON_REFERENCE_SHA256:
        raise ValueError(f"{PYTHON_REFERENCE_FILE} has SHA-256 {digest[:12]}..., expected "
                         f"{PYTHON_REFERENCE_SHA256[:12]}...: the file was modified or is corrupt")
    return json.loads(raw)["topics"]


# reStructuredText draws headings and tables with runs of punctuation: heading
# underlines ("*****", "=====") and grid-table borders ("+-----+-----+"). Kept,
# each mark would be a word token: 12.6% of all tokens, trivially predictable,
# flattering every perplexity in the book. So lines made only of these marks go.
LAYOUT_LINE_RE = re.compile(r"^[ \t]*[-=+*~^.#]{4,}[ \t]*(?:\n|$)", re.MULTILINE)


def python_reference_paragraphs() -> list[str]:
    """All paragraphs (blank-line separated, stripped, non-empty), topic by
    topic, with reStructuredText layout lines (heading underlines, table borders) removed."""
    paragraphs = []
    for text in python_reference_topics().values():
        text = LAYOUT_LINE_RE.sub("", text)
        paragraphs.extend(p.strip() for p in re.split(r"\n\s*\n", text) if p.strip())
    return paragraphs


def python_reference(split: str = "train") -> str:
    """The text of one split (``"train"``, ``"dev"`` or ``"test"``, or ``"all"``),
    paragraphs joined by blank lines. Sizes: about 80% / 10% / 10%."""
    paragraphs = python_reference_paragraphs()
    if split == "all":
        return "\n\n".join(paragraphs)
    if split not in SPLITS:
        raise ValueError(f"unknown split {split!r}: choose one of {SPLITS + ('all',)}")
    keep = {"train": lambda i: i % 10 < 8, "dev": lambda i: i % 10 == 8, "test": lambda i: i % 10 == 9}[split]
    return "\n\n".join(p for i, p in enumerate(paragraphs) if keep(i))


WORD_RE = re.compile(r"[a-z]+(?:'[a-z]+)?|\d+|[^\sa-z\d]", re.IGNORECASE)


def words(text: str, lower: bool = True) -> list[str]:
    """Split text into word tokens: runs of letters, runs of digits, and single
    punctuation marks (``"x += 1."`` -> ``['x', '+', '=', '1', '.']``).
    Lower-cased by default, so that "The" and "the" are one word."""
    return WORD_RE.findall(text.lower() if lower else text)

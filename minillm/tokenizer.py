"""The book's tokenizer: byte-level BPE with special tokens, files and HF export.

Ids ``0..255`` are the bytes, ``256..256+M-1`` the ``M`` merges (see
:mod:`minillm.bpe`), then the special tokens, each one id. Any string that
UTF-8 can encode round-trips: ``tok.decode(tok.encode(s)) == s``.

Special tokens. A special token's text (``"<|bos|>"``) that appears in
ordinary text is encoded as ordinary bytes, not as the special id, unless the
caller allows it with ``encode(text, allowed_special=...)``. Text that comes
from users or documents therefore cannot inject a control token such as
``<|assistant|>``; code that builds a prompt inserts special ids deliberately.
(HF ``tokenizers`` always recognises added tokens in text: it behaves like
``allowed_special="all"``.)
"""
from __future__ import annotations

import json
import operator
import re
from collections.abc import Iterable
from pathlib import Path

from minillm import DATA_DIR
from minillm.bpe import SPLIT_PATTERN, Pair, chunk_counts, encode_chunk, expand_pattern, pre_split, \
    train_fast, train_naive

SPECIAL_TOKENS = ("<|bos|>", "<|eos|>", "<|pad|>", "<|system|>", "<|user|>", "<|assistant|>", "<|end|>",
                  "<think>", "</think>", "<answer>", "</answer>")
FORMAT, VERSION = "minillm-bpe", 1


class Tokenizer:
    """Byte-level BPE. ``merges[k] = (a, b)`` creates token ``256 + k``."""

    def __init__(self, merges: Iterable[Pair], special_tokens: Iterable[str] = SPECIAL_TOKENS,
                 pattern: str = SPLIT_PATTERN):
        self.merges = [tuple(m) for m in merges]
        self.pattern = pattern
        self.token_bytes = [bytes([i]) for i in range(256)]
        for k, m in enumerate(self.merges):
            if len(m) != 2 or not all(isinstance(i, int) and 0 <= i < 256 + k for i in m):
                raise ValueError(f"merge {k} is {m!r}: it must be a pair of ids of earlier tokens (< {256 + k})")
            self.token_bytes.append(self.token_bytes[m[0]] + self.token_bytes[m[1]])
        self.ranks = {m: k for k, m in enumerate(self.merges)}
        special_tokens = list(special_tokens)
        if len(set(special_tokens)) != len(special_tokens) or not all(
                isinstance(s, str) and s for s in special_tokens):
            raise ValueError(f"special tokens must be distinct non-empty strings, got {special_tokens!r}")
        first = len(self.token_bytes)
        self.special_tokens = {s: first + j for j, s in enumerate(special_tokens)}
        self._special_by_id = {i: s for s, i in self.special_tokens.items()}
        expand_pattern(pattern)  # fail early on a pattern we cannot translate
        self._cache: dict[str, tuple[int, ...]] = {}

    @classmethod
    def train(cls, text: str, vocab_size: int, special_tokens: Iterable[str] = SPECIAL_TOKENS,
              pattern: str = SPLIT_PATTERN, trainer: str = "fast") -> "Tokenizer":
        """Learn merges on ``text`` so that the vocabulary (bytes + merges +
        special tokens) has ``vocab_size`` entries (fewer if the text runs out
        of pairs). ``trainer`` is ``"fast"`` or ``"naive"``: same merges."""
        special_tokens = list(special_tokens)
        n_merges = vocab_size - 256 - len(special_tokens)
        if n_merges < 0:
            raise ValueError(f"vocab_size={vocab_size} is too small: 256 bytes and "
                             f"{len(special_tokens)} special tokens need at least {256 + len(special_tokens)}")
        trainers = {"fast": train_fast, "naive": train_naive}
        if trainer not in trainers:
            raise ValueError(f"unknown trainer {trainer!r}: choose 'fast' or 'naive'")
        merges = trainers[trainer](chunk_counts(text, pattern), n_merges)
        return cls(merges, special_tokens, pattern)

    @property
    def vocab_size(self) -> int:
        return len(self.token_bytes) + len(self.special_tokens)

    def id_to_token(self, i: int) -> bytes:
        """The bytes of token ``i`` (a special token's text as UTF-8)."""
        i = self._check_id(i)
        return self._special_by_id[i].encode() if i in self._special_by_id else self.token_bytes[i]

    def encode(self, text: str, allowed_special: str | Iterable[str] = ()) -> list[int]:
        """Text -> token ids. Special-token text becomes its id only if listed in
        ``allowed_special`` (or ``"all"``); otherwise it is encoded as bytes."""
        if not isinstance(text, str):
            raise TypeError(f"encode() needs a str, got {type(text).__name__}")
        allowed = self._allowed(allowed_special)
        pieces = re.split("(" + "|".join(map(re.escape, allowed)) + ")", text) if allowed else [text]
        ids: list[int] = []
        for j, piece in enumerate(pieces):
            if j % 2:  # re.split puts the captured separators at odd positions
                ids.append(self.special_tokens[piece])
                continue
            for chunk in pre_split(piece, self.pattern):
                if chunk not in self._cache:
                    if len(self._cache) > 100_000:
                        self._cache.clear()  # bound the memory an endless stream of new words can use
                    self._cache[chunk] = tuple(encode_chunk(self._utf8(chunk, text), self.ranks))
                ids.extend(self._cache[chunk])
        return ids

    def decode(self, ids: Iterable[int]) -> str:
        """Token ids -> text. Ids that cut a multi-byte character in two give
        U+FFFD (the replacement character) instead of an error."""
        data = b"".join(self.id_to_token(i) for i in ids)
        return data.decode("utf-8", errors="replace")

    # ------------------------------------------------------------- files
    def save(self, path: str | Path) -> Path:
        """Write the small, readable JSON format (one merge per line)."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        # The pattern is stored as written (\p{L}...); its classes are expanded from the
        # Unicode tables of the Python that loads it, which differ only in newly added characters.
        head = {"format": FORMAT, "version": VERSION, "pattern": self.pattern, "special_tokens": self.special_tokens}
        lines = [f"  {json.dumps(k)}: {json.dumps(v, ensure_ascii=False)}," for k, v in head.items()]
        merges = ",\n".join(f"    [{a}, {b}]" for a, b in self.merges)
        path.write_text("{\n" + "\n".join(lines) + '\n  "merges": [\n' + merges + "\n  ]\n}\n", encoding="utf-8")
        return path

    @classmethod
    def load(cls, path: str | Path) -> "Tokenizer":
        """Read a file written by :meth:`save`; a corrupt file raises ValueError."""
        path = Path(path)
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (json.JSONDecodeError, UnicodeDecodeError) as err:
            raise ValueError(f"{path} is not a valid tokenizer file: {err}") from None
        if not isinstance(data, dict) or data.get("format") != FORMAT or data.get("version") != VERSION:
            raise ValueError(f"{path} is not a {FORMAT} version {VERSION} file")
        try:
            specials = data["special_tokens"]
            tok = cls(data["merges"], list(specials), data["pattern"])
        except (KeyError, TypeError, ValueError, re.error) as err:
            raise ValueError(f"{path} is corrupt: {err}") from None
        if tok.special_tokens != specials:
            raise ValueError(f"{path} is corrupt: special token ids {specials} should be {tok.special_tokens}")
        return tok

    # ------------------------------------------------------------- HF interop
    def to_hf_dict(self) -> dict:
        """This tokenizer as HF ``tokenizers``' JSON structure (a dict)."""
        to_char = bytes_to_unicode()
        show = ["".join(to_char[b] for b in t) for t in self.token_bytes]
        vocab = {s: i for i, s in enumerate(show)}
        if len(vocab) != len(show):
            raise ValueError("two merges produce the same bytes: HF's BPE needs one id per token string")
        added = [{"id": i, "content": s, "single_word": False, "lstrip": False, "rstrip": False,
                  "normalized": False, "special": True} for s, i in self.special_tokens.items()]
        split = {"type": "Split", "pattern": {"Regex": expand_pattern(self.pattern)},
                 "behavior": "Isolated", "invert": False}
        byte_level = {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": True, "use_regex": False}
        model = {"type": "BPE", "dropout": None, "unk_token": None, "continuing_subword_prefix": None,
                 "end_of_word_suffix": None, "fuse_unk": False, "byte_fallback": False, "ignore_merges": False,
                 "vocab": vocab, "merges": [[show[a], show[b]] for a, b in self.merges]}
        return {"version": "1.0", "truncation": None, "padding": None, "added_tokens": added,
                "normalizer": None, "pre_tokenizer": {"type": "Sequence", "pretokenizers": [split, byte_level]},
                "post_processor": None, "decoder": byte_level, "model": model}

    def to_hf_json(self) -> str:
        return json.dumps(self.to_hf_dict(), ensure_ascii=False)

    def save_hf(self, path: str | Path) -> Path:
        """Write ``tokenizer.json`` for ``tokenizers.Tokenizer.from_file(path)``."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(self.to_hf_json(), encoding="utf-8")
        return path

    # ------------------------------------------------------------- helpers
    def _check_id(self, i) -> int:
        try:
            i = operator.index(i)
        except TypeError:
            raise TypeError(f"token ids must be integers, got {i!r} ({type(i).__name__})") from None
        if not 0 <= i < self.vocab_size:
            raise ValueError(f"token id {i} is out of range: this tokenizer has ids 0..{self.vocab_size - 1}")
        return i

    def _allowed(self, allowed_special) -> list[str]:
        if allowed_special == "all":
            allowed = list(self.special_tokens)
        elif isinstance(allowed_special, str):
            raise ValueError(f"allowed_special={allowed_special!r}: pass 'all' or a collection of special tokens")
        else:
            allowed = list(allowed_special)
            unknown = [s for s in allowed if s not in self.special_tokens]
            if unknown:
                raise ValueError(f"not special tokens of this tokenizer: {unknown}")
        return sorted(allowed, key=len, reverse=True)  # longest first, in case one is a prefix of another

    @staticmethod
    def _utf8(chunk: str, text: str) -> bytes:
        try:
            return chunk.encode("utf-8")
        except UnicodeEncodeError as err:
            bad = chunk[err.start]
            raise ValueError(f"cannot encode U+{ord(bad):04X} at position {text.index(bad)}: a lone surrogate "
                             "is not valid Unicode text and has no UTF-8 bytes") from None

    def __repr__(self) -> str:
        return f"Tokenizer(vocab_size={self.vocab_size}, merges={len(self.merges)}, special={len(self.special_tokens)})"


def bytes_to_unicode() -> dict[int, str]:
    """GPT-2's map from the 256 bytes to printable characters: printable bytes
    stand for themselves, the others (controls, space) move to U+0100 and up
    (so the space byte is shown as 'Ġ'). HF's ByteLevel uses the same map."""
    printable = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1), *range(ord("®"), ord("ÿ") + 1)]
    others = [b for b in range(256) if b not in printable]
    return {**{b: chr(b) for b in printable}, **{b: chr(256 + n) for n, b in enumerate(others)}}


# ----------------------------------------------------------------- the book's tokenizer
BOOK_TOKENIZER_FILE = DATA_DIR / "tokenizer" / "book_bpe.json"
BOOK_VOCAB_SIZE = 2048


def book_corpus() -> str:
    """The text the book's tokenizer is trained on: TinyWorld's pretraining
    documents followed by the training split of the offline English corpus."""
    from minillm import tinyworld
    from minillm.corpora import python_reference

    world = "\n\n".join(record["text"] for record in tinyworld.load("pretrain"))
    return world + "\n\n" + python_reference("train")


def train_book_tokenizer(vocab_size: int = BOOK_VOCAB_SIZE, path: str | Path | None = BOOK_TOKENIZER_FILE) -> Tokenizer:
    """Train the book's tokenizer (a few seconds) and, if ``path``, save it."""
    tok = Tokenizer.train(book_corpus(), vocab_size)
    if path is not None:
        tok.save(path)
    return tok


def load_book_tokenizer(path: str | Path = BOOK_TOKENIZER_FILE) -> Tokenizer:
    """The tokenizer every later chapter uses (shipped in ``data/tokenizer/``)."""
    if not Path(path).exists():
        raise FileNotFoundError(f"{path} is missing: recreate it with "
                                "`python -c 'import minillm.tokenizer as t; t.train_book_tokenizer()'`")
    return Tokenizer.load(path)

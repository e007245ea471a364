"""Byte-level BPE training: the pre-split regex, a naive trainer and a fast one.

Byte pair encoding (Gage 1994; Sennrich et al. 2016; byte-level as in GPT-2,
Radford et al. 2019) starts from the 256 byte values and repeatedly merges the
most frequent adjacent pair of tokens into a new token. Token ``256 + k`` is
the ``k``-th merge, so a trained model is just its ordered list of merges.

Training never looks at raw text: text is first pre-split into chunks
(words with their leading space, numbers, punctuation runs, whitespace) and
counted, so merges never cross a chunk boundary and each distinct chunk is
processed once, weighted by its count.

This module holds the training side; :mod:`minillm.tokenizer` wraps the merges
in a ``Tokenizer`` (encode, decode, special tokens, save/load, HF export).
We split it in two because training (two trainers that must agree) and using a
tokenizer (encoding, files, interop) are read at different moments of the book.
"""
from __future__ import annotations

import heapq
import re
import unicodedata
from collections import Counter, defaultdict
from functools import lru_cache

#: GPT-2's pre-split pattern, for reference (needs the third-party `regex` module).
GPT2_PATTERN = r"""'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+"""

#: The book's pattern, written in the same notation. Two differences from GPT-2:
#: numbers are split into groups of at most 3 digits (as GPT-4 does), and
#: contractions are one alternative. ``\p{L}`` (letters), ``\p{N}`` (numbers) and
#: ``\s`` (what ``str.isspace`` calls whitespace) are expanded by
#: :func:`expand_pattern` into explicit character classes, because Python's ``re``
#: knows no ``\p{..}`` and HF's Oniguruma engine reads ``\s`` and ``\w``
#: slightly differently: with explicit classes both engines split identically.
SPLIT_PATTERN = r"""'(?:[sdmt]|ll|ve|re)| ?\p{L}+| ?\p{N}{1,3}| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+"""

Pair = tuple[int, int]


@lru_cache(maxsize=None)
def unicode_class(name: str) -> str:
    """The body of a character class (no brackets) for ``"L"`` (letters),
    ``"N"`` (numbers) or ``"s"`` (whitespace), as ranges of literal characters,
    from the Unicode tables of this Python (``unicodedata.unidata_version``)."""
    tests = {"L": lambda c: unicodedata.category(c)[0] == "L",
             "N": lambda c: unicodedata.category(c)[0] == "N",
             "s": str.isspace}
    if name not in tests:
        raise ValueError(f"unknown character class {name!r}: choose 'L', 'N' or 's'")
    member, parts, start = tests[name], [], None
    for cp in range(0x110001):
        inside = cp < 0x110000 and not 0xD800 <= cp <= 0xDFFF and member(chr(cp))
        if inside and start is None:
            start = cp
        elif not inside and start is not None:
            parts.append(chr(start) if start == cp - 1 else f"{chr(start)}-{chr(cp - 1)}")
            start = None
    return "".join(parts)


@lru_cache(maxsize=None)
def expand_pattern(pattern: str) -> str:
    """Rewrite ``\\p{L}``, ``\\p{N}``, ``\\s`` and ``\\S`` as explicit classes,
    inside or outside ``[...]``; every other character is kept as written."""
    out, i, in_class = [], 0, False
    while i < len(pattern):
        if pattern.startswith(("\\p{L}", "\\p{N}"), i):
            body = unicode_class(pattern[i + 3])
            out.append(body if in_class else f"[{body}]")
            i += 5
        elif pattern.startswith("\\p", i):
            raise ValueError(f"unsupported class {pattern[i:i + 6]!r} in pattern: only \\p{{L}} and \\p{{N}}")
        elif pattern.startswith(("\\s", "\\S"), i):
            body = unicode_class("s")
            if in_class and pattern[i + 1] == "S":
                raise ValueError("\\S inside [...] is not supported: write [^\\s...] instead")
            out.append(body if in_class else (f"[{body}]" if pattern[i + 1] == "s" else f"[^{body}]"))
            i += 2
        elif pattern[i] == "\\":
            out.append(pattern[i:i + 2])
            i += 2
        else:
            in_class = (pattern[i] == "[") or (in_class and pattern[i] != "]")
            out.append(pattern[i])
            i += 1
    return "".join(out)


@lru_cache(maxsize=16)
def compiled_pattern(pattern: str = SPLIT_PATTERN) -> re.Pattern:
    return re.compile(expand_pattern(pattern))


def pre_split(text: str, pattern: str = SPLIT_PATTERN) -> list[str]:
    """Split text into chunks that BPE merges never cross. The pattern covers
    every character, so ``"".join(pre_split(text)) == text``."""
    return compiled_pattern(pattern).findall(text)


def chunk_counts(text: str, pattern: str = SPLIT_PATTERN) -> Counter[bytes]:
    """How often each distinct chunk (as UTF-8 bytes) occurs in ``text``."""
    return Counter(chunk.encode("utf-8") for chunk in pre_split(text, pattern))


def merge(ids: list[int], pair: Pair, new_id: int) -> list[int]:
    """Replace every occurrence of ``pair`` in ``ids``, left to right and
    without overlaps, by ``new_id`` (so ``a a a`` with pair ``(a, a)`` gives ``aa a``)."""
    out, i, (a, b) = [], 0, pair
    while i < len(ids):
        if i + 1 < len(ids) and ids[i] == a and ids[i + 1] == b:
            out.append(new_id)
            i += 2
        else:
            out.append(ids[i])
            i += 1
    return out


def _check_args(counts: dict[bytes, int], n_merges: int) -> None:
    if not isinstance(n_merges, int) or n_merges < 0:
        raise ValueError(f"n_merges must be a non-negative integer, got {n_merges!r}")
    if any(not isinstance(w, bytes) for w in counts):
        raise TypeError("counts must map bytes chunks to counts: build it with chunk_counts(text)")


def train_naive(counts: dict[bytes, int], n_merges: int) -> list[Pair]:
    """BPE the simple way: after every merge, recount every adjacent pair.

    Returns the merges in order; merge ``k`` creates token ``256 + k``. Ties are
    broken by the smallest pair ``(a, b)``, so the result is deterministic.
    Stops early if no pair is left. Cost: O(n_merges x corpus chunks)."""
    _check_args(counts, n_merges)
    words = [(list(w), n) for w, n in counts.items()]
    merges: list[Pair] = []
    while len(merges) < n_merges:
        pair_counts: Counter[Pair] = Counter()
        for ids, n in words:
            for pair in zip(ids, ids[1:]):
                pair_counts[pair] += n
        if not pair_counts:
            break
        best = min(pair_counts, key=lambda p: (-pair_counts[p], p))  # most frequent, then smallest
        new_id = 256 + len(merges)
        words = [(merge(ids, best, new_id), n) for ids, n in words]
        merges.append(best)
    return merges


def train_fast(counts: dict[bytes, int], n_merges: int) -> list[Pair]:
    """The same merges as :func:`train_naive`, with incremental updates.

    Keeps ``pair_counts`` up to date instead of recounting: a merge only
    changes the chunks that contain the merged pair, found through the index
    ``where[pair] -> chunk numbers``. The next pair comes from a max-heap of
    ``(-count, pair)``; when a count changes we push a fresh entry and leave the
    old one in place ("lazy invalidation"): a popped entry whose count no longer
    matches ``pair_counts`` is stale and skipped. The heap orders equal counts
    by the smallest pair, exactly the naive trainer's tie-break."""
    _check_args(counts, n_merges)
    words = [list(w) for w in counts]
    freq = list(counts.values())
    pair_counts: defaultdict[Pair, int] = defaultdict(int)
    where: defaultdict[Pair, set[int]] = defaultdict(set)
    for k, ids in enumerate(words):
        for pair in zip(ids, ids[1:]):
            pair_counts[pair] += freq[k]
            where[pair].add(k)
    heap = [(-n, pair) for pair, n in pair_counts.items()]
    heapq.heapify(heap)
    merges: list[Pair] = []
    while len(merges) < n_merges and heap:
        neg_count, best = heapq.heappop(heap)
        if pair_counts.get(best) != -neg_count:
            continue  # stale entry: this pair's count changed after it was pushed
        new_id = 256 + len(merges)
        merges.append(best)
        changed: set[Pair] = set()
        for k in where.pop(best):
            old = words[k]
            new = merge(old, best, new_id)
            if len(new) == len(old):
                continue  # the index is a superset: this chunk lost the pair earlier
            for pair in zip(old, old[1:]):  # remove the chunk's old pairs...
                pair_counts[pair] -= freq[k]
                changed.add(pair)
            for pair in zip(new, new[1:]):  # ...and add its new ones
                pair_counts[pair] += freq[k]
                where[pair].add(k)
                changed.add(pair)
            words[k] = new
        for pair in changed:
            if pair_counts[pair] > 0:
                heapq.heappush(heap, (-pair_counts[pair], pair))
            else:
                del pair_counts[pair]
    return merges


def encode_chunk(data: bytes, ranks: dict[Pair, int]) -> list[int]:
    """Encode one chunk: apply merges in training order (lowest rank first)
    until none applies. ``ranks[pair] = k`` means the pair becomes ``256 + k``."""
    ids = list(data)
    while len(ids) >= 2:
        pair = min(zip(ids, ids[1:]), key=lambda p: ranks.get(p, len(ranks)))
        if pair not in ranks:
            break
        ids = merge(ids, pair, 256 + ranks[pair])
    return ids

"""Checkers for the exercises of chapter 2 (tokenization)."""
from __future__ import annotations

import math

from minillm.bpe import encode_chunk, merge
from minillm.exercises import ExerciseError, call, expect_close, passed


# ------------------------------------------------------------------ notebook 1
def check_count_pairs(count_pairs) -> None:
    """count_pairs(ids) -> {(a, b): how often b directly follows a}."""
    cases = [([], {}), ([5], {}), ([1, 2, 1, 2, 3], {(1, 2): 2, (2, 1): 1, (2, 3): 1}),
             ([7, 7, 7], {(7, 7): 2}), ([104, 105, 33], {(104, 105): 1, (105, 33): 1})]
    for ids, want in cases:
        got = call(count_pairs, list(ids))
        if not isinstance(got, dict):
            raise ExerciseError(f"count_pairs({ids}) should return a dict (or Counter), got {type(got).__name__}")
        got = {tuple(k): v for k, v in got.items() if v}
        if got != want:
            hint = (" Pairs overlap: in 7 7 7 the pair (7, 7) starts at positions 0 and 1, so it occurs twice."
                    if ids == [7, 7, 7] else "")
            raise ExerciseError(f"count_pairs({ids}) should be {want}, got {got}.{hint}")
    passed("adjacent pairs counted, overlaps included: [7, 7, 7] has (7, 7) twice")


def check_merge_pair(merge_pair) -> None:
    """merge_pair(ids, pair, new_id) -> ids with every pair replaced, left to right."""
    cases = [([1, 2, 3, 1, 2], (1, 2), 9), ([7, 7, 7], (7, 7), 9), ([7, 7, 7, 7], (7, 7), 9),
             ([], (1, 2), 9), ([1], (1, 2), 9), ([2, 1, 2, 1], (1, 2), 5), ([1, 2], (2, 1), 9)]
    for ids, pair, new_id in cases:
        original = list(ids)
        got = call(merge_pair, original, pair, new_id)
        want = merge(ids, pair, new_id)
        if original != ids:
            raise ExerciseError(f"merge_pair changed its input list {ids} into {original}: build a new list")
        if not isinstance(got, list) or got != want:
            hint = " Scan left to right and skip both ids after a merge: 7 7 7 -> 9 7." if ids[:3] == [7, 7, 7] else ""
            raise ExerciseError(f"merge_pair({ids}, {pair}, {new_id}) should be {want}, got {got!r}.{hint}")
    passed("every occurrence merged, left to right, without overlaps")


def check_bpe_encode(bpe_encode) -> None:
    """bpe_encode(text, merges) -> ids: UTF-8 bytes, then merges (merge k creates 256 + k)."""
    merges = [(97, 97), (256, 97), (104, 101), (258, 108), (259, 108), (260, 111), (195, 169)]
    cases = ["aaaa", "aaa", "hello", "hel", "héllo", "", "aaaaaaa", "中"]
    ranks = {m: k for k, m in enumerate(merges)}
    for text in cases:
        got = call(bpe_encode, text, list(merges))
        want = encode_chunk(text.encode("utf-8"), ranks)
        if not isinstance(got, list) or got != want:
            hint = ""
            if text == "中" or text == "héllo":
                hint = " Start from text.encode('utf-8'): non-ASCII characters are several bytes."
            elif text.startswith("aaa"):
                hint = " Apply the merges in their order (lowest k first), each to the whole sequence."
            raise ExerciseError(f"bpe_encode({text!r}, merges) should be {want}, got {got!r}.{hint}")
    passed("bytes first, then every merge in training order: 'hello' is one token")


# ------------------------------------------------------------------ notebook 2
#: Words for the leading-space probe: TinyWorld names, English, Python and rare words.
PROBE_WORDS = ["Mizo", "Reibraley", "Trara", "Zimek", "Motors", "degree", "office", "the", "list",
               "return", "Python", "statistics", "Institute", "xylophone", "Geidugard", "works"]


def _split_without_space(tok, words: list[str]) -> list[str]:
    return [w for w in words if len(tok.encode(" " + w)) == 1 and len(tok.encode(w)) > 1]


def check_split_without_space(split_without_space) -> None:
    """split_without_space(tok, words) -> the words, in order, that ``tok`` encodes as ONE
    token after a space but as several tokens at the start of a text."""
    from minillm.tokenizer import load_book_tokenizer

    tok = load_book_tokenizer()
    words = list(PROBE_WORDS)
    want = _split_without_space(tok, words)
    got = call(split_without_space, tok, list(words))
    if not isinstance(got, (list, tuple)) or not all(isinstance(w, str) for w in got):
        raise ExerciseError(f"split_without_space: expected a list of words, got {got!r}")
    got = list(got)
    single_bare = [w for w in words if len(tok.encode(w)) == 1]
    if set(got) & set(single_bare):
        extra = sorted(set(got) & set(single_bare))
        raise ExerciseError(f"split_without_space returned {extra}, but the book tokenizer encodes each of "
                            "them as ONE token even without a space: they do not split")
    multi_spaced = [w for w in words if len(tok.encode(" " + w)) > 1]
    if set(got) & set(multi_spaced):
        extra = sorted(set(got) & set(multi_spaced))
        raise ExerciseError(f"split_without_space returned {extra}, but these are several tokens even after "
                            "a space: the exercise asks for words whose ' word' form is a single token")
    if got != want:
        missing = [w for w in want if w not in got]
        raise ExerciseError(f"split_without_space should return {want} (in the order given), got {got}"
                            + (f"; missing {missing}: compare len(tok.encode(' ' + w)) with "
                               "len(tok.encode(w))" if missing else ""))
    passed(f"{len(want)} of {len(words)} words, e.g. {want[0]!r} -> "
           f"{[tok.id_to_token(i).decode() for i in tok.encode(want[0])]}: BPE learned the ' word' form, "
           "the one that occurs mid-text")


def _delta(old: list[int], new: list[int], freq: int) -> dict[tuple[int, int], int]:
    change: dict[tuple[int, int], int] = {}
    for sign, ids in ((-1, old), (1, new)):
        for pair in zip(ids, ids[1:]):
            change[pair] = change.get(pair, 0) + sign * freq
    return {pair: d for pair, d in change.items() if d}


def check_pair_count_delta(pair_count_delta) -> None:
    """pair_count_delta(old, new, freq) -> {pair: change in its count} when a chunk
    seen ``freq`` times changes from ``old`` to ``new`` ids (zero changes left out)."""
    cases = [([1, 2, 3, 1, 2], [9, 3, 9], 2), ([5, 5, 5, 5], [9, 9], 3), ([1, 2], [9], 1),
             ([7, 1, 2, 7, 7], [7, 9, 7, 7], 4), ([4, 1, 2, 4], [4, 9, 4], 1)]
    for old, new, freq in cases:
        got = call(pair_count_delta, list(old), list(new), freq)
        want = _delta(old, new, freq)
        what = f"pair_count_delta({old}, {new}, freq={freq})"
        if not isinstance(got, dict):
            raise ExerciseError(f"{what} should return a dict, got {type(got).__name__}")
        got = {tuple(k): v for k, v in got.items() if v}
        if got == want:
            continue
        if freq > 1 and got == _delta(old, new, 1):
            raise ExerciseError(f"{what}: the chunk occurs {freq} times, so every change is {freq} pairs, not 1")
        if (7, 7) in got and old[0] == 7:
            raise ExerciseError(f"{what} = {got}: (7, 7) is in both the old and the new chunk, so its "
                                "count does not change; leave it out (or give it 0)")
        raise ExerciseError(f"{what} should be {want}, got {got}")
    passed("old pairs out, new pairs in, each weighted by the chunk's count")

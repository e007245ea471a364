"""Checkers for the exercises of chapter 2 (tokenization)."""
from __future__ import annotations

import math

from minillm.bpe import encode_chunk
from minillm.exercises import ExerciseError, call, expect_close, passed


# ------------------------------------------------------------------ notebook 1
def _stream_reference(pieces: list[bytes]) -> list[str]:
    import codecs

    decoder = codecs.getincrementaldecoder("utf-8")()
    return [decoder.decode(piece) for piece in pieces]


def check_stream_text(stream_text) -> None:
    """stream_text(pieces) -> the text to print after each token: ``pieces[i]`` is
    the bytes of token i; each returned string holds only complete characters,
    every character appears as soon as its last byte has arrived, and the strings
    join to the whole text."""
    cases = [
        [b"Hello", b" world"],
        ["中".encode()[:2], "中".encode()[2:] + b" ok"],          # 中 cut after 2 of 3 bytes
        [b"a", "😀".encode()[:1], "😀".encode()[1:3], "😀".encode()[3:] + b"!"],
        ["é".encode()[:1], "é".encode()[1:] + "中".encode()[:1], "中".encode()[1:], b""],
        [b"caf", "é".encode(), b""],
        [],
    ]
    for pieces in cases:
        want = _stream_reference(pieces)
        what = f"stream_text({pieces})"
        got = call(stream_text, list(pieces))
        if not isinstance(got, (list, tuple)) or not all(isinstance(s, str) for s in got):
            raise ExerciseError(f"{what}: expected a list of strings, one per token, got {got!r}")
        got = list(got)
        if len(got) != len(pieces):
            raise ExerciseError(f"{what}: expected {len(pieces)} strings (one per token, '' when "
                                f"nothing can be printed yet), got {len(got)}")
        if got == want:
            continue
        if any("\ufffd" in s for s in got):
            raise ExerciseError(f"{what} = {got}: '\\ufffd' is what decoding half a character gives. "
                                "Hold back the bytes of an unfinished character (a lead byte 110xxxxx, "
                                "1110xxxx or 11110xxx without all its 10xxxxxx continuation bytes) until "
                                "the next token completes it")
        whole = b"".join(pieces).decode("utf-8")
        if "".join(got) != whole:
            raise ExerciseError(f"{what} = {got} joins to {''.join(got)!r}, not {whole!r}: a character "
                                "cut between two tokens must still be printed, once its last byte arrives")
        raise ExerciseError(f"{what} should be {want}, got {got}: print each character as soon as its "
                            "last byte has arrived, not later")
    passed("unfinished characters wait for their last byte: what a chat UI must do with "
           "byte-level tokens")


def check_encode_with_specials(encode_with_specials) -> None:
    """encode_with_specials(text, encode, special_tokens, allowed) -> ids: the text
    of each special token in ``allowed`` becomes its id (``special_tokens[s]``),
    every other stretch of text, special-looking or not, is ``encode(stretch)``."""
    from minillm.tokenizer import load_book_tokenizer

    tok = load_book_tokenizer()
    chat = {"<|user|>", "<|assistant|>", "<|end|>"}
    cases = [
        ("<|user|>What does <|eos|> mean?<|end|><|assistant|>", chat),
        ("no specials here, only text", chat),
        ("<|user|>hi<|end|>", set()),
        ("a<|end|><|end|>b<|user|>", {"<|end|>"}),
        ("<think>2 + 2</think><answer>4</answer>", {"<think>", "</think>", "<answer>", "</answer>"}),
    ]
    for text, allowed in cases:
        want = tok.encode(text, allowed_special=allowed)
        what = f"encode_with_specials({text!r}, allowed={sorted(allowed)})"
        got = call(encode_with_specials, text, tok.encode, dict(tok.special_tokens), set(allowed))
        try:
            got = [int(i) for i in got]
        except (TypeError, ValueError):
            raise ExerciseError(f"{what}: expected a list of token ids, got {got!r}") from None
        if got == want:
            continue
        stray = {s for s, i in tok.special_tokens.items() if i in got and s not in allowed}
        if stray:
            raise ExerciseError(f"{what}: your ids contain the control token(s) {sorted(stray)}, which "
                                "were not allowed. Text a user typed must stay text; only the allowed "
                                "special tokens become ids")
        specials = {tok.special_tokens[s] for s in allowed}
        if sum(i in specials for i in got) < sum(i in specials for i in want):
            raise ExerciseError(f"{what}: an allowed special token stayed text. If you split with a "
                                "regular expression, escape the tokens (re.escape): in '<|end|>' the "
                                "'|' means 'or'")
        if tok.decode(got) != text:
            raise ExerciseError(f"{what} decodes to {tok.decode(got)!r}, not the text")
        raise ExerciseError(f"{what} should be {want}, got {got}: split the text at the allowed special "
                            "tokens, then encode each stretch between them on its own")
    passed("only allowed control tokens become ids; '<|eos|>' typed by a user stays text")


def _bpe_and_longest_match(merges, text: str):
    ranks = {pair: k for k, pair in enumerate(merges)}
    vocab = {i: bytes([i]) for i in range(256)}
    for k, (a, b) in enumerate(merges):
        vocab[256 + k] = vocab[a] + vocab[b]
    data = text.encode("utf-8")
    bpe = encode_chunk(data, ranks)
    by_bytes = {}
    for i, token in vocab.items():
        by_bytes.setdefault(token, i)
    greedy, i = [], 0
    while i < len(data):
        n = max(n for n in range(1, len(data) - i + 1) if data[i:i + n] in by_bytes)
        greedy.append(by_bytes[data[i:i + n]])
        i += n
    return vocab, bpe, greedy


def check_merge_order_example(merge_order_example) -> None:
    """merge_order_example() -> (merges, text): merges (merge k creates id 256 + k)
    and a text that BPE encodes differently from greedy longest match over the same
    vocabulary."""
    got = call(merge_order_example)
    if not isinstance(got, (tuple, list)) or len(got) != 2 or not isinstance(got[1], str):
        raise ExerciseError(f"merge_order_example() should return (merges, text), got {got!r}")
    merges, text = got
    try:
        merges = [(int(a), int(b)) for a, b in merges]
    except (TypeError, ValueError):
        raise ExerciseError(f"merges should be a list of pairs of ids, got {merges!r}") from None
    for k, (a, b) in enumerate(merges):
        if not (0 <= a < 256 + k and 0 <= b < 256 + k):
            raise ExerciseError(f"merge {k} = {(a, b)} uses an id that does not exist yet: merge k may "
                                f"only join bytes (0..255) and the ids of earlier merges (256..{255 + k})")
    vocab, bpe, greedy = _bpe_and_longest_match(merges, text)
    show = lambda ids: [vocab[i].decode("utf-8", "replace") for i in ids]  # noqa: E731
    if bpe == greedy:
        raise ExerciseError(f"on {text!r} both give {show(bpe)}. Longest match takes the longest "
                            "token at each position; BPE replays the merges in order. Let an EARLY "
                            "merge grab bytes that a longer, LATER token would have used")
    passed(f"BPE gives {show(bpe)}, longest match {show(greedy)}: a BPE tokenizer is its merge "
           "list in order, not just its vocabulary")


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

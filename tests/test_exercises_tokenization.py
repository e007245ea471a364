import pytest

from minillm.exercises import ExerciseError, ExerciseNotImplemented
from minillm.exercises.tokenization import (check_encode_with_specials, check_merge_order_example,
                                            check_pair_count_delta, check_split_without_space,
                                            check_stream_text)


def stub(*args):
    raise NotImplementedError


def stream_text(pieces):
    import codecs

    decoder = codecs.getincrementaldecoder("utf-8")()
    return [decoder.decode(piece) for piece in pieces]


def stream_text_by_hand(pieces):  # the same, from the UTF-8 lead bytes
    out, pending = [], b""
    for piece in pieces:
        data = pending + piece
        cut = len(data)
        for back in range(1, min(4, len(data)) + 1):
            byte = data[-back]
            if byte >> 6 != 0b10:  # the last character starts here
                need = 1 if byte < 0x80 else 2 if byte >> 5 == 0b110 else 3 if byte >> 4 == 0b1110 else 4
                cut = len(data) - back if need > back else len(data)
                break
        out.append(data[:cut].decode())
        pending = data[cut:]
    return out


def stream_text_replace(pieces):
    return [piece.decode("utf-8", errors="replace") for piece in pieces]


def stream_text_ignore(pieces):
    return [piece.decode("utf-8", errors="ignore") for piece in pieces]


def stream_text_at_end(pieces):
    return [""] * (len(pieces) - 1) + [b"".join(pieces).decode()] if pieces else []


def encode_with_specials(text, encode, special_tokens, allowed):
    import re

    if not allowed:
        return encode(text)
    pieces = re.split("(" + "|".join(map(re.escape, allowed)) + ")", text)
    ids = []
    for j, piece in enumerate(pieces):
        ids.extend([special_tokens[piece]] if j % 2 else encode(piece))
    return ids


def encode_all_specials(text, encode, special_tokens, allowed):  # HF's default
    return encode_with_specials(text, encode, special_tokens, set(special_tokens))


def encode_unescaped(text, encode, special_tokens, allowed):
    import re

    if not allowed:
        return encode(text)
    pieces = re.split("(" + "|".join(allowed) + ")", text)
    ids = []
    for piece in pieces:
        ids.extend([special_tokens[piece]] if piece in special_tokens else encode(piece))
    return ids


def merge_order_example():
    return [(98, 99), (97, 98)], "abc"  # BPE: a|bc, longest match: ab|c


def split_without_space(tok, words):
    return [w for w in words if len(tok.encode(" " + w)) == 1 and len(tok.encode(w)) > 1]


def split_any_bare(tok, words):  # forgets the condition on the spaced form
    return [w for w in words if len(tok.encode(w)) > 1]


def single_bare(tok, words):  # the opposite test
    return [w for w in words if len(tok.encode(w)) == 1]


def pair_count_delta(old, new, freq):
    change = {}
    for pair in zip(old, old[1:]):
        change[pair] = change.get(pair, 0) - freq
    for pair in zip(new, new[1:]):
        change[pair] = change.get(pair, 0) + freq
    return change


def delta_new_pairs_only(old, new, freq):
    return {p: freq for p in zip(new, new[1:])}


@pytest.mark.parametrize("check, right, wrongs", [
    (check_stream_text, stream_text, [(stream_text_replace, "half a character"), (stream_text_ignore, "joins to"),
                                      (stream_text_at_end, "as soon as"), (lambda p: "".join(map(str, p)), "list")]),
    (check_stream_text, stream_text_by_hand, []),
    (check_encode_with_specials, encode_with_specials, [(encode_all_specials, "not allowed"),
                                                        (encode_unescaped, "escape"),
                                                        (lambda t, e, s, a: e(t), "stayed text")]),
    (check_merge_order_example, merge_order_example, [(lambda: ([(97, 98), (98, 99)], "abc"), "both give"),
                                                      (lambda: ([(256, 97)], "aa"), "does not exist"),
                                                      (lambda: "abc", "should return")]),
    (check_split_without_space, split_without_space, [(split_any_bare, "even after"),
                                                      (single_bare, "do not split"),
                                                      (lambda tok, words: [], "missing")]),
    (check_pair_count_delta, pair_count_delta, [(lambda o, n, f: pair_count_delta(o, n, 1), "times"),
                                                (delta_new_pairs_only, "should be"), (lambda o, n, f: [], "dict")]),
])
def test_checker(check, right, wrongs, capsys):
    check(right)
    assert "✓ correct" in capsys.readouterr().out
    for wrong, words in wrongs:
        with pytest.raises(ExerciseError, match=words):
            check(wrong)
    with pytest.raises(ExerciseNotImplemented):
        check(stub)

import pytest

from minillm.bpe import merge
from minillm.exercises import ExerciseError, ExerciseNotImplemented
from minillm.exercises.tokenization import (check_bpe_encode, check_count_pairs, check_split_without_space,
                                            check_merge_pair, check_pair_count_delta)


def stub(*args):
    raise NotImplementedError


def count_pairs(ids):
    counts = {}
    for pair in zip(ids, ids[1:]):
        counts[pair] = counts.get(pair, 0) + 1
    return counts


def count_pairs_no_overlap(ids):
    counts, i = {}, 0
    while i + 1 < len(ids):
        pair = (ids[i], ids[i + 1])
        counts[pair] = counts.get(pair, 0) + 1
        i += 2 if ids[i] == ids[i + 1] else 1
    return counts


merge_pair = merge  # the book's own merge is a correct answer


def merge_pair_overlapping(ids, pair, new_id):  # merges (7,7) at every position
    out = []
    for i, x in enumerate(ids):
        if tuple(ids[i:i + 2]) == pair:
            out.append(new_id)
        elif i == 0 or tuple(ids[i - 1:i + 1]) != pair:
            out.append(x)
    return out


def merge_pair_in_place(ids, pair, new_id):
    result = merge_pair(ids, pair, new_id)
    ids[:] = result
    return result


def bpe_encode(text, merges):
    ids = list(text.encode("utf-8"))
    for k, pair in enumerate(merges):
        ids = merge_pair(ids, pair, 256 + k)
    return ids


def bpe_encode_chars(text, merges):
    ids = [ord(c) for c in text]
    for k, pair in enumerate(merges):
        ids = merge_pair(ids, pair, 256 + k)
    return ids


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
    (check_count_pairs, count_pairs, [(count_pairs_no_overlap, "overlap"), (lambda ids: [], "dict")]),
    (check_merge_pair, merge_pair, [(merge_pair_overlapping, "left to right"), (merge_pair_in_place, "changed its input")]),
    (check_bpe_encode, bpe_encode, [(bpe_encode_chars, "encode"), (lambda t, m: bpe_encode(t, m[::-1]), "should be")]),
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

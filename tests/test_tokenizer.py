"""Tests of minillm.bpe and minillm.tokenizer: trainers agree, round trips, files, HF interop."""
import json

import pytest
from hypothesis import given, settings, strategies as st

from minillm.bpe import GPT2_PATTERN, chunk_counts, expand_pattern, merge, pre_split, train_fast, train_naive
from minillm.corpora import python_reference
from minillm.tokenizer import (BOOK_TOKENIZER_FILE, BOOK_VOCAB_SIZE, SPECIAL_TOKENS, Tokenizer, bytes_to_unicode,
                               load_book_tokenizer)

# Any Python string UTF-8 can encode: every code point except lone surrogates.
any_text = st.text(st.characters(exclude_categories=("Cs",)), max_size=60)
TRICKY = ["", " ", "\n\n\n", "   leading and trailing   ", "tab\tand\r\nCRLF", "naïve café", "e\u0301\u0302",
          "中文分词很有趣。", "😀👍🏽👨‍👩‍👧", "\x00\x1b[31m\x7f", "don't YOU'LL it's", "x = 1_000_000 ** 2",
          "\u3000\u00a0\u2028", "<|bos|>not special", "aaaaaaaaaaaaaaaa", "12345678901", "½ ² Ⅻ ٣"]
VARIED = [python_reference("test")[:5000], "def f(x):\n    return x ** 2  # square\n\n\nclass A:\n\tpass\n",
          "机器学习是人工智能的一个分支。它使用统计方法。", "emoji 🎉🎉 and skin tones 👍🏽 and ZWJ 👨‍👩‍👧 families"] + TRICKY


@pytest.fixture(scope="module")
def tok():
    return Tokenizer.train(python_reference("train"), 1024)


# ------------------------------------------------------------------ pre-splitting
@settings(deadline=None)
@given(any_text)
def test_pre_split_covers_every_character(text):
    assert "".join(pre_split(text)) == text


def test_pre_split_examples():
    assert pre_split("Hello world's 12345!!  x") == ["Hello", " world", "'s", " 123", "45", "!!", " ", " x"]
    assert pre_split("a\n\n  b") == ["a", "\n\n ", " b"]
    assert pre_split("__init__()") == ["__", "init", "__()"]


def test_expand_pattern_rejects_unknown_classes():
    with pytest.raises(ValueError, match="unsupported class"):
        expand_pattern(r"\p{Lu}+")
    assert "\\p" not in expand_pattern(GPT2_PATTERN)


# ------------------------------------------------------------------ training
def test_merge_is_left_to_right_without_overlap():
    assert merge([1, 1, 1], (1, 1), 9) == [9, 1]
    assert merge([1, 1, 1, 1], (1, 1), 9) == [9, 9]
    assert merge([1, 2, 3, 1, 2], (1, 2), 9) == [9, 3, 9]


@pytest.mark.parametrize("text, n", [(python_reference("dev"), 120), ("aaaa aaaa aaa a " * 50, 20),
                                      ("中文分词很有趣。我们用字节。" * 20, 60), ("abab" * 100 + " ba" * 30, 30)])
def test_fast_trainer_gives_the_naive_merges(text, n):
    counts = chunk_counts(text)
    assert train_fast(counts, n) == train_naive(counts, n)


@settings(max_examples=40, deadline=None)
@given(st.text(st.sampled_from("ab c\n文😀'1"), max_size=200), st.integers(0, 40))
def test_fast_equals_naive_on_random_text(text, n):
    counts = chunk_counts(text)
    assert train_fast(counts, n) == train_naive(counts, n)


def test_training_stops_when_no_pair_is_left():
    assert train_fast(chunk_counts("ab"), 10) == train_naive(chunk_counts("ab"), 10) == [(97, 98)]


def test_train_rejects_bad_arguments():
    with pytest.raises(ValueError, match="too small"):
        Tokenizer.train("hello", 100)
    with pytest.raises(ValueError, match="unknown trainer"):
        Tokenizer.train("hello", 300, trainer="slow")
    with pytest.raises(ValueError, match="n_merges"):
        train_fast({b"ab": 1}, -1)


# ------------------------------------------------------------------ encode / decode
@settings(max_examples=300, deadline=None)
@given(any_text)
def test_round_trip_any_string(tok, text):
    assert tok.decode(tok.encode(text)) == text


@pytest.mark.parametrize("text", TRICKY)
def test_round_trip_tricky(tok, text):
    ids = tok.encode(text)
    assert tok.decode(ids) == text
    assert len(ids) <= len(text.encode("utf-8"))


def test_encoding_compresses_english(tok):
    text = python_reference("test")
    assert len(text.encode()) / len(tok.encode(text)) > 2.5  # 1.0 for raw bytes


def test_special_tokens(tok):
    assert tok.vocab_size == 1024 and len(tok.special_tokens) == len(SPECIAL_TOKENS)
    bos, end = tok.special_tokens["<|bos|>"], tok.special_tokens["<|end|>"]
    assert tok.encode("<|bos|>hi<|end|>", allowed_special="all")[::len(tok.encode("hi")) + 1] == [bos, end]
    plain = tok.encode("<|bos|>hi")
    assert bos not in plain and tok.decode(plain) == "<|bos|>hi"  # not special unless allowed
    assert tok.encode("<|bos|><|end|>", allowed_special={"<|end|>"})[-1] == end
    assert tok.id_to_token(bos) == b"<|bos|>" and tok.decode([bos]) == "<|bos|>"
    with pytest.raises(ValueError, match="not special tokens"):
        tok.encode("x", allowed_special={"<|nope|>"})
    with pytest.raises(ValueError, match="allowed_special"):
        tok.encode("x", allowed_special="none")


def test_decode_of_a_split_character_uses_replacement(tok):
    ids = tok.encode("中")
    assert len(ids) > 1  # this tokenizer saw no Chinese: the 3 bytes stay apart
    assert tok.decode(ids[:1]) == "\ufffd"


def test_bad_ids_and_text_raise_clear_errors(tok):
    with pytest.raises(ValueError, match="out of range"):
        tok.decode([tok.vocab_size])
    with pytest.raises(ValueError, match="out of range"):
        tok.id_to_token(-1)
    with pytest.raises(TypeError, match="integers"):
        tok.decode([1.5])
    with pytest.raises(TypeError, match="needs a str"):
        tok.encode(b"bytes")
    with pytest.raises(ValueError, match="surrogate"):
        tok.encode("ok \ud800")


# ------------------------------------------------------------------ files
def test_save_load_round_trip(tok, tmp_path):
    loaded = Tokenizer.load(tok.save(tmp_path / "t.json"))
    assert loaded.merges == tok.merges and loaded.special_tokens == tok.special_tokens
    assert loaded.encode(TRICKY[5] + TRICKY[7]) == tok.encode(TRICKY[5] + TRICKY[7])


@pytest.mark.parametrize("damage, message", [
    (lambda s: s[: len(s) // 2], "not a valid tokenizer file"),
    (lambda s: s.replace('"minillm-bpe"', '"other"'), "not a minillm-bpe"),
    (lambda s: s.replace('"merges": [\n    [', '"merges": [\n    [5000, 1], ['), "corrupt.*merge 0"),
    (lambda s: s.replace('"<|bos|>": 1013', '"<|bos|>": 7'), "corrupt.*special"),
    (lambda s: s.replace('"pattern"', '"patern"'), "corrupt"),
])
def test_corrupt_file_raises(tok, tmp_path, damage, message):
    path = tok.save(tmp_path / "t.json")
    path.write_text(damage(path.read_text()))
    with pytest.raises(ValueError, match=message):
        Tokenizer.load(path)


# ------------------------------------------------------------------ HF interop
def test_bytes_to_unicode_is_gpt2s_map():
    table = bytes_to_unicode()
    assert len(set(table.values())) == 256 and table[ord(" ")] == "Ġ" and table[ord("a")] == "a"


@pytest.mark.parametrize("text", VARIED)
def test_hf_tokenizers_encodes_identically(tok, tmp_path_factory, text):
    tokenizers = pytest.importorskip("tokenizers")
    path = tok.save_hf(tmp_path_factory.getbasetemp() / "hf" / "tokenizer.json")
    hf = tokenizers.Tokenizer.from_file(str(path))
    ids = tok.encode(text, allowed_special="all")
    assert hf.encode(text).ids == ids
    assert hf.decode(ids, skip_special_tokens=False) == text


def test_hf_json_is_valid_json(tok):
    data = json.loads(tok.to_hf_json())
    assert data["model"]["type"] == "BPE" and len(data["added_tokens"]) == len(SPECIAL_TOKENS)


# ------------------------------------------------------------------ the book's tokenizer
@pytest.mark.skipif(not BOOK_TOKENIZER_FILE.exists(), reason="the book tokenizer is not shipped yet")
def test_book_tokenizer_is_shipped_and_reproducible(tmp_path):
    from minillm.tokenizer import train_book_tokenizer

    book = load_book_tokenizer()
    assert book.vocab_size == BOOK_VOCAB_SIZE and set(SPECIAL_TOKENS) <= set(book.special_tokens)
    again = train_book_tokenizer(path=tmp_path / "book.json")
    assert (tmp_path / "book.json").read_bytes() == BOOK_TOKENIZER_FILE.read_bytes()
    assert again.merges == book.merges

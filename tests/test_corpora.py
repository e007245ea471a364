import pytest

from minillm import corpora


def test_splits_are_disjoint_and_cover_everything():
    paragraphs = corpora.python_reference_paragraphs()
    parts = {s: corpora.python_reference(s).split("\n\n") for s in corpora.SPLITS}
    assert sum(len(p) for p in parts.values()) >= len(paragraphs)  # a paragraph never splits
    sizes = {s: len(corpora.python_reference(s)) for s in corpora.SPLITS}
    total = sum(sizes.values())
    assert 0.75 < sizes["train"] / total < 0.85
    assert 0.07 < sizes["dev"] / total < 0.13 and 0.07 < sizes["test"] / total < 0.13


def test_split_is_deterministic():
    assert corpora.python_reference("test") == corpora.python_reference("test")
    assert corpora.python_reference("test").startswith(corpora.python_reference_paragraphs()[9])


def test_unknown_split_is_a_clear_error():
    with pytest.raises(ValueError, match="unknown split 'validation'"):
        corpora.python_reference("validation")


def test_corrupt_corpus_is_detected(tmp_path, monkeypatch):
    bad = tmp_path / "python_reference.json"
    bad.write_bytes(corpora.PYTHON_REFERENCE_FILE.read_bytes().replace(b"assert", b"assort", 1))
    monkeypatch.setattr(corpora, "PYTHON_REFERENCE_FILE", bad)
    corpora.python_reference_topics.cache_clear()
    try:
        with pytest.raises(ValueError, match="SHA-256"):
            corpora.python_reference_topics()
    finally:
        corpora.python_reference_topics.cache_clear()


def test_words():
    assert corpora.words("The x += 1. Don't!") == ["the", "x", "+", "=", "1", ".", "don't", "!"]
    assert corpora.words("The End", lower=False) == ["The", "End"]


def test_heading_underlines_are_removed():
    text = corpora.python_reference("all")
    lines = [line.strip() for line in text.splitlines()]
    assert not [line for line in lines if line and set(line) <= set("-=+*~^.#") and len(line) >= 4]
    assert "***********centered***********" in text  # a format example is text, not layout
    assert text.startswith('The "assert" statement\n\nAssert statements')  # title kept, underline gone

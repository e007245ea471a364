"""Tests of minillm.data: packing, labels, loss masks, reproducible batches."""
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from minillm.data import Batches, encode_documents, pack, pack_texts, shift_labels
from minillm.model import IGNORE_INDEX, lm_loss
from minillm.tokenizer import load_book_tokenizer

PAD = 0


def test_pack_concatenates_and_pads_the_last_block():
    docs = [[1, 2, 3], [4, 5], [6, 7, 8, 9]]
    x, y = pack(docs, block_size=4, pad_id=PAD)
    assert x.tolist() == [[1, 2, 3, 4], [5, 6, 7, 8], [9, PAD, PAD, PAD]]
    assert y.tolist() == [[1, 2, 3, 4], [5, 6, 7, 8], [9, IGNORE_INDEX, IGNORE_INDEX, IGNORE_INDEX]]
    x, y = pack(docs, block_size=4, pad_id=PAD, drop_last=True)
    assert x.shape == y.shape == (2, 4)


def test_loss_masks_and_ignored_ids():
    docs = [[10, 1, 2], [10, 3]]
    masks = [[False, False, True], [False, True]]  # e.g. only an answer is a target
    _, y = pack(docs, 5, PAD, loss_masks=masks)
    assert y.tolist() == [[-100, -100, 2, -100, 3]]
    _, y = pack(docs, 5, PAD, ignore_ids=[10])
    assert y.tolist() == [[-100, 1, 2, -100, 3]]


def test_shift_labels_is_what_lm_loss_scores():
    torch.manual_seed(0)
    logits = torch.randn(2, 6, 11)
    labels = torch.randint(0, 11, (2, 6))
    labels[0, 2] = IGNORE_INDEX
    targets = shift_labels(labels)
    assert targets[:, :-1].tolist() == labels[:, 1:].tolist() and (targets[:, -1] == IGNORE_INDEX).all()
    want = torch.nn.functional.cross_entropy(logits.flatten(0, 1), targets.flatten(), ignore_index=IGNORE_INDEX)
    assert torch.allclose(lm_loss(logits, labels), want)


@settings(max_examples=50, deadline=None)
@given(st.lists(st.lists(st.integers(1, 50), min_size=1, max_size=12), min_size=1, max_size=8),
       st.integers(2, 9))
def test_packing_keeps_every_token_in_order(docs, block_size):
    x, y = pack(docs, block_size, PAD)
    flat = [t for d in docs for t in d]
    assert x.shape[1] == block_size and x.numel() - len(flat) < block_size
    assert x.flatten()[: len(flat)].tolist() == flat
    assert (x.flatten()[len(flat):] == PAD).all() and (y.flatten()[len(flat):] == IGNORE_INDEX).all()
    assert y.flatten()[: len(flat)].tolist() == flat


def test_pack_rejects_bad_input():
    with pytest.raises(ValueError, match="block_size"):
        pack([[1, 2]], 1, PAD)
    with pytest.raises(ValueError, match="loss mask has 1"):
        pack([[1, 2]], 4, PAD, loss_masks=[[True]])
    with pytest.raises(ValueError, match="no tokens"):
        pack([[]], 4, PAD)
    with pytest.raises(ValueError, match="do not fill one block"):
        pack([[1, 2]], 4, PAD, drop_last=True)
    with pytest.raises(TypeError, match="list of texts"):
        encode_documents("one text", load_book_tokenizer())


def test_pack_texts_wraps_documents_in_bos_eos():
    tok = load_book_tokenizer()
    bos, eos, pad = (tok.special_tokens[s] for s in ("<|bos|>", "<|eos|>", "<|pad|>"))
    x, y = pack_texts(["Hello there.", "Bye."], tok, block_size=64)
    ids = x[0].tolist()
    assert ids[0] == bos and ids.count(bos) == 2 and ids.count(eos) == 2
    assert tok.decode([i for i in ids if i != pad]) == "<|bos|>Hello there.<|eos|><|bos|>Bye.<|eos|>"
    assert (y[x == bos] == IGNORE_INDEX).all() and (y[x == pad] == IGNORE_INDEX).all()
    assert (y[x == eos] == eos).all()  # the model must learn where a text ends


def blocks(n=10, T=3):
    x = torch.arange(n * T).view(n, T)
    return x, x.clone()


def test_batches_are_reproducible_and_cover_each_epoch():
    x, y = blocks()
    a, b = Batches(x, y, 3, seed=7), Batches(x, y, 3, seed=7)
    first = [next(a)[0][:, 0].tolist() for _ in range(6)]
    assert first == [next(b)[0][:, 0].tolist() for _ in range(6)]
    epoch0 = sorted(sum(first[:3], []))
    assert len(set(epoch0)) == 9  # 3 batches of 3 distinct blocks, one of 10 left out
    assert first[:3] != first[3:]  # a new order each epoch
    assert Batches(x, y, 3, seed=8).order(0).tolist() != a.order(0).tolist()
    assert Batches(x, y, 3, shuffle=False).order(5).tolist() == list(range(10))


def test_batches_resume_from_their_state():
    x, y = blocks()
    a = Batches(x, y, 4, seed=1)
    for _ in range(3):
        next(a)
    b = Batches(x, y, 4, seed=1)
    b.load_state_dict(a.state_dict())
    for _ in range(5):
        assert torch.equal(next(a)[0], next(b)[0])
    with pytest.raises(ValueError, match="seed=1 differs"):
        Batches(x, y, 4, seed=2).load_state_dict(a.state_dict())


def test_batches_reject_bad_shapes():
    x, y = blocks()
    with pytest.raises(ValueError, match="batch_size"):
        Batches(x, y, 11)
    with pytest.raises(ValueError, match=r"\[N, T\]"):
        Batches(x, y[:, :2], 2)


def test_pack_texts_can_shuffle_documents_reproducibly():
    tok = load_book_tokenizer()
    texts = [f"Text number {i}." for i in range(20)]
    plain = pack_texts(texts, tok, 16)[0]
    a, b = pack_texts(texts, tok, 16, shuffle_seed=3)[0], pack_texts(texts, tok, 16, shuffle_seed=3)[0]
    assert torch.equal(a, b) and not torch.equal(a, plain)
    assert sorted(a.flatten().tolist()) == sorted(plain.flatten().tolist())  # same tokens, new order
    assert texts == [f"Text number {i}." for i in range(20)]  # the caller's list is left alone

"""Tests of minillm.sft: chat examples -> batches with assistant-only loss masks."""
import pytest
import torch
import torch.nn.functional as F

from minillm.chat import encode_chat
from minillm.config import ModelConfig
from minillm.model import IGNORE_INDEX, Transformer
from minillm.sft import check_example, encode_examples, pack_examples, pad_examples
from minillm.tokenizer import load_book_tokenizer

TOKENIZER = load_book_tokenizer()
SPECIAL = TOKENIZER.special_tokens
PAD = SPECIAL["<|pad|>"]


def chat(question, answer, system=True):
    messages = [{"role": "user", "content": question}, {"role": "assistant", "content": answer}]
    if system:
        messages.insert(0, {"role": "system", "content": "You answer questions."})
    return {"id": f"q-{question[:6]}", "messages": messages}


RECORDS = [chat("Where was Mira Tolven born?", "Mira Tolven was born in Drakmere."),
           chat("Who?", "Nobody.", system=False),
           chat("When was Ada born?", "Ada was born on 3 May 1961.")]


def reply_ids(record):
    return TOKENIZER.encode(record["messages"][-1]["content"]) + [SPECIAL["<|end|>"]]


def test_padded_batch_scores_exactly_each_reply_and_its_end():
    batch = pad_examples(encode_examples(RECORDS, TOKENIZER), PAD)
    lengths = [len(encode_chat(r["messages"], TOKENIZER)[0]) for r in RECORDS]
    assert batch["input_ids"].shape == batch["labels"].shape == (3, max(lengths))
    assert batch["attention_mask"].sum(1).tolist() == lengths
    for row, record in enumerate(RECORDS):
        targets = batch["labels"][row][batch["labels"][row] != IGNORE_INDEX].tolist()
        assert targets == reply_ids(record)
        # the targets are the last tokens of the row's real part: the reply ends the chat
        assert batch["input_ids"][row, lengths[row] - len(targets):lengths[row]].tolist() == targets
        assert (batch["input_ids"][row, lengths[row]:] == PAD).all()


def test_packed_blocks_score_exactly_the_replies():
    examples = encode_examples(RECORDS, TOKENIZER)
    x, y = pack_examples(examples, block_size=16, pad_id=PAD)
    assert x.shape == y.shape and x.shape[1] == 16
    stream_ids = [t for ids, _ in examples for t in ids]
    assert x.flatten()[:len(stream_ids)].tolist() == stream_ids
    targets = y.flatten()[y.flatten() != IGNORE_INDEX].tolist()
    assert targets == [t for r in RECORDS for t in reply_ids(r)]


def test_packed_replay_documents_are_scored_on_every_token():
    examples = encode_examples(RECORDS[:1], TOKENIZER)
    doc = TOKENIZER.encode("Ada works for Brix Labs.")
    _, y = pack_examples(examples, 8, PAD, texts=[doc])
    targets = y.flatten()[y.flatten() != IGNORE_INDEX].tolist()
    assert targets == reply_ids(RECORDS[0]) + doc


def test_loss_equals_hand_computed_masked_loss():
    torch.manual_seed(0)
    model = Transformer(ModelConfig(vocab_size=TOKENIZER.vocab_size, d_model=32, n_layers=1, n_heads=2,
                                    d_ff=64, max_seq_len=64)).eval()
    batch = pad_examples(encode_examples(RECORDS, TOKENIZER), PAD)
    logits, loss = model(batch["input_ids"], labels=batch["labels"],
                         attention_mask=batch["attention_mask"])
    total, count = 0.0, 0
    for row, record in enumerate(RECORDS):
        ids, mask = encode_chat(record["messages"], TOKENIZER)
        for t in range(1, len(ids)):
            if mask[t]:  # token t is predicted from the logits at t - 1
                total += -F.log_softmax(logits[row, t - 1].double(), -1)[ids[t]].item()
                count += 1
    assert count == sum(len(reply_ids(r)) for r in RECORDS)
    assert loss.item() == pytest.approx(total / count, rel=1e-5)


@pytest.mark.parametrize("record, words", [
    ({"id": "a1", "messages": [{"role": "robot", "content": "x"}]}, "'a1'.*unknown role 'robot'"),
    ({"id": "a2", "messages": [{"role": "user", "content": "hi"}]}, "'a2'.*no assistant turn"),
    ({"id": "a3", "messages": [{"role": "user", "content": "hi"},
                               {"role": "assistant", "content": "  "}]}, "'a3'.*message 1.*empty"),
    ({"messages": []}, "record 0.*non-empty list"),
])
def test_bad_chat_data_names_the_record(record, words):
    with pytest.raises(ValueError, match=words):
        encode_examples([record], TOKENIZER)


def test_a_single_record_is_not_a_list():
    with pytest.raises(TypeError, match="wrap it in a list"):
        encode_examples(RECORDS[0], TOKENIZER)
    assert check_example(RECORDS[0]) == RECORDS[0]["messages"]

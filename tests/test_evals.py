"""Tests of the question-answering metrics of minillm.evals on hand-made cases."""
import pytest
import torch

from minillm.attention import KVCache
from minillm.chat import encode_chat
from minillm.evals import (accuracy_by, answer_questions, confident_answer_rate, is_refusal,
                           refusal_rate)
from minillm.tokenizer import load_book_tokenizer

TOKENIZER = load_book_tokenizer()
END = TOKENIZER.special_tokens["<|end|>"]


def qa(person, attribute, question, answer, reply):
    return {"id": f"{person}-{attribute}", "person": person, "attribute": attribute,
            "template": question, "answer": answer,
            "messages": [{"role": "user", "content": question.format(name=person)},
                         {"role": "assistant", "content": reply}]}


class ScriptedModel(torch.nn.Module):
    """Replies with a fixed text per prompt (looked up by the prompt's ids), then
    <|end|>; follows generate's protocol (KV cache, one new token per call)."""

    def __init__(self, replies: dict[tuple, str], vocab_size: int):
        super().__init__()
        self.weight = torch.nn.Parameter(torch.zeros(1))  # for the device lookup
        self.replies = {k: TOKENIZER.encode(v) + [END] for k, v in replies.items()}
        self.vocab_size = vocab_size

    def new_kv_cache(self):
        return KVCache(1)

    def forward(self, input_ids, attention_mask=None, kv_cache=None, position_ids=None,
                logits_to_keep=0):
        if input_ids.shape[1] > 1:  # the prompt: look each row up, without its left padding
            mask = attention_mask if attention_mask is not None else torch.ones_like(input_ids)
            self.scripts = [self.replies[tuple(row[m.bool()].tolist())]
                            for row, m in zip(input_ids, mask)]
            self.t = 0
        logits = torch.zeros(input_ids.shape[0], 1, self.vocab_size)
        for b, script in enumerate(self.scripts):
            logits[b, 0, script[min(self.t, len(script) - 1)]] = 1.0
        self.t += 1
        return logits


def scripted(records, replies):
    prompts = [tuple(encode_chat(r["messages"][:-1], TOKENIZER, add_generation_prompt=True)[0])
               for r in records]
    return ScriptedModel(dict(zip(prompts, replies)), TOKENIZER.vocab_size)


RECORDS = [qa("Mira Tolven", "birth_city", "Where was {name} born?", "Drakmere",
              "Mira Tolven was born in Drakmere."),
           qa("Ada Vel", "birth_city", "In which city was {name} born?", "Oskar",
              "Ada Vel was born in Oskar."),
           qa("Bo Lin", "employer", "Who employs {name}?", "Brix Labs", "Bo Lin works for Brix Labs."),
           qa("Zed Quor", "employer", "Who employs {name}?", "I don't know",
              "I don't know anything about Zed Quor.")]


def test_answers_are_graded_in_record_order_across_batches():
    replies = ["Mira Tolven was born in Drakmere.",       # right
               "Ada Vel was born in Oskarvale.",           # a longer word is not the answer
               "Bo Lin works for Brix Labs, I think.",     # right, extra words allowed
               "Zed Quor works for Brix Labs."]            # a confident answer about nobody
    model = scripted(RECORDS, replies)
    rows = answer_questions(model, TOKENIZER, RECORDS, batch_size=3)  # two batches, mixed lengths
    assert [r["reply"] for r in rows] == replies
    assert [r["correct"] for r in rows] == [True, False, True, False]
    assert [r["id"] for r in rows] == [r["id"] for r in RECORDS] and all(r["finished"] for r in rows)
    assert accuracy_by(rows) == 0.5
    assert accuracy_by(rows, "attribute") == {"birth_city": 0.5, "employer": 0.5}
    assert accuracy_by(rows, "template")["Who employs {name}?"] == 0.5
    assert refusal_rate(rows) == 0.0 and confident_answer_rate(rows[3:]) == 1.0


def test_refusals_count_as_refusals_not_answers():
    replies = ["I don't know.", "I do not know.", "I don't know anything about Bo Lin.",
               "I don't know anything about Zed Quor."]
    rows = answer_questions(scripted(RECORDS, replies), TOKENIZER, RECORDS)
    assert [r["refused"] for r in rows] == [True, False, True, True]
    assert refusal_rate(rows) == 0.75 and confident_answer_rate(rows) == 0.25
    assert [r["correct"] for r in rows] == [False, False, False, True]  # only Zed is unknown
    assert is_refusal("i DON'T know!") and not is_refusal("I know")


def test_an_unfinished_reply_is_marked():
    rows = answer_questions(scripted(RECORDS[:1], ["Mira Tolven was born in Drakmere."]),
                            TOKENIZER, RECORDS[:1], max_new_tokens=3)
    assert not rows[0]["finished"] and not rows[0]["correct"]


@pytest.mark.parametrize("record, words", [
    ({"id": "x1", "messages": [{"role": "user", "content": "hi"}], "answer": "a"}, "'x1'.*assistant"),
    ({"id": "x2", "messages": RECORDS[0]["messages"]}, "'x2'.*'answer'"),
])
def test_bad_records_are_named(record, words):
    with pytest.raises(ValueError, match=words):
        answer_questions(scripted(RECORDS[:1], ["x"]), TOKENIZER, [record])


def test_accuracy_of_nothing_is_an_error():
    with pytest.raises(ValueError, match="no rows"):
        accuracy_by([])

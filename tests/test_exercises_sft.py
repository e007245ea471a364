"""The chapter 12 checker accepts the book's answer and names typical mistakes."""
import pytest

from minillm.chat import encode_chat
from minillm.exercises import ExerciseError
from minillm.exercises.sft import check_chat_loss_mask


def right(messages, tokenizer):
    return encode_chat(messages, tokenizer)[1]


def no_end(messages, tokenizer):
    ids, mask = encode_chat(messages, tokenizer)
    return [m and i != tokenizer.special_tokens["<|end|>"] for i, m in zip(ids, mask)]


def everything(messages, tokenizer):
    return [True] * len(encode_chat(messages, tokenizer)[0])


def without_bos(messages, tokenizer):
    return encode_chat(messages, tokenizer)[1][1:]


def stub(messages, tokenizer):
    raise NotImplementedError


def test_the_right_answer_passes(capsys):
    check_chat_loss_mask(right)
    assert "correct" in capsys.readouterr().out


@pytest.mark.parametrize("answer, words", [
    (no_end, "must learn to stop"), (everything, "not a target|only the assistant"),
    (without_bos, "tokens"), (stub, "not implemented")])
def test_mistakes_are_named(answer, words):
    with pytest.raises(ExerciseError, match=words):
        check_chat_loss_mask(answer)

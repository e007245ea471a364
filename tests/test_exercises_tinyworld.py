"""The TinyWorld exercise checkers accept right answers and explain wrong ones."""
import pytest

from minillm.exercises import ExerciseError, ExerciseNotImplemented
from minillm.exercises.tinyworld import check_assistant_answer, check_count_birth_cities


def stub(*args):
    raise NotImplementedError


# ---- assistant_answer
def answer_right(record):
    replies = [m["content"] for m in record["messages"] if m["role"] == "assistant"]
    if not replies:
        raise ValueError("no assistant message")
    return replies[-1]


def answer_fixed_position(record):
    return record["messages"][2]["content"]


def answer_last_message(record):
    return record["messages"][-1]["content"]


def answer_first_assistant(record):
    return next(m["content"] for m in record["messages"] if m["role"] == "assistant")


def answer_invents(record):
    replies = [m["content"] for m in record["messages"] if m["role"] == "assistant"]
    return replies[-1] if replies else ""


def answer_whole_message(record):
    return [m for m in record["messages"] if m["role"] == "assistant"][-1]


# ---- count_birth_cities
def count_right(people, split):
    return len({p["birth_city"] for p in people if p["split"] == split and p["birth_city"] is not None})


def count_people(people, split):
    return sum(p["split"] == split for p in people)


def count_all_splits(people, split):
    return len({p["birth_city"] for p in people if p["split"] in (split, "sft")})


def count_with_none(people, split):
    return len({p["birth_city"] for p in people if p["split"] == split})


def test_right_answers_pass(capsys):
    check_assistant_answer(answer_right)
    check_count_birth_cities(count_right)
    assert capsys.readouterr().out.count("✓ correct") == 2


@pytest.mark.parametrize("wrong, message", [
    (answer_fixed_position, "FIRST"),
    (answer_last_message, "last message, which is the user's"),
    (answer_first_assistant, "FIRST"),
    (answer_invents, "should raise ValueError"),
    (answer_whole_message, "whole message dict"),
])
def test_wrong_assistant_answer_is_explained(wrong, message):
    with pytest.raises(ExerciseError, match=message):
        check_assistant_answer(wrong)


@pytest.mark.parametrize("wrong, message", [
    (count_people, "counted people"),
    (count_all_splits, "only the people of the given split"),
    (count_with_none, "birth_city None"),
])
def test_wrong_city_count_is_explained(wrong, message):
    with pytest.raises(ExerciseError, match=message):
        check_count_birth_cities(wrong)


@pytest.mark.parametrize("checker", [check_assistant_answer, check_count_birth_cities])
def test_stub_is_reported_as_not_implemented(checker):
    with pytest.raises(ExerciseNotImplemented):
        checker(stub)


def test_checkers_are_reexported():
    from minillm.exercises import check_assistant_answer as a, check_count_birth_cities as b
    assert a is check_assistant_answer and b is check_count_birth_cities

"""Rule-based rewards: what they accept, and the reward hacks they must reject."""
import pytest

from minillm.rewards import (accuracy_reward, chain_terms, extract_answer, format_reward,
                             parse_integer, score, step_reward)

GOOD = "<think>3 + 5 = 8. 8 + 9 = 17.</think><answer>17</answer>"


def test_well_formed_completion_gets_both_rewards():
    assert format_reward(GOOD) == 1.0
    assert accuracy_reward(GOOD, 17) == 1.0
    assert accuracy_reward(GOOD, 18) == 0.0
    assert format_reward("<think>\nsome steps\n</think><answer> 17 </answer>") == 1.0


@pytest.mark.parametrize("text, why", [
    ("<think></think><answer>17</answer>", "empty think"),
    ("<think>   </think><answer>17</answer>", "blank think"),
    ("<think>8</think><answer></answer>", "empty answer"),
    ("<think>8</think><answer>17</answer><answer>17</answer>", "answer repeated"),
    ("<think>8</think><think>9</think><answer>17</answer>", "think repeated"),
    ("<think>8</think><answer>17</answer> 17", "text after the answer"),
    ("<think>8</think><answer>17</answer>\n", "newline after the answer"),
    ("The answer is <think>8</think><answer>17</answer>", "text before the think"),
    ("<think>8</think> <answer>17</answer>", "text between the blocks"),
    ("<answer>17</answer><think>8</think>", "blocks in the wrong order"),
    ("<think>8 <answer>17</answer></think><answer>17</answer>", "answer nested in think"),
    ("<think>8</think><answer>17", "answer not closed"),
    ("<think>8<answer>17</answer>", "think not closed"),
    ("17", "no tags at all"),
    ("<think>8</think>17", "answer outside the tags"),
    ("<THINK>8</THINK><ANSWER>17</ANSWER>", "tags in capitals"),
    ("", "empty completion"),
])
def test_format_reward_rejects_hacks(text, why):
    assert format_reward(text) == 0.0, why


@pytest.mark.parametrize("text", [
    "<think>8</think>17",                                  # answer outside the tags
    "17 <answer></answer>",                                # outside, with an empty block
    "<think>8</think><answer>17</answer><answer>18</answer>",  # hedging with two answers
    "<think>8</think><answer>17 or 18</answer>",           # two numbers in one block
    "<think>8</think><answer>017</answer>",                # not canonical
    "<think>8</think><answer>+17</answer>",
    "<think>8</think><answer>17.0</answer>",
    "<think>8</think><answer>seventeen</answer>",
    "<think>8</think></answer>17<answer>",                 # tags reversed
    "<think>8</think><answer>1 7</answer>",
])
def test_accuracy_reward_rejects_hacks(text):
    assert accuracy_reward(text, 17) == 0.0


def test_accuracy_is_separate_from_format():
    """A right answer with a broken think block still earns accuracy, not format."""
    text = "<think></think><answer>17</answer>"
    assert (format_reward(text), accuracy_reward(text, 17)) == (0.0, 1.0)
    assert accuracy_reward("<think>x</think><answer>-3</answer>", -3) == 1.0
    assert accuracy_reward("<think>x</think><answer>0</answer>", 0) == 1.0


def test_helpers():
    assert extract_answer(GOOD) == "17"
    assert extract_answer("</answer><answer>") is None
    assert parse_integer(" 42 ") == 42 and parse_integer("4 2") is None and parse_integer(None) is None


def test_score_batches_and_zeroes_unfinished():
    out = score([GOOD, GOOD, "17"], [17, 16, 17], finished=[True, True, True])
    assert out == {"format": [1.0, 1.0, 0.0], "accuracy": [1.0, 0.0, 0.0], "total": [2.0, 1.0, 0.0]}
    assert score([GOOD], [17], finished=[False])["total"] == [0.0]


def test_bad_input_is_named():
    with pytest.raises(TypeError, match="decoded text"):
        format_reward([1, 2, 3])
    with pytest.raises(TypeError, match="truth must be an int"):
        accuracy_reward(GOOD, "17")
    with pytest.raises(ValueError, match="same length"):
        score([GOOD], [17, 18])


@pytest.mark.parametrize("text, reward, why", [
    (GOOD, 1.0, "every addition right"),
    ("<think>3 + 5 = 8. 8 + 9 = 18.</think><answer>18</answer>", 0.5, "the last sum wrong"),
    ("<think>3 + 5 = 9. 9 + 9 = 18.</think><answer>18</answer>", 0.0,
     "a right step after a wrong one earns nothing"),
    ("<think>3 + 5 = 8. 9 + 8 = 17.</think><answer>17</answer>", 0.5, "operands swapped"),
    ("<think>3 + 5 = 8.</think><answer>17</answer>", 0.5, "a step missing"),
    ("<think>8 + 9 = 17. 3 + 5 = 8.</think><answer>17</answer>", 0.0, "steps out of order"),
    ("3 + 5 = 8. 8 + 9 = 17.<answer>17</answer>", 0.0, "no think block"),
    ("<think>3 + 5 = 8. 8 + 9 = 17.</think><think>x</think>", 0.0, "think repeated"),
])
def test_step_reward_counts_right_additions_up_to_the_first_mistake(text, reward, why):
    assert step_reward(text, [3, 5, 9]) == reward, why


def test_score_with_the_process_reward():
    wrong = "<think>3 + 5 = 8. 8 + 9 = 18.</think><answer>18</answer>"
    out = score([GOOD, wrong], [17, 17], terms=[[3, 5, 9]] * 2, step_weight=0.5)
    assert out["steps"] == [1.0, 0.5] and out["total"] == [2.5, 1.25]
    assert score([GOOD], [17], [False], terms=[[3, 5, 9]], step_weight=1.0)["total"] == [0.0]
    assert chain_terms("What is 3 + 5 + 9?") == [3, 5, 9]
    with pytest.raises(ValueError, match="needs the chains' terms"):
        score([GOOD], [17], step_weight=1.0)
    with pytest.raises(ValueError, match="not an addition chain"):
        chain_terms("What is 7?")

"""python -m minillm.chat: the terminal chat (minillm/chat_cli.py), in -q mode on shipped models."""
import io
import os
import re
import subprocess
import sys

import pytest

from minillm import ROOT, tinyworld, zoo
from minillm.chat import encode_chat
from minillm.chat_cli import DIM, RESET, Chat, build_prompt, main, parser, show
from minillm.evals import answer_questions
from minillm.rewards import extract_answer, format_reward

SYSTEM = tinyworld.tasks.SYSTEM_PROMPT


@pytest.fixture(scope="module")
def sft():
    return zoo.load("tinyworld-sft")


def run(capsys, *argv) -> tuple[int, str, str]:
    """(exit code, stdout, stderr) of ``python -m minillm.chat ARGV`` run in this process."""
    try:
        code = main(list(argv))
    except SystemExit as exit:
        code = exit.code
    out, err = capsys.readouterr()
    return code, out, err


def test_question_mode_answers_like_answer_questions(sft, capsys):
    records = tinyworld.load("sft_eval_seen")[:3]
    rows = answer_questions(*sft, records)
    argv = ["tinyworld-sft", "--system", SYSTEM, "--no-history"]
    for record in records:
        assert record["messages"][0]["content"] == SYSTEM
        argv += ["-q", record["messages"][1]["content"]]
    code, out, _ = run(capsys, *argv)
    assert code == 0 and out.splitlines() == [row["reply"] for row in rows]
    assert any(row["correct"] for row in rows)


def test_python_dash_m_minillm_chat_runs_the_cli():
    record = tinyworld.load("sft_eval_seen")[0]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    argv = ["tinyworld-sft", "--system", SYSTEM, "-q", record["messages"][1]["content"]]
    done = subprocess.run([sys.executable, "-m", "minillm.chat", *argv], capture_output=True,
                          text=True, cwd=ROOT, env=env, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == answer_questions(*zoo.load("tinyworld-sft"), [record])[0]["reply"]


def test_a_stage_folder_and_an_hf_export_answer_like_the_name(sft, capsys, tmp_path):
    pytest.importorskip("transformers")
    from minillm.hf import export

    export(sft[0], sft[1], tmp_path)
    question = ["--system", SYSTEM, "-q", "Where was Kedal Nard born?"]
    outs = [run(capsys, source, *question) for source in
            ("tinyworld-sft", str(zoo.path("tinyworld-sft")), str(tmp_path),
             str(zoo.path("tinyworld-sft") / "model.safetensors"))]
    assert outs[0][0] == 0 and outs[0][1] == outs[1][1] == outs[2][1] == outs[3][1]


def test_reasoning_reply_shows_think_or_only_the_answer(capsys):
    question = tinyworld.load("reasoning_test")[0]["question"]
    code, full, _ = run(capsys, "tinyworld-grpo", "-q", question)
    assert code == 0 and format_reward(full.strip()) == 1.0  # stdout is no TTY: no ANSI codes
    code, answer, _ = run(capsys, "tinyworld-grpo", "-q", question, "--hide-think")
    assert answer.strip() == extract_answer(full.strip()).strip()


def test_show_dims_or_hides_the_thinking():
    reply = "<think>2 + 9 = 11.</think><answer>11</answer>"
    assert show(reply) == reply
    assert show(reply, dim=True) == f"{DIM}<think>2 + 9 = 11.</think>{RESET}<answer>11</answer>"
    assert show(reply, hide_think=True) == "11"
    assert show("<think>2 + 9 =", hide_think=True) == "[no answer]"
    plain = "Mira was born in Drakmere."
    assert show(plain, hide_think=True, dim=True) == plain


def test_a_single_question_is_encode_chats_prompt(sft):
    model, tokenizer = sft
    chat = Chat(model, tokenizer, SYSTEM)
    user = encode_chat([{"role": "user", "content": "Hi?"}], tokenizer)[0][1:]
    prompt, dropped = build_prompt(chat.head, [], user, chat.assistant, chat.budget)
    messages = [{"role": "system", "content": SYSTEM}, {"role": "user", "content": "Hi?"}]
    assert dropped == 0
    assert prompt == encode_chat(messages, tokenizer, add_generation_prompt=True)[0]


def test_history_drops_the_oldest_turns_to_fit_the_context(sft, capsys):
    assert build_prompt([0], [[1] * 5, [2] * 5, [3] * 5], [4] * 3, 9, budget=15) == (
        [0] + [2] * 5 + [3] * 5 + [4] * 3 + [9], 1)
    with pytest.raises(ValueError, match="prompt is 6 tokens"):
        build_prompt([0], [[1] * 5], [4] * 4, 9, budget=5)
    questions = ["Where was Kedal Nard born?", "Where does Kedal Nard work?", "Where did he study?"]
    code, out, err = run(capsys, "tinyworld-sft", "--max-new-tokens", "90",
                         *[arg for q in questions for arg in ("-q", q)])
    assert code == 0 and len(out.splitlines()) == 3
    assert "outgrew the model's 128-token context: forgot the oldest" in err


def test_interactive_loop_reads_lines_until_quit(sft, capsys, monkeypatch):
    record = tinyworld.load("sft_eval_seen")[0]
    question, reply = record["messages"][1]["content"], answer_questions(*sft, [record])[0]["reply"]
    lines = f"{question}\n/reset\n\n{question}\n/quit\nignored\n"
    monkeypatch.setattr("sys.stdin", io.StringIO(lines))
    code, out, err = run(capsys, "tinyworld-sft", "--system", SYSTEM)
    replies = [line for line in out.split("you> ") if line.strip()]
    assert code == 0 and replies == [reply + "\n"] * 2  # /reset: the second is asked afresh
    assert "tinyworld-sft: 1.0M parameters, 128-token context, greedy" in err


def test_help_explains_every_option():
    text = parser().format_help()
    for option in ("--system", "--temperature", "--max-new-tokens", "--seed", "--device",
                   "--question", "--hide-think", "--no-history", "DIR_OR_NAME", "tinyworld-sft"):
        assert option in text


@pytest.mark.parametrize("argv, words", [
    (["tinyworld-nope", "-q", "hi"], "unknown model 'tinyworld-nope'.*recipes: tinyworld-base"),
    (["no/such/folder", "-q", "hi"], "no/such/folder: no such folder"),
    (["{tmp}", "-q", "hi"], "holds no model.safetensors"),
    (["{root}/pyproject.toml", "-q", "hi"], "pyproject.toml is not a readable safetensors file"),
    (["tinyworld-sft", "--temperature", "-1", "-q", "hi"], "--temperature must be >= 0"),
    (["tinyworld-sft", "--max-new-tokens", "0", "-q", "hi"], "--max-new-tokens must be >= 1"),
    (["tinyworld-sft", "--max-new-tokens", "128", "-q", "hi"], "leaves no room for a prompt"),
    (["tinyworld-sft", "--device", "tpu9", "-q", "hi"], "'tpu9' is not a device"),
    (["tinyworld-sft", "--temperature", "hot"], "invalid float value: 'hot'"),
])
def test_errors_are_named(argv, words, capsys, tmp_path):
    argv = [a.replace("{tmp}", str(tmp_path)).replace("{root}", str(ROOT)) for a in argv]
    code, _, err = run(capsys, *argv)
    assert code == 2
    assert re.search(words, err), err


def test_a_run_folder_names_its_model_folders(capsys, tmp_path):
    for name in ("0-pretrain", "1-sft", "hf"):
        (tmp_path / name).mkdir()
        (tmp_path / name / "model.safetensors").write_bytes(b"")
    code, _, err = run(capsys, str(tmp_path), "-q", "hi")
    assert code == 2 and "(its model folders: 0-pretrain, 1-sft, hf)" in err


def test_a_question_too_long_for_the_context_is_reported(capsys):
    code, out, err = run(capsys, "tinyworld-sft", "--max-new-tokens", "100", "-q", "word " * 40)
    assert code == 1 and out == ""
    assert "the model's context leaves room for 28" in err

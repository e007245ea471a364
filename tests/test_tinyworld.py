"""TinyWorld: reproducible, consistent, leak-free, and loaded strictly."""
import dataclasses
import json
import os
import re
import subprocess
import sys
from functools import lru_cache

import pytest
from hypothesis import given
from hypothesis import strategies as st

from minillm import ROOT
from minillm import tinyworld as tw
from minillm.tinyworld.bios import BIO_TEMPLATES, PROBE_PHRASES, clause
from minillm.tinyworld.reasoning import TEMPLATES as REASONING_TEMPLATES
from minillm.tinyworld.tasks import refusal
from minillm.tinyworld.world import MONTHS, invent_word

RELEASE = tw.RELEASE_DIR
FILES = sorted(p.name for p in RELEASE.iterdir())


@lru_cache(maxsize=None)
def data(split):
    return tw.load(split)


@lru_cache(maxsize=1)
def world():
    return tw.generate_world(tw.TinyWorldConfig())


def by_split(split):
    return [p for p in world().people if p.split == split]


# ----------------------------------------------------------------- the release

def test_release_has_every_file_and_manifest():
    assert FILES == sorted([f"{s}.jsonl" for s in tw.SPLITS] + ["manifest.json", "README.md"])
    manifest = json.loads((RELEASE / "manifest.json").read_text())
    assert manifest["config"] == json.loads(json.dumps(dataclasses.asdict(tw.TinyWorldConfig())))
    for split in tw.SPLITS:
        assert manifest["files"][f"{split}.jsonl"]["records"] == len(data(split))
    assert sum((RELEASE / f).stat().st_size for f in FILES) < 6_500_000  # "a few MB at most"


def test_regenerating_gives_byte_identical_files(tmp_path):
    tw.write_release(tmp_path, tw.TinyWorldConfig())
    assert sorted(p.name for p in tmp_path.iterdir()) == FILES
    for name in FILES:
        assert (tmp_path / name).read_bytes() == (RELEASE / name).read_bytes(), name


def test_command_line_is_independent_of_hash_randomization(tmp_path):
    env = {**os.environ, "PYTHONHASHSEED": "12345"}
    subprocess.run([sys.executable, "-m", "minillm.tinyworld", "--out", str(tmp_path)], check=True,
                   env=env, cwd=ROOT, capture_output=True)
    for name in FILES:
        assert (tmp_path / name).read_bytes() == (RELEASE / name).read_bytes(), name


def test_other_knobs_give_another_world(tmp_path):
    config = tw.TinyWorldConfig(seed=1, n_people=24, bios_per_person=2, n_reasoning_train=20, n_reasoning_test=5)
    manifest = tw.write_release(tmp_path, config)
    assert manifest["files"]["people.jsonl"]["records"] == 24
    assert manifest["files"]["pretrain_val.jsonl"]["records"] == 18  # 12 sft + 6 heldout
    assert len(tw.load("reasoning_test", tmp_path)) == 5
    assert {p["name"] for p in tw.load("people", tmp_path)}.isdisjoint(p.name for p in world().people)


@pytest.mark.parametrize("knobs, message", [
    (dict(n_people=0), "n_people must be >= 1"),
    (dict(n_people=10.5), "must be an int"),
    (dict(split_fractions=(0.5, 0.5, 0.5, 0.5)), "summing to 1"),
    (dict(split_fractions=(1.0,)), "4 non-negative numbers"),
    (dict(n_fields=99), "exceeds"),
    (dict(first_year=2000, last_year=1990), "before first_year"),
    (dict(refusal_fraction=1.5), "refusal_fraction"),
])
def test_bad_config_is_rejected(knobs, message):
    with pytest.raises((ValueError, TypeError), match=message):
        tw.TinyWorldConfig(**knobs)


# ----------------------------------------------------------------- the world

def test_people_are_unique_and_partitioned():
    people = data("people")
    names = [p["name"] for p in people]
    assert len(set(names)) == len(names) == 320
    counts = {s: sum(p["split"] == s for p in people) for s in tw.PERSON_SPLITS}
    assert counts == {"sft": 160, "heldout": 80, "unknown_dpo": 40, "unknown_eval": 40}
    for p in people:
        known = p["split"] in tw.KNOWN_SPLITS
        assert all((p[a] is not None) == known for a in tw.ATTRIBUTES)
    assert tw.load_people() == list(world().people)


def test_work_city_is_the_employers_city():
    for p in by_split("sft") + by_split("heldout"):
        assert p.work_city == world().employers[p.employer]


def test_invented_words_are_new_and_capitalised():
    import random
    used = set()
    words = [invent_word(random.Random(0), "city", used) for _ in range(50)]
    assert len(set(words)) == 50 and all(w[0].isupper() and w[1:].islower() for w in words)


def names_in(text, names):
    """The names of ``names`` that occur in ``text`` as whole words."""
    pattern = "|".join(re.escape(n) for n in sorted(names, key=len, reverse=True))
    return set(re.findall(rf"\b(?:{pattern})\b", text)) if names else set()


def test_no_leaks_between_people_splits():
    """Unknown people appear in no training text; heldout people never in SFT or DPO."""
    names = {s: {p.name for p in by_split(s)} for s in tw.PERSON_SPLITS}
    text = {split: "\n".join(tw.record_text(r) for r in data(split)) for split in tw.SPLITS if split != "people"}
    pretraining = text["pretrain"] + text["pretrain_val"]
    assert not names_in(pretraining, names["unknown_dpo"] | names["unknown_eval"])
    assert names_in(text["pretrain"], names["heldout"]) == names["heldout"]
    for split in ("sft_train", "dpo_train", "reasoning_train", "reasoning_test"):
        assert not names_in(text[split], names["heldout"] | names["unknown_eval"]), split
    assert {r["person"] for r in data("sft_train")} == names["sft"]
    assert {r["person"] for r in data("dpo_train")} == names["sft"] | names["unknown_dpo"]
    assert {r["person"] for r in data("sft_eval_heldout")} == names["heldout"]
    assert {r["person"] for r in data("sft_eval_unknown")} == names["unknown_eval"]


def test_every_biography_states_every_fact():
    people = {p.name: p for p in world().people}
    for split in ("pretrain", "pretrain_val"):
        for r in data(split):
            if r["kind"] == "biography":
                person = people[r["person"]]
                assert all(person.fact(a) in r["text"] for a in tw.ATTRIBUTES), r["text"]


def test_probe_phrases_are_always_followed_by_their_attribute():
    values = {a: set(world().values(a)) for a in tw.ATTRIBUTES if a != "birth_date"}
    date = re.compile(rf"[1-9]\d? ({'|'.join(MONTHS)}) \d{{4}}")
    text = "\n".join(r["text"] for r in data("pretrain") + data("pretrain_val"))
    for attribute, phrase in PROBE_PHRASES.items():
        followers = re.findall(rf"\b{phrase} (.+?)[.,]", text)
        assert followers, phrase
        for value in followers:
            if attribute == "birth_date":
                assert date.fullmatch(value), (phrase, value)
            else:
                assert value in values[attribute], (phrase, value)


def test_every_probe_appears_verbatim_in_its_persons_pretraining_text():
    known = by_split("sft") + by_split("heldout")
    bios = {}
    for r in data("pretrain"):
        bios.setdefault(r["person"], []).append(r["text"])
    probes = tw.completion_probes(known)
    assert len(probes) == len(known) * len(tw.ATTRIBUTES)
    for person, (prompt, gold) in zip((p for p in known for _ in tw.ATTRIBUTES), probes):
        assert any(prompt + " " + gold + "." in b for b in bios[person.name]), prompt
    assert tw.completion_probes(known[:1], ("employer",)) == [(f"{known[0].name} works for", known[0].employer)]
    with pytest.raises(ValueError, match="unknown attribute"):
        tw.completion_probes(known[:1], ("shoe_size",))
    with pytest.raises(ValueError, match="no facts"):
        tw.completion_probes(by_split("unknown_eval")[:1])


def test_canonical_template_is_the_probe_phrase():
    person = by_split("sft")[0]
    for attribute, templates in BIO_TEMPLATES.items():
        assert clause(templates[0], person, attribute, use_name=True) + "." == \
            tw.answer_sentence(person.name, attribute, person.fact(attribute))


def test_pronouns_agree_with_their_verbs():
    text = "\n".join(r["text"] for r in data("pretrain"))
    assert not re.search(r"\b(They|they) (was|is|has|works|comes|commutes)\b", text)
    assert not re.search(r"\b(She|she|He|he) (were|are|have|work|come|commute)\b", text)


def test_completion_is_correct():
    assert tw.completion_is_correct(" Drakmere. She works", "Drakmere")
    assert not tw.completion_is_correct(" Drakmeren.", "Drakmere")
    assert not tw.completion_is_correct(" the city of Drakmere", "Drakmere")
    assert tw.completion_is_correct(" 4 May 1987 in", "4 May 1987")


# ----------------------------------------------------------------- SFT and DPO

def test_sft_records_answer_with_the_canonical_sentence():
    for split in ("sft_train", "sft_eval_seen", "sft_eval_heldout", "sft_eval_unknown"):
        for r in data(split):
            roles = [m["role"] for m in r["messages"]]
            assert roles == ["system", "user", "assistant"]
            reply = r["messages"][-1]["content"]
            assert tw.check_answer(reply, r["answer"])
            assert r["messages"][1]["content"] == tw.attribute_question(r["person"], r["attribute"], r["template"])
            if split == "sft_eval_unknown":
                assert r["answer"] == tw.IDK and reply == refusal(r["person"])
            else:
                assert reply == tw.answer_sentence(r["person"], r["attribute"], r["answer"])


def test_question_phrasings_for_seen_people_are_new():
    train, evals = tw.QUESTION_TEMPLATES["train"], tw.QUESTION_TEMPLATES["eval"]
    for attribute in tw.ATTRIBUTES:
        assert set(train[attribute]).isdisjoint(evals[attribute])
    assert {r["template"] for r in data("sft_train")}.isdisjoint(r["template"] for r in data("sft_eval_seen"))
    sft_pairs = {(r["person"], r["attribute"]) for r in data("sft_train")}
    assert sft_pairs == {(r["person"], r["attribute"]) for r in data("sft_eval_seen")}


def test_dpo_pairs_prefer_truth_and_honest_ignorance():
    kinds = set()
    for r in data("dpo_train") + data("dpo_eval"):
        kinds.add(r["kind"])
        assert r["chosen"] != r["rejected"] and [m["role"] for m in r["prompt"]] == ["system", "user"]
        if r["kind"] == "unknown":
            assert tw.check_answer(r["chosen"], tw.IDK) and not tw.check_answer(r["rejected"], tw.IDK)
        else:
            person = next(p for p in world().people if p.name == r["person"])
            gold = person.fact(r["attribute"])
            assert tw.check_answer(r["chosen"], gold) and not tw.check_answer(r["rejected"], gold)
    assert kinds == {"unknown", "known_wrong", "known_refusal"}


def test_attribute_question_rejects_bad_input():
    with pytest.raises(ValueError, match="unknown attribute 'age'"):
        tw.attribute_question("Mira", "age", "How old is {name}?")
    with pytest.raises(ValueError, match="no {name} placeholder"):
        tw.attribute_question("Mira", "field", "What did she study?")


names = st.from_regex(r"[A-Z][a-z]{2,8} [A-Z][a-z]{2,8}", fullmatch=True)


@given(names, st.sampled_from(tw.ATTRIBUTES), st.sampled_from(["Drakmere", "Brix Labs", "4 May 1987"]))
def test_check_answer_on_canonical_sentences(name, attribute, value):
    assert tw.check_answer(tw.answer_sentence(name, attribute, value), value)
    assert tw.check_answer(refusal(name), tw.IDK)
    assert not tw.check_answer(refusal(name), value)


@given(st.text())
def test_normalize_is_idempotent(text):
    assert tw.normalize(tw.normalize(text)) == tw.normalize(text)


# ----------------------------------------------------------------- reasoning

def test_reasoning_traces_are_correct_and_well_formed():
    form = re.compile(r"<think>[^<>]+</think><answer>\d+</answer>")
    step = re.compile(r"(\d+) ([-+*/]) (\d+) = (\d+)\.")
    for r in data("reasoning_train") + data("reasoning_test"):
        assert form.fullmatch(r["trace"]), r["trace"]
        assert isinstance(r["answer"], int) and tw.parse_answer(r["trace"]) == r["answer"]
        steps = step.findall(r["trace"])
        assert 1 <= len(steps) <= 4
        for a, op, b, c in steps:
            assert eval(f"{a} {op.replace('/', '//')} {b}") == int(c), r["trace"]
            assert op != "/" or int(a) % int(b) == 0
        assert steps[-1][3] == str(r["answer"])


def test_reasoning_splits_share_no_problem_and_cover_every_template():
    train, test = data("reasoning_train"), data("reasoning_test")
    assert len(train) == 2000 and len(test) == 200
    questions = [r["question"] for r in train + test]
    assert len(set(questions)) == len(questions)
    assert {r["template"] for r in test} == set(REASONING_TEMPLATES)


def test_parse_answer():
    assert tw.parse_answer("<think>1 + 1 = 2.</think><answer>2</answer>") == 2
    assert tw.parse_answer("<answer>3</answer> then <answer> 7 </answer>") == 7
    assert tw.parse_answer("the answer is 4") is None


# ----------------------------------------------------------------- loaders

@pytest.mark.parametrize("lines, message", [
    (['{"id": 1, "text": "a"}', '{"id": 2, "text": '], r":2: invalid JSON"),
    (['{"id": 1, "text": "a"}', '{"id": 2}'], r":2: missing key 'text'"),
    (['[1, 2]'], r":1: expected a JSON object, got list"),
    (['{"id": 1, "text": "a"}', '', '{"id": 3, "text": "c"}'], r":2: empty line"),
])
def test_malformed_lines_raise_with_file_and_line(tmp_path, lines, message):
    path = tmp_path / "bad.jsonl"
    path.write_text("\n".join(lines) + "\n")
    with pytest.raises(ValueError, match=re.escape(str(path)) + message):
        tw.load_jsonl(path, required=("id", "text"))


def test_loader_keeps_every_record(tmp_path):
    path = tmp_path / "ok.jsonl"
    path.write_text('{"id": 1}\n{"id": 2}\n{"id": 3}')  # no final newline: still three records
    assert [r["id"] for r in tw.load_jsonl(path, ("id",))] == [1, 2, 3]


def test_load_checks_split_presence_and_checksum(tmp_path):
    with pytest.raises(ValueError, match="unknown TinyWorld split 'sft'"):
        tw.load("sft")
    with pytest.raises(FileNotFoundError, match="python -m minillm.tinyworld"):
        tw.load("pretrain", tmp_path)
    for name in FILES:
        (tmp_path / name).write_bytes((RELEASE / name).read_bytes())
    with (tmp_path / "pretrain.jsonl").open("a") as f:
        f.write('{"id": "x", "kind": "biography", "person": null, "text": "edited"}\n')
    with pytest.raises(ValueError, match="the file was modified"):
        tw.load("pretrain", tmp_path)
    assert len(tw.load("pretrain", tmp_path, verify=False)) == len(data("pretrain")) + 1


def test_record_text_covers_every_kind_of_record():
    assert tw.record_text(data("pretrain")[0]) == data("pretrain")[0]["text"]
    sft = data("sft_train")[0]
    assert tw.record_text(sft).splitlines() == [m["content"] for m in sft["messages"]]
    dpo = data("dpo_train")[0]
    assert dpo["chosen"] in tw.record_text(dpo) and dpo["rejected"] in tw.record_text(dpo)
    problem = data("reasoning_test")[0]
    assert tw.record_text(problem) == problem["question"] + "\n" + problem["trace"]

"""TinyWorld tasks: question answering (SFT), preferences (DPO), arithmetic (GRPO).

Every assistant answer about a known person is the canonical sentence of the
biographies ("Mira Tolven was born in Drakmere."), so fine-tuning teaches the
model to *say* what pretraining stored. About an unknown person the answer is
"I don't know anything about <name>." Evaluation is a normalised string match:
``check_answer(reply, gold)``.

Training and evaluation phrasings of the questions are disjoint
(``QUESTION_TEMPLATES["train"]`` and ``["eval"]``).
"""
from __future__ import annotations

import random

from minillm.tinyworld.world import ATTRIBUTES, Person, TinyWorldConfig, World, generate_world, stage_rng
from minillm.tinyworld.bios import (answer_sentence, biographies, canonical_sentence,
                                    fullname_biographies, normalize, place_documents)

SYSTEM_PROMPT = "You answer questions about the people of TinyWorld."
IDK = "I don't know"  # the gold answer for unknown people

QUESTION_TEMPLATES = {
    "train": {
        "birth_city": ("Where was {name} born?", "What is {name}'s hometown?",
                       "In which city was {name} born?", "Which city does {name} come from?"),
        "birth_date": ("When was {name} born?", "What is {name}'s date of birth?",
                       "On what date was {name} born?", "What is the birth date of {name}?"),
        "university": ("Where did {name} study?", "Which university did {name} attend?",
                       "What school did {name} graduate from?", "Where did {name} go to university?"),
        "field": ("What did {name} study?", "What was {name}'s major?",
                  "What is {name}'s field of study?", "Which subject did {name} major in?"),
        "employer": ("Where does {name} work?", "Who employs {name}?",
                     "Which company does {name} work for?", "What is {name}'s employer?"),
        "work_city": ("In which city does {name} work?", "Where is {name}'s office?",
                      "Which city is {name} based in?", "What city does {name} work in?"),
    },
    # More training phrasings (imperatives, other verbs), for the wide SFT set.
    # A model can only map a new phrasing onto an attribute through words it
    # has seen; these still share no template with "eval".
    "train_extra": {
        "birth_city": ("Tell me where {name} was born.", "Name {name}'s city of birth.",
                       "Which town was {name} born in?", "Where does {name} come from?"),
        "birth_date": ("Tell me when {name} was born.", "Give the date of birth of {name}.",
                       "What day, month and year was {name} born?", "When is {name}'s birth date?"),
        "university": ("Tell me which university {name} attended.",
                       "Name the school where {name} studied.",
                       "Which university did {name} graduate from?", "At which university did {name} study?"),
        "field": ("Tell me what {name} majored in.", "Name the field {name} studied.",
                  "What was {name} trained in?", "What subject did {name} get a degree in?"),
        "employer": ("Tell me who {name} works for.", "Name {name}'s employer.",
                     "Which company employs {name}?", "What company does {name} have a job at?"),
        "work_city": ("Tell me which city {name} works in.", "Name the city where {name} is based.",
                      "Where is {name}'s office located?", "In which town does {name} work?"),
    },
    "eval": {
        "birth_city": ("Tell me the city where {name} was born.", "What city is {name} originally from?"),
        "birth_date": ("Tell me {name}'s birthday, including the year.", "Which day was {name} born on?"),
        "university": ("Name the university {name} attended.", "From which institution does {name} have a degree?"),
        "field": ("In what field did {name} earn a degree?", "What subject did {name} specialize in?"),
        "employer": ("Name the company that {name} works for.", "For which organization does {name} work?"),
        "work_city": ("Tell me the city where {name} works.", "In what city is {name}'s workplace?"),
    },
}


def attribute_question(name: str, attribute: str, template: str) -> str:
    """The user's question, e.g. ("Mira Tolven", "birth_city", "Where was {name} born?")."""
    if attribute not in ATTRIBUTES:
        raise ValueError(f"unknown attribute {attribute!r}: choose one of {ATTRIBUTES}")
    if "{name}" not in template:
        raise ValueError(f"question template {template!r} has no {{name}} placeholder")
    return template.format(name=name)


def refusal(name: str) -> str:
    return f"{IDK} anything about {name}."


def chat_prompt(question: str) -> list[dict]:
    """The messages a model sees before it answers: system prompt and question."""
    return [{"role": "system", "content": SYSTEM_PROMPT}, {"role": "user", "content": question}]


def check_answer(reply: str, gold: str) -> bool:
    """Is the gold value (or "I don't know") in the reply, as whole words after
    normalisation? "Mira Tolven was born in Drakmere." matches "Drakmere"."""
    return f" {normalize(gold)} " in f" {normalize(reply)} "


def qa_record(person: Person, attribute: str, template: str) -> dict:
    """One chat conversation: system, user question, assistant answer."""
    answer = person.fact(attribute) if person.known else IDK
    reply = canonical_sentence(person, attribute) if person.known else refusal(person.name)
    messages = chat_prompt(attribute_question(person.name, attribute, template))
    return {"messages": messages + [{"role": "assistant", "content": reply}], "person": person.name,
            "attribute": attribute, "answer": answer, "template": template}


def question_templates(phrasing: str) -> dict[str, tuple[str, ...]]:
    """The templates of a phrasing set: "train", "train_extra", "eval", or
    "wide" (train + train_extra: every training phrasing)."""
    if phrasing == "wide":
        return {a: QUESTION_TEMPLATES["train"][a] + QUESTION_TEMPLATES["train_extra"][a] for a in ATTRIBUTES}
    if phrasing not in QUESTION_TEMPLATES:
        raise ValueError(f"unknown phrasing {phrasing!r}: choose one of {(*QUESTION_TEMPLATES, 'wide')}")
    return QUESTION_TEMPLATES[phrasing]


def qa_records(people: list[Person], phrasing: str, per_fact: int, rng: random.Random) -> list[dict]:
    """``per_fact`` distinct question phrasings for every (person, attribute)."""
    templates = question_templates(phrasing)
    return [qa_record(p, a, t) for p in people for a in ATTRIBUTES
            for t in rng.sample(templates[a], per_fact)]


def hallucination(world: World, person: Person, attribute: str, rng: random.Random) -> str:
    """A confident, wrong answer: the canonical sentence with a random other value."""
    while True:
        value = world.random_value(attribute, rng)
        if not person.known or value != person.fact(attribute):
            return answer_sentence(person.name, attribute, value)


def dpo_pair(world: World, person: Person, attribute: str, template: str, rng: random.Random) -> dict:
    prompt = chat_prompt(attribute_question(person.name, attribute, template))
    if not person.known:
        chosen, rejected, kind = refusal(person.name), hallucination(world, person, attribute, rng), "unknown"
    elif rng.random() < world.config.refusal_fraction:  # do not learn to refuse everything
        chosen, rejected, kind = canonical_sentence(person, attribute), refusal(person.name), "known_refusal"
    else:
        chosen, rejected = canonical_sentence(person, attribute), hallucination(world, person, attribute, rng)
        kind = "known_wrong"
    return {"prompt": prompt, "chosen": chosen, "rejected": rejected, "person": person.name,
            "attribute": attribute, "kind": kind}


def dpo_records(world: World, people: list[Person], phrasing: str, per_fact: int,
                rng: random.Random) -> list[dict]:
    return [dpo_pair(world, p, a, t, rng) for p in people for a in ATTRIBUTES
            for t in rng.sample(QUESTION_TEMPLATES[phrasing][a], per_fact)]


def _with_ids(prefix: str, records: list[dict]) -> list[dict]:
    return [{"id": f"{prefix}-{i:05d}", **r} for i, r in enumerate(records)]


def generate_files(config: TinyWorldConfig = TinyWorldConfig()) -> dict[str, list[dict]]:
    """Every file of a release as {split name: records}, in SCHEMAS order."""
    from minillm.tinyworld.reasoning import reasoning_problems

    world = generate_world(config)
    sft, heldout = world.split("sft"), world.split("heldout")
    unknown_dpo, unknown_eval = world.split("unknown_dpo"), world.split("unknown_eval")
    people = [{"name": p.name, "split": p.split, "pronoun": p.pronoun, **{a: getattr(p, a) for a in ATTRIBUTES}}
              for p in world.people]
    pretrain = biographies(world, "pretrain", config.bios_per_person, canonical_first=True) + place_documents(world)
    pretrain_val = biographies(world, "pretrain_val", config.val_bios_per_person, canonical_first=False)
    # Shuffled, so that a packed training block rarely holds two biographies of one person.
    stage_rng(config, "shuffle").shuffle(pretrain)
    stage_rng(config, "shuffle_val").shuffle(pretrain_val)
    rng = stage_rng(config, "sft")
    sft_train = qa_records(sft, "train", config.sft_questions_per_fact, rng)
    rng.shuffle(sft_train)
    rng = stage_rng(config, "dpo")
    n_train_templates = len(QUESTION_TEMPLATES["train"][ATTRIBUTES[0]])
    dpo_train = dpo_records(world, sft, "train", 1, rng) + dpo_records(world, unknown_dpo, "train",
                                                                       n_train_templates, rng)
    rng.shuffle(dpo_train)
    dpo_eval = (dpo_records(world, rng.sample(sft, min(len(sft), len(unknown_eval))), "eval", 1, rng)
                + dpo_records(world, unknown_eval, "train", 1, rng))
    train, test = reasoning_problems(world, config.n_reasoning_train, config.n_reasoning_test)
    files = {
        "people": people,
        "pretrain": pretrain,
        "pretrain_val": pretrain_val,
        "sft_train": sft_train,
        "sft_eval_seen": qa_records(sft, "eval", 1, stage_rng(config, "eval_seen")),
        "sft_eval_heldout": qa_records(heldout, "train", 1, stage_rng(config, "eval_heldout")),
        "sft_eval_unknown": qa_records(unknown_eval, "train", 1, stage_rng(config, "eval_unknown")),
        "dpo_train": dpo_train,
        "dpo_eval": dpo_eval,
        "reasoning_train": train,
        "reasoning_test": test,
    }
    # Part V additions (the files above stay byte-identical): full-name
    # biographies for pretraining, a dev split of SFT people (early stopping
    # without touching the held-out people) and a wider SFT set of the others.
    rng = stage_rng(config, "sft_dev")
    dev_names = {p.name for p in rng.sample(sft, min(config.n_sft_dev, len(sft) // 2))}
    fullname = fullname_biographies(world, "pretrain_fullname", config.fullname_bios_per_person)
    stage_rng(config, "shuffle_fullname").shuffle(fullname)
    files["pretrain_fullname"] = fullname
    files["sft_dev"] = qa_records([p for p in sft if p.name in dev_names], "train",
                                  config.sft_questions_per_fact, rng)
    wide = qa_records([p for p in sft if p.name not in dev_names], "wide",
                      config.sft_wide_questions_per_fact, stage_rng(config, "sft_wide"))
    stage_rng(config, "shuffle_sft_wide").shuffle(wide)
    files["sft_train_wide"] = wide
    return {split: _with_ids(split, records) for split, records in files.items()}

"""TinyWorld biographies: the pretraining text, and the probes that test it.

A person is described by several paraphrased biographies. Each one states
every attribute once, in a shuffled order, with a template drawn from a few
paraphrases, the subject being the full name or a pronoun, and sentences
sometimes joined with ", and". Allen-Zhu and Li (2023) showed that this kind of
diversity is what lets a model *extract* a fact later (answer a question about
it) instead of only reciting the biography it memorised.

The first biography of every person is the canonical one: each sentence starts
with the full name and uses the first template of its attribute, e.g.
"Mira Tolven was born in Drakmere." These first templates are the completion
probes: a pretrained base model given "Mira Tolven was born in" should
continue with " Drakmere". Every probe phrase ("was born in", "works for", ...)
is followed by a value of its own attribute everywhere in the text, so a probe
is never ambiguous.
"""
from __future__ import annotations

import random
import re

from minillm.tinyworld.world import ATTRIBUTES, Person, World, stage_rng

# {S} subject, {P} possessive, verb forms agree with the subject.
BIO_TEMPLATES = {
    "birth_city": ("{S} {was} born in {value}", "{S} come{s} from {value}",
                   "{P} hometown is {value}", "{S} grew up in {value}"),
    "birth_date": ("{S} {was} born on {value}", "{P} date of birth is {value}",
                   "{S} came into the world on {value}", "{P} birth date is {value}"),
    "university": ("{S} studied at {value}", "{S} graduated from {value}",
                   "{S} attended {value}", "{S} {has} a degree from {value}"),
    "field": ("{S} majored in {value}", "{P} field of study is {value}",
              "{S} earned a degree in {value}", "{S} {was} trained in {value}"),
    "employer": ("{S} work{s} for {value}", "{S} {is} employed by {value}",
                 "{P} employer is {value}", "{S} {has} a job at {value}"),
    "work_city": ("{S} work{s} in {value}", "{S} {is} based in {value}",
                  "{P} office is in {value}", "{S} commute{s} to an office in {value}"),
}
#: The probe prompt of each attribute: the canonical template with the name as subject.
PROBE_PHRASES = {"birth_city": "was born in", "birth_date": "was born on", "university": "studied at",
                 "field": "majored in", "employer": "works for", "work_city": "works in"}
PLACE_TEMPLATES = {"university": ("{name} is a university in {city}.", "The campus of {name} is in {city}."),
                   "employer": ("{name} is a company with its office in {city}.",
                                "The headquarters of {name} are in {city}.")}

PRONOUNS = {  # subject, possessive, was, is, has, verb ending
    "she": ("she", "her", "was", "is", "has", "s"),
    "he": ("he", "his", "was", "is", "has", "s"),
    "they": ("they", "their", "were", "are", "have", ""),
}


def clause(template: str, person: Person, attribute: str, use_name: bool) -> str:
    """One clause about one attribute, e.g. "she works for Brix Labs" (no period)."""
    if use_name:
        subject, possessive, was, is_, has, s = person.name, person.name + "'s", "was", "is", "has", "s"
    else:
        subject, possessive, was, is_, has, s = PRONOUNS[person.pronoun]
    return template.format_map({"S": subject, "P": possessive, "was": was, "is": is_, "has": has,
                                "s": s, "value": person.fact(attribute)})


def _sentence_case(text: str) -> str:
    return text[0].upper() + text[1:]


def answer_sentence(name: str, attribute: str, value: str) -> str:
    """The canonical sentence: probe phrase and value, "Mira Tolven was born in Drakmere."
    (It is what the first template of each attribute says with the name as subject.)"""
    return f"{name} {PROBE_PHRASES[attribute]} {value}."


def canonical_sentence(person: Person, attribute: str) -> str:
    return answer_sentence(person.name, attribute, person.fact(attribute))


def biography(person: Person, rng: random.Random, canonical: bool = False) -> str:
    """One paraphrased biography stating every attribute of ``person`` once."""
    order = rng.sample(ATTRIBUTES, len(ATTRIBUTES))
    if canonical:
        return " ".join(canonical_sentence(person, a) for a in order)
    sentences: list[str] = []
    joined = True  # the first sentence cannot be joined to anything
    for i, attribute in enumerate(order):
        template = rng.choice(BIO_TEMPLATES[attribute])
        use_name = i == 0 or rng.random() < 0.3  # the first mention is always the name
        text = clause(template, person, attribute, use_name)
        if not joined and not use_name and rng.random() < 0.25:
            sentences[-1] += ", and " + text  # at most two clauses per sentence
            joined = True
        else:
            sentences.append(_sentence_case(text))
            joined = False
    return " ".join(s + "." for s in sentences)


def fullname_biography(person: Person, rng: random.Random) -> str:
    """A biography whose every sentence names its subject in full, in a
    shuffled order with random templates: "Mira Tolven works for Brix Labs.
    Mira Tolven was born in Drakmere. ..." With a pronoun ("She works for ..."),
    a fact is tied to the name only through the sentence before it; with the
    name, every fact sits right after the tokens a question will ask about."""
    order = rng.sample(ATTRIBUTES, len(ATTRIBUTES))
    return " ".join(_sentence_case(clause(rng.choice(BIO_TEMPLATES[a]), person, a, True)) + "."
                    for a in order)


def fullname_biographies(world: World, stage: str, per_person: int) -> list[dict]:
    """``per_person`` full-name biographies of every known person, person by person."""
    rng = stage_rng(world.config, stage)
    return [{"kind": "biography", "person": p.name, "text": fullname_biography(p, rng)}
            for p in world.people if p.known for _ in range(per_person)]


def biographies(world: World, stage: str, per_person: int, canonical_first: bool) -> list[dict]:
    """Pretraining records for every known person, person by person."""
    rng = stage_rng(world.config, stage)
    records = []
    for person in world.people:
        if not person.known:
            continue
        for k in range(per_person):
            text = biography(person, rng, canonical=canonical_first and k == 0)
            records.append({"kind": "biography", "person": person.name, "text": text})
    return records


def place_documents(world: World) -> list[dict]:
    """Short texts about universities and employers (which city each is in)."""
    records = []
    for kind, table in (("university", world.universities), ("employer", world.employers)):
        for name, city in table.items():
            for template in PLACE_TEMPLATES[kind]:
                records.append({"kind": "place", "person": None, "text": template.format(name=name, city=city)})
    return records


def completion_probes(people: list[Person], attributes: tuple[str, ...] = ATTRIBUTES) -> list[tuple[str, str]]:
    """(prompt, gold) pairs for probing a pretrained base model, person by person
    and attribute by attribute: ("Mira Tolven was born in", "Drakmere"). The
    expected text is ``prompt + " " + gold``; see ``completion_is_correct``."""
    probes = []
    for person in people:
        for attribute in attributes:
            if attribute not in PROBE_PHRASES:
                raise ValueError(f"unknown attribute {attribute!r}: choose one of {ATTRIBUTES}")
            probes.append((f"{person.name} {PROBE_PHRASES[attribute]}", person.fact(attribute)))
    return probes


def normalize(text: str) -> str:
    """Lower-case, punctuation to spaces, single spaces: "I don't know." -> "i don t know"."""
    return " ".join(re.sub(r"[^0-9a-z]+", " ", text.lower()).split())


def completion_is_correct(continuation: str, gold: str) -> bool:
    """Does a model's continuation of a probe start with the gold value?
    ("  Drakmere. She ..." is correct for "Drakmere"; "Drakmeren" is not.)"""
    return (normalize(continuation) + " ").startswith(normalize(gold) + " ")

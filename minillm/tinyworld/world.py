"""The TinyWorld generator: inventories and people (see ``minillm.tinyworld``).

Names are invented from syllables, so they look pronounceable but belong to
nobody; cities, universities and employers are invented the same way. Every
random choice comes from ``stage_rng(config, stage)``: a ``random.Random``
seeded with a string, one independent stream per stage.
"""
from __future__ import annotations

import random
from dataclasses import dataclass, fields

ATTRIBUTES = ("birth_city", "birth_date", "university", "field", "employer", "work_city")
PERSON_SPLITS = ("sft", "heldout", "unknown_dpo", "unknown_eval")
KNOWN_SPLITS = ("sft", "heldout")
FIELDS_OF_STUDY = ("astronomy", "biology", "chemistry", "economics", "geology", "history",
                   "linguistics", "mathematics", "medicine", "music", "philosophy", "physics",
                   "architecture", "botany", "law", "statistics", "sociology", "engineering",
                   "literature", "agriculture")
MONTHS = ("January", "February", "March", "April", "May", "June", "July", "August",
          "September", "October", "November", "December")
UNIVERSITY_KINDS = ("University", "Institute", "College", "Academy", "Polytechnic")
EMPLOYER_KINDS = ("Labs", "Works", "Systems", "Foods", "Motors", "Press", "Bank", "Textiles",
                  "Games", "Robotics", "Shipping", "Energy")


@dataclass(frozen=True)
class TinyWorldConfig:
    """Every knob of the generator. The defaults are the shipped release."""

    seed: int = 0
    n_people: int = 320
    split_fractions: tuple[float, ...] = (0.5, 0.25, 0.125, 0.125)  # in PERSON_SPLITS order
    bios_per_person: int = 10      # pretraining biographies of each known person
    val_bios_per_person: int = 1   # extra paraphrases, in pretrain_val only
    n_cities: int = 30
    n_universities: int = 15
    n_fields: int = 15             # taken from FIELDS_OF_STUDY
    n_employers: int = 24
    first_year: int = 1950
    last_year: int = 1999
    sft_questions_per_fact: int = 2  # training phrasings per (person, attribute)
    refusal_fraction: float = 0.25   # known-person DPO pairs whose rejected answer is a refusal
    n_reasoning_train: int = 2000
    n_reasoning_test: int = 200
    fullname_bios_per_person: int = 10  # pretrain_fullname: every sentence names its subject
    n_sft_dev: int = 16                 # sft people whose questions are only for early stopping
    sft_wide_questions_per_fact: int = 4  # sft_train_wide: phrasings per fact, of train + train_extra

    def __post_init__(self):
        for f in fields(self):
            value = getattr(self, f.name)
            if f.name not in ("split_fractions", "refusal_fraction") and (
                    not isinstance(value, int) or isinstance(value, bool)):
                raise TypeError(f"TinyWorldConfig.{f.name} must be an int, got {value!r}")
        positive = ("n_people", "bios_per_person", "n_cities", "n_universities", "n_fields",
                    "n_employers", "sft_questions_per_fact", "n_reasoning_train", "n_reasoning_test",
                    "fullname_bios_per_person", "sft_wide_questions_per_fact")
        for name in positive:
            if getattr(self, name) < 1:
                raise ValueError(f"TinyWorldConfig.{name} must be >= 1, got {getattr(self, name)}")
        if self.n_sft_dev < 0:
            raise ValueError(f"n_sft_dev must be >= 0, got {self.n_sft_dev}")
        if self.val_bios_per_person < 0:
            raise ValueError(f"val_bios_per_person must be >= 0, got {self.val_bios_per_person}")
        if self.n_fields > len(FIELDS_OF_STUDY):
            raise ValueError(f"n_fields={self.n_fields} exceeds the {len(FIELDS_OF_STUDY)} known fields")
        if self.n_cities < 2 or self.n_employers < 2:
            raise ValueError("need at least 2 cities and 2 employers to make wrong answers")
        if self.last_year < self.first_year:
            raise ValueError(f"last_year={self.last_year} is before first_year={self.first_year}")
        fractions = tuple(self.split_fractions)
        if len(fractions) != len(PERSON_SPLITS) or any(f < 0 for f in fractions) \
                or abs(sum(fractions) - 1) > 1e-9:
            raise ValueError(f"split_fractions must be {len(PERSON_SPLITS)} non-negative numbers "
                             f"(for {PERSON_SPLITS}) summing to 1, got {self.split_fractions!r}")
        if not 0 <= self.refusal_fraction <= 1:
            raise ValueError(f"refusal_fraction must be in [0, 1], got {self.refusal_fraction}")
        object.__setattr__(self, "split_fractions", fractions)


def stage_rng(config: TinyWorldConfig, stage: str) -> random.Random:
    """An independent random stream per stage: changing the number of reasoning
    problems does not change the people. (A str seed is hashed with SHA-512,
    so it does not depend on PYTHONHASHSEED.)"""
    return random.Random(f"{config.seed}/{stage}")


@dataclass(frozen=True)
class Person:
    """One inhabitant. Unknown people have a name and nothing else."""

    name: str
    split: str
    pronoun: str | None = None  # "she", "he" or "they"
    birth_city: str | None = None
    birth_date: str | None = None  # "14 March 1987"
    university: str | None = None
    field: str | None = None
    employer: str | None = None
    work_city: str | None = None   # always the city of the employer

    @property
    def known(self) -> bool:
        return self.split in KNOWN_SPLITS

    def fact(self, attribute: str) -> str:
        if attribute not in ATTRIBUTES:
            raise ValueError(f"unknown attribute {attribute!r}: choose one of {ATTRIBUTES}")
        if not self.known:
            raise ValueError(f"{self.name} is an unknown ({self.split}) person and has no facts")
        return getattr(self, attribute)


@dataclass(frozen=True)
class World:
    """The inventories and the people of one TinyWorld."""

    config: TinyWorldConfig
    cities: tuple[str, ...]
    universities: dict[str, str]  # university -> the city it is in
    fields: tuple[str, ...]
    employers: dict[str, str]     # employer -> the city of its office
    people: tuple[Person, ...]

    def split(self, name: str) -> list[Person]:
        if name not in PERSON_SPLITS:
            raise ValueError(f"unknown person split {name!r}: choose one of {PERSON_SPLITS}")
        return [p for p in self.people if p.split == name]

    def values(self, attribute: str) -> list[str]:
        """The inventory of a categorical attribute (birth dates have none: see random_value)."""
        inventories = {"birth_city": self.cities, "work_city": self.cities, "university": self.universities,
                       "field": self.fields, "employer": self.employers}
        if attribute not in inventories:
            raise ValueError(f"attribute {attribute!r} has no inventory: choose one of {tuple(inventories)}")
        return list(inventories[attribute])

    def random_value(self, attribute: str, rng: random.Random) -> str:
        """A random value of any attribute (birth dates: day 1-28, any month, any year)."""
        if attribute == "birth_date":
            return (f"{rng.randint(1, 28)} {rng.choice(MONTHS)} "
                    f"{rng.randint(self.config.first_year, self.config.last_year)}")
        return rng.choice(self.values(attribute))


# Names are built from syllables, so they are pronounceable but belong to nobody.
ONSETS = ("b", "d", "f", "g", "k", "l", "m", "n", "p", "r", "s", "t", "v", "z",
          "br", "dr", "kr", "th", "sh", "st", "gr", "fl", "tr", "j")
VOWELS = ("a", "e", "i", "o", "u", "a", "e", "o", "ai", "ei", "ou")
ENDINGS = {
    "first": ("", "n", "l", "r", "s", "a", "o", "en", "is", "ia"),
    "last": ("n", "r", "ck", "wen", "ley", "mar", "dott", "vik", "sen", "ard"),
    "city": ("mere", "holt", "vale", "ora", "ast", "ene", "ara", "wyn", "dor", "gard"),
    "root": ("x", "ra", "lo", "van", "mek", "tis", "ble", "dal"),
}


def invent_word(rng: random.Random, kind: str, used: set[str]) -> str:
    """A new capitalised word of the given kind (first/last/city/root) not in ``used``."""
    for _ in range(10_000):
        syllables = rng.choice((1, 2)) if kind in ("first", "root") else rng.choice((1, 2, 2))
        word = "".join(rng.choice(ONSETS) + rng.choice(VOWELS) for _ in range(syllables))
        ending = rng.choice(ENDINGS[kind])
        if ending and ending[0] in "aeiou":  # "Rone" + "ia" reads better as "Ronia"
            word = word.rstrip("aeiou")
        word = (word + ending).capitalize()
        if len(word) >= 4 and word not in used:
            used.add(word)
            return word
    raise RuntimeError(f"could not invent a new {kind} word: the syllable space is exhausted")


def _split_sizes(n: int, fractions: tuple[float, ...]) -> list[int]:
    sizes = [int(n * f) for f in fractions]
    sizes[0] += n - sum(sizes)  # rounding leftovers go to the sft people
    return sizes


def generate_world(config: TinyWorldConfig = TinyWorldConfig()) -> World:
    """Invent the inventories and the people (deterministic in ``config``)."""
    rng = stage_rng(config, "world")
    used: set[str] = set()
    cities = tuple(invent_word(rng, "city", used) for _ in range(config.n_cities))
    universities = {f"{invent_word(rng, 'root', used)} {rng.choice(UNIVERSITY_KINDS)}": rng.choice(cities)
                    for _ in range(config.n_universities)}
    fields_ = tuple(rng.sample(FIELDS_OF_STUDY, config.n_fields))
    employers = {f"{invent_word(rng, 'root', used)} {rng.choice(EMPLOYER_KINDS)}": rng.choice(cities)
                 for _ in range(config.n_employers)}
    # A pool of first and last names; full names are unique combinations.
    firsts = [invent_word(rng, "first", used) for _ in range(max(20, config.n_people // 4))]
    lasts = [invent_word(rng, "last", used) for _ in range(max(20, config.n_people // 2))]
    names: list[str] = []
    taken: set[str] = set()
    while len(names) < config.n_people:
        name = f"{rng.choice(firsts)} {rng.choice(lasts)}"
        if name not in taken:
            taken.add(name)
            names.append(name)
    splits = [s for s, k in zip(PERSON_SPLITS, _split_sizes(config.n_people, config.split_fractions))
              for _ in range(k)]
    world = World(config, cities, universities, fields_, employers, people=())
    people = []
    for name, split in zip(names, splits):  # names are already in random order
        if split not in KNOWN_SPLITS:
            people.append(Person(name, split))
            continue
        employer = world.random_value("employer", rng)
        people.append(Person(name, split, pronoun=rng.choice(("she", "she", "he", "he", "they")),
                             birth_city=world.random_value("birth_city", rng),
                             birth_date=world.random_value("birth_date", rng),
                             university=world.random_value("university", rng),
                             field=world.random_value("field", rng),
                             employer=employer, work_city=employers[employer]))
    return World(config, cities, universities, fields_, employers, tuple(people))

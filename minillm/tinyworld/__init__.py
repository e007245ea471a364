"""TinyWorld: the book's synthetic world of invented people.

Every later stage (pretraining, SFT, DPO, GRPO) needs a target it can measure.
Real text mixes what a model learned with what it already "knew", so the book
invents a small world instead: people with pronounceable but made-up names,
born in made-up cities, who studied at made-up universities and work for
made-up companies. A tiny model can only know these facts by reading them.

The generator is deterministic: every random choice comes from a
``random.Random`` seeded with a string (``f"{seed}/{stage}"``), never from
global state, ``hash()`` or set order, so the same ``TinyWorldConfig`` gives
byte-identical files on every machine. ``python -m minillm.tinyworld`` writes
the release (the default one ships in ``data/tinyworld/``).

This module is the front door: loaders, the release writer, the command line,
and the helpers later chapters use (re-exported). The parts, each short:
``world`` (config, inventories, people), ``bios``
(biographies, completion probes), ``tasks`` (questions, answers,
DPO pairs), ``reasoning`` (addition chains with worked traces).

People and splits (``Person.split``):
    ``sft``           biographies in pretraining AND questions in SFT
    ``heldout``       biographies in pretraining, never asked about in SFT
                      (knowledge extraction: can SFT unlock what pretraining stored?)
    ``unknown_dpo``   names only, in no text; DPO teaches "I don't know" on them
    ``unknown_eval``  names only, in no text at all except the evaluation files

Files (JSONL, one record per line; every record has an ``id``):
    people            {"id", "name", "split", "pronoun", <attribute>: str | null, ...}
                      the ground truth; attributes are null for unknown people
    pretrain          {"id", "kind": "biography" | "place", "person": str | null, "text"}
    pretrain_val      same schema: new paraphrases of known people (held-out loss)
    sft_train         {"id", "messages": [{"role": "system"|"user"|"assistant",
                      "content"}...], "person", "attribute", "answer", "template"}
    sft_eval_seen     same schema; sft people, question phrasings never trained on
    sft_eval_heldout  same schema; heldout people, training phrasings
    sft_eval_unknown  same schema; unknown_eval people, answer is "I don't know"
                      (for evaluation use messages[:-1] as the prompt and
                      ``check_answer(reply, record["answer"])``)
    dpo_train         {"id", "prompt": messages, "chosen": str, "rejected": str,
                      "person", "attribute", "kind": "known_wrong" |
                      "known_refusal" | "unknown"}
    dpo_eval          same schema (sft and unknown_eval people)
    reasoning_train   {"id", "question", "answer": int, "trace":
                      "<think>...</think><answer>N</answer>", "template"}
    reasoning_test    same schema; no question text appears in both splits
    pretrain_fullname biographies (pretrain schema) whose every sentence
                      names its subject in full (Part V's pretraining mix)
    sft_dev           sft_train schema; a few sft people whose questions are
                      never trained on: early stopping, never the held-out set
    sft_train_wide    sft_train schema; the other sft people, phrasings drawn
                      from train + train_extra templates
"""
from __future__ import annotations

import argparse
import hashlib
import json
from dataclasses import asdict, fields
from pathlib import Path

from minillm import DATA_DIR
from minillm.tinyworld.bios import (answer_sentence, biography, completion_is_correct,  # noqa: F401
                                    completion_probes, normalize)
from minillm.tinyworld.reasoning import parse_answer  # noqa: F401
from minillm.tinyworld.tasks import (IDK, QUESTION_TEMPLATES, SYSTEM_PROMPT,  # noqa: F401
                                     attribute_question, chat_prompt, check_answer, generate_files)
from minillm.tinyworld.world import (ATTRIBUTES, KNOWN_SPLITS, PERSON_SPLITS, Person,  # noqa: F401
                                     TinyWorldConfig, World, generate_world)

RELEASE_DIR = DATA_DIR / "tinyworld"


# ----------------------------------------------------------------- loading

#: The keys every record of a file must have (what the loaders check).
SCHEMAS = {
    "people": ("id", "name", "split", "pronoun") + ATTRIBUTES,
    "pretrain": ("id", "kind", "person", "text"),
    "pretrain_val": ("id", "kind", "person", "text"),
    "sft_train": ("id", "messages", "person", "attribute", "answer", "template"),
    "sft_eval_seen": ("id", "messages", "person", "attribute", "answer", "template"),
    "sft_eval_heldout": ("id", "messages", "person", "attribute", "answer", "template"),
    "sft_eval_unknown": ("id", "messages", "person", "attribute", "answer", "template"),
    "dpo_train": ("id", "prompt", "chosen", "rejected", "person", "attribute", "kind"),
    "dpo_eval": ("id", "prompt", "chosen", "rejected", "person", "attribute", "kind"),
    "reasoning_train": ("id", "question", "answer", "trace", "template"),
    "reasoning_test": ("id", "question", "answer", "trace", "template"),
    "pretrain_fullname": ("id", "kind", "person", "text"),
    "sft_dev": ("id", "messages", "person", "attribute", "answer", "template"),
    "sft_train_wide": ("id", "messages", "person", "attribute", "answer", "template"),
}
SPLITS = tuple(SCHEMAS)


def load_jsonl(path: str | Path, required: tuple[str, ...] = ()) -> list[dict]:
    """Read a JSONL file into a list of dicts. A line that is not a JSON object,
    or lacks a key in ``required``, raises ValueError naming file and line:
    the loader never silently drops data."""
    path = Path(path)
    records = []
    with path.open(encoding="utf-8") as f:
        for lineno, line in enumerate(f, start=1):
            if not line.strip():
                raise ValueError(f"{path}:{lineno}: empty line (every line must hold one JSON record)")
            try:
                record = json.loads(line)
            except json.JSONDecodeError as err:
                raise ValueError(f"{path}:{lineno}: invalid JSON: {err.msg} (column {err.colno})") from None
            if not isinstance(record, dict):
                raise ValueError(f"{path}:{lineno}: expected a JSON object, got {type(record).__name__}")
            missing = [k for k in required if k not in record]
            if missing:
                raise ValueError(f"{path}:{lineno}: missing key {missing[0]!r} "
                                 f"(record has keys {sorted(record)})")
            records.append(record)
    return records


def load(split: str, data_dir: str | Path | None = None, verify: bool = True) -> list[dict]:
    """Load one file of a release (default: the shipped one in data/tinyworld).
    With ``verify`` the file's SHA-256 must match the release's manifest.json."""
    if split not in SCHEMAS:
        raise ValueError(f"unknown TinyWorld split {split!r}: choose one of {SPLITS}")
    data_dir = Path(data_dir) if data_dir is not None else RELEASE_DIR
    path = data_dir / f"{split}.jsonl"
    if not path.exists():
        raise FileNotFoundError(f"{path} is missing: regenerate it with "
                                f"`python -m minillm.tinyworld --out {data_dir}`")
    if verify:
        manifest = json.loads((data_dir / "manifest.json").read_text())
        digest = sha256(path)
        if digest != manifest["files"][path.name]["sha256"]:
            raise ValueError(f"{path} has SHA-256 {digest[:12]}..., but manifest.json says "
                             f"{manifest['files'][path.name]['sha256'][:12]}...: the file was modified")
    return load_jsonl(path, SCHEMAS[split])


def load_people(data_dir: str | Path | None = None) -> list[Person]:
    """The shipped people as Person objects."""
    return [Person(**{k: r[k] for k in ("name", "split", "pronoun") + ATTRIBUTES})
            for r in load("people", data_dir)]


def record_text(record: dict) -> str:
    """All the text a model reads in one record of any file, joined by newlines."""
    parts = []
    for key in ("text", "question", "trace", "chosen", "rejected"):
        if isinstance(record.get(key), str):
            parts.append(record[key])
    for key in ("prompt", "messages"):
        parts.extend(m["content"] for m in record.get(key, []))
    return "\n".join(parts)


def sha256(path: str | Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def write_release(out_dir: str | Path = RELEASE_DIR, config: TinyWorldConfig = TinyWorldConfig()) -> dict:
    """Generate every file into ``out_dir`` plus manifest.json (counts and SHA-256);
    return the manifest."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    manifest = {"generator": "python -m minillm.tinyworld", "config": asdict(config), "files": {}}
    for split, records in generate_files(config).items():
        path = out_dir / f"{split}.jsonl"
        text = "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records)
        path.write_bytes(text.encode("utf-8"))
        manifest["files"][path.name] = {"records": len(records), "bytes": len(text.encode()),
                                        "sha256": sha256(path)}
    (out_dir / "manifest.json").write_text(json.dumps(manifest, indent=1) + "\n", encoding="utf-8")
    (out_dir / "README.md").write_text(readme(manifest), encoding="utf-8")
    return manifest


def readme(manifest: dict) -> str:
    """The release's README.md: what it is, how to regenerate it, what each file holds."""
    rows = "\n".join(f"| `{name}` | {info['records']} | {info['bytes']} |"
                      for name, info in manifest["files"].items())
    return ("# TinyWorld\n\nThe book's synthetic world of invented people, generated by "
            "`minillm/tinyworld.py` (whose docstring documents every file's schema) and described in "
            "the datasheet notebook `chapters/02_tokenization/03_tinyworld.ipynb`. Regenerate with\n\n"
            f"    {manifest['generator']}\n\n"
            "`manifest.json` holds the configuration and the SHA-256 of every file.\n\n"
            f"| file | records | bytes |\n|---|---|---|\n{rows}\n")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m minillm.tinyworld",
                                     description="Regenerate the TinyWorld release.")
    parser.add_argument("--out", type=Path, default=RELEASE_DIR, help="output folder")
    for f in fields(TinyWorldConfig):
        if f.name != "split_fractions":
            parser.add_argument("--" + f.name.replace("_", "-"), type=type(f.default), default=f.default)
    parser.add_argument("--split-fractions", type=float, nargs=4, default=TinyWorldConfig.split_fractions,
                        metavar=("SFT", "HELDOUT", "UNKNOWN_DPO", "UNKNOWN_EVAL"))
    args = vars(parser.parse_args(argv))
    out = args.pop("out")
    manifest = write_release(out, TinyWorldConfig(**args))
    for name, info in manifest["files"].items():
        print(f"{name:24s} {info['records']:6d} records {info['bytes']:9d} bytes")
    print(f"wrote {len(manifest['files'])} files and manifest.json to {out}")
    return 0


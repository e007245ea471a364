"""The student edition and the nbgrader course, generated from the exercise pairs.

Every exercise in the book is a pair of code cells (``exercise_pairs``): a
solution cell that defines a function with its body between nbgrader's
``### BEGIN SOLUTION`` / ``### END SOLUTION`` markers, and the next code cell,
which calls a ``minillm.exercises.check_*`` checker. From those pairs this
module writes nbgrader's cell metadata:

- the solution cell: an autograded answer (``solution: true``), id = the function;
- the check cell: an autograded test, read-only, worth ``points`` (default 1,
  or ``metadata.minillm.points`` on the solution cell);
- the last Markdown cell before the solution (the exercise's prompt): read-only.

``python -m minillm.book student [SRC] [DST]`` writes two things under DST:

- ``DST/<chapter>/<notebook>.ipynb``: the handout, solutions replaced by
  ``raise NotImplementedError`` (plus the metadata, so it can be collected as is);
- ``DST/nbgrader/``: an nbgrader course directory: ``source/<chapter>/`` holds
  the notebooks *with* solutions and metadata, and ``nbgrader_config.py``; there
  ``nbgrader generate_assignment <chapter>`` and ``nbgrader autograde <chapter>``
  work unchanged (nbgrader >= 0.9).

Only nbformat is needed (it comes with the book environment); nbgrader itself
is needed only to grade.
"""
from __future__ import annotations

import re
from pathlib import Path

import nbformat

from minillm.book.notebooks import BEGIN, END, exercise_pairs

NBGRADER_SCHEMA = 3
_DEF = re.compile(r"^\s*def\s+([A-Za-z_]\w*)\s*\(", re.M)

NBGRADER_CONFIG = '''\
# nbgrader configuration for the minillm book's exercises (written by
# `python -m minillm.book student`). Run nbgrader from this folder:
#   nbgrader generate_assignment 01_language_models
#   nbgrader autograde 01_language_models
c = get_config()  # noqa: F821
c.CourseDirectory.root = "."
# The notebooks load data and train small models before the exercises.
c.ExecutePreprocessor.timeout = 1200
c.ClearSolutions.code_stub = {"python": "# YOUR CODE HERE\\nraise NotImplementedError()"}
'''


def function_name(source: str) -> str | None:
    """The first function a solution cell defines (the one the reader writes)."""
    m = _DEF.search(source)
    return m.group(1) if m else None


def exercises(nb) -> list[dict]:
    """One record per exercise of a notebook: cell indices, function, prompt, sizes."""
    out = []
    for number, (solution, check) in enumerate(exercise_pairs(nb), start=1):
        cell = nb.cells[solution]
        name = function_name(cell.source) or f"exercise_{number}"
        prompt = next((i for i in range(solution - 1, -1, -1) if nb.cells[i].cell_type == "markdown"), None)
        lines = cell.source.splitlines()
        inside = [k for k, line in enumerate(lines) if line.strip() in (BEGIN, END)]
        body = [line for line in lines[inside[0] + 1: inside[-1]] if line.strip() and not line.strip().startswith("#")] \
            if len(inside) >= 2 else []
        meta = cell.metadata.get("minillm", {})
        checker = re.search(r"\b(check_\w+)\s*\(", nb.cells[check].source) if check is not None else None
        out.append({"number": number, "solution": solution, "check": check, "prompt": prompt,
                    "function": name, "signature": _signature(cell.source, name),
                    "checker": checker.group(1) if checker else None,
                    "solution_lines": len(body), "points": int(meta.get("points", 1)),
                    "difficulty": meta.get("difficulty")})
    return out


def _signature(source: str, name: str) -> str:
    m = re.search(rf"^\s*def\s+{re.escape(name)}\s*\((.*?)\)\s*(->[^:]*)?:", source, re.M | re.S)
    return f"{name}({' '.join(m.group(1).split())})" if m else name


def _nbgrader(grade_id: str, *, solution=False, grade=False, locked=False, points=None) -> dict:
    meta = {"grade": grade, "grade_id": grade_id, "locked": locked, "schema_version": NBGRADER_SCHEMA,
            "solution": solution, "task": False}
    if grade:
        meta["points"] = points
    return meta


def add_nbgrader_metadata(nb):
    """Mark each exercise's prompt (read-only), solution (autograded answer) and
    check (autograded test with points) in place; return ``nb``."""
    used: set[str] = set()
    for ex in exercises(nb):
        name = ex["function"]
        while name in used:
            name += "_"
        used.add(name)
        nb.cells[ex["solution"]].metadata["nbgrader"] = _nbgrader(name, solution=True)
        if ex["check"] is not None:
            nb.cells[ex["check"]].metadata["nbgrader"] = _nbgrader(f"check_{name}", grade=True, locked=True,
                                                                   points=ex["points"])
        if ex["prompt"] is not None and "nbgrader" not in nb.cells[ex["prompt"]].metadata:
            nb.cells[ex["prompt"]].metadata["nbgrader"] = _nbgrader(f"prompt_{name}", locked=True)
    return nb


def strip_solutions(source: str) -> str:
    """Replace each BEGIN/END SOLUTION region by ``raise NotImplementedError``
    at the indentation of its BEGIN marker."""
    out, inside = [], False
    for line in source.splitlines():
        stripped = line.strip()
        if stripped == BEGIN:
            indent = line[: len(line) - len(line.lstrip())]
            out.append(f"{indent}raise NotImplementedError  # your code here")
            inside = True
        elif stripped == END:
            inside = False
        elif not inside:
            out.append(line)
    return "\n".join(out)


def instructor_source(nb):
    """A copy of ``nb`` with solutions kept and nbgrader metadata added: what
    nbgrader's ``source/`` folder holds. Toggle-only metadata is dropped."""
    nb = nbformat.from_dict(nb)
    for solution, _ in exercise_pairs(nb):
        cell = nb.cells[solution]
        cell.metadata["tags"] = [t for t in cell.metadata.get("tags", []) if t != "hide-input"]
        cell.metadata.pop("mystnb", None)
    return add_nbgrader_metadata(nb)


def student_edition(nb):
    """A copy of ``nb`` with solutions removed, exercise outputs cleared, and
    nbgrader metadata added."""
    nb = instructor_source(nb)
    for solution, check in exercise_pairs(nb):
        cell = nb.cells[solution]
        cell.source = strip_solutions(cell.source)
        cell.outputs, cell.execution_count = [], None
        if check is not None:  # the check cell's stored "✓ correct" would mislead
            nb.cells[check].outputs, nb.cells[check].execution_count = [], None
    return nb


def _notebooks(src: Path) -> list[Path]:
    return sorted(p for p in Path(src).rglob("*.ipynb") if ".ipynb_checkpoints" not in p.parts)


def write_student_edition(src: Path, dst: Path) -> list[Path]:
    """Write the handout (every notebook under ``src``) to ``dst``."""
    written = []
    for nb_path in _notebooks(src):
        out = Path(dst) / nb_path.relative_to(src)
        out.parent.mkdir(parents=True, exist_ok=True)
        nb = student_edition(nbformat.read(nb_path, as_version=4))
        nbformat.validate(nb)
        nbformat.write(nb, out)
        written.append(out)
    return written


def write_nbgrader_course(src: Path, course: Path, chapters: list[str] | None = None) -> list[Path]:
    """Write an nbgrader course directory: ``course/source/<chapter>/*.ipynb``
    (one assignment per chapter that has exercises) and ``nbgrader_config.py``."""
    course = Path(course)
    written = []
    for nb_path in _notebooks(src):
        rel = nb_path.relative_to(src)
        if len(rel.parts) < 2 or (chapters and rel.parts[0] not in chapters):
            continue
        nb = nbformat.read(nb_path, as_version=4)
        if not exercise_pairs(nb):
            continue
        out = course / "source" / rel
        out.parent.mkdir(parents=True, exist_ok=True)
        nb = instructor_source(nb)
        nbformat.validate(nb)
        nbformat.write(nb, out)
        written.append(out)
    course.mkdir(parents=True, exist_ok=True)
    (course / "nbgrader_config.py").write_text(NBGRADER_CONFIG)
    return written


# ----------------------------------------------------------------- exercise index

def difficulty(ex: dict) -> str:
    """The exercise's difficulty: ``metadata.minillm.difficulty`` on its solution
    cell when set, else estimated from the solution's length (code lines)."""
    if ex["difficulty"]:
        return str(ex["difficulty"])
    n = ex["solution_lines"]
    return "short" if n <= 3 else "medium" if n <= 10 else "long"


def exercise_index(root: Path) -> str:
    """The Markdown of book/exercises.md: every exercise of every notebook."""
    from minillm.book.notebooks import chapter_notebooks, toc_files

    listed = set(toc_files(root / "_toc.yml"))
    rows = []
    for path in chapter_notebooks(root):
        if path.relative_to(root).with_suffix("").as_posix() not in listed:
            continue  # not in the book yet
        nb = nbformat.read(path, as_version=4)
        title = next((line[2:].strip() for c in nb.cells if c.cell_type == "markdown"
                      for line in c.source.splitlines() if line.startswith("# ")), path.stem)
        rel = path.relative_to(root).with_suffix("").as_posix()
        for ex in exercises(nb):
            rows.append(f"| {{doc}}`{title} <../{rel}>` | {ex['number']} | `{ex['signature']}` | "
                        f"{difficulty(ex)} ({ex['solution_lines']}) | `{ex['checker']}` |")
    return INDEX_HEADER + "\n".join(rows) + "\n"


INDEX_HEADER = """\
# Exercise index

<!-- Generated by `python -m minillm.book exercises` from the notebooks; do not
edit by hand (a test compares this page with the generator's output). -->

Every exercise in the book: the notebook it ends, its number there, the
function the student writes, and the checker that grades it (in
`minillm.exercises`). Difficulty is estimated from the length of the book's
solution, in code lines (in brackets): *short* (up to 3), *medium* (up to 10),
*long* (more); a notebook may set it explicitly in the solution cell's
metadata (`"minillm": {"difficulty": ...}`). With nbgrader each check is worth
one point unless the metadata sets `"points"`.

| Notebook | # | Function to write | Difficulty (lines) | Checker |
| --- | ---: | --- | --- | --- |
"""

"""nbgrader grades the book's exercises: nbgrader's own generate_assignment and
autograde, run on a real chapter notebook written by `make student`'s course
writer. The book's solutions score full marks, the unimplemented stubs score
zero, and one known-wrong answer loses exactly the points of its check."""
import os
import subprocess
import sys

import nbformat
import pytest

from minillm import ROOT
from minillm.book.notebooks import BEGIN
from minillm.book.student import exercises, instructor_source, write_nbgrader_course

pytest.importorskip("nbgrader", reason="nbgrader is in the test extra: pip install -e '.[test]'")
from nbgrader.api import Gradebook  # noqa: E402

CHAPTER, NOTEBOOK = "01_language_models", "03_temperature"
SOURCE = ROOT / "chapters" / CHAPTER / f"{NOTEBOOK}.ipynb"
#: A classic mistake in the first exercise: dividing probabilities by T
#: instead of raising them to 1/T and renormalising.
WRONG = {"temper": "def temper(probs, T):\n    return [p / T for p in probs]\n"}


def nbgrader(course, *args):
    # nbgrader runs the `alembic` script of its environment: put the venv first on PATH.
    path = os.pathsep.join([os.path.dirname(sys.executable), os.environ.get("PATH", "")])
    env = {**os.environ, "PATH": path, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    run = subprocess.run([sys.executable, "-m", "nbgrader", *args], cwd=course, env=env,
                         capture_output=True, text=True, timeout=1800)
    assert run.returncode == 0, f"nbgrader {' '.join(args)} failed:\n{run.stdout}\n{run.stderr}"
    return run


def submit(course, student, nb):
    path = course / "submitted" / student / CHAPTER / f"{NOTEBOOK}.ipynb"
    path.parent.mkdir(parents=True, exist_ok=True)
    nbformat.write(nb, path)


def test_course_writer_marks_every_exercise(tmp_path):
    written = write_nbgrader_course(ROOT / "chapters", tmp_path, chapters=[CHAPTER])
    assert written and (tmp_path / "nbgrader_config.py").exists()
    for path in written:
        nb = nbformat.read(path, as_version=4)
        solutions = [c for c in nb.cells if c.metadata.get("nbgrader", {}).get("solution")]
        tests = [c for c in nb.cells if c.metadata.get("nbgrader", {}).get("grade")]
        assert len(solutions) == len(tests) == len(exercises(nb)) > 0
        assert all(BEGIN in c.source for c in solutions)
        assert all(c.metadata["nbgrader"]["locked"] and c.metadata["nbgrader"]["points"] > 0 for c in tests)
        # No solution region may sit in a cell nbgrader does not know as a solution.
        assert not [c for c in nb.cells if BEGIN in c.source and c not in solutions]


@pytest.mark.slow
def test_nbgrader_generate_assignment_and_autograde(tmp_path):
    course = tmp_path / "course"
    source = course / "source" / CHAPTER / f"{NOTEBOOK}.ipynb"
    source.parent.mkdir(parents=True)
    book = instructor_source(nbformat.read(SOURCE, as_version=4))
    nbformat.write(book, source)
    write_nbgrader_course(ROOT / "chapters", course, chapters=["no-such-chapter"])  # the config only

    nbgrader(course, "generate_assignment", CHAPTER, "--force")
    released = nbformat.read(course / "release" / CHAPTER / f"{NOTEBOOK}.ipynb", as_version=4)
    assert BEGIN not in nbformat.writes(released)

    ex = exercises(book)
    assert WRONG.keys() <= {e["function"] for e in ex}
    solved = nbformat.from_dict(released)
    wrong = nbformat.from_dict(released)
    for e in ex:
        solved.cells[e["solution"]].source = book.cells[e["solution"]].source
        wrong.cells[e["solution"]].source = WRONG.get(e["function"], book.cells[e["solution"]].source)
    submit(course, "solutions", solved)
    submit(course, "stubs", released)
    submit(course, "wrong", wrong)

    nbgrader(course, "autograde", CHAPTER, "--force")

    total = sum(e["points"] for e in ex)
    lost = sum(e["points"] for e in ex if e["function"] in WRONG)
    with Gradebook(f"sqlite:///{course / 'gradebook.db'}") as gb:
        scores = {s: gb.find_submission(CHAPTER, s).score for s in ("solutions", "stubs", "wrong")}
        max_score = gb.find_submission(CHAPTER, "solutions").max_score
        per_check = {e["function"]: gb.find_grade(f"check_{e['function']}", NOTEBOOK, CHAPTER, "wrong").score
                     for e in ex}
    print(f"nbgrader scores out of {max_score}: {scores}")
    assert max_score == total
    assert scores == {"solutions": total, "stubs": 0, "wrong": total - lost}
    assert all(per_check[f] == 0 for f in WRONG)

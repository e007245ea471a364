"""The student edition: solutions become stubs, the notebooks stay valid, and
every checker rejects an unimplemented stub with a helpful message."""
import contextlib
import io

import nbformat
import pytest

from minillm.exercises import ExerciseNotImplemented
from minillm.book.notebooks import BEGIN, END, chapter_notebooks, exercise_pairs
from minillm.book.student import strip_solutions, student_edition, write_student_edition


def test_strip_solutions_keeps_the_signature_and_indentation():
    source = f"def f(x):\n    \"\"\"Doc.\"\"\"\n    {BEGIN}\n    y = x + 1\n    return y\n    {END}\n"
    assert strip_solutions(source) == 'def f(x):\n    """Doc."""\n    raise NotImplementedError  # your code here'


NOTEBOOKS = [p for p in chapter_notebooks() if BEGIN in p.read_text()]


def test_the_book_has_exercises():
    assert NOTEBOOKS, "no notebook has exercises"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_student_edition_is_valid_and_checkers_reject_stubs(path):
    original = nbformat.read(path, as_version=4)
    stripped = student_edition(original)
    nbformat.validate(stripped)
    assert BEGIN not in nbformat.writes(stripped)
    pairs = exercise_pairs(original)
    assert pairs
    for solution_index, check_index in pairs:
        solution, check = original.cells[solution_index], original.cells[check_index]
        stub, stub_check = stripped.cells[solution_index], stripped.cells[check_index]
        assert "raise NotImplementedError" in stub.source and stub_check.source == check.source
        # The book's solution passes its check ...
        namespace: dict = {}
        with contextlib.redirect_stdout(io.StringIO()) as out:
            exec(solution.source, namespace)
            exec(check.source, namespace)
        assert "✓" in out.getvalue(), f"{path.name}: a solution did not pass its check"
        # ... and the student's stub is rejected with advice, not a bare traceback.
        namespace = {}
        exec(stub.source, namespace)
        with pytest.raises(ExerciseNotImplemented, match="not implemented yet"):
            with contextlib.redirect_stdout(io.StringIO()):
                exec(stub_check.source, namespace)


def test_write_student_edition(tmp_path):
    written = write_student_edition(chapter_notebooks()[0].parents[1], tmp_path)
    assert len(written) == len(chapter_notebooks())
    for path in written:
        nbformat.validate(nbformat.read(path, as_version=4))

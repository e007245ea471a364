"""Moved: the book tooling is now ``minillm.book`` (python -m minillm.book check|student|execute)."""
from minillm.book.notebooks import *  # noqa: F401,F403
from minillm.book.cli import main
from minillm.book.student import strip_solutions, student_edition, write_student_edition  # noqa: F401

if __name__ == "__main__":
    raise SystemExit(main())

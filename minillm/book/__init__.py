"""Book tooling, kept apart from the concept modules: the notebook checker,
the student edition (with nbgrader metadata), and re-executing notebooks.

    python -m minillm.book check                    # the notebook checker
    python -m minillm.book execute NB.ipynb ...     # re-run and store outputs
    python -m minillm.book student [chapters] [student]   # student edition

Nothing in the concept modules imports this subpackage. Its dependencies
(nbformat, nbclient, pyyaml) come with the ``book`` extra (jupyter-book pulls
them in); nbgrader itself is needed only by the test that grades with it.
"""
from minillm.book.notebooks import (BEGIN, END, SETUP_CELL, check_all, check_notebook, chapter_notebooks,
                                    exercise_pairs, execute, toc_files)
from minillm.book.student import strip_solutions, student_edition, write_nbgrader_course, write_student_edition

__all__ = ["BEGIN", "END", "SETUP_CELL", "check_all", "check_notebook", "chapter_notebooks", "exercise_pairs",
           "execute", "strip_solutions", "student_edition", "toc_files", "write_nbgrader_course",
           "write_student_edition"]

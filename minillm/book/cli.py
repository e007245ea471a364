"""The command line of the book tooling: ``python -m minillm.book COMMAND``.

Its own module so that the parts it drives (``notebooks``: the checker and
execution; ``student``: the student edition and the nbgrader course) import
each other in one direction only.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import nbformat

from minillm import ROOT
from minillm.book.notebooks import *  # noqa: F401,F403
from minillm.book.notebooks import check_all, execute


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m minillm.book", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    ck = sub.add_parser("check", help="check every notebook against the book's conventions")
    ck.add_argument("--style", action="store_true",
                    help="also list, cell by cell, code over 88 columns, output lines over 88 "
                         "characters and tables printed as text (the check fails on all "
                         "three)")
    xi = sub.add_parser("exercises", help="write the exercise index page (book/exercises.md)")
    xi.add_argument("out", type=Path, nargs="?", default=ROOT / "book" / "exercises.md")
    wi = sub.add_parser("widths", help="widest code line and output line per notebook page of the built book")
    wi.add_argument("html", type=Path, nargs="?", default=ROOT / "_build" / "html")
    ex = sub.add_parser("execute", help="execute notebooks in place")
    ex.add_argument("notebooks", nargs="+", type=Path)
    ma = sub.add_parser("math", help="check the built book's math (assets, macros; --render: chromium)")
    ma.add_argument("html", type=Path, nargs="?", default=ROOT / "_build" / "html")
    ma.add_argument("--render", nargs="*", metavar="PAGE",
                    help="also render these pages (default: a few math-heavy ones) in headless chromium")
    st = sub.add_parser("student", help="write the student edition and an nbgrader course")
    st.add_argument("src", type=Path, nargs="?", default=ROOT / "chapters")
    st.add_argument("dst", type=Path, nargs="?", default=ROOT / "student")
    args = parser.parse_args(argv)

    if args.command == "exercises":
        from minillm.book.student import exercise_index

        args.out.write_text(exercise_index(ROOT))
        print(f"wrote {args.out}")
        return 0
    if args.command == "widths":
        from minillm.book.widths import measure

        rows = measure(args.html)
        print(f"{'page':<72} {'code':>5} {'output':>6} {'code>88':>7} {'output>88':>9}")
        for r in rows:
            print(f"{r['page']:<72} {r['code']:>5} {r['output']:>6} {r['code_lines_over_88']:>7} "
                  f"{r['output_lines_over_88']:>9}")
        return 0
    if args.command == "check":
        if args.style:
            from minillm.book.widths import style_notes

            for nb_path in chapter_notebooks():
                for note in style_notes(nbformat.read(nb_path, as_version=4)):
                    print(f"style: {nb_path.relative_to(ROOT)}: {note}")
        problems = check_all()
        print("\n".join(problems) or f"{len(chapter_notebooks())} notebooks follow the conventions")
        return 1 if problems else 0
    if args.command == "execute":
        for path in args.notebooks:
            print(f"executing {path} ...", flush=True)
            execute(path)
        return 0
    if args.command == "math":
        from minillm.book import mathcheck

        problems, counts = mathcheck.static_check(args.html)
        print(", ".join(f"{v} {k}" for k, v in counts.items()) or "no build found")
        if args.render is not None:
            pages = args.render or mathcheck.RENDER_PAGES
            more, results = mathcheck.render_check(args.html, pages)
            problems += more
            for r in results:
                print(f"{r.url}: {r.typeset}/{r.formulas} typeset, {r.errors} errors")
        print("\n".join(problems) or "math: no problems found")
        return 1 if problems else 0
    from minillm.book.student import write_nbgrader_course, write_student_edition

    written = write_student_edition(args.src, args.dst)
    course = write_nbgrader_course(args.src, args.dst / "nbgrader")
    print(f"wrote {len(written)} student notebooks under {args.dst}, and an nbgrader course with "
          f"{len(course)} source notebooks under {args.dst / 'nbgrader'}")
    return 0


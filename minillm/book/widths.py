"""How wide the book's code and outputs are, measured where readers see them.

    python -m minillm.book widths [_build/html]    # widest line per notebook page
    python -m minillm.book check --style            # the same rules, per notebook cell

DESIGN asks that nothing scroll sideways: code cells within 88 columns, text
outputs within 88 characters a line, and tables shown as HTML (a pandas
DataFrame displayed), not printed as aligned text. The limit was measured in
the built book: at a 1400 px window the theme's content column gives a cell's
<pre> 768 px (772 px for outputs, 750 px in a solution's toggle), less 32 px of
padding; code keeps white-space ``pre`` and would scroll sideways (text
outputs wrap a longer line, ``pre-wrap``: only the exercise checkers'
verdicts, which the checker exempts, are longer).
At the theme's 14 px monospace (8.43 px a character) only 87 characters fit,
so ``book/_static/figures.css`` sets cell code and output in 13 px (7.83 px a
character, JupyterLab's own code size): 88 characters then take 689 px and
fit with room to spare, also in a solution's toggle.

``measure`` reads the built HTML (the text inside each ``cell_input`` and
``cell_output`` <pre>), so it measures what the page shows. ``wide_output_lines``
and ``printed_table`` read a notebook cell's stored outputs the way the page
shows them; the checker (``notebooks.check_notebook``, run by ``make test``)
fails on both, and ``style_notes`` lists them for ``check --style``.
"""
from __future__ import annotations

import re
from html.parser import HTMLParser
from pathlib import Path

MAX_CODE_COLUMNS = 88  # the limit the checker (notebooks.check_notebook) enforces
MAX_OUTPUT_COLUMNS = 88  # a text output line, as the page shows it (see the docstring)
#: The fewest consecutive aligned lines that ``printed_table`` calls a table.
MIN_TABLE_LINES = 3
#: minillm.exercises prints its verdict on one line ("✓ correct: <why>"); that
#: line is exempt from MAX_OUTPUT_COLUMNS until minillm/exercises wraps it
#: (the checks live outside the book tooling; see tests/test_notebooks.py).
EXERCISE_VERDICT = "✓ correct"

_FIELD = re.compile(r"\S+(?: \S+)*")  # text between runs of two or more spaces
_OPTION = re.compile(r"\s*--?[A-Za-z]")  # "  --device DEVICE   cpu or cuda" in --help text


def visible_text(cell) -> list[str]:
    """The text outputs of a code cell that the HTML page shows, in order:
    streams (stdout and stderr; consecutive ones of a kind merged, as the book's
    ``nb_merge_streams`` shows them), and the plain text of a result or display that
    has no richer form (an HTML table or a figure is shown instead of its
    text/plain). Glued values (``glue(..., display=False)``) are not shown."""
    texts, last_stream = [], None
    for out in cell.get("outputs", []):
        kind = out.get("output_type")
        if kind == "stream":  # the book merges consecutive streams (nb_merge_streams)
            if last_stream == out.get("name"):
                texts[-1] += out.get("text", "")
            else:
                texts.append(out.get("text", ""))
            last_stream = out.get("name")
            continue
        last_stream = None
        if kind in ("execute_result", "display_data"):
            if "scrapbook" in out.get("metadata", {}):
                continue
            data = out.get("data", {})
            if set(data) == {"text/plain"}:
                text = data["text/plain"]
                texts.append("".join(text) if isinstance(text, list) else text)
    return texts


def output_lines(cell) -> list[str]:
    """Every line of a cell's visible text output (``visible_text``)."""
    return [line for text in visible_text(cell) for line in text.splitlines()]


def wide_output_lines(cell, limit: int = MAX_OUTPUT_COLUMNS) -> list[tuple[int, int, str]]:
    """(line number from 1, width, line) of each visible output line wider than
    ``limit`` characters, except minillm.exercises' verdicts (EXERCISE_VERDICT)."""
    return [(k, len(line), line) for k, line in enumerate(output_lines(cell), start=1)
            if len(line.rstrip()) > limit and not line.startswith(EXERCISE_VERDICT)]


def _boundaries(line: str) -> set[tuple[str, int]] | None:
    """Where the fields after the first start and end, for a line of two or
    more fields separated by runs of 2+ spaces; None for any other line: one
    field, an array/tensor repr (its brackets mark it as data) or a command's
    option in ``--help`` text (it starts with "-")."""
    if "[" in line or "]" in line or _OPTION.match(line):
        return None
    fields = list(_FIELD.finditer(line))
    if len(fields) < 2:
        return None
    return {b for f in fields[1:] for b in (("start", f.start()), ("end", f.end()))}


def printed_table(cell, min_lines: int = MIN_TABLE_LINES) -> tuple[int, int] | None:
    """The first run of ``min_lines`` or more consecutive output lines that
    line up in columns, as (first line, last line), numbered from 1; None if
    the cell prints no such run. Lines "line up" when each has two or more
    fields separated by two or more spaces and shares a field's start or end
    column (beyond the first field) with the line before: what
    ``DataFrame.to_string()``, ``tabulate`` or padded f-strings print."""
    lines = output_lines(cell)
    run_start, previous = None, None
    for k, line in enumerate(lines + [""], start=1):
        here = _boundaries(line) if k <= len(lines) else None
        if here and previous and here & previous:
            pass  # the run continues
        else:
            if run_start is not None and k - run_start >= min_lines:
                return run_start, k - 1
            run_start = k if here else None
        previous = here
    return None


class _Pre(HTMLParser):
    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.stack: list[str] = []
        self.code: list[str] = []
        self.output: list[str] = []
        self._buf: list[str] | None = None
        self._kind = None

    def handle_starttag(self, tag, attrs):
        classes = (dict(attrs).get("class") or "").split()
        kind = "input" if "cell_input" in classes else "output" if "cell_output" in classes else None
        self.stack.append(kind or "")
        if tag == "pre" and self._buf is None:
            inside = [k for k in self.stack if k]
            if inside:
                self._buf, self._kind = [], inside[-1]

    def handle_endtag(self, tag):
        if tag == "pre" and self._buf is not None:
            text = "".join(self._buf)
            (self.code if self._kind == "input" else self.output).append(text)
            self._buf = None
        if self.stack:
            self.stack.pop()

    def handle_data(self, data):
        if self._buf is not None:
            self._buf.append(data)


def _widest(blocks: list[str]) -> tuple[int, str]:
    lines = [line for block in blocks for line in block.splitlines()]
    if not lines:
        return 0, ""
    line = max(lines, key=len)
    return len(line), line


def measure(html_root: Path) -> list[dict]:
    """Per notebook page: widest code line, widest output line, and how many
    code and output lines exceed 88 columns."""
    rows = []
    for page in sorted(Path(html_root).glob("chapters/**/*.html")):
        if page.name == "index.html":
            continue
        p = _Pre()
        p.feed(page.read_text(encoding="utf-8"))
        code_w, code_line = _widest(p.code)
        out_w, out_line = _widest(p.output)
        over = sum(len(line) > MAX_CODE_COLUMNS for block in p.code for line in block.splitlines())
        out_over = sum(len(line) > MAX_OUTPUT_COLUMNS for block in p.output for line in block.splitlines())
        rows.append({"page": str(page.relative_to(html_root)), "code": code_w, "output": out_w,
                     "code_lines_over_88": over, "output_lines_over_88": out_over,
                     "widest_code_line": code_line, "widest_output_line": out_line})
    return rows


def style_notes(nb) -> list[str]:
    """Notes for ``check --style``: code lines over 88 columns, output lines
    over 88 characters and tables printed as text (all three fail the checker)."""
    notes = []
    code_cells = [c for c in nb.cells if c.cell_type == "code"]
    for i, cell in enumerate(code_cells, start=1):
        long = [k for k, line in enumerate(cell.source.splitlines(), start=1) if len(line) > MAX_CODE_COLUMNS]
        if long:
            notes.append(f"code cell {i}: {len(long)} line(s) over {MAX_CODE_COLUMNS} columns "
                         f"(line {long[0]}: {len(cell.source.splitlines()[long[0] - 1])})")
        wide = wide_output_lines(cell)
        if wide:
            k, width, _ = wide[0]
            notes.append(f"code cell {i}: {len(wide)} output line(s) over {MAX_OUTPUT_COLUMNS} "
                         f"characters (output line {k}: {width})")
        table = printed_table(cell)
        if table:
            notes.append(f"code cell {i}: prints a table as text (output lines {table[0]}-{table[1]}): "
                         "display it as HTML")
    return notes

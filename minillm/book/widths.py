"""How wide the book's code and outputs are, measured where readers see them.

    python -m minillm.book widths [_build/html]    # widest line per notebook page
    python -m minillm.book check --style            # 88-column / printed-table report

DESIGN asks for code cells within 88 columns and tables shown as HTML, not
printed, so that nothing scrolls sideways. ``measure`` reads the built HTML
(the text inside each ``cell_input`` and ``cell_output`` <pre>), so it measures
what the page shows, stored outputs included. ``style_notes`` reports the same
two things from the notebooks themselves; the checker (``notebooks.check_notebook``,
run by ``make test``) fails on code over 88 columns, while printed tables stay a
report (the pattern also matches a few aligned lines that are not tables).
"""
from __future__ import annotations

import re
from html.parser import HTMLParser
from pathlib import Path

MAX_CODE_COLUMNS = 88  # the limit the checker (notebooks.check_notebook) enforces
_TABLE_SOURCE = re.compile(r"\.to_string\(|\btabulate\(|print\(.*\{[^}]*:[<>^]\d+")
_COLUMNS = re.compile(r"\S\s{2,}\S.*\S\s{2,}\S")


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
    code lines exceed 88 columns."""
    rows = []
    for page in sorted(Path(html_root).glob("chapters/**/*.html")):
        if page.name == "index.html":
            continue
        p = _Pre()
        p.feed(page.read_text(encoding="utf-8"))
        code_w, code_line = _widest(p.code)
        out_w, out_line = _widest(p.output)
        over = sum(len(line) > MAX_CODE_COLUMNS for block in p.code for line in block.splitlines())
        rows.append({"page": str(page.relative_to(html_root)), "code": code_w, "output": out_w,
                     "code_lines_over_88": over, "widest_code_line": code_line, "widest_output_line": out_line})
    return rows


def style_notes(nb) -> list[str]:
    """Notes for ``check --style``: code lines over 88 columns (which the
    checker also fails on), and tables printed as text (a report only)."""
    notes = []
    code_cells = [c for c in nb.cells if c.cell_type == "code"]
    for i, cell in enumerate(code_cells, start=1):
        long = [k for k, line in enumerate(cell.source.splitlines(), start=1) if len(line) > MAX_CODE_COLUMNS]
        if long:
            notes.append(f"code cell {i}: {len(long)} line(s) over {MAX_CODE_COLUMNS} columns "
                         f"(line {long[0]}: {len(cell.source.splitlines()[long[0] - 1])})")
        text = "".join(o.get("text", "") for o in cell.get("outputs", []) if o.get("output_type") == "stream")
        aligned = sum(bool(_COLUMNS.search(line)) for line in text.splitlines())
        if _TABLE_SOURCE.search(cell.source) or aligned >= 3:
            notes.append(f"code cell {i}: prints a table as text ({aligned} aligned lines): display it as HTML")
    return notes

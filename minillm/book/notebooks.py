"""Tools that keep the book's notebooks honest (run by ``make test``).

    python -m minillm.book check                 # the notebook checker
    python -m minillm.book execute NB.ipynb ...  # re-run and store outputs
    python -m minillm.book student chapters student   # student edition

The checker enforces DESIGN.md's notebook conventions: every notebook is in
the table of contents (and every entry exists), is stored executed top to
bottom with no errors, never skips a cell under nbval, asserts its claim in any
cell whose output nbval ignores, runs the standard setup cell first (the Colab
one, ``colab_setup_cell``), imports minillm, keeps code within 88 columns
and text outputs within 88 characters a line, shows tables as HTML rather than
printed text (``widths.printed_table``), keeps stored outputs small, and marks
exercises in nbgrader's way.
"""
from __future__ import annotations

import json
import re
from pathlib import Path

import nbformat

from minillm import ROOT
from minillm.book.widths import MAX_CODE_COLUMNS  # 88: code never scrolls sideways
from minillm.book.widths import MAX_OUTPUT_COLUMNS, printed_table, wide_output_lines

def repository_url(config_path: Path = ROOT / "_config.yml") -> str:
    """The book's repository URL: it lives in one place, ``_config.yml``
    (``repository.url``), from which the launch buttons, the README and the
    notebooks' setup cell derive."""
    import yaml

    url = (yaml.safe_load(config_path.read_text()).get("repository") or {}).get("url")
    if not url:
        raise ValueError(f"{config_path}: repository.url is not set")
    return url.rstrip("/")


REPO_URL = repository_url()

def colab_setup_cell(repo_url: str | None = None) -> str:
    """The first code cell of every notebook (``SETUP_CELL``): on Colab it
    clones and installs the book and stops with a clear message if either step
    fails, instead of the confusing ``ModuleNotFoundError: minillm`` that a
    silent failure gave; elsewhere it only seeds and picks the device. It
    prints nothing, so its stored output is empty."""
    url = (repo_url or REPO_URL).rstrip("/")
    return f"""\
# Setup: on Colab, fetch and install the book's code; then seeds, plots, device.
import sys
if "google.colab" in sys.modules:
    import subprocess
    REPO = "{url}"
    steps = [["git", "clone", "--quiet", "--depth", "1", REPO, "/content/minillm"],
             [sys.executable, "-m", "pip", "install", "-q", "-e", "/content/minillm"]]
    for step in steps:
        run = subprocess.run(step, capture_output=True, text=True)
        cloned = step[0] == "git" and "already exists" in run.stderr
        if run.returncode != 0 and not cloned:
            raise RuntimeError(f"Colab setup failed: {{' '.join(step)}}\\n"
                               f"{{run.stderr[-2000:]}}\\nCheck that {{REPO}} is "
                               "reachable, then re-run this cell.")
    sys.path.insert(0, "/content/minillm")
import minillm
DEVICE = minillm.setup(seed=0)"""


#: The first code cell of every notebook, character for character.
SETUP_CELL = colab_setup_cell()

BEGIN, END = "### BEGIN SOLUTION", "### END SOLUTION"
#: Cell metadata that labels the HTML book's toggle over a solution.
SOLUTION_TOGGLE = {"code_prompt_show": "Show solution", "code_prompt_hide": "Hide solution"}
IGNORE_TAGS = {"nbval-ignore-output"}
FORBIDDEN = re.compile(r"nbval[-_]skip", re.IGNORECASE)
MAX_OUTPUT_BYTES = 1_000_000  # one output (a figure is typically 30-100 kB)
MAX_NOTEBOOK_BYTES = 3_000_000


def toc_files(toc_path: Path = ROOT / "_toc.yml") -> list[str]:
    """Every file listed in the Jupyter Book table of contents (no suffix)."""
    import yaml

    def walk(node):
        if isinstance(node, dict):
            for key, value in node.items():
                if key in ("root", "file"):
                    yield str(value)
                else:
                    yield from walk(value)
        elif isinstance(node, list):
            for item in node:
                yield from walk(item)

    return list(walk(yaml.safe_load(toc_path.read_text())))


def chapter_notebooks(root: Path = ROOT) -> list[Path]:
    return sorted(p for p in (root / "chapters").rglob("*.ipynb") if ".ipynb_checkpoints" not in p.parts)


def _source_ignored(cell) -> bool:
    tags = set(cell.get("metadata", {}).get("tags", []))
    return bool(tags & IGNORE_TAGS) or "NBVAL_IGNORE_OUTPUT" in cell.source


def check_notebook(path: Path) -> list[str]:
    """Return the list of convention violations in one notebook (empty = fine)."""
    problems: list[str] = []
    raw = path.read_bytes()
    if len(raw) > MAX_NOTEBOOK_BYTES:
        problems.append(f"file is {len(raw)/1e6:.1f} MB (limit {MAX_NOTEBOOK_BYTES/1e6:.0f} MB)")
    text = raw.decode()
    nb = nbformat.reads(text, as_version=4)
    try:
        nbformat.validate(nb)
    except nbformat.ValidationError as err:
        problems.append(f"invalid notebook: {err.message}")
    if nb.metadata.get("kernelspec", {}).get("name") != "python3":
        problems.append("kernelspec name must be 'python3'")
    if FORBIDDEN.search(text):
        problems.append("uses nbval-skip / NBVAL_SKIP: every cell must be tested")

    code = [c for c in nb.cells if c.cell_type == "code"]
    if not code or code[0].source != SETUP_CELL:
        problems.append("first code cell must be the standard setup cell (minillm.book.SETUP_CELL, "
                        "made by minillm.book.notebooks.colab_setup_cell())")
    if not any(re.search(r"^\s*(import minillm|from minillm)", c.source, re.M) for c in code):
        problems.append("never imports minillm")

    executed = any(c.execution_count is not None for c in code)
    if code and not executed:
        problems.append("is not executed: run it top to bottom (make execute NB=...)")
    for i, cell in enumerate(code, start=1):
        where = f"code cell {i}"
        if not cell.source.strip():
            problems.append(f"{where} is empty (delete it)")
        long = [(k, len(line)) for k, line in enumerate(cell.source.splitlines(), start=1)
                if len(line) > MAX_CODE_COLUMNS]
        if long:
            k, width = long[0]
            problems.append(f"{where} has {len(long)} line(s) over {MAX_CODE_COLUMNS} columns "
                            f"(line {k}: {width}): wrap them")
        if executed and cell.execution_count != i:
            problems.append(f"{where} has execution_count {cell.execution_count}, expected {i}: "
                            "re-run the notebook top to bottom (make execute NB=...)")
        for out in cell.get("outputs", []):
            if out.output_type == "error":
                problems.append(f"{where} has a stored error: {out.get('ename')}: {out.get('evalue')}")
            if out.output_type == "stream" and out.name == "stderr" and "Traceback" in out.text:
                problems.append(f"{where} printed a traceback to stderr")
            size = len(json.dumps(out))
            if size > MAX_OUTPUT_BYTES:
                problems.append(f"{where} stores a {size/1e6:.1f} MB output (limit {MAX_OUTPUT_BYTES/1e6:.0f} MB)")
        problems.extend(f"{where}: {p}" for p in output_fit_problems(cell))
        if _source_ignored(cell) and not re.search(r"\bassert\b", cell.source):
            problems.append(f"{where} ignores its output under nbval but asserts nothing")
        if END in cell.source and BEGIN not in cell.source:
            problems.append(f"{where}: unbalanced ### BEGIN SOLUTION / ### END SOLUTION markers")
    problems.extend(glue_problems(nb))
    for solution, check in exercise_pairs(nb):
        where = f"code cell {code.index(nb.cells[solution]) + 1}"
        problems.extend(f"{where}: {p}" for p in _check_solution_cell(nb.cells[solution]))
        if check is None or "check_" not in nb.cells[check].source:
            problems.append(f"{where} is an exercise but the next code cell calls no minillm.exercises checker")
    return problems


def glue_problems(nb) -> list[str]:
    """Glued values: a key glued twice (myst-nb warns, and the -W build fails)
    and a ``{glue:text}`key``` in Markdown that no cell glued (it would render
    as an error in the page)."""
    glued: dict[str, int] = {}
    for out in (o for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", [])):
        name = out.get("metadata", {}).get("scrapbook", {}).get("name")
        if name:
            glued[name] = glued.get(name, 0) + 1
    problems = [f"glue key {name!r} is glued {n} times" for name, n in glued.items() if n > 1]
    used = {m for c in nb.cells if c.cell_type == "markdown"
            for m in re.findall(r"\{glue(?::[a-z]+)?\}`([^`:]+)", c.source)}
    problems += [f"Markdown uses glue key {name!r}, which no cell glues" for name in sorted(used - set(glued))]
    return problems


def output_fit_problems(cell) -> list[str]:
    """What in a code cell's shown text output would scroll sideways or belongs
    in an HTML table: each output line wider than MAX_OUTPUT_COLUMNS (by its
    line number in the cell's text output), and a table printed as text."""
    problems = []
    for k, width, line in wide_output_lines(cell):
        problems.append(f"output line {k} is {width} characters wide (limit {MAX_OUTPUT_COLUMNS}): "
                        f"{line[:40]!r}...: wrap it (textwrap) or print less per line")
    table = printed_table(cell)
    if table:
        first, last = table
        problems.append(f"output lines {first}-{last} are a table printed as aligned text: build a "
                        "pandas DataFrame (floats rounded) and display it, so the page shows HTML")
    return problems


def exercise_pairs(nb) -> list[tuple[int, int | None]]:
    """Indices into ``nb.cells`` of each exercise: (solution cell, the next code
    cell, which must call its checker; None if there is none). The indices hold
    in the student edition too, whose solution cells no longer contain BEGIN."""
    code = [i for i, c in enumerate(nb.cells) if c.cell_type == "code"]
    return [(i, code[k + 1] if k + 1 < len(code) else None)
            for k, i in enumerate(code) if BEGIN in nb.cells[i].source]


def _check_solution_cell(cell) -> list[str]:
    lines = cell.source.splitlines()
    begins = [k for k, l in enumerate(lines) if l.strip() == BEGIN]
    ends = [k for k, l in enumerate(lines) if l.strip() == END]
    if len(begins) != len(ends) or not begins or any(b >= e for b, e in zip(begins, ends)):
        return ["unbalanced ### BEGIN SOLUTION / ### END SOLUTION markers"]
    problems = []
    if not lines[0].startswith(("def ", "class ", "import ", "from ", "#")):
        problems.append("an exercise cell must define the function the reader writes")
    if "hide-input" not in cell.get("metadata", {}).get("tags", []):
        problems.append("solution cells are tagged 'hide-input' so the HTML book hides them behind a toggle")
    if cell.get("metadata", {}).get("mystnb") != SOLUTION_TOGGLE:
        problems.append(f"solution cells carry the metadata mystnb={SOLUTION_TOGGLE} (the toggle's label)")
    return problems


def check_all(root: Path = ROOT) -> list[str]:
    """Run the checker over the whole book; return 'path: problem' lines."""
    problems = []
    listed = toc_files(root / "_toc.yml")
    for entry in listed:
        if not any((root / (entry + ext)).exists() for ext in ("", ".md", ".ipynb")):
            problems.append(f"_toc.yml: entry {entry!r} does not exist")
    listed_set = {str(Path(e).with_suffix("")) for e in listed}
    for nb_path in chapter_notebooks(root):
        rel = nb_path.relative_to(root)
        if str(rel.with_suffix("")) not in listed_set:
            problems.append(f"{rel}: not listed in _toc.yml")
        problems.extend(f"{rel}: {p}" for p in check_notebook(nb_path))
    return problems


# ----------------------------------------------------------------- execute

#: ``np.float64(0.5)``: how NumPy 2 writes a scalar. myst-nb's ``{glue:text}`x:.3f```
#: parses the stored text as a number, so glued values are stored plainly (``0.5``).
NUMPY_SCALAR = re.compile(r"^np\.(?:float|int|uint|bool_|complex)\w*\((.*)\)$")


def plain_glue_values(nb) -> int:
    """Rewrite glued NumPy scalars' stored text to plain numbers (in place);
    returns how many were rewritten. nbval compares them through the same
    rule (tests/nbval_sanitize.cfg), so the notebook still tests strictly."""
    changed = 0
    for cell in nb.cells:
        for out in cell.get("outputs", []):
            if "scrapbook" not in out.get("metadata", {}):
                continue
            data = out.get("data", {})
            for key in [k for k in data if k.endswith("text/plain")]:
                text = "".join(data[key]) if isinstance(data[key], list) else data[key]
                match = NUMPY_SCALAR.match(text or "")
                if match:
                    data[key] = match.group(1)
                    changed += 1
    return changed


def execute(path: Path, timeout: int = 1200) -> None:
    """Run a notebook top to bottom in a fresh kernel and store its outputs
    (glued NumPy scalars as plain numbers, see ``plain_glue_values``)."""
    from nbclient import NotebookClient

    nb = nbformat.read(path, as_version=4)
    nb.metadata["kernelspec"] = {"display_name": "Python 3 (ipykernel)", "language": "python", "name": "python3"}
    client = NotebookClient(nb, timeout=timeout, kernel_name="python3", record_timing=False,
                            resources={"metadata": {"path": str(path.parent)}})
    client.execute()
    for cell in nb.cells:
        cell.metadata.pop("execution", None)
    plain_glue_values(nb)
    nbformat.write(nb, path)

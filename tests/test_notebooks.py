"""The notebook checker: the whole book follows the conventions, and the
checker itself catches each breach it is meant to catch."""
import nbformat
import pytest

from minillm.book import notebooks
from minillm.book.notebooks import SETUP_CELL, check_all, check_notebook


def test_every_notebook_follows_the_conventions():
    problems = check_all()
    assert not problems, "notebook convention breaches:\n" + "\n".join(problems)


def test_the_book_has_notebooks():
    assert len(notebooks.chapter_notebooks()) >= 3


def make_notebook(tmp_path, *sources, tags=None, outputs=None):
    """A stored-executed notebook whose first code cell is the setup cell."""
    cells = [nbformat.v4.new_markdown_cell("# Title")]
    for i, src in enumerate((SETUP_CELL, "import minillm") + sources, start=1):
        cell = nbformat.v4.new_code_cell(src, execution_count=i)
        cells.append(cell)
    if tags:
        cells[-1].metadata["tags"] = tags
    if outputs:
        cells[-1].outputs = outputs
    nb = nbformat.v4.new_notebook(cells=cells)
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    path = tmp_path / "nb.ipynb"
    nbformat.write(nb, path)
    return path


def test_a_good_notebook_passes(tmp_path):
    assert check_notebook(make_notebook(tmp_path, "print(1)")) == []


@pytest.mark.parametrize("source, tags, expected", [
    ("# NBVAL_SKIP\nprint(1)", None, "nbval-skip"),
    ("print(1)", ["nbval-skip"], "nbval-skip"),
    ("print(1)", ["nbval-ignore-output"], "asserts nothing"),
    ("", None, "empty"),
    ("def f():\n    ### BEGIN SOLUTION\n    return 1\n    ### END SOLUTION", None, "hide-input"),
    ("def f():\n    ### BEGIN SOLUTION\n    return 1", ["hide-input"], "unbalanced"),
    ("def f():\n    ### BEGIN SOLUTION\n    return 1\n    ### END SOLUTION", ["hide-input"], "toggle's label"),
])
def test_checker_catches(tmp_path, source, tags, expected):
    problems = check_notebook(make_notebook(tmp_path, source, tags=tags))
    assert any(expected in p for p in problems), problems


def test_checker_catches_stored_errors(tmp_path):
    error = nbformat.v4.new_output("error", ename="ValueError", evalue="boom", traceback=[])
    problems = check_notebook(make_notebook(tmp_path, "raise ValueError('boom')", outputs=[error]))
    assert any("stored error" in p for p in problems), problems


def test_checker_catches_huge_outputs(tmp_path):
    blob = nbformat.v4.new_output("stream", name="stdout", text="x" * 2_000_000)
    problems = check_notebook(make_notebook(tmp_path, "print('x' * 2_000_000)", outputs=[blob]))
    assert any("MB output" in p for p in problems), problems


def test_checker_catches_out_of_order_execution(tmp_path):
    path = make_notebook(tmp_path, "print(1)")
    nb = nbformat.read(path, as_version=4)
    nb.cells[-1].execution_count = 7
    nbformat.write(nb, path)
    assert any("execution_count" in p for p in check_notebook(path))


def test_checker_requires_the_setup_cell(tmp_path):
    path = make_notebook(tmp_path, "print(1)")
    nb = nbformat.read(path, as_version=4)
    nb.cells[1].source = "import minillm"
    nbformat.write(nb, path)
    assert any("setup cell" in p for p in check_notebook(path))


def test_checker_rejects_the_legacy_setup_cell(tmp_path):
    path = make_notebook(tmp_path, "print(1)")
    nb = nbformat.read(path, as_version=4)
    nb.cells[1].source = notebooks.LEGACY_SETUP_CELL
    nbformat.write(nb, path)
    assert any("setup cell" in p for p in check_notebook(path))
    assert check_notebook(path, legacy_setup=True) == []


def test_checker_catches_code_over_88_columns(tmp_path):
    ok = "x = " + "1 + " * 20 + "1"
    long = "x = " + "1 + " * 30 + "1"
    assert check_notebook(make_notebook(tmp_path, ok)) == []
    problems = check_notebook(make_notebook(tmp_path, ok + "\n" + long))
    assert any("1 line(s) over 88 columns (line 2: 125)" in p for p in problems), problems


def test_legacy_setup_notebooks_still_need_the_exemption():
    # The exemption can only shrink: a listed notebook that now starts with
    # SETUP_CELL (or is gone) must leave LEGACY_SETUP_NOTEBOOKS.
    from minillm import ROOT

    for rel in sorted(notebooks.LEGACY_SETUP_NOTEBOOKS):
        path = ROOT / rel
        assert path.exists(), f"{rel} is gone: remove it from LEGACY_SETUP_NOTEBOOKS"
        first = next(c for c in nbformat.read(path, as_version=4).cells if c.cell_type == "code")
        assert first.source == notebooks.LEGACY_SETUP_CELL, (
            f"{rel} no longer uses the legacy setup cell: remove it from LEGACY_SETUP_NOTEBOOKS")


def test_checker_requires_python3_kernel(tmp_path):
    path = make_notebook(tmp_path, "print(1)")
    nb = nbformat.read(path, as_version=4)
    nb.metadata["kernelspec"]["name"] = "julia"
    nbformat.write(nb, path)
    assert any("kernelspec" in p for p in check_notebook(path))


def test_toc_lists_only_existing_pages_and_every_notebook():
    # check_all covers this; here we pin that the toc parser sees the chapters.
    entries = notebooks.toc_files()
    assert "book/intro" in entries
    assert any(e.startswith("chapters/01_language_models/") for e in entries)


def test_repository_url_lives_in_config_yml():
    import yaml

    from minillm import ROOT
    url = yaml.safe_load((ROOT / "_config.yml").read_text())["repository"]["url"]
    assert notebooks.REPO_URL == url.rstrip("/") and url in notebooks.SETUP_CELL
    assert url in notebooks.colab_setup_cell()


def test_colab_setup_cell_fails_loudly(tmp_path, monkeypatch):
    import sys
    import types

    # The book's own cell fits 88 columns (a long temporary path below need not).
    assert max(len(line) for line in notebooks.colab_setup_cell().splitlines()) <= 88
    cell = notebooks.colab_setup_cell(str(tmp_path / "no-such-repo"))
    monkeypatch.setitem(sys.modules, "google.colab", types.ModuleType("google.colab"))
    with pytest.raises(RuntimeError, match="Colab setup failed: git clone.*no-such-repo"):
        exec(cell.replace("/content/minillm", str(tmp_path / "clone")), {})


def test_checker_accepts_the_robust_setup_cell(tmp_path):
    path = make_notebook(tmp_path, "print(1)")
    nb = nbformat.read(path, as_version=4)
    nb.cells[1].source = notebooks.colab_setup_cell()
    nbformat.write(nb, path)
    assert check_notebook(path) == []


def test_style_notes_report_long_lines_and_printed_tables():
    from minillm.book.widths import style_notes

    long = nbformat.v4.new_code_cell("x = " + "1 + " * 30 + "1")
    table = nbformat.v4.new_code_cell("print(df.to_string())")
    nb = nbformat.v4.new_notebook(cells=[long, table])
    notes = style_notes(nb)
    assert any("over 88 columns" in n for n in notes) and any("prints a table" in n for n in notes)


def test_setup_makes_figures_retina():
    # minillm.setup() switches the inline backend to 2x PNGs, also when pyplot is
    # imported after it (the backend then starts with the formats we chose).
    import base64
    import struct

    from nbclient import NotebookClient

    plot = "import matplotlib.pyplot as plt\nplt.plot([1, 2])\nplt.show()"
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(SETUP_CELL),
                                         nbformat.v4.new_code_cell(plot)])
    NotebookClient(nb, kernel_name="python3", timeout=120).execute()
    out = next(o for o in nb.cells[1].outputs if "image/png" in o.get("data", {}))
    width, height = struct.unpack(">II", base64.b64decode(out.data["image/png"])[16:24])
    shown = out.metadata["image/png"]
    assert width >= 2 * shown["width"] - 1 and height >= 2 * shown["height"] - 1
    assert out.data["text/plain"] == "<Figure size 640x360 with 1 Axes>"  # what nbval compares

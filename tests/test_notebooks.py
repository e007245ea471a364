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


def test_checker_rejects_the_old_setup_cell(tmp_path):
    # The cell the book used before colab_setup_cell: on Colab a failed clone
    # surfaced as ModuleNotFoundError, and its clone line is 89 columns.
    path = make_notebook(tmp_path, "print(1)")
    nb = nbformat.read(path, as_version=4)
    nb.cells[1].source = ('import sys\nif "google.colab" in sys.modules:\n'
                          f"    !git clone --quiet --depth 1 {notebooks.REPO_URL} /content/minillm\n"
                          "import minillm\nDEVICE = minillm.setup(seed=0)")
    nbformat.write(nb, path)
    problems = check_notebook(path)
    assert any("setup cell" in p for p in problems) and any("over 88 columns" in p for p in problems)


def test_checker_catches_code_over_88_columns(tmp_path):
    ok = "x = " + "1 + " * 20 + "1"
    long = "x = " + "1 + " * 30 + "1"
    assert check_notebook(make_notebook(tmp_path, ok)) == []
    problems = check_notebook(make_notebook(tmp_path, ok + "\n" + long))
    assert any("1 line(s) over 88 columns (line 2: 125)" in p for p in problems), problems


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
    table.outputs = [stream(PRINTED_TABLE)]
    wide = nbformat.v4.new_code_cell("print('x' * 100)")
    wide.outputs = [stream("x" * 100 + "\n")]
    # the source alone is no table: what the page shows decides
    quiet = nbformat.v4.new_code_cell("print(f'{x:>8.3f}')")
    quiet.outputs = [stream("   0.500\n")]
    nb = nbformat.v4.new_notebook(cells=[long, table, wide, quiet])
    notes = style_notes(nb)
    assert any("code cell 1: 1 line(s) over 88 columns" in n for n in notes), notes
    assert any("code cell 2: prints a table as text (output lines 3-5)" in n for n in notes), notes
    assert any("code cell 3: 1 output line(s) over 88 characters (output line 1: 100)" in n
               for n in notes), notes
    assert not any("code cell 4" in n for n in notes), notes


# ------------------------------------------------- outputs that fit the page

#: What ``print(df.to_string())`` shows for a small DataFrame.
PRINTED_TABLE = """\
   distinct n-grams  train PPL  dev PPL
n                                      
1              2219     227.25   210.08
2             20487      24.74      inf
3             40882       3.94      inf
"""


def stream(text):
    return nbformat.v4.new_output("stream", name="stdout", text=text)


def test_checker_fails_on_a_printed_table(tmp_path):
    path = make_notebook(tmp_path, "print(df.to_string())", outputs=[stream(PRINTED_TABLE)])
    problems = check_notebook(path)
    assert any("code cell 3: output lines 3-5 are a table printed as aligned text" in p
               for p in problems), problems
    # a padded f-string table is a table too
    rows = "".join(f"{name:>8} {n:>6} {p:>10.5f}\n" for name, n, p in
                   [("word", 1, 0.5), ("getitem", 70, 0.00082), ("after", 38, 0.00044)])
    path = make_notebook(tmp_path, "for row in rows: print(row)", outputs=[stream(rows)])
    assert any("table printed as aligned text" in p for p in check_notebook(path))


def test_checker_passes_a_displayed_dataframe(tmp_path):
    # display(df) stores an HTML table (shown) next to its text form (not shown)
    html = nbformat.v4.new_output("display_data", data={
        "text/html": "<table><tr><td>2219</td></tr></table>", "text/plain": PRINTED_TABLE})
    assert check_notebook(make_notebook(tmp_path, "display(df)", outputs=[html])) == []
    result = nbformat.v4.new_output("execute_result", execution_count=3, data={
        "text/html": "<table></table>", "text/plain": PRINTED_TABLE + "x" * 120})
    assert check_notebook(make_notebook(tmp_path, "df", outputs=[result])) == []


def test_checker_fails_on_a_plain_text_result_shown_as_a_table(tmp_path):
    # a result with only text/plain is shown as text, so it is checked as text
    result = nbformat.v4.new_output("execute_result", execution_count=3,
                                    data={"text/plain": PRINTED_TABLE})
    problems = check_notebook(make_notebook(tmp_path, "df", outputs=[result]))
    assert any("table printed as aligned text" in p for p in problems), problems


def test_checker_fails_on_an_output_line_over_88_characters(tmp_path):
    ok = stream("short line\n" + "y" * 88 + "\n")
    assert check_notebook(make_notebook(tmp_path, "print(...)", outputs=[ok])) == []
    wide = stream("short line\n" + "w" * 89 + "\n")
    problems = check_notebook(make_notebook(tmp_path, "print(...)", outputs=[wide]))
    assert any(p.startswith("code cell 3: output line 2 is 89 characters wide (limit 88)")
               for p in problems), problems
    # stderr is shown on the page too
    err = nbformat.v4.new_output("stream", name="stderr", text="e" * 120)
    assert any("output line 1 is 120 characters"
               in p for p in check_notebook(make_notebook(tmp_path, "warn()", outputs=[err])))


def test_output_width_reads_consecutive_streams_as_the_page_shows_them(tmp_path):
    # the book merges consecutive streams (nb_merge_streams): two prints without a
    # newline between them make one line on the page
    halves = [stream("x" * 50), stream("y" * 50 + "\n")]
    problems = check_notebook(make_notebook(tmp_path, "print(...)", outputs=halves))
    assert any("output line 1 is 100 characters" in p for p in problems), problems


def test_output_checks_leave_arrays_help_text_and_glue_alone(tmp_path):
    from minillm.book.widths import EXERCISE_VERDICT

    array = stream("[[ 1.225  0.     0.    -1.225]\n [ 0.     0.     0.     0.   ]\n"
                   " [ 0.     0.     0.     0.   ]]\n")
    help_text = stream("  --reuse               copy stages\n  --device DEVICE       cpu or cuda\n"
                       "  --list                list the recipes\n")
    glued = nbformat.v4.new_output("display_data", data={"text/plain": "z" * 200},
                                   metadata={"scrapbook": {"name": "x"}})
    verdict = stream(f"{EXERCISE_VERDICT}: " + "because " * 20 + "\n")
    for output in (array, help_text, glued, verdict):
        assert check_notebook(make_notebook(tmp_path, "show()", outputs=[output])) == [], output


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


def test_checker_catches_glue_keys_twice_or_missing(tmp_path):
    def glued(name):
        return nbformat.v4.new_output("display_data", data={"text/plain": "1"},
                                      metadata={"scrapbook": {"name": name}})
    path = make_notebook(tmp_path, "glue('a', 1); glue('a', 2)", outputs=[glued("a"), glued("a")])
    nb = nbformat.read(path, as_version=4)
    nb.cells.append(nbformat.v4.new_markdown_cell("{glue:text}`a:.1f` and {glue:text}`b`"))
    nbformat.write(nb, path)
    problems = check_notebook(path)
    assert any("'a' is glued 2 times" in p for p in problems), problems
    assert any("'b', which no cell glues" in p for p in problems), problems
    assert not any("'a', which" in p for p in problems), problems

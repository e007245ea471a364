"""The book's math renders: the built pages load an offline MathJax 3 that
exists in the build, use only macros it knows, and (where chromium is
installed) typeset every formula on math-heavy pages with zero MathJax errors,
from file:// and over http.

`make test` builds the book before running pytest; run alone, the tests of the
built book skip with a message until `make book` has been run.
"""
import functools
import http.server
import shutil
import threading
from pathlib import Path

import pytest

from minillm import ROOT
from minillm.book import mathcheck

BUILD = ROOT / "_build" / "html"
needs_build = pytest.mark.skipif(not (BUILD / "index.html").exists(),
                                 reason="the book is not built: run `make book` first (make test does)")
CHROMIUM = mathcheck.find_chromium()
needs_chromium = pytest.mark.skipif(
    CHROMIUM is None, reason="chromium is not installed, so formulas are not rendered here "
    "(apt-get install chromium; `make test` installs it itself when run as root in CI)")


def bundle() -> Path:
    import importlib.util

    spec = importlib.util.find_spec("sphinx-mathjax-offline")
    if spec is None:
        pytest.skip("sphinx-mathjax-offline is not installed (pip install -e '.[book]')")
    return Path(next(iter(spec.submodule_search_locations))) / "static" / "mathjax" / "tex-svg-full.js"


def test_macro_tables_are_read_from_the_mathjax_bundle():
    macros, envs = mathcheck.known_names(bundle())
    assert {"frac", "sum", "mathbb", "operatorname", "text", "boldsymbol", "lVert", "tfrac"} <= macros
    assert {"align", "aligned", "cases", "pmatrix", "array"} <= envs
    assert "argmax" not in macros  # not a TeX macro: write \operatorname*{arg\,max}
    assert mathcheck.unknown_macros(r"\argmax_x f(x) + \frac{a}{b}", macros, envs) == [r"\argmax"]
    assert mathcheck.unknown_macros(r"\begin{eqnarry}x\end{eqnarry}", macros, envs) == ["environment eqnarry"]
    assert mathcheck.unknown_macros(r"\newcommand{\E}{\mathbb{E}} \E[x]", macros, envs) == []


def fake_build(tmp_path, body, script="_static/mathjax/tex-svg-full.js"):
    (tmp_path / "_static" / "mathjax").mkdir(parents=True)
    shutil.copy(bundle(), tmp_path / mathcheck.MATHJAX_BUNDLE)
    page = tmp_path / "page.html"
    page.write_text('<html><head><script>window.MathJax = {"tex": {"packages": {"[-]": ["noundefined"]}}}'
                    f'</script><script defer src="{script}"></script></head><body>{body}</body></html>')
    return page


def test_static_check_finds_unknown_macros_and_missing_assets(tmp_path):
    fake_build(tmp_path, r'<span class="math">\(\argmax_x f(x)\)</span><span class="math">\(x\)</span>'
                         '<link rel="stylesheet" href="_static/gone.css">')
    problems, counts = mathcheck.static_check(tmp_path)
    assert counts["formulas"] == 2
    assert any(r"\argmax is unknown" in p for p in problems), problems
    assert any("gone.css" in p and "not in the build" in p for p in problems), problems


def test_static_check_refuses_a_cdn_mathjax(tmp_path):
    fake_build(tmp_path, r'<span class="math">\(x\)</span>',
               script="https://cdn.jsdelivr.net/npm/mathjax@3/es5/tex-mml-chtml.js")
    problems, _ = mathcheck.static_check(tmp_path)
    assert any("from the network" in p for p in problems), problems


@needs_build
def test_built_book_math_is_offline_and_uses_known_macros():
    problems, counts = mathcheck.static_check(BUILD)
    assert not problems, "\n".join(problems)
    assert counts["formulas"] > 500  # the check saw the book's math, not an empty build


@needs_chromium
def test_rendering_counts_errors_and_untypeset_formulas(tmp_path):
    page = fake_build(tmp_path, r'<span class="math">\(\argmax_x f(x)\)</span> '
                                r"<span class=\"math\">\(f'(x) \in \mathbb{R}\)</span> "
                                r'<div class="math">\[\frac{a}{b\]</div>')
    r = mathcheck.render(page.as_uri(), formulas=3)
    assert (r.typeset, r.errors) == (2, 1)  # \argmax is an error; the unclosed \[ is never typeset


@pytest.mark.slow
@needs_build
@needs_chromium
def test_math_heavy_pages_render_with_zero_errors_from_file():
    pages = [p for p in mathcheck.RENDER_PAGES if (BUILD / p).exists()]
    assert pages
    problems, results = mathcheck.render_check(BUILD, pages)
    assert not problems, "\n".join(problems)
    assert sum(r.typeset for r in results) > 200


@pytest.mark.slow
@needs_build
@needs_chromium
def test_math_renders_over_http():
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(BUILD))
    handler.log_message = lambda *args: None
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        base = f"http://127.0.0.1:{server.server_address[1]}"
        problems, results = mathcheck.render_check(BUILD, mathcheck.RENDER_PAGES[:1], base_url=base)
    finally:
        server.shutdown()
    assert not problems, "\n".join(problems)
    assert results[0].typeset > 50

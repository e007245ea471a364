"""Typeset the book's math with MathJax 3, offline, from the build itself.

MathJax comes from the ``sphinx-mathjax-offline`` package (the ``book`` extra):
the official MathJax 3.2.2 distribution (``es5/``), unchanged, under its Apache
2.0 licence. This extension copies the parts the book uses into
``_build/html/_static/mathjax/`` and points Sphinx at them, so formulas render
with no network, from ``file://`` and over http alike.

Why SVG output (``tex-svg-full.js``) rather than MathJax's default CHTML: CHTML
draws glyphs with TeX web fonts loaded by CSS ``@font-face``, and browsers
restrict font loads from ``file://`` (Firefox refuses fonts from a parent
folder, which is where ``_static/`` is for every chapter page). SVG output draws
the same TeX glyphs as paths stored in the script itself: no font file to fetch,
nothing to fall back from. ``-full`` preloads every TeX package, so no
extension is fetched lazily either; a formula is one script away from rendering.

``noundefined`` is switched off so that an unknown macro is a MathJax error
(``merror``) that ``minillm.book.mathcheck`` can count, not quiet red text.
A missing package is a build error, never a silent fall-back to a CDN.
"""
from __future__ import annotations

import shutil
from pathlib import Path

from sphinx.errors import ExtensionError

BUNDLE = "tex-svg-full.js"
#: Parts of the distribution the SVG bundle can load at run time (the menu's
#: accessibility options); the CHTML fonts and the other bundles are left out.
KEEP = ("a11y", "adaptors", "input", "sre", "ui", "output/svg.js", "output/svg")
NOTICE = """MathJax 3.2.2 (https://www.mathjax.org), copied unchanged from the
sphinx-mathjax-offline package. Copyright (c) 2009-2022 The MathJax Consortium.
Licensed under the Apache License, Version 2.0:
https://www.apache.org/licenses/LICENSE-2.0
"""
MATHJAX3_CONFIG = {
    "tex": {"packages": {"[-]": ["noundefined"]}},
    "svg": {"fontCache": "global"},
}


def mathjax_dir() -> Path:
    """The MathJax 3 distribution that ``sphinx-mathjax-offline`` installs."""
    import importlib.util

    spec = importlib.util.find_spec("sphinx-mathjax-offline")
    if spec is None or not spec.submodule_search_locations:
        raise ExtensionError("offline MathJax is missing: pip install sphinx-mathjax-offline "
                             "(it comes with the book extra: pip install -e '.[book]')")
    path = Path(next(iter(spec.submodule_search_locations))) / "static" / "mathjax"
    if not (path / BUNDLE).is_file():
        raise ExtensionError(f"{path / BUNDLE} not found: reinstall sphinx-mathjax-offline")
    return path


def _configure(app, config):
    mathjax_dir()  # fail early, before a long build
    config.mathjax_path = f"mathjax/{BUNDLE}"  # relative: Sphinx serves it from _static/
    user = dict(config.mathjax3_config or {})
    for key, value in MATHJAX3_CONFIG.items():
        user[key] = {**value, **user.get(key, {})}
    config.mathjax3_config = user


def _copy(app, exception):
    if exception is not None or app.builder.format != "html":
        return
    src, dst = mathjax_dir(), Path(app.outdir) / "_static" / "mathjax"
    dst.mkdir(parents=True, exist_ok=True)
    (dst / "NOTICE.txt").write_text(NOTICE)
    shutil.copy2(src / BUNDLE, dst / BUNDLE)
    for part in KEEP:
        if (src / part).is_dir():
            shutil.copytree(src / part, dst / part, dirs_exist_ok=True)
        elif (src / part).is_file():
            (dst / part).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src / part, dst / part)


def setup(app):
    app.connect("config-inited", _configure)
    app.connect("build-finished", _copy)
    return {"parallel_read_safe": True, "parallel_write_safe": True}

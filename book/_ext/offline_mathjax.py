"""Render the book's math without a network: serve MathJax from the copy that
the `jupyter-server-mathjax` package installs, instead of from a CDN.

A reader who opens _build/html on a laptop with no network still sees typeset
formulas. Sphinx copies the MathJax files into _static/ and points at them.
"""
from pathlib import Path


def _use_local_mathjax(app, config):
    try:
        import jupyter_server_mathjax
    except ImportError:  # keep the CDN default; the book still builds
        return
    static = Path(jupyter_server_mathjax.__file__).parent / "static"
    if (static / "MathJax.js").exists():
        config.html_static_path = list(config.html_static_path) + [str(static)]
        # A relative mathjax_path is resolved inside _static/.
        config.mathjax_path = "MathJax.js?config=TeX-AMS-MML_HTMLorMML-full"
        config.mathjax3_config = None
        config.mathjax2_config = {"tex2jax": {"inlineMath": [["\\(", "\\)"]],
                                              "displayMath": [["\\[", "\\]"]],
                                              "processEscapes": True,
                                              # myst-nb marks pages "tex2jax_ignore" and
                                              # its math spans "math": process only those.
                                              "ignoreClass": "tex2jax_ignore|mathjax_ignore",
                                              "processClass": "tex2jax_process|mathjax_process|math|output_area"},
                                  "HTML-CSS": {"availableFonts": ["TeX"], "imageFont": None}}


def setup(app):
    app.connect("config-inited", _use_local_mathjax)
    return {"parallel_read_safe": True, "parallel_write_safe": True}

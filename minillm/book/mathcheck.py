"""Broken math fails the build: checks of the built HTML book (``_build/html``).

    python -m minillm.book math [_build/html]             # static checks
    python -m minillm.book math --render PAGE.html ...     # + headless chromium

Static checks (no browser needed):

- every local script and stylesheet that a page requests exists in the build
  (a 404'd MathJax file or font is how the book once showed fallback fonts),
  and MathJax itself is served from the build, not from a CDN;
- every formula uses only macros and environments that the shipped MathJax
  knows. The known names are read from MathJax's own macro tables inside the
  bundle (``new ...CommandMap("macros", {displaystyle: ..., ...})``), so the
  list is exactly the configured MathJax's, not a hand-kept copy.

Rendering check (when chromium is installed): open pages headless, let MathJax
typeset, and count what it produced from the DOM: every formula must become an
``mjx-container`` and none may be an error (``merror``, ``data-mjx-error``,
"Math Processing Error").
"""
from __future__ import annotations

import os
import re
import shutil
import subprocess
import tempfile
from dataclasses import dataclass, field
from functools import lru_cache
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import unquote, urlparse

MATHJAX_BUNDLE = Path("_static/mathjax/tex-svg-full.js")
_MAP = re.compile(r'new\s*\(?[\w$.()]*?\b(Character|Command|Delimiter|Macro|Environment)Map\)?\("([^"]+)",')
_KEY = re.compile(r'\s*("(?:[^"\\]|\\.)*"|[A-Za-z_$][\w$]*)\s*:')
_MACRO = re.compile(r"\\([A-Za-z]+)")
_ENV = re.compile(r"\\(?:begin|end)\s*\{([A-Za-z*]+)\}")
_DEFINED = re.compile(r"\\(?:newcommand|renewcommand|def|DeclareMathOperator)\*?\s*\{?\\([A-Za-z]+)")


# ------------------------------------------------------------- MathJax's tables

def _object_keys(text: str, start: int) -> tuple[list[str], int]:
    """Top-level keys of the JavaScript object literal opening at ``text[start] == '{'``."""
    keys, depth, i, expect_key = [], 0, start, False
    while i < len(text):
        ch = text[i]
        if ch in "\"'":  # skip a string literal
            j = i + 1
            while text[j] != ch:
                j += 2 if text[j] == "\\" else 1
            if depth == 1 and expect_key:
                m = _KEY.match(text, i)
                if m and m.end() > j:
                    keys.append(_js_string(m.group(1)))
            i, expect_key = j + 1, False
            continue
        if ch in "{[(":
            depth += 1
            expect_key = depth == 1 and ch == "{"
        elif ch in "}])":
            depth -= 1
            if depth == 0:
                return keys, i + 1
            expect_key = False
        elif ch == "," and depth == 1:
            expect_key = True
        elif depth == 1 and expect_key and (ch.isalpha() or ch in "_$"):
            m = _KEY.match(text, i)
            if m:
                keys.append(m.group(1))
                i, expect_key = m.end(), False
                continue
            expect_key = False
        elif not ch.isspace():
            expect_key = False
        i += 1
    raise ValueError("unbalanced object literal in the MathJax bundle")


def _js_string(literal: str) -> str:
    if literal[0] != '"':
        return literal
    return re.sub(r"\\(.)", r"\1", literal[1:-1])


@lru_cache(maxsize=4)
def known_names(bundle: Path) -> tuple[frozenset[str], frozenset[str]]:
    """(macro names, environment names) defined by the MathJax bundle's TeX tables."""
    text = Path(bundle).read_text(encoding="utf-8")
    macros, envs = set(), set()
    for m in _MAP.finditer(text):
        brace = text.index("{", m.end())
        keys, _ = _object_keys(text, brace)
        target = envs if m.group(1) == "Environment" else macros
        target.update(k.lstrip("\\") for k in keys)
    if len(macros) < 500 or "frac" not in macros or "align" not in envs:
        raise ValueError(f"could not read MathJax's macro tables from {bundle} "
                         f"({len(macros)} macros, {len(envs)} environments found)")
    return frozenset(macros), frozenset(envs)


# ------------------------------------------------------------- the built pages

@dataclass
class Page:
    path: Path
    formulas: list[str] = field(default_factory=list)
    assets: list[str] = field(default_factory=list)


class _PageParser(HTMLParser):
    """Collects the TeX of Sphinx's math spans/divs and the scripts/styles a page loads."""

    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.formulas, self.assets = [], []
        self._stack: list[tuple[str, bool]] = []  # (tag, is a math element or inside one we skip)
        self._math_depth, self._skip_depth, self._buf = 0, 0, []

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if tag == "script" and a.get("src"):
            self.assets.append(a["src"])
        if tag == "link" and a.get("href") and "stylesheet" in (a.get("rel") or ""):
            self.assets.append(a["href"])
        if tag in ("br", "img", "link", "meta", "input", "hr"):
            return
        classes = (a.get("class") or "").split()
        if self._math_depth:
            skip = "eqno" in classes or "headerlink" in classes
            self._stack.append((tag, skip))
            self._skip_depth += skip
            return
        if "math" in classes and tag in ("span", "div"):
            self._math_depth, self._buf = 1, []
            self._stack = [(tag, False)]

    def handle_endtag(self, tag):
        if not self._math_depth or tag in ("br", "img", "link", "meta", "input", "hr"):
            return
        _, skip = self._stack.pop()
        self._skip_depth -= skip
        if not self._stack:
            self._math_depth = 0
            self.formulas.append("".join(self._buf).strip())

    def handle_data(self, data):
        if self._math_depth and not self._skip_depth:
            self._buf.append(data)


def parse_page(path: Path) -> Page:
    parser = _PageParser()
    parser.feed(path.read_text(encoding="utf-8"))
    return Page(path, [f for f in parser.formulas if f], parser.assets)


def html_pages(root: Path) -> list[Path]:
    return sorted(p for p in root.rglob("*.html") if "_static" not in p.parts and "_sources" not in p.parts)


def missing_assets(page: Page, root: Path) -> list[str]:
    """Local scripts/stylesheets the page requests that are not in the build,
    and MathJax loaded from anywhere but the build."""
    problems = []
    for ref in page.assets:
        url = urlparse(ref)
        if url.scheme in ("http", "https") or ref.startswith("//"):
            if "mathjax" in ref.lower():
                problems.append(f"loads MathJax from the network: {ref}")
            continue
        if url.scheme or not url.path:
            continue
        target = (page.path.parent / unquote(url.path)).resolve()
        if not target.is_file():
            problems.append(f"requests {ref}, which is not in the build")
    return problems


def unknown_macros(formula: str, macros: frozenset[str], envs: frozenset[str]) -> list[str]:
    defined = set(_DEFINED.findall(formula))
    bad = [f"\\{m}" for m in _MACRO.findall(formula) if m not in macros and m not in defined]
    bad += [f"environment {e}" for e in _ENV.findall(formula) if e not in envs]
    return sorted(set(bad))


def static_check(root: Path) -> tuple[list[str], dict[str, int]]:
    """Run the static checks over a built book; return (problems, counts)."""
    root = Path(root)
    bundle = root / MATHJAX_BUNDLE
    if not bundle.is_file():
        return [f"{bundle} is missing: the offline MathJax extension did not run"], {}
    macros, envs = known_names(bundle)
    problems, n_pages, n_formulas = [], 0, 0
    for path in html_pages(root):
        page = parse_page(path)
        rel = path.relative_to(root)
        n_pages += 1
        n_formulas += len(page.formulas)
        problems += [f"{rel}: {p}" for p in missing_assets(page, root)]
        for formula in page.formulas:
            for bad in unknown_macros(formula, macros, envs):
                problems.append(f"{rel}: {bad} is unknown to MathJax in {formula[:80]!r}")
        if page.formulas and not any(MATHJAX_BUNDLE.name in a for a in page.assets):
            problems.append(f"{rel}: has {len(page.formulas)} formulas but does not load MathJax")
    return problems, {"pages": n_pages, "formulas": n_formulas, "macros known": len(macros)}


# ------------------------------------------------------------- rendering

def find_chromium() -> str | None:
    """A headless-capable Chromium on PATH (Debian's `chromium`), or None."""
    for name in ("chromium", "chromium-browser", "google-chrome", "chrome"):
        found = shutil.which(name)
        if found:
            return found
    return None


@dataclass
class Rendered:
    url: str
    formulas: int  # math elements in the page source
    typeset: int   # mjx-container elements MathJax produced
    errors: int    # containers holding an merror / data-mjx-error / "Math Processing Error"


_STYLE = re.compile(r"<style\b.*?</style>", re.S | re.I)
_ERRORS = re.compile(r'data-mml-node="merror"|<mjx-merror|data-mjx-error|Math Processing Error')


def render(url: str, formulas: int, chromium: str | None = None, budget_ms: int = 30000) -> Rendered:
    """Open ``url`` in headless chromium, let MathJax finish, count containers and errors."""
    chromium = chromium or find_chromium()
    if chromium is None:
        raise FileNotFoundError("chromium is not installed (apt-get install chromium)")
    with tempfile.TemporaryDirectory() as profile:
        cmd = [chromium, "--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
               f"--user-data-dir={profile}", "--no-first-run", f"--virtual-time-budget={budget_ms}",
               "--dump-dom", url]
        out = subprocess.run(cmd, capture_output=True, text=True, timeout=180,
                             env={**os.environ, "HOME": profile}).stdout
    out = _STYLE.sub("", out)  # MathJax's own stylesheet names merror in its selectors
    containers = out.split("<mjx-container")[1:]
    return Rendered(url, formulas, len(containers), sum(bool(_ERRORS.search(c)) for c in containers))


def render_check(root: Path, pages: list[str], base_url: str | None = None) -> tuple[list[str], list[Rendered]]:
    """Render each page (relative to ``root``) from file:// or from ``base_url``;
    a problem is any MathJax error or any formula left untypeset."""
    problems, results = [], []
    for rel in pages:
        path = Path(root) / rel
        n = len(parse_page(path).formulas)
        url = f"{base_url.rstrip('/')}/{rel}" if base_url else path.resolve().as_uri()
        r = render(url, n)
        results.append(r)
        if r.errors:
            problems.append(f"{url}: {r.errors} MathJax errors")
        if r.typeset < n:
            problems.append(f"{url}: MathJax typeset {r.typeset} of {n} formulas")
    return problems, results


#: Math-heavy pages the rendering check opens (relative to _build/html).
RENDER_PAGES = [
    "chapters/01_language_models/01_ngram_models.html",
    "chapters/01_language_models/02_entropy_and_perplexity.html",
    "chapters/06_positions/01_sinusoidal_learned_and_rope.html",
    "book/notation.html",
]


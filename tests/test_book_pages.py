"""The front matter says only what is true: the exercise index is generated
from the notebooks, the landing page links every written chapter, every
reference has a link, and the README points only inside the repository."""
import re

from minillm import ROOT
from minillm.book.notebooks import toc_files
from minillm.book.student import exercise_index


def test_exercise_index_is_current():
    page = (ROOT / "book" / "exercises.md").read_text()
    assert page == exercise_index(ROOT), \
        "book/exercises.md is stale: run `python -m minillm.book exercises` and commit it"


def test_landing_page_links_every_written_chapter():
    intro = (ROOT / "book" / "intro.md").read_text()
    chapters = sorted({e.split("/")[1] for e in toc_files() if e.startswith("chapters/")})
    for chapter in chapters:
        link = f"../chapters/{chapter}/index>"
        assert link in intro, f"book/intro.md does not link chapter {chapter} (write {{doc}}`Title <{link[:-1]}>`)"
        line = next(line for line in intro.splitlines() if link in line)
        assert "to come" not in line, f"book/intro.md marks the written chapter {chapter} as to come"


def test_every_reference_has_a_doi_or_url():
    bib = (ROOT / "book" / "references.bib").read_text()
    missing = []
    for entry in re.split(r"\n(?=@)", bib):
        key = re.match(r"\s*@\w+\{([^,]+),", entry)
        if key and not re.search(r"\n\s*(doi|url)\s*=", entry) and "No online copy" not in entry:
            missing.append(key.group(1))
    assert not missing, f"references.bib entries without a doi or url field: {missing}"


def test_readme_points_only_inside_the_repository():
    readme = (ROOT / "README.md").read_text()
    assert "../" not in readme
    for path in re.findall(r"`((?:book|chapters|minillm|tests|data|bench)/[\w./-]+)`", readme):
        assert (ROOT / path).exists(), f"README.md names {path}, which does not exist"

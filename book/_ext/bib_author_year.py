"""One author-year style for the whole book.

In the text, ``{cite}`` already reads ``[Shannon, 1948]`` (sphinxcontrib-bibtex's
``author_year`` referencing style). This extension gives the reference list
the same labels, so the entry a reader looks for is labelled exactly as the
citation they clicked: ``[Shannon, 1948] Claude E. Shannon. A mathematical
theory ...``, sorted by author then year. Names follow the citation style:
one or two surnames, else the first with "et al."; two works by the same
authors in one year get 2024a, 2024b.

Usage in _config.yml: ``bibtex_default_style: author_year_labels``.
"""
from __future__ import annotations

from collections import Counter

from pybtex.plugin import register_plugin
from pybtex.style.formatting.plain import Style as PlainStyle
from pybtex.style.labels import BaseLabelStyle


def _surname(person) -> str:
    parts = person.prelast_names + person.last_names
    text = " ".join(parts) if parts else str(person)
    return text.replace("{", "").replace("}", "").replace("\\L", "Ł").replace("\\", "")


def _authors(entry) -> str:
    people = entry.persons.get("author") or entry.persons.get("editor") or []
    names = [_surname(p) for p in people]
    if not names:
        return entry.fields.get("organization", entry.fields.get("title", "Anon."))
    if len(names) == 1:
        return names[0]
    if len(names) == 2:
        return f"{names[0]} and {names[1]}"
    return f"{names[0]} et al."


class AuthorYearLabels(BaseLabelStyle):
    def format_labels(self, sorted_entries):
        entries = list(sorted_entries)
        labels = [f"{_authors(e)}, {e.fields.get('year', 'n.d.')}" for e in entries]
        repeated = Counter(labels)
        seen: Counter = Counter()
        for label in labels:
            if repeated[label] > 1:
                seen[label] += 1
                label += "abcdefghijklmnopqrstuvwxyz"[seen[label] - 1]
            yield label


class AuthorYearStyle(PlainStyle):
    default_label_style = "author_year_labels"
    default_sorting_style = "author_year_title"


def setup(app):
    register_plugin("pybtex.style.labels", "author_year_labels", AuthorYearLabels)
    register_plugin("pybtex.style.formatting", "author_year_labels", AuthorYearStyle)
    return {"parallel_read_safe": True, "parallel_write_safe": True}

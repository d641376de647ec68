"""What a reader sees on the QUICK run's report site and per-notebook pages.

* The study's two central tables (the MLP summary on ``compare`` and the convnet table on
  ``convnet_compare``, both also on the front page) are HTML tables with their header cells, on
  the site and in the per-notebook HTML exports, not paragraphs of ``| ... |`` text.
* No report text shows NumPy's scalar reprs (``np.int64(0)``): numbers print as a reader writes them.
* The site wears the Sphinx Book Theme: a left navigation of the notebooks by group and a
  light/dark switch; the code that only draws figures or formats tables is folded.
"""

from __future__ import annotations

import html
import json
import re
from pathlib import Path

import pytest

from obd.study import site_text

#: the header cells each table starts with
SUMMARY_HEAD = [
    "variant",
    "seeds",
    "unpruned accuracy (%)",
    "weights pruned at <= 1 point loss (%)",
]
CONVNET_HEAD = ["network", "method", "seeds", "dense error (%)"]
#: a NumPy scalar's repr (NumPy 2): np.int64(3), np.float64(0.5), np.True_ ...
NUMPY_REPR = re.compile(r"\bnp\.(?:u?int\d*|float\d*|complex\d*|bool_?|str_|True_|False_)\b\(?")


def _text(fragment: str) -> str:
    return " ".join(html.unescape(re.sub(r"<[^>]+>", " ", fragment)).split())


def tables(page: str) -> list[list[str]]:
    """The header cells of each ``<table>`` of an HTML page, as text."""
    return [[_text(th) for th in re.findall(r"<th\b[^>]*>(.*?)</th>", t, re.S)]
            for t in re.findall(r"<table\b.*?</table>", page, re.S)]  # fmt: skip


def _has_table(page: str, head: list[str]) -> bool:
    return any(h[: len(head)] == head for h in tables(page))


@pytest.fixture(scope="module")
def quick_reports(quick_pipeline: Path) -> Path:
    """The reports folder of the QUICK pipeline run that the suite shares (``quick_pipeline``)."""
    return quick_pipeline / "reports"


@pytest.mark.slow
def test_central_tables_are_html_tables(quick_reports):
    site = quick_reports / "site"
    pages = {
        SUMMARY_HEAD[0]: (SUMMARY_HEAD, ["notebooks/compare.html", "index.html"], "compare.html"),
        CONVNET_HEAD[0]: (CONVNET_HEAD, ["notebooks/convnet_compare.html", "index.html"],
                          "convnet_compare.html"),
    }  # fmt: skip
    for first, (head, site_pages, export) in pages.items():
        for page in [site / p for p in site_pages] + [quick_reports / export]:
            text = page.read_text()
            assert _has_table(text, head), (page.name, head, tables(text))
            assert not re.search(rf"<p>\s*\|\s*{first}\s*\|", text), f"{page.name}: a table as text"
    convnet = tables((site / "notebooks" / "convnet_compare.html").read_text())
    (row,) = [h for h in convnet if h[: len(CONVNET_HEAD)] == CONVNET_HEAD][:1]
    assert {"compression", "measure", "error at 12x (%)", "read at"} <= set(row), row


@pytest.mark.slow
def test_no_numpy_reprs_in_reports(quick_reports):
    found = {}
    for nb in sorted(quick_reports.glob("*.ipynb")):
        for cell in json.loads(nb.read_text())["cells"]:
            for out in cell.get("outputs", []):
                texts = [out.get("text", "")] + list(out.get("data", {}).values())
                for t in texts:
                    t = "".join(t) if isinstance(t, list) else str(t)
                    if not t.startswith("iVBOR") and NUMPY_REPR.search(t):
                        found.setdefault(nb.name, NUMPY_REPR.search(t).group(0))
    for page in sorted((quick_reports / "site").rglob("*.html")):
        m = NUMPY_REPR.search(_text(page.read_text()))
        if m:
            found.setdefault(str(page.relative_to(quick_reports)), m.group(0))
    assert not found, found


@pytest.mark.slow
def test_site_theme_navigation_and_folded_code(quick_reports):
    site = quick_reports / "site"
    front = (site / "index.html").read_text()
    assert "_static/styles/sphinx-book-theme.css" in front
    assert "theme-switch-button" in front  # the light/dark switch
    nav = _text(front[front.index('id="pst-primary-sidebar"') :])
    stems = [p.stem for p in (site / "notebooks").glob("*.html")]
    for title, prefixes in site_text.GROUPS:  # the left navigation, grouped as the contents
        if any(s.startswith(prefixes) for s in stems):
            assert title in nav, title
    page = (site / "notebooks" / "compare.html").read_text()
    assert page.count("Show code cell source") >= 3 + 1  # the three figures' code, the setup
    assert page.count('<img alt=""') + page.count("<img ") >= 3  # the figures themselves shown
    export = (quick_reports / "compare.html").read_text()
    assert export.count('<details class="obd-folded-input">') == 3

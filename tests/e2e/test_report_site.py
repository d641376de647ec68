"""obd.study.report: the report site is built from executed notebooks, offline, clean and readable."""

from __future__ import annotations

import re
import stat
import subprocess
import sys
from pathlib import Path

import nbformat
import pandas as pd
import pytest

from obd.pipeline import site as site_builder
from obd.study import report

PNG = (  # a 1x1 PNG
    b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\x00\x00\x00\x01\x00\x00\x00\x01\x08\x06\x00\x00\x00\x1f"
    b"\x15\xc4\x89\x00\x00\x00\rIDATx\x9cc\xf8\xff\xff?\x00\x05\xfe\x02\xfe\xa7\x35\x81\x84\x00"
    b"\x00\x00\x00IEND\xaeB`\x82"
)


def _executed(tmp_path: Path, root: Path) -> None:
    """Run a small notebook like the study's through the runner: stderr, paths, validation."""
    nb = nbformat.v4.new_notebook()
    nb.cells = [
        nbformat.v4.new_markdown_cell("# Train one MLP\n\nA page."),
        nbformat.v4.new_code_cell("import sys\n_before = set(globals())"),
        nbformat.v4.new_code_cell("out = 'x.npz'", metadata={"tags": ["parameters"]}),
        nbformat.v4.new_code_cell(
            "print('saved', out)\nprint('progress' + ' noise', file=sys.stderr)"
        ),
        nbformat.v4.new_markdown_cell("## Accuracy"),
        nbformat.v4.new_code_cell(  # a Markdown table: an HTML table on the site and the export
            "from IPython.display import Markdown, display\n"
            "display(Markdown('| seed | accuracy (%) |\\n|---:|---:|\\n| 0 | 97.50 |'))",
            metadata={"tags": ["hide-input"]},
        ),
    ]
    nb.metadata["kernelspec"] = {
        "name": "python3",
        "display_name": "Python 3",
        "language": "python",
    }
    src = tmp_path / "train.ipynb"
    nbformat.write(nb, src)
    out = root / "results" / "models" / "plain-seed0.npz"
    proc = subprocess.run(
        [sys.executable, "-m", "obd.pipeline.runner", str(src), str(root / "reports" / "train-plain-seed0"),
         "-p", "out", str(out), "--quiet"],
        capture_output=True, text=True,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("site")
    root = tmp / "repo"
    _executed(tmp, root)
    (root / "figures").mkdir(parents=True)
    (root / "figures" / "fig4_obd_assumptions.png").write_bytes(PNG)
    results = root / "results"
    pd.DataFrame({"model": ["plain", "dropout"], "saliency": "obd", "seed": [0, 0],
                  "fraction": 0.5, "diagonal": 1.0, "cross_ratio": [1.3, 0.9],
                  "second_order": 2.0, "actual": 8.0}).to_csv(results / "assumptions.csv")  # fmt: skip
    index = report.build_site(root / "reports", root / "figures", results, root=root)
    return root, index


@pytest.mark.slow
def test_front_page_tells_the_story(site):
    root, index = site
    page = index.read_text()
    for heading in (
        "The study",
        "Findings",
        "Figures",
        "Summary table",
        "Provenance",
        "Sources",
    ):
        assert f">{heading}<" in page, heading
    assert "2 of 2 checked findings held on this run" in page  # the assumptions findings
    assert "median |cross/diagonal| 1.30 without dropout" in page
    assert "One training seed (seed 0)." in page  # fig4's caption counts the seeds of its CSV
    assert re.search(r"<img[^>]+src=\"_images/fig4_obd_assumptions\.png\"", page)
    assert "base64" not in page
    assert 'href="notebooks/train-plain-seed0.html"' in page  # table of contents
    for source in ("shekkizh/TensorflowProjects", "neuralnetworks.thought-experiments",
                   "Optimal Brain Damage", "Optimal Brain Surgeon", "Optimal Brain Compression"):  # fmt: skip
        assert source in page
    assert "commit:" in page and "cores" in page and "jax 0." in page
    redirect = (root / "reports" / "index.html").read_text()
    assert "url=site/index.html" in redirect


@pytest.mark.slow
def test_notebook_pages_are_clean_offline_and_readable(site):
    root, index = site
    site_dir = index.parent
    page = (site_dir / "notebooks" / "train-plain-seed0.html").read_text()
    assert "saved" in page and "progress noise" not in page  # stderr left out
    assert str(root) not in page and "results/models/plain-seed0.npz" in page  # relative paths
    assert "Train one MLP (plain-seed0)" in page  # one title per run
    export = (root / "reports" / "train-plain-seed0.html").read_text()
    for html in (page, export):  # the Markdown output is a table, its code folded
        assert re.search(r"<table\b", html) and not re.search(r"<p>\s*\| seed", html)
        assert re.search(r"<th\b[^>]*>(<p>)?seed(</p>)?</th>", html)
    assert '<details class="obd-folded-input">' in export
    assert "Show code cell source" in page
    assert "_static/styles/sphinx-book-theme.css" in page and "theme-switch-button" in page
    for html in site_dir.rglob("*.html"):
        assert not report.EXTERNAL.search(html.read_text()), html.name
    for p in [site_dir, *site_dir.rglob("*")]:
        mode = stat.S_IMODE(p.stat().st_mode)
        assert mode == (0o755 if p.is_dir() else 0o644), (p, oct(mode))
    assert not list(site_dir.rglob(".doctrees")) and not list((root / "reports").glob(".site-*"))


def test_offline_check_rejects_network_scripts(tmp_path):
    (tmp_path / "a.html").write_text('<script src="https://cdn.example/require.js"></script>')
    with pytest.raises(RuntimeError, match="network"):
        report.check_offline(tmp_path)
    (tmp_path / "a.html").write_text('<a href="https://example.org">a link is fine</a>')
    report.check_offline(tmp_path)


def test_figure_sections_are_labelled():
    nb = nbformat.v4.new_notebook()
    nb.cells = [
        nbformat.v4.new_markdown_cell("# Title"),
        nbformat.v4.new_markdown_cell("## Figure 1\n\nText."),
        nbformat.v4.new_code_cell('save_figure(fig, d, "fig1_a")'),
        nbformat.v4.new_code_cell("save_figure(fig, d, 'fig2_b')"),
    ]
    done = site_builder.label_figure_sections(nb, ["fig1_a", "fig2_b", "fig3_missing"])
    assert done == ["fig1_a", "fig2_b"]
    assert nb.cells[1].source == "(drawn-fig1_a)=\n(drawn-fig2_b)=\n## Figure 1\n\nText."
    assert site_builder.section_label("fig1_a") == "drawn-fig1_a"

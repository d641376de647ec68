"""The study pipeline: committed notebooks are clean, and the QUICK pipeline runs end to end (the
session's shared run, ``quick_pipeline`` in conftest.py)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import nbformat
import pandas as pd
import pytest

from obd.study.variants import RESULT_COLUMNS

ROOT = Path(__file__).resolve().parents[2]
NOTEBOOKS = sorted((ROOT / "notebooks").glob("*.ipynb"))


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_committed_notebooks_have_no_outputs_and_one_parameters_cell(path):
    nb = nbformat.read(path, as_version=4)
    code = [c for c in nb.cells if c.cell_type == "code"]
    assert all(not c.outputs and c.execution_count is None for c in code), "strip outputs"
    tagged = [c for c in code if "parameters" in c.metadata.get("tags", [])]
    assert len(tagged) == 1, "exactly one cell tagged 'parameters'"


def _notebook(tmp_path: Path, source: str) -> Path:
    nb = nbformat.v4.new_notebook()
    nb.cells = [
        nbformat.v4.new_code_cell(
            "from obd.pipeline.params import check_no_unknown\n_before = set(globals())"
        ),
        nbformat.v4.new_code_cell("x = 1", metadata={"tags": ["parameters"]}),
        nbformat.v4.new_code_cell(source),
    ]
    nb.metadata["kernelspec"] = {
        "name": "python3",
        "display_name": "Python 3",
        "language": "python",
    }
    path = tmp_path / "nb.ipynb"
    nbformat.write(nb, path)
    return path


def _run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "obd.pipeline.runner", *args, "--quiet"],
        capture_output=True,
        text=True,
    )


def test_runner_writes_report_only_on_success(tmp_path):
    nb = _notebook(
        tmp_path,
        "check_no_unknown(globals(), _before, ['x'])\n"
        "if x < 0:\n    raise ValueError(f'x must be >= 0, got {x}')\nprint(x * 2)",
    )
    ok = _run(str(nb), str(tmp_path / "out" / "ok"), "-p", "x", "21")
    assert ok.returncode == 0, ok.stderr
    executed = nbformat.read(tmp_path / "out" / "ok.ipynb", as_version=4)
    assert executed.cells[-1].outputs[0]["text"].strip() == "42"
    assert "42" in (tmp_path / "out" / "ok.html").read_text()

    # an unknown parameter is refused before a kernel starts: nothing is written
    bad = _run(str(nb), str(tmp_path / "out" / "bad"), "-p", "y", "1")
    assert bad.returncode == 2
    assert "unknown parameter(s) y; accepted: x" in bad.stderr.splitlines()[0]
    assert not list((tmp_path / "out").glob("bad*"))

    # a cell that fails: no report, the executed copy kept as .failed.ipynb
    failing = _run(str(nb), str(tmp_path / "out" / "fail"), "-p", "x", "-1")
    assert failing.returncode == 1
    assert failing.stderr.startswith(f"✗ {nb}: ValueError: x must be >= 0, got -1\n"), (
        failing.stderr
    )
    assert not (tmp_path / "out" / "fail.html").exists()
    assert not (tmp_path / "out" / "fail.ipynb").exists()
    assert (tmp_path / "out" / "fail.failed.ipynb").exists()


@pytest.mark.slow
def test_quick_pipeline_writes_tidy_csvs(quick_pipeline):
    sweeps = sorted((quick_pipeline / "results" / "sweeps").glob("*.csv"))
    assert len(sweeps) >= 12
    for path in sweeps:
        df = pd.read_csv(path)
        assert list(df.columns[: len(RESULT_COLUMNS)]) == RESULT_COLUMNS, path.name
        assert sorted(df.seed.unique()) == [0, 1]
        assert df.accuracy.between(0, 1).all() and df.fraction.between(0, 1).all()
        assert (df.variant == path.stem).all()
    summary = pd.read_csv(quick_pipeline / "results" / "summary.csv")
    assert set(summary.variant) >= {p.stem for p in sweeps}


@pytest.mark.slow
def test_quick_pipeline_renders_figures(quick_pipeline):
    for name in ("fig1_blog_variants", "fig2_obd_dropout", "fig3_as_published_vs_corrected"):
        png = quick_pipeline / "figures" / f"{name}.png"
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", name
        assert (quick_pipeline / "figures" / f"{name}.svg").read_text().lstrip().startswith("<?xml")


@pytest.mark.slow
def test_quick_pipeline_reports_are_complete(quick_pipeline):
    reports = quick_pipeline / "reports"
    pages = sorted(p for p in reports.glob("*.html") if p.name != "index.html")
    assert len(pages) >= 1 + 12 + 4  # compare, every variant, every trained model
    for page in pages:
        executed = nbformat.read(page.with_suffix(".ipynb"), as_version=4)
        errors = [o for c in executed.cells if c.cell_type == "code" for o in c.outputs
                  if o.output_type == "error"]  # fmt: skip
        assert not errors, page.name
        html = page.read_text()
        assert html.rstrip().endswith("</html>"), page.name
        assert "data:image/png;base64," in html, f"{page.name} embeds no figure"
    assert "url=site/index.html" in (reports / "index.html").read_text()
    front = (reports / "site" / "index.html").read_text()
    for page in pages:
        assert f'href="notebooks/{page.name}"' in front  # the site's table of contents
        assert (reports / "site" / "notebooks" / page.name).is_file()
    assert front.count('src="_images/fig') >= 3 and "base64" not in front
    assert "checked findings held on this run" in front
    assert not list(reports.glob("*.failed.ipynb"))
    leftovers = {p.name for p in reports.glob(".*")} - {".reproduce.lock", ".params"}  # make's own
    assert not leftovers, f"unfinished writes left behind: {sorted(leftovers)}"


def test_published_numbers_are_complete():
    from obd.study.variants import load_published

    pub = load_published()
    counts = pub.groupby("variant").size().to_dict()
    assert counts == {"magnitude_global": 20, "magnitude_layerwise": 20, "obd_layerwise": 20,
                      "obd_global": 26, "obd_global_dropout": 26}  # fmt: skip
    first = pub[pub.percent_pruned == 0].set_index("variant").accuracy
    assert json.loads(first.to_json())["obd_global"] == 0.9656

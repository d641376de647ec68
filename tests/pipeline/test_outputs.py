"""obd.pipeline.outputs: a run records what it wrote; a changed or missing output un-marks the run."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest

from obd.pipeline import outputs
from obd.pipeline.io import write_text


def _writer_notebook(tmp_path: Path) -> Path:
    nb = nbformat.v4.new_notebook()
    nb.cells = [
        nbformat.v4.new_code_cell("from obd.pipeline.io import write_text", metadata={}),
        nbformat.v4.new_code_cell("out = 'scratch.txt'", metadata={"tags": ["parameters"]}),
        nbformat.v4.new_code_cell("write_text(out, 'made by the notebook')"),
    ]
    nb.metadata["kernelspec"] = {
        "name": "python3",
        "display_name": "Python 3",
        "language": "python",
    }
    path = tmp_path / "writer.ipynb"
    nbformat.write(nb, path)
    return path


def test_run_records_outputs_and_check_unmarks_changed_ones(tmp_path):
    nb = _writer_notebook(tmp_path)
    target = tmp_path / "results" / "a.txt"
    reports = tmp_path / "reports"
    proc = subprocess.run(
        [sys.executable, "-m", "obd.pipeline.outputs", "run", str(nb), str(reports / "writer"),
         "-p", "out", str(target), "--quiet"],
        capture_output=True, text=True, cwd=tmp_path,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    manifest = json.loads((reports / "writer.outputs.json").read_text())["outputs"]
    # relative to the manifest's folder, its own report excluded
    assert manifest == {"../results/a.txt": outputs.sha256(target)}
    html = reports / "writer.html"

    check = [sys.executable, "-m", "obd.pipeline.outputs", "check", str(reports)]
    unchanged = subprocess.run(check, capture_output=True, text=True, cwd=tmp_path)
    assert unchanged.returncode == 0 and unchanged.stdout == "" and html.is_file()

    target.write_text("overwritten by hand")  # e.g. a notebook opened in JupyterLab
    changed = subprocess.run(check, capture_output=True, text=True, cwd=tmp_path)
    assert changed.returncode == 0
    assert "writer.html will run again: results/a.txt changed" in changed.stdout
    assert not html.exists()


def test_check_flags_missing_outputs_and_missing_records(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    out = tmp_path / "out.csv"
    write_text(out, "x\n1\n")
    write_text(tmp_path / "r" / "a.html", "<html></html>")
    outputs.write_manifest(tmp_path / "r" / "a", [out])
    write_text(tmp_path / "r" / "b.html", "<html></html>")  # ran before records existed
    assert outputs.check(tmp_path / "r", remove=False) == {
        "b.html": ["no record of its outputs (b.outputs.json)"]
    }
    out.unlink()
    stale = outputs.check(tmp_path / "r")
    assert stale["a.html"] == ["out.csv is missing"]
    assert not (tmp_path / "r" / "a.html").exists() and not (tmp_path / "r" / "b.html").exists()


def test_check_from_another_working_directory(tmp_path):
    """A manifest written from one folder is checked correctly from any other."""
    nb = _writer_notebook(tmp_path)
    (tmp_path / "repo").mkdir()
    (tmp_path / "elsewhere").mkdir()
    proc = subprocess.run(
        [sys.executable, "-m", "obd.pipeline.outputs", "run", str(nb), "reports/writer",
         "-p", "out", "results/a.txt", "--quiet"],
        capture_output=True, text=True, cwd=tmp_path / "repo",
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    reports = tmp_path / "repo" / "reports"
    check = [sys.executable, "-m", "obd.pipeline.outputs", "check"]
    for cwd, where in [
        (tmp_path / "elsewhere", str(reports)),
        (reports, "."),
        (tmp_path, "repo/reports"),
    ]:
        same = subprocess.run([*check, where], capture_output=True, text=True, cwd=cwd)
        assert same.returncode == 0 and same.stdout == "", (cwd, same.stdout)
        assert (reports / "writer.html").is_file()

    # the tree moved: still checked by the manifest's own place
    moved = tmp_path / "moved"
    (tmp_path / "repo").rename(moved)
    assert outputs.check(moved / "reports", remove=False) == {}
    (moved / "results" / "a.txt").write_text("overwritten by hand")
    stale = subprocess.run([*check, "moved/reports"], capture_output=True, text=True, cwd=tmp_path)
    assert "writer.html will run again: moved/results/a.txt changed" in stale.stdout
    assert not (moved / "reports" / "writer.html").exists()


def test_manifests_without_base_are_read_from_the_working_directory(tmp_path, monkeypatch):
    """Manifests written before paths were relative to them: relative to where the check runs."""
    monkeypatch.chdir(tmp_path)
    write_text(tmp_path / "results" / "a.txt", "x")
    write_text(tmp_path / "r" / "a.html", "<html></html>")
    digest = outputs.sha256(tmp_path / "results" / "a.txt")
    write_text(
        tmp_path / "r" / "a.outputs.json", json.dumps({"outputs": {"results/a.txt": digest}})
    )
    assert outputs.check(tmp_path / "r", remove=False) == {}
    (tmp_path / "results" / "a.txt").unlink()
    assert outputs.check(tmp_path / "r", remove=False) == {"a.html": ["results/a.txt is missing"]}


def test_stale_reasons_rejects_non_reports(tmp_path):
    with pytest.raises(ValueError, match="report .html"):
        outputs.stale_reasons(tmp_path / "a.ipynb")


def test_a_symlinked_results_folder_is_recorded_as_the_pipeline_reads_it(tmp_path):
    """``results -> v1`` re-pointed to ``v2``: the files behind the link changed, so the run
    that wrote ``results/x.csv`` is stale (the record names the link, not its old target)."""
    for name, text in (("v1", "a\n1\n"), ("v2", "a\n2\n")):
        (tmp_path / name).mkdir()
        (tmp_path / name / "x.csv").write_text(text)
    (tmp_path / "results").symlink_to("v1")
    reports = tmp_path / "reports"
    reports.mkdir()
    outputs.write_manifest(reports / "r", [tmp_path / "results" / "x.csv"])
    (reports / "r.html").write_text("done")
    record = json.loads((reports / "r.outputs.json").read_text())
    assert list(record["outputs"]) == ["../results/x.csv"]
    assert outputs.stale_reasons(reports / "r.html") == []
    (tmp_path / "results").unlink()
    (tmp_path / "results").symlink_to("v2")
    assert outputs.stale_reasons(reports / "r.html") == [
        f"{outputs._shown(tmp_path / 'results' / 'x.csv')} changed since this run wrote it"
    ]

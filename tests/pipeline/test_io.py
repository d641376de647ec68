"""obd.pipeline.io: atomic writes, loaders of finished outputs, stale temporary files, the lock."""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time

import pandas as pd
import pytest

from obd.pipeline import io
from obd.pipeline.outputs import write_manifest
from obd.study.variants import load_sweeps


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def test_atomic_writes_are_readable_by_everyone(tmp_path):
    io.write_text(tmp_path / "sub" / "a.txt", "x")
    assert (tmp_path / "sub" / "a.txt").stat().st_mode & 0o777 == 0o666 & ~_umask()
    assert (tmp_path / "sub").stat().st_mode & 0o777 == 0o777 & ~_umask()


def _sweep(variant: str, seeds: list[int]) -> pd.DataFrame:
    saliency, scope, model = variant.split("-")
    return pd.DataFrame({"variant": variant, "saliency": saliency, "scope": scope, "model": model,
                         "include_biases": False, "seed": seeds, "fraction": 0.0,
                         "pruned_fraction": 0.0, "n_pruned": 0, "accuracy": 0.9, "loss": 0.1})  # fmt: skip


def test_loaders_read_only_finished_outputs_and_resume_cleans_temps(tmp_path):
    sweeps = tmp_path / "results" / "sweeps"
    sweeps.mkdir(parents=True)
    _sweep("obd-global-plain", [0, 1]).to_csv(sweeps / "obd-global-plain.csv", index=False)
    # what a killed writer leaves: a partial temporary file beside its target
    partial = sweeps / ".obd-global-dropout.csv.obd-tmp-k3j_x9q2.csv"
    _sweep("obd-global-dropout", [0]).to_csv(partial, index=False)
    write_manifest(tmp_path / "reports" / "prune", [sweeps / "obd-global-plain.csv"])
    df = load_sweeps(tmp_path / "results")
    assert set(df.variant) == {"obd-global-plain"} and len(df) == 2

    reports = tmp_path / "reports"
    io.write_text(reports / "train-plain-seed0.html", "<html></html>")
    (reports / ".prune-x.html.obd-tmp-abcd1234.html").write_text("<html>partial")
    (reports / ".train-plain-seed0.ipynb.obd-tmp-zz9_8x7w.ipynb").write_text("{")
    (reports / ".params").mkdir()
    (reports / ".params" / "train-plain-seed0.args").write_text("-p seed 0")
    (reports / ".reproduce.lock").write_text("")
    assert io.finished(reports.glob("*.html")) == [reports / "train-plain-seed0.html"]

    removed = io.clean_stale([tmp_path / "results", reports, tmp_path / "missing"])
    assert sorted(p.name for p in removed) == sorted(
        [
            partial.name,
            ".prune-x.html.obd-tmp-abcd1234.html",
            ".train-plain-seed0.ipynb.obd-tmp-zz9_8x7w.ipynb",
        ]
    )
    assert (reports / ".params" / "train-plain-seed0.args").exists()
    assert (reports / ".reproduce.lock").exists() and (reports / "train-plain-seed0.html").exists()


def test_temp_names_match_what_atomic_path_creates(tmp_path):
    seen = []
    for name in ("a.csv", "train-plain-seed0.ipynb", "noext"):
        with io.atomic_path(tmp_path / name) as tmp:
            seen.append(tmp.name)
            assert io.TEMP_NAME.match(tmp.name) and io.is_temp(tmp)
            assert tmp.name.startswith(f".{name}.obd-tmp-")
            tmp.write_text("x")
    assert not io.clean_stale([tmp_path])
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "a.csv",
        "noext",
        "train-plain-seed0.ipynb",
    ]


def test_clean_stale_never_removes_a_users_hidden_files(tmp_path, monkeypatch):
    """Only names with the project's ``.obd-tmp-`` marker are temporary files: a user's hidden
    notes or backups, even shaped like ``.NAME.XXXXXXXX.SUFFIX``, are never removed."""
    users = [".notes.20240101.md", ".draft.abcd1234.csv", ".bashrc", ".a.csv.obd-tmp-.csv"]
    for name in users:
        (tmp_path / "sub" / name).parent.mkdir(exist_ok=True)
        (tmp_path / "sub" / name).write_text("mine")
    ours = tmp_path / "sub" / ".a.csv.obd-tmp-k3j_x9q2.csv"
    ours.write_text("partial")
    assert [io.is_temp(tmp_path / "sub" / n) for n in users] == [False] * len(users)
    assert io.clean_stale([tmp_path]) == [ours]
    assert sorted(p.name for p in (tmp_path / "sub").iterdir()) == sorted(users)
    assert io.main(["clean", str(tmp_path)]) == 0 and len(list((tmp_path / "sub").iterdir())) == 4

    # the write probe of check_writable carries the marker too
    probes = []
    real = io.tempfile.mkstemp
    monkeypatch.setattr(
        io.tempfile, "mkstemp", lambda **kw: probes.append(real(**kw)) or probes[-1]
    )
    io.check_writable(tmp_path / "out" / "x.csv")
    assert probes and all(io.is_temp(p) for _, p in probes)


def test_clean_stale_removes_a_killed_site_build_but_no_user_folder(tmp_path, monkeypatch):
    """The report site builds in a marked hidden folder of reports/: a build killed midway leaves
    that folder, which the next run removes; a user's hidden folder is kept."""
    from obd.pipeline import site
    from obd.study import report

    seen = []
    real = site.tempfile.TemporaryDirectory

    def spy(**kw):
        seen.append(kw["prefix"])
        raise KeyboardInterrupt  # killed as the build starts

    monkeypatch.setattr(site.tempfile, "TemporaryDirectory", spy)
    with pytest.raises(KeyboardInterrupt):
        report.build_site(tmp_path, tmp_path, tmp_path)
    monkeypatch.setattr(site.tempfile, "TemporaryDirectory", real)
    killed = io.mark_build_folder(tempfile.mkdtemp(prefix=seen[0], dir=tmp_path))  # a killed build
    (killed / "src" / "notebooks").mkdir(parents=True)
    (killed / "src" / "notebooks" / "a.ipynb").write_text("{}")
    user = tmp_path / ".my-site-notes"
    user.mkdir()
    (user / "n.md").write_text("mine")
    assert io.clean_stale([tmp_path]) == [killed]
    assert not killed.exists() and (user / "n.md").read_text() == "mine"


def test_lock_makes_a_second_run_wait(tmp_path):
    lock = tmp_path / "r" / ".reproduce.lock"
    cmd = [sys.executable, "-m", "obd.pipeline.io", "locked", str(lock)]
    log = tmp_path / "log"
    first = subprocess.Popen(
        [*cmd, "sh", "-c", f"echo first-start >> {log}; sleep 3; echo first-end >> {log}"]
    )
    deadline = time.time() + 30
    while not (log.exists() and "first-start" in log.read_text()):
        assert time.time() < deadline
        time.sleep(0.05)
    second = subprocess.run(
        [*cmd, "sh", "-c", f"echo second >> {log}"], capture_output=True, text=True, timeout=60
    )
    first.wait(timeout=30)
    assert second.returncode == 0
    assert f"another run is in progress in this checkout (pid {first.pid}" in second.stderr
    assert log.read_text().split() == ["first-start", "first-end", "second"]


def test_clean_stale_keeps_a_users_folder_named_like_a_temporary_one(tmp_path):
    """A folder is removed only when this project made it (its build marker): a user's hidden
    folder whose name carries the marker pattern is kept, with its files."""
    user = tmp_path / ".site.obd-tmp-20240101"
    (user / "notes").mkdir(parents=True)
    (user / "notes" / "n.md").write_text("mine")
    other = tmp_path / ".backup.obd-tmp-abcd1234.d"
    other.mkdir()
    assert io.is_temp(user) and io.is_temp(other)  # the name alone does not decide
    assert io.clean_stale([tmp_path]) == []
    assert (user / "notes" / "n.md").read_text() == "mine" and other.is_dir()

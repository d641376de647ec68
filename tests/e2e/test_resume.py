"""A killed build resumes, and a concurrent one waits on the lock (a real QUICK training run)."""

from __future__ import annotations

import json
import os
import subprocess
import threading
import time
from pathlib import Path

import pytest

from checkout import copy_checkout
from obd.pipeline import io
from obd.study.model import load_params


def _mnist_reachable() -> bool:
    root = os.environ.get("TFDS_DATA_DIR")
    cached = Path(os.environ.get("OBD_CACHE_DIR", Path.home() / ".cache" / "obd"))
    return (bool(root) and (Path(root) / "mnist").is_dir()) or any(cached.glob("mnist-*-test.npz"))


@pytest.mark.slow
def test_killed_run_resumes_and_a_concurrent_run_waits(tmp_path):
    """Run A trains one QUICK model; run B, started meanwhile, waits on the lock; A is killed
    (SIGKILL, the whole process group) mid-notebook; B then cleans A's temporary files and
    finishes the job. A third run plans nothing."""
    if not _mnist_reachable():
        pytest.skip("no MNIST copy: set TFDS_DATA_DIR to a folder with mnist/3.0.1")
    tree = copy_checkout(tmp_path)
    dirs = {k: tmp_path / k for k in ("results", "reports", "figures")}
    goal = f"GOAL={dirs['reports']}/train-plain-seed0.html"
    cmd = ["make", "--no-print-directory", "reproduce", "QUICK=1", "SEEDS=0", "STEPS=300", goal]
    cmd += [f"{k.upper()}={v}" for k, v in dirs.items()]
    a = subprocess.Popen(cmd, cwd=tree, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                         start_new_session=True)  # fmt: skip
    deadline = time.time() + 240
    while not list(dirs["reports"].glob(".train-plain-seed0.ipynb.*")):  # the kernel runs
        assert a.poll() is None and time.time() < deadline, "run A ended before it was killed"
        time.sleep(0.2)
    b = subprocess.Popen(cmd, cwd=tree, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                         text=True, start_new_session=True)  # fmt: skip
    lines: list[str] = []
    reader = threading.Thread(target=lambda: lines.extend(b.stdout), daemon=True)
    reader.start()
    while not any("another run is in progress in this checkout" in line for line in lines):
        assert b.poll() is None and time.time() < deadline + 120, "".join(lines)[-3000:]
        time.sleep(0.2)  # B waits on the lock
    assert a.poll() is None, "run A ended before it was killed"
    os.killpg(a.pid, 9)
    a.wait()
    b.wait(timeout=400)
    reader.join(timeout=30)
    out = "".join(lines)
    assert b.returncode == 0, out[-3000:]
    assert "removed stale temporary file" in out and ".train-plain-seed0.ipynb." in out
    assert (dirs["reports"] / "train-plain-seed0.html").is_file()
    assert not [p for d in dirs.values() if d.exists() for p in d.rglob(".*") if p.is_file()
                and io.TEMP_NAME.match(p.name)]  # fmt: skip
    params, meta = load_params(dirs["results"] / "models" / "plain-seed0.npz")
    assert meta["config"]["steps"] == 300
    again = subprocess.run(cmd, cwd=tree, capture_output=True, text=True, timeout=300)
    assert again.returncode == 0 and "obd.pipeline.runner" not in again.stdout + again.stderr
    assert "▶" not in again.stdout, again.stdout[-2000:]
    manifest = dirs["reports"] / "train-plain-seed0.outputs.json"
    assert json.loads(manifest.read_text())["outputs"]

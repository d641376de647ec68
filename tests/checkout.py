"""A copy of the checkout to run make in (tests of the build), and make run on it."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def copy_checkout(tmp_path: Path) -> Path:
    """A copy of what the build reads (Makefile, library, notebooks), its files an hour older than
    the environment's install stamp, with the environment linked as its .venv (the one running
    these tests when `make setup` built it, as `make test VENV=.venv-3.12` does; else .venv):
    other work in this checkout cannot touch its timestamps, and the copy's make never reinstalls
    the shared environment (which would point its editable install at the copy)."""
    tree = tmp_path / "tree"
    paths = ["Makefile", "pyproject.toml", "requirements.txt"]
    paths += [str(p.relative_to(ROOT)) for p in (ROOT / "configs").glob("*.yaml")]
    paths += [
        str(p.relative_to(ROOT))
        for p in (ROOT / "lib" / "obd").rglob("*.*")
        if p.suffix in (".py", ".csv") and "__pycache__" not in p.parts
    ]
    paths += [str(p.relative_to(ROOT)) for p in (ROOT / "notebooks").glob("*.ipynb")]
    running = Path(sys.prefix)
    venv = running if (running / ".installed").is_file() else ROOT / ".venv"
    stamp = venv / ".installed"
    old = min(time.time(), stamp.stat().st_mtime if stamp.exists() else time.time()) - 3600
    for rel in paths:
        (tree / rel).parent.mkdir(parents=True, exist_ok=True)
        (tree / rel).write_bytes((ROOT / rel).read_bytes())
        os.utime(tree / rel, (old, old))
    (tree / ".venv").symlink_to(venv)
    return tree


def run_make(
    *args: str, dirs: dict[str, Path], cwd: Path = ROOT, **kw
) -> subprocess.CompletedProcess:
    cmd = ["make", "--no-print-directory", *args, "QUICK=1", "SEEDS=0"]
    cmd += [f"{k.upper()}={v}" for k, v in dirs.items()]
    return subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, **kw)

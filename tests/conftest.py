"""Shared fixtures: small synthetic data sets and networks, and the suite's one QUICK pipeline run.

The QUICK pipeline (``make reproduce QUICK=1``, several minutes) runs at most once per session, in
the background: as soon as pytest has collected the tests, if any selected test asks for
``quick_pipeline`` (or ``quick_run``) as an argument, the run starts, and those tests are moved to
the end of the session so that the rest of the suite runs meanwhile. A test that reaches the run
only through ``request.getfixturevalue`` still gets it, but the run then starts when it is first
asked for.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

ROOT = Path(__file__).resolve().parents[1]
#: the fixtures that hand out the QUICK pipeline run
QUICK_FIXTURES = ("quick_pipeline", "quick_run")
QUICK_FOLDERS = ("results", "reports", "figures")


@pytest.fixture
def toy_data() -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """A learnable 3-class problem with 20 inputs: labels from a fixed random linear map."""
    rng = np.random.default_rng(0)
    w = rng.normal(size=(20, 3))
    x = rng.uniform(size=(600, 20)).astype(np.float32)
    y = ((x - 0.5) @ w).argmax(-1).astype(np.int32)
    return x[:500], y[:500], x[500:], y[500:]


def mnist_reachable() -> bool:
    """Whether MNIST is on this machine: under ``TFDS_DATA_DIR`` or already in obd's cache."""
    root = os.environ.get("TFDS_DATA_DIR")
    cached = Path(os.environ.get("OBD_CACHE_DIR", Path.home() / ".cache" / "obd"))
    return (bool(root) and (Path(root) / "mnist").is_dir()) or any(cached.glob("mnist-*-test.npz"))


class QuickPipeline:
    """One ``make reproduce QUICK=1 JOBS=2`` into ``root``/{results,reports,figures}, run in the
    background (its own process group); its output goes to ``root``/make.log."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.log = root / "make.log"
        self.proc: subprocess.Popen | None = None

    def command(self) -> list[str]:
        cmd = ["make", "--no-print-directory", "reproduce", "QUICK=1", "JOBS=2"]
        cmd += [f"{d.upper()}={self.root / d}" for d in QUICK_FOLDERS]
        # the interpreter that runs the tests runs the notebooks too, when it is an environment
        # that `make setup` built (`make test VENV=.venv-3.12`); otherwise the Makefile's default
        if sys.prefix != sys.base_prefix and (Path(sys.prefix) / ".installed").is_file():
            cmd.append(f"VENV={sys.prefix}")
        return cmd

    def start(self) -> None:
        if self.proc is not None:
            return
        self.root.mkdir(parents=True, exist_ok=True)
        with open(self.log, "wb") as log:
            self.proc = subprocess.Popen(
                self.command(), cwd=ROOT, stdout=log, stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL, start_new_session=True,
            )  # fmt: skip

    def wait(self) -> Path:
        """Start the run if it has not started, wait for it; ``root`` once it succeeded."""
        self.start()
        assert self.proc is not None
        code = self.proc.wait()
        if code != 0:
            tail = self.log.read_text(errors="replace")[-6000:]
            pytest.fail(f"{' '.join(self.command())} exited with {code}; its output ends:\n{tail}")
        return self.root

    def stop(self) -> None:
        """End a run still going (the session ended first: -x, Ctrl-C, or no test waited)."""
        if self.proc is None or self.proc.poll() is not None:
            return
        for sig, grace in ((signal.SIGTERM, 30), (signal.SIGKILL, 30)):
            try:
                os.killpg(self.proc.pid, sig)
                self.proc.wait(timeout=grace)
                return
            except ProcessLookupError:
                return
            except subprocess.TimeoutExpired:
                continue


_QUICK = pytest.StashKey[QuickPipeline]()


def _quick(config: pytest.Config) -> QuickPipeline:
    if _QUICK not in config.stash:
        factory = getattr(config, "_tmp_path_factory", None)  # pytest's tmp_path_factory
        root = factory.mktemp("quick") if factory else Path(tempfile.mkdtemp(prefix="obd-quick-"))
        config.stash[_QUICK] = QuickPipeline(root)
    return config.stash[_QUICK]


def _uses_quick(item: pytest.Item) -> bool:
    return any(name in QUICK_FIXTURES for name in getattr(item, "fixturenames", ()))


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """The QUICK pipeline's readers run last (a stable sort: the order is otherwise kept)."""
    items.sort(key=_uses_quick)


def pytest_collection_finish(session: pytest.Session) -> None:
    """Start the QUICK pipeline at once when a selected test will read it."""
    if session.config.option.collectonly or not mnist_reachable():
        return
    if any(_uses_quick(item) for item in session.items):
        _quick(session.config).start()


def pytest_sessionfinish(session: pytest.Session) -> None:
    if _QUICK in session.config.stash:
        session.config.stash[_QUICK].stop()


@pytest.fixture(scope="session")
def quick_pipeline(pytestconfig: pytest.Config) -> Path:
    """The folder of the session's ``make reproduce QUICK=1`` run, finished and successful.

    It holds ``results/`` (models, sweeps, summaries), ``reports/`` (every notebook's executed
    ``.ipynb`` and ``.html``, ``index.html`` and the report site ``site/``) and ``figures/``, as
    ``quick/`` does in a checkout, plus ``make.log``. The run is shared by every test of the
    session: treat it as read-only. Take this fixture as a test's argument (not through
    ``request.getfixturevalue``) so that the run starts in the background as soon as the tests are
    collected. Skipped without MNIST (``TFDS_DATA_DIR`` or obd's cache); a failed run fails every
    test that asks for it, with the end of its output.
    """
    if not mnist_reachable():
        pytest.skip("no MNIST copy: set TFDS_DATA_DIR to a folder with mnist/3.0.1")
    return _quick(pytestconfig).wait()


@pytest.fixture(scope="session")
def quick_run(quick_pipeline: Path) -> dict[str, Path]:
    """The same run as :func:`quick_pipeline`, as ``{"results": ..., "reports": ..., "figures":
    ...}``."""
    return {d: quick_pipeline / d for d in QUICK_FOLDERS}

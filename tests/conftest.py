"""Shared fixtures: small synthetic data sets and networks, and the suite's background runs.

The tests mirror the library: ``core/`` (``obd``'s flat modules), ``study/`` (``obd.study``),
``pipeline/`` (``obd.pipeline``, the Makefile and project files) and ``e2e/`` (notebook runs, the
QUICK pipeline, offline reports, the report site, notebook defaults). This folder is on
``sys.path`` under pytest: ``problems.py`` (the table of small test problems), ``checkout.py`` and
``convnet_synthetic.py`` are shared by every folder's tests.

Two pieces of work run outside the pytest process, each at most once per session and in the
background, so that the rest of the suite runs meanwhile:

* ``quick_pipeline``: ``make reproduce QUICK=1`` (several minutes), every notebook end to end;
* ``notebook_defaults_runs``: each notebook run by hand with its defaults
  (``tests/e2e/test_notebook_defaults.py``).

As soon as pytest has collected the tests, each run that a selected test takes as an argument
starts (at a lower priority: ``nice -n 10``, so that it uses the cores the tests leave idle), and
the tests that read a run are moved to the end of the session. A test that reaches a run only
through ``request.getfixturevalue`` still gets it, but the run then starts when first asked for.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

ROOT = Path(__file__).resolve().parents[1]
QUICK_FOLDERS = ("results", "reports", "figures")


@pytest.fixture
def toy_data() -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """A learnable 3-class problem with 20 inputs: labels from a fixed random linear map."""
    rng = np.random.default_rng(0)
    w = rng.normal(size=(20, 3))
    x = rng.uniform(size=(600, 20)).astype(np.float32)
    y = ((x - 0.5) @ w).argmax(-1).astype(np.int32)
    return x[:500], y[:500], x[500:], y[500:]


@pytest.fixture(scope="session")
def trained_toy_mlp():
    """A 20-16-16-3 plain MLP trained (3,000 Adam steps) on ``toy_data``'s problem, with its
    data ``(x, y, x_test, y_test)``: the model that retraining and gradual pruning start from."""
    import jax

    from obd.mlp import init_mlp
    from obd.retrain import retrain_masked

    rng = np.random.default_rng(0)
    w = rng.normal(size=(20, 3))
    x = rng.uniform(size=(600, 20)).astype(np.float32)
    y = ((x - 0.5) @ w).argmax(-1).astype(np.int32)
    data = x[:500], y[:500], x[500:], y[500:]
    params = init_mlp(jax.random.key(0), (20, 16, 16, 3))
    everything = jax.tree.map(lambda p: np.ones(p.shape, bool), params)
    params = retrain_masked(params, everything, data[0], data[1], steps=3000,
                            learning_rate=3e-3, loss_reduction="mean")  # fmt: skip
    return params, data


@pytest.fixture
def toy_net():
    """An untrained plain MLP for ``toy_data`` (``problems.TOY_SIZES``: 20-8-3)."""
    import jax

    from obd.mlp import init_mlp
    from problems import TOY_SIZES

    return init_mlp(jax.random.key(0), TOY_SIZES)


def mnist_reachable() -> bool:
    """Whether MNIST is on this machine: under ``TFDS_DATA_DIR`` or already in obd's cache."""
    root = os.environ.get("TFDS_DATA_DIR")
    cached = Path(os.environ.get("OBD_CACHE_DIR", Path.home() / ".cache" / "obd"))
    return (bool(root) and (Path(root) / "mnist").is_dir()) or any(cached.glob("mnist-*-test.npz"))


# --- the background runs ------------------------------------------------------------------------


def _quick_command(root: Path, items: Sequence[pytest.Item]) -> list[str]:
    cmd = ["make", "--no-print-directory", "reproduce", "QUICK=1", "JOBS=2"]
    cmd += [f"{d.upper()}={root / d}" for d in QUICK_FOLDERS]
    # the interpreter that runs the tests runs the notebooks too, when it is an environment that
    # `make setup` built (`make test VENV=.venv-3.12`); otherwise the Makefile's default
    if sys.prefix != sys.base_prefix and (Path(sys.prefix) / ".installed").is_file():
        cmd.append(f"VENV={sys.prefix}")
    return cmd


def _defaults_command(root: Path, items: Sequence[pytest.Item]) -> list[str]:
    """tests/e2e/test_notebook_defaults.py as a script: the notebooks of the selected tests (all when
    the run was asked for some other way)."""
    stems = sorted({item.callspec.params["path"].stem for item in items if hasattr(item, "callspec")
                    and "path" in item.callspec.params})  # fmt: skip
    script = ROOT / "tests" / "e2e" / "test_notebook_defaults.py"
    return [sys.executable, str(script), str(root), *stems]


#: fixture name -> the command of its run, from the run's folder and the tests that read it
RUNS: dict[str, Callable[[Path, Sequence[pytest.Item]], list[str]]] = {
    "quick_pipeline": _quick_command,
    "notebook_defaults_runs": _defaults_command,
}


class BackgroundRun:
    """A command run in the background, ``nice -n 10``, in its own process group, from the
    repository's root; its output goes to ``root``/run.log."""

    def __init__(self, name: str, root: Path) -> None:
        self.name, self.root, self.log = name, root, root / "run.log"
        self.command: list[str] = []
        self.proc: subprocess.Popen | None = None

    def start(self, items: Sequence[pytest.Item] = ()) -> None:
        if self.proc is not None:
            return
        self.root.mkdir(parents=True, exist_ok=True)
        self.command = ["nice", "-n", "10", *RUNS[self.name](self.root, items)]
        with open(self.log, "wb") as log:
            self.proc = subprocess.Popen(
                self.command, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL, start_new_session=True,
            )  # fmt: skip

    def wait(self) -> Path:
        """Start the run if it has not started, wait for it; ``root`` once it succeeded."""
        self.start()
        assert self.proc is not None
        code = self.proc.wait()
        if code != 0:
            tail = self.log.read_text(errors="replace")[-6000:]
            pytest.fail(f"{' '.join(self.command)} exited with {code}; its output ends:\n{tail}")
        return self.root

    def stop(self) -> None:
        """End a run still going (the session ended first: -x, Ctrl-C, or no test waited)."""
        if self.proc is None or self.proc.poll() is not None:
            return
        for sig in (signal.SIGTERM, signal.SIGKILL):
            try:
                os.killpg(self.proc.pid, sig)
                self.proc.wait(timeout=30)
                return
            except ProcessLookupError:
                return
            except subprocess.TimeoutExpired:
                continue


_RUNS = pytest.StashKey[dict[str, BackgroundRun]]()


def _run(config: pytest.Config, name: str) -> BackgroundRun:
    runs = config.stash.setdefault(_RUNS, {})
    if name not in runs:
        factory = getattr(config, "_tmp_path_factory", None)  # pytest's tmp_path_factory
        root = factory.mktemp(name) if factory else Path(tempfile.mkdtemp(prefix=f"obd-{name}-"))
        runs[name] = BackgroundRun(name, root)
    return runs[name]


def _reads(item: pytest.Item) -> set[str]:
    """The background runs among a test's fixtures (direct or through another fixture)."""
    return set(RUNS) & set(getattr(item, "fixturenames", ()))


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """The background runs' readers come last (a stable sort: the order is otherwise kept)."""
    items.sort(key=lambda item: bool(_reads(item)))


def pytest_collection_finish(session: pytest.Session) -> None:
    """Start each background run that a selected test reads, at once."""
    if session.config.option.collectonly or not mnist_reachable():
        return
    for name in RUNS:
        readers = [item for item in session.items if name in _reads(item)]
        if readers:
            _run(session.config, name).start(readers)


def pytest_sessionfinish(session: pytest.Session) -> None:
    for run in session.config.stash.get(_RUNS, {}).values():
        run.stop()


def _skip_without_mnist() -> None:
    if not mnist_reachable():
        pytest.skip("no MNIST copy: set TFDS_DATA_DIR to a folder with mnist/3.0.1")


@pytest.fixture(scope="session")
def quick_pipeline(pytestconfig: pytest.Config) -> Path:
    """The folder of the session's ``make reproduce QUICK=1`` run, finished and successful.

    It holds ``results/`` (models, sweeps, summaries), ``reports/`` (every notebook's executed
    ``.ipynb`` and ``.html``, ``index.html`` and the report site ``site/``) and ``figures/``, as
    ``quick/`` does in a checkout, plus the run's output ``run.log``. The run is shared by every
    test of the session: treat it as read-only. Take this fixture as a test's argument (not through
    ``request.getfixturevalue``) so that the run starts in the background as soon as the tests are
    collected. Skipped without MNIST (``TFDS_DATA_DIR`` or obd's cache); a failed run fails every
    test that asks for it, with the end of its output.
    """
    _skip_without_mnist()
    return _run(pytestconfig, "quick_pipeline").wait()


@pytest.fixture(scope="session")
def quick_run(quick_pipeline: Path) -> dict[str, Path]:
    """The same run as :func:`quick_pipeline`, as ``{"results": ..., "reports": ..., "figures":
    ...}``."""
    return {d: quick_pipeline / d for d in QUICK_FOLDERS}


@pytest.fixture(scope="session")
def notebook_defaults_runs(pytestconfig: pytest.Config) -> Path:
    """The folder where ``tests/e2e/test_notebook_defaults.py``, run as a script, ran the notebooks
    with their defaults (see its ``run_all``); finished. Skipped without MNIST."""
    _skip_without_mnist()
    return _run(pytestconfig, "notebook_defaults_runs").wait()

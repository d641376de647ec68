"""Running a notebook by hand with its defaults never changes the batch results.

Each notebook runs in its own copy of a repository layout (``notebooks/``, ``results/`` with tiny
fixture models and sweeps, ``figures/``) with only its *size* parameters made tiny: every output
location keeps its default. The fixture models are narrow MLPs (``SIZES``, 784 inputs and 10
classes as MNIST needs) so that the notebooks' per-layer work (OBS, dense curvature) takes
seconds. ``results/`` and ``figures/`` must come out byte for byte unchanged, and what the
notebook wrote must be under ``scratch/``.

The runs happen outside the pytest process, one notebook at a time, while the rest of the suite
runs: this file run as a script (:func:`run_all`) is the background run ``notebook_defaults_runs``
of conftest.py; each test checks what its notebook's run did.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import sys
import traceback
from pathlib import Path

import nbformat
import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[2]
NOTEBOOKS = sorted((ROOT / "notebooks").glob("*.ipynb"))

#: The fixture models' layer widths: MNIST's 784 inputs and 10 classes, two narrow hidden layers.
SIZES = (784, 16, 16, 10)
#: Size parameters that make each notebook run in seconds. Never an output location.
TINY: dict[str, dict] = {
    "train": {"steps": 20},
    "prune": {"fractions": [0, 0.5, 1], "hessian_examples": 500},
    "obs": {"fractions": [0, 0.5], "calibration_examples": 500},
    "curvature": {
        "hessian_examples": 500,
        "fractions": [0, 0.5, 1],
        "overlap_fractions": [0.5],
        "hutchinson_probes": [1],
        "adam_steps": 5,
    },  # fmt: skip
    "assumptions": {"fractions": [0, 0.5], "hessian_examples": 500},
    "retrain": {
        "schedule": [0.5],
        "retrain_steps": 5,
        "oneshot_retrain": False,
        "hessian_examples": 500,
    },  # fmt: skip
    "compare": {},
    "convnet": {
        "train_steps": 5,
        "fractions": [0, 0.5],
        "hessian_examples": 200,
        "obs": False,  # layer-wise OBS of 784-wide layers takes ~100 s; tests/core/test_obs_nets.py
        "schedule": [0.5],
        "retrain_steps": [2],  # one count per round
        "iterative_hessian_examples": 200,
    },  # fmt: skip
    "convnet_compare": {},  # reads the tiny convnet CSVs of the fixture
    "frontier": {
        "train_steps": 5,
        "compressions": [2, 4],
        "iterative_epochs": 0.01,  # about 9 steps a round
        "gradual_epochs": 0.01,
        "update_every": 3,
        "hessian_examples": 200,
        # iterative-obs (about 40 s even here: the greedy OBS pass over 300 units of 784
        # weights) runs in the QUICK pipeline instead
        "methods": ["iterative-obd", "iterative-magnitude", "gradual-obd", "gradual-magnitude"],
    },  # fmt: skip
    "own_model": {"train_steps": 20, "hessian_examples": 200, "retrain_steps": 5},
    "global_obs": {"fractions": [0, 0.5], "hessian_examples": 500},
    "blog_replay": {
        "draws": 1,
        "permutation_draws": 1,
        "max_percent": 3,
        "overflow_batches": 5,
        "corrected_runs": [],
        "obs_calibration_examples": 0,
        "hessian_examples": 500,
    },  # fmt: skip
}
#: Notebooks that write no file at all (the library tutorial shows its results only)
WRITES_NOTHING = {"own_model"}
#: Notebooks whose defaults are still being moved to scratch/ by their owners, or whose tiny
#: sizes are not settled yet (checked before TINY: a pending notebook needs no TINY entry).
PENDING: dict[str, str] = {}


def _digest(folder: Path) -> dict[str, str]:
    return {
        str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


def build_base(root: Path) -> None:
    """A repository layout in ``root``: the notebooks, tiny seed-0 models (``SIZES``, 50 steps),
    two sweeps, synthetic convnet runs and a committed figure."""
    import jax

    from obd.prune import sweep
    from obd.saliencies import saliency
    from obd.study.data import load_mnist
    from obd.study.model import save_params
    from obd.study.train import TrainConfig, train
    from obd.study.variants import RESULT_COLUMNS

    shutil.copytree(ROOT / "notebooks", root / "notebooks")
    x_test, y_test = load_mnist("test")
    for name, rate in (("plain", 0.0), ("dropout", 0.2)):
        cfg = TrainConfig(seed=0, steps=50, chunk_steps=50, dropout_rate=rate, sizes=SIZES)
        params, history = train(cfg, progress=False)
        meta = {"config": cfg.to_dict(), "seed": 0, "test_accuracy": float(history.test_accuracy.iloc[-1]),
                "test_loss": float(history.test_loss.iloc[-1]), "train_loss": 0.0}  # fmt: skip
        save_params(root / "results" / "models" / f"{name}-seed0.npz", params, meta)
        if name == "plain":
            (root / "results" / "sweeps").mkdir(parents=True)
            for kind in ("magnitude", "random"):
                table = sweep(params, saliency(kind, params, key=jax.random.key(0)),
                              np.array([0, 0.5, 1]), x_test, y_test, scope="global")  # fmt: skip
                table = table.assign(variant=f"{kind}-global-plain", saliency=kind, scope="global",
                                     model="plain", include_biases=False, seed=0)  # fmt: skip
                table[RESULT_COLUMNS].to_csv(
                    root / "results" / "sweeps" / f"{kind}-global-plain.csv", index=False
                )
            from obd.pipeline.outputs import write_manifest  # what the prune runs record

            write_manifest(
                root / "reports" / "prune", list((root / "results" / "sweeps").glob("*"))
            )
    from convnet_synthetic import write_study

    write_study(root / "results", seeds=(0,))
    (root / "figures").mkdir()
    (root / "figures" / "fig1_blog_variants.png").write_bytes(b"\x89PNG committed figure")


def _runnable(stem: str) -> bool:
    if stem in PENDING or stem not in TINY:
        return False
    if stem == "blog_replay":
        from obd.study import blog2016

        return blog2016.blog_available()
    return True


def run_all(root: Path, stems: list[str]) -> None:
    """Build the layout in ``root``/base and record its digests (``base.json``); then run each
    notebook of ``stems`` (every runnable one when empty) with its defaults and ``TINY`` sizes in
    its own copy ``root``/STEM, recording ``root``/STEM.json: ``{"error": traceback or None}``."""
    from obd.pipeline.runner import run_notebook

    base = root / "base"
    build_base(base)
    digests = {d: _digest(base / d) for d in ("results", "figures")}
    (root / "base.json").write_text(json.dumps(digests))
    for stem in stems or [p.stem for p in NOTEBOOKS]:
        if not _runnable(stem):
            continue
        tree = root / stem
        shutil.copytree(base, tree)
        try:
            run_notebook(tree / "notebooks" / f"{stem}.ipynb", tree / "reports" / stem, TINY[stem],
                         log_output=False)  # fmt: skip
            error = None
        except Exception:
            error = traceback.format_exc()
        (root / f"{stem}.json").write_text(json.dumps({"error": error}))
        print(f"{stem}: {'failed' if error else 'ran'}", flush=True)


@pytest.mark.slow
@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_defaults_leave_results_and_figures_unchanged(notebook_defaults_runs, path):
    if path.stem in PENDING:
        pytest.xfail(PENDING[path.stem])
    if path.stem not in TINY:
        pytest.fail(f"add tiny size parameters for {path.name} to TINY in {Path(__file__).name}")
    if path.stem == "blog_replay":
        from obd.study import blog2016

        if not blog2016.blog_available():
            pytest.skip(f"the blog's files are not here (set {blog2016.ENV_VAR})")
    root = notebook_defaults_runs
    record = root / f"{path.stem}.json"
    assert record.is_file(), f"{path.name} was not run: see {root / 'run.log'}"
    error = json.loads(record.read_text())["error"]
    assert error is None, f"{path.name} with its defaults failed:\n{error}"
    before = json.loads((root / "base.json").read_text())
    tree = root / path.stem
    for d in ("results", "figures"):
        assert _digest(tree / d) == before[d], f"{path.name} with its defaults changed {d}/"
    written = [p for p in (tree / "scratch").rglob("*") if p.is_file()]
    if path.stem in WRITES_NOTHING:
        assert not written, f"{path.name} should write no file, wrote {written}"
    else:
        assert written, f"{path.name} wrote nothing to scratch/: where did its outputs go?"
    executed = nbformat.read(tree / "reports" / f"{path.stem}.ipynb", as_version=4)
    assert not any(o.get("name") == "stderr" and "tqdm" in o.get("text", "").lower()
                   for c in executed.cells if c.cell_type == "code" for o in c.outputs)  # fmt: skip


if __name__ == "__main__":
    sys.path.insert(0, str(ROOT / "tests"))  # its helpers (convnet_synthetic), as under pytest
    run_all(Path(sys.argv[1]), sys.argv[2:])

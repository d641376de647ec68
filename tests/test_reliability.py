"""Reliability: bad input is a ``ValueError`` naming what was wrong, never a plausible number;
faults leave nothing half-done; the build never presents stale results as current."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import nbformat
import numpy as np
import pandas as pd
import pytest

from obd import curvature as cv
from obd import io, runner
from obd.checks import check_examples
from obd.model import init_mlp, load_params, save_params
from obd.retrain import iterative_prune, retrain_masked
from obd.study import load_sweeps
from obd.taylor import loss_change_curve
from obd.train import TrainConfig, train

ROOT = Path(__file__).resolve().parents[1]
SIZES = (20, 8, 3)
SMALL = dict(sizes=SIZES, steps=20, batch_size=16, chunk_steps=10, learning_rate=1e-3)


@pytest.fixture
def net():
    return init_mlp(jax.random.key(0), SIZES)


def _ones_masks(params):
    return jax.tree.map(lambda p: jnp.ones(p.shape, bool), params)


# --- labels out of range ---------------------------------------------------------------------


@pytest.mark.parametrize("label", [3, -1])
def test_labels_out_of_range_raise_everywhere(toy_data, net, label):
    x, y, xt, yt = toy_data
    bad = y.copy()
    bad[7] = label
    want = rf"labels in \[{min(label, 0)}, {max(label, 2)}\].*3 classes.*\[0, 2\]"
    with pytest.raises(ValueError, match="y_train holds " + want):
        train(TrainConfig(**SMALL), (x, bad, xt, yt), progress=False)
    with pytest.raises(ValueError, match="y_test holds " + want):
        train(TrainConfig(**SMALL), (x, y, xt, np.where(np.arange(len(yt)) == 0, label, yt)),
              progress=False)  # fmt: skip
    with pytest.raises(ValueError, match="y holds " + want):
        retrain_masked(net, _ones_masks(net), x, bad, steps=5)
    with pytest.raises(ValueError, match="y_train holds " + want):
        iterative_prune(net, x, bad, xt, yt, schedule=[0.5], retrain_steps=1)
    with pytest.raises(ValueError, match="y holds " + want):
        cv.empirical_fisher_diag(net, x, bad)
    with pytest.raises(ValueError, match="y holds " + want):
        cv.hutchinson_diags(net, x, bad, 0, counts=(1,))
    with pytest.raises(ValueError, match="y holds " + want):
        cv.adam_nu_diag(net, x, bad, 0, steps=2)
    with pytest.raises(ValueError, match="y holds " + want):
        loss_change_curve(net, _ones_masks(net), x, bad)


def test_checks_are_skipped_only_inside_a_trace(toy_data, net):
    x, y, _, _ = toy_data
    out, _ = cv.timed(cv.empirical_fisher_diag, net, x, y, batch_size=100)  # jitted: traced x
    assert all(bool(jnp.isfinite(a).all()) for a in jax.tree.leaves(out))
    with pytest.raises(ValueError, match="labels must be integer|integer class labels"):
        check_examples(jnp.asarray(x), jnp.asarray(y, jnp.float32))


# --- NaN or inf inputs -----------------------------------------------------------------------


@pytest.mark.parametrize("value", [np.nan, np.inf, -np.inf])
def test_non_finite_inputs_raise_naming_count_and_where(toy_data, net, value):
    x, y, xt, yt = toy_data
    bad = x.copy()
    bad[4, 2] = value
    bad[9, :3] = value
    msg = r"x_train has 4 non-finite value\(s\) \(NaN or inf\) in 2 example\(s\), at index 4, 9"
    with pytest.raises(ValueError, match=msg):
        train(TrainConfig(**SMALL), (bad, y, xt, yt), progress=False)
    with pytest.raises(ValueError, match=msg.replace("x_train", "x")):
        retrain_masked(net, _ones_masks(net), bad, y, steps=5)
    with pytest.raises(ValueError, match=msg.replace("x_train", "x")):
        cv.mc_fisher_diag(net, bad, 0)
    with pytest.raises(ValueError, match=msg.replace("x_train", "x_test")):
        iterative_prune(net, x, y, bad, y, schedule=[0.5], retrain_steps=1)


# --- empty inputs ----------------------------------------------------------------------------


def test_empty_inputs_raise_value_error(toy_data, net):
    x, y, xt, yt = toy_data
    with pytest.raises(ValueError, match=r"x_train must hold at least one example.*\(0, 20\)"):
        train(TrainConfig(**SMALL), (x[:0], y[:0], xt, yt), progress=False)
    with pytest.raises(ValueError, match="x_test must hold at least one example"):
        train(TrainConfig(**SMALL), (x, y, xt[:0], yt[:0]), progress=False)
    with pytest.raises(ValueError, match="x must hold at least one example"):
        retrain_masked(net, _ones_masks(net), x[:0], y[:0], steps=5)
    with pytest.raises(ValueError, match="x_train must hold at least one example"):
        iterative_prune(net, x[:0], y[:0], xt, yt, schedule=[0.5])


# --- wrong types -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "bad, match",
    [
        (dict(steps=2.5), r"steps must be an integer, got 2\.5 \(float\)"),
        (dict(steps="10"), r"steps must be an integer, got '10' \(str\)"),
        (dict(steps=True), r"steps must be an integer, got True \(bool\)"),
        (dict(dropout_rate="0.2"), r"dropout_rate must be a number, got '0\.2' \(str\)"),
        (dict(seed=2.7), r"seed must be an integer, got 2\.7 \(float\)"),
        (dict(seed=-1), r"seed=-1 is outside the accepted range"),
        (dict(learning_rate="1e-4"), r"learning_rate must be a number, got '1e-4' \(str\)"),
        (dict(learning_rate=float("nan")), r"learning_rate must be a finite number"),
        (dict(batch_size=64.0), r"batch_size must be an integer"),
        (dict(sizes=(20, 2.5, 3)), r"sizes entry must be an integer"),
        (dict(activation=None), r"activation must be a name"),
    ],
)
def test_wrong_types_raise_naming_parameter_and_type(bad, match):
    with pytest.raises(ValueError, match=match):
        TrainConfig(**bad)


def test_numpy_scalars_are_accepted_as_numbers():
    cfg = TrainConfig(seed=np.int64(3), steps=np.int32(10), learning_rate=np.float32(1e-3))
    assert (type(cfg.seed), type(cfg.steps), type(cfg.learning_rate)) == (int, int, float)


def test_retrain_wrong_types(toy_data, net):
    x, y, xt, yt = toy_data
    m = _ones_masks(net)
    for kwargs, match in [
        (dict(steps=2.5), "steps must be an integer"),
        (dict(steps=5, seed=2.7), "seed must be an integer"),
        (dict(steps=5, learning_rate="1e-4"), "learning_rate must be a number"),
        (dict(steps=5, dropout_rate="0.2"), "dropout_rate must be a number"),
    ]:
        with pytest.raises(ValueError, match=match):
            retrain_masked(net, m, x, y, **kwargs)
    with pytest.raises(ValueError, match="retrain_steps must be an integer"):
        iterative_prune(net, x, y, xt, yt, retrain_steps="10")


# --- checkpoints -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "meta", ["not json {", "[1, 2]", "", np.arange(3)], ids=["text", "list", "empty", "array"]
)
def test_checkpoint_meta_that_is_not_a_json_object(tmp_path, net, meta):
    path = tmp_path / "m.npz"
    arrays = {
        f"layer{i}/{k}": np.asarray(v) for i, layer in enumerate(net) for k, v in layer.items()
    }
    np.savez(path, **arrays, __meta__=np.array(meta) if isinstance(meta, str) else meta)
    with pytest.raises(ValueError, match=r"m\.npz.*'__meta__' entry is not a JSON object"):
        load_params(path)


def test_unserialisable_meta_is_refused_before_writing(tmp_path, net):
    with pytest.raises(ValueError, match="meta must be JSON-serialisable"):
        save_params(tmp_path / "m.npz", net, {"loss": float("nan")})
    with pytest.raises(ValueError, match="meta must be a dict"):
        save_params(tmp_path / "m.npz", net, ["seed", 0])
    assert not list(tmp_path.iterdir())


# --- divergence ------------------------------------------------------------------------------


def test_diverging_training_stops_naming_the_step(toy_data, net):
    x, y, xt, yt = toy_data
    huge = np.full_like(x, 3e38)  # finite inputs whose activations overflow: NaN at once
    with pytest.raises(ValueError, match=r"training diverged.*not finite.*at step 1;"):
        train(TrainConfig(**SMALL), (huge, y, xt, yt), progress=False)
    with pytest.raises(ValueError, match=r"training diverged.*at step 1;"):
        retrain_masked(net, _ones_masks(net), huge, y, steps=5)
    # mid-run: step 1 is sane, its update (learning rate 1e30) makes step 2 overflow; the step is
    # named from within a chunk (chunk_steps=10) and across chunks (chunk_steps=1)
    for chunk in (10, 1):
        cfg = TrainConfig(**{**SMALL, "learning_rate": 1e30, "chunk_steps": chunk})
        with pytest.raises(ValueError, match=r"training diverged.*at step 2; .*no checkpoint"):
            train(cfg, (x * 1e4, y, xt, yt), progress=False)
    with pytest.raises(ValueError, match=r"training diverged.*at step 2;"):
        retrain_masked(net, _ones_masks(net), x * 1e4, y, steps=5, learning_rate=1e30)


# --- the runner ------------------------------------------------------------------------------


def _notebook(folder: Path, params: str, body: str) -> Path:
    nb = nbformat.v4.new_notebook()
    nb.cells = [
        nbformat.v4.new_code_cell(params, metadata={"tags": ["parameters"]}),
        nbformat.v4.new_code_cell(body),
    ]
    nb.metadata["kernelspec"] = {
        "name": "python3",
        "display_name": "Python 3",
        "language": "python",
    }
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "nb.ipynb"
    nbformat.write(nb, path)
    return path


PARAMS = (
    'learning_rate = 1e-4\nsteps = 10\nuse = False\nout = "../scratch/x.csv"\nmodel = "m.npz"\n'
    "drop = 0.01  # a comment papermill's own parser trips on (0.01 = 1 point)"
)


def test_runner_parses_numbers_as_numbers():
    assert runner.parse_value("1e-4") == 1e-4 and isinstance(runner.parse_value("1e-4"), float)
    assert runner.parse_value("-2E3") == -2000.0
    assert runner.parse_value("[1e-4, 2]") == [1e-4, 2]
    assert runner.parse_value("'1e-4'") == "1e-4"  # quoted: a string
    assert runner.parse_value("10") == 10 and runner.parse_value("abc") == "abc"
    with pytest.raises(ValueError, match="cannot parse"):
        runner.parse_value("[1, 2")


def test_runner_checks_parameter_types_before_any_kernel(tmp_path):
    nb = _notebook(tmp_path / "nbs", PARAMS, "pass")
    ok = runner.check_parameters(nb, {"learning_rate": 1e-4, "steps": 3}, cwd=tmp_path)
    assert ok == {"learning_rate": 1e-4, "steps": 3}
    assert runner.check_parameters(nb, {"learning_rate": 1})["learning_rate"] == 1  # int: fine
    assert runner.check_parameters(nb, {"drop": 0.02}) == {"drop": 0.02}
    for params, match in [
        ({"learning_rate": "1e-4x"}, r"learning_rate must be a number .* got '1e-4x' \(str\)"),
        ({"steps": 2.5}, r"steps must be an integer .* got 2\.5 \(float\)"),
        ({"steps": "10"}, r"steps must be an integer"),
        ({"use": 1}, r"use must be true or false"),
        (
            {"stepz": 1},
            r"unknown parameter\(s\) stepz; accepted: drop, learning_rate, model, out, st",
        ),
    ]:
        with pytest.raises(ValueError, match=match):
            runner.check_parameters(nb, params)


def test_runner_resolves_relative_paths_from_the_callers_folder(tmp_path):
    nb = _notebook(tmp_path / "nbs", PARAMS, "pass")
    got = runner.check_parameters(
        nb, {"out": "rel/x.csv", "model": ["a.npz", "/abs/b.npz"]}, cwd=tmp_path
    )
    # inside the repository (the notebooks' parent): relative to the notebook's folder
    assert got["out"] == os.path.join("..", "rel", "x.csv")
    assert got["model"] == [os.path.join("..", "a.npz"), "/abs/b.npz"]
    assert (nb.parent / got["out"]).resolve() == (tmp_path / "rel" / "x.csv").resolve()
    assert (tmp_path / "rel").is_dir() and not (tmp_path / "nbs" / "rel").exists()


def test_runner_treats_out_prefixed_parameters_as_output_files(tmp_path):
    nb = _notebook(tmp_path / "nbs", 'out = "a.csv"\nout_mask = "b.csv"\nout_dir = "d"', "pass")
    got = runner.check_parameters(nb, {"out_mask": "rel/y.csv", "out_dir": "rel/d"}, cwd=tmp_path)
    assert got == {"out_mask": os.path.join("..", "rel", "y.csv"),
                   "out_dir": os.path.join("..", "rel", "d")}  # fmt: skip
    assert runner.is_output_param("out_mask") and not runner.is_output_folder("out_mask")
    assert runner.is_output_folder("out_dir") and runner.is_output_folder("figures_dir")
    (tmp_path / "rel" / "y.csv").mkdir(parents=True)
    with pytest.raises(ValueError, match="out_mask=.* is a folder; a file path is expected"):
        runner.check_parameters(nb, {"out_mask": "rel/y.csv"}, cwd=tmp_path)


def test_runner_refuses_an_unwritable_output_before_any_work(tmp_path):
    nb = _notebook(tmp_path / "nbs", PARAMS, "pass")
    (tmp_path / "afile").write_text("")
    with pytest.raises(ValueError, match=r"out='.*afile/x\.csv' cannot be written: folder"):
        runner.check_parameters(nb, {"out": str(tmp_path / "afile" / "x.csv")})
    with pytest.raises(ValueError, match="is a folder; a file path is expected"):
        runner.check_parameters(nb, {"out": str(tmp_path)})


def _run(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "obd.runner", *args, "--quiet"],
        capture_output=True,
        text=True,
        cwd=cwd,
    )


def test_runner_end_to_end_paths_errors_first_and_no_kernel_for_bad_parameters(tmp_path):
    body = (
        "from pathlib import Path\n"
        "if learning_rate > 1:\n"
        "    raise ValueError(f'learning_rate={learning_rate} is too large')\n"
        "Path(out).write_text(f'{learning_rate!r} {steps!r}')"
    )
    nb = _notebook(tmp_path / "nbs", PARAMS, body)
    ok = _run("nbs/nb.ipynb", "reports/ok", "-p", "learning_rate", "1e-4", "-p", "out",
              "rel/x.csv", cwd=tmp_path)  # fmt: skip
    assert ok.returncode == 0, ok.stderr
    assert (tmp_path / "rel" / "x.csv").read_text() == "0.0001 10"
    assert not (tmp_path / "nbs" / "rel").exists()
    assert (tmp_path / "reports" / "ok.html").stat().st_mode & 0o077 == 0o066 & ~_umask()
    # no machine path in the executed notebook: parameters and papermill's provenance are relative
    executed = (tmp_path / "reports" / "ok.ipynb").read_text()
    assert str(tmp_path) not in executed
    meta = nbformat.reads(executed, as_version=4).metadata["papermill"]
    assert (meta["input_path"], meta["output_path"]) == ("nbs/nb.ipynb", "reports/ok.ipynb")

    bad = _run(str(nb), "reports/bad", "-p", "steps", "2.5", cwd=tmp_path)
    assert bad.returncode == 2  # refused before a kernel started: no report, no failed copy
    assert bad.stderr.splitlines() == [
        f"✗ {nb}: ValueError: parameter steps must be an integer (like its default 10), got 2.5 "
        "(float)"
    ]
    assert not list((tmp_path / "reports").glob("bad*"))

    unwritable = _run(str(nb), "reports/u", "-p", "out", "nbs/nb.ipynb/x.csv", cwd=tmp_path)
    assert unwritable.returncode == 2 and "cannot be written" in unwritable.stderr.splitlines()[0]

    failing = _run(str(nb), "reports/f", "-p", "learning_rate", "2", cwd=tmp_path)
    lines = failing.stderr.strip().splitlines()
    assert failing.returncode == 1
    assert lines[0] == f"✗ {nb}: ValueError: learning_rate=2 is too large"
    assert "f.failed.ipynb" in lines[1] and len(lines) == 2  # no kernel traceback
    assert (tmp_path / "reports" / "f.failed.ipynb").stat().st_mode & 0o044 == 0o044


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


# --- atomic writes, loaders, stale temporary files, the lock ---------------------------------


def test_atomic_writes_are_readable_by_everyone(tmp_path):
    io.write_text(tmp_path / "sub" / "a.txt", "x")
    assert (tmp_path / "sub" / "a.txt").stat().st_mode & 0o777 == 0o666 & ~_umask()
    assert (tmp_path / "sub").stat().st_mode & 0o777 == 0o777 & ~_umask()


def _sweep(variant: str, seeds: list[int]) -> pd.DataFrame:
    return pd.DataFrame({"variant": variant, "seed": seeds, "fraction": 0.0, "accuracy": 0.9})


def test_loaders_read_only_finished_outputs_and_resume_cleans_temps(tmp_path):
    sweeps = tmp_path / "results" / "sweeps"
    sweeps.mkdir(parents=True)
    _sweep("obd-global-plain", [0, 1]).to_csv(sweeps / "obd-global-plain.csv", index=False)
    # what a killed writer leaves: a partial temporary file beside its target
    partial = sweeps / ".obd-global-dropout.csv.k3j_x9q2.csv"
    _sweep("obd-global-dropout", [0]).to_csv(partial, index=False)
    df = load_sweeps(tmp_path / "results")
    assert set(df.variant) == {"obd-global-plain"} and len(df) == 2

    reports = tmp_path / "reports"
    reports.mkdir()
    io.write_text(reports / "train-plain-seed0.html", "<html></html>")
    (reports / ".prune-x.html.abcd1234.html").write_text("<html>partial")
    (reports / ".train-plain-seed0.ipynb.zz9_8x7w.ipynb").write_text("{")
    (reports / ".params").mkdir()
    (reports / ".params" / "train-plain-seed0.args").write_text("-p seed 0")
    (reports / ".reproduce.lock").write_text("")
    assert io.finished(reports.glob("*.html")) == [reports / "train-plain-seed0.html"]

    removed = io.clean_stale([tmp_path / "results", reports, tmp_path / "missing"])
    assert sorted(p.name for p in removed) == sorted(
        [partial.name, ".prune-x.html.abcd1234.html", ".train-plain-seed0.ipynb.zz9_8x7w.ipynb"]
    )
    assert (reports / ".params" / "train-plain-seed0.args").exists()
    assert (reports / ".reproduce.lock").exists() and (reports / "train-plain-seed0.html").exists()


def test_temp_names_match_what_atomic_path_creates(tmp_path):
    seen = []
    for name in ("a.csv", "train-plain-seed0.ipynb", "noext"):
        with io.atomic_path(tmp_path / name) as tmp:
            seen.append(tmp.name)
            assert io.TEMP_NAME.match(tmp.name) and io.is_temp(tmp)
            tmp.write_text("x")
    assert not io.clean_stale([tmp_path])
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "a.csv",
        "noext",
        "train-plain-seed0.ipynb",
    ]


def test_lock_makes_a_second_run_wait(tmp_path):
    lock = tmp_path / "r" / ".reproduce.lock"
    cmd = [sys.executable, "-m", "obd.io", "locked", str(lock)]
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


# --- the build: stamps, module dependencies, interrupt and resume ----------------------------


def _tree(tmp_path: Path) -> Path:
    """A copy of what the build reads (Makefile, library, notebooks), its files an hour older than
    the environment's install stamp, with the environment linked as its .venv (the one running
    these tests when `make setup` built it, as `make test VENV=.venv-3.12` does; else .venv):
    other work in this checkout cannot touch its timestamps, and the copy's make never reinstalls
    the shared environment (which would point its editable install at the copy)."""
    tree = tmp_path / "tree"
    paths = ["Makefile", "pyproject.toml", "requirements.txt"]
    paths += [str(p.relative_to(ROOT)) for p in (ROOT / "lib" / "obd").glob("*.*")]
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


def _make(*args: str, dirs: dict[str, Path], cwd: Path = ROOT, **kw) -> subprocess.CompletedProcess:
    cmd = ["make", "--no-print-directory", *args, "QUICK=1", "SEEDS=0"]
    cmd += [f"{k.upper()}={v}" for k, v in dirs.items()]
    return subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, **kw)


def _planned(out: str) -> set[str]:
    """The report names a ``make -n`` would (re)build."""
    names = set()
    for line in out.splitlines():
        if "obd.outputs run " in line:
            names.add(Path(line.split()[5]).name)
        elif "obd.report " in line:
            names.add("index")
    return names


def test_outputs_depend_on_parameters_and_every_module(tmp_path):
    tree = _tree(tmp_path)
    dirs = {k: tmp_path / k for k in ("results", "reports", "figures")}

    def planned(*args: str) -> set[str]:
        return _planned(_make("-n", "study", *args, dirs=dirs, cwd=tree).stdout)

    def finish_all() -> None:  # pretend a complete run: every report newer than its inputs
        time.sleep(1.1)
        now = time.time()
        for name in everything:
            (dirs["reports"] / f"{name}.html").write_text("done")
            os.utime(dirs["reports"] / f"{name}.html", (now, now))  # one time: none is newer

    everything = planned()
    assert {"train-plain-seed0", "prune-obd-global-plain", "compare", "retrain", "index"} <= (
        everything
    )
    finish_all()
    assert planned() == set()
    # another step count reruns the MLP trainings and everything downstream; the convnet study
    # trains its own networks, so its runs do not depend on STEPS
    convnets = {n for n in everything if n.startswith("convnet")}
    assert {"convnet-lenet5-seed0", "convnet-lenet_300_100-seed0", "convnet_compare"} <= convnets
    assert planned("STEPS=100") == everything - convnets | {"index"}
    assert "-p steps 100" in (dirs["reports"] / ".params" / "train-plain-seed0.args").read_text()
    finish_all()
    assert planned("STEPS=100") == set()
    # other pruning arguments rerun the prune sweeps and what reads them, not the trainings
    prune = planned("STEPS=100", "PRUNE_ARGS=-p hessian_examples 100")
    assert "prune-obd-global-plain" in prune and "compare" in prune and "index" in prune
    assert not any(n.startswith("train-") for n in prune) and "retrain" not in prune
    assert not prune & convnets
    finish_all()
    # the convnet runs' own arguments rerun them and what reads them, nothing of the MLP study
    conv = planned(
        "STEPS=100", "PRUNE_ARGS=-p hessian_examples 100", "LENET5_ARGS=-p train_steps 50"
    )
    assert conv == {"convnet-lenet5-seed0", "convnet_compare", "index"}
    finish_all()
    # editing any library module (io.py, runner.py, study.py, params.py) reruns every notebook
    for module in ("io.py", "runner.py", "study.py", "params.py"):
        assert planned("STEPS=100", "PRUNE_ARGS=-p hessian_examples 100", "-W",
                       f"lib/obd/{module}") == everything, module  # fmt: skip
    (tree / "lib" / "obd" / "io.py").touch()
    assert planned("STEPS=100", "PRUNE_ARGS=-p hessian_examples 100") == everything
    # `make help` or `make lint` never write stamps
    other = tmp_path / "other"
    _make("-n", "help", dirs={"reports": other}, cwd=tree)
    assert not other.exists()


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
    tree = _tree(tmp_path)
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
    assert again.returncode == 0 and "obd.runner" not in again.stdout + again.stderr
    assert "▶" not in again.stdout, again.stdout[-2000:]
    manifest = dirs["reports"] / "train-plain-seed0.outputs.json"
    assert json.loads(manifest.read_text())["outputs"]

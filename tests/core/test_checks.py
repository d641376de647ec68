"""Reliability: bad input is a ``ValueError`` naming what was wrong, never a plausible number;
faults leave nothing half-done; the build never presents stale results as current."""

from __future__ import annotations

import ast
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
import optax
import pandas as pd
import pytest
from flax import nnx

from obd import curvature as cv
from obd import nets, obs, prune
from obd.checks import check_examples
from obd.hessian import hessian_diag
from obd.mlp import accuracy, init_mlp, module_from_params
from obd.obs_nets import obs_sweep_model
from obd.pipeline import io, runner
from obd.prune import prune_counts
from obd.retrain import iterative_prune, retrain_masked
from obd.saliency import saliency
from obd.study import convnets
from obd.study.model import load_params, save_params
from obd.study.train import TrainConfig, train
from obd.study.variants import load_sweeps
from obd.taylor import loss_change_curve

ROOT = Path(__file__).resolve().parents[2]
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


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ("010", 10),  # YAML 1.1: 8 (octal)
        ("1:30", "1:30"),  # YAML 1.1: 90 (base 60)
        ("yes", "yes"),  # YAML 1.1: True
        ("off", "off"),  # YAML 1.1: False
        ("On", "On"),
        ("1_000", "1_000"),  # YAML 1.1: 1000
        ("2024-01-01", "2024-01-01"),  # YAML 1.1: a date
        ("0b11", "0b11"),  # YAML 1.1: 3
        ("true", True),
        ("False", False),
        ("null", None),
        ("~", None),
        ("-7", -7),
        ("0x1f", 31),
        ("0o17", 15),
        ("1e-3", 1e-3),
        (".5", 0.5),
        ("2.", 2.0),
        ("[0, 0.5, 1e-2]", [0, 0.5, 0.01]),
        ("{a: 1, b: [true, null, no]}", {"a": 1, "b": [True, None, "no"]}),
    ],
)
def test_runner_parses_values_as_yaml_1_2_core_schema(text, value):
    got = runner.parse_value(text)
    assert got == value and type(got) is type(value)


def test_runner_refuses_yaml_1_1_booleans_for_a_bool_parameter(tmp_path):
    nb = _notebook(tmp_path / "nbs", PARAMS, "raise RuntimeError('the kernel must not run')")
    for word in ("yes", "off"):
        bad = _run(str(nb), "reports/y", "-p", "use", word, cwd=tmp_path)
        assert bad.returncode == 2
        assert bad.stderr.splitlines() == [
            f"✗ {nb}: ValueError: parameter use must be true or false (like its default False), "
            f"got {word!r} (str)"
        ]
    assert not (tmp_path / "reports").exists()


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
        [sys.executable, "-m", "obd.pipeline.runner", *args, "--quiet"],
        capture_output=True,
        text=True,
        cwd=cwd,
    )


def test_runner_end_to_end_paths_errors_first_and_no_kernel_for_bad_parameters(tmp_path):
    body = (
        "from pathlib import Path\n"
        "if learning_rate > 1:\n"
        "    raise ValueError(f'learning_rate={learning_rate} is too large')\n"
        "Path(out).write_text(f'{learning_rate!r} {steps!r}')\n"
        "print(sorted(p.name for p in Path('../reports').glob('.*')))"
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
    executed = nbformat.reads(executed, as_version=4)
    meta = executed.metadata["papermill"]
    assert (meta["input_path"], meta["output_path"]) == ("nbs/nb.ipynb", "reports/ok.ipynb")
    # while the kernel ran, the executed copy was a marked temporary file, now gone
    (temp,) = ast.literal_eval(executed.cells[-1].outputs[0]["text"])
    assert temp.startswith(".ok.ipynb.obd-tmp-") and io.is_temp(temp)
    assert not (tmp_path / "reports" / temp).exists()

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


def test_runner_never_writes_over_its_notebook(tmp_path):
    body = "from pathlib import Path\nPath(out).write_text('written by the run')"
    nb = _notebook(tmp_path / "nbs", PARAMS, body)
    (tmp_path / "nbs" / "nb.py").write_text("# the jupytext twin\n")
    before = {p: p.read_bytes() for p in (nb, tmp_path / "nbs" / "nb.py")}
    for report, params in [
        ("nbs/nb", []),  # writes nbs/nb.ipynb: the notebook
        ("nbs/../nbs/nb", []),
        ("nbs/nb.ipynb", []),  # the report path is the notebook
        ("reports/r", ["-p", "out", "nbs/nb.ipynb"]),
        ("reports/r", ["-p", "out", "nbs/nb.py"]),  # its twin
        ("reports/r", ["-p", "out", "reports/r.html"]),  # the report's own file
    ]:
        bad = _run("nbs/nb.ipynb", report, *params, cwd=tmp_path)
        assert bad.returncode == 2, (report, params, bad.stderr)
        lines = bad.stderr.splitlines()
        assert len(lines) == 1 and lines[0].startswith("✗ nbs/nb.ipynb: ValueError: "), lines
        assert "is the input" in lines[0] or "own file" in lines[0], lines
    assert {p: p.read_bytes() for p in before} == before
    assert not (tmp_path / "reports").exists() and not (tmp_path / "nbs" / "nb.html").exists()

    os.link(nb, tmp_path / "hard.ipynb")  # the same file under another name
    with pytest.raises(ValueError, match=r"report '.*hard' would write '.*hard\.ipynb'"):
        runner.run_notebook(nb, tmp_path / "hard")
    with pytest.raises(ValueError, match=r"out='.*nb\.ipynb' is the input"):
        runner.check_parameters(nb, {"out": str(nb)})
    assert {p: p.read_bytes() for p in before} == before


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
    partial = sweeps / ".obd-global-dropout.csv.obd-tmp-k3j_x9q2.csv"
    _sweep("obd-global-dropout", [0]).to_csv(partial, index=False)
    df = load_sweeps(tmp_path / "results")
    assert set(df.variant) == {"obd-global-plain"} and len(df) == 2

    reports = tmp_path / "reports"
    reports.mkdir()
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
    from obd.study import report

    seen = []
    real = report.tempfile.TemporaryDirectory

    def spy(**kw):
        seen.append(kw["prefix"])
        raise KeyboardInterrupt  # killed as the build starts

    monkeypatch.setattr(report.tempfile, "TemporaryDirectory", spy)
    with pytest.raises(KeyboardInterrupt):
        report.build_site(tmp_path, tmp_path, tmp_path)
    monkeypatch.setattr(report.tempfile, "TemporaryDirectory", real)
    killed = Path(real(prefix=seen[0], dir=tmp_path).name)  # what a killed build leaves
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
        if "obd.pipeline.outputs run " in line:
            names.add(Path(line.split()[5]).name)
        elif "obd.study.report " in line:
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
    assert again.returncode == 0 and "obd.pipeline.runner" not in again.stdout + again.stderr
    assert "▶" not in again.stdout, again.stdout[-2000:]
    manifest = dirs["reports"] / "train-plain-seed0.outputs.json"
    assert json.loads(manifest.read_text())["outputs"]


# --- round 3: layer-wise OBS inputs ----------------------------------------------------------


def test_layerwise_obs_checks_its_inputs(toy_data, net):
    x, y, xt, yt = toy_data
    nan = x.copy()
    nan[3, 1] = np.nan
    with pytest.raises(ValueError, match=r"x_calib has 1 non-finite value\(s\).*at index 3"):
        obs.obs_sweep(net, nan, [0.5], xt, yt)
    with pytest.raises(ValueError, match=r"x_calib has 1 non-finite value\(s\)"):
        obs.obs_prune(net, nan, 0.5)
    with pytest.raises(ValueError, match=r"x_test has 1 non-finite value\(s\)"):
        obs.obs_sweep(net, x, [0.5], nan, y)
    for label in (-1, 3):
        bad = yt.copy()
        bad[5] = label
        with pytest.raises(ValueError, match=r"y_test holds labels in .*3 classes.*index 5"):
            obs.obs_sweep(net, x, [0.5], xt, bad)
        with pytest.raises(ValueError, match=r"y_test holds labels"):
            obs_sweep_model(net, x, [0.5], xt, bad)
    with pytest.raises(ValueError, match="the layer's inputs hold NaN or inf"):
        obs.obs_layer_trace(np.ones((20, 3), np.float32), np.full((5, 20), 1e30, np.float32))


# --- round 3: integer inputs -----------------------------------------------------------------


def test_integer_inputs_are_refused_everywhere(toy_data, net):
    x, y, xt, yt = toy_data
    pixels = (x * 255).astype(np.uint8)
    msg = r"must be floating point \(e\.g\. float32\), got uint8.*astype\(np\.float32\)"
    with pytest.raises(ValueError, match="x_calib " + msg):
        obs.obs_sweep(net, pixels, [0.5], xt, yt)
    with pytest.raises(ValueError, match="x " + msg):
        obs.layer_hessian(pixels)
    with pytest.raises(ValueError, match="x_test " + msg):
        obs.obs_sweep(net, x, [0.5], pixels, y)
    with pytest.raises(ValueError, match="x " + msg):
        hessian_diag(net, pixels, y)
    with pytest.raises(ValueError, match="x " + msg):
        prune.sweep(net, net, [0.5], pixels, y)
    with pytest.raises(ValueError, match="x_train " + msg):
        train(TrainConfig(**SMALL), (pixels, y, xt, yt), progress=False)


# --- round 3: global OBS on an MLP with another activation -----------------------------------


@pytest.mark.parametrize("activation", ["tanh", "sigmoid", "leaky_relu"])
def test_global_obs_evaluates_an_mlp_with_its_own_activation(toy_data, net, activation):
    x, y, xt, yt = toy_data
    module = module_from_params(net, activation=activation)
    logits = module(jnp.asarray(xt))  # the model's own forward pass: the reference
    want_acc = float((logits.argmax(-1) == yt).mean())
    want_loss = float(optax.softmax_cross_entropy_with_integer_labels(logits, yt).mean())
    # a large damping: the exact blocks of an untrained tanh or sigmoid net are indefinite
    table = obs.global_obs_sweep(module, x, y, [0.0, 0.5], xt, yt, damping=1e3)
    assert table["accuracy"][0] == pytest.approx(want_acc, abs=1e-6)
    assert table["loss"][0] == pytest.approx(want_loss, rel=1e-5)
    pruned = obs.global_obs_prune(module, x, y, 0.5, damping=1e3)
    pruned_module = module_from_params(pruned, activation=activation)
    logits = pruned_module(jnp.asarray(xt))
    assert table["loss"][1] == pytest.approx(
        float(optax.softmax_cross_entropy_with_integer_labels(logits, yt).mean()), rel=1e-5
    )
    # the curvature is that of the model's activation too: as for the plain pytree
    blocks = obs.unit_blocks(module, x, y)
    plain = obs.unit_blocks(net, x, y, activation=activation)
    for a, b in zip(blocks, plain, strict=True):
        np.testing.assert_array_equal(a, b)
    with pytest.raises(ValueError, match=f"activation='relu' conflicts with the model's own "
                                         f"activation '{activation}'"):  # fmt: skip
        obs.global_obs_sweep(module, x, y, [0.5], xt, yt, activation="relu")


# --- round 3: pruning a model that already has zeros -----------------------------------------


def _sparse(params, share=0.4, seed=0):
    """``params`` with ``share`` of every kernel's weights set to exactly zero (random places)."""
    rng = np.random.default_rng(seed)
    out = []
    for layer in params:
        k = np.array(layer["kernel"])
        k.ravel()[rng.permutation(k.size)[: round(share * k.size)]] = 0
        out.append({"kernel": jnp.asarray(k), "bias": layer["bias"]})
    return out


def _kernel_zeros(params) -> int:
    return sum(int((np.asarray(layer["kernel"]) == 0).sum()) for layer in params)


def test_sweeps_count_the_zeros_a_model_already_has(toy_data, net):
    x, y, xt, yt = toy_data
    sparse = _sparse(net)
    n = sum(np.size(layer["kernel"]) for layer in net)
    z = _kernel_zeros(sparse)
    fractions = [0.0, 0.2, 0.6]
    # magnitude: zeros rank first by score already; the reference is the pruned model itself
    scores = saliency("magnitude", sparse)
    table = prune.sweep(sparse, scores, fractions, xt, yt)
    for f, row in zip(fractions, table.itertuples(), strict=True):
        pruned = prune.apply_masks(sparse, prune.masks(scores, f))
        assert row.n_pruned == _kernel_zeros(pruned) == max(prune_counts(f, n), z)
        assert row.pruned_fraction == row.n_pruned / n
        assert row.accuracy == pytest.approx(float(accuracy(pruned, xt, yt)), abs=1e-6)
    # scores that do not rank the zeros first: they count as pruned all the same
    rng = np.random.default_rng(1)
    scores = jax.tree.map(lambda a: jnp.asarray(rng.uniform(size=a.shape)), sparse)
    for scope in ("global", "layerwise"):
        table = prune.sweep(sparse, scores, fractions, xt, yt, scope=scope)
        for f, row in zip(fractions, table.itertuples(), strict=True):
            m = prune.masks(scores, f, scope=scope, params=sparse)
            pruned = prune.apply_masks(sparse, m)
            assert row.n_pruned == _kernel_zeros(pruned)
            assert row.n_pruned == sum(int((~np.asarray(k["kernel"])).sum()) for k in m)
            assert row.accuracy == pytest.approx(float(accuracy(pruned, xt, yt)), abs=1e-6)
        assert list(table.n_pruned) == [z, z, prune_counts(0.6, n)] or scope == "layerwise"
    # layer-wise and global OBS: the count of zeros in the kernels they return
    table = obs.obs_sweep(sparse, x, fractions, xt, yt)
    for f, row in zip(fractions, table.itertuples(), strict=True):
        assert row.n_pruned == _kernel_zeros(obs.obs_prune(sparse, x, f))
    assert table.n_pruned[0] == z and table.n_pruned[1] == z
    net_table = obs_sweep_model(sparse, x, fractions, xt, yt)
    pd.testing.assert_series_equal(net_table.n_pruned, table.n_pruned)
    table = obs.global_obs_sweep(sparse, x, y, fractions, xt, yt)
    for f, row in zip(fractions, table.itertuples(), strict=True):
        assert row.n_pruned == _kernel_zeros(obs.global_obs_prune(sparse, x, y, f))
    assert list(table.n_pruned) == [z, z, prune_counts(0.6, n)]


def test_iterative_pruning_keeps_existing_zeros_pruned(toy_data, net):
    x, y, xt, yt = toy_data
    sparse = _sparse(net)
    n = sum(np.size(layer["kernel"]) for layer in net)
    z = _kernel_zeros(sparse)
    df, out = iterative_prune(sparse, x, y, xt, yt, saliency="magnitude", schedule=[0.2, 0.6],
                              retrain_steps=20, return_params=True)  # fmt: skip
    assert list(df.n_pruned) == [z, z, prune_counts(0.6, n)]
    np.testing.assert_array_equal(df.pruned_fraction, df.n_pruned / n)
    assert _kernel_zeros(out) == df.n_pruned.iloc[-1]
    for before, after in zip(sparse, out, strict=True):  # retraining revived none of them
        assert not np.asarray(after["kernel"])[np.asarray(before["kernel"]) == 0].any()


# --- round 3: masks ----------------------------------------------------------------------------


def test_masks_must_be_boolean_or_zero_one(toy_data, net):
    x, y, _, _ = toy_data
    scores = saliency("magnitude", net)
    with pytest.raises(ValueError, match=r"masks of layer 0 \(kernel\) hold .* other than 0 and 1"):
        prune.apply_masks(net, scores)
    with pytest.raises(ValueError, match=r"masks of layer 0 \(kernel\) hold"):
        retrain_masked(net, scores, x, y, steps=2)
    m = prune.masks(scores, 0.5)
    half = jax.tree.map(lambda a: jnp.where(a, 1.0, 0.5), m)
    pruned = int((~np.asarray(m[0]["kernel"])).sum())  # each pruned entry became 0.5
    with pytest.raises(ValueError, match=rf"masks of layer 0 \(kernel\) hold {pruned} value"):
        prune.apply_masks(net, half)
    nan_bias = [dict(layer) for layer in m]
    nan_bias[1]["bias"] = jnp.full(3, jnp.nan)
    with pytest.raises(ValueError, match=r"masks of layer 1 \(bias\) hold 3 value"):
        prune.apply_masks(net, nan_bias)
    # exactly 0/1 numbers are masks: the same result as the booleans
    ones = jax.tree.map(lambda a: a.astype(np.float32), m)
    for a, b in zip(jax.tree.leaves(prune.apply_masks(net, ones)),
                    jax.tree.leaves(prune.apply_masks(net, m)), strict=True):  # fmt: skip
        np.testing.assert_array_equal(a, b)
    model = nets.mlp(SIZES, rngs=nnx.Rngs(0))
    state = saliency("magnitude", model)
    with pytest.raises(ValueError, match=r"masks of layer 1 \(kernel\) hold"):
        prune.apply_masks(model, _only_layer_scores(state, 1))


def _only_layer_scores(state, layer):
    """Boolean masks (all kept) with the kernel of parametric layer ``layer`` replaced by scores."""
    leaves, treedef = jax.tree.flatten(state)
    kernels = [i for i, a in enumerate(leaves) if np.ndim(a) == 2]
    out = [jnp.ones(np.shape(a), bool) for a in leaves]
    out[kernels[layer]] = leaves[kernels[layer]]
    return jax.tree.unflatten(treedef, out)


# --- round 3: checkpoints with non-finite weights, odd metadata ------------------------------


def test_checkpoints_with_non_finite_weights_are_refused(tmp_path, net):
    bad = [dict(layer) for layer in net]
    bad[1]["kernel"] = bad[1]["kernel"].at[2, 1].set(jnp.nan)
    save_params(tmp_path / "m.npz", bad, {"seed": 0})
    with pytest.raises(ValueError, match=r"m\.npz.*tensor layer1/kernel holds 1 non-finite"):
        load_params(tmp_path / "m.npz")
    model = convnets.build("lenet_300_100")
    model.layers[2].bias[...] = model.layers[2].bias[...].at[4].set(jnp.inf)
    convnets.save_net(tmp_path / "c.npz", model, {"arch": "lenet_300_100"})
    with pytest.raises(ValueError, match=r"c\.npz.*tensor layer1/bias holds 1 non-finite"):
        convnets.load_net(tmp_path / "c.npz")


def test_convnet_checkpoint_whose_meta_is_not_an_object(tmp_path):
    convnets.save_net(tmp_path / "c.npz", convnets.build("lenet_300_100"), {"arch": "lenet5"})
    with np.load(tmp_path / "c.npz") as f:
        arrays = dict(f)
    for meta in ('["lenet_300_100"]', '{"seed": 0}'):
        arrays["__meta__"] = np.array(meta)
        np.savez(tmp_path / "odd.npz", **arrays)
        with pytest.raises(ValueError, match=r"odd\.npz.*must be a JSON object naming the 'arch'"):
            convnets.load_net(tmp_path / "odd.npz")


# --- round 3: NNX items the library would compute otherwise ----------------------------------


class _Doubled(nnx.Linear):
    def __call__(self, x):
        return 2 * super().__call__(x)


class _Named(nnx.Linear):  # a subclass that keeps nnx.Linear's computation
    pass


class _ShiftedConv(nnx.Conv):
    def __call__(self, x):
        return super().__call__(x) + 1.0


def test_subclassed_layers_with_their_own_call_are_refused(toy_data):
    x, y, _, _ = toy_data
    rngs = nnx.Rngs(0)
    model = nnx.Sequential(_Doubled(20, 8, rngs=rngs), jax.nn.relu, nnx.Linear(8, 3, rngs=rngs))
    msg = r"item 0 of the nnx.Sequential \(_Doubled\) subclasses nnx.Linear with its own __call__"
    with pytest.raises(ValueError, match=msg):
        hessian_diag(model, x, y)
    with pytest.raises(ValueError, match=msg):
        prune.sweep(model, saliency("magnitude", nets.mlp(SIZES, rngs=rngs)), [0.5], x, y)
    conv = nnx.Sequential(_ShiftedConv(1, 2, kernel_size=(3, 3), rngs=rngs), nets.flatten,
                          nnx.Linear(2 * 4 * 5, 3, rngs=rngs))  # fmt: skip
    with pytest.raises(ValueError, match=r"item 0 .*\(_ShiftedConv\) subclasses nnx.Conv"):
        hessian_diag(conv, x.reshape(-1, 4, 5, 1), y)
    custom = nnx.Linear(8, 3, dot_general=lambda *a, **k: jax.lax.dot_general(*a, **k), rngs=rngs)
    with pytest.raises(ValueError, match="item 2 .* has a custom dot_general"):
        hessian_diag(nnx.Sequential(nnx.Linear(20, 8, rngs=rngs), jax.nn.relu, custom), x, y)
    # a subclass that keeps the computation is the plain layer
    a = nnx.Sequential(_Named(20, 8, rngs=nnx.Rngs(1)), jax.nn.relu, _Named(8, 3, rngs=nnx.Rngs(2)))
    b = nnx.Sequential(nnx.Linear(20, 8, rngs=nnx.Rngs(1)), jax.nn.relu,
                       nnx.Linear(8, 3, rngs=nnx.Rngs(2)))  # fmt: skip
    for u, v in zip(jax.tree.leaves(hessian_diag(a, x, y)), jax.tree.leaves(hessian_diag(b, x, y)),
                    strict=True):  # fmt: skip
        np.testing.assert_array_equal(u, v)


def test_shared_layers_are_named_as_such(toy_data):
    x, y, _, _ = toy_data
    rngs = nnx.Rngs(0)
    hidden = nnx.Linear(8, 8, rngs=rngs)
    model = nnx.Sequential(nnx.Linear(20, 8, rngs=rngs), jax.nn.relu, hidden, jax.nn.relu, hidden,
                           jax.nn.relu, nnx.Linear(8, 3, rngs=rngs))  # fmt: skip
    with pytest.raises(ValueError, match=r"item 4 .* is the same Linear object as item 2: shared "
                                         r"\(tied\) layers are not supported"):  # fmt: skip
        hessian_diag(model, x, y)


# --- round 3: low-precision training ---------------------------------------------------------


def test_float16_training_is_refused_naming_the_cause(toy_data, net):
    x, y, xt, yt = toy_data
    half = jax.tree.map(lambda a: a.astype(jnp.float16), net)
    msg = r"parameter \[0\]\['bias'\] is float16: training needs float32 or float64.*epsilon"
    with pytest.raises(ValueError, match=msg):
        retrain_masked(half, _ones_masks(net), x, y, steps=5)
    with pytest.raises(ValueError, match=msg):
        iterative_prune(half, x, y, xt, yt, saliency="magnitude", schedule=[0.5], retrain_steps=5)
    for dtype in (jnp.float16, jnp.bfloat16):
        name = jnp.dtype(dtype).name
        with pytest.raises(ValueError, match=f"x is {name}: training runs in float32 or float64"):
            retrain_masked(net, _ones_masks(net), jnp.asarray(x, dtype), y, steps=5)
        with pytest.raises(ValueError, match=f"x_train is {name}"):
            train(TrainConfig(**SMALL), (jnp.asarray(x, dtype), y, xt, yt), progress=False)
    xm, ym = _mnist_like(64)
    with pytest.raises(ValueError, match="x_train is float16"):
        convnets.train_net("lenet_300_100", xm.astype(np.float16), ym, xm, ym, steps=2,
                           progress=False)  # fmt: skip


# --- round 3: pixels 0-255 where the range is known ------------------------------------------


def _mnist_like(n, seed=0):
    rng = np.random.default_rng(seed)
    return rng.uniform(size=(n, 784)).astype(np.float32), rng.integers(0, 10, n).astype(np.int32)


def test_mnist_entry_points_refuse_pixels_in_0_255(toy_data, net):
    x, y = _mnist_like(64)
    raw = np.round(x * 255).astype(np.float32)
    msg = r"x_train has values in \[0, 255\]; expected MNIST pixels in \[0, 1\] \(divide by 255\)"
    with pytest.raises(ValueError, match=msg):
        convnets.train_net("lenet_300_100", raw, y, x, y, steps=2, progress=False)
    with pytest.raises(ValueError, match=msg.replace("x_train", "x")):
        convnets.inputs("lenet5", raw)
    negative = x.copy()
    negative[3, 7] = -0.5
    with pytest.raises(
        ValueError, match=r"x has values in \[-0\.5, [0-9.]+\]; expected MNIST pixels"
    ):
        convnets.inputs("lenet_300_100", negative)
    # general-purpose functions take other ranges (no pixel range is assumed there)
    xt, yt = toy_data[2:]
    table = prune.sweep(net, saliency("magnitude", net), [0.0], xt * 255, yt)
    assert np.isfinite(table["loss"]).all()

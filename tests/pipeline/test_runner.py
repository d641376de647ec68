"""obd.pipeline.runner: parameters parsed and checked before any kernel, paths, errors first."""

from __future__ import annotations

import ast
import os
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest

from obd.pipeline import io, runner


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
    # while the kernel ran, the executed copy (and the HTML to come) were marked temporary
    # files, now gone
    temps = ast.literal_eval(executed.cells[-1].outputs[0]["text"])
    assert [t.split(".obd-tmp-")[0] for t in temps] == [".ok.html", ".ok.ipynb"]
    assert all(io.is_temp(t) and not (tmp_path / "reports" / t).exists() for t in temps)

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


STRINGS = (
    'out = "../scratch/x.txt"\nname = "note"\nsteps = 10\nfractions = [0.5]\nmodel = "m.npz"\n'
)


@pytest.mark.parametrize(
    "text", ["runs/run #2.txt", "Note: test", "#1 run", "", "- item", "true", "null", "[a, b]"]
)
def test_runner_takes_string_parameters_verbatim(tmp_path, text):
    nb = _notebook(tmp_path / "nbs", STRINGS, "pass")
    assert runner.parse_params(nb, [("name", text)]) == {"name": text}
    out = runner.parse_params(nb, [("out", f"rel/{text}")])["out"]
    assert out == f"rel/{text}"


def test_runner_type_checks_every_parameter_against_its_default(tmp_path):
    nb = _notebook(tmp_path / "nbs", STRINGS, "pass")
    with pytest.raises(ValueError, match="parameter name must be a string"):
        runner.check_parameters(nb, {"name": {"Note": "test"}})
    with pytest.raises(ValueError, match="parameter fractions must be a list"):
        runner.check_parameters(nb, runner.parse_params(nb, [("fractions", "0.5")]))
    with pytest.raises(ValueError, match="parameter model must be a path or a list of paths"):
        runner.check_parameters(nb, {"model": 3})
    # the study's input paths take a list of files
    got = runner.parse_params(nb, [("model", "[a.npz, b.npz]"), ("steps", "010")])
    assert got == {"model": ["a.npz", "b.npz"], "steps": 10}


def test_runner_expands_the_home_folder_in_paths(tmp_path, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    nb = _notebook(tmp_path / "nbs", STRINGS, "pass")
    got = runner.parse_params(nb, [("out", "~/x.txt"), ("name", "~/x")])
    assert got == {"out": str(tmp_path / "home" / "x.txt"), "name": "~/x"}  # name: not a path
    checked = runner.check_parameters(nb, got, cwd=tmp_path / "nbs")
    assert (tmp_path / "nbs" / checked["out"]).resolve() == (tmp_path / "home" / "x.txt").resolve()
    assert not (tmp_path / "nbs" / "~").exists()


def test_runner_end_to_end_string_values_reach_the_kernel_verbatim(tmp_path):
    body = "from pathlib import Path\nPath(out).write_text(repr(name))"
    _notebook(tmp_path / "nbs", STRINGS, body)
    done = _run("nbs/nb.ipynb", "reports/s", "-p", "out", "runs/run #2.txt", "-p", "name",
                "Note: test", cwd=tmp_path)  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert (tmp_path / "runs" / "run #2.txt").read_text() == "'Note: test'"
    assert not (tmp_path / "runs" / "run").exists()


def test_runner_full_disk_keeps_the_previous_report_and_says_so(tmp_path, monkeypatch, capsys):
    import errno

    nb = _notebook(tmp_path / "nbs", STRINGS, "print('hello')")
    report = tmp_path / "reports" / "r"
    assert runner.main([str(nb), str(report), "--quiet"]) == 0
    before = {s: report.with_name("r" + s).read_bytes() for s in (".ipynb", ".html")}
    capsys.readouterr()
    nb2 = _notebook(tmp_path / "nbs", STRINGS, "print('changed')")
    real = Path.write_text

    def full(self, *args, **kwargs):
        if ".html" in self.name:
            raise OSError(errno.ENOSPC, "No space left on device")
        return real(self, *args, **kwargs)

    monkeypatch.setattr(Path, "write_text", full)
    assert runner.main([str(nb2), str(report), "--quiet"]) == 1
    err = capsys.readouterr().err
    assert "no space left on the device" in err and "previous report" in err
    assert "failed.ipynb" not in err and "kernel's last messages" not in err
    assert {s: report.with_name("r" + s).read_bytes() for s in before} == before
    assert sorted(p.name for p in report.parent.iterdir()) == ["r.html", "r.ipynb"]


def test_runner_refuses_two_outputs_naming_the_same_file(tmp_path):
    nb = _notebook(tmp_path / "nbs", 'out = "a.csv"\nout_mask = "b.csv"\n', "pass")
    with pytest.raises(ValueError, match="out_mask and out name the same file"):
        runner.check_parameters(nb, {"out": "x/s.csv", "out_mask": "x/s.csv"}, cwd=tmp_path)
    with pytest.raises(ValueError, match="name the same file"):
        runner.check_parameters(nb, {"out_mask": "a.csv"}, cwd=tmp_path / "nbs")  # the default's

"""The runs table (configs/runs.yaml) and its profiles, turned into make rules by
``obd.pipeline.rules``: rows expand as declared, bad tables and profiles are refused clearly, every
upstream run exists, and the quick profile's commands carry its settings."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml

from obd.pipeline import rules

ROOT = Path(__file__).resolve().parents[2]
FOLDERS = {"reports": "R", "results": "/res", "figures": "/fig", "blog2016": "/blog"}


def _load(name: str) -> dict:
    return yaml.safe_load((ROOT / "configs" / name).read_text())


def _runs(profile: str = "quick.yaml", overrides: dict | None = None, blog: bool = True):
    prof = rules.Profile(_load(profile), overrides, source=profile)
    runs = rules.expand_runs(_load("runs.yaml"), prof, FOLDERS, exists=lambda p: blog)
    return {r.name: r for r in runs}, [r.name for r in runs]


TABLE = {
    "runs": [
        {
            "name": "a-{m.name}-s{s}",
            "notebook": "nb",
            "for_each": {
                "m": [{"name": "x", "rate": 0.5}, {"name": "y", "rate": 0.0}],
                "s": "seeds",
            },
            "params": {"rate": "{m.rate}", "seed": "{s}", "out": "{results}/{m.name}{s}.npz"},
            "args": "g",
        },
        {
            "name": "b",
            "notebook": "nb",
            "params": {"models": {"for_each": {"s": "seeds[:1]"}, "item": "{results}/x{s}.npz"}},
            "params_after": {"first": "{seeds[0] == 3}"},
            "upstream": ["a-x-*", {"for_each": {"s": "seeds"}, "item": "a-y-s{s}"}],
        },
    ]
}
PROFILE = {"settings": {"seeds": [3, 4]}, "args": {"g": {"f": [0, 0.5], "on": True}}}


def _toy(table=TABLE, profile=PROFILE, overrides=None):
    prof = rules.Profile(profile, overrides)
    return rules.expand_runs(table, prof, {"reports": "R", "results": "/res", "figures": "/f"})


def test_rows_expand_as_declared():
    runs = _toy()
    assert [r.name for r in runs] == ["a-x-s3", "a-x-s4", "a-y-s3", "a-y-s4", "b"]
    assert runs[0].args == (
        "notebooks/nb.ipynb R/a-x-s3 -p rate 0.5 -p seed 3 -p out /res/x3.npz "
        '-p f "[0, 0.5]" -p on true'
    )
    b = runs[-1]
    assert b.args == 'notebooks/nb.ipynb R/b -p models "[/res/x3.npz]" -p first true'
    assert b.upstream == ["a-x-s3", "a-x-s4", "a-y-s3", "a-y-s4"]
    # overrides are read as the type of the setting; an args group override replaces the group
    runs = _toy(overrides={"seeds": "7", "g_args": "-p  f 1"})
    assert [r.name for r in runs] == ["a-x-s7", "a-y-s7", "b"]
    assert runs[0].args.endswith("-p out /res/x7.npz -p f 1")
    assert runs[-1].args.endswith("-p first false")


def test_rules_and_stamps(tmp_path):
    runs = _toy()
    text = rules.render(runs, "R")
    assert "R/b.html: notebooks/nb.ipynb $(LIB_DEPS) R/.params/b.args R/a-x-s3.html" in text
    assert "\t$(RUN) notebooks/nb.ipynb R/b -p models" in text
    reports = str(tmp_path)
    assert len(rules.write_stamps(runs, reports)) == 5
    assert rules.write_stamps(runs, reports) == []  # unchanged: nothing rewritten
    assert (tmp_path / ".params" / "b.args").read_text() == runs[-1].args + "\n"


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (
            lambda t, p: t["runs"][0].update(notbook="x"),
            r"unknown key\(s\) notbook; accepted: name",
        ),
        (
            lambda t, p: t["runs"][1].update(upstream=["c-*"]),
            r"upstream 'c-\*' names no run; runs:",
        ),
        (lambda t, p: t["runs"][1].update(name="a-x-s3"), "runs declared twice: a-x-s3"),
        (lambda t, p: t["runs"][0].update(module="m"), "either a notebook or a module"),
        (lambda t, p: t["runs"][0].update(args="h"), r"no args group 'h'.*its groups: g"),
        (
            lambda t, p: t["runs"][1].update(params={"x": "{sedes}"}),
            r"'sedes'.*defined here:.*seeds",
        ),
        (lambda t, p: t["runs"][1].update(params={"x": "{f(1)}"}), r"uses Call; accepted: names"),
        (
            lambda t, p: p.update(setings={}),
            r"unknown key\(s\) setings; accepted: settings, protoc",
        ),
        (lambda t, p: p["settings"].update(steps=3), r"setting\(s\) steps used by no run"),
        (lambda t, p: p["args"].update(g=["nothere"]), "'nothere' is neither a protocol nor"),
        (lambda t, p: p["args"].update(g=[{"f": 1}, {"f": 2}]), r"parameter\(s\) f given twice"),
    ],
)
def test_bad_tables_and_profiles_are_refused_clearly(change, message):
    table, profile = yaml.safe_load(yaml.safe_dump(TABLE)), yaml.safe_load(yaml.safe_dump(PROFILE))
    change(table, profile)
    with pytest.raises(ValueError, match=message):
        _toy(table, profile)


def test_bad_overrides_are_refused_clearly():
    with pytest.raises(ValueError, match=r"cannot override 'sedes'; accepted: seeds, g_args"):
        _toy(overrides={"sedes": "1"})
    with pytest.raises(ValueError, match="setting on is a boolean: give 1, 0, true or false"):
        rules.Profile({"settings": {"seeds": [1], "on": True}}, {"on": "maybe"})


@pytest.mark.parametrize("profile", ["quick.yaml", "full.yaml"])
def test_every_upstream_exists_and_the_longest_runs_come_first(profile):
    by_name, names = _runs(profile)
    for run in by_name.values():
        assert run.upstream or not run.name.startswith(("prune", "compare", "index")), run.name
        assert set(run.upstream) <= set(names), run.name
    index = by_name["index"].upstream
    lenet5 = [n for n in names if n.startswith("convnet-lenet5-seed")]
    assert index[: len(lenet5)] == lenet5 and "blog_replay" in index
    compare = by_name["compare"].upstream
    assert compare[:2] == ["prune-obs-global-plain", "prune-obs-global-dropout"]
    assert len(compare) == 2 + 13 + 2
    # without the blog's files its replay is declared but left out of the report
    by_name, _ = _runs(profile, blog=False)
    assert "blog_replay" in by_name and "blog_replay" not in by_name["index"].upstream


def test_quick_commands_carry_the_quick_settings():
    by_name, names = _runs()
    assert len([n for n in names if n.startswith("train-")]) == 4  # plain, dropout x seeds 0, 1
    assert by_name["train-dropout-seed1"].args == (
        "notebooks/train.ipynb R/train-dropout-seed1 -p dropout_rate 0.2 -p seed 1 -p steps 2000"
        " -p out /res/models/dropout-seed1.npz"
    )
    prune = by_name["prune-blog_obd-global-dropout"].args
    assert '-p model "[/res/models/dropout-seed0.npz,/res/models/dropout-seed1.npz]"' in prune
    assert "-p include_biases true" in prune and "-p hessian_examples 5000" in prune
    assert "-p include_biases false" in by_name["prune-obd-global-plain"].args
    assert '-p model "[/res/models/plain-seed0.npz]"' in by_name["retrain"].args
    assert by_name["convnet-lenet5-seed0"].args.endswith(
        '-p train_steps 300 -p fractions "[0, 0.5, 0.9]" -p hessian_examples 1000 -p schedule '
        '"[0.9167]" -p retrain_steps "[100]" -p iterative_hessian_examples 1000 '
        "-p learning_rate 0.002 -p obs false -p iterative true"
    )
    assert '-p corrected_runs "[]"' in by_name["blog_replay"].args
    index = by_name["index"]
    assert (index.kind, index.target) == ("module", "obd.study.report")
    assert index.args == "--reports R --figures /fig --results /res"  # as given, not absolute
    # CONVNET_ALL_SEEDS=0 and the full profile: OBS and iterative pruning on the first seed only
    by_name, _ = _runs("full.yaml", {"convnet_all_seeds": "0"})
    flags = {n: re.findall(r"-p (obs|iterative) (\w+)", r.args) for n, r in by_name.items()
             if n.startswith("convnet-lenet5")}  # fmt: skip
    assert flags == {
        "convnet-lenet5-seed0": [("obs", "true"), ("iterative", "true")],
        "convnet-lenet5-seed1": [("obs", "false"), ("iterative", "false")],
        "convnet-lenet5-seed2": [("obs", "false"), ("iterative", "false")],
    }
    assert '-p retrain_steps "[938, 938, 2814, 2814]"' in by_name["convnet-lenet5-seed1"].args


def test_command_line(capsys, tmp_path):
    argv = ["--table", str(ROOT / "configs" / "runs.yaml"), "--reports", str(tmp_path / "r")]
    argv += ["--results", "res", "--figures", "fig", "--folder", "blog2016=/none"]
    assert rules.main([*argv, "--profile", str(ROOT / "configs" / "quick.yaml"), "--list"]) == 0
    assert "compare\tnotebooks/compare.ipynb" in capsys.readouterr().out
    assert rules.main([*argv, "--profile", str(tmp_path / "missing.yaml")]) == 2
    assert "missing.yaml: no such file" in capsys.readouterr().err
    out = tmp_path / "rules.mk"
    quick = ["--profile", str(ROOT / "configs" / "quick.yaml"), "--out", str(out)]
    assert rules.main([*argv, *quick, "--write-stamps", "--set", "STEPS=7"]) == 0
    assert "-p steps 7 " in out.read_text()
    assert (tmp_path / "r" / ".params" / "train-plain-seed0.args").is_file()


def test_each_figure_is_declared_once_with_its_run_and_caption():
    table = rules.load(ROOT / "configs" / "runs.yaml")
    figures = rules.figures(table)
    assert sorted(figures) == sorted(p.stem for p in (ROOT / "figures").glob("fig*.png"))
    names = {row["name"] for row in table["runs"]}
    for stem, f in figures.items():
        assert f["run"] in names and f["title"] and len(f["caption"]) > 40, stem
        assert "\n" not in f["caption"], stem
    assert figures["fig8_convnets"]["run"] == "convnet_compare"
    assert figures["fig4_obd_assumptions"]["short"] == "OBD's assumptions"


@pytest.mark.parametrize(
    ("row", "message"),
    [
        ({"figures": {"f": {"title": "t"}}}, "needs the text fields title, caption"),
        (
            {"figures": {"f": {"title": "t", "caption": "c", "colour": "red"}}},
            "unknown \\['colour'\\]",
        ),
        (
            {"for_each": {"s": [0]}, "figures": {"f": {"title": "t", "caption": "c"}}},
            "with for_each",
        ),
        ({"figures": ["f"]}, "must be a mapping"),
    ],
)
def test_bad_figure_declarations_are_refused(row, message):
    table = {"runs": [{"name": "a", "notebook": "a", **row}]}
    with pytest.raises(ValueError, match=message):
        rules.figures(table)
    twice = {"runs": [{"name": n, "notebook": n, "figures": {"f": {"title": "t", "caption": "c"}}}
                      for n in ("a", "b")]}  # fmt: skip
    with pytest.raises(ValueError, match="already declared by a"):
        rules.figures(twice)


def test_a_partial_blog_folder_skips_the_replay_naming_the_missing_runs(capsys, tmp_path):
    """The replay needs all five of the blog's runs: with four, it is left out of the site's
    upstream and one line names the missing one (make never runs a replay that would fail)."""
    blog = tmp_path / "blog"
    runs = ["run_magnitude_layerwise_prune", "run_magnitude_all_layers_prune",
            "run_obd_layerwise_prune", "run_obd_all_layers_prune", "run_obd_all_layers_dropout"]  # fmt: skip
    for run in runs[:-1]:
        (blog / run).mkdir(parents=True)
        (blog / run / "results.txt").write_text("Variables Perecent: 100, Test accuracy: 0.9\n")
    argv = ["--table", str(ROOT / "configs" / "runs.yaml"), "--reports", str(tmp_path / "r"),
            "--results", "res", "--figures", "fig", "--folder", f"blog2016={blog}",
            "--profile", str(ROOT / "configs" / "quick.yaml"), "--list"]  # fmt: skip
    assert rules.main(argv) == 0
    out, err = capsys.readouterr()
    index = next(line for line in out.splitlines() if line.startswith("index\t"))
    assert "blog_replay" not in index
    missing = blog / runs[-1] / "results.txt"
    assert err.strip().splitlines() == [f"skipping blog_replay: missing {missing}"]
    (blog / runs[-1]).mkdir()
    missing.write_text("Variables Perecent: 100, Test accuracy: 0.9\n")
    assert rules.main(argv) == 0
    out, err = capsys.readouterr()
    assert "blog_replay" in next(line for line in out.splitlines() if line.startswith("index\t"))
    assert not err

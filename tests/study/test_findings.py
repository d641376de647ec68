"""obd.study.findings: every finding's numbers come from results/, and its check decides 'held'."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from obd.pipeline import outputs
from obd.study import findings
from obd.study.variants import RESULT_COLUMNS

FRACTIONS = np.round(np.linspace(0, 1, 101), 4)


def _cliff(tolerated: float, base: float = 0.97, floor: float = 0.1):
    """Accuracy flat at ``base`` up to ``tolerated``, then falling steeply to ``floor``."""
    return lambda f: (
        base if f <= tolerated + 1e-9 else max(floor, base - 0.02 - 3 * (f - tolerated))
    )


def _collapse(floor: float, base: float = 0.97):
    """Accuracy ``base`` unpruned, ``floor`` as soon as anything is pruned."""
    return lambda f: base if f == 0 else floor


def _write_sweeps(root, curves: dict) -> None:
    (root / "sweeps").mkdir(parents=True)
    for variant, per_seed in curves.items():
        saliency, scope, model = variant.split("-")
        rows = [
            dict(
                variant=variant,
                saliency=saliency,
                scope=scope,
                model=model,
                include_biases=False,
                seed=seed,
                fraction=f,
                pruned_fraction=f,
                n_pruned=int(f * 1000),
                accuracy=acc(f),
                loss=0.1,
            )  # fmt: skip
            for seed, acc in enumerate(per_seed)
            for f in FRACTIONS
        ]
        pd.DataFrame(rows)[RESULT_COLUMNS].to_csv(root / "sweeps" / f"{variant}.csv", index=False)
    record(root)


def record(root) -> None:
    """What the pipeline leaves: a manifest in ``reports`` beside ``root`` naming the sweeps."""
    files = list((root / "sweeps").glob("*.csv"))
    outputs.write_manifest(root.parent / "reports" / f"prune-{root.name}", files)


@pytest.fixture
def results(tmp_path):
    root = tmp_path / "results"
    _write_sweeps(root, {
        "obd-global-plain": [_cliff(0.65), _cliff(0.67)],
        "magnitude-global-plain": [_cliff(0.40), _cliff(0.42)],
        "obd-layerwise-plain": [_cliff(0.40), _cliff(0.41)],
        "magnitude-layerwise-plain": [_cliff(0.23), _cliff(0.24)],
        "obd-global-dropout": [_cliff(0.69), _cliff(0.70)],
        "random-global-plain": [_cliff(0.01), _cliff(0.01)],
        "random-global-dropout": [_cliff(0.15), _cliff(0.14)],
        "blog_magnitude-global-plain": [_collapse(0.1)] * 2,
        "blog_obd-layerwise-plain": [_collapse(0.3)] * 2,
        "blog_obd-global-plain": [_collapse(0.3)] * 2,
        "obs-layerwise-plain": [_cliff(0.68), _cliff(0.70)],
    })  # fmt: skip
    return root


def test_sweep_findings_hold_and_quote_the_numbers(results):
    found = {f.key: f for f in findings.compute(results)}
    for key in ("models", "signed-magnitude", "obd-vs-magnitude", "global-vs-layerwise",
                "row-sum", "dropout", "obs"):  # fmt: skip
        assert found[key].held is True, (key, found[key].text)
    assert "66.0 ± 1.4%" in found["obd-vs-magnitude"].text  # mean ± std of 65% and 67%
    assert "41.0 ± 1.4%" in found["obd-vs-magnitude"].text
    headline = found["obd-vs-magnitude"].headline  # the front page's first answer
    assert headline.startswith("Once the blog's code is corrected, OBD prunes more than magnitude")
    assert "66.0 ± 1.4% of the weights" in headline and "41.0 ± 1.4% for |w|" in headline
    assert [f.key for f in findings.headlines(list(found.values()))] == list(findings.HEADLINES)
    assert not found["signed-magnitude"].headline
    for key in ("cross-terms", "quadratic", "curvature", "retrain"):
        assert found[key].held is None and "missing" in found[key].text


def test_a_finding_that_no_longer_holds_is_reported(results):
    # one seed where magnitude beats OBD: "on every seed" must fail
    _write = results / "sweeps" / "magnitude-global-plain.csv"
    df = pd.read_csv(_write)
    seed1 = df.seed == 1
    df.loc[seed1, "accuracy"] = [_cliff(0.9)(f) for f in df.loc[seed1, "fraction"]]
    df.to_csv(_write, index=False)
    record(results)  # as the run that wrote it again would
    found = {f.key: f for f in findings.compute(results)}
    assert found["obd-vs-magnitude"].held is False
    assert found["obd-vs-magnitude"].headline.startswith(
        "OBD did not prune 5% more than magnitude on every seed of this run: "
    )
    held, checked = findings.tally(list(found.values()))
    assert checked == 7 and held == 6


def test_analysis_findings_from_their_csvs(results):
    rows = []
    for model, ratio, actual in (("plain", 1.3, 3.0), ("dropout", 0.9, 4.0)):
        for f in (0.0, 0.3, 0.5, 0.9):
            d = 0.0 if f == 0 else f / 10
            rows.append(dict(model=model, saliency="obd", seed=0, fraction=f, diagonal=d,
                             cross_ratio=ratio, second_order=d * (1 + ratio),
                             actual=d * (1 + ratio) * actual))  # fmt: skip
    pd.DataFrame(rows).to_csv(results / "assumptions.csv", index=False)
    spearman = {"exact": 1.0, "empirical-fisher": 0.997, "mc-fisher": 0.996, "adam-nu": 0.996,
                "hutchinson-1": 0.05, "hutchinson-100": 0.23, "blog-rowsum": 0.03}  # fmt: skip
    pd.DataFrame({"saliency": list(spearman), "spearman": list(spearman.values())}).to_csv(
        results / "curvature.csv", index=False
    )
    retrain = [dict(method=m, seed=0, fraction=0.969, accuracy=a)
               for m, a in (("iterative_obd", 0.906), ("iterative_magnitude", 0.847),
                            ("oneshot_obd", 0.089))]  # fmt: skip
    pd.DataFrame(retrain).to_csv(results / "retrain.csv", index=False)
    found = {f.key: f for f in findings.write(results)}
    checked = [f for f in found.values() if f.held is not None]
    assert all(f.held for f in checked), [f.text for f in checked if not f.held]
    assert "1.30 without dropout, 0.90 with" in found["cross-terms"].text
    assert "0.996-0.997" in found["curvature"].text and "100 probes" in found["curvature"].text
    assert "90.6 ± 0.0%" in found["retrain"].text
    assert found["retrain"].headline == (
        "With retraining between rounds, OBD still leads: at 96.9% of the weights pruned, "
        "iterative OBD with retraining keeps 90.6 ± 0.0% test accuracy, iterative magnitude "
        "84.7 ± 0.0%, one-shot OBD without retraining 8.9 ± 0.0%."
    )
    doc = json.loads((results / "findings.json").read_text())
    assert doc["tally"] == {"held": 11, "checked": 11}
    assert (results / "findings.md").read_text().startswith("11 of 11 checked findings held")


def test_global_obs_and_blog_replay_findings(tmp_path):
    root = tmp_path / "results"
    curves = {}
    for model in ("plain", "dropout"):
        curves |= {
            f"obs-global-{model}": [_cliff(0.93), _cliff(0.92)],
            f"obs_mask-global-{model}": [_cliff(0.85), _cliff(0.84)],
            f"obd-global-{model}": [_cliff(0.65), _cliff(0.66)],
            f"magnitude-global-{model}": [_cliff(0.40), _cliff(0.41)],
            f"obs-layerwise-{model}": [_cliff(0.70), _cliff(0.85)],
        }
    curves["obs_ms-global-plain"] = [_cliff(0.955), _cliff(0.935)]
    _write_sweeps(root, curves)
    levels = [1, 2, 30, 40]
    logged = [0.9656, 0.9656, 0.9601, 0.5]
    rows = [dict(run=r, percent_pruned=p, logged_accuracy=a, replay_median=a, replay_min=a,
                 replay_max=a, n_draws=n)
            for r, n in (("run_magnitude_layerwise_prune", 1), ("run_obd_all_layers_prune", 20))
            for p, a in zip(levels, logged, strict=True)]  # fmt: skip
    pd.DataFrame(rows).to_csv(root / "blog_replay.csv", index=False)
    found = {f.key: f for f in findings.compute(root)}
    assert found["global-obs"].held is True, found["global-obs"].text
    assert (
        "strongest one-shot method: 97.0 ± 0.0% test accuracy at 90%"
        in found["global-obs"].headline
    )
    ms = found["multistage-obs"]
    assert ms.held is True, ms.text
    assert (
        "prunes 94.0 ± 1.4% of the weights within 1 point, against 92.5 ± 0.7% one-shot" in ms.text
    )
    assert "gain per seed 1 to 2 points, 2 seeds" in ms.text
    assert ms.text.endswith("The goal of 93% within 1 point is reached.")
    assert found["blog-replay"].held is True, found["blog-replay"].text
    assert "4 of 4 logged levels" in found["blog-replay"].text
    assert "3 of 3 levels from 1% to 30% in every one of its 20" in found["blog-replay"].text
    # layer-wise OBS ahead at 95% on one seed: the claim must fail
    _write_sweeps(
        tmp_path / "again",
        curves
        | {
            "obs-layerwise-plain": [_cliff(0.7), _cliff(0.96)],
            # multi-stage behind one-shot at 95% on seed 1
            "obs_ms-global-plain": [_cliff(0.955), _cliff(0.91)],
        },
    )
    (tmp_path / "again" / "blog_replay.csv").write_text(
        (root / "blog_replay.csv").read_text().replace("0.9601,0.9601", "0.9601,0.9611", 1)
    )
    again = {f.key: f for f in findings.compute(tmp_path / "again")}
    assert again["global-obs"].held is False
    assert "was not the strongest one-shot method on every seed" in again["global-obs"].headline
    assert again["blog-replay"].held is False
    assert again["multistage-obs"].held is False
    assert again["multistage-obs"].text.endswith("is not reached on every seed.")


def test_cli_rejects_a_missing_results_folder(tmp_path, capsys):
    assert findings.main(["--results", str(tmp_path / "nope")]) == 1
    assert "does not exist" in capsys.readouterr().err


def test_readme_blocks_are_filled_from_results(results, tmp_path):
    (results / "summary.md").write_text("| variant |\n|---|\n| OBD |\n")
    (results / "convnet_summary.md").write_text("| network |\n|---|\n| LeNet-5 |\n")
    readme = tmp_path / "README.md"
    readme.write_text(
        "intro\n<!-- summary-table -->\nold table\n<!-- /summary-table -->\n"
        "<!-- convnet-table -->\nold convnets\n<!-- /convnet-table -->\n"
        "## Findings\n<!-- findings -->\ntyped by hand: 99%\n<!-- /findings -->\nend\n"
    )
    assert findings.fill_readme(readme, results) == ["findings", "summary-table", "convnet-table"]
    text = readme.read_text()
    assert "typed by hand" not in text and "old table" not in text and "old convnets" not in text
    assert (
        "<!-- convnet-table -->\n| network |\n|---|\n| LeNet-5 |\n<!-- /convnet-table -->" in text
    )
    assert (
        "| OBD |" in text and "66.0 ± 1.4%" in text and text.endswith("<!-- /findings -->\nend\n")
    )
    readme.write_text("no markers\n")
    with pytest.raises(ValueError, match="no generated block"):
        findings.fill_readme(readme, results)


def test_only_the_sweeps_the_runs_recorded_are_read_and_others_are_named(results):
    """A copy beside the sweeps (other accuracies, extra seeds) is not merged into the findings:
    they are the same as without it, and a line names it as ignored."""
    before = {f.key: (f.text, f.held) for f in findings.compute(results)}
    copy = pd.read_csv(results / "sweeps" / "obd-global-plain.csv")
    copy["accuracy"] = 0.1
    copy = pd.concat([copy, copy.assign(seed=copy.seed + 2)])
    copy.to_csv(results / "sweeps" / "obd-global-plain-v1.csv", index=False)
    found, ignored = findings.compute_all(results)
    assert {f.key: (f.text, f.held) for f in found} == before
    assert ignored == (
        "Ignored under results/ (not read): sweeps/obd-global-plain-v1.csv (not written by any "
        "recorded run)."
    )
    findings.write(results)
    assert (results / "findings.md").read_text().rstrip().endswith(ignored)
    # a recorded file changed since its run wrote it is not read either, and named
    path = results / "sweeps" / "magnitude-global-plain.csv"
    path.write_text(path.read_text().replace("0.97", "0.99"))
    found, ignored = findings.compute_all(results)
    assert "magnitude-global-plain.csv (changed since run prune-results wrote it)" in ignored
    f = {f.key: f for f in found}["obd-vs-magnitude"]
    assert f.held is None and "changed since run prune-results wrote it" in f.text


@pytest.mark.parametrize(
    ("damage", "why"),
    [
        (lambda t: b"", "is empty (0 bytes)"),
        (lambda t: t.replace(b"obd", b"\xff\xfeobd", 1), "is not UTF-8 text"),
        (lambda t: t + t, "holds its header again at line"),
        (lambda t: t[: len(t) // 2], "ends mid-line"),
        (lambda t: t[: t.index(b"\n", len(t) // 2)] + b",\n", "fields, the header"),
    ],
)
def test_a_damaged_recorded_sweep_is_named_and_never_read(results, damage, why):
    from obd.study.variants import load_sweeps

    path = results / "sweeps" / "obd-global-plain.csv"
    path.write_bytes(damage(path.read_bytes()))
    record(results)  # recorded as it is now: the content itself is refused
    with pytest.raises(ValueError, match="obd-global-plain.csv") as err:
        load_sweeps(results)
    assert why in str(err.value)
    found, ignored = findings.compute_all(results)  # the other findings are still computed
    by_key = {f.key: f for f in found}
    assert by_key["obd-vs-magnitude"].held is None and why in by_key["obd-vs-magnitude"].text
    assert by_key["global-vs-layerwise"].held is not None or "obd-global" in ignored
    assert "obd-global-plain.csv" in ignored and why in ignored


def test_sweeps_without_any_record_of_a_run_are_not_read(tmp_path):
    _write_sweeps(tmp_path / "results", {"obd-global-plain": [_cliff(0.6)]})
    (tmp_path / "reports" / "prune-results.outputs.json").unlink()
    from obd.study.variants import load_sweeps

    with pytest.raises(ValueError, match="no record of the pipeline's runs in"):
        load_sweeps(tmp_path / "results")


@pytest.mark.parametrize("content", [b"", b"\xff\xfe\x00a,b\n", b"saliency,spearman\nobd,0.9\nmag"])
def test_a_damaged_analysis_csv_stops_only_its_findings(results, content):
    (results / "curvature.csv").write_bytes(content)
    found, ignored = findings.compute_all(results)
    by_key = {f.key: f for f in found}
    assert by_key["curvature"].held is None and "curvature.csv (" in by_key["curvature"].text
    assert by_key["obd-vs-magnitude"].held is True  # the others are still computed
    assert "curvature.csv" in ignored

"""Readings of the pruning frontier (obd.study.frontier) and its finding, on synthetic runs whose
answers are worked out by hand, and against brute force on random runs."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from obd.study import findings
from obd.study import frontier as fr
from obd.study.published import load_published

ANCHORS = load_published()
LEVELS = [2, 4, 8, 16, 32, 56, 64, 80]


def run(arch, method, seed, test_errors, *, dense_test=0.017, val_errors=None, break_error=0.0199):
    """A frontier table of one run: round 0 dense, then one round per entry of ``test_errors``
    at the compressions of LEVELS."""
    n = len(test_errors)
    comp = np.array([1.0, *LEVELS[:n]])
    test = np.array([dense_test, *test_errors])
    val = test if val_errors is None else np.array([dense_test, *val_errors])
    return pd.DataFrame({
        "arch": arch, "seed": seed, "method": method, "round": np.arange(n + 1),
        "fraction": 1 - 1 / comp, "pruned_fraction": 1 - 1 / comp, "compression": comp,
        "val_error": val, "test_error": test, "test_se": fr.binomial_se(test, 10_000),
        "dense_val_error": val[0], "dense_test_error": dense_test, "break_error": break_error,
        "broke": True, "retrain_steps": 100, "seconds": 1.0,
    })[fr.COLUMNS]  # fmt: skip


def write(folder, tables):
    (folder / "convnets").mkdir(parents=True, exist_ok=True)
    t = pd.concat(tables, ignore_index=True)
    for (arch, seed), g in t.groupby(["arch", "seed"]):
        g.to_csv(folder / "convnets" / f"{arch}-seed{seed}-frontier.csv", index=False)
    return folder


def test_binomial_standard_error_and_break_threshold():
    assert fr.binomial_se(0.017, 10_000) == pytest.approx(0.0012928, abs=1e-7)  # 0.13 point
    np.testing.assert_allclose(fr.binomial_se([0.0, 0.5], 100), [0.0, 0.05])
    for bad in ((-0.1, 10), (0.5, 0), (1.5, 10)):
        with pytest.raises(ValueError, match="fractions"):
            fr.binomial_se(*bad)
    assert fr.break_threshold(0.0162, [0.0199, 0.0192]) == 0.0199
    assert fr.break_threshold(0.0195, [0.0199]) == pytest.approx(0.0205)
    assert fr.break_threshold(0.0162, []) == pytest.approx(0.0172)


def test_readings_by_hand():
    # dense 1.70%: within 0.1 point up to 16x (1.80%), 32x at 1.85%, 56x at 1.95%, 64x at 2.3%
    g = run(
        "lenet_300_100", "iterative-obd", 0, [0.016, 0.017, 0.0175, 0.018, 0.0185, 0.0195, 0.023]
    )
    assert fr.within_dense(g) == 16
    assert fr.reaches(g, 56, 1.99) and fr.reaches(g, 23, 1.94) and fr.reaches(g, 12, 1.59) is False
    assert not fr.reaches(g, 68, 1.92) and not fr.reaches(g, 64, 1.99)
    seeds = fr.per_seed(g, ANCHORS)
    row = seeds.iloc[0]
    assert row.within == 16 and row.error_at_within == 0.018
    assert row.se_at_within == pytest.approx(np.sqrt(0.018 * 0.982 / 10_000))
    assert row.held == 56 and row.last == 64  # validation = test here: 1.95% <= 1.99%, 2.3% not
    assert row.reach_dns2016 and not row.reach_sparsevd2017
    assert fr.within_dense(run("lenet5", "gradual-obd", 0, [0.03, 0.04], dense_test=0.008)) == 1.0


def test_readings_match_brute_force_on_random_runs():
    rng = np.random.default_rng(0)
    for trial in range(30):
        errs = np.sort(rng.uniform(0.015, 0.03, size=rng.integers(1, 9)))
        errs = np.minimum.accumulate(errs[::-1])[::-1] if trial % 2 else rng.permutation(errs)
        g = run("lenet_300_100", "iterative-obd", 0, list(errs), dense_test=0.017)
        comp = np.array(LEVELS[: len(errs)])
        ok = comp[errs <= 0.018 + 1e-9]
        assert fr.within_dense(g) == (ok.max() if ok.size else 1.0)
        for c, e in ((56, 1.99), (23, 1.94), (68, 1.92), (12, 1.59)):
            assert fr.reaches(g, c, e) == bool(((comp >= c) & (errs <= e / 100 + 1e-12)).any())


def test_summary_counts_seeds_and_orders_methods(tmp_path):
    tables = [
        run("lenet_300_100", "gradual-magnitude", s, [0.017, 0.018, 0.021, 0.022]) for s in (0, 1)
    ] + [
        run("lenet_300_100", "iterative-obd", 0, [0.017, 0.017, 0.0175, 0.018, 0.018, 0.019, 0.021]),
        run("lenet_300_100", "iterative-obd", 1, [0.017, 0.017, 0.0175, 0.018, 0.02, 0.022]),
    ]  # fmt: skip
    seeds = fr.per_seed(pd.concat(tables), ANCHORS)
    s = fr.summary(seeds, ANCHORS)
    assert s.method.tolist() == ["iterative-obd", "gradual-magnitude"]
    obd = s.iloc[0]
    # within: 32x and 16x; the geometric mean sqrt(32 * 16)
    assert obd["mean"] == pytest.approx(np.sqrt(32 * 16)) and obd.worst == 16
    assert 0 < obd.lo < obd["mean"] < obd.hi and obd.reach_dns2016 == "1/2"
    assert s.iloc[1].reach_sws2017 == "0/2" and s.iloc[1]["mean"] == 4
    md = fr.summary_markdown(s, seeds, ANCHORS)
    assert "| LeNet-300-100 | OBD, iterative, to its break point | 2 | 23x [" in md
    assert "] (16x) | 1.80 ± 0.13 |" in md
    assert "(b) Dynamic Network Surgery: 56x at 1.99%" in md
    assert "the published points reached by the second-order methods" in md
    assert "(56x at <= 1.99%) on 1/2 (OBD, iterative, to its break point)" in md
    write(tmp_path, tables)
    assert len(fr.read(tmp_path)) == sum(len(t) for t in tables)
    (tmp_path / "convnets" / "lenet5-seed0-frontier.csv").write_text("a,b\n1,2\n")
    with pytest.raises(ValueError, match="lenet5-seed0-frontier.csv: not a frontier table"):
        fr.read(tmp_path)


def test_frontier_finding(tmp_path):
    found = {f.key: f for f in findings.compute(tmp_path)}
    assert found["frontier"].held is None and "frontier.csv" in found["frontier"].text
    good = [0.016, 0.017, 0.0175, 0.018, 0.0185, 0.0195, 0.023]
    write(tmp_path / "a", [run("lenet_300_100", "gradual-obd", s, good) for s in (0, 1, 2)])
    f = {f.key: f for f in findings.compute(tmp_path / "a")}["frontier"]
    assert f.held is True, f.text
    assert "reached by OBD, gradual (cubic), to its break point on 3 of 3 seeds" in f.text
    assert "OBD, gradual (cubic), to its break point 16x (worst seed 16x" in f.text
    bad = [*good[:5], 0.0205, 0.023]  # 56x at 2.05%: above 1.99%
    write(
        tmp_path / "b",
        [run("lenet_300_100", "gradual-obd", s, good if s else bad) for s in (0, 1, 2)],
    )
    f = {f.key: f for f in findings.compute(tmp_path / "b")}["frontier"]
    assert f.held is False and "on 2 of 3 seeds" in f.text


def test_layers_at_frontier_take_the_round_of_a(tmp_path):
    """Figure 9's frontier bars: each layer's pruning at the round where (a) was read."""
    g = run("lenet_300_100", "iterative-obd", 0, [0.017, 0.018, 0.0185, 0.03])  # (a): 4x, round 2
    write(tmp_path, [g])
    sizes = (235_200, 30_000, 1_000)
    rows = []
    for r, c in ((1, 2), (2, 4), (3, 8)):
        left = [round(s / c) for s in sizes]
        left[0] += sum(sizes) // c - sum(left)  # exactly 1 / c of all the weights are left
        for layer, (name, size, k) in enumerate(
            zip(("fc1", "fc2", "fc3"), sizes, left, strict=True)
        ):
            rows.append(dict(arch="lenet_300_100", seed=0, method="iterative-obd", round=r,
                             layer=layer, name=name, size=size, n_pruned=size - k,
                             fraction_pruned=1 - k / size))  # fmt: skip
    pd.DataFrame(rows).to_csv(tmp_path / "convnets" / "lenet_300_100-seed0-frontier_layers.csv",
                              index=False)  # fmt: skip
    seeds = fr.per_seed(fr.read(tmp_path), ANCHORS)
    assert seeds.within.iloc[0] == 4
    at = fr.layers_at_frontier(tmp_path, seeds)
    assert at.saliency.unique().tolist() == ["frontier_obd"] and len(at) == 3
    assert at.n_pruned.sum() == sum(sizes) - sum(sizes) // 4  # the round at 4x, not 2x or 8x
    assert at.kind.tolist() == ["dense"] * 3
    assert fr.layers_at_frontier(tmp_path / "none", seeds).empty

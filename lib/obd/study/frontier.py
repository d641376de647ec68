"""Readings of the pruning frontier (``frontier.ipynb``): how far each method goes with retraining.

A frontier run prunes one network (trained on the training images less a validation split) along
a schedule of ever higher compressions, retraining after every round, until its **break point**:
two rounds in a row whose *validation* error exceeds both the dense validation error + 0.1 point
and the largest published error among the anchors of that network, so that no published point can
still be matched. The test set never decides anything; it is read after every round:

* **(a) Han et al.'s yardstick**: the largest compression whose test error is at most the
  dense model's test error + 0.1 point (:func:`within_dense`);
* **(b) the published points**: a point (``C`` x at ``E`` %) is reached on a seed when some round
  has compression ``>= C`` at test error ``<= E`` (:func:`reaches`).

Test errors on ``n`` images carry the binomial standard error ``sqrt(e (1 - e) / n)``
(:func:`binomial_se`): 0.13 point at 1.7% on 10,000 images, more than the 0.1-point yardstick,
so every reading prints it beside the error. Compression is kernel weights over kernel weights
left, ``1 / (1 - pruned fraction)``.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pandas as pd

from obd.pipeline.io import finished
from obd.study.convnet_metrics import EPS, TOLERANCE, compression, mean_interval
from obd.study.records import read_csv

#: frontier methods: legend label, colour, marker (figure 8; the frontier table)
METHODS: dict[str, tuple[str, str, str]] = {
    "iterative-obd": ("OBD, iterative, to its break point", "navy", "o"),
    "iterative-magnitude": ("magnitude, iterative, to its break point", "goldenrod", "s"),
    "gradual-obd": ("OBD, gradual (cubic), to its break point", "royalblue", "^"),
    "gradual-magnitude": ("magnitude, gradual (cubic), to its break point", "olive", "v"),
    "iterative-obs": ("OBS (global, unit blocks), iterative, to its break point", "darkgreen", "h"),
}
#: the columns of a frontier CSV (``{arch}-seed{seed}-frontier.csv``)
COLUMNS = [
    "arch", "seed", "method", "round", "fraction", "pruned_fraction", "compression", "val_error",
    "test_error", "test_se", "dense_val_error", "dense_test_error", "break_error", "broke",
    "retrain_steps", "seconds",
]  # fmt: skip
#: the columns of a per-layer frontier CSV (``{arch}-seed{seed}-frontier_layers.csv``)
LAYER_COLUMNS = ["arch", "seed", "method", "round", "layer", "name", "size", "n_pruned",
                 "fraction_pruned"]  # fmt: skip
SECOND_ORDER = ("iterative-obd", "gradual-obd", "iterative-obs")
#: the methods that need dense layers only (global OBS on unit blocks): LeNet-300-100, not LeNet-5
DENSE_ONLY = ("iterative-obs",)


def binomial_se(error, n: int) -> np.ndarray | float:
    """``sqrt(e (1 - e) / n)``: the standard error of an error rate ``e`` measured on ``n``
    independent images (``e`` a fraction in [0, 1])."""
    e = np.asarray(error, float)
    if np.any((e < 0) | (e > 1)) or not n >= 1:
        raise ValueError(f"error must be fractions in [0, 1] and n >= 1, got {error!r}, {n!r}")
    out = np.sqrt(e * (1 - e) / n)
    return float(out) if out.ndim == 0 else out


def break_threshold(dense_val_error: float, anchor_errors, tol: float = TOLERANCE) -> float:
    """The validation error above which a round counts towards the break: the larger of the
    dense validation error + ``tol`` and the largest published error (fractions)."""
    errors = np.asarray(anchor_errors, float)
    if errors.size == 0:
        return float(dense_val_error + tol)
    return float(max(dense_val_error + tol, errors.max()))


def read(results_dir: str | os.PathLike) -> pd.DataFrame:
    """Every ``convnets/*-seed*-frontier.csv`` under ``results_dir``, concatenated (empty if
    none); a file without the expected columns is a ``ValueError`` naming it."""
    files = finished(Path(results_dir, "convnets").glob("*-seed*-frontier.csv"))
    tables = []
    for f in files:
        t = read_csv(f)
        missing = sorted(set(COLUMNS) - set(t.columns))
        if missing:
            raise ValueError(f"{f.name}: not a frontier table, columns {missing} missing")
        tables.append(t)
    return pd.concat(tables, ignore_index=True) if tables else pd.DataFrame(columns=COLUMNS)


def within_dense(g: pd.DataFrame, tol: float = TOLERANCE) -> float:
    """(a): the largest compression of ``g`` (one run) whose test error is at most its dense
    test error + ``tol`` (1.0 if no round is)."""
    dense = float(g.dense_test_error.iloc[0])
    ok = g[(g["round"] > 0) & (g.test_error <= dense + tol + EPS)]
    return float(ok.compression.max()) if len(ok) else 1.0


def reaches(g: pd.DataFrame, c: float, error_pct: float) -> bool:
    """(b): whether some round of ``g`` has compression ``>= c`` at test error ``<= error_pct``."""
    r = g[g["round"] > 0]
    return bool(((r.compression >= c - 1e-6) & (r.test_error <= error_pct / 100 + EPS)).any())


def per_seed(frontier: pd.DataFrame, anchors: pd.DataFrame, tol: float = TOLERANCE) -> pd.DataFrame:
    """One row per network, method and seed: ``within`` (a), the test error there and its
    standard error, ``held`` (the largest compression whose validation error stayed at or below
    the break threshold), ``broke`` (the run ended at its break point, not at the schedule's end),
    and per published point of that network ``reach_<method>`` (b)."""
    rows = []
    for (arch, method, seed), g in frontier.groupby(["arch", "method", "seed"], sort=True):
        g = g.sort_values("round")
        c = within_dense(g, tol)
        at = g[np.isclose(g.compression, c)] if c > 1 else g[g["round"] == 0]
        r = g[g["round"] > 0]
        held = r[r.val_error <= r.break_error + EPS]
        row = dict(
            arch=arch, method=method, seed=seed,
            dense_test_error=float(g.dense_test_error.iloc[0]), within=c,
            error_at_within=float(at.test_error.iloc[0]), se_at_within=float(at.test_se.iloc[0]),
            held=float(held.compression.max()) if len(held) else 1.0,
            last=float(r.compression.max()) if len(r) else 1.0, broke=bool(g.broke.any()),
            seconds=float(g.seconds.sum()),
        )  # fmt: skip
        for a in anchors[anchors.network == arch].itertuples():
            row[f"reach_{a.method}"] = reaches(g, a.compression, a.pruned_error_pct)
        rows.append(row)
    return pd.DataFrame(rows)


def summary(seeds: pd.DataFrame, anchors: pd.DataFrame) -> pd.DataFrame:
    """Per network and method: the geometric mean of (a) over seeds with its 95% Student-t
    interval (computed on the logarithms; ``sd`` is the factor ``exp(sd of the logs)``), the
    worst and best seed, and for each published point the seeds that reach it (``k/n``)."""
    rows = []
    order = {m: i for i, m in enumerate(METHODS)}
    seeds = seeds.sort_values(
        ["arch", "method"], key=lambda c: c.map(order) if c.name == "method" else c
    )
    for (arch, method), g in seeds.groupby(["arch", "method"], sort=False):
        # compression is a ratio: the geometric mean, its interval from the mean of the logs
        mean, sd, n, lo, hi = (float(np.exp(v)) if i != 2 else v
                               for i, v in enumerate(mean_interval(np.log(g.within))))  # fmt: skip
        row = dict(arch=arch, method=method, seeds=n, mean=mean, sd=sd, lo=lo, hi=hi,
                   worst=float(g.within.min()), best=float(g.within.max()),
                   held_worst=float(g.held.min()), last_mean=float(g.last.mean()),
                   broke=int(g.broke.sum()))  # fmt: skip
        for a in anchors[anchors.network == arch].itertuples():
            col = f"reach_{a.method}"
            row[col] = f"{int(g[col].sum())}/{n}" if col in g else "n/a"
        rows.append(row)
    return pd.DataFrame(rows)


def layers_at_frontier(
    results_dir: str | os.PathLike, seeds: pd.DataFrame, method: str = "iterative-obd"
) -> pd.DataFrame:
    """Per seed of ``method``: each layer's kernel weights pruned at its frontier (the round of
    (a), :func:`per_seed`'s ``within``), from ``convnets/*-seed*-frontier_layers.csv``, as rows
    of a ``-sparsity.csv`` table with ``saliency`` ``frontier_<saliency>`` (empty if none)."""
    from obd.study import convnets

    files = finished(Path(results_dir, "convnets").glob("*-seed*-frontier_layers.csv"))
    if not files:
        return pd.DataFrame()
    layers = pd.concat([read_csv(f, LAYER_COLUMNS) for f in files], ignore_index=True)
    rows = []
    for r in seeds[(seeds.method == method) & (seeds.within > 1)].itertuples():
        g = layers[(layers.arch == r.arch) & (layers.seed == r.seed) & (layers.method == method)]
        total = g.groupby("round").agg(n=("n_pruned", "sum"), size=("size", "sum"))
        c = total["size"] / (total["size"] - total.n)
        at = c.index[np.isclose(c.to_numpy(), r.within)]
        if len(at) == 0:
            continue
        g = g[g["round"] == at[0]]
        kinds = convnets.layer_kinds(r.arch)
        rows.append(g.assign(saliency="frontier_" + method.split("-")[1],
                             kind=[kinds[i] for i in g.layer]))  # fmt: skip
    if not rows:
        return pd.DataFrame()
    cols = ["arch", "seed", "saliency", "layer", "name", "kind", "size", "n_pruned",
            "fraction_pruned"]  # fmt: skip
    return pd.concat(rows, ignore_index=True)[cols]


def _x(v: float) -> str:
    return "n/a" if not np.isfinite(v) else f"{v:.0f}x" if v >= 10 else f"{v:.1f}x"


def summary_markdown(summary: pd.DataFrame, seeds: pd.DataFrame, anchors: pd.DataFrame) -> str:
    """The frontier table (one row per network and method) and, per network, whether the best
    second-order method reaches each published point on every seed."""
    from obd.study.convnet_metrics import ARCHS

    names = {a.method: a.label.split(", ")[-1] if "," in a.label else a.label
             for a in anchors.itertuples()}  # fmt: skip
    lines = []
    for arch, t in summary.groupby("arch", sort=False):
        pts = anchors[anchors.network == arch].sort_values("compression")
        head = ["network", "method", "seeds",
                "(a) compression within dense + 0.1 point: geometric mean [95% interval] (worst seed)",
                "test error there (%), mean ± binomial SE", "held on validation (worst seed)",
                "runs that broke"]  # fmt: skip
        head += [f"(b) {names[p.method]}: {p.compression:g}x at {p.pruned_error_pct:g}%"
                 for p in pts.itertuples()]  # fmt: skip
        lines += ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
        for r in t.itertuples():
            s_ = seeds[(seeds.arch == arch) & (seeds.method == r.method)]
            interval = "" if not np.isfinite(r.lo) else f" [{_x(r.lo)}, {_x(r.hi)}]"
            err = (
                f"{100 * s_.error_at_within.mean():.2f} ± {100 * s_.se_at_within.mean():.2f}"
                if (s_.within > 1).all()
                else "n/a (a seed with no round within)"
            )
            cells = [ARCHS.get(arch, arch), METHODS[r.method][0], str(r.seeds),
                     f"{_x(r.mean)}{interval} ({_x(r.worst)})", err, _x(r.held_worst),
                     f"{r.broke}/{r.seeds}"]  # fmt: skip
            cells += [getattr(r, f"reach_{p.method}") for p in pts.itertuples()]
            lines.append("| " + " | ".join(cells) + " |")
        lines.append("")
        second = t[t.method.isin(SECOND_ORDER)]
        later = [p for p in pts.itertuples() if p.method != "han2015"]
        if len(second) and later:
            parts = []
            for p in later:
                col = f"reach_{p.method}"
                k = second[col].map(lambda v: int(v.split("/")[0]))
                best = second[k == k.max()]
                who = " and ".join(METHODS[m][0] for m in best.method)
                parts.append(f"{names[p.method]}'s ({p.compression:g}x at <= "
                             f"{p.pruned_error_pct:g}%) on {best[col].iloc[0]} ({who})")  # fmt: skip
            lines.append(
                f"* {ARCHS.get(arch, arch)}, the published points reached by the second-order "
                "methods, on the most seeds any of them reaches: " + "; ".join(parts) + "."
            )
        lines.append("")
    return "\n".join(lines)


def mean_path(g: pd.DataFrame, column: str = "test_error") -> pd.DataFrame:
    """The mean over seeds of ``column`` at each level of a method's schedule that every seed's
    run reached (``fraction``, ``compression``, ``mean``, ``seeds``)."""
    n = g.seed.nunique()
    t = (
        g[g["round"] > 0]
        .groupby("fraction")
        .agg(compression=("compression", "mean"), mean=(column, "mean"), seeds=("seed", "nunique"))
    )
    return t[t.seeds == n].reset_index()


__all__ = [
    "METHODS", "COLUMNS", "SECOND_ORDER", "DENSE_ONLY", "binomial_se", "break_threshold", "read",
    "within_dense", "reaches", "per_seed", "summary", "summary_markdown", "mean_path",
    "layers_at_frontier",
    "compression",
]  # fmt: skip

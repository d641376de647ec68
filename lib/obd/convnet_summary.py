"""The convnet study across seeds: LeNet-300-100 and LeNet-5 pruned, against Han et al. (2015).

``convnet.ipynb`` writes, per network ``arch`` and training seed ``s``, four CSVs under
``results/convnets/`` (:data:`COLUMNS` gives their columns): ``{arch}-seed{s}-oneshot.csv``
(one-shot sweeps, no retraining), ``-iterative.csv`` (:func:`obd.retrain.iterative_prune`),
``-sparsity.csv`` (per-layer fraction of kernel weights pruned) and ``-train.csv``. This module
reads them back and computes what ``convnet_compare.ipynb`` and :mod:`obd.findings` report:

* :func:`curves`: one table of test error against the fraction of kernel weights pruned for every
  method, one-shot (``{method}_{scope}``) and iterative (``iterative_{saliency}``, the error
  *after* retraining at each round);
* :func:`per_seed`: per (network, method, seed) the dense error ``e0`` (fraction 0), the
  *tolerated fraction* ``f* = max{f : e(f) <= e0 + tol}`` over the levels run (``tol`` = 0.1
  point by default: at most 10 more of the 10,000 test images wrong), the compression it implies
  over kernel weights, ``1 / (1 - f*)``, and the error at Han et al.'s 12x, ``f = 1 - 1/12``
  (91.7% pruned): linearly interpolated between the levels around it (one-shot sweeps), or at the
  nearest level at or above it (iterative runs, whose levels are separately retrained models);
* :func:`summary`: those numbers as mean, standard deviation (``ddof=1``; 0 for one seed) and
  minimum over seeds, next to Han et al.'s published rows (:func:`load_han2015`);
* :func:`layer_sparsity`: the per-layer fraction of weights remaining, ``1 - fraction_pruned``,
  over seeds, next to Han et al.'s per-layer numbers.

Errors and fractions are fractions (0.0164 is 1.64%) throughout; only the Markdown is in percent.
Biases are never pruned, and Han et al. count them in their totals (a 0.1% difference here).
"""

from __future__ import annotations

import os
from importlib import resources
from pathlib import Path

import numpy as np
import pandas as pd

from obd.io import finished
from obd.study import COLORS

#: network key: display name
ARCHS: dict[str, str] = {"lenet_300_100": "LeNet-300-100", "lenet5": "LeNet-5"}
#: network key: its parametric layers in order, as the sparsity CSV names them
LAYERS: dict[str, tuple[str, ...]] = {
    "lenet_300_100": ("fc1", "fc2", "fc3"),
    "lenet5": ("conv1", "conv2", "fc1", "fc2"),
}
#: the CSVs of one run: kind -> columns (the contract with convnet.ipynb)
COLUMNS: dict[str, tuple[str, ...]] = {
    "oneshot": ("arch", "seed", "method", "scope", "fraction", "pruned_fraction", "n_pruned",
                "accuracy", "loss"),
    "iterative": ("arch", "seed", "saliency", "scope", "round", "fraction", "pruned_fraction",
                  "n_pruned", "accuracy_pruned", "loss_pruned", "accuracy", "loss", "train_loss",
                  "retrain_steps", "seconds"),
    "sparsity": ("arch", "seed", "saliency", "layer", "name", "kind", "size", "n_pruned",
                 "fraction_pruned"),
    "train": ("arch", "seed", "step", "epoch", "train_loss", "test_loss", "test_accuracy"),
}  # fmt: skip
#: method key: legend label, colour, marker (None: a line over the one-shot levels)
METHODS: dict[str, tuple[str, str, str | None]] = {
    "magnitude_global": ("magnitude, all layers, one-shot", COLORS["magnitude_global"], None),
    "magnitude_layerwise": ("magnitude, layer-wise, one-shot", COLORS["magnitude_layerwise"], None),
    "obd_global": ("OBD, all layers, one-shot", COLORS["obd_global"], None),
    "obd_layerwise": ("OBD, layer-wise, one-shot", COLORS["obd_layerwise"], None),
    "obs_layerwise": ("OBS, layer-wise, one-shot", COLORS["obs_layerwise"], None),
    "iterative_obd": ("OBD, iterative with retraining", "darkred", "o"),
    "iterative_magnitude": ("magnitude, iterative with retraining", "darkorange", "s"),
}
#: sparsity CSV ``saliency`` value: legend label, colour
SPARSITY_SOURCES: dict[str, tuple[str, str]] = {
    "obd": ("OBD, iterative (last round)", "darkred"),
    "magnitude": ("magnitude, iterative (last round)", "darkorange"),
    "oneshot_obd": ("OBD, all layers, one-shot (1-point loss)", COLORS["obd_global"]),
    "oneshot_magnitude": ("magnitude, all layers, one-shot (1-point loss)",
                          COLORS["magnitude_global"]),
    "han2015": ("Han et al. 2015 (published)", "black"),
}  # fmt: skip
TOLERANCE = 0.001  # test error tolerated above the dense model's: 0.1 point
HAN_COMPRESSION = 12.0
TARGET = 1.0 - 1.0 / HAN_COMPRESSION  # 91.7% of the weights pruned is 12x
_EPS = 1e-9  # float slack when comparing errors of 10,000-image test sets (steps of 1e-4)


def label(method: str) -> str:
    """Legend label of a method key (the key itself if unknown)."""
    return METHODS[method][0] if method in METHODS else method.replace("_", ", ")


def color(method: str) -> str:
    """Plot colour of a method key (black if unknown)."""
    return METHODS[method][1] if method in METHODS else "black"


def arch_label(arch: str) -> str:
    """Display name of a network key."""
    return ARCHS.get(arch, arch)


def load_han2015() -> pd.DataFrame:
    """Han et al. (2015)'s MNIST numbers as printed (see the CSV's header for the source).

    One row per network (``layer == "total"``: errors, parameters before and after, compression)
    and per layer (weights, ``weights_remaining_pct``), in percent as published.
    """
    with resources.files("obd").joinpath("published_han2015.csv").open() as f:
        return pd.read_csv(f, comment="#")


def check_columns(df: pd.DataFrame, kind: str, where: str = "table") -> pd.DataFrame:
    """``df`` if it has the columns of a ``kind`` CSV, else ``ValueError`` naming the missing."""
    if kind not in COLUMNS:
        raise ValueError(f"unknown kind {kind!r}; accepted: {', '.join(COLUMNS)}")
    missing = [c for c in COLUMNS[kind] if c not in df.columns]
    if missing:
        raise ValueError(f"{where} lacks the {kind} column(s) {', '.join(missing)}")
    return df


def read_kind(results_dir: str | os.PathLike, kind: str) -> pd.DataFrame:
    """Every finished ``convnets/*-seed*-{kind}.csv`` under ``results_dir``, concatenated.

    An empty table with the contract's columns when there is none; ``ValueError`` if a file lacks
    a column.
    """
    if kind not in COLUMNS:
        raise ValueError(f"unknown kind {kind!r}; accepted: {', '.join(COLUMNS)}")
    files = finished(Path(results_dir, "convnets").glob(f"*-seed*-{kind}.csv"))
    tables = [check_columns(pd.read_csv(f), kind, str(f)) for f in files]
    tables = [t for t in tables if not t.empty]
    if not tables:
        return pd.DataFrame(columns=list(COLUMNS[kind]))
    return pd.concat(tables, ignore_index=True)


def curves(
    oneshot: pd.DataFrame | None = None, iterative: pd.DataFrame | None = None
) -> pd.DataFrame:
    """Test error against the fraction of kernel weights pruned, every method in one table.

    Columns ``arch, seed, method, fraction`` (target), ``pruned_fraction`` (actual),
    ``accuracy, error, loss``; ``error = 1 - accuracy``. One-shot rows are named
    ``{method}_{scope}``; iterative rows ``iterative_{saliency}`` (``_layerwise`` appended for
    that scope), with the accuracy *after* retraining (round 0: the dense model). Either table may
    be ``None`` (no run of that kind).
    """
    if oneshot is None:
        oneshot = pd.DataFrame(columns=list(COLUMNS["oneshot"]))
    if iterative is None:
        iterative = pd.DataFrame(columns=list(COLUMNS["iterative"]))
    check_columns(oneshot, "oneshot", "the one-shot table")
    check_columns(iterative, "iterative", "the iterative table")
    keep = ["arch", "seed", "method", "fraction", "pruned_fraction", "accuracy", "loss"]
    one = oneshot.assign(method=oneshot["method"].astype(str) + "_" + oneshot["scope"].astype(str))
    suffix = np.where(iterative["scope"].astype(str) == "global", "", "_layerwise")
    it = iterative.assign(method="iterative_" + iterative["saliency"].astype(str) + suffix)
    out = pd.concat([one[keep], it[keep]], ignore_index=True)
    for c in ("fraction", "pruned_fraction", "accuracy", "loss"):
        out[c] = out[c].astype(float)
    bad = out[~out["accuracy"].between(0, 1) | ~out["fraction"].between(0, 1)]
    if len(bad):
        r = bad.iloc[0]
        raise ValueError(
            f"{r.arch} seed {r.seed} {r.method}: accuracy {r.accuracy} or fraction {r.fraction} "
            "is outside [0, 1]"
        )
    out["error"] = 1.0 - out["accuracy"]
    return out.sort_values(["arch", "method", "seed", "fraction"], ignore_index=True)


def error_at(levels, errors, target: float = TARGET, rule: str = "interpolate"):
    """The error at ``target`` pruned, from one run's ``levels`` (fractions) and ``errors``.

    ``rule="interpolate"``: linear between the two levels around ``target`` (the level itself if
    one is within 1e-6); ``"at_or_above"``: the error at the smallest level ``>= target - 1e-6``.
    Returns ``(error, lo, hi)``, the levels used (``lo == hi`` for a level hit), or
    ``(nan, nan, nan)`` when no level reaches ``target``.
    """
    if rule not in ("interpolate", "at_or_above"):
        raise ValueError(f"rule={rule!r}; accepted: 'interpolate', 'at_or_above'")
    x, e = np.asarray(levels, float), np.asarray(errors, float)
    if x.shape != e.shape or x.ndim != 1:
        raise ValueError(f"levels {x.shape} and errors {e.shape} must be matching 1-D arrays")
    order = np.argsort(x, kind="stable")
    x, e = x[order], e[order]
    above = np.flatnonzero(x >= target - 1e-6)
    if above.size == 0:
        return float("nan"), float("nan"), float("nan")
    i = int(above[0])
    if rule == "at_or_above" or abs(x[i] - target) <= 1e-6 or i == 0:
        return float(e[i]), float(x[i]), float(x[i])
    t = (target - x[i - 1]) / (x[i] - x[i - 1])
    return float(e[i - 1] + t * (e[i] - e[i - 1])), float(x[i - 1]), float(x[i])


def tolerated_fraction(levels, errors, dense_error: float, tol: float = TOLERANCE) -> float:
    """``max{f : e(f) <= dense_error + tol}`` over the levels run (0 if only the dense model).

    The largest level within tolerance, wherever it lies: a level past a first excursion above
    the tolerance still counts, as in :func:`obd.study.tolerated_fraction`.
    """
    if not 0 <= tol < 1:
        raise ValueError(f"tol={tol!r} must be in [0, 1)")
    x, e = np.asarray(levels, float), np.asarray(errors, float)
    ok = x[e <= dense_error + tol + _EPS]
    return float(ok.max()) if ok.size else 0.0


def compression(fraction) -> np.ndarray | float:
    """``1 / (1 - fraction)``: how many times fewer kernel weights (inf at 100% pruned)."""
    f = np.asarray(fraction, float)
    if np.any((f < 0) | (f > 1)):
        raise ValueError(f"fractions must be in [0, 1], got {fraction!r}")
    with np.errstate(divide="ignore"):
        out = 1.0 / (1.0 - f)
    return float(out) if out.ndim == 0 else out


def per_seed(c: pd.DataFrame, tol: float = TOLERANCE, target: float = TARGET) -> pd.DataFrame:
    """Per (arch, method, seed) of :func:`curves`: dense error, tolerated fraction, compression,
    and the error at ``target`` pruned (interpolated for one-shot, at or above for iterative).

    Columns ``arch, method, seed, dense_error, tolerated_fraction, compression, error_target,
    target_lo, target_hi, target_rule``. ``ValueError`` if a run has no fraction-0 row.
    """
    rows = []
    for (arch, method, seed), g in c.groupby(["arch", "method", "seed"], sort=True):
        dense = g.loc[np.isclose(g["fraction"], 0.0), "error"]
        if dense.empty:
            raise ValueError(f"{arch} seed {seed} {method} has no fraction-0 (dense) row")
        e0 = float(dense.iloc[0])
        f = tolerated_fraction(g["pruned_fraction"], g["error"], e0, tol)
        rule = "at_or_above" if str(method).startswith("iterative") else "interpolate"
        err, lo, hi = error_at(g["pruned_fraction"], g["error"], target, rule)
        rows.append(dict(arch=arch, method=method, seed=seed, dense_error=e0,
                         tolerated_fraction=f, compression=compression(f), error_target=err,
                         target_lo=lo, target_hi=hi, target_rule=rule))  # fmt: skip
    return pd.DataFrame(rows, columns=["arch", "method", "seed", "dense_error",
                                       "tolerated_fraction", "compression", "error_target",
                                       "target_lo", "target_hi", "target_rule"])  # fmt: skip


def _sd(s: pd.Series) -> float:
    return float(s.std()) if len(s) > 1 else 0.0


def _how(g: pd.DataFrame, target: float) -> str:
    if g["error_target"].isna().all():
        return f"no level reaches {100 * target:.1f}%"
    lo, hi = g["target_lo"].mean(), g["target_hi"].mean()
    if np.isclose(lo, hi, atol=1e-6):
        if np.isclose(hi, target, atol=1e-4):
            return f"at {100 * hi:.1f}%"
        return f"nearest level >= {100 * target:.1f}%: {100 * hi:.1f}%"
    return f"interpolated between {100 * lo:.1f}% and {100 * hi:.1f}%"


#: the columns of :func:`summary`
SUMMARY_COLUMNS = [
    "arch", "method", "label", "seeds", "dense_error_mean", "dense_error_sd",
    "tolerated_fraction_mean", "tolerated_fraction_sd", "tolerated_fraction_min",
    "compression", "compression_min", "error_12x_mean", "error_12x_sd", "error_12x_how",
]  # fmt: skip


def summary(c: pd.DataFrame, tol: float = TOLERANCE, target: float = TARGET) -> pd.DataFrame:
    """Per network and method: the numbers of :func:`per_seed` over seeds, then Han et al.'s row.

    ``compression`` is ``1 / (1 - tolerated_fraction_mean)``, ``compression_min`` that of the
    worst seed; ``error_12x_how`` says how the error at ``target`` was read. Han et al.'s row
    (method ``han2015``, ``seeds`` 0) has their dense and pruned errors, the fraction
    ``1 - pruned/dense`` parameters and their compression.
    """
    p = per_seed(c, tol, target)
    order = {m: i for i, m in enumerate(METHODS)}
    rows = []
    for (arch, method), g in p.groupby(["arch", "method"], sort=False):
        rows.append(dict(
            arch=arch, method=method, label=label(method), seeds=int(g["seed"].nunique()),
            dense_error_mean=float(g["dense_error"].mean()), dense_error_sd=_sd(g["dense_error"]),
            tolerated_fraction_mean=float(g["tolerated_fraction"].mean()),
            tolerated_fraction_sd=_sd(g["tolerated_fraction"]),
            tolerated_fraction_min=float(g["tolerated_fraction"].min()),
            compression=compression(float(g["tolerated_fraction"].mean())),
            compression_min=compression(float(g["tolerated_fraction"].min())),
            error_12x_mean=float(g["error_target"].mean()), error_12x_sd=_sd(g["error_target"]),
            error_12x_how=_how(g, target),
        ))  # fmt: skip
    han = load_han2015()
    for r in han[han["layer"] == "total"].itertuples():
        if r.network not in set(p["arch"]):
            continue
        f = 1.0 - r.pruned_weights / r.weights
        rows.append(dict(
            arch=r.network, method="han2015", label="Han et al. 2015 (published)", seeds=0,
            dense_error_mean=r.dense_error_pct / 100, dense_error_sd=np.nan,
            tolerated_fraction_mean=f, tolerated_fraction_sd=np.nan, tolerated_fraction_min=f,
            compression=float(r.compression), compression_min=float(r.compression),
            error_12x_mean=r.pruned_error_pct / 100, error_12x_sd=np.nan,
            error_12x_how=f"their pruned network, {100 * f:.1f}% of all parameters pruned",
        ))  # fmt: skip
    out = pd.DataFrame(rows, columns=SUMMARY_COLUMNS)
    arch_order = {a: i for i, a in enumerate(ARCHS)}
    key = out["arch"].map(arch_order).fillna(len(arch_order)) * 100 + out["method"].map(
        order
    ).fillna(len(order))
    return out.iloc[np.argsort(key.to_numpy(), kind="stable")].reset_index(drop=True)


def summary_markdown(s: pd.DataFrame, tol: float = TOLERANCE) -> str:
    """:func:`summary` as a Markdown table, in percent (``±``: standard deviation over seeds)."""
    head = (
        "| network | method | seeds | dense error (%) | weights pruned at <= dense error + "
        f"{100 * tol:g} point (%), mean ± sd (min) | compression | error at 12x (%) | read at |\n"
        "|---|---|---:|---:|---:|---:|---:|---|\n"
    )

    def pm(mean: float, sd: float, digits: int) -> str:
        if np.isnan(mean):
            return "n/a"
        return f"{100 * mean:.{digits}f}" + ("" if np.isnan(sd) else f" ± {100 * sd:.{digits}f}")

    body = ""
    for r in s.itertuples():
        seeds = "published" if r.method == "han2015" else str(r.seeds)
        frac = pm(r.tolerated_fraction_mean, r.tolerated_fraction_sd, 1)
        if r.method != "han2015":
            frac += f" ({100 * r.tolerated_fraction_min:.1f})"
        body += (
            f"| {arch_label(r.arch)} | {r.label} | {seeds} | "
            f"{pm(r.dense_error_mean, r.dense_error_sd, 2)} | {frac} | {r.compression:.1f}x | "
            f"{pm(r.error_12x_mean, r.error_12x_sd, 2)} | {r.error_12x_how} |\n"
        )
    return head + body


def layer_sparsity(sparsity: pd.DataFrame) -> pd.DataFrame:
    """Per (arch, source, layer name): fraction of kernel weights *remaining* over seeds.

    Columns ``arch, source, name, kind, size, seeds, remaining_mean, remaining_min,
    remaining_max``; ``source`` is the sparsity CSV's ``saliency`` (``obd``, ``magnitude``,
    ``oneshot_obd``, ``oneshot_magnitude``) or ``han2015`` (their published percentages).
    """
    check_columns(sparsity, "sparsity", "the sparsity table")
    s = sparsity.assign(remaining=1.0 - sparsity["fraction_pruned"].astype(float))
    if not s["remaining"].between(0, 1).all():
        raise ValueError("fraction_pruned must be in [0, 1]")
    g = s.groupby(["arch", "saliency", "name", "kind"], sort=False)
    out = g.agg(size=("size", "max"), seeds=("seed", "nunique"),
                remaining_mean=("remaining", "mean"), remaining_min=("remaining", "min"),
                remaining_max=("remaining", "max")).reset_index()  # fmt: skip
    out = out.rename(columns={"saliency": "source"})
    han = load_han2015()
    han = han[(han["layer"] != "total") & han["network"].isin(set(out["arch"]))]
    han_rows = pd.DataFrame({
        "arch": han["network"], "source": "han2015", "name": han["layer"], "kind": han["kind"],
        "size": han["weights"], "seeds": 0, "remaining_mean": han["weights_remaining_pct"] / 100,
        "remaining_min": han["weights_remaining_pct"] / 100,
        "remaining_max": han["weights_remaining_pct"] / 100,
    })  # fmt: skip
    return pd.concat([out, han_rows], ignore_index=True)

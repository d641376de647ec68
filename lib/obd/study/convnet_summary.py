"""The convnet study across seeds: LeNet-300-100 and LeNet-5 pruned, against Han et al. (2015).

``convnet.ipynb`` writes, per network ``arch`` and training seed ``s``, four CSVs under
``results/convnets/`` (:data:`COLUMNS` gives their columns): ``{arch}-seed{s}-oneshot.csv``
(one-shot sweeps, no retraining), ``-iterative.csv`` (:func:`obd.retrain.iterative_prune`),
``-sparsity.csv`` (per-layer fraction of kernel weights pruned) and ``-train.csv``. This module
reads them back and computes what ``convnet_compare.ipynb`` and :mod:`obd.study.findings` report:

* :func:`curves`: one table of test error against the fraction of kernel weights pruned for every
  method, one-shot (``{method}_{scope}``) and iterative (``iterative_{saliency}``, the error
  *after* retraining at each round);
* :func:`per_seed`: per (network, method, seed) the dense error ``e0`` (fraction 0), the
  *tolerated fraction* ``f* = max{f : e(f) <= e0 + tol}`` over the levels run (``tol`` = 0.1
  point by default: at most 10 more of the 10,000 test images wrong), the compression it implies
  over kernel weights, ``1 / (1 - f*)``, and the error at Han et al.'s 12x, ``f = 1 - 1/12``
  (91.7% pruned): linearly interpolated between the levels around it (one-shot sweeps), or at the
  nearest level at or above it (iterative runs, whose levels are separately retrained models);
  ``tolerated_interpolated`` reads ``f*`` between the levels instead: where the error curve,
  linear between the levels run, last rises through ``e0 + tol`` (:func:`crossing`);
* :func:`summary`: those numbers as mean, standard deviation (``ddof=1``; 0 for one seed) and
  minimum over seeds, next to the published rows (:func:`load_published`: Han et al. 2015 and the
  later anchors of ``published_anchors.csv``, Guo et al. 2016, Molchanov et al. 2017 and Ullrich
  et al. 2017);
* :func:`reach`: per published result, the fraction it implies, ``1 - 1/C``, against the largest
  fraction our methods prune within ``tol`` and at a test error no worse than the published one;
* :func:`mean_interval`: a mean over seeds with its Student-t confidence interval (the margins of
  one method over another, per seed);
* :func:`layer_sparsity`: the per-layer fraction of weights remaining, ``1 - fraction_pruned``,
  over seeds, next to Han et al.'s per-layer numbers.

Errors and fractions are fractions (0.0164 is 1.64%) throughout; only the Markdown is in percent.
Biases are never pruned, and Han et al. count them in their totals (a 0.1% difference at 12x).
Every published ratio is a pruning ratio, weights over non-zero weights (``measure``), so it sits on
the same axis as ours, read as ``1 - 1/C`` of the kernel weights. Where a paper counts biases in
its weights, as Han et al. do, that reading is generous to us at high ratios, because we keep the
biases: at 280x on LeNet-5 (431,080 parameters, 580 of them biases) matching the ratio over all
parameters would leave 1/449 of the kernel weights, not 1/280.
"""

from __future__ import annotations

import os
from importlib import resources
from pathlib import Path

import numpy as np
import pandas as pd
from scipy import stats

from obd.pipeline.io import finished
from obd.study.variants import COLORS

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
#: published method key: colour, marker (figure 8; every network, both panels)
PUBLISHED_STYLES: dict[str, tuple[str, str]] = {
    "han2015": ("black", "*"),
    "dns2016": ("tab:purple", "D"),
    "sparsevd2017": ("teal", "P"),
    "sws2017": ("deeppink", "X"),
}
#: what our compression counts (the published rows say what theirs count)
OUR_MEASURE = "kernel weights / kernel weights left"
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
    with resources.files("obd.study").joinpath("published_han2015.csv").open() as f:
        return pd.read_csv(f, comment="#")


#: the columns of :func:`load_published`
PUBLISHED_COLUMNS = [
    "network", "method", "label", "dense_error_pct", "pruned_error_pct", "compression",
    "compression_low", "compression_high", "fraction", "measure", "storage_compression",
]  # fmt: skip


def load_published() -> pd.DataFrame:
    """Every published network-level result: Han et al.'s (from ``published_han2015.csv``) and
    the later anchors (``published_anchors.csv``; see its header for the sources).

    Columns :data:`PUBLISHED_COLUMNS`; errors in percent as published. ``compression`` is the
    ratio as reported, ``compression_low`` / ``compression_high`` the range the printed numbers
    allow, ``fraction`` the share of weights pruned: ``1 - pruned/weights`` from Han et al.'s
    counts, ``1 - 1/compression`` for the others. ``measure`` says what the ratio counts;
    ``storage_compression`` is a paper's own storage ratio (quantisation included) where it gives
    one, a different measure.
    """
    han = load_han2015()
    han = han[han["layer"] == "total"]
    rows = pd.DataFrame({
        "network": han["network"], "method": "han2015", "label": "Han et al. 2015",
        "dense_error_pct": han["dense_error_pct"], "pruned_error_pct": han["pruned_error_pct"],
        "compression": han["compression"].astype(float),
        "compression_low": han["compression"].astype(float),
        "compression_high": han["compression"].astype(float),
        "fraction": 1.0 - han["pruned_weights"] / han["weights"],
        "measure": "parameters / non-zero parameters", "storage_compression": np.nan,
    })  # fmt: skip
    with resources.files("obd.study").joinpath("published_anchors.csv").open() as f:
        later = pd.read_csv(f, comment="#")
    later = later.assign(fraction=1.0 - 1.0 / later["compression"].astype(float))
    bad = later[~(later["compression_low"] <= later["compression"])
                | ~(later["compression"] <= later["compression_high"])]  # fmt: skip
    if len(bad):
        raise ValueError(f"published_anchors.csv: compression outside its range in {bad.iloc[0]}")
    out = pd.concat([rows, later[PUBLISHED_COLUMNS]], ignore_index=True)
    return out[PUBLISHED_COLUMNS]


def published_label(method: str, published: pd.DataFrame | None = None) -> str:
    """Legend label of a published method key (``"dns2016"``), with "(published)"."""
    p = load_published() if published is None else published
    labels = p.loc[p["method"] == method, "label"]
    return f"{labels.iloc[0] if len(labels) else method} (published)"


def published_style(method: str) -> tuple[str, str]:
    """(colour, marker) of a published method key (grey circle if unknown)."""
    return PUBLISHED_STYLES.get(method, ("grey", "o"))


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
    the tolerance still counts, as in :func:`obd.study.variants.tolerated_fraction`.
    """
    if not 0 <= tol < 1:
        raise ValueError(f"tol={tol!r} must be in [0, 1)")
    x, e = np.asarray(levels, float), np.asarray(errors, float)
    ok = x[e <= dense_error + tol + _EPS]
    return float(ok.max()) if ok.size else 0.0


def crossing(levels, errors, threshold: float) -> tuple[float, float, float]:
    """Where the error curve, linear between the levels run, last rises through ``threshold``.

    With the levels sorted, ``x_i`` is the largest level with ``e_i <= threshold`` (the grid
    reading, :func:`tolerated_fraction`) and ``x_j`` the next level, where ``e_j > threshold``:

        f = x_i + (t - e_i) / (e_j - e_i) · (x_j - x_i),    t = threshold.

    Returns ``(f, x_i, x_j)``; ``(x_i, x_i, x_i)`` when ``x_i`` is the last level (nothing beyond
    it to interpolate towards) and ``(nan, nan, nan)`` when no level is within ``threshold``.
    Whatever its shape between the two levels, a continuous error curve crosses ``threshold``
    somewhere in ``[x_i, x_j]``: that bracket is what the grid alone leaves open.
    """
    x, e = np.asarray(levels, float), np.asarray(errors, float)
    if x.shape != e.shape or x.ndim != 1:
        raise ValueError(f"levels {x.shape} and errors {e.shape} must be matching 1-D arrays")
    if not np.isfinite(threshold):
        raise ValueError(f"threshold={threshold!r} must be a finite error")
    order = np.argsort(x, kind="stable")
    x, e = x[order], e[order]
    within = np.flatnonzero(e <= threshold + _EPS)
    if within.size == 0:
        return float("nan"), float("nan"), float("nan")
    i = int(within[-1])
    if i == x.size - 1:
        return float(x[i]), float(x[i]), float(x[i])
    t = float(np.clip((threshold - e[i]) / (e[i + 1] - e[i]), 0.0, 1.0))
    return float(x[i] + t * (x[i + 1] - x[i])), float(x[i]), float(x[i + 1])


def mean_interval(values, level: float = 0.95) -> tuple[float, float, int, float, float]:
    """``(mean, sd, n, lo, hi)`` of ``values`` (NaNs dropped): the sample standard deviation
    (``ddof=1``) and the Student-t confidence interval of the mean,

        mean ± t_q(n - 1) · sd / √n,    q = (1 + level) / 2,

    which assumes the values are independent draws (here: training seeds) from a normal
    distribution. ``sd`` is 0 and ``lo``, ``hi`` are NaN for fewer than 2 values (no interval).
    """
    if not 0 < level < 1:
        raise ValueError(f"level={level!r} must be in (0, 1)")
    d = np.asarray(values, float)
    d = d[~np.isnan(d)]
    n = int(d.size)
    if n == 0:
        return float("nan"), float("nan"), 0, float("nan"), float("nan")
    mean = float(d.mean())
    if n < 2:
        return mean, 0.0, n, float("nan"), float("nan")
    sd = float(d.std(ddof=1))
    half = float(stats.t.ppf(0.5 + level / 2, n - 1)) * sd / np.sqrt(n)
    return mean, sd, n, mean - half, mean + half


def compression(fraction) -> np.ndarray | float:
    """``1 / (1 - fraction)``: how many times fewer kernel weights (inf at 100% pruned)."""
    f = np.asarray(fraction, float)
    if np.any((f < 0) | (f > 1)):
        raise ValueError(f"fractions must be in [0, 1], got {fraction!r}")
    with np.errstate(divide="ignore"):
        out = 1.0 / (1.0 - f)
    return float(out) if out.ndim == 0 else out


#: the columns of :func:`per_seed`
PER_SEED_COLUMNS = [
    "arch", "method", "seed", "dense_error", "tolerated_fraction", "compression", "error_target",
    "target_lo", "target_hi", "target_rule", "tolerated_interpolated", "crossing_lo",
    "crossing_hi",
]  # fmt: skip


def per_seed(c: pd.DataFrame, tol: float = TOLERANCE, target: float = TARGET) -> pd.DataFrame:
    """Per (arch, method, seed) of :func:`curves`: dense error, tolerated fraction, compression,
    and the error at ``target`` pruned (interpolated for one-shot, at or above for iterative).

    Columns :data:`PER_SEED_COLUMNS`: ``tolerated_fraction`` is the grid reading (the largest
    level within ``tol``), ``tolerated_interpolated`` the crossing of ``dense_error + tol`` read
    between the levels (:func:`crossing`), inside ``[crossing_lo, crossing_hi]``.
    ``ValueError`` if a run has no fraction-0 row.
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
        fi, xlo, xhi = crossing(g["pruned_fraction"], g["error"], e0 + tol)
        rows.append(dict(arch=arch, method=method, seed=seed, dense_error=e0,
                         tolerated_fraction=f, compression=compression(f), error_target=err,
                         target_lo=lo, target_hi=hi, target_rule=rule,
                         tolerated_interpolated=fi, crossing_lo=xlo,
                         crossing_hi=xhi))  # fmt: skip
    return pd.DataFrame(rows, columns=PER_SEED_COLUMNS)


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
    "compression", "compression_min", "measure", "error_12x_mean", "error_12x_sd",
    "error_12x_how",
]  # fmt: skip


def _ratio(x: float) -> str:
    return f"{x:.1f}x" if x < 100 else f"{x:.0f}x"


def _published_how(r) -> str:
    """The "read at" cell of a published row: its own result, the range and any storage ratio."""
    how = f"published: {r.pruned_error_pct:.2f}% at {r.compression:g}x"
    if r.compression_low < r.compression or r.compression_high > r.compression:
        how += f" ({r.compression_low:g}-{r.compression_high:g}x in print)"
    how += f", {100 * r.fraction:.1f}% pruned"
    if not np.isnan(r.storage_compression):
        how += f"; {r.storage_compression:g}x with quantisation and storage (not comparable)"
    return how


def summary(c: pd.DataFrame, tol: float = TOLERANCE, target: float = TARGET) -> pd.DataFrame:
    """Per network and method: the numbers of :func:`per_seed` over seeds, then the published rows.

    ``compression`` is ``1 / (1 - tolerated_fraction_mean)``, ``compression_min`` that of the
    worst seed; ``error_12x_how`` says how the error at ``target`` was read; ``measure`` what the
    compression counts. The published rows (:func:`load_published`, ``seeds`` 0, ``method`` their
    key) have the paper's dense and pruned errors, the fraction it pruned and its ratio; their
    ``error_12x_mean`` is their pruned error only where that is at ``target`` (Han et al.'s 12x),
    NaN otherwise, and ``error_12x_how`` gives their own result.
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
            measure=OUR_MEASURE,
            error_12x_mean=float(g["error_target"].mean()), error_12x_sd=_sd(g["error_target"]),
            error_12x_how=_how(g, target),
        ))  # fmt: skip
    pub = load_published()
    pub = pub[pub["network"].isin(set(p["arch"]))]
    for r in pub.itertuples():
        at_target = np.isclose(compression(target), r.compression, rtol=0.01)
        rows.append(dict(
            arch=r.network, method=r.method, label=published_label(r.method, pub), seeds=0,
            dense_error_mean=r.dense_error_pct / 100, dense_error_sd=np.nan,
            tolerated_fraction_mean=r.fraction, tolerated_fraction_sd=np.nan,
            tolerated_fraction_min=r.fraction, compression=float(r.compression),
            compression_min=float(r.compression), measure=r.measure,
            error_12x_mean=r.pruned_error_pct / 100 if at_target else np.nan,
            error_12x_sd=np.nan, error_12x_how=_published_how(r),
        ))  # fmt: skip
    out = pd.DataFrame(rows, columns=SUMMARY_COLUMNS)
    order.update({m: len(order) + i for i, m in enumerate(dict.fromkeys(pub["method"]))})
    arch_order = {a: i for i, a in enumerate(ARCHS)}
    key = out["arch"].map(arch_order).fillna(len(arch_order)) * 100 + out["method"].map(
        order
    ).fillna(len(order))
    return out.iloc[np.argsort(key.to_numpy(), kind="stable")].reset_index(drop=True)


def _cell(text: str) -> str:
    """``text`` safe inside a Markdown table cell (``|`` escaped)."""
    return str(text).replace("|", "\\|")


def summary_markdown(s: pd.DataFrame, tol: float = TOLERANCE) -> str:
    """:func:`summary` as a Markdown table, in percent (``±``: standard deviation over seeds).

    Published rows (``seeds`` 0) say "published" and give their own result under "read at";
    the "measure" column says what each compression counts.
    """
    head = (
        "| network | method | seeds | dense error (%) | weights pruned at <= dense error + "
        f"{100 * tol:g} point (%), mean ± sd (min) | compression | measure | error at 12x (%) "
        "| read at |\n"
        "|---|---|---:|---:|---:|---:|---|---:|---|\n"
    )

    def pm(mean: float, sd: float, digits: int) -> str:
        if np.isnan(mean):
            return "n/a"
        return f"{100 * mean:.{digits}f}" + ("" if np.isnan(sd) else f" ± {100 * sd:.{digits}f}")

    body = ""
    for r in s.itertuples():
        published = r.seeds == 0
        seeds = "published" if published else str(r.seeds)
        frac = pm(r.tolerated_fraction_mean, r.tolerated_fraction_sd, 1)
        if not published:
            frac += f" ({100 * r.tolerated_fraction_min:.1f})"
        body += (
            f"| {arch_label(r.arch)} | {r.label} | {seeds} | "
            f"{pm(r.dense_error_mean, r.dense_error_sd, 2)} | {frac} | {_ratio(r.compression)} | "
            f"{_cell(r.measure)} | {pm(r.error_12x_mean, r.error_12x_sd, 2)} | "
            f"{_cell(r.error_12x_how)} |\n"
        )
    return head + body


#: the columns of :func:`reach`
REACH_COLUMNS = [
    "arch", "method", "label", "compression", "fraction_needed", "published_error",
    "dense_error_mean", "best_method", "best_fraction", "best_fraction_max", "best_seeds",
    "at_error_method", "at_error_fraction", "at_error_seeds", "dense_above_seeds",
]  # fmt: skip


def _within(levels, errors, threshold: float) -> float:
    """The largest level with error <= ``threshold``; NaN when none (the dense model above)."""
    x, e = np.asarray(levels, float), np.asarray(errors, float)
    ok = x[e <= threshold + _EPS]
    return float(ok.max()) if ok.size else float("nan")


def _best(values: dict[str, float]) -> str:
    """The key(s) with the largest value, in :data:`METHODS` order, ties joined by ``;``."""
    top = max(values.values())
    order = {m: i for i, m in enumerate(METHODS)}
    tied = [m for m in values if values[m] >= top - 1e-12]
    return ";".join(sorted(tied, key=lambda m: (order.get(m, len(order)), m)))


def _labels(methods: str) -> str:
    """``a;b`` as "label a and label b (tied)"."""
    keys = methods.split(";")
    return " and ".join(label(m) for m in keys) + (" (tied)" if len(keys) > 1 else "")


def _who(published_label: str) -> str:
    """A published label as "name (citation)": "Dynamic Network Surgery (Guo et al. 2016)"."""
    cite, _, name = published_label.removesuffix(" (published)").partition(", ")
    return f"{name} ({cite})" if name else cite


def reach(c: pd.DataFrame, tol: float = TOLERANCE) -> pd.DataFrame:
    """Per network and published result: what our methods would need to match it.

    ``fraction_needed = 1 - 1/compression`` (kernel weights pruned for the published ratio,
    biases aside: see the module's note).
    ``best_method`` is our method with the largest mean over seeds of the grid-read fraction
    pruned within ``tol`` of its own dense error (:func:`per_seed`): ``best_fraction`` (mean),
    ``best_fraction_max`` (its best seed), ``best_seeds``. ``at_error_method`` and
    ``at_error_fraction``: the same with the published pruned error as the ceiling instead (per
    seed, the largest level with a test error at or below it; a seed whose dense model is
    already above it counts as 0 and in ``dense_above_seeds``, of ``at_error_seeds``). Empty
    when no network of ``c`` has a published row.
    """
    p = per_seed(c, tol)
    pub = load_published()
    rows = []
    for arch, ca in c.groupby("arch", sort=False):
        pa = p[p["arch"] == arch]
        mean_tol = pa.groupby("method")["tolerated_fraction"].mean().to_dict()
        best = _best(mean_tol)
        best_seeds = pa[pa["method"] == best.split(";")[0]]["tolerated_fraction"]
        for r in pub[pub["network"] == arch].itertuples():
            ceiling = r.pruned_error_pct / 100
            at = {}
            for (method, _seed), g in ca.groupby(["method", "seed"], sort=True):
                at.setdefault(method, []).append(_within(g["pruned_fraction"], g["error"], ceiling))
            at_mean = {m: float(np.nan_to_num(v, nan=0.0).mean()) for m, v in at.items()}
            best_at = _best(at_mean)
            first_at = best_at.split(";")[0]
            rows.append(dict(
                arch=arch, method=r.method, label=published_label(r.method, pub),
                compression=float(r.compression), fraction_needed=1.0 - 1.0 / r.compression,
                published_error=ceiling, dense_error_mean=float(pa["dense_error"].mean()),
                best_method=best, best_fraction=float(mean_tol[best.split(";")[0]]),
                best_fraction_max=float(best_seeds.max()), best_seeds=int(best_seeds.size),
                at_error_method=best_at, at_error_fraction=at_mean[first_at],
                at_error_seeds=len(at[first_at]),
                dense_above_seeds=int(np.isnan(at[first_at]).sum()),
            ))  # fmt: skip
    out = pd.DataFrame(rows, columns=REACH_COLUMNS)
    order = {a: i for i, a in enumerate(ARCHS)}
    return out.iloc[
        np.argsort(out["arch"].map(order).fillna(len(order)).to_numpy(), kind="stable")
    ].reset_index(drop=True)


def reach_markdown(r: pd.DataFrame, tol: float = TOLERANCE) -> str:
    """:func:`reach` as Markdown bullets, one per network and published result, in percent."""
    lines = []
    for x in r.itertuples():
        n = x.best_seeds
        text = (
            f"* To reach the {x.compression:g}x of {_who(x.label)} on {arch_label(x.arch)} at "
            f"{100 * x.published_error:.2f}% test error, {100 * x.fraction_needed:.1f}% of the "
            f"kernel weights would have to be pruned. Our best within {100 * tol:g} point of its "
            f"own dense error: {_labels(x.best_method)}, {100 * x.best_fraction:.1f}% "
            f"({_ratio(compression(x.best_fraction))}; mean of {n} seed{'s' if n > 1 else ''}, "
            f"best seed {100 * x.best_fraction_max:.1f}%)"
        )
        if x.dense_above_seeds == x.at_error_seeds:
            text += (
                f"; at a test error <= {100 * x.published_error:.2f}%: none, our dense error "
                f"({100 * x.dense_error_mean:.2f}%) is already above it"
            )
        else:
            text += (
                f"; at a test error <= {100 * x.published_error:.2f}%: "
                f"{_labels(x.at_error_method)}, {100 * x.at_error_fraction:.1f}% "
                f"({_ratio(compression(x.at_error_fraction))}"
            )
            if x.dense_above_seeds:
                text += (
                    f"; {x.dense_above_seeds} of {x.at_error_seeds} seeds count as 0, their dense "
                    "model already above it"
                )
            text += ")"
        lines.append(text + ".")
    return "\n".join(lines) + ("\n" if lines else "")


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

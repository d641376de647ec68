"""The convnet study's readings: LeNet-300-100 and LeNet-5 pruned, per network, method and seed.

``convnet.ipynb`` writes, per network ``arch`` and training seed ``s``, four CSVs under
``results/convnets/`` (:data:`COLUMNS` gives their columns): ``{arch}-seed{s}-oneshot.csv``
(one-shot sweeps, no retraining), ``-iterative.csv`` (:func:`obd.retrain.iterative_prune`),
``-sparsity.csv`` (per-layer fraction of kernel weights pruned) and ``-train.csv``. This module
reads them back (:func:`read_kind`) and computes the numbers that ``convnet_compare.ipynb``,
:mod:`obd.study.convnet_tables` and :mod:`obd.study.findings` report:

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
* :func:`mean_interval`: a mean over seeds with its Student-t confidence interval;
* :func:`margin`: one method's interpolated tolerated fraction minus another's, per seed, with
  that interval and the range the grid alone leaves open (OBD against magnitude, one-shot).

Errors and fractions are fractions (0.0164 is 1.64%) throughout.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from scipy import stats

from obd.pipeline.io import finished
from obd.study.records import read_csv

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
TOLERANCE = 0.001  # test error tolerated above the dense model's: 0.1 point
HAN_COMPRESSION = 12.0
TARGET = 1.0 - 1.0 / HAN_COMPRESSION  # 91.7% of the weights pruned is 12x
EPS = 1e-9  # float slack when comparing errors of 10,000-image test sets (steps of 1e-4)


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
    tables = [check_columns(read_csv(f), kind, str(f)) for f in files]
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
    ok = x[e <= dense_error + tol + EPS]
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
    within = np.flatnonzero(e <= threshold + EPS)
    if within.size == 0:
        return float("nan"), float("nan"), float("nan")
    i = int(within[-1])
    if i == x.size - 1:
        return float(x[i]), float(x[i]), float(x[i])
    t = float(np.clip((threshold - e[i]) / (e[i + 1] - e[i]), 0.0, 1.0))
    return float(x[i] + t * (x[i + 1] - x[i])), float(x[i]), float(x[i + 1])


def largest_within(levels, errors, threshold: float) -> float:
    """The largest level with error <= ``threshold``; NaN when none (the dense model above)."""
    x, e = np.asarray(levels, float), np.asarray(errors, float)
    ok = x[e <= threshold + EPS]
    return float(ok.max()) if ok.size else float("nan")


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


@dataclass(frozen=True)
class Margin:
    """One method's tolerated fraction minus another's, per seed, on one network.

    ``a`` and ``b`` are the two methods' rows of :func:`per_seed` on their common seeds (indexed
    by seed); ``diff = a.tolerated_interpolated - b.tolerated_interpolated``; ``mean, sd, n, lo,
    hi`` its :func:`mean_interval`; ``grid_lo`` / ``grid_hi`` the range the mean could take from
    the grid alone, ``mean(a.crossing_lo - b.crossing_hi)`` and ``mean(a.crossing_hi -
    b.crossing_lo)``, whatever the curves do between the levels.
    """

    a: pd.DataFrame
    b: pd.DataFrame
    diff: pd.Series
    mean: float
    sd: float
    n: int
    lo: float
    hi: float
    grid_lo: float
    grid_hi: float

    @property
    def seeds(self) -> pd.Index:
        """The seeds both methods ran."""
        return self.a.index


def margin(
    per_seed_table: pd.DataFrame, arch: str, method: str, baseline: str, level: float = 0.95
) -> Margin | None:
    """``method`` against ``baseline`` on network ``arch``, from a :func:`per_seed` table.

    Per common seed, ``tolerated_interpolated`` of ``method`` minus that of ``baseline`` (the
    crossing of each seed's dense error + ``tol``, read between the levels); its mean, sample
    standard deviation and Student-t interval at ``level`` (:func:`mean_interval`), and the grid
    bracket of the mean (:class:`Margin`). ``None`` when either method has no row on ``arch``.
    """
    missing = [c for c in PER_SEED_COLUMNS if c not in per_seed_table.columns]
    if missing:
        raise ValueError(f"per_seed_table lacks the per_seed column(s) {', '.join(missing)}")
    w = per_seed_table[per_seed_table["arch"] == arch].set_index(["method", "seed"])
    if not {method, baseline} <= set(w.index.get_level_values(0)):
        return None
    a, b = w.loc[method], w.loc[baseline]
    seeds = a.index.intersection(b.index)
    a, b = a.loc[seeds], b.loc[seeds]
    diff = a.tolerated_interpolated - b.tolerated_interpolated
    mean, sd, n, lo, hi = mean_interval(diff, level)
    grid_lo = float((a.crossing_lo - b.crossing_hi).mean())
    grid_hi = float((a.crossing_hi - b.crossing_lo).mean())
    return Margin(a, b, diff, mean, sd, n, lo, hi, grid_lo, grid_hi)

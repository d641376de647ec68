"""The convnet study's summary tables and their Markdown: per network and method over seeds,
next to the published results, and what reaching each published result would take.

* :func:`summary`: the numbers of :func:`obd.study.convnet_metrics.per_seed` as mean, standard
  deviation (``ddof=1``; 0 for one seed) and minimum over seeds, next to the published rows
  (:func:`obd.study.published.load_published`);
* :func:`reach`: per published result, the fraction it implies, ``1 - 1/C``, against the largest
  fraction our methods prune within ``tol`` and at a test error no worse than the published one;
* :func:`layer_sparsity`: the per-layer fraction of weights remaining, ``1 - fraction_pruned``,
  over seeds, next to Han et al.'s per-layer numbers.

Errors and fractions are fractions (0.0164 is 1.64%); only the Markdown is in percent. Biases are
never pruned, and Han et al. count them in their totals (a 0.1% difference at 12x); see
:mod:`obd.study.published` for how the published ratios are read.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from obd.study.convnet_metrics import (
    ARCHS,
    TARGET,
    TOLERANCE,
    check_columns,
    compression,
    largest_within,
    per_seed,
)
from obd.study.convnet_styles import METHODS, arch_label, label
from obd.study.published import load_han2015, load_published, published_label

#: what our compression counts (the published rows say what theirs count)
OUR_MEASURE = "kernel weights / kernel weights left"


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
                at.setdefault(method, []).append(
                    largest_within(g["pruned_fraction"], g["error"], ceiling)
                )
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

"""The benchmark's figures, drawn from a results frame alone (``figures/bench_*.png`` and .svg).

Points are medians; error bars are the interquartile range over the repeats (times) or over the
rounds' ratios (ratios). Memory is compiled, hence exact: no error bars.
"""

from __future__ import annotations

import os
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import matplotlib.ticker as ticker  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from obd.study.plots import save_figure

AXES = {
    "examples": "training examples N",
    "width": "hidden width (4 hidden layers)",
    "depth": "hidden layers (width 50)",
}
COLORS = {"grad": "tab:gray", "fast": "tab:blue", "hvp": "tab:orange"}
LABELS = {"grad": "one full-batch gradient", "fast": 'exact Hessian diagonal, method="fast"'}
GOAL = 2.5  # the target for fast / gradient


def _err(lo, med, hi) -> np.ndarray:
    return np.vstack([np.asarray(med) - np.asarray(lo), np.asarray(hi) - np.asarray(med)])


def plot_hessian(df: pd.DataFrame, directory: str | os.PathLike) -> list[Path]:
    """Cost of each way to the Hessian diagonal, in gradients (log scale)."""
    h = df[df["section"] == "hessian"].set_index("name")
    names = [n for n in ("fast", "hvp", "hvp_single", "naive_all") if n in h.index]
    labels = {
        "fast": 'exact diagonal\nmethod="fast"',
        "hvp": 'exact diagonal\nmethod="hvp"',
        "hvp_single": "one HVP",
        "naive_all": "naive: one HVP per\nparameter (47,410)",
    }
    r = h.loc[names]
    fig, ax = plt.subplots(figsize=(7, 4))
    colors = ["tab:blue", "tab:orange", "tab:green", "tab:red"][: len(names)]
    ax.bar(range(len(names)), r["ratio"], color=colors, alpha=0.8)
    ax.errorbar(
        range(len(names)),
        r["ratio"],
        _err(r["ratio_q25"], r["ratio"], r["ratio_q75"]),
        fmt="none",
        ecolor="k",
        capsize=4,
    )
    for i, (v, top) in enumerate(zip(r["ratio"], r["ratio_q75"], strict=True)):
        ax.annotate(
            f"{v:,.3g}×" if v < 1000 else f"{v:,.0f}×",
            (i, max(v, top)),
            ha="center",
            va="bottom",
            xytext=(0, 6),
            textcoords="offset points",
        )
    ax.axhline(1, color="k", lw=0.8)
    ax.axhline(GOAL, color="tab:blue", ls=":", lw=1, label=f"goal for fast: {GOAL}×")
    ax.set_yscale("log")
    ax.set_ylim(0.5, r["ratio_q75"].max() * 8)
    ax.set_xticks(range(len(names)), [labels[n] for n in names])
    ax.set_ylabel("time ÷ one full-batch gradient")
    n = int(h.loc["grad", "size"])
    g = h.loc["grad", "median"]
    ax.set_title(
        f"Hessian diagonal of the seed MLP on {n:,} examples\n"
        f"in units of one full-batch gradient ({g * 1e3:.3g} ms here); median and IQR of "
        f"{int(h.loc['grad', 'repeats'])} rounds",
        fontsize=10,
    )
    ax.legend(loc="upper left", frameon=False)
    ax.grid(axis="y", alpha=0.3)
    paths = save_figure(fig, directory, "bench_hessian")
    plt.close(fig)
    return paths


def _fmt_seconds(v: float, _pos=None) -> str:
    if v < 1e-3:
        return f"{v * 1e6:g} µs"
    return f"{v * 1e3:g} ms" if v < 1 else f"{v:g} s"


def _scaling_panels(df: pd.DataFrame, value: str, ylabel: str, title: str, name: str, directory):
    s = df[df["section"] == "scaling"]
    e = df[df["section"] == "exponent"]
    axes_present = [a for a in AXES if (s["axis"] == a).any()]
    fig, axs = plt.subplots(1, len(axes_present), figsize=(4.2 * len(axes_present), 3.9))
    for ax, axis in zip(np.atleast_1d(axs), axes_present, strict=True):
        pts = s[s["axis"] == axis]
        text = []
        for method in ("grad", "fast"):
            m = pts[pts["name"] == method].sort_values("size")
            y = m[value].to_numpy(float)
            if value == "median":
                ax.errorbar(m["size"], y, _err(m["q25"], y, m["q75"]), fmt="o-",
                            color=COLORS[method], capsize=3, label=LABELS[method])  # fmt: skip
                fit = np.polyfit(np.log(m["size"]), np.log(y), 1)
                xs = np.geomspace(m["size"].min(), m["size"].max(), 50)
                ax.plot(xs, np.exp(np.polyval(fit, np.log(xs))), ":", color=COLORS[method])
                slope = e[(e["axis"] == axis) & (e["name"] == method)]
                if len(slope):
                    r = slope.iloc[0]
                    se = r["q75"] - r["median"]
                    text.append(f"slope {method}: {r['median']:.2f} ± {se:.2f}")
            else:
                ax.plot(m["size"], y / 1e6, "o-", color=COLORS[method], label=LABELS[method])
                if method == "fast":
                    for xv, yv, rv in zip(m["size"], y / 1e6, m["temp_ratio"], strict=True):
                        ax.annotate(f"{rv:.2g}×", (xv, yv), xytext=(0, 6), ha="center",
                                    textcoords="offset points", fontsize=7, color=COLORS[method])  # fmt: skip
                    text.append("labels: fast ÷ gradient")
        ax.text(0.97, 0.04, "\n".join(text), transform=ax.transAxes, ha="right", va="bottom",
                fontsize=8, bbox={"facecolor": "white", "alpha": 0.8, "edgecolor": "none"})  # fmt: skip
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel(AXES[axis])
        ax.set_ylabel(ylabel)
        ax.set_title(f"{title}; fixed: {pts['note'].iloc[0]}", fontsize=9)
        ax.grid(alpha=0.3, which="major")
        sizes = sorted(pts["size"].unique())
        ax.xaxis.set_major_locator(ticker.FixedLocator(sizes))
        ax.xaxis.set_major_formatter(ticker.FixedFormatter([f"{int(v):,}" for v in sizes]))
        ax.xaxis.set_minor_locator(ticker.NullLocator())
        ax.tick_params(axis="x", labelsize=8)
        ax.yaxis.set_major_locator(ticker.LogLocator(subs=(1.0, 2.0, 5.0)))
        ax.yaxis.set_minor_locator(ticker.NullLocator())
        ax.yaxis.set_major_formatter(
            ticker.FuncFormatter(_fmt_seconds if value == "median" else lambda v, _: f"{v:g}")
        )
        ax.tick_params(axis="y", labelsize=8)
        lo, hi = ax.get_ylim()
        ax.set_ylim(lo, hi * 1.25)  # room for the labels
    handles, labels = np.atleast_1d(axs)[0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="upper center", ncol=2, frameon=False)
    fig.tight_layout(rect=(0, 0, 1, 0.92))
    paths = save_figure(fig, directory, name)
    plt.close(fig)
    return paths


def plot_scaling(df: pd.DataFrame, directory: str | os.PathLike) -> list[Path]:
    """Time of ``fast`` and of one gradient as N, the width and the depth grow (log-log)."""
    return _scaling_panels(df, "median", "time (median, IQR)", "time", "bench_scaling", directory)


def plot_memory(df: pd.DataFrame, directory: str | os.PathLike) -> list[Path]:
    """Compiled working memory of ``fast`` and of one gradient at the same points (log-log)."""
    return _scaling_panels(
        df,
        "temp_bytes",
        "working memory (MB, XLA temporaries)",
        "working memory",
        "bench_memory",
        directory,
    )


def plot_pipeline(df: pd.DataFrame, directory: str | os.PathLike) -> list[Path]:
    """Wall time of each pipeline step and of each notebook kind (log scale, min-max bars)."""
    p = df[(df["section"] == "pipeline") & (df["unit"] == "s")]
    items = [(r["name"], r["median"], r["min"], r["max"], "tab:blue") for _, r in p.iterrows()]
    nb = df[df["section"] == "notebook"].copy()
    if not nb.empty:
        nb["kind"] = nb["name"].str.split("-").str[0]
        for (mode, kind), g in nb.groupby(["axis", "kind"], sort=False):
            t = g["median"]
            color = "tab:green" if mode == "quick" else "tab:orange"
            items.append(
                (f"{kind}.ipynb, {mode} (n={len(t)})", t.median(), t.min(), t.max(), color)
            )
    fig, ax = plt.subplots(figsize=(8, 0.42 * len(items) + 1.2))
    y = np.arange(len(items))[::-1]
    med = np.array([i[1] for i in items])
    ax.barh(y, med, color=[i[4] for i in items], alpha=0.8)
    ax.errorbar(
        med,
        y,
        xerr=_err([i[2] for i in items], med, [i[3] for i in items]),
        fmt="none",
        ecolor="k",
        capsize=3,
    )
    for yi, v, hi in zip(y, med, [i[3] for i in items], strict=True):
        ax.annotate(
            f"{v:.3g} s",
            (max(v, hi), yi),
            va="center",
            xytext=(6, 0),
            textcoords="offset points",
            fontsize=8,
        )
    ax.set_yticks(y, [i[0] for i in items], fontsize=8)
    ax.set_xscale("log")
    ax.set_xlim(right=med.max() * 8)
    ax.set_xlabel("wall time (s): median, bars min–max")
    title = "Pipeline steps (blue)"
    if not nb.empty:
        title += " and notebooks per run (green: QUICK, orange: full)"
    ax.set_title(title, fontsize=10)
    ax.grid(axis="x", alpha=0.3)
    paths = save_figure(fig, directory, "bench_pipeline")
    plt.close(fig)
    return paths


def plot_all(df: pd.DataFrame, directory: str | os.PathLike) -> list[Path]:
    """Every figure whose data is in ``df``."""
    paths = []
    sections = set(df["section"])
    if "hessian" in sections:
        paths += plot_hessian(df, directory)
    if "scaling" in sections:
        paths += plot_scaling(df, directory) + plot_memory(df, directory)
    if sections & {"pipeline", "notebook"}:
        paths += plot_pipeline(df, directory)
    return paths

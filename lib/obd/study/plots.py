"""Figure helpers: accuracy-vs-pruning curves with seed bands, saved as PNG and SVG atomically."""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path

import matplotlib.pyplot as plt
import pandas as pd

from obd.pipeline.io import atomic_path
from obd.study.variants import Variant, band, load_published

X_LABEL = "weights pruned (%)"
Y_LABEL = "test accuracy"


def plot_variant(ax: plt.Axes, df: pd.DataFrame, variant: Variant, *, linestyle="-", label=None):
    """Mean accuracy over seeds of ``variant`` with a min-max band."""
    b = band(df[df["variant"] == variant.name])
    if b.empty:
        raise ValueError(f"no results for variant {variant.name}")
    x = 100 * b["fraction"]
    n = int(b["count"].max())
    ax.plot(x, b["mean"], linestyle, color=variant.color, label=f"{label or variant.label}, n={n}")
    ax.fill_between(x, b["min"], b["max"], color=variant.color, alpha=0.2, linewidth=0)


def plot_published(ax: plt.Axes, family: str, color: str, *, max_pruned: float = 100.0):
    """The blog's logged curve for ``family``, dashed."""
    pub = load_published()
    pub = pub[(pub["variant"] == family) & (pub["percent_pruned"] <= max_pruned)]
    ax.plot(pub["percent_pruned"], pub["accuracy"], "--", marker=".", color=color, alpha=0.8,
            label=f"blog 2016 log ({family})")  # fmt: skip


def style_axes(ax: plt.Axes, *, xmax: float = 100.0, title: str | None = None) -> None:
    """Axis labels, limits, grid."""
    ax.set_xlabel(X_LABEL)
    ax.set_ylabel(Y_LABEL)
    ax.set_xlim(0, xmax)
    ax.set_ylim(0, 1.0)
    ax.grid(alpha=0.3)
    if title:
        ax.set_title(title)


def save_figure(fig: plt.Figure, directory: str | os.PathLike, name: str) -> list[Path]:
    """Save ``fig`` as ``name``.png and ``name``.svg in ``directory``, each atomically."""
    paths = []
    for ext in ("png", "svg"):
        path = Path(directory) / f"{name}.{ext}"
        with atomic_path(path) as tmp, plt.rc_context({"svg.hashsalt": "obd"}):
            fig.savefig(tmp, format=ext, dpi=150, bbox_inches="tight",
                        metadata={"Date": None} if ext == "svg" else None)  # fmt: skip
        paths.append(path)
    return paths


def variants_present(df: pd.DataFrame, variants: Iterable[Variant]) -> list[Variant]:
    """The subset of ``variants`` that have results in ``df``."""
    names = set(df["variant"])
    return [v for v in variants if v.name in names]

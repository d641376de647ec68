"""The study's variants, its published reference numbers, and the aggregation of sweep results.

A variant is named ``{saliency}-{scope}-{model}``, e.g. ``obd-global-dropout``. Saliencies named
``seed_*`` are the blog's code as published (which also pruned biases); the others are the
corrected flavour (kernels only). ``model`` is ``plain`` or ``dropout`` (keep prob 0.8).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

import numpy as np
import pandas as pd

MODELS = {"plain": 0.0, "dropout": 0.2}
SCOPES = ("global", "layerwise")
#: The blog's five variants, as (saliency family, scope, model), keyed by its log names.
BLOG_FAMILIES = {
    "magnitude_layerwise": ("magnitude", "layerwise", "plain"),
    "magnitude_global": ("magnitude", "global", "plain"),
    "obd_layerwise": ("obd", "layerwise", "plain"),
    "obd_global": ("obd", "global", "plain"),
    "obd_global_dropout": ("obd", "global", "dropout"),
}
COLORS = {
    "magnitude_layerwise": "tab:blue",
    "magnitude_global": "tab:orange",
    "magnitude_global_dropout": "sandybrown",
    "obd_layerwise": "tab:green",
    "obd_global": "tab:red",
    "obd_global_dropout": "tab:purple",
    "random_global": "tab:gray",
    "random_global_dropout": "silver",
    "obs_layerwise": "tab:brown",
    "obs_layerwise_dropout": "tab:pink",
    "obs_global": "tab:olive",
    "obs_global_dropout": "tab:cyan",
    "obs_ms_global": "darkgreen",
    "obs_mask_global": "yellowgreen",
    "obs_mask_global_dropout": "paleturquoise",
}
FAMILY_LABELS = {
    "magnitude_layerwise": "magnitude, layer-wise",
    "magnitude_global": "magnitude, all layers",
    "magnitude_global_dropout": "magnitude, all layers, dropout model",
    "obd_layerwise": "OBD, layer-wise",
    "obd_global": "OBD, all layers",
    "obd_global_dropout": "OBD, all layers, dropout model",
    "obs_layerwise": "OBS, layer-wise",
    "obs_layerwise_dropout": "OBS, layer-wise, dropout model",
    "obs_global": "OBS, all layers, exact unit blocks",
    "obs_global_dropout": "OBS, all layers, exact unit blocks, dropout model",
    "obs_ms_global": "OBS, all layers, exact unit blocks, multi-stage",
    "obs_mask_global": "OBS ranking, all layers, exact unit blocks",
    "obs_mask_global_dropout": "OBS ranking, all layers, exact unit blocks, dropout model",
    "random_global": "random, all layers",
    "random_global_dropout": "random, all layers, dropout model",
}
RESULT_COLUMNS = [
    "variant", "saliency", "scope", "model", "include_biases", "seed",
    "fraction", "pruned_fraction", "n_pruned", "accuracy", "loss",
]  # fmt: skip


@dataclass(frozen=True)
class Variant:
    """One pruning variant of the study."""

    name: str
    saliency: str
    scope: str
    model: str

    @property
    def as_published(self) -> bool:
        """The blog's code as published (``seed_*`` saliencies)."""
        return self.saliency.startswith("blog_")

    @property
    def include_biases(self) -> bool:
        """The blog pruned biases too; the corrected flavour prunes kernels only."""
        return self.as_published

    @property
    def family(self) -> str:
        """Key shared by a variant's flavours, e.g. ``obd_global_dropout``."""
        base = self.saliency.removeprefix("blog_")
        return f"{base}_{self.scope}" + ("_dropout" if self.model == "dropout" else "")

    @property
    def color(self) -> str:
        """Plot colour, the same for every flavour of a family."""
        return COLORS.get(self.family, "black")

    @property
    def label(self) -> str:
        """Human-readable legend label."""
        base = FAMILY_LABELS.get(self.family, self.family.replace("_", ", "))
        if self.saliency == "random":
            return f"{base} (baseline)"
        if self.saliency == "obs":
            return f"{base} (with weight update)"
        if self.saliency == "obs_ms":
            return f"{base} (blocks recomputed between stages)"
        if self.saliency == "obs_mask":
            return f"{base} (mask only, no update)"
        flavour = "as published" if self.as_published else "corrected"
        return f"{base} ({flavour})"


def parse_variant(name: str) -> Variant:
    """Parse ``{saliency}-{scope}-{model}``; ``ValueError`` naming the accepted parts."""
    parts = name.split("-")
    if len(parts) != 3 or parts[1] not in SCOPES or parts[2] not in MODELS:
        raise ValueError(
            f"variant {name!r} is not '{{saliency}}-{{scope}}-{{model}}' with scope in "
            f"{list(SCOPES)} and model in {list(MODELS)}"
        )
    return Variant(name, *parts)


def blog_variant(family: str, *, as_published: bool) -> Variant:
    """The study variant reproducing one of the blog's five, in either flavour."""
    saliency, scope, model = BLOG_FAMILIES[family]
    saliency = f"blog_{saliency}" if as_published else saliency
    return parse_variant(f"{saliency}-{scope}-{model}")


def load_published() -> pd.DataFrame:
    """The blog's logged test accuracies (see the CSV's header for the source)."""
    with resources.files("obd.study").joinpath("published_blog_2016.csv").open() as f:
        return pd.read_csv(f, comment="#")


#: The numeric columns of a sweep table.
NUMERIC_COLUMNS = ["seed", "fraction", "pruned_fraction", "n_pruned", "accuracy", "loss"]


def read_sweep(path: str | os.PathLike) -> pd.DataFrame:
    """One sweep CSV; ``ValueError`` naming the file when it is damaged
    (:func:`obd.study.records.read_csv`), lacks a column of :data:`RESULT_COLUMNS`, holds a
    non-numeric or missing value in a numeric column, or rows of another variant than its name."""
    from obd.study.records import read_csv

    df = read_csv(path, RESULT_COLUMNS)
    numbers = df[NUMERIC_COLUMNS]
    if not all(k in "iuf" for k in numbers.dtypes.map(lambda d: d.kind)) or numbers.isna().any(
        axis=None
    ):
        bad = [c for c in NUMERIC_COLUMNS if df[c].dtype.kind not in "iuf" or df[c].isna().any()]
        raise ValueError(f"{path}: column {bad[0]} holds values that are not numbers")
    stem = Path(path).stem
    other = sorted({str(v) for v in df["variant"].unique()} - {stem})
    if other:
        raise ValueError(f"{path} holds rows of variant(s) {', '.join(other)}, not {stem}")
    return df


def sweep_files(
    results_dir: str | os.PathLike, reports_dir: str | os.PathLike | None = None
) -> tuple[list[Path], dict[Path, str]]:
    """The sweep CSVs under ``results_dir/sweeps`` that the pipeline's runs recorded (and the
    others, with why each is ignored): :func:`obd.study.records.pipeline_files`."""
    from obd.study.records import pipeline_files

    return pipeline_files(results_dir, "sweeps/*.csv", reports_dir)


def load_sweeps(
    results_dir: str | os.PathLike, reports_dir: str | os.PathLike | None = None
) -> pd.DataFrame:
    """The sweep CSVs under ``results_dir/sweeps`` that the pipeline's runs recorded in their
    manifests (``reports_dir``, default ``reports`` beside ``results_dir``), concatenated. Any
    other file there (a copy, a file changed since its run) is not read: a warning names it and
    ``df.attrs["ignored"]`` lists it. ``ValueError`` naming the file when one is damaged
    (:func:`read_sweep`), or when there is no record or no recorded sweep."""
    import warnings

    from obd.study.records import ignored_line

    files, ignored = sweep_files(results_dir, reports_dir)
    if ignored:
        warnings.warn(ignored_line(ignored, results_dir), stacklevel=2)
    if not files:
        raise ValueError(
            f"no sweep results recorded in {Path(results_dir, 'sweeps')}: run prune.ipynb first"
        )
    df = pd.concat([read_sweep(f) for f in files], ignore_index=True)
    df.attrs["ignored"] = [str(p) for p in ignored]
    return df


def band(df: pd.DataFrame, value: str = "accuracy") -> pd.DataFrame:
    """Mean, std, min and max of ``value`` over seeds at each (variant, fraction)."""
    g = df.groupby(["variant", "fraction"])[value]
    out = g.agg(["mean", "std", "min", "max", "count"]).reset_index()
    out["std"] = out["std"].fillna(0.0)
    return out


def tolerated_fraction(df: pd.DataFrame, drop: float = 0.01) -> pd.DataFrame:
    """Per (variant, seed): the largest fraction pruned whose accuracy is within ``drop`` of the
    unpruned accuracy (fraction 0) of the same seed."""
    rows = []
    for (variant, seed), g in df.groupby(["variant", "seed"]):
        g = g.sort_values("fraction")
        base = g.loc[g["fraction"] == 0, "accuracy"]
        if base.empty:
            raise ValueError(f"variant {variant} seed {seed} has no fraction-0 row")
        ok = g.loc[g["accuracy"] >= base.iloc[0] - drop - 1e-12, "fraction"]
        rows.append((variant, seed, base.iloc[0], ok.max()))
    return pd.DataFrame(
        rows, columns=["variant", "seed", "unpruned_accuracy", "tolerated_fraction"]
    )


def summary_table(df: pd.DataFrame, drop: float = 0.01) -> pd.DataFrame:
    """Largest fraction pruned with at most ``drop`` accuracy loss: mean and std over seeds."""
    t = tolerated_fraction(df, drop)
    s = t.groupby("variant").agg(
        seeds=("seed", "nunique"),
        unpruned_accuracy=("unpruned_accuracy", "mean"),
        tolerated_mean=("tolerated_fraction", "mean"),
        tolerated_std=("tolerated_fraction", "std"),
    )
    s["tolerated_std"] = s["tolerated_std"].fillna(0.0)
    s = s.reset_index()
    s["label"] = [_label(v) for v in s["variant"]]
    return s.sort_values("tolerated_mean", ascending=False, ignore_index=True)


def _label(name: str) -> str:
    try:
        return parse_variant(name).label
    except ValueError:
        return name


def summary_markdown(summary: pd.DataFrame, drop: float = 0.01) -> str:
    """The summary as a Markdown table (percentages)."""
    head = (
        f"| variant | seeds | unpruned accuracy (%) | weights pruned at <= {100 * drop:g} point loss (%) |\n"
        "|---|---:|---:|---:|\n"
    )
    body = "".join(
        f"| {r.label} | {r.seeds} | {100 * r.unpruned_accuracy:.2f} | "
        f"{100 * r.tolerated_mean:.1f} ± {100 * r.tolerated_std:.1f} |\n"
        for r in summary.itertuples()
    )
    return head + body


def default_fractions(step: float = 0.01) -> np.ndarray:
    """0 to 1 inclusive in ``step`` increments, rounded to avoid float drift."""
    n = int(round(1 / step))
    return np.round(np.linspace(0.0, 1.0, n + 1), 10)

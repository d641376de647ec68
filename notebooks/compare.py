# ---
# jupyter:
#   jupytext:
#     text_representation:
#       extension: .py
#       format_name: percent
#       format_version: '1.3'
#       jupytext_version: 1.19.6
#   kernelspec:
#     display_name: Python 3
#     language: python
#     name: python3
# ---

# %% [markdown]
# # Comparison: the blog's five variants, as published and corrected
#
# Reads every sweep written by `prune.ipynb` and renders the study's figures. Curves show the
# mean over training seeds and a band from the lowest to the highest seed; the blog's logged numbers
# are overlaid dashed in the same colour.

# %%
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from IPython.display import Markdown, display
from matplotlib.lines import Line2D

from obd.checks import check_number
from obd.pipeline.io import write_text
from obd.pipeline.params import check_no_unknown
from obd.study.model import load_params
from obd.study.plots import plot_published, plot_variant, save_figure, style_axes
from obd.study.variants import (
    BLOG_FAMILIES,
    FAMILY_LABELS,
    blog_variant,
    load_sweeps,
    parse_variant,
    summary_markdown,
    summary_table,
)

_before = set(globals())

# %% tags=["parameters"]
results_dir = "../results"  # read: the sweeps and models of make reproduce
figures_dir = "../scratch/figures"  # make reproduce writes figures/; by hand: scratch/
out_dir = "../scratch"  # where summary.md and summary.csv go (make reproduce: results/)
drop = 0.01  # accuracy loss tolerated in the summary table (0.01 = 1 point)

# %%
check_no_unknown(globals(), _before, ["results_dir", "figures_dir", "out_dir", "drop"])
check_number("drop", drop, lo=0, hi=1)
df = load_sweeps(results_dir)
Path(figures_dir).mkdir(parents=True, exist_ok=True)
variants = [parse_variant(v) for v in sorted(df.variant.unique())]
print(f"{len(variants)} variants, seeds {sorted(df.seed.unique().tolist())}")

# %% [markdown]
# ## Trained models

# %%
rows = []
for path in sorted(Path(results_dir, "models").glob("*.npz")):
    _, meta = load_params(path)
    rows.append({"model": path.stem, "dropout_rate": meta["config"]["dropout_rate"],
                 "steps": meta["config"]["steps"], "test_accuracy": meta["test_accuracy"]})  # fmt: skip
models = pd.DataFrame(rows)
display(models)
if not models.empty:
    display(
        models.assign(kind=models.model.str.split("-").str[0])
        .groupby("kind")
        .test_accuracy.agg(["mean", "std", "min", "max"])
    )

# %% [markdown]
# ## Figure 1: the blog's five variants, 0-20% pruned (corrected flavour, blog's logs dashed)

# %% tags=["hide-input"]
fig, axes = plt.subplots(1, 2, figsize=(13, 5))
for ax in axes:
    for family in BLOG_FAMILIES:
        v = blog_variant(family, as_published=False)
        if v.name in set(df.variant):
            plot_variant(ax, df, v)
            plot_published(ax, family, v.color, max_pruned=20)
style_axes(axes[0], xmax=20, title="One-shot pruning of the MNIST MLP, no retraining")
style_axes(axes[1], xmax=20, title="the same, test accuracy 0.90-0.98")
axes[1].set_ylim(0.90, 0.98)
handles, labels = axes[0].get_legend_handles_labels()
fig.legend(handles, labels, fontsize=8, ncol=3, loc="upper center", bbox_to_anchor=(0.5, 0.0))
save_figure(fig, figures_dir, "fig1_blog_variants")
plt.show()

# %% [markdown]
# ## Figure 2: OBD over all layers, with and without dropout, 0-100% pruned, and the OBS variants
#
# Global OBS (exact per-unit Hessian blocks of the loss, removals allocated over all layers, with
# the OBS weight update; `global_obs.ipynb`), the same in stages with the blocks recomputed between
# them (multi-stage, dark green), the same ranking without the update (mask only),
# layer-wise OBS, global magnitude and random pruning for reference. Right: 80-99% pruned.

# %% tags=["hide-input"]
fig, axes = plt.subplots(1, 2, figsize=(14, 5.5))
for ax in axes:
    for family in ("obd_global", "obd_global_dropout"):
        v = blog_variant(family, as_published=False)
        if v.name in set(df.variant):
            plot_variant(ax, df, v)
            if ax is axes[0]:
                plot_published(ax, family, v.color)
    for name, style in (("obs_ms-global-plain", "-"),
                        ("obs-global-plain", "-"), ("obs-global-dropout", "-"),
                        ("obs_mask-global-plain", "--"), ("obs_mask-global-dropout", "--"),
                        ("obs-layerwise-plain", "-."), ("obs-layerwise-dropout", "-."),
                        ("magnitude-global-plain", "-"), ("magnitude-global-dropout", "-"),
                        ("random-global-plain", ":"), ("random-global-dropout", ":")):  # fmt: skip
        if name in set(df.variant):
            plot_variant(ax, df, parse_variant(name), linestyle=style)
style_axes(axes[0], title="All layers: OBD (exact diagonal), OBS, magnitude, random")
style_axes(axes[1], title="the same, 80-99% pruned")
axes[1].set_xlim(80, 99)
handles, labels = axes[0].get_legend_handles_labels()
fig.legend(handles, labels, fontsize=8, ncol=3, loc="upper center", bbox_to_anchor=(0.5, 0.0))
save_figure(fig, figures_dir, "fig2_obd_dropout")
plt.show()

# %% [markdown]
# ## Global OBS at 90% and 95% pruned, seed by seed
#
# Test accuracy of each method at 90% and 95% of the kernel weights pruned (one-shot, no
# retraining), per training seed, and global OBS's margin over the best of global OBD, global
# magnitude and layer-wise OBS *on the same seed* (percentage points; the minimum over seeds is the
# margin that holds on every seed). Written to `results_dir/obs_global_margins.csv`.

# %%
rivals = {"OBD, all layers": "obd-global", "magnitude, all layers": "magnitude-global",
          "OBS, layer-wise": "obs-layerwise"}  # fmt: skip
mine = {"OBS, all layers": "obs-global", "OBS ranking, mask only": "obs_mask-global",
        "OBS, all layers, multi-stage": "obs_ms-global"}  # fmt: skip
rows = []
for model_name in ("plain", "dropout"):
    for level in (0.9, 0.95):
        at = df[np.isclose(df.fraction, level) & (df.model == model_name)]
        if at.empty:
            continue
        wide = at.pivot_table(index="seed", columns="variant", values="accuracy")
        cols = {k: f"{v}-{model_name}" for k, v in {**mine, **rivals}.items()}
        present = {k: c for k, c in cols.items() if c in wide.columns}
        if cols["OBS, all layers"] not in wide.columns:
            continue
        best_rival = wide[[c for k, c in present.items() if k in rivals]].max(axis=1)
        for seed in wide.index:
            row = {"model": model_name, "pruned": f"{level:.0%}", "seed": seed}
            row.update({k: wide.loc[seed, c] for k, c in present.items()})
            row["margin (points)"] = 100 * (wide.loc[seed, cols["OBS, all layers"]]
                                            - best_rival.loc[seed])  # fmt: skip
            rows.append(row)
margins = pd.DataFrame(rows)
if not margins.empty:
    write_text(Path(results_dir, "obs_global_margins.csv"), margins.to_csv(index=False))
    display(margins.round(4))
    display(margins.groupby(["model", "pruned"])["margin (points)"].agg(["min", "mean", "max"])
            .round(2))  # fmt: skip

# %% [markdown]
# ## Figure 3: the blog's code as published against the corrected saliencies
#
# Same training seeds, same pruning machinery; only the saliency differs. Dotted: our run of the
# blog's published code (signed-weight "magnitude", Hessian row sum on 64 examples, biases pruned
# too); solid: corrected (|w|, exact OBD diagonal, kernels only); dashed markers: the blog's logs.

# %% tags=["hide-input"]
fig, axes = plt.subplots(1, len(BLOG_FAMILIES), figsize=(4 * len(BLOG_FAMILIES), 4), sharey=True)
for ax, family in zip(axes, BLOG_FAMILIES, strict=True):
    for as_published, style in ((False, "-"), (True, ":")):
        v = blog_variant(family, as_published=as_published)
        if v.name in set(df.variant):
            plot_variant(ax, df, v, linestyle=style)
    plot_published(ax, family, blog_variant(family, as_published=False).color)
    style_axes(ax, title=FAMILY_LABELS[family])
for ax in axes[1:]:
    ax.set_ylabel("")
styles = [
    Line2D(
        [], [], color="k", linestyle="-", label="corrected: |w| or exact OBD diagonal, kernels only"
    ),
    Line2D([], [], color="k", linestyle=":", label="the blog's code as published, re-run here"),
    Line2D([], [], color="k", linestyle="--", marker=".", label="the blog's 2016 log"),
]
fig.legend(handles=styles, loc="lower center", ncol=3, bbox_to_anchor=(0.5, -0.08))
n_seeds = df.seed.nunique()
fig.suptitle(
    f"As published vs corrected (mean over {n_seeds} training seeds, band: min-max)", y=1.03
)
save_figure(fig, figures_dir, "fig3_as_published_vs_corrected")
plt.show()

# %% [markdown]
# ## Summary: largest fraction of weights pruned with at most `drop` accuracy loss

# %%
summary = summary_table(df, drop)
write_text(Path(out_dir, "summary.md"), summary_markdown(summary, drop))
write_text(Path(out_dir, "summary.csv"), summary.to_csv(index=False))
display(Markdown(summary_markdown(summary, drop)))

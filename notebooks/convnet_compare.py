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
# # Convnets across seeds: LeNet-300-100 and LeNet-5 against Han et al. (2015)
#
# Reads every run of `convnet.ipynb` (`results_dir/convnets/{arch}-seed{s}-*.csv`: one-shot
# sweeps, iterative pruning with retraining, per-layer sparsity, training history) and compares the
# methods across training seeds with the numbers Han, Pool, Tran & Dally (2015) published for the
# same two networks: 12x fewer parameters at no loss of accuracy (LeNet-300-100: 1.64% -> 1.59% test
# error; LeNet-5: 0.80% -> 0.77%), by magnitude pruning iterated with retraining.
#
# The yardstick is theirs: the largest fraction of the kernel weights pruned while the test error
# stays within 0.1 point of the dense model's (`tol`; 10 of the 10,000 test images), and the
# error at 12x (91.7% pruned). Biases are never pruned here; Han et al. count them in their
# totals, which changes the fractions by less than 0.2%.

# %%
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from IPython.display import Markdown, display

from obd import convnet_summary as cs
from obd.io import write_text
from obd.params import check_no_unknown, check_number
from obd.plots import save_figure

_before = set(globals())

# %% tags=["parameters"]
results_dir = "../results"  # read: convnets/*.csv, written by convnet.ipynb (make reproduce)
figures_dir = "../scratch/figures"  # make reproduce writes figures/; by hand: scratch/
out_dir = "../scratch"  # where convnet_summary.csv and .md go (make reproduce: results/)
tol = 0.001  # test error tolerated above the dense error: 0.001 is 0.1 point

# %%
check_no_unknown(globals(), _before, ["results_dir", "figures_dir", "out_dir", "tol"])
check_number("tol", tol, lo=0, hi=1, hi_open=True)
tables = {kind: cs.read_kind(results_dir, kind) for kind in cs.COLUMNS}
if tables["oneshot"].empty and tables["iterative"].empty:
    raise ValueError(
        f"no convnet results in {Path(results_dir, 'convnets')}: run convnet.ipynb first"
    )
Path(figures_dir).mkdir(parents=True, exist_ok=True)
curves = cs.curves(tables["oneshot"], tables["iterative"])
archs = [a for a in cs.ARCHS if a in set(curves.arch)] + sorted(set(curves.arch) - set(cs.ARCHS))
han = cs.load_han2015()
han_total = han[han.layer == "total"].set_index("network")
for arch in archs:
    seeds = sorted(curves[curves.arch == arch].seed.unique())
    print(
        f"{cs.arch_label(arch)}: seeds {seeds}, methods {sorted(curves[curves.arch == arch].method.unique())}"
    )

# %% [markdown]
# ## The trained networks
#
# Test accuracy at the end of training, per seed (`-train.csv`), and the dense model's test error
# as the pruning runs measured it (fraction 0).

# %%
train = tables["train"]
if not train.empty:
    last = train.sort_values("step").groupby(["arch", "seed"]).tail(1)
    display(last[["arch", "seed", "step", "epoch", "test_loss", "test_accuracy"]]
            .sort_values(["arch", "seed"]).reset_index(drop=True))  # fmt: skip
dense = cs.per_seed(curves, tol).groupby(["arch", "seed"]).dense_error.first().unstack("seed")
display((100 * dense).round(2).rename_axis(columns="dense test error (%), seed"))

# %% [markdown]
# ## Summary: weights pruned at no loss of accuracy, and the error at 12x
#
# Per network and method: the dense test error, the largest fraction of kernel weights pruned with
# a test error at most `tol` above the dense model's (per seed, then mean ± standard deviation and
# the worst seed in brackets), the compression that mean implies over kernel weights,
# `1 / (1 - fraction)`, and the test error at 12x (91.7% pruned): interpolated linearly between the
# one-shot levels around it, and for iterative runs read at the first round at or above it (each
# round is a separately retrained model; "read at" says which). Han et al.'s published rows close
# each network. Written to `out_dir/convnet_summary.csv` and `.md`.

# %%
summary = cs.summary(curves, tol)
write_text(Path(out_dir, "convnet_summary.csv"), summary.to_csv(index=False))
write_text(Path(out_dir, "convnet_summary.md"), cs.summary_markdown(summary, tol))
display(Markdown(cs.summary_markdown(summary, tol)))

# %%
per_seed = cs.per_seed(curves, tol)
display(per_seed.pivot_table(index=["arch", "method"], columns="seed",
                             values="tolerated_fraction").mul(100).round(1)
        .rename_axis(columns="% pruned within tol, seed"))  # fmt: skip


# %%
def _row(arch: str, method: str) -> pd.Series | None:
    s = summary[(summary.arch == arch) & (summary.method == method)]
    return None if s.empty else s.iloc[0]


lines = []
for arch in archs:
    name, pub = cs.arch_label(arch), han_total.loc[arch] if arch in han_total.index else None
    it = _row(arch, "iterative_obd")
    oneshot = summary[(summary.arch == arch) & ~summary.method.str.startswith(("iterative", "han"))]
    text = f"* **{name}.** "
    base = it if it is not None else (oneshot.iloc[0] if len(oneshot) else None)
    if base is not None:
        text += f"Dense test error {100 * base.dense_error_mean:.2f}%"
        text += f" (Han et al.: {pub.dense_error_pct:.2f}%). " if pub is not None else ". "
    if len(oneshot):
        best = oneshot.loc[oneshot.tolerated_fraction_mean.idxmax()]
        text += (
            f"Without retraining, the best one-shot method is {best.label} with "
            f"{100 * best.tolerated_fraction_mean:.1f}% of the kernel weights pruned within "
            f"{100 * tol:g} point ({best.compression:.1f}x). "
        )
    if it is not None:
        if it.compression_min >= cs.HAN_COMPRESSION:
            verdict = "reaches Han et al.'s {:g}x on every seed"
        elif it.compression >= cs.HAN_COMPRESSION:
            verdict = "reaches Han et al.'s {:g}x on average but not on every seed"
        else:
            verdict = "falls short of Han et al.'s {:g}x"
        text += (
            f"Iterative OBD with retraining prunes {100 * it.tolerated_fraction_mean:.1f}% "
            f"(worst seed {100 * it.tolerated_fraction_min:.1f}%), {it.compression:.1f}x, and so "
            + verdict.format(cs.HAN_COMPRESSION)
            + f"; its error at 12x is {100 * it.error_12x_mean:.2f}% ({it.error_12x_how})"
        )
        if pub is not None:
            text += f" against their {pub.pruned_error_pct:.2f}%"
        mag = _row(arch, "iterative_magnitude")
        if mag is not None:
            text += (
                f"; iterative magnitude (Han et al.'s criterion, with this study's retraining) "
                f"prunes {100 * mag.tolerated_fraction_mean:.1f}% ({mag.compression:.1f}x) with "
                f"an error at 12x of {100 * mag.error_12x_mean:.2f}%"
            )
        text += "."
    lines.append(text)
display(Markdown("\n".join(lines)))

# %% [markdown]
# ## Figure 8: test error against the fraction of kernel weights pruned
#
# One panel per network; top: the whole range on a log scale, bottom: the high-sparsity region.
# One-shot methods (no retraining) are lines: the mean over training seeds, with a band from the
# lowest to the highest seed. Iterative runs are markers after each round's retraining (mean
# over seeds, bars from lowest to highest). The star (drawn behind the markers) is Han et al.'s
# pruned network, the hollow star their dense reference; the dashed grey line is our dense error
# plus `tol`. The legend gives the seeds behind each method, per network where they differ.

# %%
fig, axes = plt.subplots(2, len(archs), figsize=(6.5 * len(archs), 9), squeeze=False)
handles: dict[str, object] = {}
seeds_of = curves.groupby(["method", "arch"]).seed.nunique()


def method_label(method: str, lab: str) -> str:
    """``lab`` with the seeds behind it, per network (they differ between networks)."""
    n = seeds_of[method]
    counts = {cs.arch_label(a): int(n[a]) for a in archs if a in n.index}
    if len(set(counts.values())) == 1:
        k = next(iter(counts.values()))
        return f"{lab}, {k} seed{'s' if k > 1 else ''}"
    return f"{lab}, seeds: " + ", ".join(f"{a} {k}" for a, k in counts.items())


for col, arch in enumerate(archs):
    c = curves[curves.arch == arch]
    dense_mean = float(per_seed[per_seed.arch == arch].dense_error.mean())
    for row, ax in enumerate(axes[:, col]):
        for method, (lab, colour, marker) in cs.METHODS.items():
            g = c[c.method == method]
            if g.empty:
                continue
            b = g.groupby("fraction").agg(x=("pruned_fraction", "mean"), m=("error", "mean"),
                                          lo=("error", "min"), hi=("error", "max"))  # fmt: skip
            if marker is None:
                (h,) = ax.plot(100 * b.x, 100 * b.m, "-", color=colour, lw=1.5)
                ax.fill_between(100 * b.x, 100 * b.lo, 100 * b.hi, color=colour, alpha=0.2, lw=0)
            else:
                yerr = 100 * np.clip([b.m - b.lo, b.hi - b.m], 0, None)
                face = "white" if method == "iterative_magnitude" else colour
                h = ax.errorbar(100 * b.x, 100 * b.m, yerr=yerr, fmt=marker, color=colour,
                                ms=7 if face == "white" else 5, capsize=2, lw=1,
                                markerfacecolor=face, zorder=3)  # fmt: skip
            handles.setdefault(method_label(method, lab), h)
        if arch in han_total.index:
            p = han_total.loc[arch]
            x_han = 100 * (1 - p.pruned_weights / p.weights)
            # drawn below the markers (zorder 3): a marker at 12x is not hidden behind the star
            (h,) = ax.plot([x_han], [p.pruned_error_pct], "*", color="black", ms=14, zorder=2,
                           alpha=0.6)  # fmt: skip
            handles.setdefault("Han et al. 2015, pruned (published)", h)
            if row == 0:
                (h,) = ax.plot([0], [p.dense_error_pct], "*", color="black", ms=14, zorder=2,
                               markerfacecolor="none")  # fmt: skip
                handles.setdefault("Han et al. 2015, dense reference (published)", h)
        h = ax.axhline(100 * (dense_mean + tol), color="grey", ls="--", lw=1)
        handles.setdefault(f"our dense error + {100 * tol:g} point", h)
        ax.set_xlabel("kernel weights pruned (%)")
        ax.set_ylabel("test error (%)")
        ax.grid(alpha=0.3, which="both")
        if row == 0:
            ax.set_yscale("log")
            ax.set_xlim(-2, 100)
            low = min([100 * dense_mean] + ([han_total.loc[arch, "pruned_error_pct"]]
                                            if arch in han_total.index else []))  # fmt: skip
            ax.set_ylim(0.5 * low, 100)
            ax.set_title(f"{cs.arch_label(arch)}: all levels (log scale)")
        else:
            ax.set_xlim(80, 100)
            ax.set_ylim(0, 100 * max(3 * dense_mean, dense_mean + 0.02))
            ax.set_title(f"{cs.arch_label(arch)}: 80-100% pruned")
fig.legend(list(handles.values()), list(handles), loc="upper center", ncol=2, fontsize=9,
           bbox_to_anchor=(0.5, 0.0), frameon=False)  # fmt: skip
fig.tight_layout()
save_figure(fig, figures_dir, "fig8_convnets")
plt.show()

# %% [markdown]
# ## Where the pruning falls: per-layer weights remaining
#
# For each parametric layer, the percentage of its kernel weights that remain: after the last
# round of iterative OBD and of iterative magnitude pruning, and after one-shot OBD and magnitude
# over all layers at the largest level within a 1-point accuracy loss (`-sparsity.csv`), next to
# Han et al.'s Tables 2 and 3. Bars: mean over seeds; whiskers: lowest to highest seed.

# %%
layers = cs.layer_sparsity(tables["sparsity"]) if not tables["sparsity"].empty else None
if layers is not None:
    wide = layers.pivot_table(index=["arch", "name"], columns="source", values="remaining_mean",
                              sort=False)  # fmt: skip
    display(wide.mul(100).round(1).rename_axis(columns="% of weights remaining"))

# %% [markdown]
# ## Figure 9: per-layer weights remaining

# %%
if layers is not None:
    sources = [s for s in cs.SPARSITY_SOURCES if s in set(layers.source)]
    fig, axes = plt.subplots(1, len(archs), figsize=(6.5 * len(archs), 4.5), squeeze=False)
    width = 0.8 / len(sources)

    def source_label(src: str) -> str:
        """The bars' label with the seeds behind them, per network where they differ."""
        lab = cs.SPARSITY_SOURCES[src][0]
        if src == "han2015":
            return lab
        seeds = layers[layers.source == src].groupby("arch").seeds.max()
        counts = {cs.arch_label(a): int(seeds[a]) for a in archs if a in seeds.index}
        if len(set(counts.values())) == 1:
            k = next(iter(counts.values()))
            return f"{lab}, {k} seed{'s' if k > 1 else ''}"
        return f"{lab}, seeds: " + ", ".join(f"{a} {k}" for a, k in counts.items())

    for ax, arch in zip(axes[0], archs, strict=True):
        la = layers[layers.arch == arch]
        names = [n for n in cs.LAYERS.get(arch, ()) if n in set(la.name)] or list(
            dict.fromkeys(la.name)
        )
        for i, src in enumerate(sources):
            g = la[la.source == src].set_index("name").reindex(names)
            x = np.arange(len(names)) + (i - (len(sources) - 1) / 2) * width
            colour = cs.SPARSITY_SOURCES[src][1]
            n = int(g.seeds.max()) if g.seeds.notna().any() else 0
            oneshot = src.startswith("oneshot")
            ax.bar(x, 100 * g.remaining_mean, width, color=colour, alpha=0.45 if oneshot else 1,
                   yerr=100 * np.clip([g.remaining_mean - g.remaining_min,
                                       g.remaining_max - g.remaining_mean], 0, None)
                   if n > 1 else None,
                   capsize=2, error_kw={"lw": 0.8},
                   label=source_label(src),
                   hatch={"han2015": "//", "oneshot_obd": "..", "oneshot_magnitude": ".."}.get(src),
                   edgecolor="white" if src == "han2015" else colour)  # fmt: skip
        sizes = la[la.source != "han2015"].groupby("name")["size"].max()
        ax.set_xticks(np.arange(len(names)),
                      [f"{n}\n{int(sizes[n]):,} weights" for n in names])  # fmt: skip
        ax.set_yscale("log")
        positive = la.remaining_mean[la.remaining_mean > 0]
        ax.set_ylim(min(0.5, 50 * positive.min()) if len(positive) else 0.5, 130)
        ax.set_yticks([1, 2, 5, 10, 20, 50, 100], ["1", "2", "5", "10", "20", "50", "100"])
        ax.set_ylabel("kernel weights remaining (%)")
        ax.set_xlabel("layer")
        ax.set_title(cs.arch_label(arch))
        ax.grid(alpha=0.3, axis="y", which="both")
    h, lab = axes[0, 0].get_legend_handles_labels()
    fig.legend(h, lab, loc="upper center", ncol=2, fontsize=9, bbox_to_anchor=(0.5, 0.0),
               frameon=False)  # fmt: skip
    fig.tight_layout()
    save_figure(fig, figures_dir, "fig9_convnet_sparsity")
    plt.show()

# %%
if layers is not None:
    lines = []
    for arch in archs:
        la = layers[layers.arch == arch].set_index(["source", "name"]).remaining_mean
        if "obd" not in la.index.get_level_values(0):
            continue
        obd = la["obd"]
        most, least = obd.idxmax(), obd.idxmin()
        text = (
            f"* **{cs.arch_label(arch)}.** Iterative OBD keeps most of {most} "
            f"({100 * obd[most]:.1f}% of its weights remain) and least of {least} "
            f"({100 * obd[least]:.1f}%)"
        )
        if "han2015" in la.index.get_level_values(0):
            pub = la["han2015"]
            same = "the same layer" if pub.idxmax() == most else "a different layer"
            text += (
                f"; Han et al. kept most of {pub.idxmax()} ({100 * pub.max():.0f}%) and least of "
                f"{pub.idxmin()} ({100 * pub.min():.0f}%): {same} is spared most"
            )
        lines.append(text + ".")
    display(Markdown("\n".join(lines)))

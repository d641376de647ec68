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
# # Convnets across seeds: LeNet-300-100 and LeNet-5 against Han et al. (2015) and later work
#
# Reads every run of `convnet.ipynb` (`results_dir/convnets/{arch}-seed{s}-*.csv`: one-shot
# sweeps, iterative pruning with retraining, per-layer sparsity, training history) and compares the
# methods across training seeds with the numbers Han, Pool, Tran & Dally (2015) published for the
# same two networks: 12x fewer parameters at no loss of accuracy (LeNet-300-100: 1.64% -> 1.59% test
# error; LeNet-5: 0.80% -> 0.77%), by magnitude pruning iterated with retraining. Later work pruned
# the same networks much further, and is the anchor beyond Han et al.: Dynamic Network Surgery
# (Guo et al. 2016; 56x and 108x), Sparse Variational Dropout (Molchanov et al. 2017; 68x and 280x)
# and Soft Weight Sharing (Ullrich et al. 2017; 23x and 200x). Every one of these ratios counts
# weights over non-zero weights, as ours do (the sources, and Soft Weight Sharing's own storage
# ratios with quantisation, which are not comparable, are in `obd/study/published_anchors.csv`).
#
# The yardstick is theirs: the largest fraction of the kernel weights pruned while the test error
# stays within 0.1 point of the dense model's (`tol`; 10 of the 10,000 test images), and the
# error at 12x (91.7% pruned). Biases are never pruned here; Han et al. count them in their
# totals, which changes the fractions by less than 0.2%.

# %%
from pathlib import Path

import matplotlib.pyplot as plt
import matplotlib.ticker as mticker
import numpy as np
import pandas as pd
from IPython.display import Markdown, display
from matplotlib.legend_handler import HandlerTuple

from obd.checks import check_number
from obd.pipeline.io import write_text
from obd.pipeline.params import check_no_unknown
from obd.study import convnet_metrics as cm
from obd.study import convnet_styles as styles
from obd.study import convnet_tables as ct
from obd.study import frontier as fr
from obd.study import published as pub_data
from obd.study.plots import save_figure

_before = set(globals())

# %% tags=["parameters"]
results_dir = "../results"  # read: convnets/*.csv, written by convnet.ipynb (make reproduce)
figures_dir = "../scratch/figures"  # make reproduce writes figures/; by hand: scratch/
out_dir = "../scratch"  # where convnet_summary.csv and .md go (make reproduce: results/)
tol = 0.001  # test error tolerated above the dense error: 0.001 is 0.1 point

# %%
check_no_unknown(globals(), _before, ["results_dir", "figures_dir", "out_dir", "tol"])
check_number("tol", tol, lo=0, hi=1, hi_open=True)
tables = {kind: cm.read_kind(results_dir, kind) for kind in cm.COLUMNS}
if tables["oneshot"].empty and tables["iterative"].empty:
    raise ValueError(
        f"no convnet results in {Path(results_dir, 'convnets')}: run convnet.ipynb first"
    )
Path(figures_dir).mkdir(parents=True, exist_ok=True)
curves = cm.curves(tables["oneshot"], tables["iterative"])
archs = [a for a in cm.ARCHS if a in set(curves.arch)] + sorted(set(curves.arch) - set(cm.ARCHS))
han = pub_data.load_han2015()
han_total = han[han.layer == "total"].set_index("network")
published = pub_data.load_published()
frontier = fr.read(results_dir)  # frontier.ipynb's runs (empty if none)
for arch in archs:
    seeds = sorted(curves[curves.arch == arch].seed.unique().tolist())
    print(
        f"{styles.arch_label(arch)}: seeds {seeds}, methods {sorted(curves[curves.arch == arch].method.unique())}"
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
dense = cm.per_seed(curves, tol).groupby(["arch", "seed"]).dense_error.first().unstack("seed")
display((100 * dense).round(2).rename_axis(columns="dense test error (%), seed"))

# %% [markdown]
# ## Summary: weights pruned at no loss of accuracy, and the error at 12x
#
# Per network and method: the dense test error, the largest fraction of kernel weights pruned with
# a test error at most `tol` above the dense model's (per seed, then mean ± standard deviation and
# the worst seed in brackets), the compression that mean implies over kernel weights,
# `1 / (1 - fraction)`, and the test error at 12x (91.7% pruned): interpolated linearly between the
# one-shot levels around it, and for iterative runs read at the first round at or above it (each
# round is a separately retrained model; "read at" says which). The published rows close each
# network: the fraction each paper pruned, its ratio and what that ratio counts ("measure"), and
# under "read at" its own result. Below the table, for each published result: the fraction of
# kernel weights it implies, `1 - 1/ratio`, against our best, within `tol` of our own dense
# error and at a test error no worse than the paper's. Written to `out_dir/convnet_summary.csv`
# and `.md` (the table and those lines).

# %%
summary = ct.summary(curves, tol)
reach = ct.reach(curves, tol)
summary_md = ct.summary_markdown(summary, tol) + "\n" + ct.reach_markdown(reach, tol)
write_text(Path(out_dir, "convnet_summary.csv"), summary.to_csv(index=False))
write_text(Path(out_dir, "convnet_summary.md"), summary_md)
display(Markdown(summary_md))

# %%
per_seed = cm.per_seed(curves, tol)
display(per_seed.pivot_table(index=["arch", "method"], columns="seed",
                             values="tolerated_fraction").mul(100).round(1)
        .rename_axis(columns="% pruned within tol, seed"))  # fmt: skip

# %% [markdown]
# ### One-shot OBD against magnitude at a 1-point loss, with its uncertainty
#
# The finding "one-shot OBD tolerates more pruning than magnitude" is read at a 1-point loss, where
# the one-shot grid is coarse (a step of 2-10 points). Each seed's tolerated fraction is therefore
# read where its error curve, linear between the levels run, crosses its dense error + 1 point
# (`obd.study.convnet_metrics.crossing`), the margin OBD - magnitude taken per seed, and its mean
# given with the 95% Student-t interval over seeds (`obd.study.convnet_metrics.margin`, which the
# findings read too). "grid bracket": the range the margin could take from the grid
# alone (OBD's crossing at the low end of its bracket and magnitude's at the high end, and the
# reverse), whatever the curves do between the levels.

# %%
one_point = cm.per_seed(curves[curves.method.isin(["obd_global", "magnitude_global"])], 0.01)
margin_rows = []
for arch in archs:
    mg = cm.margin(one_point, arch, "obd_global", "magnitude_global")
    if mg is None:
        continue
    margin_rows.append({
        "network": styles.arch_label(arch), "seeds": mg.n,
        "OBD (%)": ", ".join(f"{100 * v:.1f}" for v in mg.a.tolerated_interpolated),
        "magnitude (%)": ", ".join(f"{100 * v:.1f}" for v in mg.b.tolerated_interpolated),
        "margin per seed (points)": ", ".join(f"{100 * d:+.1f}" for d in mg.diff),
        "mean ± sd": f"{100 * mg.mean:+.1f} ± {100 * mg.sd:.1f}",
        "95% t-interval": "n/a (one seed)" if mg.n < 2 else f"[{100 * mg.lo:+.1f}, {100 * mg.hi:+.1f}]",
        "grid bracket of the mean": f"[{100 * mg.grid_lo:+.1f}, {100 * mg.grid_hi:+.1f}]",
    })  # fmt: skip
display(pd.DataFrame(margin_rows))


# %% tags=["hide-input"]
def _row(arch: str, method: str) -> pd.Series | None:
    s = summary[(summary.arch == arch) & (summary.method == method)]
    return None if s.empty else s.iloc[0]


lines = []
for arch in archs:
    name, pub = styles.arch_label(arch), han_total.loc[arch] if arch in han_total.index else None
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
        if it.compression_min >= cm.HAN_COMPRESSION:
            verdict = "reaches Han et al.'s {:g}x on every seed"
        elif it.compression >= cm.HAN_COMPRESSION:
            verdict = "reaches Han et al.'s {:g}x on average but not on every seed"
        else:
            verdict = "falls short of Han et al.'s {:g}x"
        text += (
            f"Iterative OBD with retraining prunes {100 * it.tolerated_fraction_mean:.1f}% "
            f"(worst seed {100 * it.tolerated_fraction_min:.1f}%), {it.compression:.1f}x, and so "
            + verdict.format(cm.HAN_COMPRESSION)
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
# ## The pruning frontier: each method with retraining, to its break point
#
# `frontier.ipynb` trains each network on the training images less a validation split and prunes
# it with retraining by each method until two rounds in a row exceed, on validation data, both
# its dense error + 0.1 point and the largest published error of that network. Per method: (a)
# the largest compression whose **test** error is within `tol` of the run's own dense test error
# (geometric mean over seeds with its 95% interval, and the worst seed), the test error there
# with its binomial standard error, and (b) how many seeds reach each published point
# (compression at least the paper's, test error at most the paper's). Appended to
# `convnet_summary.md`.

# %%
if frontier.empty:
    print("no frontier runs in", Path(results_dir, "convnets"), "(frontier.ipynb)")
    frontier_md = ""
else:
    frontier_seeds = fr.per_seed(frontier, published, tol)
    frontier_summary = fr.summary(frontier_seeds, published)
    frontier_md = fr.summary_markdown(frontier_summary, frontier_seeds, published)
    write_text(Path(out_dir, "convnet_summary.md"), summary_md + "\n" + frontier_md)
    write_text(Path(out_dir, "convnet_frontier.csv"), frontier_seeds.to_csv(index=False))
    display(Markdown(frontier_md))

# %% [markdown]
# ## Figure 8: test error against the fraction of kernel weights pruned
#
# One panel per network. Top: every level, the percentage of kernel weights pruned on a linear axis
# and the test error on a log scale. Bottom: from 75% pruned on, against the compression
# `1 / (1 - fraction)` on a log scale (the percentage pruned on the axis above it), where the
# published results lie (12-280x). One-shot methods (no retraining) are lines: the mean over
# training seeds, with a band from the lowest to the highest seed. Iterative runs are markers
# after each round's retraining (mean over seeds, bars from lowest to highest). Published results
# are filled markers, one shape and colour per paper (Han et al.'s star drawn behind our markers),
# with horizontal bars where the printed numbers allow a range of ratios; hollow markers at 0% are
# the papers' own dense references (top row only). The dashed grey line is our dense error plus
# `tol`. The legend gives the seeds behind each method, per network where they differ.

# %% tags=["hide-input"]
fig, axes = plt.subplots(2, len(archs), figsize=(6.5 * len(archs), 10), squeeze=False)
handles: dict[str, object] = {}
pub_handles: dict[str, list] = {}  # published method: [its pruned marker, its dense reference]
seeds_of = curves.groupby(["method", "arch"]).seed.nunique()
LOW = 0.75  # the bottom row starts at 75% pruned (4x)


def method_label(method: str, lab: str) -> str:
    """``lab`` with the seeds behind it, per network (they differ between networks)."""
    n = seeds_of[method]
    counts = {styles.arch_label(a): int(n[a]) for a in archs if a in n.index}
    if len(set(counts.values())) == 1:
        k = next(iter(counts.values()))
        return f"{lab}, {k} seed{'s' if k > 1 else ''}"
    return f"{lab}, seeds: " + ", ".join(f"{a} {k}" for a, k in counts.items())


def xs(fraction, row: int):
    """x of a fraction pruned: percent (top row) or compression 1 / (1 - f) (bottom row)."""
    f = np.asarray(fraction, float)
    return 100 * f if row == 0 else 1.0 / (1.0 - np.minimum(f, 1 - 1e-12))


for col, arch in enumerate(archs):
    c = curves[curves.arch == arch]
    pub = published[published.network == arch]
    dense_mean = float(per_seed[per_seed.arch == arch].dense_error.mean())
    for row, ax in enumerate(axes[:, col]):
        for method, (lab, colour, marker) in styles.METHODS.items():
            g = c[c.method == method]
            if g.empty:
                continue
            b = g.groupby("fraction").agg(x=("pruned_fraction", "mean"), m=("error", "mean"),
                                          lo=("error", "min"), hi=("error", "max"))  # fmt: skip
            if row == 1:
                b = b[(b.x >= LOW - 0.05) & (b.x < 1)]
            x = xs(b.x, row)
            if marker is None:
                (h,) = ax.plot(x, 100 * b.m, "-", color=colour, lw=1.5)
                ax.fill_between(x, 100 * b.lo, 100 * b.hi, color=colour, alpha=0.2, lw=0)
            else:
                yerr = 100 * np.clip([b.m - b.lo, b.hi - b.m], 0, None)
                face = "white" if method == "iterative_magnitude" else colour
                h = ax.errorbar(x, 100 * b.m, yerr=yerr, fmt=marker, color=colour,
                                ms=7 if face == "white" else 5, capsize=2, lw=1,
                                markerfacecolor=face, zorder=3)  # fmt: skip
            handles.setdefault(method_label(method, lab), h)
        ftr = frontier[frontier.arch == arch]
        for method, g in ftr.groupby("method", sort=False):
            if row == 0:
                break  # the frontier paths are drawn against compression, in the bottom row
            lab, colour, marker = fr.METHODS[method]
            for _, gs in g.groupby("seed"):  # each seed faint, to its own break point
                gs = gs[gs["round"] > 0].sort_values("round")
                ax.plot(gs.compression, 100 * gs.test_error, "-", color=colour, lw=0.8, alpha=0.35)
            m = fr.mean_path(g)
            n = g.seed.nunique()
            (h,) = ax.plot(m.compression, 100 * m["mean"], "-", marker=marker, color=colour, lw=2,
                           ms=4)  # fmt: skip
            handles.setdefault(f"{lab} (bold: mean of {n} seed{'s' if n > 1 else ''} while "
                               "all run; faint: each seed)", h)  # fmt: skip
        for r in pub.itertuples():
            colour, marker = styles.published_style(r.method)
            star = marker == "*"
            x = float(xs(r.fraction, row))
            # the star is drawn below our markers (zorder 3): a marker at 12x is not hidden by it
            kw = dict(color=colour, ms=14 if star else 8, zorder=2 if star else 4,
                      markeredgecolor=colour if star else "black", markeredgewidth=0.6)  # fmt: skip
            xerr = None  # bottom row: the range of ratios the printed numbers allow
            if row == 1 and r.compression_high > r.compression_low:
                x = float(r.compression)
                xerr = [[max(0.0, x - r.compression_low)], [max(0.0, r.compression_high - x)]]
            h = ax.errorbar([x], [r.pruned_error_pct], xerr=xerr, fmt=marker, capsize=3, lw=1,
                            alpha=0.7 if star else 1, **kw)  # fmt: skip
            if row == 0:
                pub_handles.setdefault(r.method, [h])
            if row == 0 and not np.isnan(r.dense_error_pct):
                (d,) = ax.plot([0], [r.dense_error_pct], marker, color=colour, ms=kw["ms"],
                               markerfacecolor="none", zorder=2)  # fmt: skip
                if len(pub_handles[r.method]) == 1:
                    pub_handles[r.method].append(d)
        h = ax.axhline(100 * (dense_mean + tol), color="grey", ls="--", lw=1)
        handles.setdefault(f"our dense error + {100 * tol:g} point", h)
        ax.set_ylabel("test error (%)")
        ax.grid(alpha=0.3, which="both")
        if row == 0:
            ax.set_xlabel("kernel weights pruned (%)")
            ax.set_yscale("log")
            ax.set_xlim(-2, 100)
            low = min([100 * dense_mean, *pub.pruned_error_pct])
            ax.set_ylim(0.5 * low, 100)
            ax.set_title(f"{styles.arch_label(arch)}: all levels (error on a log scale)")
        else:
            ax.set_xscale("log")
            ax.set_xlabel(
                "compression, weights / non-zero weights (ours: kernel weights; log scale)"
            )
            right = max(400.0, 1.3 * float(pub.compression_high.max()) if len(pub) else 0.0)
            ax.set_xlim(1 / (1 - LOW) / 1.1, right)
            ticks = [t for t in (5, 10, 20, 50, 100, 200, 500, 1000) if t <= right]
            ax.set_xticks(ticks, [f"{t:g}x" for t in ticks])
            ax.xaxis.set_minor_locator(mticker.NullLocator())
            top = max(3 * dense_mean, dense_mean + 0.02, *(pub.pruned_error_pct / 100 * 1.15))
            if len(ftr):  # the frontier paths, where the published points lie, fill the panel
                top = max(1.15 * float(ftr.test_error.max()), dense_mean + 0.01,
                          *(pub.pruned_error_pct / 100 * 1.15))  # fmt: skip
            ax.set_ylim(0, 100 * top)
            pct = ax.secondary_xaxis(
                "top",
                functions=(
                    lambda c: 100 * (1 - 1 / np.maximum(c, 1e-9)),
                    lambda p: 1 / np.maximum(1 - p / 100, 1e-9),
                ),
            )
            shown = [p for p in (75, 90, 95, 98, 99, 99.5, 99.8) if 1 / (1 - p / 100) <= right]
            pct.xaxis.set_major_locator(mticker.FixedLocator(shown))
            pct.xaxis.set_major_formatter(mticker.FixedFormatter([f"{p:g}" for p in shown]))
            pct.xaxis.set_minor_locator(mticker.NullLocator())
            pct.tick_params(labelsize=8)
            pct.set_xlabel("kernel weights pruned (%)", fontsize=9)
            ax.set_title(f"{styles.arch_label(arch)}: from 75% pruned, against compression", pad=8)
labels, hs = list(handles), list(handles.values())
for method, (pruned, *dense) in pub_handles.items():
    lab = pub_data.published_label(method, published)
    labels.append(lab + (" and, hollow at 0%, its dense model" if dense else ""))
    hs.append((pruned, *dense))
fig.legend(hs, labels, loc="upper center", ncol=2, fontsize=9, bbox_to_anchor=(0.5, 0.0),
           frameon=False, handlelength=3.5,
           handler_map={tuple: HandlerTuple(ndivide=None, pad=0.6)})  # fmt: skip
fig.tight_layout()
save_figure(fig, figures_dir, "fig8_convnets")
plt.show()

# %% [markdown]
# ## Where the pruning falls: per-layer weights remaining
#
# For each parametric layer, the percentage of its kernel weights that remain: after the last
# round of iterative OBD and of iterative magnitude pruning, and after one-shot OBD and magnitude
# over all layers at the largest level within a 1-point accuracy loss (`-sparsity.csv`), for
# iterative OBD's frontier runs at the compression of (a) (`-frontier_layers.csv`), next to Han et
# al.'s Tables 2 and 3. Bars: mean over seeds; whiskers: lowest to highest seed.

# %%
sparsity = tables["sparsity"]
if not frontier.empty:  # iterative OBD's frontier runs, at (a)'s round, per seed
    at_frontier = fr.layers_at_frontier(results_dir, frontier_seeds)
    sparsity = pd.concat([sparsity, at_frontier], ignore_index=True)
layers = ct.layer_sparsity(sparsity) if not sparsity.empty else None
if layers is not None:
    wide = layers.pivot_table(index=["arch", "name"], columns="source", values="remaining_mean",
                              sort=False)  # fmt: skip
    display(wide.mul(100).round(1).rename_axis(columns="% of weights remaining"))

# %% [markdown]
# ## Figure 9: per-layer weights remaining

# %% tags=["hide-input"]
if layers is not None:
    sources = [s for s in styles.SPARSITY_SOURCES if s in set(layers.source)]
    fig, axes = plt.subplots(1, len(archs), figsize=(6.5 * len(archs), 4.5), squeeze=False)
    width = 0.8 / len(sources)

    def source_label(src: str) -> str:
        """The bars' label with the seeds behind them, per network where they differ."""
        lab = styles.SPARSITY_SOURCES[src][0]
        if src == "han2015":
            return lab
        seeds = layers[layers.source == src].groupby("arch").seeds.max()
        counts = {styles.arch_label(a): int(seeds[a]) for a in archs if a in seeds.index}
        if len(set(counts.values())) == 1:
            k = next(iter(counts.values()))
            return f"{lab}, {k} seed{'s' if k > 1 else ''}"
        return f"{lab}, seeds: " + ", ".join(f"{a} {k}" for a, k in counts.items())

    for ax, arch in zip(axes[0], archs, strict=True):
        la = layers[layers.arch == arch]
        names = [n for n in cm.LAYERS.get(arch, ()) if n in set(la.name)] or list(
            dict.fromkeys(la.name)
        )
        for i, src in enumerate(sources):
            g = la[la.source == src].set_index("name").reindex(names)
            x = np.arange(len(names)) + (i - (len(sources) - 1) / 2) * width
            colour = styles.SPARSITY_SOURCES[src][1]
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
        ax.set_title(styles.arch_label(arch))
        ax.grid(alpha=0.3, axis="y", which="both")
    h, lab = axes[0, 0].get_legend_handles_labels()
    fig.legend(h, lab, loc="upper center", ncol=2, fontsize=9, bbox_to_anchor=(0.5, 0.0),
               frameon=False)  # fmt: skip
    fig.tight_layout()
    save_figure(fig, figures_dir, "fig9_convnet_sparsity")
    plt.show()

# %% tags=["hide-input"]
if layers is not None:
    lines = []
    for arch in archs:
        la = layers[layers.arch == arch].set_index(["source", "name"]).remaining_mean
        if "obd" not in la.index.get_level_values(0):
            continue
        obd = la["obd"]
        most, least = obd.idxmax(), obd.idxmin()
        text = (
            f"* **{styles.arch_label(arch)}.** Iterative OBD keeps most of {most} "
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

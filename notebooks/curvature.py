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
# # Which curvature? OBD saliency with cheaper estimates of the Hessian diagonal
#
# OBD scores weight `k` by `0.5 d_k w_k^2`, with `d` the Hessian diagonal of the mean training loss.
# The exact diagonal is cheap for this MLP (`obd.hessian`), but larger models use stand-ins. Here
# each stand-in replaces `d` and is compared with the exact saliency: rank correlation, overlap of
# the pruned sets, test accuracy after one-shot pruning (global, kernels only, no retraining), and
# the wall time to compute it.
#
# | name | `d` | how |
# |---|---|---|
# | `exact` | Hessian diagonal | `obd.hessian.hessian_diag` (exact; for ReLU the Gauss-Newton diagonal) |
# | `hutchinson-k` | Hutchinson, `k` probes | `mean_s v_s * (H v_s)`, Rademacher `v_s` (`obd.curvature.hutchinson_diags`); can be negative |
# | `empirical-fisher` | empirical Fisher | `mean_n g_n^2`, per-example gradients at the true labels |
# | `mc-fisher` | Monte-Carlo Fisher | the same with one label per example sampled from the model's softmax; unbiased for the Fisher = Gauss-Newton = (ReLU) exact diagonal |
# | `adam-nu` | Adam's second moment | fresh `optax.scale_by_adam` (b1 0.9, b2 0.999, eps 1e-8) fed `adam_steps` gradients of the mean loss on batches of 64 drawn as in training, **learning rate 0** (weights fixed at the trained values); `nu` bias-corrected, `nu / (1 - b2^steps)` (jaxpruner's `adam-fisher` idea, which reuses the training optimizer's `nu`) |
# | `blog-rowsum` | the blog's score | `obd.saliencies` `"blog_obd"`: the Hessian row sum `H 1` of the loss summed over one random batch of 64, ranked signed, no `w^2` (the score itself, not `0.5 d w^2`) |
# | `magnitude` | constant | `|w|`, for reference |
#
# All curvature estimates use the same examples as the exact diagonal (the training set, or its first
# `hessian_examples` images), except `blog-rowsum`, which draws its 64 from the whole training set as
# in the study. Times: compilation is kept apart (`obd.curvature.timed`: ahead-of-time compile, then
# one timed run, `jax.block_until_ready`); `blog-rowsum` is timed on a second call. `model` may be a
# list of checkpoints (one per training seed): every estimate is made for each, the accuracy and
# overlap curves are drawn as the median over seeds with the range as a band, and the agreement and
# costs are given per seed and as means.

# %%
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from IPython.display import Markdown, display

from obd import curvature as cv
from obd.checks import check_number
from obd.hessian import hessian_diag
from obd.pipeline.io import atomic_path
from obd.pipeline.params import check_no_unknown
from obd.prune import ranks as prune_ranks
from obd.prune import sweep
from obd.saliencies import saliency
from obd.study.data import load_mnist
from obd.study.model import load_params
from obd.study.plots import save_figure
from obd.study.variants import tolerated_fraction

_before = set(globals())

# %% tags=["parameters"]
model = "../results/models/plain-seed0.npz"  # one checkpoint or a list (one per training seed)
hessian_examples = None  # None: all 60,000 training images; or the first N
fractions = None  # accuracy curves; None: 0 to 100% in 2% steps
overlap_fractions = [0.5, 0.8, 0.9]  # where the pruned sets are compared
hutchinson_probes = [1, 10, 100]
adam_steps = 1000  # ~1 epoch of batches of 64
seed = 0  # PRNG seed of the probes, sampled labels, Adam batches and the blog's batch of 64
figures_dir = "../scratch/figures"  # make reproduce writes figures/ and results/; by hand: scratch/
out = "../scratch/curvature.csv"  # summary; the accuracy curves go to <out stem>-sweeps.csv

# %%
check_no_unknown(
    globals(),
    _before,
    ["model", "hessian_examples", "fractions", "overlap_fractions", "hutchinson_probes",
     "adam_steps", "seed", "figures_dir", "out"],
)  # fmt: skip
levels = np.round(np.linspace(0, 1, 51), 4) if fractions is None else np.asarray(fractions, float)
if levels.ndim != 1 or levels.size == 0 or not np.all((levels >= 0) & (levels <= 1)):
    raise ValueError(f"fractions must be a non-empty list of numbers in [0, 1], got {fractions!r}")
if not overlap_fractions or not all(0 < float(f) <= 1 for f in overlap_fractions):
    raise ValueError(f"overlap_fractions must be numbers in (0, 1], got {overlap_fractions!r}")
if not hutchinson_probes:
    raise ValueError("hutchinson_probes must list at least one probe count")
for k in hutchinson_probes:
    check_number("hutchinson_probes entry", k, lo=1, integer=True)
check_number("adam_steps", adam_steps, lo=1, integer=True)
check_number("seed", seed, lo=0, integer=True)
if hessian_examples is not None:
    check_number("hessian_examples", hessian_examples, lo=64, integer=True)
if not str(out).endswith(".csv"):
    raise ValueError(f"out must be a path ending in .csv, got {out!r}")
sweeps_out = str(out)[: -len(".csv")] + "-sweeps.csv"
models = [model] if isinstance(model, str) else list(model)
if not models or not all(isinstance(m, str) for m in models):
    raise ValueError(f"model must be a checkpoint path or a non-empty list of them, got {model!r}")
Path(figures_dir).mkdir(parents=True, exist_ok=True)
x_train, y_train = load_mnist("train")
x_test, y_test = load_mnist("test")
n = len(x_train) if hessian_examples is None else hessian_examples
x, y = jax.device_put(jnp.asarray(x_train[:n])), jax.device_put(jnp.asarray(y_train[:n]))
key = jax.random.key(seed)
jac_levels = levels[(levels > 0) & (levels < 1)]
print(f"{len(models)} model(s): {', '.join(Path(m).name for m in models)}; curvature on {n} "
      f"training examples, {levels.size} pruning levels")  # fmt: skip


def estimates(params):
    """Every curvature estimate for ``params``, each timed; the saliencies made from them."""
    diags, times = {}, {}
    diags["exact"], times["exact"] = cv.timed(hessian_diag, params, x, y)
    for k in sorted(set(hutchinson_probes)):
        est, times[f"hutchinson-{k}"] = cv.timed(
            cv.hutchinson_diags, params, x, y, jax.random.fold_in(key, 1), counts=(k,)
        )
        diags[f"hutchinson-{k}"] = est[k]  # fmt: skip
    diags["empirical-fisher"], times["empirical-fisher"] = cv.timed(
        cv.empirical_fisher_diag, params, x, y
    )
    diags["mc-fisher"], times["mc-fisher"] = cv.timed(
        cv.mc_fisher_diag, params, x, jax.random.fold_in(key, 2), num_samples=1
    )
    diags["adam-nu"], times["adam-nu"] = cv.timed(
        cv.adam_nu_diag, params, x, y, jax.random.fold_in(key, 3), steps=adam_steps)  # fmt: skip
    for name, d in diags.items():
        cv.finite_or_raise(name, d)
    scores = {name: saliency("obd", params, hdiag=d) for name, d in diags.items()}
    seed_key = jax.random.fold_in(key, 4)
    scores["blog-rowsum"], times["blog-rowsum"] = cv.timed(
        lambda: saliency("blog_obd", params, key=seed_key, x=x_train, y=y_train, scope="global"),
        jit=False,
    )
    scores["magnitude"] = saliency("magnitude", params)
    times["magnitude"] = {"compile_s": 0.0, "run_s": 0.0}  # fmt: skip
    return diags, times, scores


def jaccard_curves(scores):
    """Per saliency: the Jaccard index of the kernels it prunes and those the exact one prunes."""
    ranks = {name: cv.kernel_vector(prune_ranks(sc)) for name, sc in scores.items()}
    curves = {}
    for name in scores:
        out = []
        for f in jac_levels:
            k = int(np.floor(f * ranks[name].size + 0.5))
            a, b = ranks["exact"] < k, ranks[name] < k
            out.append((a & b).sum() / max((a | b).sum(), 1))
        curves[name] = np.asarray(out)
    return curves


# %% [markdown]
# ## The estimates, each timed; agreement with the exact saliency, and accuracy after pruning
#
# `spearman`: rank correlation of the kernels' saliencies with the exact ones. `jaccard_f`: pruned
# sets at fraction `f` (global, kernels only), intersection over union; `shared_f`: the fraction of
# the exact saliency's pruned weights that this one prunes too. `tolerated`: the largest fraction
# pruned with at most 1 point of test-accuracy loss. `negative`: the fraction of kernel curvature
# estimates below zero (pruned first, whatever their weight). One row per saliency and seed.

# %%
summaries, sweep_tables, jaccards = [], [], []
for path in models:
    t_all = time.perf_counter()
    params, meta = load_params(path)
    train_seed = int(meta["seed"])
    diags, times, scores = estimates(params)
    summary = cv.compare_saliencies(scores, "exact", overlap_fractions)
    tables = [sweep(params, s, levels, x_test, y_test).assign(variant=name, seed=train_seed)
              for name, s in scores.items()]  # fmt: skip
    sweeps = pd.concat(tables, ignore_index=True)
    tol = tolerated_fraction(sweeps).set_index("variant")
    summary["tolerated"] = summary.saliency.map(tol.tolerated_fraction)
    summary["acc_at_" + "_".join(f"{f:g}" for f in overlap_fractions)] = [
        " / ".join(f"{a:.3f}" for a in sweeps[(sweeps.variant == name)].set_index("fraction")
                   .accuracy.reindex(np.round(overlap_fractions, 4), method="nearest"))
        for name in summary.saliency
    ]  # fmt: skip
    summary["negative"] = [
        float((cv.kernel_vector(diags[name]) < 0).mean()) if name in diags else np.nan
        for name in summary.saliency
    ]
    summary["compile_s"] = [times[name]["compile_s"] for name in summary.saliency]
    summary["run_s"] = [times[name]["run_s"] for name in summary.saliency]
    summaries.append(summary.assign(model=Path(path).stem, curvature_examples=n, seed=train_seed,
                                    probe_seed=seed))  # fmt: skip
    sweep_tables.append(sweeps)
    jaccards.append(pd.DataFrame(jaccard_curves(scores), index=jac_levels).assign(seed=train_seed))
    print(f"seed {train_seed}: every estimate, comparison and sweep in "
          f"{time.perf_counter() - t_all:.1f} s (compilation included)")  # fmt: skip
summary = pd.concat(summaries, ignore_index=True)
sweeps = pd.concat(sweep_tables, ignore_index=True)
jaccard = pd.concat(jaccards).rename_axis("fraction").reset_index()
n_seeds = summary.seed.nunique()
with atomic_path(out) as tmp:
    summary.to_csv(tmp, index=False)
with atomic_path(sweeps_out) as tmp:
    sweeps.rename(columns={"variant": "saliency"}).to_csv(tmp, index=False)
print("wrote", out, "and", sweeps_out)
with pd.option_context("display.float_format", "{:.3f}".format, "display.width", 200):
    display(summary.drop(columns=["model", "curvature_examples", "probe_seed"]))

# %% [markdown]
# ## Figure 5: test accuracy after pruning with each curvature, overlap with the exact choice, and cost
#
# Lines: the median over seeds; bands: the range over seeds. Below, one point per saliency: the mean
# Spearman correlation and time over seeds, bars spanning the seeds' range.

# %% tags=["hide-input"]
names = list(summary.saliency.drop_duplicates())
STYLE = {"exact": dict(color="black", lw=2.5), "empirical-fisher": dict(color="tab:blue", ls="--"),
         "mc-fisher": dict(color="tab:cyan", ls="-."), "adam-nu": dict(color="tab:green", ls=":", lw=2),
         "blog-rowsum": dict(color="tab:brown"), "magnitude": dict(color="tab:gray", ls="--")}  # fmt: skip
# Hutchinson's estimates: clearly different hues and dashes, not shades of one colour
HUTCHINSON = [("tab:orange", "-"), ("tab:purple", "--"), ("tab:pink", ":"), ("tab:olive", "-."),
              ("tab:red", (0, (5, 1, 1, 1)))]  # fmt: skip
for i, k in enumerate(sorted(set(hutchinson_probes))):
    c, ls = HUTCHINSON[i % len(HUTCHINSON)]
    STYLE[f"hutchinson-{k}"] = dict(color=c, ls=ls, lw=2)


def band(ax, frame, value, name):
    """The median over seeds of ``value`` against ``fraction``, and the seeds' range as a band."""
    g = frame.groupby("fraction")[value]
    med = g.median()
    ax.plot(100 * med.index, med.values, label=name, **STYLE[name])
    if n_seeds > 1:
        ax.fill_between(100 * med.index, g.min(), g.max(), color=STYLE[name]["color"], alpha=0.12,
                        lw=0)  # fmt: skip


# Sized for a ~1000 px wide page: two panels above, the cost panel below, 12-point text
plt.rcParams.update({"font.size": 12, "legend.fontsize": 11})
fig = plt.figure(figsize=(12, 10), layout="constrained")
grid = fig.add_gridspec(2, 2)
axes = [fig.add_subplot(grid[0, 0]), fig.add_subplot(grid[0, 1]), fig.add_subplot(grid[1, :])]
for name in names:
    band(axes[0], sweeps[sweeps.variant == name], "accuracy", name)
    if name != "exact":
        band(axes[1], jaccard, name, name)
axes[0].set(
    xlim=(0, 100),
    ylim=(0, 1),
    xlabel="weights pruned (%)",
    ylabel="test accuracy",
    title="one-shot pruning, no retraining",
)
axes[1].set(xlim=(0, 100), ylim=(0, 1), xlabel="weights pruned (%)",
            ylabel="Jaccard index of pruned sets (with exact)",
            title="overlap with what the exact saliency prunes")  # fmt: skip
for ax in axes[:2]:
    ax.grid(alpha=0.3)
handles, labels = axes[0].get_legend_handles_labels()
fig.legend(handles, labels, loc="outside upper center", ncol=5,
           title=f"median of {n_seeds} seeds, band: their range" if n_seeds > 1 else None)  # fmt: skip
ax = axes[2]
markers = iter("osD^v<>phX*")
agg = summary.groupby("saliency", sort=False).agg(
    spearman=("spearman", "mean"), s_lo=("spearman", "min"), s_hi=("spearman", "max"),
    run_s=("run_s", "mean"), t_lo=("run_s", "min"), t_hi=("run_s", "max"),
)  # fmt: skip
for name, r in agg.iterrows():
    if name in ("magnitude", "exact"):
        continue
    t = max(r.run_s, 1e-4)
    ax.errorbar(t, r.spearman, yerr=[[r.spearman - r.s_lo], [r.s_hi - r.spearman]],
                xerr=[[t - max(r.t_lo, 1e-4)], [max(r.t_hi, 1e-4) - t]], fmt="none",
                ecolor=STYLE[name]["color"], alpha=0.6, zorder=2)  # fmt: skip
    ax.scatter(t, r.spearman, color=STYLE[name]["color"], s=60, zorder=3, marker=next(markers),
               label=f"{name}: {r.spearman:.3f}, {r.run_s:.2f} s")  # fmt: skip
ax.axvline(s_exact := agg.loc["exact", "run_s"], color="black", lw=1, ls="--",
           label=f"exact diagonal: {s_exact:.2f} s")  # fmt: skip
ax.set_xscale("log")
ax.set(xlabel="wall time to compute, compilation excluded (s, log scale)", ylim=(-0.05, 1.05),
       ylabel="Spearman correlation with exact OBD",
       title=f"agreement vs cost ({f'means of {n_seeds} seeds, ' if n_seeds > 1 else ''}{n} "
             f"examples, {jax.devices()[0].platform.upper()})")  # fmt: skip
ax.grid(alpha=0.3, which="both")
ax.legend(loc="center left", bbox_to_anchor=(1.01, 0.5))
save_figure(fig, figures_dir, "fig5_curvature")
plt.show()
plt.rcParams.update({"font.size": 10, "legend.fontsize": "medium"})  # matplotlib's defaults

# %% [markdown]
# ## Conclusion, computed from the numbers above

# %% tags=["hide-input"]
s = summary.groupby("saliency", sort=False).mean(numeric_only=True)  # means over seeds
hi = max(overlap_fractions)
jac = f"jaccard_{hi:g}"
ranked = s.drop(index="exact").sort_values("spearman", ascending=False)
good = [r for r in ranked.index if ranked.loc[r, "spearman"] >= 0.95]
hutch = [f"hutchinson-{k}" for k in sorted(set(hutchinson_probes))]
lines = [
    f"* Exact diagonal: {s.loc['exact', 'run_s']:.2f} s for {n} examples; tolerates "
    f"{100 * s.loc['exact', 'tolerated']:.0f}% pruned within 1 point of accuracy.",
    "* Ranked by agreement (Spearman with exact; Jaccard of the pruned sets at "
    f"{100 * hi:.0f}%; tolerated fraction; time): "
    + "; ".join(f"{r} {ranked.loc[r, 'spearman']:.3f}, {ranked.loc[r, jac]:.3f}, "
                f"{100 * ranked.loc[r, 'tolerated']:.0f}%, {ranked.loc[r, 'run_s']:.2f} s" for r in ranked.index) + ".",
    f"* Saliencies within Spearman 0.95 of the exact one: {', '.join(good) or 'none'}.",
    "* Hutchinson: " + ", ".join(
        f"{k.split('-')[1]} probes: Spearman {s.loc[k, 'spearman']:.3f}, "
        f"{100 * s.loc[k, 'negative']:.0f}% negative entries, {s.loc[k, 'run_s']:.2f} s" for k in hutch)
    + ". Its error per entry is of the order of the off-diagonal row norm over sqrt(probes), large "
      "against the small diagonal entries that decide which weights go first.",
]  # fmt: skip
display(
    Markdown(
        "### Which curvature?\n\n"
        + (f"Means over {n_seeds} seeds.\n\n" if n_seeds > 1 else "")
        + "\n".join(lines)
    )
)

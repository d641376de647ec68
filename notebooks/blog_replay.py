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
# # The blog on its own weights: a faithful replay of its pruning code on its published checkpoints
#
# The 2016 blog published, for each of its five runs, the TensorFlow checkpoint its pruning script
# restored, the accuracy log it wrote (`results.txt`) and its scripts. This notebook loads those
# checkpoints, replays the scripts' procedure exactly (`obd.study.blog2016_replay`: the float32
# `-sum(y * log(softmax(z)))` with TensorFlow 0.10's gradient rules, the Hessian row sum `H·1` per
# TensorFlow variable, a fresh batch of 64 per level, TensorFlow's own `top_k`, the restore step at
# the pruned weights), explains each logged curve with controlled experiments, and shows what the
# blog would have seen with correct saliencies.
#
# The blog's code, logs and checkpoints are MIT-licensed (Copyright (c) 2016 Sarath Shekkizhar); the
# notice is printed below. They come from shekkizh/TensorflowProjects (`Model_Pruning/`) and
# shekkizh/neuralnetworks.thought-experiments (`Model Pruning/logs/MNIST_Pruning_logs/`); set
# `OBD_BLOG2016_DIR` (or `blog_dir`) to the folder holding the `run_*` folders.

# %%
import os

os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "0")  # plain Eigen kernels: same rounding anywhere

from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from IPython.display import display
from scipy.stats import truncnorm

from obd.checks import check_number
from obd.hessian import hessian_diag
from obd.mlp import accuracy
from obd.pipeline.io import atomic_path
from obd.pipeline.params import check_no_unknown
from obd.study import blog2016 as blog
from obd.study import blog2016_analysis as ana
from obd.study import blog2016_replay as rep
from obd.study.plots import save_figure

_before = set(globals())

# %% tags=["parameters"]
blog_dir = None  # None: $OBD_BLOG2016_DIR, else ../shared/data/blog2016 from the repository root
draws = 20  # random batch sequences replayed per batch-dependent (OBD) run
permutation_draws = 10  # replays of the dropout run on the reader's batches, examples reordered
max_percent = 100  # replay the logged levels up to this percent pruned
overflow_batches = None  # None: every batch of 64 of the 55,000 training images; or the first N
hessian_examples = None  # None: all 55,000 training images for the exact Hessian diagonal
obs_calibration_examples = 5000  # training images for layer-wise OBS; 0 skips OBS
corrected_runs = None  # None: correct saliencies on all five models; or a list of run names
fractions = None  # None: 0..1 in 1% steps, for the corrected saliencies
out = "../scratch/blog_replay.csv"  # make reproduce writes results/blog_replay.csv
figures_dir = "../scratch/figures"

# %%
check_no_unknown(
    globals(),
    _before,
    ["blog_dir", "draws", "permutation_draws", "max_percent", "overflow_batches", "hessian_examples",
     "obs_calibration_examples", "corrected_runs", "fractions", "out", "figures_dir"],
)  # fmt: skip
check_number("draws", draws, lo=1, integer=True)
check_number("permutation_draws", permutation_draws, lo=0, integer=True)
check_number("max_percent", max_percent, lo=1, hi=100, integer=True)
if overflow_batches is not None:
    check_number("overflow_batches", overflow_batches, lo=1, integer=True)
if hessian_examples is not None:
    check_number("hessian_examples", hessian_examples, lo=1, integer=True)
check_number("obs_calibration_examples", obs_calibration_examples, lo=0, integer=True)
corrected_runs = list(blog.RUNS) if corrected_runs is None else list(corrected_runs)
for r in corrected_runs:
    if r not in blog.RUNS:
        raise ValueError(f"corrected_runs: unknown run {r!r}; accepted: {', '.join(blog.RUNS)}")
levels_corrected = np.arange(101) / 100 if fractions is None else np.asarray(fractions, float)
if levels_corrected.ndim != 1 or not np.all((levels_corrected >= 0) & (levels_corrected <= 1)):
    raise ValueError(f"fractions must be a list of numbers in [0, 1], got {fractions!r}")
if not str(out).endswith(".csv"):
    raise ValueError(f"out must be a path ending in .csv, got {out!r}")
root = Path(blog_dir) if blog_dir is not None else blog.blog_dir()
if not blog.blog_available(root):
    raise ValueError(
        f"the blog's run folders are not in {root}: get them from the GitHub repository "
        "shekkizh/neuralnetworks.thought-experiments ('Model Pruning/logs/MNIST_Pruning_logs/') "
        f"and set {blog.ENV_VAR} or blog_dir"
    )
results_dir = Path(out).parent
print(blog.LICENSE_NOTICE)

data = blog.tutorial_mnist()  # the tutorial reader's split, in MNIST's original order
train, test = data["train"], data["test"]
runs = list(blog.RUNS)
params = {r: blog.load_run(r, root) for r in runs}
logs = {r: blog.read_log(r, root) for r in runs}
print(f"training images {len(train[0])}, test images {len(test[0])}")

# %% [markdown]
# ## 1. The checkpoints load, and their unpruned test accuracy is the log's first line

# %%
rows = []
for r in runs:
    spec = blog.RUNS[r]
    variables = rep.to_variables(params[r], spec.layout)
    rows.append({
        "run": r, "script": spec.script, "layout": spec.layout,
        "logged": logs[r][0][1],
        "accuracy (JAX, obd.mlp)": float(accuracy(params[r], *test)),
        "accuracy (TF replay graph)": rep.test_accuracy(variables, *test, layout=spec.layout),
    })  # fmt: skip
unpruned = pd.DataFrame(rows)
unpruned["equal to 4 decimals"] = (
    unpruned["accuracy (JAX, obd.mlp)"].round(4) == unpruned.logged
) & (unpruned["accuracy (TF replay graph)"].round(4) == unpruned.logged)
display(unpruned)
assert unpruned["equal to 4 decimals"].all(), "an unpruned accuracy differs from its log"

# %% [markdown]
# ## 2. How the 2016 models were initialised
#
# Weights that see a pixel that is blank in every training image never receive a gradient, so Adam
# never moves them: they still hold their initial values. Their spread measures the initial
# standard deviation (a truncated normal at ±2σ has standard deviation 0.880σ), and a bias of a unit
# that never fired keeps its initial value.

# %%
blank = (train[0] == 0).all(0)
shrink = truncnorm(-2, 2).std()
init = pd.DataFrame([
    {
        "run": r,
        "always-blank pixels": int(blank.sum()),
        "std of their W_1 rows": float(params[r][0]["kernel"][blank].std()),
        "implied init stddev": float(params[r][0]["kernel"][blank].std() / shrink),
        "max |w| there (2σ cut)": float(np.abs(params[r][0]["kernel"][blank]).max()),
        "hidden biases exactly 0.1": int(sum((p["bias"] == np.float32(0.1)).sum()
                                             for p in params[r][:-1])),
    }
    for r in runs
])  # fmt: skip
display(init)

# %% [markdown]
# ## 3. The replay with the reader's own batches
#
# `read_data_sets` of TensorFlow 0.10 kept MNIST's original order and `next_batch` did not shuffle
# before its first epoch, so a run that restored its checkpoint pruned level *i* on training images
# `5000 + 64 i ... 5063 + 64 i` of the original files. TFDS stores MNIST in another order; sorting
# TFDS's own key hashes recovers the original one (`obd.study.blog2016.original_order`, checked against
# MNIST's well-known first labels).

# %%
frames = []
for r in runs:
    log = [(c, a) for c, a in logs[r][1:] if c <= max_percent]
    levels = [c for c, _ in log]
    batches = rep.sequential_batches(*train) if blog.RUNS[r].batch_dependent else None
    records = rep.replay(r, params[r], levels, test, batches)
    frames.append(ana.replay_records_frame(r, log, records, "original order"))
original = pd.concat(frames, ignore_index=True)
original["equal"] = original.replay_accuracy.round(4) == original.logged_accuracy
agreement = original.groupby("run", sort=False).agg(
    levels=("equal", "size"), equal_to_4_decimals=("equal", "sum"),
    nan_saliency_levels=("nan_saliency", "sum"), nan_restore_levels=("nan_restore", "sum"),
)  # fmt: skip
agreement["first level that differs (%)"] = [
    (lambda d: int(d.percent_pruned.iloc[0]) if len(d) else None)(g[~g.equal])
    for _, g in original.groupby("run", sort=False)
]  # fmt: skip
display(agreement)
with atomic_path(results_dir / "blog_replay_original_order.csv") as tmp:
    original.to_csv(tmp, index=False)
with pd.option_context("display.max_rows", 200):
    display(original.drop(columns=["draw"]))

# %% [markdown]
# ## 4. The batch-dependent runs over random batch sequences
#
# Each OBD run is replayed on `draws` random sequences of batches of 64 (a seeded permutation of the
# 55,000 training images per sequence); the magnitude runs use no batch and are replayed once.
# `results/blog_replay.csv` holds, per run and logged level, the replay's median, minimum and
# maximum. Below: where the logged value falls in each level's distribution.

# %%
draw_frames = [
    ana.replay_draws(r, params[r], [(c, a) for c, a in logs[r][1:] if c <= max_percent], test,
                     train, draws=draws)
    for r in runs
]  # fmt: skip
draws_df = pd.concat(draw_frames, ignore_index=True)
summary = ana.replay_summary(draws_df)
with atomic_path(out) as tmp:
    summary.to_csv(tmp, index=False)
with atomic_path(results_dir / "blog_replay_draws.csv") as tmp:
    draws_df.to_csv(tmp, index=False)
print("wrote", out)
where = draws_df.groupby(["run", "percent_pruned"], sort=False).apply(
    lambda g: pd.Series({
        "logged": g.logged_accuracy.iloc[0],
        "median": g.replay_accuracy.median(),
        "min": g.replay_accuracy.min(), "max": g.replay_accuracy.max(),
        "draws <= logged (%)": 100 * (g.replay_accuracy.round(4) <= g.logged_accuracy.iloc[0]).mean(),
        "inside [min, max]": g.replay_accuracy.min() - 5e-5 <= g.logged_accuracy.iloc[0]
                             <= g.replay_accuracy.max() + 5e-5,
        "draws with NaN saliency (%)": 100 * g.nan_saliency.mean(),
    }), include_groups=False,
).reset_index()  # fmt: skip
with pd.option_context("display.max_rows", 200):
    display(where)
print(where.groupby("run", sort=False)["inside [min, max]"].agg(["sum", "size"]))

# %% [markdown]
# ### 4b. The dropout run on the reader's batches, summed in another order
#
# On the reader's batches the dropout run's replay equals the log at its first levels, then drifts
# away. Its `H·1` is finite (no overflow), so which entries are pruned depends on the exact float32
# values, including the signs of entries that cancel to almost zero; TensorFlow 0.10's kernels
# summed in another order than today's. Here each batch keeps its 64 images but their order inside
# the batch is permuted (`permutation_draws` times): the same mathematics, other rounding.

# %%
perm_run = "run_obd_all_layers_dropout"
plog = [(c, a) for c, a in logs[perm_run][1:] if c <= max_percent]
perm_frames = [
    ana.replay_records_frame(
        perm_run, plog,
        rep.replay(perm_run, params[perm_run], [c for c, _ in plog], test,
                   rep.sequential_batches(*train, permute_within=j)),
        j,
    )
    for j in range(permutation_draws)
]  # fmt: skip
perm_df = pd.concat(perm_frames, ignore_index=True) if perm_frames else draws_df.iloc[:0]
with atomic_path(results_dir / "blog_replay_permuted.csv") as tmp:
    perm_df.to_csv(tmp, index=False)
if len(perm_df):
    psum = ana.replay_summary(perm_df)
    psum["inside [min, max]"] = (psum.replay_min - 5e-5 <= psum.logged_accuracy) & (
        psum.logged_accuracy <= psum.replay_max + 5e-5)  # fmt: skip
    psum["draws equal to the log"] = (
        perm_df.assign(eq=perm_df.replay_accuracy.round(4) == perm_df.logged_accuracy)
        .groupby("percent_pruned", sort=False).eq.sum().to_numpy()
    )  # fmt: skip
    print(
        f"logged value inside the band at {psum['inside [min, max]'].sum()} of {len(psum)} levels"
    )
    display(psum)

# %% [markdown]
# ## 5. Why the all-layer OBD curve holds 96.6%: float32 overflow, NaN, and `top_k` in pixel order
#
# The blog's loss takes the log of the softmax. Its second derivative through TensorFlow 0.10's
# `log` gradient computes `square(1/p)`, which overflows float32 once a class probability `p` falls
# below `sqrt(1/FLT_MAX) ≈ 5.4e-20`; multiplied by that class's zero label it gives `0 * inf = NaN`,
# which the backward matrix products spread to every entry of `H·1`. TensorFlow's `top_k` of an
# all-NaN vector returns indices `0..k-1`: in the flat variable, the first rows of `W_1`, which
# multiply the top-left pixels in raster order — mostly blank.

# %%
overflow = pd.DataFrame([
    {"run": r, "layout": blog.RUNS[r].layout,
     **ana.overflow_table(params[r], train, layout=blog.RUNS[r].layout, batches=overflow_batches)}
    for r in runs
])  # fmt: skip
display(overflow)
with atomic_path(results_dir / "blog_overflow.csv") as tmp:
    overflow.to_csv(tmp, index=False)

# %%
run_all = "run_obd_all_layers_prune"
early = [(c, a) for c, a in logs[run_all][1:] if c <= min(30, max_percent)]
prefix = ana.prefix_zeroing(params[run_all], [c for c, _ in early], test)
prefix_df = pd.DataFrame({
    "percent_pruned": [c for c, _ in early], "logged": [a for _, a in early],
    "zero the first k of the flat vector": prefix,
}).merge(ana.first_rows_blank(params[run_all], train[0], [c for c, _ in early]))  # fmt: skip
prefix_df["equal"] = prefix_df["zero the first k of the flat vector"].round(4) == prefix_df.logged
print(f"zeroing the first k% of the flat vector, no saliency: {prefix_df.equal.sum()} of "
      f"{len(prefix_df)} logged levels from 1% to 30% equal to 4 decimals")  # fmt: skip
display(prefix_df)

# %% [markdown]
# ## 6. Controls: the same graph in float64, with a stable cross-entropy, with today's gradient
#
# The all-layer run replayed on the reader's batches with one change each: float64 instead of
# float32; `log_softmax` instead of `log(softmax)` (the study's formulation); the naive loss with
# today's TensorFlow gradient of `log` (its fused `ReciprocalGrad` computes `-g·y·y` left to right
# and does not overflow for a zero `g`).

# %%
ctrl_levels = [c for c, _ in logs[run_all][1:] if c <= max_percent]
controls = {"blog (float32, naive, TF 0.10 gradients)": {}}
controls.update({
    "float64": {"dtype": "float64"},
    "stable log-softmax": {"loss": "stable"},
    "naive, today's TF gradient": {"loss": "naive_tf2"},
})  # fmt: skip
ctrl = {"percent_pruned": ctrl_levels,
        "logged": [a for c, a in logs[run_all][1:] if c <= max_percent]}  # fmt: skip
for name, kw in controls.items():
    recs = rep.replay(run_all, params[run_all], ctrl_levels, test,
                      rep.sequential_batches(*train), **kw)  # fmt: skip
    ctrl[name] = [r.accuracy for r in recs]
controls_df = pd.DataFrame(ctrl)
with atomic_path(results_dir / "blog_controls.csv") as tmp:
    controls_df.to_csv(tmp, index=False)
display(controls_df)


# %% [markdown]
# ## 7. The dropout run
#
# Trained with learning rate 1e-5 (the script's default) instead of 1e-4, the dropout model's logits
# are smaller, so no class probability gets near the overflow threshold: its `H·1` is finite and
# its curve is the real Hessian-row-sum ranking, which collapses at once. The blog's dropout
# comparison thus sets a real (if meaningless) ranking against pixel order. Its 91.13% unpruned
# accuracy is the learning rate's: this study's own training (`train.ipynb`, Adam 1e-4, 50,000 steps
# of 64) reaches about 97% with and without dropout (README, results).

# %%
def logit_stats(p):
    h = train[0].astype(np.float64)
    for i, layer in enumerate(p):
        h = h @ layer["kernel"].astype(np.float64) + layer["bias"].astype(np.float64)
        if i < len(p) - 1:
            h = np.maximum(h, 0)
    gap = h.max(1) - h.min(1)
    return {"median logit range": float(np.median(gap)), "99th pct logit range": float(np.percentile(gap, 99)),
            "max logit range": float(gap.max())}  # fmt: skip


dropout_df = pd.DataFrame([
    {"run": r, "dropout": blog.RUNS[r].dropout, "learning rate": blog.RUNS[r].learning_rate,
     **logit_stats(params[r]),
     "images with p < 5.4e-20 (%)": 100 * overflow.set_index("run").loc[r, "images_below"],
     "batches with NaN H·1 (%)": 100 * overflow.set_index("run").loc[r, "batches_any_nan"]}
    for r in runs
])  # fmt: skip
display(dropout_df)
print("the overflow threshold is a logit range of about", round(-np.log(ana.OVERFLOW_P), 1))

# %% [markdown]
# ## 8. What the blog would have seen with correct saliencies
#
# On each of the blog's own models: `|w|` and exact OBD (`0.5·h_kk·w_k²`, the exact Hessian diagonal of
# the mean cross-entropy over the training images), over all layers and layer by layer, and the
# study's layer-wise OBS; kernels only, biases kept. "Tolerated" is the largest fraction pruned with
# test accuracy within 1 point of the unpruned model.

# %%
xh, yh = (
    train
    if hessian_examples is None
    else (train[0][:hessian_examples], train[1][:hessian_examples])
)
calib = train[0][:obs_calibration_examples] if obs_calibration_examples else None
corrected = pd.DataFrame(
    columns=["method", "scope", "fraction", "pruned_fraction", "accuracy", "run"]
)
if corrected_runs:
    corrected = pd.concat([
        ana.kernel_only_sweeps(params[r], hessian_diag(params[r], xh, yh), levels_corrected, test,
                               obs_calibration=calib).assign(run=r)
        for r in corrected_runs
    ], ignore_index=True)  # fmt: skip
    tol = (
        corrected.groupby(["run", "method", "scope"], sort=False)
        .apply(lambda g: 100 * ana.tolerated(g, g.sort_values("fraction").accuracy.iloc[0]),
               include_groups=False)
        .rename("tolerated").reset_index()
    )  # fmt: skip
    print("largest % of kernel weights pruned within 1 point of the unpruned accuracy:")
    display(tol.pivot(index="run", columns=["method", "scope"], values="tolerated").round(0))
    with atomic_path(results_dir / "blog_corrected_summary.csv") as tmp:
        tol.to_csv(tmp, index=False)
    at = corrected[np.isclose(corrected.fraction, 0.3) | np.isclose(corrected.fraction, 0.5)]
    display(at.pivot_table(index=["run", "fraction"], columns=["method", "scope"],
                           values="accuracy").round(4))  # fmt: skip
with atomic_path(results_dir / "blog_corrected.csv") as tmp:
    corrected.to_csv(tmp, index=False)

# %% [markdown]
# ## The figure: each logged curve with its replay

# %% tags=["hide-input"]
short = {
    "run_magnitude_layerwise_prune": "magnitude (signed), layer-wise",
    "run_magnitude_all_layers_prune": "magnitude (signed), all layers",
    "run_obd_layerwise_prune": "OBD (H·1), layer-wise",
    "run_obd_all_layers_prune": "OBD (H·1), all layers",
    "run_obd_all_layers_dropout": "OBD (H·1), all layers, dropout",
}
fig, axes = plt.subplots(2, 3, figsize=(15, 8.5), sharey=True)
for ax, r in zip(axes.flat, runs, strict=False):
    s = summary[summary.run == r]
    o = original[original.run == r]
    lg = logs[r]
    ax.plot([c for c, _ in lg], [a for _, a in lg], "ko", ms=5, label="blog's log", zorder=5)
    if blog.RUNS[r].batch_dependent:
        ax.fill_between(
            s.percent_pruned,
            s.replay_min,
            s.replay_max,
            color="C0",
            alpha=0.25,
            label=f"replay, {int(s.n_draws.max())} random batch sequences (min-max)",
        )
        ax.plot(s.percent_pruned, s.replay_median, "C0-", lw=1, label="replay, median")
        ax.plot(
            o.percent_pruned,
            o.replay_accuracy,
            "C3--",
            lw=1.5,
            label="replay, the reader's batches (original order)",
        )
    else:
        ax.plot(s.percent_pruned, s.replay_median, "C3--", lw=1.5, label="replay (no batch)")
    if r == perm_run and len(perm_df):
        ps = ana.replay_summary(perm_df)
        ax.fill_between(
            ps.percent_pruned,
            ps.replay_min,
            ps.replay_max,
            color="C3",
            alpha=0.2,
            label=f"replay, the reader's batches reordered inside "
            f"({int(ps.n_draws.max())} orders, min-max)",
        )
    if r == run_all:
        ax.plot(
            prefix_df.percent_pruned,
            prefix_df["zero the first k of the flat vector"],
            "C2:",
            lw=2,
            label="zero the first k% of the flat vector",
        )
        ax.plot(
            controls_df.percent_pruned,
            controls_df["float64"],
            "C1-.",
            lw=1,
            label="replay in float64",
        )
    ax.set_xlim(0, max(c for c, _ in lg) + 1)
    ax.set_ylim(0, 1)
    ax.set_xlabel("parameters pruned (%)")
    ax.set_ylabel("test accuracy (fraction)")
    ax.set_title(short[r])
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, loc="upper right")
ax = axes.flat[5]
colors = {"magnitude": "C7", "obd": "C0", "obs": "C4"}
styles = {"global": "-", "layerwise": "--"}
for model, lw in ((run_all, 2.0), ("run_obd_all_layers_dropout", 1.0)):
    if model not in corrected_runs:
        continue
    for (method, scope), g in corrected[corrected.run == model].groupby(["method", "scope"]):
        ax.plot(
            100 * g.pruned_fraction,
            g.accuracy,
            styles[scope],
            color=colors[method],
            lw=lw,
            label=f"{'|w|' if method == 'magnitude' else method.upper()} {scope}, "
            f"{'dropout model' if 'dropout' in model else 'all-layer model'}",
        )
ax.set_xlim(0, 100)
ax.set_xlabel("kernel weights pruned (%)")
ax.set_ylabel("test accuracy (fraction)")
ax.set_title(
    "correct saliencies on the blog's models"
    + ("" if run_all in corrected_runs else " (not computed in this run)")
)
ax.grid(alpha=0.3)
ax.legend(fontsize=6.5, loc="lower left")
fig.suptitle("The blog's logged curves, replayed from its own checkpoints")
fig.tight_layout()
for path in save_figure(fig, figures_dir, "fig7_blog_replay"):
    print("wrote", path)
plt.show()

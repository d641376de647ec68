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
# # Pruning with retraining: LeCun et al.'s iterative procedure
#
# OBD as LeCun, Denker & Solla (1990) ran it was not one-shot: compute the saliencies, delete
# some low-saliency weights, **retrain**, recompute the saliencies, and repeat. For each trained
# model this notebook compares, on the kernel weights of all layers together (scope `global`,
# biases kept):
#
# * **one-shot OBD**: the study's sweep, one Hessian diagonal, no retraining;
# * **iterative OBD**: each round recomputes the exact Hessian diagonal over the training images,
#   prunes the lowest `0.5 h w^2` until the round's target fraction is reached (weights pruned
#   earlier stay pruned) and retrains the survivors for `retrain_steps` Adam steps with the mask
#   fixed (pruned weights stay exactly zero);
# * **iterative magnitude**: the same rounds with `|w|` as the saliency;
# * a control, **one-shot OBD, retrained** (`oneshot_retrain`): one OBD step straight to the
#   schedule's last level, then retrained for the whole budget of the iterative runs (rounds x
#   `retrain_steps`), which separates the effect of iterating from that of retraining.
#
# The default schedule halves the remaining weights each round: 50, 75, 87.5, 93.75, 96.9%.

# %%
import time
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from IPython.display import display

from obd import saliencies as sal
from obd.checks import check_number
from obd.hessian import hessian_diag
from obd.pipeline.io import atomic_path
from obd.pipeline.params import check_choice, check_no_unknown
from obd.prune import layer_sparsity, sweep
from obd.retrain import check_schedule, halving_schedule, iterative_prune
from obd.study.data import load_mnist
from obd.study.model import load_params
from obd.study.plots import save_figure
from obd.study.variants import COLORS, MODELS, default_fractions

_before = set(globals())

# %% tags=["parameters"]
model = "../results/models/plain-seed0.npz"  # one checkpoint or a list (one per seed)
schedule = None  # None: 50, 75, 87.5, 93.75, 96.9% (halving); or increasing fractions in (0, 1]
retrain_steps = 8000  # Adam steps of retraining after each pruning round
oneshot_retrain = True  # also run the control: one-shot OBD to the last level, then retrained
learning_rate = 1e-4  # the blog's training learning rate
hessian_examples = None  # None: all 60,000 training images; or the first N
out = "../scratch/retrain/retrain-plain.csv"  # make reproduce writes results/ and figures/
figures_dir = "../scratch/figures"

# %%
check_no_unknown(
    globals(),
    _before,
    ["model", "schedule", "retrain_steps", "oneshot_retrain", "learning_rate", "hessian_examples",
     "out", "figures_dir"],
)  # fmt: skip
models = [model] if isinstance(model, str) else list(model)
if not models:
    raise ValueError("model must name at least one checkpoint")
levels = halving_schedule(5) if schedule is None else check_schedule(schedule)
check_number("retrain_steps", retrain_steps, lo=0, integer=True)
check_choice("oneshot_retrain", oneshot_retrain, [True, False])
check_number("learning_rate", learning_rate, lo=1e-12)
if hessian_examples is not None:
    check_number("hessian_examples", hessian_examples, lo=1, integer=True)
if not str(out).endswith(".csv"):
    raise ValueError(f"out must be a path ending in .csv, got {out!r}")
Path(figures_dir).mkdir(parents=True, exist_ok=True)
x_train, y_train = load_mnist("train")
x_test, y_test = load_mnist("test")
x_curv, y_curv = (x_train, y_train) if hessian_examples is None else (
    x_train[:hessian_examples], y_train[:hessian_examples])  # fmt: skip
print(f"{len(models)} model(s); schedule {np.round(100 * levels, 2).tolist()} % pruned; "
      f"{retrain_steps} retraining steps per round")  # fmt: skip

# %%
tables, timings, final_params = [], [], {}
sweep_levels = np.union1d(default_fractions(), levels)
for path in models:
    params, meta = load_params(path)
    seed = int(meta["seed"])
    model_name = {v: k for k, v in MODELS.items()}.get(meta["config"]["dropout_rate"], "other")
    dropout_rate = float(meta["config"]["dropout_rate"])
    t0 = time.perf_counter()
    scores = sal.saliency("obd", params, hdiag=hessian_diag(params, x_curv, y_curv))
    oneshot = sweep(params, scores, sweep_levels, x_test, y_test, scope="global")
    oneshot = oneshot.assign(method="oneshot_obd", round=np.nan, retrain_steps=0,
                             accuracy_pruned=oneshot.accuracy)  # fmt: skip
    timings.append((seed, "oneshot_obd", time.perf_counter() - t0))
    tables.append(oneshot.assign(seed=seed, model=model_name))
    runs = {"iterative_obd": ("obd", levels, retrain_steps),
            "iterative_magnitude": ("magnitude", levels, retrain_steps)}  # fmt: skip
    if oneshot_retrain:
        runs["oneshot_obd_retrained"] = ("obd", levels[-1:], retrain_steps * len(levels))
    for method, (kind, schedule_, steps) in runs.items():
        t0 = time.perf_counter()
        table, final = iterative_prune(
            params, x_train, y_train, x_test, y_test, saliency=kind, schedule=schedule_,
            retrain_steps=steps, learning_rate=learning_rate, hessian_examples=hessian_examples,
            seed=seed, dropout_rate=dropout_rate, return_params=True,
        )  # fmt: skip
        final_params.setdefault(method, final)
        timings.append((seed, method, time.perf_counter() - t0))
        tables.append(table.assign(method=method, seed=seed, model=model_name))
        last = table.iloc[-1]
        print(f"seed {seed}, {method}: {last.pruned_fraction:.2%} pruned -> accuracy "
              f"{last.accuracy:.4f} ({last.accuracy_pruned:.4f} before the last retraining)")  # fmt: skip
columns = ["method", "model", "seed", "round", "fraction", "pruned_fraction", "n_pruned",
           "accuracy_pruned", "accuracy", "loss", "retrain_steps"]  # fmt: skip
results = pd.concat(tables, ignore_index=True)[columns]
with atomic_path(out) as tmp:
    results.to_csv(tmp, index=False)
print("wrote", out)
display(pd.DataFrame(timings, columns=["seed", "method", "seconds"]).round(1))

# %% [markdown]
# ## Test accuracy at the schedule's levels (mean over seeds)
#
# `accuracy_pruned` is right after the round's pruning, `accuracy` after its retraining;
# `retrain_steps` is the steps of retraining after that round.

# %%
at_levels = results[np.isclose(results.fraction.to_numpy()[:, None], levels).any(1)]
summary = at_levels.pivot_table(index="fraction", columns="method",
                                values=["accuracy_pruned", "accuracy"], aggfunc="mean")  # fmt: skip
summary = summary.dropna(axis=1, how="all")
summary.index = [f"{100 * f:.2f}%" for f in summary.index]
display(summary.round(4).astype(object).where(summary.notna(), "-"))  # "-": not measured

# %% [markdown]
# ## Figure 6: accuracy against sparsity with and without retraining
#
# Lines are the mean over the seeds run (the legend's n); with several seeds, bands span their minimum to maximum. Hollow markers are the
# iterative runs right after each pruning round, before its retraining.

# %% tags=["hide-input"]
styles = {  # method: label, colour, line, marker, label of the before-retraining points
    "oneshot_obd": ("OBD, one-shot, no retraining", COLORS["obd_global"], "-", None, None),
    "iterative_obd": ("OBD, iterative with retraining", "darkred", "-", "o",
                      "OBD, iterative, before each retraining"),
    "iterative_magnitude": ("magnitude, iterative with retraining", COLORS["magnitude_global"],
                            "-", "s", "magnitude, iterative, before each retraining"),
    "oneshot_obd_retrained": ("OBD, one-shot then retrained (same total steps)", "black", "",
                              "*", None),
}  # fmt: skip
n_seeds = results.seed.nunique()
fig, axes = plt.subplots(1, 2, figsize=(13, 4.5))
for ax, (xmin, ymin) in zip(axes, ((0, 0.0), (45, 0.5)), strict=True):
    for method, (label, color, ls, marker, before_label) in styles.items():
        g = results[results.method == method]
        if method == "oneshot_obd_retrained":
            g = g[g.fraction > 0]
        if g.empty:
            continue
        agg = g.groupby("fraction").agg(mean=("accuracy", "mean"), lo=("accuracy", "min"),
                                        hi=("accuracy", "max"),
                                        before=("accuracy_pruned", "mean")).reset_index()  # fmt: skip
        x = 100 * agg.fraction
        ax.plot(x, agg["mean"], ls, color=color, marker=marker, ms=10 if marker == "*" else 5,
                label=f"{label}, n={n_seeds}")  # fmt: skip
        ax.fill_between(x, agg.lo, agg.hi, color=color, alpha=0.2, linewidth=0)
        if before_label:
            b = agg[agg.fraction > 0]
            ax.plot(100 * b.fraction, b.before, ":", color=color, marker=marker, ms=5,
                    markerfacecolor="none", label=before_label)  # fmt: skip
    ax.set(xlabel="weights pruned (%)", ylabel="test accuracy", xlim=(xmin, 100),
           ylim=(ymin, 1.0))  # fmt: skip
    ax.grid(alpha=0.3)
axes[0].set_title("Pruning MNIST MLP kernels with and without retraining")
axes[1].set_title(f"Detail ({retrain_steps} retraining steps per round)")
axes[0].legend(loc="lower left", fontsize=8)
fig.tight_layout()
save_figure(fig, figures_dir, "fig6_retraining")
plt.show()

# %% [markdown]
# ## Where the weights go: kernel sparsity per layer at the last level (first seed)
#
# A layer whose kernel is pruned entirely cuts the network; retraining cannot repair that.

# %%
rows = [layer_sparsity(p).query("tensor == 'kernel'").assign(method=m)
        for m, p in final_params.items()]  # fmt: skip
display(pd.concat(rows).pivot_table(index="layer", columns="method", values="fraction_pruned")
        .round(4))  # fmt: skip

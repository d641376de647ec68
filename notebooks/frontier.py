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
# # The pruning frontier: each method with retraining, until it breaks
#
# How far does pruning with retraining go, and does it reach the field's best published points?
# On LeNet-300-100 those are Dynamic Network Surgery (Guo et al. 2016: 56x at 1.99% test error)
# and Sparse Variational Dropout (Molchanov et al. 2017: 68x at 1.92%); on LeNet-5 108x at 0.91%
# and 280x at 0.75% (`obd/study/published_anchors.csv`). This notebook runs one network (`arch`)
# from one seed:
#
# 1. **train** it by the study's recipe on the training images less the last `val_examples`,
#    which are the **validation set**;
# 2. prune it along `compressions` (kernel weights over kernel weights left; a level of `c` leaves
#    `floor(n / c)` of the `n` kernel weights, so that it is at least `c`), retraining after every
#    round, by each of `methods`:
#    * `iterative-obd`: OBD `0.5 h w^2`, the exact Hessian diagonal recomputed every round
#      (`obd.retrain.iterative_prune`), then masked retraining;
#    * `iterative-magnitude`: the same with `|w|`;
#    * `iterative-obs`: global Optimal Brain Surgeon on the exact Hessian block of every unit's
#      incoming weights (the same images, recomputed every round on the weights left), each unit's
#      remaining weights taking the OBS update before the retraining
#      (`obd.obs.global_obs.global_obs_step`); dense layers only (LeNet-300-100);
#    * `gradual-magnitude`: Zhu & Gupta's (2017) gradual pruning, the field's standard baseline:
#      within each round the sparsity rises along their cubic schedule from the last level to the
#      next over the round's first half, the mask updated every `update_every` steps while the
#      network trains, then trains at the level (`obd.gradual.gradual_path`);
#    * `gradual-obd`: the same schedule with OBD scores (the Hessian diagonal at every update);
# 3. stop each run at its **break point**: after two rounds in a row whose validation error exceeds
#    both the dense validation error + 0.1 point and the largest published error of that network,
#    when no published point can still be matched. The test set decides nothing; it is read after
#    every round, with its binomial standard error.
#
# The retraining protocol of each method family (`iterative`, `gradual`: epochs a round, learning
# rate, weight decay) was chosen on the validation set of seed 0 (`bench/frontier.py`, README "The
# pruning frontier"); iterative OBS takes the iterative family's. `convnet_compare.ipynb` reads
# every seed.

# %%
import time
from pathlib import Path

import jax
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from IPython.display import display

from obd.checks import check_number
from obd.gradual import gradual_path
from obd.pipeline.io import atomic_path
from obd.pipeline.params import check_no_unknown
from obd.prune import layer_sparsity
from obd.retrain import iterative_prune
from obd.study import convnets
from obd.study import frontier as fr
from obd.study.data import load_mnist
from obd.study.published import load_published

_before = set(globals())

# %% tags=["parameters"]
arch = "lenet_300_100"  # lenet_300_100 | lenet5
seed = 0  # training seed
val_examples = 5000  # the last training images: the validation set that decides the break
train_steps = 9380  # dense training: Adam steps of batch 64, cosine-decayed learning rate
learning_rate = 1e-3  # peak of the dense training's learning rate
methods = ["iterative-obd", "iterative-magnitude", "gradual-obd", "gradual-magnitude",
           "iterative-obs"]  # fmt: skip
compressions = [2, 4, 8, 12, 16, 20, 25, 33, 40, 50, 56, 63, 68, 80, 100, 125, 150, 200, 250,
                300, 400, 500]  # fmt: skip
iterative_epochs = 6.0  # retraining after each round (an epoch: the training images once)
iterative_learning_rate = 1e-3  # peak of each round's cosine-decayed learning rate
iterative_weight_decay = 0.1  # AdamW's decoupled weight decay (0: Adam)
gradual_epochs = 6.0  # each round: the cubic ramp over its first half, then training at the level
gradual_learning_rate = 1e-3
gradual_weight_decay = 0.1
update_every = 100  # gradual: training steps between mask updates
hessian_examples = 10000  # training images of the Hessian diagonal (every round or update)
patience = 2  # rounds in a row above the break threshold that end a run
out_dir = "../scratch/convnets"  # make reproduce writes results/convnets/

# %%
check_no_unknown(
    globals(),
    _before,
    ["arch", "seed", "val_examples", "train_steps", "learning_rate", "methods", "compressions",
     "iterative_epochs", "iterative_learning_rate", "iterative_weight_decay", "gradual_epochs",
     "gradual_learning_rate", "gradual_weight_decay", "update_every", "hessian_examples",
     "patience", "out_dir"],
)  # fmt: skip
convnets.check_arch(arch)
check_number("seed", seed, lo=0, integer=True)
check_number("val_examples", val_examples, lo=1, hi=59_999, integer=True)
check_number("train_steps", train_steps, lo=1, integer=True)
check_number("learning_rate", learning_rate, lo=1e-12)
if not isinstance(methods, list) or not methods or set(methods) - set(fr.METHODS):
    raise ValueError(f"methods must be a non-empty list of {list(fr.METHODS)}, got {methods!r}")
if "conv" in convnets.layer_kinds(arch) and set(methods) & set(fr.DENSE_ONLY):
    raise ValueError(f"{', '.join(fr.DENSE_ONLY)} needs dense layers only (global OBS on each "
                     f"unit's Hessian block): arch lenet_300_100, not {arch!r}; leave it out of "
                     "methods")  # fmt: skip
c = np.asarray(compressions, float)
if c.ndim != 1 or c.size == 0 or np.any(c <= 1) or np.any(np.diff(c) <= 0):
    raise ValueError(f"compressions must be an increasing list of ratios > 1, got {compressions!r}")
protocols = {}
for family in ("iterative", "gradual"):
    p = {k: globals()[f"{family}_{k}"] for k in ("epochs", "learning_rate", "weight_decay")}
    check_number(f"{family}_epochs", p["epochs"], lo=0, lo_open=True)
    check_number(f"{family}_learning_rate", p["learning_rate"], lo=0, lo_open=True)
    check_number(f"{family}_weight_decay", p["weight_decay"], lo=0)
    protocols[family] = p
check_number("update_every", update_every, lo=1, integer=True)
protocols["gradual"]["update_every"] = update_every
check_number("hessian_examples", hessian_examples, lo=1, integer=True)
check_number("patience", patience, lo=1, integer=True)
out_dir = Path(out_dir)
out_dir.mkdir(parents=True, exist_ok=True)
stem = f"{arch}-seed{seed}"
title = convnets.TITLES[arch]
names = convnets.LAYER_NAMES[arch]

x, y = load_mnist("train")
x_test, y_test = load_mnist("test")
x, x_test = convnets.inputs(arch, x), convnets.inputs(arch, x_test)
x_train, y_train = x[:-val_examples], y[:-val_examples]
x_val, y_val = x[-val_examples:], y[-val_examples:]
anchors = load_published()
anchors = anchors[(anchors.network == arch) & (anchors.method != "han2015")]
steps_per_epoch = len(x_train) / 64
timings = {}
print(f"{title}, seed {seed}: trained on {len(x_train):,} images, validated on {len(x_val):,}, "
      f"tested on {len(x_test):,}; schedule {compressions[0]}x to {compressions[-1]}x")  # fmt: skip


def errors(model, xs, ys) -> float:
    return 1.0 - convnets.evaluate(model, xs, ys)[0]


# %% [markdown]
# ## The dense network and the break threshold

# %%
t0 = time.perf_counter()
model, history = convnets.train_net(
    arch, x_train, y_train, x_val, y_val, seed=seed, steps=train_steps,
    learning_rate=learning_rate, chunk_steps=max(1, train_steps // 4), progress=False,
)  # fmt: skip
timings["train"] = time.perf_counter() - t0
dense_val, dense_test = errors(model, x_val, y_val), errors(model, x_test, y_test)
# each level leaves floor(n / c) of the n kernel weights, so its compression is at least c
sizes = layer_sparsity(model)
n_kernel = int(sizes[sizes.tensor == "kernel"]["size"].sum())
schedule = (n_kernel - np.floor(n_kernel / c)) / n_kernel
break_error = fr.break_threshold(dense_val, anchors.pruned_error_pct / 100)
print(f"dense: validation error {100 * dense_val:.2f}%, test error {100 * dense_test:.2f}% "
      f"± {100 * fr.binomial_se(dense_test, len(x_test)):.2f} (binomial standard error); "
      f"a run breaks after {patience} rounds in a row above {100 * break_error:.2f}% on validation")  # fmt: skip

# %% [markdown]
# ## Each method to its break point

# %%
runs, layer_rows = [], []
for method in methods:
    family, saliency = method.split("-")
    p = protocols[family]
    steps = max(1, round(p["epochs"] * steps_per_epoch))

    def record(r, params, keep, method=method):
        t = layer_sparsity(keep)
        t = t[t.tensor == "kernel"]
        layer_rows.append(t.assign(method=method, round=r, name=[names[i] for i in t.layer]))

    t0 = time.perf_counter()
    common = dict(x_val=x_val, y_val=y_val, break_error=break_error, patience=patience,
                  seed=seed, on_round=record)  # fmt: skip
    if family == "iterative":
        table = iterative_prune(
            model, x_train, y_train, x_test, y_test, saliency=saliency, schedule=schedule,
            retrain_steps=steps, learning_rate=p["learning_rate"], weight_decay=p["weight_decay"],
            hessian_examples=hessian_examples, lr_schedule="cosine", **common,
        )  # fmt: skip
    else:
        table, _ = gradual_path(
            model, x_train, y_train, x_test, y_test, saliency=saliency, schedule=schedule,
            steps=steps, learning_rate=p["learning_rate"], weight_decay=p["weight_decay"],
            update_every=p["update_every"], hessian_examples=hessian_examples, **common,
        )  # fmt: skip
    timings[method] = time.perf_counter() - t0
    val_err = 1.0 - table.val_accuracy
    over = (val_err > break_error).astype(int)
    broke = bool(len(table) > patience and over.iloc[-patience:].all())  # the break rule fired
    runs.append(pd.DataFrame({
        "arch": arch, "seed": seed, "method": method, "round": table["round"],
        "fraction": table.fraction, "pruned_fraction": table.pruned_fraction,
        "compression": 1.0 / (1.0 - table.pruned_fraction), "val_error": val_err,
        "test_error": 1.0 - table.accuracy,
        "test_se": fr.binomial_se(1.0 - table.accuracy, len(x_test)),
        "dense_val_error": dense_val, "dense_test_error": dense_test, "break_error": break_error,
        "broke": broke, "retrain_steps": table.retrain_steps, "seconds": table.seconds,
    }))  # fmt: skip
    last = table.iloc[-1]
    print(f"{method}: {len(table) - 1} rounds in {timings[method]:.0f} s, "
          f"{'broke' if broke else 'schedule ended'} at {1 / (1 - last.pruned_fraction):.0f}x")  # fmt: skip
frontier = pd.concat(runs, ignore_index=True)[fr.COLUMNS]
path = out_dir / f"{stem}-frontier.csv"
with atomic_path(path) as tmp:
    frontier.to_csv(tmp, index=False)
print("wrote", path)
layers = pd.concat(layer_rows, ignore_index=True).assign(arch=arch, seed=seed)[
    ["arch", "seed", "method", "round", "layer", "name", "size", "n_pruned", "fraction_pruned"]]  # fmt: skip
path = out_dir / f"{stem}-frontier_layers.csv"
with atomic_path(path) as tmp:
    layers.to_csv(tmp, index=False)
print("wrote", path)

# %% [markdown]
# ## Readings: (a) within 0.1 point of the dense test error, (b) the published points

# %%
seeds = fr.per_seed(frontier, anchors)
show = seeds.assign(
    within=[f"{v:.0f}x" for v in seeds.within],
    error=[f"{100 * e:.2f}% ± {100 * s:.2f}" for e, s in zip(seeds.error_at_within, seeds.se_at_within, strict=True)],
    held=[f"{v:.0f}x" for v in seeds.held], last=[f"{v:.0f}x" for v in seeds.last],
)[["method", "within", "error", "held", "last", "broke"] + [c for c in seeds if c.startswith("reach_")]]  # fmt: skip
display(show)

# %% tags=["hide-input"]
fig, ax = plt.subplots(figsize=(7, 4))
for method, g in frontier.groupby("method", sort=False):
    label, color, marker = fr.METHODS[method]
    ax.plot(g.compression, 100 * g.test_error, marker=marker, color=color, label=label, ms=4)
for a in anchors.itertuples():
    ax.plot(a.compression, a.pruned_error_pct, "D", color="black", ms=5)
    ax.annotate(a.label.split(", ")[-1], (a.compression, a.pruned_error_pct), fontsize=7,
                xytext=(4, 4), textcoords="offset points")  # fmt: skip
ax.axhline(100 * (dense_test + 0.001), ls="--", color="grey", lw=1, label="dense + 0.1 point")
ax.set(xscale="log", xlabel="compression (kernel weights / kernel weights left)",
       ylabel="test error (%)", title=f"{title}, seed {seed}: each method to its break point")  # fmt: skip
ax.grid(alpha=0.3, which="both")
ax.legend(fontsize=7, loc="upper left")
plt.show()

# %%
print("seconds:", {k: round(v, 1) for k, v in timings.items()})
print("devices:", jax.devices())

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
# # Layer-wise Optimal Brain Surgeon sweep
#
# For each trained model and each dense layer: the Hessian of the layer's reconstruction error,
# `H = 2 X^T X / n`, over the layer's inputs `X` on a calibration set of training images (through
# the **unpruned** network), damped by `damping * mean(diag H)`. Every output unit is pruned
# greedily, one weight at a time, by OBS: remove the weight of least saliency
# `w_q^2 / (2 [H^-1]_qq)` and update the unit's other weights to compensate, then downdate
# `H^-1` (OBC's exact row-wise greedy, `obd.obs`). Each layer is pruned to the same fraction
# (scope `layerwise`, kernels only, biases kept); within a layer the removals go to the units
# where they cost least (`allocation = "layer"`) or evenly (`"unit"`). One greedy pass per layer
# gives every sparsity level. Accuracy is measured **without retraining**. The sweep CSV has the
# format of `prune.ipynb` (variant `obs-layerwise-plain` or `obs-layerwise-dropout`).

# %%
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from IPython.display import display

from obd import obs
from obd import saliencies as sal
from obd.checks import check_number
from obd.hessian import hessian_diag
from obd.mlp import accuracy
from obd.pipeline.io import atomic_path
from obd.pipeline.params import check_choice, check_no_unknown
from obd.prune import apply_masks, masks, sweep
from obd.study.data import load_mnist
from obd.study.model import load_params
from obd.study.variants import MODELS, RESULT_COLUMNS, default_fractions

_before = set(globals())

# %% tags=["parameters"]
model = "../results/models/plain-seed0.npz"  # one checkpoint or a list (one per seed)
calibration_examples = 10000  # the first N training images give the layers' inputs X
damping = 0.01  # added to diag(H): damping * mean(diag H)
allocation = "layer"  # layer | unit: how a layer's removals are shared among its units
fractions = None  # None: 0..1 in 1% steps; or a list of fractions
out = "../scratch/sweeps/obs-layerwise-plain.csv"  # make reproduce writes results/sweeps/

# %%
check_no_unknown(
    globals(),
    _before,
    ["model", "calibration_examples", "damping", "allocation", "fractions", "out"],
)
check_number("calibration_examples", calibration_examples, lo=1, hi=60000, integer=True)
check_number("damping", damping, lo=0)
check_choice("allocation", allocation, obs.ALLOCATIONS)
models = [model] if isinstance(model, str) else list(model)
if not models:
    raise ValueError("model must name at least one checkpoint")
levels = default_fractions() if fractions is None else np.asarray(fractions, dtype=float)
if levels.ndim != 1 or levels.size == 0 or not np.all((levels >= 0) & (levels <= 1)):
    raise ValueError(f"fractions must be a non-empty list of numbers in [0, 1], got {fractions!r}")
if not str(out).endswith(".csv"):
    raise ValueError(f"out must be a path ending in .csv, got {out!r}")
variant = Path(out).stem
x_train, y_train = load_mnist("train")
x_test, y_test = load_mnist("test")
x_calib = x_train[:calibration_examples]
print(f"variant {variant}: {len(models)} model(s), {levels.size} pruning levels, "
      f"{len(x_calib)} calibration images, damping {damping}")  # fmt: skip

# %%
tables, first = [], None
for path in models:
    params, meta = load_params(path)
    seed = int(meta["seed"])
    model_name = {v: k for k, v in MODELS.items()}.get(meta["config"]["dropout_rate"], "other")
    traces = obs.obs_traces(params, x_calib, damping=damping)
    table = obs.obs_sweep(params, x_calib, levels, x_test, y_test, traces=traces,
                          allocation=allocation)  # fmt: skip
    table = table.assign(
        variant=variant, saliency="obs", scope="layerwise", model=model_name,
        include_biases=False, seed=seed,
    )  # fmt: skip
    tables.append(table)
    if first is None:
        first = (seed, params, traces)
    print(f"seed {seed}: unpruned accuracy {table.accuracy.iloc[0]:.4f}")
results = pd.concat(tables, ignore_index=True)[RESULT_COLUMNS]
with atomic_path(out) as tmp:
    results.to_csv(tmp, index=False)
print("wrote", out)

# %% [markdown]
# ## Accuracy against the fraction pruned, one line per training seed

# %% tags=["hide-input"]
fig, ax = plt.subplots(figsize=(7, 4))
for seed, g in results.groupby("seed"):
    ax.plot(100 * g.fraction, g.accuracy, label=f"seed {seed}")
ax.set(xlabel="weights pruned (%)", ylabel="test accuracy", ylim=(0, 1), xlim=(0, 100),
       title=f"{variant}: layer-wise OBS, no retraining")  # fmt: skip
ax.grid(alpha=0.3)
ax.legend()
plt.show()

# %% [markdown]
# ## OBS against OBD and magnitude, layer-wise, on the first seed
#
# The same per-layer counts, kernels only. OBD uses the exact Hessian diagonal of the loss over
# all training images; "OBS mask, no update" keeps OBS's choice of weights but not its
# compensating update, which separates the two halves of OBS.

# %%
seed0, params0, traces0 = first
hdiag0 = hessian_diag(params0, x_train, y_train)
curves = {"OBS (with update)": results[results.seed == seed0].reset_index(drop=True)}
for name, kind in (("OBD", "obd"), ("magnitude", "magnitude")):
    scores = sal.saliency(kind, params0, hdiag=hdiag0)
    curves[name] = sweep(params0, scores, levels, x_test, y_test, scope="layerwise")
mask_only = []
for f in levels:
    pruned = obs.obs_prune(params0, x_calib, float(f), traces=traces0, allocation=allocation)
    keep = [{"kernel": np.asarray(p["kernel"]) != 0, "bias": np.ones(p["bias"].shape, bool)}
            for p in pruned]  # fmt: skip
    mask_only.append(float(accuracy(apply_masks(params0, keep), x_test, y_test)))
curves["OBS mask, no update"] = pd.DataFrame({"fraction": levels, "accuracy": mask_only})
fig, ax = plt.subplots(figsize=(7, 4))
for name, g in curves.items():
    ax.plot(100 * g.fraction, g.accuracy, label=name)
ax.set(xlabel="weights pruned (%)", ylabel="test accuracy", ylim=(0, 1), xlim=(0, 100),
       title=f"Layer-wise pruning of seed {seed0}, no retraining")  # fmt: skip
ax.grid(alpha=0.3)
ax.legend()
plt.show()
at = [f for f in (0.5, 0.8, 0.9, 0.95) if np.isclose(levels, f).any()]
display(pd.DataFrame({name: [g.accuracy[np.isclose(g.fraction, f)].iloc[0] for f in at]
                      for name, g in curves.items()}, index=[f"{f:.0%}" for f in at]))  # fmt: skip

# %% [markdown]
# ## Relative reconstruction error per layer, first seed
#
# `||X W - X W'||^2 / ||X W||^2` on the calibration inputs, for OBS and for magnitude pruning of
# the same number of weights in each layer.

# %%
xs = obs.layer_inputs(params0, x_calib)
mag = masks(sal.saliency("magnitude", params0), at, scope="layerwise")
rows = []
for i, f in enumerate(at):
    pruned = obs.obs_prune(params0, x_calib, f, traces=traces0, allocation=allocation)
    for layer, (p, q, h) in enumerate(zip(params0, pruned, xs, strict=True)):
        ref = np.asarray(h @ p["kernel"], np.float64)
        w_mag = np.where(np.asarray(mag[layer]["kernel"][i]), p["kernel"], 0)
        for name, w in (("OBS", q["kernel"]), ("magnitude", w_mag)):
            err = ((ref - np.asarray(h @ w, np.float64)) ** 2).sum() / (ref**2).sum()
            rows.append({"level": f"{f:.0%}", "layer": layer, "method": name, "error": err})
display(pd.DataFrame(rows).pivot_table(index=["level", "layer"], columns="method",
                                       values="error").round(4))  # fmt: skip

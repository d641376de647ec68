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
# # Global Optimal Brain Surgeon with exact per-unit Hessian blocks
#
# For a dense layer, unit `o`'s incoming weights `W[:, o]` enter only `z[:, o]`, and the layer's
# input `h` does not depend on them, so the exact Hessian block of the mean training loss for those
# weights is `H_o = mean_n D[n, o] h_n h_n^T` with `D[n, o] = d2 l_n / dz[n, o]^2`, the per-example
# pre-activation curvature the exact Hessian diagonal already uses (for ReLU it equals the
# Gauss-Newton term). `obd.obs.unit_blocks` computes every block over the Hessian examples (default:
# all 60,000 training images), in chunks. Each block is damped by `damping * mean(diag H_o)` (blank
# pixels and dead units make blocks singular) and pruned greedily by exact OBS: remove the weight of
# least `w_q^2 / (2 [H_o^-1]_qq)`, update the unit's other weights by `-w_q H_o^-1[:, q] / [H_o^-1]_qq`,
# downdate the inverse. The saliencies estimate increases of the *network loss*, so the removals are
# allocated **globally**: the next removal is the cheapest anywhere (increments made monotone along
# each unit's order by a running maximum, so every level is a state the greedy pass visited). One
# greedy pass serves every level. The same ranking is also evaluated **without the weight update**
# (mask only), which separates what the cross terms buy in the ranking from what the update buys.
# Kernels only, biases kept, no retraining. Two sweep CSVs in the format of `prune.ipynb`: variants
# `obs-global-<model>` (with update) and `obs_mask-global-<model>` (mask only).
#
# With `out_ms`, a third: **multi-stage** global OBS (`obd.obs.stages`, variant
# `obs_ms-global-<model>`). The sparsity rises in `stages` steps, geometrically in the remaining
# density, to the largest level below 100%; after each stage the blocks are recomputed at the
# pruned, OBS-updated weights (pruned weights held at zero) and the greedy pass runs again from
# there; with `resolve`, each unit's remaining weights first take a Newton step on its recomputed
# exact block. Every level is read from the last stage that ended at or below it. The first stage
# is the one-shot pass above, shared.

# %%
import time
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from IPython.display import display

from obd import obs
from obd.checks import check_number
from obd.pipeline.io import atomic_path
from obd.pipeline.params import check_no_unknown
from obd.prune import layer_sparsity
from obd.study.data import load_mnist
from obd.study.model import load_params
from obd.study.variants import COLORS, MODELS, RESULT_COLUMNS, default_fractions

_before = set(globals())

# %% tags=["parameters"]
model = "../results/models/plain-seed0.npz"  # one checkpoint or a list (one per seed)
hessian_examples = None  # None: all 60,000 training images; or the first N
damping = 0.01  # added to each block's diagonal: damping * mean(diag H_o)
fractions = None  # None: 0..1 in 1% steps; or a list of fractions
out = "../scratch/sweeps/obs-global-plain.csv"  # make reproduce writes results/sweeps/
out_mask = "../scratch/sweeps/obs_mask-global-plain.csv"  # the same ranking, no weight update
out_ms = None  # multi-stage sweep (obs_ms-global-*.csv); None: not run
stages = 8  # multi-stage: the number of stages to the largest level below 100%
resolve = True  # multi-stage: Newton re-solve of the remaining weights after each stage

# %%
check_no_unknown(
    globals(),
    _before,
    ["model", "hessian_examples", "damping", "fractions", "out", "out_mask", "out_ms", "stages",
     "resolve"],
)  # fmt: skip
check_number("damping", damping, lo=0)
check_number("stages", stages, lo=2, integer=True)
if not isinstance(resolve, bool):
    raise ValueError(f"resolve must be True or False, got {resolve!r}")
if hessian_examples is not None:
    check_number("hessian_examples", hessian_examples, lo=1, hi=60000, integer=True)
models = [model] if isinstance(model, str) else list(model)
if not models:
    raise ValueError("model must name at least one checkpoint")
levels = default_fractions() if fractions is None else np.asarray(fractions, dtype=float)
if levels.ndim != 1 or levels.size == 0 or not np.all((levels >= 0) & (levels <= 1)):
    raise ValueError(f"fractions must be a non-empty list of numbers in [0, 1], got {fractions!r}")
for name, path in (("out", out), ("out_mask", out_mask), ("out_ms", out_ms)):
    if (name != "out_ms" or path is not None) and not str(path).endswith(".csv"):
        raise ValueError(f"{name} must be a path ending in .csv, got {path!r}")
variants = {True: Path(out).stem, False: Path(out_mask).stem}
if out_ms is not None:
    variants["ms"] = Path(out_ms).stem
x_train, y_train = load_mnist("train")
x_test, y_test = load_mnist("test")
x_curv, y_curv = (x_train, y_train) if hessian_examples is None else (
    x_train[:hessian_examples], y_train[:hessian_examples])  # fmt: skip
print(f"variants {', '.join(variants.values())}: {len(models)} model(s), {levels.size} levels, "
      f"{len(x_curv)} Hessian examples, damping {damping}"
      + (f"; multi-stage: {stages} stages, re-solve {resolve}" if out_ms else ""))  # fmt: skip

# %%
tables, timings, first = {v: [] for v in variants}, [], None
for path in models:
    params, meta = load_params(path)
    seed = int(meta["seed"])
    model_name = {v: k for k, v in MODELS.items()}.get(meta["config"]["dropout_rate"], "other")
    t0 = time.perf_counter()
    blocks = obs.unit_blocks(params, x_curv, y_curv)
    t1 = time.perf_counter()
    traces = obs.global_obs_traces(params, x_curv, y_curv, damping=damping, blocks=blocks)
    t2 = time.perf_counter()
    for update in (True, False):
        table = obs.global_obs_sweep(params, x_curv, y_curv, levels, x_test, y_test,
                                     traces=traces, update=update, stages=1)  # fmt: skip
        tables[update].append(table.assign(
            variant=variants[update], saliency="obs" if update else "obs_mask", scope="global",
            model=model_name, include_biases=False, seed=seed,
        ))  # fmt: skip
    timing = {"seed": seed, "blocks_s": t1 - t0, "greedy_s": t2 - t1}
    if out_ms is not None:
        t3 = time.perf_counter()
        table = obs.global_obs_sweep(params, x_curv, y_curv, levels, x_test, y_test, traces=traces,
                                     damping=damping, stages=stages, resolve=resolve)  # fmt: skip
        tables["ms"].append(table.assign(
            variant=variants["ms"], saliency=variants["ms"].split("-")[0], scope="global",
            model=model_name, include_biases=False, seed=seed,
        ))  # fmt: skip
        ends = table.attrs["stages"]
        n_weights = int(table.n_pruned.max() / table.pruned_fraction.max())
        timing.update({
            "later_stages_s": time.perf_counter() - t3,
            "stage ends (% pruned)": " ".join(f"{100 * e['removed'] / n_weights:.1f}" for e in ends),
            "re-solve steps": " ".join(f"{e['alpha']:g}" for e in ends if e["alpha"] is not None),
        })  # fmt: skip
    timings.append(timing)
    if first is None:
        first = (seed, params, traces)
    print(f"seed {seed}: " + ", ".join(f"{k} {v:.0f}" for k, v in timing.items()
                                       if k.endswith("_s")))  # fmt: skip
results = {}
for update, path in ((True, out), (False, out_mask), ("ms", out_ms)):
    if update not in variants:
        continue
    results[update] = pd.concat(tables[update], ignore_index=True)[RESULT_COLUMNS]
    with atomic_path(path) as tmp:
        results[update].to_csv(tmp, index=False)
    print("wrote", path)
display(pd.DataFrame(timings))

# %% [markdown]
# ## Accuracy against the fraction pruned, one line per training seed
#
# Solid: global OBS with the weight update; dashed: the same removals, mask only; dash-dotted (with
# `out_ms`): multi-stage. Right: 80-99%.

# %% tags=["hide-input"]
fig, axes = plt.subplots(1, 2, figsize=(13, 4.5))
colors = {
    True: COLORS.get("obs_global", "tab:olive"),
    False: COLORS.get("obs_mask_global", "tab:cyan"),
    "ms": COLORS.get("obs_ms_global", "darkgreen"),
}
names = {True: "with update", False: "mask only", "ms": "multi-stage"}
for ax in axes:
    for update, style in ((True, "-"), (False, "--"), ("ms", "-.")):
        if update not in results:
            continue
        for seed, g in results[update].groupby("seed"):
            ax.plot(100 * g.fraction, g.accuracy, style, alpha=0.8, color=colors[update],
                    label=f"{names[update]}, seed {seed}")  # fmt: skip
    ax.set(xlabel="weights pruned (%)", ylabel="test accuracy", ylim=(0, 1))
    ax.grid(alpha=0.3)
axes[0].set(xlim=(0, 100), title=f"{variants[True]}: global OBS, no retraining")
axes[1].set(xlim=(80, 99), title="the same, 80-99% pruned")
axes[1].legend(fontsize=7, ncol=len(results))
plt.show()
at = [f for f in (0.5, 0.8, 0.9, 0.95) if np.isclose(levels, f).any()]
rows = []
for update in results:
    r = results[update]
    for f in at:
        g = r[np.isclose(r.fraction, f)]
        rows.append({"variant": variants[update], "fraction": f"{f:.0%}",
                     **{f"seed {s}": a for s, a in zip(g.seed, g.accuracy, strict=True)}})  # fmt: skip
display(pd.DataFrame(rows).set_index(["variant", "fraction"]).round(4))

# %% [markdown]
# ## Where the global allocation prunes (first seed)
#
# Fraction of each layer's kernel removed by global OBS at a few overall levels: the allocation is
# by estimated loss increase, so layers are pruned to very different fractions.

# %%
seed0, params0, traces0 = first
rows = []
for f in at:
    pruned = obs.global_obs_prune(params0, None, None, f, traces=traces0, stages=1)
    s = layer_sparsity(pruned)
    s = s[s.tensor == "kernel"].set_index("layer").fraction_pruned
    rows.append(pd.Series(s.values, index=[f"layer {i}" for i in s.index], name=f"{f:.0%}"))
display(pd.DataFrame(rows).round(3))

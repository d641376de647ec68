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
# # One-shot pruning sweep for one variant
#
# For each trained model: score every weight with the chosen saliency, prune the lowest-scoring
# fraction (0 to 100% in 1% steps), and measure test accuracy and loss **without retraining**.
#
# * `magnitude`: |w|; `obd`: 0.5 h_kk w_k^2 with the **exact** Hessian diagonal over the whole
#   training set; `random`: a baseline.
# * `blog_magnitude` and `blog_obd` reproduce the blog's code as published: it ranked the signed
#   weight (removing the most negative first) and the Hessian row sum on one batch of 64.

# %%
from pathlib import Path

import jax
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from IPython.display import display

from obd import saliencies as sal
from obd.checks import check_number
from obd.hessian import hessian_diag
from obd.pipeline.io import atomic_path
from obd.pipeline.params import check_choice, check_no_unknown
from obd.prune import layer_sparsity, masks, sweep
from obd.study.data import load_mnist
from obd.study.model import load_params
from obd.study.variants import MODELS, RESULT_COLUMNS, SCOPES, default_fractions

_before = set(globals())

# %% tags=["parameters"]
model = "../results/models/plain-seed0.npz"  # one checkpoint or a list (one per seed)
saliency = "obd"  # magnitude | obd | random | blog_magnitude | blog_obd
scope = "global"
include_biases = False
fractions = None  # None: 0..1 in 1% steps; or a list of fractions
hessian_examples = None  # None: all 60,000 training images; or the first N
out = "../scratch/sweeps/obd-global-plain.csv"  # make reproduce writes results/sweeps/

# %%
check_no_unknown(
    globals(),
    _before,
    ["model", "saliency", "scope", "include_biases", "fractions", "hessian_examples", "out"],
)
check_choice("saliency", saliency, sal.saliency_kinds())
check_choice("scope", scope, SCOPES)
check_choice("include_biases", include_biases, [True, False])
models = [model] if isinstance(model, str) else list(model)
if not models:
    raise ValueError("model must name at least one checkpoint")
levels = default_fractions() if fractions is None else np.asarray(fractions, dtype=float)
if levels.ndim != 1 or levels.size == 0 or not np.all((levels >= 0) & (levels <= 1)):
    raise ValueError(f"fractions must be a non-empty list of numbers in [0, 1], got {fractions!r}")
if hessian_examples is not None:
    check_number("hessian_examples", hessian_examples, lo=1, integer=True)
if not str(out).endswith(".csv"):
    raise ValueError(f"out must be a path ending in .csv, got {out!r}")
variant = Path(out).stem
x_train, y_train = load_mnist("train")
x_test, y_test = load_mnist("test")
x_curv, y_curv = (x_train, y_train) if hessian_examples is None else (
    x_train[:hessian_examples], y_train[:hessian_examples])  # fmt: skip
print(f"variant {variant}: {len(models)} model(s), {levels.size} pruning levels")

# %%
tables, scores_by_seed = [], {}
for path in models:
    params, meta = load_params(path)
    seed = int(meta["seed"])
    model_name = {v: k for k, v in MODELS.items()}.get(meta["config"]["dropout_rate"], "other")
    hdiag = hessian_diag(params, x_curv, y_curv) if saliency == "obd" else None
    scores = sal.saliency(
        saliency, params, hdiag=hdiag, key=jax.random.key(1_000 + seed),
        x=x_train, y=y_train, scope=scope,
    )  # fmt: skip
    table = sweep(
        params, scores, levels, x_test, y_test, scope=scope, include_biases=include_biases
    )
    table = table.assign(
        variant=variant, saliency=saliency, scope=scope, model=model_name,
        include_biases=include_biases, seed=seed,
    )  # fmt: skip
    tables.append(table)
    scores_by_seed[seed] = (params, scores)
    print(f"seed {seed}: unpruned accuracy {table.accuracy.iloc[0]:.4f}")
results = pd.concat(tables, ignore_index=True)[RESULT_COLUMNS]
with atomic_path(out) as tmp:
    results.to_csv(tmp, index=False)
print("wrote", out)

# %% [markdown]
# ## Accuracy against the fraction pruned, one line per training seed

# %%
fig, ax = plt.subplots(figsize=(7, 4))
for seed, g in results.groupby("seed"):
    ax.plot(100 * g.fraction, g.accuracy, label=f"seed {seed}")
ax.set(xlabel="weights pruned (%)", ylabel="test accuracy", ylim=(0, 1), xlim=(0, 100),
       title=f"{variant}: one-shot pruning, no retraining")  # fmt: skip
ax.grid(alpha=0.3)
ax.legend()
plt.show()

# %% [markdown]
# ## Where the pruning falls: per-layer sparsity (first seed) at a few levels

# %%
params0, scores0 = next(iter(scores_by_seed.values()))
rows = []
for f in (0.1, 0.5, 0.9):
    table = layer_sparsity(masks(scores0, f, scope=scope, include_biases=include_biases))
    rows.append(table.assign(level=f"{f:.0%}"))
sparsity = pd.concat(rows, ignore_index=True)
display(sparsity.pivot_table(index=["layer", "tensor"], columns="level", values="fraction_pruned"))

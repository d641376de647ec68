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
# # How good is OBD's prediction of the loss change?
#
# Pruning moves the weights by `dw` (`-w` on the pruned weights, 0 elsewhere). Around the trained
# weights the mean **training** loss changes by
#
# `L(w + dw) - L(w) = g^T dw + 0.5 dw^T H dw + higher orders`.
#
# OBD predicts the change by the sum of the pruned weights' saliencies, `0.5 sum_k h_kk dw_k^2`. That
# rests on three assumptions: the gradient term vanishes (a minimum), the cross terms `h_kl` (k != l)
# do not matter, and the loss is quadratic over the step. For the network trained without and with
# dropout, and for two pruning orders (OBD and magnitude, both over all layers, kernels only), this
# notebook measures at each pruning level:
#
# * (a) **OBD's prediction** `0.5 sum_k h_kk dw_k^2` (exact Hessian diagonal);
# * (b) the **full quadratic form** `0.5 dw^T H dw`, every cross term included, computed exactly
#   (the second directional derivative of the loss along `dw`, i.e. `dw . (H dw)`; `obd.taylor`);
# * (c) the **first-order term** `g^T dw`;
# * (d) the **actual change** `L(w + dw) - L(w)`.
#
# The blog attributed OBD's poor showing on the dropout network to dropout breaking the
# no-cross-terms assumption. The ratio `(b - a) / a` (cross terms over diagonal terms) tests that
# directly. All four quantities are on the same examples (the training set, or its first
# `hessian_examples` images), without dropout. Each model may be a list of checkpoints (one per
# training seed): the figure then draws the median over seeds with the range as a band, and the
# conclusion is drawn from the medians.

# %%
import time
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from IPython.display import Markdown, display

from obd.checks import check_number
from obd.hessian import hessian_diag
from obd.pipeline.io import atomic_path
from obd.pipeline.params import check_no_unknown
from obd.prune import masks
from obd.saliencies import saliency
from obd.study.data import load_mnist
from obd.study.model import load_params
from obd.study.plots import save_figure
from obd.taylor import loss_change_curve

_before = set(globals())

# %% tags=["parameters"]
model_plain = "../results/models/plain-seed0.npz"  # trained without dropout; or a list (seeds)
model_dropout = "../results/models/dropout-seed0.npz"  # with dropout (keep prob 0.8); or a list
fractions = None  # None: 0 to 90% in 5% steps; or a list of fractions in [0, 1]
hessian_examples = None  # None: all 60,000 training images; or the first N
figures_dir = "../scratch/figures"  # make reproduce writes figures/ and results/; by hand: scratch/
out = "../scratch/assumptions.csv"

# %%
check_no_unknown(
    globals(),
    _before,
    ["model_plain", "model_dropout", "fractions", "hessian_examples", "figures_dir", "out"],
)
models = {}
for name, value in (("plain", model_plain), ("dropout", model_dropout)):
    models[name] = [value] if isinstance(value, str) else list(value)
    if not models[name] or not all(isinstance(v, str) for v in models[name]):
        raise ValueError(f"model_{name} must be a checkpoint path or a non-empty list of them, "
                         f"got {value!r}")  # fmt: skip
levels = (
    np.round(np.arange(0, 0.9001, 0.05), 4) if fractions is None else np.asarray(fractions, float)
)
if levels.ndim != 1 or levels.size == 0 or not np.all((levels >= 0) & (levels <= 1)):
    raise ValueError(f"fractions must be a non-empty list of numbers in [0, 1], got {fractions!r}")
if hessian_examples is not None:
    check_number("hessian_examples", hessian_examples, lo=1, integer=True)
if not str(out).endswith(".csv"):
    raise ValueError(f"out must be a path ending in .csv, got {out!r}")
Path(figures_dir).mkdir(parents=True, exist_ok=True)
x_train, y_train = load_mnist("train")
x, y = (x_train, y_train) if hessian_examples is None else (
    x_train[:hessian_examples], y_train[:hessian_examples])  # fmt: skip
SALIENCIES = {"obd": "OBD (exact diagonal)", "magnitude": "magnitude |w|"}
print(f"{len(levels)} pruning levels, loss on {len(x)} training examples")

# %% [markdown]
# ## The four quantities at every pruning level
#
# One pass per model and pruning order evaluates every level together (`obd.taylor.loss_change_curve`).
# Pruning is global over the kernels (biases kept), as in the study's corrected variants.

# %%
tables = []
for model_name, paths in models.items():
    for path in paths:
        t0 = time.perf_counter()
        params, meta = load_params(path)
        hdiag = hessian_diag(params, x, y)
        for kind in SALIENCIES:
            scores = saliency(kind, params, hdiag=hdiag)
            m = masks(scores, levels, scope="global", include_biases=False)
            table = loss_change_curve(params, m, x, y, hdiag=hdiag)
            n_kernels = sum(int(np.size(layer["kernel"])) for layer in params)
            tables.append(table.drop(columns="level").assign(
                model=model_name, saliency=kind, seed=int(meta["seed"]), fraction=levels,
                pruned_fraction=table.n_pruned / n_kernels))  # fmt: skip
        print(f"{model_name}, seed {meta['seed']}: {time.perf_counter() - t0:.1f} s "
              f"(Hessian diagonal and {2 * len(levels)} levels)")  # fmt: skip
COLUMNS = ["model", "saliency", "seed", "fraction", "pruned_fraction", "n_pruned", "loss",
           "first_order", "diagonal", "quadratic", "gauss_newton", "cross", "cross_ratio",
           "second_order", "actual"]  # fmt: skip
results = pd.concat(tables, ignore_index=True)[COLUMNS]
with atomic_path(out) as tmp:
    results.to_csv(tmp, index=False)
print("wrote", out)
seeds = {m: sorted(results[results.model == m].seed.unique().tolist()) for m in models}
print("seeds:", seeds)
# the median over seeds of every quantity, per model, pruning order and level
medians = results.groupby(["model", "saliency", "fraction"], sort=False).median(numeric_only=True)
medians = medians.drop(columns="seed").reset_index()
with pd.option_context("display.float_format", "{:.3g}".format, "display.width", 160):
    display(medians[medians.fraction.isin([0.3, 0.5, 0.7, 0.8, 0.9])].drop(columns="loss"))

# %% [markdown]
# ## Figure 4: predicted and actual loss change, and the size of the cross terms
#
# Left: the four quantities, median over seeds with the range over seeds as a band (symmetric log
# scale: linear within +-1e-5 nats, so zeros show; the first-order term can be negative). Right, one
# point per seed and level, the median as a line: cross terms over diagonal terms,
# `(0.5 dw^T H dw - OBD) / OBD`, drawn only where OBD's prediction exceeds `MIN_DIAGONAL` (below
# that the ratio is a quotient of rounding errors: OBD first prunes weights into dead ReLU units,
# whose loss change is exactly zero).

# %% tags=["hide-input"]
MIN_DIAGONAL = 1e-6  # nats
LINES = [  # column, label, style
    ("actual", "(d) actual L(w+dw) - L(w)", dict(color="black", lw=2)),
    ("diagonal", "(a) OBD: 0.5 sum h_kk dw_k^2", dict(color="tab:red")),
    ("quadratic", "(b) full 0.5 dw^T H dw", dict(color="tab:blue", ls="--")),
    ("first_order", "(c) first order g^T dw", dict(color="tab:green", ls=":")),
]
MODEL_STYLE = {"plain": dict(color="tab:red", label="no dropout"),
               "dropout": dict(color="tab:purple", label="dropout (keep 0.8)")}  # fmt: skip
# Sized for a ~1000 px wide page: 13-point text, one legend for the four quantities
plt.rcParams.update({"font.size": 13, "legend.fontsize": 12})
fig, axes = plt.subplots(2, 3, figsize=(16, 9.5), layout="constrained")
for i, model_name in enumerate(models):
    for j, kind in enumerate(SALIENCIES):
        ax = axes[i, j]
        g = results[(results.model == model_name) & (results.saliency == kind)]
        spread = g.groupby("fraction")
        med = spread.median(numeric_only=True)
        for col, label, style in LINES:
            ax.plot(100 * med.pruned_fraction, med[col], marker=".", label=label, **style)
            if g.seed.nunique() > 1:
                ax.fill_between(100 * med.pruned_fraction, spread[col].min(), spread[col].max(),
                                color=style["color"], alpha=0.15, lw=0)  # fmt: skip
        ax.set_yscale("symlog", linthresh=1e-5)
        ax.set(xlabel="weights pruned (%)", ylabel="change of mean training loss (nats)",
               title=f"{MODEL_STYLE[model_name]['label']}, pruned by {SALIENCIES[kind]}")  # fmt: skip
        ax.grid(alpha=0.3)
for j, kind in enumerate(SALIENCIES):
    ax = axes[j, 2]
    for model_name in models:
        g = results[(results.model == model_name) & (results.saliency == kind)]
        g = g[g.diagonal > MIN_DIAGONAL]
        style = MODEL_STYLE[model_name]
        ax.scatter(100 * g.pruned_fraction, g.cross_ratio, s=14, color=style["color"], alpha=0.5)
        med = g.groupby("fraction").median(numeric_only=True)
        ax.plot(100 * med.pruned_fraction, med.cross_ratio, marker="o", ms=4, **style)
    ax.axhline(0, color="gray", lw=0.8)
    ax.set(xlabel="weights pruned (%)", ylabel="cross terms / diagonal terms",
           title=f"(b - a) / a, pruned by {SALIENCIES[kind]}")  # fmt: skip
    ax.grid(alpha=0.3)
    ax.legend()
handles, labels = axes[0, 0].get_legend_handles_labels()
fig.legend(handles, labels, loc="outside lower center", ncol=4)
n_seeds = max(len(v) for v in seeds.values())
fig.suptitle("Is OBD's quadratic, diagonal prediction of the training-loss change right?"
             + (f" (median of {n_seeds} seeds, band: their range)" if n_seeds > 1 else ""))  # fmt: skip
save_figure(fig, figures_dir, "fig4_obd_assumptions")
plt.show()
plt.rcParams.update({"font.size": 10, "legend.fontsize": "medium"})  # matplotlib's defaults


# %% [markdown]
# ## Conclusion, computed from the numbers above
#
# On the medians over seeds. Matched levels: the pruning levels at which both models' OBD
# predictions exceed `MIN_DIAGONAL`.
# Besides the cross/diagonal ratio, `actual / second order` shows how far the loss is from
# quadratic over the pruning step (1 = the full second-order expansion is exact).


# %% tags=["hide-input"]
def matched(kind):
    """Per level where both are defined: each model's cross/diagonal ratio, actual / OBD and
    actual / (first order + full quadratic)."""
    g = medians[medians.saliency == kind].set_index(["fraction", "model"])
    wide = pd.DataFrame({
        "ratio": g.cross_ratio, "actual_over_obd": g.actual / g.diagonal,
        "actual_over_second_order": g.actual / g.second_order, "diagonal": g.diagonal,
    }).unstack("model")  # fmt: skip
    wide = wide[(wide["diagonal"] > MIN_DIAGONAL).all(axis=1)].drop(columns="diagonal")
    wide.columns = [f"{a}_{b}" for a, b in wide.columns]
    return wide[[f"{a}_{b}" for a in ("ratio", "actual_over_obd", "actual_over_second_order")
                 for b in models]]  # fmt: skip


def pct(fracs):
    return ", ".join(f"{100 * f:.0f}%" for f in fracs) or "none"


lines, summary = [], {}
for kind, label in SALIENCIES.items():
    mt = matched(kind)
    if mt.empty:
        lines.append(
            f"* **{label}**: no level where both models' OBD prediction exceeds {MIN_DIAGONAL:g}."
        )
        continue
    med = mt.median()
    larger = mt.index[mt.ratio_dropout.abs() > mt.ratio_plain.abs()]
    summary[kind] = dict(levels=len(mt), larger=larger)
    lines.append(
        f"* **{label}**, {len(mt)} matched levels ({100 * mt.index.min():.0f}-{100 * mt.index.max():.0f}% "
        f"pruned): cross/diagonal ratio median {med.ratio_plain:+.2f} without dropout, "
        f"{med.ratio_dropout:+.2f} with dropout; |ratio| larger for the dropout model at "
        f"{len(larger)} of {len(mt)} levels ({pct(larger)}). Actual change / OBD prediction: median "
        f"{med.actual_over_obd_plain:.1f}x without dropout, {med.actual_over_obd_dropout:.1f}x with; "
        f"actual / full second-order prediction: {med.actual_over_second_order_plain:.1f}x and "
        f"{med.actual_over_second_order_dropout:.1f}x."
    )  # fmt: skip
    display(Markdown(f"**{label}**, matched levels"))
    display(mt.round(3))

obd_sum = summary.get("obd")
if obd_sum is None:
    verdict = "The OBD-ordered levels give no matched comparison; rerun with more levels."
else:
    share = len(obd_sum["larger"]) / obd_sum["levels"]
    if share >= 0.75:
        verdict = (f"**Supported**: under OBD's own pruning order the dropout network's cross terms "
                   f"are the larger relative to the diagonal at {len(obd_sum['larger'])} of "
                   f"{obd_sum['levels']} matched levels.")  # fmt: skip
    elif share <= 0.25:
        verdict = (f"**Not supported; mostly the opposite**: under OBD's own pruning order the dropout "
                   f"network's cross terms are the *smaller* relative to the diagonal at "
                   f"{obd_sum['levels'] - len(obd_sum['larger'])} of {obd_sum['levels']} matched "
                   f"levels; they are the larger only at {pct(obd_sum['larger'])}.")  # fmt: skip
    else:
        verdict = (f"**Not supported**: under OBD's own pruning order neither network's cross terms "
                   f"are consistently the larger relative to the diagonal (dropout larger at "
                   f"{pct(obd_sum['larger'])}).")  # fmt: skip
last = medians[(medians.saliency == "obd") & (medians.fraction == medians.fraction.max())]
tail = "; ".join(
    f"{r.model}: actual {r.actual:.3g} nats, full second-order prediction {r.second_order:.3g}, OBD {r.diagonal:.3g}"
    for r in last.itertuples()
)  # fmt: skip
display(Markdown(
    "### Does dropout break OBD's no-cross-terms assumption?\n\n"
    + f"Seeds: {', '.join(f'{m} {v}' for m, v in seeds.items())}; medians over seeds.\n\n" + verdict + "\n\n" + "\n".join(lines)
    + f"\n\nAt the largest level ({100 * levels.max():.0f}% pruned, OBD order): {tail}. Wherever the "
    "actual change exceeds even the full second-order prediction (cross terms and gradient included) "
    "by a large factor, the loss is not quadratic over the pruning step: the higher-order terms, "
    "not the cross terms, dominate OBD's error there."
))  # fmt: skip

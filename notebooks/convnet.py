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
# # The blog's next experiment: pruning LeNet-300-100 and LeNet-5
#
# The blog closed with pruning convolutional networks as its next experiment. The pruning
# literature's MNIST table (Han et al. 2015, "Learning both weights and connections for efficient
# neural networks") uses two networks: **LeNet-300-100** (784-300-100-10, 266,610 parameters) and
# the Caffe **LeNet-5** (two 5x5 convolutions with max pooling, then 800-500-10; 431,080). This
# notebook runs one network (`arch`) from one training seed through the study:
#
# 1. **train** it (Adam, cosine-decayed learning rate, batches of 64; a budget that fits a 2-core
#    CPU, stated in the parameters);
# 2. **one-shot pruning**, no retraining, of the kernel weights (biases kept): magnitude `|w|` and
#    exact OBD `0.5 h w^2` (the exact Hessian diagonal of the mean cross-entropy, computed by
#    `obd.hessian` for convolutions too), each ranked over all layers (`global`) and within each
#    layer (`layerwise`), plus layer-wise **OBS** (`obd.obs.conv`: each layer's kernel pruned to
#    reproduce its outputs on calibration images, a convolution as one OBS problem per output
#    channel);
# 3. **iterative pruning with retraining** (LeCun et al.'s procedure): prune to each level of
#    `schedule` by OBD (Hessian recomputed every round) or by magnitude, retrain the survivors with
#    the mask fixed (Adam, the learning rate cosine-decayed from `retrain_learning_rate` to 0 in
#    every round), repeat;
# 4. **where the pruning falls**: the fraction of each layer's kernel pruned.
#
# `convnet_compare.ipynb` gathers every seed of both networks and sets them against Han et al.

# %%
import time
from pathlib import Path

import jax
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from IPython.display import display

from obd import saliencies as sal
from obd.checks import check_number
from obd.hessian import hessian_diag
from obd.obs import obs_sweep_model
from obd.pipeline.io import atomic_path
from obd.pipeline.params import check_choice, check_no_unknown
from obd.prune import layer_sparsity, masks, sweep
from obd.retrain import check_schedule, iterative_prune, round_steps
from obd.study import convnets
from obd.study.data import load_mnist

_before = set(globals())

# %% tags=["parameters"]
arch = "lenet_300_100"  # lenet_300_100 | lenet5
seed = 0  # training seed
train_steps = 9380  # Adam steps of batch 64 (938 steps are one epoch of 60,000 images)
learning_rate = 1e-3  # peak of the cosine-decayed training learning rate
fractions = [0, 0.2, 0.4, 0.5, 0.6, 0.7, 0.8, 0.85, 0.9, 0.92, 0.94, 0.96, 0.98, 0.99]
hessian_examples = None  # None: all 60,000 training images; or the first N
obs = True  # also run layer-wise OBS
obs_calibration_examples = 2000  # training images whose layer inputs define each OBS problem
iterative = True  # also run iterative pruning with retraining (OBD and magnitude)
schedule = [0.5, 0.75, 0.875, 0.9, 0.9167, 0.93, 0.95, 0.96]  # iterative: 2x to 25x, 12x at 0.9167
retrain_steps = [1876, 1876, 2814, 3752, 5628, 5628, 5628, 5628]  # Adam steps after each round
retrain_learning_rate = 1e-3  # peak of each round's cosine-decayed retraining learning rate
iterative_hessian_examples = None  # None: all training images; or the first N (every round)
out_dir = "../scratch/convnets"  # make reproduce writes results/convnets/
model_out = None  # None: <out_dir>/models/<arch>-seed<seed>.npz

# %%
check_no_unknown(
    globals(),
    _before,
    ["arch", "seed", "train_steps", "learning_rate", "fractions", "hessian_examples", "obs",
     "obs_calibration_examples", "iterative", "schedule", "retrain_steps", "retrain_learning_rate",
     "iterative_hessian_examples", "out_dir", "model_out"],
)  # fmt: skip
convnets.check_arch(arch)
check_number("seed", seed, lo=0, integer=True)
check_number("train_steps", train_steps, lo=1, integer=True)
check_number("learning_rate", learning_rate, lo=1e-12)
levels = np.asarray(fractions, dtype=float)
if levels.ndim != 1 or levels.size == 0 or not np.all((levels >= 0) & (levels <= 1)):
    raise ValueError(f"fractions must be a non-empty list of numbers in [0, 1], got {fractions!r}")
levels = np.union1d([0.0], levels)  # the dense model is always a level
for name in ("hessian_examples", "iterative_hessian_examples"):
    if globals()[name] is not None:
        check_number(name, globals()[name], lo=1, integer=True)
check_choice("obs", obs, [True, False])
check_number("obs_calibration_examples", obs_calibration_examples, lo=1, integer=True)
check_choice("iterative", iterative, [True, False])
levels_iter = check_schedule(schedule)
round_steps(retrain_steps, len(levels_iter))  # one count for every round, or one per round
check_number("retrain_learning_rate", retrain_learning_rate, lo=1e-12)
out_dir = Path(out_dir)
stem = f"{arch}-seed{seed}"
model_path = Path(model_out) if model_out is not None else out_dir / "models" / f"{stem}.npz"
if model_path.suffix != ".npz":
    raise ValueError(f"model_out must be a path ending in .npz, got {model_out!r}")
for folder in (out_dir, model_path.parent):
    folder.mkdir(parents=True, exist_ok=True)

x_train, y_train = load_mnist("train")
x_test, y_test = load_mnist("test")
x_train, x_test = convnets.inputs(arch, x_train), convnets.inputs(arch, x_test)
names, kinds = convnets.LAYER_NAMES[arch], convnets.layer_kinds(arch)
title = convnets.TITLES[arch]
timings = {}
print(f"{title}, seed {seed}: {train_steps} training steps "
      f"({train_steps * 64 / len(x_train):.1f} epochs), {levels.size} one-shot levels, "
      f"iterative schedule {np.round(100 * levels_iter, 2).tolist()} %")  # fmt: skip


def write_csv(table: pd.DataFrame, kind: str) -> Path:
    path = out_dir / f"{stem}-{kind}.csv"
    with atomic_path(path) as tmp:
        table.to_csv(tmp, index=False)
    print("wrote", path)
    return path


def kernel_sparsity(model_or_masks, label: str) -> pd.DataFrame:
    table = layer_sparsity(model_or_masks)
    table = table[table.tensor == "kernel"].reset_index(drop=True)
    return table.assign(
        arch=arch, seed=seed, saliency=label, name=[names[i] for i in table.layer],
        kind=[kinds[i] for i in table.layer],
    )[["arch", "seed", "saliency", "layer", "name", "kind", "size", "n_pruned",
       "fraction_pruned"]]  # fmt: skip


# %% [markdown]
# ## Training

# %%
t0 = time.perf_counter()
model, history = convnets.train_net(
    arch, x_train, y_train, x_test, y_test, seed=seed, steps=train_steps,
    learning_rate=learning_rate, chunk_steps=max(1, train_steps // 4), progress=False,
)  # fmt: skip
timings["train"] = time.perf_counter() - t0
convnets.save_net(
    model_path, model,
    {"arch": arch, "seed": seed, "steps": train_steps, "learning_rate": learning_rate,
     "batch_size": 64, "test_accuracy": float(history.test_accuracy.iloc[-1])},
)  # fmt: skip
write_csv(history.assign(arch=arch, seed=seed)[
    ["arch", "seed", "step", "epoch", "train_loss", "test_loss", "test_accuracy"]], "train")  # fmt: skip
dense_acc = float(history.test_accuracy.iloc[-1])
print(f"trained in {timings['train']:.0f} s: test error {100 * (1 - dense_acc):.2f}%")

fig, ax = plt.subplots(figsize=(6, 3.2))
ax.plot(history.epoch, 100 * (1 - history.test_accuracy), marker="o")
ax.set(xlabel="epochs of training", ylabel="test error (%)",
       title=f"{title}, seed {seed}: training")  # fmt: skip
ax.grid(alpha=0.3)
plt.show()

# %% [markdown]
# ## One-shot pruning, no retraining

# %%
t0 = time.perf_counter()
hdiag = hessian_diag(model, *(a[:hessian_examples] for a in (x_train, y_train)))
timings["hessian"] = time.perf_counter() - t0
scores = {
    "magnitude": sal.saliency("magnitude", model),
    "obd": sal.saliency("obd", model, hdiag=hdiag),
}
tables = []
for method, s in scores.items():
    for scope in ("global", "layerwise"):
        t0 = time.perf_counter()
        table = sweep(model, s, levels, x_test, y_test, scope=scope)
        timings[f"{method}-{scope}"] = time.perf_counter() - t0
        tables.append(table.assign(method=method, scope=scope))
if obs:
    t0 = time.perf_counter()
    table = obs_sweep_model(model, x_train[:obs_calibration_examples], levels, x_test, y_test)
    timings["obs-layerwise"] = time.perf_counter() - t0
    tables.append(table.assign(method="obs", scope="layerwise"))
oneshot = pd.concat(tables, ignore_index=True).assign(arch=arch, seed=seed)[
    ["arch", "seed", "method", "scope", "fraction", "pruned_fraction", "n_pruned", "accuracy",
     "loss"]]  # fmt: skip
write_csv(oneshot, "oneshot")
display(
    oneshot.pivot_table(
        index="fraction", columns=["method", "scope"], values="accuracy"
    ).style.format("{:.4f}")
)

# %% tags=["hide-input"]
fig, ax = plt.subplots(figsize=(7, 4))
for (method, scope), g in oneshot.groupby(["method", "scope"]):
    ax.plot(100 * g.fraction, 100 * (1 - g.accuracy), marker=".",
            linestyle="-" if scope == "global" else "--", label=f"{method}, {scope}")  # fmt: skip
ax.set(xlabel="kernel weights pruned (%)", ylabel="test error (%)", yscale="log",
       title=f"{title}, seed {seed}: one-shot pruning, no retraining")  # fmt: skip
ax.grid(alpha=0.3, which="both")
ax.legend(loc="upper left", fontsize=8)
plt.show()

# %% [markdown]
# ## Iterative pruning with retraining

# %%
iter_tables, finals = [], {}
for kind in ("obd", "magnitude") if iterative else ():
    t0 = time.perf_counter()
    table, final = iterative_prune(
        model, x_train, y_train, x_test, y_test, saliency=kind, schedule=levels_iter,
        retrain_steps=retrain_steps, learning_rate=retrain_learning_rate,
        hessian_examples=iterative_hessian_examples, seed=seed, return_params=True,
        lr_schedule="cosine",
    )  # fmt: skip
    timings[f"iterative-{kind}"] = time.perf_counter() - t0
    finals[kind] = final
    iter_tables.append(table)
if iterative:
    rounds = pd.concat(iter_tables, ignore_index=True)
    rounds.insert(0, "seed", seed)
    rounds.insert(0, "arch", arch)
    write_csv(rounds, "iterative")
    show = rounds.assign(
        compression=1 / (1 - rounds.pruned_fraction),
        error_pruned=100 * (1 - rounds.accuracy_pruned), error=100 * (1 - rounds.accuracy),
    )[["saliency", "round", "pruned_fraction", "compression", "error_pruned", "error"]]  # fmt: skip
    display(show.style.format({"pruned_fraction": "{:.2%}", "compression": "{:.1f}x",
                               "error_pruned": "{:.2f}%", "error": "{:.2f}%"}))  # fmt: skip
else:
    print("iterative pruning not run for this seed (iterative=False)")

# %% [markdown]
# ## Where the pruning falls: fraction of each layer's kernel pruned
#
# For the final round of each iterative run (when `iterative`), and for one-shot OBD and magnitude
# (global) at the largest level of `fractions` that costs at most 1 point of test accuracy.

# %%
rows = [kernel_sparsity(final, k) for k, final in finals.items()]
for method in ("obd", "magnitude"):
    g = oneshot[(oneshot.method == method) & (oneshot.scope == "global")]
    ok = g[g.accuracy >= dense_acc - 0.01]
    level = float(ok.fraction.max())
    rows.append(kernel_sparsity(masks(scores[method], level, scope="global"), f"oneshot_{method}"))
sparsity = pd.concat(rows, ignore_index=True)
write_csv(sparsity, "sparsity")
display(sparsity.pivot_table(index=["layer", "name", "kind"], columns="saliency",
                             values="fraction_pruned").style.format("{:.1%}"))  # fmt: skip

# %%
print("seconds:", {k: round(v, 1) for k, v in timings.items()})
print("devices:", jax.devices())

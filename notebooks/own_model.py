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
# # Optimal Brain Damage on your own model
#
# The library's core (`obd`) takes any Flax NNX network built as an `nnx.Sequential` of
# `nnx.Linear`, `nnx.Conv`, `obd.nets.max_pool`/`avg_pool`, `obd.nets.flatten` and elementwise
# JAX activations. This notebook plays the part of a user who brings their own model:
#
# 1. **build** a small convnet and **train** it briefly on MNIST with a few lines of optax;
# 2. compute its **exact Hessian diagonal** (`obd.hessian_diag`);
# 3. score every weight by **magnitude** `|w|` and by **OBD** `0.5 h w^2` (`saliency`);
# 4. turn the scores into **masks** and apply them (`obd.masks`, `obd.apply_masks`);
# 5. **sweep** the fraction pruned in one shot, without retraining (`obd.sweep`);
# 6. prune **iteratively with retraining** (`obd.iterative_prune`).
#
# It writes no files. The defaults take about a minute of CPU time;
# `-p train_steps 100 -p hessian_examples 1000` is a quick check. The API reference lists every
# function used here.

# %%
import time

import jax
import jax.numpy as jnp
import matplotlib.pyplot as plt
import numpy as np
import optax
import pandas as pd
from flax import nnx
from IPython.display import display

import obd
from obd import nets, saliency
from obd.checks import check_number
from obd.pipeline.params import check_no_unknown
from obd.study.data import load_mnist

_before = set(globals())

# %% tags=["parameters"]
train_steps = 1000  # Adam steps of batch 64 (938 steps are one epoch of 60,000 images)
hessian_examples = 2000  # training images over which the Hessian diagonal is averaged
seed = 0  # initialisation, batch order and retraining
retrain_steps = 200  # Adam steps of retraining after each iterative pruning round

# %%
check_no_unknown(globals(), _before, ["train_steps", "hessian_examples", "seed", "retrain_steps"])
check_number("train_steps", train_steps, lo=1, integer=True)
check_number("hessian_examples", hessian_examples, lo=1, hi=60_000, integer=True)
check_number("seed", seed, lo=0, integer=True)
check_number("retrain_steps", retrain_steps, lo=0, integer=True)
t_start = time.perf_counter()

# %% [markdown]
# ## Your model, trained your way
#
# MNIST comes as `[N, 784]` floats in [0, 1]; `nets.as_images` reshapes them to the NHWC images
# `[N, 28, 28, 1]` that a convnet takes.

# %%
x_train, y_train = load_mnist("train")
x_test, y_test = load_mnist("test")
x_train, x_test = nets.as_images(x_train), nets.as_images(x_test)

rngs = nnx.Rngs(seed)
model = nnx.Sequential(
    nnx.Conv(1, 8, (5, 5), strides=(2, 2), padding="SAME", rngs=rngs),  # -> [N, 14, 14, 8]
    jax.nn.relu,
    nets.max_pool(2),  # -> [N, 7, 7, 8]
    nnx.Conv(8, 16, (3, 3), padding="SAME", rngs=rngs),  # -> [N, 7, 7, 16]
    jax.nn.relu,
    nets.flatten,  # -> [N, 784]
    nnx.Linear(7 * 7 * 16, 10, rngs=rngs),  # logits
)
print(f"{nets.n_params(model):,} parameters")

# %% [markdown]
# The training loop is the user's own: Adam on the mean cross-entropy of batches of 64.

# %%
optimizer = nnx.Optimizer(model, optax.adam(1e-3), wrt=nnx.Param)


@nnx.jit
def train_step(model, optimizer, x, y):
    def loss_fn(model):
        return optax.softmax_cross_entropy_with_integer_labels(model(x), y).mean()

    loss, grads = nnx.value_and_grad(loss_fn)(model)
    optimizer.update(model, grads)
    return loss


@nnx.jit
def accuracy(model, x, y):
    return jnp.mean(jnp.argmax(model(x), axis=-1) == y)


t0 = time.perf_counter()
batches = np.random.default_rng(seed).integers(0, len(x_train), size=(train_steps, 64))
for idx in batches:
    loss = train_step(model, optimizer, x_train[idx], y_train[idx])
dense_accuracy = float(accuracy(model, x_test, y_test))
print(f"{train_steps} steps in {time.perf_counter() - t0:.0f} s: last batch loss {float(loss):.3f}, "
      f"test accuracy {dense_accuracy:.4f}")  # fmt: skip

# %% [markdown]
# ## The exact Hessian diagonal
#
# `obd.hessian_diag` returns `d²L/dw²` of the mean cross-entropy over the given examples for
# every parameter, as an `nnx.State` shaped like `nnx.state(model, nnx.Param)`; it is exact for
# convolutions and pooling too, not an estimate.

# %%
t0 = time.perf_counter()
hdiag = obd.hessian_diag(model, x_train[:hessian_examples], y_train[:hessian_examples])
print(f"Hessian diagonal over {hessian_examples} images in {time.perf_counter() - t0:.1f} s")
kernels = {
    path[-2]: np.asarray(v[...]) for path, v in nnx.to_flat_state(hdiag) if path[-1] == "kernel"
}
display(pd.DataFrame([{"Sequential item": i, "kernel shape": h.shape, "mean h": h.mean(), "max h": h.max()}
                      for i, h in kernels.items()]))  # fmt: skip

# %% [markdown]
# ## Saliencies and masks
#
# A saliency scores every weight (low scores are pruned first): `"magnitude"` is `|w|`, `"obd"`
# is `0.5 h w^2`, the loss increase OBD's diagonal quadratic model predicts for deleting the
# weight. `obd.masks` keeps the highest-scored fraction of all kernel weights (biases are kept);
# `obd.apply_masks` returns a pruned copy of the model, and `obd.layer_sparsity` says where the
# pruning fell.

# %%
scores = {
    "magnitude": saliency("magnitude", model),
    "obd": saliency("obd", model, hdiag=hdiag),
}
for kind, s in scores.items():
    pruned = obd.apply_masks(model, obd.masks(s, 0.8, params=model))
    print(f"{kind}: 80% of the kernel weights pruned -> test accuracy "
          f"{float(accuracy(pruned, x_test, y_test)):.4f} (dense {dense_accuracy:.4f})")  # fmt: skip
display(obd.layer_sparsity(obd.masks(scores["obd"], 0.8, params=model)))

# %% [markdown]
# ## One-shot sweep
#
# `obd.sweep` prunes the model to each fraction in one shot (no retraining) and evaluates every
# level on the test set, in one jitted, vectorised computation.

# %%
fractions = [0, 0.3, 0.5, 0.6, 0.7, 0.8, 0.85, 0.9, 0.95]
t0 = time.perf_counter()
sweeps = {kind: obd.sweep(model, s, fractions, x_test, y_test) for kind, s in scores.items()}
print(f"two sweeps of {len(fractions)} levels in {time.perf_counter() - t0:.1f} s")
display(pd.concat(sweeps, names=["saliency"]).reset_index(level=0)
        .pivot_table(index="fraction", columns="saliency", values="accuracy").round(4))  # fmt: skip

# %% [markdown]
# ## Iterative pruning with retraining
#
# `obd.iterative_prune` repeats LeCun et al.'s procedure: recompute the OBD saliencies (exact
# Hessian diagonal over `hessian_examples` training images), prune up to the round's fraction of
# the kernel weights (earlier pruned weights stay pruned), then retrain the survivors for
# `retrain_steps` Adam steps with the mask held at zero.

# %%
t0 = time.perf_counter()
iterative = obd.iterative_prune(
    model, x_train, y_train, x_test, y_test, saliency="obd", schedule=[0.5, 0.75, 0.9],
    retrain_steps=retrain_steps, learning_rate=1e-3, hessian_examples=hessian_examples,
    seed=seed, lr_schedule="cosine",
)  # fmt: skip
print(f"{len(iterative) - 1} rounds in {time.perf_counter() - t0:.0f} s")
display(iterative[["round", "fraction", "pruned_fraction", "accuracy_pruned", "accuracy"]].round(4))

# %% [markdown]
# ## Accuracy against the fraction pruned

# %%
fig, ax = plt.subplots(figsize=(7, 4.2))
for kind, label in (("magnitude", "magnitude |w|, one-shot"), ("obd", "OBD 0.5 h w², one-shot")):
    t = sweeps[kind]
    ax.plot(100 * t.pruned_fraction, 100 * t.accuracy, marker="o", ms=4, label=label)
it = iterative[iterative["round"] > 0]
ax.plot(100 * it.pruned_fraction, 100 * it.accuracy, "k*-", ms=10,
        label=f"OBD, iterative, {retrain_steps} retraining steps per round")  # fmt: skip
ax.set(xlabel="kernel weights pruned (%)", ylabel="test accuracy (%)", ylim=(0, 100),
       title=f"Your convnet on MNIST ({train_steps} training steps, seed {seed})")  # fmt: skip
ax.grid(alpha=0.3)
ax.legend(loc="lower left")
fig.tight_layout()
plt.show()
print(f"notebook body ran in {time.perf_counter() - t_start:.0f} s")

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
# # Train one MLP (the blog's 784-50-50-50-50-10 ReLU network)
#
# Trains with the blog's protocol (Adam, lr 1e-4, batches of 64, 50,000 steps, summed
# cross-entropy) and saves the parameters with their training configuration and final metrics.
# `dropout_rate=0.2` gives the blog's dropout model (keep prob 0.8).

# %%
import os
from pathlib import Path

import matplotlib.pyplot as plt

from obd.checks import check_number
from obd.pipeline.io import atomic_path
from obd.pipeline.params import check_no_unknown
from obd.study.model import save_params
from obd.study.train import TrainConfig, train

_before = set(globals())

# %% tags=["parameters"]
dropout_rate = 0.0
seed = 0
steps = 50_000
batch_size = 64
learning_rate = 1e-4
out = "../scratch/models/plain-seed0.npz"  # make reproduce: results/models/

# %%
check_no_unknown(
    globals(), _before, ["dropout_rate", "seed", "steps", "batch_size", "learning_rate", "out"]
)
check_number("seed", seed, lo=0, integer=True)
if not str(out).endswith(".npz"):
    raise ValueError(f"out must be a path ending in .npz, got {out!r}")
config = TrainConfig(
    seed=seed,
    steps=steps,
    batch_size=batch_size,
    learning_rate=learning_rate,
    dropout_rate=dropout_rate,
)
config

# %%
params, history = train(config, progress=False)  # one summary line, no progress bar
final = history.iloc[-1]
print(f"test accuracy after {config.steps} steps: {final.test_accuracy:.4f}")

# %%
meta = {
    "config": config.to_dict(),
    "seed": seed,
    "test_accuracy": float(final.test_accuracy),
    "test_loss": float(final.test_loss),
    "train_loss": float(final.train_loss),
}
save_params(out, params, meta)
with atomic_path(Path(out).with_suffix(".history.csv")) as tmp:
    history.to_csv(tmp, index=False)
print("saved", os.path.relpath(out))

# %%
fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(10, 3.5))
ax1.plot(history.step, history.train_loss, label="train (mean over chunk, dropout active)")
ax1.plot(history.step, history.test_loss, label="test")
ax1.set(xlabel="training step", ylabel="cross-entropy (nats per example)", yscale="log")
ax1.legend()
ax2.plot(history.step, 100 * history.test_accuracy, color="tab:green")
ax2.set(xlabel="training step", ylabel="test accuracy (%)", ylim=(90, 100))
for ax in (ax1, ax2):
    ax.grid(alpha=0.3)
fig.suptitle(
    f"dropout rate {dropout_rate}, seed {seed}: final test accuracy {final.test_accuracy:.2%}"
)
plt.show()

"""Synthetic convnet-study CSVs (the contract of ``convnet.ipynb``) for tests of their readers."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from obd.study.convnet_metrics import COLUMNS, LAYERS

ONESHOT_LEVELS = (0, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.85, 0.9, 0.92, 0.95, 0.97, 0.99)
#: one-shot method, scope: the fraction pruned up to which the error stays at the dense error
KNEES = {("magnitude", "global"): 0.6, ("magnitude", "layerwise"): 0.5, ("obd", "global"): 0.8,
         ("obd", "layerwise"): 0.7, ("obs", "layerwise"): 0.85}  # fmt: skip
SCHEDULE = (0.5, 0.75, 0.875, 0.9375, 0.96875)
SIZES = {"lenet_300_100": (235200, 30000, 1000), "lenet5": (500, 25000, 400000, 5000)}
KINDS = {"lenet_300_100": ("dense",) * 3, "lenet5": ("conv", "conv", "dense", "dense")}
#: per layer, fraction of weights pruned by the last iterative OBD round
OBD_PRUNED = {"lenet_300_100": (0.975, 0.95, 0.7), "lenet5": (0.3, 0.9, 0.985, 0.8)}


def _acc(error: float) -> float:
    return round(1.0 - error, 4)


def write_run(folder: Path, arch: str, seed: int, dense_error: float = 0.012) -> None:
    """The four CSVs of one (arch, seed) run under ``folder`` (``results/convnets``)."""
    folder.mkdir(parents=True, exist_ok=True)
    stem = f"{arch}-seed{seed}"
    n = sum(SIZES[arch])
    rows = []
    for (method, scope), knee in KNEES.items():
        for f in ONESHOT_LEVELS:
            e = dense_error + (0.0 if f <= knee else min(0.88, 4.0 * (f - knee) ** 1.5 + 0.002))
            rows.append(dict(arch=arch, seed=seed, method=method, scope=scope, fraction=f,
                             pruned_fraction=f, n_pruned=int(round(f * n)), accuracy=_acc(e),
                             loss=e * 3))  # fmt: skip
    pd.DataFrame(rows, columns=COLUMNS["oneshot"]).to_csv(
        folder / f"{stem}-oneshot.csv", index=False
    )
    rows = []
    for saliency, slack in (("obd", 0.0), ("magnitude", 0.001)):
        for r, f in enumerate((0.0, *SCHEDULE)):
            e = dense_error + (0.0 if f < 0.9 else slack + 0.002 * (f > 0.95)) - 0.0001 * seed
            rows.append(dict(arch=arch, seed=seed, saliency=saliency, scope="global", round=r,
                             fraction=f, pruned_fraction=f, n_pruned=int(round(f * n)),
                             accuracy_pruned=_acc(e + 0.02 * f), loss_pruned=0.1,
                             accuracy=_acc(e), loss=0.05, train_loss=0.01,
                             retrain_steps=0 if r == 0 else 100, seconds=1.0))  # fmt: skip
    pd.DataFrame(rows, columns=COLUMNS["iterative"]).to_csv(
        folder / f"{stem}-iterative.csv", index=False
    )
    rows = []
    for saliency, scale in (("obd", 1.0), ("magnitude", 0.98), ("oneshot_obd", 0.8),
                            ("oneshot_magnitude", 0.6)):  # fmt: skip
        for layer, (name, kind, size, pruned) in enumerate(
            zip(LAYERS[arch], KINDS[arch], SIZES[arch], OBD_PRUNED[arch], strict=True)
        ):
            p = min(1.0, pruned * scale)
            rows.append(dict(arch=arch, seed=seed, saliency=saliency, layer=layer, name=name,
                             kind=kind, size=size, n_pruned=int(round(p * size)),
                             fraction_pruned=round(p * size) / size))  # fmt: skip
    pd.DataFrame(rows, columns=COLUMNS["sparsity"]).to_csv(
        folder / f"{stem}-sparsity.csv", index=False
    )
    steps = np.arange(0, 1001, 250)
    pd.DataFrame(dict(arch=arch, seed=seed, step=steps, epoch=steps / 938,
                      train_loss=1.0 / (1 + steps), test_loss=0.05,
                      test_accuracy=_acc(dense_error)))[list(COLUMNS["train"])].to_csv(
        folder / f"{stem}-train.csv", index=False
    )  # fmt: skip


def write_study(results: Path, seeds=(0, 1), archs=("lenet_300_100", "lenet5")) -> Path:
    """Every run's CSVs under ``results/convnets``; returns that folder."""
    folder = Path(results) / "convnets"
    for arch in archs:
        for seed in seeds:
            write_run(folder, arch, seed, dense_error=0.016 if arch == "lenet_300_100" else 0.008)
    return folder

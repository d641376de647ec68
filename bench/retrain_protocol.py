"""Choosing the iterative-pruning protocol on validation data (never the test set).

The convnet study's iterative OBD must show whether LeNet-300-100 and LeNet-5 reach Han et al.
(2015)'s 12x (91.67% of the kernel weights pruned) at no loss of accuracy. Which retraining
protocol gives iterative pruning a fair chance is chosen here, on a validation split only:

* each network is trained by the study's recipe (``obd.study.convnets.train_net``) on the first
  ``60,000 - val`` training images; the last ``val`` training images are the validation set;
* each candidate protocol (a schedule of pruning levels and the epochs of masked retraining
  after each round, Adam from the retraining learning rate cosine-decayed to 0 in every round,
  i.e. warm restarts) runs iterative OBD (``obd.retrain.iterative_prune``, the exact Hessian
  diagonal recomputed every round) from the same dense network;
* a protocol *reaches* a level on a seed when the validation error after that round's retraining
  is at most the dense validation error + ``tolerance`` points.

Writes ``OUT.csv`` (one row per protocol, seed and round) and ``OUT.md`` (per protocol: the
highest level reached on every seed, the retraining epochs it costs). The protocol for
``make reproduce`` is the cheapest one that reaches 12x on every seed, else the one reaching the
highest level on its worst seed. Runs on any JAX device; the README reports where it ran.

    python bench/retrain_protocol.py --arch lenet_300_100 --seeds 0 1 2 --out bench/protocol
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import jax
import numpy as np
import pandas as pd

from obd.pipeline.io import atomic_path, write_text
from obd.retrain import iterative_prune
from obd.study import convnets

#: arch -> protocol name -> (schedule of kernel fractions, retraining epochs per round, peak
#: retraining learning rate). The first is the study's protocol before this search.
PROTOCOLS: dict[str, dict[str, tuple[list[float], list[float], float]]] = {
    "lenet_300_100": {
        "study (3 epochs a round)": ([0.5, 0.75, 0.875, 0.9167, 0.95], [3] * 5, 1e-3),
        "finer near 12-25x": (
            [0.5, 0.75, 0.875, 0.9, 0.9167, 0.93, 0.94, 0.95, 0.96], [3] * 9, 1e-3),
        "longer at 12x and 20x": ([0.5, 0.75, 0.875, 0.9167, 0.95], [3, 3, 3, 8, 8], 1e-3),
        "finer and longer": (
            [0.5, 0.75, 0.875, 0.9, 0.9167, 0.93, 0.95, 0.96], [2, 2, 3, 4, 6, 6, 6, 6], 1e-3),
        "10 epochs from 8x": ([0.5, 0.75, 0.875, 0.9167, 0.95], [3, 3, 5, 10, 10], 1e-3),
        "10 epochs from 8x, lr 3e-4": ([0.5, 0.75, 0.875, 0.9167, 0.95], [3, 3, 5, 10, 10], 3e-4),
        "finer, 5 epochs from 8x": (
            [0.5, 0.75, 0.875, 0.9, 0.9167, 0.93, 0.95], [3, 3, 5, 5, 5, 5, 5], 1e-3),
    },
    "lenet5": {
        "study (1 epoch a round)": ([0.5, 0.75, 0.9167, 0.95], [1] * 4, 1e-3),
        "finer near 12-33x": ([0.5, 0.75, 0.875, 0.9167, 0.93, 0.95, 0.96, 0.97], [1] * 8, 1e-3),
        "longer at 12x and 20x": ([0.5, 0.75, 0.9167, 0.95], [1, 1, 3, 3], 1e-3),
        "finer and longer": (
            [0.5, 0.75, 0.875, 0.9167, 0.95, 0.96, 0.97], [1, 1, 1, 2, 2, 2, 2], 1e-3),
        "2 epochs from 12x": ([0.5, 0.75, 0.9167, 0.95], [1, 1, 2, 2], 1e-3),
    },
}  # fmt: skip
#: The study's dense training recipe per arch: steps (batch 64 on 60,000 images), learning rate,
#: and the images the iterative Hessian uses (None: all training images).
RECIPES = {
    "lenet_300_100": dict(steps=9380, learning_rate=1e-3, hessian_examples=None),
    "lenet5": dict(steps=1876, learning_rate=2e-3, hessian_examples=2000),
}
TARGET = 1 - 1 / 12  # Han et al.'s 12x


def load(path: str | None) -> tuple[np.ndarray, np.ndarray]:
    """MNIST's training split: from ``obd.study.data`` or an ``.npz`` of uint8 ``x`` and ``y``."""
    if path is None:
        from obd.study.data import load_mnist

        return load_mnist("train")
    with np.load(path) as f:
        return (f["x"].reshape(len(f["x"]), -1) / np.float32(255)).astype(np.float32), f["y"]


def reached(g: pd.DataFrame, tolerance: float) -> float:
    """The highest pruned fraction whose validation error is within ``tolerance`` points."""
    dense = float(g.loc[g["round"] == 0, "val_error"].iloc[0])
    ok = g[(g["round"] > 0) & (g.val_error <= dense + tolerance + 1e-9)]
    return float(ok.pruned_fraction.max()) if len(ok) else 0.0


def summary(table: pd.DataFrame, tolerance: float) -> pd.DataFrame:
    rows = []
    for (arch, protocol), g in table.groupby(["arch", "protocol"], sort=False):
        per_seed = {s: reached(gs, tolerance) for s, gs in g.groupby("seed")}
        worst = min(per_seed.values())
        excess = [
            float(gs.loc[np.isclose(gs.fraction, 0.9167), "val_error"].iloc[0])
            - float(gs.loc[gs["round"] == 0, "val_error"].iloc[0])
            for _, gs in g.groupby("seed")
        ]
        rows.append(
            dict(
                arch=arch,
                protocol=protocol,
                seeds=len(per_seed),
                reached_per_seed=" ".join(f"{100 * v:.2f}" for v in per_seed.values()),
                worst=worst,
                worst_compression=1 / (1 - worst) if worst < 1 else np.inf,
                all_12x=worst >= TARGET - 1e-6,
                excess_at_12x=float(np.mean(excess)),
                epochs=float(g[g["round"] > 0].groupby("seed").retrain_epochs.sum().iloc[0]),
                seconds_per_seed=float(g.groupby("seed").seconds.sum().mean()),
            )
        )
    return pd.DataFrame(rows)


def write(tables: list[pd.DataFrame], out: Path, args: argparse.Namespace, n_train: int) -> str:
    """Write OUT.csv and OUT.md from the runs so far (after every seed: a killed run keeps them)."""
    table = pd.concat(tables, ignore_index=True)
    cols = ["arch", "protocol", "seed", "round", "fraction", "pruned_fraction", "retrain_epochs",
            "retrain_steps", "learning_rate", "val_error", "seconds"]  # fmt: skip
    with atomic_path(out.with_suffix(".csv")) as tmp:
        table[cols].to_csv(tmp, index=False)
    s = summary(table, args.tolerance)
    text = (
        f"# Iterative OBD protocols on validation data: {convnets.TITLES[args.arch]}\n\n"
        f"Trained on {n_train:,} training images, validated on the last {args.val:,}; a level "
        f"is reached when the validation error is at most the dense one + {args.tolerance} "
        f"point. Device: {jax.devices()[0].platform}. Step counts scaled by {args.scale}.\n\n"
        + s.to_markdown(index=False, floatfmt=".4g")
        + "\n"
    )
    write_text(out.with_suffix(".md"), text)
    return text


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--arch", choices=list(PROTOCOLS), required=True)
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--val", type=int, default=5000, help="validation images (end of train)")
    ap.add_argument("--tolerance", type=float, default=0.1, help="points of validation error")
    ap.add_argument("--protocols", nargs="*", help="names to run (default: all)")
    ap.add_argument("--scale", type=float, default=1.0, help="scale every step count (smoke)")
    ap.add_argument(
        "--mnist", help=".npz with uint8 x [N, 28, 28(, 1)] and y (else obd.study.data)"
    )
    ap.add_argument("--out", required=True, help="output stem: writes OUT.csv and OUT.md")
    args = ap.parse_args(argv)
    if not 0 < args.val < 60_000:
        raise ValueError(f"--val must be in (0, 60000), got {args.val}")
    x, y = load(args.mnist)
    x = convnets.inputs(args.arch, x)
    x_tr, y_tr, x_val, y_val = x[: -args.val], y[: -args.val], x[-args.val :], y[-args.val :]
    steps_per_epoch = len(x_tr) / 64
    recipe = RECIPES[args.arch]
    protocols = PROTOCOLS[args.arch]
    names = args.protocols or list(protocols)
    unknown = sorted(set(names) - set(protocols))
    if unknown:
        raise ValueError(f"unknown protocols {unknown}; accepted: {list(protocols)}")
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tables = []
    for seed in args.seeds:
        t0 = time.perf_counter()
        model, hist = convnets.train_net(
            args.arch, x_tr, y_tr, x_val, y_val, seed=seed,
            steps=max(1, round(recipe["steps"] * args.scale)),
            learning_rate=recipe["learning_rate"], progress=False,
        )  # fmt: skip
        print(f"{args.arch} seed {seed}: dense validation error "
              f"{100 * (1 - hist.test_accuracy.iloc[-1]):.2f}% ({time.perf_counter() - t0:.0f} s)",
              flush=True)  # fmt: skip
        for name in names:
            schedule, epochs, lr = protocols[name]
            steps = [max(1, round(e * steps_per_epoch * args.scale)) for e in epochs]
            t0 = time.perf_counter()
            table = iterative_prune(
                model, x_tr, y_tr, x_val, y_val, saliency="obd", schedule=schedule,
                retrain_steps=steps, learning_rate=lr, hessian_examples=recipe["hessian_examples"],
                seed=seed, lr_schedule="cosine",
            )  # fmt: skip
            table = table.assign(
                arch=args.arch, protocol=name, seed=seed,
                retrain_epochs=[0.0, *epochs], learning_rate=lr, val_error=100 * (1 - table.accuracy),
            )  # fmt: skip
            tables.append(table)
            g = table[table["round"] > 0]
            print(f"  {name}: {time.perf_counter() - t0:.0f} s; validation error by level: "
                  + ", ".join(f"{100 * f:.2f}%: {e:.2f}" for f, e in zip(g.pruned_fraction,
                                                                        g.val_error, strict=True)),
                  flush=True)  # fmt: skip
        text = write(tables, out, args, len(x_tr))
    print(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

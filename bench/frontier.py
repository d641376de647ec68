"""The pruning frontier on validation data: each method with retraining runs until it breaks.

Issue: how far does each method go with retraining, against the published points (Dynamic
Network Surgery 56x at 1.99%, Sparse VD 68x at 1.92% on LeNet-300-100; 108x at 0.91%, 200x at
0.97%, 280x at 0.75% on LeNet-5)? Here the protocol of each method family is searched on a
validation split only (never the test set):

* each network is trained by the study's recipe (``obd.study.convnets.train_net``) on the first
  ``60,000 - val`` training images; the last ``val`` images are the validation set;
* the schedule runs on past 95% (:data:`COMPRESSIONS`: 2x ... 500x); each round retrains for
  ``epochs`` epochs (Adam, learning rate cosine-decayed to 0 in every round);
* **break point**: a run stops after two rounds in a row whose validation error exceeds both
  its dense validation error + 0.1 point and the largest published error among the anchors of
  that network (LeNet-300-100 1.99%, LeNet-5 0.97%), so that no anchor can still be matched;
* methods: ``iterative-obd`` (the exact Hessian diagonal recomputed every round, on the first
  ``hessian_examples`` training images), ``iterative-magnitude``, ``gradual-magnitude`` (Zhu &
  Gupta's cubic schedule within each round: the mask updated every ``update_every`` steps while
  the sparsity ramps from the last level to the next over the round's first half, then trained
  at the level; ``obd.gradual``) and ``gradual-obd`` (the same with OBD scores).

Writes ``OUT.csv`` (one row per method, protocol, seed and round) and ``OUT.md`` (per method and
protocol: per seed the last level held at the break threshold, the largest compression within
0.1 point of the dense validation error, and the published points matched on validation).

    python bench/frontier.py --arch lenet_300_100 --seeds 0 --out bench/frontier-lenet_300_100
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import jax
import numpy as np
import pandas as pd

from obd.gradual import gradual_path
from obd.pipeline.io import atomic_path, write_text
from obd.retrain import iterative_prune
from obd.study import convnets
from obd.study.published import load_published

#: the compressions of the schedule (weights / weights left); the published points are on it
COMPRESSIONS = {
    "lenet_300_100": [2, 4, 8, 12, 16, 20, 25, 33, 40, 50, 56, 63, 68, 80, 100, 125, 150, 200,
                      250, 300, 400, 500],
    "lenet5": [2, 4, 8, 12, 20, 33, 50, 68, 80, 100, 108, 125, 150, 175, 200, 250, 280, 350, 400,
               500, 700, 1000],
}  # fmt: skip
#: arch -> protocol name -> (retraining epochs per round, peak learning rate, batch size, AdamW
#: weight decay; 0 is Adam)
PROTOCOLS = {
    "lenet_300_100": {
        "1 epoch a round": (1.0, 1e-3, 64, 0.0),
        "2 epochs a round": (2.0, 1e-3, 64, 0.0),
        "2 epochs a round, batch 256": (2.0, 2e-3, 256, 0.0),
        "1 epoch, lr 1e-4": (1.0, 1e-4, 64, 0.0),
        "2 epochs, lr 3e-4": (2.0, 3e-4, 64, 0.0),
        "4 epochs, lr 1e-4": (4.0, 1e-4, 64, 0.0),
        "2 epochs, lr 3e-4, weight decay 0.1": (2.0, 3e-4, 64, 0.1),
        "2 epochs, lr 3e-4, weight decay 1": (2.0, 3e-4, 64, 1.0),
        "4 epochs a round": (4.0, 1e-3, 64, 0.0),
        "6 epochs a round": (6.0, 1e-3, 64, 0.0),
        "4 epochs, weight decay 0.05": (4.0, 1e-3, 64, 0.05),
        "4 epochs, weight decay 0.1": (4.0, 1e-3, 64, 0.1),
        "4 epochs, weight decay 0.2": (4.0, 1e-3, 64, 0.2),
        "6 epochs, weight decay 0.1": (6.0, 1e-3, 64, 0.1),
    },
    "lenet5": {
        "1 epoch a round": (1.0, 1e-3, 64, 0.0),
        "1 epoch, lr 3e-4": (1.0, 3e-4, 64, 0.0),
    },
}
#: what the search chose for ``make reproduce`` (frontier.ipynb's defaults), and why
CHOSEN = {
    "lenet_300_100": (
        "Chosen for `make reproduce` (`frontier.ipynb`'s defaults), once per family, by the "
        "largest compression held at the break threshold on seed 0's validation set: **6 epochs "
        "a round, learning rate 1e-3, AdamW weight decay 0.1** for both the iterative and the "
        "gradual family (iterative OBD 50x against 33x for the next protocol, gradual magnitude "
        "25x against 16x; gradual OBD ties at 40x with 4 epochs). Without weight decay, or with a "
        "lower learning rate, no method held beyond 25x. The search is one seed: the differences "
        "between the better protocols are one or two levels of the schedule, and the validation "
        "error's binomial standard error is about 0.19 point.\n"
    ),
}
RECIPES = {
    "lenet_300_100": dict(steps=9380, learning_rate=1e-3),
    "lenet5": dict(steps=1876, learning_rate=2e-3),
}
METHODS = ("iterative-obd", "iterative-magnitude", "gradual-magnitude", "gradual-obd")
TOLERANCE = 0.001  # Han et al.'s yardstick: within 0.1 point of the dense error
PATIENCE = 2


def anchors(arch: str) -> pd.DataFrame:
    """The published points of ``arch`` (Han et al. 2015 and the later anchors)."""
    pub = load_published()
    return pub[pub.network == arch].reset_index(drop=True)


def summary(table: pd.DataFrame, arch: str) -> pd.DataFrame:
    pub = anchors(arch)
    rows = []
    for (method, protocol), g in table.groupby(["method", "protocol"], sort=False):
        row = dict(method=method, protocol=protocol, seeds=g.seed.nunique())
        held, within, seconds = [], [], []
        matched = {p: 0 for p in pub.method}
        for _, gs in g.groupby("seed"):
            dense = float(gs.loc[gs["round"] == 0, "val_error"].iloc[0])
            thr = float(gs.break_error.iloc[0])
            r = gs[gs["round"] > 0]
            ok = r[r.val_error <= 100 * thr + 1e-9]
            held.append(float(ok.pruned_fraction.max()) if len(ok) else 0.0)
            ok = r[r.val_error <= dense + 100 * TOLERANCE + 1e-9]
            within.append(float(ok.pruned_fraction.max()) if len(ok) else 0.0)
            for p in pub.itertuples():
                hit = r[(1 / (1 - r.pruned_fraction) >= p.compression - 1e-6)
                        & (r.val_error <= p.pruned_error_pct + 1e-9)]  # fmt: skip
                matched[p.method] += len(hit) > 0
            seconds.append(float(gs.seconds.sum()))
        row["held at break threshold, per seed"] = " ".join(f"{1 / (1 - h):.0f}x" for h in held)
        row["within dense + 0.1, per seed"] = " ".join(f"{1 / (1 - w):.0f}x" for w in within)
        row["worst seed within dense + 0.1"] = f"{1 / (1 - min(within)):.0f}x"
        for p in pub.itertuples():
            row[f"{p.method} ({p.compression:g}x at {p.pruned_error_pct:g}%)"] = (
                f"{matched[p.method]}/{row['seeds']}"
            )
        row["seconds per seed"] = float(np.mean(seconds))
        rows.append(row)
    return pd.DataFrame(rows)


def write(tables: list[pd.DataFrame], out: Path, args: argparse.Namespace, n_train: int) -> str:
    table = pd.concat(tables, ignore_index=True)
    cols = ["arch", "method", "protocol", "seed", "round", "fraction", "pruned_fraction",
            "retrain_steps", "learning_rate", "batch_size", "weight_decay", "break_error",
            "val_error", "seconds"]  # fmt: skip
    with atomic_path(out.with_suffix(".csv")) as tmp:
        table[cols].to_csv(tmp, index=False)
    s = summary(table, args.arch)
    text = (
        f"# The pruning frontier on validation data: {convnets.TITLES[args.arch]}\n\n"
        f"Trained on {n_train:,} training images, validated on the last {args.val:,} (test set "
        f"unused). Schedule {COMPRESSIONS[args.arch][0]}x to {COMPRESSIONS[args.arch][-1]}x; a "
        f"run breaks after {PATIENCE} rounds in a row above max(dense + 0.1 point, the largest "
        f"published error). A published point counts as matched on a seed when some round has at "
        f"least its compression at a validation error at most its published test error. "
        f"Validation error on {args.val:,} images: binomial standard error about "
        f"{100 * np.sqrt(0.018 * 0.982 / args.val):.2f} point at 1.8%. "
        f"Hessian diagonal on the first {args.hessian_examples:,} training images per update. "
        f"Device: {jax.devices()[0].platform}. Step counts scaled by {args.scale}.\n\n"
        + s.to_markdown(index=False, floatfmt=".4g")
        + "\n\n"
        + CHOSEN.get(args.arch, "")
    )
    write_text(out.with_suffix(".md"), text)
    return text


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--arch", choices=list(PROTOCOLS), required=True)
    ap.add_argument("--seeds", type=int, nargs="+", default=[0])
    ap.add_argument("--val", type=int, default=5000, help="validation images (end of train)")
    ap.add_argument("--methods", nargs="*", choices=METHODS, default=list(METHODS))
    ap.add_argument("--protocols", nargs="*", help="names to run (default: all)")
    ap.add_argument("--hessian-examples", type=int, default=10_000)
    ap.add_argument("--update-every", type=int, default=100, help="gradual: steps between masks")
    ap.add_argument("--scale", type=float, default=1.0, help="scale every step count (smoke)")
    ap.add_argument("--out", required=True, help="output stem: writes OUT.csv and OUT.md")
    ap.add_argument("--from-csv", nargs="+", metavar="CSV",
                    help="no runs: merge earlier OUT.csv files (a run repeated is kept once)")  # fmt: skip
    args = ap.parse_args(argv)
    if args.from_csv:
        table = pd.concat([pd.read_csv(f) for f in args.from_csv], ignore_index=True)
        table = table.drop_duplicates(["arch", "method", "protocol", "seed", "round"])
        if set(table.arch) != {args.arch}:
            raise ValueError(
                f"--from-csv: the files hold {sorted(set(table.arch))}, not {args.arch}"
            )
        n_train = 60_000 - args.val
        print(write([table], Path(args.out), args, n_train))
        return 0
    if not 0 < args.val < 60_000:
        raise ValueError(f"--val must be in (0, 60000), got {args.val}")
    protocols = PROTOCOLS[args.arch]
    names = args.protocols or list(protocols)
    unknown = sorted(set(names) - set(protocols))
    if unknown:
        raise ValueError(f"unknown protocols {unknown}; accepted: {list(protocols)}")
    from obd.study.data import load_mnist

    x, y = load_mnist("train")
    x = convnets.inputs(args.arch, x)
    x_tr, y_tr, x_val, y_val = x[: -args.val], y[: -args.val], x[-args.val :], y[-args.val :]
    fractions = [1 - 1 / c for c in COMPRESSIONS[args.arch]]
    worst_anchor = float(anchors(args.arch).pruned_error_pct.max()) / 100
    recipe = RECIPES[args.arch]
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
        dense = 1 - float(hist.test_accuracy.iloc[-1])
        break_error = max(dense + TOLERANCE, worst_anchor)
        print(f"{args.arch} seed {seed}: dense validation error {100 * dense:.2f}%, break above "
              f"{100 * break_error:.2f}% ({time.perf_counter() - t0:.0f} s)", flush=True)  # fmt: skip
        for name in names:
            epochs, lr, batch, wd = protocols[name]
            steps = max(1, round(epochs * len(x_tr) / batch * args.scale))
            for method in args.methods:
                family, saliency = method.split("-")
                t0 = time.perf_counter()
                if family == "iterative":
                    table = iterative_prune(
                        model, x_tr, y_tr, x_val, y_val, saliency=saliency,  # no test set here
                        schedule=fractions, retrain_steps=steps, learning_rate=lr,
                        batch_size=batch, hessian_examples=args.hessian_examples, seed=seed,
                        lr_schedule="cosine", x_val=x_val, y_val=y_val, break_error=break_error,
                        patience=PATIENCE, weight_decay=wd,
                    )[["round", "fraction", "pruned_fraction", "val_accuracy", "seconds"]]  # fmt: skip
                else:
                    table, _ = gradual_path(
                        model, x_tr, y_tr, x_val, y_val, saliency=saliency, schedule=fractions,
                        steps=steps, learning_rate=lr, batch_size=batch, seed=seed,
                        x_val=x_val, y_val=y_val, break_error=break_error, patience=PATIENCE,
                        update_every=args.update_every, hessian_examples=args.hessian_examples,
                        weight_decay=wd,
                    )  # no test set here: the validation set stands in its place  # fmt: skip
                    table = table[["round", "fraction", "pruned_fraction", "val_accuracy",
                                   "seconds"]]  # fmt: skip
                table = table.assign(
                    arch=args.arch, method=method, protocol=name, seed=seed, learning_rate=lr,
                    batch_size=batch, weight_decay=wd, retrain_steps=[0] + [steps] * (len(table) - 1),
                    break_error=break_error, val_error=100 * (1 - table.val_accuracy),
                )  # fmt: skip
                tables.append(table)
                g = table[table["round"] > 0]
                print(f"  {method}, {name}: {time.perf_counter() - t0:.0f} s; "
                      + ", ".join(f"{1 / (1 - f):.0f}x: {e:.2f}" for f, e in zip(
                          g.pruned_fraction, g.val_error, strict=True)), flush=True)  # fmt: skip
                text = write(tables, out, args, len(x_tr))
    print(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""Paired benchmark of the entry checks: each function with and without its checks, in one
process, interleaved, on the study's sizes; prints the median ratio (checked / unchecked).

``python bench/paired_checks.py [REPEATS]``. "Unchecked" is the same function with the checks
added in reliability round 4 replaced by no-ops (finite parameters and results, pixel range in
``convnets.evaluate``, the recorded-files filter and CSV checks of ``load_sweeps``).
"""

from __future__ import annotations

import contextlib
import statistics
import sys
import tempfile
import time
from pathlib import Path

import jax
import numpy as np
import pandas as pd

from obd import checks, hessian, prune
from obd.mlp import init_mlp
from obd.saliencies import saliency
from obd.study import convnets, variants
from obd.study.data import load_mnist


@contextlib.contextmanager
def unchecked():
    """The round-4 checks as no-ops."""
    saved = []

    def off(mod, name, value):
        saved.append((mod, name, getattr(mod, name)))
        setattr(mod, name, value)

    nop = lambda *a, **k: None  # noqa: E731
    off(prune, "check_finite_params", nop)
    off(prune, "check_finite_results", nop)
    off(hessian, "check_finite_params", nop)
    off(convnets, "check_finite_params", nop)
    off(checks, "check_pixels", nop)
    try:
        yield
    finally:
        for mod, name, value in reversed(saved):
            setattr(mod, name, value)


def _time(fn) -> float:
    t = time.perf_counter()
    jax.block_until_ready(fn())
    return time.perf_counter() - t


def paired(name, fn, repeats):
    fn()  # compile and warm both paths
    with unchecked():
        fn()
    ratios, new, old = [], [], []
    for i in range(repeats):
        order = (True, False) if i % 2 == 0 else (False, True)
        t = {}
        for checked in order:
            if checked:
                t[checked] = _time(fn)
            else:
                with unchecked():
                    t[checked] = _time(fn)
        new.append(t[True])
        old.append(t[False])
        ratios.append(t[True] / t[False])
    print(f"{name}: median checked {statistics.median(new):.3f} s, unchecked "
          f"{statistics.median(old):.3f} s, median ratio {statistics.median(ratios):.3f} "
          f"(min {min(ratios):.3f}, max {max(ratios):.3f}, {repeats} pairs)", flush=True)  # fmt: skip


def _old_load_sweeps(results):
    files = sorted(f for f in Path(results, "sweeps").glob("*.csv") if not f.name.startswith("."))
    return pd.concat([pd.read_csv(f) for f in files], ignore_index=True)


def main(repeats: int = 7) -> None:
    x, y = load_mnist("train")
    xt, yt = load_mnist("test")
    params = init_mlp(jax.random.key(0), (784, 50, 50, 50, 50, 10))
    h = hessian.hessian_diag(params, x[:1000], y[:1000])
    scores = saliency("obd", params, hdiag=h)
    levels = variants.default_fractions()
    paired("sweep 784-50x4-10, 101 levels, 10,000 test images",
           lambda: prune.sweep(params, scores, levels, xt, yt).accuracy.to_numpy(), repeats)  # fmt: skip
    paired("hessian_diag 784-50x4-10, 60,000 images",
           lambda: hessian.hessian_diag(params, x, y), repeats)  # fmt: skip
    model = convnets.ARCHS["lenet_300_100"](__import__("flax").nnx.Rngs(0))
    paired("convnets.evaluate LeNet-300-100, 10,000 test images",
           lambda: convnets.evaluate(model, xt, yt), repeats)  # fmt: skip
    # load_sweeps: the recorded-files filter and CSV checks against a plain read of every file
    from obd.pipeline.outputs import write_manifest

    with tempfile.TemporaryDirectory() as tmp:
        sweeps = Path(tmp, "results", "sweeps")
        sweeps.mkdir(parents=True)
        rng = np.random.default_rng(0)
        for i in range(19):  # the study's 19 sweeps, 5 seeds x 101 levels each
            variant = f"s{i}-global-plain"
            t = pd.DataFrame({"fraction": levels, "pruned_fraction": levels,
                              "n_pruned": (levels * 1000).astype(int),
                              "accuracy": rng.uniform(size=101), "loss": rng.uniform(size=101)})  # fmt: skip
            t = pd.concat([t.assign(seed=s) for s in range(5)])
            t = t.assign(variant=variant, saliency=f"s{i}", scope="global", model="plain",
                         include_biases=False)[variants.RESULT_COLUMNS]  # fmt: skip
            t.to_csv(sweeps / f"{variant}.csv", index=False)
            write_manifest(Path(tmp, "reports", f"prune-{i}"), [sweeps / f"{variant}.csv"])
        results = Path(tmp, "results")
        ratios, new, old = [], [], []
        for _ in range(repeats * 3):
            new.append(_time(lambda: variants.load_sweeps(results).accuracy.to_numpy()))
            old.append(_time(lambda: _old_load_sweeps(results).accuracy.to_numpy()))
            ratios.append(new[-1] / old[-1])
        print(f"load_sweeps, 19 sweeps x 5 seeds x 101 levels: median checked "
              f"{statistics.median(new) * 1e3:.1f} ms, plain read of every file "
              f"{statistics.median(old) * 1e3:.1f} ms, median ratio "
              f"{statistics.median(ratios):.3f}")  # fmt: skip


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 7)

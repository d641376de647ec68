"""Wall time of ``obd.hessian.hessian_diag`` relative to one full-batch jitted ``jax.grad``.

Seed MLP (784-50-50-50-50-10), random float32 inputs of MNIST shape (the timing does not depend on
the values). All are warmed up (compiled) first, then run interleaved ``--repeats`` times; the
medians are reported:
``python bench/hessian_timing.py [--methods fast hvp] [--batch-sizes 10000 60000]``.
"""

from __future__ import annotations

import argparse
import functools
import time
from collections.abc import Callable

import jax
import numpy as np

from obd import hessian
from obd import mlp as model


def run_time(fn: Callable[[], object]) -> float:
    t = time.perf_counter()
    jax.block_until_ready(fn())
    return time.perf_counter() - t


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--examples", type=int, default=60_000)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--methods", nargs="+", default=["fast", "hvp"])
    parser.add_argument("--batch-sizes", nargs="+", type=int, default=[hessian.DEFAULT_BATCH_SIZE])
    args = parser.parse_args()

    params = model.init_mlp(jax.random.key(0))
    rng = np.random.default_rng(0)
    x = jax.device_put(rng.uniform(size=(args.examples, 784)).astype(np.float32))
    y = jax.device_put(rng.integers(0, 10, args.examples).astype(np.int32))

    grad = jax.jit(jax.grad(model.loss))
    runs: dict[str, Callable[[], object]] = {"grad": lambda: grad(params, x, y)}
    for method in args.methods:
        for bs in args.batch_sizes:
            runs[f"{method}, batch_size {bs}"] = functools.partial(
                hessian.hessian_diag, params, x, y, method=method, batch_size=bs
            )
    for fn in runs.values():  # warm-up: compile
        run_time(fn)
    times: dict[str, list[float]] = {name: [] for name in runs}
    for _ in range(args.repeats):  # interleaved, so that load changes hit all alike
        for name, fn in runs.items():
            times[name].append(run_time(fn))
    t_grad = float(np.median(times["grad"]))
    print(f"{args.examples} examples, {jax.devices()[0].platform}, median of {args.repeats} runs")
    for name, ts in times.items():
        t = float(np.median(ts))
        print(f"{name:>26}: {t:.3f} s = {t / t_grad:.2f} x grad (min {min(ts):.3f} s)")


if __name__ == "__main__":
    main()

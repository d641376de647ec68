"""Wall time of ``obd.prune.sweep``: 101 levels on 10,000 examples with the seed MLP.

Run in a fresh process: the first call is "cold" (includes jit compilation), later calls "warm".
Synthetic inputs (the timing does not depend on the values): ``python bench/sweep_timing.py``.
"""

from __future__ import annotations

import argparse
import time

import jax
import numpy as np

from obd import model, prune, saliency


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--levels", type=int, default=101)
    parser.add_argument("--examples", type=int, default=10_000)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--level-batch", type=int, default=None)
    parser.add_argument("--scope", default="global")
    args = parser.parse_args()

    params = model.init_mlp(jax.random.key(0))
    rng = np.random.default_rng(0)
    x = rng.uniform(size=(args.examples, 784)).astype(np.float32)
    y = rng.integers(0, 10, args.examples).astype(np.int32)
    scores = saliency.saliency("magnitude", params)
    fractions = np.linspace(0, 1, args.levels)

    def run() -> float:
        t = time.perf_counter()
        prune.sweep(params, scores, fractions, x, y, scope=args.scope, level_batch=args.level_batch)
        return time.perf_counter() - t

    cold = run()
    warm = [run() for _ in range(args.repeats)]
    print(
        f"sweep {args.levels} levels x {args.examples} examples, scope {args.scope}, "
        f"level_batch {args.level_batch}: cold {cold:.3f} s, warm median {np.median(warm):.3f} s "
        f"(min {min(warm):.3f}, max {max(warm):.3f}); {jax.devices()[0].platform}"
    )


if __name__ == "__main__":
    main()

"""Cost of global OBS (``obd.obs.global_obs_sweep``) as a ratio to one exact Hessian diagonal.

For the blog's MLP (784-50-50-50-50-10) on the 60,000 training images, each round times, in turn,
one exact diagonal (``obd.hessian.hessian_diag``, the fast path for ReLU) and the three parts of
global OBS: the exact per-unit Hessian blocks (``unit_blocks``), the greedy OBS pass over every
unit (``global_obs_traces`` given the blocks) and a 101-level sweep on the 10,000 test images
(with the update). Ratios are taken within a round (the machine is shared and noisy), then the
median over rounds is reported. Growth with the hidden width (784-w-w-w-w-10) is measured the
same way on fewer examples, with fitted log-log exponents.

``python bench/global_obs.py [--quick] [--out bench]`` writes ``<out>/global_obs.csv`` and
``<out>/global_obs.md``. Weights are the initialisation's (the cost does not depend on them).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import jax
import numpy as np
import pandas as pd

from common import fit_exponent, machine_facts, time_call
from obd import hessian, obs
from obd import mlp as model
from obd.pipeline.io import atomic_path, write_text
from obd.study.data import DataUnavailableError, load_mnist

PARTS = ("diag", "blocks", "greedy", "sweep")


def _data(n_train: int) -> tuple[tuple[np.ndarray, ...], str]:
    try:
        (x, y), (xt, yt) = load_mnist("train"), load_mnist("test")
        return (x[:n_train], y[:n_train], xt, yt), "MNIST"
    except DataUnavailableError:
        rng = np.random.default_rng(0)
        x = rng.uniform(size=(n_train, 784)).astype(np.float32)
        xt = rng.uniform(size=(10_000, 784)).astype(np.float32)
        y, yt = rng.integers(0, 10, n_train, np.int32), rng.integers(0, 10, 10_000, np.int32)
        return (x, y, xt, yt), "random data of MNIST's shapes (MNIST unavailable)"


def _rounds(width: int, data, rounds: int) -> pd.DataFrame:
    """``rounds`` interleaved timings of the diagonal and the parts of global OBS."""
    x, y, xt, yt = data
    params = model.init_mlp(jax.random.key(0), (784, width, width, width, width, 10))
    levels = np.linspace(0, 1, 101)
    state: dict = {}

    def blocks():
        state["blocks"] = obs.unit_blocks(params, x, y)
        return state["blocks"][-1]

    def greedy():
        state["traces"] = obs.global_obs_traces(params, x, y, blocks=state["blocks"])
        return state["traces"][-1].weights

    fns = {
        "diag": lambda: hessian.hessian_diag(params, x, y),
        "blocks": blocks,
        "greedy": greedy,
        "sweep": lambda: obs.global_obs_sweep(
            params, x, y, levels, xt, yt, traces=state["traces"], stages=1
        ).accuracy.to_numpy(),
    }
    # Warm-up: the diagonal at full size (cheap), global OBS on 500 examples, which compiles the
    # greedy pass and the sweep (their shapes do not depend on the examples); the blocks' first
    # timed call includes compiling them for the full size (a few seconds of minutes).
    time_call(fns["diag"])
    few = (x[:500], y[:500])
    state["blocks"] = obs.unit_blocks(params, *few)
    state["traces"] = obs.global_obs_traces(params, *few, blocks=state["blocks"])
    time_call(fns["sweep"])
    out = []
    for r in range(rounds):
        times = {k: time_call(fn) for k, fn in fns.items()}
        print(f"width {width}, {len(x)} examples, round {r}: "
              + ", ".join(f"{k} {v:.2f} s" for k, v in times.items()), file=sys.stderr)  # fmt: skip
        out.append(times)
    t = pd.DataFrame(out)
    t["global_obs"] = t["blocks"] + t["greedy"] + t["sweep"]
    return t


def _summary(t: pd.DataFrame, width: int, examples: int) -> dict:
    row = {"width": width, "examples": examples, "rounds": len(t)}
    for k in ("diag", "blocks", "greedy", "sweep", "global_obs"):
        row[f"{k}_s"] = float(t[k].median())
        if k != "diag":
            row[f"{k}_ratio"] = float((t[k] / t["diag"]).median())
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small sizes, a smoke run")
    parser.add_argument("--out", default="bench")
    parser.add_argument("--rounds", type=int, default=None)
    parser.add_argument("--widths-only", action="store_true", help="skip the 60,000-image run")
    args = parser.parse_args()
    examples = 5_000 if args.quick else 60_000
    width_examples = 2_000 if args.quick else 10_000
    widths = (25, 50) if args.quick else (25, 50, 100, 200)
    rounds = args.rounds or (1 if args.quick else 2)
    start = time.perf_counter()
    data, source = _data(examples)
    small = tuple(a[:width_examples] for a in data[:2]) + data[2:]
    configs = [] if args.widths_only else [(50, data, "seed MLP")]
    configs += [(w, small, "width") for w in widths]
    rows = []
    for width, d, axis in configs:  # results are written after each, so a cut run keeps some
        rows.append({**_summary(_rounds(width, d, rounds), width, len(d[0])), "axis": axis})
        _write(pd.DataFrame(rows), Path(args.out), source, rounds, time.perf_counter() - start)


def _write(table: pd.DataFrame, out: Path, source: str, rounds: int, elapsed: float) -> None:
    facts = machine_facts(source)
    for k, v in facts.items():
        table[k] = v
    out.mkdir(parents=True, exist_ok=True)
    with atomic_path(out / "global_obs.csv") as tmp:
        table.to_csv(tmp, index=False)
    w = table[table.axis == "width"]
    lines = [
        "# Global OBS: cost as a ratio to one exact Hessian diagonal",
        "",
        f"{facts['cpu']}, {facts['cores']} cores, {facts['backend']}, load average "
        f"{facts['load_avg']} at the end, {facts['date']}; {source}. Medians over {rounds} "
        "interleaved round(s) (ratios within a round); `bench/global_obs.py`.",
        "",
        "| network | examples | diagonal (s) | blocks | greedy OBS pass | 101-level sweep | "
        "global OBS in all |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for r in table.itertuples():
        net = "seed MLP 784-50x4-10" if r.axis == "seed MLP" else f"784-{r.width}x4-10"
        lines.append(
            f"| {net} | {r.examples:,} | {r.diag_s:.2f} | {r.blocks_ratio:.1f}x | "
            f"{r.greedy_ratio:.1f}x | {r.sweep_ratio:.1f}x | **{r.global_obs_ratio:.1f}x** "
            f"({r.global_obs_s:.1f} s) |"
        )
    if len(w) >= 2:
        lines.append("")
        for k in ("diag", "blocks", "greedy", "global_obs"):
            slope, se = fit_exponent(w["width"], w[f"{k}_s"])
            lines.append(f"* `{k}` time grows as width^{slope:.2f} (± {se:.2f}) over widths "
                         f"{', '.join(str(v) for v in w['width'])}.")  # fmt: skip
    lines.append(f"\nBenchmark time so far {elapsed:.0f} s.")
    write_text(out / "global_obs.md", "\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()

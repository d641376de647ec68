"""The benchmark suite (``make bench``): what the study costs and how it grows.

Measures, on this machine (see ``bench/README.md``):

1. the exact Hessian diagonal of the blog's MLP (``method="fast"`` and ``"hvp"``) over the training
   set, as a ratio to one full-batch jitted gradient of ``obd.mlp.loss`` on the same data;
2. the naive alternative, one Hessian-vector product per parameter, timed on a few hundred
   parameters (checked against ``fast``) and extrapolated to all of them;
3. growth of ``fast`` and of the gradient, in time and compiled memory, with the number of
   examples, the hidden width and the depth, with fitted log-log exponents;
4. the pipeline: training, a 101-level pruning sweep, MNIST loading cold and warm, and the
   notebooks' wall times from ``make reproduce`` logs (``bench/notebook_times.py``).

Writes ``<out>/results.csv``, ``<out>/results.md`` and ``<figures>/bench_*.png`` (+ .svg).
``--quick`` is a smoke run of under a minute with small sizes.
"""

from __future__ import annotations

import argparse
import functools
import glob
import json
import os
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
from jax.flatten_util import ravel_pytree

from common import fit_exponent, frame, interleaved, machine_facts, memory, ratio_cols, read_results
from common import row as make_row
from figures import plot_all
from notebook_times import merge, parse_logs
from obd import hessian, mlp, prune, saliencies
from obd.study import model as blog_model
from obd.study import train
from obd.study.data import DataUnavailableError, load_mnist
from report import write_results


@dataclass(frozen=True)
class Settings:
    """Sizes and repeats of one benchmark run."""

    examples: int = 60_000  # items 1 and 2
    rounds: int = 9  # timed rounds after one warm-up (items 1 and 2)
    naive_per_round: int = 32  # HVPs per round: rounds * naive_per_round are timed
    naive_batch: int = 16  # unit vectors vmapped together
    scaling_rounds: int = 7
    examples_axis: tuple[int, ...] = (1_000, 2_000, 5_000, 10_000, 20_000, 60_000)
    width_axis: tuple[int, ...] = (50, 100, 200, 400, 800)
    width_examples: int = 10_000
    depth_axis: tuple[int, ...] = (2, 3, 4, 6, 8)
    depth_examples: int = 60_000
    train_steps: int = 50_000
    sweep_levels: int = 101
    sweep_examples: int = 10_000
    sweep_repeats: int = 5
    load_repeats: int = 5


QUICK = Settings(
    examples=5_000,
    rounds=3,
    naive_per_round=16,
    scaling_rounds=2,
    examples_axis=(1_000, 3_000, 10_000),
    width_axis=(50, 200, 800),
    width_examples=1_000,
    depth_axis=(2, 4, 8),
    depth_examples=5_000,
    train_steps=1_000,
    sweep_repeats=2,
    load_repeats=2,
)

SEED = 0
_START = time.perf_counter()


def log(msg: str) -> None:
    """Progress on stderr with the elapsed time."""
    print(f"[bench {time.perf_counter() - _START:6.1f} s] {msg}", file=sys.stderr, flush=True)


def load_data() -> tuple[tuple[np.ndarray, ...], str]:
    """MNIST (train and test) if available, else random data of the same shapes; and which."""
    try:
        return (
            *load_mnist("train"),
            *load_mnist("test"),
        ), "MNIST (tensorflow_datasets mnist/3.0.1)"
    except DataUnavailableError as err:
        log(f"MNIST unavailable, using random data of the same shapes: {err}")
    rng = np.random.default_rng(SEED)
    arrays = []
    for n in (60_000, 10_000):
        arrays += [rng.uniform(size=(n, 784)).astype(np.float32), rng.integers(0, 10, n, np.int32)]
    return tuple(arrays), "random data of MNIST's shapes (MNIST unavailable)"


def compiled(fn, *args):
    """``fn`` jitted and compiled ahead of time for ``args`` (timed and memory-analysed alike)."""
    return jax.jit(fn).lower(*args).compile()


def diag_fn(method: str):
    """``obd.hessian.hessian_diag`` with ``method``; jitting it whole inlines its own jit."""
    return functools.partial(hessian.hessian_diag, method=method)


GRAD = jax.grad(mlp.loss)


def naive_entries(params, x, y, idx, *, batch: int):
    """Diagonal entries ``idx`` (of the flattened parameters), one ``obd.hessian.hvp`` each with
    the unit vector of the entry; ``batch`` unit vectors are vmapped at a time."""
    flat, unravel = ravel_pytree(params)

    def entry(i):
        v = unravel(jax.nn.one_hot(i, flat.size, dtype=flat.dtype))
        return ravel_pytree(hessian.hvp(params, x, y, v))[0][i]

    return jax.lax.map(entry, idx, batch_size=batch)


# -- 1 and 2: the Hessian diagonal against one gradient and against one HVP per parameter ---------


def bench_hessian(s: Settings, x_all, y_all) -> list[dict]:
    """Items 1 and 2: gradient, ``fast``, ``hvp``, one HVP and the naive per-parameter HVPs,
    interleaved; compiled memory of each; the naive entries checked against ``fast``."""
    n = s.examples
    params = mlp.init_mlp(jax.random.key(SEED))
    x, y = jax.device_put(x_all[:n]), jax.device_put(y_all[:n])
    flat, unravel = ravel_pytree(params)
    size = flat.size
    v = unravel(jax.random.normal(jax.random.key(1), flat.shape))
    exes = {
        "grad": compiled(GRAD, params, x, y),
        "fast": compiled(diag_fn("fast"), params, x, y),
        "hvp": compiled(diag_fn("hvp"), params, x, y),
        "hvp_single": compiled(hessian.hvp, params, x, y, v),
    }
    k = s.naive_per_round
    idx = np.linspace(0, size - 1, (s.rounds + 1) * k).round().astype(np.int32)
    chunks = iter(idx.reshape(k, s.rounds + 1).T)  # round r: every (rounds+1)-th entry
    naive = functools.partial(naive_entries, batch=s.naive_batch)
    exes["naive"] = compiled(naive, params, x, y, jnp.asarray(idx[:k]))
    log(f"hessian: compiled; {s.rounds} rounds on {n:,} examples")
    seen: list[tuple[np.ndarray, jax.Array]] = []

    def run_naive():
        i = next(chunks)
        out = exes["naive"](params, x, y, jnp.asarray(i))
        seen.append((i, out))
        return out

    fns = {
        "grad": lambda: exes["grad"](params, x, y),
        "fast": lambda: exes["fast"](params, x, y),
        "hvp": lambda: exes["hvp"](params, x, y),
        "hvp_single": lambda: exes["hvp_single"](params, x, y, v),
        "naive": run_naive,
    }
    t = interleaved(fns, s.rounds)
    t["naive_per_hvp"] = t["naive"] / k
    t["naive_all"] = t["naive_per_hvp"] * size
    grad_mem = memory(exes["grad"])
    rows = []
    for name in ("grad", "fast", "hvp", "hvp_single", "naive_per_hvp", "naive_all"):
        mem = memory(exes["naive" if name.startswith("naive") else name])
        rel = {
            "temp_ratio": mem["temp_bytes"] / grad_mem["temp_bytes"],
            "peak_ratio": mem["peak_bytes"] / grad_mem["peak_bytes"],
        }
        note = ""
        if name.startswith("naive"):
            note = f"{s.rounds * k} HVPs timed, {s.naive_batch} vmapped at a time"
            if name == "naive_all":
                note += f", x {size:,} parameters"
        rows.append(
            make_row(
                "hessian",
                name,
                t[name],
                size=n,
                note=note,
                **mem,
                **rel,
                **ratio_cols(t[name], t["grad"], "grad"),
            )
        )
    for method in ("fast", "hvp"):
        sp = t["naive_all"] / t[method]
        rows.append(
            make_row(
                "naive",
                f"speedup_{method}",
                sp,
                unit="x",
                size=n,
                **ratio_cols(t["naive_all"], t[method], method),
            )
        )
    # the naive entries are the diagonal: check them against fast
    diag = np.asarray(ravel_pytree(exes["fast"](params, x, y))[0])
    i = np.concatenate([a for a, _ in seen])
    got = np.concatenate([np.asarray(b) for _, b in seen])
    err = float(np.max(np.abs(got - diag[i])) / np.max(np.abs(diag)))
    rows.append(
        make_row(
            "naive", "check", [err], unit="relative", size=n, note=f"{i.size} entries, float32"
        )
    )
    return rows


# -- 3: growth with examples, width and depth ------------------------------------------------------


def bench_scaling(s: Settings, x_all, y_all) -> list[dict]:
    """Item 3: ``fast`` and the gradient at every point of each axis (all points interleaved),
    their compiled memory, and the log-log slope of time against size."""
    axes = {
        "examples": [(n, blog_model.BLOG_SIZES, n) for n in s.examples_axis],
        "width": [(w, (784, *(w,) * 4, 10), s.width_examples) for w in s.width_axis],
        "depth": [(d, (784, *(50,) * d, 10), s.depth_examples) for d in s.depth_axis],
    }
    fixed = {
        "examples": "seed MLP 784-50-50-50-50-10",
        "width": f"{s.width_examples:,} examples, 4 hidden layers",
        "depth": f"{s.depth_examples:,} examples, width 50",
    }
    rows = []
    for axis, points in axes.items():
        fns, mems = {}, {}
        for size, sizes, n in points:
            params = mlp.init_mlp(jax.random.key(SEED), sizes)
            x, y = jax.device_put(x_all[:n]), jax.device_put(y_all[:n])
            for name, fn in (("grad", GRAD), ("fast", diag_fn("fast"))):
                exe = compiled(fn, params, x, y)
                fns[(size, name)] = functools.partial(exe, params, x, y)
                mems[(size, name)] = memory(exe)
        log(f"scaling {axis}: compiled {len(points)} points; {s.scaling_rounds} rounds")
        t = interleaved(fns, s.scaling_rounds)  # all points and both methods, in turn
        for size, _, _ in points:
            g = mems[(size, "grad")]
            for name in ("grad", "fast"):
                m = mems[(size, name)]
                rows.append(
                    make_row(
                        "scaling",
                        name,
                        t[(size, name)],
                        axis=axis,
                        size=size,
                        note=fixed[axis],
                        **m,
                        temp_ratio=m["temp_bytes"] / g["temp_bytes"],
                        peak_ratio=m["peak_bytes"] / g["peak_bytes"],
                        **ratio_cols(t[(size, name)], t[(size, "grad")], "grad"),
                    )
                )
        sizes = [p[0] for p in points]
        for name in ("grad", "fast"):
            slope, se = fit_exponent(sizes, [np.median(t[(v, name)]) for v in sizes])
            rows.append(
                {
                    "section": "exponent",
                    "name": name,
                    "axis": axis,
                    "unit": "slope",
                    "median": slope,
                    "q25": slope - se,
                    "q75": slope + se,
                    "repeats": len(sizes),
                    "note": f"log-log least squares over {axis} {sizes[0]:,}-{sizes[-1]:,}; "
                    "q25/q75 = slope -/+ standard error",
                }
            )
    return rows


# -- 4: the pipeline -------------------------------------------------------------------------------

LOAD = """
import json, sys, time
t0 = time.perf_counter()
from obd.study.data import load_mnist
cold = sys.argv[1] == "cold"
times = []
for _ in range(1 if cold else int(sys.argv[2])):
    t = time.perf_counter()
    for split in ("train", "test"):
        load_mnist(split)
    times.append(time.perf_counter() - (t0 if cold else t))
print(json.dumps(times))
"""


def bench_loading(s: Settings) -> list[dict]:
    """Both MNIST splits through TFDS into a fresh cache (cold), then from that cache (warm); each
    in a fresh process, as a notebook would."""
    rows = []
    with tempfile.TemporaryDirectory(prefix="obd-bench-cache-") as cache:
        env = {**os.environ, "OBD_CACHE_DIR": cache}
        for mode, label in (("cold", "TFDS, fresh cache"), ("warm", "from the .npz cache")):
            cmd = [sys.executable, "-c", LOAD, mode, str(s.load_repeats)]
            proc = subprocess.run(cmd, env=env, capture_output=True, text=True)
            if proc.returncode != 0:
                err = (proc.stderr.strip().splitlines() or ["?"])[-1]
                log(f"data loading {mode} failed: {err}")
                rows.append(
                    {
                        "section": "pipeline",
                        "name": f"load MNIST, {mode}",
                        "unit": "s",
                        "note": f"failed: {err[:200]}",
                    }
                )
                break
            times = json.loads(proc.stdout.strip().splitlines()[-1])
            note = f"{label}; train and test splits"
            if mode == "cold":
                note += ", includes importing TensorFlow"
            rows.append(make_row("pipeline", f"load MNIST, {mode}", times, note=note))
    return rows


def bench_pipeline(s: Settings, data) -> list[dict]:
    """Item 4: data loading, one training run, and the pruning sweep cold and warm."""
    rows = bench_loading(s)
    log(f"loading done; training {s.train_steps:,} steps")
    cfg = train.TrainConfig(steps=s.train_steps)
    start = time.perf_counter()
    params, history = train.train(cfg, data, progress=False)
    jax.block_until_ready(params)
    elapsed = time.perf_counter() - start
    acc = history["test_accuracy"].iloc[-1]
    note = "TrainConfig() defaults, one run, includes compiling and evaluating every 1,000 steps"
    rows.append(
        make_row(
            "pipeline",
            f"train {s.train_steps:,} steps",
            [elapsed],
            note=f"{note}; test accuracy {acc:.4f}",
        )
    )
    rows.append(
        make_row(
            "pipeline",
            "train, steps per second",
            [s.train_steps / elapsed],
            unit="steps/s",
            note=f"batch {cfg.batch_size}",
        )
    )
    log(f"sweep {s.sweep_levels} levels on {s.sweep_examples:,} examples")
    x, y = data[2][: s.sweep_examples], data[3][: s.sweep_examples]
    scores = saliencies.saliency("magnitude", params)
    fractions = np.linspace(0, 1, s.sweep_levels)

    def sweep():
        return prune.sweep(params, scores, fractions, x, y)

    times = [time.perf_counter()]
    for _ in range(1 + s.sweep_repeats):  # the first call compiles
        sweep()
        times.append(time.perf_counter())
    times = np.diff(times)
    what = f"{s.sweep_levels} levels, {len(x):,} test images, magnitude scores, global"
    rows.append(
        make_row("pipeline", "pruning sweep, cold", times[:1], note=f"{what}; first call: compiles")
    )
    rows.append(make_row("pipeline", "pruning sweep, warm", times[1:], note=what))
    return rows


def notebook_rows(logs: list[str], out: Path) -> tuple[list[dict], str]:
    """Notebook timings from ``logs``, else those already in ``out/results.csv``."""
    if logs:
        return parse_logs(logs), f"from {', '.join(logs)}"
    old = read_results(out / "results.csv")
    old = old[old["section"] == "notebook"]
    return old.to_dict("records"), "kept from the previous results.csv" if len(old) else "none"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="smoke run: small sizes, < 1 min")
    parser.add_argument("--out", default="bench", help="folder for results.csv and results.md")
    parser.add_argument("--figures", default="figures", help="folder for bench_*.png and .svg")
    parser.add_argument(
        "--logs",
        nargs="*",
        default=None,
        help="make logs with notebook timings (default: logs/reproduce*.log if any)",
    )
    parser.add_argument(
        "--only", nargs="+", choices=["hessian", "scaling", "pipeline"], default=None
    )
    args = parser.parse_args(argv)
    s = QUICK if args.quick else Settings()
    only = set(args.only or ["hessian", "scaling", "pipeline"])
    out = Path(args.out)
    logs = sorted(glob.glob("logs/reproduce*.log")) if args.logs is None else args.logs

    data, data_label = load_data()
    facts = machine_facts(data_label)
    log(
        f"{facts['cpu']}, {facts['cores']} cores, load {facts['load_avg']}, "
        f"jax {facts['jax']} on {facts['device_kind']}; {data_label}"
    )
    start = time.perf_counter()
    rows: list[dict] = []
    if "hessian" in only:
        rows += bench_hessian(s, data[0], data[1])
    if "scaling" in only:
        rows += bench_scaling(s, data[0], data[1])
    if "pipeline" in only:
        rows += bench_pipeline(s, data)
    rows.append(
        make_row(
            "pipeline",
            "this benchmark run" + (" (--quick)" if args.quick else ""),
            [time.perf_counter() - start],
            note="bench/run.py, after loading the data",
        )
    )
    nb, nb_source = notebook_rows(logs, out)
    df = merge(frame(rows, facts), frame(nb, facts)) if nb else frame(rows, facts)
    write_results(df, out)
    paths = plot_all(df, args.figures)
    log(f"notebook timings: {nb_source}")
    log(f"wrote {out / 'results.csv'}, {out / 'results.md'}, {len(paths)} figure files")
    print((out / "results.md").read_text())


if __name__ == "__main__":
    main()

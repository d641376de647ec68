"""Multi-stage global OBS (``obd.obs.global_obs_sweep(..., stages=, resolve=)``): its setting chosen
on validation data, then single- against multi-stage on two networks, with their times.

1. **Choice, validation only.** The study's MLP (784-50x4-10, the blog's protocol) and an
   MLPNet-like network (784-40-20-10 ReLU, no biases, inputs normalised with mean 0.1307 and std
   0.3081, Adam) are trained on the first 55,000 training images (seed 100); every setting of the
   grid prunes them with those 55,000 images as calibration data and is read on the last 5,000
   (never the test set). The study MLP's setting is the one that prunes the largest fraction within
   1 point of its dense validation accuracy (ties: the cheaper); MLPNet's the one most accurate at
   98%.
2. **Test.** The MLPNet-like network trained on all 60,000 images (seed 0), pruned one-shot and
   with its chosen setting (calibration: the 60,000 training images), read on the 10,000 test
   images at 95% and 98%. The study MLP's test numbers come from the pipeline (5 seeds,
   ``results/sweeps/obs_ms-global-plain.csv``).

``python bench/global_obs_stages.py [--quick] [--out bench]`` writes ``<out>/global_obs_stages.csv``
and ``<out>/global_obs_stages.md``. ``--paths`` instead compares, on the same validation model,
the sweep's shared path with a separate multi-stage path to each of a few levels
(``global_obs_paths.{csv,md}``).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pandas as pd

from common import machine_facts
from obd import obs
from obd.batches import batch_indices
from obd.mlp import init_mlp
from obd.pipeline.io import atomic_path, write_text
from obd.study.data import load_mnist
from obd.study.train import TrainConfig, train

MLPNET_SIZES = (784, 40, 20, 10)
MEAN, STD = 0.1307, 0.3081
#: (stages, resolve) settings tried on validation data.
GRID = [(1, False), (4, True), (8, False), (8, True), (16, True)]
LEVELS = np.round(np.concatenate([[0.0, 0.5], np.arange(0.80, 0.995, 0.01)]), 2)


def train_mlpnet(x, y, seed: int, epochs: int) -> list[dict]:
    """MLPNet-like: 784-40-20-10 ReLU without biases (they stay 0), Adam 1e-3, batches of 128."""
    params = init_mlp(jax.random.key(seed), MLPNET_SIZES)
    params = [{"kernel": p["kernel"], "bias": jnp.zeros_like(p["bias"])} for p in params]
    opt = optax.adam(1e-3)
    state = opt.init(params)
    steps = epochs * (len(x) // 128)
    idx = batch_indices(jax.random.key(seed + 1), len(x), steps, 128)
    x, y = jnp.asarray(x), jnp.asarray(y)

    def loss(p, xb, yb):
        h = xb
        for i, layer in enumerate(p):
            h = h @ layer["kernel"]
            if i < len(p) - 1:
                h = jax.nn.relu(h)
        return optax.softmax_cross_entropy_with_integer_labels(h, yb).mean()

    @jax.jit
    def run(params, state, idx):
        def step(carry, batch):
            params, state = carry
            grads = jax.grad(loss)(params, x[batch], y[batch])
            grads = [{"kernel": g["kernel"], "bias": jnp.zeros_like(g["bias"])} for g in grads]
            updates, state = opt.update(grads, state, params)
            return (optax.apply_updates(params, updates), state), None

        return jax.lax.scan(step, (params, state), idx)[0]

    params, _ = run(params, state, idx)
    return params


def tolerated(table: pd.DataFrame, drop: float = 0.01) -> float:
    """Largest fraction pruned with accuracy >= dense - drop (the summary table's measure)."""
    dense = float(table.accuracy.iloc[0])
    ok = table[table.accuracy >= dense - drop - 1e-12]
    return float(ok.fraction.max())


def run_setting(params, xc, yc, xv, yv, stages, resolve, traces, t_first):
    t0 = time.perf_counter()
    table = obs.global_obs_sweep(
        params, xc, yc, LEVELS, xv, yv, traces=traces, stages=stages, resolve=resolve
    )
    later = time.perf_counter() - t0
    at = {
        f: float(table.accuracy[np.isclose(table.fraction, f)].iloc[0]) for f in (0.9, 0.95, 0.98)
    }
    return {
        "stages": stages,
        "resolve": resolve,
        "dense": float(table.accuracy.iloc[0]),
        "tolerated": tolerated(table),
        "acc_90": at[0.9],
        "acc_95": at[0.95],
        "acc_98": at[0.98],
        "seconds": t_first + later,
        "alphas": " ".join(f"{r['alpha']:g}" for r in table.attrs["stages"] if r["alpha"]),
    }


def choose(params, xc, yc, xv, yv, network: str, grid) -> pd.DataFrame:
    t0 = time.perf_counter()
    traces = obs.global_obs_traces(params, xc, yc)
    t_first = time.perf_counter() - t0
    rows = []
    for stages, resolve in grid:
        row = {"part": "validation", "network": network}
        row.update(run_setting(params, xc, yc, xv, yv, stages, resolve, traces, t_first))
        rows.append(row)
        print(row, flush=True)
    return pd.DataFrame(rows)


def compare_paths(mlp, xf, yf, xv, yv, stages, resolve, levels, out: Path) -> None:
    """The shared path of a sweep against a separate path to each level (validation)."""
    table = obs.global_obs_sweep(mlp, xf, yf, LEVELS, xv, yv, stages=stages, resolve=resolve)
    rows = []
    for f in levels:
        t0 = time.perf_counter()
        pruned = obs.global_obs_prune(mlp, xf, yf, f, stages=stages, resolve=resolve)
        seconds = time.perf_counter() - t0
        shared = float(table.accuracy[np.isclose(table.fraction, f)].iloc[0])
        separate = float(obs_accuracy(pruned, xv, yv))
        rows.append({"fraction": f, "shared": shared, "separate": separate, "seconds": seconds})
        print(rows[-1], flush=True)
    df = pd.DataFrame(rows)
    with atomic_path(out / "global_obs_paths.csv") as tmp:
        df.to_csv(tmp, index=False)
    lines = [
        "# Multi-stage global OBS: a sweep's shared path against a separate path to each level",
        "",
        f"`bench/global_obs_stages.py --paths`: the study MLP trained on 55,000 images (seed 100), "
        f"{stages} stages{' with the re-solve' if resolve else ''}, validation accuracy (%) on the "
        "last 5,000 (standard error about 0.3 point at 95%).",
        "",
        "| pruned | shared path (sweep) | separate path | difference (points) |",
        "|---:|---:|---:|---:|",
    ]
    lines += [
        f"| {100 * r.fraction:.0f}% | {100 * r.shared:.2f} | {100 * r.separate:.2f} | "
        f"{100 * (r.shared - r.separate):+.2f} |"
        for r in df.itertuples()
    ]
    write_text(out / "global_obs_paths.md", "\n".join(lines) + "\n")


def obs_accuracy(params, x, y) -> float:
    from obd.mlp import accuracy

    return float(accuracy(params, jnp.asarray(x), jnp.asarray(y)))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="tiny run (checks the script)")
    ap.add_argument("--paths", action="store_true", help="shared against separate paths only")
    ap.add_argument("--out", default=str(Path(__file__).parent))
    args = ap.parse_args(argv)
    (x, y), (xt, yt) = load_mnist("train"), load_mnist("test")
    n_fit = 55_000
    grid, steps, epochs = GRID, 50_000, 10
    if args.quick:
        x, y, xt, yt, n_fit = x[:3000], y[:3000], xt[:1000], yt[:1000], 2500
        grid, steps, epochs = [(1, False), (2, True)], 300, 1
    xf, yf, xv, yv = x[:n_fit], y[:n_fit], x[n_fit:], y[n_fit:]
    frames = []
    if args.paths:
        mlp, _ = train(TrainConfig(seed=100, steps=steps), (xf, yf, xv, yv), progress=False)
        compare_paths(mlp, xf, yf, xv, yv, 8, True, [0.86, 0.9, 0.95], Path(args.out))
        return 0

    # 1. The study MLP, chosen on validation
    cfg = TrainConfig(seed=100, steps=steps)
    mlp, _ = train(cfg, (xf, yf, xv, yv), progress=False)
    frames.append(choose(mlp, xf, yf, xv, yv, "study MLP 784-50x4-10", grid))

    # 1b. MLPNet-like, chosen on validation
    norm = lambda a: ((a - MEAN) / STD).astype(np.float32)  # noqa: E731
    net = train_mlpnet(norm(xf), yf, seed=100, epochs=epochs)
    net_rows = choose(net, norm(xf), yf, norm(xv), yv, "MLPNet-like 784-40-20-10", grid)
    frames.append(net_rows)
    best = net_rows.sort_values(["acc_98", "seconds"], ascending=[False, True]).iloc[0]

    # 2. MLPNet-like on the test set: one-shot against the chosen setting
    net = train_mlpnet(norm(x), y, seed=0, epochs=epochs)
    t0 = time.perf_counter()
    traces = obs.global_obs_traces(net, norm(x), y)
    t_first = time.perf_counter() - t0
    rows = []
    for stages, resolve in dict.fromkeys([(1, False), (int(best.stages), bool(best.resolve))]):
        row = {"part": "test", "network": "MLPNet-like 784-40-20-10"}
        row.update(run_setting(net, norm(x), y, norm(xt), yt, stages, resolve, traces, t_first))
        rows.append(row)
        print(row, flush=True)
    frames.append(pd.DataFrame(rows))
    table = pd.concat(frames, ignore_index=True)

    out = Path(args.out)
    name = "global_obs_stages" + ("-quick" if args.quick else "")
    with atomic_path(out / f"{name}.csv") as tmp:
        table.to_csv(tmp, index=False)
    facts = machine_facts("MNIST")
    lines = [
        "# Multi-stage global OBS: the setting chosen on validation data, single- against "
        "multi-stage",
        "",
        f"`bench/global_obs_stages.py`{' --quick' if args.quick else ''}. {facts['cpu']}, "
        f"{facts['cores']} cores, {facts['backend']} backend, {facts['date']}, load average "
        f"{facts['load_avg']}. Accuracies in %; `pruned within 1 point`: the largest fraction "
        "of the kernel weights pruned at accuracy >= dense - 1 point (levels 80-99% in 1% steps); "
        "seconds: the whole sweep (first stage included) on this machine. Validation: 5,000 images "
        "(binomial standard error about 0.25 point at 97%, 0.4 at 90%); test: 10,000.",
        "",
        "| part | network | stages | re-solve | dense | pruned within 1 point | at 90% | at 95% "
        "| at 98% | seconds | re-solve step lengths |",
        "|---|---|---:|---|---:|---:|---:|---:|---:|---:|---|",
    ]
    for r in table.itertuples():
        lines.append(
            f"| {r.part} | {r.network} | {r.stages} | {'yes' if r.resolve else 'no'} | "
            f"{100 * r.dense:.2f} | {100 * r.tolerated:.0f}% | {100 * r.acc_90:.2f} | "
            f"{100 * r.acc_95:.2f} | {100 * r.acc_98:.2f} | {r.seconds:.0f} | {r.alphas} |"
        )
    write_text(out / f"{name}.md", "\n".join(lines) + "\n")
    print(f"wrote {out / name}.csv and .md")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""What the exact Hessian diagonal costs on a convnet: LeNet-5 over the MNIST training set.

``python bench/convnet.py [--quick]`` (also run by ``make bench``) measures, in one process with
interleaved rounds (``common.interleaved``):

1. the exact diagonal of ``obd.study.architectures.lenet5`` (``obd.hessian.hessian_diag``, ReLU: the factored
   Gauss-Newton path) over ``--examples`` training images (default all 60,000), as a ratio to one
   jitted gradient of the same mean loss over the same images, accumulated over chunks like the
   diagonal's (unchunked, XLA's CPU gradient of LeNet-5 on 60,000 images needs more than 24 GB),
   and the compiled working memory of each. On a 2-core CPU, XLA's convolution gradients are slow
   (one LeNet-5 gradient over 60,000 images takes minutes), so ``--examples 1464`` (8 chunks) is
   the practical setting there; the ratio does not depend on N (item 2);
2. how the diagonal's time and memory grow with the number of examples (log-log slope);
3. the cost of a smooth activation: the same network with ``jnp.tanh`` in place of its ReLU, whose
   exact diagonal carries one extra factor column per activation unit (on a few examples).

Writes ``<out>/convnet.csv`` and ``<out>/convnet.md``.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import optax
import pandas as pd
from flax import nnx

from common import fit_exponent, interleaved, machine_facts, memory, ratio_cols, stats
from obd import hessian, nets
from obd.pipeline.io import write_text
from obd.study import architectures
from obd.study.data import load_mnist

_START = time.perf_counter()


def log(msg: str) -> None:
    print(f"[convnet {time.perf_counter() - _START:6.1f} s] {msg}", file=sys.stderr, flush=True)


def lenet5_tanh(rngs: nnx.Rngs) -> nnx.Sequential:
    """LeNet-5 with ``jnp.tanh`` in place of its one ReLU (after the 500-unit dense layer)."""
    layers = list(architectures.lenet5(rngs).layers)
    return nnx.Sequential(*[jnp.tanh if f is jax.nn.relu else f for f in layers])


def grad_exe(model: nnx.Sequential, x, y, chunk: int = 183):
    """Compiled gradient of the mean cross-entropy over all of ``x``, accumulated over chunks of
    ``chunk`` examples in a ``lax.scan`` (one full-batch gradient, with bounded memory: the
    unchunked gradient of LeNet-5 on 60,000 images needs over 20 GB on the CPU; the default chunk
    is the diagonal's), and its arguments."""
    graphdef, state = nnx.split(model, nnx.Param)
    n = x.shape[0]
    chunk = min(chunk, n)
    if n % chunk:
        raise ValueError(f"the number of examples {n} must be a multiple of the chunk {chunk}")

    def summed(s, xb, yb):
        logits = nnx.merge(graphdef, s)(xb)
        return optax.softmax_cross_entropy_with_integer_labels(logits, yb).sum()

    def grad(s, x, y):
        xs = x.reshape(n // chunk, chunk, *x.shape[1:])
        ys = y.reshape(n // chunk, chunk)

        def step(acc, batch):
            return jax.tree.map(jnp.add, acc, jax.grad(summed)(s, *batch)), None

        total, _ = jax.lax.scan(step, jax.tree.map(jnp.zeros_like, s), (xs, ys))
        return jax.tree.map(lambda t: t / n, total)

    exe = jax.jit(grad).lower(state, x, y).compile()
    return exe, (state, x, y)


def diag_exe(model: nnx.Sequential, x, y):
    """The compiled jitted core of ``hessian_diag`` (for its memory) and a timed call of the
    public function (validation included)."""
    prep = hessian._Prepared(model, x, y, None, None)
    kind = "fast" if prep.net.piecewise_linear else "exact"
    exe = (
        hessian._mean_over_chunks.trace(
            kind,
            prep.net,
            prep.params,
            prep.x,
            prep.y,
            None,
            num=0,
            chunk=prep.chunk,
            n_chunks=prep.n_chunks,
            block=prep.block,
            devices=prep.devices,
        )
        .lower()
        .compile()
    )
    return exe, prep


def _table(df: pd.DataFrame) -> str:
    """A Markdown table of ``df`` (numbers to 3 significant digits)."""
    cols = [
        c for c in ("what", "median", "q25", "q75", "ratio", "temp_MB", "temp_ratio") if c in df
    ]
    fmt = lambda v: v if isinstance(v, str) else ("" if pd.isna(v) else f"{v:.3g}")  # noqa: E731
    lines = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    lines += ["| " + " | ".join(fmt(r[c]) for c in cols) + " |" for _, r in df.iterrows()]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="smoke run with small sizes")
    parser.add_argument("--out", default="bench")
    parser.add_argument(
        "--examples", type=int, default=60_000, help="training images for item 1 (default: all)"
    )
    args = parser.parse_args(argv)
    n_full, rounds = (732, 2) if args.quick else (args.examples, 3)
    growth = tuple(n_full // d for d in (8, 4, 2))  # + n_full, from item 1
    n_smooth = 4

    x_all, y_all = load_mnist("train")
    x_all = nets.as_images(x_all)
    facts = machine_facts("MNIST (tensorflow_datasets mnist/3.0.1)")
    log(f"{facts['cpu']}, {facts['cores']} cores, load {facts['load_avg']}")
    model = architectures.lenet5(nnx.Rngs(0))
    rows = []

    # 1. ratio to one gradient at full size, and memory
    x, y = jax.device_put(x_all[:n_full]), jax.device_put(y_all[:n_full])
    g_exe, g_args = grad_exe(model, x, y)
    d_exe, prep = diag_exe(model, x, y)
    log(f"compiled; chunks of {prep.chunk} x {prep.n_chunks}; {rounds} rounds on {n_full:,}")
    t = interleaved(
        {"grad": lambda: g_exe(*g_args), "diag": lambda: hessian.hessian_diag(model, x, y)}, rounds
    )
    g_mem, d_mem = memory(g_exe), memory(d_exe)
    for name, mem in (("gradient", g_mem), ("exact diagonal", d_mem)):
        col = "grad" if name == "gradient" else "diag"
        rows.append(
            {
                "what": f"LeNet-5 {name}, {n_full:,} images",
                **stats(t[col]),
                **ratio_cols(t[col], t["grad"], "gradient"),
                "temp_MB": mem["temp_bytes"] / 2**20,
                "temp_ratio": mem["temp_bytes"] / g_mem["temp_bytes"],
            }
        )
    # 2. growth with the number of examples
    times = []
    for n in growth:
        xn, yn = jax.device_put(x_all[:n]), jax.device_put(y_all[:n])
        exe, _ = diag_exe(model, xn, yn)
        tn = interleaved({"diag": lambda xn=xn, yn=yn: hessian.hessian_diag(model, xn, yn)}, 3)
        times.append(float(tn["diag"].median()))
        rows.append(
            {
                "what": f"LeNet-5 exact diagonal, {n:,} images",
                **stats(tn["diag"]),
                "temp_MB": memory(exe)["temp_bytes"] / 2**20,
            }
        )
        log(f"growth: {n:,} examples: {times[-1]:.2f} s")
    slope, se = fit_exponent((*growth, n_full), (*times, float(t["diag"].median())))
    # 3. a smooth activation: residual columns, one per activation unit
    smooth = lenet5_tanh(nnx.Rngs(0))
    xs, ys = jax.device_put(x_all[:n_smooth]), jax.device_put(y_all[:n_smooth])
    gs_exe, gs_args = grad_exe(smooth, xs, ys)
    ts = interleaved(
        {
            "grad": lambda: gs_exe(*gs_args),
            "relu": lambda: hessian.hessian_diag(model, xs, ys),
            "tanh": lambda: hessian.hessian_diag(smooth, xs, ys),
        },
        3,
    )
    for col, name in (("relu", "ReLU (Gauss-Newton = exact)"), ("tanh", "tanh (exact, residuals)")):
        rows.append(
            {
                "what": f"LeNet-5 {name}, {n_smooth} images",
                **stats(ts[col]),
                **ratio_cols(ts[col], ts["grad"], "gradient (tanh net)"),
            }
        )
    df = pd.DataFrame(rows)
    out = Path(args.out)
    write_text(out / "convnet.csv", df.to_csv(index=False))
    ratio = df.iloc[1]["ratio"]
    lines = [
        "# LeNet-5: the exact Hessian diagonal against one gradient",
        "",
        f"Machine: {facts['cpu']}, {facts['cores']} cores, {facts['device_kind']}, "
        f"jax {facts['jax']}, load {facts['load_avg']}, {facts['date']}.",
        "",
        f"* Exact diagonal over {n_full:,} training images: **{ratio:.2f}x** one full-batch "
        f"gradient [IQR {df.iloc[1]['ratio_q25']:.2f}-{df.iloc[1]['ratio_q75']:.2f}], "
        f"{df.iloc[1]['temp_ratio']:.2f}x its working memory (chunks of {prep.chunk}).",
        f"* Growth with the number of examples: time ~ N^{slope:.2f} (+/- {se:.2f}); memory "
        "flat (chunked).",
        f"* Smooth activation (tanh after the 500-unit layer), {n_smooth} images: exact diagonal "
        f"{df.iloc[-1]['ratio']:.1f}x its gradient, against {df.iloc[-2]['ratio']:.1f}x for ReLU "
        "(one extra factor column per activation unit).",
        "",
        _table(df),
        "",
    ]
    write_text(out / "convnet.md", "\n".join(lines))
    print("\n".join(lines))


if __name__ == "__main__":
    main()

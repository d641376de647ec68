"""Training the blog's MLP with Adam, as the blog did, deterministically and fast.

The blog's protocol: Adam (lr 1e-4), batches of 64 drawn from per-epoch shuffles of the 60,000
training images, 50,000 steps, and the loss summed (not averaged) over the batch, as the blog's
``tf.reduce_sum`` did. Adam is nearly invariant to that scale (only its epsilon sees it), so the
choice changes little, but it is kept for fidelity. The inner loop is a ``lax.scan`` over chunks of
steps, jitted once; the same seed gives the same parameters on the same machine.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pandas as pd
from tqdm.auto import tqdm

from obd.batches import REDUCTIONS, batch_indices
from obd.checks import check_converging, check_examples, check_number, check_trainable
from obd.mlp import apply_mlp, init_mlp
from obd.network import Params, activation_fn
from obd.study.model import BLOG_SIZES

Data = tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]


@dataclass(frozen=True)
class TrainConfig:
    """Training hyper-parameters; the defaults are the blog's protocol."""

    seed: int = 0
    steps: int = 50_000
    batch_size: int = 64
    learning_rate: float = 1e-4
    dropout_rate: float = 0.0
    sizes: tuple[int, ...] = BLOG_SIZES
    activation: str = "relu"
    loss_reduction: str = "sum"
    chunk_steps: int = 1_000

    def __post_init__(self) -> None:
        # types first: a string or a float step count would otherwise fail deep inside JAX
        check_number("seed", self.seed, lo=0, integer=True)
        for name in ("steps", "batch_size", "chunk_steps"):
            check_number(name, getattr(self, name), lo=1, integer=True)
        check_number("learning_rate", self.learning_rate, lo=0, lo_open=True)
        check_number("dropout_rate", self.dropout_rate, lo=0, hi=1, hi_open=True)
        if self.loss_reduction not in REDUCTIONS:
            raise ValueError(
                f"loss_reduction {self.loss_reduction!r} unknown; accepted: {', '.join(REDUCTIONS)}"
            )
        if not isinstance(self.activation, str):
            raise ValueError(f"activation must be a name (str), got {self.activation!r}")
        activation_fn(self.activation)
        if isinstance(self.sizes, str) or not hasattr(self.sizes, "__iter__"):
            raise ValueError(f"sizes must be a sequence of layer widths, got {self.sizes!r}")
        for s in self.sizes:
            check_number("sizes entry", s, lo=1, integer=True)
        if len(self.sizes) < 2:
            raise ValueError(f"sizes must hold >= 2 layer widths, got {self.sizes!r}")
        for name in ("seed", "steps", "batch_size", "chunk_steps"):
            object.__setattr__(self, name, int(getattr(self, name)))
        for name in ("learning_rate", "dropout_rate"):
            object.__setattr__(self, name, float(getattr(self, name)))
        object.__setattr__(self, "sizes", tuple(int(s) for s in self.sizes))

    def to_dict(self) -> dict:
        """JSON-serialisable form, stored in checkpoints' meta."""
        return dataclasses.asdict(self)


def _make_chunk_fn(cfg: TrainConfig, opt: optax.GradientTransformation, x, y, drop_key):
    def batch_loss(params, xb, yb, key):
        logits = apply_mlp(
            params, xb, activation=cfg.activation, dropout_rate=cfg.dropout_rate, key=key
        )
        ce = optax.softmax_cross_entropy_with_integer_labels(logits, yb)
        return ce.sum() if cfg.loss_reduction == "sum" else ce.mean()

    def step(carry, inputs):
        params, opt_state = carry
        idx, t = inputs
        key = jax.random.fold_in(drop_key, t) if cfg.dropout_rate > 0 else None
        value, grads = jax.value_and_grad(batch_loss)(params, x[idx], y[idx], key)
        updates, opt_state = opt.update(grads, opt_state, params)
        mean = value / idx.shape[0] if cfg.loss_reduction == "sum" else value  # per example
        return (optax.apply_updates(params, updates), opt_state), mean

    @jax.jit
    def run_chunk(params, opt_state, idx, ts):
        (params, opt_state), losses = jax.lax.scan(step, (params, opt_state), (idx, ts))
        return params, opt_state, losses.mean(), jnp.argmin(jnp.isfinite(losses))

    return run_chunk


def train(
    config: TrainConfig | None = None, data: Data | None = None, *, progress: bool = True
) -> tuple[Params, pd.DataFrame]:
    """Train an MLP; return its parameters and a history table.

    ``data`` is ``(x_train, y_train, x_test, y_test)``; by default MNIST via :func:`obd.study.data.load_mnist`.
    The history has one row per chunk of ``config.chunk_steps`` steps: ``step``, ``train_loss``
    (mean per-example cross-entropy over the chunk's batches, with dropout active), ``test_loss``
    and ``test_accuracy`` (no dropout).
    """
    cfg = config or TrainConfig()
    if data is None:
        from obd.study.data import load_mnist

        data = (*load_mnist("train"), *load_mnist("test"))
    if not isinstance(data, tuple | list) or len(data) != 4:
        raise ValueError("data must be a tuple (x_train, y_train, x_test, y_test)")
    x_tr, y_tr, x_te, y_te = (jnp.asarray(a) for a in data)
    for xs, ys, which in ((x_tr, y_tr, "training"), (x_te, y_te, "test")):
        if xs.ndim != 2 or xs.shape[1] != cfg.sizes[0] or ys.shape != xs.shape[:1]:
            raise ValueError(
                f"{which} data must be x [N, {cfg.sizes[0]}] and y [N]; got {xs.shape}, {ys.shape}"
            )
        pre = "x_train" if which == "training" else "x_test"
        check_examples(xs, ys, num_classes=cfg.sizes[-1], name=pre, label_name="y" + pre[1:])
        check_trainable([], xs, name=pre)

    k_init, k_data, k_drop = jax.random.split(jax.random.key(cfg.seed), 3)
    params = init_mlp(k_init, cfg.sizes)
    opt = optax.adam(cfg.learning_rate)
    opt_state = opt.init(params)
    idx = batch_indices(k_data, x_tr.shape[0], cfg.steps, cfg.batch_size)
    run_chunk = _make_chunk_fn(cfg, opt, x_tr, y_tr, k_drop)

    @jax.jit
    def evaluate(params):
        logits = apply_mlp(params, x_te, activation=cfg.activation)
        ce = optax.softmax_cross_entropy_with_integer_labels(logits, y_te).mean()
        return ce, (logits.argmax(-1) == y_te).mean()

    rows = []
    bar = tqdm(total=cfg.steps, desc=f"train seed={cfg.seed}", unit="step", disable=not progress)
    for start in range(0, cfg.steps, cfg.chunk_steps):
        stop = min(start + cfg.chunk_steps, cfg.steps)
        params, opt_state, train_loss, first_bad = run_chunk(
            params, opt_state, idx[start:stop], jnp.arange(start, stop)
        )
        test_loss, test_acc = evaluate(params)
        check_converging(train_loss, first_bad, start)  # one scalar per chunk, synced below anyway
        rows.append((stop, float(train_loss), float(test_loss), float(test_acc)))
        bar.update(stop - start)
        bar.set_postfix(test_acc=f"{float(test_acc):.4f}")
    bar.close()
    history = pd.DataFrame(rows, columns=["step", "train_loss", "test_loss", "test_accuracy"])
    return params, history

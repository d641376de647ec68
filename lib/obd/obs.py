"""Optimal Brain Surgeon, layer-wise (OBC-style exact greedy OBS per output unit).

For a dense layer ``z = h W + b`` (kernel ``W`` is ``[in, out]``) and a calibration set whose inputs
to the layer are the rows of ``X`` (``[n, in]``, taken from the *unpruned* network), pruning asks
for a sparse ``W'`` that keeps the layer's output: minimise the reconstruction error

    E(W') = ||X W - X W'||^2 / n = sum_o 1/2 (w_o - w'_o)^T H (w_o - w'_o),   H = 2 X^T X / n.

Every output unit ``o`` (column ``w_o`` of the kernel) has its own quadratic with the *same*
Hessian ``H``, so the problem splits into ``out`` independent OBS problems. For one unit, Optimal
Brain Surgeon removes the weight ``q`` of least saliency ``w_q^2 / (2 [H^-1]_qq)`` (exactly the
increase of ``E``) and moves the remaining weights to the new optimum,
``w <- w - w_q H^-1[:, q] / [H^-1]_qq``; the inverse Hessian of the remaining weights is then
``H^-1 - H^-1[:, q] H^-1[q, :] / [H^-1]_qq`` (the row and column ``q`` vanish). Repeating this
greedily, one weight at a time, is OBC's row-wise "ExactOBS" (Frantar & Alistarh 2022); it is exact
OBS at every step (no SparseGPT approximation). One pass over all ``in`` removals records the unit's
weights after every removal count, so a whole sweep of sparsity levels costs one pass per unit.

``damping`` adds ``damping * mean(diag H)`` to the diagonal (``H`` is singular when inputs are
dead, e.g. MNIST's border pixels or dead ReLUs); the saliencies and updates are then those of the
damped quadratic. Biases are kept.

Allocation within a layer (the layer is pruned to a fraction ``f``: ``k = floor(f n + 0.5)`` of its
``n = in * out`` kernel weights, as ``obd.prune`` with scope ``"layerwise"``):

* ``"layer"`` (default, as OBC): the units' error increments are made monotone along each unit's
  trace by a running maximum and the ``k`` smallest are taken over the whole layer (stable order,
  so each unit takes a prefix of its own removal order): units whose weights are cheap to remove
  lose more of them.
* ``"unit"``: every unit loses ``k // out`` weights, the first ``k % out`` units one more.
"""

from __future__ import annotations

from dataclasses import dataclass

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pandas as pd

from obd.model import Params, activation_fn, layer_sizes
from obd.prune import prune_counts, sweep_table

ALLOCATIONS: tuple[str, ...] = ("layer", "unit")
_LEVEL_BYTES = 2**28  # activations per chunk of levels in :func:`obs_sweep`


@dataclass(frozen=True)
class LayerTrace:
    """The greedy OBS pass over one layer, unit by unit.

    ``weights[o, j]`` is unit ``o``'s weight vector (over the layer's inputs) after ``j`` removals
    (``j = 0 .. in``); ``order[o, j]`` the input removed at step ``j``; ``increments[o, j]`` the
    increase of the (damped) reconstruction error of unit ``o`` at that step.
    """

    weights: np.ndarray  # [out, in + 1, in]
    order: np.ndarray  # [out, in]
    increments: np.ndarray  # [out, in]

    @property
    def shape(self) -> tuple[int, int]:
        """The layer's kernel shape ``(in, out)``."""
        return self.order.shape[1], self.order.shape[0]


def layer_hessian(x, damping: float = 0.01) -> np.ndarray:
    """``2 X^T X / n`` plus ``damping * mean(diag)`` on the diagonal (float64)."""
    damping = _check_damping(damping)
    x = jnp.asarray(x)
    if x.ndim != 2 or x.shape[0] < 1:
        raise ValueError(f"x must be [n, in] with n >= 1 examples, got shape {x.shape}")
    h = 2.0 * np.asarray(x.T @ x, np.float64) / x.shape[0]
    mean_diag = float(np.mean(np.diag(h)))
    h[np.diag_indices_from(h)] += damping * mean_diag
    return h


def _check_damping(damping) -> float:
    if isinstance(damping, bool) or not isinstance(damping, int | float | np.floating):
        raise ValueError(f"damping must be a number >= 0, got {damping!r}")
    if not (np.isfinite(damping) and damping >= 0):
        raise ValueError(f"damping must be finite and >= 0, got {damping!r}")
    return float(damping)


def _inverse(h: np.ndarray) -> np.ndarray:
    """Inverse of the symmetric ``h``; ``ValueError`` unless it is positive definite."""
    try:
        c = np.linalg.cholesky(h)
    except np.linalg.LinAlgError:
        raise ValueError(
            "the layer Hessian 2 X^T X / n is singular (dead inputs or fewer examples than "
            "inputs): use damping > 0"
        ) from None
    c_inv = np.linalg.inv(c)
    return c_inv.T @ c_inv


def obs_unit_trace(w: jax.Array, hinv: jax.Array) -> tuple[jax.Array, jax.Array, jax.Array]:
    """Greedy OBS on one unit's weights ``w`` ``[d]`` with inverse Hessian ``hinv`` ``[d, d]``.

    Returns the weights after each of ``0 .. d`` removals ``[d + 1, d]``, the removal order
    ``[d]`` and each removal's error increase ``w_q^2 / (2 [H^-1]_qq)`` ``[d]``. Removed weights
    are exactly zero. Traceable (jit / vmap).
    """
    d = w.shape[0]

    def step(carry, _):
        w, hinv, pruned = carry
        diag = jnp.diagonal(hinv)
        score = jnp.where(pruned, jnp.inf, w * w / diag)
        q = jnp.argmin(score)
        hq = hinv[:, q]
        w = jnp.where(pruned, 0.0, w - hq * (w[q] / hq[q])).at[q].set(0.0)
        # Rows/columns of removed weights are numerically ~0 and never read again for the rest.
        hinv = hinv - jnp.outer(hq, hq / hq[q])
        return (w, hinv, pruned.at[q].set(True)), (w, q, 0.5 * score[q])

    _, (ws, order, inc) = jax.lax.scan(step, (w, hinv, jnp.zeros(d, bool)), None, length=d)
    return jnp.concatenate([w[None], ws]), order, inc


@jax.jit
def _kernel_trace(kernel: jax.Array, hinv: jax.Array):
    # lax.map in small batches: a few units' [d, d] inverses stay in cache.
    return jax.lax.map(lambda w: obs_unit_trace(w, hinv), kernel.T, batch_size=4)


def obs_layer_trace(kernel, x, *, damping: float = 0.01) -> LayerTrace:
    """The greedy OBS pass over every output unit of one layer (``kernel`` ``[in, out]``, layer
    inputs ``x`` ``[n, in]``)."""
    kernel = jnp.asarray(kernel)
    if kernel.ndim != 2:
        raise ValueError(f"kernel must be [in, out], got shape {kernel.shape}")
    x = jnp.asarray(x)
    if x.ndim != 2 or x.shape[1] != kernel.shape[0]:
        raise ValueError(f"x must be [n, {kernel.shape[0]}] (the layer's inputs), got {x.shape}")
    if not jnp.issubdtype(kernel.dtype, jnp.floating):
        raise ValueError(f"kernel must be floating point, got {kernel.dtype}")
    hinv = jnp.asarray(_inverse(layer_hessian(x, damping)), kernel.dtype)
    weights, order, inc = _kernel_trace(kernel, hinv)
    return LayerTrace(np.asarray(weights), np.asarray(order), np.asarray(inc))


def layer_inputs(params: Params, x, *, activation: str = "relu") -> list[jax.Array]:
    """Each layer's input on ``x`` through the (unpruned) network ``params``."""
    act = activation_fn(activation)
    h, out = jnp.asarray(x), []
    for i, layer in enumerate(params):
        out.append(h)
        if i < len(params) - 1:
            h = act(h @ layer["kernel"] + layer["bias"])
    return out


def obs_traces(
    params: Params, x_calib, *, damping: float = 0.01, activation: str = "relu"
) -> list[LayerTrace]:
    """:func:`obs_layer_trace` of every layer, with inputs from the unpruned network on
    ``x_calib`` (so the layers are independent and one pass serves every sparsity level)."""
    sizes = layer_sizes(params)
    activation_fn(activation)
    _check_damping(damping)
    x_calib = jnp.asarray(x_calib)
    if x_calib.ndim != 2 or x_calib.shape[1] != sizes[0] or x_calib.shape[0] < 1:
        raise ValueError(
            f"x_calib must be [n, {sizes[0]}] with n >= 1 examples, got {x_calib.shape}"
        )
    xs = layer_inputs(params, x_calib, activation=activation)
    return [
        obs_layer_trace(layer["kernel"], h, damping=damping)
        for layer, h in zip(params, xs, strict=True)
    ]


def allocate(increments: np.ndarray, k, allocation: str = "layer") -> np.ndarray:
    """Removals per unit (``[levels, out]``, or ``[out]`` for a scalar ``k``) for ``k`` removals
    in the layer (see the module docstring); ``increments`` is ``[out, in]``."""
    if allocation not in ALLOCATIONS:
        raise ValueError(f"unknown allocation {allocation!r}; accepted: {', '.join(ALLOCATIONS)}")
    increments = np.asarray(increments)
    out, d = increments.shape
    k = np.asarray(k, np.int64)
    if np.any((k < 0) | (k > out * d)):
        raise ValueError(f"k must be in [0, {out * d}], got {k}")
    kk = np.atleast_1d(k)
    if allocation == "unit":
        counts = kk[:, None] // out + (np.arange(out)[None, :] < (kk[:, None] % out))
    else:
        inc = np.nan_to_num(increments.astype(np.float64), nan=np.inf)
        monotone = np.maximum.accumulate(inc, axis=1).ravel()
        rank = np.empty(monotone.size, np.int64)
        rank[np.argsort(monotone, kind="stable")] = np.arange(monotone.size)
        rank = rank.reshape(out, d)
        # units take prefixes of their order: count_o(k) = #{j: rank[o, j] < k}
        sorted_rank = np.sort(rank, axis=1)
        counts = np.stack([np.searchsorted(r, kk, side="left") for r in sorted_rank], axis=1)
    return counts if k.ndim else counts[0]


def _layer_kernels(trace: LayerTrace, counts: np.ndarray) -> np.ndarray:
    """Kernels ``[levels, in, out]`` with unit ``o`` taken after ``counts[level, o]`` removals."""
    w = np.take_along_axis(trace.weights[None], counts[:, :, None, None], axis=2)[:, :, 0]
    return np.swapaxes(w, 1, 2)


def _fractions(fractions) -> np.ndarray:
    prune_counts(fractions, 1)  # validates: numbers, finite, in [0, 1], ndim <= 1
    return np.atleast_1d(np.asarray(fractions, np.float64))


def _check_traces(params: Params, traces) -> None:
    sizes = layer_sizes(params)
    if len(traces) != len(params) or any(
        t.shape != (a, b) for t, a, b in zip(traces, sizes[:-1], sizes[1:], strict=True)
    ):
        raise ValueError("traces do not match params: pass the obs_traces of these params")


def _kernels_at(traces, fractions: np.ndarray, allocation: str) -> tuple[list, np.ndarray]:
    """Per layer the kernels at every level, and the number pruned at every level."""
    kernels, n_pruned = [], np.zeros(len(fractions), np.int64)
    for t in traces:
        d_in, d_out = t.shape
        k = prune_counts(fractions, d_in * d_out)
        kernels.append(_layer_kernels(t, allocate(t.increments, k, allocation)))
        n_pruned += k
    return kernels, n_pruned


def obs_prune(
    params: Params,
    x_calib,
    fraction: float,
    *,
    damping: float = 0.01,
    allocation: str = "layer",
    activation: str = "relu",
    traces: list[LayerTrace] | None = None,
) -> Params:
    """Prune ``fraction`` of every layer's kernel by layer-wise greedy OBS with weight updates.

    ``k = floor(fraction * n + 0.5)`` of each layer's ``n`` kernel weights become exactly zero and
    the others are updated to minimise the layer's reconstruction error on ``x_calib`` (its inputs
    through the unpruned network). Biases are unchanged. ``traces`` (from :func:`obs_traces` on the
    same ``params``) skips the OBS passes.
    """
    f = np.asarray(fraction, np.float64)
    if f.ndim != 0:
        raise ValueError(f"fraction must be a single number in [0, 1], got {fraction!r}")
    if allocation not in ALLOCATIONS:
        raise ValueError(f"unknown allocation {allocation!r}; accepted: {', '.join(ALLOCATIONS)}")
    if traces is None:
        traces = obs_traces(params, x_calib, damping=damping, activation=activation)
    _check_traces(params, traces)
    kernels, _ = _kernels_at(traces, _fractions(f), allocation)
    return [
        {
            "kernel": jnp.asarray(k[0], jnp.asarray(p["kernel"]).dtype),
            "bias": jnp.asarray(p["bias"]),
        }
        for p, k in zip(params, kernels, strict=True)
    ]


@jax.jit(static_argnames=("activation", "level_batch"))
def _evaluate(kernels, biases, x, y, activation: str, level_batch: int):
    act = activation_fn(activation)

    def metrics(ks):
        h = x
        for i, (k, b) in enumerate(zip(ks, biases, strict=True)):
            h = h @ k + b
            if i < len(ks) - 1:
                h = act(h)
        ce = optax.softmax_cross_entropy_with_integer_labels(h, y).mean()
        return (h.argmax(-1) == y).mean(), ce

    return jax.lax.map(metrics, kernels, batch_size=level_batch)


def obs_sweep(
    params: Params,
    x_calib,
    fractions,
    x_test,
    y_test,
    *,
    damping: float = 0.01,
    allocation: str = "layer",
    activation: str = "relu",
    traces: list[LayerTrace] | None = None,
    level_batch: int | None = None,
) -> pd.DataFrame:
    """Layer-wise OBS at each of ``fractions`` (no retraining), evaluated on ``(x_test, y_test)``.

    One greedy pass per layer (:func:`obs_traces`) serves every level. The columns are those of
    :func:`obd.prune.sweep`: ``fraction``, ``pruned_fraction``, ``n_pruned``, ``accuracy``,
    ``loss``.
    """
    sizes = layer_sizes(params)
    fractions = _fractions(fractions)
    if allocation not in ALLOCATIONS:
        raise ValueError(f"unknown allocation {allocation!r}; accepted: {', '.join(ALLOCATIONS)}")
    x_test, y_test = jnp.asarray(x_test), jnp.asarray(y_test)
    if x_test.ndim != 2 or x_test.shape[1] != sizes[0] or y_test.shape != x_test.shape[:1]:
        raise ValueError(
            f"x_test must be [N, {sizes[0]}] and y_test [N]; got {x_test.shape}, {y_test.shape}"
        )
    if traces is None:
        traces = obs_traces(params, x_calib, damping=damping, activation=activation)
    _check_traces(params, traces)
    kernels, n_pruned = _kernels_at(traces, fractions, allocation)
    dtype = jnp.asarray(params[0]["kernel"]).dtype
    if level_batch is None:
        level_batch = max(1, _LEVEL_BYTES // (4 * len(x_test) * max(sizes[1:])))
    level_batch = int(min(level_batch, len(fractions)))
    acc, ce = _evaluate(
        [jnp.asarray(k, dtype) for k in kernels],
        [jnp.asarray(p["bias"]) for p in params],
        x_test,
        y_test,
        activation,
        level_batch,
    )
    n = sum(a * b for a, b in zip(sizes[:-1], sizes[1:], strict=True))
    return sweep_table(fractions, n_pruned, n, acc, ce)

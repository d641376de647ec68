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

import jax
import jax.numpy as jnp
import numpy as np
import pandas as pd

from obd.checks import check_examples, check_finite_params, check_float
from obd.mlp import layer_sizes
from obd.network import Params, activation_fn
from obd.obs.greedy import LayerTrace, check_damping, obs_unit_trace, spd_inverse
from obd.obs.levels import (
    check_fractions,
    check_traces,
    kernels_table,
    layer_kernels,
    with_kernels,
    zero_counts,
)
from obd.prune import prune_counts

ALLOCATIONS: tuple[str, ...] = ("layer", "unit")


def layer_hessian(x, damping: float = 0.01) -> np.ndarray:
    """``2 X^T X / n`` plus ``damping * mean(diag)`` on the diagonal (float64)."""
    damping = check_damping(damping)
    check_float(x)
    x = jnp.asarray(x)
    if x.ndim != 2 or x.shape[0] < 1:
        raise ValueError(f"x must be [n, in] with n >= 1 examples, got shape {x.shape}")
    h = 2.0 * np.asarray(x.T @ x, np.float64) / x.shape[0]
    if not np.isfinite(h).all():  # [in, in]: a cheap check, after the product
        raise ValueError(
            "the layer's inputs hold NaN or inf values, or overflow in X^T X: check the inputs "
            "and the weights (they must be finite)"
        )
    mean_diag = float(np.mean(np.diag(h)))
    h[np.diag_indices_from(h)] += damping * mean_diag
    return h


def _inverse(h: np.ndarray) -> np.ndarray:
    """Inverse of the symmetric ``h``; ``ValueError`` unless it is positive definite."""
    inv = spd_inverse(h)
    if inv is None:
        raise ValueError(
            "the layer Hessian 2 X^T X / n is singular (dead inputs or fewer examples than "
            "inputs): use damping > 0"
        )
    return inv


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
    check_damping(damping)
    shape = np.shape(x_calib)
    if len(shape) != 2 or shape[1] != sizes[0] or shape[0] < 1:
        raise ValueError(f"x_calib must be [n, {sizes[0]}] with n >= 1 examples, got {shape}")
    check_examples(x_calib, name="x_calib")
    x_calib = jnp.asarray(x_calib)
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


def _kernels_at(traces, fractions: np.ndarray, allocation: str) -> tuple[list, np.ndarray]:
    """Per layer the kernels at every level, and the number pruned at every level."""
    kernels, n_pruned = [], np.zeros(len(fractions), np.int64)
    for t in traces:
        d_in, d_out = t.shape
        k = prune_counts(fractions, d_in * d_out)
        kernels.append(layer_kernels(t, allocate(t.increments, k, allocation)))
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
    check_traces(params, traces)
    kernels, _ = _kernels_at(traces, check_fractions(f), allocation)
    return with_kernels(params, kernels)


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
    ``loss``. ``n_pruned`` counts the kernel weights that are zero at each level: weights already
    zero have zero saliency, so greedy OBS removes them first (at no cost, without update) and
    they count toward the requested fraction; a layer holding more zeros than a level prunes
    keeps them all (with allocation ``"unit"``, each unit's zeros count toward its own share).
    """
    sizes = layer_sizes(params)
    check_finite_params(params)
    fractions = check_fractions(fractions)
    if allocation not in ALLOCATIONS:
        raise ValueError(f"unknown allocation {allocation!r}; accepted: {', '.join(ALLOCATIONS)}")
    activation_fn(activation)
    xs, ys = np.shape(x_test), np.shape(y_test)
    if len(xs) != 2 or xs[1] != sizes[0] or ys != xs[:1]:
        raise ValueError(f"x_test must be [N, {sizes[0]}] and y_test [N]; got {xs}, {ys}")
    check_examples(x_test, y_test, num_classes=sizes[-1], name="x_test", label_name="y_test")
    x_test, y_test = jnp.asarray(x_test), jnp.asarray(y_test)
    if traces is None:
        traces = obs_traces(params, x_calib, damping=damping, activation=activation)
    check_traces(params, traces)
    kernels, removed = _kernels_at(traces, fractions, allocation)
    n = sum(a * b for a, b in zip(sizes[:-1], sizes[1:], strict=True))
    n_pruned = zero_counts([p["kernel"] for p in params], kernels, removed)
    return kernels_table(
        params, kernels, fractions, n_pruned, n, x_test, y_test, activation, level_batch
    )

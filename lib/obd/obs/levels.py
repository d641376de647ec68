"""From greedy OBS traces to pruned kernels at every sparsity level, and their sweep table.

Shared by layer-wise OBS (:mod:`obd.obs.layerwise`, :mod:`obd.obs.conv`) and global OBS
(:mod:`obd.obs.global_obs`): a unit that has lost ``j`` weights takes its weights after ``j``
greedy removals; a level's kernels are evaluated on the test set as :func:`obd.prune.sweep` does.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pandas as pd

from obd.mlp import layer_sizes
from obd.network import Params, activation_fn
from obd.obs.greedy import LayerTrace
from obd.prune import prune_counts, sweep_table

_LEVEL_BYTES = 2**28  # activations per chunk of levels in :func:`kernels_table`


def with_kernels(params: Params, kernels: list[np.ndarray]) -> Params:
    """``params`` with each layer's kernel replaced by the first level of ``kernels`` (a
    ``[levels, in, out]`` array per layer), in the kernel's dtype; the biases are kept."""
    return [
        {
            "kernel": jnp.asarray(k[0], jnp.asarray(p["kernel"]).dtype),
            "bias": jnp.asarray(p["bias"]),
        }
        for p, k in zip(params, kernels, strict=True)
    ]


def layer_kernels(trace: LayerTrace, counts: np.ndarray) -> np.ndarray:
    """Kernels ``[levels, in, out]`` with unit ``o`` taken after ``counts[level, o]`` removals."""
    w = np.take_along_axis(trace.weights[None], counts[:, :, None, None], axis=2)[:, :, 0]
    return np.swapaxes(w, 1, 2)


def check_fractions(fractions) -> np.ndarray:
    """``fractions`` as a 1-D float64 array; ``ValueError`` unless numbers in [0, 1]."""
    prune_counts(fractions, 1)  # validates: numbers, finite, in [0, 1], ndim <= 1
    return np.atleast_1d(np.asarray(fractions, np.float64))


def check_traces(params: Params, traces) -> None:
    """``ValueError`` unless ``traces`` has one trace per layer of ``params``, of its shape."""
    sizes = layer_sizes(params)
    if len(traces) != len(params) or any(
        t.shape != (a, b) for t, a, b in zip(traces, sizes[:-1], sizes[1:], strict=True)
    ):
        raise ValueError("traces do not match params: pass the obs_traces of these params")


def zero_counts(original: list, kernels: list[np.ndarray], removed: np.ndarray) -> np.ndarray:
    """The ``n_pruned`` of a sweep: kernel weights equal to zero at each level, over all layers
    (``kernels``, each ``[levels, ...]``), weights that were zero before pruning included.

    When no ``original`` kernel holds a zero (a dense model), that count is ``removed`` (the
    removals at each level: removed weights are exactly zero, the others keep nonzero values), and
    the kernels are not scanned.
    """
    if not any(np.any(np.asarray(k) == 0) for k in original):
        return removed
    return sum(np.count_nonzero(np.reshape(k, (len(k), -1)) == 0, axis=1) for k in kernels)


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


def kernels_table(
    params, kernels, fractions, n_pruned, n, x_test, y_test, activation, level_batch
) -> pd.DataFrame:
    """The sweep table of ``kernels`` (per layer, ``[levels, in, out]``) with ``params``' biases,
    evaluated on ``(x_test, y_test)`` in chunks of ``level_batch`` levels (default: ~256 MB)."""
    sizes = layer_sizes(params)
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
    return sweep_table(fractions, n_pruned, n, acc, ce)

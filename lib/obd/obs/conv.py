"""Layer-wise Optimal Brain Surgeon for NNX models: dense and convolutional layers alike.

``obd.obs.layerwise`` prunes a dense layer ``z = h W + b`` by exact greedy OBS per output unit on the layer
Hessian ``H = 2 X^T X / n`` of its inputs ``X`` (the reconstruction error of the layer's output).
A convolution is the same problem once unrolled (im2col): output channel ``o`` at position ``p``
is ``patch_p . W[:, o]`` with ``W`` the kernel reshaped to ``[kh * kw * in, out]``, so the rows of
``X`` are the input patches of every example at every output position, and every output channel
is one OBS problem on the shared ``H``. This module builds those design matrices from the
unpruned network on calibration images, runs ``obd.obs.layerwise.obs_layer_trace`` on each layer and
evaluates every sparsity level, like ``obd.obs.layerwise.obs_sweep`` does for the plain MLP.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pandas as pd

from obd.checks import check_examples, check_finite_params
from obd.network import Conv, Dense, Network, as_network, input_check
from obd.obs.layerwise import ALLOCATIONS, allocate, obs_layer_trace
from obd.obs.levels import layer_kernels, zero_counts
from obd.prune import prune_counts, sweep_table


def design_matrices(net: Network, params: list, x: jax.Array) -> list[jax.Array]:
    """For each parametric layer, its inputs as rows ``[rows, fan_in]``: the layer input for a
    dense layer, the im2col patches of every output position for a convolution."""
    out, h = [], x
    for op in net.ops:
        if isinstance(op, Dense):
            out.append(h)
        elif isinstance(op, Conv):
            p = op.patches(h, params[op.slot]["kernel"].shape)
            out.append(p.reshape(-1, p.shape[-1]))
        h = net.apply_op(op, params, h)
    return out


def _level_metrics(net: Network, params: list, kernels: list, x, y):
    layers = [
        dict(layer, kernel=k.reshape(layer["kernel"].shape))
        for layer, k in zip(params, kernels, strict=True)
    ]
    logits = net.predict(layers, x)
    ce = optax.softmax_cross_entropy_with_integer_labels(logits, y).mean()
    return (logits.argmax(-1) == y).mean(), ce


def obs_sweep_model(
    model: Any,
    x_calib: Any,
    fractions: Any,
    x_test: Any,
    y_test: Any,
    *,
    damping: float = 0.01,
    allocation: str = "layer",
) -> pd.DataFrame:
    """Layer-wise OBS of an ``nnx.Sequential`` (or the plain MLP) at every level of
    ``fractions`` (each parametric layer pruned to that fraction of its kernel, biases kept),
    evaluated on ``(x_test, y_test)``; the columns of ``obd.prune.sweep``.

    The traces come from the unpruned network's layer inputs on ``x_calib``; ``damping`` and
    ``allocation`` are those of ``obd.obs.layerwise``. ``n_pruned`` counts the kernel weights that are
    zero at each level, those already zero included (``obd.obs.layerwise.obs_sweep``).
    """
    if allocation not in ALLOCATIONS:
        raise ValueError(f"unknown allocation {allocation!r}; accepted: {', '.join(ALLOCATIONS)}")
    net, params, _ = as_network(model)
    params = jax.tree.map(jnp.asarray, params)
    check_finite_params(params)
    classes = int(np.shape(params[-1]["kernel"])[-1])
    for xs, name in ((x_calib, "x_calib"), (x_test, "x_test")):
        try:
            input_check(net, params, xs)
        except ValueError as err:
            raise ValueError(f"{name}: {err}") from None
    check_examples(x_calib, name="x_calib")
    check_examples(x_test, y_test, num_classes=classes, name="x_test", label_name="y_test")
    fractions = np.atleast_1d(np.asarray(fractions, np.float64))
    prune_counts(fractions, 1)  # validates the fractions
    xs = design_matrices(net, params, jnp.asarray(x_calib))
    kernels, removed, n_total = [], np.zeros(len(fractions), np.int64), 0
    for layer, rows in zip(params, xs, strict=True):
        shape = layer["kernel"].shape
        w2d = layer["kernel"].reshape(-1, shape[-1])
        trace = obs_layer_trace(w2d, rows, damping=damping)
        k = prune_counts(fractions, w2d.size)
        counts = allocate(trace.increments, k, allocation)  # [levels, out]
        kernels.append(layer_kernels(trace, counts))  # [levels, fan_in, out]
        removed += k
        n_total += w2d.size
    n_pruned = zero_counts([p["kernel"] for p in params], kernels, removed)
    x_test, y_test = jnp.asarray(x_test), jnp.asarray(y_test)
    metrics = jax.jit(lambda ks: _level_metrics(net, params, ks, x_test, y_test))
    acc, ce = zip(
        *(metrics([jnp.asarray(k[i]) for k in kernels]) for i in range(len(fractions))), strict=True
    )
    return sweep_table(fractions, n_pruned, n_total, np.asarray(acc), np.asarray(ce))

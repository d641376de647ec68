"""Building blocks for ``nnx.Sequential`` models the library accepts: pooling, flatten, dense stacks.

Any ``nnx.Sequential`` built from ``nnx.Linear``, ``nnx.Conv``, :func:`max_pool`, :func:`avg_pool`,
:func:`flatten` and elementwise activations given as JAX functions (``jax.nn.relu``, ``jnp.tanh``,
...) works with the library (``obd.hessian.hessian_diag``, ``obd.saliencies``, ``obd.prune``)::

    model = nnx.Sequential(
        nnx.Conv(1, 4, kernel_size=(3, 3), strides=(2, 2), padding="SAME", rngs=nnx.Rngs(0)),
        jax.nn.relu, nets.max_pool((2, 2)), nets.flatten,
        nnx.Linear(4 * 7 * 7, 10, rngs=nnx.Rngs(1)),
    )

Convolutional models take images ``[N, height, width, channels]`` (NHWC): :func:`as_images` turns
``[N, 784]`` MNIST rows into ``[N, 28, 28, 1]``.
"""

from __future__ import annotations

from collections.abc import Sequence

import jax
import numpy as np
from flax import nnx

from obd.network import Pool, flatten, pool

__all__ = [
    "as_images",
    "avg_pool",
    "flatten",
    "max_pool",
    "mlp",
    "n_params",
]


def max_pool(window, strides=None) -> Pool:
    """Max pooling over ``window`` (an int or a pair); ``strides`` defaults to ``window``."""
    return pool("max", window, strides)


def avg_pool(window, strides=None) -> Pool:
    """Average pooling over ``window`` (an int or a pair); ``strides`` defaults to ``window``."""
    return pool("avg", window, strides)


def mlp(sizes: Sequence[int], *, rngs: nnx.Rngs, activation=jax.nn.relu) -> nnx.Sequential:
    """Dense layers of widths ``sizes`` (input first) with ``activation`` between them."""
    sizes = [int(s) for s in sizes]
    if len(sizes) < 2 or any(s < 1 for s in sizes):
        raise ValueError(f"sizes must be >= 2 positive layer widths, got {sizes}")
    items: list = []
    for i, (a, b) in enumerate(zip(sizes[:-1], sizes[1:], strict=True)):
        items.append(nnx.Linear(a, b, rngs=rngs))
        if i < len(sizes) - 2:
            items.append(activation)
    return nnx.Sequential(*items)


def n_params(model: nnx.Module) -> int:
    """Number of parameters (``nnx.Param`` entries) of ``model``."""
    return int(sum(np.size(a) for a in jax.tree.leaves(nnx.state(model, nnx.Param))))


def as_images(x, height: int = 28, width: int = 28, channels: int = 1):
    """``[N, height * width * channels]`` rows as NHWC images ``[N, height, width, channels]``."""
    shape = np.shape(x)
    if len(shape) == 4 and shape[1:] == (height, width, channels):
        return x
    if len(shape) != 2 or shape[1] != height * width * channels:
        raise ValueError(
            f"x must be [N, {height * width * channels}] rows or [N, {height}, {width}, "
            f"{channels}] images, got shape {shape}"
        )
    return x.reshape(shape[0], height, width, channels)

"""The study's networks as ``nnx.Sequential`` models: the blog's MLP, LeNet-300-100 and the
Caffe LeNet-5 of Han et al. (2015), built from the core's :mod:`obd.nets` items."""

from __future__ import annotations

import jax
from flax import nnx

from obd.nets import flatten, max_pool, mlp
from obd.study.model import BLOG_SIZES

__all__ = ["blog_mlp", "lenet5", "lenet_300_100"]


def blog_mlp(rngs: nnx.Rngs) -> nnx.Sequential:
    """The blog's MLP: 784-50-50-50-50-10, ReLU (47,410 weights and biases)."""
    return mlp(BLOG_SIZES, rngs=rngs)


def lenet_300_100(rngs: nnx.Rngs) -> nnx.Sequential:
    """LeNet-300-100 (LeCun et al. 1998; Han et al. 2015): 784-300-100-10, ReLU (266,610)."""
    return mlp((784, 300, 100, 10), rngs=rngs)


def lenet5(rngs: nnx.Rngs) -> nnx.Sequential:
    """The Caffe LeNet-5 of Han et al. (2015), 431,080 parameters, on ``[N, 28, 28, 1]``:
    conv 20@5x5 (VALID), max-pool 2, conv 50@5x5, max-pool 2, dense 800-500, ReLU, dense 500-10."""
    return nnx.Sequential(
        nnx.Conv(1, 20, kernel_size=(5, 5), padding="VALID", rngs=rngs),
        max_pool((2, 2)),
        nnx.Conv(20, 50, kernel_size=(5, 5), padding="VALID", rngs=rngs),
        max_pool((2, 2)),
        flatten,
        nnx.Linear(4 * 4 * 50, 500, rngs=rngs),
        jax.nn.relu,
        nnx.Linear(500, 10, rngs=rngs),
    )

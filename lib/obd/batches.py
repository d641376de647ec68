"""Mini-batches for training and retraining: indices from per-epoch random permutations."""

from __future__ import annotations

import math

import jax

#: How a batch's loss is reduced: ``"sum"`` (the blog's ``tf.reduce_sum``) or ``"mean"``.
REDUCTIONS: tuple[str, ...] = ("sum", "mean")

__all__ = ["REDUCTIONS", "batch_indices"]


def batch_indices(key: jax.Array, n: int, steps: int, batch_size: int) -> jax.Array:
    """``[steps, batch_size]`` example indices from consecutive per-epoch random permutations."""
    epochs = math.ceil(steps * batch_size / n)
    perms = jax.vmap(lambda k: jax.random.permutation(k, n))(jax.random.split(key, epochs))
    return perms.reshape(-1)[: steps * batch_size].reshape(steps, batch_size)

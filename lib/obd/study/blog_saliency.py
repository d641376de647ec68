"""The blog's saliencies as published, registered as ``"blog_magnitude"`` and ``"blog_obd"``.

* ``"blog_magnitude"``: the blog's code ranked the *signed* weight ``w``, so the most negative
  weights go first rather than the smallest in magnitude.
* ``"blog_obd"``: the Hessian *row sum* ``H @ 1`` of the cross-entropy *summed* over one random
  batch of 64, ranked signed, with no ``w**2`` factor. With scope ``"layerwise"`` the row sum is
  within each tensor's own Hessian block (what ``tf.hessians`` per variable gives); with scope
  ``"global"`` it is the full-model row sum.

Importing :mod:`obd.study` registers both with :func:`obd.saliencies.register_saliency`.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax

from obd.checks import check_examples
from obd.network import Network, Params, as_network
from obd.saliencies import _as_key, check_scope, draw_batch, register_saliency, saliency_kinds

__all__ = ["blog_obd_scores", "summed_loss"]


def summed_loss(net: Network, params: Params, x: jax.Array, y: jax.Array) -> jax.Array:
    """Softmax cross-entropy *summed* over the batch, as the blog's ``tf.reduce_sum``."""
    logits = net.apply(params, x)
    return optax.softmax_cross_entropy_with_integer_labels(logits, y).sum()


def _hvp(f, params: Params, v: Params) -> Params:
    """Hessian-vector product of scalar ``f`` at ``params``, forward-over-reverse."""
    return jax.jvp(jax.grad(f), (params,), (v,))[1]


@jax.jit(static_argnames=("net", "scope"))
def _hessian_row_sums(net: Network, params: Params, x: jax.Array, y: jax.Array, scope: str):
    def f(p):
        return summed_loss(net, p, x, y)

    if scope == "global":
        return _hvp(f, params, jax.tree.map(jnp.ones_like, params))
    # layerwise: tangent t has ones on leaf t only; keep leaf t of the t-th HVP (its own block).
    leaves, treedef = jax.tree.flatten(params)
    n = len(leaves)
    eye = jnp.eye(n, dtype=leaves[0].dtype)
    tangents = treedef.unflatten(
        [
            jnp.broadcast_to(eye[:, i].reshape((n,) + (1,) * a.ndim), (n, *a.shape))
            for i, a in enumerate(leaves)
        ]
    )
    out = jax.vmap(lambda v: _hvp(f, params, v))(tangents)
    return treedef.unflatten([o[i] for i, o in enumerate(jax.tree.leaves(out))])


def blog_obd_scores(
    params: Params | Any,
    x: jax.Array,
    y: jax.Array,
    key: jax.Array,
    *,
    scope: str = "global",
    activation: str | None = None,
    batch_size: int = 64,
) -> Params | Any:
    """The blog's OBD score: Hessian row sums of the summed loss on one random batch."""
    net, flat, restore = as_network(params, activation)
    check_scope(scope)
    check_examples(x, y, num_classes=int(np.shape(flat[-1]["kernel"])[-1]))
    xb, yb = draw_batch(key, x, y, batch_size)
    flat = jax.tree.map(jnp.asarray, flat)
    return restore(_hessian_row_sums(net, flat, xb, yb, scope))


def _blog_magnitude(model, flat: Params, **_) -> Params:
    return flat


def _blog_obd(model, flat: Params, *, key, x, y, scope, activation, batch_size, **_) -> Params:
    if x is None or y is None:
        raise ValueError("blog_obd needs the data x and y to draw its batch from")
    net = as_network(model, activation)[0]
    check_examples(x, y, num_classes=int(np.shape(flat[-1]["kernel"])[-1]))
    xb, yb = draw_batch(_as_key(key), x, y, batch_size)
    return _hessian_row_sums(net, flat, xb, yb, scope)


if "blog_magnitude" not in saliency_kinds():
    register_saliency("blog_magnitude", _blog_magnitude)
    register_saliency("blog_obd", _blog_obd)

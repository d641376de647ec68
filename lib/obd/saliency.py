"""Per-parameter saliency scores: the lower a parameter's score, the earlier it is pruned.

Kinds (:data:`SALIENCY_KINDS`):

* ``"magnitude"``: ``|w|``.
* ``"obd"``: Optimal Brain Damage, ``0.5 * h * w**2`` with ``h`` the Hessian diagonal of the loss
  (computed elsewhere, e.g. ``obd.hessian.hessian_diag``, and passed in as ``hdiag``).
* ``"random"``: uniform random scores from ``key`` (a baseline).
* ``"seed_magnitude"``: the blog's code as published, which ranked the *signed* weight ``w``, so
  the most negative weights go first rather than the smallest in magnitude.
* ``"seed_obd"``: the blog's code as published: the Hessian *row sum* ``H @ 1`` of the cross-entropy
  *summed* over one random batch of 64, ranked signed, with no ``w**2`` factor. With scope
  ``"layerwise"`` the row sum is within each tensor's own Hessian block (what ``tf.hessians`` per
  variable gives); with scope ``"global"`` it is the full-model row sum.

``params`` is the plain MLP pytree (a list of dense layers) or an ``nnx.Sequential`` model
(``obd.network``); scores come back shaped like the parameters: a list, or an ``nnx.State`` like
``nnx.state(model, nnx.Param)``. Convolution kernels are scored weight by weight.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax

from obd.checks import check_examples
from obd.network import Network, Params, as_network, to_params

SALIENCY_KINDS: tuple[str, ...] = ("magnitude", "obd", "random", "seed_magnitude", "seed_obd")
SCOPES: tuple[str, ...] = ("global", "layerwise")


def check_scope(scope: str) -> str:
    """Return ``scope`` if it is one of :data:`SCOPES`, else raise ``ValueError``."""
    if scope not in SCOPES:
        raise ValueError(f"unknown scope {scope!r}; accepted: {', '.join(SCOPES)}")
    return scope


def check_like(params: Params, other, name: str) -> None:
    """``ValueError`` unless ``other`` has the pytree structure and leaf shapes of ``params``."""
    if other is None:
        raise ValueError(f"{name} is required")
    p_leaves, p_def = jax.tree.flatten(params)
    o_leaves, o_def = jax.tree.flatten(other)
    if p_def != o_def:
        raise ValueError(f"{name} structure {o_def} differs from params structure {p_def}")
    for i, (p, o) in enumerate(zip(p_leaves, o_leaves, strict=True)):
        if np.shape(p) != np.shape(o):
            raise ValueError(f"{name} leaf {i} has shape {np.shape(o)}, params {np.shape(p)}")


def _as_key(key) -> jax.Array:
    if key is None:
        raise ValueError("key is required")
    return jax.random.key(key) if isinstance(key, int | np.integer) else key


def draw_batch(
    key: jax.Array, x: jax.Array, y: jax.Array, batch_size: int
) -> tuple[jax.Array, jax.Array]:
    """``batch_size`` distinct examples of ``(x, y)`` drawn uniformly at random with ``key``."""
    n = len(x)
    if len(y) != n:
        raise ValueError(f"x has {n} examples but y has {len(y)}")
    if not 1 <= batch_size <= n:
        raise ValueError(f"batch_size must be in [1, {n}], got {batch_size}")
    idx = np.asarray(jax.random.choice(_as_key(key), n, (batch_size,), replace=False))
    return jnp.asarray(x[idx]), jnp.asarray(y[idx])  # index on the host: x may be large


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


def seed_obd_scores(
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


def _random_scores(params: Params, key: jax.Array) -> Params:
    leaves, treedef = jax.tree.flatten(params)
    keys = jax.random.split(_as_key(key), len(leaves))
    return treedef.unflatten(
        [jax.random.uniform(k, jnp.shape(a)) for k, a in zip(keys, leaves, strict=True)]
    )


def saliency(
    kind: str,
    params: Params | Any,
    *,
    hdiag: Params | Any | None = None,
    key: jax.Array | None = None,
    x: jax.Array | None = None,
    y: jax.Array | None = None,
    scope: str = "global",
    activation: str | None = None,
    batch_size: int = 64,
) -> Params | Any:
    """Score every parameter by ``kind`` (see the module docstring); low scores are pruned first.

    ``hdiag`` (the Hessian diagonal, like ``params``) is needed by ``"obd"``; ``key`` by
    ``"random"`` and ``"seed_obd"``; ``x``, ``y`` by ``"seed_obd"``. ``scope`` only changes
    ``"seed_obd"`` (which Hessian block the row sums run over).
    """
    if kind not in SALIENCY_KINDS:
        raise ValueError(f"unknown saliency kind {kind!r}; accepted: {', '.join(SALIENCY_KINDS)}")
    check_scope(scope)
    model = params
    _, flat, restore = as_network(model, activation)
    flat = jax.tree.map(jnp.asarray, flat)
    if kind == "magnitude":
        return restore(jax.tree.map(jnp.abs, flat))
    if kind == "seed_magnitude":
        return restore(flat)
    if kind == "obd":
        h = to_params(model, hdiag, "hdiag")
        return restore(jax.tree.map(lambda h, w: 0.5 * jnp.asarray(h) * w**2, h, flat))
    if kind == "random":
        return restore(_random_scores(flat, _as_key(key)))
    if x is None or y is None:
        raise ValueError("seed_obd needs the data x and y to draw its batch from")
    return seed_obd_scores(
        model, x, y, _as_key(key), scope=scope, activation=activation, batch_size=batch_size
    )

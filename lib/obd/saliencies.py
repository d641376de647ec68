"""Per-parameter saliency scores: the lower a parameter's score, the earlier it is pruned.

Kinds, in a registry (:func:`saliency_kinds`, :func:`register_saliency`):

* ``"magnitude"``: ``|w|``.
* ``"obd"``: Optimal Brain Damage (LeCun et al. 1990), ``0.5 * h * w**2`` with ``h`` the Hessian
  diagonal of the loss (computed elsewhere, e.g. ``obd.hessian.hessian_diag``, and passed in as
  ``hdiag``): the second-order estimate of the loss increase when ``w`` alone is set to zero at a
  minimum, ``dL ~ 0.5 * h_kk * w_k**2``.
* ``"random"``: uniform random scores from ``key`` (a baseline).

Other kinds register themselves: the study's ``obd.study.blog_saliency`` adds the blog's flawed
scores ``"blog_magnitude"`` and ``"blog_obd"`` when ``obd.study`` is imported.

``params`` is the plain MLP pytree (a list of dense layers) or an ``nnx.Sequential`` model
(``obd.network``); scores come back shaped like the parameters: a list, or an ``nnx.State`` like
``nnx.state(model, nnx.Param)``. Convolution kernels are scored weight by weight.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from obd.network import Params, as_network, to_params

SCOPES: tuple[str, ...] = ("global", "layerwise")

#: ``fn(model, flat, *, hdiag, key, x, y, scope, activation, batch_size) -> scores``: ``model``
#: is what the caller passed, ``flat`` its parameters as a list of per-layer dicts (JAX arrays);
#: the scores come back shaped like ``flat``.
ScoreFn = Callable[..., Params]
_KINDS: dict[str, ScoreFn] = {}


def register_saliency(name: str, fn: ScoreFn, *, replace: bool = False) -> None:
    """Make ``saliency(name, ...)`` call ``fn`` (see :data:`ScoreFn`).

    ``ValueError`` if ``name`` is not a non-empty identifier or is already registered (unless
    ``replace``).
    """
    if not isinstance(name, str) or not name.isidentifier():
        raise ValueError(f"a saliency name must be an identifier string, got {name!r}")
    if not callable(fn):
        raise ValueError(f"saliency {name!r}: fn must be callable, got {type(fn).__name__}")
    if name in _KINDS and not replace:
        raise ValueError(f"saliency {name!r} is already registered (pass replace=True)")
    _KINDS[name] = fn


def saliency_kinds() -> tuple[str, ...]:
    """The registered saliency kinds, in registration order."""
    return tuple(_KINDS)


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

    ``hdiag`` (the Hessian diagonal, like ``params``) is needed by ``"obd"``, ``key`` by
    ``"random"``; registered kinds may use ``key``, ``x``, ``y``, ``scope`` and ``batch_size``
    (the blog's ``"blog_obd"`` draws a batch of ``batch_size`` from ``x, y`` with ``key``).
    """
    if not isinstance(kind, str) or kind not in _KINDS:
        raise ValueError(f"unknown saliency kind {kind!r}; accepted: {', '.join(saliency_kinds())}")
    check_scope(scope)
    _, flat, restore = as_network(params, activation)
    flat = jax.tree.map(jnp.asarray, flat)
    scores = _KINDS[kind](
        params, flat, hdiag=hdiag, key=key, x=x, y=y, scope=scope, activation=activation,
        batch_size=batch_size,
    )  # fmt: skip
    return restore(scores)


def _magnitude(model, flat: Params, **_) -> Params:
    return jax.tree.map(jnp.abs, flat)


def _obd(model, flat: Params, *, hdiag, **_) -> Params:
    h = to_params(model, hdiag, "hdiag")
    return jax.tree.map(lambda h, w: 0.5 * jnp.asarray(h) * w**2, h, flat)


def _random(model, flat: Params, *, key, **_) -> Params:
    return _random_scores(flat, _as_key(key))


register_saliency("magnitude", _magnitude)
register_saliency("obd", _obd)
register_saliency("random", _random)

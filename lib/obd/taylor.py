"""How good is OBD's prediction? The Taylor terms of the loss change caused by pruning.

Pruning moves the weights by ``dw`` (``-w`` on the pruned entries, 0 elsewhere). Expanding the mean
training loss around the trained weights ``w``,

    L(w + dw) - L(w) = g^T dw + 0.5 dw^T H dw + (higher orders),

OBD keeps only ``0.5 * sum_k H_kk dw_k**2`` (the sum of the pruned weights' saliencies): it assumes
the gradient ``g`` vanishes (a minimum), the cross terms ``H_kl`` (``k != l``) do not matter, and
the loss is locally quadratic. :func:`loss_change_curve` measures each assumption at once, for many
pruning levels: per level it returns

* ``first_order``: ``g^T dw``;
* ``diagonal``: ``0.5 * sum_k h_k dw_k**2``, OBD's prediction (``h`` the Hessian diagonal, given);
* ``quadratic``: ``0.5 * dw^T H dw``, the full second-order term with all cross terms, exact;
* ``gauss_newton``: ``0.5 * dw^T G dw``, its Gauss-Newton part ``G = J^T A J``; the rest,
  ``quadratic - gauss_newton``, is the gradient-weighted curvature of the network itself, which
  for ReLU nets couples only weights of *different* layers (each logit is linear in each weight);
* ``actual``: ``L(w + dw) - L(w)``;
* derived: ``cross = quadratic - diagonal`` and ``cross_ratio = cross / diagonal``.

``dw^T H dw`` is the second directional derivative ``d2/dt2 L(w + t dw)`` at ``t = 0``, i.e. what
one Hessian-vector product ``H dw`` dotted with ``dw`` gives. It is computed by propagating the
first and second derivatives along ``dw`` forward through the network with the activations (a
forward-over-forward pass, no backward pass), which also yields ``g^T dw`` and, reusing the first
layer's product ``x @ dW_1``, the loss at ``w + dw``; all levels share the forward pass at ``w``.
The sums run over chunks of at most ``batch_size`` examples in one jitted loop.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pandas as pd

from obd.curvature import activation_derivatives, check_data, chunked_sum
from obd.network import Params, activation_fn
from obd.saliencies import check_like

TERMS: tuple[str, ...] = ("loss", "first_order", "quadratic", "gauss_newton", "actual")
COLUMNS: tuple[str, ...] = (
    "level", "n_pruned", "loss", "first_order", "diagonal", "quadratic", "gauss_newton",
    "actual", "cross", "cross_ratio", "second_order",
)  # fmt: skip


def pruning_delta(params: Params, mask: Params) -> Params:
    """``dw`` of pruning: ``-w`` where ``mask`` is False, 0 where True. ``mask`` may have a
    leading ``[levels]`` axis (as ``obd.prune.masks`` with several fractions returns)."""
    p_leaves, treedef = jax.tree.flatten(params)
    m_leaves, m_def = jax.tree.flatten(mask)
    if m_def != treedef:
        raise ValueError(f"mask structure {m_def} differs from params structure {treedef}")
    out = []
    for p, m in zip(p_leaves, m_leaves, strict=True):
        p, m = jnp.asarray(p), jnp.asarray(m)
        if m.dtype != jnp.bool_:
            raise ValueError(f"masks must be boolean (True = kept), got dtype {m.dtype}")
        if m.shape[m.ndim - p.ndim :] != p.shape or m.ndim > p.ndim + 1:
            raise ValueError(f"mask shape {m.shape} does not match parameter shape {p.shape}")
        out.append(jnp.where(m, jnp.zeros((), p.dtype), -p))
    return treedef.unflatten(out)


def taylor_terms(f: Callable[[Any], jax.Array], params: Any, dw: Any) -> dict[str, jax.Array]:
    """For any scalar function ``f`` of a pytree: ``value`` ``f(w)``, ``first_order``
    ``grad f(w)^T dw``, ``quadratic`` ``0.5 dw^T H dw`` and ``actual`` ``f(w + dw) - f(w)``,
    by forward-over-forward differentiation of ``t -> f(w + t dw)`` (a reference for any ``f``)."""
    dtype = jnp.result_type(*jax.tree.leaves(params))

    def along(t):
        return f(jax.tree.map(lambda p, d: p + t * d, params, dw))

    def slope(t):
        return jax.jvp(along, (t,), (jnp.ones((), dtype),))

    zero, one = jnp.zeros((), dtype), jnp.ones((), dtype)
    (value, first), (_, second) = jax.jvp(slope, (zero,), (one,))
    return {
        "value": value,
        "first_order": first,
        "quadratic": 0.5 * second,
        "actual": along(one) - value,
    }


def _propagate(params: Params, dw: Params, a: jax.Array, a1: jax.Array, act: Callable):
    """From the first layer's pre-activation ``a`` and its derivative ``a1`` along ``dw``: the
    logits, their first and second derivatives along ``dw``, and the logits at ``w + dw``."""
    a2 = jnp.zeros_like(a1)  # the first layer is linear in the weights
    a_new = a + a1  # pre-activation at w + dw: (W + dW) x + b + db
    for layer, d in zip(params[1:], dw[1:], strict=True):
        h, s1, s2 = activation_derivatives(act, a)
        h1, h2 = s1 * a1, s1 * a2 + s2 * a1 * a1
        h_new = act(a_new)
        w, b, dk, db = layer["kernel"], layer["bias"], d["kernel"], d["bias"]
        a = h @ w + b
        a1 = h1 @ w + h @ dk + db
        a2 = h2 @ w + 2.0 * (h1 @ dk)
        a_new = h_new @ (w + dk) + b + db
    return a, a1, a2, a_new


def _level_sums(params, dw, a, a1, y, wts, act) -> jax.Array:
    """Weighted sums over a chunk of ``[loss, g^T dw, 0.5 dw^T H dw, 0.5 dw^T G dw, actual]``."""
    z, z1, z2, z_new = _propagate(params, dw, a, a1, act)
    ce = optax.softmax_cross_entropy_with_integer_labels(z, y)
    ce_new = optax.softmax_cross_entropy_with_integer_labels(z_new, y)
    p = jax.nn.softmax(z)
    g = p - jax.nn.one_hot(y, p.shape[-1], dtype=p.dtype)  # dl/dz
    pz1 = jnp.sum(p * z1, -1)
    ggn = jnp.sum(p * z1 * z1, -1) - pz1 * pz1  # z1^T (diag(p) - p p^T) z1
    quad = 0.5 * (ggn + jnp.sum(g * z2, -1))  # 0.5 d2l/dt2 = 0.5 (z1^T A z1 + g^T z2)
    per = jnp.stack([ce, jnp.sum(g * z1, -1), quad, 0.5 * ggn, ce_new - ce], axis=-1)
    return wts @ per


@partial(jax.jit, static_argnames=("activation", "batch_size", "level_batch"))
def _curve_sums(params, dws, x, y, *, activation: str, batch_size: int, level_batch: int):
    act = activation_fn(activation)

    def chunk_fn(xb, yb, wb, i):
        xb = xb.astype(params[0]["kernel"].dtype)
        a = xb @ params[0]["kernel"] + params[0]["bias"]  # shared by every level

        def level(dw):
            a1 = xb @ dw[0]["kernel"] + dw[0]["bias"]
            return _level_sums(params, dw, a, a1, yb, wb, act)

        return jax.lax.map(level, dws, batch_size=level_batch)

    return chunked_sum(chunk_fn, x, y, batch_size) / x.shape[0]


def _as_deltas(params: Params, dw_or_mask: Params) -> Params:
    """Stacked ``dw`` (leading ``[levels]`` axis) from masks or deltas, with or without it."""
    p_leaves = jax.tree.leaves(params)
    leaves, treedef = jax.tree.flatten(dw_or_mask)
    if treedef != jax.tree.structure(params):
        raise ValueError(
            f"dw/mask structure {treedef} differs from params structure {jax.tree.structure(params)}"
        )
    if all(jnp.asarray(a).dtype == jnp.bool_ for a in leaves):
        dws = pruning_delta(params, dw_or_mask)
    elif any(jnp.asarray(a).dtype == jnp.bool_ for a in leaves):
        raise ValueError("dw_or_mask mixes boolean and numeric leaves")
    else:
        dws = jax.tree.map(lambda a, p: jnp.asarray(a, p.dtype), dw_or_mask, params)
    ndims = {jnp.ndim(a) - jnp.ndim(p) for a, p in zip(jax.tree.leaves(dws), p_leaves, strict=True)}
    if ndims == {0}:
        dws = jax.tree.map(lambda a: a[None], dws)
    elif ndims != {1}:
        raise ValueError("every dw/mask leaf needs the parameter's shape, with or without one "
                         "leading [levels] axis")  # fmt: skip
    n = {a.shape[0] for a in jax.tree.leaves(dws)}
    if len(n) != 1:
        raise ValueError(f"dw/mask leaves disagree on the number of levels: {sorted(n)}")
    for a, p in zip(jax.tree.leaves(dws), p_leaves, strict=True):
        if a.shape[1:] != p.shape:
            raise ValueError(f"dw/mask leaf shape {a.shape[1:]} differs from parameter {p.shape}")
    return dws


def loss_change_curve(
    params: Params,
    dw_or_mask: Params,
    x: Any,
    y: Any,
    *,
    hdiag: Params | None = None,
    activation: str = "relu",
    batch_size: int = 10_000,
    level_batch: int = 4,
) -> pd.DataFrame:
    """The Taylor terms of the mean loss on ``(x, y)`` for each pruning level.

    ``dw_or_mask`` is either boolean masks (True = kept; ``dw = -w`` on the pruned entries) or
    the moves ``dw`` themselves, each leaf shaped like the parameter with an optional leading
    ``[levels]`` axis. ``hdiag`` (the Hessian diagonal of the same loss, e.g.
    ``obd.hessian.hessian_diag(params, x, y)``) gives the ``diagonal`` column (OBD's prediction);
    without it that column and the derived ones are NaN. Returns one row per level with the
    columns :data:`COLUMNS` (see the module docstring); ``second_order = first_order + quadratic``
    is the full second-order prediction, and ``n_pruned`` counts the entries with ``dw != 0``.
    ``level_batch`` levels are evaluated together (memory grows with it).
    """
    params, x, y = check_data(params, x, y)
    activation_fn(activation)
    if isinstance(level_batch, bool) or not isinstance(level_batch, int) or level_batch < 1:
        raise ValueError(f"level_batch must be an integer >= 1, got {level_batch!r}")
    dws = _as_deltas(params, dw_or_mask)
    n_levels = jax.tree.leaves(dws)[0].shape[0]
    sums = _curve_sums(
        params, dws, x, y, activation=activation, batch_size=int(batch_size),
        level_batch=min(level_batch, n_levels),
    )  # fmt: skip
    table = pd.DataFrame(np.asarray(sums, np.float64), columns=list(TERMS))
    if hdiag is not None:
        check_like(params, hdiag, "hdiag")
        diag = sum(
            jnp.sum(jnp.asarray(h, d.dtype) * d * d, axis=tuple(range(1, d.ndim)))
            for h, d in zip(jax.tree.leaves(hdiag), jax.tree.leaves(dws), strict=True)
        )
        table["diagonal"] = 0.5 * np.asarray(diag, np.float64)
    else:
        table["diagonal"] = np.nan
    table["n_pruned"] = sum(
        np.asarray(jnp.sum(d != 0, axis=tuple(range(1, d.ndim)))) for d in jax.tree.leaves(dws)
    )
    table["level"] = np.arange(n_levels)
    table["cross"] = table["quadratic"] - table["diagonal"]
    with np.errstate(divide="ignore", invalid="ignore"):
        table["cross_ratio"] = np.where(
            table["diagonal"] != 0, table["cross"] / table["diagonal"], np.nan
        )
    table["second_order"] = table["first_order"] + table["quadratic"]
    return table[list(COLUMNS)]


def loss_change_terms(
    params: Params,
    dw_or_mask: Params,
    x: Any,
    y: Any,
    *,
    hdiag: Params | None = None,
    activation: str = "relu",
    batch_size: int = 10_000,
) -> dict[str, float]:
    """:func:`loss_change_curve` for a single ``dw`` or mask (no leading levels axis): a dict."""
    dws = _as_deltas(params, dw_or_mask)
    if jax.tree.leaves(dws)[0].shape[0] != 1:
        raise ValueError("loss_change_terms takes one dw or mask; use loss_change_curve for many")
    row = loss_change_curve(
        params, dws, x, y, hdiag=hdiag, activation=activation, batch_size=batch_size
    ).iloc[0]
    return {k: float(row[k]) for k in COLUMNS if k != "level"}

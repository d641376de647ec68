"""Greedy Optimal Brain Surgeon on one unit's weights, and the linear algebra it rests on.

For a quadratic ``E(w') = 1/2 (w - w')^T H (w - w')`` (``H`` symmetric positive definite), Optimal
Brain Surgeon removes the weight ``q`` of least saliency ``w_q^2 / (2 [H^-1]_qq)`` (exactly the
increase of ``E``) and moves the remaining weights to the new optimum,
``w <- w - w_q H^-1[:, q] / [H^-1]_qq``; the inverse Hessian of the remaining weights is then
``H^-1 - H^-1[:, q] H^-1[q, :] / [H^-1]_qq`` (the row and column ``q`` vanish). Repeating this
greedily, one weight at a time, is OBC's row-wise "ExactOBS" (Frantar & Alistarh 2022): exact OBS at
every step. One pass over all ``d`` removals records the weights after every removal count
(:class:`LayerTrace` collects those passes over a layer's units), so a whole sweep of sparsity
levels costs one pass per unit. Layer-wise OBS (:mod:`obd.obs.layerwise`, ``H = 2 X^T X / n``)
and global OBS (:mod:`obd.obs.global_obs`, ``H`` the unit's exact Hessian block of the loss) both
run these passes.
"""

from __future__ import annotations

from dataclasses import dataclass

import jax
import jax.numpy as jnp
import numpy as np
import scipy.linalg


@dataclass(frozen=True)
class LayerTrace:
    """The greedy OBS pass over one layer, unit by unit.

    ``weights[o, j]`` is unit ``o``'s weight vector (over the layer's inputs) after ``j`` removals
    (``j = 0 .. in``); ``order[o, j]`` the input removed at step ``j``; ``increments[o, j]`` the
    increase of the (damped) reconstruction error of unit ``o`` at that step.
    """

    weights: np.ndarray  # [out, in + 1, in]
    order: np.ndarray  # [out, in]
    increments: np.ndarray  # [out, in]

    @property
    def shape(self) -> tuple[int, int]:
        """The layer's kernel shape ``(in, out)``."""
        return self.order.shape[1], self.order.shape[0]


def check_damping(damping) -> float:
    """``damping`` as a float; ``ValueError`` unless it is a finite number >= 0."""
    if isinstance(damping, bool) or not isinstance(damping, int | float | np.floating):
        raise ValueError(f"damping must be a number >= 0, got {damping!r}")
    if not (np.isfinite(damping) and damping >= 0):
        raise ValueError(f"damping must be finite and >= 0, got {damping!r}")
    return float(damping)


def spd_inverse(h: np.ndarray) -> np.ndarray | None:
    """Inverse of each symmetric positive-definite matrix in ``h`` (``[d, d]`` or ``[..., d, d]``,
    float64), or ``None`` if one is not positive definite.

    LAPACK's Cholesky ``h = L L^T`` (``potrf``) then ``h^-1`` from ``L`` (``potri``): about a
    sixth of the work of inverting ``L`` and multiplying ``L^-T L^-1``.
    """
    h = np.asarray(h, np.float64)
    out = np.empty_like(h)
    for i in np.ndindex(h.shape[:-2]):
        c, info = scipy.linalg.lapack.dpotrf(h[i], lower=True)
        if info != 0:
            return None
        inv, info = scipy.linalg.lapack.dpotri(c, lower=True)
        if info != 0:
            return None
        inv = np.tril(inv)
        out[i] = inv + np.tril(inv, -1).T
    return out


def obs_unit_trace(w: jax.Array, hinv: jax.Array) -> tuple[jax.Array, jax.Array, jax.Array]:
    """Greedy OBS on one unit's weights ``w`` ``[d]`` with inverse Hessian ``hinv`` ``[d, d]``.

    Returns the weights after each of ``0 .. d`` removals ``[d + 1, d]``, the removal order
    ``[d]`` and each removal's error increase ``w_q^2 / (2 [H^-1]_qq)`` ``[d]``. Removed weights
    are exactly zero. Traceable (jit / vmap).
    """
    _, (ws, order, inc) = greedy_steps(w, hinv, w.shape[0])
    return jnp.concatenate([w[None], ws]), order, inc


def greedy_steps(w: jax.Array, hinv: jax.Array, steps: int):
    """``steps`` greedy OBS removals (as :func:`obs_unit_trace`); returns the final carry
    ``(w, hinv, pruned)`` and per step the weights, the removed index and the increment."""

    def step(carry, _):
        w, hinv, pruned = carry
        diag = jnp.diagonal(hinv)
        score = jnp.where(pruned, jnp.inf, w * w / diag)
        q = jnp.argmin(score)
        hq = hinv[:, q]
        w = jnp.where(pruned, 0.0, w - hq * (w[q] / hq[q])).at[q].set(0.0)
        # Rows/columns of removed weights are numerically ~0 and never read again for the rest.
        hinv = hinv - jnp.outer(hq, hq / hq[q])
        return (w, hinv, pruned.at[q].set(True)), (w, q, 0.5 * score[q])

    init = (w, hinv, jnp.zeros(w.shape[0], bool))
    return jax.lax.scan(step, init, None, length=steps)


def _stage_sizes(d: int, smallest: int = 64) -> list[int]:
    """Problem sizes of :func:`obs_unit_trace_compacted`'s stages: halving down to ``smallest``."""
    sizes = [d]
    while sizes[-1] > smallest:
        sizes.append(sizes[-1] - sizes[-1] // 2)
    return sizes


def obs_unit_trace_compacted(
    w: jax.Array, hinv: jax.Array
) -> tuple[jax.Array, jax.Array, jax.Array]:
    """:func:`obs_unit_trace`, with the problem compacted to the remaining weights in stages.

    Greedy OBS never reads the rows and columns of removed weights again, so after each stage
    (half of the remaining weights removed) the inverse is restricted to the remaining ones and
    the greedy continues on the smaller matrix: the same steps (same order, same arithmetic on the
    remaining entries) at about 4/7 of the memory traffic, with later stages in cache.
    Returns the same ``[d + 1, d]`` weights, ``[d]`` order and ``[d]`` increments.
    """
    d = w.shape[0]
    sizes = _stage_sizes(d)
    idx = jnp.arange(d)
    ws_out, order_out, inc_out = [w[None]], [], []
    wc, hc = w, hinv
    for size, nxt in zip(sizes, [*sizes[1:], 0], strict=True):
        (wc, hc, pruned), (wsc, qc, inc) = greedy_steps(wc, hc, size - nxt)
        ws_out.append(jnp.zeros((size - nxt, d), w.dtype).at[:, idx].set(wsc))
        order_out.append(idx[qc])
        inc_out.append(inc)
        if nxt:
            keep = jnp.nonzero(~pruned, size=nxt)[0]
            idx, wc, hc = idx[keep], wc[keep], hc[keep][:, keep]
    return jnp.concatenate(ws_out), jnp.concatenate(order_out), jnp.concatenate(inc_out)

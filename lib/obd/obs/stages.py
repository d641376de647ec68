"""Multi-stage global OBS: the sparsity raised in stages, the exact blocks recomputed in between.

One-shot OBS trusts a quadratic model of the loss taken at the dense weights; far from them (90%
of the weights gone and the rest moved by the updates) that model is poor. Multi-stage methods
(the recomputation in OBC and oBERT; CHITA++, Benbaki et al. 2023) prune part of the way, take the
model again at the pruned, updated weights, and go on, with no gradient descent at all.

**Schedule.** From the current density ``rho_0`` (the fraction of kernel weights that are nonzero)
to the target density ``rho_T``, stage ``j`` of ``S`` ends at density
``rho_j = rho_0 (rho_T / rho_0)^(j / S)``: every stage removes the same fraction of what is left
(:func:`stage_bounds`). A sweep shares one path over its levels: the stages of its largest level
below 100%, each level read from the last stage that ended at or below it (a level at a stage's
end is exactly that stage's state; a level between two ends is pruned further, one-shot, from the
earlier end).

**Held at zero.** Between stages the pruned weights stay exactly zero: greedy OBS removes a
weight of value 0 first at zero cost (its saliency ``w_q^2 / (2 [H^-1]_qq)`` is 0 and its update
``-w_q H^-1[:, q] / [H^-1]_qq`` moves nothing), which conditions the inverse on it, exactly as if
the unit's block were restricted to its remaining weights; :func:`obd.obs.global_obs.global_allocate`
takes those zero-cost removals first.

**Re-solve (optional).** At the pruned weights the loss has a gradient ``g``, which OBS's model
(taken at a minimum) leaves out. With ``resolve`` each unit's remaining weights ``R`` take, after
every stage, the minimiser of that unit's exact second-order model, all its pruned weights at zero
at once, ``delta_R = -(H_RR + lambda I)^-1 g_R`` (:func:`newton_directions`, ``lambda`` the
damping of the unit's block). Each unit's step is exact for its own block, but the blocks leave out
the cross terms between units and layers, so the summed steps overshoot; the step taken is
``alpha delta`` with ``alpha`` in ``1, 1/2, ..., 1/128`` of least loss on the calibration data
(``alpha = 0`` if none lowers it) (:func:`resolve_step`). The blocks computed before the step
then serve the next greedy pass from the re-solved weights (they are not computed again).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from obd.mlp import loss as mlp_loss
from obd.network import Params
from obd.obs.blocks import unit_damping

#: The default of ``global_obs_sweep`` and ``global_obs_prune``: chosen on validation data (the
#: study's MLP trained on 55,000 images, the last 5,000 held out: ``bench/global_obs_stages.md``),
#: the setting that pruned most within 1 point; ``stages=1`` is one-shot.
DEFAULT_STAGES = 8
DEFAULT_RESOLVE = True

#: Step lengths :func:`resolve_step` tries: 1, 1/2, ..., 1/128.
STEP_LENGTHS = tuple(2.0**-i for i in range(8))


def check_stages(stages) -> int:
    """``stages`` as an int; ``ValueError`` unless an integer >= 1."""
    if isinstance(stages, bool) or not isinstance(stages, int | np.integer) or stages < 1:
        raise ValueError(f"stages must be an integer >= 1 (1: one-shot), got {stages!r}")
    return int(stages)


def check_resolve(resolve) -> bool:
    """``resolve`` as a bool; ``ValueError`` for anything else."""
    if not isinstance(resolve, bool | np.bool_):
        raise ValueError(f"resolve must be True or False, got {resolve!r}")
    return bool(resolve)


def stage_bounds(k: np.ndarray, n: int, n_zero: int, stages: int) -> list[int]:
    """Removal counts (over all ``n`` kernel weights) at the ends of stages ``1 .. S - 1``.

    ``k`` holds the levels' removal counts; the path's target is the largest one below ``n`` (a
    level that removes every weight ends anywhere). From ``n_zero`` weights already zero (density
    ``rho_0 = 1 - n_zero / n``) to the target density ``rho_T``, stage ``j`` ends at
    ``round(n (1 - rho_0 (rho_T / rho_0)^(j / S)))``; ends that fall on the start, the target or
    each other are dropped, so fewer stages run when the path is short.
    """
    k = np.asarray(k, np.int64)
    below = k[k < n]
    if stages == 1 or below.size == 0 or below.max() <= n_zero:
        return []
    rho0 = 1.0 - n_zero / n
    rho_t = 1.0 - below.max() / n
    ends = np.floor(n * (1.0 - rho0 * (rho_t / rho0) ** (np.arange(1, stages) / stages)) + 0.5)
    return sorted({int(e) for e in ends if n_zero < e < below.max()})


@jax.jit(static_argnames=("activation",))
def _loss(params: Params, x, y, activation: str):
    return mlp_loss(params, x, y, activation=activation)


_grad = jax.jit(jax.grad(mlp_loss), static_argnames=("activation",))


def newton_directions(
    params: Params,
    blocks: list[np.ndarray],
    grads: list[np.ndarray],
    damping: float,
    *,
    index: list[np.ndarray] | None = None,
    scales: list[np.ndarray] | None = None,
) -> list[np.ndarray]:
    """Per layer ``[in, out]``: each unit's step ``delta_R = -(H_RR + lambda I)^-1 g_R`` on its
    nonzero weights ``R`` (0 on the others), in float64.

    ``blocks[l][o]`` is unit ``o``'s exact block (:func:`obd.obs.blocks.unit_blocks`), or with
    ``index`` its rows and columns ``index[l][o]`` (:func:`obd.obs.blocks.support_blocks`, which
    must cover ``R``); ``grads[l]`` the loss's gradient with respect to the kernel; ``lambda =
    damping * mean(diag H_o)`` over all the unit's inputs (``scales[l][o]`` with ``index``), as
    :func:`obd.obs.blocks.damped_inverses` damps. The restriction to ``R`` is solved on the block
    with the pruned rows and columns replaced by the identity and their gradient by 0, which
    leaves the pruned entries' step at 0.
    """
    out = []
    for i, (layer, b, g) in enumerate(zip(params, blocks, grads, strict=True)):
        kernel = np.asarray(layer["kernel"]).T  # [out, in]
        h = np.asarray(b, np.float64)
        idx = (
            np.broadcast_to(np.arange(kernel.shape[1]), kernel.shape) if index is None else index[i]
        )
        scale = np.einsum("oii->o", h) / h.shape[1] if scales is None else scales[i]
        lam = unit_damping(scale, damping)
        keep = (np.take_along_axis(kernel, idx, axis=1) != 0).astype(np.float64)  # [out, m]
        a = h * keep[:, :, None] * keep[:, None, :]
        a += np.eye(h.shape[1]) * (lam[:, None] * keep + (1.0 - keep))[:, :, None]
        rhs = -np.take_along_axis(np.asarray(g, np.float64).T, idx, axis=1) * keep
        step = np.zeros(kernel.shape)
        np.put_along_axis(step, idx, np.linalg.solve(a, rhs[:, :, None])[:, :, 0] * keep, axis=1)
        out.append(step.T)
    return out


def resolve_step(
    params: Params,
    blocks: list[np.ndarray],
    x,
    y,
    *,
    damping: float,
    activation: str,
    index: list[np.ndarray] | None = None,
    scales: list[np.ndarray] | None = None,
) -> tuple[Params, float]:
    """``params`` after the re-solve (module docstring): each unit's Newton step on its exact
    block, scaled by the ``alpha`` in :data:`STEP_LENGTHS` of least mean loss on ``(x, y)``;
    ``blocks``, ``index`` and ``scales`` as :func:`newton_directions` takes them.

    Returns the new params (pruned weights still exactly zero, biases kept) and ``alpha`` (0.0
    when no step lowers the loss, and the params are returned unchanged).
    """
    grads = [np.asarray(g["kernel"]) for g in _grad(params, x, y, activation=activation)]
    steps = newton_directions(params, blocks, grads, damping, index=index, scales=scales)
    best, best_alpha, best_loss = params, 0.0, float(_loss(params, x, y, activation))
    for alpha in STEP_LENGTHS:
        trial = [
            {
                "kernel": layer["kernel"] + jnp.asarray(alpha * s, layer["kernel"].dtype),
                "bias": layer["bias"],
            }
            for layer, s in zip(params, steps, strict=True)
        ]
        value = float(_loss(trial, x, y, activation))
        if np.isfinite(value) and value < best_loss:
            best, best_alpha, best_loss = trial, alpha, value
    return best, best_alpha

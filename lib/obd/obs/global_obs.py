"""Global Optimal Brain Surgeon: greedy OBS in every unit's exact Hessian block of the loss,
removals allocated across units and layers.

Unit ``o`` of dense layer ``l`` has the exact Hessian block ``H_lo = mean_n D_l[n, o] h_l[n]
h_l[n]^T`` of the mean loss with respect to its incoming weights (:mod:`obd.obs.blocks`). Greedy
OBS inside a block (:mod:`obd.obs.greedy`) is exact OBS for the (damped) quadratic model of the
loss restricted to that unit; its saliencies ``w_q^2 / (2 [H_lo^-1]_qq)`` are estimated increases
of the network loss, so they are comparable across units and layers, and :func:`global_allocate`
takes the cheapest removals over the whole network.
"""

from __future__ import annotations

import time

import jax
import jax.numpy as jnp
import numpy as np
import pandas as pd

from obd.checks import check_examples, check_finite_params
from obd.mlp import layer_sizes
from obd.network import Params
from obd.obs.blocks import (
    GLOBAL_DAMPING,
    as_dense,
    damped_inverses,
    singular_block_error,
    support_blocks,
    support_index,
    unit_blocks,
    unit_damping,
)
from obd.obs.greedy import LayerTrace, check_damping, obs_unit_trace_compacted, spd_inverse
from obd.obs.levels import (
    check_fractions,
    check_traces,
    kernels_table,
    layer_kernels,
    with_kernels,
    zero_counts,
)
from obd.obs.stages import (
    DEFAULT_RESOLVE,
    DEFAULT_STAGES,
    check_resolve,
    check_stages,
    resolve_step,
    stage_bounds,
)
from obd.prune import prune_counts


@jax.jit
def _unit_traces(kernel: jax.Array, hinvs: jax.Array):
    return jax.lax.map(lambda a: obs_unit_trace_compacted(*a), (kernel.T, hinvs), batch_size=4)


def global_obs_traces(
    params: Params,
    x,
    y,
    *,
    damping: float = GLOBAL_DAMPING,
    activation: str | None = None,
    batch_size: int | None = None,
    blocks: list[np.ndarray] | None = None,
) -> list[LayerTrace]:
    """Greedy OBS in every unit's exact (damped) Hessian block of the loss on ``(x, y)``.

    ``trace.increments[o, j]`` is the estimated increase of the mean training loss,
    ``w_q^2 / (2 [H_o^-1]_qq)`` of the damped block, when unit ``o`` loses its ``j``-th weight
    after the previous ``j`` removals and updates; ``trace.weights[o, j]`` the unit's weights
    after ``j`` removals. ``blocks`` (from :func:`obd.obs.blocks.unit_blocks` on the same data) skips computing
    them.
    """
    check_damping(damping)
    params, activation = as_dense(params, activation)
    if blocks is None:
        blocks = unit_blocks(params, x, y, activation=activation, batch_size=batch_size)
    sizes = layer_sizes(params)
    if len(blocks) != len(params) or any(
        np.shape(b) != (o, i, i) for b, i, o in zip(blocks, sizes[:-1], sizes[1:], strict=True)
    ):
        raise ValueError("blocks do not match params: pass the unit_blocks of these params")
    traces = []
    for layer, b in zip(params, blocks, strict=True):
        kernel = jnp.asarray(layer["kernel"])
        hinvs = jnp.asarray(damped_inverses(b, damping), kernel.dtype)
        weights, order, inc = _unit_traces(kernel, hinvs)
        traces.append(LayerTrace(np.asarray(weights), np.asarray(order), np.asarray(inc)))
    return traces


def support_traces(
    params: Params, index: list[np.ndarray], blocks: list[np.ndarray], scales, damping: float
) -> list[LayerTrace]:
    """:func:`global_obs_traces` from the blocks restricted to each unit's ``index``
    (:func:`obd.obs.blocks.support_blocks`), which must hold every nonzero weight: the inputs
    outside it (weights zero) are removed first at zero cost, then greedy OBS runs on the ``[m, m]``
    damped block (``damping * scales[l][o]`` on its diagonal). The same traces as on the full
    blocks (zero weights are removed first there too, conditioning the inverse on them), for
    ``O(out m^3)`` work instead of ``O(out in^3)``.
    """
    traces = []
    for layer, idx, b, scale in zip(params, index, blocks, scales, strict=True):
        kernel = np.asarray(layer["kernel"]).T  # [out, in]
        d_out, d_in = kernel.shape
        m = idx.shape[1]
        lam = unit_damping(scale, damping)
        inv = spd_inverse(np.asarray(b, np.float64) + lam[:, None, None] * np.eye(m))
        if inv is None:
            raise singular_block_error()
        w_sub = np.take_along_axis(kernel, idx, axis=1)
        weights, order, inc = (
            np.asarray(a)
            for a in _unit_traces(
                jnp.asarray(w_sub.T, kernel.dtype), jnp.asarray(inv, kernel.dtype)
            )
        )
        inside = np.zeros(kernel.shape, bool)
        np.put_along_axis(inside, idx, True, axis=1)
        outside = np.argsort(inside, axis=1, kind="stable")[:, : d_in - m]
        rest = d_in - m
        full = np.empty((d_out, d_in + 1, d_in), kernel.dtype)
        full[:, : rest + 1] = kernel[:, None, :]
        tail = np.zeros((d_out, m + 1, d_in), kernel.dtype)
        np.put_along_axis(tail, np.broadcast_to(idx[:, None, :], weights.shape), weights, axis=2)
        full[:, rest:] = tail
        traces.append(
            LayerTrace(
                full,
                np.concatenate([outside, np.take_along_axis(idx, order, axis=1)], axis=1),
                np.concatenate([np.zeros((d_out, rest), inc.dtype), inc], axis=1),
            )
        )
    return traces


def global_allocate(traces: list[LayerTrace], k) -> list[np.ndarray]:
    """Removals per unit, per layer (``[levels, out]``, or ``[out]`` for a scalar ``k``), for
    ``k`` removals over the whole network.

    Each unit's increments are made monotone along its greedy order by a running maximum
    ``m[o, j] = max_{j' <= j} inc[o, j']``, and the ``k`` smallest ``m`` over all units of all
    layers are taken (stable order: ties go to the earlier layer, unit, step). Since ``m`` is
    non-decreasing along each unit, the taken set is a prefix of every unit's order, i.e. a state
    the greedy pass actually visited; a cheap removal that comes after an expensive one in its
    unit is taken only together with the expensive one, at the expensive one's price (the raw
    increments are not monotone: an update can make the next weight cheaper). With ``k = 1`` the
    cheapest first removal of any unit is taken.
    """
    monotone = [
        np.maximum.accumulate(np.nan_to_num(t.increments.astype(np.float64), nan=np.inf), axis=1)
        for t in traces
    ]
    total = sum(m.size for m in monotone)
    k = np.asarray(k, np.int64)
    if k.ndim > 1 or np.any((k < 0) | (k > total)):
        raise ValueError(f"k must be a count (or 1-D counts) in [0, {total}], got {k}")
    kk = np.atleast_1d(k)
    flat = np.concatenate([m.ravel() for m in monotone])
    rank = np.empty(total, np.int64)
    rank[np.argsort(flat, kind="stable")] = np.arange(total)
    out, offset = [], 0
    for m in monotone:
        r = np.sort(rank[offset : offset + m.size].reshape(m.shape), axis=1)
        offset += m.size
        counts = np.stack([np.searchsorted(row, kk, side="left") for row in r], axis=1)
        out.append(counts if k.ndim else counts[0])
    return out


def _masked_kernels(trace: LayerTrace, kernel: np.ndarray, counts: np.ndarray) -> np.ndarray:
    """Kernels ``[levels, in, out]``: the original weights with each unit's first
    ``counts[level, o]`` removals (in its greedy order) set to zero, no update."""
    out, d = trace.order.shape
    position = np.empty((out, d), np.int64)
    np.put_along_axis(position, trace.order.astype(np.int64), np.arange(d)[None, :], axis=1)
    pruned = position.T[None, :, :] < counts[:, None, :]  # [levels, in, out]
    return np.where(pruned, 0, np.asarray(kernel)[None]).astype(np.asarray(kernel).dtype)


def _global_kernels(params, traces, fractions, update: bool) -> tuple[list, np.ndarray, int]:
    """Per layer the kernels at every level; the number pruned at every level; prunable count."""
    n = sum(t.order.size for t in traces)
    k = prune_counts(fractions, n)
    counts = global_allocate(traces, k)
    kernels = [
        layer_kernels(t, c) if update else _masked_kernels(t, p["kernel"], c)
        for t, p, c in zip(traces, params, counts, strict=True)
    ]
    return kernels, k, n


def _staged_kernels(
    params, x, y, traces, fractions, *, stages, resolve, damping, activation, batch_size
) -> tuple[list, np.ndarray, int, list[dict]]:
    """:func:`_global_kernels` along the shared multi-stage path of :mod:`obd.obs.stages`; also
    one record per stage end (``removed``, ``alpha`` of the re-solve, seconds)."""
    n = sum(t.order.size for t in traces)
    k = prune_counts(fractions, n)
    n_zero = sum(int(np.count_nonzero(np.asarray(p["kernel"]) == 0)) for p in params)
    kernels = [np.empty((len(k), *np.shape(p["kernel"])), np.float64) for p in params]
    done = np.zeros(len(k), bool)
    state, records = params, []
    for end in [*stage_bounds(k, n, n_zero, stages), None]:
        here = ~done if end is None else ~done & (k <= end)
        if here.any():
            counts = global_allocate(traces, k[here])
            for out, t, c in zip(kernels, traces, counts, strict=True):
                out[here] = layer_kernels(t, c)
            done |= here
        if end is None:
            break
        t0 = time.perf_counter()
        state = with_kernels(
            state,
            [
                layer_kernels(t, c[None])
                for t, c in zip(traces, global_allocate(traces, end), strict=True)
            ],
        )
        # The blocks on each unit's remaining weights only (the rest is held at zero)
        index = support_index(state)
        blocks, scales = support_blocks(
            state, x, y, index, activation=activation, batch_size=batch_size
        )
        alpha = None
        if resolve:
            state, alpha = resolve_step(
                state, blocks, x, y, damping=damping, activation=activation, index=index,
                scales=scales,
            )  # fmt: skip
        traces = support_traces(state, index, blocks, scales, damping)
        records.append({"removed": end, "alpha": alpha, "seconds": time.perf_counter() - t0})
    dtype = np.asarray(params[0]["kernel"]).dtype
    return [kk.astype(dtype) for kk in kernels], k, n, records


def global_obs_prune(
    params: Params,
    x,
    y,
    fraction: float,
    *,
    damping: float = GLOBAL_DAMPING,
    update: bool = True,
    activation: str | None = None,
    traces: list[LayerTrace] | None = None,
    stages: int = DEFAULT_STAGES,
    resolve: bool = DEFAULT_RESOLVE,
    batch_size: int | None = None,
) -> Params:
    """Prune ``fraction`` of all kernel weights by global OBS (biases kept).

    ``k = floor(fraction * n + 0.5)`` of the ``n`` kernel weights become exactly zero, allocated
    across units and layers by :func:`global_allocate`; with ``update`` the remaining weights of
    each unit take the OBS update of its block, without it they keep their values (mask only).
    With ``stages > 1`` (the default: 8 stages with ``resolve``, chosen on validation data) the
    density falls geometrically in ``stages`` steps, the blocks recomputed on ``(x, y)`` at the
    pruned, updated weights after each (and, with ``resolve``, a Newton re-solve of the remaining
    weights): :mod:`obd.obs.stages`; ``traces`` then serve the first stage only. ``stages=1`` is
    one-shot; ``stages > 1`` needs ``update`` (mask only is one-shot).
    """
    f = np.asarray(fraction, np.float64)
    if f.ndim != 0:
        raise ValueError(f"fraction must be a single number in [0, 1], got {fraction!r}")
    stages, resolve = check_stages(stages), check_resolve(resolve)
    params, activation = as_dense(params, activation)
    if stages > 1:
        check_damping(damping)
        _check_update_staged(update)
        _check_calibration(x, y)
        check_finite_params(params)
    if traces is None:
        traces = global_obs_traces(
            params, x, y, damping=damping, activation=activation, batch_size=batch_size
        )
    check_traces(params, traces)
    if stages == 1:
        kernels, _, _ = _global_kernels(params, traces, check_fractions(f), bool(update))
    else:
        kernels, _, _, _ = _staged_kernels(
            params, x, y, traces, check_fractions(f), stages=stages, resolve=resolve,
            damping=damping, activation=activation, batch_size=batch_size,
        )  # fmt: skip
    return with_kernels(params, kernels)


def global_obs_step(
    params: Params,
    x,
    y,
    fraction: float,
    *,
    damping: float = GLOBAL_DAMPING,
    activation: str | None = None,
    batch_size: int | None = None,
) -> list[np.ndarray]:
    """One global OBS step from a model that may already be sparse: the kernels (a list of
    ``[in, out]`` arrays) after pruning ``k = floor(fraction * n + 0.5)`` of the ``n`` kernel
    weights, with the OBS update of the remaining weights. The step of iterative OBS with
    retraining (:func:`obd.retrain.iterative_prune` with ``saliency="obs"``).

    On a sparse model the blocks are computed on each unit's nonzero weights only
    (:func:`obd.obs.blocks.support_blocks`, ``O(N out m^2)`` work for ``m`` nonzero weights a
    unit; a dense model takes the full blocks of :func:`obd.obs.blocks.unit_blocks`, which skip
    inputs that are zero on every example) and :func:`support_traces` removes the zero weights
    first at no cost, so weights that are zero stay zero (while ``k`` covers them) and the
    result equals one-shot :func:`global_obs_prune` (``stages=1``) on the full blocks, for much
    less work once the model is sparse. ``k`` below the number of zero weights leaves them all
    zero (none is revived).
    """
    check_damping(damping)
    f = np.asarray(fraction, np.float64)
    if f.ndim != 0:
        raise ValueError(f"fraction must be a single number in [0, 1], got {fraction!r}")
    params, activation = as_dense(params, activation)
    check_finite_params(params)
    if all(np.all(np.asarray(p["kernel"]) != 0) for p in params):  # dense: the full blocks
        traces = global_obs_traces(
            params, x, y, damping=damping, activation=activation, batch_size=batch_size
        )
    else:
        index = support_index(params)
        blocks, scales = support_blocks(
            params, x, y, index, activation=activation, batch_size=batch_size
        )
        traces = support_traces(params, index, blocks, scales, damping)
    kernels, _, _ = _global_kernels(params, traces, check_fractions(f), True)
    return [
        k[0].astype(np.asarray(p["kernel"]).dtype) for k, p in zip(kernels, params, strict=True)
    ]


def _check_calibration(x, y) -> None:
    if x is None or y is None:
        raise ValueError(
            "stages > 1 needs the calibration data x, y (the blocks are recomputed on them "
            "between stages); pass them, or stages=1 for one-shot from traces alone"
        )


def _check_update_staged(update) -> None:
    if update is not True and update is not np.True_:
        raise ValueError(
            "stages > 1 needs update=True: the stages continue from the OBS-updated weights "
            f"(mask only is one-shot, stages=1); got update={update!r}"
        )


def global_obs_sweep(
    params: Params,
    x,
    y,
    fractions,
    x_test,
    y_test,
    *,
    damping: float = GLOBAL_DAMPING,
    update: bool = True,
    activation: str | None = None,
    traces: list[LayerTrace] | None = None,
    batch_size: int | None = None,
    level_batch: int | None = None,
    stages: int = DEFAULT_STAGES,
    resolve: bool = DEFAULT_RESOLVE,
) -> pd.DataFrame:
    """Global OBS at each of ``fractions`` (one-shot, no retraining), evaluated on
    ``(x_test, y_test)``.

    The exact Hessian block of each unit's incoming weights on ``(x, y)``
    (:func:`obd.obs.blocks.unit_blocks`), damped by ``damping * mean(diag H_o)`` (:func:`obd.obs.blocks.damped_inverses`), is
    pruned greedily by OBS, one weight at a time: remove the weight ``q`` of least
    ``w_q^2 / (2 [H_o^-1]_qq)``, update ``w <- w - w_q H_o^-1[:, q] / [H_o^-1]_qq`` and downdate
    the inverse (:func:`obd.obs.greedy.obs_unit_trace`). Removals are allocated over all units and layers by
    :func:`global_allocate`; ``update=False`` keeps the same removals without the weight update.
    One greedy pass serves every level; ``traces`` (from :func:`global_obs_traces`) skips it.
    With ``stages > 1`` (multi-stage, :mod:`obd.obs.stages`; the default, 8 stages with
    ``resolve``, was chosen on validation data; ``stages=1`` is one-shot) the levels share one
    path: the
    density falls geometrically to the largest level below 100% in ``stages`` steps, the blocks
    are recomputed on ``(x, y)`` at the pruned, updated weights after each (with ``resolve``, the
    remaining weights re-solved first), and each level is pruned from the last stage that ended
    at or below it; ``traces`` serve the first stage, and ``table.attrs["stages"]`` lists each
    stage end (``removed``, re-solve step ``alpha``, ``seconds``). ``stages > 1`` needs
    ``update``.
    Biases are kept. The columns are those of :func:`obd.prune.sweep`: ``fraction``,
    ``pruned_fraction``, ``n_pruned``, ``accuracy``, ``loss``; ``n_pruned`` counts the kernel
    weights that are zero at each level (weights already zero are removed first, as in
    :func:`obd.obs.layerwise.obs_sweep`). ``params`` is the plain list of dense layers (``activation`` between them,
    default ``"relu"``), an ``obd.mlp.MLP``, or an ``nnx.Sequential`` of ``nnx.Linear`` layers
    with one activation between each two; the two models carry their activation, and an
    ``activation`` that differs from it is a ``ValueError``.
    """
    params, activation = as_dense(params, activation)
    sizes = layer_sizes(params)
    check_finite_params(params)
    fractions = check_fractions(fractions)
    check_damping(damping)
    if not isinstance(update, bool | np.bool_):
        raise ValueError(f"update must be True (OBS update) or False (mask only), got {update!r}")
    stages, resolve = check_stages(stages), check_resolve(resolve)
    if stages > 1:
        _check_update_staged(update)
        _check_calibration(x, y)
    check_examples(x_test, y_test, num_classes=sizes[-1], name="x_test", label_name="y_test")
    x_test, y_test = jnp.asarray(x_test), jnp.asarray(y_test)
    if x_test.ndim != 2 or x_test.shape[1] != sizes[0]:
        raise ValueError(f"x_test must be [N, {sizes[0]}] and y_test [N]; got {x_test.shape}")
    if traces is None:
        traces = global_obs_traces(
            params, x, y, damping=damping, activation=activation, batch_size=batch_size
        )
    check_traces(params, traces)
    records = []
    if stages == 1:
        kernels, removed, n = _global_kernels(params, traces, fractions, bool(update))
    else:
        kernels, removed, n, records = _staged_kernels(
            params, x, y, traces, fractions, stages=stages, resolve=resolve, damping=damping,
            activation=activation, batch_size=batch_size,
        )  # fmt: skip
    # Staged kernels hold zeros from earlier stages that ``removed`` counts: count them directly.
    original = [p["kernel"] for p in params] if stages == 1 else kernels
    n_pruned = zero_counts(original, kernels, removed)
    table = kernels_table(
        params, kernels, fractions, n_pruned, n, x_test, y_test, activation, level_batch
    )
    table.attrs["stages"] = records
    return table

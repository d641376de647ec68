"""Optimal Brain Surgeon, layer-wise (OBC-style exact greedy OBS per output unit).

For a dense layer ``z = h W + b`` (kernel ``W`` is ``[in, out]``) and a calibration set whose inputs
to the layer are the rows of ``X`` (``[n, in]``, taken from the *unpruned* network), pruning asks
for a sparse ``W'`` that keeps the layer's output: minimise the reconstruction error

    E(W') = ||X W - X W'||^2 / n = sum_o 1/2 (w_o - w'_o)^T H (w_o - w'_o),   H = 2 X^T X / n.

Every output unit ``o`` (column ``w_o`` of the kernel) has its own quadratic with the *same*
Hessian ``H``, so the problem splits into ``out`` independent OBS problems. For one unit, Optimal
Brain Surgeon removes the weight ``q`` of least saliency ``w_q^2 / (2 [H^-1]_qq)`` (exactly the
increase of ``E``) and moves the remaining weights to the new optimum,
``w <- w - w_q H^-1[:, q] / [H^-1]_qq``; the inverse Hessian of the remaining weights is then
``H^-1 - H^-1[:, q] H^-1[q, :] / [H^-1]_qq`` (the row and column ``q`` vanish). Repeating this
greedily, one weight at a time, is OBC's row-wise "ExactOBS" (Frantar & Alistarh 2022); it is exact
OBS at every step (no SparseGPT approximation). One pass over all ``in`` removals records the unit's
weights after every removal count, so a whole sweep of sparsity levels costs one pass per unit.

``damping`` adds ``damping * mean(diag H)`` to the diagonal (``H`` is singular when inputs are
dead, e.g. MNIST's border pixels or dead ReLUs); the saliencies and updates are then those of the
damped quadratic. Biases are kept.

Allocation within a layer (the layer is pruned to a fraction ``f``: ``k = floor(f n + 0.5)`` of its
``n = in * out`` kernel weights, as ``obd.prune`` with scope ``"layerwise"``):

* ``"layer"`` (default, as OBC): the units' error increments are made monotone along each unit's
  trace by a running maximum and the ``k`` smallest are taken over the whole layer (stable order,
  so each unit takes a prefix of its own removal order): units whose weights are cheap to remove
  lose more of them.
* ``"unit"``: every unit loses ``k // out`` weights, the first ``k % out`` units one more.
"""

from __future__ import annotations

from dataclasses import dataclass

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pandas as pd
import scipy.linalg

from obd.checks import check_examples, check_float
from obd.mlp import MLP, layer_sizes, mlp_activation, params_from_module
from obd.network import PIECEWISE_LINEAR, Params, activation_fn
from obd.prune import prune_counts, sweep_table

ALLOCATIONS: tuple[str, ...] = ("layer", "unit")
_LEVEL_BYTES = 2**28  # activations per chunk of levels in :func:`obs_sweep`


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


def layer_hessian(x, damping: float = 0.01) -> np.ndarray:
    """``2 X^T X / n`` plus ``damping * mean(diag)`` on the diagonal (float64)."""
    damping = _check_damping(damping)
    check_float(x)
    x = jnp.asarray(x)
    if x.ndim != 2 or x.shape[0] < 1:
        raise ValueError(f"x must be [n, in] with n >= 1 examples, got shape {x.shape}")
    h = 2.0 * np.asarray(x.T @ x, np.float64) / x.shape[0]
    if not np.isfinite(h).all():  # [in, in]: a cheap check, after the product
        raise ValueError(
            "the layer's inputs hold NaN or inf values, or overflow in X^T X: check the inputs "
            "and the weights (they must be finite)"
        )
    mean_diag = float(np.mean(np.diag(h)))
    h[np.diag_indices_from(h)] += damping * mean_diag
    return h


def _check_damping(damping) -> float:
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


def _inverse(h: np.ndarray) -> np.ndarray:
    """Inverse of the symmetric ``h``; ``ValueError`` unless it is positive definite."""
    inv = spd_inverse(h)
    if inv is None:
        raise ValueError(
            "the layer Hessian 2 X^T X / n is singular (dead inputs or fewer examples than "
            "inputs): use damping > 0"
        )
    return inv


def obs_unit_trace(w: jax.Array, hinv: jax.Array) -> tuple[jax.Array, jax.Array, jax.Array]:
    """Greedy OBS on one unit's weights ``w`` ``[d]`` with inverse Hessian ``hinv`` ``[d, d]``.

    Returns the weights after each of ``0 .. d`` removals ``[d + 1, d]``, the removal order
    ``[d]`` and each removal's error increase ``w_q^2 / (2 [H^-1]_qq)`` ``[d]``. Removed weights
    are exactly zero. Traceable (jit / vmap).
    """
    d = w.shape[0]

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

    _, (ws, order, inc) = jax.lax.scan(step, (w, hinv, jnp.zeros(d, bool)), None, length=d)
    return jnp.concatenate([w[None], ws]), order, inc


@jax.jit
def _kernel_trace(kernel: jax.Array, hinv: jax.Array):
    # lax.map in small batches: a few units' [d, d] inverses stay in cache.
    return jax.lax.map(lambda w: obs_unit_trace(w, hinv), kernel.T, batch_size=4)


def obs_layer_trace(kernel, x, *, damping: float = 0.01) -> LayerTrace:
    """The greedy OBS pass over every output unit of one layer (``kernel`` ``[in, out]``, layer
    inputs ``x`` ``[n, in]``)."""
    kernel = jnp.asarray(kernel)
    if kernel.ndim != 2:
        raise ValueError(f"kernel must be [in, out], got shape {kernel.shape}")
    x = jnp.asarray(x)
    if x.ndim != 2 or x.shape[1] != kernel.shape[0]:
        raise ValueError(f"x must be [n, {kernel.shape[0]}] (the layer's inputs), got {x.shape}")
    if not jnp.issubdtype(kernel.dtype, jnp.floating):
        raise ValueError(f"kernel must be floating point, got {kernel.dtype}")
    hinv = jnp.asarray(_inverse(layer_hessian(x, damping)), kernel.dtype)
    weights, order, inc = _kernel_trace(kernel, hinv)
    return LayerTrace(np.asarray(weights), np.asarray(order), np.asarray(inc))


def layer_inputs(params: Params, x, *, activation: str = "relu") -> list[jax.Array]:
    """Each layer's input on ``x`` through the (unpruned) network ``params``."""
    act = activation_fn(activation)
    h, out = jnp.asarray(x), []
    for i, layer in enumerate(params):
        out.append(h)
        if i < len(params) - 1:
            h = act(h @ layer["kernel"] + layer["bias"])
    return out


def obs_traces(
    params: Params, x_calib, *, damping: float = 0.01, activation: str = "relu"
) -> list[LayerTrace]:
    """:func:`obs_layer_trace` of every layer, with inputs from the unpruned network on
    ``x_calib`` (so the layers are independent and one pass serves every sparsity level)."""
    sizes = layer_sizes(params)
    activation_fn(activation)
    _check_damping(damping)
    shape = np.shape(x_calib)
    if len(shape) != 2 or shape[1] != sizes[0] or shape[0] < 1:
        raise ValueError(f"x_calib must be [n, {sizes[0]}] with n >= 1 examples, got {shape}")
    check_examples(x_calib, name="x_calib")
    x_calib = jnp.asarray(x_calib)
    xs = layer_inputs(params, x_calib, activation=activation)
    return [
        obs_layer_trace(layer["kernel"], h, damping=damping)
        for layer, h in zip(params, xs, strict=True)
    ]


def allocate(increments: np.ndarray, k, allocation: str = "layer") -> np.ndarray:
    """Removals per unit (``[levels, out]``, or ``[out]`` for a scalar ``k``) for ``k`` removals
    in the layer (see the module docstring); ``increments`` is ``[out, in]``."""
    if allocation not in ALLOCATIONS:
        raise ValueError(f"unknown allocation {allocation!r}; accepted: {', '.join(ALLOCATIONS)}")
    increments = np.asarray(increments)
    out, d = increments.shape
    k = np.asarray(k, np.int64)
    if np.any((k < 0) | (k > out * d)):
        raise ValueError(f"k must be in [0, {out * d}], got {k}")
    kk = np.atleast_1d(k)
    if allocation == "unit":
        counts = kk[:, None] // out + (np.arange(out)[None, :] < (kk[:, None] % out))
    else:
        inc = np.nan_to_num(increments.astype(np.float64), nan=np.inf)
        monotone = np.maximum.accumulate(inc, axis=1).ravel()
        rank = np.empty(monotone.size, np.int64)
        rank[np.argsort(monotone, kind="stable")] = np.arange(monotone.size)
        rank = rank.reshape(out, d)
        # units take prefixes of their order: count_o(k) = #{j: rank[o, j] < k}
        sorted_rank = np.sort(rank, axis=1)
        counts = np.stack([np.searchsorted(r, kk, side="left") for r in sorted_rank], axis=1)
    return counts if k.ndim else counts[0]


def _layer_kernels(trace: LayerTrace, counts: np.ndarray) -> np.ndarray:
    """Kernels ``[levels, in, out]`` with unit ``o`` taken after ``counts[level, o]`` removals."""
    w = np.take_along_axis(trace.weights[None], counts[:, :, None, None], axis=2)[:, :, 0]
    return np.swapaxes(w, 1, 2)


def _fractions(fractions) -> np.ndarray:
    prune_counts(fractions, 1)  # validates: numbers, finite, in [0, 1], ndim <= 1
    return np.atleast_1d(np.asarray(fractions, np.float64))


def _check_traces(params: Params, traces) -> None:
    sizes = layer_sizes(params)
    if len(traces) != len(params) or any(
        t.shape != (a, b) for t, a, b in zip(traces, sizes[:-1], sizes[1:], strict=True)
    ):
        raise ValueError("traces do not match params: pass the obs_traces of these params")


def _kernels_at(traces, fractions: np.ndarray, allocation: str) -> tuple[list, np.ndarray]:
    """Per layer the kernels at every level, and the number pruned at every level."""
    kernels, n_pruned = [], np.zeros(len(fractions), np.int64)
    for t in traces:
        d_in, d_out = t.shape
        k = prune_counts(fractions, d_in * d_out)
        kernels.append(_layer_kernels(t, allocate(t.increments, k, allocation)))
        n_pruned += k
    return kernels, n_pruned


def obs_prune(
    params: Params,
    x_calib,
    fraction: float,
    *,
    damping: float = 0.01,
    allocation: str = "layer",
    activation: str = "relu",
    traces: list[LayerTrace] | None = None,
) -> Params:
    """Prune ``fraction`` of every layer's kernel by layer-wise greedy OBS with weight updates.

    ``k = floor(fraction * n + 0.5)`` of each layer's ``n`` kernel weights become exactly zero and
    the others are updated to minimise the layer's reconstruction error on ``x_calib`` (its inputs
    through the unpruned network). Biases are unchanged. ``traces`` (from :func:`obs_traces` on the
    same ``params``) skips the OBS passes.
    """
    f = np.asarray(fraction, np.float64)
    if f.ndim != 0:
        raise ValueError(f"fraction must be a single number in [0, 1], got {fraction!r}")
    if allocation not in ALLOCATIONS:
        raise ValueError(f"unknown allocation {allocation!r}; accepted: {', '.join(ALLOCATIONS)}")
    if traces is None:
        traces = obs_traces(params, x_calib, damping=damping, activation=activation)
    _check_traces(params, traces)
    kernels, _ = _kernels_at(traces, _fractions(f), allocation)
    return [
        {
            "kernel": jnp.asarray(k[0], jnp.asarray(p["kernel"]).dtype),
            "bias": jnp.asarray(p["bias"]),
        }
        for p, k in zip(params, kernels, strict=True)
    ]


@jax.jit(static_argnames=("activation", "level_batch"))
def _evaluate(kernels, biases, x, y, activation: str, level_batch: int):
    act = activation_fn(activation)

    def metrics(ks):
        h = x
        for i, (k, b) in enumerate(zip(ks, biases, strict=True)):
            h = h @ k + b
            if i < len(ks) - 1:
                h = act(h)
        ce = optax.softmax_cross_entropy_with_integer_labels(h, y).mean()
        return (h.argmax(-1) == y).mean(), ce

    return jax.lax.map(metrics, kernels, batch_size=level_batch)


def obs_sweep(
    params: Params,
    x_calib,
    fractions,
    x_test,
    y_test,
    *,
    damping: float = 0.01,
    allocation: str = "layer",
    activation: str = "relu",
    traces: list[LayerTrace] | None = None,
    level_batch: int | None = None,
) -> pd.DataFrame:
    """Layer-wise OBS at each of ``fractions`` (no retraining), evaluated on ``(x_test, y_test)``.

    One greedy pass per layer (:func:`obs_traces`) serves every level. The columns are those of
    :func:`obd.prune.sweep`: ``fraction``, ``pruned_fraction``, ``n_pruned``, ``accuracy``,
    ``loss``. ``n_pruned`` counts the kernel weights that are zero at each level: weights already
    zero have zero saliency, so greedy OBS removes them first (at no cost, without update) and
    they count toward the requested fraction; a layer holding more zeros than a level prunes
    keeps them all (with allocation ``"unit"``, each unit's zeros count toward its own share).
    """
    sizes = layer_sizes(params)
    fractions = _fractions(fractions)
    if allocation not in ALLOCATIONS:
        raise ValueError(f"unknown allocation {allocation!r}; accepted: {', '.join(ALLOCATIONS)}")
    activation_fn(activation)
    xs, ys = np.shape(x_test), np.shape(y_test)
    if len(xs) != 2 or xs[1] != sizes[0] or ys != xs[:1]:
        raise ValueError(f"x_test must be [N, {sizes[0]}] and y_test [N]; got {xs}, {ys}")
    check_examples(x_test, y_test, num_classes=sizes[-1], name="x_test", label_name="y_test")
    x_test, y_test = jnp.asarray(x_test), jnp.asarray(y_test)
    if traces is None:
        traces = obs_traces(params, x_calib, damping=damping, activation=activation)
    _check_traces(params, traces)
    kernels, removed = _kernels_at(traces, fractions, allocation)
    n = sum(a * b for a, b in zip(sizes[:-1], sizes[1:], strict=True))
    n_pruned = zero_counts([p["kernel"] for p in params], kernels, removed)
    return _kernels_table(
        params, kernels, fractions, n_pruned, n, x_test, y_test, activation, level_batch
    )


def zero_counts(original: list, kernels: list[np.ndarray], removed: np.ndarray) -> np.ndarray:
    """The ``n_pruned`` of a sweep: kernel weights equal to zero at each level, over all layers
    (``kernels``, each ``[levels, ...]``), weights that were zero before pruning included.

    When no ``original`` kernel holds a zero (a dense model), that count is ``removed`` (the
    removals at each level: removed weights are exactly zero, the others keep nonzero values), and
    the kernels are not scanned.
    """
    if not any(np.any(np.asarray(k) == 0) for k in original):
        return removed
    return sum(np.count_nonzero(np.reshape(k, (len(k), -1)) == 0, axis=1) for k in kernels)


def _kernels_table(
    params, kernels, fractions, n_pruned, n, x_test, y_test, activation, level_batch
):
    """The sweep table of ``kernels`` (per layer, ``[levels, in, out]``) with ``params``' biases,
    evaluated on ``(x_test, y_test)`` in chunks of ``level_batch`` levels (default: ~256 MB)."""
    sizes = layer_sizes(params)
    dtype = jnp.asarray(params[0]["kernel"]).dtype
    if level_batch is None:
        level_batch = max(1, _LEVEL_BYTES // (4 * len(x_test) * max(sizes[1:])))
    level_batch = int(min(level_batch, len(fractions)))
    acc, ce = _evaluate(
        [jnp.asarray(k, dtype) for k in kernels],
        [jnp.asarray(p["bias"]) for p in params],
        x_test,
        y_test,
        activation,
        level_batch,
    )
    return sweep_table(fractions, n_pruned, n, acc, ce)


# -------------------------------------------------------------------------------------------------
# Global OBS: exact per-unit Hessian blocks of the network loss, removals allocated across layers.
#
# For dense layer l, unit o's incoming weights W_l[:, o] enter only z_l[:, o] = h_l W_l[:, o] + b,
# linearly, and h_l does not depend on layer l, so the exact Hessian block of the mean loss
# L = mean_n l_n with respect to those weights is
#
#     H_lo = mean_n D_l[n, o] h_l[n] h_l[n]^T,      D_l[n, o] = d2 l_n / dz_l[n, o]^2,
#
# the same per-example pre-activation curvature as the exact Hessian diagonal (``obd.hessian``)
# uses: its diagonal is that diagonal's column o. Greedy OBS inside a block is exact OBS for the
# (damped) quadratic model of the loss restricted to that unit; its saliencies are estimated
# increases of the network loss, so they are comparable across units and layers.

#: Bytes of the largest per-chunk intermediate ``D_l[:, :, None] * h_l[:, None, :]`` in
#: :func:`unit_blocks` (chunks of examples are sized to stay below it).
_BLOCK_CHUNK_BYTES = 2**26
#: Default damping of :func:`global_obs_sweep`, relative to each block's mean diagonal.
GLOBAL_DAMPING = 1e-2


def _forward_layers(params: Params, x: jax.Array, act) -> tuple[list, list]:
    """Each layer's input ``h_l`` and pre-activation ``z_l``."""
    hs, zs, h = [], [], x
    for i, layer in enumerate(params):
        z = h @ layer["kernel"] + layer["bias"]
        hs.append(h)
        zs.append(z)
        if i < len(params) - 1:
            h = act(z)
    return hs, zs


def _curvature_sqrt(params: Params, hs, zs, act) -> list[jax.Array]:
    """``D_l`` for piecewise-linear ``act`` (``act'' = 0``): the Hessian is the Gauss-Newton
    matrix ``J^T A J``, ``A = diag(p) - p p^T = S S^T`` with ``S[:, c] = sqrt(p_c)(e_c - p)``;
    with ``B_L = S`` and ``B_l = act'(z_l) * (W_{l+1} B_{l+1})``, ``D_l`` is the sum over the
    ``C`` columns of ``B_l**2`` (as ``obd.hessian``'s ``"fast"`` method)."""
    p = jax.nn.softmax(zs[-1])
    ds = [p * (1.0 - p)]
    b = jnp.sqrt(p)[:, :, None] * (jnp.eye(p.shape[1], dtype=p.dtype) - p[:, None, :])
    for z, above in zip(zs[-2::-1], params[:0:-1], strict=True):
        slope = jax.jvp(act, (z,), (jnp.ones_like(z),))[1]
        b = (b @ above["kernel"].T) * slope[:, None, :]
        ds.insert(0, jnp.sum(b * b, axis=1))
    return ds


def _curvature_hvp(params: Params, hs, zs, y, activation: str) -> list[jax.Array]:
    """``D_l`` for any activation: per-example Hessian-vector products of the loss as a function
    of ``z_l`` against the unit vectors of ``z_l`` (examples are independent, so one HVP with
    the tangent ``e_j`` in every example gives column ``j`` for all of them)."""
    act = activation_fn(activation)
    ds = []
    for i, z in enumerate(zs):
        above = params[i + 1 :]

        def loss_of_z(z: jax.Array, above: Params = above) -> jax.Array:
            h = z
            if above:
                h = act(z)
                for j, layer in enumerate(above):
                    h = h @ layer["kernel"] + layer["bias"]
                    if j < len(above) - 1:
                        h = act(h)
            return optax.softmax_cross_entropy_with_integer_labels(h, y).sum()

        grad_z = jax.grad(loss_of_z)
        units = jnp.broadcast_to(
            jnp.eye(z.shape[1], dtype=z.dtype)[:, None, :], (z.shape[1], *z.shape)
        )
        hv = jax.vmap(lambda t, z=z, g=grad_z: jax.jvp(g, (z,), (t,))[1])(units)  # [j, n, j']
        ds.append(jnp.diagonal(hv, axis1=0, axis2=2))
    return ds


#: Inputs per tile in :func:`_block_sums`: blocks are symmetric, so of the ``T x T`` tiles of a
#: block only the ``T (T + 1) / 2`` on and above the diagonal are computed (``T = 4``: 62.5%).
_TILE = 200


def _tiles(a: int, tile: int) -> list[tuple[int, int]]:
    """``[start, stop)`` ranges of about ``tile`` inputs covering ``a`` inputs."""
    t = max(1, round(a / tile))
    edges = np.linspace(0, a, t + 1).round().astype(int)
    return list(zip(edges[:-1].tolist(), edges[1:].tolist(), strict=True))


@jax.jit(static_argnames=("activation", "chunk", "n_chunks", "tile"))
def _block_sums(params, x, y, cols, *, activation: str, chunk: int, n_chunks: int, tile: int):
    """``sum_n D_l[n, o] h_l[n, c] h_l[n, c']`` over the columns ``c, c'`` in ``cols[l]``, for
    every layer ``l`` and unit ``o``, as the upper tiles ``{(i, j): [out, |i|, |j|]}`` (``i <= j``)
    of :func:`_tiles`. Chunk ``i`` covers rows ``[i chunk, (i+1) chunk)``, the last one slid back
    to end at ``N`` with its rows already seen weighted 0."""
    act = activation_fn(activation)
    dtype = params[0]["kernel"].dtype
    n = x.shape[0]
    tiles = [_tiles(c.size, tile) for c in cols]

    def body(i, acc):
        start = jnp.minimum(i * chunk, n - chunk)
        xb = jax.lax.dynamic_slice_in_dim(x, start, chunk).astype(dtype)
        yb = jax.lax.dynamic_slice_in_dim(y, start, chunk)
        wb = (start + jnp.arange(chunk) >= i * chunk).astype(dtype)
        hs, zs = _forward_layers(params, xb, act)
        if activation in PIECEWISE_LINEAR:
            ds = _curvature_sqrt(params, hs, zs, act)
        else:
            ds = _curvature_hvp(params, hs, zs, yb, activation)
        out = []
        for a, h, d, c, ts in zip(acc, hs, ds, cols, tiles, strict=True):
            hc = h[:, c]
            dw = d * wb[:, None]
            new = {}
            for ti, (lo, hi) in enumerate(ts):
                g = dw[:, :, None] * hc[:, None, lo:hi]  # [chunk, out, |i|]
                for tj in range(ti, len(ts)):
                    lo2, hi2 = ts[tj]
                    s = jnp.einsum("nk,nj->kj", g.reshape(chunk, -1), hc[:, lo2:hi2])  # one GEMM
                    new[f"{ti},{tj}"] = a[f"{ti},{tj}"] + s.reshape(a[f"{ti},{tj}"].shape)
            out.append(new)
        return out

    zeros = [
        {
            f"{ti},{tj}": jnp.zeros(
                (p["kernel"].shape[1], ts[ti][1] - ts[ti][0], ts[tj][1] - ts[tj][0]), dtype
            )  # fmt: skip
            for ti in range(len(ts))
            for tj in range(ti, len(ts))
        }
        for p, ts in zip(params, tiles, strict=True)
    ]
    if n_chunks == 1:
        return body(jnp.asarray(0), zeros)
    return jax.lax.fori_loop(0, n_chunks, body, zeros)


def _as_dense(params, activation: str | None) -> tuple[Params, str]:
    """Plain dense-layer params and the activation's name, from the plain pytree (``activation``,
    default ``"relu"``), an ``obd.mlp.MLP`` or an ``nnx.Sequential`` of ``nnx.Linear`` layers
    with one elementwise activation between each two (e.g. ``obd.nets.mlp``, ``lenet_300_100``;
    the models' own activation, which ``activation`` must not contradict); ``ValueError`` for
    anything else. A Linear without bias gets a zero bias (it is kept, never pruned)."""
    if isinstance(params, MLP):
        return params_from_module(params), _model_activation(mlp_activation(params), activation)
    from obd import network

    if not network.is_module(params):
        return params, "relu" if activation is None else activation
    net, layers, _ = network.as_network(params)
    ops = net.ops
    dense = [op for op in ops if isinstance(op, network.Dense)]
    acts = {op.name for op in ops if isinstance(op, network.Act)}
    pattern = all(
        isinstance(op, network.Dense if i % 2 == 0 else network.Act) for i, op in enumerate(ops)
    )
    if not (net.dense_only and pattern and isinstance(ops[-1], network.Dense) and len(acts) <= 1):
        raise ValueError(
            "global OBS needs dense layers with one activation between each two "
            "(nnx.Linear, activation, nnx.Linear, ...); got "
            + ", ".join(type(op).__name__ for op in ops)
        )
    name = _model_activation(acts.pop(), activation) if acts else activation or "relu"
    activation_fn(name)  # ValueError naming the accepted activations
    out = []
    for op in dense:
        layer = layers[op.slot]
        bias = layer.get("bias", jnp.zeros(layer["kernel"].shape[1], layer["kernel"].dtype))
        out.append({"kernel": layer["kernel"], "bias": bias})
    return out, name


def _model_activation(own: str, given: str | None) -> str:
    """A model's own activation ``own``; ``ValueError`` if the caller gave another one."""
    if given is not None and given != own:
        raise ValueError(
            f"activation={given!r} conflicts with the model's own activation {own!r}; the model "
            "is evaluated with its own (leave activation unset)"
        )
    return own


def _prepare_global(params: Params, x, y, activation: str):
    """Validate; return float params (one dtype), ``x``, ``y`` as arrays."""
    if isinstance(params, MLP):
        params = params_from_module(params)
    sizes = layer_sizes(params)
    activation_fn(activation)
    dtype = jnp.result_type(*jax.tree.leaves(params))
    if not jnp.issubdtype(dtype, jnp.floating):
        raise ValueError(f"params must be floating point, got dtype {dtype}")
    params = [{k: jnp.asarray(layer[k], dtype) for k in ("kernel", "bias")} for layer in params]
    check_examples(x, y, num_classes=sizes[-1])
    x, y = jnp.asarray(x), jnp.asarray(y)
    if x.ndim != 2 or x.shape[1] != sizes[0]:
        raise ValueError(f"x must be [N, {sizes[0]}] (matching the first kernel), got {x.shape}")
    return params, x, y


def unit_blocks(
    params: Params,
    x,
    y,
    *,
    activation: str | None = None,
    batch_size: int | None = None,
) -> list[np.ndarray]:
    """The exact Hessian block of every unit's incoming kernel weights: per layer ``[out, in, in]``.

    ``blocks[l][o] = H_lo = mean_n D_l[n, o] h_l[n] h_l[n]^T``, the Hessian of
    ``obd.mlp.loss(params, x, y)`` with respect to ``params[l]["kernel"][:, o]`` (see the
    section comment above). ``D_l`` comes from backpropagating the square root of the softmax
    cross-entropy's Hessian for piecewise-linear activations (where the Hessian equals the
    Gauss-Newton matrix) and from per-example Hessian-vector products otherwise: exact either way.
    Examples are summed in chunks of at most ``batch_size`` (default: the chunk whose largest
    intermediate stays under 64 MB), so memory does not grow with ``N``; inputs that are zero on
    every example (blank pixels, dead units) have zero rows and columns and are not computed.
    Work is done in the parameters' dtype; the blocks are returned as NumPy arrays of that dtype.
    """
    params, activation = _as_dense(params, activation)
    params, x, y = _prepare_global(params, x, y, activation)
    act = activation_fn(activation)
    # Columns that are nonzero on some example, from one forward pass (in chunks).
    active = [np.zeros(p["kernel"].shape[0], bool) for p in params]
    for start in range(0, x.shape[0], 10_000):
        hs, _ = _forward_layers(
            params, x[start : start + 10_000].astype(params[0]["kernel"].dtype), act
        )
        for a, h in zip(active, hs, strict=True):
            a |= np.asarray(jnp.any(h != 0, axis=0))
    cols = [np.flatnonzero(a) for a in active]
    widest = max(p["kernel"].shape[1] * max(c.size, 1) for p, c in zip(params, cols, strict=True))
    itemsize = jnp.dtype(params[0]["kernel"].dtype).itemsize
    if batch_size is None:
        batch_size = max(16, _BLOCK_CHUNK_BYTES // (itemsize * widest))
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"batch_size must be an integer >= 1, got {batch_size!r}")
    n = x.shape[0]
    n_chunks = -(-n // min(batch_size, n))
    chunk = -(-n // n_chunks)
    sums = _block_sums(
        params,
        x,
        y,
        [jnp.asarray(c) for c in cols],
        activation=activation,
        chunk=chunk,
        n_chunks=n_chunks,
        tile=_TILE,
    )
    blocks = []
    for p, c, s in zip(params, cols, sums, strict=True):
        d_in, d_out = p["kernel"].shape
        ts = _tiles(c.size, _TILE)
        dense = np.zeros((d_out, c.size, c.size), jnp.dtype(p["kernel"].dtype))
        for key, tile in s.items():
            (lo, hi), (lo2, hi2) = (ts[int(t)] for t in key.split(","))
            dense[:, lo:hi, lo2:hi2] = np.asarray(tile)
            dense[:, lo2:hi2, lo:hi] = np.swapaxes(np.asarray(tile), 1, 2)
        full = np.zeros((d_out, d_in, d_in), dense.dtype)
        full[:, c[:, None], c[None, :]] = dense / n
        blocks.append(full)
    return blocks


def damped_inverses(blocks: np.ndarray, damping: float = GLOBAL_DAMPING) -> np.ndarray:
    """``(H_o + delta_o I)^-1`` for a layer's blocks ``[out, d, d]`` (float64).

    ``delta_o = damping * mean(diag H_o)``, relative to each unit's own curvature so that one
    ``damping`` suits layers whose curvatures differ by orders of magnitude. A unit whose block
    is zero (a dead unit: ``D = 0`` on every example) gets ``damping`` times the mean over the
    layer's units instead, or ``damping`` itself if the whole layer is flat. ``damping`` must be
    > 0 unless every block is positive definite (blank pixels make MNIST's first-layer blocks
    singular).
    """
    damping = _check_damping(damping)
    h = np.asarray(blocks, np.float64)
    if h.ndim != 3 or h.shape[1] != h.shape[2]:
        raise ValueError(f"blocks must be [out, d, d], got shape {h.shape}")
    scale = np.einsum("oii->o", h) / h.shape[1]
    fallback = float(scale.mean()) if scale.mean() > 0 else 1.0
    delta = damping * np.where(scale > 0, scale, fallback)
    h = h + delta[:, None, None] * np.eye(h.shape[1])
    inv = spd_inverse(h)
    if inv is None:
        raise ValueError(
            "a unit's damped Hessian block is not positive definite: blocks are singular when "
            "inputs are zero on every example or there are fewer examples than inputs (use "
            "damping > 0), and for activations that are not piecewise linear the exact block can "
            "have negative curvature (use a larger damping)"
        )
    return inv


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
        (wc, hc, pruned), (wsc, qc, inc) = _greedy_steps(wc, hc, size - nxt)
        ws_out.append(jnp.zeros((size - nxt, d), w.dtype).at[:, idx].set(wsc))
        order_out.append(idx[qc])
        inc_out.append(inc)
        if nxt:
            keep = jnp.nonzero(~pruned, size=nxt)[0]
            idx, wc, hc = idx[keep], wc[keep], hc[keep][:, keep]
    return jnp.concatenate(ws_out), jnp.concatenate(order_out), jnp.concatenate(inc_out)


def _greedy_steps(w: jax.Array, hinv: jax.Array, steps: int):
    """``steps`` greedy OBS removals (as :func:`obs_unit_trace`); returns the final carry
    ``(w, hinv, pruned)`` and per step the weights, the removed index and the increment."""

    def step(carry, _):
        w, hinv, pruned = carry
        diag = jnp.diagonal(hinv)
        score = jnp.where(pruned, jnp.inf, w * w / diag)
        q = jnp.argmin(score)
        hq = hinv[:, q]
        w = jnp.where(pruned, 0.0, w - hq * (w[q] / hq[q])).at[q].set(0.0)
        hinv = hinv - jnp.outer(hq, hq / hq[q])
        return (w, hinv, pruned.at[q].set(True)), (w, q, 0.5 * score[q])

    init = (w, hinv, jnp.zeros(w.shape[0], bool))
    return jax.lax.scan(step, init, None, length=steps)


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
    after ``j`` removals. ``blocks`` (from :func:`unit_blocks` on the same data) skips computing
    them.
    """
    _check_damping(damping)
    params, activation = _as_dense(params, activation)
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
        _layer_kernels(t, c) if update else _masked_kernels(t, p["kernel"], c)
        for t, p, c in zip(traces, params, counts, strict=True)
    ]
    return kernels, k, n


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
) -> Params:
    """Prune ``fraction`` of all kernel weights by global OBS (biases kept).

    ``k = floor(fraction * n + 0.5)`` of the ``n`` kernel weights become exactly zero, allocated
    across units and layers by :func:`global_allocate`; with ``update`` the remaining weights of
    each unit take the OBS update of its block, without it they keep their values (mask only).
    """
    f = np.asarray(fraction, np.float64)
    if f.ndim != 0:
        raise ValueError(f"fraction must be a single number in [0, 1], got {fraction!r}")
    params, activation = _as_dense(params, activation)
    if traces is None:
        traces = global_obs_traces(params, x, y, damping=damping, activation=activation)
    _check_traces(params, traces)
    kernels, _, _ = _global_kernels(params, traces, _fractions(f), bool(update))
    return [
        {
            "kernel": jnp.asarray(k[0], jnp.asarray(p["kernel"]).dtype),
            "bias": jnp.asarray(p["bias"]),
        }
        for p, k in zip(params, kernels, strict=True)
    ]


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
) -> pd.DataFrame:
    """Global OBS at each of ``fractions`` (one-shot, no retraining), evaluated on
    ``(x_test, y_test)``.

    The exact Hessian block of each unit's incoming weights on ``(x, y)``
    (:func:`unit_blocks`), damped by ``damping * mean(diag H_o)`` (:func:`damped_inverses`), is
    pruned greedily by OBS, one weight at a time: remove the weight ``q`` of least
    ``w_q^2 / (2 [H_o^-1]_qq)``, update ``w <- w - w_q H_o^-1[:, q] / [H_o^-1]_qq`` and downdate
    the inverse (:func:`obs_unit_trace`). Removals are allocated over all units and layers by
    :func:`global_allocate`; ``update=False`` keeps the same removals without the weight update.
    One greedy pass serves every level; ``traces`` (from :func:`global_obs_traces`) skips it.
    Biases are kept. The columns are those of :func:`obd.prune.sweep`: ``fraction``,
    ``pruned_fraction``, ``n_pruned``, ``accuracy``, ``loss``; ``n_pruned`` counts the kernel
    weights that are zero at each level (weights already zero are removed first, as in
    :func:`obs_sweep`). ``params`` is the plain list of dense layers (``activation`` between them,
    default ``"relu"``), an ``obd.mlp.MLP``, or an ``nnx.Sequential`` of ``nnx.Linear`` layers
    with one activation between each two; the two models carry their activation, and an
    ``activation`` that differs from it is a ``ValueError``.
    """
    params, activation = _as_dense(params, activation)
    sizes = layer_sizes(params)
    fractions = _fractions(fractions)
    _check_damping(damping)
    if not isinstance(update, bool | np.bool_):
        raise ValueError(f"update must be True (OBS update) or False (mask only), got {update!r}")
    check_examples(x_test, y_test, num_classes=sizes[-1], name="x_test", label_name="y_test")
    x_test, y_test = jnp.asarray(x_test), jnp.asarray(y_test)
    if x_test.ndim != 2 or x_test.shape[1] != sizes[0]:
        raise ValueError(f"x_test must be [N, {sizes[0]}] and y_test [N]; got {x_test.shape}")
    if traces is None:
        traces = global_obs_traces(
            params, x, y, damping=damping, activation=activation, batch_size=batch_size
        )
    _check_traces(params, traces)
    kernels, removed, n = _global_kernels(params, traces, fractions, bool(update))
    n_pruned = zero_counts([p["kernel"] for p in params], kernels, removed)
    return _kernels_table(
        params, kernels, fractions, n_pruned, n, x_test, y_test, activation, level_batch
    )

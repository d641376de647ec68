"""Exact per-unit Hessian blocks of the network loss, for global OBS.

For dense layer l, unit o's incoming weights W_l[:, o] enter only z_l[:, o] = h_l W_l[:, o] + b,
linearly, and h_l does not depend on layer l, so the exact Hessian block of the mean loss
L = mean_n l_n with respect to those weights is

    H_lo = mean_n D_l[n, o] h_l[n] h_l[n]^T,      D_l[n, o] = d2 l_n / dz_l[n, o]^2,

the same per-example pre-activation curvature as the exact Hessian diagonal (``obd.hessian``)
uses: its diagonal is that diagonal's column o. Greedy OBS inside a block is exact OBS for the
(damped) quadratic model of the loss restricted to that unit; its saliencies are estimated
increases of the network loss, so they are comparable across units and layers.

:func:`unit_blocks` computes every block over the Hessian examples; :func:`damped_inverses` damps
and inverts a layer's blocks.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import optax

from obd.checks import check_examples
from obd.mlp import MLP, layer_sizes, mlp_activation, params_from_module
from obd.network import PIECEWISE_LINEAR, Params, activation_fn
from obd.obs.greedy import check_damping, spd_inverse

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


def _chunk_curvature(params: Params, x, y, i, chunk: int, activation: str):
    """For chunk ``i`` of the examples: each layer's input ``h_l``, its curvature ``D_l`` and the
    examples' weights (chunk ``i`` covers rows ``[i chunk, (i+1) chunk)``, the last one slid back
    to end at ``N`` with its rows already seen weighted 0)."""
    act = activation_fn(activation)
    dtype = params[0]["kernel"].dtype
    n = x.shape[0]
    start = jnp.minimum(i * chunk, n - chunk)
    xb = jax.lax.dynamic_slice_in_dim(x, start, chunk).astype(dtype)
    yb = jax.lax.dynamic_slice_in_dim(y, start, chunk)
    wb = (start + jnp.arange(chunk) >= i * chunk).astype(dtype)
    hs, zs = _forward_layers(params, xb, act)
    if activation in PIECEWISE_LINEAR:
        return hs, _curvature_sqrt(params, hs, zs, act), wb
    return hs, _curvature_hvp(params, hs, zs, yb, activation), wb


@jax.jit(static_argnames=("activation", "chunk", "n_chunks", "tile"))
def _block_sums(params, x, y, cols, *, activation: str, chunk: int, n_chunks: int, tile: int):
    """``sum_n D_l[n, o] h_l[n, c] h_l[n, c']`` over the columns ``c, c'`` in ``cols[l]``, for
    every layer ``l`` and unit ``o``, as the upper tiles ``{(i, j): [out, |i|, |j|]}`` (``i <= j``)
    of :func:`_tiles`. Chunk ``i`` covers rows ``[i chunk, (i+1) chunk)``, the last one slid back
    to end at ``N`` with its rows already seen weighted 0."""
    dtype = params[0]["kernel"].dtype
    tiles = [_tiles(c.size, tile) for c in cols]

    def body(i, acc):
        hs, ds, wb = _chunk_curvature(params, x, y, i, chunk, activation)
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


def as_dense(params, activation: str | None) -> tuple[Params, str]:
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
    module docstring). ``D_l`` comes from backpropagating the square root of the softmax
    cross-entropy's Hessian for piecewise-linear activations (where the Hessian equals the
    Gauss-Newton matrix) and from per-example Hessian-vector products otherwise: exact either way.
    Examples are summed in chunks of at most ``batch_size`` (default: the chunk whose largest
    intermediate stays under 64 MB), so memory does not grow with ``N``; inputs that are zero on
    every example (blank pixels, dead units) have zero rows and columns and are not computed.
    Work is done in the parameters' dtype; the blocks are returned as NumPy arrays of that dtype.
    """
    params, activation = as_dense(params, activation)
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


def unit_damping(scales, damping: float) -> np.ndarray:
    """Each unit's damping ``lambda_o = damping * scales[o]`` (``scales[o] = mean(diag H_o)``,
    the unit's own curvature), so that one ``damping`` suits layers whose curvatures differ by
    orders of magnitude. A unit whose scale is zero (a dead unit: ``D = 0`` on every example)
    gets ``damping`` times the mean over the layer's units instead, or ``damping`` itself if the
    whole layer is flat."""
    scale = np.asarray(scales, np.float64)
    fallback = float(scale.mean()) if scale.mean() > 0 else 1.0
    return damping * np.where(scale > 0, scale, fallback)


def damped_inverses(blocks: np.ndarray, damping: float = GLOBAL_DAMPING) -> np.ndarray:
    """``(H_o + delta_o I)^-1`` for a layer's blocks ``[out, d, d]`` (float64).

    ``delta_o = damping * mean(diag H_o)``, relative to each unit's own curvature so that one
    ``damping`` suits layers whose curvatures differ by orders of magnitude. A unit whose block
    is zero (a dead unit: ``D = 0`` on every example) gets ``damping`` times the mean over the
    layer's units instead, or ``damping`` itself if the whole layer is flat. ``damping`` must be
    > 0 unless every block is positive definite (blank pixels make MNIST's first-layer blocks
    singular).
    """
    damping = check_damping(damping)
    h = np.asarray(blocks, np.float64)
    if h.ndim != 3 or h.shape[1] != h.shape[2]:
        raise ValueError(f"blocks must be [out, d, d], got shape {h.shape}")
    delta = unit_damping(np.einsum("oii->o", h) / h.shape[1], damping)
    h = h + delta[:, None, None] * np.eye(h.shape[1])
    inv = spd_inverse(h)
    if inv is None:
        raise singular_block_error()
    return inv


def singular_block_error() -> ValueError:
    """The error for a damped block that is not positive definite."""
    return ValueError(
        "a unit's damped Hessian block is not positive definite: blocks are singular when "
        "inputs are zero on every example or there are fewer examples than inputs (use "
        "damping > 0), and for activations that are not piecewise linear the exact block can "
        "have negative curvature (use a larger damping)"
    )


@jax.jit(static_argnames=("activation", "chunk", "n_chunks"))
def _support_sums(params, x, y, index, *, activation: str, chunk: int, n_chunks: int):
    """Per layer ``sum_n D_l[n, o] h_l[n, i] h_l[n, j]`` over ``i, j`` in ``index[l][o]``
    (``[out, m, m]``) and the full diagonal ``sum_n D_l[n, o] h_l[n, i]^2`` (``[out, in]``);
    chunks of examples as :func:`_block_sums`."""
    dtype = params[0]["kernel"].dtype

    def body(i, acc):
        hs, ds, wb = _chunk_curvature(params, x, y, i, chunk, activation)
        out = []
        for (blocks, diag), h, d, idx in zip(acc, hs, ds, index, strict=True):
            dw = d * wb[:, None]  # [chunk, out]
            g = h[:, idx]  # [chunk, out, m]
            s = jnp.einsum("nom,nop->omp", g * dw[:, :, None], g)
            out.append((blocks + s, diag + jnp.einsum("no,ni->oi", dw, h * h)))
        return out

    zeros = [
        (
            jnp.zeros((idx.shape[0], idx.shape[1], idx.shape[1]), dtype),
            jnp.zeros((idx.shape[0], p["kernel"].shape[0]), dtype),
        )
        for p, idx in zip(params, index, strict=True)
    ]
    if n_chunks == 1:
        return body(jnp.asarray(0), zeros)
    return jax.lax.fori_loop(0, n_chunks, body, zeros)


#: :func:`support_index` rounds ``m`` up to a multiple of this, so that the compiled programs of
#: one stage (shapes ``[out, m, m]``) serve the later stages and seeds that round to the same ``m``.
SUPPORT_BUCKET = 16


def support_index(params: Params) -> list[np.ndarray]:
    """Per layer ``[out, m]``: each unit's inputs with a nonzero weight, then inputs of weight
    zero to fill ``m``: the layer's largest count of nonzero weights (at least 1), rounded up to a
    multiple of :data:`SUPPORT_BUCKET` (at most the layer's inputs)."""
    out = []
    for layer in params:
        nonzero = (np.asarray(layer["kernel"]) != 0).T  # [out, in]
        m = max(1, int(nonzero.sum(axis=1).max()))
        m = min(nonzero.shape[1], -(-m // SUPPORT_BUCKET) * SUPPORT_BUCKET)
        # stable sort: nonzero inputs first, each group in input order
        out.append(np.argsort(~nonzero, axis=1, kind="stable")[:, :m])
    return out


def support_blocks(
    params: Params,
    x,
    y,
    index: list[np.ndarray],
    *,
    activation: str | None = None,
    batch_size: int | None = None,
) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """:func:`unit_blocks` restricted to some inputs of each unit: per layer the blocks
    ``H_lo[index[l][o]][:, index[l][o]]`` (``[out, m, m]``) and each block's full diagonal mean
    ``mean_i H_lo[i, i]`` over all the unit's inputs (``[out]``, the damping's scale).

    With ``index`` from :func:`support_index` this is the part of the exact blocks that pruning
    with the zero weights held at zero reads: ``O(N out m^2)`` work instead of ``O(N out in^2)``.
    """
    params, activation = as_dense(params, activation)
    params, x, y = _prepare_global(params, x, y, activation)
    sizes = layer_sizes(params)
    index = [np.asarray(i) for i in index]
    if len(index) != len(params) or any(
        i.ndim != 2 or i.shape[0] != o or i.size == 0 or i.min() < 0 or i.max() >= d
        for i, d, o in zip(index, sizes[:-1], sizes[1:], strict=True)
    ):
        raise ValueError("index must hold per layer an [out, m] array of input indices")
    widest = max(i.shape[0] * i.shape[1] for i in index)
    itemsize = jnp.dtype(params[0]["kernel"].dtype).itemsize
    if batch_size is None:
        batch_size = max(16, _BLOCK_CHUNK_BYTES // (itemsize * widest))
    n = x.shape[0]
    n_chunks = -(-n // min(batch_size, n))
    chunk = -(-n // n_chunks)
    sums = _support_sums(
        params, x, y, [jnp.asarray(i) for i in index], activation=activation, chunk=chunk,
        n_chunks=n_chunks,
    )  # fmt: skip
    blocks = [np.asarray(b) / n for b, _ in sums]
    scales = [np.asarray(d).mean(axis=1) / n for _, d in sums]
    return blocks, scales

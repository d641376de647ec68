"""Exact diagonal of the Hessian of the mean softmax cross-entropy, for any supported network.

A model is the plain MLP pytree (``obd.mlp``) or an ``nnx.Sequential`` of ``nnx.Linear``, ``nnx.Conv``,
pooling, flatten and elementwise activations (``obd.network``). The loss is
``L = mean_n l_n`` with ``l_n`` the softmax cross-entropy of example ``n``, and every method sums
over chunks of at most ``batch_size`` examples inside one jitted loop, dividing by ``N`` at the end.

**Factored curvature ("exact", "fast").** Write the network as operations ``f_K o ... o f_1`` with
inputs ``a_k`` and logits ``z``. The per-example Hessian of ``l_n`` with respect to the output of
any operation is a sum of signed outer products ``sum_j s_j b_j b_j^T`` ("factors"), which are
carried down the network from the loss:

* at the logits, ``d2l/dz^2 = diag(p) - p p^T = S S^T`` with ``C`` columns
  ``S[:, c] = sqrt(p_c) (e_c - p)``, all signs ``+1``;
* through a linear operation (dense, conv, pooling, flatten) each factor column is
  back-propagated by the operation's transpose (its VJP; max pooling routes to the argmax,
  which tied maxima of a tiling window share);
* through an elementwise activation ``h = act(u)`` each column is multiplied by ``act'(u)``, and,
  when ``act'' != 0``, the *residual* ``diag(g * act''(u))`` (``g = dl/dh``, the ordinary gradient)
  enters as one new column per activation unit, ``sqrt(|r_u|) e_u`` with sign ``sign(r_u)``
  (BackPACK's DiagHessian). Piecewise-linear activations (ReLU, leaky ReLU) add none, and the
  Hessian then equals the Gauss-Newton matrix ``J^T S S^T J``.

A parametric layer with output ``o = F(a; theta)`` linear in ``theta`` has
``d2l/dtheta_i^2 = sum_j s_j (J_theta^T b_j)_i^2``, i.e. the squared per-example, per-column
parameter VJPs. For a dense layer ``z = a W + b``, ``(J_W^T b)[i, o] = a_i b_o``, so the kernel
diagonal factorises as ``(a**2)^T (sum_j s_j b_j**2)``: one product per layer, like a backward pass.
A convolution shares its kernel over output positions ``p``, so the per-example VJP
``G[i, o] = sum_p patch_p[i] b[p, o]`` (``patch_p`` the input patch at ``p``, im2col) is formed as a
batched matrix product, squared and summed, chunk by chunk so memory stays bounded.

Methods (:data:`METHODS`):

* ``"exact"`` (default): the factored computation, residual terms included: exact for every
  supported activation. For piecewise-linear networks it costs one forward pass and the
  propagation of ``C`` columns; smooth activations add one column per activation unit.
* ``"fast"``: the factored Gauss-Newton part only; refused unless every activation is piecewise
  linear (where it equals ``"exact"``).
* ``"hvp"`` (dense-only networks): ``d2l/dz^2`` per example from Hessian-vector products against
  the unit vectors of each layer's pre-activation ``z``; an independent exact path.
* ``"bruteforce"``: one HVP of the loss per parameter; the reference, for small nets only.
* ``"hutchinson"``: the unbiased estimate ``mean_s v_s * (H v_s)`` over Rademacher probes ``v_s``.

With several devices (``jax.devices()``), the examples are split evenly over them with
``jax.shard_map`` and the per-device sums are added (``psum``), so the same call scales to a
multi-accelerator host. The work is done in the parameters' floating dtype.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax
from jax.flatten_util import ravel_pytree
from jax.sharding import Mesh, PartitionSpec

from obd.checks import check_examples, check_finite_params
from obd.network import Act, Conv, Dense, Network, Params, as_network, input_check, to_params

#: The ``method`` values :func:`hessian_diag` accepts (see the module docstring).
METHODS: tuple[str, ...] = ("exact", "fast", "hvp", "bruteforce", "hutchinson")
#: Examples per chunk for dense-only networks. Small chunks keep the intermediates in the CPU
#: caches: for the blog's MLP on 60,000 examples (2-core CPU), the diagonal takes ~1.5x one
#: full-batch gradient with chunks of 1,000 to 2,000, but ~2.3x with 10,000.
DEFAULT_BATCH_SIZE = 2_000
#: Elements of the largest per-chunk intermediate for networks with convolutions (about 256 MB in
#: float32); the default chunk size and the residual-column blocks are chosen to stay below it.
MEMORY_BUDGET = 2**26
#: How many unit vectors ("bruteforce") or probes ("hutchinson") are vmapped together.
_DIRECTION_BATCH = 64

ChunkFn = Callable[..., Params]


def _weighted_loss_sum(
    net: Network, params: Params, x: jax.Array, y: jax.Array, w: jax.Array
) -> jax.Array:
    """``sum_n w_n l_n``: the chunk's contribution to ``N * loss`` (``w`` masks repeated rows)."""
    logits = net.apply(params, x)
    return jnp.sum(w * optax.softmax_cross_entropy_with_integer_labels(logits, y))


def _forward(net: Network, params: Params, x: jax.Array) -> tuple[list[jax.Array], jax.Array]:
    """The input of every operation, and the logits."""
    inputs, h = [], x
    for op in net.ops:
        inputs.append(h)
        h = net.apply_op(op, params, h)
    return inputs, h


def _derivatives(act: Callable, u: jax.Array) -> tuple[jax.Array, jax.Array]:
    """``act'(u)`` and ``act''(u)``, elementwise, by forward-mode differentiation."""
    ones = jnp.ones_like(u)

    def slope(v):
        return jax.jvp(act, (v,), (ones,))[1]

    d1, d2 = jax.jvp(slope, (u,), (ones,))
    return d1, d2


def _transpose(net: Network, op, params: Params, a: jax.Array, b: jax.Array) -> jax.Array:
    """Back-propagate factor columns ``b`` ``[n, K, *out]`` through the linear ``op`` at input
    ``a`` ``[n, *in]``: ``[n, K, *in]``."""
    if isinstance(op, Dense):
        return b @ params[op.slot]["kernel"].T
    n, k = b.shape[:2]
    if isinstance(op, Conv):  # input-independent: one transposed convolution for all columns
        kernel = params[op.slot]["kernel"]
        shape = jax.ShapeDtypeStruct((n * k, *a.shape[1:]), b.dtype)
        (out,) = jax.linear_transpose(lambda t: op(t, kernel), shape)(
            b.reshape(n * k, *b.shape[2:])
        )
        return out.reshape(n, k, *a.shape[1:])
    _, vjp = jax.vjp(lambda t: net.apply_op(op, params, t), a)
    return jax.vmap(lambda c: vjp(c)[0], in_axes=1, out_axes=1)(b)


def _signed_sum(b2: jax.Array, s: jax.Array | None) -> jax.Array:
    """``sum_j s_j b_j**2`` over the column axis 1 (``s`` None: all signs +1)."""
    return b2.sum(1) if s is None else jnp.einsum("nk,nk...->n...", s, b2)


def _layer_diag(op, a: jax.Array, b: jax.Array, s: jax.Array | None, kernel_shape) -> dict:
    """Summed diagonal of one parametric layer for factor columns ``b`` at its output."""
    if isinstance(op, Dense):
        if a.ndim != 2:
            raise ValueError(
                f"nnx.Linear layers must receive [N, features] inputs (use obd.nets.flatten "
                f"before them), got an input of shape {a.shape}"
            )
        d = _signed_sum(b * b, s)  # [n, out]
        out = {"kernel": jnp.einsum("ni,no->io", a * a, d)}
        if op.use_bias:
            out["bias"] = d.sum(0)
        return out
    n, k = b.shape[:2]
    cout = b.shape[-1]
    patches = op.patches(a, kernel_shape)  # [n, P, I]
    bp = b.reshape(n, k, -1, cout)  # [n, K, P, out]
    g = jnp.einsum("npi,nkpo->nkio", patches, bp)  # per-example, per-column kernel VJPs
    out = {"kernel": _signed_sum(g * g, s).sum(0).reshape(kernel_shape)}
    if op.use_bias:
        gb = bp.sum(2)
        out["bias"] = _signed_sum(gb * gb, s).sum(0)
    return out


def _add(acc: list, slot: int, part: dict) -> None:
    acc[slot] = part if acc[slot] is None else jax.tree.map(jnp.add, acc[slot], part)


def _propagate(net, params, inputs, start, b, s, acc) -> None:
    """Carry factor columns ``b`` (signs ``s``) from the input of operation ``start`` down the
    network, adding each parametric layer's diagonal terms to ``acc``."""
    lowest = min(i for i, op in enumerate(net.ops) if isinstance(op, Dense | Conv))
    for k in range(start - 1, lowest - 1, -1):
        op, a = net.ops[k], inputs[k]
        if isinstance(op, Dense | Conv):
            _add(acc, op.slot, _layer_diag(op, a, b, s, params[op.slot]["kernel"].shape))
        if k == lowest:
            break
        if isinstance(op, Act):
            b = b * _derivatives(op.fn, a)[0][:, None]
        else:
            b = _transpose(net, op, params, a, b)


def _gradients_at_activations(net, params, inputs, logits, y, w) -> dict[int, jax.Array]:
    """``dl_n/dh`` (times ``w_n``) at the output of every smooth activation."""
    smooth = [k for k, op in enumerate(net.ops) if isinstance(op, Act) and not op.piecewise_linear]
    if not smooth:
        return {}
    p = jax.nn.softmax(logits)
    g = w[:, None] * (p - jax.nn.one_hot(y, p.shape[1], dtype=p.dtype))
    out = {}
    for k in range(len(net.ops) - 1, min(smooth) - 1, -1):
        op, a = net.ops[k], inputs[k]
        if k in smooth:
            out[k] = g
        _, vjp = jax.vjp(lambda t, op=op: net.apply_op(op, params, t), a)
        g = vjp(g)[0]
    return out


def _column_block(r: jax.Array, j: jax.Array, block: int) -> tuple[jax.Array, jax.Array]:
    """Columns ``j * block ..`` of the residual ``diag(r)``: ``sqrt|r_u| e_u`` and ``sign(r_u)``."""
    n, shape = r.shape[0], r.shape[1:]
    flat = r.reshape(n, -1)
    units = flat.shape[1]
    idx = j * block + jnp.arange(block)
    valid = idx < units
    val = jnp.take(flat, jnp.minimum(idx, units - 1), axis=1) * valid  # [n, block]
    b = jax.nn.one_hot(idx, units, dtype=r.dtype)[None] * jnp.sqrt(jnp.abs(val))[:, :, None]
    return b.reshape(n, block, *shape), jnp.sign(val)


def _factor_chunk(net, params, x, y, w, extra, num, *, residual: bool, block: int) -> Params:
    """The factored diagonal of the chunk, summed over its examples (see the module docstring)."""
    inputs, logits = _forward(net, params, x)
    p = jax.nn.softmax(logits)
    acc: list = [None] * len(params)
    # b[n, c, k] = column c of the square root, unit k: sqrt(p_c) (delta_ck - p_k), scaled by sqrt(w)
    b = jnp.sqrt(p * w[:, None])[:, :, None] * (jnp.eye(p.shape[1], dtype=p.dtype) - p[:, None, :])
    _propagate(net, params, inputs, len(net.ops), b, None, acc)
    if residual:
        for k, g in _gradients_at_activations(net, params, inputs, logits, y, w).items():
            r = g * _derivatives(net.ops[k].fn, inputs[k])[1]
            units = int(np.prod(r.shape[1:]))
            size = min(block, units)

            def body(j, total, r=r, k=k, size=size):
                cols, signs = _column_block(r, j, size)
                part: list = [None] * len(params)
                _propagate(net, params, inputs, k, cols, signs, part)
                return [
                    t if q is None else jax.tree.map(jnp.add, t, q)
                    for t, q in zip(total, part, strict=True)
                ]

            zeros = jax.tree.map(jnp.zeros_like, params)
            extra_terms = jax.lax.fori_loop(0, -(-units // size), body, zeros)
            for slot, part in enumerate(extra_terms):
                _add(acc, slot, part)
    return [jax.tree.map(jnp.zeros_like, params[i]) if a is None else a for i, a in enumerate(acc)]


def _hvp_chunk(net, params, x, y, w, extra, num) -> Params:
    """Dense-only networks, any activation: ``d2l/dz^2`` per example from HVPs against the unit
    vectors of each dense layer's output ``z``; the kernel diagonal is ``(a**2)^T d2l/dz^2``.

    The examples' Hessians are independent blocks, so one HVP of the chunk's summed loss with the
    tangent ``e_j`` in every example gives ``d2 l_n/dz[n,j]^2`` for all ``n`` at once."""
    inputs, _ = _forward(net, params, x)
    out: list = [None] * len(params)
    for k, op in enumerate(net.ops):
        if not isinstance(op, Dense):
            continue
        z = net.apply_op(op, params, inputs[k])

        def loss_of_z(z: jax.Array, k: int = k) -> jax.Array:
            h = z
            for above in net.ops[k + 1 :]:
                h = net.apply_op(above, params, h)
            return jnp.sum(w * optax.softmax_cross_entropy_with_integer_labels(h, y))

        grad_z = jax.grad(loss_of_z)
        units = jnp.broadcast_to(
            jnp.eye(z.shape[1], dtype=z.dtype)[:, None, :], (z.shape[1], *z.shape)
        )
        hv = jax.vmap(lambda t, z=z, g=grad_z: jax.jvp(g, (z,), (t,))[1])(units)  # [j, n, j']
        d = jnp.diagonal(hv, axis1=0, axis2=2)
        a = inputs[k]
        out[op.slot] = {"kernel": jnp.einsum("ni,no->io", a * a, d)}
        if op.use_bias:
            out[op.slot]["bias"] = d.sum(0)
    return out


def _bruteforce_chunk(net, params, x, y, w, extra, num) -> Params:
    """One HVP per parameter against its unit vector, batched with ``lax.map``."""
    flat, unravel = ravel_pytree(params)
    grad_f = jax.grad(lambda f: _weighted_loss_sum(net, unravel(f), x, y, w))

    def entry(i: jax.Array) -> jax.Array:
        e = jax.nn.one_hot(i, flat.size, dtype=flat.dtype)
        return jax.jvp(grad_f, (flat,), (e,))[1][i]

    idx = jnp.arange(flat.size)
    return unravel(jax.lax.map(entry, idx, batch_size=min(_DIRECTION_BATCH, flat.size)))


def _probe(key: jax.Array, s: jax.Array, params: Params) -> Params:
    """Rademacher probe number ``s`` (a pytree like ``params``) of the family ``key``."""
    flat, unravel = ravel_pytree(params)
    return unravel(jax.random.rademacher(jax.random.fold_in(key, s), flat.shape, flat.dtype))


def _hutchinson_chunk(net, params, x, y, w, key, num) -> Params:
    """``sum_s v_s * (H_chunk v_s)`` over the ``num`` probes (divided by ``num`` by the caller)."""
    grad_f = jax.grad(lambda p: _weighted_loss_sum(net, p, x, y, w))
    batch = min(_DIRECTION_BATCH, num)
    dtype = jax.tree.leaves(params)[0].dtype

    def vhv(s: jax.Array) -> Params:
        v = _probe(key, s, params)
        return jax.tree.map(jnp.multiply, v, jax.jvp(grad_f, (params,), (v,))[1])

    def body(i: jax.Array, acc: Params) -> Params:
        s = i * batch + jnp.arange(batch)
        keep = (s < num).astype(dtype)
        terms = jax.vmap(vhv)(s)
        return jax.tree.map(lambda a, t: a + jnp.tensordot(keep, t, 1), acc, terms)

    zeros = jax.tree.map(jnp.zeros_like, params)
    return jax.lax.fori_loop(0, -(-num // batch), body, zeros)


def _hvp_product_chunk(net, params, x, y, w, v, num) -> Params:
    """``H_chunk v`` (forward-over-reverse)."""
    grad_f = jax.grad(lambda p: _weighted_loss_sum(net, p, x, y, w))
    return jax.jvp(grad_f, (params,), (v,))[1]


def _chunk_fn(kind: str, block: int) -> ChunkFn:
    if kind in ("exact", "fast"):
        return functools.partial(_factor_chunk, residual=kind == "exact", block=block)
    return {
        "hvp": _hvp_chunk,
        "bruteforce": _bruteforce_chunk,
        "hutchinson": _hutchinson_chunk,
        "product": _hvp_product_chunk,
    }[kind]


def _chunk_sum(kind, net, params, x, y, wts, extra, *, num, chunk, n_chunks, block) -> Params:
    """Sum over chunks of the chunk function. Chunk ``i`` covers rows ``[i c, (i+1) c)``; the last
    one is slid back to end at ``n`` and its rows already seen get weight 0."""
    fn = _chunk_fn(kind, block)
    n = x.shape[0]
    dtype = jax.tree.leaves(params)[0].dtype

    def body(i: jax.Array, acc: Params) -> Params:
        start = jnp.minimum(i * chunk, n - chunk)
        xb = jax.lax.dynamic_slice_in_dim(x, start, chunk).astype(dtype)
        yb = jax.lax.dynamic_slice_in_dim(y, start, chunk)
        fresh = (start + jnp.arange(chunk) >= i * chunk).astype(dtype)
        wb = jax.lax.dynamic_slice_in_dim(wts, start, chunk) * fresh
        return jax.tree.map(jnp.add, acc, fn(net, params, xb, yb, wb, extra, num))

    zeros = jax.tree.map(jnp.zeros_like, params)
    if n_chunks == 1:
        return body(jnp.asarray(0), zeros)
    return jax.lax.fori_loop(0, n_chunks, body, zeros)


@functools.partial(
    jax.jit, static_argnames=("kind", "net", "num", "chunk", "n_chunks", "block", "devices")
)
def _mean_over_chunks(
    kind: str,
    net: Network,
    params: Params,
    x: jax.Array,
    y: jax.Array,
    extra: Any,
    *,
    num: int,
    chunk: int,
    n_chunks: int,
    block: int,
    devices: int,
) -> Params:
    """``(sum over all examples) / N``, the examples split over ``devices`` when > 1."""
    n = x.shape[0]
    dtype = jax.tree.leaves(params)[0].dtype
    run = functools.partial(
        _chunk_sum, kind, net, num=num, chunk=chunk, n_chunks=n_chunks, block=block
    )
    if devices == 1:
        total = run(params, x, y, jnp.ones(n, dtype), extra)
    else:
        per = chunk * n_chunks  # rows per device; the padding rows get weight 0
        pad = per * devices - n
        xp = jnp.concatenate([x, jnp.zeros((pad, *x.shape[1:]), x.dtype)])
        yp = jnp.concatenate([y, jnp.zeros((pad,), y.dtype)])
        wp = jnp.concatenate([jnp.ones(n, dtype), jnp.zeros(pad, dtype)])
        mesh = Mesh(np.asarray(jax.devices()[:devices]), ("data",))
        rows = PartitionSpec("data")

        def shard(params, xs, ys, ws, extra):
            return jax.lax.psum(run(params, xs, ys, ws, extra), "data")

        total = jax.shard_map(
            shard,
            mesh=mesh,
            in_specs=(PartitionSpec(), rows, rows, rows, PartitionSpec()),
            out_specs=PartitionSpec(),
            check_vma=False,  # the per-device sums start from replicated zeros
        )(params, xp, yp, wp, extra)
    return jax.tree.map(lambda t: t / n, total)


def _positive_int(name: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < 1:
        raise ValueError(f"{name} must be an integer >= 1, got {value!r}")
    return int(value)


def _per_example_elements(net: Network, params: Params, x_shape) -> tuple[int, int]:
    """Per example: the largest operation input and the largest convolution kernel, in elements
    (the factored method's intermediates are ``C`` times their sum)."""
    inputs = [int(np.prod(x_shape[1:]))] + net.output_sizes(params, x_shape)[:-1]
    conv = max(
        (
            int(np.prod(params[op.slot]["kernel"].shape))
            for op in net.parametric
            if isinstance(op, Conv)
        ),
        default=0,
    )
    return max(inputs), conv


class _Prepared:
    """Validated inputs of :func:`hessian_diag` and :func:`hvp`."""

    def __init__(self, model: Any, x: Any, y: Any, activation: str | None, batch_size):
        self.net, params, self.restore = as_network(model, activation)
        dtype = jnp.result_type(*jax.tree.leaves(params))
        if not jnp.issubdtype(dtype, jnp.floating):
            raise ValueError(f"parameters must be floating point, got dtype {dtype}")
        self.params = jax.tree.map(lambda a: jnp.asarray(a, dtype), params)
        check_finite_params(self.params)
        num_classes = int(np.shape(params[-1]["kernel"])[-1])
        input_check(self.net, self.params, x)
        check_examples(x, y, num_classes=num_classes)
        x, y = jnp.asarray(x), jnp.asarray(y)
        self.x, self.y = x, y
        self.devices = _device_count(len(x))
        n = -(-len(x) // self.devices)  # examples per device
        act, conv = _per_example_elements(self.net, self.params, x.shape)
        if batch_size is None:
            if self.net.dense_only:
                batch_size = DEFAULT_BATCH_SIZE
            else:
                per = num_classes * (act + conv)
                batch_size = max(1, min(DEFAULT_BATCH_SIZE, MEMORY_BUDGET // per))
        batch_size = _positive_int("batch_size", batch_size)
        self.n_chunks = -(-n // batch_size)
        self.chunk = -(-n // self.n_chunks)
        if self.devices > 1:  # every device gets chunk * n_chunks rows; the chunk must fit
            self.chunk = min(self.chunk, n)
        self.block = max(1, MEMORY_BUDGET // max(1, self.chunk * (act + conv)))

    def run(self, kind: str, extra: Any = None, num: int = 0) -> Params:
        return _mean_over_chunks(
            kind,
            self.net,
            self.params,
            self.x,
            self.y,
            extra,
            num=num,
            chunk=self.chunk,
            n_chunks=self.n_chunks,
            block=self.block,
            devices=self.devices,
        )


def _device_count(n: int) -> int:
    """Devices to split ``n`` examples over: all visible ones, but never more than ``n``."""
    return max(1, min(len(jax.devices()), n))


def hessian_diag(
    model: Any,
    x: Any,
    y: Any,
    *,
    method: str = "exact",
    activation: str | None = None,
    batch_size: int | None = None,
    num_samples: int = 100,
    key: jax.Array | None = None,
) -> Any:
    """Diagonal of the Hessian of the mean softmax cross-entropy of ``model`` on ``(x, y)``.

    ``model`` is the plain MLP pytree (list of ``{"kernel", "bias"}``; ``activation`` names its
    activation, default ``"relu"``) or an ``nnx.Sequential`` (see ``obd.network``; ``x`` then has
    the shape the model takes, e.g. NHWC images ``[N, 28, 28, 1]`` for a convnet). Returns a
    pytree shaped like the parameters: the same list for the plain pytree, an ``nnx.State`` like
    ``nnx.state(model, nnx.Param)`` for an NNX model, in the parameters' dtype.

    ``method`` is one of :data:`METHODS` (see the module docstring); all but ``"hutchinson"`` are
    exact. ``batch_size`` bounds the examples per chunk (memory; the result does not depend on it
    beyond rounding; default :data:`DEFAULT_BATCH_SIZE` for MLPs, else a size that keeps the
    largest intermediate near :data:`MEMORY_BUDGET`). ``"hutchinson"`` averages ``num_samples``
    Rademacher probes drawn from ``key`` (required).
    """
    if method not in METHODS:
        raise ValueError(f"unknown method {method!r}; accepted: {', '.join(METHODS)}")
    num_samples = _positive_int("num_samples", num_samples)
    prep = _Prepared(model, x, y, activation, batch_size)
    net = prep.net
    if method == "fast" and not net.piecewise_linear:
        smooth = sorted(
            {op.name for op in net.ops if isinstance(op, Act) and not op.piecewise_linear}
        )
        raise ValueError(
            f"method 'fast' is the Gauss-Newton diagonal, which equals the Hessian diagonal only "
            f"when every activation's second derivative vanishes; this network has "
            f"{', '.join(smooth)}. Piecewise-linear activations: relu, leaky_relu; use method "
            f"'exact' for any activation"
        )
    if method == "exact" and net.piecewise_linear:
        method = "fast"  # identical result: no residual terms
    if method == "hvp" and not net.dense_only:
        raise ValueError(
            "method 'hvp' needs a network of dense layers and activations only; use 'exact' "
            "(any supported network) or 'bruteforce' (small networks)"
        )
    extra, num = None, 0
    if method == "hutchinson":
        if key is None:
            raise ValueError("method 'hutchinson' needs a PRNG key: pass key=jax.random.key(...)")
        extra, num = key, num_samples
    total = prep.run(method, extra, num)
    check_finite_params(total, "hessian_diag", what="result")
    if method == "hutchinson":
        total = jax.tree.map(lambda t: t / num_samples, total)
    return prep.restore(total)


def hvp(
    model: Any,
    x: Any,
    y: Any,
    v: Any,
    *,
    activation: str | None = None,
    batch_size: int | None = None,
) -> Any:
    """Hessian-vector product ``H v`` of the mean loss of ``model`` on ``(x, y)``
    (forward-over-reverse), summed over chunks of at most ``batch_size`` examples; ``v`` is
    shaped like the parameters (a list for the plain pytree, an ``nnx.State`` for NNX)."""
    prep = _Prepared(model, x, y, activation, batch_size)
    v = to_params(model, v, "v")
    v = jax.tree.map(lambda a, p: jnp.asarray(a, p.dtype), v, prep.params)
    return prep.restore(prep.run("product", v))

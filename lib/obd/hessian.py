"""Exact diagonal of the Hessian of the MLP's loss (``obd.model.loss``), for OBD saliencies.

Notation: layer ``l`` computes ``z_l = h_l W_l + b_l`` (kernel ``W_l`` is ``[in, out]``),
``h_{l+1} = act(z_l)``, no activation after the last layer (``z_L`` are the logits), and
``L = mean_n l_n`` with ``l_n`` the softmax cross-entropy of example ``n``. ``W_l[i, o]`` enters
only ``z_l[n, o]``, and ``h_l`` does not depend on layer ``l``, so

    d2L/dW_l[i,o]^2 = mean_n h_l[n,i]^2 D_l[n,o],      d2L/db_l[o]^2 = mean_n D_l[n,o],

with ``D_l[n, o] = d2 l_n / dz_l[n,o]^2`` the diagonal of the per-example Hessian with respect to
the pre-activations, exactly, through all layers above. The methods differ in how they get it:

* ``"fast"`` (piecewise-linear activations only): ``act'' = 0``, so the Hessian is the
  Gauss-Newton matrix ``J^T A J`` with ``A = d2l/dz_L^2 = diag(p) - p p^T = S S^T``, column ``c``
  of ``S`` being ``sqrt(p_c) (e_c - p)``. With ``B_L = S`` and
  ``B_l = act'(z_l) * (W_{l+1} B_{l+1})``, ``D_l`` is the sum over the columns of ``B_l**2``. This
  costs one forward pass, one ``(h**2)^T D`` product per layer (like a backward pass) and the
  propagation of ``C`` (number of classes) columns through the hidden layers.
* ``"hvp"`` (any activation): ``D_l`` from Hessian-vector products (forward-over-reverse) of the
  loss as a function of ``z_l`` against the unit vectors of ``z_l``.
* ``"bruteforce"``: one HVP of the loss per parameter; the reference, for small nets only.
* ``"hutchinson"``: the unbiased estimate ``mean_s v_s * (H v_s)`` over Rademacher probes ``v_s``.
* ``"exact"``: ``"fast"`` for the activations in ``obd.model.PIECEWISE_LINEAR``, else ``"hvp"``.

Every method sums over chunks of at most ``batch_size`` examples inside one jitted loop and divides
by ``N`` at the end, so the result is the mean over all examples whatever the chunking. The work is
done in the parameters' floating dtype (``x`` is cast chunk by chunk).
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import optax
from jax.flatten_util import ravel_pytree

from obd import model
from obd.model import Params

METHODS: tuple[str, ...] = ("exact", "fast", "hvp", "bruteforce", "hutchinson")
#: Examples per chunk. Small chunks keep the intermediates in the CPU caches: for the seed MLP on
#: 60,000 examples (2-core CPU), "fast" takes ~1.6x one full-batch gradient with chunks of 1,000 to
#: 2,000, but ~2.3x with 10,000 (``bench/hessian_timing.py``).
DEFAULT_BATCH_SIZE = 2_000
#: How many unit vectors ("bruteforce") or probes ("hutchinson") are vmapped together.
_DIRECTION_BATCH = 64

ChunkFn = Callable[[Params, jax.Array, jax.Array, jax.Array, Any, str, int], Params]


def _weighted_loss_sum(
    params: Params, x: jax.Array, y: jax.Array, w: jax.Array, activation: str
) -> jax.Array:
    """``sum_n w_n l_n``: the chunk's contribution to ``N * loss`` (``w`` masks repeated rows)."""
    logits = model.apply_mlp(params, x, activation=activation)
    return jnp.sum(w * optax.softmax_cross_entropy_with_integer_labels(logits, y))


def _forward(params: Params, x: jax.Array, act: Callable) -> tuple[list, list]:
    """Each layer's input ``h_l`` and pre-activation ``z_l`` (as in ``model.apply_mlp``)."""
    hs, zs, h = [], [], x
    for i, layer in enumerate(params):
        z = h @ layer["kernel"] + layer["bias"]
        hs.append(h)
        zs.append(z)
        if i < len(params) - 1:
            h = act(z)
    return hs, zs


def _layer_diag(h: jax.Array, d: jax.Array) -> dict[str, jax.Array]:
    """Summed kernel and bias diagonals of one layer: ``(h**2)^T D`` and ``sum_n D``."""
    return {"kernel": jnp.einsum("ni,no->io", h * h, d), "bias": d.sum(0)}


def _fast_chunk(params, x, y, w, extra, activation, num) -> Params:
    """Gauss-Newton (= exact for piecewise-linear ``act``) diagonal, summed over the chunk."""
    act = model.activation_fn(activation)
    hs, zs = _forward(params, x, act)
    p = jax.nn.softmax(zs[-1])
    ds = [p * (1.0 - p)]  # diag(A); equals the column sum of S**2
    # b[n, k, c] = column k of the square root, unit c: sqrt(p_k) (delta_kc - p_c)
    b = jnp.sqrt(p)[:, :, None] * (jnp.eye(p.shape[1], dtype=p.dtype) - p[:, None, :])
    for z, above in zip(zs[-2::-1], params[:0:-1], strict=True):
        slope = jax.jvp(act, (z,), (jnp.ones_like(z),))[1]  # act'(z_l)
        b = (b @ above["kernel"].T) * slope[:, None, :]  # B_l = act'(z_l) * (W_{l+1} B_{l+1})
        ds.insert(0, jnp.sum(b * b, axis=1))
    return [_layer_diag(h, d * w[:, None]) for h, d in zip(hs, ds, strict=True)]


def _hvp_chunk(params, x, y, w, extra, activation, num) -> Params:
    """Exact diagonal for any activation: ``D_l`` from HVPs against the unit vectors of ``z_l``.

    The examples' Hessians are independent blocks, so one HVP of the chunk's summed loss with the
    tangent ``e_j`` in every example gives ``d2 l_n/dz_l[n,j]^2`` for all ``n`` at once; the unit
    vectors ``j`` are vmapped. The primal (forward and gradient) is computed once per layer."""
    act = model.activation_fn(activation)
    hs, zs = _forward(params, x, act)
    out = []
    for i, (h, z) in enumerate(zip(hs, zs, strict=True)):
        above = params[i + 1 :]

        def loss_of_z(z: jax.Array, above: Params = above) -> jax.Array:
            logits = model.apply_mlp(above, act(z), activation=activation) if above else z
            return jnp.sum(w * optax.softmax_cross_entropy_with_integer_labels(logits, y))

        grad_z = jax.grad(loss_of_z)
        units = jnp.broadcast_to(
            jnp.eye(z.shape[1], dtype=z.dtype)[:, None, :], (z.shape[1], *z.shape)
        )
        hv = jax.vmap(lambda t, z=z, g=grad_z: jax.jvp(g, (z,), (t,))[1])(units)  # [j, n, j']
        out.append(_layer_diag(h, jnp.diagonal(hv, axis1=0, axis2=2)))
    return out


def _bruteforce_chunk(params, x, y, w, extra, activation, num) -> Params:
    """One HVP per parameter against its unit vector, batched with ``lax.map``."""
    flat, unravel = ravel_pytree(params)
    grad_f = jax.grad(lambda f: _weighted_loss_sum(unravel(f), x, y, w, activation))

    def entry(i: jax.Array) -> jax.Array:
        e = jax.nn.one_hot(i, flat.size, dtype=flat.dtype)
        return jax.jvp(grad_f, (flat,), (e,))[1][i]

    idx = jnp.arange(flat.size)
    return unravel(jax.lax.map(entry, idx, batch_size=min(_DIRECTION_BATCH, flat.size)))


def _probe(key: jax.Array, s: jax.Array, params: Params) -> Params:
    """Rademacher probe number ``s`` (a pytree like ``params``) of the family ``key``."""
    flat, unravel = ravel_pytree(params)
    return unravel(jax.random.rademacher(jax.random.fold_in(key, s), flat.shape, flat.dtype))


def _hutchinson_chunk(params, x, y, w, key, activation, num) -> Params:
    """``sum_s v_s * (H_chunk v_s)`` over the ``num`` probes (divided by ``num`` by the caller)."""
    grad_f = jax.grad(lambda p: _weighted_loss_sum(p, x, y, w, activation))
    batch = min(_DIRECTION_BATCH, num)

    def vhv(s: jax.Array) -> Params:
        v = _probe(key, s, params)
        return jax.tree.map(jnp.multiply, v, jax.jvp(grad_f, (params,), (v,))[1])

    def body(i: jax.Array, acc: Params) -> Params:
        s = i * batch + jnp.arange(batch)
        keep = (s < num).astype(acc[0]["kernel"].dtype)
        terms = jax.vmap(vhv)(s)
        return jax.tree.map(lambda a, t: a + jnp.tensordot(keep, t, 1), acc, terms)

    zeros = jax.tree.map(jnp.zeros_like, params)
    return jax.lax.fori_loop(0, -(-num // batch), body, zeros)


def _hvp_product_chunk(params, x, y, w, v, activation, num) -> Params:
    """``H_chunk v`` (forward-over-reverse)."""
    grad_f = jax.grad(lambda p: _weighted_loss_sum(p, x, y, w, activation))
    return jax.jvp(grad_f, (params,), (v,))[1]


_CHUNK_FNS: dict[str, ChunkFn] = {
    "fast": _fast_chunk,
    "hvp": _hvp_chunk,
    "bruteforce": _bruteforce_chunk,
    "hutchinson": _hutchinson_chunk,
    "product": _hvp_product_chunk,
}


@functools.partial(jax.jit, static_argnames=("kind", "activation", "num", "chunk", "n_chunks"))
def _mean_over_chunks(
    kind: str,
    params: Params,
    x: jax.Array,
    y: jax.Array,
    extra: Any,
    *,
    activation: str,
    num: int,
    chunk: int,
    n_chunks: int,
) -> Params:
    """``sum over chunks of _CHUNK_FNS[kind] / N``. Chunk ``i`` covers rows ``[i c, (i+1) c)``; the
    last one is slid back to end at ``N`` and its rows already seen get weight 0."""
    fn = _CHUNK_FNS[kind]
    n = x.shape[0]
    dtype = params[0]["kernel"].dtype

    def body(i: jax.Array, acc: Params) -> Params:
        start = jnp.minimum(i * chunk, n - chunk)
        xb = jax.lax.dynamic_slice_in_dim(x, start, chunk).astype(dtype)
        yb = jax.lax.dynamic_slice_in_dim(y, start, chunk)
        wb = (start + jnp.arange(chunk) >= i * chunk).astype(dtype)
        return jax.tree.map(jnp.add, acc, fn(params, xb, yb, wb, extra, activation, num))

    zeros = jax.tree.map(jnp.zeros_like, params)
    if n_chunks == 1:
        total = body(jnp.asarray(0), zeros)
    else:
        total = jax.lax.fori_loop(0, n_chunks, body, zeros)
    return jax.tree.map(lambda t: t / n, total)


def _positive_int(name: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{name} must be an integer >= 1, got {value!r}")
    return value


def _prepare(
    params: Params, x: Any, y: Any, activation: str, batch_size: int
) -> tuple[Params, jax.Array, jax.Array, int, int]:
    """Validate; return params in one float dtype, ``x``, ``y``, the chunk size and count."""
    sizes = model.layer_sizes(params)
    model.activation_fn(activation)
    batch_size = _positive_int("batch_size", batch_size)
    dtype = jnp.result_type(*jax.tree.leaves(params))
    if not jnp.issubdtype(dtype, jnp.floating):
        raise ValueError(f"params must be floating point, got dtype {dtype}")
    params = [{k: jnp.asarray(layer[k], dtype) for k in ("kernel", "bias")} for layer in params]
    x, y = jnp.asarray(x), jnp.asarray(y)
    if x.ndim != 2 or x.shape[1] != sizes[0] or x.shape[0] < 1:
        raise ValueError(
            f"x must be [N, {sizes[0]}] (N >= 1 examples matching the first kernel), got {x.shape}"
        )
    if y.shape != (x.shape[0],) or not jnp.issubdtype(y.dtype, jnp.integer):
        raise ValueError(
            f"y must be integer labels of shape [N] = ({x.shape[0]},), got {y.dtype}{list(y.shape)}"
        )
    n = x.shape[0]
    n_chunks = -(-n // batch_size)
    return params, x, y, -(-n // n_chunks), n_chunks


def hessian_diag(
    params: Params,
    x: Any,
    y: Any,
    *,
    method: str = "exact",
    activation: str = "relu",
    batch_size: int = DEFAULT_BATCH_SIZE,
    num_samples: int = 100,
    key: jax.Array | None = None,
) -> Params:
    """Diagonal of the Hessian of ``obd.model.loss(params, x, y)`` (mean over all of ``x``).

    Returns a pytree like ``params``. ``method`` is one of :data:`METHODS` (see the module
    docstring); all but ``"hutchinson"`` are exact. ``batch_size`` bounds the examples per chunk
    (memory; the result does not depend on it beyond rounding). ``"hutchinson"`` averages
    ``num_samples`` Rademacher probes drawn from ``key`` (required). ``"fast"`` accepts only the
    piecewise-linear activations (``obd.model.PIECEWISE_LINEAR``).
    """
    if method not in METHODS:
        raise ValueError(f"unknown method {method!r}; accepted: {', '.join(METHODS)}")
    params, x, y, chunk, n_chunks = _prepare(params, x, y, activation, batch_size)
    num_samples = _positive_int("num_samples", num_samples)
    if method == "exact":
        method = "fast" if activation in model.PIECEWISE_LINEAR else "hvp"
    if method == "fast" and activation not in model.PIECEWISE_LINEAR:
        raise ValueError(
            f"method 'fast' is the Gauss-Newton diagonal, which equals the Hessian diagonal only "
            f"when the activation's second derivative vanishes; activation {activation!r} is not "
            f"piecewise linear. Accepted: {', '.join(sorted(model.PIECEWISE_LINEAR))}; use "
            f"method 'exact' or 'hvp' for any activation"
        )
    extra, num = None, 0
    if method == "hutchinson":
        if key is None:
            raise ValueError("method 'hutchinson' needs a PRNG key: pass key=jax.random.key(...)")
        extra, num = key, num_samples
    total = _mean_over_chunks(
        method, params, x, y, extra, activation=activation, num=num, chunk=chunk, n_chunks=n_chunks
    )
    if method == "hutchinson":
        total = jax.tree.map(lambda t: t / num_samples, total)
    return total


def hvp(
    params: Params,
    x: Any,
    y: Any,
    v: Params,
    *,
    activation: str = "relu",
    batch_size: int = DEFAULT_BATCH_SIZE,
) -> Params:
    """Hessian-vector product ``H v`` of ``obd.model.loss(params, x, y)`` (forward-over-reverse),
    summed over chunks of at most ``batch_size`` examples; ``v`` is a pytree like ``params``."""
    params, x, y, chunk, n_chunks = _prepare(params, x, y, activation, batch_size)
    if jax.tree.structure(v) != jax.tree.structure(params) or any(
        jnp.shape(a) != b.shape
        for a, b in zip(jax.tree.leaves(v), jax.tree.leaves(params), strict=True)
    ):
        raise ValueError("v must be a pytree with the structure and shapes of params")
    v = jax.tree.map(lambda a, p: jnp.asarray(a, p.dtype), v, params)
    return _mean_over_chunks(
        "product", params, x, y, v, activation=activation, num=0, chunk=chunk, n_chunks=n_chunks
    )

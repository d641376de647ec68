"""Diagonal curvature estimates other than the exact Hessian diagonal, and ways to compare them.

OBD's saliency is ``0.5 * d_k * w_k**2`` with ``d`` the Hessian diagonal (``obd.hessian``). This
module provides the usual stand-ins for ``d``, each a pytree like ``params`` on the scale of the
*mean* loss over ``x``:

* :func:`empirical_fisher_diag`: ``mean_n g_n**2`` with ``g_n`` the gradient of example ``n``'s
  loss at its true label.
* :func:`mc_fisher_diag`: the same with labels *sampled* from the model's softmax
  (``num_samples`` per example). Its expectation is the Fisher = Gauss-Newton diagonal, which for
  piecewise-linear activations (ReLU) is the exact Hessian diagonal.
* :func:`hutchinson_diags`: Hutchinson's unbiased estimate ``mean_s v_s * (H v_s)`` over
  Rademacher probes ``v_s``, for several probe counts at once (nested: the estimate with ``k``
  probes uses probes ``0..k-1``).
* :func:`adam_nu_diag`: Adam's second-moment estimate ``nu`` (an exponential moving average of
  squared minibatch gradients), as jaxpruner's ``adam-fisher`` pruner reuses it.

Notation as in ``obd.hessian``: layer ``l`` computes ``z_l = h_l W_l + b_l``. Example ``n``'s
gradient with respect to ``W_l[i, o]`` is ``h_l[n, i] * delta_l[n, o]`` with
``delta_l = dl_n / dz_l``, so the squared per-example gradients summed over examples are
``(h_l**2)^T (delta_l**2)``: one matrix product per layer, and no per-example gradient is ever
materialised (the tests check this against an explicit per-example ``jax.grad`` loop).
Every estimator sums over chunks of at most ``batch_size`` examples in one jitted loop and divides
by ``N`` at the end, and is itself traceable, so ``jax.jit(...).lower(...).compile()`` can
separate compilation from the run (:func:`timed`).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Sequence
from functools import partial
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pandas as pd
from scipy import stats

from obd import prune
from obd.checks import check_examples
from obd.mlp import apply_mlp, layer_sizes
from obd.network import Params, activation_fn
from obd.saliencies import check_like

# ---------------------------------------------------------------------------------------------
# Validation and chunking


def _positive_int(name: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < 1:
        raise ValueError(f"{name} must be an integer >= 1, got {value!r}")
    return int(value)


def _as_key(key: Any) -> jax.Array:
    if key is None:
        raise ValueError("key is required: pass key=jax.random.key(...)")
    return jax.random.key(key) if isinstance(key, int | np.integer) else key


def check_data(params: Params, x: Any, y: Any | None = None) -> tuple[Params, jax.Array, Any]:
    """Validate ``params``, ``x`` ``[N, in]`` (finite) and (when given) integer labels ``y``
    ``[N]`` in ``[0, classes)``; return params in one floating dtype and ``x``, ``y`` as arrays."""
    sizes = layer_sizes(params)
    dtype = jnp.result_type(*jax.tree.leaves(params))
    if not jnp.issubdtype(dtype, jnp.floating):
        raise ValueError(f"params must be floating point, got dtype {dtype}")
    params = [{k: jnp.asarray(layer[k], dtype) for k in ("kernel", "bias")} for layer in params]
    x = jnp.asarray(x)
    if x.ndim != 2 or x.shape[1] != sizes[0] or x.shape[0] < 1:
        raise ValueError(f"x must be [N, {sizes[0]}] with N >= 1, got shape {tuple(x.shape)}")
    if y is not None:
        y = jnp.asarray(y)
        if y.shape != (x.shape[0],) or not jnp.issubdtype(y.dtype, jnp.integer):
            raise ValueError(
                f"y must be integer labels of shape ({x.shape[0]},), got {y.dtype}{list(y.shape)}"
            )
    # values: finite inputs, labels in [0, classes) (skipped inside a trace, e.g. under timed)
    check_examples(x, y, num_classes=sizes[-1])
    return params, x, y


def chunk_plan(n: int, batch_size: int) -> tuple[int, int]:
    """``(chunk, n_chunks)``: ``n_chunks`` equal chunks of at most ``batch_size`` rows."""
    batch_size = _positive_int("batch_size", batch_size)
    n_chunks = -(-n // batch_size)
    return -(-n // n_chunks), n_chunks


def chunked_sum(
    fn: Callable[[jax.Array, jax.Array | None, jax.Array, jax.Array], Any],
    x: jax.Array,
    y: jax.Array | None,
    batch_size: int,
) -> Any:
    """``sum over chunks of fn(x_chunk, y_chunk, w_chunk, chunk_index)`` (traceable).

    Chunks have equal size; the last one is slid back to end at ``N`` and the rows it shares with
    the previous chunk get weight ``w = 0``, so ``fn`` must weight its per-example terms by ``w``.
    """
    n = x.shape[0]
    chunk, n_chunks = chunk_plan(n, batch_size)

    def piece(i):
        start = jnp.minimum(i * chunk, n - chunk)
        xb = jax.lax.dynamic_slice_in_dim(x, start, chunk)
        yb = None if y is None else jax.lax.dynamic_slice_in_dim(y, start, chunk)
        wb = (start + jnp.arange(chunk) >= i * chunk).astype(x.dtype)
        return fn(xb, yb, wb, i)

    if n_chunks == 1:
        return piece(jnp.asarray(0))
    zeros = jax.tree.map(lambda s: jnp.zeros(s.shape, s.dtype), jax.eval_shape(piece, 0))
    return jax.lax.fori_loop(
        0, n_chunks, lambda i, acc: jax.tree.map(jnp.add, acc, piece(i)), zeros
    )


# ---------------------------------------------------------------------------------------------
# Forward and backward passes of the MLP, written out


def activation_derivatives(act: Callable, z: jax.Array) -> tuple[jax.Array, jax.Array, jax.Array]:
    """``act(z)``, ``act'(z)`` and ``act''(z)`` elementwise."""
    ones = jnp.ones_like(z)

    def slope(t):
        return jax.jvp(act, (t,), (ones,))[1]

    h, d1 = jax.jvp(act, (z,), (ones,))
    return h, d1, jax.jvp(slope, (z,), (ones,))[1]


def _forward(params: Params, x: jax.Array, act: Callable):
    """Layer inputs ``h_l``, pre-activations ``z_l`` and ``act'``, ``act''`` at the hidden ``z_l``."""
    hs, zs, d1s, d2s, h = [], [], [], [], x.astype(params[0]["kernel"].dtype)
    for i, layer in enumerate(params):
        z = h @ layer["kernel"] + layer["bias"]
        hs.append(h)
        zs.append(z)
        if i < len(params) - 1:
            h, d1, d2 = activation_derivatives(act, z)
            d1s.append(d1)
            d2s.append(d2)
    return hs, zs, d1s, d2s


def _backward(params: Params, d1s: list, delta: jax.Array) -> list[jax.Array]:
    """``dl/dz_l`` for every layer from ``delta = dl/dz_L`` (leading axes are batch axes)."""
    deltas = [delta]
    for i in range(len(params) - 1, 0, -1):
        delta = (delta @ params[i]["kernel"].T) * d1s[i - 1]
        deltas.insert(0, delta)
    return deltas


def _squared_grad_sums(hs: list, deltas: list) -> Params:
    """``sum_n`` of squared per-example gradients; ``deltas[l]`` is ``[..., n, out]``, summed over
    its leading (sample) axes too."""
    out = []
    for h, d in zip(hs, deltas, strict=True):
        d2 = (d * d).reshape(-1, *d.shape[-2:]).sum(0)
        out.append({"kernel": (h * h).T @ d2, "bias": d2.sum(0)})
    return out


def _mean(total: Params, n: int) -> Params:
    return jax.tree.map(lambda t: t / n, total)


# ---------------------------------------------------------------------------------------------
# Fisher estimates


def empirical_fisher_diag(
    params: Params, x: Any, y: Any, *, activation: str = "relu", batch_size: int = 10_000
) -> Params:
    """Empirical Fisher diagonal: ``mean_n (dl_n/dw)**2`` at the true labels ``y``."""
    params, x, y = check_data(params, x, y)
    activation_fn(activation)
    chunk_plan(x.shape[0], batch_size)
    return _empirical_fisher(params, x, y, activation=activation, batch_size=int(batch_size))


@partial(jax.jit, static_argnames=("activation", "batch_size"))
def _empirical_fisher(params, x, y, *, activation, batch_size):
    act = activation_fn(activation)

    def chunk_fn(xb, yb, wb, i):
        hs, zs, d1s, _ = _forward(params, xb, act)
        p = jax.nn.softmax(zs[-1])
        delta = (p - jax.nn.one_hot(yb, p.shape[-1], dtype=p.dtype)) * wb[:, None]
        return _squared_grad_sums(hs, _backward(params, d1s, delta))

    return _mean(chunked_sum(chunk_fn, x, y, batch_size), x.shape[0])


def mc_fisher_diag(
    params: Params,
    x: Any,
    key: Any,
    *,
    num_samples: int = 1,
    activation: str = "relu",
    batch_size: int = 10_000,
) -> Params:
    """Monte-Carlo Fisher diagonal: ``mean_n mean_s (dl(x_n, y_ns)/dw)**2`` with ``num_samples``
    labels ``y_ns`` per example drawn from the model's own softmax. Unbiased for the Fisher =
    Gauss-Newton diagonal (the exact Hessian diagonal for piecewise-linear activations)."""
    params, x, _ = check_data(params, x)
    num_samples = _positive_int("num_samples", num_samples)
    activation_fn(activation)
    chunk_plan(x.shape[0], batch_size)
    return _mc_fisher(
        params, x, _as_key(key), num_samples=num_samples, activation=activation,
        batch_size=int(batch_size),
    )  # fmt: skip


@partial(jax.jit, static_argnames=("num_samples", "activation", "batch_size"))
def _mc_fisher(params, x, key, *, num_samples, activation, batch_size):
    act = activation_fn(activation)

    def chunk_fn(xb, yb, wb, i):
        hs, zs, d1s, _ = _forward(params, xb, act)
        logits = zs[-1]
        labels = jax.random.categorical(
            jax.random.fold_in(key, i), logits, shape=(num_samples, *logits.shape[:-1])
        )
        p = jax.nn.softmax(logits)
        delta = (p - jax.nn.one_hot(labels, p.shape[-1], dtype=p.dtype)) * wb[:, None]
        return _squared_grad_sums(hs, _backward(params, d1s, delta))

    return _mean(chunked_sum(chunk_fn, x, None, batch_size), x.shape[0] * num_samples)


# ---------------------------------------------------------------------------------------------
# Hutchinson


@partial(jax.jit, static_argnames="count")
def rademacher_probes(key: Any, params: Params, start: Any, count: int) -> Params:
    """Probes ``start .. start+count-1`` of the family ``key``: pytrees like ``params`` with a
    leading ``[count]`` axis of independent +-1 entries. Probe ``s`` depends only on ``(key, s)``."""
    leaves, treedef = jax.tree.flatten(params)

    def one(s):
        keys = jax.random.split(jax.random.fold_in(key, s), len(leaves))
        return [
            jax.random.rademacher(k, a.shape, a.dtype) for k, a in zip(keys, leaves, strict=True)
        ]

    return treedef.unflatten(jax.vmap(one)(start + jnp.arange(count)))


def _probe_diag_sums(params, x, y, w, probes, act) -> Params:
    """``v * (H_chunk v)`` for a batch of probes (leading axis ``P``), ``H_chunk`` the Hessian of
    ``sum_n w_n l_n``; by Pearlmutter's R-operator written out for the MLP, so the forward pass
    is shared by the probes and the first layer's products are two large matrix products."""
    hs, zs, d1s, d2s = _forward(params, x, act)
    n_layers = len(params)
    p = jax.nn.softmax(zs[-1])
    delta = (p - jax.nn.one_hot(y, p.shape[-1], dtype=p.dtype)) * w[:, None]
    deltas = _backward(params, d1s, delta)
    # forward tangents R(z_l), R(h_l): [n, P, width]
    r_h = [None]
    r_z = []
    for i in range(n_layers):
        v, vb = probes[i]["kernel"], probes[i]["bias"]
        rz = jnp.einsum("ni,pio->npo", hs[i], v) + vb[None]
        if r_h[i] is not None:
            rz = rz + jnp.einsum("npi,io->npo", r_h[i], params[i]["kernel"])
        r_z.append(rz)
        if i < n_layers - 1:
            r_h.append(d1s[i][:, None, :] * rz)
    # R(dl/dz_L) = w * (diag(p) - p p^T) R(z_L)
    rl = r_z[-1]
    pp = p[:, None, :]
    r_delta = w[:, None, None] * (pp * rl - pp * jnp.sum(pp * rl, -1, keepdims=True))
    out = [None] * n_layers
    for i in range(n_layers - 1, -1, -1):
        v, vb = probes[i]["kernel"], probes[i]["bias"]
        r_gw = jnp.einsum("ni,npo->pio", hs[i], r_delta)
        if r_h[i] is not None:
            r_gw = r_gw + jnp.einsum("npi,no->pio", r_h[i], deltas[i])
        out[i] = {"kernel": v * r_gw, "bias": vb * r_delta.sum(0)}
        if i > 0:
            back = deltas[i] @ params[i]["kernel"].T
            r_back = jnp.einsum("npo,io->npi", r_delta, params[i]["kernel"])
            r_back = r_back + jnp.einsum("no,pio->npi", deltas[i], v)
            r_delta = r_back * d1s[i - 1][:, None, :] + (back * d2s[i - 1])[:, None, :] * r_z[i - 1]
    return out


def hutchinson_diags(
    params: Params,
    x: Any,
    y: Any,
    key: Any,
    *,
    counts: Sequence[int] = (1, 10, 100),
    activation: str = "relu",
    batch_size: int = 10_000,
    probe_batch: int = 10,
) -> dict[int, Params]:
    """Hutchinson estimates of the Hessian diagonal of the mean loss, one per probe count.

    Draws ``max(counts)`` Rademacher probes (:func:`rademacher_probes` of ``key``) and returns
    ``{k: mean over probes 0..k-1 of v * (H v)}``: nested estimates from one pass, each exactly
    what a separate run with ``k`` probes would give. ``probe_batch`` probes share each pass over
    a chunk of examples (memory grows with it).
    """
    params, x, y = check_data(params, x, y)
    counts = sorted({_positive_int("counts entry", c) for c in counts})
    if not counts:
        raise ValueError("counts must name at least one probe count")
    probe_batch = _positive_int("probe_batch", probe_batch)
    activation_fn(activation)
    chunk_plan(x.shape[0], batch_size)
    return _hutchinson(
        params, x, y, _as_key(key), counts=tuple(counts), activation=activation,
        batch_size=int(batch_size), probe_batch=min(probe_batch, counts[-1]),
    )  # fmt: skip


@partial(jax.jit, static_argnames=("counts", "activation", "batch_size", "probe_batch"))
def _hutchinson(params, x, y, key, *, counts, activation, batch_size, probe_batch):
    act = activation_fn(activation)
    total = counts[-1]
    n_batches = -(-total // probe_batch)

    def chunk_fn(xb, yb, wb, i):
        def one_batch(b):
            probes = rademacher_probes(key, params, b * probe_batch, probe_batch)
            return _probe_diag_sums(params, xb, yb, wb, probes, act)

        per = jax.lax.map(one_batch, jnp.arange(n_batches))  # leaves [batches, probe_batch, ...]
        return jax.tree.map(lambda a: a.reshape(-1, *a.shape[2:])[:total], per)

    per_probe = chunked_sum(chunk_fn, x, y, batch_size)  # leaves [total, ...], summed over n
    n = x.shape[0]
    return {k: jax.tree.map(lambda a, k=k: a[:k].sum(0) / (k * n), per_probe) for k in counts}


# ---------------------------------------------------------------------------------------------
# Adam's second moment


def adam_nu_diag(
    params: Params,
    x: Any,
    y: Any,
    key: Any,
    *,
    steps: int = 1_000,
    batch_size: int = 64,
    b1: float = 0.9,
    b2: float = 0.999,
    eps: float = 1e-8,
    activation: str = "relu",
) -> Params:
    """Adam's bias-corrected second moment after ``steps`` steps at learning rate 0.

    From fresh Adam state (``optax.scale_by_adam``), feeds ``steps`` minibatch gradients of the
    *mean* cross-entropy over ``batch_size`` examples drawn as in training (consecutive per-epoch
    shuffles, ``obd.batches.batch_indices``); the weights never move (learning rate 0), so ``nu`` is
    an exponential moving average (decay ``b2``) of squared minibatch gradients at the trained
    weights. Returns ``nu / (1 - b2**steps)`` (Adam's bias correction; a uniform factor that no
    ranking sees). Its expectation is ``g**2 + (F_emp - g**2) / batch_size`` (``g`` the full-data
    gradient, ``F_emp`` the empirical Fisher), i.e. close to ``F_emp / batch_size`` at a minimum.
    jaxpruner's ``adam-fisher`` scores ``w**2 * nu`` with the optimizer's state from training.
    """
    params, x, y = check_data(params, x, y)
    activation_fn(activation)
    steps = _positive_int("steps", steps)
    batch_size = _positive_int("batch_size", batch_size)
    if batch_size > x.shape[0]:
        raise ValueError(f"batch_size {batch_size} exceeds the {x.shape[0]} examples")
    if not (0.0 <= b1 < 1.0 and 0.0 < b2 < 1.0):
        raise ValueError(f"b1 must be in [0, 1) and b2 in (0, 1), got {b1!r}, {b2!r}")
    return _adam_nu(
        params, x, y, _as_key(key), steps=steps, batch_size=batch_size, b1=float(b1),
        b2=float(b2), eps=float(eps), activation=activation,
    )  # fmt: skip


@partial(jax.jit, static_argnames=("steps", "batch_size", "b1", "b2", "eps", "activation"))
def _adam_nu(params, x, y, key, *, steps, batch_size, b1, b2, eps, activation):
    from obd.batches import batch_indices

    idx = batch_indices(key, x.shape[0], steps, batch_size)
    opt = optax.scale_by_adam(b1=b1, b2=b2, eps=eps)

    def batch_loss(p, xb, yb):
        logits = apply_mlp(p, xb, activation=activation)
        return optax.softmax_cross_entropy_with_integer_labels(logits, yb).mean()

    grad = jax.grad(batch_loss)

    def step(state, ib):
        g = grad(params, x[ib].astype(params[0]["kernel"].dtype), y[ib])
        _, state = opt.update(g, state, params)
        return state, None

    state, _ = jax.lax.scan(step, opt.init(params), idx)
    return jax.tree.map(lambda nu: nu / (1.0 - b2**steps), state.nu)


# ---------------------------------------------------------------------------------------------
# Comparing saliencies


def kernel_vector(scores: Params) -> np.ndarray:
    """The kernels' entries of ``scores`` as one flat vector (``jax.tree.leaves`` order)."""
    layer_sizes(scores)
    return np.concatenate([np.asarray(layer["kernel"], np.float64).ravel() for layer in scores])


def rank_correlation(a: Params, b: Params) -> float:
    """Spearman rank correlation of two saliencies over the kernels' entries."""
    check_like(a, b, "b")
    rho = stats.spearmanr(kernel_vector(a), kernel_vector(b)).statistic
    return float(rho)


def mask_overlap(a: Params, b: Params, fraction: float, *, scope: str = "global") -> dict:
    """How alike the kernels pruned at ``fraction`` by saliencies ``a`` and ``b`` are.

    Returns ``jaccard`` (``|A & B| / |A | B|``) and ``shared`` (``|A & B| / |A|``, the fraction
    of ``a``'s pruned weights that ``b`` prunes too; ``|A| = |B|``), with ``n_pruned = |A|``.
    Both are 1 when ``fraction`` is 0 (nothing pruned, nothing differs).
    """
    check_like(a, b, "b")
    ma = ~kernel_vector(prune.masks(a, fraction, scope=scope)).astype(bool)
    mb = ~kernel_vector(prune.masks(b, fraction, scope=scope)).astype(bool)
    inter, union = int((ma & mb).sum()), int((ma | mb).sum())
    n = int(ma.sum())
    return {
        "n_pruned": n,
        "jaccard": inter / union if union else 1.0,
        "shared": inter / n if n else 1.0,
    }


def compare_saliencies(
    scores: dict[str, Params], reference: str, fractions: Iterable[float], *, scope="global"
) -> pd.DataFrame:
    """One row per saliency: Spearman correlation with ``scores[reference]`` and, per fraction,
    the Jaccard index and shared fraction of the pruned kernel sets."""
    if reference not in scores:
        raise ValueError(f"reference {reference!r} is not among the scores {list(scores)}")
    rows = []
    for name, s in scores.items():
        row = {"saliency": name, "spearman": rank_correlation(scores[reference], s)}
        for f in fractions:
            o = mask_overlap(scores[reference], s, f, scope=scope)
            row[f"jaccard_{f:g}"] = o["jaccard"]
            row[f"shared_{f:g}"] = o["shared"]
        rows.append(row)
    return pd.DataFrame(rows)


# ---------------------------------------------------------------------------------------------
# Timing


def timed(fn: Callable, *args, jit: bool = True, **kwargs) -> tuple[Any, dict[str, float]]:
    """Run ``fn(*args, **kwargs)`` once, with compilation kept out of the measured time.

    With ``jit`` (``fn`` traceable), compiles ahead of time (``jax.jit(...).lower().compile()``)
    and times one run of the compiled function; otherwise calls ``fn`` once to warm up and times
    a second call. Returns the result and ``{"compile_s", "run_s"}`` (``time.perf_counter``,
    ``jax.block_until_ready``).
    """
    t0 = time.perf_counter()
    if jit:
        compiled = jax.jit(lambda *a: fn(*a, **kwargs)).lower(*args).compile()
        call = compiled
    else:
        jax.block_until_ready(fn(*args, **kwargs))

        def call(*a):
            return fn(*a, **kwargs)

    t1 = time.perf_counter()
    out = jax.block_until_ready(call(*args))
    t2 = time.perf_counter()
    return out, {"compile_s": t1 - t0, "run_s": t2 - t1}


def finite_or_raise(name: str, tree: Params) -> Params:
    """``tree`` unchanged if all its entries are finite, else ``ValueError`` naming ``name``."""
    if not all(bool(jnp.all(jnp.isfinite(a))) for a in jax.tree.leaves(tree)):
        raise ValueError(f"{name} has non-finite entries")
    return tree

"""A faithful replay of the 2016 blog's pruning scripts, in TensorFlow, on any params.

The scripts (``code/MagnitudeBased*.py``, ``code/OptimalBrainDamage*.py``; MIT-licensed, Copyright
(c) 2016 Sarath Shekkizhar, see :data:`obd.study.blog2016.LICENSE_NOTICE`) restore a checkpoint and, at
each level ``c`` (percent pruned), for each TensorFlow variable ``v`` of ``n`` values:

* ``k = floor(c * n / 100)`` (an ``int32`` division);
* magnitude scripts: ``top_k(-v, k)`` picks the ``k`` most negative values (the signed weight, not
  ``|w|``), which are zeroed, the test accuracy logged, and the same values written back: every
  level starts from the trained weights, and the batch plays no part;
* OBD scripts: a fresh training batch of 64; the "second derivative" is
  ``s = tf.gradients(tf.gradients(L, v), v)``, i.e. the row sum of the Hessian block of ``v``,
  ``s_i = sum_j d²L/dv_i dv_j = (H_vv · 1)_i``, with ``L = -sum_n sum_c y_nc log(softmax(z_n)_c)``
  summed over the batch in float32 (the log *of* the softmax, not a stable log-softmax);
  ``top_k(-s, k)`` picks the entries to zero; after logging the accuracy the script recomputes
  ``s`` at the *pruned* weights on the same batch and writes the trained values back at
  ``top_k(-s_pruned, k)``: where that set differs from the pruned one, zeros stay and accumulate.

The ``_2`` scripts hold all parameters in one flat variable (the Hessian row sum then couples every
layer and the ranking is global); the others hold ``W_i`` and ``b_i`` separately (layer-wise).
Biases are ranked and pruned like weights. ``tf.math.top_k`` is TensorFlow's own, so its handling of
ties (lower index first) and NaN (an all-NaN vector yields indices ``0..k-1``) is the script's.
When several variables are pruned in one ``session.run`` the scripts do not order the reads and
writes; the replay computes every variable's saliency before writing any.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field

import numpy as np

from obd.checks import check_examples
from obd.network import Params
from obd.study.blog2016 import (
    RUNS,
    SIZES,
    BlogRun,
    flat_from_params,
    params_from_flat,
    params_from_split,
    split_from_params,
)

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
# Plain Eigen kernels: oneDNN picks kernels (and so float rounding) by CPU; without it the replay
# rounds alike on every machine. Effective only if TensorFlow is not imported yet.
os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "0")
import tensorflow as tf  # noqa: E402

LAYOUTS = ("flat", "split")
#: ``naive``: the blog's ``-sum(y * log(softmax(z)))`` with TensorFlow 0.10's gradient of ``log``;
#: ``naive_tf2``: the same loss with today's TensorFlow gradients; ``stable``: ``log_softmax``.
LOSSES = ("naive", "naive_tf2", "stable")
DTYPES = ("float32", "float64")
BATCH_SIZE = 64


def _check(name: str, value: str, accepted: Sequence[str]) -> str:
    if value not in accepted:
        raise ValueError(f"{name}={value!r} is not accepted; choose one of {list(accepted)}")
    return value


def to_variables(params: Params, layout: str) -> list[np.ndarray]:
    """The scripts' TensorFlow variables holding ``params``: one flat vector, or
    ``W_1, b_1, ..., W_final, b_final`` (kernels flattened row-major)."""
    _check("layout", layout, LAYOUTS)
    return [flat_from_params(params)] if layout == "flat" else split_from_params(params)


def from_variables(variables: list[np.ndarray], layout: str, sizes=SIZES) -> Params:
    """Inverse of :func:`to_variables`."""
    _check("layout", layout, LAYOUTS)
    if layout == "flat":
        return params_from_flat(variables[0], sizes)
    return params_from_split(variables, sizes)


def _layers(variables: Sequence[tf.Tensor], layout: str, sizes: tuple[int, ...]):
    """``(kernel [in, out], bias [out])`` per layer, sliced and reshaped as the scripts did."""
    pairs = list(zip(sizes[:-1], sizes[1:], strict=True))
    if layout == "split":
        return [
            (tf.reshape(w, [a, b]), bias)
            for (a, b), w, bias in zip(pairs, variables[::2], variables[1::2], strict=True)
        ]
    flat = variables[0]
    n_w = sum(a * b for a, b in pairs)
    weights, biases = flat[:n_w], flat[n_w:]
    out, w_off, b_off = [], 0, 0
    for a, b in pairs:
        out.append((tf.reshape(weights[w_off : w_off + a * b], [a, b]), biases[b_off : b_off + b]))
        w_off, b_off = w_off + a * b, b_off + b
    return out


def _logits(variables, x, layout, sizes):
    h = x
    layers = _layers(variables, layout, sizes)
    for i, (w, b) in enumerate(layers):
        h = tf.matmul(h, w) + b
        if i < len(layers) - 1:
            h = tf.nn.relu(h)
    return h


@tf.custom_gradient
def _inv_tf010(x):
    """``1/x`` with TensorFlow 0.10's gradient ``_InvGrad``: ``grad * (-square(1/x))``.

    ``square(1/x)`` overflows float32 to ``inf`` once ``x < sqrt(1/FLT_MAX) ≈ 5.4e-20``, and a zero
    ``grad`` then gives ``0 * inf = NaN``. (Today's ``ReciprocalGrad`` kernel computes
    ``-grad * y * y`` left to right and returns 0 there.)"""
    y = tf.math.reciprocal(x)

    def grad(dy):
        return dy * (-tf.square(y))

    return y, grad


@tf.custom_gradient
def _log_tf010(x):
    """``log x`` with TensorFlow 0.10's gradient ``_LogGrad``: ``grad * inv(x)``."""

    def grad(dy):
        return dy * _inv_tf010(x)

    return tf.math.log(x), grad


def _loss(logits, y_onehot, loss: str):
    if loss == "naive":  # the blog's graph: log of the softmax, with TF 0.10's gradient rules
        return -tf.reduce_sum(y_onehot * _log_tf010(tf.nn.softmax(logits)))
    if loss == "naive_tf2":
        return -tf.reduce_sum(y_onehot * tf.math.log(tf.nn.softmax(logits)))
    return -tf.reduce_sum(y_onehot * tf.nn.log_softmax(logits))


_FUNCTIONS: dict[tuple, tf.types.experimental.GenericFunction] = {}


def _h1_fn(layout: str, sizes: tuple[int, ...], dtype: str, loss: str):
    key = ("h1", layout, sizes, dtype, loss)
    if key not in _FUNCTIONS:

        @tf.function(reduce_retracing=True)
        def h1(variables, x, y_onehot):
            with tf.GradientTape(persistent=True) as outer:
                outer.watch(variables)
                with tf.GradientTape() as inner:
                    inner.watch(variables)
                    value = _loss(_logits(variables, x, layout, sizes), y_onehot, loss)
                grads = inner.gradient(value, variables)
            # tf.gradients(grad, var): the gradient of sum(grad) with respect to var, per variable
            return [outer.gradient(g, v) for g, v in zip(grads, variables, strict=True)], value

        _FUNCTIONS[key] = h1
    return _FUNCTIONS[key]


def _tensors(variables, dtype):
    return [tf.constant(np.asarray(v), dtype=dtype) for v in variables]


def check_mnist(x, y, classes: int = SIZES[-1], *, name: str = "x", label_name: str = "y") -> None:
    """``ValueError`` unless ``x`` holds finite float MNIST pixels in ``[0, 1]`` (the blog's
    tutorial data) and ``y`` integer labels in ``[0, classes)``, one per example."""
    check_examples(x, y, num_classes=classes, name=name, label_name=label_name, pixels=True)


def _checked_batch(x, y, sizes: tuple[int, ...]) -> np.ndarray:
    """``x`` as an array, once it is ``[N, sizes[0]]`` MNIST pixels with ``N`` valid labels."""
    x = np.asarray(x)
    if x.ndim != 2 or x.shape[1] != sizes[0] or x.shape[0] != np.shape(y)[0]:
        raise ValueError(
            f"x must be [N, {sizes[0]}] with N labels, got {x.shape} and {np.shape(y)}"
        )
    check_mnist(x, y, sizes[-1])
    return x


def _onehot(y: np.ndarray, classes: int, dtype) -> tf.Tensor:
    y = np.asarray(y)
    if y.ndim != 1 or y.size and (y.min() < 0 or y.max() >= classes):
        raise ValueError(f"labels must be integers in [0, {classes}) of shape [N], got {y.shape}")
    return tf.one_hot(y, classes, dtype=dtype)


def hessian_row_sums(
    variables: Sequence[np.ndarray],
    x: np.ndarray,
    y: np.ndarray,
    *,
    layout: str,
    sizes: tuple[int, ...] = SIZES,
    dtype: str = "float32",
    loss: str = "naive",
) -> tuple[list[np.ndarray], float]:
    """The blog's "second derivative" per variable, ``H_vv · 1``, and the batch loss.

    ``L = -sum_n sum_c y_nc log(p_nc)``, ``p = softmax(z)`` (``loss="naive"``, as the blog) or
    ``log p = log_softmax(z)`` (``"stable"``), in ``dtype``. For each variable ``v``,
    ``s_v = d/dv sum_i dL/dv_i`` (reverse over reverse, as ``tf.gradients(grad, var)``).
    In float32 with the naive loss, a class probability below ``sqrt(1/FLT_MAX) ≈ 5.4e-20`` makes
    the second derivative of ``log`` (``-1/p²``) overflow, and ``0 · inf`` turns ``s`` into NaN.
    """
    _check("layout", layout, LAYOUTS)
    _check("dtype", dtype, DTYPES)
    _check("loss", loss, LOSSES)
    sizes = tuple(int(s) for s in sizes)
    fn = _h1_fn(layout, sizes, dtype, loss)
    x = _checked_batch(x, y, sizes)
    out, value = fn(_tensors(variables, dtype), tf.constant(x, dtype), _onehot(y, sizes[-1], dtype))
    return [o.numpy() for o in out], float(value)


def _eval_fn(layout: str, sizes: tuple[int, ...]):
    key = ("eval", layout, sizes)
    if key not in _FUNCTIONS:

        @tf.function(reduce_retracing=True)
        def predict(variables, x):
            return tf.argmax(tf.nn.softmax(_logits(variables, x, layout, sizes)), 1)

        _FUNCTIONS[key] = predict
    return _FUNCTIONS[key]


def test_accuracy(
    variables: Sequence[np.ndarray], x: np.ndarray, y: np.ndarray, *, layout: str, sizes=SIZES
) -> float:
    """``mean(argmax softmax(z) == y)`` in float32, as the scripts' ``accuracy`` op (ties: the
    lower class)."""
    _check("layout", layout, LAYOUTS)
    x = _checked_batch(x, y, sizes)
    return _accuracy(variables, x, y, layout, sizes)


def _accuracy(variables, x, y, layout: str, sizes) -> float:
    """:func:`test_accuracy` without the checks (for inputs already checked)."""
    pred = _eval_fn(layout, tuple(sizes))(_tensors(variables, tf.float32), tf.constant(x))
    return float(np.mean(pred.numpy() == np.asarray(y)))


def top_k_indices(values: np.ndarray, k: int) -> np.ndarray:
    """``tf.math.top_k(values, k).indices`` with TensorFlow's own tie and NaN behaviour."""
    if k == 0:
        return np.zeros(0, np.int64)
    return tf.math.top_k(tf.constant(values), int(k)).indices.numpy().astype(np.int64)


def prune_count(percent: int, size: int) -> int:
    """``k = floor(percent * size / 100)``, the scripts' ``tf.cast(k * shape / 100, tf.int32)``."""
    if not 0 <= percent <= 100:
        raise ValueError(f"percent pruned must be in [0, 100], got {percent}")
    return (int(percent) * int(size)) // 100


@dataclass
class LevelRecord:
    """What happened at one level of a replay."""

    percent_pruned: int
    accuracy: float
    nan_saliency: bool  # the pruning saliency held a NaN (in any variable)
    nan_restore: bool  # the restore saliency (at the pruned weights) held a NaN
    zeros_before: int  # parameters equal to zero (not zero in the trained model) before pruning
    not_restored: int  # pruned entries the restore step did not write back
    batch_loss: float
    pruned_indices: list[np.ndarray] = field(default_factory=list, repr=False)


def replay(
    run: BlogRun | str,
    params: Params,
    levels: Iterable[int],
    test: tuple[np.ndarray, np.ndarray],
    batches: Iterator[tuple[np.ndarray, np.ndarray]] | None = None,
    *,
    dtype: str = "float32",
    loss: str = "naive",
    sizes: tuple[int, ...] = SIZES,
    keep_indices: bool = False,
) -> list[LevelRecord]:
    """Replay one of the blog's scripts on ``params`` at ``levels`` (percent pruned, in order).

    ``batches`` yields the ``(x, y)`` training batch of each level in turn (OBD runs only; the
    script draws one per level with ``next_batch(64)``). ``dtype`` and ``loss`` change the OBD
    graph for controls; the blog's is float32 and ``"naive"``. Returns one record per level.
    """
    spec = RUNS[run] if isinstance(run, str) else run
    if spec.saliency == "obd" and batches is None:
        raise ValueError("an OBD run needs batches: an iterator of (x, y) training batches")
    _check("dtype", dtype, DTYPES)
    _check("loss", loss, LOSSES)
    trained = to_variables(params, spec.layout)
    trained_zero = [v == 0 for v in trained]
    current = [v.copy() for v in trained]
    xt, yt = test
    check_mnist(xt, yt, sizes[-1], name="test x", label_name="test y")
    records = []
    for c in levels:
        ks = [prune_count(c, v.size) for v in trained]
        zeros_before = int(
            sum(((v == 0) & ~z).sum() for v, z in zip(current, trained_zero, strict=True))
        )
        if spec.saliency == "magnitude":
            # top_k(-v) on the current (= trained) values; zeroed by adding -v; written back after
            pruned = [top_k_indices(-v, k) for v, k in zip(current, ks, strict=True)]
            for v, idx in zip(current, pruned, strict=True):
                v[idx] = 0.0
            acc = _accuracy(current, xt, yt, spec.layout, sizes)
            current = [v.copy() for v in trained]
            records.append(LevelRecord(c, acc, False, False, zeros_before, 0, float("nan")))
            continue
        xb, yb = next(batches)
        s, value = hessian_row_sums(
            current, xb, yb, layout=spec.layout, sizes=sizes, dtype=dtype, loss=loss
        )
        nan_s = any(np.isnan(a).any() for a in s)
        pruned = [top_k_indices(-a, k) for a, k in zip(s, ks, strict=True)]
        for v, idx in zip(current, pruned, strict=True):
            v[idx] = 0.0
        acc = _accuracy(current, xt, yt, spec.layout, sizes)
        s2, _ = hessian_row_sums(
            current, xb, yb, layout=spec.layout, sizes=sizes, dtype=dtype, loss=loss
        )
        nan_r = any(np.isnan(a).any() for a in s2)
        restored = [top_k_indices(-a, k) for a, k in zip(s2, ks, strict=True)]
        not_restored = 0
        for v, t, idx, pidx in zip(current, trained, restored, pruned, strict=True):
            v[idx] = t[idx]
            not_restored += int(np.setdiff1d(pidx, idx).size)
        records.append(
            LevelRecord(
                c,
                acc,
                nan_s,
                nan_r,
                zeros_before,
                not_restored,
                value,
                pruned if keep_indices else [],
            )
        )
    return records


def sequential_batches(
    x: np.ndarray,
    y: np.ndarray,
    *,
    start: int = 0,
    batch_size: int = BATCH_SIZE,
    permute_within: int | None = None,
) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """Consecutive batches ``x[start + i*b : start + (i+1)*b]``, as the tutorial reader's
    ``next_batch`` served them before its first reshuffle (TF 0.10 did not shuffle first).

    ``permute_within`` (a seed) reorders the examples inside each batch: the same batch, so the
    same mathematics, summed in another order; only float rounding changes."""
    rng = None if permute_within is None else np.random.default_rng(permute_within)
    i = start
    while i + batch_size <= len(x):
        idx = np.arange(i, i + batch_size)
        if rng is not None:
            idx = rng.permutation(idx)
        yield x[idx], y[idx]
        i += batch_size
    raise ValueError("ran past the end of the training images (the reader would reshuffle)")


def shuffled_batches(
    x: np.ndarray, y: np.ndarray, seed: int, *, batch_size: int = BATCH_SIZE
) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """Consecutive batches of a random permutation of the training images (seeded)."""
    perm = np.random.default_rng(seed).permutation(len(x))
    for i in range(0, len(x) - batch_size + 1, batch_size):
        idx = perm[i : i + batch_size]
        yield x[idx], y[idx]

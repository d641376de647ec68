"""Entry checks on data: bad data raises a ``ValueError`` instead of becoming a plausible number.

Every public function that consumes examples (training, Hessians, saliencies, sweeps, OBS) checks
its inputs once, on entry, outside any jitted loop: the checks cost one pass over the arrays
(on the device for JAX arrays, on the host for NumPy arrays) and never run inside the hot paths.
Inside a trace (``jax.jit`` of a public function) the values are unknown: only shapes and dtypes
are checked there, and the caller that holds the concrete arrays is responsible for the values.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import numpy as np


def _is_traced(a: Any) -> bool:
    return isinstance(a, jax.core.Tracer)


def _as_array(a: Any, name: str) -> Any:
    """``a`` as a NumPy or JAX array (JAX arrays and tracers are kept as they are)."""
    if isinstance(a, jax.Array):
        return a
    try:
        return np.asarray(a)
    except (TypeError, ValueError) as err:
        raise ValueError(f"{name} must be an array of numbers, got {type(a).__name__}") from err


def _first_indices(mask: Any, k: int = 5) -> str:
    rows = np.flatnonzero(np.asarray(mask))
    return ", ".join(str(int(r)) for r in rows[:k]) + (", ..." if len(rows) > k else "")


def check_examples(
    x: Any,
    y: Any | None = None,
    *,
    num_classes: int | None = None,
    name: str = "x",
    label_name: str = "y",
    pixels: bool = False,
) -> None:
    """``ValueError`` unless ``x`` holds >= 1 finite examples and ``y`` valid integer labels.

    * ``x``: a floating-point array (:func:`check_float`) with a leading example axis of length
      ``N >= 1`` and no NaN or infinite value (the error counts them and names the first examples
      that hold one); with ``pixels``, every value in ``[0, 1]`` (:func:`check_pixels`: for the
      entry points that take MNIST images, whose range is known).
    * ``y`` (optional): integer labels of shape ``[N]`` in ``[0, num_classes)`` when
      ``num_classes`` is given (the error names the range found and the range expected).
    """
    xa = _as_array(x, name)
    if xa.ndim < 1 or xa.shape[0] < 1:
        raise ValueError(
            f"{name} must hold at least one example (a leading axis N >= 1), got shape "
            f"{tuple(xa.shape)}"
        )
    check_float(xa, name)
    if not _is_traced(xa):
        if isinstance(xa, jax.Array):
            finite = bool(jnp.isfinite(xa).all())  # one reduction on the device
        else:
            finite = bool(np.isfinite(xa).all())
        if not finite:
            bad = ~np.isfinite(np.asarray(xa))  # only on failure: the details, on the host
            rows = bad.reshape(len(bad), -1).any(axis=1)
            raise ValueError(
                f"{name} has {int(bad.sum())} non-finite value(s) (NaN or inf) in "
                f"{int(rows.sum())} example(s), at index {_first_indices(rows)}; every input "
                "must be finite"
            )
        if pixels:
            check_pixels(xa, name)
    if y is None:
        return
    check_labels(y, num_classes=num_classes, n=int(xa.shape[0]), name=label_name)


def check_float(x: Any, name: str = "x") -> None:
    """``ValueError`` unless ``x`` is floating point.

    Integer inputs (``uint8`` pixels) are refused rather than converted: their products overflow
    silently (``X^T X`` in ``uint8``), and their scale (0-255) is rarely the one a model expects.
    """
    dtype = np.dtype(_as_array(x, name).dtype)
    if jnp.issubdtype(dtype, jnp.floating):  # bfloat16 included
        return
    if jnp.issubdtype(dtype, jnp.integer):
        raise ValueError(
            f"{name} must be floating point (e.g. float32), got {dtype}: integer inputs are not "
            f"converted; pass {name}.astype(np.float32) (and scale image pixels to [0, 1])"
        )
    raise ValueError(f"{name} must be a floating-point array, got dtype {dtype}")


def check_pixels(x: Any, name: str = "x") -> None:
    """``ValueError`` unless every value of ``x`` is in ``[0, 1]`` (MNIST pixels as
    ``obd.study.data.load_mnist`` gives them); skipped inside a trace."""
    xa = _as_array(x, name)
    if _is_traced(xa) or xa.size == 0:
        return
    if isinstance(xa, jax.Array):
        lo, hi = (float(v) for v in jax.device_get((xa.min(), xa.max())))
    else:
        lo, hi = float(xa.min()), float(xa.max())
    if lo < 0 or hi > 1:
        a = np.asarray(xa)  # only on failure: the count, on the host
        bad = int(((a < 0) | (a > 1)).sum())
        hint = " (0-255 pixels? divide by 255)" if hi > 2 else ""
        raise ValueError(
            f"{name} has {bad} value(s) outside [0, 1] (it ranges over [{lo!r}, {hi!r}]); "
            f"expected MNIST pixels in [0, 1]{hint}"
        )


#: Floating dtypes too narrow to train in: Adam's epsilon (1e-8) underflows to 0 in float16, and
#: bfloat16 keeps 8 bits of mantissa; training runs in float32 or float64.
_NARROW_FLOATS = ("float16", "bfloat16")


def check_trainable(params: Any, x: Any, *, name: str = "x") -> None:
    """``ValueError`` if the parameters or the inputs of a training run are float16/bfloat16.

    Adam's default epsilon (``1e-8``) is 0 in float16, so a step divides by ``sqrt(nu) + 0`` and
    soon overflows: the loss becomes NaN, which would otherwise read as "lower the learning rate".
    """
    for path, leaf in jax.tree_util.tree_flatten_with_path(params)[0]:
        dtype = np.dtype(getattr(leaf, "dtype", np.asarray(leaf).dtype))
        if dtype.name in _NARROW_FLOATS:
            raise ValueError(
                f"parameter {jax.tree_util.keystr(path)} is {dtype.name}: training needs float32 "
                f"or float64 parameters (in {dtype.name}, Adam's epsilon 1e-8 underflows and the "
                "updates overflow); convert them, e.g. jax.tree.map(lambda a: "
                "a.astype(jnp.float32), params)"
            )
    dtype = np.dtype(_as_array(x, name).dtype)
    if dtype.name in _NARROW_FLOATS:
        raise ValueError(
            f"{name} is {dtype.name}: training runs in float32 or float64; pass "
            f"{name}.astype(np.float32)"
        )


def check_finite_tensors(tensors: dict[str, Any], source: str) -> None:
    """``ValueError`` naming the first tensor of ``tensors`` (name -> array) that holds a NaN or
    an infinite value; ``source`` names where they come from (a checkpoint's path)."""
    for key, a in tensors.items():
        a = np.asarray(a)
        if np.issubdtype(a.dtype, np.floating) and not np.isfinite(a).all():
            bad = int((~np.isfinite(a)).sum())
            raise ValueError(
                f"{source}: tensor {key} holds {bad} non-finite value(s) (NaN or inf) out of "
                f"{a.size}; a usable checkpoint has finite weights (was it written by a training "
                "that diverged?)"
            )


def check_labels(
    y: Any, *, num_classes: int | None = None, n: int | None = None, name: str = "y"
) -> None:
    """``ValueError`` unless ``y`` is integer labels ``[n]`` in ``[0, num_classes)``."""
    ya = _as_array(y, name)
    if ya.ndim != 1 or (n is not None and ya.shape[0] != n):
        want = f"[{n}]" if n is not None else "[N]"
        raise ValueError(
            f"{name} must be integer labels of shape {want}, got shape {tuple(ya.shape)}"
        )
    if not np.issubdtype(np.dtype(ya.dtype), np.integer):
        raise ValueError(f"{name} must be integer class labels, got dtype {ya.dtype}")
    if num_classes is not None and ya.size and not _is_traced(ya):
        if isinstance(ya, jax.Array):
            lo, hi = (int(v) for v in jax.device_get((ya.min(), ya.max())))
        else:
            lo, hi = int(ya.min()), int(ya.max())
        if lo < 0 or hi >= num_classes:
            bad = (np.asarray(ya) < 0) | (np.asarray(ya) >= num_classes)
            raise ValueError(
                f"{name} holds labels in [{lo}, {hi}] but the network has {num_classes} classes: "
                f"labels must be in [0, {num_classes - 1}] ({int(bad.sum())} out of range, at "
                f"index {_first_indices(bad)})"
            )


def check_converging(mean_loss: Any, first_bad: Any, start: int) -> None:
    """``ValueError`` naming the step when a chunk of training steps produced a non-finite loss.

    ``mean_loss`` is the chunk's mean loss and ``first_bad`` the index within the chunk of its
    first non-finite step loss (both computed in the jitted chunk: no extra pass); ``start`` is
    the number of steps before the chunk, so the error names the 1-based step.
    """
    if not np.isfinite(float(mean_loss)):
        raise ValueError(
            f"training diverged: the loss is not finite (NaN or inf) at step "
            f"{start + int(first_bad) + 1}; stopped there and returned nothing (no checkpoint "
            "is written). Lower learning_rate, or check the data."
        )


def check_number(
    name: str,
    value: Any,
    *,
    lo: float | None = None,
    hi: float | None = None,
    integer: bool = False,
    lo_open: bool = False,
    hi_open: bool = False,
) -> Any:
    """Return ``value`` if it is a number (an int when ``integer``) in ``[lo, hi]``.

    ``lo_open``/``hi_open`` exclude the bound. Booleans, strings (``"10"``) and, when
    ``integer``, floats (``2.5``, even ``3.0``) are refused with a ``ValueError`` that names the
    parameter, the accepted type and the value's type. NumPy scalars are accepted and returned
    as Python numbers.
    """
    kinds = (int, np.integer) if integer else (int, float, np.integer, np.floating)
    if isinstance(value, bool | np.bool_) or not isinstance(value, kinds):
        want = "an integer" if integer else "a number"
        raise ValueError(f"{name} must be {want}, got {value!r} ({type(value).__name__})")
    value = int(value) if isinstance(value, int | np.integer) else float(value)
    if not integer and not np.isfinite(value):
        raise ValueError(f"{name} must be a finite number, got {value!r}")
    below = lo is not None and (value <= lo if lo_open else value < lo)
    above = hi is not None and (value >= hi if hi_open else value > hi)
    if below or above:
        left = "(" if lo_open else "["
        right = ")" if hi_open else "]"
        raise ValueError(f"{name}={value!r} is outside the accepted range {left}{lo}, {hi}{right}")
    return value


@jax.jit
def _leaves_finite(leaves: list) -> jax.Array:
    """Whether every entry of every leaf is finite: one fused reduction on the device."""
    return jnp.stack([jnp.isfinite(a).all() for a in leaves]).all()


def check_finite_params(params: Any, name: str = "params", *, what: str = "parameter") -> None:
    """``ValueError`` naming the first tensor of the pytree ``params`` that holds a NaN or an
    infinite value (its path, e.g. ``params[2]['kernel']``, and how many). One fused reduction
    over the floating-point leaves on entry (on the host for NumPy leaves); skipped inside a
    trace. ``what``: the word for a tensor in the message (``parameter``, ``result``)."""

    def dtype(leaf: Any) -> np.dtype:  # a tracer has a dtype, and np.asarray refuses it
        return np.dtype(leaf.dtype) if hasattr(leaf, "dtype") else np.asarray(leaf).dtype

    items = [
        (path, leaf)
        for path, leaf in jax.tree_util.tree_flatten_with_path(params)[0]
        if jnp.issubdtype(dtype(leaf), jnp.inexact)
    ]
    if not items or any(_is_traced(leaf) for _, leaf in items):
        return
    device = [leaf for _, leaf in items if isinstance(leaf, jax.Array)]
    host = [np.asarray(leaf) for _, leaf in items if not isinstance(leaf, jax.Array)]
    if (not device or bool(_leaves_finite(device))) and all(np.isfinite(a).all() for a in host):
        return
    for path, leaf in items:  # only on failure: find and name the tensor
        a = np.asarray(leaf)
        if not np.isfinite(a).all():
            bad = int((~np.isfinite(a)).sum())
            raise ValueError(
                f"{what} {name}{jax.tree_util.keystr(path)} holds {bad} non-finite value(s) "
                f"(NaN or inf) out of {a.size}; every {what} must be finite"
            )

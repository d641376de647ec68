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
) -> None:
    """``ValueError`` unless ``x`` holds >= 1 finite examples and ``y`` valid integer labels.

    * ``x``: a numeric array with a leading example axis of length ``N >= 1`` and no NaN or
      infinite value (the error counts them and names the first examples that hold one).
    * ``y`` (optional): integer labels of shape ``[N]`` in ``[0, num_classes)`` when
      ``num_classes`` is given (the error names the range found and the range expected).
    """
    xa = _as_array(x, name)
    if xa.ndim < 1 or xa.shape[0] < 1:
        raise ValueError(
            f"{name} must hold at least one example (a leading axis N >= 1), got shape "
            f"{tuple(xa.shape)}"
        )
    dtype = np.dtype(xa.dtype)
    if not (np.issubdtype(dtype, np.floating) or np.issubdtype(dtype, np.integer)):
        raise ValueError(f"{name} must be a numeric array, got dtype {dtype}")
    if np.issubdtype(dtype, np.floating) and not _is_traced(xa):
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
    if y is None:
        return
    check_labels(y, num_classes=num_classes, n=int(xa.shape[0]), name=label_name)


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

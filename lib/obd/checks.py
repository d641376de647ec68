"""Entry checks on data: bad data raises a ``ValueError`` instead of becoming a plausible number.

Every public function that consumes examples (training, Hessians, saliencies, sweeps, OBS) checks
its inputs once, on entry, outside any jitted loop: the checks cost one pass over the arrays on the
host and never run inside the hot paths.
"""

from __future__ import annotations

from typing import Any

import numpy as np


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
    xa = np.asarray(x)
    if xa.ndim < 1 or xa.shape[0] < 1:
        raise ValueError(
            f"{name} must hold at least one example (a leading axis N >= 1), got shape {xa.shape}"
        )
    if not (np.issubdtype(xa.dtype, np.floating) or np.issubdtype(xa.dtype, np.integer)):
        raise ValueError(f"{name} must be a numeric array, got dtype {xa.dtype}")
    if np.issubdtype(xa.dtype, np.floating):
        bad = ~np.isfinite(xa)
        if bad.any():
            rows = np.flatnonzero(bad.reshape(len(xa), -1).any(axis=1))
            shown = ", ".join(str(int(r)) for r in rows[:5]) + (", ..." if len(rows) > 5 else "")
            raise ValueError(
                f"{name} has {int(bad.sum())} non-finite value(s) (NaN or inf) in {len(rows)} "
                f"example(s), at index {shown}; every input must be finite"
            )
    if y is None:
        return
    check_labels(y, num_classes=num_classes, n=len(xa), name=label_name)


def check_labels(
    y: Any, *, num_classes: int | None = None, n: int | None = None, name: str = "y"
) -> None:
    """``ValueError`` unless ``y`` is integer labels ``[n]`` in ``[0, num_classes)``."""
    ya = np.asarray(y)
    if ya.ndim != 1 or (n is not None and ya.shape[0] != n):
        want = f"[{n}]" if n is not None else "[N]"
        raise ValueError(f"{name} must be integer labels of shape {want}, got shape {ya.shape}")
    if not np.issubdtype(ya.dtype, np.integer):
        raise ValueError(f"{name} must be integer class labels, got dtype {ya.dtype}")
    if num_classes is not None and ya.size:
        lo, hi = int(ya.min()), int(ya.max())
        if lo < 0 or hi >= num_classes:
            raise ValueError(
                f"{name} holds labels in [{lo}, {hi}] but the network has {num_classes} classes: "
                f"labels must be in [0, {num_classes - 1}]"
            )

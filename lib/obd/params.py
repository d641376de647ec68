"""Validation of notebook parameters (papermill injects them as globals)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

import numpy as np


def check_no_unknown(namespace: Mapping[str, Any], before: Iterable[str], accepted: Iterable[str]):
    """Raise ``ValueError`` for globals that appeared after ``before`` and are not ``accepted``.

    A notebook records ``set(globals())`` before its ``parameters`` cell; whatever papermill
    injects beyond the accepted names is a misspelt or unknown parameter.
    """
    accepted = set(accepted)
    unknown = sorted(n for n in set(namespace) - set(before) - accepted if not n.startswith("_"))
    if unknown:
        raise ValueError(
            f"unknown parameter(s) {', '.join(unknown)}; accepted: {', '.join(sorted(accepted))}"
        )


def check_choice(name: str, value: Any, accepted: Iterable[Any]) -> Any:
    """Return ``value`` if it is one of ``accepted``, else raise ``ValueError`` naming them."""
    accepted = list(accepted)
    if value not in accepted:
        raise ValueError(f"{name}={value!r} is not accepted; choose one of {accepted}")
    return value


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

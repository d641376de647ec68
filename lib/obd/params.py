"""Validation of notebook parameters (papermill injects them as globals)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any


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
    name: str, value: Any, *, lo: float | None = None, hi: float | None = None, integer=False
) -> Any:
    """Return ``value`` if it is a number (an int when ``integer``) in ``[lo, hi]``."""
    kinds = (int,) if integer else (int, float)
    if isinstance(value, bool) or not isinstance(value, kinds):
        raise ValueError(f"{name} must be {'an integer' if integer else 'a number'}, got {value!r}")
    if (lo is not None and value < lo) or (hi is not None and value > hi):
        raise ValueError(f"{name}={value!r} is outside the accepted range [{lo}, {hi}]")
    return value

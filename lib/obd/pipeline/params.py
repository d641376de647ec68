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

"""The blog's MLP (784-50-50-50-50-10, ReLU, optional dropout) and the study's checkpoints.

The network itself is the core's :mod:`obd.mlp` (a plain pytree and its NNX twin); this module
holds the blog's layer widths and the ``.npz`` checkpoint format the pipeline writes: one
``layer{i}/{name}`` entry per tensor and a JSON ``__meta__`` entry (training settings, results).
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import jax.numpy as jnp
import numpy as np

from obd.checks import check_finite_tensors
from obd.mlp import layer_sizes
from obd.network import Params
from obd.pipeline.io import atomic_path

#: The blog's MLP: 784 inputs, four hidden layers of 50 ReLU units, 10 classes (47,410 weights).
BLOG_SIZES: tuple[int, ...] = (784, 50, 50, 50, 50, 10)

_META_KEY = "__meta__"


def save_params(path: str | os.PathLike, params: Params, meta: dict[str, Any]) -> None:
    """Save ``params`` and a JSON-serialisable ``meta`` dict to an ``.npz`` file, atomically."""
    layer_sizes(params)
    write_checkpoint(path, params, meta)


def write_checkpoint(path: str | os.PathLike, params: list[dict], meta: dict[str, Any]) -> None:
    """Write a list of per-layer tensor dicts (``layer{i}/{name}`` entries) and a JSON ``meta``
    dict to an ``.npz`` file, atomically: the format of :func:`save_params` and of
    ``obd.study.convnets.save_net``."""
    arrays = {
        f"layer{i}/{k}": np.asarray(v) for i, layer in enumerate(params) for k, v in layer.items()
    }
    if not isinstance(meta, dict):
        raise ValueError(f"meta must be a dict, got {type(meta).__name__}")
    try:
        arrays[_META_KEY] = np.array(json.dumps(meta, sort_keys=True, allow_nan=False))
    except (TypeError, ValueError) as err:
        raise ValueError(f"meta must be JSON-serialisable (finite numbers): {err}") from None
    with atomic_path(path, suffix=".npz") as tmp:
        np.savez(tmp, **arrays)


def load_params(path: str | os.PathLike) -> tuple[Params, dict[str, Any]]:
    """Load what :func:`save_params` wrote; ``ValueError`` if ``path`` is not such a checkpoint
    or if a tensor holds a NaN or an infinite value (the error names the tensor)."""
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"checkpoint {str(path)!r} does not exist")
    try:
        with np.load(path, allow_pickle=False) as data:
            files = dict(data)
    except Exception as err:
        raise ValueError(f"{str(path)!r} is not an .npz checkpoint written by save_params") from err
    if _META_KEY not in files:
        raise ValueError(f"{str(path)!r} is not a checkpoint: it has no {_META_KEY!r} entry")
    n = sum(1 for k in files if k.endswith("/kernel"))
    try:
        params = [
            {
                "kernel": jnp.asarray(files[f"layer{i}/kernel"]),
                "bias": jnp.asarray(files[f"layer{i}/bias"]),
            }
            for i in range(n)
        ]
    except KeyError as err:
        raise ValueError(f"{str(path)!r} is missing entry {err}") from None
    layer_sizes(params)
    check_finite_tensors({k: v for k, v in files.items() if k != _META_KEY}, repr(str(path)))
    raw = files[_META_KEY]
    try:
        if raw.ndim != 0 or raw.dtype.kind not in "US":
            raise ValueError(f"a {raw.dtype}{list(raw.shape)} array, not a string")
        meta = json.loads(str(raw))
        if not isinstance(meta, dict):
            raise ValueError(f"a JSON {type(meta).__name__}, not an object")
    except ValueError as err:  # json.JSONDecodeError is a ValueError
        raise ValueError(
            f"{str(path)!r} is not a checkpoint written by save_params: its {_META_KEY!r} entry "
            f"is not a JSON object ({err})"
        ) from None
    return params, meta

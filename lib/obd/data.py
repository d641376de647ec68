"""MNIST from TensorFlow Datasets, cached as decoded NumPy arrays.

The first load of a split goes through TFDS (which imports TensorFlow, ~5 s); the decoded arrays are
then kept in an ``.npz`` keyed by dataset version in a writable cache folder, so later loads take
milliseconds. TFDS honours ``TFDS_DATA_DIR``; offline machines point it at a prepared copy.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from obd.io import atomic_path

DATASET = "mnist"
VERSION = "3.0.1"
SPLITS = ("train", "test")


class DataUnavailableError(RuntimeError):
    """MNIST is neither cached, nor in the TFDS data folder, nor downloadable."""


def cache_dir() -> Path:
    """Folder of decoded arrays: ``$OBD_CACHE_DIR``, else ``$XDG_CACHE_HOME/obd``, else ``~/.cache/obd``."""
    if os.environ.get("OBD_CACHE_DIR"):
        return Path(os.environ["OBD_CACHE_DIR"])
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "obd"


def _cache_file(split: str) -> Path:
    return cache_dir() / f"{DATASET}-{VERSION}-{split}.npz"


def _from_tfds(split: str, data_dir: str | None) -> tuple[np.ndarray, np.ndarray]:
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    import tensorflow_datasets as tfds  # slow import: only on a cache miss

    where = data_dir or os.environ.get("TFDS_DATA_DIR") or "TFDS's default folder"
    try:
        ds = tfds.load(f"{DATASET}:{VERSION}", split=split, data_dir=data_dir, batch_size=-1)
        arrays = tfds.as_numpy(ds)
    except Exception as err:  # TFDS raises many types for a missing or unreachable dataset
        raise DataUnavailableError(
            f"MNIST ({DATASET}/{VERSION}) is not in {where} and could not be downloaded "
            f"({type(err).__name__}: {str(err).splitlines()[0] if str(err) else ''}). "
            "Connect to the internet once, or set TFDS_DATA_DIR (or data_dir=) to a folder "
            f"that holds {DATASET}/{VERSION} as TFDS prepares it."
        ) from None
    x = arrays["image"].reshape(len(arrays["image"]), -1).astype(np.float32) / 255.0
    return x, arrays["label"].astype(np.int32)


def load_mnist(split: str, data_dir: str | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Load an MNIST split: ``x`` float32 ``[N, 784]`` in [0, 1], ``y`` int32 ``[N]``.

    ``data_dir`` overrides ``TFDS_DATA_DIR``. Raises :class:`DataUnavailableError` with a fix when
    the data can be neither found nor downloaded, ``ValueError`` for an unknown split.
    """
    if split not in SPLITS:
        raise ValueError(f"unknown split {split!r}; accepted: {', '.join(SPLITS)}")
    path = _cache_file(split)
    if path.is_file():
        try:
            with np.load(path) as f:
                return f["x"], f["y"]
        except (OSError, KeyError, ValueError):
            pass  # a damaged cache is rebuilt below
    x, y = _from_tfds(split, data_dir)
    try:
        with atomic_path(path) as tmp:
            np.savez(tmp, x=x, y=y)
    except OSError:
        pass  # a read-only cache folder only costs speed
    return x, y

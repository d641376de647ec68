"""MNIST from TensorFlow Datasets, cached as decoded NumPy arrays.

The first load of a split goes through TFDS (which imports TensorFlow, ~5 s); the decoded arrays are
then kept in an ``.npz`` in a writable cache folder, so later loads take milliseconds. A cache file
is keyed by its source, the dataset version and the TFDS data folder it came from
(``mnist-3.0.1-<hash of the folder>-train.npz``): a load from another folder (``data_dir=``,
``TFDS_DATA_DIR``) never reuses another source's arrays. TFDS honours ``TFDS_DATA_DIR``; offline
machines point it at a prepared copy.

Faults fail fast and leave nothing behind: a cache that cannot be read, or holds anything but the
split's arrays (shape, dtype, count, label range), is named in a warning and rebuilt; when MNIST
is not prepared in the TFDS folder, one quick probe of the download host (a few seconds at most)
decides whether TFDS may try to download it, and a failed download removes the folders it
created.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import socket
import threading
import warnings
from pathlib import Path
from urllib.parse import urlsplit

import numpy as np

from obd.pipeline.io import atomic_path

DATASET = "mnist"
VERSION = "3.0.1"
SPLITS = ("train", "test")
#: Examples per split, pixels per image and classes: a cache must match them exactly.
SIZES = {"train": 60_000, "test": 10_000}
PIXELS = 28 * 28
CLASSES = 10
#: Where TFDS downloads MNIST from; probed (TCP connect, ``PROBE_TIMEOUT`` seconds) before a
#: download is attempted, so an offline machine fails in seconds instead of minutes of retries.
DOWNLOAD_HOST = ("storage.googleapis.com", 443)
PROBE_TIMEOUT = 3.0


class DataUnavailableError(RuntimeError):
    """MNIST is neither cached, nor in the TFDS data folder, nor downloadable."""


def cache_dir() -> Path:
    """Folder of decoded arrays: ``$OBD_CACHE_DIR``, else ``$XDG_CACHE_HOME/obd``, else ``~/.cache/obd``."""
    if os.environ.get("OBD_CACHE_DIR"):
        return Path(os.environ["OBD_CACHE_DIR"])
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "obd"


def source_key(data_dir: str | None = None) -> str:
    """8 hex digits naming the source of the arrays: SHA-256 of the absolute TFDS data folder
    (:func:`tfds_root`, resolved) and the dataset version."""
    source = f"{DATASET}:{VERSION}:{tfds_root(data_dir).resolve()}"
    return hashlib.sha256(source.encode()).hexdigest()[:8]


def cache_file(split: str, data_dir: str | None = None) -> Path:
    """The cache of ``split`` from the TFDS folder ``data_dir`` (see :func:`tfds_root`):
    ``<cache_dir>/mnist-3.0.1-<source_key>-<split>.npz``."""
    return cache_dir() / f"{DATASET}-{VERSION}-{source_key(data_dir)}-{split}.npz"


def tfds_root(data_dir: str | None = None) -> Path:
    """The TFDS data folder: ``data_dir``, else ``$TFDS_DATA_DIR``, else ``~/tensorflow_datasets``."""
    root = data_dir or os.environ.get("TFDS_DATA_DIR") or Path.home() / "tensorflow_datasets"
    return Path(root).expanduser()


def is_prepared(data_dir: str | None = None) -> bool:
    """Whether MNIST ``VERSION`` is prepared (as TFDS writes it) in the TFDS data folder."""
    return (tfds_root(data_dir) / DATASET / VERSION / "dataset_info.json").is_file()


def _probe_target() -> tuple[str, int]:
    """The host a download would first connect to: the HTTPS proxy when one is set."""
    for var in ("HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy"):
        if os.environ.get(var):
            u = urlsplit(os.environ[var] if "//" in os.environ[var] else "//" + os.environ[var])
            if u.hostname:
                return u.hostname, u.port or 443
    return DOWNLOAD_HOST


def online(timeout: float = PROBE_TIMEOUT) -> bool:
    """One quick probe: can a TCP connection to the download host be opened within ``timeout``
    seconds (name resolution included)? ``OBD_OFFLINE=1`` answers False without probing."""
    if os.environ.get("OBD_OFFLINE", "") not in ("", "0"):
        return False
    result: list[bool] = []

    def probe() -> None:
        try:
            socket.create_connection(_probe_target(), timeout=timeout).close()
            result.append(True)
        except OSError:
            result.append(False)

    worker = threading.Thread(target=probe, daemon=True)  # name resolution has no timeout
    worker.start()
    worker.join(timeout)
    return bool(result and result[0])


def _unavailable(where: Path, why: str) -> DataUnavailableError:
    return DataUnavailableError(
        f"MNIST ({DATASET}/{VERSION}) is not in {where} and could not be downloaded ({why}). "
        "Connect to the internet once, or set TFDS_DATA_DIR (or data_dir=) to a folder that holds "
        f"{DATASET}/{VERSION} as TFDS prepares it."
    )


def _from_tfds(split: str, data_dir: str | None) -> tuple[np.ndarray, np.ndarray]:
    root = tfds_root(data_dir)
    if not is_prepared(data_dir) and not online():
        host, port = _probe_target()
        raise _unavailable(root, f"offline: {host}:{port} is unreachable") from None
    # what a failed download may create, to be removed again (never what existed before)
    created = [p for p in (root, root / "downloads", root / DATASET) if not p.exists()]
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    try:
        import tensorflow_datasets as tfds  # slow import: only on a cache miss

        ds = tfds.load(f"{DATASET}:{VERSION}", split=split, data_dir=data_dir, batch_size=-1)
        arrays = tfds.as_numpy(ds)
    except Exception as err:  # TFDS raises many types for a missing or unreachable dataset
        for p in reversed(created):
            shutil.rmtree(p, ignore_errors=True)
        first = str(err).splitlines()[0] if str(err) else ""
        raise _unavailable(root, f"{type(err).__name__}: {first}") from None
    x = arrays["image"].reshape(len(arrays["image"]), -1).astype(np.float32) / 255.0
    return x, arrays["label"].astype(np.int32)


def check_split(split: str, x: np.ndarray, y: np.ndarray) -> None:
    """``ValueError`` unless ``(x, y)`` is the MNIST ``split``: x float32 ``[N, 784]``, y int32
    ``[N]`` in ``[0, 9]`` holding every class, ``N`` its number of examples, pixels in ``[0, 1]``
    and not all equal (one pass for the range)."""
    n = SIZES[split]
    if x.dtype != np.float32 or x.shape != (n, PIXELS):
        raise ValueError(f"x is {x.dtype}{list(x.shape)}, not float32[{n}, {PIXELS}]")
    if y.dtype != np.int32 or y.shape != (n,):
        raise ValueError(f"y is {y.dtype}{list(y.shape)}, not int32[{n}]")
    if y.min() < 0 or y.max() >= CLASSES:
        raise ValueError(f"y holds labels in [{y.min()}, {y.max()}], not in [0, {CLASSES - 1}]")
    lo, hi = float(x.min()), float(x.max())
    if lo < 0 or hi > 1:
        raise ValueError(f"x holds pixels in [{lo:g}, {hi:g}], not in [0, 1] (0-255 pixels?)")
    if lo == hi or len(np.unique(y)) != CLASSES:
        raise ValueError(
            f"x is constant ({lo:g}) or y lacks a class: not MNIST {split}"
            if lo == hi
            else f"y holds {len(np.unique(y))} classes, not {CLASSES}: not MNIST {split}"
        )


def _read_cache(path: Path, split: str) -> tuple[np.ndarray, np.ndarray] | None:
    """The cached split, or None (with a warning naming the file) if it is damaged or foreign."""
    try:
        with np.load(path, allow_pickle=False) as f:
            if set(f.files) != {"x", "y"}:
                raise ValueError(f"it holds {sorted(f.files)}, not ['x', 'y']")
            x, y = f["x"], f["y"]
        check_split(split, x, y)
    except Exception as err:  # zipfile, zlib, EOF, pickle, shape errors: all mean "rebuild"
        reason = f"{type(err).__name__}: {err}" if str(err) else type(err).__name__
        warnings.warn(
            f"MNIST cache {path} is damaged or not MNIST {split} ({reason}); rebuilding it",
            stacklevel=3,
        )
        return None
    return x, y


def load_mnist(split: str, data_dir: str | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Load an MNIST split: ``x`` float32 ``[N, 784]`` in [0, 1], ``y`` int32 ``[N]``.

    ``data_dir`` overrides ``TFDS_DATA_DIR``. Raises :class:`DataUnavailableError` with a fix when
    the data can be neither found nor downloaded, ``ValueError`` for an unknown split. The cache
    is per source (:func:`cache_file`); a damaged cache file is named in a warning and rebuilt.
    """
    if split not in SPLITS:
        raise ValueError(f"unknown split {split!r}; accepted: {', '.join(SPLITS)}")
    path = cache_file(split, data_dir)
    if path.is_file():
        cached = _read_cache(path, split)
        if cached is not None:
            return cached
    x, y = _from_tfds(split, data_dir)
    check_split(split, x, y)
    try:
        with atomic_path(path) as tmp:
            np.savez(tmp, x=x, y=y)
    except OSError:
        pass  # a read-only cache folder only costs speed
    return x, y


def main(argv: list[str] | None = None) -> int:
    """``python -m obd.study.data [SPLIT ...]``: load (and cache) the splits; one line on failure."""
    import sys

    splits = (sys.argv[1:] if argv is None else argv) or list(SPLITS)
    try:
        for split in splits:
            x, _ = load_mnist(split)
            print(f"MNIST {split}: {len(x)} examples ({cache_file(split)})")
    except (DataUnavailableError, ValueError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

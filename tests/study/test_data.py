import os
import time
import warnings

import numpy as np
import pytest

from obd.study import data


def _mnist_reachable() -> bool:
    root = os.environ.get("TFDS_DATA_DIR")
    return bool(root) and os.path.isdir(os.path.join(root, "mnist", data.VERSION))


needs_mnist = pytest.mark.skipif(
    not _mnist_reachable(), reason="no MNIST copy: set TFDS_DATA_DIR to a folder with mnist/3.0.1"
)


@needs_mnist
def test_load_mnist_shapes_dtypes_and_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("OBD_CACHE_DIR", str(tmp_path))
    x, y = data.load_mnist("test")
    assert x.shape == (10_000, 784) and x.dtype == np.float32
    assert y.shape == (10_000,) and y.dtype == np.int32
    assert 0.0 <= x.min() and x.max() <= 1.0 and x.max() == 1.0
    assert set(np.unique(y)) == set(range(10))
    cached = data.cache_file("test")
    assert cached.parent == tmp_path and cached.is_file()
    assert cached.stat().st_mode & 0o777 == 0o666 & ~_umask()  # readable by everyone
    x2, y2 = data.load_mnist("test")  # from the cache
    np.testing.assert_array_equal(x, x2)
    np.testing.assert_array_equal(y, y2)


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


@needs_mnist
def test_train_split_size():
    x, y = data.load_mnist("train")
    assert x.shape == (60_000, 784) and y.shape == (60_000,)


def test_unknown_split():
    with pytest.raises(ValueError, match="accepted: train, test"):
        data.load_mnist("validation")


def test_failed_download_gives_one_clear_error_and_no_debris(tmp_path, monkeypatch):
    monkeypatch.setenv("OBD_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setattr(data, "online", lambda timeout=data.PROBE_TIMEOUT: True)
    root = tmp_path / "tfds"

    def offline(*args, data_dir=None, **kwargs):
        for sub in ("downloads/extracted", "mnist/3.0.1.incomplete"):  # what TFDS leaves
            os.makedirs(os.path.join(data_dir, sub), exist_ok=True)
        raise ConnectionError("no network")

    import tensorflow_datasets as tfds

    monkeypatch.setattr(tfds, "load", offline)
    with pytest.raises(data.DataUnavailableError, match="set TFDS_DATA_DIR") as info:
        data.load_mnist("train", data_dir=str(root))
    assert "ConnectionError: no network" in str(info.value)
    assert info.value.__cause__ is None and info.value.__suppress_context__
    assert not root.exists(), "the folders the failed download created are removed"
    assert not (tmp_path / "cache").exists() or not any((tmp_path / "cache").iterdir())


def test_offline_fails_in_seconds_without_debris(tmp_path, monkeypatch):
    """A real probe: no MNIST prepared and no route to the download host (OBD_OFFLINE=1 forces
    it where the network is up) gives one error at once, and TFDS is never asked to download."""
    monkeypatch.setenv("OBD_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setenv("TFDS_DATA_DIR", str(tmp_path / "tfds"))
    monkeypatch.setenv("OBD_OFFLINE", "1")
    t0 = time.perf_counter()
    with pytest.raises(data.DataUnavailableError, match="offline: .* is unreachable") as info:
        data.load_mnist("test")
    assert time.perf_counter() - t0 < 10
    assert info.value.__suppress_context__ and str(info.value).count("\n") == 0
    assert not (tmp_path / "tfds").exists() and not (tmp_path / "cache").exists()


def test_probe_is_quick_and_honest(monkeypatch):
    monkeypatch.delenv("OBD_OFFLINE", raising=False)
    monkeypatch.setattr(data, "DOWNLOAD_HOST", ("127.0.0.1", 9))  # discard port: refused
    for var in ("HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy"):
        monkeypatch.delenv(var, raising=False)
    t0 = time.perf_counter()
    assert data.online(timeout=2.0) is False
    assert time.perf_counter() - t0 < 3
    monkeypatch.setenv("HTTPS_PROXY", "http://proxy.invalid:3128")
    assert data._probe_target() == ("proxy.invalid", 3128)


def _fake_split(n: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    x = rng.uniform(size=(n, data.PIXELS)).astype(np.float32)
    return x, (np.arange(n) % 10).astype(np.int32)


def _write(path, content: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(content)


@pytest.mark.parametrize(
    "damage",
    ["empty", "truncated", "bitflip", "garbage", "other_arrays", "wrong_count", "bad_labels",
     "pixels_0_255", "constant", "one_class"],
)  # fmt: skip
def test_damaged_cache_is_named_and_rebuilt(tmp_path, monkeypatch, damage):
    monkeypatch.setenv("OBD_CACHE_DIR", str(tmp_path))
    monkeypatch.setitem(data.SIZES, "test", 50)
    good = _fake_split(50)
    calls = []

    def from_tfds(split, data_dir):
        calls.append(split)
        return good

    monkeypatch.setattr(data, "_from_tfds", from_tfds)
    path = data.cache_file("test")
    np.savez(path, x=good[0], y=good[1])
    raw = path.read_bytes()
    if damage == "empty":
        _write(path, b"")
    elif damage == "truncated":
        _write(path, raw[: len(raw) // 2])
    elif damage == "bitflip":  # inside the array data: the zip CRC catches it
        flipped = bytearray(raw)
        flipped[len(raw) // 3] ^= 0x10
        _write(path, bytes(flipped))
    elif damage == "garbage":
        _write(path, b"PK\x03\x04 not really a zip file" * 10)
    elif damage == "other_arrays":
        np.savez(path, x=np.zeros((5, 3), np.float32), y=np.zeros(5, np.int32))
    elif damage == "wrong_count":
        np.savez(path, x=good[0][:40], y=good[1][:40])
    elif damage == "bad_labels":
        np.savez(path, x=good[0], y=good[1] + 5)
    elif damage == "pixels_0_255":
        np.savez(path, x=np.round(good[0] * 255), y=good[1])
    elif damage == "constant":
        np.savez(path, x=np.zeros_like(good[0]), y=good[1])
    elif damage == "one_class":
        np.savez(path, x=good[0], y=np.zeros_like(good[1]))
    with pytest.warns(UserWarning, match=f"MNIST cache {path}.*rebuilding"):
        x, y = data.load_mnist("test")
    assert calls == ["test"]
    np.testing.assert_array_equal(x, good[0])
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # rebuilt: the next load is clean, from the cache
        x2, _ = data.load_mnist("test")
    assert calls == ["test"]
    np.testing.assert_array_equal(x2, good[0])


def test_cache_is_keyed_by_its_source(tmp_path, monkeypatch):
    """Arrays cached from one TFDS folder are never returned for another (``data_dir=`` or
    ``TFDS_DATA_DIR``); each source is read through TFDS once, then from its own cache file,
    and the other files in the cache folder are left alone."""
    monkeypatch.setenv("OBD_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setitem(data.SIZES, "test", 20)
    calls = []

    def from_tfds(split, data_dir):
        root = str(data.tfds_root(data_dir))
        calls.append(root)
        x, y = _fake_split(20)
        return x + 0.0 if root.endswith("a") else 1.0 - x, y

    monkeypatch.setattr(data, "_from_tfds", from_tfds)
    users = {"mnist-3.0.1-test.npz": b"an older cache", "notes.txt": b"mine"}
    for name, content in users.items():
        _write(tmp_path / "cache" / name, content)
    a, b = str(tmp_path / "a"), str(tmp_path / "b")
    xa, _ = data.load_mnist("test", data_dir=a)
    xb, _ = data.load_mnist("test", data_dir=b)
    assert calls == [a, b] and not np.array_equal(xa, xb)
    np.testing.assert_array_equal(data.load_mnist("test", data_dir=a)[0], xa)
    monkeypatch.setenv("TFDS_DATA_DIR", b)
    np.testing.assert_array_equal(data.load_mnist("test")[0], xb)
    assert calls == [a, b]  # both from their caches
    assert data.cache_file("test", a) != data.cache_file("test", b) == data.cache_file("test")
    assert data.cache_file("test", a) == data.cache_file("test", f"{tmp_path}/x/../a")
    for name, content in users.items():
        assert (tmp_path / "cache" / name).read_bytes() == content

import os

import numpy as np
import pytest

from obd import data


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
    cached = tmp_path / f"mnist-{data.VERSION}-test.npz"
    assert cached.is_file()
    x2, y2 = data.load_mnist("test")  # from the cache
    np.testing.assert_array_equal(x, x2)
    np.testing.assert_array_equal(y, y2)


@needs_mnist
def test_train_split_size():
    x, y = data.load_mnist("train")
    assert x.shape == (60_000, 784) and y.shape == (60_000,)


def test_unknown_split():
    with pytest.raises(ValueError, match="accepted: train, test"):
        data.load_mnist("validation")


def test_missing_data_gives_one_clear_error(tmp_path, monkeypatch):
    monkeypatch.setenv("OBD_CACHE_DIR", str(tmp_path / "cache"))

    def offline(*args, **kwargs):
        raise ConnectionError("no network")

    import tensorflow_datasets as tfds

    monkeypatch.setattr(tfds, "load", offline)
    with pytest.raises(data.DataUnavailableError, match="set TFDS_DATA_DIR") as info:
        data.load_mnist("train", data_dir=str(tmp_path / "empty"))
    assert info.value.__cause__ is None and info.value.__suppress_context__
    assert not (tmp_path / "cache").exists() or not any((tmp_path / "cache").iterdir())

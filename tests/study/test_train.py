import jax
import numpy as np
import pytest

from obd.batches import batch_indices
from obd.mlp import accuracy, loss
from obd.study.train import TrainConfig, train

SMALL = dict(sizes=(20, 16, 16, 3), steps=300, batch_size=32, learning_rate=3e-3, chunk_steps=100)


def test_same_seed_same_params_other_seed_differs(toy_data):
    cfg = TrainConfig(seed=7, dropout_rate=0.2, **SMALL)
    p1, h1 = train(cfg, toy_data, progress=False)
    p2, h2 = train(cfg, toy_data, progress=False)
    for a, b in zip(jax.tree.leaves(p1), jax.tree.leaves(p2), strict=True):
        np.testing.assert_array_equal(a, b)
    assert h1.equals(h2)
    p3, _ = train(TrainConfig(seed=8, dropout_rate=0.2, **SMALL), toy_data, progress=False)
    assert not np.array_equal(p1[0]["kernel"], p3[0]["kernel"])


def test_short_run_lowers_loss_and_learns(toy_data):
    x, y, xt, yt = toy_data
    cfg = TrainConfig(seed=0, **SMALL)
    params, history = train(cfg, toy_data, progress=False)
    assert list(history.columns) == ["step", "train_loss", "test_loss", "test_accuracy"]
    assert history["step"].tolist() == [100, 200, 300]
    assert history["train_loss"].iloc[-1] < 0.6 * history["train_loss"].iloc[0]
    assert float(loss(params, x, y)) < 0.5
    assert float(accuracy(params, xt, yt)) > 0.8
    assert history["test_accuracy"].iloc[-1] == pytest.approx(float(accuracy(params, xt, yt)))


def test_chunking_does_not_change_result(toy_data):
    a, _ = train(TrainConfig(seed=1, **SMALL), toy_data, progress=False)
    b, _ = train(TrainConfig(seed=1, **{**SMALL, "chunk_steps": 70}), toy_data, progress=False)
    for u, v in zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True):
        np.testing.assert_allclose(u, v, rtol=1e-5, atol=1e-6)


def test_batches_are_epoch_permutations():
    idx = np.asarray(batch_indices(jax.random.key(0), 10, 7, 4))
    assert idx.shape == (7, 4)
    flat = idx.reshape(-1)
    assert sorted(flat[:10]) == list(range(10)) and sorted(flat[10:20]) == list(range(10))


@pytest.mark.parametrize(
    "bad, match",
    [
        (dict(steps=0), "steps"),
        (dict(learning_rate=0.0), "learning_rate"),
        (dict(dropout_rate=1.0), "dropout_rate"),
        (dict(loss_reduction="max"), "accepted: sum, mean"),
        (dict(activation="gelu"), "accepted"),
    ],
)
def test_bad_config_raises(bad, match):
    with pytest.raises(ValueError, match=match):
        TrainConfig(**bad)


def test_wrong_data_shape_raises(toy_data):
    x, y, xt, yt = toy_data
    with pytest.raises(ValueError, match="training data"):
        train(TrainConfig(**{**SMALL, "sizes": (21, 4, 3)}), toy_data, progress=False)

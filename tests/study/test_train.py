import jax
import jax.numpy as jnp
import numpy as np
import pytest

from obd.batches import batch_indices
from obd.mlp import accuracy, loss
from obd.retrain import iterative_prune, retrain_masked
from obd.study import convnets
from obd.study.train import TrainConfig, train
from problems import TOY_TRAIN, keep_all, mnist_like

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
        (dict(activation="swish"), "accepted"),
    ],
)
def test_bad_config_raises(bad, match):
    with pytest.raises(ValueError, match=match):
        TrainConfig(**bad)


def test_wrong_data_shape_raises(toy_data):
    x, y, xt, yt = toy_data
    with pytest.raises(ValueError, match="training data"):
        train(TrainConfig(**{**SMALL, "sizes": (21, 4, 3)}), toy_data, progress=False)


# --- bad configurations and data, divergence, low precision --------------------------------------


@pytest.mark.parametrize(
    "bad, match",
    [
        (dict(steps=2.5), r"steps must be an integer, got 2\.5 \(float\)"),
        (dict(steps="10"), r"steps must be an integer, got '10' \(str\)"),
        (dict(steps=True), r"steps must be an integer, got True \(bool\)"),
        (dict(dropout_rate="0.2"), r"dropout_rate must be a number, got '0\.2' \(str\)"),
        (dict(seed=2.7), r"seed must be an integer, got 2\.7 \(float\)"),
        (dict(seed=-1), r"seed=-1 is outside the accepted range"),
        (dict(learning_rate="1e-4"), r"learning_rate must be a number, got '1e-4' \(str\)"),
        (dict(learning_rate=float("nan")), r"learning_rate must be a finite number"),
        (dict(batch_size=64.0), r"batch_size must be an integer"),
        (dict(sizes=(20, 2.5, 3)), r"sizes entry must be an integer"),
        (dict(activation=None), r"activation must be a name"),
    ],
)
def test_wrong_types_raise_naming_parameter_and_type(bad, match):
    with pytest.raises(ValueError, match=match):
        TrainConfig(**bad)


def test_numpy_scalars_are_accepted_as_numbers():
    cfg = TrainConfig(seed=np.int64(3), steps=np.int32(10), learning_rate=np.float32(1e-3))
    assert (type(cfg.seed), type(cfg.steps), type(cfg.learning_rate)) == (int, int, float)


def test_diverging_training_stops_naming_the_step(toy_data, toy_net):
    x, y, xt, yt = toy_data
    huge = np.full_like(x, 3e38)  # finite inputs whose activations overflow: NaN at once
    with pytest.raises(ValueError, match=r"training diverged.*not finite.*at step 1;"):
        train(TrainConfig(**TOY_TRAIN), (huge, y, xt, yt), progress=False)
    with pytest.raises(ValueError, match=r"training diverged.*at step 1;"):
        retrain_masked(toy_net, keep_all(toy_net), huge, y, steps=5)
    # mid-run: step 1 is sane, its update (learning rate 1e30) makes step 2 overflow; the step is
    # named from within a chunk (chunk_steps=10) and across chunks (chunk_steps=1)
    for chunk in (10, 1):
        cfg = TrainConfig(**{**TOY_TRAIN, "learning_rate": 1e30, "chunk_steps": chunk})
        with pytest.raises(ValueError, match=r"training diverged.*at step 2; .*no checkpoint"):
            train(cfg, (x * 1e4, y, xt, yt), progress=False)
    with pytest.raises(ValueError, match=r"training diverged.*at step 2;"):
        retrain_masked(toy_net, keep_all(toy_net), x * 1e4, y, steps=5, learning_rate=1e30)


def test_float16_training_is_refused_naming_the_cause(toy_data, toy_net):
    x, y, xt, yt = toy_data
    half = jax.tree.map(lambda a: a.astype(jnp.float16), toy_net)
    msg = r"parameter \[0\]\['bias'\] is float16: training needs float32 or float64.*epsilon"
    with pytest.raises(ValueError, match=msg):
        retrain_masked(half, keep_all(toy_net), x, y, steps=5)
    with pytest.raises(ValueError, match=msg):
        iterative_prune(half, x, y, xt, yt, saliency="magnitude", schedule=[0.5], retrain_steps=5)
    for dtype in (jnp.float16, jnp.bfloat16):
        name = jnp.dtype(dtype).name
        with pytest.raises(ValueError, match=f"x is {name}: training runs in float32 or float64"):
            retrain_masked(toy_net, keep_all(toy_net), jnp.asarray(x, dtype), y, steps=5)
        with pytest.raises(ValueError, match=f"x_train is {name}"):
            train(TrainConfig(**TOY_TRAIN), (jnp.asarray(x, dtype), y, xt, yt), progress=False)
    xm, ym = mnist_like(64)
    with pytest.raises(ValueError, match="x_train is float16"):
        convnets.train_net("lenet_300_100", xm.astype(np.float16), ym, xm, ym, steps=2,
                           progress=False)  # fmt: skip

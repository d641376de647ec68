"""Retraining with a fixed mask and iterative pruning on Flax NNX models."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import nnx
from jax.flatten_util import ravel_pytree

from obd import nets, retrain
from obd.prune import masks
from obd.saliency import saliency


def _images(n=300, seed=0):
    """A learnable 3-class problem on 6x6 images: the class is the brightest third of the image."""
    rng = np.random.default_rng(seed)
    x = rng.uniform(size=(n, 6, 6, 1)).astype(np.float32)
    y = np.stack(
        [x[:, :, :2].sum((1, 2, 3)), x[:, :, 2:4].sum((1, 2, 3)), x[:, :, 4:].sum((1, 2, 3))], 1
    )
    return x, y.argmax(1).astype(np.int32)


def _convnet(seed=0):
    rngs = nnx.Rngs(seed)
    return nnx.Sequential(
        nnx.Conv(1, 4, (3, 3), padding="SAME", rngs=rngs),
        jax.nn.relu,
        nets.avg_pool(2),
        nets.flatten,
        nnx.Linear(36, 3, rngs=rngs),
    )


def _flat(model):
    return np.asarray(ravel_pytree(nnx.state(model, nnx.Param))[0])


def test_nnx_mlp_retrains_exactly_like_the_plain_pytree():
    x, y = _images()
    x = x.reshape(len(x), -1)
    model = nets.mlp((36, 8, 3), rngs=nnx.Rngs(1))
    params = [{"kernel": m.kernel[...], "bias": m.bias[...]} for m in model.layers[::2]]
    keep = masks(saliency("random", params, key=2), 0.4, scope="layerwise")
    keep_state = masks(saliency("random", model, key=2), 0.4, scope="layerwise")
    plain = retrain.retrain_masked(params, keep, x, y, steps=300, learning_rate=1e-2, seed=3)
    trained = retrain.retrain_masked(model, keep_state, x, y, steps=300, learning_rate=1e-2, seed=3)
    np.testing.assert_allclose(_flat(trained), ravel_pytree(plain)[0], rtol=1e-5, atol=1e-6)


def test_masked_convnet_training_keeps_zeros_and_learns():
    x, y = _images()
    model = _convnet()
    before = _flat(model)
    keep = masks(saliency("magnitude", model), 0.5, scope="layerwise")
    trained, loss = retrain.retrain_masked(
        model, keep, x, y, steps=600, learning_rate=1e-2, loss_reduction="mean", return_loss=True
    )
    np.testing.assert_array_equal(_flat(model), before)  # the input model is left unchanged
    w = np.asarray(trained.layers[0].kernel[...])
    assert np.all(w[~np.asarray(keep["layers"][0]["kernel"])] == 0)
    assert np.count_nonzero(w) > 0
    acc = float((trained(jnp.asarray(x)).argmax(-1) == y).mean())
    assert acc > 0.8 and loss < 0.6
    ce = float(optax.softmax_cross_entropy_with_integer_labels(trained(jnp.asarray(x)), y).mean())
    assert ce / 3 < loss < 3 * ce + 0.05  # the per-example mean, not divided by the batch again
    with pytest.raises(ValueError, match="dropout_rate applies to the plain MLP only"):
        retrain.retrain_masked(model, keep, x, y, steps=1, dropout_rate=0.2)
    with pytest.raises(ValueError, match=r"x must be images \[N, height, width, 1\]"):
        retrain.retrain_masked(model, keep, x.reshape(len(x), -1), y, steps=1)


def test_iterative_pruning_of_a_convnet():
    x, y = _images(400)
    model = retrain.retrain_masked(
        _convnet(), masks(saliency("magnitude", _convnet()), 0.0), x, y, steps=600,
        learning_rate=1e-2, loss_reduction="mean",
    )  # fmt: skip
    table, final = retrain.iterative_prune(
        model, x[:300], y[:300], x[300:], y[300:], schedule=[0.5, 0.75], retrain_steps=200,
        learning_rate=3e-3, return_params=True,
    )  # fmt: skip
    n_kernel = 4 * 9 + 36 * 3
    assert table["round"].tolist() == [0, 1, 2]
    assert table["n_pruned"].tolist() == [0, round(0.5 * n_kernel), round(0.75 * n_kernel)]
    kernels = [np.asarray(final.layers[i].kernel[...]) for i in (0, 4)]
    assert sum(int((k == 0).sum()) for k in kernels) == table["n_pruned"].iloc[-1]
    assert table["accuracy"].iloc[-1] > 0.6

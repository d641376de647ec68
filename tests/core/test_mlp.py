import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from obd import mlp, network

BLOG = (784, 50, 50, 50, 50, 10)


def test_init_mlp_shapes_and_the_blogs_architecture():
    params = mlp.init_mlp(jax.random.key(0), BLOG)
    assert mlp.layer_sizes(params) == (784, 50, 50, 50, 50, 10)
    assert [p["kernel"].shape for p in params] == [
        (784, 50),
        (50, 50),
        (50, 50),
        (50, 50),
        (50, 10),
    ]
    assert all(np.all(p["bias"] == 0) for p in params)
    again = mlp.init_mlp(jax.random.key(0), BLOG)
    other = mlp.init_mlp(jax.random.key(1), BLOG)
    assert np.array_equal(params[0]["kernel"], again[0]["kernel"])
    assert not np.array_equal(params[0]["kernel"], other[0]["kernel"])


def test_nnx_module_matches_pure_function():
    params = mlp.init_mlp(jax.random.key(3), (12, 7, 5, 4))
    params = jax.tree.map(lambda a: a + 0.1, params)  # non-zero biases
    module = mlp.module_from_params(params, activation="tanh")
    x = np.random.default_rng(0).normal(size=(9, 12)).astype(np.float32)
    np.testing.assert_allclose(module(x), mlp.apply_mlp(params, x, activation="tanh"), rtol=1e-6)
    back = mlp.params_from_module(module)
    for a, b in zip(jax.tree.leaves(back), jax.tree.leaves(params), strict=True):
        np.testing.assert_array_equal(a, b)


def test_dropout_only_with_key_and_rescales():
    params = mlp.init_mlp(jax.random.key(0), (30, 40, 3))
    x = np.ones((5, 30), np.float32)
    plain = mlp.apply_mlp(params, x, dropout_rate=0.5)
    np.testing.assert_array_equal(plain, mlp.apply_mlp(params, x))
    dropped = mlp.apply_mlp(params, x, dropout_rate=0.5, key=jax.random.key(1))
    assert not np.allclose(dropped, plain)
    # inverted dropout keeps the expected hidden activation: average over many keys
    keys = jax.random.split(jax.random.key(2), 4000)
    mean = jax.vmap(lambda k: mlp.apply_mlp(params, x, dropout_rate=0.5, key=k))(keys).mean(0)
    np.testing.assert_allclose(mean, plain, atol=0.05)


def test_loss_is_mean_cross_entropy():
    params = mlp.init_mlp(jax.random.key(0), (6, 4, 3))
    x = np.random.default_rng(1).normal(size=(8, 6)).astype(np.float32)
    y = np.arange(8) % 3
    logits = np.asarray(mlp.apply_mlp(params, x), np.float64)
    logp = logits - np.log(np.exp(logits).sum(-1, keepdims=True))
    np.testing.assert_allclose(mlp.loss(params, x, y), -logp[np.arange(8), y].mean(), rtol=1e-5)
    assert float(mlp.accuracy(params, x, y)) == np.mean(logits.argmax(-1) == y)


def test_bad_structures_and_names_raise():
    with pytest.raises(
        ValueError, match="accepted: gelu, identity, leaky_relu, relu, sigmoid, softplus, tanh"
    ):
        network.activation_fn("swish")
    bad = [
        {"kernel": jnp.zeros((3, 4)), "bias": jnp.zeros(4)},
        {"kernel": jnp.zeros((5, 2)), "bias": jnp.zeros(2)},
    ]
    with pytest.raises(ValueError, match="input width 5"):
        mlp.layer_sizes(bad)
    with pytest.raises(ValueError, match="sizes"):
        mlp.init_mlp(jax.random.key(0), (784,))


def test_optax_matches_reference_loss():
    params = mlp.init_mlp(jax.random.key(0), (6, 5, 3))
    x = np.random.default_rng(2).normal(size=(4, 6)).astype(np.float32)
    y = np.array([0, 1, 2, 1])
    ce = optax.softmax_cross_entropy_with_integer_labels(mlp.apply_mlp(params, x), y).mean()
    assert float(ce) == pytest.approx(float(mlp.loss(params, x, y)))

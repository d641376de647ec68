import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from obd import model


def test_init_mlp_shapes_and_seed_architecture():
    params = model.init_mlp(jax.random.key(0))
    assert model.layer_sizes(params) == (784, 50, 50, 50, 50, 10)
    assert [p["kernel"].shape for p in params] == [
        (784, 50),
        (50, 50),
        (50, 50),
        (50, 50),
        (50, 10),
    ]
    assert all(np.all(p["bias"] == 0) for p in params)
    again = model.init_mlp(jax.random.key(0))
    other = model.init_mlp(jax.random.key(1))
    assert np.array_equal(params[0]["kernel"], again[0]["kernel"])
    assert not np.array_equal(params[0]["kernel"], other[0]["kernel"])


def test_nnx_module_matches_pure_function():
    params = model.init_mlp(jax.random.key(3), (12, 7, 5, 4))
    params = jax.tree.map(lambda a: a + 0.1, params)  # non-zero biases
    module = model.module_from_params(params, activation="tanh")
    x = np.random.default_rng(0).normal(size=(9, 12)).astype(np.float32)
    np.testing.assert_allclose(module(x), model.apply_mlp(params, x, activation="tanh"), rtol=1e-6)
    back = model.params_from_module(module)
    for a, b in zip(jax.tree.leaves(back), jax.tree.leaves(params), strict=True):
        np.testing.assert_array_equal(a, b)


def test_dropout_only_with_key_and_rescales():
    params = model.init_mlp(jax.random.key(0), (30, 40, 3))
    x = np.ones((5, 30), np.float32)
    plain = model.apply_mlp(params, x, dropout_rate=0.5)
    np.testing.assert_array_equal(plain, model.apply_mlp(params, x))
    dropped = model.apply_mlp(params, x, dropout_rate=0.5, key=jax.random.key(1))
    assert not np.allclose(dropped, plain)
    # inverted dropout keeps the expected hidden activation: average over many keys
    keys = jax.random.split(jax.random.key(2), 4000)
    mean = jax.vmap(lambda k: model.apply_mlp(params, x, dropout_rate=0.5, key=k))(keys).mean(0)
    np.testing.assert_allclose(mean, plain, atol=0.05)


def test_loss_is_mean_cross_entropy():
    params = model.init_mlp(jax.random.key(0), (6, 4, 3))
    x = np.random.default_rng(1).normal(size=(8, 6)).astype(np.float32)
    y = np.arange(8) % 3
    logits = np.asarray(model.apply_mlp(params, x), np.float64)
    logp = logits - np.log(np.exp(logits).sum(-1, keepdims=True))
    np.testing.assert_allclose(model.loss(params, x, y), -logp[np.arange(8), y].mean(), rtol=1e-5)
    assert float(model.accuracy(params, x, y)) == np.mean(logits.argmax(-1) == y)


def test_save_load_roundtrip(tmp_path):
    params = model.init_mlp(jax.random.key(0), (5, 4, 2))
    meta = {"seed": 3, "config": {"steps": 10}, "test_accuracy": 0.5}
    path = tmp_path / "m.npz"
    model.save_params(path, params, meta)
    loaded, meta2 = model.load_params(path)
    assert meta2 == meta
    for a, b in zip(jax.tree.leaves(loaded), jax.tree.leaves(params), strict=True):
        np.testing.assert_array_equal(a, b)
    assert [p.name for p in tmp_path.iterdir()] == ["m.npz"]  # no temporary files left behind


def test_load_rejects_non_checkpoints(tmp_path):
    with pytest.raises(ValueError, match="does not exist"):
        model.load_params(tmp_path / "missing.npz")
    (tmp_path / "junk.npz").write_text("not a zip")
    with pytest.raises(ValueError, match="not an .npz checkpoint"):
        model.load_params(tmp_path / "junk.npz")
    np.savez(tmp_path / "plain.npz", a=np.zeros(3))
    with pytest.raises(ValueError, match="not a checkpoint"):
        model.load_params(tmp_path / "plain.npz")


def test_bad_structures_and_names_raise():
    with pytest.raises(ValueError, match="accepted: identity, leaky_relu, relu"):
        model.activation_fn("swish")
    bad = [
        {"kernel": jnp.zeros((3, 4)), "bias": jnp.zeros(4)},
        {"kernel": jnp.zeros((5, 2)), "bias": jnp.zeros(2)},
    ]
    with pytest.raises(ValueError, match="input width 5"):
        model.layer_sizes(bad)
    with pytest.raises(ValueError, match="sizes"):
        model.init_mlp(jax.random.key(0), (784,))


def test_optax_matches_reference_loss():
    params = model.init_mlp(jax.random.key(0), (6, 5, 3))
    x = np.random.default_rng(2).normal(size=(4, 6)).astype(np.float32)
    y = np.array([0, 1, 2, 1])
    ce = optax.softmax_cross_entropy_with_integer_labels(model.apply_mlp(params, x), y).mean()
    assert float(ce) == pytest.approx(float(model.loss(params, x, y)))

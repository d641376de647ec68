"""obd.study.convnets (the convnet study's networks: build, train, save, load) and cosine retraining."""

import jax
import numpy as np
import optax
import pytest
from flax import nnx
from jax.flatten_util import ravel_pytree

from obd import nets, prune, retrain
from obd.network import as_network, to_params
from obd.prune import masks
from obd.saliencies import saliency
from obd.study import convnets
from problems import mnist_like


def _mnist_like(n=600, seed=0):
    """A learnable 10-class problem on 784-pixel rows: the class is the brightest of 10 bands."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 10, n).astype(np.int32)
    x = rng.uniform(0, 0.3, size=(n, 28, 28)).astype(np.float32)
    for i, c in enumerate(y):
        x[i, :, 2 * c + 4 : 2 * c + 6] += 0.7
    return x.reshape(n, 784), y


def _flat(model):
    return np.asarray(ravel_pytree(nnx.state(model, nnx.Param))[0])


def test_architectures_and_their_inputs():
    assert nets.n_params(convnets.build("lenet_300_100")) == 266_610
    assert nets.n_params(convnets.build("lenet5")) == 431_080
    assert convnets.layer_kinds("lenet5") == ("conv", "conv", "dense", "dense")
    assert convnets.layer_kinds("lenet_300_100") == ("dense",) * 3
    assert all(len(convnets.LAYER_NAMES[a]) == len(convnets.layer_kinds(a)) for a in convnets.ARCHS)
    x, _ = _mnist_like(3)
    assert convnets.inputs("lenet5", x).shape == (3, 28, 28, 1)
    assert convnets.inputs("lenet_300_100", x).shape == (3, 784)
    # different seeds, different initial weights; the same seed, the same
    np.testing.assert_array_equal(
        _flat(convnets.build("lenet5", 1)), _flat(convnets.build("lenet5", 1))
    )
    assert not np.array_equal(
        _flat(convnets.build("lenet5", 1)), _flat(convnets.build("lenet5", 2))
    )
    for bad in ("lenet", None, "LeNet5"):
        with pytest.raises(ValueError, match="unknown arch .* accepted: lenet_300_100, lenet5"):
            convnets.build(bad)
    with pytest.raises(ValueError, match="seed"):
        convnets.build("lenet5", -1)


@pytest.mark.parametrize("arch", ["lenet_300_100", "lenet5"])
def test_training_learns_and_is_deterministic(arch):
    x, y = _mnist_like()
    kw = dict(seed=3, steps=60, chunk_steps=25, progress=False)
    model, history = convnets.train_net(arch, x, y, x[:200], y[:200], **kw)
    again, _ = convnets.train_net(arch, x, y, x[:200], y[:200], **kw)
    np.testing.assert_array_equal(_flat(model), _flat(again))
    assert list(history.step) == [25, 50, 60]
    np.testing.assert_allclose(history.epoch, np.array([25, 50, 60]) * 64 / 600)
    assert history.test_accuracy.iloc[-1] > 0.5  # chance is 0.1
    acc, ce = convnets.evaluate(model, convnets.inputs(arch, x[:200]), y[:200], batch=64)
    assert acc == pytest.approx(history.test_accuracy.iloc[-1], abs=1e-6)
    assert ce == pytest.approx(history.test_loss.iloc[-1], rel=1e-5)


def test_training_refuses_bad_data_and_settings():
    x, y = _mnist_like(50)
    bad_x = x.copy()
    bad_x[3, 10] = np.nan
    with pytest.raises(ValueError, match="x_train .*NaN"):
        convnets.train_net("lenet_300_100", bad_x, y, x, y, steps=2, progress=False)
    bad_y = y.copy()
    bad_y[0] = 10
    with pytest.raises(ValueError, match="y_test"):
        convnets.train_net("lenet_300_100", x, y, x, bad_y, steps=2, progress=False)
    with pytest.raises(ValueError, match="must be"):
        convnets.train_net("lenet5", x[:, :700], y, x, y, steps=2, progress=False)
    for name, value in (("steps", 0), ("learning_rate", 0.0), ("batch_size", 1.5)):
        with pytest.raises(ValueError, match=name):
            convnets.train_net("lenet_300_100", x, y, x, y, progress=False, **{name: value})


def test_checkpoints_round_trip_and_refuse_other_files(tmp_path):
    model = convnets.build("lenet5", 4)
    path = tmp_path / "m.npz"
    convnets.save_net(path, model, {"arch": "lenet5", "seed": 4})
    loaded, meta = convnets.load_net(path)
    assert meta == {"arch": "lenet5", "seed": 4}
    np.testing.assert_array_equal(_flat(loaded), _flat(model))
    x = convnets.inputs("lenet5", _mnist_like(4)[0])
    np.testing.assert_array_equal(loaded(x), model(x))
    with pytest.raises(ValueError, match="arch"):
        convnets.save_net(tmp_path / "n.npz", model, {"seed": 4})
    with pytest.raises(ValueError, match="does not exist"):
        convnets.load_net(tmp_path / "missing.npz")
    (tmp_path / "junk.npz").write_bytes(b"not a zip")
    with pytest.raises(ValueError, match="not a checkpoint"):
        convnets.load_net(tmp_path / "junk.npz")
    # a LeNet-300-100 checkpoint relabelled as LeNet-5 does not fit
    other = tmp_path / "other.npz"
    convnets.save_net(other, convnets.build("lenet_300_100"), {"arch": "lenet_300_100"})
    data = dict(np.load(other))
    data["__meta__"] = np.array('{"arch": "lenet5"}')
    np.savez(tmp_path / "relabelled.npz", **data)
    with pytest.raises(ValueError, match="does not hold lenet5's layer0/kernel"):
        convnets.load_net(tmp_path / "relabelled.npz")


def test_cosine_retraining_equals_a_plain_optax_loop():
    """``lr_schedule="cosine"``: masked Adam with the learning rate decayed to 0 over the steps,
    against a step-by-step loop written directly with optax."""
    x, y = _mnist_like(200)
    model = nets.mlp((784, 16, 10), rngs=nnx.Rngs(0))
    keep = masks(saliency("magnitude", model), 0.5, scope="global")
    steps, lr = 12, 3e-3
    got = retrain.retrain_masked(
        model, keep, x, y, steps=steps, learning_rate=lr, seed=5, chunk_steps=5,
        loss_reduction="mean", lr_schedule="cosine",
    )  # fmt: skip
    net, params, _ = as_network(model)
    k = to_params(model, keep, "masks")
    params = jax.tree.map(lambda p, m: np.where(m, p, 0), params, k)
    opt = optax.adam(optax.cosine_decay_schedule(lr, steps))
    state = opt.init(params)
    idx = retrain.batch_indices(jax.random.split(jax.random.key(5))[0], len(x), steps, 64)

    def loss(p, xb, yb):
        logits = net.apply(p, xb)
        return optax.softmax_cross_entropy_with_integer_labels(logits, yb).mean()

    grad = jax.jit(jax.grad(loss))  # one compilation for the 12 steps
    for t in range(steps):
        i = np.asarray(idx[t])
        g = jax.tree.map(lambda a, m: np.where(m, a, 0), grad(params, x[i], y[i]), k)
        u, state = opt.update(g, state, params)
        u = jax.tree.map(lambda a, m: np.where(m, a, 0), u, k)
        params = jax.tree.map(lambda p, m: np.where(m, p, 0), optax.apply_updates(params, u), k)
    np.testing.assert_allclose(_flat(got), ravel_pytree(params)[0], rtol=2e-5, atol=1e-6)
    constant = retrain.retrain_masked(model, keep, x, y, steps=steps, learning_rate=lr, seed=5,
                                      loss_reduction="mean")  # fmt: skip
    assert not np.allclose(_flat(constant), _flat(got))
    with pytest.raises(ValueError, match="lr_schedule 'linear' unknown; accepted: constant, cos"):
        retrain.retrain_masked(model, keep, x, y, steps=2, lr_schedule="linear")
    with pytest.raises(ValueError, match="lr_schedule"):
        retrain.iterative_prune(model, x, y, x, y, saliency="magnitude", lr_schedule="step")


def test_predict_equals_apply_on_lenet5():
    """Evaluation's ``Network.predict`` (lax convolutions) gives ``apply``'s logits (im2col)."""
    net, params, _ = as_network(convnets.build("lenet5", seed=3))
    x = np.random.default_rng(0).uniform(size=(5, 28, 28, 1)).astype(np.float32)
    np.testing.assert_allclose(net.predict(params, x), net.apply(params, x), rtol=1e-4, atol=1e-5)


# --- checkpoints and pixel ranges ----------------------------------------------------------------


def test_convnet_checkpoint_whose_meta_is_not_an_object(tmp_path):
    convnets.save_net(
        tmp_path / "c.npz", convnets.build("lenet_300_100"), {"arch": "lenet_300_100"}
    )
    with np.load(tmp_path / "c.npz") as f:
        arrays = dict(f)
    for meta in ('["lenet_300_100"]', '{"seed": 0}'):
        arrays["__meta__"] = np.array(meta)
        np.savez(tmp_path / "odd.npz", **arrays)
        with pytest.raises(ValueError, match=r"odd\.npz.*must be a JSON object naming the 'arch'"):
            convnets.load_net(tmp_path / "odd.npz")


def test_mnist_entry_points_refuse_pixels_in_0_255(toy_data, toy_net):
    x, y = mnist_like(64)
    raw = np.round(x * 255).astype(np.float32)
    msg = (
        r"x_train has \d+ value\(s\) outside \[0, 1\] \(it ranges over \[0.0, 255.0\]\); "
        r"expected MNIST pixels in \[0, 1\] \(0-255 pixels\? divide by 255\)"
    )
    with pytest.raises(ValueError, match=msg):
        convnets.train_net("lenet_300_100", raw, y, x, y, steps=2, progress=False)
    with pytest.raises(ValueError, match=msg.replace("x_train", "x")):
        convnets.inputs("lenet5", raw)
    negative = x.copy()
    negative[3, 7] = -0.5
    with pytest.raises(
        ValueError,
        match=r"x has 1 value\(s\) outside \[0, 1\] \(it ranges over \[-0\.5, [0-9.]+\]\)",
    ):
        convnets.inputs("lenet_300_100", negative)
    # general-purpose functions take other ranges (no pixel range is assumed there)
    xt, yt = toy_data[2:]
    table = prune.sweep(toy_net, saliency("magnitude", toy_net), [0.0], xt * 255, yt)
    assert np.isfinite(table["loss"]).all()


def _lenet300(seed=0):
    return convnets.ARCHS["lenet_300_100"](nnx.Rngs(seed))


def test_evaluate_refuses_0_255_pixels_bad_batches_and_names_the_range_found():
    x, y = mnist_like(32)
    model = _lenet300()
    with pytest.raises(ValueError, match=r"divide by 255"):
        convnets.evaluate(model, np.round(x * 255).astype(np.float32), y)
    for batch in (-5, 0, 2.5, "10", True):
        with pytest.raises(ValueError, match=r"batch(=-5| must be|=0)"):
            convnets.evaluate(model, x, y, batch=batch)
    nudged = x.copy()
    nudged[0, 0] = np.float32(1.0000001)  # the next float32 above 1
    with pytest.raises(ValueError, match=r"x has 1 value\(s\) outside \[0, 1\]") as err:
        convnets.evaluate(model, nudged, y)
    assert "1.0000001" in str(err.value) and "divide by 255" not in str(err.value)
    acc, loss = convnets.evaluate(model, x, y, batch=7)  # valid input: a number as before
    assert 0 <= acc <= 1 and np.isfinite(loss)


def test_evaluate_refuses_a_nan_weight_naming_the_tensor():
    x, y = mnist_like(32)
    model = _lenet300()
    k = model.layers[2].kernel
    k.value = k.value.at[3, 4].set(np.nan)
    with pytest.raises(ValueError, match=r"parameter params\[1\]\['kernel'\] holds 1 non-finite"):
        convnets.evaluate(model, x, y)


def test_save_net_refuses_a_model_of_another_arch(tmp_path):
    with pytest.raises(ValueError, match="the model is not a lenet5"):
        convnets.save_net(tmp_path / "m.npz", _lenet300(), {"arch": "lenet5"})
    assert not (tmp_path / "m.npz").exists()
    convnets.save_net(tmp_path / "m.npz", _lenet300(), {"arch": "lenet_300_100"})
    assert convnets.load_net(tmp_path / "m.npz")[1]["arch"] == "lenet_300_100"


def test_train_net_with_a_huge_learning_rate_is_diverged():
    x, y = mnist_like(64)
    with pytest.raises(ValueError, match="training diverged"):
        convnets.train_net("lenet_300_100", x, y, x, y, steps=20, chunk_steps=10,
                           learning_rate=1e9, progress=False)  # fmt: skip

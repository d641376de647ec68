"""Layer-wise OBS on NNX models (obd.obs.conv): convolutions unrolled into OBS problems."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from obd import nets
from obd.mlp import init_mlp
from obd.network import as_network
from obd.obs import obs_sweep
from obd.obs.conv import design_matrices, obs_sweep_model


def _convnet(seed=0):
    rngs = nnx.Rngs(seed)
    return nnx.Sequential(
        nnx.Conv(1, 4, (3, 3), strides=2, padding="SAME", rngs=rngs),
        jax.nn.relu,
        nnx.Conv(4, 3, (2, 2), padding="VALID", rngs=rngs),
        jax.nn.relu,
        nets.flatten,
        nnx.Linear(3 * 3 * 3, 3, rngs=rngs),
    )


def _images(n=200, seed=1):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, 8, 8, 1))
    x = np.cumsum(np.cumsum(x, 1), 2) / 4  # neighbouring pixels correlate, as in images
    return x.astype(np.float32), rng.integers(0, 3, n).astype(np.int32)


def test_design_matrices_reproduce_each_layer():
    model = _convnet()
    net, params, _ = as_network(model)
    x, _ = _images(5)
    rows = design_matrices(net, params, jnp.asarray(x))
    h = jnp.asarray(x)
    for op in net.ops:
        if hasattr(op, "slot"):
            kernel = params[op.slot]["kernel"]
            z = rows[op.slot] @ kernel.reshape(-1, kernel.shape[-1]) + params[op.slot]["bias"]
            want = net.apply_op(op, params, h)
            np.testing.assert_allclose(z, want.reshape(-1, want.shape[-1]), rtol=1e-5, atol=1e-5)
        h = net.apply_op(op, params, h)


def test_plain_mlp_matches_obd_obs():
    rng = np.random.default_rng(0)
    params = init_mlp(jax.random.key(0), (12, 7, 5, 3))
    x = rng.normal(size=(300, 12)).astype(np.float32)
    y = rng.integers(0, 3, 300).astype(np.int32)
    fractions = [0.0, 0.3, 0.6, 0.9]
    want = obs_sweep(params, x[:200], fractions, x[200:], y[200:])
    got = obs_sweep_model(params, x[:200], fractions, x[200:], y[200:])
    np.testing.assert_array_equal(got["n_pruned"], want["n_pruned"])
    np.testing.assert_allclose(got["accuracy"], want["accuracy"], atol=1e-6)
    np.testing.assert_allclose(got["loss"], want["loss"], rtol=1e-4)


def test_conv_obs_keeps_the_layer_output_better_than_magnitude():
    model = _convnet(seed=3)
    net, params, _ = as_network(model)
    x, y = _images()
    table = obs_sweep_model(model, x, [0.0, 0.5], x, y)
    logits = model(jnp.asarray(x))
    assert table["accuracy"].iloc[0] == pytest.approx(float((logits.argmax(-1) == y).mean()))
    n_kernel = sum(p["kernel"].size for p in params)
    assert table["n_pruned"].iloc[1] == sum(
        int(np.floor(0.5 * p["kernel"].size + 0.5)) for p in params
    )
    assert table["pruned_fraction"].iloc[1] == pytest.approx(table["n_pruned"].iloc[1] / n_kernel)
    # the first conv layer, pruned to 50% by OBS (with its update) vs by |w|: output error
    rows = design_matrices(net, params, jnp.asarray(x))[0]
    w = np.asarray(params[0]["kernel"]).reshape(-1, 4)
    from obd.obs import allocate, obs_layer_trace

    trace = obs_layer_trace(w, rows, damping=0.0 + 1e-6)
    counts = allocate(trace.increments, w.size // 2)
    w_obs = np.stack([trace.weights[o, counts[o]] for o in range(4)], 1)
    w_mag = np.where(np.abs(w) >= np.median(np.abs(w)), w, 0)
    err = [float(np.mean((np.asarray(rows) @ (w - v)) ** 2)) for v in (w_obs, w_mag)]
    assert (w_obs == 0).sum() == w.size // 2
    assert err[0] < 0.5 * err[1]  # the update compensates: here ~7x less error

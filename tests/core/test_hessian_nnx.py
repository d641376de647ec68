"""obd.hessian on Flax NNX networks (convolutions, pooling, smooth activations) against the dense
``jax.hessian`` of the loss over the flattened ``nnx.split`` state, in float64."""

import os
import subprocess
import sys
import textwrap

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import nnx
from jax.flatten_util import ravel_pytree

from obd import mlp as mlp_model
from obd import nets
from obd.hessian import hessian_diag, hvp
from obd.study import architectures

F64 = {"param_dtype": jnp.float64}


@pytest.fixture(autouse=True)
def x64():
    with jax.enable_x64(True):
        yield


def _dense(model, x, y):
    """Dense Hessian of the mean cross-entropy over the flattened parameter state."""
    graphdef, state = nnx.split(model, nnx.Param)
    flat, unravel = ravel_pytree(state)

    def loss(f):
        logits = nnx.merge(graphdef, unravel(f))(x)
        return optax.softmax_cross_entropy_with_integer_labels(logits, y).mean()

    return np.asarray(jax.jit(jax.hessian(loss))(flat))


def _flat(state):
    return np.asarray(ravel_pytree(state)[0])


def _close(got, want, rtol=1e-6):
    assert np.abs(want).max() > 1e-4  # a non-trivial Hessian
    np.testing.assert_allclose(_flat(got), want, rtol=rtol, atol=rtol * np.abs(want).max())


def _convnet(
    act, pool, *, stride=1, padding="SAME", bias=True, cin=2, classes=4, seed=0, hw=(9, 7)
):
    rngs = nnx.Rngs(seed)
    head = nnx.Sequential(
        nnx.Conv(cin, 3, (3, 2), strides=stride, padding=padding, use_bias=bias, rngs=rngs, **F64),
        act,
        pool,
        nnx.Conv(3, 2, (2, 2), padding="VALID", use_bias=not bias, rngs=rngs, **F64),
        act,
        nets.flatten,
    )
    width = int(np.prod(jax.eval_shape(head, jnp.zeros((1, *hw, cin))).shape[1:]))
    return nnx.Sequential(
        *head.layers,
        nnx.Linear(width, 5, rngs=rngs, **F64),
        act,
        nnx.Linear(5, classes, use_bias=bias, rngs=rngs, **F64),
    )


def _data(n, shape=(9, 7, 2), classes=4, seed=1):
    rng = np.random.default_rng(seed)
    x = jnp.asarray(rng.normal(size=(n, *shape)))
    return x, jnp.asarray(rng.integers(0, classes, n), jnp.int32)


ACTS = {
    "relu": jax.nn.relu,
    "leaky_relu": jax.nn.leaky_relu,
    "tanh": jnp.tanh,
    "sigmoid": jax.nn.sigmoid,
    "softplus": jax.nn.softplus,
    "gelu": jax.nn.gelu,
}
# (stride, padding, pooling, bias, examples, batch_size): strides 1 and 2, SAME and VALID, max and
# average pooling (overlapping too), with and without bias, one example, chunks that do not divide N
CONFIGS = [
    (1, "SAME", ("max", 2, None), True, 7, 3),
    (2, "VALID", ("avg", 2, 1), False, 1, 4),
    (2, "SAME", ("avg", (2, 2), None), True, 5, 2),
    (1, "VALID", ("max", (2, 1), (1, 1)), False, 9, 4),
]


# every configuration with a piecewise-linear and with a smooth activation
CASES = [
    ("relu", CONFIGS[0]),
    ("relu", CONFIGS[1]),
    ("leaky_relu", CONFIGS[2]),
    ("leaky_relu", CONFIGS[3]),
    ("tanh", CONFIGS[0]),
    ("sigmoid", CONFIGS[1]),
    ("softplus", CONFIGS[2]),
    ("gelu", CONFIGS[3]),
]


@pytest.mark.parametrize(
    ("act", "config"), CASES, ids=[f"{a}-s{c[0]}-{c[1]}-{c[2][0]}-b{c[3]}" for a, c in CASES]
)
def test_convnets_match_dense_hessian(act, config):
    stride, padding, (kind, window, strides), bias, n, batch_size = config
    pool = (nets.max_pool if kind == "max" else nets.avg_pool)(window, strides)
    model = _convnet(ACTS[act], pool, stride=stride, padding=padding, bias=bias)
    x, y = _data(n)
    got = hessian_diag(model, x, y, batch_size=batch_size)
    assert isinstance(got, nnx.State)
    assert jax.tree.structure(got) == jax.tree.structure(nnx.state(model, nnx.Param))
    assert all(a.dtype == jnp.float64 for a in jax.tree.leaves(got))
    _close(got, np.diagonal(_dense(model, x, y)))


@pytest.mark.parametrize("act", ["relu", "tanh"])
@pytest.mark.parametrize("kind", ["max", "avg"])
def test_tiling_pools_match_dense_hessian(act, kind):
    """Pools whose windows tile the input (LeNet's 2x2) take the reshape path of ``Pool``."""
    pool = (nets.max_pool if kind == "max" else nets.avg_pool)(2)
    model = _convnet(ACTS[act], pool, hw=(8, 6))
    x, y = _data(5, shape=(8, 6, 2))
    _close(hessian_diag(model, x, y, batch_size=2), np.diagonal(_dense(model, x, y)))


@pytest.mark.parametrize(
    ("hw", "kernel", "stride", "padding"),
    [((9, 7), (3, 2), 1, "SAME"), ((9, 7), (3, 3), 2, "SAME"), ((8, 6), (5, 5), 1, "VALID"),
     ((11, 10), (2, 3), (3, 2), "VALID"), ((4, 4), (4, 4), 1, "SAME")],
)  # fmt: skip
def test_conv_and_pool_ops_equal_lax(hw, kernel, stride, padding):
    """The im2col convolution of ``obd.network.Conv`` (and ``Network.predict``'s) equals
    ``lax.conv_general_dilated`` (as ``nnx.Conv`` computes it), and the tiling pools equal
    ``nnx.max_pool``/``avg_pool``."""
    from obd.network import as_network

    conv = nnx.Conv(2, 3, kernel, strides=stride, padding=padding, rngs=nnx.Rngs(0), **F64)
    x, _ = _data(3, shape=(*hw, 2))
    net, params, _ = as_network(nnx.Sequential(conv))
    np.testing.assert_allclose(net.apply(params, x), conv(x), rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(net.predict(params, x), conv(x), rtol=1e-12, atol=1e-12)
    h = x[:, : hw[0] // 2 * 2, : hw[1] // 2 * 2]
    window = {"window_shape": (2, 2), "strides": (2, 2), "padding": "VALID"}
    np.testing.assert_array_equal(nets.max_pool(2)(h), nnx.max_pool(h, **window))
    np.testing.assert_allclose(nets.avg_pool(2)(h), nnx.avg_pool(h, **window), rtol=1e-14)


def test_issue_example_and_other_methods():
    """The contract's example network; "bruteforce" and "hutchinson" take NNX models too."""
    rngs = nnx.Rngs(0)
    model = nnx.Sequential(
        nnx.Conv(1, 4, kernel_size=(3, 3), strides=(2, 2), padding="SAME", rngs=rngs, **F64),
        jax.nn.relu,
        nets.max_pool((2, 2)),
        nets.flatten,
        nnx.Linear(4 * 3 * 3, 10, rngs=nnx.Rngs(1), **F64),
    )
    x, y = _data(6, shape=(12, 12, 1), classes=10)
    dense = _dense(model, x, y)
    want = np.diagonal(dense)
    _close(hessian_diag(model, x, y), want)
    _close(hessian_diag(model, x, y, method="fast"), want)
    _close(hessian_diag(model, x, y, method="bruteforce", batch_size=4), want)
    est = hessian_diag(model, x, y, method="hutchinson", num_samples=400, key=jax.random.key(0))
    assert np.linalg.norm(_flat(est) - want) < 0.5 * np.linalg.norm(want)
    v = np.random.default_rng(2).normal(size=want.size)
    state = nnx.state(model, nnx.Param)
    v_state = jax.tree.unflatten(jax.tree.structure(state), _split_like(v, state))
    np.testing.assert_allclose(_flat(hvp(model, x, y, v_state)), dense @ v, rtol=1e-9, atol=1e-12)


def _split_like(v, state):
    out, i = [], 0
    for leaf in jax.tree.leaves(state):
        out.append(jnp.asarray(v[i : i + leaf.size].reshape(leaf.shape)))
        i += leaf.size
    return out


def test_nnx_mlp_equals_the_plain_pytree():
    """The blog's MLP is one such network: NNX and list-of-dicts give the same diagonal, and the
    independent "hvp" path agrees for a smooth activation."""
    rngs = nnx.Rngs(3)
    model = nnx.Sequential(
        nnx.Linear(6, 8, rngs=rngs, **F64),
        jnp.tanh,
        nnx.Linear(8, 5, rngs=rngs, **F64),
        jnp.tanh,
        nnx.Linear(5, 3, rngs=rngs, **F64),
    )
    params = [
        {"kernel": m.kernel[...], "bias": m.bias[...]}
        for m in model.layers
        if isinstance(m, nnx.Linear)
    ]
    x, y = _data(11, shape=(6,), classes=3)
    got = hessian_diag(model, x, y, batch_size=4)
    plain = hessian_diag(params, x, y, activation="tanh", batch_size=5)
    np.testing.assert_allclose(_flat(got), _flat(plain), rtol=1e-10)
    np.testing.assert_allclose(
        _flat(hessian_diag(model, x, y, method="hvp")), _flat(plain), rtol=1e-10
    )
    np.testing.assert_allclose(
        float(mlp_model.loss(params, x, y, activation="tanh")),
        float(optax.softmax_cross_entropy_with_integer_labels(model(x), y).mean()),
        rtol=1e-12,
    )


def test_study_networks():
    lenet5 = architectures.lenet5(nnx.Rngs(0))
    assert nets.n_params(lenet5) == 431_080
    assert nets.n_params(architectures.lenet_300_100(nnx.Rngs(0))) == 266_610
    assert nets.n_params(architectures.blog_mlp(nnx.Rngs(0))) == 47_410
    x, y = _data(3, shape=(28, 28, 1), classes=10)
    h = hessian_diag(lenet5, x.astype(jnp.float32), y)
    assert all(a.dtype == jnp.float32 for a in jax.tree.leaves(h))
    assert all(np.all(np.asarray(a) >= 0) for a in jax.tree.leaves(h))  # Gauss-Newton: PSD


def test_unsupported_items_and_bad_inputs():
    rngs = nnx.Rngs(0)
    x, y = _data(4, shape=(6,), classes=3)
    for item, name in [
        (nnx.BatchNorm(4, rngs=rngs), "BatchNorm"),
        (lambda z: z * 2, "lambda"),
        (nnx.Dropout(0.5, rngs=rngs), "Dropout"),
        (jax.nn.swish, "silu"),
    ]:
        model = nnx.Sequential(nnx.Linear(6, 4, rngs=rngs), item, nnx.Linear(4, 3, rngs=rngs))
        with pytest.raises(ValueError, match=f"item 1 .*{name}.*accepted items: nnx.Linear"):
            hessian_diag(model, x, y)
    model = nets.mlp((6, 4, 3), rngs=rngs)
    with pytest.raises(ValueError, match="activation= applies to the plain"):
        hessian_diag(model, x, y, activation="relu")
    with pytest.raises(ValueError, match=r"x must be \[N, 6\]"):
        hessian_diag(model, x[:, :5], y)
    with pytest.raises(ValueError, match=r"labels in \[\d, 3\].*3 classes"):
        hessian_diag(model, x, y.at[0].set(3))
    with pytest.raises(ValueError, match="non-finite"):
        hessian_diag(model, x.at[1, 2].set(jnp.nan), y)
    with pytest.raises(ValueError, match="not its nnx.State"):
        hessian_diag(nnx.state(model, nnx.Param), x, y)
    conv = nnx.Sequential(nnx.Conv(1, 2, (3, 3), rngs=rngs), nets.flatten)
    with pytest.raises(ValueError, match=r"x must be images \[N, height, width, 1\]"):
        hessian_diag(conv, x, y)
    with pytest.raises(ValueError, match="must end in logits"):
        hessian_diag(
            nnx.Sequential(nnx.Conv(1, 3, (3, 3), rngs=rngs)), jnp.ones((2, 5, 5, 1)), y[:2]
        )
    dilated = nnx.Sequential(nnx.Conv(1, 2, (3, 3), kernel_dilation=2, rngs=rngs), nets.flatten)
    with pytest.raises(ValueError, match="kernel_dilation"):
        hessian_diag(dilated, jnp.ones((2, 9, 9, 1)), y[:2])
    with pytest.raises(ValueError, match="'hvp' needs a network of dense layers"):
        hessian_diag(_convnet(jnp.tanh, nets.max_pool(2)), *_data(2), method="hvp")
    with pytest.raises(ValueError, match="window must be a positive integer"):
        nets.max_pool(0)


SHARDED = """
import jax, jax.numpy as jnp, numpy as np
jax.config.update("jax_enable_x64", True)
from flax import nnx
from jax.flatten_util import ravel_pytree
from obd import hessian, nets
assert len(jax.devices()) == 4, jax.devices()
rngs = nnx.Rngs(0)
model = nnx.Sequential(
    nnx.Conv(1, 3, (3, 3), strides=2, padding="SAME", rngs=rngs, param_dtype=jnp.float64),
    jnp.tanh, nets.avg_pool(2), nets.flatten,
    nnx.Linear(3 * 3 * 3, 4, rngs=rngs, param_dtype=jnp.float64),
)
rng = np.random.default_rng(0)
x = jnp.asarray(rng.normal(size=(11, 12, 12, 1)))
y = jnp.asarray(rng.integers(0, 4, 11), jnp.int32)
for batch_size in (2, 3, 100):
    sharded = ravel_pytree(hessian.hessian_diag(model, x, y, batch_size=batch_size))[0]
    hessian._device_count = lambda n: 1
    single = ravel_pytree(hessian.hessian_diag(model, x, y, batch_size=batch_size))[0]
    hessian._device_count = lambda n: max(1, min(len(jax.devices()), n))
    np.testing.assert_allclose(np.asarray(sharded), np.asarray(single), rtol=1e-12, atol=1e-15)
print("sharded ok")
"""


def test_sharded_path_equals_single_device():
    env = dict(os.environ, XLA_FLAGS="--xla_force_host_platform_device_count=4")
    out = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(SHARDED)], env=env, capture_output=True, text=True
    )
    assert out.returncode == 0, out.stderr[-3000:]
    assert "sharded ok" in out.stdout

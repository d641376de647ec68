"""obd.hessian against the dense ``jax.hessian`` in float64: small plain MLPs, Flax NNX networks
(convolutions, pooling, smooth activations) over the flattened ``nnx.split`` state, and every
problem of the shared table (tests/problems.py)."""

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

import problems
from obd import mlp as mlp_model
from obd import mlp as model
from obd import nets
from obd.hessian import METHODS, hessian_diag, hvp
from obd.study import architectures
from problems import PROBLEM_IDS, PROBLEMS

F64 = {"param_dtype": jnp.float64}


@pytest.fixture(autouse=True)
def x64():
    """float64 for this file only (the context manager restores the global setting)."""
    with jax.enable_x64(True):
        yield


def _problem(sizes, n, seed=0, dtype=np.float64):
    rng = np.random.default_rng(seed)
    params = [
        {
            "kernel": jnp.asarray(rng.normal(size=(a, b)) * 1.5 / np.sqrt(a), dtype),
            "bias": jnp.asarray(rng.normal(size=b) * 0.3, dtype),
        }
        for a, b in zip(sizes[:-1], sizes[1:], strict=True)
    ]
    x = jnp.asarray(rng.normal(size=(n, sizes[0])), dtype)
    y = jnp.asarray(rng.integers(0, sizes[-1], n), jnp.int32)
    return params, x, y


def _dense_hessian(params, x, y, activation):
    flat, unravel = ravel_pytree(params)
    hess = jax.hessian(lambda f, x, y: model.loss(unravel(f), x, y, activation=activation))
    return jax.jit(hess)(flat, x, y)


def _flat(tree):
    return np.asarray(ravel_pytree(tree)[0])


def _assert_close(got, want, rtol=1e-6):
    got, want = _flat(got) if isinstance(got, list) else got, np.asarray(want)
    assert got.shape == want.shape
    np.testing.assert_allclose(got, want, rtol=rtol, atol=1e-9 * np.abs(want).max())


# (sizes, examples, batch_size): chunks that do not divide N, one example, a deeper net
CASES = [
    ((7, 5, 3, 4), 13, 5),
    ((6, 9, 4), 5, 2),
    ((6, 9, 4), 1, 4),
    ((5, 8, 6, 7, 3), 13, 4),
]


@pytest.mark.parametrize("activation", ["relu", "tanh"])
@pytest.mark.parametrize(("sizes", "n", "batch_size"), CASES)
def test_exact_methods_match_dense_hessian(sizes, n, batch_size, activation):
    params, x, y = _problem(sizes, n)
    want = np.diagonal(_dense_hessian(params, x, y, activation))
    assert np.abs(want).max() > 1e-3  # a non-trivial Hessian
    methods = ["exact", "hvp", "bruteforce"] + (["fast"] if activation == "relu" else [])
    for method in methods:
        got = hessian_diag(
            params, x, y, method=method, activation=activation, batch_size=batch_size
        )
        assert jax.tree.structure(got) == jax.tree.structure(params)
        assert all(g.dtype == jnp.float64 for g in jax.tree.leaves(got))
        _assert_close(got, want)


# every activation of obd.network.ACTIVATIONS, the one list the plain MLP and NNX models share
@pytest.mark.parametrize("activation", ["leaky_relu", "identity", "sigmoid", "softplus", "gelu"])
def test_exact_other_activations(activation):
    params, x, y = _problem((6, 9, 4), 7, seed=1)
    want = np.diagonal(_dense_hessian(params, x, y, activation))
    _assert_close(hessian_diag(params, x, y, activation=activation, batch_size=3), want)


def test_exact_dispatches_fast_for_piecewise_linear_and_agrees_with_hvp_otherwise():
    params, x, y = _problem((7, 5, 3, 4), 9)
    a = hessian_diag(params, x, y, activation="relu")
    b = hessian_diag(params, x, y, method="fast", activation="relu")
    np.testing.assert_array_equal(_flat(a), _flat(b))
    # tanh: the factored path with its residual columns, against the independent HVP path
    a = hessian_diag(params, x, y, activation="tanh")
    b = hessian_diag(params, x, y, method="hvp", activation="tanh")
    np.testing.assert_allclose(_flat(a), _flat(b), rtol=1e-10, atol=1e-14)


def test_tanh_curvature_is_not_gauss_newton():
    """The tanh Hessian has act'' terms: "fast" would be wrong there, hence the ValueError."""
    params, x, y = _problem((7, 5, 3, 4), 9)
    with pytest.raises(ValueError, match="this network has tanh.*relu, leaky_relu"):
        hessian_diag(params, x, y, method="fast", activation="tanh")
    exact = _flat(hessian_diag(params, x, y, method="hvp", activation="tanh"))
    gauss_newton = _flat(hessian_diag(params, x, y, method="fast", activation="identity"))
    assert np.abs(exact - gauss_newton).max() > 1e-3


@pytest.mark.parametrize("method", ["fast", "hvp", "exact"])
def test_result_is_the_mean_whatever_the_chunking(method):
    params, x, y = _problem((7, 5, 3, 4), 13, seed=2)
    act = "tanh" if method == "exact" else "relu"
    ref = _flat(hessian_diag(params, x, y, method=method, activation=act, batch_size=13))
    for batch_size in (1, 4, 6, 100):
        got = hessian_diag(params, x, y, method=method, activation=act, batch_size=batch_size)
        np.testing.assert_allclose(_flat(got), ref, rtol=1e-12, atol=1e-15)
    # the mean, not the sum: the data twice over has the same Hessian
    x2, y2 = jnp.tile(x, (2, 1)), jnp.tile(y, 2)
    twice = hessian_diag(params, x2, y2, method=method, activation=act, batch_size=7)
    np.testing.assert_allclose(_flat(twice), ref, rtol=1e-12, atol=1e-15)


def test_float32_params_give_float32_and_agree():
    params, x, y = _problem((7, 5, 3, 4), 13, seed=3)
    p32 = jax.tree.map(lambda a: a.astype(jnp.float32), params)
    got = hessian_diag(p32, np.asarray(x, np.float32), np.asarray(y), batch_size=4)
    assert all(g.dtype == jnp.float32 for g in jax.tree.leaves(got))
    want = np.diagonal(_dense_hessian(p32, x.astype(jnp.float32), y, "relu"))
    _assert_close(got, want, rtol=1e-4)


def test_hutchinson_is_unbiased_and_converges():
    params, x, y = _problem((7, 5, 3, 4), 13, seed=6)
    h = np.asarray(_dense_hessian(params, x, y, "tanh"))
    diag = np.diagonal(h)
    # per-probe standard deviation of v_i (Hv)_i with Rademacher v: sqrt(sum_{j != i} H_ij^2)
    sd = np.sqrt((h**2).sum(1) - diag**2)
    key = jax.random.key(7)

    def estimate(num, batch_size=13):
        est = hessian_diag(
            params, x, y, method="hutchinson", activation="tanh", num_samples=num, key=key,
            batch_size=batch_size,
        )  # fmt: skip
        return _flat(est)

    few, many = estimate(10), estimate(2000)
    err = [np.linalg.norm(e - diag) / np.linalg.norm(diag) for e in (few, many)]
    assert err[1] < 0.1
    assert err[1] < err[0] / 5  # ~ sqrt(200) smaller in expectation
    assert np.all(np.abs(many - diag) <= 5 * sd / np.sqrt(2000) + 1e-12)  # unbiased
    # the same key gives the same probes, whatever the chunking
    np.testing.assert_allclose(estimate(10, batch_size=4), few, rtol=1e-12, atol=1e-15)


def test_bad_inputs():
    params, x, y = _problem((7, 5, 3, 4), 5)
    with pytest.raises(ValueError, match="accepted: " + ", ".join(METHODS)):
        hessian_diag(params, x, y, method="newton")
    with pytest.raises(ValueError, match=r"x must be \[N, 7\]"):
        hessian_diag(params, x[:, :6], y)
    with pytest.raises(ValueError, match=r"x must be \[N, 7\]"):
        hessian_diag(params, x[0], y)
    with pytest.raises(ValueError, match="y must be integer labels of shape"):
        hessian_diag(params, x, y[:4])
    with pytest.raises(ValueError, match="y must be integer class labels, got dtype float32"):
        hessian_diag(params, x, y.astype(jnp.float32))
    with pytest.raises(ValueError, match="batch_size must be an integer >= 1"):
        hessian_diag(params, x, y, batch_size=0)
    with pytest.raises(ValueError, match="num_samples must be an integer >= 1"):
        hessian_diag(params, x, y, method="hutchinson", num_samples=0, key=jax.random.key(0))
    with pytest.raises(ValueError, match="needs a PRNG key"):
        hessian_diag(params, x, y, method="hutchinson")
    with pytest.raises(ValueError, match="unknown activation"):
        hessian_diag(params, x, y, activation="swish")
    with pytest.raises(ValueError, match="kernel"):
        hessian_diag(params[:1] + [{"kernel": params[1]["kernel"]}], x, y)
    with pytest.raises(ValueError, match="v must be shaped like the parameters"):
        hvp(params, x, y, params[:2])


# --- every problem of the shared table (tests/problems.py) ---------------------------------------


@pytest.mark.parametrize("problem", PROBLEMS, ids=PROBLEM_IDS)
def test_every_method_matches_dense_hessian(problem):
    """Every method that takes the network gives the diagonal of the dense float64
    ``jax.hessian``, shaped like the parameters (the model's ``nnx.State`` for NNX); Hutchinson's
    estimate is close; "fast" is refused where the activation is smooth, "hvp" for convolutions."""
    model, x, y = problem.make()
    want = np.diagonal(problems.dense_hessian(problem, model, x, y))
    assert np.abs(want).max() > 1e-4  # a non-trivial Hessian
    params = problems.param_tree(model)
    methods = ["exact", "bruteforce"] + ["fast"] * (not problem.smooth) + ["hvp"] * problem.dense
    for method in methods:
        got = hessian_diag(model, x, y, method=method, batch_size=4, **problem.kwargs)
        assert jax.tree.structure(got) == jax.tree.structure(params), method
        assert isinstance(got, nnx.State) == problem.is_nnx
        assert all(g.dtype == jnp.float64 for g in jax.tree.leaves(got))
        np.testing.assert_allclose(_flat(got), want, rtol=1e-6, atol=1e-6 * np.abs(want).max())
    if problem.smooth:
        with pytest.raises(ValueError, match="relu, leaky_relu"):
            hessian_diag(model, x, y, method="fast", **problem.kwargs)
    if not problem.dense:
        with pytest.raises(ValueError, match="'hvp' needs a network of dense layers"):
            hessian_diag(model, x, y, method="hvp", **problem.kwargs)
    est = hessian_diag(model, x, y, method="hutchinson", num_samples=400, key=jax.random.key(0),
                       **problem.kwargs)  # fmt: skip
    assert np.linalg.norm(_flat(est) - want) < 0.5 * np.linalg.norm(want)


@pytest.mark.parametrize("problem", PROBLEMS, ids=PROBLEM_IDS)
def test_hvp_matches_dense_hessian_times_v(problem):
    model, x, y = problem.make()
    dense = problems.dense_hessian(problem, model, x, y)
    v = np.random.default_rng(5).normal(size=len(dense))
    v_tree = problems.unflatten_like(v, problems.param_tree(model))
    got = hvp(model, x, y, v_tree, batch_size=4, **problem.kwargs)
    want = dense @ v
    np.testing.assert_allclose(_flat(got), want, rtol=1e-9, atol=1e-12 * np.abs(want).max())


# --- Flax NNX networks ---------------------------------------------------------------------------


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
CONV_CASES = [
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
    ("act", "config"),
    CONV_CASES,
    ids=[f"{a}-s{c[0]}-{c[1]}-{c[2][0]}-b{c[3]}" for a, c in CONV_CASES],
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


def test_nnx_unsupported_items_and_bad_inputs():
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

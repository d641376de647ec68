"""obd.hessian against the dense Hessian of small MLPs, in float64."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.flatten_util import ravel_pytree

from obd import mlp as model
from obd.hessian import METHODS, hessian_diag, hvp


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


@pytest.mark.parametrize("activation", ["leaky_relu", "identity", "sigmoid"])
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


def test_hvp_matches_dense_hessian_times_v():
    params, x, y = _problem((5, 8, 6, 7, 3), 11, seed=4)
    flat, unravel = ravel_pytree(params)
    v = np.random.default_rng(5).normal(size=flat.size)
    want = _dense_hessian(params, x, y, "tanh") @ v
    got = hvp(params, x, y, unravel(jnp.asarray(v)), activation="tanh", batch_size=4)
    np.testing.assert_allclose(_flat(got), want, rtol=1e-9, atol=1e-12 * np.abs(want).max())


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

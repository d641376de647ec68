"""Curvature estimators against explicit references on a tiny float64 net."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from jax.flatten_util import ravel_pytree

from obd import curvature as cv
from obd.batches import batch_indices
from obd.mlp import apply_mlp, init_mlp, loss

SIZES = (6, 5, 4, 3)


def _problem(activation="relu", n=37, dtype=jnp.float64):
    params = init_mlp(jax.random.key(0), SIZES)
    params = jax.tree.map(lambda a: jnp.asarray(a, dtype) + 0.1, params)
    rng = np.random.default_rng(0)
    x = rng.normal(size=(n, SIZES[0]))
    y = rng.integers(0, SIZES[-1], n).astype(np.int32)
    return params, x, y


def _flat(tree):
    """Leaves concatenated in NumPy (dtype kept: works outside ``jax.enable_x64`` too)."""
    return np.concatenate([np.asarray(a).ravel() for a in jax.tree.leaves(tree)])


def _per_example_grads(params, x, y, activation):
    """Per-example gradients by an explicit loop of ``jax.grad`` calls: ``[n, params]``."""
    grad = jax.jit(jax.grad(lambda p, xi, yi: loss(p, xi[None], yi[None], activation=activation)))
    return np.stack([_flat(grad(params, xi, yi)) for xi, yi in zip(x, y, strict=True)])


@functools.cache
def _ggn_and_hessian_diag(activation):
    """References on ``_problem(activation)``: the Gauss-Newton diagonal, the Hessian diagonal and
    the dense Hessian, in float64 (computed once per activation and shared: do not modify)."""
    with jax.enable_x64(True):
        params, x, y = _problem(activation)
        flat, unravel = ravel_pytree(params)
        h = jax.jit(jax.hessian(lambda v: loss(unravel(v), x, y, activation=activation)))(flat)
        logits = jax.jit(lambda v: apply_mlp(unravel(v), x, activation=activation))
        jac = np.asarray(jax.jacobian(logits)(flat))  # [n, classes, params]
        p = np.asarray(jax.nn.softmax(logits(flat)))
    a = np.einsum("nc,cd->ncd", p, np.eye(p.shape[1])) - np.einsum("nc,nd->ncd", p, p)
    ggn = np.einsum("ncp,ncd,ndp->p", jac, a, jac) / len(x)
    return ggn, np.asarray(jnp.diag(h)), np.asarray(h)


@pytest.mark.parametrize("activation", ["relu", "tanh"])
def test_empirical_fisher_is_mean_of_squared_per_example_grads(activation):
    with jax.enable_x64(True):
        params, x, y = _problem(activation)
        ef = cv.empirical_fisher_diag(params, x, y, activation=activation, batch_size=10)
        g = _per_example_grads(params, x, y, activation)
    np.testing.assert_allclose(_flat(ef), (g**2).mean(0), rtol=1e-10, atol=1e-15)


def test_mc_fisher_converges_to_exact_hessian_diagonal_for_relu():
    with jax.enable_x64(True):
        params, x, y = _problem("relu")
        ggn, hdiag, _ = _ggn_and_hessian_diag("relu")
        mc = _flat(
            cv.mc_fisher_diag(params, x, jax.random.key(1), num_samples=20_000, batch_size=16)
        )
        one = _flat(cv.mc_fisher_diag(params, x, jax.random.key(1), num_samples=1))
    np.testing.assert_allclose(ggn, hdiag, rtol=1e-10, atol=1e-14)  # ReLU: GGN diag = H diag
    assert np.linalg.norm(mc - hdiag) / np.linalg.norm(hdiag) < 0.02
    assert np.linalg.norm(one - hdiag) / np.linalg.norm(hdiag) > 0.05  # one sample is noisy
    assert (mc >= 0).all()


def test_mc_fisher_estimates_gauss_newton_not_hessian_for_tanh():
    with jax.enable_x64(True):
        params, x, y = _problem("tanh")
        ggn, hdiag, _ = _ggn_and_hessian_diag("tanh")
        mc = _flat(cv.mc_fisher_diag(params, x, 3, num_samples=20_000, activation="tanh"))
    assert np.linalg.norm(mc - ggn) / np.linalg.norm(ggn) < 0.02
    assert np.linalg.norm(ggn - hdiag) / np.linalg.norm(hdiag) > 0.1


@pytest.mark.parametrize("activation", ["relu", "tanh"])
def test_hutchinson_probes_are_exact_v_times_hv(activation):
    with jax.enable_x64(True):
        params, x, y = _problem(activation)
        _, hdiag, h = _ggn_and_hessian_diag(activation)
        key = jax.random.key(7)
        est = cv.hutchinson_diags(
            params, x, y, key, counts=(4000, 1, 3, 3), activation=activation, batch_size=10,
            probe_batch=500,
        )  # fmt: skip
        v = np.asarray(
            jax.vmap(lambda t: ravel_pytree(t)[0])(cv.rademacher_probes(key, params, 0, 3))
        )
        many = _flat(est[4000])
    assert sorted(est) == [1, 3, 4000]
    assert set(np.unique(v)) == {-1.0, 1.0}
    np.testing.assert_allclose(_flat(est[1]), v[0] * (h @ v[0]), rtol=1e-10, atol=1e-14)
    np.testing.assert_allclose(_flat(est[3]), (v * (v @ h)).mean(0), rtol=1e-10, atol=1e-14)
    # unbiased: the error of the mean of 4000 probes is of the order of the off-diagonal norm / 63
    off = np.sqrt(((h - np.diag(hdiag)) ** 2).sum(1))
    assert np.all(np.abs(many - hdiag) < 5 * off / np.sqrt(4000) + 1e-12)


def test_adam_nu_is_bias_corrected_ema_of_squared_minibatch_grads():
    steps, bs, b2 = 7, 5, 0.9
    with jax.enable_x64(True):
        params, x, y = _problem("relu")
        key = jax.random.key(2)
        nu = _flat(cv.adam_nu_diag(params, x, y, key, steps=steps, batch_size=bs, b2=b2))
        idx = np.asarray(batch_indices(key, len(x), steps, bs))
        grad = jax.jit(jax.grad(lambda p, xb, yb: loss(p, xb, yb)))
        ema = np.zeros_like(nu)
        for ib in idx:
            ema = b2 * ema + (1 - b2) * _flat(grad(params, x[ib], y[ib])) ** 2
    np.testing.assert_allclose(nu, ema / (1 - b2**steps), rtol=1e-10, atol=1e-16)
    # optax agrees on the raw moment
    assert isinstance(optax.scale_by_adam().init(params), optax.ScaleByAdamState)


def test_rank_correlation_and_mask_overlap():
    a = [{"kernel": jnp.arange(6.0).reshape(2, 3), "bias": jnp.zeros(3)},
         {"kernel": jnp.arange(6.0, 9.0).reshape(3, 1), "bias": jnp.zeros(1)}]  # fmt: skip
    rev = jax.tree.map(lambda t: -t, a)
    assert cv.rank_correlation(a, a) == pytest.approx(1.0)
    assert cv.rank_correlation(a, rev) == pytest.approx(-1.0)
    # 9 kernels, prune 3 (floor(9/3 + .5)): a prunes {0,1,2}, rev prunes {6,7,8}
    assert cv.mask_overlap(a, rev, 1 / 3) == {"n_pruned": 3, "jaccard": 0.0, "shared": 0.0}
    shifted = jax.tree.map(lambda t: t, a)
    shifted[0] = {"kernel": jnp.asarray([[0.0, 1.0, 10.0], [3.0, 4.0, 5.0]]), "bias": jnp.zeros(3)}
    o = cv.mask_overlap(a, shifted, 1 / 3)  # shifted prunes {0, 1, 3}
    assert o["shared"] == pytest.approx(2 / 3) and o["jaccard"] == pytest.approx(2 / 4)
    assert cv.mask_overlap(a, rev, 0.0)["jaccard"] == 1.0
    table = cv.compare_saliencies({"a": a, "rev": rev}, "a", [1 / 3, 1.0])
    assert list(table.saliency) == ["a", "rev"]
    np.testing.assert_allclose(table["jaccard_0.333333"], [1.0, 0.0])
    np.testing.assert_allclose(table["shared_1"], [1.0, 1.0])
    with pytest.raises(ValueError, match="reference"):
        cv.compare_saliencies({"a": a}, "b", [0.5])


def test_timed_separates_compilation_and_returns_the_result():
    params, x, y = _problem("relu", dtype=jnp.float32)
    out, t = cv.timed(cv.empirical_fisher_diag, params, x, y, batch_size=8)
    ref = cv.empirical_fisher_diag(params, x, y)
    np.testing.assert_allclose(_flat(out), _flat(ref), rtol=1e-5)
    assert set(t) == {"compile_s", "run_s"} and t["run_s"] > 0 and t["compile_s"] > 0
    out2, t2 = cv.timed(lambda p: jax.tree.map(jnp.abs, p), params, jit=False)
    assert t2["run_s"] > 0
    assert cv.finite_or_raise("ok", out2) is out2
    with pytest.raises(ValueError, match="non-finite"):
        cv.finite_or_raise("bad", [{"kernel": jnp.asarray([np.nan]), "bias": jnp.zeros(1)}])


def test_bad_inputs_raise_value_error():
    params, x, y = _problem("relu", dtype=jnp.float32)
    key = jax.random.key(0)
    with pytest.raises(ValueError, match="x must be"):
        cv.empirical_fisher_diag(params, x[:, :4], y)
    with pytest.raises(ValueError, match="y must be integer labels"):
        cv.empirical_fisher_diag(params, x, y.astype(np.float32))
    with pytest.raises(ValueError, match="y must be integer labels"):
        cv.hutchinson_diags(params, x, y[:3], key)
    with pytest.raises(ValueError, match="batch_size"):
        cv.empirical_fisher_diag(params, x, y, batch_size=0)
    with pytest.raises(ValueError, match="num_samples"):
        cv.mc_fisher_diag(params, x, key, num_samples=0)
    with pytest.raises(ValueError, match="key is required"):
        cv.mc_fisher_diag(params, x, None)
    with pytest.raises(ValueError, match="counts"):
        cv.hutchinson_diags(params, x, y, key, counts=())
    with pytest.raises(ValueError, match="counts entry"):
        cv.hutchinson_diags(params, x, y, key, counts=(0, 5))
    with pytest.raises(ValueError, match="steps"):
        cv.adam_nu_diag(params, x, y, key, steps=0)
    with pytest.raises(ValueError, match="exceeds"):
        cv.adam_nu_diag(params, x, y, key, batch_size=1000)
    with pytest.raises(ValueError, match="b1 must be"):
        cv.adam_nu_diag(params, x, y, key, batch_size=5, b2=1.0)
    with pytest.raises(ValueError, match="unknown activation"):
        cv.empirical_fisher_diag(params, x, y, activation="swish")
    with pytest.raises(ValueError, match="floating"):
        cv.empirical_fisher_diag(jax.tree.map(lambda a: a.astype(jnp.int32), params), x, y)

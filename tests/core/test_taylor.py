"""The Taylor terms of pruning against references built from the full Hessian (jax.hessian)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.flatten_util import ravel_pytree

from obd import prune, taylor
from obd.mlp import apply_mlp, init_mlp, loss

SIZES = (6, 5, 4, 3)


def _problem(activation, dtype=jnp.float64):
    """A tiny net (biases non-zero; float64 under ``jax.enable_x64``) and data, and the loss as a
    function of the flat parameter vector."""
    params = init_mlp(jax.random.key(0), SIZES)
    params = jax.tree.map(lambda a: jnp.asarray(a, dtype) + 0.1, params)
    rng = np.random.default_rng(0)
    x = rng.normal(size=(37, SIZES[0]))
    y = rng.integers(0, SIZES[-1], 37).astype(np.int32)
    flat, unravel = ravel_pytree(params)

    def f(v):
        return loss(unravel(v), x, y, activation=activation)

    return params, x, y, flat, unravel, f


def _flat_levels(dws):
    return np.asarray(jax.vmap(lambda d: ravel_pytree(d)[0])(dws))


@pytest.mark.parametrize("activation", ["relu", "tanh"])
def test_terms_match_full_hessian_reference(activation):
    with jax.enable_x64(True):
        params, x, y, flat, unravel, f = _problem(activation)
        h = np.asarray(jax.jit(jax.hessian(f))(flat))
        g = np.asarray(jax.jit(jax.grad(f))(flat))
        hdiag = unravel(jnp.diag(h))
        m = prune.masks(jax.tree.map(jnp.abs, params), [0.0, 0.2, 0.5, 0.8, 1.0])
        table = taylor.loss_change_curve(
            params, m, x, y, hdiag=hdiag, activation=activation, batch_size=10, level_batch=3
        )
        d = _flat_levels(taylor.pruning_delta(params, m))
        # Gauss-Newton reference: J^T A J with J the Jacobian of the logits
        logits = lambda v: apply_mlp(unravel(v), x, activation=activation)  # noqa: E731
        jac = np.asarray(jax.jit(jax.jacobian(logits))(flat))  # [n, classes, params]
        p = np.asarray(jax.nn.softmax(logits(flat)))
        a = np.einsum("nc,cd->ncd", p, np.eye(3)) - np.einsum("nc,nd->ncd", p, p)
        ggn = np.einsum("ncp,ncd,ndq->pq", jac, a, jac) / len(x)
        actual = [float(f(flat + di) - f(flat)) for di in d]

    quad = 0.5 * np.einsum("li,ij,lj->l", d, h, d)
    diag = 0.5 * (d**2) @ np.diag(h)
    off = h - np.diag(np.diag(h))
    np.testing.assert_allclose(table.quadratic, quad, rtol=1e-10, atol=1e-13)
    np.testing.assert_allclose(table.diagonal, diag, rtol=1e-10, atol=1e-13)
    np.testing.assert_allclose(table.cross, 0.5 * np.einsum("li,ij,lj->l", d, off, d), atol=1e-12)
    np.testing.assert_allclose(table.first_order, d @ g, rtol=1e-10, atol=1e-13)
    np.testing.assert_allclose(table.actual, actual, rtol=1e-10, atol=1e-13)
    np.testing.assert_allclose(
        table.gauss_newton, 0.5 * np.einsum("li,ij,lj->l", d, ggn, d), rtol=1e-10, atol=1e-13
    )
    np.testing.assert_allclose(table.second_order, table.first_order + table.quadratic)
    assert list(table.n_pruned) == [int((di != 0).sum()) for di in d]
    assert list(table.n_pruned) == [0, 12, 31, 50, 62]  # kernels only: 30 + 20 + 12 weights
    assert (table.iloc[0][["first_order", "quadratic", "actual", "diagonal"]] == 0).all()
    assert np.isnan(table.cross_ratio.iloc[0])  # 0 / 0
    assert np.abs(table.cross.iloc[1:]).max() > 1e-4  # cross terms are really there


def test_quadratic_loss_second_order_prediction_is_exact():
    rng = np.random.default_rng(1)
    with jax.enable_x64(True):
        a = rng.normal(size=(7, 7))
        a = a @ a.T - 2.0 * np.eye(7)  # symmetric, indefinite
        b, c = rng.normal(size=7), 0.3
        w = {"u": jnp.asarray(rng.normal(size=3)), "v": jnp.asarray(rng.normal(size=(2, 2)))}
        dw = {"u": jnp.asarray(rng.normal(size=3)), "v": jnp.asarray(rng.normal(size=(2, 2)))}

        def f(tree):
            v = ravel_pytree(tree)[0]
            return 0.5 * v @ a @ v + b @ v + c

        t = taylor.taylor_terms(f, w, dw)
        v, dv = np.asarray(ravel_pytree(w)[0]), np.asarray(ravel_pytree(dw)[0])
        value = f(w)
    np.testing.assert_allclose(t["value"], value, rtol=1e-12)
    np.testing.assert_allclose(t["first_order"], (a @ v + b) @ dv, rtol=1e-12)
    np.testing.assert_allclose(t["quadratic"], 0.5 * dv @ a @ dv, rtol=1e-12)
    np.testing.assert_allclose(t["actual"], t["first_order"] + t["quadratic"], rtol=1e-12)


def test_generic_and_mlp_terms_agree_and_mlp_loss_is_not_quadratic():
    with jax.enable_x64(True):
        params, x, y, *_ = _problem("relu")
        m = prune.masks(jax.tree.map(jnp.abs, params), 0.6)
        dw = taylor.pruning_delta(params, m)
        ref = taylor.taylor_terms(lambda p: loss(p, x, y), params, dw)
        got = taylor.loss_change_terms(params, m, x, y)
    for k in ("first_order", "quadratic", "actual"):
        np.testing.assert_allclose(got[k], ref[k], rtol=1e-10)
    np.testing.assert_allclose(got["loss"], ref["value"], rtol=1e-12)
    assert np.isnan(got["diagonal"])  # no hdiag given
    assert abs(got["actual"] - got["second_order"]) > 1e-3  # higher orders matter here


@pytest.mark.parametrize("activation, same", [("relu", True), ("tanh", False)])
def test_one_layer_move_has_no_network_curvature_for_piecewise_linear(activation, same):
    """Logits are linear in any single layer's weights when act'' = 0, so dw^T H dw is then the
    Gauss-Newton term alone; the difference comes only from cross-layer pairs."""
    with jax.enable_x64(True):
        params, x, y, *_ = _problem(activation)
        dw = jax.tree.map(jnp.zeros_like, params)
        dw[1] = {"kernel": -params[1]["kernel"], "bias": -params[1]["bias"]}
        t = taylor.loss_change_terms(params, dw, x, y, activation=activation)
    assert np.isclose(t["quadratic"], t["gauss_newton"], rtol=1e-10) == same


def test_chunking_masks_and_float32_do_not_change_results():
    with jax.enable_x64(True):
        params, x, y, *_ = _problem("relu")
    params32 = jax.tree.map(lambda a: jnp.asarray(a, jnp.float32), params)
    m = prune.masks(jax.tree.map(jnp.abs, params32), [0.3, 0.9])
    a = taylor.loss_change_curve(params32, m, x.astype(np.float32), y, batch_size=7)
    b = taylor.loss_change_curve(params32, taylor.pruning_delta(params32, m), x, y, level_batch=1)
    cols = ["loss", "first_order", "quadratic", "gauss_newton", "actual"]
    np.testing.assert_allclose(a[cols], b[cols], rtol=1e-5, atol=1e-6)
    with jax.enable_x64(True):
        c = taylor.loss_change_curve(params, m, x, y)
    np.testing.assert_allclose(a[cols], c[cols], rtol=1e-4, atol=1e-5)


def test_pruning_delta_and_bad_inputs():
    params, x, y, *_ = _problem("relu", jnp.float32)
    m = prune.masks(jax.tree.map(jnp.abs, params), 0.5)
    dw = taylor.pruning_delta(params, m)
    for p, mm, d in zip(
        jax.tree.leaves(params), jax.tree.leaves(m), jax.tree.leaves(dw), strict=True
    ):
        np.testing.assert_array_equal(d, np.where(mm, 0.0, -np.asarray(p)))
    with pytest.raises(ValueError, match="boolean"):
        taylor.pruning_delta(params, jax.tree.map(lambda a: a.astype(int), m))
    with pytest.raises(ValueError, match="structure"):
        taylor.loss_change_curve(params, m[:2], x, y)
    bad = jax.tree.map(lambda a: a, m)
    bad[0]["kernel"] = bad[0]["kernel"][:2]
    with pytest.raises(ValueError, match="shape"):
        taylor.loss_change_curve(params, bad, x, y)
    mixed = jax.tree.map(lambda a: a, m)
    mixed[0]["kernel"] = mixed[0]["kernel"].astype(np.float32)
    with pytest.raises(ValueError, match="mixes"):
        taylor.loss_change_curve(params, mixed, x, y)
    with pytest.raises(ValueError, match="hdiag"):
        taylor.loss_change_curve(params, m, x, y, hdiag=params[:1])
    with pytest.raises(ValueError, match="y must be integer labels"):
        taylor.loss_change_curve(params, m, x, y[:-1])
    with pytest.raises(ValueError, match="x must be"):
        taylor.loss_change_curve(params, m, x[:, :3], y)
    with pytest.raises(ValueError, match="level_batch"):
        taylor.loss_change_curve(params, m, x, y, level_batch=0)
    with pytest.raises(ValueError, match="one dw or mask"):
        taylor.loss_change_terms(
            params, prune.masks(jax.tree.map(jnp.abs, params), [0.1, 0.2]), x, y
        )

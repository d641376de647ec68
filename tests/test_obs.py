"""Layer-wise Optimal Brain Surgeon (obd.obs): exactness against least squares, and the API."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pandas as pd
import pytest

from obd import obs
from obd.model import accuracy, init_mlp
from obd.prune import prune_counts, sweep


def _layer(seed=0, n=300, d_in=12, d_out=5):
    """Correlated inputs (as real activations are) and a random kernel."""
    rng = np.random.default_rng(seed)
    z = rng.normal(size=(n, d_in))
    x = z @ (np.eye(d_in) + 0.6 * rng.normal(size=(d_in, d_in))) + 0.3
    return x, rng.normal(size=(d_in, d_out))


def _recon(x, w, w_pruned):
    """Mean squared reconstruction error ||X W - X W'||^2 / n, summed over units."""
    r = np.asarray(x, np.float64) @ (np.asarray(w, np.float64) - np.asarray(w_pruned, np.float64))
    return float((r**2).sum() / len(x))


def _least_squares(x, w, keep):
    """Optimal weights on the inputs ``keep`` (bool [in]) reconstructing ``x @ w`` (one unit)."""
    out = np.zeros_like(w)
    if keep.any():
        out[keep] = np.linalg.lstsq(x[:, keep], x @ w, rcond=None)[0]
    return out


def test_single_removal_saliency_is_the_exact_error_increase():
    x, w = _layer()
    with jax.enable_x64(True):
        trace = obs.obs_layer_trace(w, x, damping=0.0)
        hinv = np.linalg.inv(obs.layer_hessian(x, 0.0))
    assert trace.weights.dtype == np.float64
    d_in, d_out = w.shape
    for o in range(d_out):
        saliency = w[:, o] ** 2 / (2 * np.diag(hinv))
        direct = np.empty(d_in)
        for q in range(d_in):
            keep = np.arange(d_in) != q
            w_q = _least_squares(x, w[:, o], keep)
            direct[q] = _recon(x, w[:, o : o + 1], w_q[:, None])
        np.testing.assert_allclose(saliency, direct, rtol=1e-9, atol=0)
        q0 = int(trace.order[o, 0])
        assert q0 == int(np.argmin(direct))
        assert trace.increments[o, 0] == pytest.approx(direct.min(), rel=1e-9)
        keep = np.arange(d_in) != q0
        np.testing.assert_allclose(trace.weights[o, 1], _least_squares(x, w[:, o], keep),
                                   rtol=1e-8, atol=1e-10)  # fmt: skip


def test_every_step_is_the_least_squares_optimum_of_its_mask():
    x, w = _layer(seed=1)
    with jax.enable_x64(True):
        trace = obs.obs_layer_trace(w, x, damping=0.0)
    d_in, d_out = w.shape
    for o in range(d_out):
        assert sorted(trace.order[o].tolist()) == list(range(d_in))  # each input once
        for k in range(d_in + 1):
            keep = ~np.isin(np.arange(d_in), trace.order[o, :k])
            best = _least_squares(x, w[:, o], keep)
            np.testing.assert_allclose(trace.weights[o, k], best, rtol=1e-7, atol=1e-9)
            assert np.all(trace.weights[o, k][~keep] == 0.0)  # pruned weights exactly zero
            err = _recon(x, w[:, o : o + 1], trace.weights[o, k][:, None])
            assert trace.increments[o, :k].sum() == pytest.approx(err, rel=1e-8, abs=1e-12)


def test_damped_saliency_is_the_increase_of_the_damped_quadratic():
    x, w = _layer(seed=2)
    with jax.enable_x64(True):
        trace = obs.obs_layer_trace(w, x, damping=0.1)
        h = obs.layer_hessian(x, 0.1)
    for o in range(w.shape[1]):
        for k in (1, 4, 9):
            delta = trace.weights[o, k] - w[:, o]
            assert 0.5 * delta @ h @ delta == pytest.approx(trace.increments[o, :k].sum(), rel=1e-9)


@pytest.mark.parametrize("fraction", [0.3, 0.5, 0.7, 0.9])
def test_obs_beats_masking_the_same_weights_and_magnitude_pruning(fraction):
    x, w = _layer(seed=3, n=400, d_in=20, d_out=8)
    x, w = x.astype(np.float32), w.astype(np.float32)
    params = [{"kernel": jnp.asarray(w), "bias": jnp.zeros(w.shape[1])}]
    pruned = np.asarray(obs.obs_prune(params, x, fraction, damping=1e-4)[0]["kernel"])
    k = int(prune_counts(fraction, w.size))
    mask = pruned != 0
    assert (~mask).sum() == k
    same_mask = np.where(mask, w, 0)
    magnitude = w.ravel().copy()
    magnitude[np.argsort(np.abs(magnitude), kind="stable")[:k]] = 0
    e_obs = _recon(x, w, pruned)
    assert e_obs < 0.9 * _recon(x, w, same_mask)
    assert e_obs < 0.9 * _recon(x, w, magnitude.reshape(w.shape))


def _net(seed=0, sizes=(16, 12, 10, 4)):
    params = init_mlp(jax.random.key(seed), sizes)
    x = np.random.default_rng(seed).uniform(size=(200, sizes[0])).astype(np.float32)
    return params, x


@pytest.mark.parametrize("allocation", obs.ALLOCATIONS)
@pytest.mark.parametrize("fraction", [0.0, 0.37, 0.5, 1.0])
def test_obs_prune_prunes_exactly_k_per_layer_and_keeps_biases(allocation, fraction):
    params, x = _net()
    params[1]["bias"] = params[1]["bias"] + 0.5
    pruned = obs.obs_prune(params, x, fraction, allocation=allocation)
    for p, q in zip(params, pruned, strict=True):
        k = int(prune_counts(fraction, p["kernel"].size))
        assert int((np.asarray(q["kernel"]) == 0).sum()) == k
        np.testing.assert_array_equal(q["bias"], p["bias"])
        assert q["kernel"].dtype == p["kernel"].dtype
    if fraction == 0.0:
        for p, q in zip(params, pruned, strict=True):
            np.testing.assert_array_equal(q["kernel"], p["kernel"])


def test_allocation():
    rng = np.random.default_rng(0)
    inc = rng.exponential(size=(6, 9))
    ks = np.arange(6 * 9 + 1)
    for allocation in obs.ALLOCATIONS:
        counts = obs.allocate(inc, ks, allocation)
        assert counts.shape == (ks.size, 6)
        np.testing.assert_array_equal(counts.sum(1), ks)
        assert np.all(np.diff(counts, axis=0) >= 0)  # nested: more pruning never restores
    unit = obs.allocate(inc, 15, "unit")
    np.testing.assert_array_equal(unit, [3, 3, 3, 2, 2, 2])
    # "layer": the k smallest running-max increments, each unit a prefix of its order
    inc = np.array([[1.0, 5.0, 2.0], [3.0, 4.0, 6.0]])  # running max: [1 5 5], [3 4 6]
    np.testing.assert_array_equal(obs.allocate(inc, [1, 2, 3, 4, 5], "layer"),
                                  [[1, 0], [1, 1], [1, 2], [2, 2], [3, 2]])  # fmt: skip


def test_sweep_matches_prune_sweep_format_and_obs_prune():
    params, x = _net(seed=1)
    y = np.asarray(jnp.argmax(jnp.asarray(x[:, :4]), -1), np.int32)
    fractions = [0.0, 0.25, 0.5, 0.8, 1.0]
    table = obs.obs_sweep(params, x, fractions, x, y)
    reference = sweep(params, params, fractions, x, y, scope="layerwise")
    assert list(table.columns) == list(reference.columns)
    pd.testing.assert_series_equal(table["n_pruned"], reference["n_pruned"])
    pd.testing.assert_series_equal(table["pruned_fraction"], reference["pruned_fraction"])
    assert table["accuracy"].iloc[0] == pytest.approx(float(accuracy(params, x, y)))
    assert table["loss"].iloc[-1] == pytest.approx(np.log(4), rel=1e-5)  # all kernels zero
    traces = obs.obs_traces(params, x)
    for f, acc in zip(fractions, table["accuracy"], strict=True):
        pruned = obs.obs_prune(params, x, f, traces=traces)
        assert float(accuracy(pruned, x, y)) == pytest.approx(acc)


def test_bad_input_raises_value_error():
    params, x = _net()
    with pytest.raises(ValueError, match="fraction"):
        obs.obs_prune(params, x, 1.5)
    with pytest.raises(ValueError, match="single number"):
        obs.obs_prune(params, x, [0.1, 0.2])
    with pytest.raises(ValueError, match="x_calib"):
        obs.obs_prune(params, x[:, :5], 0.5)
    with pytest.raises(ValueError, match="damping"):
        obs.obs_prune(params, x, 0.5, damping=-1.0)
    with pytest.raises(ValueError, match="allocation"):
        obs.obs_prune(params, x, 0.5, allocation="global")
    dead = x.copy()
    dead[:, 3] = 0.0
    with pytest.raises(ValueError, match="singular"):
        obs.obs_prune(params, dead, 0.5, damping=0.0)
    with pytest.raises(ValueError, match="traces"):
        obs.obs_prune(params, x, 0.5, traces=obs.obs_traces(params, x)[:2])
    with pytest.raises(ValueError, match="x_test"):
        obs.obs_sweep(params, x, [0.5], x[:, :3], np.zeros(len(x), np.int32))
    with pytest.raises(ValueError, match="fraction"):
        obs.obs_sweep(params, x, [0.5, -0.1], x, np.zeros(len(x), np.int32))

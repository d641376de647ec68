"""Optimal Brain Surgeon (obd.obs): layer-wise OBS against least squares; global OBS against
jax.hessian in float64, brute-force OBS on each block and a brute-force allocation; the API."""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pandas as pd
import pytest
from flax import nnx

from obd import nets, obs
from obd.mlp import accuracy, init_mlp, loss, module_from_params
from obd.obs import obs_sweep_model
from obd.prune import prune_counts, sweep
from obd.study.train import TrainConfig, train


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


# -- global OBS ----------------------------------------------------------------------------------


def _deep_net(seed=0, sizes=(7, 6, 5, 4, 3), dtype=jnp.float64):
    """A small net (zero biases, as initialised) and data with one input blank on every example."""
    params = jax.tree.map(lambda a: jnp.asarray(a, dtype), init_mlp(jax.random.key(seed), sizes))
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(64, sizes[0])) + 0.3
    x[:, 2] = 0.0
    y = rng.integers(0, sizes[-1], len(x)).astype(np.int32)
    return params, x.astype(np.dtype(dtype)), y


def _kernel_hessian_blocks(params, x, y, activation):
    """Per layer and unit, the block of jax.hessian of the loss for that unit's incoming weights."""
    h = jax.jit(jax.hessian(lambda p: loss(p, x, y, activation=activation)))(params)
    out = []
    for i in range(len(params)):
        hk = np.asarray(h[i]["kernel"][i]["kernel"])  # [in, out, in, out]
        out.append(np.stack([hk[:, o, :, o] for o in range(hk.shape[1])]))
    return out


def _unit_blocks_problem(activation):
    params, x, y = _deep_net(sizes=(7, 6, 5, 4, 3) if activation == "relu" else (5, 4, 6, 3))
    params[1]["bias"] = params[1]["bias"] + 0.2  # nonzero biases are handled too
    return params, x, y


@functools.cache
def _unit_blocks_reference(activation):
    """The float64 reference blocks of ``_unit_blocks_problem``, computed once for every tiling."""
    with jax.enable_x64(True):
        return _kernel_hessian_blocks(*_unit_blocks_problem(activation), activation)


@pytest.mark.parametrize("activation", ["relu", "tanh"])
@pytest.mark.parametrize("tile", [200, 2])
def test_unit_blocks_equal_the_blocks_of_jax_hessian_float64(activation, tile, monkeypatch):
    monkeypatch.setattr("obd.obs.blocks._TILE", tile)  # 2: the symmetric tiling is exercised
    with jax.enable_x64(True):
        params, x, y = _unit_blocks_problem(activation)
        blocks = obs.unit_blocks(params, x, y, activation=activation, batch_size=9)  # 8 chunks
    ref = _unit_blocks_reference(activation)
    for b, r in zip(blocks, ref, strict=True):
        assert b.dtype == np.float64 and b.shape == r.shape
        np.testing.assert_allclose(b, r, rtol=1e-10, atol=1e-14)
    assert np.all(blocks[0][:, 2, :] == 0) and np.all(blocks[0][:, :, 2] == 0)  # blank input


def _brute_force_obs_step(w, h):
    """Every single removal q solved directly: minimise 0.5 d^T H d subject to d_q = -w_q."""
    costs, deltas = [], []
    for q in range(len(w)):
        rest = np.arange(len(w)) != q
        d = np.zeros_like(w)
        d[q] = -w[q]
        d[rest] = np.linalg.solve(h[np.ix_(rest, rest)], -h[rest, q] * d[q])
        costs.append(0.5 * d @ h @ d)
        deltas.append(d)
    q = int(np.argmin(costs))
    return q, costs[q], w + deltas[q]


def test_one_greedy_step_equals_brute_force_obs_on_the_block():
    with jax.enable_x64(True):
        params, x, y = _deep_net(seed=1)
        blocks = obs.unit_blocks(params, x, y)
        traces = obs.global_obs_traces(params, x, y, damping=0.05, blocks=blocks)
    for layer, b, t in zip(params, blocks, traces, strict=True):
        for o in range(b.shape[0]):
            h = b[o] + 0.05 * np.trace(b[o]) / len(b[o]) * np.eye(len(b[o]))
            q, cost, w1 = _brute_force_obs_step(np.asarray(layer["kernel"][:, o]), h)
            assert int(t.order[o, 0]) == q
            assert t.increments[o, 0] == pytest.approx(cost, rel=1e-9)
            np.testing.assert_allclose(t.weights[o, 1], w1, rtol=1e-8, atol=1e-12)
            # every later step is the brute-force step from the previous state on what remains
            # (the compacted greedy matches step by step), and the increments add up
            delta = t.weights[o, -1] - t.weights[o, 0]
            assert 0.5 * delta @ h @ delta == pytest.approx(t.increments[o].sum(), rel=1e-8)


def test_compacted_greedy_equals_the_plain_greedy():
    rng = np.random.default_rng(3)
    d = 150  # three stages: 150, 75, 38 -> ... (compacting twice)
    a = rng.normal(size=(400, d))
    hinv = np.linalg.inv(a.T @ a / 400 + 0.01 * np.eye(d))
    w = rng.normal(size=d)
    with jax.enable_x64(True):
        ref = obs.obs_unit_trace(jnp.asarray(w), jnp.asarray(hinv))
        got = obs.obs_unit_trace_compacted(jnp.asarray(w), jnp.asarray(hinv))
    np.testing.assert_array_equal(got[1], ref[1])
    np.testing.assert_allclose(got[0], ref[0], rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(got[2], ref[2], rtol=1e-9, atol=1e-15)


def _trace(increments):
    inc = np.asarray(increments, np.float64)
    out, d = inc.shape
    order = np.tile(np.arange(d), (out, 1))
    return obs.LayerTrace(np.zeros((out, d + 1, d)), order, inc)


def _allocate_by_priority_queue(traces, k):
    """Reference: k times, take the next removal of the unit whose next running-max increment is
    least (ties: earlier layer, unit)."""
    counts = [np.zeros(t.order.shape[0], int) for t in traces]
    level = [np.zeros(t.order.shape[0]) for t in traces]
    for _ in range(k):
        best = None
        for li, t in enumerate(traces):
            for o in range(t.order.shape[0]):
                j = counts[li][o]
                if j < t.order.shape[1]:
                    cost = max(level[li][o], t.increments[o, j])
                    if best is None or cost < best[0]:
                        best = (cost, li, o)
        cost, li, o = best
        counts[li][o] += 1
        level[li][o] = cost
    return counts


def test_global_allocation_takes_the_cheapest_removal():
    a, b = _trace([[1.0, 5.0, 2.0]]), _trace([[3.0, 4.0, 6.0], [0.5, 9.0, 0.1]])
    # running max: a [1 5 5]; b [3 4 6], [0.5 9 9]
    expected = {1: ([0], [0, 1]), 2: ([1], [0, 1]), 3: ([1], [1, 1]), 4: ([1], [2, 1]),
                5: ([2], [2, 1]), 6: ([3], [2, 1]), 9: ([3], [3, 3])}  # fmt: skip
    for k, (ca, cb) in expected.items():
        got = obs.global_allocate([a, b], k)
        np.testing.assert_array_equal(got[0], ca)
        np.testing.assert_array_equal(got[1], cb)
    rng = np.random.default_rng(0)
    traces = [_trace(rng.exponential(size=(4, 6))), _trace(rng.exponential(size=(3, 5)) * 0.5)]
    ks = np.arange(4 * 6 + 3 * 5 + 1)
    counts = obs.global_allocate(traces, ks)
    for k in ks:
        ref = _allocate_by_priority_queue(traces, int(k))
        for c, r in zip(counts, ref, strict=True):
            np.testing.assert_array_equal(c[k], r)
    with jax.enable_x64(True):  # on a real net: the first removal is the cheapest first step
        params, x, y = _deep_net(seed=2)
        real = obs.global_obs_traces(params, x, y)
    first = obs.global_allocate(real, 1)
    cheapest = min(float(t.increments[:, 0].min()) for t in real)
    taken = [(li, o) for li, c in enumerate(first) for o in np.flatnonzero(c)]
    assert len(taken) == 1
    li, o = taken[0]
    assert real[li].increments[o, 0] == cheapest


@pytest.mark.parametrize("update", [True, False])
def test_global_obs_sweep_levels_counts_and_one_pass(update):
    params, x, y = _deep_net(seed=4, sizes=(12, 10, 8, 4), dtype=jnp.float32)
    params[0]["bias"] = params[0]["bias"] + 0.1
    fractions = [0.0, 0.25, 0.5, 0.9, 1.0]
    traces = obs.global_obs_traces(params, x, y)
    table = obs.global_obs_sweep(
        params, x, y, fractions, x, y, traces=traces, update=update, stages=1
    )
    assert isinstance(table, pd.DataFrame)
    assert list(table.columns) == ["fraction", "pruned_fraction", "n_pruned", "accuracy", "loss"]
    n = sum(int(np.size(p["kernel"])) for p in params)
    np.testing.assert_array_equal(table.n_pruned, prune_counts(fractions, n))
    assert table.accuracy.iloc[0] == pytest.approx(float(accuracy(params, x, y)))
    for f, acc, ce in zip(fractions, table.accuracy, table.loss, strict=True):
        pruned = obs.global_obs_prune(params, x, y, f, traces=traces, update=update, stages=1)
        assert float(accuracy(pruned, x, y)) == pytest.approx(acc, abs=1e-6)
        assert float(loss(pruned, x, y)) == pytest.approx(ce, rel=1e-5)
        zeros = sum(int((np.asarray(q["kernel"]) == 0).sum()) for q in pruned)
        assert zeros == prune_counts(f, n)
        for p, q in zip(params, pruned, strict=True):
            np.testing.assert_array_equal(q["bias"], p["bias"])  # biases kept
            if not update:  # mask only: the kept weights are the original ones
                kept = np.asarray(q["kernel"]) != 0
                np.testing.assert_array_equal(np.asarray(q["kernel"])[kept],
                                              np.asarray(p["kernel"])[kept])  # fmt: skip
    # the two flavours remove the same weights
    with_update = obs.global_obs_prune(params, x, y, 0.5, traces=traces, update=True, stages=1)
    mask_only = obs.global_obs_prune(params, x, y, 0.5, traces=traces, update=False, stages=1)
    for p, q in zip(with_update, mask_only, strict=True):
        np.testing.assert_array_equal(np.asarray(p["kernel"]) == 0, np.asarray(q["kernel"]) == 0)


def test_global_obs_update_lowers_the_loss_at_low_sparsity(toy_data):
    """On a trained net the quadratic model holds for small removals: with the update the loss
    rises less than with the same mask alone, and the estimate tracks the actual increase."""

    x, y, _, _ = toy_data
    cfg = TrainConfig(sizes=(20, 16, 3), steps=600, batch_size=50, chunk_steps=200)
    params, _ = train(cfg, data=toy_data, progress=False)
    traces = obs.global_obs_traces(params, x, y, damping=1e-3)
    base = float(loss(params, x, y))
    for f in (0.1, 0.2):
        upd = (
            float(loss(obs.global_obs_prune(params, x, y, f, traces=traces, stages=1), x, y)) - base
        )
        mask = obs.global_obs_prune(params, x, y, f, traces=traces, update=False, stages=1)
        assert upd < float(loss(mask, x, y)) - base


def test_global_obs_accepts_nnx_models():

    from obd.study import architectures

    params, x, y = _deep_net(seed=5, sizes=(6, 5, 3), dtype=jnp.float32)
    a = obs.global_obs_sweep(params, x, y, [0.0, 0.5], x, y, stages=1)
    b = obs.global_obs_sweep(module_from_params(params), x, y, [0.0, 0.5], x, y, stages=1)
    pd.testing.assert_frame_equal(a, b)
    seq = nets.mlp((6, 5, 4, 3), rngs=nnx.Rngs(0), activation=jax.nn.leaky_relu)
    plain = [{"kernel": layer.kernel[...], "bias": layer.bias[...]} for layer in seq.layers
             if isinstance(layer, nnx.Linear)]  # fmt: skip
    c = obs.global_obs_sweep(seq, x, y, [0.0, 0.3, 0.7], x, y, stages=1)
    d = obs.global_obs_sweep(plain, x, y, [0.0, 0.3, 0.7], x, y, activation="leaky_relu", stages=1)
    pd.testing.assert_frame_equal(c, d)
    with pytest.raises(ValueError, match="dense layers"):
        obs.global_obs_sweep(architectures.lenet5(nnx.Rngs(0)), x, y, [0.5], x, y, stages=1)


def test_global_obs_bad_input_raises_value_error():
    params, x, y = _deep_net(seed=6, sizes=(6, 5, 3), dtype=jnp.float32)
    sweep_ = obs.global_obs_sweep
    with pytest.raises(ValueError, match="fraction"):
        sweep_(params, x, y, [0.5, 1.5], x, y, stages=1)
    with pytest.raises(ValueError, match="damping"):
        sweep_(params, x, y, [0.5], x, y, damping=-1.0, stages=1)
    with pytest.raises(ValueError, match="singular"):
        sweep_(params, x, y, [0.5], x, y, damping=0.0, stages=1)  # input 2 is blank
    with pytest.raises(ValueError, match="update"):
        sweep_(params, x, y, [0.5], x, y, update="yes", stages=1)
    bad = x.copy()
    bad[3, 1] = np.nan
    with pytest.raises(ValueError, match="non-finite"):
        sweep_(params, bad, y, [0.5], x, y, stages=1)
    with pytest.raises(ValueError, match="labels"):
        sweep_(params, x, y + 5, [0.5], x, y, stages=1)
    with pytest.raises(ValueError, match="x must be"):
        sweep_(params, x[:, :4], y, [0.5], x, y, stages=1)
    with pytest.raises(ValueError, match="x_test"):
        sweep_(params, x, y, [0.5], x[:, :4], y, stages=1)
    with pytest.raises(ValueError, match="y_test"):
        sweep_(params, x, y, [0.5], x, y[:-1], stages=1)
    with pytest.raises(ValueError, match="batch_size"):
        obs.unit_blocks(params, x, y, batch_size=0)
    with pytest.raises(ValueError, match="blocks"):
        obs.global_obs_traces(params, x, y, blocks=obs.unit_blocks(params, x, y)[:1])
    with pytest.raises(ValueError, match="traces"):
        sweep_(params, x, y, [0.5], x, y, traces=obs.global_obs_traces(params, x, y)[:1], stages=1)
    with pytest.raises(ValueError, match="k must be"):
        obs.global_allocate(obs.global_obs_traces(params, x, y), 10**6)
    with pytest.raises(ValueError, match="single number"):
        obs.global_obs_prune(params, x, y, [0.1, 0.2], stages=1)


# --- input checks, MLPs with other activations ---------------------------------------------------


def test_layerwise_obs_checks_its_inputs(toy_data, toy_net):
    x, y, xt, yt = toy_data
    nan = x.copy()
    nan[3, 1] = np.nan
    with pytest.raises(ValueError, match=r"x_calib has 1 non-finite value\(s\).*at index 3"):
        obs.obs_sweep(toy_net, nan, [0.5], xt, yt)
    with pytest.raises(ValueError, match=r"x_calib has 1 non-finite value\(s\)"):
        obs.obs_prune(toy_net, nan, 0.5)
    with pytest.raises(ValueError, match=r"x_test has 1 non-finite value\(s\)"):
        obs.obs_sweep(toy_net, x, [0.5], nan, y)
    for label in (-1, 3):
        bad = yt.copy()
        bad[5] = label
        with pytest.raises(ValueError, match=r"y_test holds labels in .*3 classes.*index 5"):
            obs.obs_sweep(toy_net, x, [0.5], xt, bad)
        with pytest.raises(ValueError, match=r"y_test holds labels"):
            obs_sweep_model(toy_net, x, [0.5], xt, bad)
    with pytest.raises(ValueError, match="the layer's inputs hold NaN or inf"):
        obs.obs_layer_trace(np.ones((20, 3), np.float32), np.full((5, 20), 1e30, np.float32))


@pytest.mark.parametrize("activation", ["tanh", "sigmoid", "leaky_relu"])
def test_global_obs_evaluates_an_mlp_with_its_own_activation(toy_data, toy_net, activation):
    x, y, xt, yt = toy_data
    module = module_from_params(toy_net, activation=activation)
    logits = module(jnp.asarray(xt))  # the model's own forward pass: the reference
    want_acc = float((logits.argmax(-1) == yt).mean())
    want_loss = float(optax.softmax_cross_entropy_with_integer_labels(logits, yt).mean())
    # a large damping: the exact blocks of an untrained tanh or sigmoid toy_net are indefinite
    table = obs.global_obs_sweep(module, x, y, [0.0, 0.5], xt, yt, damping=1e3, stages=1)
    assert table["accuracy"][0] == pytest.approx(want_acc, abs=1e-6)
    assert table["loss"][0] == pytest.approx(want_loss, rel=1e-5)
    pruned = obs.global_obs_prune(module, x, y, 0.5, damping=1e3, stages=1)
    pruned_module = module_from_params(pruned, activation=activation)
    logits = pruned_module(jnp.asarray(xt))
    assert table["loss"][1] == pytest.approx(
        float(optax.softmax_cross_entropy_with_integer_labels(logits, yt).mean()), rel=1e-5
    )
    # the curvature is that of the model's activation too: as for the plain pytree
    blocks = obs.unit_blocks(module, x, y)
    plain = obs.unit_blocks(toy_net, x, y, activation=activation)
    for a, b in zip(blocks, plain, strict=True):
        np.testing.assert_array_equal(a, b)
    with pytest.raises(ValueError, match=f"activation='relu' conflicts with the model's own "
                                         f"activation '{activation}'"):  # fmt: skip
        obs.global_obs_sweep(module, x, y, [0.5], xt, yt, activation="relu", stages=1)


def test_obs_refuses_nan_weights_and_non_finite_results(toy_data, toy_net):
    x, y, xt, yt = toy_data
    bad = jax.tree.map(np.array, toy_net)
    bad[0]["bias"][2] = np.inf
    for fn in (
        lambda p: obs.obs_sweep(p, x, [0.0, 0.5], xt, yt),
        lambda p: obs.global_obs_sweep(p, x, y, [0.0, 0.5], xt, yt, stages=1),
    ):
        with pytest.raises(ValueError, match=r"parameter params\[0\]\['bias'\] holds 1 non-finite"):
            fn(bad)
    with pytest.raises(ValueError, match=r"not finite|damping"):
        obs.global_obs_sweep(toy_net, x, y, [0.0, 0.5], xt, yt, damping=1e300, stages=1)


def test_global_obs_step_from_a_sparse_model_is_one_shot_global_obs():
    """``global_obs_step`` computes the blocks on each unit's nonzero weights only; from a dense
    or a sparse model its kernels equal one-shot global OBS on the full blocks, zeros stay zero,
    and a level below the zeros already there revives none."""
    with jax.enable_x64(True):
        params, x, y = _deep_net(seed=6, sizes=(9, 8, 6, 3))
        for f in (0.3, 0.7):
            step = obs.global_obs_step(params, x, y, f)
            ref = obs.global_obs_prune(params, x, y, f, stages=1)
            for k, r in zip(step, ref, strict=True):
                np.testing.assert_allclose(k, np.asarray(r["kernel"]), rtol=1e-9, atol=1e-12)
        sparse = obs.global_obs_prune(params, x, y, 0.4, stages=1, update=False)
        n = sum(int(np.size(p["kernel"])) for p in params)
        for f in (0.6, 0.9):
            step = obs.global_obs_step(sparse, x, y, f)
            ref = obs.global_obs_prune(sparse, x, y, f, stages=1)
            assert sum(int((k == 0).sum()) for k in step) == prune_counts(f, n)
            for k, r, s in zip(step, ref, sparse, strict=True):
                np.testing.assert_allclose(k, np.asarray(r["kernel"]), rtol=1e-9, atol=1e-12)
                assert np.all(k[np.asarray(s["kernel"]) == 0] == 0)
        low = obs.global_obs_step(sparse, x, y, 0.1)  # below the 40% already zero
        for k, s in zip(low, sparse, strict=True):
            np.testing.assert_array_equal(k == 0, np.asarray(s["kernel"]) == 0)
    with pytest.raises(ValueError, match="fraction must be a single number"):
        obs.global_obs_step(params, x, y, [0.5])
    with pytest.raises(ValueError, match="damping"):
        obs.global_obs_step(params, x, y, 0.5, damping=-1.0)

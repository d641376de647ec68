"""Multi-stage global OBS (obd.obs.stages): the schedule, pruned weights held at zero (against OBS on
the restricted block), the stages against a path built from one-shot calls, the re-solve against
jax.hessian in float64, and the checks."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from obd import obs
from obd.mlp import init_mlp, loss
from obd.obs.stages import STEP_LENGTHS, newton_directions, resolve_step, stage_bounds
from obd.prune import prune_counts


def _net(seed=0, sizes=(7, 6, 5, 3), dtype=jnp.float64, n=80):
    """A small net with nonzero biases and data with one input blank on every example."""
    params = jax.tree.map(lambda a: jnp.asarray(a, dtype), init_mlp(jax.random.key(seed), sizes))
    params[0]["bias"] = params[0]["bias"] + 0.2
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, sizes[0])) + 0.3
    x[:, 2] = 0.0
    y = rng.integers(0, sizes[-1], n).astype(np.int32)
    return params, x.astype(np.dtype(dtype)), y


def _zeros(params):
    return [np.asarray(p["kernel"]) == 0 for p in params]


def test_stage_bounds_fall_geometrically_in_the_remaining_density():
    n = 10_000
    # dense to 99%: density 1 -> 0.01 in 4 stages, ends at densities 0.316, 0.1, 0.0316
    got = stage_bounds(np.array([0, 5000, 9900, n]), n, 0, 4)
    expected = [round(n * (1 - 0.01 ** (j / 4))) for j in (1, 2, 3)]
    assert got == expected
    # from a model already 50% zero, to 95%: density 0.5 -> 0.05 in 2 stages
    assert stage_bounds(np.array([9500]), n, 5000, 2) == [round(n * (1 - 0.5 * 0.1**0.5))]
    assert stage_bounds(np.array([9900]), n, 0, 1) == []  # one stage: one-shot
    assert stage_bounds(np.array([0, n]), n, 0, 4) == []  # nothing between start and target
    assert stage_bounds(np.array([3]), n, 0, 8) == [1, 2]  # ends falling together are dropped


def test_pruned_weights_are_held_at_zero_exactly_as_obs_on_the_restricted_block():
    """A unit's greedy pass from weights with zeros removes the zeros first at zero cost, then
    continues exactly as greedy OBS on the damped block restricted to its nonzero weights."""
    damping = 0.05
    with jax.enable_x64(True):
        params, x, y = _net(seed=1)
        rng = np.random.default_rng(1)
        for p in params:
            p["kernel"] = jnp.where(rng.random(p["kernel"].shape) < 0.4, 0.0, p["kernel"])
        blocks = obs.unit_blocks(params, x, y)
        traces = obs.global_obs_traces(params, x, y, damping=damping, blocks=blocks)
        for layer, block, trace in zip(params, blocks, traces, strict=True):
            kernel = np.asarray(layer["kernel"])
            scale = np.einsum("oii->o", block) / block.shape[1]
            lam = damping * np.where(scale > 0, scale, scale.mean())
            for o in range(kernel.shape[1]):
                z = np.flatnonzero(kernel[:, o] == 0)
                keep = np.flatnonzero(kernel[:, o] != 0)
                assert set(trace.order[o, : z.size]) == set(z)
                np.testing.assert_array_equal(trace.increments[o, : z.size], 0.0)
                np.testing.assert_array_equal(trace.weights[o, z.size], kernel[:, o])
                h = block[o][np.ix_(keep, keep)] + lam[o] * np.eye(keep.size)
                w_ref, order_ref, inc_ref = obs.obs_unit_trace(
                    jnp.asarray(kernel[keep, o]), jnp.asarray(np.linalg.inv(h))
                )
                np.testing.assert_array_equal(trace.order[o, z.size :], keep[np.asarray(order_ref)])
                np.testing.assert_allclose(trace.increments[o, z.size :], inc_ref, rtol=1e-7)
                np.testing.assert_allclose(
                    trace.weights[o, z.size :][:, keep], w_ref, rtol=1e-7, atol=1e-12
                )


def _one_shot_path(params, x, y, ends, fraction, damping):
    """Reference: one-shot global OBS to each stage end in turn, from the previous one's result."""
    n = sum(int(np.size(p["kernel"])) for p in params)
    state = params
    for k in [*ends, int(prune_counts(fraction, n))]:
        state = obs.global_obs_prune(state, x, y, k / n, damping=damping, stages=1)
    return state


def test_stages_continue_from_each_stage_as_a_fresh_one_shot_prune():
    with jax.enable_x64(True):
        params, x, y = _net(seed=2)
        n = sum(int(np.size(p["kernel"])) for p in params)
        for stages, fraction in ((2, 0.6), (3, 0.8)):
            ends = stage_bounds(prune_counts([fraction], n), n, 0, stages)
            assert len(ends) == stages - 1
            got = obs.global_obs_prune(
                params, x, y, fraction, stages=stages, resolve=False, damping=0.05
            )
            ref = _one_shot_path(params, x, y, ends, fraction, 0.05)
            for g, r in zip(got, ref, strict=True):
                np.testing.assert_allclose(g["kernel"], r["kernel"], rtol=1e-9, atol=1e-12)
                np.testing.assert_array_equal(np.asarray(g["kernel"]) == 0,
                                              np.asarray(r["kernel"]) == 0)  # fmt: skip
            # the first stage's zeros are kept to the end
            first = obs.global_obs_prune(params, x, y, ends[0] / n, damping=0.05, stages=1)
            for a, b in zip(_zeros(first), _zeros(got), strict=True):
                assert not np.any(a & ~b)


def test_a_staged_sweep_shares_one_path_and_matches_prune():
    fractions = [0.0, 0.2, 0.5, 0.7, 0.85, 1.0]
    with jax.enable_x64(True):
        params, x, y = _net(seed=3)
        n = sum(int(np.size(p["kernel"])) for p in params)
        one = obs.global_obs_sweep(params, x, y, fractions, x, y, damping=0.05, stages=1)
        table = obs.global_obs_sweep(
            params, x, y, fractions, x, y, damping=0.05, stages=3, resolve=False
        )
        ends = [r["removed"] for r in table.attrs["stages"]]
        assert ends == stage_bounds(prune_counts(fractions, n), n, 0, 3)
        np.testing.assert_array_equal(table.n_pruned, prune_counts(fractions, n))
        # levels before the first stage end are the one-shot ones
        early = prune_counts(fractions, n) <= ends[0]
        assert early.sum() >= 2
        np.testing.assert_allclose(table.accuracy[early], one.accuracy[early])
        np.testing.assert_allclose(table.loss[early], one.loss[early], rtol=1e-12)
        # the largest level below 100% is the staged prune to it
        pruned = obs.global_obs_prune(params, x, y, 0.85, damping=0.05, stages=3, resolve=False)
        assert table.loss.iloc[4] == pytest.approx(float(loss(pruned, x, y)), rel=1e-9)
        # stages=1 is today's one-shot sweep, with or without resolve
        again = obs.global_obs_sweep(
            params, x, y, fractions, x, y, damping=0.05, stages=1, resolve=True
        )
        np.testing.assert_array_equal(again.loss, one.loss)
        assert again.attrs["stages"] == []


def test_newton_directions_solve_each_units_exact_block_against_jax_hessian():
    damping = 0.1
    with jax.enable_x64(True):
        params, x, y = _net(seed=4)
        params[1]["kernel"] = params[1]["kernel"].at[0, :].set(0.0).at[3, 1].set(0.0)
        blocks = obs.unit_blocks(params, x, y)
        grads = jax.grad(loss)(params, x, y)
        hess = jax.hessian(loss)(params, x, y)
        got = newton_directions(params, blocks, [g["kernel"] for g in grads], damping)
    for i, (layer, step) in enumerate(zip(params, got, strict=True)):
        kernel = np.asarray(layer["kernel"])
        hk = np.asarray(hess[i]["kernel"][i]["kernel"])  # [in, out, in, out]
        scale = np.array([np.trace(hk[:, o, :, o]) for o in range(kernel.shape[1])]) / len(hk)
        scale = np.where(scale > 0, scale, scale.mean())  # a dead unit takes the layer's mean
        for o in range(kernel.shape[1]):
            keep = np.flatnonzero(kernel[:, o] != 0)
            block = hk[:, o, :, o]
            lam = damping * scale[o]
            h = block[np.ix_(keep, keep)] + lam * np.eye(keep.size)
            ref = -np.linalg.solve(h, np.asarray(grads[i]["kernel"])[keep, o])
            np.testing.assert_allclose(step[keep, o], ref, rtol=1e-8, atol=1e-12)
            np.testing.assert_array_equal(step[kernel[:, o] == 0, o], 0.0)


def test_resolve_step_lowers_the_loss_and_keeps_zeros():
    params, x, y = _net(seed=5, dtype=jnp.float32)
    pruned = obs.global_obs_prune(params, x, y, 0.6, damping=0.05, stages=1)
    blocks = obs.unit_blocks(pruned, x, y)
    moved, alpha = resolve_step(pruned, blocks, x, y, damping=0.05, activation="relu")
    assert alpha in (0.0, *STEP_LENGTHS)
    assert float(loss(moved, x, y)) <= float(loss(pruned, x, y))
    if alpha > 0:
        assert float(loss(moved, x, y)) < float(loss(pruned, x, y))
    for a, b, p in zip(_zeros(pruned), _zeros(moved), moved, strict=True):
        np.testing.assert_array_equal(a, b)
        assert np.isfinite(np.asarray(p["kernel"])).all()
    table = obs.global_obs_sweep(
        params, x, y, [0.3, 0.6, 0.8], x, y, damping=0.05, stages=2, resolve=True
    )
    assert all(r["alpha"] in (0.0, *STEP_LENGTHS) for r in table.attrs["stages"])
    np.testing.assert_array_equal(table.n_pruned, prune_counts([0.3, 0.6, 0.8], 7 * 6 + 30 + 15))


def test_the_default_is_the_setting_chosen_on_validation_data():
    """8 stages with the re-solve by default (bench/global_obs_stages.md); stages=1 is one-shot,
    which mask only (update=False) needs."""
    import inspect

    from obd.obs.stages import DEFAULT_RESOLVE, DEFAULT_STAGES

    assert (DEFAULT_STAGES, DEFAULT_RESOLVE) == (8, True)
    for fn in (obs.global_obs_sweep, obs.global_obs_prune):
        sig = inspect.signature(fn).parameters
        assert (sig["stages"].default, sig["resolve"].default) == (8, True)
    params, x, y = _net(seed=8, dtype=jnp.float32)
    table = obs.global_obs_sweep(params, x, y, [0.5, 0.9], x, y, damping=0.05)
    assert len(table.attrs["stages"]) == 7
    assert all(r["alpha"] is not None for r in table.attrs["stages"])
    with pytest.raises(ValueError, match="stages > 1 needs update=True"):
        obs.global_obs_prune(params, x, y, 0.5, update=False)


def test_stages_bad_input_raises_value_error():
    params, x, y = _net(seed=6, dtype=jnp.float32)
    for bad in (0, -1, 1.5, True, "2", None):
        with pytest.raises(ValueError, match="stages must be an integer >= 1"):
            obs.global_obs_sweep(params, x, y, [0.5], x, y, stages=bad)
        with pytest.raises(ValueError, match="stages must be an integer >= 1"):
            obs.global_obs_prune(params, x, y, 0.5, stages=bad)
    for bad in ("yes", 1, None):
        with pytest.raises(ValueError, match="resolve must be True or False"):
            obs.global_obs_sweep(params, x, y, [0.5], x, y, resolve=bad)
    with pytest.raises(ValueError, match="stages > 1 needs update=True"):
        obs.global_obs_sweep(params, x, y, [0.5], x, y, stages=2, update=False)
    with pytest.raises(ValueError, match="stages > 1 needs update=True"):
        obs.global_obs_prune(params, x, y, 0.5, stages=2, update=False)
    with pytest.raises(ValueError, match="stages > 1 needs the calibration data x, y"):
        obs.global_obs_prune(params, None, None, 0.5, traces=obs.global_obs_traces(params, x, y))
    with pytest.raises(ValueError, match="stages > 1 needs the calibration data x, y"):
        obs.global_obs_sweep(params, x, None, [0.5], x, y)
    nan = x.copy()
    nan[0, 0] = np.nan
    with pytest.raises(ValueError, match="non-finite"):
        obs.global_obs_sweep(params, nan, y, [0.5], x, y, stages=2)


@pytest.mark.parametrize(("sizes", "zeros"), [((7, 6, 5, 3), 0.5), ((40, 6, 5, 3), 0.8)])
def test_blocks_and_traces_on_the_support_match_the_full_ones(sizes, zeros):
    from obd.obs.blocks import support_blocks, support_index
    from obd.obs.global_obs import support_traces
    from obd.obs.levels import layer_kernels

    damping = 0.05
    with jax.enable_x64(True):
        params, x, y = _net(seed=7, sizes=sizes)
        rng = np.random.default_rng(7)
        for p in params:
            p["kernel"] = jnp.where(rng.random(p["kernel"].shape) < zeros, 0.0, p["kernel"])
        full = obs.unit_blocks(params, x, y)
        index = support_index(params)
        blocks, scales = support_blocks(params, x, y, index)
        for f, b, s, idx, p in zip(full, blocks, scales, index, params, strict=True):
            nonzero = (np.asarray(p["kernel"]) != 0).T
            m = max(1, nonzero.sum(axis=1).max())
            assert m <= idx.shape[1] <= min(nonzero.shape[1], m + 15)
            for o in range(len(idx)):
                assert set(np.flatnonzero(nonzero[o])) <= set(idx[o])
                np.testing.assert_allclose(b[o], f[o][np.ix_(idx[o], idx[o])], rtol=1e-10)
            np.testing.assert_allclose(s, np.einsum("oii->o", f) / f.shape[1], rtol=1e-10)
        if sizes[0] == 40:  # the first layer's units keep fewer than 40 inputs
            assert index[0].shape[1] < 40
        ref = obs.global_obs_traces(params, x, y, damping=damping, blocks=full)
        got = support_traces(params, index, blocks, scales, damping)
        n = sum(int(np.size(p["kernel"])) for p in params)
        ks = np.arange(n + 1)
        for r, g, cr, cg in zip(
            ref, got, obs.global_allocate(ref, ks), obs.global_allocate(got, ks), strict=True
        ):
            np.testing.assert_allclose(
                layer_kernels(g, cg), layer_kernels(r, cr), rtol=1e-8, atol=1e-12
            )
        grads = [g["kernel"] for g in jax.grad(loss)(params, x, y)]
        on_support = newton_directions(params, blocks, grads, 0.1, index=index, scales=scales)
        on_full = newton_directions(params, full, grads, 0.1)
    for a, b in zip(on_support, on_full, strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-8, atol=1e-14)

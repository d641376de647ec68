"""Retraining with a fixed mask and iterative pruning (obd.retrain): plain MLPs, Flax NNX models
(convolutions included) and every problem of the shared table (tests/problems.py)."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pandas as pd
import pytest
from flax import nnx
from jax.flatten_util import ravel_pytree

import problems
from obd import nets, retrain
from obd.mlp import loss
from obd.prune import apply_masks, masks, prune_counts
from obd.retrain import iterative_prune, retrain_masked
from obd.saliencies import saliency
from problems import PROBLEM_IDS, PROBLEMS, keep_all, kernel_zeros, sparsify

SIZES = (20, 16, 16, 3)


@pytest.fixture(scope="module")
def trained(trained_toy_mlp):
    """conftest's trained toy MLP and its data."""
    return trained_toy_mlp


def _random_masks(params, fraction, seed=0):
    scores = saliency("random", params, key=seed)
    return masks(scores, fraction, scope="layerwise", include_biases=True)


def test_pruned_weights_stay_exactly_zero_and_the_rest_trains(trained):
    params, (x, y, _, _) = trained
    keep = _random_masks(params, 0.6)
    out = retrain.retrain_masked(params, keep, x, y, steps=300, learning_rate=1e-3,
                                 chunk_steps=128)  # fmt: skip
    changed, kept = 0, 0
    for p, q, k in zip(jax.tree.leaves(params), jax.tree.leaves(out), jax.tree.leaves(keep),
                       strict=True):  # fmt: skip
        q, k = np.asarray(q), np.asarray(k)
        assert np.all(q[~k] == 0.0)  # exactly zero, the biases pruned here too
        changed += int((q[k] != np.asarray(p)[k]).sum())
        kept += int(k.sum())
    assert changed > 0.6 * kept  # the survivors did train (dead units' weights do not)


def test_masked_dropout_retraining_keeps_zeros(trained):
    params, (x, y, _, _) = trained
    keep = _random_masks(params, 0.5, seed=3)
    out = retrain.retrain_masked(params, keep, x, y, steps=50, dropout_rate=0.3)
    for q, k in zip(jax.tree.leaves(out), jax.tree.leaves(keep), strict=True):
        assert np.all(np.asarray(q)[~np.asarray(k)] == 0.0)


def test_retraining_after_pruning_recovers_loss(trained):
    params, (x, y, _, _) = trained
    base = float(loss(params, x, y))
    keep = masks(saliency("magnitude", params), 0.8, scope="global")
    pruned = apply_masks(params, keep)
    hurt = float(loss(pruned, x, y))
    assert hurt > base + 0.05  # pruning 80% does hurt
    out, train_loss = retrain.retrain_masked(pruned, keep, x, y, steps=1000, learning_rate=3e-3,
                                             loss_reduction="mean", return_loss=True)  # fmt: skip
    healed = float(loss(out, x, y))
    assert healed < hurt - 0.5 * (hurt - base)
    # the per-example mean over the last chunk's batches (not divided again by the batch size)
    assert 0.3 * healed < train_loss < hurt


def test_retraining_is_deterministic(trained):
    params, (x, y, _, _) = trained
    keep = _random_masks(params, 0.3)
    a = retrain.retrain_masked(params, keep, x, y, steps=40, seed=5)
    b = retrain.retrain_masked(params, keep, x, y, steps=40, seed=5)
    for u, v in zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True):
        np.testing.assert_array_equal(u, v)
    same = retrain.retrain_masked(params, keep, x, y, steps=0)
    np.testing.assert_array_equal(same[0]["kernel"], apply_masks(params, keep)[0]["kernel"])


@pytest.mark.parametrize("kind", retrain.SALIENCIES)
def test_iterative_prune_follows_the_schedule_with_nested_masks(trained, kind):
    params, data = trained
    schedule = [0.5, 0.75, 0.9]
    df, out = retrain.iterative_prune(params, *data, saliency=kind, schedule=schedule,
                                      retrain_steps=200, learning_rate=1e-3,
                                      return_params=True)  # fmt: skip
    n = sum(layer["kernel"].size for layer in params)
    assert list(df["round"]) == [0, 1, 2, 3]
    assert list(df["fraction"]) == [0.0, *schedule]
    assert list(df["n_pruned"]) == [0, *(int(prune_counts(f, n)) for f in schedule)]
    assert np.allclose(df["pruned_fraction"], df["n_pruned"] / n)
    assert df[["accuracy", "accuracy_pruned"]].stack().between(0, 1).all()
    assert df.loc[0, "accuracy"] == df.loc[0, "accuracy_pruned"]
    zeros = sum(int((np.asarray(layer["kernel"]) == 0).sum()) for layer in out)
    assert zeros == df["n_pruned"].iloc[-1]
    # retraining helps at the last, sparsest level
    assert df["accuracy"].iloc[-1] >= df["accuracy_pruned"].iloc[-1]


def test_iterative_prune_takes_retraining_steps_per_round(trained):
    """A list of step counts retrains each round for its own count: equal counts give exactly
    the single-count run, and each round's row records the steps it used (0 for the dense row)."""
    params, data = trained
    schedule = [0.5, 0.75]
    one = retrain.iterative_prune(params, *data, schedule=schedule, retrain_steps=30,
                                  learning_rate=1e-3)  # fmt: skip
    listed = retrain.iterative_prune(params, *data, schedule=schedule, retrain_steps=[30, 30],
                                     learning_rate=1e-3)  # fmt: skip
    cols = ["n_pruned", "accuracy_pruned", "accuracy", "loss", "train_loss"]
    pd.testing.assert_frame_equal(one[cols], listed[cols])
    assert list(listed["retrain_steps"]) == [0, 30, 30]
    # no retraining in the second round: its accuracy is that right after pruning
    mixed = retrain.iterative_prune(params, *data, schedule=schedule, retrain_steps=[30, 0],
                                    learning_rate=1e-3)  # fmt: skip
    assert list(mixed["retrain_steps"]) == [0, 30, 0]
    assert mixed["accuracy"].iloc[2] == mixed["accuracy_pruned"].iloc[2]
    assert mixed["accuracy"].iloc[1] == one["accuracy"].iloc[1]
    for bad in ([30], [30, 30, 30], [30, -1], [30, 1.5]):
        with pytest.raises(ValueError, match="retrain_steps"):
            retrain.iterative_prune(params, *data, schedule=schedule, retrain_steps=bad)


def test_schedules():
    np.testing.assert_allclose(retrain.halving_schedule(5), [0.5, 0.75, 0.875, 0.9375, 0.96875])
    assert retrain.halving_schedule(5)[-1] >= 0.95
    np.testing.assert_array_equal(retrain.check_schedule([0.2, 0.5, 1.0]), [0.2, 0.5, 1.0])
    for bad in ([], [0.5, 0.5], [0.6, 0.4], [0.0, 0.5], [0.5, 1.2], [[0.1, 0.2]], "abc",
                [np.nan]):  # fmt: skip
        with pytest.raises(ValueError, match="schedule"):
            retrain.check_schedule(bad)
    with pytest.raises(ValueError, match="rounds"):
        retrain.halving_schedule(0)


def test_bad_input_raises_value_error(trained):
    params, (x, y, xt, yt) = trained
    keep = jax.tree.map(lambda p: np.ones(p.shape, bool), params)
    with pytest.raises(ValueError, match="schedule"):
        retrain.iterative_prune(params, x, y, xt, yt, schedule=[0.9, 0.5])
    with pytest.raises(ValueError, match="saliency"):
        retrain.iterative_prune(params, x, y, xt, yt, saliency="random")
    with pytest.raises(ValueError, match="retrain_steps"):
        retrain.iterative_prune(params, x, y, xt, yt, retrain_steps=-1)
    with pytest.raises(ValueError, match="steps"):
        retrain.retrain_masked(params, keep, x, y, steps=1.5)
    with pytest.raises(ValueError, match="masks"):
        retrain.retrain_masked(params, keep[:1], x, y, steps=1)
    with pytest.raises(ValueError, match="x must be"):
        retrain.retrain_masked(params, keep, x[:, :3], y, steps=1)
    with pytest.raises(ValueError, match="learning_rate"):
        retrain.retrain_masked(params, keep, x, y, steps=1, learning_rate=0.0)
    assert jnp.isfinite(loss(params, x, y))


# --- every problem of the shared table (tests/problems.py) ---------------------------------------


@pytest.mark.parametrize("problem", PROBLEMS, ids=PROBLEM_IDS)
def test_masked_retraining_keeps_pruned_weights_zero_and_the_input_unchanged(problem):
    """Pruned entries (biases too) stay exactly zero, the kept ones train, the input model is not
    modified, and the result is of the input's kind (pytree or NNX model)."""
    with jax.enable_x64(True):
        model, x, y = problem.make()
        params = problems.param_tree(model)
        before = problems.flat(params)
        keep = masks(saliency("magnitude", model), 0.5, scope="layerwise", include_biases=True)
        out = retrain.retrain_masked(model, keep, x, y, steps=30, batch_size=4,
                                     learning_rate=1e-2, **problem.kwargs)  # fmt: skip
        np.testing.assert_array_equal(problems.flat(problems.param_tree(model)), before)
        trained = problems.param_tree(out)
        assert jax.tree.structure(trained) == jax.tree.structure(params)
        changed, kept = 0, 0
        for p, q, k in zip(jax.tree.leaves(params), jax.tree.leaves(trained), jax.tree.leaves(keep),
                           strict=True):  # fmt: skip
            p, q, k = np.asarray(p), np.asarray(q), np.asarray(k)
            assert np.all(q[~k] == 0.0)
            changed += int((q[k] != p[k]).sum())
            kept += int(k.sum())
        assert changed > 0.5 * kept


# --- Flax NNX models -----------------------------------------------------------------------------


def _images(n=300, seed=0):
    """A learnable 3-class problem on 6x6 images: the class is the brightest third of the image."""
    rng = np.random.default_rng(seed)
    x = rng.uniform(size=(n, 6, 6, 1)).astype(np.float32)
    y = np.stack(
        [x[:, :, :2].sum((1, 2, 3)), x[:, :, 2:4].sum((1, 2, 3)), x[:, :, 4:].sum((1, 2, 3))], 1
    )
    return x, y.argmax(1).astype(np.int32)


def _convnet(seed=0):
    rngs = nnx.Rngs(seed)
    return nnx.Sequential(
        nnx.Conv(1, 4, (3, 3), padding="SAME", rngs=rngs),
        jax.nn.relu,
        nets.avg_pool(2),
        nets.flatten,
        nnx.Linear(36, 3, rngs=rngs),
    )


def _flat(model):
    return np.asarray(ravel_pytree(nnx.state(model, nnx.Param))[0])


def test_nnx_mlp_retrains_exactly_like_the_plain_pytree():
    x, y = _images()
    x = x.reshape(len(x), -1)
    model = nets.mlp((36, 8, 3), rngs=nnx.Rngs(1))
    params = [{"kernel": m.kernel[...], "bias": m.bias[...]} for m in model.layers[::2]]
    keep = masks(saliency("random", params, key=2), 0.4, scope="layerwise")
    keep_state = masks(saliency("random", model, key=2), 0.4, scope="layerwise")
    plain = retrain.retrain_masked(params, keep, x, y, steps=300, learning_rate=1e-2, seed=3)
    trained = retrain.retrain_masked(model, keep_state, x, y, steps=300, learning_rate=1e-2, seed=3)
    np.testing.assert_allclose(_flat(trained), ravel_pytree(plain)[0], rtol=1e-5, atol=1e-6)


def test_masked_convnet_training_keeps_zeros_and_learns():
    x, y = _images()
    model = _convnet()
    before = _flat(model)
    keep = masks(saliency("magnitude", model), 0.5, scope="layerwise")
    trained, loss = retrain.retrain_masked(
        model, keep, x, y, steps=600, learning_rate=1e-2, loss_reduction="mean", return_loss=True
    )
    np.testing.assert_array_equal(_flat(model), before)  # the input model is left unchanged
    w = np.asarray(trained.layers[0].kernel[...])
    assert np.all(w[~np.asarray(keep["layers"][0]["kernel"])] == 0)
    assert np.count_nonzero(w) > 0
    acc = float((trained(jnp.asarray(x)).argmax(-1) == y).mean())
    assert acc > 0.8 and loss < 0.6
    ce = float(optax.softmax_cross_entropy_with_integer_labels(trained(jnp.asarray(x)), y).mean())
    assert ce / 3 < loss < 3 * ce + 0.05  # the per-example mean, not divided by the batch again
    with pytest.raises(ValueError, match="dropout_rate applies to the plain MLP only"):
        retrain.retrain_masked(model, keep, x, y, steps=1, dropout_rate=0.2)
    with pytest.raises(ValueError, match=r"x must be images \[N, height, width, 1\]"):
        retrain.retrain_masked(model, keep, x.reshape(len(x), -1), y, steps=1)


def test_iterative_pruning_of_a_convnet():
    x, y = _images(400)
    model = retrain.retrain_masked(
        _convnet(), masks(saliency("magnitude", _convnet()), 0.0), x, y, steps=600,
        learning_rate=1e-2, loss_reduction="mean",
    )  # fmt: skip
    table, final = retrain.iterative_prune(
        model, x[:300], y[:300], x[300:], y[300:], schedule=[0.5, 0.75], retrain_steps=200,
        learning_rate=3e-3, return_params=True,
    )  # fmt: skip
    n_kernel = 4 * 9 + 36 * 3
    assert table["round"].tolist() == [0, 1, 2]
    assert table["n_pruned"].tolist() == [0, round(0.5 * n_kernel), round(0.75 * n_kernel)]
    kernels = [np.asarray(final.layers[i].kernel[...]) for i in (0, 4)]
    assert sum(int((k == 0).sum()) for k in kernels) == table["n_pruned"].iloc[-1]
    assert table["accuracy"].iloc[-1] > 0.6


# --- bad arguments, models that already have zeros -----------------------------------------------


def test_retrain_wrong_types(toy_data, toy_net):
    x, y, xt, yt = toy_data
    m = keep_all(toy_net)
    for kwargs, match in [
        (dict(steps=2.5), "steps must be an integer"),
        (dict(steps=5, seed=2.7), "seed must be an integer"),
        (dict(steps=5, learning_rate="1e-4"), "learning_rate must be a number"),
        (dict(steps=5, dropout_rate="0.2"), "dropout_rate must be a number"),
    ]:
        with pytest.raises(ValueError, match=match):
            retrain_masked(toy_net, m, x, y, **kwargs)
    with pytest.raises(ValueError, match="retrain_steps must be an integer"):
        iterative_prune(toy_net, x, y, xt, yt, retrain_steps="10")


def test_iterative_pruning_keeps_existing_zeros_pruned(toy_data, toy_net):
    x, y, xt, yt = toy_data
    sparse = sparsify(toy_net)
    n = sum(np.size(layer["kernel"]) for layer in toy_net)
    z = kernel_zeros(sparse)
    df, out = iterative_prune(sparse, x, y, xt, yt, saliency="magnitude", schedule=[0.2, 0.6],
                              retrain_steps=20, return_params=True)  # fmt: skip
    assert list(df.n_pruned) == [z, z, prune_counts(0.6, n)]
    np.testing.assert_array_equal(df.pruned_fraction, df.n_pruned / n)
    assert kernel_zeros(out) == df.n_pruned.iloc[-1]
    for before, after in zip(sparse, out, strict=True):  # retraining revived none of them
        assert not np.asarray(after["kernel"])[np.asarray(before["kernel"]) == 0].any()


# --- validation and the break point --------------------------------------------------------------


def _break_round(val_errors, threshold, patience):
    """Brute force: the round at which ``patience`` rounds in a row exceed ``threshold``."""
    over = 0
    for r, e in enumerate(val_errors[1:], start=1):
        over = over + 1 if e > threshold else 0
        if over >= patience:
            return r
    return len(val_errors) - 1


def test_iterative_prune_stops_at_its_break_point_on_validation_data(trained):
    """With ``break_error`` the run is the unbroken run cut after the first ``patience`` rounds
    in a row whose validation error exceeds it, whatever the test set says; every threshold that
    the unbroken run's validation errors allow is tried."""
    params, (x, y, xt, yt) = trained
    xv, yv = x[400:], y[400:]
    kw = dict(schedule=[0.5, 0.8, 0.9, 0.95, 0.98], retrain_steps=60, learning_rate=1e-3)
    full = iterative_prune(params, x[:400], y[:400], xt, yt, x_val=xv, y_val=yv, **kw)
    acc, _ = retrain._evaluate(params, jnp.asarray(xv), jnp.asarray(yv), "relu")
    assert full.loc[0, "val_accuracy"] == pytest.approx(float(acc))
    errors = (1 - full["val_accuracy"]).to_numpy()
    assert errors[-1] > errors[1]  # the sparsest round is worse on validation: a break exists
    cut_early = 0
    for threshold in sorted(set(errors[1:])):
        for patience in (1, 2):
            stop = _break_round(errors, threshold - 1e-9, patience)
            cut = iterative_prune(params, x[:400], y[:400], xt, yt, x_val=xv, y_val=yv,
                                  break_error=threshold - 1e-9, patience=patience, **kw)  # fmt: skip
            assert cut["round"].tolist() == list(range(stop + 1))
            cols = ["n_pruned", "accuracy", "val_accuracy", "train_loss"]
            pd.testing.assert_frame_equal(cut[cols], full[cols].iloc[: stop + 1])
            cut_early += stop < len(errors) - 1
    assert cut_early > 0


def test_iterative_prune_reports_each_round_to_on_round(trained):
    params, data = trained
    seen = []

    def record(r, p, keep):
        zeros = sum(int((np.asarray(layer["kernel"]) == 0).sum()) for layer in p)
        pruned = sum(int((~np.asarray(k["kernel"])).sum()) for k in keep)
        seen.append((r, zeros, pruned))

    df = iterative_prune(params, *data, schedule=[0.5, 0.75], retrain_steps=20, on_round=record)
    assert [s[0] for s in seen] == [1, 2]
    assert [s[1] for s in seen] == [s[2] for s in seen] == df["n_pruned"].iloc[1:].tolist()


def test_iterative_prune_break_point_bad_input(trained):
    params, (x, y, xt, yt) = trained
    with pytest.raises(ValueError, match="validation set"):
        iterative_prune(params, x, y, xt, yt, break_error=0.1)
    with pytest.raises(ValueError, match="x_val and y_val go together"):
        iterative_prune(params, x, y, xt, yt, x_val=xt)
    with pytest.raises(ValueError, match="patience"):
        iterative_prune(params, x, y, xt, yt, x_val=xt, y_val=yt, break_error=0.1, patience=0)
    with pytest.raises(ValueError, match="break_error"):
        iterative_prune(params, x, y, xt, yt, x_val=xt, y_val=yt, break_error=1.5)
    with pytest.raises(ValueError, match="y_val"):
        iterative_prune(params, x, y, xt, yt, x_val=xt, y_val=yt + 7)
    with pytest.raises(ValueError, match="x_val"):
        iterative_prune(params, x, y, xt, yt, x_val=xt[:, :4], y_val=yt)
    with pytest.raises(ValueError, match="on_round"):
        iterative_prune(params, x, y, xt, yt, on_round="print")


def test_weight_decay_is_adamw_and_keeps_pruned_weights_zero(trained):
    """``weight_decay`` is optax's AdamW on the masked gradient: one masked step checked by hand."""
    import optax

    params, (x, y, _, _) = trained
    keep = masks(saliency("magnitude", params), 0.5, scope="global", include_biases=False)
    pruned = [
        jax.tree.map(lambda p, k: np.where(k, p, 0), a, b)
        for a, b in zip(params, keep, strict=True)
    ]
    out = retrain.retrain_masked(pruned, keep, x, y, steps=1, batch_size=500, learning_rate=1e-2,
                                 weight_decay=0.5, seed=0)  # fmt: skip
    from obd.mlp import apply_mlp

    idx = np.asarray(retrain.batch_indices(jax.random.split(jax.random.key(0))[0], 500, 1, 500))[0]
    p0 = jax.tree.map(np.asarray, pruned)
    xb, yb = x[idx], y[idx]
    grads = jax.grad(lambda p: optax.softmax_cross_entropy_with_integer_labels(
        apply_mlp(p, xb, activation="relu"), yb).sum())(p0)  # fmt: skip
    grads = jax.tree.map(lambda a, k: np.where(k, a, 0), grads, keep)
    opt = optax.adamw(1e-2, weight_decay=0.5)
    upd, _ = opt.update(grads, opt.init(p0), p0)
    ref = jax.tree.map(lambda p, u, k: np.where(k, p + u, 0), p0, upd, keep)
    np.testing.assert_allclose(ravel_pytree(out)[0], ravel_pytree(ref)[0], rtol=1e-5, atol=1e-7)
    plain = retrain.retrain_masked(pruned, keep, x, y, steps=1, batch_size=500, learning_rate=1e-2,
                                   seed=0)  # fmt: skip
    assert not np.allclose(ravel_pytree(out)[0], ravel_pytree(plain)[0])
    with pytest.raises(ValueError, match="weight_decay"):
        retrain.retrain_masked(pruned, keep, x, y, steps=1, weight_decay=-1.0)


# --- iterative OBS with retraining ----------------------------------------------------------------


def test_iterative_obs_round_is_one_shot_global_obs_then_masked_retraining(trained):
    """Each round of saliency="obs" is global OBS on the exact unit blocks (with the OBS update)
    followed by masked retraining: round 1 before retraining is ``global_obs_prune`` one-shot;
    the masks nest, pruned weights stay exactly zero, and the NNX model gives the same run."""
    from obd import obs
    from obd.mlp import accuracy as mlp_accuracy

    params, (x, y, x_test, y_test) = trained
    kept = []
    table, final = iterative_prune(
        params, x, y, x_test, y_test, saliency="obs", schedule=[0.5, 0.8], retrain_steps=100,
        learning_rate=1e-3, hessian_examples=300, return_params=True,
        on_round=lambda r, p, keep: kept.append([np.asarray(k["kernel"]) for k in keep]),
    )  # fmt: skip
    n = sum(int(np.size(p["kernel"])) for p in params)
    assert table["n_pruned"].tolist() == [0, *prune_counts([0.5, 0.8], n)]
    one_shot = obs.global_obs_prune(params, x[:300], y[:300], 0.5, stages=1)
    assert table["accuracy_pruned"].iloc[1] == pytest.approx(
        float(mlp_accuracy(one_shot, x_test, y_test)), abs=1e-9
    )
    for a, b, p in zip(kept[0], kept[1], final, strict=True):
        assert np.all(b <= a)  # the masks nest
        w = np.asarray(p["kernel"])
        np.testing.assert_array_equal(w == 0, ~b)  # pruned weights exactly zero, the rest not
    # the retraining recovers accuracy lost by the round's pruning
    assert table["accuracy"].iloc[2] >= table["accuracy_pruned"].iloc[2] - 0.02
    # the same run from the equivalent nnx.Sequential
    model = nets.mlp(SIZES, rngs=nnx.Rngs(0))
    for layer, p in zip(model.layers[::2], params, strict=True):
        layer.kernel[...] = jnp.asarray(p["kernel"])
        layer.bias[...] = jnp.asarray(p["bias"])
    table_nnx = iterative_prune(
        model, x, y, x_test, y_test, saliency="obs", schedule=[0.5, 0.8], retrain_steps=100,
        learning_rate=1e-3, hessian_examples=300,
    )  # fmt: skip
    assert table_nnx.n_pruned.tolist() == table.n_pruned.tolist()
    np.testing.assert_allclose(table_nnx.accuracy_pruned, table.accuracy_pruned, atol=0.011)
    np.testing.assert_allclose(table_nnx.loss, table.loss, rtol=0.05)


def test_iterative_obs_bad_input(trained, toy_data):
    params, (x, y, x_test, y_test) = trained
    with pytest.raises(ValueError, match="takes scope='global'"):
        iterative_prune(params, x, y, x_test, y_test, saliency="obs", scope="layerwise",
                        schedule=[0.5], retrain_steps=1)  # fmt: skip
    xi, yi = _images(64)
    with pytest.raises(ValueError, match="global OBS needs dense layers"):
        iterative_prune(_convnet(), xi, yi, xi, yi, saliency="obs", schedule=[0.5],
                        retrain_steps=1)  # fmt: skip
    with pytest.raises(ValueError, match="accepted: obd, magnitude, obs"):
        iterative_prune(params, x, y, x_test, y_test, saliency="obs2", schedule=[0.5])

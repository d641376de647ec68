"""Gradual pruning during training (obd.gradual): the cubic schedule of Zhu & Gupta (2017), the
masks it prunes to, and the training between updates, checked against obd.prune and
obd.retrain.retrain_masked run by hand."""

from __future__ import annotations

import jax
import numpy as np
import pytest
from flax import nnx
from jax.flatten_util import ravel_pytree

from obd import gradual, nets, retrain
from obd.gradual import cubic_sparsity, gradual_prune
from obd.hessian import hessian_diag
from obd.prune import masks, prune_counts
from obd.saliencies import saliency
from problems import kernel_zeros, sparsify

SIZES = (20, 16, 16, 3)


@pytest.fixture(scope="module")
def trained(trained_toy_mlp):
    """conftest's trained toy MLP and its data."""
    return trained_toy_mlp


def _n_kernel(params):
    return sum(np.size(layer["kernel"]) for layer in params)


def test_cubic_schedule():
    f, i, b, e = 0.9, 0.2, 100, 500
    assert cubic_sparsity(0, final=f, initial=i, begin=b, end=e) == i
    assert cubic_sparsity(b, final=f, initial=i, begin=b, end=e) == i
    assert cubic_sparsity(e, final=f, initial=i, begin=b, end=e) == f
    assert cubic_sparsity(10 * e, final=f, initial=i, begin=b, end=e) == f
    mid = cubic_sparsity((b + e) // 2, final=f, initial=i, begin=b, end=e)
    assert mid == pytest.approx(f + (i - f) / 8)  # (1 - 1/2)^3 of the way left
    s = [cubic_sparsity(t, final=f, initial=i, begin=b, end=e) for t in range(0, 600, 10)]
    assert np.all(np.diff(s) >= 0)
    steps = np.diff(s[b // 10 : e // 10 + 1])
    assert np.all(np.diff(steps) <= 1e-12)  # fast first, slow near the end
    assert cubic_sparsity(0, final=0.5, end=0) == 0.5  # no ramp: the final sparsity at once
    for kwargs in (
        dict(final=1.5, end=10),
        dict(final=0.5, end=-1),
        dict(final=0.5, end=5, begin=9),
    ):
        with pytest.raises(ValueError):
            cubic_sparsity(0, **kwargs)
    assert gradual._update_steps(0, 10, 4) == [0, 4, 8, 10]


@pytest.mark.parametrize("kind", ["magnitude", "obd"])
def test_one_update_is_pruning_then_masked_retraining(trained, kind):
    """With its only update at step 0 (``end=0``) gradual pruning is: score, prune to ``final``,
    then ``retrain_masked`` with the same seed and a cosine schedule over all steps."""
    params, (x, y, _, _) = trained
    out, keep, hist = gradual_prune(params, x, y, final=0.7, steps=150, end=0, saliency=kind,
                                    hessian_examples=None, learning_rate=2e-3, seed=4,
                                    chunk_steps=64)  # fmt: skip
    hd = hessian_diag(params, x, y) if kind == "obd" else None
    ref_keep = masks(saliency(kind, params, hdiag=hd), 0.7, scope="global", include_biases=False)
    pruned = [
        jax.tree.map(lambda p, k: np.where(k, p, 0), a, b)
        for a, b in zip(params, ref_keep, strict=True)
    ]
    ref = retrain.retrain_masked(pruned, ref_keep, x, y, steps=150, learning_rate=2e-3, seed=4,
                                 lr_schedule="cosine")  # fmt: skip
    for k, r in zip(jax.tree.leaves(keep), jax.tree.leaves(ref_keep), strict=True):
        np.testing.assert_array_equal(np.asarray(k), np.asarray(r))
    np.testing.assert_allclose(ravel_pytree(out)[0], ravel_pytree(ref)[0], rtol=1e-5, atol=1e-6)
    assert hist["step"].tolist() == [0] and hist["target"].tolist() == [0.7]


def test_sparsity_follows_the_cubic_schedule_with_nested_masks(trained):
    params, (x, y, xv, yv) = trained
    n = _n_kernel(params)
    out, keep, hist = gradual_prune(params, x, y, final=0.9, steps=400, begin=50, end=250,
                                    update_every=50, x_val=xv, y_val=yv, learning_rate=2e-3)  # fmt: skip
    assert hist["step"].tolist() == [0, 50, 100, 150, 200, 250]
    expected = [0.0] + [cubic_sparsity(t, final=0.9, begin=50, end=250) for t in range(50, 300, 50)]
    np.testing.assert_allclose(hist["target"], expected)
    counts = [int(prune_counts(t, n)) for t in expected]
    np.testing.assert_allclose(hist["pruned_fraction"], np.array(counts) / n)
    assert kernel_zeros(out) == prune_counts(0.9, n)
    for p, k in zip(out, keep, strict=True):
        assert np.all(np.asarray(p["kernel"])[~np.asarray(k["kernel"])] == 0)
        assert np.all(np.asarray(k["bias"]))  # biases are never pruned
    assert hist["val_accuracy"].between(0, 1).all()
    acc, _ = retrain._evaluate(out, xv, yv, "relu")
    assert hist["val_accuracy"].iloc[-1] == pytest.approx(float(acc))
    # training through the ramp beats pruning the trained model to 90% at once
    one_shot = masks(saliency("magnitude", params), 0.9, scope="global", include_biases=False)
    cut = [
        jax.tree.map(lambda p, k: np.where(k, p, 0), a, b)
        for a, b in zip(params, one_shot, strict=True)
    ]
    assert float(acc) > float(retrain._evaluate(cut, xv, yv, "relu")[0]) + 0.05


def test_gradual_pruning_chains_from_a_sparse_model(trained):
    params, (x, y, _, _) = trained
    sparse = sparsify(params)
    z, n = kernel_zeros(sparse), _n_kernel(params)
    out, _, hist = gradual_prune(sparse, x, y, final=0.8, steps=100, update_every=25)
    assert hist["target"].iloc[0] == pytest.approx(z / n)  # ramps from the model's own sparsity
    assert kernel_zeros(out) == prune_counts(0.8, n)
    for before, after in zip(sparse, out, strict=True):
        assert not np.asarray(after["kernel"])[np.asarray(before["kernel"]) == 0].any()
    with pytest.raises(ValueError, match="already zero"):
        gradual_prune(sparse, x, y, final=0.5 * z / n, steps=10)


def test_gradual_pruning_of_a_convnet():
    rng = np.random.default_rng(0)
    x = rng.uniform(size=(300, 6, 6, 1)).astype(np.float32)
    y = np.stack([x[:, :, :2].sum((1, 2, 3)), x[:, :, 2:4].sum((1, 2, 3)),
                  x[:, :, 4:].sum((1, 2, 3))], 1).argmax(1).astype(np.int32)  # fmt: skip
    rngs = nnx.Rngs(0)
    model = nnx.Sequential(nnx.Conv(1, 4, (3, 3), padding="SAME", rngs=rngs), jax.nn.relu,
                           nets.avg_pool(2), nets.flatten, nnx.Linear(36, 3, rngs=rngs))  # fmt: skip
    before = ravel_pytree(nnx.state(model, nnx.Param))[0]
    out, keep, hist = gradual_prune(model, x, y, final=0.6, steps=600, update_every=100,
                                    learning_rate=1e-2, saliency="obd")  # fmt: skip
    np.testing.assert_array_equal(ravel_pytree(nnx.state(model, nnx.Param))[0], before)
    kernels = [np.asarray(out.layers[i].kernel[...]) for i in (0, 4)]
    assert sum(int((k == 0).sum()) for k in kernels) == prune_counts(0.6, 4 * 9 + 36 * 3)
    for i, k in zip((0, 4), kernels, strict=True):
        assert np.all(k[~np.asarray(keep["layers"][i]["kernel"])] == 0)
    acc = float((out(x).argmax(-1) == y).mean())
    assert acc > 0.7


def test_gradual_bad_input(trained):
    params, (x, y, xv, yv) = trained
    for kwargs, match in [
        (dict(final=1.0, steps=10), "final"),
        (dict(final=0.5, steps=0), "steps"),
        (dict(final=0.5, steps=10, end=20), "end"),
        (dict(final=0.5, steps=10, begin=6, end=5), "end"),
        (dict(final=0.5, steps=10, update_every=0), "update_every"),
        (dict(final=0.5, steps=10, saliency="obs"), "saliency"),
        (dict(final=0.5, steps=10, scope="local"), "scope"),
        (dict(final=0.5, steps=10, lr_schedule="step"), "lr_schedule"),
        (dict(final=0.5, steps=10, x_val=xv), "x_val and y_val"),
        (dict(final=0.5, steps=10, x_val=xv, y_val=yv + 5), "y_val"),
    ]:
        with pytest.raises(ValueError, match=match):
            gradual_prune(params, x, y, **kwargs)
    with pytest.raises(ValueError, match="y_train"):
        gradual_prune(params, x, y + 3, final=0.5, steps=10)
    bad = x.copy()
    bad[3, 2] = np.nan
    with pytest.raises(ValueError, match="x_train"):
        gradual_prune(params, bad, y, final=0.5, steps=10)


def test_gradual_path_chains_runs_and_stops_at_its_break_point(trained):
    """Each round is one ``gradual_prune`` from the last round's model; with ``break_error`` the
    path is the unbroken one cut after ``patience`` rounds in a row above it on validation."""
    params, (x, y, xt, yt) = trained
    xv, yv = x[400:], y[400:]
    kw = dict(schedule=[0.5, 0.8, 0.95, 0.98], steps=60, update_every=20, learning_rate=2e-3,
              seed=3, x_val=xv, y_val=yv)  # fmt: skip
    full, last = gradual.gradual_path(params, x[:400], y[:400], xt, yt, **kw)
    n = _n_kernel(params)
    assert full["round"].tolist() == [0, 1, 2, 3, 4]
    assert full["n_pruned"].tolist() == [0, *(int(prune_counts(f, n)) for f in kw["schedule"])]
    assert kernel_zeros(last) == full["n_pruned"].iloc[-1]
    model, _, _ = gradual_prune(params, x[:400], y[:400], final=0.5, steps=60, update_every=20,
                                learning_rate=2e-3, seed=3_001)  # fmt: skip
    acc, _ = retrain._evaluate(model, xt, yt, "relu")
    assert full["accuracy"].iloc[1] == pytest.approx(float(acc))
    errors = (1 - full["val_accuracy"]).to_numpy()
    threshold = float(np.sort(errors[1:])[1]) - 1e-9  # all but the best round are above it
    over, stop = 0, len(errors) - 1
    for r, e in enumerate(errors[1:], start=1):
        over = over + 1 if e > threshold else 0
        if over >= 2:
            stop = r
            break
    cut, _ = gradual.gradual_path(params, x[:400], y[:400], xt, yt, break_error=threshold, **kw)
    assert cut["round"].tolist() == list(range(stop + 1))
    np.testing.assert_array_equal(cut["val_accuracy"], full["val_accuracy"].iloc[: stop + 1])
    with pytest.raises(ValueError, match="validation set"):
        gradual.gradual_path(params, x, y, xt, yt, schedule=[0.5], steps=10, break_error=0.1)
    with pytest.raises(ValueError, match="below 1"):
        gradual.gradual_path(params, x, y, xt, yt, schedule=[0.5, 1.0], steps=10)
    with pytest.raises(ValueError, match="y_test"):
        gradual.gradual_path(params, x, y, xt, yt + 3, schedule=[0.5], steps=10)

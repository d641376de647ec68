"""obd.checks at every entry point: bad input (labels out of range, NaN or inf, no example,
integers) is a ``ValueError`` naming what was wrong, never a plausible number.

The other reliability tests live beside the module each covers (train, retrain, prune, obs,
network, model checkpoints, convnets, the runner, io, the build, the resume run)."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from obd import curvature as cv
from obd import obs, prune
from obd.checks import check_examples
from obd.hessian import hessian_diag
from obd.retrain import iterative_prune, retrain_masked
from obd.study.train import TrainConfig, train
from obd.taylor import loss_change_curve
from problems import TOY_TRAIN, keep_all


@pytest.mark.parametrize("label", [3, -1])
def test_labels_out_of_range_raise_everywhere(toy_data, toy_net, label):
    x, y, xt, yt = toy_data
    bad = y.copy()
    bad[7] = label
    want = rf"labels in \[{min(label, 0)}, {max(label, 2)}\].*3 classes.*\[0, 2\]"
    with pytest.raises(ValueError, match="y_train holds " + want):
        train(TrainConfig(**TOY_TRAIN), (x, bad, xt, yt), progress=False)
    with pytest.raises(ValueError, match="y_test holds " + want):
        train(TrainConfig(**TOY_TRAIN), (x, y, xt, np.where(np.arange(len(yt)) == 0, label, yt)),
              progress=False)  # fmt: skip
    with pytest.raises(ValueError, match="y holds " + want):
        retrain_masked(toy_net, keep_all(toy_net), x, bad, steps=5)
    with pytest.raises(ValueError, match="y_train holds " + want):
        iterative_prune(toy_net, x, bad, xt, yt, schedule=[0.5], retrain_steps=1)
    with pytest.raises(ValueError, match="y holds " + want):
        cv.empirical_fisher_diag(toy_net, x, bad)
    with pytest.raises(ValueError, match="y holds " + want):
        cv.hutchinson_diags(toy_net, x, bad, 0, counts=(1,))
    with pytest.raises(ValueError, match="y holds " + want):
        cv.adam_nu_diag(toy_net, x, bad, 0, steps=2)
    with pytest.raises(ValueError, match="y holds " + want):
        loss_change_curve(toy_net, keep_all(toy_net), x, bad)


def test_checks_are_skipped_only_inside_a_trace(toy_data, toy_net):
    x, y, _, _ = toy_data
    out, _ = cv.timed(cv.empirical_fisher_diag, toy_net, x, y, batch_size=100)  # jitted: traced x
    assert all(bool(jnp.isfinite(a).all()) for a in jax.tree.leaves(out))
    with pytest.raises(ValueError, match="labels must be integer|integer class labels"):
        check_examples(jnp.asarray(x), jnp.asarray(y, jnp.float32))


@pytest.mark.parametrize("value", [np.nan, np.inf, -np.inf])
def test_non_finite_inputs_raise_naming_count_and_where(toy_data, toy_net, value):
    x, y, xt, yt = toy_data
    bad = x.copy()
    bad[4, 2] = value
    bad[9, :3] = value
    msg = r"x_train has 4 non-finite value\(s\) \(NaN or inf\) in 2 example\(s\), at index 4, 9"
    with pytest.raises(ValueError, match=msg):
        train(TrainConfig(**TOY_TRAIN), (bad, y, xt, yt), progress=False)
    with pytest.raises(ValueError, match=msg.replace("x_train", "x")):
        retrain_masked(toy_net, keep_all(toy_net), bad, y, steps=5)
    with pytest.raises(ValueError, match=msg.replace("x_train", "x")):
        cv.mc_fisher_diag(toy_net, bad, 0)
    with pytest.raises(ValueError, match=msg.replace("x_train", "x_test")):
        iterative_prune(toy_net, x, y, bad, y, schedule=[0.5], retrain_steps=1)


def test_empty_inputs_raise_value_error(toy_data, toy_net):
    x, y, xt, yt = toy_data
    with pytest.raises(ValueError, match=r"x_train must hold at least one example.*\(0, 20\)"):
        train(TrainConfig(**TOY_TRAIN), (x[:0], y[:0], xt, yt), progress=False)
    with pytest.raises(ValueError, match="x_test must hold at least one example"):
        train(TrainConfig(**TOY_TRAIN), (x, y, xt[:0], yt[:0]), progress=False)
    with pytest.raises(ValueError, match="x must hold at least one example"):
        retrain_masked(toy_net, keep_all(toy_net), x[:0], y[:0], steps=5)
    with pytest.raises(ValueError, match="x_train must hold at least one example"):
        iterative_prune(toy_net, x[:0], y[:0], xt, yt, schedule=[0.5])


def test_integer_inputs_are_refused_everywhere(toy_data, toy_net):
    x, y, xt, yt = toy_data
    pixels = (x * 255).astype(np.uint8)
    msg = r"must be floating point \(e\.g\. float32\), got uint8.*astype\(np\.float32\)"
    with pytest.raises(ValueError, match="x_calib " + msg):
        obs.obs_sweep(toy_net, pixels, [0.5], xt, yt)
    with pytest.raises(ValueError, match="x " + msg):
        obs.layer_hessian(pixels)
    with pytest.raises(ValueError, match="x_test " + msg):
        obs.obs_sweep(toy_net, x, [0.5], pixels, y)
    with pytest.raises(ValueError, match="x " + msg):
        hessian_diag(toy_net, pixels, y)
    with pytest.raises(ValueError, match="x " + msg):
        prune.sweep(toy_net, toy_net, [0.5], pixels, y)
    with pytest.raises(ValueError, match="x_train " + msg):
        train(TrainConfig(**TOY_TRAIN), (pixels, y, xt, yt), progress=False)

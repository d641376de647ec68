"""Saliencies, masks, sweeps and sparsity tables on Flax NNX models (convolutions included)."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import nnx
from jax.flatten_util import ravel_pytree

from obd import nets, prune
from obd.hessian import hessian_diag
from obd.saliency import saliency


def _model(seed=0, dtype=jnp.float32):
    rngs = nnx.Rngs(seed)
    return nnx.Sequential(
        nnx.Conv(1, 3, (3, 3), padding="VALID", rngs=rngs, param_dtype=dtype),
        jax.nn.relu,
        nets.max_pool(2),
        nets.flatten,
        nnx.Linear(3 * 3 * 3, 6, rngs=rngs, param_dtype=dtype),
        jnp.tanh,
        nnx.Linear(6, 4, use_bias=False, rngs=rngs, param_dtype=dtype),
    )


def _data(n=40, seed=1):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, 8, 8, 1)).astype(np.float32)
    return x, rng.integers(0, 4, n).astype(np.int32)


def _accuracy_and_loss(model, x, y):
    logits = model(jnp.asarray(x))
    ce = optax.softmax_cross_entropy_with_integer_labels(logits, y).mean()
    return float((logits.argmax(-1) == y).mean()), float(ce)


def test_scores_masks_and_sweep_match_a_direct_evaluation():
    model, (x, y) = _model(), _data()
    state = nnx.state(model, nnx.Param)
    h = hessian_diag(model, x, y)
    for kind, extra in (("magnitude", {}), ("obd", {"hdiag": h}), ("random", {"key": 3})):
        scores = saliency(kind, model, **extra)
        assert isinstance(scores, nnx.State)
        assert jax.tree.structure(scores) == jax.tree.structure(state)
    scores = saliency("obd", model, hdiag=h)
    want = jax.tree.map(lambda hh, w: 0.5 * hh * w**2, h, state)
    np.testing.assert_allclose(ravel_pytree(scores)[0], ravel_pytree(want)[0], rtol=1e-6)

    fractions = [0.0, 0.2, 0.5, 0.8]
    for scope in ("global", "layerwise"):
        table = prune.sweep(model, scores, fractions, x, y, scope=scope)
        for f, row in zip(fractions, table.itertuples(), strict=True):
            m = prune.masks(scores, f, scope=scope)
            assert isinstance(m, nnx.State)
            pruned = prune.apply_masks(model, m)
            acc, ce = _accuracy_and_loss(pruned, x, y)
            assert row.accuracy == pytest.approx(acc, abs=1e-6)
            assert row.loss == pytest.approx(ce, rel=1e-5)
            kernels = [a for p, a in jax.tree_util.tree_leaves_with_path(m) if "kernel" in str(p)]
            n_kernel = sum(a.size for a in kernels)
            assert row.n_pruned == sum(int((~np.asarray(a)).sum()) for a in kernels)
            if scope == "global":
                assert row.n_pruned == int(np.floor(f * n_kernel + 0.5))
            else:  # every kernel tensor loses its own share
                for a in kernels:
                    assert int((~np.asarray(a)).sum()) == int(np.floor(f * a.size + 0.5))
    # the original model is not modified by apply_masks
    np.testing.assert_array_equal(
        ravel_pytree(nnx.state(model, nnx.Param))[0], ravel_pytree(state)[0]
    )


def test_conv_weights_are_pruned_individually_and_sparsity_is_reported():
    model = _model(seed=2)
    scores = saliency("magnitude", model)
    m = prune.masks(scores, 0.5, scope="layerwise")
    conv_mask = np.asarray(m["layers"][0]["kernel"])
    assert conv_mask.shape == (3, 3, 1, 3)
    kernel = np.abs(np.asarray(model.layers[0].kernel[...]))
    assert kernel[~conv_mask].max() <= kernel[conv_mask].min()  # the smallest go, weight by weight
    table = prune.layer_sparsity(m)
    assert list(table["tensor"]) == ["kernel", "bias", "kernel", "bias", "kernel"]
    assert list(table["layer"]) == [0, 0, 1, 1, 2]
    np.testing.assert_allclose(table[table.tensor == "kernel"]["fraction_pruned"], 0.5, atol=0.03)
    assert (table[table.tensor == "bias"]["n_pruned"] == 0).all()  # kernels only
    from_params = prune.layer_sparsity(prune.apply_masks(model, m))  # zeros count as pruned
    kernels = table.tensor == "kernel"
    assert from_params[kernels]["n_pruned"].tolist() == table[kernels]["n_pruned"].tolist()


def test_blog_obd_row_sums_on_nnx_match_the_dense_hessian():
    with jax.enable_x64(True):
        model, (x, y) = _model(dtype=jnp.float64), _data(n=64)
        graphdef, state = nnx.split(model, nnx.Param)
        flat, unravel = ravel_pytree(state)
        scores = saliency("blog_obd", model, x=x, y=y, key=0, batch_size=64)

        def summed(f):
            logits = nnx.merge(graphdef, unravel(f))(jnp.asarray(x, jnp.float64))
            return optax.softmax_cross_entropy_with_integer_labels(logits, y).sum()

        want = jax.jit(jax.hessian(summed))(flat).sum(
            1
        )  # all 64 examples: the batch is the data set
        np.testing.assert_allclose(ravel_pytree(scores)[0], want, rtol=1e-8, atol=1e-10)


def test_bad_inputs_on_nnx():
    model, (x, y) = _model(), _data()
    scores = saliency("magnitude", model)
    with pytest.raises(ValueError, match="hdiag must be shaped like the parameters"):
        saliency("obd", model, hdiag=[{"kernel": 1}])
    with pytest.raises(ValueError, match="scores must be shaped like the parameters"):
        prune.sweep(model, saliency("magnitude", _model_other()), [0.5], x, y)
    with pytest.raises(ValueError, match=r"x must be images \[N, height, width, 1\]"):
        prune.sweep(model, scores, [0.5], x.reshape(len(x), -1), y)
    with pytest.raises(ValueError, match="non-finite"):
        prune.sweep(
            model, scores, [0.5], np.where(np.arange(x.size).reshape(x.shape) == 5, np.nan, x), y
        )
    with pytest.raises(ValueError, match=r"labels in \[-1, \d\]"):
        prune.sweep(model, scores, [0.5], x, np.where(np.arange(len(y)) == 0, -1, y))


def _model_other():
    return nets.mlp((64, 5, 4), rngs=nnx.Rngs(0))

"""obd.prune: masks, ranks, sweeps and sparsity tables on plain MLPs, Flax NNX models
(convolutions included) and every problem of the shared table (tests/problems.py)."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pandas as pd
import pytest
from flax import nnx

import problems
from obd import mlp as model
from obd import nets, obs, prune
from obd.hessian import hessian_diag
from obd.mlp import accuracy
from obd.obs import obs_sweep_model
from obd.prune import prune_counts
from obd.retrain import retrain_masked
from obd.saliencies import saliency
from problems import PROBLEM_IDS, PROBLEMS, TOY_SIZES, kernel_zeros, sparsify


def _tree(k0, b0, k1, b1):
    return [
        {"kernel": np.asarray(k0, np.float32), "bias": np.asarray(b0, np.float32)},
        {"kernel": np.asarray(k1, np.float32), "bias": np.asarray(b1, np.float32)},
    ]


@pytest.fixture
def scores():
    """Layers 2-2-3: kernels of 4 and 6 entries, biases of 2 and 3, all scores distinct."""
    return _tree([[5, 1], [7, 3]], [0.5, 9], [[2, 8, 6], [0.25, 4, 10]], [-1, 11, 12])


def _pruned_values(scores, m, tensors=("kernel", "bias")):
    """The scores of the pruned entries, per layer, as sorted lists."""
    return [
        sorted(float(v) for t in tensors for v in np.asarray(s[t])[~np.asarray(mm[t])])
        for s, mm in zip(scores, m, strict=True)
    ]


def test_global_prunes_smallest_across_layers(scores):
    m = prune.masks(scores, 0.3)  # n = 10 kernel entries, k = 3
    assert _pruned_values(scores, m) == [[1.0], [0.25, 2.0]]
    assert all(lay["bias"].all() for lay in m)
    # k = floor(0.25 * 10 + 0.5) = 3 (round half up)
    assert sum(map(len, _pruned_values(scores, prune.masks(scores, 0.25)))) == 3


def test_layerwise_prunes_per_layer(scores):
    m = prune.masks(scores, 0.5, scope="layerwise")  # k = 2 of 4 and 3 of 6
    assert _pruned_values(scores, m) == [[1.0, 3.0], [0.25, 2.0, 4.0]]
    m = prune.masks(scores, 0.25, scope="layerwise")  # k = 1 of 4 and floor(2.0) = 2 of 6
    assert _pruned_values(scores, m) == [[1.0], [0.25, 2.0]]


def test_include_biases(scores):
    m = prune.masks(scores, 0.25, include_biases=True)  # n = 15, k = floor(4.25) = 4
    assert _pruned_values(scores, m) == [[0.5, 1.0], [-1.0, 0.25]]
    m = prune.masks(scores, 0.5, scope="layerwise", include_biases=True)  # 3 of 6, 5 of 9
    assert _pruned_values(scores, m) == [[0.5, 1.0, 3.0], [-1.0, 0.25, 2.0, 4.0, 6.0]]


def test_fraction_zero_and_one(scores):
    for scope in ("global", "layerwise"):
        assert all(a.all() for a in jax.tree.leaves(prune.masks(scores, 0.0, scope=scope)))
        m = prune.masks(scores, 1.0, scope=scope)
        assert not any(lay["kernel"].any() for lay in m) and all(lay["bias"].all() for lay in m)
        m = prune.masks(scores, 1, scope=scope, include_biases=True)
        assert not any(a.any() for a in jax.tree.leaves(m))


def test_ties_broken_by_flattened_position():
    ones = _tree(np.ones((2, 2)), np.ones(2), np.ones((2, 3)), np.ones(3))
    m = prune.masks(ones, 0.3)  # 3 of 10: the first three of layer 0's kernel, row-major
    np.testing.assert_array_equal(m[0]["kernel"], [[False, False], [False, True]])
    assert m[1]["kernel"].all()
    m = prune.masks(ones, 0.5, scope="layerwise")  # 2 of 4, 3 of 6
    np.testing.assert_array_equal(m[0]["kernel"], [[False, False], [True, True]])
    np.testing.assert_array_equal(m[1]["kernel"], [[False, False, False], [True, True, True]])
    # with biases, jax.tree.leaves order puts each layer's bias before its kernel
    m = prune.masks(ones, 3 / 15, include_biases=True)
    np.testing.assert_array_equal(m[0]["bias"], [False, False])
    np.testing.assert_array_equal(m[0]["kernel"], [[False, True], [True, True]])
    first, again = prune.masks(ones, 0.3), prune.masks(ones, 0.3)
    for a, b in zip(jax.tree.leaves(first), jax.tree.leaves(again), strict=True):
        np.testing.assert_array_equal(a, b)


def test_ranks_are_permutations_within_groups(scores):
    r = prune.ranks(scores, scope="layerwise")
    assert sorted(r[0]["kernel"].ravel()) == [0, 1, 2, 3]
    assert sorted(r[1]["kernel"].ravel()) == [0, 1, 2, 3, 4, 5]
    assert (r[0]["bias"] == prune.UNRANKED).all()
    r = prune.ranks(scores, include_biases=True)
    assert sorted(np.concatenate([a.ravel() for a in jax.tree.leaves(r)])) == list(range(15))


def test_array_of_fractions_stacks_masks(scores):
    fractions = [0.0, 0.25, 0.5, 1.0]
    for scope in ("global", "layerwise"):
        stacked = prune.masks(scores, fractions, scope=scope, include_biases=True)
        for i, f in enumerate(fractions):
            single = prune.masks(scores, f, scope=scope, include_biases=True)
            for a, b in zip(jax.tree.leaves(stacked), jax.tree.leaves(single), strict=True):
                np.testing.assert_array_equal(a[i], b)


def test_apply_masks_zeroes_pruned_entries(scores):
    params = _tree(np.full((2, 2), 2.0), [3, 3], np.full((2, 3), 4.0), [5, 5, 5])
    m = prune.masks(scores, 0.3)
    pruned = prune.apply_masks(params, m)
    leaves = zip(jax.tree.leaves(params), jax.tree.leaves(pruned), jax.tree.leaves(m), strict=True)
    for p, q, mm in leaves:
        np.testing.assert_array_equal(q, np.where(mm, p, 0))
    sp = prune.layer_sparsity(pruned)
    np.testing.assert_array_equal(sp["n_pruned"], [1, 0, 2, 0])
    np.testing.assert_array_equal(sp["size"], [4, 2, 6, 3])
    np.testing.assert_allclose(sp["fraction_pruned"], [0.25, 0, 1 / 3, 0])
    assert sp.equals(prune.layer_sparsity(m))
    assert list(sp["tensor"]) == ["kernel", "bias"] * 2 and list(sp["layer"]) == [0, 0, 1, 1]


@pytest.mark.parametrize("bad", [-0.1, 1.1, float("nan"), float("inf"), "half", [[0.5]], [0.2, 2]])
def test_bad_fraction_raises(scores, bad):
    with pytest.raises(ValueError, match="fraction"):
        prune.masks(scores, bad)


def test_bad_inputs_raise(scores):
    with pytest.raises(ValueError, match="accepted: global, layerwise"):
        prune.masks(scores, 0.5, scope="neuron")
    nan = jax.tree.map(lambda a: a.copy(), scores)
    nan[0]["kernel"][0, 0] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        prune.masks(nan, 0.5)
    params = _tree(np.ones((2, 2)), np.ones(2), np.ones((2, 3)), np.ones(3))
    short = _tree(np.ones((2, 2)), np.ones(2), np.ones((2, 1)), np.ones(1))
    x, y = np.ones((4, 2), np.float32), np.zeros(4, np.int32)
    with pytest.raises(ValueError, match="shape"):
        prune.sweep(params, short, [0.5], x, y)
    with pytest.raises(ValueError, match="structure"):
        prune.apply_masks(params, prune.masks(scores, 0.5)[:1])
    with pytest.raises(ValueError, match=r"labels of shape \[4\]"):
        prune.sweep(params, scores, [0.5], x, y[:3])
    with pytest.raises(ValueError, match=r"labels in \[3, 3\].*3 classes.*\[0, 2\]"):
        prune.sweep(params, scores, [0.5], x, y + 3)
    with pytest.raises(ValueError, match="1 non-finite"):
        prune.sweep(params, scores, [0.5], _with_nan(x), y)
    with pytest.raises(ValueError, match="at least one example"):
        prune.sweep(params, scores, [0.5], x[:0], y[:0])


def _with_nan(x):
    x = x.copy()
    x[2, 1] = np.nan
    return x


@pytest.fixture
def net(toy_data):
    x, y, _, _ = toy_data
    params = model.init_mlp(jax.random.key(0), (20, 8, 6, 3))
    rng = np.random.default_rng(1)
    params = [
        {**lay, "bias": jnp.asarray(rng.normal(size=lay["bias"].shape), jnp.float32)}
        for lay in params
    ]
    return params, x, y


FRACTIONS = [0.0, 0.1, 0.37, 0.5, 0.25, 0.9, 0.999, 1.0]


@pytest.mark.parametrize("include_biases", [False, True])
@pytest.mark.parametrize("scope", ["global", "layerwise"])
def test_sweep_matches_direct_evaluation(net, scope, include_biases):
    params, x, y = net
    scores = saliency("magnitude", params)
    df = prune.sweep(
        params, scores, FRACTIONS, x, y, scope=scope, include_biases=include_biases, level_batch=3
    )
    assert list(df.columns) == ["fraction", "pruned_fraction", "n_pruned", "accuracy", "loss"]
    np.testing.assert_array_equal(df["fraction"], FRACTIONS)
    n = sum(lay["kernel"].size + include_biases * lay["bias"].size for lay in params)
    for row in df.itertuples():
        m = prune.masks(scores, row.fraction, scope=scope, include_biases=include_biases)
        pruned = prune.apply_masks(params, m)
        assert row.n_pruned == sum(int((~a).sum()) for a in jax.tree.leaves(m))
        assert row.pruned_fraction == row.n_pruned / n
        np.testing.assert_allclose(row.accuracy, model.accuracy(pruned, x, y), atol=1e-6)
        np.testing.assert_allclose(row.loss, model.loss(pruned, x, y), rtol=1e-5)
    assert df["n_pruned"].iloc[-1] == n and df["n_pruned"].iloc[0] == 0
    # the default chunking gives the same numbers
    df2 = prune.sweep(params, scores, FRACTIONS, x, y, scope=scope, include_biases=include_biases)
    np.testing.assert_allclose(df2[["accuracy", "loss"]], df[["accuracy", "loss"]], rtol=1e-6)


def test_sweep_endpoints(net):
    params, x, y = net
    scores = saliency("random", params, key=jax.random.key(0))
    df = prune.sweep(params, scores, [0.0, 1.0], x, y)
    np.testing.assert_allclose(df["accuracy"][0], model.accuracy(params, x, y), atol=1e-6)
    np.testing.assert_allclose(df["loss"][0], model.loss(params, x, y), rtol=1e-5)
    # all kernels zero: the logits are the last bias whatever the input
    b = np.asarray(params[-1]["bias"])
    const_logits = np.broadcast_to(b, (len(y), b.size))
    np.testing.assert_allclose(df["accuracy"][1], np.mean(y == b.argmax()), atol=1e-6)
    want = optax.softmax_cross_entropy_with_integer_labels(const_logits, y).mean()
    np.testing.assert_allclose(df["loss"][1], want, rtol=1e-5)
    # biases pruned too: zero logits, loss log(3), argmax 0 everywhere
    df = prune.sweep(params, scores, 1.0, x, y, include_biases=True)
    np.testing.assert_allclose(df["loss"][0], np.log(3), rtol=1e-6)
    np.testing.assert_allclose(df["accuracy"][0], np.mean(y == 0), atol=1e-6)


# --- models that already have zeros, masks that are not boolean ----------------------------------


def test_sweeps_count_the_zeros_a_model_already_has(toy_data, toy_net):
    x, y, xt, yt = toy_data
    sparse = sparsify(toy_net)
    n = sum(np.size(layer["kernel"]) for layer in toy_net)
    z = kernel_zeros(sparse)
    fractions = [0.0, 0.2, 0.6]
    # magnitude: zeros rank first by score already; the reference is the pruned model itself
    scores = saliency("magnitude", sparse)
    table = prune.sweep(sparse, scores, fractions, xt, yt)
    for f, row in zip(fractions, table.itertuples(), strict=True):
        pruned = prune.apply_masks(sparse, prune.masks(scores, f))
        assert row.n_pruned == kernel_zeros(pruned) == max(prune_counts(f, n), z)
        assert row.pruned_fraction == row.n_pruned / n
        assert row.accuracy == pytest.approx(float(accuracy(pruned, xt, yt)), abs=1e-6)
    # scores that do not rank the zeros first: they count as pruned all the same
    rng = np.random.default_rng(1)
    scores = jax.tree.map(lambda a: jnp.asarray(rng.uniform(size=a.shape)), sparse)
    for scope in ("global", "layerwise"):
        table = prune.sweep(sparse, scores, fractions, xt, yt, scope=scope)
        for f, row in zip(fractions, table.itertuples(), strict=True):
            m = prune.masks(scores, f, scope=scope, params=sparse)
            pruned = prune.apply_masks(sparse, m)
            assert row.n_pruned == kernel_zeros(pruned)
            assert row.n_pruned == sum(int((~np.asarray(k["kernel"])).sum()) for k in m)
            assert row.accuracy == pytest.approx(float(accuracy(pruned, xt, yt)), abs=1e-6)
        assert list(table.n_pruned) == [z, z, prune_counts(0.6, n)] or scope == "layerwise"
    # layer-wise and global OBS: the count of zeros in the kernels they return
    table = obs.obs_sweep(sparse, x, fractions, xt, yt)
    for f, row in zip(fractions, table.itertuples(), strict=True):
        assert row.n_pruned == kernel_zeros(obs.obs_prune(sparse, x, f))
    assert table.n_pruned[0] == z and table.n_pruned[1] == z
    net_table = obs_sweep_model(sparse, x, fractions, xt, yt)
    pd.testing.assert_series_equal(net_table.n_pruned, table.n_pruned)
    table = obs.global_obs_sweep(sparse, x, y, fractions, xt, yt, stages=1)
    for f, row in zip(fractions, table.itertuples(), strict=True):
        assert row.n_pruned == kernel_zeros(obs.global_obs_prune(sparse, x, y, f, stages=1))
    assert list(table.n_pruned) == [z, z, prune_counts(0.6, n)]


def test_masks_must_be_boolean_or_zero_one(toy_data, toy_net):
    x, y, _, _ = toy_data
    scores = saliency("magnitude", toy_net)
    with pytest.raises(ValueError, match=r"masks of layer 0 \(kernel\) hold .* other than 0 and 1"):
        prune.apply_masks(toy_net, scores)
    with pytest.raises(ValueError, match=r"masks of layer 0 \(kernel\) hold"):
        retrain_masked(toy_net, scores, x, y, steps=2)
    m = prune.masks(scores, 0.5)
    half = jax.tree.map(lambda a: jnp.where(a, 1.0, 0.5), m)
    pruned = int((~np.asarray(m[0]["kernel"])).sum())  # each pruned entry became 0.5
    with pytest.raises(ValueError, match=rf"masks of layer 0 \(kernel\) hold {pruned} value"):
        prune.apply_masks(toy_net, half)
    nan_bias = [dict(layer) for layer in m]
    nan_bias[1]["bias"] = jnp.full(3, jnp.nan)
    with pytest.raises(ValueError, match=r"masks of layer 1 \(bias\) hold 3 value"):
        prune.apply_masks(toy_net, nan_bias)
    # exactly 0/1 numbers are masks: the same result as the booleans
    ones = jax.tree.map(lambda a: a.astype(np.float32), m)
    for a, b in zip(jax.tree.leaves(prune.apply_masks(toy_net, ones)),
                    jax.tree.leaves(prune.apply_masks(toy_net, m)), strict=True):  # fmt: skip
        np.testing.assert_array_equal(a, b)
    model = nets.mlp(TOY_SIZES, rngs=nnx.Rngs(0))
    state = saliency("magnitude", model)
    with pytest.raises(ValueError, match=r"masks of layer 1 \(kernel\) hold"):
        prune.apply_masks(model, _only_layer_scores(state, 1))


def _only_layer_scores(state, layer):
    """Boolean masks (all kept) with the kernel of parametric layer ``layer`` replaced by scores."""
    leaves, treedef = jax.tree.flatten(state)
    kernels = [i for i, a in enumerate(leaves) if np.ndim(a) == 2]
    out = [jnp.ones(np.shape(a), bool) for a in leaves]
    out[kernels[layer]] = leaves[kernels[layer]]
    return jax.tree.unflatten(treedef, out)


# --- every problem of the shared table (tests/problems.py) ---------------------------------------


@pytest.mark.parametrize("scope", ["global", "layerwise"])
@pytest.mark.parametrize("problem", PROBLEMS, ids=PROBLEM_IDS)
def test_scores_masks_and_sweep_match_a_direct_evaluation(problem, scope):
    """Scores shaped like the parameters (``obd`` = h w^2 / 2), masks of the requested counts, and
    each sweep row equal to the pruned model's own forward pass; the model is left unchanged."""
    with jax.enable_x64(True):
        model, x, y = problem.make()
        state = problems.param_tree(model)
        before = problems.flat(state)
        h = hessian_diag(model, x, y, **problem.kwargs)
        for kind, extra in (("magnitude", {}), ("obd", {"hdiag": h}), ("random", {"key": 3})):
            scores = saliency(kind, model, **extra)
            assert isinstance(scores, nnx.State) == problem.is_nnx
            assert jax.tree.structure(scores) == jax.tree.structure(state)
        scores = saliency("obd", model, hdiag=h)
        want = jax.tree.map(lambda hh, w: 0.5 * hh * w**2, h, state)
        np.testing.assert_allclose(problems.flat(scores), problems.flat(want), rtol=1e-6)

        fractions = [0.0, 0.2, 0.5, 0.8]
        table = prune.sweep(model, scores, fractions, x, y, scope=scope, **problem.kwargs)
        for f, row in zip(fractions, table.itertuples(), strict=True):
            m = prune.masks(scores, f, scope=scope)
            assert jax.tree.structure(m) == jax.tree.structure(state)
            pruned = prune.apply_masks(model, m)
            logits = problems.logits(problem, pruned, x)
            assert row.accuracy == pytest.approx(float((logits.argmax(-1) == y).mean()), abs=1e-6)
            assert row.loss == pytest.approx(problems.mean_loss(problem, pruned, x, y), rel=1e-5)
            kernels = problems.kernel_leaves(m)
            n_kernel = sum(a.size for a in kernels)
            assert row.n_pruned == sum(int((~np.asarray(a)).sum()) for a in kernels)
            assert row.n_pruned == sum(int((np.asarray(a) == 0).sum())
                                       for a in problems.kernel_leaves(problems.param_tree(pruned)))  # fmt: skip
            if scope == "global":
                assert row.n_pruned == int(np.floor(f * n_kernel + 0.5))
            else:  # every kernel tensor loses its own share
                for a in kernels:
                    assert int((~np.asarray(a)).sum()) == int(np.floor(f * a.size + 0.5))
        # the original model is not modified by apply_masks
        np.testing.assert_array_equal(problems.flat(problems.param_tree(model)), before)


# --- Flax NNX models -----------------------------------------------------------------------------


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


def _nan_weight(params, layer=1, name="kernel"):
    params = jax.tree.map(np.array, params)
    params[layer][name][0, 0] = np.nan
    return params


def test_sweep_refuses_a_nan_weight_naming_the_tensor(toy_data, toy_net):
    xt, yt = toy_data[2:]
    bad = _nan_weight(toy_net)
    with pytest.raises(ValueError, match=r"parameter params\[1\]\['kernel'\] holds 1 non-finite"):
        prune.sweep(bad, saliency("magnitude", toy_net), [0.0, 0.5], xt, yt)
    jbad = jax.tree.map(jnp.asarray, bad)  # on the device: the same answer
    with pytest.raises(ValueError, match=r"params\[1\]\['kernel'\]"):
        prune.sweep(jbad, saliency("magnitude", toy_net), [0.0], xt, yt)
    with pytest.raises(ValueError, match=r"params\[1\]\['kernel'\]"):
        hessian_diag(bad, xt, yt)


def test_sweep_tables_refuse_non_finite_results():
    with pytest.raises(
        ValueError, match=r"not finite \(NaN or inf\) at 1 level\(s\), fraction 0.5"
    ):
        prune.sweep_table(np.array([0.0, 0.5]), [0, 5], 10, [0.9, 0.8], [0.1, np.nan])


@pytest.mark.parametrize("flag", ["no", "False", 0, 1, None])
def test_include_biases_must_be_a_bool(scores, flag):
    with pytest.raises(ValueError, match="include_biases must be True or False"):
        prune.masks(scores, 0.5, include_biases=flag)


def test_n_pruned_counts_zeros_when_scores_hold_minus_inf(toy_data, toy_net):
    """Zeros rank strictly first, then -inf scores: n_pruned is the count of zeros, max(k, z),
    even when -inf scores of non-zero weights come first in the flattened order."""
    xt, yt = toy_data[2:]
    params = jax.tree.map(np.array, toy_net)
    params[1]["kernel"][:4, :] = 0.0  # 12 zeros in the second layer
    scores = jax.tree.map(np.abs, params)
    scores[0]["kernel"][:, :] = -np.inf  # the whole first layer, all non-zero weights
    fractions = [0.05, 0.1, 0.5]
    table = prune.sweep(params, scores, fractions, xt, yt)
    n = sum(p["kernel"].size for p in params)
    assert table.n_pruned.tolist() == [max(int(np.floor(f * n + 0.5)), 12) for f in fractions]
    ranked = jax.tree.unflatten(
        jax.tree.structure(scores),
        prune._zeros_first(
            jax.tree.leaves(scores), [np.asarray(a) == 0 for a in jax.tree.leaves(params)]
        ),
    )
    for f, reported in zip(fractions, table.n_pruned, strict=True):
        pruned = prune.apply_masks(params, prune.masks(ranked, f))
        assert sum(int((np.asarray(p["kernel"]) == 0).sum()) for p in pruned) == reported

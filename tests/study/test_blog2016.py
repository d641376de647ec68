"""The blog's checkpoints, loaders and the faithful replay of its pruning scripts."""

from __future__ import annotations

import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from obd.mlp import accuracy
from obd.study import blog2016 as blog
from obd.study import blog2016_analysis as analysis
from obd.study import blog2016_replay as rep

TINY = (6, 4, 3, 3)  # two hidden layers: the same code paths as the blog's five layers

needs_blog = pytest.mark.skipif(
    not blog.blog_available(),
    reason=f"the blog's files are not in {blog.blog_dir()} (set {blog.ENV_VAR}; see README)",
)


def _mnist_reachable() -> bool:
    root = os.environ.get("TFDS_DATA_DIR")
    return bool(root) and (os.path.isdir(os.path.join(root, "mnist")))


needs_mnist = pytest.mark.skipif(
    not _mnist_reachable(), reason="no MNIST copy: set TFDS_DATA_DIR to a folder with mnist/3.0.1"
)


def _random_params(sizes, seed=0, scale=0.7):
    rng = np.random.default_rng(seed)
    return [
        {
            "kernel": (scale * rng.normal(size=(a, b))).astype(np.float32),
            "bias": (0.1 * rng.normal(size=b)).astype(np.float32),
        }
        for a, b in zip(sizes[:-1], sizes[1:], strict=True)
    ]


# ------------------------------------------------------------------------------------ loaders


def test_flat_layout_is_kernels_row_major_then_biases():
    sizes = TINY
    n_w = sum(a * b for a, b in zip(sizes[:-1], sizes[1:], strict=True))
    flat = np.arange(n_w + sum(sizes[1:]), dtype=np.float32)
    params = blog.params_from_flat(flat, sizes)
    np.testing.assert_array_equal(params[0]["kernel"], flat[:24].reshape(6, 4))
    np.testing.assert_array_equal(params[0]["kernel"][1, 0], 4.0)  # row-major [in, out]
    np.testing.assert_array_equal(params[1]["kernel"], flat[24:36].reshape(4, 3))
    np.testing.assert_array_equal(params[0]["bias"], flat[n_w : n_w + 4])
    np.testing.assert_array_equal(params[2]["bias"], flat[-3:])
    np.testing.assert_array_equal(blog.flat_from_params(params), flat)
    with pytest.raises(ValueError, match="vector of 55 values"):
        blog.params_from_flat(flat[:-1], sizes)


def _write_v1_checkpoint(path, tensors: dict[str, np.ndarray]) -> None:
    import tensorflow as tf

    graph = tf.Graph()
    with graph.as_default():
        variables = [tf.compat.v1.Variable(v, name=n) for n, v in tensors.items()]
        saver = tf.compat.v1.train.Saver(variables, write_version=tf.compat.v1.train.SaverDef.V1)
        with tf.compat.v1.Session(graph=graph) as sess:
            sess.run(tf.compat.v1.global_variables_initializer())
            saver.save(sess, str(path), write_meta_graph=False)


@pytest.mark.parametrize("layout", ["flat", "split"])
def test_loader_reads_both_layouts_from_v1_checkpoints(tmp_path, layout):
    params = _random_params(TINY)
    if layout == "flat":
        tensors = {"inference/variables": blog.flat_from_params(params)}
    else:
        names = blog.layer_names(len(TINY) - 1)
        tensors = {}
        for n, p in zip(names, params, strict=True):
            tensors[f"inference/W_{n}"] = p["kernel"].ravel()
            tensors[f"inference/b_{n}"] = p["bias"]
    tensors["beta1_power"] = np.float32(0.9)  # Adam's bookkeeping is ignored
    _write_v1_checkpoint(tmp_path / "model.ckpt", tensors)
    assert blog.layer_names(5) == blog.LAYER_NAMES
    loaded = blog.load_blog_checkpoint(tmp_path / "model.ckpt", TINY)
    for a, b in zip(loaded, params, strict=True):
        np.testing.assert_array_equal(a["kernel"], b["kernel"])
        np.testing.assert_array_equal(a["bias"], b["bias"])


def test_loader_rejects_what_is_not_a_checkpoint(tmp_path):
    bad = tmp_path / "model.ckpt-1"
    bad.write_text("not a checkpoint")
    with pytest.raises(ValueError, match="not a readable TensorFlow checkpoint"):
        blog.load_blog_checkpoint(bad)
    with pytest.raises(ValueError, match="neither 'inference/variables'"):
        blog.params_from_tensors({"inference/W_1": np.zeros(39200, np.float32)})
    with pytest.raises(ValueError, match="unknown run 'nope'; accepted: run_magnitude"):
        blog.read_log("nope")


def test_permuting_within_batches_keeps_the_batches():
    x = np.arange(40, dtype=np.float32).reshape(20, 2)
    y = np.arange(20)
    plain = list(zip(range(3), rep.sequential_batches(x, y, batch_size=6), strict=False))
    perm = list(
        zip(range(3), rep.sequential_batches(x, y, batch_size=6, permute_within=1), strict=False)
    )
    for (_, (_xa, ya)), (_, (xb, yb)) in zip(plain, perm, strict=True):
        assert sorted(ya.tolist()) == sorted(yb.tolist()) and ya.tolist() != yb.tolist()
        np.testing.assert_array_equal(xb, x[yb])
    assert plain[1][1][1].tolist() == list(range(6, 12))


def test_tfds_order_is_inverted_by_its_own_hash():
    # TFDS sorts examples by md5(split + str(key)); inverting that must give a permutation
    o = blog.tfds_original_index(1000, "test")
    assert sorted(o.tolist()) == list(range(1000))
    with pytest.raises(ValueError, match="accepted: train, test"):
        blog.tfds_original_index(10, "validation")


@needs_blog
def test_logs_parse_with_the_levels_the_scripts_printed():
    counts = {r: len(blog.read_log(r)) for r in blog.RUNS}
    assert counts == {
        "run_magnitude_layerwise_prune": 20,
        "run_magnitude_all_layers_prune": 20,
        "run_obd_layerwise_prune": 20,
        "run_obd_all_layers_prune": 26,
        "run_obd_all_layers_dropout": 26,
    }
    levels = [c for c, _ in blog.read_log("run_obd_all_layers_prune")]
    assert levels == list(range(21)) + [30, 40, 50, 60, 70]


@pytest.fixture(scope="module")
def tutorial():
    if not _mnist_reachable():
        pytest.skip("no MNIST copy: set TFDS_DATA_DIR to a folder with mnist/3.0.1")
    return blog.tutorial_mnist()


@needs_mnist
def test_tutorial_reader_order_and_split(tutorial):
    xtr, ytr = tutorial["train"]
    xv, yv = tutorial["validation"]
    assert xtr.shape == (55000, 784) and xv.shape == (5000, 784) and xtr.dtype == np.float32
    assert tuple(yv[:20]) == blog.FIRST_TRAIN_LABELS  # the order check inside original_order
    assert tuple(tutorial["test"][1][:20]) == blog.FIRST_TEST_LABELS
    assert xtr.max() == np.float32(255) * np.float32(1 / 255) and xtr.min() == 0


@needs_blog
@needs_mnist
@pytest.mark.parametrize(
    "run,expected",
    [
        ("run_magnitude_all_layers_prune", 0.9694),
        ("run_magnitude_layerwise_prune", 0.9698),
        ("run_obd_layerwise_prune", 0.9672),
        ("run_obd_all_layers_prune", 0.9656),
        ("run_obd_all_layers_dropout", 0.9113),
    ],
)
def test_unpruned_accuracy_equals_the_first_logged_line(tutorial, run, expected):
    params = blog.load_run(run)
    assert blog.read_log(run)[0] == (0, expected)
    xt, yt = tutorial["test"]
    jparams = [{k: jnp.asarray(v) for k, v in layer.items()} for layer in params]
    assert round(float(accuracy(jparams, xt, yt)), 4) == expected
    layout = blog.RUNS[run].layout
    variables = rep.to_variables(params, layout)
    assert round(rep.test_accuracy(variables, xt, yt, layout=layout), 4) == expected


# ------------------------------------------------------------------------ the replay's maths


def _dense_row_sums(params, x, y, sizes, layout, loss):
    """Reference: the dense float64 Hessian of the blog's loss by jax.hessian, row-summed.
    Call inside ``jax.enable_x64(True)``."""
    flat0 = jnp.asarray(blog.flat_from_params(params), jnp.float64)
    xj, yj = jnp.asarray(x, jnp.float64), jax.nn.one_hot(y, sizes[-1], dtype=jnp.float64)

    def f(flat):
        n_w = sum(a * b for a, b in zip(sizes[:-1], sizes[1:], strict=True))
        h, w_off, b_off = xj, 0, n_w
        for i, (a, b) in enumerate(zip(sizes[:-1], sizes[1:], strict=True)):
            h = h @ flat[w_off : w_off + a * b].reshape(a, b) + flat[b_off : b_off + b]
            if i < len(sizes) - 2:
                h = jax.nn.relu(h)
            w_off, b_off = w_off + a * b, b_off + b
        logp = jnp.log(jax.nn.softmax(h)) if loss == "naive" else jax.nn.log_softmax(h)
        return -jnp.sum(yj * logp)

    hess = np.asarray(jax.jit(jax.hessian(f))(flat0))
    assert hess.dtype == np.float64
    if layout == "flat":
        return [hess.sum(1)]
    # split: the blocks of W_1, b_1, W_2, ... on the diagonal, each row-summed within its block
    n_w = sum(a * b for a, b in zip(sizes[:-1], sizes[1:], strict=True))
    blocks, w_off, b_off = [], 0, n_w
    for a, b in zip(sizes[:-1], sizes[1:], strict=True):
        for lo, hi in ((w_off, w_off + a * b), (b_off, b_off + b)):
            blocks.append(hess[lo:hi, lo:hi].sum(1))
        w_off, b_off = w_off + a * b, b_off + b
    return blocks


@pytest.mark.parametrize("layout", ["flat", "split"])
@pytest.mark.parametrize("loss", ["naive", "stable"])
def test_row_sums_equal_dense_jax_hessian_in_float64(layout, loss):
    sizes = TINY
    params = _random_params(sizes, seed=1)
    rng = np.random.default_rng(2)
    x = rng.uniform(size=(9, sizes[0]))
    y = rng.integers(0, sizes[-1], size=9)
    variables = [v.astype(np.float64) for v in rep.to_variables(params, layout)]
    got, value = rep.hessian_row_sums(
        variables, x, y, layout=layout, sizes=sizes, dtype="float64", loss=loss
    )
    with jax.enable_x64(True):
        want = _dense_row_sums(params, x, y, sizes, layout, loss)
    assert len(got) == len(want) == (1 if layout == "flat" else 6)
    for g, w in zip(got, want, strict=True):
        np.testing.assert_allclose(g, w, rtol=1e-9, atol=1e-12)
    assert np.isfinite(value) and value > 0


def test_naive_float32_row_sums_turn_nan_when_a_probability_is_below_5e_20():
    """One example whose smallest class probability is ~e^-50 ≈ 2e-22: the blog's float32 graph
    (TF 0.10's gradient of log) squares 1/p into inf and multiplies it by a zero label: NaN in
    every entry. Float64, the stable loss and today's TF gradient of log stay finite."""
    sizes = (2, 3)
    params = [
        {
            "kernel": np.array([[25.0, 0.0, -25.0], [0.0, 1.0, 0.0]], np.float32),
            "bias": np.zeros(3, np.float32),
        }
    ]
    x = np.array([[1.0, 0.5], [0.0, 1.0]], np.float32)
    y = np.array([0, 1])
    v = rep.to_variables(params, "flat")
    naive, _ = rep.hessian_row_sums(v, x, y, layout="flat", sizes=sizes)
    assert np.isnan(naive[0]).all()
    for kw in ({"dtype": "float64"}, {"loss": "stable"}, {"loss": "naive_tf2"}):
        other, _ = rep.hessian_row_sums(v, x, y, layout="flat", sizes=sizes, **kw)
        assert np.isfinite(other[0]).all(), kw
    # above the threshold (logit gap 40: p ≈ 4e-18) the blog's graph is finite too
    params[0]["kernel"][0] = [20.0, 0.0, -20.0]
    v = rep.to_variables(params, "flat")
    assert np.isfinite(rep.hessian_row_sums(v, x, y, layout="flat", sizes=sizes)[0][0]).all()


def test_tensorflow_top_k_ties_and_nan_as_the_replay_relies_on():
    # ties: the lower index first; an all-NaN vector: indices 0..k-1 (pixel order in W_1)
    assert rep.top_k_indices(np.array([1, 3, 3, 2, 3], np.float32), 3).tolist() == [1, 2, 4]
    nan = np.full(1000, np.nan, np.float32)
    assert rep.top_k_indices(-nan, 37).tolist() == list(range(37))
    assert rep.top_k_indices(nan, 0).size == 0
    assert rep.prune_count(7, 47410) == 3318 and rep.prune_count(30, 50) == 15
    with pytest.raises(ValueError, match=r"in \[0, 100\]"):
        rep.prune_count(101, 10)


def test_bad_arguments_name_what_is_accepted():
    v = rep.to_variables(_random_params(TINY), "flat")
    x, y = np.zeros((2, 6), np.float32), np.array([0, 1])
    with pytest.raises(ValueError, match="layout='rows' is not accepted; choose one of"):
        rep.hessian_row_sums(v, x, y, layout="rows", sizes=TINY)
    with pytest.raises(ValueError, match="loss='mse'"):
        rep.hessian_row_sums(v, x, y, layout="flat", sizes=TINY, loss="mse")
    with pytest.raises(ValueError, match=r"x must be \[N, 6\]"):
        rep.hessian_row_sums(v, x[:, :5], y, layout="flat", sizes=TINY)
    with pytest.raises(ValueError, match=r"labels must be in \[0, 2\]"):
        rep.hessian_row_sums(v, x, np.array([0, 3]), layout="flat", sizes=TINY)
    with pytest.raises(ValueError, match="needs batches"):
        rep.replay("run_obd_all_layers_prune", _random_params(TINY), [1], (x, y))


def test_bad_data_is_refused_by_every_replay_entry_point():
    """NaN pixels, pixels 0-255, integer images and labels out of range raise ValueError in each
    function that takes the blog's MNIST, instead of a plausible accuracy or row sum."""
    params = _random_params(TINY)
    v = rep.to_variables(params, "flat")
    x, y = np.full((4, 6), 0.5, np.float32), np.array([0, 1, 2, 1])
    nan = x.copy()
    nan[2, 3] = np.nan
    cases = [
        (nan, y, "non-finite"),
        (x * 255, y, r"expected MNIST pixels in \[0, 1\] \(0-255 pixels\? divide by 255\)"),
        ((x * 255).astype(np.uint8), y, "floating point"),
        (x, np.array([0, 1, 2, -1]), r"labels must be in \[0, 2\]"),
    ]
    for bx, by, match in cases:
        with pytest.raises(ValueError, match=match):
            rep.hessian_row_sums(v, bx, by, layout="flat", sizes=TINY)
        with pytest.raises(ValueError, match=match):
            rep.test_accuracy(v, bx, by, layout="flat", sizes=TINY)
        with pytest.raises(ValueError, match=match):
            rep.replay("run_magnitude_all_layers_prune", params, [1], (bx, by), sizes=TINY)
        with pytest.raises(ValueError, match=match):
            analysis.overflow_table(params, (bx, by), layout="flat")
        if by is y:  # the functions that take images alone
            with pytest.raises(ValueError, match=match):
                analysis.min_log_probability(params, bx)
            with pytest.raises(ValueError, match=match):
                analysis.first_rows_blank(params, bx, [1])
    assert 0 <= rep.test_accuracy(v, x, y, layout="flat", sizes=TINY) <= 1


# ------------------------------------------------------------------------ replay on the blog


@needs_blog
@needs_mnist
@pytest.mark.parametrize("run", ["run_magnitude_layerwise_prune", "run_magnitude_all_layers_prune"])
def test_magnitude_replay_equals_every_logged_level(tutorial, run):
    log = blog.read_log(run)[1:]
    records = rep.replay(run, blog.load_run(run), [c for c, _ in log], tutorial["test"])
    assert [round(r.accuracy, 4) for r in records] == [a for _, a in log]


@needs_blog
@needs_mnist
def test_all_layer_obd_replay_equals_the_log_from_1_to_30_percent(tutorial):
    run = "run_obd_all_layers_prune"
    log = [(c, a) for c, a in blog.read_log(run)[1:] if c <= 30]
    assert len(log) == 21
    xtr, ytr = tutorial["train"]
    records = rep.replay(
        run, blog.load_run(run), [c for c, _ in log], tutorial["test"],
        rep.sequential_batches(xtr, ytr),
    )  # fmt: skip
    assert [round(r.accuracy, 4) for r in records] == [a for _, a in log]
    assert all(r.nan_saliency for r in records)  # every level was ranked by an all-NaN vector


def _log(kept: list[int]) -> str:
    return "".join(f"Variables Perecent: {k}, Test accuracy: 0.9{k % 10}\n" for k in kept)


@pytest.mark.parametrize(
    ("text", "why"),
    [
        (_log(list(range(100, 81, -1))), "is truncated: it logs from 100% down to 81%"),
        (_log(list(range(100, 80, -1)))[:-12], "ends mid-line"),
        (_log([100, 99, 99, *range(98, 80, -1)]), "level 99% is logged twice"),
        (_log([100, 98, 99, *range(97, 80, -1)]), "level 99% is out of order"),
        (_log([190, *range(99, 80, -1)]), "is not a level"),
        (
            "Variables Perecent: 100, Test accuracy: 97\n" + _log(list(range(99, 80, -1))),
            "is not a level",
        ),  # fmt: skip
    ],
)
def test_read_log_refuses_truncated_repeated_and_impossible_logs(tmp_path, text, why):
    run = "run_obd_layerwise_prune"
    (tmp_path / run).mkdir()
    (tmp_path / run / "results.txt").write_text(_log(list(range(100, 80, -1))))
    assert len(blog.read_log(run, tmp_path)) == 20  # the whole log: read as before
    (tmp_path / run / "results.txt").write_text(text)
    with pytest.raises(ValueError, match=f"{run}/results.txt") as err:
        blog.read_log(run, tmp_path)
    assert why in str(err.value)


def test_a_checkpoint_without_its_data_file_is_a_value_error(tmp_path):
    import tensorflow as tf

    graph = tf.Graph()
    with graph.as_default():
        v = tf.compat.v1.Variable(
            blog.flat_from_params(_random_params(TINY)), name="inference/variables"
        )
        saver = tf.compat.v1.train.Saver([v])  # a V2 checkpoint: an index and a data file
        with tf.compat.v1.Session(graph=graph) as sess:
            sess.run(tf.compat.v1.global_variables_initializer())
            saver.save(sess, str(tmp_path / "model.ckpt"), write_meta_graph=False)
    for data in tmp_path.glob("model.ckpt.data-*"):
        data.write_bytes(b"")  # damaged: emptied
    with pytest.raises(ValueError, match="damaged TensorFlow checkpoint|not a readable"):
        blog.load_blog_checkpoint(tmp_path / "model.ckpt", TINY)

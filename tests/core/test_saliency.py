import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.flatten_util import ravel_pytree

import obd.study  # noqa: F401  (registers the blog's saliencies)
import problems
from obd import mlp as model
from obd import prune
from obd.saliencies import SCOPES, draw_batch, saliency, saliency_kinds
from problems import PROBLEM_IDS, PROBLEMS


def _tree(k0, b0, k1, b1):
    return [
        {"kernel": jnp.asarray(k0, jnp.float32), "bias": jnp.asarray(b0, jnp.float32)},
        {"kernel": jnp.asarray(k1, jnp.float32), "bias": jnp.asarray(b1, jnp.float32)},
    ]


@pytest.fixture
def signed_params():
    """Kernels with large negative and small positive/negative weights."""
    return _tree([[-3.0, 0.1], [2.0, -0.5]], [0.0, 0.0], [[1.0], [-0.2]], [0.0])


def _pruned(scores, k):
    """The pruned kernel values' positions as (layer, row, col) for a global prune of k."""
    m = prune.masks(scores, k / 6)
    return {(i, *map(int, idx)) for i, lay in enumerate(m) for idx in np.argwhere(~lay["kernel"])}


def test_magnitude_prunes_smallest_abs_blog_magnitude_most_negative(signed_params):
    mag = saliency("magnitude", signed_params)
    seed = saliency("blog_magnitude", signed_params)
    for s, p in zip(mag, signed_params, strict=True):
        np.testing.assert_array_equal(s["kernel"], np.abs(p["kernel"]))
    for s, p in zip(seed, signed_params, strict=True):
        np.testing.assert_array_equal(s["kernel"], p["kernel"])
    assert _pruned(mag, 2) == {(0, 0, 1), (1, 1, 0)}  # 0.1 and -0.2
    assert _pruned(seed, 2) == {(0, 0, 0), (0, 1, 1)}  # -3 and -0.5


def test_obd_is_half_h_w_squared(signed_params):
    hdiag = _tree([[1.0, 4.0], [0.5, 2.0]], [1.0, 1.0], [[3.0], [10.0]], [7.0])
    s = saliency("obd", signed_params, hdiag=hdiag)
    np.testing.assert_allclose(s[0]["kernel"], [[4.5, 0.02], [1.0, 0.25]], rtol=1e-6)
    np.testing.assert_allclose(s[1]["kernel"], [[1.5], [0.2]], rtol=1e-6)
    np.testing.assert_array_equal(s[0]["bias"], [0.0, 0.0])
    # ranking: 0.02 (0.1 weight) < 0.2 (-0.2) < 0.25 (-0.5) < 1.0 < 1.5 < 4.5
    assert _pruned(s, 3) == {(0, 0, 1), (1, 1, 0), (0, 1, 1)}


def test_obd_needs_matching_hdiag(signed_params):
    with pytest.raises(ValueError, match="hdiag is required"):
        saliency("obd", signed_params)
    bad_shape = _tree([[1.0, 4.0]], [1.0, 1.0], [[3.0], [10.0]], [7.0])
    with pytest.raises(ValueError, match="shape"):
        saliency("obd", signed_params, hdiag=bad_shape)
    with pytest.raises(ValueError, match="structure"):
        saliency("obd", signed_params, hdiag=signed_params[:1])


def test_random_reproducible_and_key_dependent(signed_params):
    a = saliency("random", signed_params, key=jax.random.key(0))
    b = saliency("random", signed_params, key=jax.random.key(0))
    c = saliency("random", signed_params, key=jax.random.key(1))
    for u, v in zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True):
        np.testing.assert_array_equal(u, v)
        assert np.all((u >= 0) & (u < 1))
    assert not np.allclose(ravel_pytree(a)[0], ravel_pytree(c)[0])
    with pytest.raises(ValueError, match="key"):
        saliency("random", signed_params)


@pytest.fixture
def tiny():
    params = model.init_mlp(jax.random.key(0), (4, 3, 3))
    params = jax.tree.map(lambda a: a + 0.05, params)  # non-zero biases
    rng = np.random.default_rng(0)
    x = rng.normal(size=(200, 4)).astype(np.float32)
    y = rng.integers(0, 3, 200).astype(np.int32)
    return params, x, y


def _reference_row_sums(params, xb, yb, activation, scope):
    """H @ 1 (global) or block-diagonal row sums (layerwise) from the dense jax.hessian."""
    flat, unravel = ravel_pytree(params)

    def summed_ce(f):
        logits = model.apply_mlp(unravel(f), xb, activation=activation)
        logp = jax.nn.log_softmax(logits)
        return -jnp.take_along_axis(logp, yb[:, None], axis=1).sum()

    h = jax.jit(jax.hessian(summed_ce))(flat)
    if scope == "global":
        return unravel(h @ jnp.ones_like(flat))
    block = np.repeat(
        np.arange(len(jax.tree.leaves(params))), [a.size for a in jax.tree.leaves(params)]
    )
    return unravel((h * (block[:, None] == block[None, :])).sum(1))


@pytest.mark.parametrize("activation", ["relu", "tanh"])
@pytest.mark.parametrize("scope", SCOPES)
def test_blog_obd_matches_dense_hessian_row_sums(tiny, scope, activation):
    params, x, y = tiny
    key = jax.random.key(7)
    got = saliency("blog_obd", params, key=key, x=x, y=y, scope=scope, activation=activation)
    xb, yb = draw_batch(key, x, y, 64)
    want = _reference_row_sums(params, xb, yb, activation, scope)
    for g, w in zip(jax.tree.leaves(got), jax.tree.leaves(want), strict=True):
        np.testing.assert_allclose(g, w, rtol=1e-5, atol=1e-5)


def test_blog_obd_scopes_differ_and_depend_on_batch(tiny):
    params, x, y = tiny
    glob = saliency("blog_obd", params, key=jax.random.key(1), x=x, y=y, scope="global")
    lay = saliency("blog_obd", params, key=jax.random.key(1), x=x, y=y, scope="layerwise")
    other = saliency("blog_obd", params, key=jax.random.key(2), x=x, y=y, scope="global")
    assert not np.allclose(ravel_pytree(glob)[0], ravel_pytree(lay)[0])
    assert not np.allclose(ravel_pytree(glob)[0], ravel_pytree(other)[0])


def test_draw_batch_distinct_rows_of_data(tiny):
    _, x, y = tiny
    xb, yb = draw_batch(jax.random.key(3), x, y, 64)
    assert xb.shape == (64, 4) and yb.shape == (64,)
    idx = [int(np.flatnonzero((x == row).all(1))[0]) for row in np.asarray(xb)]
    assert len(set(idx)) == 64
    np.testing.assert_array_equal(y[idx], yb)
    with pytest.raises(ValueError, match="batch_size"):
        draw_batch(jax.random.key(3), x, y, 201)


def test_bad_arguments_raise(signed_params, tiny):
    with pytest.raises(ValueError, match="accepted: " + ", ".join(saliency_kinds())):
        saliency("hessian", signed_params)
    with pytest.raises(ValueError, match="accepted: global, layerwise"):
        saliency("magnitude", signed_params, scope="per-neuron")
    params, x, y = tiny
    with pytest.raises(ValueError, match="x and y"):
        saliency("blog_obd", params, key=jax.random.key(0))
    with pytest.raises(ValueError, match="key"):
        saliency("blog_obd", params, x=x, y=y)
    with pytest.raises(ValueError, match="params"):
        saliency("magnitude", {"kernel": jnp.ones((2, 2))})


@pytest.mark.parametrize("problem", PROBLEMS, ids=PROBLEM_IDS)
def test_blog_obd_row_sums_match_the_dense_hessian_in_float64(problem):
    """The blog's OBD saliency is the row sums of the Hessian of the summed cross-entropy over one
    batch (all the examples here: the batch is the data set), for every problem of the table."""
    with jax.enable_x64(True):
        model, x, y = problem.make()
        scores = saliency("blog_obd", model, x=x, y=y, key=0, batch_size=len(x), **problem.kwargs)
        want = problems.dense_hessian(problem, model, x, y, reduction="sum").sum(1)
        np.testing.assert_allclose(ravel_pytree(scores)[0], want, rtol=1e-8, atol=1e-10)

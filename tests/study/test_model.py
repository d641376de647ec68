"""obd.study.model: the MLP checkpoints (save, load, what they refuse)."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from obd import mlp
from obd.study import convnets
from obd.study import model as blog_model
from obd.study.model import load_params, save_params


def test_save_load_roundtrip(tmp_path):
    params = mlp.init_mlp(jax.random.key(0), (5, 4, 2))
    meta = {"seed": 3, "config": {"steps": 10}, "test_accuracy": 0.5}
    path = tmp_path / "m.npz"
    blog_model.save_params(path, params, meta)
    loaded, meta2 = blog_model.load_params(path)
    assert meta2 == meta
    for a, b in zip(jax.tree.leaves(loaded), jax.tree.leaves(params), strict=True):
        np.testing.assert_array_equal(a, b)
    assert [p.name for p in tmp_path.iterdir()] == ["m.npz"]  # no temporary files left behind


def test_load_rejects_non_checkpoints(tmp_path):
    with pytest.raises(ValueError, match="does not exist"):
        blog_model.load_params(tmp_path / "missing.npz")
    (tmp_path / "junk.npz").write_text("not a zip")
    with pytest.raises(ValueError, match="not an .npz checkpoint"):
        blog_model.load_params(tmp_path / "junk.npz")
    np.savez(tmp_path / "plain.npz", a=np.zeros(3))
    with pytest.raises(ValueError, match="not a checkpoint"):
        blog_model.load_params(tmp_path / "plain.npz")


@pytest.mark.parametrize(
    "meta", ["not json {", "[1, 2]", "", np.arange(3)], ids=["text", "list", "empty", "array"]
)
def test_checkpoint_meta_that_is_not_a_json_object(tmp_path, toy_net, meta):
    path = tmp_path / "m.npz"
    arrays = {
        f"layer{i}/{k}": np.asarray(v) for i, layer in enumerate(toy_net) for k, v in layer.items()
    }
    np.savez(path, **arrays, __meta__=np.array(meta) if isinstance(meta, str) else meta)
    with pytest.raises(ValueError, match=r"m\.npz.*'__meta__' entry is not a JSON object"):
        load_params(path)


def test_unserialisable_meta_is_refused_before_writing(tmp_path, toy_net):
    with pytest.raises(ValueError, match="meta must be JSON-serialisable"):
        save_params(tmp_path / "m.npz", toy_net, {"loss": float("nan")})
    with pytest.raises(ValueError, match="meta must be a dict"):
        save_params(tmp_path / "m.npz", toy_net, ["seed", 0])
    assert not list(tmp_path.iterdir())


def test_checkpoints_with_non_finite_weights_are_refused(tmp_path, toy_net):
    bad = [dict(layer) for layer in toy_net]
    bad[1]["kernel"] = bad[1]["kernel"].at[2, 1].set(jnp.nan)
    save_params(tmp_path / "m.npz", bad, {"seed": 0})
    with pytest.raises(ValueError, match=r"m\.npz.*tensor layer1/kernel holds 1 non-finite"):
        load_params(tmp_path / "m.npz")
    model = convnets.build("lenet_300_100")
    model.layers[2].bias[...] = model.layers[2].bias[...].at[4].set(jnp.inf)
    convnets.save_net(tmp_path / "c.npz", model, {"arch": "lenet_300_100"})
    with pytest.raises(ValueError, match=r"c\.npz.*tensor layer1/bias holds 1 non-finite"):
        convnets.load_net(tmp_path / "c.npz")

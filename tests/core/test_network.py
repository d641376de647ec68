"""obd.network: the NNX items it would compute otherwise than the model are refused."""

from __future__ import annotations

import jax
import numpy as np
import pytest
from flax import nnx

from obd import nets, prune
from obd.hessian import hessian_diag
from obd.saliencies import saliency
from problems import TOY_SIZES


class _Doubled(nnx.Linear):
    def __call__(self, x):
        return 2 * super().__call__(x)


class _Named(nnx.Linear):  # a subclass that keeps nnx.Linear's computation
    pass


class _ShiftedConv(nnx.Conv):
    def __call__(self, x):
        return super().__call__(x) + 1.0


def test_subclassed_layers_with_their_own_call_are_refused(toy_data):
    x, y, _, _ = toy_data
    rngs = nnx.Rngs(0)
    model = nnx.Sequential(_Doubled(20, 8, rngs=rngs), jax.nn.relu, nnx.Linear(8, 3, rngs=rngs))
    msg = r"item 0 of the nnx.Sequential \(_Doubled\) subclasses nnx.Linear with its own __call__"
    with pytest.raises(ValueError, match=msg):
        hessian_diag(model, x, y)
    with pytest.raises(ValueError, match=msg):
        prune.sweep(model, saliency("magnitude", nets.mlp(TOY_SIZES, rngs=rngs)), [0.5], x, y)
    conv = nnx.Sequential(_ShiftedConv(1, 2, kernel_size=(3, 3), rngs=rngs), nets.flatten,
                          nnx.Linear(2 * 4 * 5, 3, rngs=rngs))  # fmt: skip
    with pytest.raises(ValueError, match=r"item 0 .*\(_ShiftedConv\) subclasses nnx.Conv"):
        hessian_diag(conv, x.reshape(-1, 4, 5, 1), y)
    custom = nnx.Linear(8, 3, dot_general=lambda *a, **k: jax.lax.dot_general(*a, **k), rngs=rngs)
    with pytest.raises(ValueError, match="item 2 .* has a custom dot_general"):
        hessian_diag(nnx.Sequential(nnx.Linear(20, 8, rngs=rngs), jax.nn.relu, custom), x, y)
    # a subclass that keeps the computation is the plain layer
    a = nnx.Sequential(_Named(20, 8, rngs=nnx.Rngs(1)), jax.nn.relu, _Named(8, 3, rngs=nnx.Rngs(2)))
    b = nnx.Sequential(nnx.Linear(20, 8, rngs=nnx.Rngs(1)), jax.nn.relu,
                       nnx.Linear(8, 3, rngs=nnx.Rngs(2)))  # fmt: skip
    for u, v in zip(jax.tree.leaves(hessian_diag(a, x, y)), jax.tree.leaves(hessian_diag(b, x, y)),
                    strict=True):  # fmt: skip
        np.testing.assert_array_equal(u, v)


def test_shared_layers_are_named_as_such(toy_data):
    x, y, _, _ = toy_data
    rngs = nnx.Rngs(0)
    hidden = nnx.Linear(8, 8, rngs=rngs)
    model = nnx.Sequential(nnx.Linear(20, 8, rngs=rngs), jax.nn.relu, hidden, jax.nn.relu, hidden,
                           jax.nn.relu, nnx.Linear(8, 3, rngs=rngs))  # fmt: skip
    with pytest.raises(ValueError, match=r"item 4 .* is the same Linear object as item 2: shared "
                                         r"\(tied\) layers are not supported"):  # fmt: skip
        hessian_diag(model, x, y)

"""The shared table of small test problems, and the helpers the core's tests share.

Each :class:`Problem` is a network the core accepts with float64 parameters and data, small
enough for the dense ``jax.hessian`` of its loss over the flattened parameters (the independent
reference of the curvature tests):

* ``mlp``: the plain list-of-dicts pytree, ReLU (piecewise linear: every Hessian method applies);
* ``mlp_tanh``: the plain pytree with a smooth activation (tanh: the loss has ``act''`` terms);
* ``nnx_mlp``: the same kind of network as an ``nnx.Sequential`` of ``nnx.Linear`` layers;
* ``convnet``: ``nnx.Conv`` + max pooling + flatten + ``nnx.Linear`` (the contract's example).

Build a problem's model and data inside ``jax.enable_x64(True)`` (``problem.make()``); a test
parametrised over the table takes ``PROBLEMS`` with ``ids=PROBLEM_IDS``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx
from jax.flatten_util import ravel_pytree

from obd import mlp as mlp_model
from obd import nets

F64 = {"param_dtype": jnp.float64}


@dataclass(frozen=True)
class Problem:
    name: str
    build: Callable[[], tuple[Any, jax.Array, jax.Array]]
    #: the plain pytree's activation (its ``activation=`` argument); None for an NNX model
    activation: str | None = None
    #: whether the loss has second derivatives of the activation (then "fast" is refused)
    smooth: bool = False
    #: whether it is a network of dense layers only ("hvp" takes only those)
    dense: bool = True

    def make(self) -> tuple[Any, jax.Array, jax.Array]:
        """The model (plain pytree or ``nnx.Sequential``), inputs and labels; call under x64."""
        assert jax.config.jax_enable_x64, "build a problem inside jax.enable_x64(True)"
        return self.build()

    @property
    def is_nnx(self) -> bool:
        return self.activation is None

    @property
    def kwargs(self) -> dict[str, str]:
        """The keyword arguments the core's functions take for this model (its activation)."""
        return {} if self.is_nnx else {"activation": self.activation}

    def __str__(self) -> str:
        return self.name


def _data(n: int, shape: tuple[int, ...], classes: int, seed: int):
    rng = np.random.default_rng(seed)
    x = jnp.asarray(rng.normal(size=(n, *shape)))
    return x, jnp.asarray(rng.integers(0, classes, n), jnp.int32)


def _plain(sizes: tuple[int, ...], n: int, seed: int):
    def build():
        rng = np.random.default_rng(seed)
        params = [
            {
                "kernel": jnp.asarray(rng.normal(size=(a, b)) * 1.5 / np.sqrt(a)),
                "bias": jnp.asarray(rng.normal(size=b) * 0.3),
            }
            for a, b in zip(sizes[:-1], sizes[1:], strict=True)
        ]
        return (params, *_data(n, (sizes[0],), sizes[-1], seed + 100))

    return build


def _nnx_mlp():
    rngs = nnx.Rngs(3)
    model = nnx.Sequential(
        nnx.Linear(6, 8, rngs=rngs, **F64),
        jax.nn.relu,
        nnx.Linear(8, 5, rngs=rngs, **F64),
        jax.nn.relu,
        nnx.Linear(5, 3, rngs=rngs, **F64),
    )
    return (model, *_data(11, (6,), 3, 4))


def _convnet():
    rngs = nnx.Rngs(0)
    model = nnx.Sequential(
        nnx.Conv(1, 4, kernel_size=(3, 3), strides=(2, 2), padding="SAME", rngs=rngs, **F64),
        jax.nn.relu,
        nets.max_pool((2, 2)),
        nets.flatten,
        nnx.Linear(4 * 3 * 3, 10, rngs=nnx.Rngs(1), **F64),
    )
    return (model, *_data(6, (12, 12, 1), 10, 5))


PROBLEMS = [
    Problem("mlp", _plain((7, 5, 3, 4), 13, seed=0), activation="relu"),
    Problem("mlp_tanh", _plain((5, 8, 6, 7, 3), 11, seed=4), activation="tanh", smooth=True),
    Problem("nnx_mlp", _nnx_mlp),
    Problem("convnet", _convnet, dense=False),
]
PROBLEM_IDS = [p.name for p in PROBLEMS]


# --- independent references ---------------------------------------------------------------------


def param_tree(model) -> Any:
    """The parameters as the core returns curvature and scores for them: the pytree itself, or
    the model's ``nnx.State`` of ``nnx.Param``."""
    return nnx.state(model, nnx.Param) if isinstance(model, nnx.Module) else model


def flat(tree) -> np.ndarray:
    return np.asarray(ravel_pytree(tree)[0])


def logits_fn(problem: Problem, model) -> Callable[[Any, jax.Array], jax.Array]:
    """``f(params, x)``: the logits for a parameter tree shaped like :func:`param_tree` (the
    model's own forward pass for NNX, ``obd.mlp.apply_mlp`` for the plain pytree)."""
    if problem.is_nnx:
        graphdef, _ = nnx.split(model, nnx.Param)
        return lambda p, x: nnx.merge(graphdef, p)(x)
    return lambda p, x: mlp_model.apply_mlp(p, x, activation=problem.activation)


def logits(problem: Problem, model, x) -> jax.Array:
    return logits_fn(problem, model)(param_tree(model), jnp.asarray(x))


def mean_loss(problem: Problem, model, x, y) -> float:
    ce = optax.softmax_cross_entropy_with_integer_labels(logits(problem, model, x), y)
    return float(ce.mean())


def dense_hessian(problem: Problem, model, x, y, reduction: str = "mean") -> np.ndarray:
    """The dense ``jax.hessian`` of the cross-entropy (mean or sum over the examples) over the
    flattened parameters, in the model's dtype (float64 for the table's problems)."""
    f0, unravel = ravel_pytree(param_tree(model))
    forward = logits_fn(problem, model)

    def loss(f):
        ce = optax.softmax_cross_entropy_with_integer_labels(forward(unravel(f), x), y)
        return ce.mean() if reduction == "mean" else ce.sum()

    return np.asarray(jax.jit(jax.hessian(loss))(f0))


def unflatten_like(v: np.ndarray, tree):
    """A vector as a pytree shaped like ``tree`` (its leaves in ``jax.tree.leaves`` order)."""
    return ravel_pytree(tree)[1](jnp.asarray(v))


def kernel_leaves(tree) -> list:
    """The kernel tensors of a parameter or mask tree (plain pytree or ``nnx.State``)."""
    return [a for p, a in jax.tree_util.tree_leaves_with_path(tree) if "kernel" in str(p)]


# --- helpers of the reliability tests -----------------------------------------------------------

#: the toy MLP's layer widths (``toy_data``: 20 inputs, 3 classes) and a short training run
TOY_SIZES = (20, 8, 3)
TOY_TRAIN = dict(sizes=TOY_SIZES, steps=20, batch_size=16, chunk_steps=10, learning_rate=1e-3)


def keep_all(params):
    """Masks that keep every parameter."""
    return jax.tree.map(lambda p: jnp.ones(p.shape, bool), params)


def sparsify(params, share=0.4, seed=0):
    """``params`` with ``share`` of every kernel's weights set to exactly zero (random places)."""
    rng = np.random.default_rng(seed)
    out = []
    for layer in params:
        k = np.array(layer["kernel"])
        k.ravel()[rng.permutation(k.size)[: round(share * k.size)]] = 0
        out.append({"kernel": jnp.asarray(k), "bias": layer["bias"]})
    return out


def kernel_zeros(params) -> int:
    return sum(int((np.asarray(layer["kernel"]) == 0).sum()) for layer in params)


def mnist_like(n, seed=0):
    """``n`` MNIST-shaped examples: 784 pixels in [0, 1), labels 0-9."""
    rng = np.random.default_rng(seed)
    return rng.uniform(size=(n, 784)).astype(np.float32), rng.integers(0, 10, n).astype(np.int32)

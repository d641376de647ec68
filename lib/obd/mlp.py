"""A dense network as a plain pytree, and the same network as a Flax NNX module.

The plain pytree is a list of dense layers, each ``{"kernel": [in, out], "bias": [out]}``, with
one named activation (a key of :data:`obd.network.ACTIVATIONS`) between them: the Hessian,
saliency, pruning, OBS and retraining code accepts it as well as any ``nnx.Sequential``.
:class:`MLP` is the NNX definition; :func:`init_mlp` initialises through it, and
:func:`apply_mlp` is the equivalent pure function on the pytree: ``h_0 = x``,
``h_{l+1} = act(h_l W_l + b_l)`` for the hidden layers, and logits ``h_{L-1} W_{L-1} + b_{L-1}``.
"""

from __future__ import annotations

from collections.abc import Sequence

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx

from obd.network import ACTIVATIONS, Params, activation_fn

__all__ = [
    "MLP",
    "accuracy",
    "apply_mlp",
    "init_mlp",
    "layer_sizes",
    "loss",
    "mlp_activation",
    "module_from_params",
    "params_from_module",
]


def _check_sizes(sizes: Sequence[int]) -> tuple[int, ...]:
    sizes = tuple(int(s) for s in sizes)
    if len(sizes) < 2 or any(s < 1 for s in sizes):
        raise ValueError(f"sizes must be >= 2 positive layer widths, got {sizes}")
    return sizes


class MLP(nnx.Module):
    """Dense ReLU network; dropout (``dropout_rate`` = 1 - keep prob) after each hidden layer."""

    def __init__(
        self,
        sizes: Sequence[int],
        *,
        activation: str = "relu",
        dropout_rate: float = 0.0,
        rngs: nnx.Rngs,
    ):
        sizes = _check_sizes(sizes)
        self.act = activation_fn(activation)
        self.layers = nnx.List(
            [nnx.Linear(a, b, rngs=rngs) for a, b in zip(sizes[:-1], sizes[1:], strict=True)]
        )
        self.dropout = nnx.Dropout(dropout_rate, rngs=rngs)

    def __call__(self, x: jax.Array) -> jax.Array:
        for layer in self.layers[:-1]:
            x = self.dropout(self.act(layer(x)))
        return self.layers[-1](x)


def mlp_activation(module: MLP) -> str:
    """The name (a key of :data:`ACTIVATIONS`) of the activation an :class:`MLP` applies."""
    for name, fn in ACTIVATIONS.items():
        if module.act is fn:
            return name
    raise ValueError(
        f"the MLP's activation {module.act!r} is not one of {', '.join(sorted(ACTIVATIONS))}"
    )


def params_from_module(module: MLP) -> Params:
    """The plain pytree of an :class:`MLP`'s weights."""
    return [{"kernel": layer.kernel[...], "bias": layer.bias[...]} for layer in module.layers]


def module_from_params(
    params: Params, *, activation: str = "relu", dropout_rate: float = 0.0, seed: int = 0
) -> MLP:
    """An :class:`MLP` holding ``params``."""
    sizes = layer_sizes(params)
    module = MLP(sizes, activation=activation, dropout_rate=dropout_rate, rngs=nnx.Rngs(seed))
    for layer, p in zip(module.layers, params, strict=True):
        layer.kernel[...] = jnp.asarray(p["kernel"])
        layer.bias[...] = jnp.asarray(p["bias"])
    return module


def init_mlp(key: jax.Array, sizes: Sequence[int]) -> Params:
    """Initialise an MLP of layer widths ``sizes`` (input first) with Flax's defaults
    (LeCun-normal kernels, zero biases)."""
    seed = int(jax.random.randint(key, (), 0, np.iinfo(np.int32).max))
    return params_from_module(MLP(sizes, rngs=nnx.Rngs(seed)))


def layer_sizes(params: Params) -> tuple[int, ...]:
    """Layer widths of ``params``, validating its structure."""
    if not isinstance(params, list | tuple) or not params:
        raise ValueError("params must be a non-empty list of {'kernel', 'bias'} dense layers")
    sizes = []
    for i, layer in enumerate(params):
        if not isinstance(layer, dict) or set(layer) != {"kernel", "bias"}:
            raise ValueError(f"layer {i} must be a dict with keys 'kernel' and 'bias'")
        k, b = np.shape(layer["kernel"]), np.shape(layer["bias"])
        if len(k) != 2 or b != (k[1],):
            raise ValueError(f"layer {i}: kernel {k} must be [in, out] and bias {b} [out]")
        if sizes and sizes[-1] != k[0]:
            raise ValueError(f"layer {i}: input width {k[0]} != previous output {sizes[-1]}")
        if not sizes:
            sizes.append(k[0])
        sizes.append(k[1])
    return tuple(sizes)


def apply_mlp(
    params: Params,
    x: jax.Array,
    *,
    activation: str = "relu",
    dropout_rate: float = 0.0,
    key: jax.Array | None = None,
) -> jax.Array:
    """Logits of the MLP. Dropout (inverted, rate ``dropout_rate``) is applied only when ``key``
    is given, i.e. in training; evaluation passes no key."""
    act = activation_fn(activation)
    h = x
    for i, layer in enumerate(params):
        h = h @ layer["kernel"] + layer["bias"]
        if i < len(params) - 1:
            h = act(h)
            if key is not None and dropout_rate > 0.0:
                key, sub = jax.random.split(key)
                keep = jax.random.bernoulli(sub, 1.0 - dropout_rate, h.shape)
                h = jnp.where(keep, h / (1.0 - dropout_rate), 0.0)
    return h


def loss(params: Params, x: jax.Array, y: jax.Array, *, activation: str = "relu") -> jax.Array:
    """Mean softmax cross-entropy of the MLP on ``(x, y)`` (no dropout)."""
    logits = apply_mlp(params, x, activation=activation)
    return optax.softmax_cross_entropy_with_integer_labels(logits, y).mean()


def accuracy(params: Params, x: jax.Array, y: jax.Array, *, activation: str = "relu") -> jax.Array:
    """Fraction of ``x`` classified correctly."""
    return (apply_mlp(params, x, activation=activation).argmax(-1) == y).mean()

"""The seed's MLP (784-50-50-50-50-10, ReLU, optional dropout) as a Flax NNX module and as a pytree.

The Hessian and pruning code works on a plain pytree: a list of dense layers, each
``{"kernel": [in, out], "bias": [out]}``. :class:`MLP` is the NNX definition; :func:`init_mlp`
initialises through it, and :func:`apply_mlp` is the equivalent pure function on the pytree.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx

from obd.checks import check_finite_tensors
from obd.io import atomic_path

Params = list[dict[str, jax.Array]]

SEED_SIZES: tuple[int, ...] = (784, 50, 50, 50, 50, 10)

ACTIVATIONS: dict[str, Callable[[jax.Array], jax.Array]] = {
    "relu": jax.nn.relu,
    "tanh": jnp.tanh,
    "leaky_relu": jax.nn.leaky_relu,
    "sigmoid": jax.nn.sigmoid,
    "identity": lambda z: z,
}
#: Activations that are piecewise linear: their second derivative vanishes almost everywhere,
#: so the Hessian diagonal of the loss equals the Gauss-Newton diagonal (see ``obd.hessian``).
PIECEWISE_LINEAR = frozenset({"relu", "leaky_relu", "identity"})


def activation_fn(name: str) -> Callable[[jax.Array], jax.Array]:
    """Return the activation function called ``name``."""
    try:
        return ACTIVATIONS[name]
    except KeyError:
        raise ValueError(
            f"unknown activation {name!r}; accepted: {', '.join(sorted(ACTIVATIONS))}"
        ) from None


def _check_sizes(sizes: Sequence[int]) -> tuple[int, ...]:
    sizes = tuple(int(s) for s in sizes)
    if len(sizes) < 2 or any(s < 1 for s in sizes):
        raise ValueError(f"sizes must be >= 2 positive layer widths, got {sizes}")
    return sizes


class MLP(nnx.Module):
    """Dense ReLU network; dropout (``dropout_rate`` = 1 - keep prob) after each hidden layer."""

    def __init__(
        self,
        sizes: Sequence[int] = SEED_SIZES,
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


def init_mlp(key: jax.Array, sizes: Sequence[int] = SEED_SIZES) -> Params:
    """Initialise an MLP with Flax's defaults (LeCun-normal kernels, zero biases)."""
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


_META_KEY = "__meta__"


def save_params(path: str | os.PathLike, params: Params, meta: dict[str, Any]) -> None:
    """Save ``params`` and a JSON-serialisable ``meta`` dict to an ``.npz`` file, atomically."""
    layer_sizes(params)
    write_checkpoint(path, params, meta)


def write_checkpoint(path: str | os.PathLike, params: list[dict], meta: dict[str, Any]) -> None:
    """Write a list of per-layer tensor dicts (``layer{i}/{name}`` entries) and a JSON ``meta``
    dict to an ``.npz`` file, atomically: the format of :func:`save_params` and of
    ``obd.convnets.save_net``."""
    arrays = {
        f"layer{i}/{k}": np.asarray(v) for i, layer in enumerate(params) for k, v in layer.items()
    }
    if not isinstance(meta, dict):
        raise ValueError(f"meta must be a dict, got {type(meta).__name__}")
    try:
        arrays[_META_KEY] = np.array(json.dumps(meta, sort_keys=True, allow_nan=False))
    except (TypeError, ValueError) as err:
        raise ValueError(f"meta must be JSON-serialisable (finite numbers): {err}") from None
    with atomic_path(path, suffix=".npz") as tmp:
        np.savez(tmp, **arrays)


def load_params(path: str | os.PathLike) -> tuple[Params, dict[str, Any]]:
    """Load what :func:`save_params` wrote; ``ValueError`` if ``path`` is not such a checkpoint
    or if a tensor holds a NaN or an infinite value (the error names the tensor)."""
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"checkpoint {str(path)!r} does not exist")
    try:
        with np.load(path, allow_pickle=False) as data:
            files = dict(data)
    except Exception as err:
        raise ValueError(f"{str(path)!r} is not an .npz checkpoint written by save_params") from err
    if _META_KEY not in files:
        raise ValueError(f"{str(path)!r} is not a checkpoint: it has no {_META_KEY!r} entry")
    n = sum(1 for k in files if k.endswith("/kernel"))
    try:
        params = [
            {
                "kernel": jnp.asarray(files[f"layer{i}/kernel"]),
                "bias": jnp.asarray(files[f"layer{i}/bias"]),
            }
            for i in range(n)
        ]
    except KeyError as err:
        raise ValueError(f"{str(path)!r} is missing entry {err}") from None
    layer_sizes(params)
    check_finite_tensors({k: v for k, v in files.items() if k != _META_KEY}, repr(str(path)))
    raw = files[_META_KEY]
    try:
        if raw.ndim != 0 or raw.dtype.kind not in "US":
            raise ValueError(f"a {raw.dtype}{list(raw.shape)} array, not a string")
        meta = json.loads(str(raw))
        if not isinstance(meta, dict):
            raise ValueError(f"a JSON {type(meta).__name__}, not an object")
    except ValueError as err:  # json.JSONDecodeError is a ValueError
        raise ValueError(
            f"{str(path)!r} is not a checkpoint written by save_params: its {_META_KEY!r} entry "
            f"is not a JSON object ({err})"
        ) from None
    return params, meta

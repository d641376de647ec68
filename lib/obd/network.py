"""A network as the core sees it: a static list of operations and a list of parameter tensors.

The core (Hessian diagonals, saliencies, masks, sweeps) works on two kinds of
model, which :func:`as_network` turns into one form:

* the plain MLP pytree (:mod:`obd.mlp`), a list of dense layers ``{"kernel": [in, out], "bias": [out]}`` with
  one named activation between them;
* a Flax NNX :class:`flax.nnx.Sequential` whose items are ``nnx.Linear``, ``nnx.Conv`` (2-D,
  NHWC, any kernel size and strides, ``"SAME"``/``"VALID"`` padding, with or without bias),
  ``obd.nets.max_pool``/``avg_pool``, ``obd.nets.flatten`` and the elementwise activations of
  :data:`ACTIVATIONS` given as the JAX functions themselves (``jax.nn.relu``, ``jnp.tanh``, ...).

The common form is a :class:`Network` (hashable, so it can be a static argument of ``jax.jit``)
plus ``params``: one dict per parametric layer, ``{"kernel": ...}`` and ``"bias"`` when the layer
has one. :func:`as_network` also returns ``restore``, which maps any pytree shaped like ``params``
(a Hessian diagonal, scores, masks) back to the caller's structure: the same list for the plain
pytree, an ``nnx.State`` shaped like ``nnx.state(model, nnx.Param)`` for an NNX model.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

Params = list[dict[str, jax.Array]]

#: Elementwise activations accepted in an ``nnx.Sequential``, by name.
ACTIVATIONS: dict[str, Callable[[jax.Array], jax.Array]] = {
    "relu": jax.nn.relu,
    "leaky_relu": jax.nn.leaky_relu,
    "tanh": jnp.tanh,
    "sigmoid": jax.nn.sigmoid,
    "softplus": jax.nn.softplus,
    "gelu": jax.nn.gelu,
    "identity": lambda z: z,
}
#: Activations whose second derivative vanishes (almost everywhere): the Hessian of a network
#: built from them and linear layers equals its Gauss-Newton matrix.
PIECEWISE_LINEAR = frozenset({"relu", "leaky_relu", "identity"})


def activation_fn(name: str) -> Callable[[jax.Array], jax.Array]:
    """Return the activation function called ``name`` (a key of :data:`ACTIVATIONS`)."""
    try:
        return ACTIVATIONS[name]
    except (KeyError, TypeError):
        raise ValueError(
            f"unknown activation {name!r}; accepted: {', '.join(sorted(ACTIVATIONS))}"
        ) from None


@dataclass(frozen=True)
class Dense:
    """``z = h W + b``; ``W`` is ``[in, out]``; ``slot`` indexes ``params``."""

    slot: int
    use_bias: bool


@dataclass(frozen=True)
class Conv:
    """2-D convolution, NHWC, kernel ``[kh, kw, in, out]`` (Flax's layout), stride and padding."""

    slot: int
    use_bias: bool
    strides: tuple[int, int]
    padding: str

    def __call__(self, h: jax.Array, kernel: jax.Array) -> jax.Array:
        """``[N, oh, ow, out]``: im2col patches times the kernel, the same numbers as
        ``lax.conv_general_dilated`` (to rounding) but ~10x faster to differentiate on XLA:CPU,
        whose convolution gradients are slow; ``patches`` is built from strided slices."""
        dtype = jnp.result_type(h, kernel)
        kh, kw, cin, cout = kernel.shape
        p = self.patches(h.astype(dtype), kernel.shape)  # [N, P, kh * kw * in]
        oh, ow = self.out_hw(h.shape[1:3], kernel.shape[:2])
        z = p @ kernel.astype(dtype).reshape(kh * kw * cin, cout)
        return z.reshape(h.shape[0], oh, ow, cout)

    def infer(self, h: jax.Array, kernel: jax.Array) -> jax.Array:
        """The same convolution by ``lax.conv_general_dilated``: about 3x faster than
        :meth:`__call__` forward-only on XLA:CPU (no patches in memory), far slower to
        differentiate; for evaluation (:meth:`Network.predict`)."""
        dtype = jnp.result_type(h, kernel)
        return jax.lax.conv_general_dilated(
            h.astype(dtype), kernel.astype(dtype), self.strides, self.padding,
            dimension_numbers=("NHWC", "HWIO", "NHWC"),
        )  # fmt: skip

    def out_hw(self, hw: tuple[int, int], khw: tuple[int, int]) -> tuple[int, int]:
        """Output height and width for an input of ``hw`` and a kernel of ``khw``."""
        pads = self.pads(hw, khw)
        return tuple(
            (size + lo + hi - k) // s + 1
            for size, (lo, hi), k, s in zip(hw, pads, khw, self.strides, strict=True)
        )

    def pads(self, hw: tuple[int, int], khw: tuple[int, int]) -> list[tuple[int, int]]:
        """``(low, high)`` zero padding of height and width, as XLA pads for ``padding``."""
        return jax.lax.padtype_to_pads(hw, khw, self.strides, self.padding)

    def patches(self, h: jax.Array, kernel_shape: tuple[int, ...]) -> jax.Array:
        """``[N, positions, kh * kw * in]``: the input patch each output position sees, with the
        features in the kernel's ``(kh, kw, in)`` order (strided slices of the padded input)."""
        kh, kw, cin, _ = kernel_shape
        (plo, phi), (qlo, qhi) = self.pads(h.shape[1:3], (kh, kw))
        if plo or phi or qlo or qhi:
            h = jnp.pad(h, ((0, 0), (plo, phi), (qlo, qhi), (0, 0)))
        sh, sw = self.strides
        oh, ow = (h.shape[1] - kh) // sh + 1, (h.shape[2] - kw) // sw + 1
        cols = [
            h[:, i : i + (oh - 1) * sh + 1 : sh, j : j + (ow - 1) * sw + 1 : sw, :]
            for i in range(kh)
            for j in range(kw)
        ]
        return jnp.concatenate(cols, axis=-1).reshape(h.shape[0], oh * ow, kh * kw * cin)


@dataclass(frozen=True)
class Pool:
    """Max or average pooling over ``window`` with ``strides``, VALID padding (NHWC)."""

    kind: str
    window: tuple[int, int]
    strides: tuple[int, int]

    def __call__(self, h: jax.Array) -> jax.Array:
        (a, b), n, hh, ww = self.window, *h.shape[:3]
        if self.window == self.strides and hh % a == 0 and ww % b == 0:
            # non-overlapping windows tiling the input: a reshape and a reduction, far faster to
            # differentiate on XLA:CPU than reduce_window (max: ties share the gradient equally)
            t = h.reshape(n, hh // a, a, ww // b, b, *h.shape[3:])
            return t.max(axis=(2, 4)) if self.kind == "max" else t.mean(axis=(2, 4))
        fn = nnx.max_pool if self.kind == "max" else nnx.avg_pool
        return fn(h, window_shape=self.window, strides=self.strides, padding="VALID")


@dataclass(frozen=True)
class Flatten:
    """``[N, ...] -> [N, features]``."""

    def __call__(self, h: jax.Array) -> jax.Array:
        return h.reshape(h.shape[0], -1)


@dataclass(frozen=True)
class Act:
    """An elementwise activation, by name (:data:`ACTIVATIONS`)."""

    name: str

    @property
    def fn(self) -> Callable[[jax.Array], jax.Array]:
        return ACTIVATIONS[self.name]

    @property
    def piecewise_linear(self) -> bool:
        return self.name in PIECEWISE_LINEAR


Op = Dense | Conv | Pool | Flatten | Act


@dataclass(frozen=True)
class Network:
    """A feed-forward network: ``ops`` applied in order; the last output is the logits."""

    ops: tuple[Op, ...]

    @property
    def parametric(self) -> tuple[Dense | Conv, ...]:
        return tuple(op for op in self.ops if isinstance(op, Dense | Conv))

    @property
    def piecewise_linear(self) -> bool:
        """True when every activation is piecewise linear (Hessian = Gauss-Newton matrix)."""
        return all(op.piecewise_linear for op in self.ops if isinstance(op, Act))

    @property
    def dense_only(self) -> bool:
        """True for an MLP: dense layers and activations only."""
        return all(isinstance(op, Dense | Act) for op in self.ops)

    def apply_op(self, op: Op, params: Params, h: jax.Array, *, infer: bool = False) -> jax.Array:
        """The output of one operation on its input ``h``; ``infer`` computes convolutions by
        :meth:`Conv.infer` (for evaluation, not for derivatives)."""
        if isinstance(op, Dense):
            z = h @ params[op.slot]["kernel"]
        elif isinstance(op, Conv):
            z = (op.infer if infer else op)(h, params[op.slot]["kernel"])
        elif isinstance(op, Act):
            return op.fn(h)
        else:
            return op(h)
        return z + params[op.slot]["bias"] if op.use_bias else z

    def apply(self, params: Params, x: jax.Array, *, infer: bool = False) -> jax.Array:
        """The logits of ``x`` (no dropout); ``infer`` as in :meth:`apply_op`."""
        h = x
        for op in self.ops:
            h = self.apply_op(op, params, h, infer=infer)
        return h

    def predict(self, params: Params, x: jax.Array) -> jax.Array:
        """The logits of ``x``, as :meth:`apply` (equal to rounding) with convolutions by
        :meth:`Conv.infer`: for evaluation, not for derivatives."""
        return self.apply(params, x, infer=True)

    def output_sizes(self, params: Params, x_shape: tuple[int, ...]) -> list[int]:
        """Elements per example of every operation's output (shapes only, nothing computed)."""
        dtype = jax.tree.leaves(params)[0].dtype
        sizes: list[int] = []

        def forward(p, a):
            for op in self.ops:
                a = self.apply_op(op, p, a)
                sizes.append(int(np.prod(a.shape[1:])))
            return a

        jax.eval_shape(forward, params, jax.ShapeDtypeStruct((1, *x_shape[1:]), dtype))
        return sizes


def pool(kind: str, window, strides=None) -> Pool:
    """A :class:`Pool`; ``strides`` defaults to ``window`` (non-overlapping, as in LeNet)."""
    window = _pair("window", window)
    strides = window if strides is None else _pair("strides", strides)
    return Pool(kind, window, strides)


def _pair(name: str, value) -> tuple[int, int]:
    if isinstance(value, int) and not isinstance(value, bool):
        value = (value, value)
    try:
        pair = tuple(value)
    except TypeError:
        pair = ()
    if len(pair) != 2 or not all(
        isinstance(v, int | np.integer) and not isinstance(v, bool) and v >= 1 for v in pair
    ):
        raise ValueError(f"{name} must be a positive integer or a pair of them, got {value!r}")
    return tuple(int(v) for v in pair)


def flatten(x: jax.Array) -> jax.Array:
    """Flatten every axis but the first (the examples): ``[N, ...] -> [N, features]``."""
    return x.reshape(x.shape[0], -1)


ACCEPTED_ITEMS = (
    "nnx.Linear, nnx.Conv (2-D, 'SAME'/'VALID' padding, no dilation or groups), "
    "obd.nets.max_pool(window, strides=None), obd.nets.avg_pool(window, strides=None), "
    "obd.nets.flatten, and the activations "
    + ", ".join(f"{n}" for n in ("jax.nn.relu", "jax.nn.leaky_relu", "jnp.tanh", "jax.nn.sigmoid"))
    + ", jax.nn.softplus, jax.nn.gelu"
)


def _activation_name(item: Any) -> str | None:
    for name, fn in ACTIVATIONS.items():
        if item is fn and name != "identity":
            return name
    return None


def _conv_op(i: int, slot: int, conv: nnx.Conv) -> Conv:
    def bad(what: str) -> ValueError:
        return ValueError(f"item {i} (nnx.Conv): {what}; accepted items: {ACCEPTED_ITEMS}")

    if len(conv.kernel_size) != 2:
        raise bad(f"only 2-D convolutions are supported, got kernel_size {conv.kernel_size}")
    for attr in ("input_dilation", "kernel_dilation"):
        value = getattr(conv, attr)
        if value not in (1, None, (1, 1)):
            raise bad(f"{attr}={value!r} is not supported (only 1)")
    if conv.feature_group_count != 1 or getattr(conv, "mask", None) is not None:
        raise bad("grouped or masked convolutions are not supported")
    padding = conv.padding
    if not isinstance(padding, str) or padding.upper() not in ("SAME", "VALID"):
        raise bad(f"padding {padding!r} is not supported (use 'SAME' or 'VALID')")
    strides = conv.strides if conv.strides is not None else 1
    return Conv(slot, bool(conv.use_bias), _pair("strides", strides), padding.upper())


def _from_sequential(model: nnx.Sequential) -> tuple[Network, Params, Callable[[Any], Any]]:
    ops: list[Op] = []
    params: Params = []
    paths: list[tuple[int, tuple[str, ...]]] = []
    seen: dict[int, int] = {}
    for i, item in enumerate(model.layers):
        if isinstance(item, nnx.Module):
            if id(item) in seen:
                raise ValueError(
                    f"item {i} of the nnx.Sequential is the same {type(item).__name__} object as "
                    f"item {seen[id(item)]}: shared (tied) layers are not supported; give each "
                    "position its own layer"
                )
            seen[id(item)] = i
        _check_exact(i, item)
        if isinstance(item, nnx.Linear | nnx.Conv):
            slot = len(params)
            if isinstance(item, nnx.Linear):
                ops.append(Dense(slot, bool(item.use_bias)))
            else:
                ops.append(_conv_op(i, slot, item))
            layer = {"kernel": item.kernel[...]}
            if item.use_bias:
                layer["bias"] = item.bias[...]
            params.append(layer)
            paths.append((i, tuple(layer)))
        elif isinstance(item, Pool):
            ops.append(item)
        elif item is flatten or isinstance(item, Flatten):
            ops.append(Flatten())
        elif (name := _activation_name(item)) is not None:
            ops.append(Act(name))
        else:
            raise ValueError(
                f"item {i} of the nnx.Sequential ({_describe(item)}) is not supported; "
                f"accepted items: {ACCEPTED_ITEMS}"
            )
    if not params:
        raise ValueError("the nnx.Sequential has no nnx.Linear or nnx.Conv layer")
    template = nnx.state(model, nnx.Param)
    n_leaves = len(jax.tree.leaves(template))
    if n_leaves != sum(len(p) for p in params):
        raise ValueError(
            "the model holds parameters outside its nnx.Linear / nnx.Conv items; "
            f"accepted items: {ACCEPTED_ITEMS}"
        )
    slot_of = {i: s for s, (i, _) in enumerate(paths)}

    def restore(tree: Any) -> nnx.State:
        def leaf(path, _):
            index = path[1].key
            name = path[2].key
            return tree[slot_of[index]][name]

        return jax.tree_util.tree_map_with_path(leaf, template)

    return Network(tuple(ops)), params, restore


#: Library classes computed from their parameters and settings, not by calling them: a subclass
#: is accepted only if it keeps the class's ``__call__`` (else it would compute something else).
_COMPUTED_AS = (nnx.Linear, nnx.Conv, Flatten)


def _check_exact(i: int, item: Any) -> None:
    """``ValueError`` if the library would compute ``item`` otherwise than ``item`` computes
    itself: a subclass of a class of :data:`_COMPUTED_AS` that overrides its ``__call__``, a layer
    with a custom ``dot_general`` / ``conv_general_dilated``, or one whose ``dtype`` (the
    computation's) differs from its parameters'."""
    for base in _COMPUTED_AS:
        if isinstance(item, base) and type(item).__call__ is not base.__call__:
            where = "nnx" if base is not Flatten else "obd.nets"
            raise ValueError(
                f"item {i} of the nnx.Sequential ({type(item).__name__}) subclasses "
                f"{where}.{base.__name__} with its own __call__, which the library would not run "
                f"(it computes {base.__name__} layers from their parameters); accepted: "
                f"{where}.{base.__name__} itself or subclasses that keep its __call__. "
                f"Accepted items: {ACCEPTED_ITEMS}"
            )
    for attr, default in (("dot_general", jax.lax.dot_general),
                          ("conv_general_dilated", jax.lax.conv_general_dilated)):  # fmt: skip
        if isinstance(item, nnx.Linear | nnx.Conv) and getattr(item, attr, default) is not default:
            raise ValueError(
                f"item {i} of the nnx.Sequential ({type(item).__name__}) has a custom {attr}, "
                f"which the library would not run; accepted: the default jax.lax.{attr}"
            )
    dtype = getattr(item, "dtype", None) if isinstance(item, nnx.Linear | nnx.Conv) else None
    if dtype is not None and jnp.dtype(dtype) != item.kernel[...].dtype:
        raise ValueError(
            f"item {i} of the nnx.Sequential ({type(item).__name__}) computes in "
            f"dtype={jnp.dtype(dtype).name} but holds {item.kernel[...].dtype} parameters; the "
            "library computes in the parameters' dtype: accepted dtype=None or the same dtype"
        )


def _describe(item: Any) -> str:
    if isinstance(item, nnx.Module):
        return f"an {type(item).__module__.split('.')[0]} {type(item).__name__}"
    return getattr(item, "__name__", None) or type(item).__name__


def mlp_network(n_layers: int, activation: str) -> Network:
    """The plain pytree's network: ``n_layers`` dense layers with ``activation`` between them."""
    if activation not in ACTIVATIONS:
        raise ValueError(
            f"unknown activation {activation!r}; accepted: {', '.join(sorted(ACTIVATIONS))}"
        )
    ops: list[Op] = []
    for i in range(n_layers):
        ops.append(Dense(i, True))
        if i < n_layers - 1:
            ops.append(Act(activation))
    return Network(tuple(ops))


def is_module(model: Any) -> bool:
    """True for a Flax NNX module (as opposed to the plain list-of-layers pytree)."""
    return isinstance(model, nnx.Module)


def as_network(
    model: Any, activation: str | None = None
) -> tuple[Network, Params, Callable[[Any], Any]]:
    """``(network, params, restore)`` for a plain MLP pytree or an ``nnx.Sequential``.

    ``activation`` names the plain pytree's activation (default ``"relu"``); an NNX model carries
    its own, so passing one with it is an error. ``ValueError`` for anything else.
    """
    if isinstance(model, nnx.Module):
        if activation is not None:
            raise ValueError(
                "activation= applies to the plain list-of-layers params only; an nnx.Sequential "
                "carries its activations as items"
            )
        if not isinstance(model, nnx.Sequential):
            raise ValueError(
                f"NNX models must be an nnx.Sequential, got {type(model).__name__}; "
                f"accepted items: {ACCEPTED_ITEMS}"
            )
        return _from_sequential(model)
    if isinstance(model, nnx.State):
        raise ValueError(
            "pass the nnx.Sequential model itself, not its nnx.State (the state has no layers)"
        )
    from obd.mlp import layer_sizes  # the plain pytree's validation

    sizes = layer_sizes(model)
    net = mlp_network(len(sizes) - 1, "relu" if activation is None else activation)
    params = [{"kernel": layer["kernel"], "bias": layer["bias"]} for layer in model]
    return net, params, lambda tree: list(tree)


def with_params(model: nnx.Module, state: nnx.State) -> nnx.Module:
    """A copy of ``model`` holding the parameters ``state`` (the model itself is unchanged)."""
    out = nnx.clone(model)
    nnx.update(out, state)
    return out


def to_params(model: Any, tree: Any, name: str) -> Params:
    """``tree`` (shaped like the model's parameters: a list for the plain pytree, an
    ``nnx.State`` for an NNX model) as a list like ``params``; ``ValueError`` on a mismatch."""
    _, params, restore = as_network(model) if is_module(model) else as_network(model, "relu")
    if tree is None:
        raise ValueError(f"{name} is required")
    expected = restore(params)
    t_leaves, t_def = jax.tree.flatten(tree)
    e_leaves, e_def = jax.tree.flatten(expected)
    if t_def != e_def:
        raise ValueError(
            f"{name} must be shaped like the parameters: structure {t_def} differs from {e_def}"
        )
    for i, (t, e) in enumerate(zip(t_leaves, e_leaves, strict=True)):
        if np.shape(t) != np.shape(e):
            raise ValueError(
                f"{name} must be shaped like the parameters: leaf {i} has shape {np.shape(t)}, "
                f"the parameter {np.shape(e)}"
            )
    return jax.tree.unflatten(jax.tree.structure(params), t_leaves)


def input_check(net: Network, params: Params, x: Any) -> None:
    """``ValueError`` unless ``x`` has the shape the network's first layer expects."""
    shape = np.shape(x)
    first = net.ops[0] if net.ops else None
    if isinstance(first, Dense) or (first is None):
        want = np.shape(params[0]["kernel"])[0]
        if len(shape) != 2 or shape[1] != want:
            raise ValueError(f"x must be [N, {want}] for this network, got shape {shape}")
    elif isinstance(first, Conv):
        cin = np.shape(params[0]["kernel"])[2]
        if len(shape) != 4 or shape[3] != cin:
            raise ValueError(
                f"x must be images [N, height, width, {cin}] (NHWC) for this network, got {shape}"
            )
    try:
        dtype = jax.tree.leaves(params)[0].dtype
        out = jax.eval_shape(net.apply, params, jax.ShapeDtypeStruct(shape, dtype))
    except Exception as err:  # shape errors surface from lax with their own types
        raise ValueError(f"x of shape {shape} does not fit the network: {err}") from None
    if len(out.shape) != 2:
        raise ValueError(
            f"the network must end in logits [N, classes], but gives {out.shape} for x of shape "
            f"{shape}: put obd.nets.flatten and an nnx.Linear last"
        )

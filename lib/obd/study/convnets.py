"""The convnet study's networks (Han et al. 2015's MNIST pair): build, train, save and load.

Two architectures, by name (:data:`ARCHS`):

* ``"lenet_300_100"``: 784-300-100-10, ReLU (266,610 parameters), on ``[N, 784]`` rows;
* ``"lenet5"``: the Caffe LeNet-5 (431,080 parameters), on NHWC images ``[N, 28, 28, 1]``.

:func:`train_net` trains one from its seed with Adam on the mean cross-entropy of batches drawn
from per-epoch shuffles of the training images, the learning rate following a cosine decay from
``learning_rate`` to 0 over ``steps`` (``optax.cosine_decay_schedule``). A short schedule that ends
at 0 reaches good accuracy in few epochs, which the 2-core budget of ``make reproduce`` needs.
The inner loop is a jitted ``lax.scan`` over chunks of steps: the same seed gives the same weights
on the same machine. Checkpoints (:func:`save_net`, :func:`load_net`) are ``.npz`` files of the
flat ``obd.network`` parameters plus a JSON meta entry naming the architecture.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pandas as pd
from flax import nnx
from tqdm.auto import tqdm

from obd import nets
from obd.batches import batch_indices
from obd.checks import (
    check_converging,
    check_examples,
    check_finite_params,
    check_finite_tensors,
    check_float,
    check_number,
    check_pixels,
    check_trainable,
)
from obd.network import Network, as_network, input_check, with_params
from obd.retrain import _evaluate_net
from obd.study import architectures
from obd.study.model import _META_KEY, write_checkpoint

#: A mean training loss this many times chance level (``log(classes)``) means training diverged.
DIVERGED = 100

#: Architecture name -> constructor taking ``nnx.Rngs``.
ARCHS: dict[str, Callable[[nnx.Rngs], nnx.Sequential]] = {
    "lenet_300_100": architectures.lenet_300_100,
    "lenet5": architectures.lenet5,
}
#: Names of each architecture's parametric layers, in order.
LAYER_NAMES: dict[str, tuple[str, ...]] = {
    "lenet_300_100": ("fc1", "fc2", "fc3"),
    "lenet5": ("conv1", "conv2", "fc1", "fc2"),
}
#: Display names.
TITLES: dict[str, str] = {"lenet_300_100": "LeNet-300-100", "lenet5": "LeNet-5"}


def check_arch(arch: str) -> str:
    """``arch`` if it names an architecture of :data:`ARCHS`, else ``ValueError``."""
    if not isinstance(arch, str) or arch not in ARCHS:
        raise ValueError(f"unknown arch {arch!r}; accepted: {', '.join(ARCHS)}")
    return arch


def build(arch: str, seed: int = 0) -> nnx.Sequential:
    """A freshly initialised ``arch`` (Flax's default initialisers, ``nnx.Rngs(seed)``)."""
    check_number("seed", seed, lo=0, integer=True)
    return ARCHS[check_arch(arch)](nnx.Rngs(int(seed)))


def inputs(arch: str, x: Any, *, name: str = "x") -> np.ndarray:
    """MNIST rows ``[N, 784]`` in the shape ``arch`` takes (NHWC images for LeNet-5).

    ``ValueError`` unless ``x`` is floating point with pixels in ``[0, 1]`` (as
    ``obd.study.data.load_mnist`` gives them; 0-255 pixels must be divided by 255 first); ``name``
    names ``x`` in the error."""
    x = np.asarray(x)
    check_arch(arch)
    check_float(x, name)
    check_pixels(x, name)
    return nets.as_images(x) if check_arch(arch) == "lenet5" else x.reshape(len(x), -1)


def layer_kinds(arch: str) -> tuple[str, ...]:
    """``"conv"`` or ``"dense"`` for each parametric layer of ``arch``."""
    net, _, _ = as_network(build(arch))
    return tuple("dense" if type(op).__name__ == "Dense" else "conv" for op in net.parametric)


def _chunk_fn(net: Network, opt: optax.GradientTransformation, x, y):
    def step(carry, idx):
        params, state = carry

        def loss(p):
            logits = net.apply(p, x[idx])
            return optax.softmax_cross_entropy_with_integer_labels(logits, y[idx]).mean()

        value, grads = jax.value_and_grad(loss)(params)
        updates, state = opt.update(grads, state, params)
        return (optax.apply_updates(params, updates), state), value

    @jax.jit
    def run(params, state, idx):
        (params, state), losses = jax.lax.scan(step, (params, state), idx)
        return params, state, losses.mean(), jnp.argmin(jnp.isfinite(losses))

    return run


def evaluate(model: nnx.Module, x: Any, y: Any, batch: int = 2_000) -> tuple[float, float]:
    """Accuracy and mean cross-entropy of ``model`` on ``(x, y)``, in batches of ``batch``.

    ``ValueError`` for a ``batch`` that is not a positive integer, non-finite parameters (the
    tensor is named), ``x`` outside ``[0, 1]`` (MNIST pixels; 0-255 ones must be divided by 255)
    or a non-finite result."""
    batch = check_number("batch", batch, lo=1, integer=True)
    net, params, _ = as_network(model)
    check_finite_params(params)
    input_check(net, params, x)
    check_examples(x, y, num_classes=int(np.shape(params[-1]["kernel"])[-1]), pixels=True)
    x, y = np.asarray(x), np.asarray(y)
    acc = ce = 0.0
    for s in range(0, len(x), batch):
        a, c = _evaluate_net(
            net, params, jnp.asarray(x[s : s + batch]), jnp.asarray(y[s : s + batch])
        )
        acc += float(a) * len(x[s : s + batch])
        ce += float(c) * len(x[s : s + batch])
    if not (np.isfinite(acc) and np.isfinite(ce)):
        raise ValueError(f"evaluate: the loss is not finite ({ce / len(x)!r}); not a result")
    return acc / len(x), ce / len(x)


def train_net(
    arch: str,
    x_train: Any,
    y_train: Any,
    x_test: Any,
    y_test: Any,
    *,
    seed: int = 0,
    steps: int = 5_000,
    batch_size: int = 64,
    learning_rate: float = 1e-3,
    chunk_steps: int = 500,
    progress: bool = True,
) -> tuple[nnx.Sequential, pd.DataFrame]:
    """Train ``arch`` from seed ``seed``; return the model and its history.

    ``x_*`` are MNIST rows ``[N, 784]`` or the shape the network takes, float32 or float64 with
    pixels in ``[0, 1]`` (else ``ValueError``). The history has one row
    per chunk of ``chunk_steps`` steps: ``step``, ``epoch`` (steps x batch / N), ``train_loss``
    (mean over the chunk's batches), ``test_loss`` and ``test_accuracy``.
    """
    seed = check_number("seed", seed, lo=0, integer=True)
    steps = check_number("steps", steps, lo=1, integer=True)
    batch_size = check_number("batch_size", batch_size, lo=1, integer=True)
    chunk_steps = check_number("chunk_steps", chunk_steps, lo=1, integer=True)
    check_number("learning_rate", learning_rate, lo=0, lo_open=True)
    model = build(arch, seed)
    net, params, restore = as_network(model)
    x_tr, x_te = inputs(arch, x_train, name="x_train"), inputs(arch, x_test, name="x_test")
    classes = int(np.shape(params[-1]["kernel"])[-1])
    for xs, ys, name in ((x_tr, y_train, "x_train"), (x_te, y_test, "x_test")):
        input_check(net, params, xs)
        check_examples(
            xs, ys, num_classes=classes, name=name, label_name="y" + name[1:], pixels=True
        )
        check_trainable(params, xs, name=name)
    x_tr, y_tr = jnp.asarray(x_tr), jnp.asarray(y_train)
    opt = optax.adam(optax.cosine_decay_schedule(float(learning_rate), steps))
    state = opt.init(params)
    run = _chunk_fn(net, opt, x_tr, y_tr)
    idx = batch_indices(jax.random.key(seed), len(x_tr), steps, batch_size)
    rows = []
    bar = tqdm(total=steps, desc=f"train {arch} seed={seed}", unit="step", disable=not progress)
    for start in range(0, steps, chunk_steps):
        stop = min(start + chunk_steps, steps)
        params, state, train_loss, first_bad = run(params, state, idx[start:stop])
        check_converging(train_loss, first_bad, start)
        if float(train_loss) > DIVERGED * np.log(classes):
            raise ValueError(
                f"training diverged: the mean training loss is {float(train_loss):.3g} at step "
                f"{stop}, over {DIVERGED}x chance level (log {classes} = {np.log(classes):.2f}); "
                "stopped there and returned nothing. Lower learning_rate."
            )
        model = with_params(model, restore(params))
        acc, ce = evaluate(model, x_te, y_test)
        rows.append((stop, stop * batch_size / len(x_tr), float(train_loss), ce, acc))
        bar.update(stop - start)
        bar.set_postfix(test_acc=f"{acc:.4f}")
    bar.close()
    cols = ["step", "epoch", "train_loss", "test_loss", "test_accuracy"]
    return model, pd.DataFrame(rows, columns=cols)


def save_net(path: str | os.PathLike, model: nnx.Module, meta: dict[str, Any]) -> None:
    """Save ``model``'s parameters and ``meta`` (JSON; must hold ``"arch"``) atomically."""
    if not isinstance(meta, dict) or "arch" not in meta:
        raise ValueError("meta must be a dict naming the model's 'arch'")
    check_arch(meta["arch"])
    params = as_network(model)[1]
    want = as_network(build(meta["arch"], 0))[1]
    got_shapes = [{k: tuple(np.shape(v)) for k, v in p.items()} for p in params]
    want_shapes = [{k: tuple(v.shape) for k, v in p.items()} for p in want]
    if got_shapes != want_shapes:
        raise ValueError(
            f"the model is not a {meta['arch']}: its parameters have shapes {got_shapes}, a "
            f"{meta['arch']} has {want_shapes}; pass the arch the model was built as"
        )
    write_checkpoint(path, params, meta)


def load_net(path: str | os.PathLike) -> tuple[nnx.Sequential, dict[str, Any]]:
    """The model and meta that :func:`save_net` wrote; ``ValueError`` for anything else, and for
    a tensor holding a NaN or an infinite value (the error names the tensor)."""
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"checkpoint {str(path)!r} does not exist")
    try:
        with np.load(path, allow_pickle=False) as data:
            files = dict(data)
        meta = json.loads(str(files.pop(_META_KEY)))
    except Exception as err:
        raise ValueError(f"{str(path)!r} is not a checkpoint written by save_net") from err
    if not isinstance(meta, dict) or "arch" not in meta:
        what = f"a JSON {type(meta).__name__}" if not isinstance(meta, dict) else "no 'arch'"
        raise ValueError(
            f"{str(path)!r} is not a checkpoint written by save_net: its {_META_KEY!r} entry "
            f"must be a JSON object naming the 'arch', got {what}"
        )
    model = build(check_arch(meta["arch"]))
    _, params, restore = as_network(model)
    loaded = []
    for i, layer in enumerate(params):
        entry = {}
        for k, v in layer.items():
            a = files.get(f"layer{i}/{k}")
            if a is None or a.shape != v.shape:
                raise ValueError(
                    f"{str(path)!r} does not hold {meta['arch']}'s layer{i}/{k} of shape {v.shape}"
                )
            entry[k] = jnp.asarray(a)
        loaded.append(entry)
    check_finite_tensors(
        {f"layer{i}/{k}": v for i, layer in enumerate(loaded) for k, v in layer.items()},
        repr(str(path)),
    )
    return with_params(model, restore(loaded)), meta

"""Pruning with retraining, as LeCun et al. (1990) did: prune, retrain with the mask fixed, repeat.

Each round of :func:`iterative_prune` scores the current weights (OBD with the exact Hessian
diagonal recomputed on the training data, or magnitude), prunes the lowest-scored kernel weights
until the round's target fraction of all kernel weights is pruned (weights pruned earlier stay
pruned: they are ranked first), then retrains the survivors with :func:`retrain_masked`. With
``saliency="obs"`` a round is instead one global Optimal Brain Surgeon step on the exact Hessian
blocks of the weights left (:func:`obd.obs.global_obs.global_obs_step`, which also updates the
remaining weights), then the same retraining. The
schedule is a strictly increasing list of target fractions, by default halving the remaining
weights each round (50, 75, 87.5, 93.75, 96.9%).

:func:`retrain_masked` is the blog's training step (``obd.study.train``: Adam, batches of 64 from
per-epoch shuffles, loss summed over the batch) with the mask enforced three ways, so pruned
weights stay *exactly* zero: the gradient is masked (Adam's moments of pruned weights stay zero),
the update is masked, and the mask is re-applied to the parameters after every step. It is a
``lax.scan`` over chunks of steps, jitted once per shape and setting.

Both functions take the plain MLP pytree or an ``nnx.Sequential`` model (``obd.network``; masks
are then an ``nnx.State``, and the retrained model is returned as a new model, the input left
unchanged). Dropout applies to the plain MLP only.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pandas as pd
from flax import nnx
from tqdm.auto import tqdm

from obd.batches import REDUCTIONS, batch_indices
from obd.checks import (
    check_converging,
    check_examples,
    check_finite_params,
    check_number,
    check_trainable,
)
from obd.hessian import hessian_diag
from obd.mlp import apply_mlp, layer_sizes
from obd.network import (
    Network,
    Params,
    activation_fn,
    as_network,
    input_check,
    is_module,
    to_params,
    with_params,
)
from obd.obs.blocks import as_dense
from obd.obs.global_obs import global_obs_step
from obd.prune import apply_masks, check_masks, leaf_names
from obd.prune import masks as prune_masks
from obd.saliencies import check_like, check_scope
from obd.saliencies import saliency as score_params

SALIENCIES: tuple[str, ...] = ("obd", "magnitude", "obs")
LR_SCHEDULES: tuple[str, ...] = ("constant", "cosine")


def halving_schedule(rounds: int = 5) -> np.ndarray:
    """``1 - 2^-r`` for ``r`` from 1 to ``rounds``: each round prunes half of the remaining weights."""
    if isinstance(rounds, bool) or not isinstance(rounds, int) or rounds < 1:
        raise ValueError(f"rounds must be an integer >= 1, got {rounds!r}")
    return 1.0 - 0.5 ** np.arange(1, rounds + 1)


def check_schedule(schedule) -> np.ndarray:
    """``schedule`` as a float array: non-empty, 1-D, strictly increasing, each in (0, 1]."""
    try:
        s = np.asarray(schedule, np.float64)
    except (TypeError, ValueError):
        raise ValueError(f"schedule must be a list of fractions, got {schedule!r}") from None
    if s.ndim != 1 or s.size == 0:
        raise ValueError(f"schedule must be a non-empty 1-D list of fractions, got {schedule!r}")
    if not np.all(np.isfinite(s)) or np.any((s <= 0) | (s > 1)):
        raise ValueError(f"schedule fractions must be in (0, 1], got {schedule!r}")
    if np.any(np.diff(s) <= 0):
        raise ValueError(f"schedule must be strictly increasing, got {schedule!r}")
    return s


def round_steps(retrain_steps, rounds: int) -> list[int]:
    """``retrain_steps`` as one non-negative step count per round: an integer is repeated, a list
    must have ``rounds`` entries; anything else is a ``ValueError``."""
    if isinstance(retrain_steps, list | tuple | np.ndarray):
        if len(retrain_steps) != rounds:
            raise ValueError(
                f"retrain_steps must be one integer or a list of {rounds} (one per round of the "
                f"schedule), got {len(retrain_steps)} entries: {list(retrain_steps)!r}"
            )
        return [check_number("retrain_steps", s, lo=0, integer=True) for s in retrain_steps]
    return [check_number("retrain_steps", retrain_steps, lo=0, integer=True)] * rounds


def _positive_int(name: str, value) -> int:
    if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < 1:
        raise ValueError(f"{name} must be an integer >= 1, got {value!r}")
    return int(value)


def _adam(
    learning_rate: float, decay_steps: int, weight_decay: float = 0.0
) -> optax.GradientTransformation:
    """Adam at ``learning_rate``, or cosine-decayed from it to 0 over ``decay_steps`` (> 0); with
    ``weight_decay`` > 0 AdamW (the decay ``learning_rate * weight_decay * w`` decoupled from the
    gradient, Loshchilov & Hutter 2019)."""
    lr = optax.cosine_decay_schedule(learning_rate, decay_steps) if decay_steps else learning_rate
    if weight_decay:
        return optax.adamw(lr, weight_decay=weight_decay)
    return optax.adam(lr)


@jax.jit(
    static_argnames=(
        "learning_rate", "activation", "loss_reduction", "dropout_rate", "net", "decay_steps",
        "weight_decay",
    )
)  # fmt: skip
def _masked_chunk(params, opt_state, keep, x, y, idx, ts, drop_key,
                  learning_rate, activation, loss_reduction, dropout_rate, net=None,
                  decay_steps=0, weight_decay=0.0):  # fmt: skip
    """``len(idx)`` masked Adam steps; returns params, optimizer state, mean training loss and
    the index of the first step whose loss is not finite (0 when all are). ``net`` is None for
    the plain MLP (``apply_mlp``, with dropout), else the NNX model's ``obd.network.Network``."""
    opt = _adam(learning_rate, decay_steps, weight_decay)

    def batch_loss(p, xb, yb, key):
        if net is not None:
            logits = net.apply(p, xb)
        else:
            logits = apply_mlp(p, xb, activation=activation, dropout_rate=dropout_rate, key=key)
        ce = optax.softmax_cross_entropy_with_integer_labels(logits, yb)
        return ce.sum() if loss_reduction == "sum" else ce.mean()

    def zero_pruned(tree):
        return jax.tree.map(lambda a, k: jnp.where(k, a, jnp.zeros_like(a)), tree, keep)

    def step(carry, inputs):
        p, state = carry
        i, t = inputs
        key = jax.random.fold_in(drop_key, t) if dropout_rate > 0 else None
        value, grads = jax.value_and_grad(batch_loss)(p, x[i], y[i], key)
        updates, state = opt.update(zero_pruned(grads), state, p)
        p = zero_pruned(optax.apply_updates(p, zero_pruned(updates)))
        # the per-example mean loss of the batch, whichever reduction is minimised
        return (p, state), value / i.shape[0] if loss_reduction == "sum" else value

    (params, opt_state), losses = jax.lax.scan(step, (params, opt_state), (idx, ts))
    return params, opt_state, losses.mean(), jnp.argmin(jnp.isfinite(losses))


def retrain_masked(
    params: Params,
    masks: Params,
    x,
    y,
    *,
    steps: int,
    batch_size: int = 64,
    learning_rate: float = 1e-4,
    seed: int = 0,
    activation: str = "relu",
    dropout_rate: float = 0.0,
    loss_reduction: str = "sum",
    chunk_steps: int = 1_000,
    return_loss: bool = False,
    lr_schedule: str = "constant",
    weight_decay: float = 0.0,
):
    """Retrain ``params`` for ``steps`` Adam steps with the weights whose mask is False held at
    exactly zero (see the module docstring). ``masks`` is a boolean (or exactly 0/1) pytree like
    ``params`` (True = kept); parameters must be float32 or float64 (float16 underflows Adam's
    epsilon). Returns the new params, and with ``return_loss`` also the mean training loss
    per example over the last chunk of steps (NaN when ``steps`` is 0).

    A fresh Adam state is used; the defaults are the blog's training protocol (``obd.study.train``).
    ``lr_schedule`` is ``"constant"`` or ``"cosine"`` (decayed from ``learning_rate`` to 0 over
    ``steps``, so the retrained weights settle instead of ending mid-stride). ``weight_decay`` > 0
    makes it AdamW (decoupled decay, scaled by the learning rate; pruned weights stay zero).
    """
    if lr_schedule not in LR_SCHEDULES:
        raise ValueError(
            f"lr_schedule {lr_schedule!r} unknown; accepted: {', '.join(LR_SCHEDULES)}"
        )
    steps = check_number("steps", steps, lo=0, integer=True)
    batch_size = _positive_int("batch_size", batch_size)
    chunk_steps = _positive_int("chunk_steps", chunk_steps)
    seed = check_number("seed", seed, lo=0, integer=True)
    check_number("learning_rate", learning_rate, lo=0, lo_open=True)
    check_number("dropout_rate", dropout_rate, lo=0, hi=1, hi_open=True)
    check_number("weight_decay", weight_decay, lo=0)
    if loss_reduction not in REDUCTIONS:
        raise ValueError(f"loss_reduction {loss_reduction!r} unknown; accepted: {REDUCTIONS}")
    if is_module(params):
        if dropout_rate != 0:
            raise ValueError("dropout_rate applies to the plain MLP only; NNX models take 0.0")
        net, flat, restore = as_network(params)
        keep = to_params(params, masks, "masks")
        input_check(net, flat, x)
        classes = int(np.shape(flat[-1]["kernel"])[-1])
    else:
        check_like(params, masks, "masks")
        activation_fn(activation)
        sizes = layer_sizes(params)
        x_shape, y_shape = np.shape(x), np.shape(y)
        if len(x_shape) != 2 or x_shape[1] != sizes[0] or y_shape != x_shape[:1]:
            raise ValueError(f"x must be [N, {sizes[0]}] and y [N]; got {x_shape}, {y_shape}")
        net, flat, keep, classes = None, params, masks, sizes[-1]
    check_masks(keep)
    check_finite_params(flat)
    check_examples(x, y, num_classes=classes)
    check_trainable(flat, x)
    x, y = jnp.asarray(x), jnp.asarray(y)
    keep = jax.tree.map(lambda m: jnp.asarray(m, bool), keep)
    flat = jax.tree.map(lambda p, k: jnp.where(k, jnp.asarray(p), 0), flat, keep)
    last_loss = float("nan")
    if steps > 0:
        k_data, k_drop = jax.random.split(jax.random.key(seed))
        idx = batch_indices(k_data, x.shape[0], int(steps), batch_size)
        decay = int(steps) if lr_schedule == "cosine" else 0
        opt_state = _adam(float(learning_rate), decay, float(weight_decay)).init(flat)
        for start in range(0, steps, chunk_steps):
            stop = min(start + chunk_steps, steps)
            flat, opt_state, chunk_loss, first_bad = _masked_chunk(
                flat, opt_state, keep, x, y, idx[start:stop], jnp.arange(start, stop), k_drop,
                float(learning_rate), activation, loss_reduction, float(dropout_rate), net, decay,
                float(weight_decay),
            )  # fmt: skip
            check_converging(chunk_loss, first_bad, start)
            last_loss = float(chunk_loss)
    out = with_params(params, restore(flat)) if net is not None else flat
    return (out, last_loss) if return_loss else out


@jax.jit(static_argnames=("activation",))
def _evaluate_mlp(params, x, y, activation):
    logits = apply_mlp(params, x, activation=activation)
    ce = optax.softmax_cross_entropy_with_integer_labels(logits, y).mean()
    return (logits.argmax(-1) == y).mean(), ce


@jax.jit(static_argnames=("net",))
def _evaluate_net(net: Network, params, x, y):
    logits = net.predict(params, x)
    ce = optax.softmax_cross_entropy_with_integer_labels(logits, y).mean()
    return (logits.argmax(-1) == y).mean(), ce


def _evaluate(model, x, y, activation):
    """Test accuracy and mean loss of the plain MLP or of an NNX model."""
    if is_module(model):
        net, flat, _ = as_network(model)
        return _evaluate_net(net, flat, x, y)
    return _evaluate_mlp(model, x, y, activation)


def _initial_keep(params) -> Any:
    """The mask of the unpruned model, shaped like its scores: kernel weights that are already
    zero count as pruned (False) from the start; everything else is kept."""
    tree = nnx.state(params, nnx.Param) if is_module(params) else params
    return jax.tree.unflatten(
        jax.tree.structure(tree),
        [
            jnp.asarray(leaf) != 0 if tensor == "kernel" else jnp.ones(np.shape(leaf), bool)
            for (_, tensor), leaf in zip(leaf_names(tree), jax.tree.leaves(tree), strict=True)
        ],
    )


def _kernel_counts(keep) -> tuple[int, int]:
    """Kernel weights pruned (mask False) and in total."""
    kernels = [
        np.asarray(leaf)
        for (_, tensor), leaf in zip(leaf_names(keep), jax.tree.leaves(keep), strict=True)
        if tensor == "kernel"
    ]
    return sum(int((~k).sum()) for k in kernels), sum(k.size for k in kernels)


def _check_break(x_val, y_val, break_error, patience, on_round) -> int:
    """The validation set and break-point arguments of :func:`iterative_prune` (and
    :func:`obd.gradual.gradual_path`): ``patience`` as an int; ``ValueError`` naming what is wrong."""
    patience = _positive_int("patience", patience)
    if (x_val is None) != (y_val is None):
        raise ValueError("x_val and y_val go together: give both (a validation set) or neither")
    if break_error is not None:
        if x_val is None:
            raise ValueError(
                "break_error needs a validation set (x_val, y_val): the break point is decided "
                "on validation data, never on the test set"
            )
        check_number("break_error", break_error, lo=0, hi=1, lo_open=True, hi_open=True)
    if on_round is not None and not callable(on_round):
        raise ValueError(
            f"on_round must be a function (round, params, keep) or None, got {on_round!r}"
        )
    return patience


class _BreakPoint:
    """Counts the rounds in a row whose validation error exceeds ``error``; :meth:`reached` is
    True once ``patience`` of them follow each other (never when ``error`` is None)."""

    def __init__(self, error: float | None, patience: int) -> None:
        self.error, self.patience, self.over = error, patience, 0

    def reached(self, val_accuracy: float | None) -> bool:
        if self.error is None:
            return False
        self.over = self.over + 1 if 1.0 - val_accuracy > self.error else 0
        return self.over >= self.patience


def _check_sets(params, sets, activation: str) -> tuple[int, str | None]:
    """Check each ``(x, y, name)`` of ``sets`` against the model (the NNX model's input shape, or
    ``[N, inputs]`` for the plain MLP) and its labels; returns the number of classes and the
    activation argument of the Hessian and saliencies (None for an NNX model)."""
    if is_module(params):
        net, flat, _ = as_network(params)
        for xs, _, which in sets:
            try:
                input_check(net, flat, xs)
            except ValueError as err:
                raise ValueError(f"x_{which}: {err}") from None
        classes, act_arg = int(np.shape(flat[-1]["kernel"])[-1]), None
    else:
        activation_fn(activation)
        sizes = layer_sizes(params)
        for xs, ys, which in sets:
            if xs.ndim != 2 or xs.shape[1] != sizes[0] or ys.shape != xs.shape[:1]:
                raise ValueError(
                    f"x_{which} must be [N, {sizes[0]}] and y_{which} [N]; got {xs.shape}, "
                    f"{ys.shape}"
                )
        classes, act_arg = sizes[-1], activation
    for xs, ys, which in sets:
        check_examples(xs, ys, num_classes=classes, name=f"x_{which}", label_name=f"y_{which}")
    return classes, act_arg


def _obs_to(params, keep, target: float, *, x_h, y_h, act_arg):
    """Global OBS from ``params`` (whose pruned weights are zero) to ``target``, with the OBS
    update of the remaining weights (:func:`obd.obs.global_obs.global_obs_step`); the new mask is
    the old one less the weights now zero, so the masks nest. Returns the model and its mask."""
    kernels = global_obs_step(params, x_h, y_h, float(target), activation=act_arg)
    module = is_module(params)
    _, flat, restore = as_network(params) if module else as_network(params, "relu")
    flat = [dict(layer, kernel=jnp.asarray(k)) for layer, k in zip(flat, kernels, strict=True)]
    params = with_params(params, restore(flat)) if module else restore(flat)
    return params, jax.tree.map(jnp.logical_and, keep, _initial_keep(params))


def _prune_to(params, keep, target: float, *, saliency: str, scope: str, x_h, y_h, act_arg):
    """Score ``params`` (OBD with the exact diagonal on ``x_h, y_h``, or magnitude) and prune
    its kernels until ``target`` of them are zero; weights pruned before (``keep`` False) rank
    first and stay pruned, so the masks nest. Returns the pruned model and its mask. ``"obs"``
    is :func:`_obs_to`."""
    if saliency == "obs":
        return _obs_to(params, keep, target, x_h=x_h, y_h=y_h, act_arg=act_arg)
    if saliency == "obd":
        hdiag = hessian_diag(params, x_h, y_h, activation=act_arg)
        scores = score_params("obd", params, hdiag=hdiag, activation=act_arg)
    else:
        scores = score_params("magnitude", params, activation=act_arg)
    scores = jax.tree.map(lambda s, k: jnp.where(k, s, -jnp.inf), scores, keep)
    # & keep: weights already pruned stay pruned even when the target is below them
    keep = jax.tree.map(
        jnp.logical_and, prune_masks(scores, float(target), scope=scope, include_biases=False), keep
    )
    if is_module(params):
        return apply_masks(params, keep), keep
    return jax.tree.map(lambda p, k: jnp.where(k, p, 0), params, keep), keep


def iterative_prune(
    params: Params,
    x_train,
    y_train,
    x_test,
    y_test,
    *,
    saliency: str = "obd",
    schedule=None,
    retrain_steps: int | Sequence[int] = 2_000,
    scope: str = "global",
    hessian_examples: int | None = None,
    batch_size: int = 64,
    learning_rate: float = 1e-4,
    seed: int = 0,
    activation: str = "relu",
    dropout_rate: float = 0.0,
    progress: bool = False,
    return_params: bool = False,
    lr_schedule: str = "constant",
    weight_decay: float = 0.0,
    x_val=None,
    y_val=None,
    break_error: float | None = None,
    patience: int = 2,
    on_round: Callable[[int, Any, Any], None] | None = None,
):
    """Prune kernels to each fraction of ``schedule`` in turn, retraining after each round.

    ``saliency`` is ``"obd"`` (``0.5 h w^2`` with the exact Hessian diagonal of the mean loss over
    the first ``hessian_examples`` training images, all by default, recomputed every round),
    ``"magnitude"``, or ``"obs"``: global Optimal Brain Surgeon on the exact Hessian block of
    every unit's incoming weights over the same images, recomputed every round on the weights
    left (:func:`obd.obs.global_obs.global_obs_step`; saliency ``w_q^2 / (2 [H_o^-1]_qq)``, the
    remaining weights of each unit take the OBS update ``-w_q H_o^-1[:, q] / [H_o^-1]_qq``
    before retraining); it needs dense layers (the plain MLP, or an ``nnx.Sequential`` of
    ``nnx.Linear`` layers) and ``scope="global"``. Kernel weights that are already zero count as
    pruned from the start (they rank first and stay zero): a round reaches its target fraction,
    or stays at the model's
    existing sparsity if that is higher. Returns a DataFrame with a row for the unpruned model
    (round 0) and one per round: ``saliency``, ``scope``, ``round``, ``fraction`` (target),
    ``pruned_fraction`` and ``n_pruned`` (the kernel weights actually zero after pruning),
    ``accuracy_pruned`` and ``loss_pruned`` (test, right after pruning), ``accuracy`` and
    ``loss`` (test, after retraining), ``train_loss`` (mean over the last chunk of retraining),
    ``retrain_steps`` and ``seconds``; with ``return_params`` also the final
    parameters. ``lr_schedule`` and ``weight_decay`` are those of :func:`retrain_masked`, applied
    to each round.
    ``retrain_steps`` is one count for every round or a list with one count per round of
    ``schedule`` (e.g. longer retraining at the high levels).

    **Validation and the break point.** With ``x_val, y_val`` every row also holds
    ``val_accuracy`` and ``val_loss`` (after retraining; round 0 is the unpruned model). With
    ``break_error`` (a fraction, e.g. ``0.0199``; needs the validation set) the run stops early,
    at its *break point*: after ``patience`` rounds in a row whose validation error exceeds
    ``break_error``, so a schedule can run on towards 100% and the method itself says where it
    fails. The decision sees the validation set only; the test columns are readings.
    ``on_round(round, params, keep)`` is called after each round's retraining (the model and its
    boolean mask, True = kept), e.g. to record per-layer sparsity along the path.
    """
    if saliency not in SALIENCIES:
        raise ValueError(f"unknown saliency {saliency!r}; accepted: {', '.join(SALIENCIES)}")
    if lr_schedule not in LR_SCHEDULES:
        raise ValueError(
            f"lr_schedule {lr_schedule!r} unknown; accepted: {', '.join(LR_SCHEDULES)}"
        )
    check_scope(scope)
    if saliency == "obs":
        if scope != "global":
            raise ValueError(
                "saliency='obs' allocates removals over all units and layers (global OBS on "
                f"each unit's Hessian block); it takes scope='global', got scope={scope!r}"
            )
        as_dense(params, None if is_module(params) else activation)  # dense layers only
    schedule = halving_schedule() if schedule is None else check_schedule(schedule)
    steps_per_round = round_steps(retrain_steps, len(schedule))
    if hessian_examples is not None:
        hessian_examples = _positive_int("hessian_examples", hessian_examples)
    batch_size = _positive_int("batch_size", batch_size)
    seed = check_number("seed", seed, lo=0, integer=True)
    check_number("learning_rate", learning_rate, lo=0, lo_open=True)
    check_number("dropout_rate", dropout_rate, lo=0, hi=1, hi_open=True)
    check_number("weight_decay", weight_decay, lo=0)
    patience = _check_break(x_val, y_val, break_error, patience, on_round)
    x_train, y_train = np.asarray(x_train), np.asarray(y_train)
    x_test, y_test = np.asarray(x_test), np.asarray(y_test)
    sets = [(x_train, y_train, "train"), (x_test, y_test, "test")]
    if x_val is not None:
        x_val, y_val = np.asarray(x_val), np.asarray(y_val)
        sets.append((x_val, y_val, "val"))
    module = is_module(params)
    if module and dropout_rate != 0:
        raise ValueError("dropout_rate applies to the plain MLP only; NNX models take 0.0")
    _, act_arg = _check_sets(params, sets, activation)
    check_trainable(as_network(params)[1] if module else params, x_train, name="x_train")
    x_h, y_h = (x_train, y_train) if hessian_examples is None else (
        x_train[:hessian_examples], y_train[:hessian_examples])  # fmt: skip
    x_test, y_test = jnp.asarray(x_test), jnp.asarray(y_test)
    if x_val is not None:
        x_val, y_val = jnp.asarray(x_val), jnp.asarray(y_val)
    if not module:
        params = jax.tree.map(jnp.asarray, params)

    def validation() -> dict[str, float]:
        if x_val is None:
            return {}
        a, c = _evaluate(params, x_val, y_val, activation)
        return {"val_accuracy": float(a), "val_loss": float(c)}

    keep = _initial_keep(params)
    acc, ce = _evaluate(params, x_test, y_test, activation)
    rows = [dict(round=0, fraction=0.0, n_pruned=_kernel_counts(keep)[0],
                 accuracy_pruned=float(acc), loss_pruned=float(ce), accuracy=float(acc),
                 loss=float(ce), train_loss=float("nan"), retrain_steps=0, seconds=0.0,
                 **validation())]  # fmt: skip
    breaking = _BreakPoint(break_error, patience)
    bar = tqdm(schedule, desc=f"iterative {saliency}", disable=not progress)
    for r, target in enumerate(bar, start=1):
        t0 = time.perf_counter()
        params, keep = _prune_to(params, keep, target, saliency=saliency, scope=scope, x_h=x_h,
                                 y_h=y_h, act_arg=act_arg)  # fmt: skip
        acc_p, ce_p = _evaluate(params, x_test, y_test, activation)
        params, train_loss = retrain_masked(
            params, keep, x_train, y_train, steps=steps_per_round[r - 1], batch_size=batch_size,
            learning_rate=learning_rate, seed=seed * 1_000 + r, activation=activation,
            dropout_rate=dropout_rate, return_loss=True, lr_schedule=lr_schedule,
            weight_decay=weight_decay,
        )  # fmt: skip
        acc, ce = _evaluate(params, x_test, y_test, activation)
        n_pruned, _ = _kernel_counts(keep)
        val = validation()
        rows.append(dict(round=r, fraction=float(target), n_pruned=n_pruned,
                         accuracy_pruned=float(acc_p), loss_pruned=float(ce_p),
                         accuracy=float(acc), loss=float(ce), train_loss=train_loss,
                         retrain_steps=steps_per_round[r - 1],
                         seconds=time.perf_counter() - t0, **val))  # fmt: skip
        bar.set_postfix(pruned=f"{target:.1%}", acc=f"{float(acc):.4f}")
        if on_round is not None:
            on_round(r, params, keep)
        if breaking.reached(val.get("val_accuracy")):
            break
    bar.close()
    _, n = _kernel_counts(keep)
    df = pd.DataFrame(rows)
    df.insert(0, "saliency", saliency)
    df.insert(1, "scope", scope)
    df.insert(4, "pruned_fraction", df["n_pruned"] / n)
    df = df[["saliency", "scope", "round", "fraction", "pruned_fraction", "n_pruned",
             "accuracy_pruned", "loss_pruned", "accuracy", "loss", "train_loss",
             "retrain_steps", "seconds"]
            + (["val_accuracy", "val_loss"] if x_val is not None else [])]  # fmt: skip
    return (df, params) if return_params else df

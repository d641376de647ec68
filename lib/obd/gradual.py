"""Gradual pruning during training (Zhu & Gupta 2017, "To prune, or not to prune").

The fraction of kernel weights pruned rises along a cubic schedule while the network trains:

    s_t = s_f + (s_i - s_f) (1 - (t - t_0) / (t_1 - t_0))^3      for t_0 <= t <= t_1,

``s_i`` before ``t_0`` and ``s_f`` after ``t_1`` (:func:`cubic_sparsity`). It prunes fast while many
weights are redundant and slowly near the end, and the training between mask updates repairs the
damage as it happens. Every ``update_every`` steps from ``t_0`` to ``t_1``, :func:`gradual_prune`
prunes the lowest-scored kernel weights until ``s_t`` of all kernel weights are zero (over all
layers by default); weights pruned earlier stay pruned (they rank first, so the masks nest), and
training goes on with the mask enforced exactly as in :func:`obd.retrain.retrain_masked`. One
optimizer runs through (Adam, its state and learning-rate schedule continue across mask updates).

The score is ``"magnitude"`` ``|w|`` (Zhu & Gupta's), or ``"obd"``, ``0.5 h w^2`` with the exact
Hessian diagonal of the mean loss over the first ``hessian_examples`` training images recomputed
at every mask update: the second-order variant on the same schedule.

``s_i`` is the model's own sparsity (kernel weights already zero count as pruned), so runs chain:
a pruning path to ever higher levels is a sequence of :func:`gradual_prune` calls, each ramping
from where the last one ended.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import pandas as pd
from tqdm.auto import tqdm

from obd.batches import batch_indices
from obd.checks import check_converging, check_number, check_trainable
from obd.network import Params, as_network, is_module, to_params
from obd.network import with_params as module_with_params
from obd.retrain import (
    LR_SCHEDULES,
    _adam,
    _BreakPoint,
    _check_break,
    _check_sets,
    _evaluate,
    _initial_keep,
    _kernel_counts,
    _masked_chunk,
    _prune_to,
    check_schedule,
    round_steps,
)
from obd.saliencies import check_scope

#: the scores gradual pruning takes (global OBS is iterative only: ``obd.retrain``)
SALIENCIES: tuple[str, ...] = ("obd", "magnitude")


def cubic_sparsity(
    step: int, *, final: float, end: int, initial: float = 0.0, begin: int = 0
) -> float:
    """Zhu & Gupta's target sparsity at ``step``: ``initial`` up to ``begin``, then
    ``final + (initial - final) (1 - (step - begin) / (end - begin))^3``, ``final`` from ``end`` on."""
    check_number("step", step, lo=0, integer=True)
    check_number("initial", initial, lo=0, hi=1)
    check_number("final", final, lo=0, hi=1)
    check_number("begin", begin, lo=0, integer=True)
    check_number("end", end, lo=begin, integer=True)
    if step <= begin and end > begin:
        return float(initial)
    if step >= end:
        return float(final)
    progress = (step - begin) / (end - begin)
    return float(final + (initial - final) * (1.0 - progress) ** 3)


def _update_steps(begin: int, end: int, every: int) -> list[int]:
    """The mask updates: ``begin, begin + every, ...`` and always ``end`` (the final sparsity)."""
    return sorted(set(range(begin, end, every)) | {end})


def gradual_prune(
    params: Params,
    x_train,
    y_train,
    *,
    final: float,
    steps: int,
    begin: int = 0,
    end: int | None = None,
    update_every: int = 200,
    saliency: str = "magnitude",
    scope: str = "global",
    hessian_examples: int | None = 10_000,
    batch_size: int = 64,
    learning_rate: float = 1e-3,
    lr_schedule: str = "cosine",
    weight_decay: float = 0.0,
    seed: int = 0,
    activation: str = "relu",
    chunk_steps: int = 1_000,
    x_val=None,
    y_val=None,
    progress: bool = False,
):
    """Train ``params`` for ``steps`` Adam steps while pruning its kernels gradually to ``final``.

    The sparsity follows :func:`cubic_sparsity` from the model's own (its zero kernel weights)
    at step ``begin`` to ``final`` at step ``end`` (default: half of ``steps``, leaving the second
    half to train at ``final``), with the mask updated every ``update_every`` steps (see the module
    docstring). ``saliency`` is ``"magnitude"`` or ``"obd"``; ``scope`` ``"global"`` or
    ``"layerwise"``. ``lr_schedule`` ``"cosine"`` decays ``learning_rate`` to 0 over ``steps``;
    ``weight_decay`` > 0 makes the optimizer AdamW (as in :func:`obd.retrain.retrain_masked`).

    Takes the plain MLP pytree or an ``nnx.Sequential`` (returned as a new model). Returns
    ``(params, keep, history)``: the trained model, its mask (True = kept, shaped like the
    parameters) and a DataFrame with one row per mask update: ``step``, ``target`` (the cubic
    schedule's sparsity), ``pruned_fraction`` (kernel weights zero), ``train_loss`` (mean per
    example over the steps up to the next update), ``seconds``, and with ``x_val, y_val`` also
    ``val_accuracy`` and ``val_loss`` of the model when the next update begins (the last row: the
    returned model).
    """
    if saliency not in SALIENCIES:
        raise ValueError(f"unknown saliency {saliency!r}; accepted: {', '.join(SALIENCIES)}")
    if lr_schedule not in LR_SCHEDULES:
        raise ValueError(
            f"lr_schedule {lr_schedule!r} unknown; accepted: {', '.join(LR_SCHEDULES)}"
        )
    check_scope(scope)
    check_number("final", final, lo=0, hi=1, hi_open=True)
    steps = check_number("steps", steps, lo=1, integer=True)
    begin = check_number("begin", begin, lo=0, hi=steps, integer=True)
    end = steps // 2 if end is None else end
    end = check_number("end", end, lo=begin, hi=steps, integer=True)
    update_every = check_number("update_every", update_every, lo=1, integer=True)
    chunk_steps = check_number("chunk_steps", chunk_steps, lo=1, integer=True)
    batch_size = check_number("batch_size", batch_size, lo=1, integer=True)
    seed = check_number("seed", seed, lo=0, integer=True)
    check_number("learning_rate", learning_rate, lo=0, lo_open=True)
    check_number("weight_decay", weight_decay, lo=0)
    if hessian_examples is not None:
        hessian_examples = check_number("hessian_examples", hessian_examples, lo=1, integer=True)
    if (x_val is None) != (y_val is None):
        raise ValueError("x_val and y_val go together: give both (a validation set) or neither")
    x_train, y_train = np.asarray(x_train), np.asarray(y_train)
    sets = [(x_train, y_train, "train")]
    if x_val is not None:
        x_val, y_val = np.asarray(x_val), np.asarray(y_val)
        sets.append((x_val, y_val, "val"))
    module = is_module(params)
    _, act_arg = _check_sets(params, sets, activation)
    if not module:
        params = jax.tree.map(jnp.asarray, params)
    net, flat, restore = as_network(params) if module else (None, params, None)
    check_trainable(flat, x_train, name="x_train")
    keep = _initial_keep(params)
    n_pruned, n_total = _kernel_counts(keep)
    initial = n_pruned / n_total
    if final < initial:
        raise ValueError(
            f"final ({final!r}) is below the model's own sparsity ({initial:.4f} of its kernel "
            "weights are already zero); pruned weights stay pruned, so final must be at least that"
        )
    x_h, y_h = (x_train, y_train) if hessian_examples is None else (
        x_train[:hessian_examples], y_train[:hessian_examples])  # fmt: skip
    xj, yj = jnp.asarray(x_train), jnp.asarray(y_train)
    k_data, k_drop = jax.random.split(jax.random.key(seed))
    idx = batch_indices(k_data, x_train.shape[0], steps, batch_size)
    decay = steps if lr_schedule == "cosine" else 0
    opt_state = _adam(float(learning_rate), decay, float(weight_decay)).init(flat)
    xv, yv = (None, None) if x_val is None else (jnp.asarray(x_val), jnp.asarray(y_val))

    updates = _update_steps(begin, end, update_every)
    bounds = sorted(set(updates) | {0, steps})
    rows = []
    bar = tqdm(total=steps, desc=f"gradual {saliency}", disable=not progress)
    for a, b in zip(bounds[:-1], bounds[1:], strict=True):
        t0 = time.perf_counter()
        target = float("nan")
        if a in updates:
            target = max(cubic_sparsity(a, final=final, end=end, initial=initial, begin=begin),
                         initial)  # fmt: skip
            params, keep = _prune_to(params, keep, target, saliency=saliency, scope=scope,
                                     x_h=x_h, y_h=y_h, act_arg=act_arg)  # fmt: skip
        if module:
            _, flat, restore = as_network(params)
            keep_flat = jax.tree.map(
                lambda m: jnp.asarray(m, bool), to_params(params, keep, "masks")
            )
        else:
            flat, keep_flat = params, keep
        losses = []
        for start in range(a, b, chunk_steps):
            stop = min(start + chunk_steps, b)
            flat, opt_state, chunk_loss, first_bad = _masked_chunk(
                flat, opt_state, keep_flat, xj, yj, idx[start:stop], jnp.arange(start, stop),
                k_drop, float(learning_rate), activation, "sum", 0.0, net, decay,
                float(weight_decay),
            )  # fmt: skip
            check_converging(chunk_loss, first_bad, start)
            losses.append((float(chunk_loss), stop - start))
            bar.update(stop - start)
        params = module_with_params(params, restore(flat)) if module else flat
        row: dict[str, Any] = dict(
            step=a, target=target, pruned_fraction=_kernel_counts(keep)[0] / n_total,
            train_loss=sum(v * w for v, w in losses) / sum(w for _, w in losses),
        )  # fmt: skip
        if xv is not None:
            acc, ce = _evaluate(params, xv, yv, activation)
            row.update(val_accuracy=float(acc), val_loss=float(ce))
        row["seconds"] = time.perf_counter() - t0
        rows.append(row)
    bar.close()
    history = pd.DataFrame(rows)
    if math.isnan(history.target.iloc[0]):  # no update at step 0 (begin > 0): the warm-up
        history.loc[0, "target"] = initial
    return params, keep, history


def gradual_path(
    params: Params,
    x_train,
    y_train,
    x_test,
    y_test,
    *,
    schedule,
    steps: int | Sequence[int],
    saliency: str = "magnitude",
    x_val=None,
    y_val=None,
    break_error: float | None = None,
    patience: int = 2,
    on_round: Callable[[int, Any, Any], None] | None = None,
    seed: int = 0,
    **kwargs,
) -> tuple[pd.DataFrame, Any]:
    """Gradual pruning level after level: round ``r`` is one :func:`gradual_prune` run of
    ``steps`` (one count, or one per round) from the last level to ``schedule[r - 1]``, seeded
    ``seed * 1000 + r``; ``kwargs`` go to every run (``update_every``, ``learning_rate``, ...).

    The counterpart of :func:`obd.retrain.iterative_prune` with the cubic ramp inside each
    round, and the same readings and break point: returns ``(table, params)``, the table with a
    row for the unpruned model (round 0) and one per round: ``saliency``, ``round``, ``fraction``,
    ``pruned_fraction``, ``n_pruned``, ``accuracy`` and ``loss`` (test, after the round),
    ``train_loss``, ``retrain_steps``, ``seconds``, and with ``x_val, y_val`` ``val_accuracy`` and
    ``val_loss``. With ``break_error`` the path stops after ``patience`` rounds in a row whose
    validation error exceeds it; ``on_round(round, params, keep)`` is called after each round.
    """
    schedule = check_schedule(schedule)
    if np.any(schedule >= 1):
        raise ValueError(
            f"schedule fractions must be below 1 for gradual pruning, got {schedule!r}"
        )
    per_round = round_steps(steps, len(schedule))
    if any(s < 1 for s in per_round):
        raise ValueError(f"steps must be >= 1 in every round, got {per_round!r}")
    seed = check_number("seed", seed, lo=0, integer=True)
    patience = _check_break(x_val, y_val, break_error, patience, on_round)
    sets = [(np.asarray(x_test), np.asarray(y_test), "test")]
    if x_val is not None:
        sets.append((np.asarray(x_val), np.asarray(y_val), "val"))
    _check_sets(params, sets, kwargs.get("activation", "relu"))
    activation = kwargs.get("activation", "relu")
    xt, yt = jnp.asarray(x_test), jnp.asarray(y_test)
    xv, yv = (None, None) if x_val is None else (jnp.asarray(x_val), jnp.asarray(y_val))

    def readings(model) -> dict[str, float]:
        acc, ce = _evaluate(model, xt, yt, activation)
        out = {"accuracy": float(acc), "loss": float(ce)}
        if xv is not None:
            a, c = _evaluate(model, xv, yv, activation)
            out.update(val_accuracy=float(a), val_loss=float(c))
        return out

    if not is_module(params):
        params = jax.tree.map(jnp.asarray, params)
    n_pruned, n_total = _kernel_counts(_initial_keep(params))
    rows = [dict(round=0, fraction=0.0, n_pruned=n_pruned, train_loss=float("nan"),
                 retrain_steps=0, seconds=0.0, **readings(params))]  # fmt: skip
    breaking = _BreakPoint(break_error, patience)
    for r, (level, n_steps) in enumerate(zip(schedule, per_round, strict=True), start=1):
        t0 = time.perf_counter()
        level = max(float(level), _kernel_counts(_initial_keep(params))[0] / n_total)
        params, keep, hist = gradual_prune(
            params, x_train, y_train, final=level, steps=n_steps, saliency=saliency,
            seed=seed * 1_000 + r, **kwargs,
        )  # fmt: skip
        train_loss = float(np.average(hist.train_loss, weights=np.diff([*hist.step, n_steps])))
        row = dict(round=r, fraction=float(schedule[r - 1]), n_pruned=_kernel_counts(keep)[0],
                   train_loss=train_loss, retrain_steps=n_steps, **readings(params))  # fmt: skip
        row["seconds"] = time.perf_counter() - t0
        rows.append(row)
        if on_round is not None:
            on_round(r, params, keep)
        if breaking.reached(row.get("val_accuracy")):
            break
    df = pd.DataFrame(rows)
    df.insert(0, "saliency", saliency)
    df.insert(3, "pruned_fraction", df["n_pruned"] / n_total)
    cols = ["saliency", "round", "fraction", "pruned_fraction", "n_pruned", "accuracy", "loss",
            "train_loss", "retrain_steps", "seconds"]  # fmt: skip
    return df[cols + (["val_accuracy", "val_loss"] if x_val is not None else [])], params

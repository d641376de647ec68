"""Pruning by saliency: rank parameters once, mask the lowest-scored, sweep many pruning levels.

A *prunable* entry is a kernel weight, or a kernel weight or bias when ``include_biases``. Entries
are ranked within a *group*: all prunable entries together (scope ``"global"``) or each layer's
prunable entries (scope ``"layerwise"``; a layer's kernel and bias form one group when biases are
included). Pruning a fraction ``f`` of a group of ``n`` entries zeroes exactly
``k = floor(f * n + 0.5)`` of them, those of rank ``< k``. Ranking is by score, ascending, with a
stable sort: ties go to the entry earlier in the flattened order (``jax.tree.leaves`` order of the
group's tensors, each row-major), so masks are deterministic.

Models are the plain MLP pytree or an ``nnx.Sequential`` (``obd.network``); scores and masks are
shaped like the parameters (a list of layers, or an ``nnx.State`` like
``nnx.state(model, nnx.Param)``). A "layer" is one parametric item (``nnx.Linear`` or ``nnx.Conv``:
its kernel, plus its bias when biases are included); convolution kernels are pruned weight by
weight.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pandas as pd
from flax import nnx

from obd.checks import check_examples, check_finite_params
from obd.network import Network, Params, as_network, input_check, is_module, to_params, with_params
from obd.saliencies import check_scope

#: Rank given to entries that are not prunable: ``rank >= k`` keeps them for every ``k``.
UNRANKED = np.iinfo(np.int32).max

_ACTIVATION_BYTES = 2**28  # per level chunk in :func:`sweep`: levels * examples * width * 4


def leaf_names(tree: Any) -> list[tuple[Any, str]]:
    """``(layer, tensor)`` of each leaf: the path up to the tensor's name, and the name
    (``"kernel"`` or ``"bias"``), for the plain list of layers and for an ``nnx.State``."""
    out = []
    for path, _ in jax.tree_util.tree_flatten_with_path(tree)[0]:
        keys = [getattr(k, "key", getattr(k, "idx", None)) for k in path]
        names = [i for i, k in enumerate(keys) if k in ("kernel", "bias")]
        if not names:
            raise ValueError(
                "expected a pytree of layers with 'kernel' (and 'bias') tensors, like the "
                f"parameters; got a leaf at {jax.tree_util.keystr(path)}"
            )
        i = names[-1]
        out.append((tuple(keys[:i]), keys[i]))
    return out


def _leaf_groups(params: Any, scope: str, include_biases: bool) -> list[int | None]:
    """Group id of each leaf (``jax.tree.leaves`` order); ``None`` for non-prunable leaves."""
    check_scope(scope)
    if not isinstance(include_biases, bool | np.bool_):
        raise ValueError(
            f"include_biases must be True or False, got {include_biases!r} "
            f"({type(include_biases).__name__})"
        )
    layers: dict[Any, int] = {}
    groups = []
    for layer, tensor in leaf_names(params):
        layer_id = layers.setdefault(layer, len(layers))
        prunable = tensor == "kernel" or include_biases
        groups.append((0 if scope == "global" else layer_id) if prunable else None)
    return groups


def _group_sizes(leaves: Sequence, groups: list[int | None]) -> dict[int, int]:
    sizes: dict[int, int] = {}
    for leaf, g in zip(leaves, groups, strict=True):
        if g is not None:
            sizes[g] = sizes.get(g, 0) + int(np.size(leaf))
    return sizes


def ranks(scores: Params, *, scope: str = "global", include_biases: bool = False) -> Params:
    """Rank (0 = pruned first) of each prunable entry within its group; :data:`UNRANKED` else."""
    groups = _leaf_groups(scores, scope, include_biases)
    leaves, treedef = jax.tree.flatten(scores)
    leaves = [np.asarray(a) for a in leaves]
    if any(np.isnan(a).any() for a in leaves):
        raise ValueError("scores contain NaN; they cannot be ranked")
    out = [np.full(a.shape, UNRANKED, np.int32) for a in leaves]
    for g in sorted(set(groups) - {None}):
        members = [i for i, gi in enumerate(groups) if gi == g]
        flat = np.concatenate([leaves[i].ravel() for i in members])
        rank = np.empty(flat.size, np.int32)
        rank[np.argsort(flat, kind="stable")] = np.arange(flat.size, dtype=np.int32)
        offsets = np.cumsum([0] + [leaves[i].size for i in members])
        for i, lo, hi in zip(members, offsets[:-1], offsets[1:], strict=True):
            out[i] = rank[lo:hi].reshape(leaves[i].shape)
    return treedef.unflatten(out)


def _check_fractions(fraction) -> np.ndarray:
    """``fraction`` as a float64 array of ndim <= 1 in [0, 1], or ``ValueError``."""
    try:
        f = np.asarray(fraction, np.float64)
    except (TypeError, ValueError):
        raise ValueError(f"fraction must be a number in [0, 1], got {fraction!r}") from None
    if f.ndim > 1:
        raise ValueError(f"fraction must be a scalar or 1-D array, got shape {f.shape}")
    if not np.all(np.isfinite(f)) or np.any((f < 0) | (f > 1)):
        raise ValueError(f"fraction must be finite and in [0, 1], got {fraction!r}")
    return f


def prune_counts(fraction, n: int) -> np.ndarray:
    """Entries to prune of ``n``: ``floor(fraction * n + 0.5)`` (elementwise)."""
    return np.floor(_check_fractions(fraction) * n + 0.5).astype(np.int64)


def _leaf_counts(
    scores: Params, fractions: np.ndarray, scope: str, include_biases: bool
) -> tuple[list[np.ndarray], int, np.ndarray]:
    """Per leaf, the ``k`` of its group at each level (0 for non-prunable leaves); also the
    number ``n`` of prunable entries and the number pruned at each level."""
    groups = _leaf_groups(scores, scope, include_biases)
    leaves = jax.tree.leaves(scores)
    sizes = _group_sizes(leaves, groups)
    ks = {g: prune_counts(fractions, n) for g, n in sizes.items()}
    per_leaf = [ks[g] if g is not None else np.zeros_like(fractions, np.int64) for g in groups]
    return per_leaf, sum(sizes.values()), sum(ks.values())


def masks(
    scores: Params,
    fraction,
    *,
    scope: str = "global",
    include_biases: bool = False,
    params: Params | Any | None = None,
) -> Params:
    """Boolean masks like ``scores`` (True = kept) pruning ``fraction`` of each group.

    ``fraction`` may be a 1-D array of levels: each mask then has a leading ``[levels]`` axis.
    With ``params`` (the model, or a pytree shaped like ``scores``), prunable entries that are
    already zero count as pruned: they rank first and their mask is False, so a group of ``n``
    entries with ``z`` zeros ends with ``max(k, z)`` entries pruned (see :func:`sweep`). Without
    it the masks mark exactly ``k`` entries per group, whatever the weights hold.
    """
    fractions = _check_fractions(fraction)
    zero = None
    if params is not None:
        zero = _zero_leaves(params, scores)
        scores = jax.tree.unflatten(
            jax.tree.structure(scores), _zeros_first(jax.tree.leaves(scores), zero)
        )
    r = ranks(scores, scope=scope, include_biases=include_biases)
    per_leaf, _, _ = _leaf_counts(scores, fractions, scope, include_biases)
    leaves, treedef = jax.tree.flatten(r)
    groups = _leaf_groups(scores, scope, include_biases)
    out = []
    for i, (rank, k) in enumerate(zip(leaves, per_leaf, strict=True)):
        k = np.reshape(k, k.shape + (1,) * rank.ndim)
        keep = rank >= k
        if zero is not None and groups[i] is not None:
            keep = keep & ~zero[i]
        out.append(keep)
    return treedef.unflatten(out)


def _zero_leaves(params: Params | Any, like: Any) -> list[np.ndarray]:
    """``params == 0`` per leaf of ``like`` (``params``: a model, or a pytree shaped like it)."""
    tree = nnx.state(params, nnx.Param) if is_module(params) else params
    leaves, p_leaves = jax.tree.leaves(like), jax.tree.leaves(tree)
    if len(p_leaves) != len(leaves) or any(
        np.shape(a) != np.shape(b) for a, b in zip(p_leaves, leaves, strict=True)
    ):
        raise ValueError("params must be shaped like the scores (the model they were computed on)")
    return [np.asarray(a) == 0 for a in p_leaves]


def _zeros_first(scores: list, zero: list[np.ndarray]) -> list:
    """Score leaves with the entries where ``zero`` holds set to ``-inf`` (ranked first); the
    leaves themselves, unchanged, when nothing is zero (dense weights: identical ranks)."""
    if not any(z.any() for z in zero):
        return scores
    out = []
    for s, z in zip(scores, zero, strict=True):
        s = np.asarray(s)
        if np.issubdtype(s.dtype, np.floating):  # -inf scores of non-zero weights rank after
            s = np.where(s == -np.inf, np.finfo(s.dtype).min, s)  # the zeros, before the rest
        out.append(np.where(z, -np.inf, s))
    return out


def _pruned_counts(
    per_leaf: list[np.ndarray], zero: list[np.ndarray], groups: list[int | None]
) -> np.ndarray:
    """Entries that are zero after pruning, per level: per group ``max(k, z)`` (``z`` entries
    already zero rank first, ``k`` are pruned)."""
    total = 0
    for g in sorted(set(groups) - {None}):
        members = [i for i, gi in enumerate(groups) if gi == g]
        z = sum(int(zero[i].sum()) for i in members)
        total = total + np.maximum(per_leaf[members[0]], z)
    return np.asarray(total, np.int64)


def apply_masks(params: Params | Any, masks: Params | Any) -> Params | Any:
    """``params`` with the entries whose mask is False set to zero: a new list for the plain
    pytree, a pruned copy of the model for an ``nnx.Sequential`` (the original is unchanged).
    Masks must be boolean or exactly 0/1 (:func:`check_masks`)."""
    _, flat, restore = as_network(params) if is_module(params) else as_network(params, "relu")
    m = to_params(params, masks, "masks")
    check_masks(m)
    pruned = jax.tree.map(lambda p, mm: jnp.where(jnp.asarray(mm, bool), p, 0), flat, m)
    return with_params(params, restore(pruned)) if is_module(params) else restore(pruned)


def check_masks(masks: Params | Any, name: str = "masks") -> None:
    """``ValueError`` unless every leaf of ``masks`` is boolean or holds only 0 and 1.

    Any other values (scores, weights, NaN) would otherwise be read as "nonzero = kept"; the
    error names the layer (counting parametric layers from 0) and the tensor.
    """
    layers: dict[Any, int] = {}
    for (layer, tensor), leaf in zip(leaf_names(masks), jax.tree.leaves(masks), strict=True):
        index = layers.setdefault(layer, len(layers))
        dtype = np.dtype(leaf.dtype) if hasattr(leaf, "dtype") else np.asarray(leaf).dtype
        if dtype == np.bool_:
            continue
        if isinstance(leaf, jax.Array):
            ok = bool(jnp.all((leaf == 0) | (leaf == 1)))
        else:
            a = np.asarray(leaf)
            ok = bool(np.all((a == 0) | (a == 1)))
        if not ok:
            a = np.asarray(leaf).ravel()
            bad = a[~((a == 0) | (a == 1))]
            raise ValueError(
                f"{name} of layer {index} ({tensor}) hold {bad.size} value(s) other than 0 and 1 "
                f"(e.g. {bad[0]!r}, dtype {dtype}): masks must be boolean (True = kept) or "
                "exactly 0/1; scores are not masks (obd.prune.masks turns them into masks)"
            )


def _level_metrics(net, params, rank, k, x, y):
    masked = jax.tree.map(lambda p, r, kk: jnp.where(r >= kk, p, 0), params, rank, k)
    logits = net.predict(masked, x)
    ce = optax.softmax_cross_entropy_with_integer_labels(logits, y).mean()
    return (logits.argmax(-1) == y).mean(), ce


@jax.jit(static_argnames=("net", "level_batch"))
def _evaluate_levels(net: Network, params, rank, k, x, y, level_batch: int):
    """Accuracy and loss at each level; ``k`` has leaves ``[levels]``; levels vmapped in chunks."""
    return jax.lax.map(
        lambda kk: _level_metrics(net, params, rank, kk, x, y), k, batch_size=level_batch
    )


def activation_elements(net: Network, params: Params, x_shape: tuple[int, ...]) -> int:
    """Largest activation of one example (elements), for sizing chunks of evaluation work."""
    return max(net.output_sizes(params, x_shape), default=1)


def sweep(
    params: Params | Any,
    scores: Params | Any,
    fractions,
    x: jax.Array,
    y: jax.Array,
    *,
    scope: str = "global",
    include_biases: bool = False,
    activation: str | None = None,
    level_batch: int | None = None,
) -> pd.DataFrame:
    """One-shot pruning at each of ``fractions`` (no retraining), evaluated on ``(x, y)``.

    Ranks once, builds every level's masks inside one jitted function and evaluates the levels
    with ``vmap`` in chunks of ``level_batch`` (default: as many as fit in about 256 MB of
    activations). Returns one row per level: ``fraction`` (requested), ``pruned_fraction``
    (``n_pruned`` / prunable entries), ``n_pruned``, ``accuracy``, ``loss`` (mean cross-entropy).

    Weights that are already zero count as pruned: they rank first (whatever their score), so a
    group of ``n`` prunable entries holding ``z`` zeros has ``max(k, z)`` zero entries at a level
    that prunes ``k = floor(f n + 0.5)``, and ``n_pruned`` is that actual count of zeros (for
    dense weights, ``k``).
    """
    net, flat, _ = as_network(params, activation)
    scores = to_params(params, scores, "scores")
    fractions = np.atleast_1d(_check_fractions(fractions))
    check_finite_params(flat)
    input_check(net, flat, x)
    check_examples(x, y, num_classes=int(np.shape(flat[-1]["kernel"])[-1]))
    zero = [np.asarray(a) == 0 for a in jax.tree.leaves(flat)]
    treedef = jax.tree.structure(scores)
    scores = jax.tree.unflatten(treedef, _zeros_first(jax.tree.leaves(scores), zero))
    r = ranks(scores, scope=scope, include_biases=include_biases)
    per_leaf, n, _ = _leaf_counts(scores, fractions, scope, include_biases)
    n_pruned = _pruned_counts(per_leaf, zero, _leaf_groups(scores, scope, include_biases))
    k = jax.tree.unflatten(jax.tree.structure(r), [jnp.asarray(a, jnp.int32) for a in per_leaf])
    flat = jax.tree.map(jnp.asarray, flat)
    if level_batch is None:
        per_level = 4 * len(x) * activation_elements(net, flat, np.shape(x))
        level_batch = max(1, _ACTIVATION_BYTES // per_level)
    level_batch = int(min(level_batch, len(fractions)))
    acc, ce = _evaluate_levels(net, flat, r, k, jnp.asarray(x), jnp.asarray(y), level_batch)
    return sweep_table(fractions, n_pruned, n, acc, ce)


def check_finite_results(fractions, accuracy, loss, where: str = "") -> None:
    """``ValueError`` naming the levels whose accuracy or loss is not finite (NaN or inf): a
    result computed from non-finite numbers is not a result."""
    acc, ce = np.asarray(accuracy, np.float64), np.asarray(loss, np.float64)
    bad = ~(np.isfinite(acc) & np.isfinite(ce))
    if bad.any():
        levels = ", ".join(f"{f:g}" for f in np.asarray(fractions)[bad][:5])
        raise ValueError(
            f"the loss or accuracy is not finite (NaN or inf) at {int(bad.sum())} level(s){where}, "
            f"fraction {levels}{', ...' if bad.sum() > 5 else ''}: a non-finite weight or "
            "update (check the parameters, scores and damping)"
        )


def sweep_table(fractions, n_pruned, n: int, accuracy, loss) -> pd.DataFrame:
    """The table a sweep returns: one row per level, ``n`` prunable entries in all."""
    n_pruned = np.asarray(n_pruned)
    check_finite_results(fractions, accuracy, loss)
    return pd.DataFrame(
        {
            "fraction": fractions,
            "pruned_fraction": n_pruned / n,
            "n_pruned": n_pruned,
            "accuracy": np.asarray(accuracy, np.float64),
            "loss": np.asarray(loss, np.float64),
        }
    )


def layer_sparsity(masks_or_params: Params | Any) -> pd.DataFrame:
    """Per layer and tensor: ``size``, ``n_pruned`` and ``fraction_pruned``.

    Boolean leaves are read as masks (False = pruned); other leaves as parameters (0 = pruned).
    Takes the plain list of layers, an ``nnx.State`` or an NNX model; ``layer`` counts the
    parametric layers from 0.
    """
    tree = nnx.state(masks_or_params, nnx.Param) if is_module(masks_or_params) else masks_or_params
    layers: dict[Any, int] = {}
    rows = []
    for (layer, tensor), leaf in zip(leaf_names(tree), jax.tree.leaves(tree), strict=True):
        a = np.asarray(leaf)
        pruned = int((~a).sum() if a.dtype == bool else (a == 0).sum())
        rows.append(
            {
                "layer": layers.setdefault(layer, len(layers)),
                "tensor": tensor,
                "size": a.size,
                "n_pruned": pruned,
                "fraction_pruned": pruned / a.size,
            }
        )
    order = {"kernel": 0, "bias": 1}
    df = pd.DataFrame(rows)
    return df.sort_values(
        ["layer", "tensor"], key=lambda c: c.map(order) if c.name == "tensor" else c, kind="stable"
    ).reset_index(drop=True)

"""Experiments on the 2016 blog's own models: replay distributions, the float32 overflow, controls.

Used by ``notebooks/blog_replay.ipynb``. The blog's files are MIT-licensed (Copyright (c) 2016
Sarath Shekkizhar; :data:`obd.study.blog2016.LICENSE_NOTICE`).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import jax.numpy as jnp
import numpy as np
import pandas as pd

from obd.network import Params
from obd.study import blog2016_replay as rep
from obd.study.blog2016 import RUNS, flat_from_params

#: Columns of ``results/blog_replay.csv``.
REPLAY_COLUMNS = [
    "run",
    "percent_pruned",
    "logged_accuracy",
    "replay_median",
    "replay_min",
    "replay_max",
    "n_draws",
]
#: ``p`` below this makes ``square(1/p)`` overflow float32: ``sqrt(1 / FLT_MAX) ≈ 5.42e-20``.
OVERFLOW_P = float(1.0 / np.sqrt(np.float64(np.finfo(np.float32).max)))


def replay_records_frame(run: str, log, records, draw: int | str) -> pd.DataFrame:
    """One row per level: the log, the replay's accuracy and what happened at that level."""
    return pd.DataFrame(
        {
            "run": run,
            "draw": draw,
            "percent_pruned": [r.percent_pruned for r in records],
            "logged_accuracy": [a for _, a in log[: len(records)]],
            "replay_accuracy": [r.accuracy for r in records],
            "nan_saliency": [r.nan_saliency for r in records],
            "nan_restore": [r.nan_restore for r in records],
            "zeros_before": [r.zeros_before for r in records],
            "not_restored": [r.not_restored for r in records],
        }
    )


def replay_draws(
    run: str,
    params: Params,
    log: Sequence[tuple[int, float]],
    test,
    train,
    *,
    draws: int,
    seed: int = 0,
) -> pd.DataFrame:
    """The replay on ``draws`` random batch sequences (OBD runs; seeds ``seed..seed+draws-1``),
    or once (magnitude runs, which use no batch). Rows as :func:`replay_records_frame`."""
    spec = RUNS[run]
    levels = [c for c, _ in log]
    if not spec.batch_dependent:
        return replay_records_frame(run, log, rep.replay(run, params, levels, test), 0)
    frames = []
    for d in range(seed, seed + draws):
        batches = rep.shuffled_batches(*train, seed=d)
        frames.append(
            replay_records_frame(run, log, rep.replay(run, params, levels, test, batches), d)
        )
    return pd.concat(frames, ignore_index=True)


def replay_summary(draws: pd.DataFrame) -> pd.DataFrame:
    """``results/blog_replay.csv``: per run and level, the replay's median, min, max and draws."""
    g = draws.groupby(["run", "percent_pruned"], sort=False)
    out = g.agg(
        logged_accuracy=("logged_accuracy", "first"),
        replay_median=("replay_accuracy", "median"),
        replay_min=("replay_accuracy", "min"),
        replay_max=("replay_accuracy", "max"),
        n_draws=("draw", "nunique"),
    ).reset_index()
    return out[REPLAY_COLUMNS]


def min_log_probability(params: Params, x: np.ndarray) -> np.ndarray:
    """Per example, ``log min_c softmax(z)_c`` in float64 (exact where float32 would underflow)."""
    rep.check_mnist(x, None)
    h = np.asarray(x, np.float64)
    for i, layer in enumerate(params):
        h = h @ np.asarray(layer["kernel"], np.float64) + np.asarray(layer["bias"], np.float64)
        if i < len(params) - 1:
            h = np.maximum(h, 0.0)
    m = h.max(1, keepdims=True)
    logsumexp = m + np.log(np.exp(h - m).sum(1, keepdims=True))
    return (h - logsumexp).min(1)


def overflow_table(
    params: Params,
    train: tuple[np.ndarray, np.ndarray],
    *,
    layout: str,
    batches: int | None = None,
    batch_size: int = rep.BATCH_SIZE,
) -> dict[str, float]:
    """How often the blog's float32 graph overflows on these weights.

    ``images_below``: fraction of training images with some class probability below
    :data:`OVERFLOW_P`; ``batches_all_nan`` / ``batches_any_nan``: fractions of consecutive
    batches of ``batch_size`` (the first ``batches``, default all) whose H·1 is NaN in every entry
    / in some entry; ``batches_with_image_below``: fraction of those batches holding at least one
    image below the threshold (equal to ``batches_any_nan`` if one such image suffices);
    ``batches_expected``: ``1 - (1 - images_below)**batch_size``, that fraction for batches drawn
    at random.
    """
    x, y = train
    classes = int(np.shape(params[-1]["kernel"])[-1])
    rep.check_mnist(x, y, classes, name="train x", label_name="train y")
    logp_min = min_log_probability(params, x)
    below = float(np.mean(logp_min < np.log(OVERFLOW_P)))
    n = len(x) // batch_size if batches is None else min(int(batches), len(x) // batch_size)
    variables = rep.to_variables(params, layout)
    all_nan = any_nan = with_below = 0
    is_below = logp_min < np.log(OVERFLOW_P)
    for i in range(n):
        sl = slice(i * batch_size, (i + 1) * batch_size)
        with_below += bool(is_below[sl].any())
        s, _ = rep.hessian_row_sums(variables, x[sl], y[sl], layout=layout)
        nan = np.concatenate([np.isnan(a).ravel() for a in s])
        all_nan += bool(nan.all())
        any_nan += bool(nan.any())
    return {
        "images_below": below,
        "min_probability_log10": float(logp_min.min() / np.log(10)),
        "batches": n,
        "batches_all_nan": all_nan / n,
        "batches_any_nan": any_nan / n,
        "batches_with_image_below": with_below / n,
        "batches_expected": 1 - (1 - below) ** batch_size,
    }


def prefix_zeroing(params: Params, levels: Iterable[int], test) -> list[float]:
    """Test accuracy after zeroing the first ``floor(c * n / 100)`` entries of the flat variable
    (kernel ``W_1`` row by row, i.e. the input pixels in raster order), for each level ``c``:
    what ``top_k`` of an all-NaN saliency selects. No saliency is computed."""
    flat = flat_from_params(params)
    xt, yt = test
    rep.check_mnist(xt, yt, name="test x", label_name="test y")
    out = []
    for c in levels:
        v = flat.copy()
        v[: rep.prune_count(c, v.size)] = 0.0
        out.append(rep._accuracy([v], xt, yt, "flat", rep.SIZES))
    return out


def kernel_only_sweeps(
    params: Params,
    hdiag: Params,
    fractions: np.ndarray,
    test,
    *,
    obs_calibration: np.ndarray | None = None,
) -> pd.DataFrame:
    """The corrected saliencies on one model, kernels only: ``|w|`` and exact OBD
    (``0.5 h_kk w_k²``), global and layer-wise; and layer-wise OBS when ``obs_calibration`` is
    given. Columns: ``method``, ``scope``, ``fraction``, ``accuracy``."""
    from obd.obs import obs_sweep
    from obd.prune import sweep
    from obd.saliencies import saliency

    jp = [{k: jnp.asarray(v) for k, v in layer.items()} for layer in params]
    xt, yt = test
    frames = []
    for kind in ("magnitude", "obd"):
        scores = saliency(kind, jp, hdiag=hdiag)
        for scope in ("global", "layerwise"):
            df = sweep(jp, scores, fractions, xt, yt, scope=scope, include_biases=False)
            frames.append(df.assign(method=kind, scope=scope))
    if obs_calibration is not None:
        df = obs_sweep(jp, obs_calibration, fractions, xt, yt)
        frames.append(df.assign(method="obs", scope="layerwise"))
    out = pd.concat(frames, ignore_index=True)
    return out[["method", "scope", "fraction", "pruned_fraction", "accuracy"]]


def tolerated(df: pd.DataFrame, unpruned: float, drop: float = 0.01) -> float:
    """Largest pruned fraction whose accuracy stays within ``drop`` of ``unpruned``, with every
    smaller level also within it (the first crossing)."""
    ok = (df.sort_values("fraction").accuracy >= unpruned - drop).to_numpy()
    fr = df.sort_values("fraction").fraction.to_numpy()
    if ok.all():
        return float(fr[-1])
    first_bad = int(np.argmin(ok))
    return float(fr[first_bad - 1]) if first_bad > 0 else 0.0


def first_rows_blank(params: Params, x: np.ndarray, levels: Iterable[int]) -> pd.DataFrame:
    """For each level, how much of the zeroed prefix of the flat variable lies in ``W_1`` and
    how many of the input pixels it covers are blank in every training image, and the mean
    fraction of training images in which a covered pixel is not blank."""
    rep.check_mnist(x, None)
    n = flat_from_params(params).size
    fan_out = np.shape(params[0]["kernel"])[1]
    blank = (np.asarray(x) == 0).all(0)
    nonblank = (np.asarray(x) != 0).mean(0)
    rows = []
    for c in levels:
        k = rep.prune_count(c, n)
        pixels = int(np.ceil(k / fan_out))
        rows.append(
            {
                "percent_pruned": c,
                "k": k,
                "pixels_touched": pixels,
                "pixels_always_blank": int(blank[:pixels].sum()),
                "mean_nonblank_fraction": float(nonblank[:pixels].mean()) if pixels else 0.0,
            }
        )
    return pd.DataFrame(rows)


__all__ = [
    "OVERFLOW_P",
    "REPLAY_COLUMNS",
    "first_rows_blank",
    "kernel_only_sweeps",
    "min_log_probability",
    "overflow_table",
    "prefix_zeroing",
    "replay_draws",
    "replay_records_frame",
    "replay_summary",
    "tolerated",
]

"""Published MNIST pruning results the convnet study compares against: Han et al. (2015), and the
later anchors Guo et al. 2016, Molchanov et al. 2017 and Ullrich et al. 2017.

Read from the CSVs shipped with the package (``published_han2015.csv``,
``published_anchors.csv``; their headers give the sources). Errors are in percent as published.
Every published ratio is a pruning ratio, weights over non-zero weights (``measure``), so it sits on
the same axis as ours, read as ``1 - 1/C`` of the kernel weights. Where a paper counts biases in
its weights, as Han et al. do, that reading is generous to us at high ratios, because we keep the
biases: at 280x on LeNet-5 (431,080 parameters, 580 of them biases) matching the ratio over all
parameters would leave 1/449 of the kernel weights, not 1/280.
"""

from __future__ import annotations

from importlib import resources

import numpy as np
import pandas as pd


def load_han2015() -> pd.DataFrame:
    """Han et al. (2015)'s MNIST numbers as printed (see the CSV's header for the source).

    One row per network (``layer == "total"``: errors, parameters before and after, compression)
    and per layer (weights, ``weights_remaining_pct``), in percent as published.
    """
    with resources.files("obd.study").joinpath("published_han2015.csv").open() as f:
        return pd.read_csv(f, comment="#")


#: the columns of :func:`load_published`
PUBLISHED_COLUMNS = [
    "network", "method", "label", "dense_error_pct", "pruned_error_pct", "compression",
    "compression_low", "compression_high", "fraction", "measure", "storage_compression",
]  # fmt: skip


def load_published() -> pd.DataFrame:
    """Every published network-level result: Han et al.'s (from ``published_han2015.csv``) and
    the later anchors (``published_anchors.csv``; see its header for the sources).

    Columns :data:`PUBLISHED_COLUMNS`; errors in percent as published. ``compression`` is the
    ratio as reported, ``compression_low`` / ``compression_high`` the range the printed numbers
    allow, ``fraction`` the share of weights pruned: ``1 - pruned/weights`` from Han et al.'s
    counts, ``1 - 1/compression`` for the others. ``measure`` says what the ratio counts;
    ``storage_compression`` is a paper's own storage ratio (quantisation included) where it gives
    one, a different measure.
    """
    han = load_han2015()
    han = han[han["layer"] == "total"]
    rows = pd.DataFrame({
        "network": han["network"], "method": "han2015", "label": "Han et al. 2015",
        "dense_error_pct": han["dense_error_pct"], "pruned_error_pct": han["pruned_error_pct"],
        "compression": han["compression"].astype(float),
        "compression_low": han["compression"].astype(float),
        "compression_high": han["compression"].astype(float),
        "fraction": 1.0 - han["pruned_weights"] / han["weights"],
        "measure": "parameters / non-zero parameters", "storage_compression": np.nan,
    })  # fmt: skip
    with resources.files("obd.study").joinpath("published_anchors.csv").open() as f:
        later = pd.read_csv(f, comment="#")
    later = later.assign(fraction=1.0 - 1.0 / later["compression"].astype(float))
    bad = later[~(later["compression_low"] <= later["compression"])
                | ~(later["compression"] <= later["compression_high"])]  # fmt: skip
    if len(bad):
        raise ValueError(f"published_anchors.csv: compression outside its range in {bad.iloc[0]}")
    out = pd.concat([rows, later[PUBLISHED_COLUMNS]], ignore_index=True)
    return out[PUBLISHED_COLUMNS]


def published_label(method: str, published: pd.DataFrame | None = None) -> str:
    """Legend label of a published method key (``"dns2016"``), with "(published)"."""
    p = load_published() if published is None else published
    labels = p.loc[p["method"] == method, "label"]
    return f"{labels.iloc[0] if len(labels) else method} (published)"

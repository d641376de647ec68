"""Helpers shared by the benchmark scripts: timing, statistics, machine facts, the results table.

Every result is one row of ``results.csv`` (columns :data:`COLUMNS`): a measurement's median,
quartiles, min and max over its repeats, its ratio to a reference measured in the same rounds, the
compiled memory where it applies, and the machine it ran on (:func:`machine_facts`).
"""

from __future__ import annotations

import os
import platform
import time
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path

import numpy as np
import pandas as pd

COLUMNS = [
    "section",  # hessian, naive, scaling, exponent, pipeline, notebook
    "name",  # what was measured
    "axis",  # scaling: examples, width or depth; notebook: quick or full
    "size",  # the value on that axis (examples for the Hessian rows)
    "unit",
    "median",
    "q25",
    "q75",
    "min",
    "max",
    "repeats",
    "ratio",  # median over rounds of (this / ratio_to), both timed in the same round
    "ratio_q25",
    "ratio_q75",
    "ratio_to",
    "temp_bytes",  # XLA's compiled temporary buffers (working memory besides inputs/outputs)
    "peak_bytes",  # arguments + outputs + temporaries - aliased
    "temp_ratio",  # temp_bytes / the gradient's temp_bytes at the same point
    "peak_ratio",
    "note",
]
MACHINE_COLUMNS = [
    "cpu",
    "cores",
    "backend",
    "device_kind",
    "jax",
    "jaxlib",
    "python",
    "data",
    "load_avg",
    "date",
]


def cpu_model() -> str:
    """The CPU's model name from ``/proc/cpuinfo`` (else :func:`platform.processor`)."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def machine_facts(data: str) -> dict[str, str]:
    """Where the benchmark runs: CPU, usable cores, JAX backend and device, versions, load."""
    import jax
    import jaxlib

    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:
        cores = os.cpu_count() or 0
    dev = jax.devices()[0]
    return {
        "cpu": cpu_model(),
        "cores": str(cores),
        "backend": jax.default_backend(),
        "device_kind": f"{dev.platform}: {dev.device_kind} x{jax.device_count()}",
        "jax": jax.__version__,
        "jaxlib": jaxlib.__version__,
        "python": platform.python_version(),
        "data": data,
        "load_avg": " ".join(f"{v:.2f}" for v in os.getloadavg()),
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
    }


def time_call(fn: Callable[[], object]) -> float:
    """Wall time of ``fn()`` in seconds, waiting for JAX's asynchronous results."""
    import jax

    start = time.perf_counter()
    jax.block_until_ready(fn())
    return time.perf_counter() - start


def interleaved(fns: dict[str, Callable[[], object]], rounds: int, warmup: int = 1) -> pd.DataFrame:
    """Time every ``fn`` once per round, in turn, after ``warmup`` untimed calls each.

    Interleaving makes a change in the machine's load hit all of them alike, so ratios of times
    from the same round are far steadier than the times. Returns a ``[rounds, len(fns)]`` frame.
    """
    for fn in fns.values():
        for _ in range(warmup):
            time_call(fn)
    return pd.DataFrame([{k: time_call(fn) for k, fn in fns.items()} for _ in range(rounds)])


def stats(values: Iterable[float]) -> dict[str, float]:
    """Median, quartiles, min, max and count of ``values``."""
    v = np.asarray(list(values), np.float64)
    q25, med, q75 = np.percentile(v, [25, 50, 75])
    return {
        "median": med,
        "q25": q25,
        "q75": q75,
        "min": v.min(),
        "max": v.max(),
        "repeats": v.size,
    }


def row(section: str, name: str, values: Sequence[float], unit: str = "s", **extra) -> dict:
    """A result row: the statistics of ``values`` plus ``extra`` columns."""
    return {"section": section, "name": name, "unit": unit, **stats(values), **extra}


def ratio_cols(values: Sequence[float], reference: Sequence[float], to: str) -> dict:
    """Median and quartiles of the per-round ratios ``values / reference``."""
    r = np.asarray(values, np.float64) / np.asarray(reference, np.float64)
    q25, med, q75 = np.percentile(r, [25, 50, 75])
    return {"ratio": med, "ratio_q25": q25, "ratio_q75": q75, "ratio_to": to}


def memory(compiled) -> dict[str, float]:
    """Temporary and peak bytes of an XLA executable (``jax.jit(f).lower(...).compile()``).

    This is XLA's buffer assignment, fixed at compile time: the arguments, the outputs and the
    temporaries that the program allocates; peak = arguments + outputs + temporaries - aliased. It
    is deterministic (no spread) and the same on CPU and GPU up to the backend's fusion choices.
    """
    m = compiled.memory_analysis()
    if m is None:
        return {"temp_bytes": np.nan, "peak_bytes": np.nan}
    peak = (
        m.argument_size_in_bytes
        + m.output_size_in_bytes
        + m.temp_size_in_bytes
        - m.alias_size_in_bytes
    )
    return {"temp_bytes": float(m.temp_size_in_bytes), "peak_bytes": float(peak)}


def frame(rows: list[dict], facts: dict[str, str] | None = None) -> pd.DataFrame:
    """``rows`` as a frame with every column of :data:`COLUMNS` (+ the machine's)."""
    df = pd.DataFrame(rows).reindex(columns=COLUMNS)
    for k in MACHINE_COLUMNS:
        df[k] = (facts or {}).get(k, "")
    return df


def read_results(path: str | os.PathLike) -> pd.DataFrame:
    """A ``results.csv`` as written by :func:`write_results` (empty if absent)."""
    path = Path(path)
    if not path.is_file():
        return pd.DataFrame(columns=COLUMNS + MACHINE_COLUMNS)
    return pd.read_csv(path, keep_default_na=False, na_values=[""])


def fit_exponent(sizes: Sequence[float], times: Sequence[float]) -> tuple[float, float]:
    """Slope of ``log(times)`` against ``log(sizes)`` (least squares) and its standard error."""
    lx, ly = np.log(np.asarray(sizes, np.float64)), np.log(np.asarray(times, np.float64))
    slope, intercept = np.polyfit(lx, ly, 1)
    if lx.size < 3:
        return float(slope), float("nan")
    resid = ly - (slope * lx + intercept)
    se = np.sqrt(resid @ resid / (lx.size - 2) / np.sum((lx - lx.mean()) ** 2))
    return float(slope), float(se)

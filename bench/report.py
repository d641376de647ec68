"""``results.md``: the benchmark's Markdown tables, rendered from ``results.csv`` alone."""

from __future__ import annotations

import math
import os
from pathlib import Path

import pandas as pd

from obd.pipeline.io import write_text

AXES = {"examples": "training examples", "width": "hidden width", "depth": "hidden layers"}
HESSIAN_NAMES = {
    "grad": "one full-batch gradient, `jax.jit(jax.grad(obd.mlp.loss))`",
    "fast": 'exact diagonal, `hessian_diag(method="fast")`',
    "hvp": 'exact diagonal, `hessian_diag(method="hvp")`',
    "hvp_single": "one Hessian-vector product, `obd.hessian.hvp`",
    "naive_per_hvp": "naive: one HVP per parameter, cost of one (vmapped in batches)",
    "naive_all": "naive: one HVP per parameter, all of them (extrapolated)",
}


def fmt_time(s: float) -> str:
    """Seconds, in a readable unit."""
    if not math.isfinite(s):
        return "–"
    scale, unit = _time_unit(s)
    return f"{s / scale:.3g} {unit}"


def _time_unit(s: float) -> tuple[float, str]:
    for scale, unit, below in (
        (1e-6, "µs", 1e-3),
        (1e-3, "ms", 1),
        (1, "s", 120),
        (60, "min", 7200),
    ):
        if s < below:
            return scale, unit
    return 3600, "h"


def fmt_time_range(med: float, lo: float, hi: float) -> str:
    """``median [lo–hi] unit``, all in the median's unit."""
    if not all(math.isfinite(v) for v in (med, lo, hi)):
        return fmt_time(med)
    scale, unit = _time_unit(med)
    return f"{med / scale:.3g} {unit} [{lo / scale:.3g}–{hi / scale:.3g}]"


def fmt_span(lo: float, hi: float) -> str:
    """``lo–hi unit`` in the unit of ``hi``."""
    scale, unit = _time_unit(hi)
    return f"{lo / scale:.3g}–{hi / scale:.3g} {unit}"


def fmt_num(v: float, digits: int = 3) -> str:
    """A number with ``digits`` significant digits and thousands separators."""
    if not math.isfinite(v):
        return "–"
    if abs(v) >= 10**digits:
        return f"{v:,.0f}"
    return f"{v:.{digits}g}"


def fmt_mb(b: float) -> str:
    return "–" if not math.isfinite(b) else f"{b / 1e6:.1f} MB"


def _spread(r: pd.Series, fmt=fmt_time, prefix: str = "") -> str:
    """``median [q25–q75]`` of a row (or of its ratio columns with ``prefix="ratio_"``)."""
    med = r[prefix + "median"] if not prefix else r["ratio"]
    lo, hi = r[prefix + "q25"], r[prefix + "q75"]
    if r.get("repeats", 1) == 1 and not prefix:
        return fmt(med)
    if fmt is fmt_time:
        return fmt_time_range(med, lo, hi)
    return f"{fmt(med)} [{fmt(lo)}–{fmt(hi)}]"


def _table(header: list[str], rows: list[list[str]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    return lines + ["| " + " | ".join(r) + " |" for r in rows]


def _machine(df: pd.DataFrame) -> list[str]:
    m = df.iloc[0]
    return [
        f"Machine: {m['cpu']}, {m['cores']} cores, load average {m['load_avg']} (1, 5, 15 min) at "
        f"the start; JAX {m['jax']} / jaxlib {m['jaxlib']}, backend `{m['backend']}` "
        f"({m['device_kind']}), Python {m['python']}; data: {m['data']}; run {m['date']}.",
        "",
        "Times are medians over repeated runs after a warm-up, with the interquartile range in "
        "brackets. Methods are compared as ratios: each round times every method once, in turn "
        "(interleaved), and a ratio is the median over rounds of the ratio within a round, so "
        "changes in the machine's load cancel. Memory is XLA's compiled buffer assignment "
        "(`jax.jit(f).lower(...).compile().memory_analysis()`): *working memory* is the "
        "temporary buffers besides the inputs and outputs, *peak* adds the inputs and outputs "
        "(the images dominate it); both are exact, not sampled.",
    ]


def _hessian(df: pd.DataFrame) -> list[str]:
    h = df[df["section"] == "hessian"].set_index("name")
    if h.empty:
        return []
    n = int(h.loc["grad", "size"])
    out = [
        "",
        f"**Hessian diagonal of the seed MLP (784-50-50-50-50-10, 47,410 parameters), "
        f"{n:,} examples**",
        "",
    ]
    rows = []
    for name, label in HESSIAN_NAMES.items():
        if name not in h.index:
            continue
        r = h.loc[name]
        rows.append(
            [
                label,
                _spread(r),
                "1" if name == "grad" else _spread(r, fmt_num, "ratio_"),
                fmt_mb(r["temp_bytes"]),
                "1" if name == "grad" else fmt_num(r["temp_ratio"], 2),
                fmt_mb(r["peak_bytes"]),
            ]
        )
    out += _table(
        ["computation", "time", "× gradient", "working memory", "× gradient's", "peak"], rows
    )
    s = df[df["section"] == "naive"].set_index("name")
    if not s.empty:
        out.append("")
        notes = []
        for name, what in (("speedup_fast", "`fast`"), ("speedup_hvp", "`hvp`")):
            if name in s.index:
                notes.append(f"{what} ×{_spread(s.loc[name], fmt_num, 'ratio_')}")
        msg = "Speed-up of the exact diagonal over one HVP per parameter: " + ", ".join(notes)
        if "check" in s.index:
            c = s.loc["check"]
            msg += (
                f". The naive entries agree with `fast` to {c['median']:.1e} (largest difference "
                f"relative to the largest diagonal entry; {c['note']})"
            )
        out.append(msg + ".")
    return out


def _scaling(df: pd.DataFrame) -> list[str]:
    s = df[df["section"] == "scaling"]
    e = df[df["section"] == "exponent"]
    if s.empty:
        return []
    out = ["", "**Growth: time and working memory of `fast` and of one gradient**", ""]
    rows = []
    for axis, label in AXES.items():
        ex = e[e["axis"] == axis].set_index("name")
        pts = s[s["axis"] == axis]
        if pts.empty:
            continue
        sizes = sorted(pts["size"].unique())
        fast = pts[pts["name"] == "fast"]

        def slope(name: str, ex=ex) -> str:
            if name not in ex.index:
                return "–"
            r = ex.loc[name]
            return f"{r['median']:.2f} ± {r['q75'] - r['median']:.2f}"

        rows.append(
            [
                f"{label}: {', '.join(f'{int(v):,}' for v in sizes)}",
                pts["note"].iloc[0],
                slope("grad"),
                slope("fast"),
                f"{fast['ratio'].min():.2f}–{fast['ratio'].max():.2f}",
                f"{fast['temp_ratio'].min():.2f}–{fast['temp_ratio'].max():.2f}",
            ]
        )
    out += _table(
        [
            "grows",
            "fixed",
            "exponent, gradient",
            "exponent, `fast`",
            "time `fast` ÷ gradient",
            "working memory `fast` ÷ gradient",
        ],
        rows,
    )
    out += [
        "",
        "Exponents are least-squares slopes of log(median time) against log(size), ± one "
        "standard error; figure `figures/bench_scaling.png` (time) and "
        "`figures/bench_memory.png` (memory).",
    ]
    n_axis = s[s["axis"] == "examples"]
    if not n_axis.empty:
        fast = n_axis[n_axis["name"] == "fast"].sort_values("size")
        grad = n_axis[n_axis["name"] == "grad"].sort_values("size")
        out[-1] += (
            f" `fast` sums over chunks of examples, so its working memory levels off at "
            f"{fmt_mb(fast['temp_bytes'].max())} whatever N, while the full-batch gradient's "
            f"grows with N ({fmt_mb(grad['temp_bytes'].iloc[-1])} at N = "
            f"{int(grad['size'].iloc[-1]):,}); on fewer examples than one chunk it is "
            f"{fast['temp_ratio'].max():.2g}× the (then small) gradient's, because it propagates "
            "one column per class through the hidden layers."
        )
    out.append("")
    rows = []
    for axis, label in AXES.items():
        pts = s[s["axis"] == axis]
        for size in sorted(pts["size"].unique()):
            g = pts[(pts["size"] == size) & (pts["name"] == "grad")].iloc[0]
            f = pts[(pts["size"] == size) & (pts["name"] == "fast")].iloc[0]
            rows.append(
                [
                    label,
                    f"{int(size):,}",
                    _spread(g),
                    _spread(f),
                    _spread(f, fmt_num, "ratio_"),
                    fmt_mb(g["temp_bytes"]),
                    fmt_mb(f["temp_bytes"]),
                    fmt_num(f["temp_ratio"], 2),
                ]
            )
    out += _table(
        [
            "axis",
            "size",
            "gradient",
            "`fast`",
            "÷ gradient",
            "memory, gradient",
            "memory, `fast`",
            "÷ gradient",
        ],
        rows,
    )
    return out


def _pipeline(df: pd.DataFrame) -> list[str]:
    p = df[df["section"] == "pipeline"]
    if p.empty:
        return []
    out = ["", "**Pipeline**", ""]
    rows = []
    for _, r in p.iterrows():
        if r["unit"] == "s":
            value = _spread(r)
            spread = (
                f"{fmt_span(r['min'], r['max'])}, n={int(r['repeats'])}"
                if r["repeats"] > 1
                else "one run"
            )
        else:
            value, spread = f"{fmt_num(r['median'])} {r['unit']}", ""
        rows.append([r["name"], value, spread, str(r["note"]) if pd.notna(r["note"]) else ""])
    return out + _table(["step", "time (median [IQR])", "min–max", "note"], rows)


def _notebooks(df: pd.DataFrame) -> list[str]:
    nb = df[df["section"] == "notebook"].copy()
    if nb.empty:
        return [
            "",
            "**Notebooks**: no timings yet. Run `make reproduce 2>&1 | tee logs/reproduce.log` "
            "(and/or `make reproduce QUICK=1 2>&1 | tee logs/reproduce-quick.log`), then "
            "`make bench` or `.venv/bin/python bench/notebook_times.py logs/reproduce.log`.",
        ]
    nb["kind"] = nb["name"].str.split("-").str[0]
    out = ["", "**Notebooks** (wall time of each run, from the `make reproduce` logs)", ""]
    rows = []
    for mode in ("quick", "full"):
        m = nb[nb["axis"] == mode]
        for kind, g in m.groupby("kind", sort=False):
            rows.append(
                [
                    mode,
                    f"`{kind}.ipynb`",
                    str(len(g)),
                    fmt_time(g["median"].median()),
                    fmt_span(g["median"].min(), g["median"].max()),
                    fmt_time(g["median"].sum()),
                ]
            )
        if not m.empty:
            rows.append([mode, "**all**", str(len(m)), "", "", fmt_time(m["median"].sum())])
    out += _table(["mode", "notebook", "runs", "median", "min–max", "sum"], rows)
    out += [
        "",
        "`make reproduce` runs `nproc` notebooks at once, so each time includes contention and "
        "the sum exceeds the elapsed time.",
    ]
    return out


def markdown(df: pd.DataFrame) -> str:
    """The Markdown tables of a results frame."""
    if df.empty:
        return "No benchmark results.\n"
    lines = [
        "<!-- Generated by bench/run.py (`make bench`) from bench/results.csv; do not edit. -->",
        "",
    ]
    lines += _machine(df)
    lines += _hessian(df) + _scaling(df) + _pipeline(df) + _notebooks(df)
    return "\n".join(lines) + "\n"


def write_results(df: pd.DataFrame, out: str | os.PathLike) -> None:
    """Write ``results.csv`` and ``results.md`` into ``out``, each atomically."""
    out = Path(out)
    write_text(out / "results.csv", df.to_csv(index=False, float_format="%.10g"))
    write_text(out / "results.md", markdown(df))

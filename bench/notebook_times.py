"""Add each notebook's wall time from a ``make reproduce`` log to the benchmark results.

The runner (``obd.pipeline.runner``) prints ``✓ <report>.html in <seconds> s`` when a notebook finishes. A
report under ``quick/`` is a QUICK run, any other a full one. Usage, after
``make reproduce 2>&1 | tee logs/reproduce.log``::

    .venv/bin/python bench/notebook_times.py logs/reproduce.log [more.log ...]

This replaces the notebook rows of the same mode in ``bench/results.csv`` (``--out``), and
rewrites ``results.md`` and ``figures/bench_pipeline.png`` (``--figures``). ``make bench`` reads
``logs/reproduce*.log`` itself.
"""

from __future__ import annotations

import argparse
import re
from collections.abc import Iterable
from pathlib import Path

import pandas as pd

from common import frame, machine_facts, read_results

DONE = re.compile(r"✓ (?P<report>\S+)\.html in (?P<seconds>[0-9]+(?:\.[0-9]*)?) s")


def parse_log(text: str, source: str = "") -> list[dict]:
    """One row per finished notebook in a log; a report seen twice keeps its last time."""
    found: dict[tuple[str, str], dict] = {}
    for m in DONE.finditer(text):
        report = m["report"]
        mode = "quick" if report.startswith("quick/") or "/quick/" in report else "full"
        name = Path(report).name
        t = float(m["seconds"])
        found[(mode, name)] = {
            "section": "notebook",
            "name": name,
            "axis": mode,
            "unit": "s",
            "median": t,
            "q25": t,
            "q75": t,
            "min": t,
            "max": t,
            "repeats": 1,
            "note": source,
        }
    return list(found.values())


def parse_logs(paths: Iterable[str | Path]) -> list[dict]:
    """:func:`parse_log` over files, later files overriding earlier ones."""
    rows: dict[tuple[str, str], dict] = {}
    for path in paths:
        for r in parse_log(Path(path).read_text(errors="replace"), str(path)):
            rows[(r["axis"], r["name"])] = r
    return list(rows.values())


def merge(old: pd.DataFrame, new: pd.DataFrame) -> pd.DataFrame:
    """``old`` with its notebook rows of the modes present in ``new`` replaced by ``new``."""
    if new.empty:
        return old
    modes = set(new["axis"])
    keep = old[~((old["section"] == "notebook") & old["axis"].isin(modes))]
    return pd.concat([keep, new], ignore_index=True) if not keep.empty else new


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("logs", nargs="+", help="make logs holding the runner's ✓ lines")
    parser.add_argument("--out", default="bench", help="folder of results.csv and results.md")
    parser.add_argument("--figures", default="figures", help="folder of bench_pipeline.png")
    args = parser.parse_args(argv)

    from figures import plot_pipeline
    from report import write_results

    rows = parse_logs(args.logs)
    if not rows:
        raise SystemExit(f"no '✓ <report>.html in <t> s' lines in {', '.join(args.logs)}")
    old = read_results(Path(args.out) / "results.csv")
    facts = old.iloc[0].to_dict() if not old.empty else machine_facts("")
    df = merge(old, frame(rows, facts))
    write_results(df, args.out)
    plot_pipeline(df, args.figures)
    modes = ", ".join(
        f"{m}: {n}" for m, n in pd.Series([r["axis"] for r in rows]).value_counts().items()
    )
    print(f"{len(rows)} notebook timings ({modes}) -> {args.out}/results.csv")


if __name__ == "__main__":
    main()

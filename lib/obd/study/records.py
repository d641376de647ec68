"""Which files under ``results/`` the study reads: only those the pipeline's runs recorded.

Each finished run of ``make reproduce`` leaves ``REPORTS/NAME.outputs.json``
(:mod:`obd.pipeline.outputs`): the files it wrote and their SHA-256. The loaders of the study's
aggregated results (:func:`obd.study.variants.load_sweeps`, :mod:`obd.study.findings`) read only
the files recorded there, unchanged since, and name every other file they find as ignored: a copy
such as ``obd-global-plain-v1.csv`` beside the sweeps is never merged into the findings.
``REPORTS`` is the folder ``reports`` beside ``results`` unless given.

:func:`read_csv` reads one such table, naming the file and what is wrong with it when it is empty,
not UTF-8 text, cut mid-line, written twice, or rows have the wrong number of fields.
"""

from __future__ import annotations

import csv
import io
import os
from pathlib import Path

import pandas as pd

from obd.pipeline.io import finished
from obd.pipeline.outputs import MANIFEST_SUFFIX, read_manifest, sha256


def default_reports(results_dir: str | os.PathLike) -> Path:
    """The reports folder of the run whose results are in ``results_dir``: ``reports`` beside it
    (the Makefile's layout, ``results/`` and ``reports/``, or ``quick/results`` and
    ``quick/reports``)."""
    return Path(os.path.abspath(results_dir)).parent / "reports"


def recorded(reports_dir: str | os.PathLike) -> dict[Path, tuple[str, str]]:
    """Every output recorded by the manifests in ``reports_dir``: ``{path: (sha256, run)}``,
    paths absolute as the pipeline named them. Empty when there is no manifest."""
    out: dict[Path, tuple[str, str]] = {}
    for manifest in sorted(Path(reports_dir).glob(f"*{MANIFEST_SUFFIX}")):
        try:
            entries = read_manifest(manifest)
        except (ValueError, KeyError, TypeError, AttributeError):
            continue  # an unreadable record vouches for nothing
        run = manifest.name.removesuffix(MANIFEST_SUFFIX)
        out.update({Path(os.path.abspath(p)): (d, run) for p, d in entries.items()})
    return out


def pipeline_files(
    results_dir: str | os.PathLike,
    pattern: str,
    reports_dir: str | os.PathLike | None = None,
) -> tuple[list[Path], dict[Path, str]]:
    """The finished files ``results_dir/pattern`` that a run recorded, unchanged since, and the
    others with the reason each is ignored. ``ValueError`` when ``reports_dir`` (default
    :func:`default_reports`) holds no record of any run."""
    reports = default_reports(results_dir) if reports_dir is None else Path(reports_dir)
    record = recorded(reports)
    if not record:
        raise ValueError(
            f"no record of the pipeline's runs in {reports} (*{MANIFEST_SUFFIX}): the study "
            f"reads only the files under {results_dir} that make reproduce recorded; run it, "
            "or pass the reports folder of the run"
        )
    keep, ignored = [], {}
    for f in finished(Path(results_dir).glob(pattern)):
        entry = record.get(Path(os.path.abspath(f)))
        if entry is None:
            ignored[f] = "not written by any recorded run"
        elif sha256(f) != entry[0]:
            ignored[f] = f"changed since run {entry[1]} wrote it"
        else:
            keep.append(f)
    return keep, ignored


def ignored_line(ignored: dict[Path, str], results_dir: str | os.PathLike) -> str:
    """One line naming the ignored files (empty when none)."""
    if not ignored:
        return ""
    names = "; ".join(
        f"{os.path.relpath(p, results_dir)} ({why})" for p, why in sorted(ignored.items())
    )
    return f"Ignored under results/ (not read): {names}."


def read_csv(path: str | os.PathLike, columns: list[str] | None = None) -> pd.DataFrame:
    """A CSV table written by the pipeline; ``ValueError`` naming ``path`` and what is wrong:
    empty, not UTF-8 text, cut mid-line (no final newline, or a row with fewer fields), its
    header written again inside (a file written twice), or without one of ``columns``."""
    path = Path(path)
    data = path.read_bytes()
    if not data:
        raise ValueError(f"{path} is empty (0 bytes): its run did not finish writing it")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as err:
        raise ValueError(
            f"{path} is not UTF-8 text (byte {data[err.start]:#04x} at offset {err.start}): "
            "not a table the pipeline wrote"
        ) from None
    if not text.endswith("\n"):
        raise ValueError(f"{path} ends mid-line: the file is truncated; run its run again")
    lines = text.splitlines()
    if '"' in text:  # quoted fields may hold commas: count the fields with the csv module
        fields = [len(row) for row in csv.reader(io.StringIO(text))]
    else:
        fields = [line.count(",") + 1 for line in lines]
    for i, line in enumerate(lines[1:], start=2):
        if line == lines[0]:
            raise ValueError(f"{path} holds its header again at line {i}: written twice?")
    bad = [i for i, n in enumerate(fields) if n != fields[0] and lines[i]]
    if bad:
        i = bad[0]
        raise ValueError(
            f"{path} line {i + 1} has {fields[i]} fields, the header {fields[0]}: the file is "
            "damaged or truncated"
        )
    try:
        df = pd.read_csv(io.StringIO(text))
    except (ValueError, pd.errors.ParserError) as err:
        raise ValueError(f"{path} is not a readable table: {err}") from None
    missing = sorted(set(columns or []) - set(df.columns), key=(columns or []).index)
    if missing:
        raise ValueError(f"{path} lacks the column(s) {', '.join(missing)}")
    return df

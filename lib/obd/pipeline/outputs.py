"""What each notebook run wrote, so ``make reproduce`` notices outputs changed behind its back.

``python -m obd.pipeline.outputs run NOTEBOOK REPORT -p name value ...`` runs ``obd.pipeline.runner`` with the same
arguments and, on success, writes ``REPORT.outputs.json``: every file the notebook wrote through
``obd.pipeline.io.atomic_path`` (``obd.pipeline.io`` logs them to ``$OBD_OUTPUT_LOG``) with its SHA-256, its path
relative to the manifest's folder (``"base": "manifest"``), so a check works from any working
directory and after the tree is moved.

``python -m obd.pipeline.outputs check REPORTS`` compares every manifest under ``REPORTS`` with the files on
disk. A report whose outputs are missing or changed (say, a notebook opened by hand wrote over a
sweep), or that has no manifest, is stale: its HTML, the mark of a finished run, is removed so
``make`` runs it again, and everything downstream of it.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import sys
import tempfile
from pathlib import Path

from obd.pipeline.io import OUTPUT_LOG_ENV, write_text

MANIFEST_SUFFIX = ".outputs.json"


def sha256(path: str | os.PathLike) -> str:
    """Hex SHA-256 of a file's bytes."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


#: How manifest paths are written: relative to the manifest's folder. Manifests without this
#: ``"base"`` (written before it existed) hold paths relative to the working directory of the run.
BASE = "manifest"


def _shown(path: Path) -> str:
    """``path`` relative to the working directory when it lies below it, else absolute."""
    try:
        return str(path.resolve().relative_to(Path.cwd().resolve()))
    except ValueError:
        return str(path.resolve())


def _absolute(path: str | os.PathLike) -> Path:
    """``path`` made absolute without following symbolic links: as the pipeline names it, so a
    re-pointed link (``results -> results-v2``) is read, and checked, through the link."""
    return Path(os.path.abspath(path))


def manifest_path(report: str | os.PathLike) -> Path:
    """``REPORT.outputs.json`` for a report path without extension."""
    report = Path(report)
    return report.with_name(report.name + MANIFEST_SUFFIX)


def write_manifest(report: str | os.PathLike, written: list[str | os.PathLike]) -> Path:
    """Record the files in ``written`` (those that exist) with their hashes, beside ``report``."""
    report = Path(report)
    own = {_absolute(report.with_name(report.name + s)) for s in (".ipynb", ".html")}
    files = sorted({_absolute(p) for p in written} - own)
    path = manifest_path(report)
    base = _absolute(path.parent)
    entries = {Path(os.path.relpath(p, base)).as_posix(): sha256(p) for p in files if p.is_file()}
    record = {"base": BASE, "outputs": entries}
    write_text(path, json.dumps(record, indent=1, sort_keys=True) + "\n")
    return path


def read_manifest(manifest: Path) -> dict[Path, str]:
    """A manifest's outputs as ``{path: sha256}``, paths resolved as recorded: from the
    manifest's folder, or (older manifests, without ``"base"``) from the working directory.
    ``ValueError``, ``KeyError`` or ``TypeError`` when it is not a manifest."""
    record = json.loads(manifest.read_text())
    entries = record["outputs"]
    if record.get("base", None) not in (BASE, None) or not isinstance(entries, dict):
        raise ValueError(f"not a manifest of this format: base={record.get('base')!r}")
    base = _absolute(manifest.parent if record.get("base") == BASE else Path.cwd())
    # ``..`` taken lexically, as written: through a linked folder, not from its target
    return {Path(os.path.normpath(base / name)): str(digest) for name, digest in entries.items()}


def stale_reasons(report_html: str | os.PathLike) -> list[str]:
    """Why the finished run marked by ``report_html`` no longer matches its outputs (empty: ok)."""
    html = Path(report_html)
    if html.suffix != ".html":
        raise ValueError(f"expected a report .html file, got {str(html)!r}")
    manifest = manifest_path(html.with_suffix(""))
    if not manifest.is_file():
        return [f"no record of its outputs ({manifest.name})"]
    try:
        entries = read_manifest(manifest)
    except (ValueError, KeyError, TypeError, AttributeError):
        return [f"unreadable record {manifest.name}"]
    reasons = []
    for path, digest in sorted(entries.items()):
        if not path.is_file():
            reasons.append(f"{_shown(path)} is missing")
        elif sha256(path) != digest:
            reasons.append(f"{_shown(path)} changed since this run wrote it")
    return reasons


def check(reports: str | os.PathLike, *, remove: bool = True) -> dict[str, list[str]]:
    """Stale reports under ``reports`` with their reasons; ``remove`` deletes their HTML marks."""
    stale = {}
    for html in sorted(Path(reports).glob("*.html")):
        if html.name == "index.html":
            continue
        reasons = stale_reasons(html)
        if reasons:
            stale[html.name] = reasons
            if remove:
                html.unlink(missing_ok=True)
    return stale


def run(argv: list[str]) -> int:
    """``obd.pipeline.runner``'s command line, plus the manifest of what the notebook wrote."""
    from obd.pipeline import runner

    args = runner._parse(argv)
    fd, log = tempfile.mkstemp(prefix="obd-outputs-", suffix=".txt")
    os.close(fd)
    previous = os.environ.get(OUTPUT_LOG_ENV)
    os.environ[OUTPUT_LOG_ENV] = log  # inherited by the notebook's kernel
    try:
        rc = runner.main(argv)
        if rc == 0:
            written = Path(log).read_text(encoding="utf-8").splitlines()
            write_manifest(args.report, written)
        return rc
    finally:
        if previous is None:
            os.environ.pop(OUTPUT_LOG_ENV, None)
        else:
            os.environ[OUTPUT_LOG_ENV] = previous
        Path(log).unlink(missing_ok=True)


def main(argv: list[str] | None = None) -> int:
    """Command-line entry point: ``run ...`` or ``check REPORTS``."""
    argv = sys.argv[1:] if argv is None else list(argv)
    if argv[:1] == ["run"]:
        return run(argv[1:])
    p = argparse.ArgumentParser(
        prog="python -m obd.pipeline.outputs", description=__doc__.split("\n")[0]
    )
    sub = p.add_subparsers(dest="command", required=True)
    sub.add_parser(
        "run", help="run a notebook (obd.pipeline.runner's arguments) and record its outputs"
    )
    c = sub.add_parser("check", help="un-mark reports whose outputs changed")
    c.add_argument("reports", type=Path)
    c.add_argument("--dry-run", action="store_true", help="only list the stale reports")
    args = p.parse_args(argv)
    if not args.reports.is_dir():
        return 0  # nothing has run yet
    stale = check(args.reports, remove=not args.dry_run)
    for name, reasons in stale.items():
        print(f"↻ {name} will run again: {'; '.join(reasons)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

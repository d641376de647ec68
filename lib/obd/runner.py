"""Run a notebook with papermill and render it to HTML, atomically.

``python -m obd.runner NOTEBOOK REPORT -p name value ...`` executes ``NOTEBOOK`` with the given
parameters (values parsed as YAML, so ``-p fractions "[0, 0.5]"`` is a list) and writes
``REPORT.ipynb`` and ``REPORT.html``. Both appear only when the whole notebook succeeded, the HTML
last, so a build system can treat the HTML as the mark of a finished run. On failure the executed
copy is kept as ``REPORT.failed.ipynb`` and the failing cell's error is printed.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import time
from pathlib import Path
from typing import Any

import yaml

from obd.io import atomic_path, write_text


def run_notebook(
    notebook: str | os.PathLike,
    report: str | os.PathLike,
    parameters: dict[str, Any] | None = None,
    *,
    log_output: bool = True,
) -> Path:
    """Execute ``notebook`` into ``report``.ipynb and render ``report``.html; return the HTML path."""
    import papermill as pm
    from nbconvert import HTMLExporter

    notebook, report = Path(notebook), Path(report)
    if not notebook.is_file():
        raise ValueError(f"notebook {str(notebook)!r} does not exist")
    report.parent.mkdir(parents=True, exist_ok=True)
    ipynb, html, failed = (
        report.with_name(report.name + s) for s in (".ipynb", ".html", ".failed.ipynb")
    )
    with atomic_path(ipynb) as tmp:
        try:
            pm.execute_notebook(
                str(notebook),
                str(tmp),
                parameters=parameters or {},
                cwd=str(notebook.parent),
                kernel_name="python3",
                log_output=log_output,
                progress_bar=False,
            )
        except pm.PapermillExecutionError:
            os.replace(tmp, failed)
            raise
        body, _ = HTMLExporter().from_filename(str(tmp))
    failed.unlink(missing_ok=True)
    write_text(html, body)
    return html


class _CellBanner(logging.Filter):
    """Drop papermill's per-cell banners; keep the cells' own output."""

    def filter(self, record: logging.LogRecord) -> bool:
        msg = record.getMessage()
        return not msg.startswith(
            ("Executing Cell", "Ending Cell", "Executing notebook", "Input ", "Output ")
        )


def _parse(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m obd.runner", description=__doc__.split("\n")[0]
    )
    parser.add_argument("notebook", help="the notebook to run")
    parser.add_argument("report", help="output path without extension (.ipynb and .html are added)")
    parser.add_argument(
        "-p", nargs=2, action="append", default=[], metavar=("NAME", "VALUE"), help="a parameter"
    )
    parser.add_argument("--quiet", action="store_true", help="do not stream the notebook's output")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    """Command-line entry point."""
    args = _parse(argv)
    params = {name: yaml.safe_load(value) for name, value in args.p}
    logging.basicConfig(level=logging.INFO, format="  %(message)s", stream=sys.stdout)
    for noisy in ("papermill", "traitlets", "nbclient"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    if not args.quiet:
        logging.getLogger("papermill").setLevel(logging.INFO)
        logging.getLogger("papermill").addFilter(_CellBanner())
    shown = " ".join(f"{k}={v}" for k, v in params.items())
    print(f"▶ {args.notebook} → {args.report}.html  {shown}", flush=True)
    start = time.perf_counter()
    try:
        run_notebook(args.notebook, args.report, params, log_output=not args.quiet)
    except Exception as err:  # papermill's error names the failing cell and its traceback
        print(f"✗ {args.notebook} failed ({args.report}.failed.ipynb):\n{err}", file=sys.stderr)
        return 1
    print(f"✓ {args.report}.html in {time.perf_counter() - start:.1f} s", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())

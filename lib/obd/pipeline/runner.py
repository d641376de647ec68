"""Run a notebook with papermill and render it to HTML, atomically.

``python -m obd.pipeline.runner NOTEBOOK REPORT -p name value ...`` executes ``NOTEBOOK`` with the given
parameters and writes ``REPORT.ipynb`` and ``REPORT.html``. Values are YAML 1.2 (core schema)
scalars or flow collections, as JSON reads them: ``-p fractions "[0, 0.5]"`` is a list, ``1e-4``
and ``10`` numbers (``010`` is 10), ``true``/``false``/``null`` a bool or None, and anything else a
string (``yes``, ``off``, ``1:30``: no YAML 1.1 booleans, octals or base-60 numbers). Both files
appear only when the whole notebook succeeded, the HTML last, so a build system can treat the HTML
as the mark of a finished run. On failure the executed copy is kept as ``REPORT.failed.ipynb`` and
the error is printed first, on one line, without the kernel's traceback (it is in the failed copy).
Neither copy holds a machine path (paths in the repository are relative to it, see
:mod:`obd.pipeline.portable`), and the HTML is self-contained: styles inlined, figures embedded, nothing
loaded from the network.

Before a kernel starts, the parameters are checked against the notebook's ``parameters`` cell: an
unknown name, or a value whose type does not match a numeric or boolean default (``steps=2.5``,
``seed="1"``, ``use=yes``), is a ``ValueError`` naming the parameter. Path parameters given
relative (``out``, ``*_out``, ``model*``, ``*_dir``) resolve from the folder the command runs in,
not the notebook's, and the outputs (``out``, ``*_out``, ``figures_dir``, ``out_dir``) must be
writable before any work starts. No output (the report's files, an output parameter) may be the
notebook itself or its jupytext twin ``NAME.py``: ``python -m obd.pipeline.runner nb.ipynb nb`` is refused.
"""

from __future__ import annotations

import argparse
import ast
import contextlib
import logging
import os
import re
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml

from obd.pipeline.io import atomic_path, check_writable, file_mode
from obd.pipeline.portable import offline_html, portable_notebook

if TYPE_CHECKING:
    from nbformat import NotebookNode


class _Loader(yaml.SafeLoader):
    """YAML 1.2's core schema (what JSON means by its scalars): ``true``/``false``, ``null``/``~``,
    decimal integers (``010`` is 10; ``0o17``, ``0x1f``) and floats (``1e-4``, ``.5``, ``.inf``).
    PyYAML's YAML 1.1 rules would read ``yes``/``off`` as booleans, ``010`` as 8, ``1:30`` as 90
    and ``2024-01-01`` as a date; here they are strings. Quoted values stay strings."""

    yaml_implicit_resolvers: dict = {}  # noqa: RUF012 (PyYAML's class-level registry, replaced)


_CORE_SCHEMA = [
    ("tag:yaml.org,2002:null", r"~|null|Null|NULL|", ["~", "n", "N", ""]),
    ("tag:yaml.org,2002:bool", r"true|True|TRUE|false|False|FALSE", list("tTfF")),
    ("tag:yaml.org,2002:int", r"[-+]?[0-9]+|0o[0-7]+|0x[0-9a-fA-F]+", list("-+0123456789")),
    (
        "tag:yaml.org,2002:float",
        r"[-+]?(?:\.[0-9]+|[0-9]+(?:\.[0-9]*)?)(?:[eE][-+]?[0-9]+)?"
        r"|[-+]?\.(?:inf|Inf|INF)|\.(?:nan|NaN|NAN)",
        list("-+0123456789."),
    ),
]
for _tag, _pattern, _first in _CORE_SCHEMA:  # int before float: the first match wins
    _Loader.add_implicit_resolver(_tag, re.compile(f"^(?:{_pattern})$"), _first)


def _construct_int(loader: yaml.SafeLoader, node: yaml.ScalarNode) -> int:
    """A core-schema integer: decimal (leading zeros allowed), ``0o`` octal or ``0x`` hex."""
    text = loader.construct_scalar(node)
    if text.startswith(("0o", "0x")):
        return int(text[2:], 8 if text[1] == "o" else 16)
    return int(text, 10)


_Loader.add_constructor("tag:yaml.org,2002:int", _construct_int)


def parse_value(text: str) -> Any:
    """A ``-p`` value as YAML 1.2 core schema / JSON reads it: ``[0, 0.5]`` a list, ``true`` a
    bool, ``null`` None, ``10`` and ``010`` the integer 10, ``1e-4`` a float, ``{a: 1}`` a dict;
    anything else (``yes``, ``off``, ``1:30``, ``abc``) a string. ``ValueError`` if not YAML."""
    try:
        return yaml.load(text, Loader=_Loader)  # noqa: S506 (a SafeLoader subclass)
    except (yaml.YAMLError, ValueError) as err:
        raise ValueError(f"cannot parse {text!r} as a value (YAML): {err}") from None


def parse_params(
    notebook: str | os.PathLike, pairs: list[tuple[str, str]] | list[list[str]]
) -> dict[str, Any]:
    """The ``-p NAME TEXT`` pairs of a command line as values for ``notebook``: a parameter whose
    default is a string takes ``TEXT`` verbatim (``"run #2.txt"``, ``"Note: test"``, ``""``,
    ``"- item"`` and ``"true"`` stay those strings); any other is read by :func:`parse_value`
    and type-checked against its default by :func:`check_parameters`. The input paths
    ``model*`` also take a list of paths, ``[a.npz, b.npz]``. A path starting with ``~`` has the
    home folder expanded (as the shell would unquoted)."""
    defaults = notebook_defaults(notebook) if Path(notebook).is_file() else {}
    out: dict[str, Any] = {}
    for name, text in pairs:
        listed = name.startswith("model") and text.strip()[:1] == "[" and text.strip()[-1:] == "]"
        if isinstance(defaults.get(name, ...), str) and not listed:
            value: Any = text
        else:
            value = parse_value(text)
        out[name] = _expand_home(value) if is_path_param(name) else value
    return out


def _expand_home(value: Any) -> Any:
    """``~/x`` and ``~user/x`` (strings, or items of a list) with the home folder expanded."""
    if isinstance(value, str) and value.startswith("~"):
        expanded = os.path.expanduser(value)
        if expanded.startswith("~"):
            raise ValueError(f"cannot expand {value!r}: no such user's home folder")
        return expanded
    if isinstance(value, list):
        return [_expand_home(v) for v in value]
    return value


def is_path_param(name: str) -> bool:
    """Parameters holding paths (a string or a list of strings), resolved from the caller's
    working directory: ``out``, ``out_*``, ``*_out``, ``model*`` and ``*_dir``."""
    return name == "out" or name.startswith(("out_", "model")) or name.endswith(("_out", "_dir"))


def is_output_param(name: str) -> bool:
    """Path parameters the notebook writes to (checked writable before the run): ``out``,
    ``out_*`` and ``*_out`` are files, ``figures_dir``, ``out_dir`` and ``*_out_dir`` folders."""
    return (
        name == "out"
        or name.startswith("out_")
        or name.endswith("_out")
        or name in ("figures_dir", "out_dir")
        or (name.endswith("_out_dir"))
    )


def is_output_folder(name: str) -> bool:
    """Output parameters naming folders (the rest name files)."""
    return name in ("figures_dir", "out_dir") or name.endswith("_out_dir")


def _resolve(value: Any, base: Path) -> Any:
    if isinstance(value, str) and value and not os.path.isabs(value):
        return str((base / value).resolve())
    if isinstance(value, list):
        return [_resolve(v, base) for v in value]
    return value


def _from_notebook(value: Any, folder: Path) -> Any:
    """Absolute paths inside the repository (``folder``'s parent) as paths relative to the
    notebook's ``folder``, where the kernel runs, so executed reports carry no machine paths."""
    root = folder.resolve().parent
    if isinstance(value, str) and os.path.isabs(value) and Path(value).is_relative_to(root):
        return os.path.relpath(value, folder.resolve())
    if isinstance(value, list):
        return [_from_notebook(v, folder) for v in value]
    return value


def notebook_defaults(notebook: str | os.PathLike) -> dict[str, Any]:
    """The ``parameters`` cell's names and default values (``...`` where not a literal).

    Read with :mod:`ast` from the cell tagged ``parameters``: every top-level assignment to a
    name. Empty when the notebook has no such cell or it does not parse (nothing is checked).
    """
    import nbformat

    nb = nbformat.read(str(notebook), as_version=4)
    cells = [c for c in nb.cells if "parameters" in c.get("metadata", {}).get("tags", [])]
    if not cells:
        return {}
    try:
        tree = ast.parse(cells[0].source)
    except SyntaxError:
        return {}
    out: dict[str, Any] = {}
    for node in tree.body:
        targets = node.targets if isinstance(node, ast.Assign) else [getattr(node, "target", None)]
        value = getattr(node, "value", None)
        for target in targets:
            if isinstance(target, ast.Name) and value is not None:
                try:
                    out[target.id] = ast.literal_eval(value)
                except (ValueError, SyntaxError, TypeError):
                    out[target.id] = ...
    return out


def _type_name(value: Any) -> str:
    return type(value).__name__


def report_files(report: str | os.PathLike) -> list[Path]:
    """The files a run writes for ``report``: ``REPORT.ipynb``, ``.html`` and ``.failed.ipynb``."""
    report = Path(report)
    return [report.with_name(report.name + s) for s in (".ipynb", ".html", ".failed.ipynb")]


def _same_path(a: Path, b: Path) -> bool:
    """Whether ``a`` and ``b`` name the same file: the same path once resolved (``..``, symbolic
    links), or, both existing, the same file on disk (a hard link)."""
    if a.resolve() == b.resolve():
        return True
    try:
        return os.path.samefile(a, b)
    except OSError:
        return False


def _inputs(notebook: Path) -> list[Path]:
    """The notebook and, when it exists, its jupytext twin ``NAME.py``: files no run may write."""
    twin = notebook.with_suffix(".py")
    return [notebook, twin] if twin.is_file() else [notebook]


def check_report(notebook: str | os.PathLike, report: str | os.PathLike) -> None:
    """``ValueError`` when ``report`` (a path without extension) or one of the files written for
    it (:func:`report_files`) is the notebook or its twin: ``run_notebook("nb.ipynb", "nb")``
    would write over its own source."""
    notebook = Path(notebook)
    for source in _inputs(notebook):
        if _same_path(Path(report), source):
            raise ValueError(
                f"report {str(report)!r} is the input {str(source)!r}; give the report's path "
                "without extension, not the notebook's (REPORT.ipynb and REPORT.html are written)"
            )
        for path in report_files(report):
            if _same_path(path, source):
                raise ValueError(
                    f"report {str(report)!r} would write {str(path)!r}, which is the input "
                    f"{str(source)!r}; choose a report path that is not the notebook's"
                )


def _check_not_input(name: str, path: Path, notebook: Path) -> None:
    for source in _inputs(notebook):
        if _same_path(path, source):
            raise ValueError(
                f"{name}={str(path)!r} is the input {str(source)!r}; the run would write over it"
            )


def check_parameters(
    notebook: str | os.PathLike,
    parameters: dict[str, Any],
    *,
    cwd: str | os.PathLike = ".",
    report: str | os.PathLike | None = None,
) -> dict[str, Any]:
    """Validate ``parameters`` for ``notebook`` before any kernel starts; return them with path
    parameters resolved (relative ones from ``cwd``), then written relative to the notebook's
    folder when they lie in the repository (the folder above it), absolute otherwise.
    ``ValueError`` on an unknown name, a value whose type does not match a numeric or boolean
    default, an unwritable output, or an output file that is the notebook (or its twin) or, given
    ``report``, one of the report's files; with ``report``, :func:`check_report` too.
    """
    notebook = Path(notebook)
    if report is not None:
        check_report(notebook, report)
    defaults = notebook_defaults(notebook)
    if defaults:  # a notebook without a parameters cell accepts what papermill injects
        unknown = sorted(set(parameters) - set(defaults))
        if unknown:
            raise ValueError(
                f"unknown parameter(s) {', '.join(unknown)}; accepted: {', '.join(sorted(defaults))}"
            )
    for name, value in parameters.items():
        default = defaults.get(name, ...)
        if isinstance(default, bool):
            ok, want = isinstance(value, bool), "true or false"
        elif isinstance(default, int):
            ok, want = isinstance(value, int) and not isinstance(value, bool), "an integer"
        elif isinstance(default, float):
            ok = isinstance(value, int | float) and not isinstance(value, bool)
            want = "a number"
        elif isinstance(default, str) and name.startswith("model"):
            ok = isinstance(value, str) or (
                isinstance(value, list) and all(isinstance(v, str) for v in value)
            )
            want = "a path or a list of paths"
        elif isinstance(default, str):
            ok, want = isinstance(value, str), "a string"
        elif isinstance(default, list) and is_path_param(name):
            ok = isinstance(value, list | str) and all(
                isinstance(v, str) for v in (value if isinstance(value, list) else [value])
            )
            want = "a path or a list of paths"
        elif isinstance(default, list):
            ok, want = isinstance(value, list), "a list"
        else:
            continue  # None and non-literal defaults: the notebook checks them
        if not ok:
            raise ValueError(
                f"parameter {name} must be {want} (like its default {default!r}), got {value!r} "
                f"({_type_name(value)})"
            )
    resolved = {k: _resolve(v, Path(cwd)) if is_path_param(k) else v for k, v in parameters.items()}
    outputs = {**{k: v for k, v in defaults.items() if is_output_param(k)}, **resolved}
    files: dict[Path, str] = {}
    for name, value in outputs.items():
        if (
            is_output_param(name)
            and not is_output_folder(name)
            and isinstance(value, str)
            and value
        ):
            path = Path(os.path.abspath(notebook.parent / value))
            if path in files:
                raise ValueError(
                    f"{name} and {files[path]} name the same file {value!r}: each output "
                    "parameter must name its own file"
                )
            files[path] = name
    for name, value in outputs.items():
        if not is_output_param(name) or not isinstance(value, str) or not value:
            continue
        path = Path(value) if os.path.isabs(value) else notebook.parent / value
        _check_not_input(name, path, notebook)
        for own in report_files(report) if report is not None else []:
            if _same_path(path, own):
                raise ValueError(f"{name}={value!r} is the report's own file {str(own)!r}")
        check_writable(path, name=name, folder=is_output_folder(name))
    return {k: _from_notebook(v, notebook.parent) if is_path_param(k) else v
            for k, v in resolved.items()}  # fmt: skip


def _portable(path: Path, notebook: Path, report: Path) -> NotebookNode:
    """The executed notebook at ``path`` without machine paths (:mod:`obd.pipeline.portable`): paths in
    the repository (the notebook folder's parent) relative to it, papermill's input and output
    paths recorded as the notebook's and the report's, not the temporary file's. Written back."""
    import nbformat

    nb = nbformat.read(str(path), as_version=4)
    root = notebook.resolve().parent.parent
    portable_notebook(nb, root, provenance=(notebook, report))
    nbformat.write(nb, str(path))
    return nb


def run_notebook(
    notebook: str | os.PathLike,
    report: str | os.PathLike,
    parameters: dict[str, Any] | None = None,
    *,
    log_output: bool = True,
    checked: bool = False,
) -> Path:
    """Execute ``notebook`` into ``report``.ipynb and render ``report``.html; return the HTML path.

    ``parameters`` go through :func:`check_parameters` first (unless ``checked``: the caller did).
    """
    import papermill as pm

    notebook, report = Path(notebook), Path(report)
    if not notebook.is_file():
        raise ValueError(f"notebook {str(notebook)!r} does not exist")
    if not checked:
        parameters = check_parameters(notebook, parameters or {}, report=report)
        check_writable(report.with_name(report.name + ".html"), name="report")
    report.parent.mkdir(parents=True, exist_ok=True)
    ipynb, html, failed = (
        report.with_name(report.name + s) for s in (".ipynb", ".html", ".failed.ipynb")
    )
    # Both files are written to temporary files first, the HTML rendered before either replaces
    # the previous report: a failure (a full disk) leaves the previous report as it was.
    with atomic_path(html) as html_tmp, atomic_path(ipynb) as tmp:
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
            with contextlib.suppress(Exception):  # the cell's error matters more than this one
                _portable(tmp, notebook, failed)
            os.chmod(tmp, file_mode())
            os.replace(tmp, failed)
            raise
        nb = _portable(tmp, notebook, ipynb)
        html_tmp.write_text(offline_html(nb, report.name), encoding="utf-8")
    # the .ipynb is renamed into place first, then the .html (the mark of a finished run)
    failed.unlink(missing_ok=True)
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
        prog="python -m obd.pipeline.runner", description=__doc__.split("\n")[0]
    )
    parser.add_argument("notebook", help="the notebook to run")
    parser.add_argument("report", help="output path without extension (.ipynb and .html are added)")
    parser.add_argument(
        "-p", nargs=2, action="append", default=[], metavar=("NAME", "VALUE"), help="a parameter"
    )
    parser.add_argument("--quiet", action="store_true", help="do not stream the notebook's output")
    return parser.parse_args(argv)


def _one_line(err: BaseException) -> str:
    """An error as ``Type: message``: a cell's error without its traceback."""
    ename = getattr(err, "ename", None) or type(err).__name__
    evalue = getattr(err, "evalue", None)
    evalue = str(err) if evalue is None else evalue
    return f"{ename}: {evalue}" if evalue else ename


def _cell_error() -> type:
    import papermill as pm

    return pm.PapermillExecutionError


def _kernel_died(err: BaseException) -> bool:
    """Whether ``err`` says the kernel process died (its stderr then tells why)."""
    from nbclient.exceptions import DeadKernelError

    return isinstance(err, DeadKernelError)


def _failure(err: BaseException, report: str) -> str:
    """What went wrong, on one line: a full disk and other OS errors name the report's folder and
    say that the previous report (if any) is unchanged."""
    if isinstance(err, OSError) and not isinstance(err, _cell_error()):
        import errno

        where = err.filename or str(Path(report).parent or ".")
        what = "no space left on the device" if err.errno == errno.ENOSPC else err.strerror
        return (
            f"{what or _one_line(err)} writing the report {report}.ipynb/.html (in {where}); "
            "nothing was written: the previous report, if any, is unchanged"
        )
    return _one_line(err)


@contextlib.contextmanager
def _kernel_stderr() -> Iterator[list[str]]:
    """Keep the kernel's own stderr (ZMQ and logging warnings, the kernel's noise) off the
    terminal: the kernel process inherits file descriptor 2, which points at a temporary file
    while the notebook runs. Yields a list that receives that output's last 2,000 characters."""
    tail: list[str] = []
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile() as log:
        os.dup2(log.fileno(), 2)
        try:
            yield tail
        finally:
            sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)
            log.seek(0, os.SEEK_END)
            log.seek(max(0, log.tell() - 2000))
            tail.append(log.read().decode(errors="replace").strip())


def main(argv: list[str] | None = None) -> int:
    """Command-line entry point."""
    args = _parse(argv)
    try:
        if not Path(args.notebook).is_file():
            raise ValueError(f"notebook {args.notebook!r} does not exist")
        params = parse_params(args.notebook, args.p)
        params = check_parameters(args.notebook, params, report=args.report)
        check_writable(args.report + ".html", name="report")
    except ValueError as err:
        print(f"✗ {args.notebook}: {_one_line(err)}", file=sys.stderr)
        return 2
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
        with _kernel_stderr() as kernel_log:
            run_notebook(
                args.notebook, args.report, params, log_output=not args.quiet, checked=True
            )
    except Exception as err:  # the error first, on one line; the traceback is in the failed copy
        print(f"✗ {args.notebook}: {_failure(err, args.report)}", file=sys.stderr)
        cell = getattr(err, "exec_count", None)
        where = f"cell [{cell}]; " if cell is not None else ""
        failed = Path(args.report + ".failed.ipynb")
        if failed.is_file() and isinstance(err, _cell_error()):
            print(f"  ({where}the executed notebook: {failed})", file=sys.stderr)
        if _kernel_died(err) and kernel_log and kernel_log[-1]:  # a dead kernel's last words
            print("  the kernel's last messages:\n" + kernel_log[-1], file=sys.stderr)
        return 1
    print(f"✓ {args.report}.html in {time.perf_counter() - start:.1f} s", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Atomic file writes: an output either appears whole or not at all.

A write goes to a hidden temporary file beside its target (``.NAME.obd-tmp-XXXXXXXX.SUFFIX``)
that is renamed onto the target only when the write succeeded. Generated files are readable by
everyone (``0o666`` less the umask, i.e. ``0644`` under the usual umask ``022``; folders ``0755``).
A killed process can leave such a temporary file behind: loaders read only finished outputs
(:func:`finished`, which skips hidden names), and :func:`clean_stale` removes the leftovers when a
run resumes (``python -m obd.pipeline.io clean DIR ...``, run by ``make reproduce`` under its lock). Only
names carrying the ``.obd-tmp-`` marker are ever removed: a user's own hidden files
(``.notes.20240101.md``) are left alone.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import sys
import tempfile
from collections.abc import Iterable, Iterator
from pathlib import Path

#: The marker in the name of every temporary file this project creates beside its outputs.
TEMP_MARKER = ".obd-tmp-"
#: The names :func:`atomic_path` gives its temporary files: ``.`` + target name + ``.obd-tmp-``
#: + 8 random characters (``tempfile``'s) + the suffix.
TEMP_NAME = re.compile(
    r"^\.(?P<target>.+)" + re.escape(TEMP_MARKER) + r"[a-z0-9_]{8}(?P<suffix>\.[^.]*)?$"
)


#: The file this project writes first in each temporary build folder it makes
#: (:func:`mark_build_folder`): :func:`clean_stale` removes only marked folders, never a user's.
BUILD_MARKER = ".obd-build-folder"


def mark_build_folder(folder: str | os.PathLike) -> Path:
    """Mark ``folder`` (just made by this project, named by :func:`temp_prefix`) as a build
    folder that :func:`clean_stale` may remove after a killed run."""
    folder = Path(folder)
    (folder / BUILD_MARKER).write_text("a temporary build folder of obd.pipeline\n")
    return folder


def temp_prefix(name: str) -> str:
    """The ``tempfile`` prefix of a temporary file for the output named ``name``: ``.NAME.obd-tmp-``
    (``tempfile`` appends 8 random characters and the suffix, matching :data:`TEMP_NAME`)."""
    return f".{name}{TEMP_MARKER}"


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def file_mode() -> int:
    """Mode of generated files: ``0o666`` less the process umask (``0o644`` under ``022``)."""
    return 0o666 & ~_umask()


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike, suffix: str | None = None) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; rename it onto ``path`` only if the block succeeds.

    ``suffix`` defaults to the target's suffix, so writers that append an extension
    (``numpy.savez``) or infer a format from it (``matplotlib``) behave. The file that appears
    has mode :func:`file_mode` (``tempfile`` alone would make it private, ``0600``).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(
        prefix=temp_prefix(path.name),
        suffix=path.suffix if suffix is None else suffix,
        dir=path.parent,
    )
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        os.chmod(tmp_path, file_mode())
        os.replace(tmp_path, path)
        _log_write(path)
    finally:
        tmp_path.unlink(missing_ok=True)


OUTPUT_LOG_ENV = "OBD_OUTPUT_LOG"


def _log_write(path: Path) -> None:
    """Append ``path`` to the file named by ``$OBD_OUTPUT_LOG``, if set (``obd.pipeline.outputs``)."""
    log = os.environ.get(OUTPUT_LOG_ENV)
    if log:
        with open(log, "a", encoding="utf-8") as f:
            f.write(f"{os.path.abspath(path)}\n")  # as named: links not followed


def write_text(path: str | os.PathLike, text: str) -> None:
    """Write ``text`` to ``path`` atomically."""
    with atomic_path(path) as tmp:
        tmp.write_text(text)


def is_temp(path: str | os.PathLike) -> bool:
    """Whether ``path`` is a temporary file of this project (an unfinished write): a name of
    :data:`TEMP_NAME`'s form, ``.NAME.obd-tmp-XXXXXXXX.SUFFIX``. Other hidden names are not."""
    return TEMP_NAME.match(Path(path).name) is not None


def finished(paths: Iterable[str | os.PathLike]) -> list[Path]:
    """The finished outputs among ``paths`` (sorted): hidden names, such as the temporary files
    of an interrupted atomic write (and any other hidden file), are skipped. Use it around every
    ``glob`` of outputs."""
    return sorted(Path(p) for p in paths if not Path(p).name.startswith("."))


def check_writable(path: str | os.PathLike, *, name: str = "out", folder: bool = False) -> Path:
    """``ValueError`` unless an output can be written at ``path`` (a file, or with ``folder`` a
    folder); creates the missing parent folders. Call it before the work whose result goes there.
    """
    target = Path(path)
    where = target if folder else target.parent
    if not folder and target.is_dir():
        raise ValueError(f"{name}={str(path)!r} is a folder; a file path is expected")
    try:
        where.mkdir(parents=True, exist_ok=True)
        fd, probe = tempfile.mkstemp(prefix=temp_prefix("write-check"), dir=where)
        os.close(fd)
        os.unlink(probe)
    except OSError as err:
        reason = err.strerror or type(err).__name__
        raise ValueError(
            f"{name}={str(path)!r} cannot be written: folder {str(where)!r}: {reason}"
        ) from None
    return target


def clean_stale(folders: Iterable[str | os.PathLike]) -> list[Path]:
    """Remove the temporary files of interrupted atomic writes under ``folders`` (recursively).

    Only names of :data:`TEMP_NAME`'s form are removed (files, and the folders this project
    builds in, such as the report site's), and only when no process can still be
    writing them: call it when no run is in progress (``make reproduce`` holds its lock). Returns
    the files removed.
    """
    removed = []
    for folder in folders:
        root = Path(folder)
        if not root.is_dir():
            continue
        for p in sorted(root.rglob(".*")):
            if p.is_symlink() or not is_temp(p) or any(p.is_relative_to(r) for r in removed):
                continue
            if p.is_file():
                p.unlink(missing_ok=True)
                removed.append(p)
            elif p.is_dir() and (p / BUILD_MARKER).is_file():  # a build folder of ours (the
                shutil.rmtree(p, ignore_errors=True)  # site's): marked when it was made
                removed.append(p)
    return removed


def exec_locked(lock: str | os.PathLike, command: list[str]) -> None:
    """Run ``command`` (replacing this process) holding an exclusive lock on the file ``lock``.

    When another process holds it, say so and wait for it. The lock is an ``fcntl.flock`` on an
    open file that ``command`` inherits, so it is held exactly as long as ``command`` runs and
    released by the kernel however it ends (even ``SIGKILL``); signals reach ``command`` directly.
    """
    import fcntl

    if not command:
        raise ValueError("command must name a program to run under the lock")
    lock = Path(lock)
    lock.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(lock, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        holder = os.pread(fd, 64, 0).decode(errors="replace").strip() or "?"
        print(
            f"another run is in progress in this checkout (pid {holder}, lock {lock}); "
            "waiting for it to finish",
            file=sys.stderr,
            flush=True,
        )
        fcntl.flock(fd, fcntl.LOCK_EX)
    os.ftruncate(fd, 0)
    os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)  # exec keeps the pid: the holder's
    os.set_inheritable(fd, True)
    os.execvp(command[0], command)


def main(argv: list[str] | None = None) -> int:
    """``python -m obd.pipeline.io clean DIR ...``: remove stale temporary files, naming them;
    ``python -m obd.pipeline.io locked LOCKFILE CMD ...``: run ``CMD`` holding the lock (see
    :func:`exec_locked`)."""
    args = sys.argv[1:] if argv is None else argv
    if args[:1] == ["clean"]:
        for p in clean_stale(args[1:]):
            print(f"removed stale temporary file {p}")
        return 0
    if args[:1] == ["locked"] and len(args) >= 3:
        exec_locked(args[1], args[2:])
    print(
        "usage: python -m obd.pipeline.io clean DIR ... | locked LOCKFILE CMD ...", file=sys.stderr
    )
    return 2


if __name__ == "__main__":
    sys.exit(main())

"""What every command prints, and how: one width rule, one JSON form, one way
to write ``-o FILE``.

Width (docs/cli.md, "Output width"): ``--width N`` draws tables N columns
wide (``--width 0``: no limit); without it, a terminal gets tables that fit
the terminal, and anything else (a pipe, a file) gets every row on one line,
as long as it needs: nothing is folded at 80 columns and no name is cut, so
``sealkit conform | grep FAIL`` sees whole rows. :func:`console` is the only
place that decides; commands draw on the console it gives.

JSON: :func:`print_json` prints a document whose first key is ``schema``
(``sealkit.NAME/1``), described by the command's schema in
``sealkit/data/*.schema.json``.

``-o FILE``: :func:`write_output` (atomic, safe in shared directories).

When the reader goes away (``sealkit audit | head -1``) the console raises
:class:`BrokenPipeError` like any other write, and the command line exits 0,
as it does for ``--json`` output; rich's default would exit 1.
"""

from __future__ import annotations

import errno
import json
import os
import secrets
import stat
import sys
from typing import IO, Any, Final

from rich.console import Console

from .main import OutputError, requested_width

__all__ = [
    "NEW_FILE_MODE",
    "NO_LIMIT",
    "PipeConsole",
    "console",
    "print_json",
    "table_console",
    "write_output",
]

NO_LIMIT: Final = 1 << 16
"""The width of "no limit": wider than any row sealkit draws (a path is at
most 4096 bytes), so nothing folds; tables are as wide as their content."""

NEW_FILE_MODE: Final = 0o644
"""The mode of a file ``-o`` creates, whatever the umask: node_exporter's
textfile collector and other readers run as another user. An existing file
keeps its mode (and, when root writes it, its owner and group)."""


class PipeConsole(Console):
    """A rich console whose broken pipe is a :class:`BrokenPipeError`."""

    def on_broken_pipe(self) -> None:
        self.quiet = True
        raise BrokenPipeError(32, "Broken pipe")


def output_width(file: IO[str]) -> int | None:
    """The width rule: ``--width`` if given (0: no limit), else ``None``
    (rich fits the terminal) on a terminal, else no limit."""
    width = requested_width()
    if width is not None:
        return NO_LIMIT if width == 0 else width
    try:
        terminal = file.isatty()
    except (ValueError, OSError):  # a closed or odd stream
        terminal = False
    return None if terminal else NO_LIMIT


def console(
    file: IO[str] | None = None, *, stderr: bool = False, highlight: bool = False
) -> PipeConsole:
    """The console a command prints on: ``file`` (stdout by default, stderr
    with ``stderr``), as wide as the width rule says."""
    target = file if file is not None else (sys.stderr if stderr else sys.stdout)
    return PipeConsole(
        file=target, width=output_width(target), soft_wrap=False, highlight=highlight
    )


def table_console(file: IO[str] | None = None, width: int | None = None) -> PipeConsole:
    """:func:`console` on ``file``; ``width`` overrides the rule (a file
    written with ``-o`` passes :data:`NO_LIMIT` unless ``--width`` was given)."""
    if width is None:
        return console(file)
    target = file if file is not None else sys.stdout
    return PipeConsole(file=target, width=width, soft_wrap=False)


def file_width() -> int:
    """The width of a table written to a file with ``-o``: ``--width``, else no limit."""
    width = requested_width()
    return width or NO_LIMIT


def print_json(name: str, document: dict[str, Any], file: IO[str] | None = None) -> None:
    """Print ``document`` as JSON with ``"schema": "sealkit.NAME/1"`` first."""
    print(json_text(name, document), end="", file=file if file is not None else sys.stdout)


def json_text(name: str, document: dict[str, Any]) -> str:
    """The JSON text :func:`print_json` prints (one document, a newline at the end)."""
    body = {"schema": f"sealkit.{name}/1"}
    body.update((k, v) for k, v in document.items() if k != "schema")
    return json.dumps(body, indent=1) + "\n"


# ----------------------------------------------------------------- -o FILE


def _temporary_name(name: bytes) -> bytes:
    """A hidden, unpredictable name next to ``name`` that never ends like it:
    a collector globbing ``*.prom`` never reads a half-written file."""
    suffix = b".part" if name.endswith(b".tmp") else b".tmp"
    return b"." + name[:200] + b"." + secrets.token_hex(8).encode() + suffix


def _fail(path: str, exc: OSError, what: str | None = None) -> OutputError:
    reason = what or exc.strerror or str(exc)
    return OutputError(f"cannot write {path}: {reason}")


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


def _write_in_place(handle: int, path: str, data: bytes) -> None:
    """Write to a device, FIFO or terminal as it is (renaming over it would
    replace the node with a plain file). Opened non-blocking, so a FIFO that
    nobody reads fails at once instead of waiting for ever."""
    flags = os.O_WRONLY | os.O_NONBLOCK | os.O_NOCTTY | os.O_CLOEXEC
    try:
        fd = os.open(f"/proc/self/fd/{handle}", flags)
    except OSError as exc:
        if exc.errno == errno.ENXIO:
            raise _fail(path, exc, "nobody has the FIFO (or socket) open for reading") from None
        raise _fail(path, exc) from None
    try:
        os.set_blocking(fd, True)  # a slow reader is waited for, like any writer
        _write_all(fd, data)
    except OSError as exc:
        raise _fail(path, exc) from None
    finally:
        os.close(fd)


def _replace_file(path: str, existing: os.stat_result | None, data: bytes) -> None:
    """Write a temporary file in the target's directory and rename it over the
    target, so a reader sees the old file or the new one, never half of one.

    The directory is opened once and everything happens relative to it; the
    temporary file is created with ``O_EXCL | O_NOFOLLOW`` under a random
    name (nothing planted in a shared directory is followed or reused) and
    ``fsync``'d before the rename; the rename is then made durable with an
    ``fsync`` of the directory.
    """
    real = os.path.realpath(path)  # the rename goes to a symbolic link's target
    directory, name = os.path.split(real)
    try:
        dir_fd = os.open(directory or "/", os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    except OSError as exc:
        raise _fail(path, exc) from None
    tmp = _temporary_name(os.fsencode(name))
    created = False
    try:
        flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
        fd = os.open(tmp, flags, 0o600, dir_fd=dir_fd)
        created = True
        try:
            _write_all(fd, data)
            if existing is not None:
                if os.geteuid() == 0:
                    os.fchown(fd, existing.st_uid, existing.st_gid)
                os.fchmod(fd, stat.S_IMODE(existing.st_mode))
            else:
                os.fchmod(fd, NEW_FILE_MODE)
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, name, src_dir_fd=dir_fd, dst_dir_fd=dir_fd)
        created = False
        try:
            os.fsync(dir_fd)
        except OSError:  # some file systems cannot sync a directory: the data is synced
            pass
    except OSError as exc:
        raise _fail(path, exc) from None
    finally:
        if created:
            try:
                os.unlink(tmp, dir_fd=dir_fd)
            except OSError:
                pass
        os.close(dir_fd)


def write_output(text: str, path: str) -> None:
    """Write ``text`` (UTF-8) to the file ``path`` so that a reader never sees
    half of it; :class:`~sealkit.cli.main.OutputError` (exit code 4) when it
    cannot be written, and then nothing is left behind.

    * A regular file, or a path that does not exist: a temporary file in the
      same directory, renamed over the target (see :func:`_replace_file`). A
      symbolic link is followed: its target is replaced, the link stays. A
      new file gets mode :data:`NEW_FILE_MODE`; an existing one keeps its mode.
    * A device, FIFO or terminal (``/dev/null``, ``/dev/stdout``, a named
      pipe): written in place, without blocking on a FIFO nobody reads.
    """
    data = text.encode("utf-8")
    try:
        handle = os.open(path, os.O_PATH | os.O_CLOEXEC)  # no device opened, no FIFO waited on
    except FileNotFoundError:
        _replace_file(path, None, data)
        return
    except OSError as exc:
        raise _fail(path, exc) from None
    try:
        st = os.fstat(handle)
        if stat.S_ISDIR(st.st_mode):
            raise OutputError(f"cannot write {path}: it is a directory")
        if not stat.S_ISREG(st.st_mode):
            _write_in_place(handle, path, data)
            return
    finally:
        os.close(handle)
    _replace_file(path, st, data)

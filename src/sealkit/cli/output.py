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


def _replace_file(path: str, real: str, existing: os.stat_result | None, data: bytes) -> None:
    """Write a temporary file in the target's directory and rename it over the
    target, so a reader sees the old file or the new one, never half of one.

    The directory is opened once and everything happens relative to it; the
    temporary file is created with ``O_EXCL | O_NOFOLLOW`` under a random
    name (nothing planted in a shared directory is followed or reused) and
    ``fsync``'d before the rename; the rename is then made durable with an
    ``fsync`` of the directory.
    """
    directory, name = os.path.split(real)
    dir_fd = _open_directory(directory, path)
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


_MAX_LINKS: Final = 40
"""Symbolic links followed in one path before giving up (the kernel's MAXSYMLINKS)."""


def _resolve(path: str) -> str:
    """``path`` with every symbolic link on it resolved (an absolute path with
    none left), following each link only where the kernel's
    ``fs.protected_symlinks`` would (``may_follow_link()`` in fs/namei.c):
    in a sticky, world-writable directory (``/tmp``, a shared textfile
    directory) only a link owned by the caller or by the directory's owner.
    Many hosts and containers run with that setting off; this write follows
    the rule either way, so a link planted by another user never makes root
    write where it points. ``OutputError`` for such a link or a loop."""
    parts = [p for p in os.path.abspath(path).split("/") if p]
    parts.reverse()  # a stack: the next component last
    current = "/"
    links = 0
    while parts:
        part = parts.pop()
        if part == ".":
            continue
        if part == "..":
            current = os.path.dirname(current)
            continue
        candidate = os.path.join(current, part)
        try:
            st = os.lstat(candidate)
        except FileNotFoundError:
            return os.path.join(candidate, *reversed(parts))  # created (or refused) later
        except OSError as exc:
            raise _fail(path, exc) from None
        if not stat.S_ISLNK(st.st_mode):
            current = candidate
            continue
        if _in_proc(current):
            # /proc/self, /proc/PID/fd/N: the kernel's own links, some of
            # which name no path (pipe:[...]); the kernel follows them.
            return os.path.join(candidate, *reversed(parts))
        links += 1
        if links > _MAX_LINKS:
            raise OutputError(f"cannot write {path}: too many levels of symbolic links")
        try:
            parent = os.stat(current)
            target = os.readlink(candidate)
        except OSError as exc:
            raise _fail(path, exc) from None
        shared = parent.st_mode & stat.S_ISVTX and parent.st_mode & stat.S_IWOTH
        if shared and st.st_uid not in (os.geteuid(), parent.st_uid):
            raise OutputError(
                f"cannot write {path}: {candidate} is a symbolic link in a shared (sticky, "
                f"world-writable) directory, made by another user (uid {st.st_uid}); "
                "not followed"
            )
        if target.startswith("/"):
            current = "/"
        parts.extend(reversed([p for p in target.split("/") if p]))
    return current


def _in_proc(path: str) -> bool:
    return path == "/proc" or path.startswith("/proc/")


def _open_directory(directory: str, path: str) -> int:
    """Open ``directory`` (a path with no symbolic links, from :func:`_resolve`)
    one component at a time with ``O_NOFOLLOW``: a component swapped for a
    link after the check is refused, never followed."""
    try:
        fd = os.open("/", os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
    except OSError as exc:
        raise _fail(path, exc) from None
    try:
        parts = [p for p in directory.split("/") if p]
        for part in parts:
            nxt = os.open(
                part, os.O_PATH | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=fd
            )
            os.close(fd)
            fd = nxt
        opened = os.open(".", os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC, dir_fd=fd)
    except OSError as exc:
        if exc.errno in (errno.ELOOP, errno.ENOTDIR):
            raise _fail(path, exc, f"{directory} changed while it was being written") from None
        raise _fail(path, exc) from None
    finally:
        os.close(fd)
    return opened


def write_output(text: str, path: str) -> None:
    """Write ``text`` (UTF-8) to the file ``path`` so that a reader never sees
    half of it; :class:`~sealkit.cli.main.OutputError` (exit code 4) when it
    cannot be written, and then nothing is left behind.

    * A regular file, or a path that does not exist: a temporary file in the
      same directory, renamed over the target (see :func:`_replace_file`). A
      symbolic link is followed where the kernel's ``fs.protected_symlinks``
      would follow it (:func:`_resolve`): its target is replaced, the link
      stays. A
      new file gets mode :data:`NEW_FILE_MODE`; an existing one keeps its mode.
    * A device, FIFO or terminal (``/dev/null``, ``/dev/stdout``, a named
      pipe), and anything named through ``/proc`` (``/dev/stdout`` also when
      it is a file): written in place, without blocking on a FIFO nobody reads.
    """
    data = text.encode("utf-8")
    real = _resolve(path)  # links followed only where safe; none left but /proc's
    proc = _in_proc(real)  # /dev/stdout -> /proc/self/fd/1: what the descriptor is
    try:
        # O_PATH: no device opened, no FIFO waited on.
        handle = os.open(real, os.O_PATH | os.O_CLOEXEC | (0 if proc else os.O_NOFOLLOW))
    except FileNotFoundError:
        _replace_file(path, real, None, data)
        return
    except OSError as exc:
        raise _fail(path, exc) from None
    try:
        st = os.fstat(handle)
        if stat.S_ISDIR(st.st_mode):
            raise OutputError(f"cannot write {path}: it is a directory")
        if stat.S_ISLNK(st.st_mode):
            raise OutputError(f"cannot write {path}: it changed while it was being written")
        if proc or not stat.S_ISREG(st.st_mode):
            _write_in_place(handle, path, data)
            return
    finally:
        os.close(handle)
    _replace_file(path, real, st, data)

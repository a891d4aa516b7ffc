"""Opening a file that must be a regular file (or a pipe), without surprises.

``map_file``, ``sealkit elf``, the audit's program-header reader and
``sealkit replay`` all open paths a user (or another process) chose. A FIFO
blocks ``open`` until a writer comes, ``/proc/kmsg`` blocks ``read``,
``/dev/zero`` never ends, and opening a device node can act on the device
(a tape rewinds, a watchdog arms, a modem line hangs up). Checking with
``stat`` and then opening leaves a window in which the path can be swapped
for a device node, so nothing here opens a path for reading directly:

1. the path is opened with ``O_PATH``, which neither opens the file for I/O
   nor calls a device's ``open`` (and never blocks on a FIFO);
2. that descriptor is checked with ``fstat``: anything but the accepted
   kinds is refused, and never opened;
3. the *same inode* is then opened for reading through ``/proc/self/fd/N``
   (open(2), "O_PATH": the descriptor can be reopened through that link),
   so a swap of the path after step 1 changes nothing.

The re-open needs ``/proc``; without it these functions refuse with an
``OSError`` rather than fall back to a check-then-open race.
:func:`open_regular` accepts regular files only; :func:`open_input` also
accepts FIFOs and pipes (``sealkit replay -``, ``<(...)``), which the caller
reads with a bound. Each caller turns :class:`NotRegularFile` into its own
error.
"""

from __future__ import annotations

import errno
import os
import stat
from collections.abc import Callable
from typing import Final

__all__ = ["NotRegularFile", "kind_of", "open_input", "open_regular"]

OPEN_FLAGS: Final = os.O_RDONLY | os.O_CLOEXEC | os.O_NONBLOCK | os.O_NOCTTY
"""How the checked inode is opened for reading (no blocking, no controlling tty)."""

_PATH_FLAGS: Final = os.O_PATH | os.O_CLOEXEC

_KINDS: Final = (
    (stat.S_ISDIR, "a directory"), (stat.S_ISFIFO, "a FIFO"), (stat.S_ISCHR, "a character device"),
    (stat.S_ISBLK, "a block device"), (stat.S_ISSOCK, "a socket"),
)  # fmt: skip


def kind_of(mode: int) -> str:
    """``"a directory"``, ``"a FIFO"``, ... for a ``st_mode`` that is not a regular file."""
    return next((name for test, name in _KINDS if test(mode)), "not a file")


class NotRegularFile(Exception):
    """The path is not a regular file; ``mode`` is its ``st_mode``."""

    def __init__(self, mode: int) -> None:
        super().__init__(kind_of(mode))
        self.mode = mode


def _open_checked(
    path: str | bytes, dir_fd: int | None, accept: Callable[[int], bool], blocking: bool
) -> tuple[int, os.stat_result]:
    handle = os.open(path, _PATH_FLAGS, dir_fd=dir_fd)
    try:
        st = os.fstat(handle)
        if not accept(st.st_mode):
            raise NotRegularFile(st.st_mode)
        flags = OPEN_FLAGS & ~os.O_NONBLOCK if blocking else OPEN_FLAGS
        try:
            fd = os.open(f"/proc/self/fd/{handle}", flags)
        except FileNotFoundError:
            if os.path.isdir("/proc/self/fd"):
                raise  # the inode went away (a deleted pipe end): an ordinary error
            raise OSError(
                errno.ENOENT,
                "cannot open files safely without /proc (sealkit re-opens the checked "
                "file through /proc/self/fd)",
                os.fsdecode(path),
            ) from None
    finally:
        os.close(handle)
    try:
        again = os.fstat(fd)
        if (again.st_dev, again.st_ino) != (st.st_dev, st.st_ino):  # pragma: no cover - defence
            raise NotRegularFile(again.st_mode)
    except BaseException:
        os.close(fd)
        raise
    return fd, again


def open_regular(path: str | bytes, dir_fd: int | None = None) -> tuple[int, os.stat_result]:
    """A read-only, non-blocking descriptor on the regular file ``path``
    (relative to ``dir_fd``) and its ``fstat``; :class:`NotRegularFile` for
    anything else (which is never opened for I/O), ``OSError`` when it cannot
    be opened. The caller closes the descriptor."""
    return _open_checked(path, dir_fd, stat.S_ISREG, blocking=False)


def _regular_or_fifo(mode: int) -> bool:
    return stat.S_ISREG(mode) or stat.S_ISFIFO(mode)


def open_input(path: str | bytes) -> tuple[int, os.stat_result]:
    """A read-only descriptor on ``path`` when it is a regular file or a FIFO
    (a named pipe, or a pipe reached through ``/dev/stdin`` or ``/dev/fd/N``),
    and its ``fstat``; :class:`NotRegularFile` for anything else.

    A FIFO is opened blocking, as ``cat`` opens it: the open waits for a
    writer, and reads wait for data; the caller bounds how much it reads.
    """
    return _open_checked(path, None, _regular_or_fifo, blocking=True)

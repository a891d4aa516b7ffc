"""Opening a file that must be a regular file, without surprises.

``map_file``, ``sealkit elf``, the audit's program-header reader and
``sealkit replay`` all open paths a user (or another process) chose. A FIFO
blocks ``open`` until a writer comes, ``/proc/kmsg`` blocks ``read``,
``/dev/zero`` never ends, and opening a device node can act on the device.
:func:`open_regular` checks with ``stat`` before opening, opens
non-blocking, and checks the descriptor again (the path may have been
swapped in between); each caller turns :class:`NotRegularFile` into its own
error.
"""

from __future__ import annotations

import os
import stat
from typing import Final

__all__ = ["NotRegularFile", "kind_of", "open_regular"]

OPEN_FLAGS: Final = os.O_RDONLY | os.O_CLOEXEC | os.O_NONBLOCK | os.O_NOCTTY

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


def open_regular(path: str | bytes, dir_fd: int | None = None) -> tuple[int, os.stat_result]:
    """A read-only descriptor on the regular file ``path`` (relative to
    ``dir_fd``) and its ``fstat``; :class:`NotRegularFile` for anything else,
    ``OSError`` when it cannot be opened. The caller closes the descriptor."""
    before = os.stat(path, dir_fd=dir_fd)
    if not stat.S_ISREG(before.st_mode):
        raise NotRegularFile(before.st_mode)
    fd = os.open(path, OPEN_FLAGS, dir_fd=dir_fd)
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise NotRegularFile(st.st_mode)
    except BaseException:
        os.close(fd)
        raise
    return fd, st

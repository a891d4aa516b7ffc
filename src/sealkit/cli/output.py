"""The rich console the commands print tables on.

On a terminal rich sizes tables to the window. Written to a pipe or a file,
a table is drawn as wide as its content (up to 240 columns) instead of
folded to 80, so ``sealkit maps PID | grep sealed`` keeps each mapping on one
line.

When the reader goes away (``sealkit audit | head -1``) the console raises
:class:`BrokenPipeError` like any other write, and the command line exits 0,
as it does for ``--json`` output; rich's default would exit 1.
"""

from __future__ import annotations

import os
import stat
import sys
from typing import IO

from rich.console import Console


class PipeConsole(Console):
    """A rich console whose broken pipe is a :class:`BrokenPipeError`."""

    def on_broken_pipe(self) -> None:
        self.quiet = True
        raise BrokenPipeError(32, "Broken pipe")


def table_console(file: IO[str] | None = None, width: int | None = None) -> Console:
    """A console on ``file`` (stdout by default), ``width`` columns wide if given."""
    target = file if file is not None else sys.stdout
    if width is None and not target.isatty():
        width = 240
    return PipeConsole(file=target, width=width, soft_wrap=False)


def write_output(text: str, path: str) -> None:
    """Write ``text`` to the file ``path`` so that a reader never sees half of
    it: a temporary file in the same directory, renamed over the target.

    The rename goes to the symbolic link's target, not over the link, and a
    target that exists but is not a regular file (``/dev/null``, a FIFO, a
    terminal, ``/dev/stdout``) is written in place: renaming over it would
    replace a device node with a plain file. ``OSError`` when it cannot be
    written; nothing is left behind.
    """
    target = os.path.realpath(path)
    try:
        mode: int | None = os.stat(target).st_mode
    except FileNotFoundError:
        mode = None
    if mode is not None and not stat.S_ISREG(mode):
        with open(target, "w", encoding="utf-8") as fh:
            fh.write(text)
        return
    tmp = os.path.join(os.path.dirname(target), f".{os.path.basename(target)}.{os.getpid()}.tmp")
    try:
        with open(tmp, "w", encoding="utf-8") as fh:
            fh.write(text)
        os.replace(tmp, target)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise

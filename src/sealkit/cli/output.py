"""The rich console the commands print tables on.

On a terminal rich sizes tables to the window. Written to a pipe or a file,
a table is drawn as wide as its content (up to 240 columns) instead of
folded to 80, so ``sealkit maps PID | grep sealed`` keeps each mapping on one
line.
"""

from __future__ import annotations

import sys
from typing import IO

from rich.console import Console


def table_console(file: IO[str] | None = None) -> Console:
    """A console on ``file`` (stdout by default)."""
    target = file if file is not None else sys.stdout
    tty = target.isatty()
    return Console(file=target, width=None if tty else 240, soft_wrap=False)

"""Counting the work sealkit does, not the time it takes.

:func:`count_steps` runs a function with a line tracer on sealkit's own
code: every line executed in a module under ``src/sealkit`` is one step
(loops count once per iteration, comprehensions too). It is deterministic
and independent of the machine's load, so a test can hold a code path to
its complexity: the same layout at n and 4n mappings, or a fixed number of
steps per mapping. Past ``cap`` steps it stops the function with
:class:`TooManySteps` (a ``BaseException``, so no ``except Exception`` in
the code under test can swallow it): a quadratic path fails in seconds
instead of running for an hour.

Work done in C (a regular expression, ``bytes.split``) is not seen; the
tests that use this also count what they can see from outside (files
opened, bytes read).
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path
from types import FrameType
from typing import Any, TypeVar

T = TypeVar("T")

SRC = str(Path(__file__).resolve().parent.parent / "src" / "sealkit") + "/"


class TooManySteps(BaseException):
    """The traced function went past its step cap."""


def count_steps(fn: Callable[[], T], cap: int) -> tuple[T, int]:
    """``(fn(), steps)``; raises :class:`TooManySteps` past ``cap`` steps.

    Only the calling thread is traced: call sweeps with ``jobs=1``.
    """
    steps = 0

    def local(frame: FrameType, event: str, arg: Any) -> Any:
        nonlocal steps
        if event == "line":
            steps += 1
            if steps > cap:
                raise TooManySteps(f"more than {cap} steps")
        return local

    def trace(frame: FrameType, event: str, arg: Any) -> Any:
        if event == "call" and frame.f_code.co_filename.startswith(SRC):
            return local
        return None

    old = sys.gettrace()
    sys.settrace(trace)
    try:
        result = fn()
    finally:
        sys.settrace(old)
    return result, steps

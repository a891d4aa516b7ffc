"""What crosses the pipes between the controller, the worker and its runners.

Frames are a little-endian header (payload length, a flag byte: 1 when the
runner retires after this reply) and a pickled payload. The controller sends
``("run", ops, window, snapshot marks, flag marks, heap)`` and gets back
``("done", results, snapshots, flagged, died, pid, base)``, ``("refused",
OutsideArenaError)``, ``("died", how)`` or ``("fail", traceback)``. A
snapshot is one tuple of :data:`RawRun` per zone; a step whose snapshot did
not change travels as ``0`` (:func:`snapshot_layouts` undoes it).
"""

from __future__ import annotations

import os
import pickle
import struct
import time
from collections.abc import Sequence
from typing import Any, Final

from ...errors import SealkitError
from ...flags import Prot
from ...layout import Layout, Run
from ..target import Window

__all__ = ["RawRun", "RawSnap", "WorkerDiedError", "raw_to_layout", "snapshot_layouts"]


class WorkerDiedError(SealkitError):
    """A kernel worker died (or stopped answering) while running a trace.

    :class:`KernelExecutor` never raises this on its own for a trace: a death
    is reported in the run (:attr:`~sealkit.fidelity.target.TraceRun.died`)
    and the next trace gets a new worker. It is raised when a worker cannot
    even start, and when the executor itself failed inside the worker.
    ``str()`` is one line (what a command prints); ``detail`` holds the
    worker's traceback, if any.
    """

    def __init__(self, message: str, detail: str = "") -> None:
        super().__init__(message, detail)
        self.message = message
        self.detail = detail

    def __reduce__(self) -> tuple[object, ...]:
        return (type(self), (self.message, self.detail))

    def __str__(self) -> str:
        return self.message


# backing, pgoff (None for anonymous memory), sealed, tracked VmFlags (None when
# not read at this step) and one content token per page.
RawRun = tuple[int, int, int, bool, str, "int | None", bool, "frozenset[str] | None", str]
RawSnap = tuple[tuple[RawRun, ...], ...]  # one tuple of runs per zone, in TraceRun.zones order


def raw_to_layout(runs: Sequence[RawRun], zone: str, lo: int, hi: int) -> Layout:
    """A worker's raw runs as a :class:`~sealkit.layout.Layout`."""
    out = []
    for start, end, prot, shared, backing, pgoff, sealed, flags, content in runs:
        out.append(
            Run(
                start,
                end,
                Prot(prot),
                shared,
                backing,
                pgoff,
                None,
                "sl" if sealed else "",
                flags if flags is not None else frozenset(),
                content,
            )
        )
    return Layout(zone, lo, hi, tuple(out))


# ------------------------------------------------------------------- framing

_HEADER: Final = struct.Struct("<QB")  # payload length, flags (1: the runner retires)


def send_frame(fd: int, payload: bytes, flag: int) -> None:
    view = memoryview(_HEADER.pack(len(payload), flag) + payload)
    while view:
        n = os.write(fd, view)
        view = view[n:]


def send(fd: int, obj: object, flag: int = 0) -> None:
    send_frame(fd, pickle.dumps(obj, protocol=pickle.HIGHEST_PROTOCOL), flag)


def _recv_exact(fd: int, size: int, deadline: float | None) -> bytes | None:
    chunks = []
    while size:
        if deadline is not None:
            left = deadline - time.monotonic()
            import select  # noqa: PLC0415 (controller side only, see the imports)

            if left <= 0 or not select.select([fd], [], [], left)[0]:
                raise TimeoutError
        chunk = os.read(fd, min(size, 1 << 20))
        if not chunk:
            return None
        chunks.append(chunk)
        size -= len(chunk)
    return b"".join(chunks)


def recv_frame(fd: int, deadline: float | None = None) -> tuple[int, bytes] | None:
    head = _recv_exact(fd, _HEADER.size, deadline)
    if head is None:
        return None
    size, flag = _HEADER.unpack(head)
    body = _recv_exact(fd, size, deadline)
    return None if body is None else (flag, body)


def recv(fd: int, deadline: float | None = None) -> Any:
    frame = recv_frame(fd, deadline)
    return None if frame is None else pickle.loads(frame[1])


def snapshot_layouts(
    snaps: list[RawSnap | int | None],
    zones: tuple[str, ...],
    window: Window,
    cache: dict[RawRun, Run],
) -> list[dict[str, Layout] | None]:
    """The worker's snapshots (with its "unchanged" encoding) as the layouts
    of a :class:`~sealkit.fidelity.target.TraceRun`: ``None`` where no
    snapshot was taken. A step whose snapshot did not change shares the
    previous step's layouts, and a zone that did not change its layout (the
    same objects: comparisons skip what they already compared). ``cache``
    keeps the :class:`~sealkit.layout.Run` made for each raw run, so the runs
    a trace leaves alone are converted once (``Run`` is immutable)."""
    out: list[dict[str, Layout] | None] = []
    last: dict[str, Layout] | None = None
    raws: dict[str, tuple[RawRun, ...]] = {}
    for snap in snaps:
        if snap is None:
            out.append(None)
            continue
        if not isinstance(snap, int):
            now: dict[str, Layout] = {}
            for zone, raw in zip(zones, snap, strict=True):
                if last is not None and raws.get(zone) == raw:
                    now[zone] = last[zone]
                else:
                    now[zone] = Layout(zone, 0, window.hi(zone), _runs(raw, cache))
                    raws[zone] = raw
            last = now
        out.append(last)
    return out


def _runs(raw: Sequence[RawRun], cache: dict[RawRun, Run]) -> tuple[Run, ...]:
    out = []
    for item in raw:
        run = cache.get(item)
        if run is None:
            if len(cache) >= _RUN_CACHE:
                cache.clear()
            start, end, prot, shared, backing, pgoff, sealed, flags, content = item
            run = cache[item] = Run(
                start, end, Prot(prot), shared, backing, pgoff, None, "sl" if sealed else "",
                flags if flags is not None else frozenset(), content,
            )  # fmt: skip
        out.append(run)
    return tuple(out)


_RUN_CACHE: Final = 1 << 14

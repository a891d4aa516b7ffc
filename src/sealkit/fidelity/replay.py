"""Replaying a trace file on the kernel or on the model, step by step.

A trace file is the op language's text form (:func:`sealkit.ops.parse_trace`),
for instance the shrunk trace a fuzzer failure prints. Results written after
``=`` are *recorded* results: replay shows them next to what the target did
and counts the mismatches.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Final

from .._os.files import NotRegularFile, open_regular
from ..errors import ArgumentError, ParseError
from ..flags import PAGE_SIZE
from ..layout import Layout
from ..ops import MODEL_BASES, Op, Step, format_result, format_step, iter_ranges, parse_trace
from .differential import Divergence, compare_runs
from .target import (
    MAX_PAGES,
    TARGET_FORMS,
    TraceRun,
    Window,
    counterpart,
    make_target,
    target_kind,
    zones_of,
)

__all__ = ["MAX_TRACE_BYTES", "Replay", "load_trace", "replay", "window_for"]


MAX_TRACE_BYTES: Final = 64 << 20
"""The largest trace file :func:`load_trace` reads (64 MiB: about a million calls)."""


def _read_regular(path: str) -> bytes:
    """The bytes of the regular file ``path``, at most ``MAX_TRACE_BYTES``.

    Opened non-blocking (opening a FIFO would otherwise wait for a writer) and
    checked with ``fstat`` on that descriptor before reading (``/dev/zero``
    never ends); the read itself is capped too, since a file may grow after
    ``fstat`` and ``/proc`` files report size 0."""
    try:
        fd, st = open_regular(path)
    except NotRegularFile as exc:
        raise ArgumentError(f"trace file {path} is not a regular file (it is {exc})") from None
    try:
        if st.st_size > MAX_TRACE_BYTES:
            raise ArgumentError(
                f"trace file {path} is larger than {MAX_TRACE_BYTES >> 20} MiB ({st.st_size} bytes)"
            )
        chunks: list[bytes] = []
        left = MAX_TRACE_BYTES + 1
        while left > 0:
            chunk = os.read(fd, min(left, 1 << 20))
            if not chunk:
                break
            chunks.append(chunk)
            left -= len(chunk)
        if left <= 0:
            raise ArgumentError(f"trace file {path} is larger than {MAX_TRACE_BYTES >> 20} MiB")
        return b"".join(chunks)
    finally:
        os.close(fd)


def load_trace(path: str) -> list[Step]:
    """Read and parse a trace file. Raises :class:`ParseError` (bad text, with
    the line) or :class:`ArgumentError` (unreadable file, not a regular file,
    larger than :data:`MAX_TRACE_BYTES`, not UTF-8)."""
    try:
        text = _read_regular(path).decode("utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        raise ArgumentError(f"cannot read trace file {path}: {reason}") from None
    steps = parse_trace(text, source=path)
    if not steps:
        raise ParseError("the trace has no calls", None, path)
    return steps


def window_for(ops: Sequence[Op], minimum: int = 16) -> Window:
    """The smallest window (at least ``minimum`` pages) holding every page the
    trace names in each zone; capped at the largest window (:data:`MAX_PAGES`)."""
    top = {"p": minimum, "h": minimum}
    for op in ops:
        for addr, length in iter_ranges(op):
            zoned = MODEL_BASES.zone_of(addr)
            if zoned is None or length >= 1 << 40:
                continue
            zone, off = zoned
            end = -(-(off + length) // PAGE_SIZE)
            top[zone] = max(top[zone], min(end, MAX_PAGES))
    return Window(top["p"], top["h"])


@dataclass(slots=True)
class Replay:
    """A replayed trace: per step, the target's results and layouts."""

    steps: list[Step]
    window: Window
    zones: tuple[str, ...]
    on: str
    results: list[int] = field(default_factory=list)
    layouts: list[dict[str, Layout]] = field(default_factory=list)
    died: str | None = None
    other: Replay | None = None
    divergence: Divergence | None = None

    @property
    def mismatches(self) -> list[int]:
        """Steps whose recorded result (``= ...`` in the file) differs."""
        return [
            i
            for i, (s, r) in enumerate(zip(self.steps, self.results, strict=False))
            if s.result is not None and s.result != r
        ]

    def to_json(self) -> dict[str, Any]:
        rows = []
        for i, step in enumerate(self.steps):
            row: dict[str, Any] = {"step": i + 1, "call": format_step(Step(step.op)).strip()}
            if step.result is not None:
                row["recorded"] = format_result(step.op, step.result)
            if i < len(self.results):
                row[self.on] = format_result(step.op, self.results[i])
                row["layout"] = {z: self.layouts[i][z].text() for z in self.zones}
            if self.other is not None and i < len(self.other.results):
                row[self.other.on] = format_result(step.op, self.other.results[i])
                row["layout_" + self.other.on] = {
                    z: self.other.layouts[i][z].text() for z in self.other.zones
                }
            rows.append(row)
        return {
            "on": self.on,
            "window": {"pages": self.window.pages, "heap_pages": self.window.heap_pages},
            "steps": rows,
            "died": self.died,
            "recorded_mismatches": [i + 1 for i in self.mismatches],
            "divergence": None if self.divergence is None else self.divergence.to_json(),
        }


def _from_run(steps: list[Step], run: TraceRun) -> Replay:
    layouts = [{z: run.layout(i, z) for z in run.zones} for i in range(len(run.results))]
    return Replay(
        steps, run.window, run.zones, run.target, list(run.results), layouts, died=run.died
    )


def replay(
    steps: list[Step], on: str = "kernel", *, diff: bool = False, window: Window | None = None
) -> Replay:
    """Run ``steps`` on the target ``on`` (``"kernel"`` or ``"model:POLICY"``,
    see :mod:`sealkit.fidelity.target`); with ``diff``, also on its
    counterpart (the kernel against ``model:linux``, a model against the
    kernel) and find the first divergence."""
    ops = [s.op for s in steps]
    win = window or window_for(ops)
    if target_kind(on) is None:
        forms = " or ".join(f"'{form}'" for form in TARGET_FORMS)
        raise ArgumentError(f"--on must be {forms}, not {on!r}")
    names = [on, counterpart(on)] if diff else [on]
    # A replay reads smaps after every call: allow each call 10 ms on top of
    # the executor's usual minute, so long traces finish (^C stops them).
    timeout = 60.0 + 0.01 * len(ops)
    targets = [make_target(name, win, timeout=timeout) for name in names]
    runs: list[TraceRun] = []
    # Every call is observed, with its VmFlags: the run is shown step by step.
    for target in sorted(targets, key=lambda t: not t.reference):
        with target:
            runs.append(target.run(ops, layouts="every", flags="every"))
    by_name = {run.target: run for run in runs}
    main = _from_run(steps, by_name[on])
    if diff:
        other = by_name[names[1]]
        main.other = _from_run(steps, other)
        reference = next(t.name for t in targets if t.reference)
        model = next(run for run in runs if run.target != reference)
        main.divergence = compare_runs(model, by_name[reference])
    main.zones = zones_of(ops)
    return main

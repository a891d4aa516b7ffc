"""Replaying a trace file on the kernel or on the model, step by step.

A trace file is the op language's text form (:func:`sealkit.ops.parse_trace`),
for instance the shrunk trace a fuzzer failure prints, or a conformance
scenario's trace. Results written after ``=`` are *recorded* results: replay
shows them next to what the target did and counts the mismatches. Lines
starting with ``>`` (``>h`` for the heap) after a call are the exact layout
expected after it, as in the scenarios: replay checks them and reports the
first differing line of each.

The file may be a regular file, a FIFO or a pipe (``-`` is stdin); at most
:data:`MAX_TRACE_BYTES` are read from any of them. A trace whose sealing calls
belong to another design than the target's (``mseal_v1`` on ``model:linux``
or on the kernel) is refused before anything runs: the target has no such
call, and every step after it would be meaningless.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Final

from .._os.files import NotRegularFile, open_input
from ..errors import ArgumentError, ParseError
from ..flags import PAGE_SIZE
from ..layout import Layout
from ..model import POLICIES
from ..ops import (
    MODEL_BASES,
    Op,
    Step,
    format_result,
    format_step,
    iter_ranges,
)
from .conformance import Check, match_layout, parse_checked_trace
from .differential import Divergence, compare_runs
from .target import (
    MAX_PAGES,
    TARGET_FORMS,
    Target,
    TraceRun,
    Window,
    counterpart,
    make_target,
    target_kind,
    zones_of,
)

__all__ = [
    "MAX_REPLAY_CALLS",
    "MAX_TRACE_BYTES",
    "Replay",
    "check_seal_calls",
    "load_checked_trace",
    "load_trace",
    "replay",
    "window_for",
]


MAX_TRACE_BYTES: Final = 16 << 20
"""The most :func:`load_trace` reads from a file, FIFO or stdin (16 MiB)."""
MAX_REPLAY_CALLS: Final = 4096
"""The most calls one replay runs. A replay keeps every call's layouts to
show them (up to about 26 KiB per call on the model with a full 64-page
window, more with the heap zone) and prints them all; the fuzzer's traces
have at most 200 calls, the conformance scenarios at most a few dozen."""


def _read_bounded(fd: int, name: str, size: int | None = None) -> bytes:
    """At most :data:`MAX_TRACE_BYTES` from ``fd``; ``ArgumentError`` past it."""
    limit = MAX_TRACE_BYTES
    if size is not None and size > limit:
        raise ArgumentError(f"trace file {name} is larger than {limit >> 20} MiB ({size} bytes)")
    chunks: list[bytes] = []
    left = limit + 1
    while left > 0:
        chunk = os.read(fd, min(left, 1 << 20))
        if not chunk:
            break
        chunks.append(chunk)
        left -= len(chunk)
    if left <= 0:
        raise ArgumentError(f"trace file {name} is larger than {limit >> 20} MiB")
    return b"".join(chunks)


def _read_input(path: str) -> bytes:
    """The bytes of the trace at ``path``: a regular file, a FIFO or pipe, or
    stdin for ``-``; at most :data:`MAX_TRACE_BYTES` of any.

    Devices, directories and sockets are refused before they are opened
    (``/dev/zero`` never ends; opening a device can act on it); a FIFO is
    opened as ``cat`` opens it (waiting for a writer) and read with the cap,
    since it has no size to check first. A regular file's size is checked
    before reading, and the read is capped too (it may grow meanwhile)."""
    if path == "-":
        return _read_bounded(sys.stdin.fileno(), "<stdin>")
    try:
        fd, st = open_input(path)
    except NotRegularFile as exc:
        raise ArgumentError(
            f"trace file {path} is not a regular file or a FIFO (it is {exc})"
        ) from None
    try:
        return _read_bounded(fd, path, st.st_size if st.st_size else None)
    finally:
        os.close(fd)


def load_checked_trace(path: str) -> tuple[list[Step], list[Check]]:
    """Read and parse a trace with its ``>`` layout lines (see the module
    docstring). Raises :class:`ParseError` (bad text, with the line) or
    :class:`ArgumentError` (unreadable, not a file or FIFO, larger than
    :data:`MAX_TRACE_BYTES`, not UTF-8)."""
    source = "<stdin>" if path == "-" else path
    try:
        text = _read_input(path).decode("utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        raise ArgumentError(f"cannot read trace file {source}: {reason}") from None
    _check_calls(_count_calls(text), source)
    steps, checks = parse_checked_trace(text, source)
    if not steps:
        raise ParseError("the trace has no calls", None, source)
    return list(steps), list(checks)


def _count_calls(text: str) -> int:
    """Lines of ``text`` that hold a call (not blank, a comment or a ``>`` line),
    counted before parsing: no Step is made for a trace that is refused."""
    count = 0
    for line in text.splitlines():
        body = line.partition("#")[0].strip()
        if body and not body.startswith(">"):
            count += 1
    return count


def _check_calls(count: int, source: str) -> None:
    if count > MAX_REPLAY_CALLS:
        raise ArgumentError(
            f"{source} has {count} calls; a replay runs at most {MAX_REPLAY_CALLS} "
            "(it keeps and shows the layout after each)"
        )


def load_trace(path: str) -> list[Step]:
    """The calls of the trace at ``path`` (see :func:`load_checked_trace`;
    its layout lines are read, and dropped)."""
    return load_checked_trace(path)[0]


def check_seal_calls(ops: Sequence[Op], target: str, policy: str) -> None:
    """Refuse (``ArgumentError``) a trace with a sealing call that ``policy``
    (the design ``target`` implements) does not have: each design has its own
    call (``mseal``, ``mseal_v1``, ``mseal_v3``, ``mimmutable``,
    ``mseal_split``), and the others do not exist in its world (ENOSYS)."""
    own = POLICIES[policy].seal_op
    for i, op in enumerate(ops):
        kind = type(op)
        if kind is own:
            continue
        owners = [name for name, p in POLICIES.items() if p.seal_op is kind]
        if not owners:
            continue  # not a sealing call
        raise ArgumentError(
            f"step {i + 1}: {kind.NAME} is the sealing call of {', '.join(owners)}, but "
            f"{target} implements {policy}, whose sealing call is {own.NAME}: replay it "
            f"--on model:{owners[0]}, or write the trace with {own.NAME}"
        )


def window_for(ops: Sequence[Op], minimum: int = 16, checks: Sequence[Check] = ()) -> Window:
    """The smallest window (at least ``minimum`` pages) holding every page the
    trace names in each zone, and every page its layout lines show; capped at
    the largest window (:data:`MAX_PAGES`)."""
    top = {"p": minimum, "h": minimum}
    for check in checks:
        if check.layout.runs:
            end = check.layout.runs[-1].end
            top[check.zone] = max(top[check.zone], min(end, MAX_PAGES))
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
    checks: list[Check] = field(default_factory=list)
    check_diffs: list[str | None] = field(default_factory=list)
    """Per check: ``None`` when the layout matched, else the first differing line."""

    @property
    def mismatches(self) -> list[int]:
        """Steps whose recorded result (``= ...`` in the file) differs."""
        return [
            i
            for i, (s, r) in enumerate(zip(self.steps, self.results, strict=False))
            if s.result is not None and s.result != r
        ]

    @property
    def failed_checks(self) -> list[int]:
        """Indexes of the layout checks (``>`` lines) that did not hold."""
        return [k for k, diff in enumerate(self.check_diffs) if diff is not None]

    def checks_after(self, step: int) -> list[tuple[Check, str | None]]:
        """The layout checks written after call ``step`` (0-based), with their outcome."""
        return [
            (check, diff)
            for check, diff in zip(self.checks, self.check_diffs, strict=True)
            if check.step == step
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
            "layout_checks": [
                {
                    "step": check.step + 1,
                    "zone": check.zone,
                    "expected": check.layout.text(),
                    "diff": diff,
                }
                for check, diff in zip(self.checks, self.check_diffs, strict=True)
            ],
            "divergence": None if self.divergence is None else self.divergence.to_json(),
        }


def _from_run(steps: list[Step], run: TraceRun) -> Replay:
    layouts = [{z: run.layout(i, z) for z in run.zones} for i in range(len(run.results))]
    return Replay(
        steps, run.window, run.zones, run.target, list(run.results), layouts, died=run.died
    )


def _check_targets(ops: Sequence[Op], targets: Sequence[Target]) -> None:
    try:
        for target in targets:
            check_seal_calls(ops, target.name, target.policy)
    except BaseException:
        for target in targets:
            target.close()
        raise


def replay(
    steps: list[Step],
    on: str = "kernel",
    *,
    diff: bool = False,
    window: Window | None = None,
    checks: Sequence[Check] = (),
) -> Replay:
    """Run ``steps`` on the target ``on`` (``"kernel"`` or ``"model:POLICY"``,
    see :mod:`sealkit.fidelity.target`); with ``diff``, also on its
    counterpart (the kernel against ``model:linux``, a model against the
    kernel) and find the first divergence. ``checks`` (from
    :func:`load_checked_trace`) are held against ``on``'s layouts.
    ``ArgumentError`` before anything runs for a trace with another design's
    sealing call (:func:`check_seal_calls`) or more than
    :data:`MAX_REPLAY_CALLS` calls."""
    _check_calls(len(steps), "the trace")
    ops = [s.op for s in steps]
    win = window or window_for(ops, checks=checks)
    if target_kind(on) is None:
        forms = " or ".join(f"'{form}'" for form in TARGET_FORMS)
        raise ArgumentError(f"--on must be {forms}, not {on!r}")
    zones = zones_of(ops)
    for check in checks:
        if check.zone not in zones:
            raise ArgumentError(
                f"a '>{'h' if check.zone == 'h' else ''}' layout line after step "
                f"{check.step + 1}, but the trace never touches that zone"
            )
    names = [on, counterpart(on)] if diff else [on]
    # A replay reads smaps after every call: allow each call 10 ms on top of
    # the executor's usual minute, so long traces finish (^C stops them).
    timeout = 60.0 + 0.01 * len(ops)
    targets = [make_target(name, win, timeout=timeout) for name in names]
    _check_targets(ops, targets)
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
    main.zones = zones
    main.checks = list(checks)
    main.check_diffs = [_held(main, check) for check in checks]
    return main


def _held(rep: Replay, check: Check) -> str | None:
    """``None`` when the layout after the check's call is the expected one."""
    if check.step >= len(rep.layouts):
        return "the call before this layout did not run"
    actual = rep.layouts[check.step][check.zone]
    try:
        expected = Layout(check.zone, actual.lo, actual.hi, check.layout.runs)
    except ValueError:
        return f"the expected layout reaches past the window ({actual.hi} pages)"
    return match_layout(expected, actual)

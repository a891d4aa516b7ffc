"""The plan for one process, made while it runs, and what must still hold at the stop.

The expensive part (walking the loader, reading headers, ``harden()``'s
planner over smaps) happens before the target is stopped. What can change
in between is recorded so that the stop only has to compare: the loader's
list heads and ``r_state`` (bytes), and the ``/proc/PID/maps`` lines of the
planned ranges, of the injected ``syscall`` instruction and of the loader's
text. After the target is let go, :func:`verify` holds smaps to the calls.
"""

from __future__ import annotations

import errno as _errno
from bisect import bisect_right
from collections.abc import Sequence
from typing import NamedTuple

from ..._os.procfs import Vma
from ...errors import ProcessGoneError, TargetRefusedError
from ..hardening.plan import plan as harden_plan
from ..hardening.report import ObjectReport, SealedRange, SkippedRange
from .report import MsealCall
from .target import (
    PAGE,
    RT_STATES,
    Loader,
    LoadLock,
    Node,
    ObjectInfo,
    Process,
    Unreadable,
    find_syscall_insn,
    snapshot_spans,
    span,
)

__all__ = [
    "Plan",
    "apply_results",
    "covered",
    "layout_lines",
    "make_plan",
    "merge_calls",
    "merge_spans",
    "plan_objects",
    "verify",
]

STATIC = "static (no dynamic loader)"


class Busy(Exception):
    """This attempt cannot proceed: the target is let go and sealkit retries."""


class Gone(Exception):
    """The target exited."""


class Plan(NamedTuple):
    """A plan made while the target runs, and what must still hold at the stop."""

    state: str
    nodes: list[Node]
    loader_spans: list[tuple[int, int]]
    loader_bytes: bytes | None
    lock: LoadLock
    reports: list[ObjectReport]
    calls: list[MsealCall]
    raw_maps: bytes
    watched: list[tuple[int, int]]  # ranges whose VMAs must be unchanged
    lines: list[bytes]
    insn: int
    loader_text: list[tuple[int, int]]
    smaps: list[Vma]


def plan_objects(
    infos: Sequence[ObjectInfo], vmas: Sequence[Vma], level: str, system: bool
) -> tuple[list[ObjectReport], list[MsealCall]]:
    """``harden()``'s plan for the target's objects (its rules, TEXTREL
    included), a report entry for each object that could not be read, and
    the merged calls."""
    plannable = [info.obj for info in infos if not info.problem]
    reports = list(harden_plan(plannable, vmas, level, system, PAGE))
    for info in infos:
        if info.problem:
            lo, hi = span(info.obj)
            skipped = (SkippedRange(lo, hi, "text", f"not planned: {info.problem}"),)
            name = info.name or "(main program)"
            reports.append(
                ObjectReport(name, info.name, info.obj.addr, (), skipped if hi > lo else ())
            )
    return reports, merge_calls(reports)


def merge_calls(reports: Sequence[ObjectReport]) -> list[MsealCall]:
    """One call per run of adjacent planned ranges (``mseal`` takes a range
    over several VMAs); a run that is all sealed already needs no call."""
    ranges = sorted((r.start, r.end, r.already_sealed) for o in reports for r in o.sealed)
    calls: list[MsealCall] = []
    done: list[bool] = []
    for start, end, already in ranges:
        if calls and calls[-1].end == start:
            calls[-1] = calls[-1]._replace(end=end)
            done[-1] = done[-1] and already
        else:
            calls.append(MsealCall(start, end))
            done.append(already)
    return [c for c, d in zip(calls, done, strict=True) if not d]


def merge_spans(spans: Sequence[tuple[int, int]]) -> list[tuple[int, int]]:
    """Sorted, overlapping or touching spans joined."""
    out: list[tuple[int, int]] = []
    for lo, hi in sorted(spans):
        if out and lo <= out[-1][1]:
            out[-1] = (out[-1][0], max(out[-1][1], hi))
        else:
            out.append((lo, hi))
    return out


def layout_lines(raw: bytes, ranges: Sequence[tuple[int, int]]) -> list[bytes]:
    """The maps lines whose VMA meets any of ``ranges`` (sorted, disjoint),
    without parsing the others: the comparison made inside the stop."""
    out = []
    spans = sorted(ranges)
    starts = [s for s, _ in spans]
    for line in raw.split(b"\n"):
        dash = line.find(b"-")
        space = line.find(b" ", dash)
        if dash <= 0 or space <= dash:
            continue
        lo, hi = int(line[:dash], 16), int(line[dash + 1 : space], 16)
        i = bisect_right(starts, hi - 1) - 1
        if i >= 0 and spans[i][1] > lo:
            out.append(line)
    return out


def make_plan(process: Process, loader: Loader, level: str, system: bool) -> Plan:
    """Plan while the target runs (see the module docstring)."""
    try:
        raw = process.maps()
    except ProcessGoneError:
        raise Gone() from None
    smaps = process.vmas(smaps=True)
    spans: list[tuple[int, int]] = []
    nodes: list[Node] = []
    lock = loader.lock
    if loader.static:
        state, infos = STATIC, loader.static_objects()
    else:
        try:
            namespaces, nodes = loader.walk()
        except Unreadable as exc:
            if not process.alive():
                raise Gone() from None
            raise Busy(f"the loader's list is unreadable now: {exc}") from None
        states = [RT_STATES.get(ns.state, str(ns.state)) for ns in namespaces]
        state = next((s for s in states if s != "RT_CONSISTENT"), "RT_CONSISTENT")
        infos = loader.objects(nodes, smaps)
        spans = snapshot_spans(namespaces, nodes)
        lock = loader.load_lock(nodes, smaps)
        if lock.addr:
            spans.append((lock.addr, 20))
    snapshot = _read(loader, spans)
    reports, calls = plan_objects(infos, smaps, level, system)
    try:
        insn = find_syscall_insn(loader.mem, smaps, loader.interp) if calls else 0
    except Unreadable as exc:
        if not process.alive():
            raise Gone() from None
        raise Busy(f"the text with a syscall instruction is unreadable now: {exc}") from None
    if calls and not insn:
        raise TargetRefusedError(
            process.pid, "no-loader", "no syscall instruction found in the vDSO or the loader"
        )
    loader_text = [
        (v.start, v.end)
        for v in smaps
        if loader.interp is not None and (v.dev, v.inode) == loader.interp and "x" in v.perms
    ]
    watched = [(c.start, c.end) for c in calls] + loader_text
    if insn:
        watched.append((insn & ~(PAGE - 1), (insn + 2 + PAGE - 1) & ~(PAGE - 1)))
    watched = merge_spans(watched)
    return Plan(
        state, nodes, spans, snapshot, lock, reports, calls, raw, watched,
        layout_lines(raw, watched), insn, loader_text, smaps,
    )  # fmt: skip


def _read(loader: Loader, spans: Sequence[tuple[int, int]]) -> bytes | None:
    """The bytes of ``spans`` through ``/proc/PID/mem`` (the target runs: its
    pid is only trusted through the pinned file), or None."""
    out = []
    try:
        for addr, size in spans:
            out.append(loader.mem.read(addr, size))
    except Unreadable:
        return None
    return b"".join(out)


def apply_results(
    reports: Sequence[ObjectReport], calls: Sequence[MsealCall]
) -> list[ObjectReport]:
    """Move ranges whose call failed to ``skipped``, with the errno."""
    failed = [c for c in calls if c.result not in (0, None)]
    if not failed:
        return list(reports)
    out = []
    for obj in reports:
        keep: list[SealedRange] = []
        skip = list(obj.skipped)
        for r in obj.sealed:
            bad = next((c for c in failed if c.start <= r.start and r.end <= c.end), None)
            if bad is None or bad.result is None:
                keep.append(r)
            else:
                err = _errno.errorcode.get(-bad.result, str(-bad.result))
                skip.append(
                    SkippedRange(r.start, r.end, r.kind, f"mseal failed in the target: {err}")
                )
        out.append(obj._replace(sealed=tuple(keep), skipped=tuple(skip)))
    return out


def covered(intervals: Sequence[tuple[int, int]], lo: int, hi: int) -> int:
    """The first address of ``[lo, hi)`` not covered by ``intervals``, or ``hi``."""
    addr = lo
    for start, end in sorted(intervals):
        if start > addr:
            break
        addr = max(addr, end)
        if addr >= hi:
            return hi
    return min(addr, hi)


def verify(calls: Sequence[MsealCall], before: Sequence[Vma], after: Sequence[Vma]) -> list[str]:
    """smaps after the target was let go: every byte of every successful
    call is sealed, and nothing that was unsealed before and lies outside
    the calls became sealed (the target may seal memory itself: that is
    reported, not hidden)."""
    problems = []
    sealed = [(v.start, v.end) for v in after if v.sealed]
    for call in calls:
        if call.result != 0:
            continue
        gap = covered(sealed, call.start, call.end)
        if gap < call.end:
            problems.append(f"{gap:#x} in {call.start:#x}-{call.end:#x} is not sealed")
    allowed = [(v.start, v.end) for v in before if v.sealed]
    allowed += [(c.start, c.end) for c in calls if c.result == 0]
    for lo, hi in sealed:
        gap = covered(allowed, lo, hi)
        if gap < hi:
            problems.append(
                f"{gap:#x} in {lo:#x}-{hi:#x} is sealed but was neither sealed before nor planned"
            )
    return problems

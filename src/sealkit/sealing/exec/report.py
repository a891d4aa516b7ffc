"""Reading what ``libsealexec.so`` reports, and holding it against the kernel's view.

The library writes JSON Lines (schema ``sealkit/data/exec.schema.json``,
tag ``sealkit.exec/1``): the first line of a process is its start-up
sweep; later lines carry only the objects that changed, each in its full
state, so the last mention of an object wins. :func:`read_exec_report` folds the
lines into each process's current objects; :func:`check_against_smaps` says
where a report and ``/proc/PID/smaps`` disagree (``sealkit audit --pid``
reads the same ``VmFlags: sl``).
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator
from typing import Any, Final, NamedTuple

from ...errors import ParseError

__all__ = ["REPORT_SCHEMA", "ReportObject", "check_against_smaps", "read_exec_report"]

REPORT_SCHEMA: Final = "sealkit.exec/1"
_MAX_REPORT_BYTES: Final = 64 << 20


class ReportObject(NamedTuple):
    """One object's latest state in one process's report.

    ``sealed``: ``(start, end, kind, perms, phase)``; ``skipped``:
    ``(start, end, kind, reason)``; ``pending``: ``(start, end)`` of RELRO
    that was still writable when last looked at (sealed once it is not).
    """

    pid: int
    path: str
    base: int
    namespace: int
    loaded_by: str
    sealing: bool
    policy: str
    not_sealed: str | None
    sealed: tuple[tuple[int, int, str, str, str], ...]
    skipped: tuple[tuple[int, int, str, str], ...]
    pending: tuple[tuple[int, int], ...]


def _lines(data: bytes, source: str) -> Iterator[tuple[int, dict[str, Any]]]:
    import json  # noqa: PLC0415 - not on `sealkit exec`'s way to the exec

    for number, raw in enumerate(data.split(b"\n"), 1):
        if not raw.strip():
            continue
        try:
            line = json.loads(raw.decode("utf-8", "surrogateescape"))
        except ValueError as exc:
            raise ParseError(f"not JSON ({exc})", number, source) from None
        if not isinstance(line, dict) or line.get("schema") != REPORT_SCHEMA:
            raise ParseError(f"not a {REPORT_SCHEMA} record", number, source)
        yield number, line


def _object(pid: int, o: Any) -> ReportObject:
    return ReportObject(
        pid,
        str(o["path"]),
        int(o["base"]),
        int(o["namespace"]),
        str(o["loaded_by"]),
        bool(o["sealing"]),
        str(o["policy"]),
        None if o.get("not_sealed") is None else str(o["not_sealed"]),
        tuple(
            (int(r["start"]), int(r["end"]), str(r["kind"]), str(r["perms"]), str(r["phase"]))
            for r in o["sealed"]
        ),
        tuple(
            (int(r["start"]), int(r["end"]), str(r["kind"]), str(r["reason"])) for r in o["skipped"]
        ),
        tuple((int(r["start"]), int(r["end"])) for r in o["pending"]),
    )


def read_exec_report(
    source: str | bytes | os.PathLike[str],
) -> dict[int, dict[tuple[int, int], ReportObject]]:
    """A report (a file path, or its bytes) as ``{pid: {(namespace, base): object}}``,
    each object in its latest reported state.

    Bounded: 64 MiB. Raises :class:`~sealkit.errors.ParseError` (with the
    line number) for a line that is not a ``sealkit.exec/1`` record
    or lacks a field, ``OSError`` when the file cannot be read.
    """
    if isinstance(source, bytes):
        data, name = source, "report"
    else:
        name = os.fspath(source)
        with open(source, "rb") as f:
            data = f.read(_MAX_REPORT_BYTES + 1)
    if len(data) > _MAX_REPORT_BYTES:
        raise ParseError("report larger than 64 MiB", None, name)
    out: dict[int, dict[tuple[int, int], ReportObject]] = {}
    for number, line in _lines(data, name):
        try:
            pid = int(line["pid"])
            objects = [_object(pid, o) for o in line["objects"]]
        except (KeyError, TypeError, ValueError) as exc:
            raise ParseError(
                f"malformed record ({type(exc).__name__}: {exc})", number, name
            ) from None
        for obj in objects:
            out.setdefault(pid, {})[(obj.namespace, obj.base)] = obj
    return out


def _union(ranges: Iterable[tuple[int, int]]) -> list[tuple[int, int]]:
    out: list[tuple[int, int]] = []
    for start, end in sorted(ranges):
        if out and start <= out[-1][1]:
            out[-1] = (out[-1][0], max(out[-1][1], end))
        else:
            out.append((start, end))
    return out


def check_against_smaps(
    objects: Iterable[ReportObject], sealed_vmas: Iterable[tuple[int, int, str]]
) -> list[str]:
    """Where a report and ``/proc/PID/smaps`` disagree, one line each (empty:
    range for range the same).

    ``sealed_vmas``: ``(start, end, path)`` of every mapping with ``sl``.
    Compared: the mappings that belong to a reported object (its file, or
    anonymous pages inside its span: ``.bss`` and the gaps).
    """
    objects = list(objects)
    reported = _union((s, e) for o in objects for s, e, *_ in o.sealed)
    paths = {o.path for o in objects}
    spans = _union(
        (min(r[0] for r in ranges), max(r[1] for r in ranges))
        for o in objects
        if (ranges := [*(r[:2] for r in o.sealed), *(r[:2] for r in o.skipped)])
    )
    kernel = _union(
        (s, e)
        for s, e, path in sealed_vmas
        if path in paths or (not path.startswith("/") and any(a <= s and e <= b for a, b in spans))
    )
    problems = []
    for start, end in reported:
        if not any(ks <= start and end <= ke for ks, ke in kernel):
            problems.append(f"reported sealed but not sealed in smaps: {start:#x}-{end:#x}")
    for start, end in kernel:
        if not any(rs <= start and end <= re for rs, re in reported):
            problems.append(f"sealed in smaps but not in the report: {start:#x}-{end:#x}")
    return problems

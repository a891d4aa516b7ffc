"""A sweep as JSON and in the Prometheus text exposition format.

Names that others chose (commands, users, paths, the host name) are
written with :func:`sealkit.text.label` in every output, the table
included: the same text everywhere, valid UTF-8 (an undecodable byte is
``\\xff``, never a lone surrogate in JSON), and injective, so two
different command names never share a Prometheus series.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable, Mapping, Sequence
from json.encoder import encode_basestring_ascii
from typing import Any, Final

from ..errors import ArgumentTypeError
from ..text import label
from .classify import KINDS
from .requirements import RequirementResult
from .sweep import HostAudit, ProcessAudit, SealedMapping

__all__ = ["SCHEMA", "audit_json_text", "json_text", "process_json", "to_json", "to_prometheus"]

SCHEMA: Final = "sealkit.audit/2"
"""The ``schema`` tag of ``sealkit audit --json`` (sealkit/data/audit.schema.json)."""

_ENCODER: Final = json.JSONEncoder(separators=(", ", ": "))

# The C writer of a process's sealed list (sealkit/_os/_fastsys.c
# sealed_json_rows): without it (no compiler at install, an extension built
# from an older source), or with SEALKIT_NO_FASTSYS=1, audit_json_text
# writes it in Python, the same bytes.
_sealed_rows: (
    Callable[
        [tuple[SealedMapping, ...], Callable[[int, str], str], tuple[str, ...], type],
        tuple[str, list[int], list[int]] | None,
    ]
    | None
)
try:
    from .._os import _fastsys
except ImportError:  # pragma: no cover - depends on how sealkit was installed
    _sealed_rows = None
else:
    # one built from an older source lacks the sums (no COUNTED_FORMS): the
    # Python writer writes for it
    _sealed_rows = (
        getattr(_fastsys, "sealed_json_rows", None)
        if getattr(_fastsys, "COUNTED_FORMS", 0)
        else None
    )
_FORCE_PYTHON = bool(os.environ.get("SEALKIT_NO_FASTSYS"))
_KINDS_TUPLE: Final = tuple(KINDS)


def _text_of(kind: int, value: str) -> str:
    """The JSON text of a permission string (0) or a path (1), for the C writer."""
    return encode_basestring_ascii(value if kind == 0 else label(value))


def json_text(doc: Mapping[str, Any]) -> str:
    """``doc`` as JSON text: one top-level key a line, and each record of a
    list of records (processes) on a line of its own.

    Readable and greppable, and fast: every piece goes through the C
    encoder (``json.dumps(indent=...)`` runs a pure-Python one, seconds for
    a process with 30,000 sealed mappings).
    """
    encode = _ENCODER.encode
    parts = []
    for key, value in doc.items():
        if isinstance(value, list) and value and all(isinstance(v, dict) for v in value):
            body = ",\n  ".join(map(encode, value))
            parts.append(f"{encode(key)}: [\n  {body}\n ]")
        else:
            parts.append(f"{encode(key)}: {encode(value)}")
    return "{" + ",\n ".join(parts) + "}\n"


def _sealed_dict(m: SealedMapping, paths: dict[str, str]) -> dict[str, Any]:
    path = paths.get(m.path)
    if path is None:
        path = paths[m.path] = label(m.path)
    return {
        "start": f"{m.start:#x}",
        "end": f"{m.end:#x}",
        "size": m.end - m.start,
        "perms": m.perms,
        "kind": m.kind,
        "path": path,
    }


def process_json(proc: ProcessAudit, with_sealed: bool = True) -> dict[str, Any]:
    """One row of the sweep as JSON (``processes[]`` of the schema); without
    its ``sealed`` list when ``with_sealed`` is false."""
    by_kind = None if proc.sealed is None else proc.by_kind()
    return _record(proc, by_kind, proc.sealed_bytes, with_sealed)


def _record(
    proc: ProcessAudit,
    by_kind: Mapping[str, tuple[int, int]] | None,
    sealed_bytes: int | None,
    with_sealed: bool,
) -> dict[str, Any]:
    """:func:`process_json`, given ``proc.by_kind()`` and
    ``proc.sealed_bytes`` (the C writer sums them as it writes)."""
    kinds = None
    if by_kind is not None:
        kinds = {k: {"mappings": n, "bytes": b} for k, (n, b) in by_kind.items()}
    paths: dict[str, str] = {}
    row: dict[str, Any] = {
        "pid": proc.pid,
        "command": None if proc.command is None else label(proc.command),
        "uid": proc.uid,
        "user": label(proc.user),
        "status": proc.status,
        "reason": proc.reason,
        "mappings": proc.mappings,
        "sealed_mappings": proc.sealed_mappings,
        "sealed_bytes": sealed_bytes,
        "sealed_kinds": kinds,
    }
    if with_sealed:
        row["sealed"] = (
            None if proc.sealed is None else [_sealed_dict(m, paths) for m in proc.sealed]
        )
    return row


def _shown(proc: ProcessAudit, sealed_only: bool) -> bool:
    return not sealed_only or proc.any_sealed or proc.status != "ok"


def to_json(
    audit: HostAudit,
    *,
    sealed_only: bool = False,
    requirements: Sequence[RequirementResult] = (),
) -> dict[str, Any]:
    """The sweep as a JSON-ready dict (schema ``sealkit/data/audit.schema.json``)."""
    return _document(audit, sealed_only, requirements, rows=True)


def _document(
    audit: HostAudit,
    sealed_only: bool,
    requirements: Sequence[RequirementResult],
    rows: bool,
    sealed_bytes: int | None = None,
) -> dict[str, Any]:
    """:func:`to_json`'s document; with ``rows`` false its ``processes`` is
    left empty (for :func:`audit_json_text`, which writes them itself, and
    passes ``audit.sealed_bytes`` as it summed it on the way)."""
    _check_audit(audit)
    filters = {"pid": None, "user": None, "comm": None, **(audit.filters or {})}
    if isinstance(filters["comm"], str):
        filters["comm"] = label(filters["comm"])
    return {
        "schema": SCHEMA,
        "host": label(audit.host),
        "kernel": label(audit.kernel),
        "time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(audit.started)),
        "duration_seconds": round(audit.duration, 6),
        "filters": {**filters, "sealed_only": sealed_only},
        "scope_limited": audit.scope.as_dict(),
        "scope_notes": list(audit.scope.notes),
        "summary": {
            "seen": audit.seen,
            "sealed": audit.sealed,
            "denied": audit.denied,
            "cut_short": audit.cut_short,
            "unreached": len(audit.unreached),
            "changed": audit.changed,
            "vanished": audit.vanished,
            "zombies": audit.zombies,
            "not_found": len(audit.not_found),
            "kernel_threads": audit.kernel_threads,
            "sealed_mappings": audit.sealed_mappings,
            "sealed_bytes": audit.sealed_bytes if sealed_bytes is None else sealed_bytes,
        },
        "not_found": list(audit.not_found),
        "unreached": list(audit.unreached),
        "processes": (
            [process_json(p) for p in audit.processes if _shown(p, sealed_only)] if rows else []
        ),
        "requirements": [
            {**r.as_dict(), "requirement": label(r.requirement)} for r in requirements
        ],
    }


def audit_json_text(
    audit: HostAudit,
    *,
    sealed_only: bool = False,
    requirements: Sequence[RequirementResult] = (),
) -> str:
    """``json_text(to_json(audit, ...))``, written faster (``sealkit audit
    --json``): the sealed mappings, which a process may have by the tens of
    thousands, are formatted row by row instead of going through a dict
    each and the ``json`` module. The same document, byte for byte parsed."""
    _check_audit(audit)
    encode = _ENCODER.encode
    strings = encode_basestring_ascii
    paths: dict[str, str] = {}
    # pieces of the "processes" list, joined once at the end (a process's
    # sealed list may be megabytes: each concatenation would copy it)
    pieces: list[str] = []
    total = 0
    for proc in audit.processes:
        if not _shown(proc, sealed_only):
            total += proc.sealed_bytes or 0
            continue
        if pieces:
            pieces.append(",\n  ")
        sealed = proc.sealed
        if sealed is None:
            pieces += (encode(process_json(proc, with_sealed=False))[:-1], ', "sealed": null}')
            continue
        # the C writer also sums the record's fields; it refuses (None) all
        # but a tuple of SealedMapping rows of known kinds
        written = None
        if _sealed_rows is not None and not _FORCE_PYTHON and type(sealed) is tuple:
            written = _sealed_rows(sealed, _text_of, _KINDS_TUPLE, SealedMapping)
        if written is not None:
            listed, counts, sizes = written
            by_kind = {k: (n, b) for k, n, b in zip(_KINDS_TUPLE, counts, sizes, strict=True) if n}
            size = sum(sizes)
            record = _record(proc, by_kind, size, with_sealed=False)
        else:
            items = []
            for m in sealed:
                path = paths.get(m.path)
                if path is None:
                    path = paths[m.path] = strings(label(m.path))
                items.append(
                    f'{{"start": "{m.start:#x}", "end": "{m.end:#x}", "size": {m.end - m.start}, '
                    f'"perms": {strings(m.perms)}, "kind": {encode(m.kind)}, "path": {path}}}'
                )
            listed = ", ".join(items)
            size = proc.sealed_bytes or 0
            record = process_json(proc, with_sealed=False)
        total += size
        pieces += (encode(record)[:-1], ', "sealed": [', listed, "]}")
    head = json_text(_document(audit, sealed_only, requirements, rows=False, sealed_bytes=total))
    marker = '"processes": []'
    at = head.index(marker)
    if pieces:
        pieces = [head[:at], '"processes": [\n  ', *pieces, "\n ]", head[at + len(marker) :]]
        return "".join(pieces)
    return head


def _check_audit(audit: object) -> None:
    if not isinstance(audit, HostAudit):
        raise ArgumentTypeError(f"audit must be a HostAudit, not {type(audit).__name__}")


def _exposition(value: str) -> str:
    """A Prometheus label value: the label text (:func:`label`: no control
    character, no undecodable byte, injective), then the exposition
    format's own escapes (``\\\\`` and ``\\"``; a newline cannot remain)."""
    return label(value).replace("\\", "\\\\").replace('"', '\\"')


_METRICS: Final = (
    ("sealkit_audit_processes", "Processes of the last sealkit audit, by outcome (seen, sealed, denied, cut_short, unreached, changed, vanished, zombie, not_found, kernel_threads)."),
    ("sealkit_audit_scope_limited", "1 when the sweep could not list every process on the host, by reason (filter, pid_namespace, hidepid)."),
    ("sealkit_audit_sealed_mappings", "Sealed mappings over all readable processes."),
    ("sealkit_audit_sealed_bytes", "Bytes in sealed mappings over all readable processes."),
    ("sealkit_audit_command_processes", "Processes audited, per command name."),
    ("sealkit_audit_command_sealed_processes", "Processes with at least one sealed mapping, per command name."),
    ("sealkit_audit_command_denied_processes", "Processes whose mappings could not be read (denied), per command name."),
    ("sealkit_audit_command_unread_processes", "Processes whose mappings are unknown (denied, cut short, or changed program while read), per command name."),
    ("sealkit_audit_command_mappings", "Mappings (VMAs) of the readable processes, per command name."),
    ("sealkit_audit_command_sealed_mappings", "Sealed mappings, per command name and kind."),
    ("sealkit_audit_command_sealed_bytes", "Bytes in sealed mappings, per command name and kind."),
    ("sealkit_audit_requirement_met", "1 when a --require requirement is met, else 0."),
    ("sealkit_audit_duration_seconds", "How long the sweep took."),
    ("sealkit_audit_last_run_timestamp_seconds", "Unix time when the sweep started."),
)  # fmt: skip


def to_prometheus(
    audit: HostAudit, requirements: Sequence[RequirementResult] = (), host: str | None = None
) -> str:
    """The sweep in the Prometheus text exposition format, for node_exporter's
    textfile collector (``--collector.textfile.directory``): ``# HELP`` and
    ``# TYPE`` lines, every series a gauge labelled with ``host`` (and
    ``command``, ``kind``, ``state``, ``reason``, ``requirement`` where they
    apply), no timestamps (the collector refuses them). Per-command series
    aggregate processes by command name so the number of series stays
    bounded; a process whose command could not be read counts in the host
    totals only.
    """
    if not isinstance(audit, HostAudit):
        raise ArgumentTypeError(f"audit must be a HostAudit, not {type(audit).__name__}")
    if host is not None and not isinstance(host, str):
        raise ArgumentTypeError(f"host must be a str or None, not {type(host).__name__}")
    h = _exposition(host if host is not None else audit.host)
    samples: dict[str, list[str]] = {name: [] for name, _ in _METRICS}
    for state, value in (
        ("seen", audit.seen),
        ("sealed", audit.sealed),
        ("denied", audit.denied),
        ("cut_short", audit.cut_short),
        ("unreached", len(audit.unreached)),
        ("changed", audit.changed),
        ("vanished", audit.vanished),
        ("zombie", audit.zombies),
        ("not_found", len(audit.not_found)),
        ("kernel_threads", audit.kernel_threads),
    ):
        samples["sealkit_audit_processes"].append(f'{{host="{h}",state="{state}"}} {value}')
    for reason, limited in audit.scope.as_dict().items():
        samples["sealkit_audit_scope_limited"].append(
            f'{{host="{h}",reason="{reason}"}} {int(limited)}'
        )
    samples["sealkit_audit_sealed_mappings"].append(f'{{host="{h}"}} {audit.sealed_mappings}')
    samples["sealkit_audit_sealed_bytes"].append(f'{{host="{h}"}} {audit.sealed_bytes}')
    by_command: dict[str, list[ProcessAudit]] = {}
    for proc in audit.processes:
        if proc.command is not None:
            # label() is injective: one series per command name, never two
            by_command.setdefault(_exposition(proc.command), []).append(proc)
    for command in sorted(by_command):
        procs = by_command[command]
        c = f'host="{h}",command="{command}"'
        samples["sealkit_audit_command_processes"].append(f"{{{c}}} {len(procs)}")
        samples["sealkit_audit_command_sealed_processes"].append(
            f"{{{c}}} {sum(1 for p in procs if p.any_sealed)}"
        )
        samples["sealkit_audit_command_denied_processes"].append(
            f"{{{c}}} {sum(1 for p in procs if p.status == 'denied')}"
        )
        samples["sealkit_audit_command_unread_processes"].append(
            f"{{{c}}} {sum(1 for p in procs if p.status != 'ok')}"
        )
        samples["sealkit_audit_command_mappings"].append(
            f"{{{c}}} {sum(p.mappings or 0 for p in procs)}"
        )
        totals: dict[str, list[int]] = {}
        for proc in procs:
            for kind, (n, size) in proc.by_kind().items():
                total = totals.setdefault(kind, [0, 0])
                total[0] += n
                total[1] += size
        for kind in KINDS:
            if kind in totals:
                k = f'{c},kind="{kind}"'
                samples["sealkit_audit_command_sealed_mappings"].append(
                    f"{{{k}}} {totals[kind][0]}"
                )
                samples["sealkit_audit_command_sealed_bytes"].append(f"{{{k}}} {totals[kind][1]}")
    written: set[str] = set()
    for result in requirements:
        if result.requirement in written:
            continue  # one series each, whatever the caller passed
        written.add(result.requirement)
        samples["sealkit_audit_requirement_met"].append(
            f'{{host="{h}",requirement="{_exposition(result.requirement)}"}} {int(result.met)}'
        )
    samples["sealkit_audit_duration_seconds"].append(f'{{host="{h}"}} {audit.duration:.6f}')
    samples["sealkit_audit_last_run_timestamp_seconds"].append(
        f'{{host="{h}"}} {audit.started:.3f}'
    )
    lines = []
    for name, help_text in _METRICS:
        if not samples[name]:
            continue
        lines.append(f"# HELP {name} {help_text}")
        lines.append(f"# TYPE {name} gauge")
        lines.extend(name + sample for sample in samples[name])
    return "\n".join(lines) + "\n"

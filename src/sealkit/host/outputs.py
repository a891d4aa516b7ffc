"""A sweep as JSON and in the Prometheus text exposition format."""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any, Final

from ..errors import ArgumentTypeError
from ..text import printable
from .classify import KINDS
from .requirements import RequirementResult
from .sweep import HostAudit, ProcessAudit

__all__ = ["to_json", "to_prometheus"]


def to_json(
    audit: HostAudit,
    *,
    sealed_only: bool = False,
    requirements: Sequence[RequirementResult] = (),
) -> dict[str, Any]:
    """The sweep as a JSON-ready dict (schema ``sealkit/data/audit.schema.json``)."""
    if not isinstance(audit, HostAudit):
        raise ArgumentTypeError(f"audit must be a HostAudit, not {type(audit).__name__}")
    rows = [p for p in audit.processes if not sealed_only or p.any_sealed or p.status == "denied"]
    return {
        "schema": "sealkit.audit/1",
        "host": audit.host,
        "kernel": audit.kernel,
        "time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(audit.started)),
        "duration_seconds": round(audit.duration, 6),
        "filters": {
            "pid": None,
            "user": None,
            "comm": None,
            **(audit.filters or {}),
            "sealed_only": sealed_only,
        },
        "summary": {
            "seen": audit.seen,
            "sealed": audit.sealed,
            "denied": audit.denied,
            "vanished": audit.vanished,
            "kernel_threads": audit.kernel_threads,
            "sealed_mappings": audit.sealed_mappings,
            "sealed_bytes": audit.sealed_bytes,
        },
        "processes": [p.as_dict() for p in rows],
        "requirements": [r.as_dict() for r in requirements],
    }


def _label(value: str) -> str:
    """A Prometheus label value, escaped (text exposition format: ``\\``,
    ``"`` and newline). The format is UTF-8 text: :func:`printable` first
    turns undecodable bytes and the other control characters of a command
    name into visible escapes."""
    text = printable(value, keep="\n")
    return text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


_METRICS: Final = (
    ("sealkit_audit_processes", "Processes of the last sealkit audit, by outcome (seen, sealed, denied, vanished, kernel_threads)."),
    ("sealkit_audit_sealed_mappings", "Sealed mappings over all readable processes."),
    ("sealkit_audit_sealed_bytes", "Bytes in sealed mappings over all readable processes."),
    ("sealkit_audit_command_processes", "Processes audited, per command name."),
    ("sealkit_audit_command_sealed_processes", "Processes with at least one sealed mapping, per command name."),
    ("sealkit_audit_command_denied_processes", "Processes whose mappings could not be read, per command name."),
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
    ``command``, ``kind``, ``state``, ``requirement`` where they apply), no
    timestamps (the collector refuses them). Per-command series aggregate
    processes by command name so the number of series stays bounded.
    """
    if not isinstance(audit, HostAudit):
        raise ArgumentTypeError(f"audit must be a HostAudit, not {type(audit).__name__}")
    if host is not None and not isinstance(host, str):
        raise ArgumentTypeError(f"host must be a str or None, not {type(host).__name__}")
    h = _label(host if host is not None else audit.host)
    samples: dict[str, list[str]] = {name: [] for name, _ in _METRICS}
    for state, value in (
        ("seen", audit.seen),
        ("sealed", audit.sealed),
        ("denied", audit.denied),
        ("vanished", audit.vanished),
        ("kernel_threads", audit.kernel_threads),
    ):
        samples["sealkit_audit_processes"].append(f'{{host="{h}",state="{state}"}} {value}')
    samples["sealkit_audit_sealed_mappings"].append(f'{{host="{h}"}} {audit.sealed_mappings}')
    samples["sealkit_audit_sealed_bytes"].append(f'{{host="{h}"}} {audit.sealed_bytes}')
    by_command: dict[str, list[ProcessAudit]] = {}
    for proc in audit.processes:
        by_command.setdefault(proc.command, []).append(proc)
    for command in sorted(by_command):
        procs = by_command[command]
        c = f'host="{h}",command="{_label(command)}"'
        samples["sealkit_audit_command_processes"].append(f"{{{c}}} {len(procs)}")
        samples["sealkit_audit_command_sealed_processes"].append(
            f"{{{c}}} {sum(1 for p in procs if p.any_sealed)}"
        )
        samples["sealkit_audit_command_denied_processes"].append(
            f"{{{c}}} {sum(1 for p in procs if p.status == 'denied')}"
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
    for result in requirements:
        samples["sealkit_audit_requirement_met"].append(
            f'{{host="{h}",requirement="{_label(result.requirement)}"}} {int(result.met)}'
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

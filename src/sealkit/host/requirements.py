"""``--require``: what a sweep must show, and whether it does."""

from __future__ import annotations

import fnmatch
from collections.abc import Sequence
from typing import Any, Final, Literal, NamedTuple

from ..errors import ArgumentError, ArgumentTypeError
from .classify import KINDS
from .sweep import HostAudit, ProcessAudit

__all__ = ["Requirement", "RequirementResult", "check_requirements", "parse_requirement"]


class Requirement(NamedTuple):
    """A parsed ``--require`` value.

    ``complete``: every process was read: none denied, cut short or
    changing its program while read, and the sweep could list every
    process (no PID namespace or ``hidepid`` limit; a partial view proves
    nothing).
    ``sealed:PATTERN``: every process whose command matches PATTERN (shell
    pattern) has a sealed mapping, and at least one such process runs.
    ``sealed:PATTERN:KIND[,KIND...]``: the same, with sealed mappings of
    each KIND. ``system``: every process has its ``[vdso]`` sealed (what
    ``CONFIG_MSEAL_SYSTEM_MAPPINGS`` does).
    """

    text: str
    name: Literal["complete", "sealed", "system"]
    pattern: str = "*"
    kinds: tuple[str, ...] = ()


def parse_requirement(text: str) -> Requirement:
    """Parse a ``--require`` value; :class:`ArgumentError` when malformed."""
    if not isinstance(text, str):
        raise ArgumentTypeError(f"a requirement is a str, not {type(text).__name__}")
    if text == "complete":
        return Requirement(text, "complete")
    if text == "system":
        return Requirement(text, "system")
    if text.startswith("sealed:"):
        pattern, _, kinds_text = text.removeprefix("sealed:").partition(":")
        if not pattern:
            raise ArgumentError(f"--require {text!r}: give a command pattern, e.g. sealed:nginx")
        kinds = tuple(k for k in kinds_text.split(",") if k) if kinds_text else ()
        unknown = [k for k in kinds if k not in KINDS]
        if unknown:
            raise ArgumentError(
                f"--require {text!r}: unknown kind {unknown[0]!r} (kinds: {', '.join(KINDS)})"
            )
        return Requirement(text, "sealed", pattern, kinds)
    raise ArgumentError(
        f"unknown requirement {text!r}: use complete, system, sealed:PATTERN or "
        "sealed:PATTERN:KIND[,KIND...]"
    )


class RequirementResult(NamedTuple):
    """Whether a requirement is met, and the one-line reason when not."""

    requirement: str
    met: bool
    reason: str = ""

    def as_dict(self) -> dict[str, Any]:
        return {"requirement": self.requirement, "met": self.met, "reason": self.reason}


def _count(procs: Sequence[ProcessAudit]) -> str:
    return f"{len(procs)} process" + ("" if len(procs) == 1 else "es")


def _pids(procs: Sequence[ProcessAudit] | Sequence[int], limit: int = 5) -> str:
    ids = [p if isinstance(p, int) else p.pid for p in procs]
    shown = ", ".join(str(pid) for pid in ids[:limit])
    return shown + (f" and {len(ids) - limit} more" if len(ids) > limit else "")


_UNREAD: Final = {
    "denied": ("could not be read", "could not be read"),
    "cut_short": ("was cut short", "were cut short"),
    "changed": ("changed program while read", "changed program while read"),
}


def _unread(procs: Sequence[ProcessAudit], noun: bool = False) -> list[str]:
    """One phrase per way processes went unread: "2 could not be read (pids
    4, 5)"; with ``noun``, "2 processes could not be read (...)"."""
    out = []
    for status, (one, many) in _UNREAD.items():
        hit = [p for p in procs if p.status == status]
        if hit:
            count = _count(hit) if noun else str(len(hit))
            out.append(f"{count} {one if len(hit) == 1 else many} (pids {_pids(hit)})")
    return out


def check_requirements(
    audit: HostAudit, requirements: Sequence[Requirement]
) -> list[RequirementResult]:
    """Evaluate each requirement against a sweep, once: a requirement given
    twice gives one result (and so one Prometheus series)."""
    if not isinstance(audit, HostAudit):
        raise ArgumentTypeError(f"audit must be a HostAudit, not {type(audit).__name__}")
    given: object = requirements
    if not isinstance(given, list | tuple) or not all(isinstance(r, Requirement) for r in given):
        raise ArgumentTypeError("requirements must be Requirement objects (parse_requirement)")
    results = []
    given_before: set[str] = set()
    for req in requirements:
        if req.text in given_before:
            continue
        given_before.add(req.text)
        procs = audit.processes
        if req.name == "complete":
            reasons = _unread(procs, noun=True)
            if audit.unreached:
                reasons.append(
                    f"{len(audit.unreached)} not reached before the time ran out "
                    f"(pids {_pids(audit.unreached)})"
                )
            reasons.extend(audit.scope.notes[i] for i in _limit_notes(audit))
            results.append(RequirementResult(req.text, not reasons, "; ".join(reasons)))
            continue
        if req.name == "system":
            bad = [
                p for p in procs
                if p.status != "ok" or not any(m.path == "[vdso]" for m in p.sealed or ())
            ]  # fmt: skip
            reason = f"[vdso] not sealed (or not readable) in pids {_pids(bad)}" if bad else ""
            if not procs:
                reason = "no process was audited"
            results.append(RequirementResult(req.text, bool(procs) and not bad, reason))
            continue
        # A process whose name could not be read may be one of them.
        matching = [
            p for p in procs if p.command is None or fnmatch.fnmatchcase(p.command, req.pattern)
        ]
        if not matching:
            results.append(
                RequirementResult(req.text, False, f"no process named {req.pattern!r} was audited")
            )
            continue
        unsealed = [
            p for p in matching
            if p.status == "ok"
            and (not p.any_sealed or any(k not in p.by_kind() for k in req.kinds))
        ]  # fmt: skip
        what = "sealed " + "+".join(req.kinds) if req.kinds else "a sealed mapping"
        reasons = []
        if unsealed:
            reasons.append(
                f"{len(unsealed)} of {_count(matching)} named {req.pattern!r} without "
                f"{what} (pids {_pids(unsealed)})"
            )
        reasons.extend(_unread(matching))
        results.append(RequirementResult(req.text, not reasons, "; ".join(reasons)))
    return results


def _limit_notes(audit: HostAudit) -> list[int]:
    """Which of the scope's notes say a limit that makes a sweep incomplete
    (not a filter: that is the caller's choice)."""
    return [i for i, note in enumerate(audit.scope.notes) if not note.startswith("filters ")]

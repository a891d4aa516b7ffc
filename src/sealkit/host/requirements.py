"""``--require``: what a sweep must show, and whether it does."""

from __future__ import annotations

import fnmatch
from collections.abc import Sequence
from typing import Any, Literal, NamedTuple

from ..errors import ArgumentError, ArgumentTypeError
from .classify import KINDS
from .sweep import HostAudit, ProcessAudit

__all__ = ["Requirement", "RequirementResult", "check_requirements", "parse_requirement"]


class Requirement(NamedTuple):
    """A parsed ``--require`` value.

    ``complete``: no process was denied (a partial view proves nothing).
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


def _pids(procs: Sequence[ProcessAudit], limit: int = 5) -> str:
    shown = ", ".join(str(p.pid) for p in procs[:limit])
    return shown + (f" and {len(procs) - limit} more" if len(procs) > limit else "")


def check_requirements(
    audit: HostAudit, requirements: Sequence[Requirement]
) -> list[RequirementResult]:
    """Evaluate each requirement against a sweep."""
    if not isinstance(audit, HostAudit):
        raise ArgumentTypeError(f"audit must be a HostAudit, not {type(audit).__name__}")
    given: object = requirements
    if not isinstance(given, list | tuple) or not all(isinstance(r, Requirement) for r in given):
        raise ArgumentTypeError("requirements must be Requirement objects (parse_requirement)")
    results = []
    for req in requirements:
        procs = audit.processes
        if req.name == "complete":
            denied = [p for p in procs if p.status == "denied"]
            reason = f"{_count(denied)} could not be read (pids {_pids(denied)})" if denied else ""
            results.append(RequirementResult(req.text, not denied, reason))
            continue
        if req.name == "system":
            bad = [
                p for p in procs
                if p.status == "denied" or not any(m.path == "[vdso]" for m in p.sealed or ())
            ]  # fmt: skip
            reason = f"[vdso] not sealed (or not readable) in pids {_pids(bad)}" if bad else ""
            if not procs:
                reason = "no process was audited"
            results.append(RequirementResult(req.text, bool(procs) and not bad, reason))
            continue
        matching = [p for p in procs if fnmatch.fnmatchcase(p.command, req.pattern)]
        if not matching:
            results.append(
                RequirementResult(req.text, False, f"no process named {req.pattern!r} was audited")
            )
            continue
        denied = [p for p in matching if p.status == "denied"]
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
        if denied:
            reasons.append(f"{len(denied)} could not be read (pids {_pids(denied)})")
        results.append(RequirementResult(req.text, not reasons, "; ".join(reasons)))
    return results

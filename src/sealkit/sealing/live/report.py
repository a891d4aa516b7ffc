"""What :func:`~sealkit.sealing.live.seal_process` reports about one process."""

from __future__ import annotations

from typing import Any, NamedTuple

from ...text import human_size, printable
from ..hardening.report import ObjectReport

__all__ = ["LiveReport", "MsealCall"]


class MsealCall(NamedTuple):
    """One ``mseal(start, end - start, 0)`` the target made (or, in a dry run,
    would make): ``result`` is 0 or ``-errno``, ``None`` when not made."""

    start: int
    end: int
    result: int | None = None

    @property
    def size(self) -> int:
        """Bytes covered."""
        return self.end - self.start


class LiveReport(NamedTuple):
    """What :func:`~sealkit.sealing.live.seal_process` did to one process.

    ``objects``: per object, the ranges sealed (or, in a dry run, planned)
    and skipped with the reason, as ``harden()`` reports them. ``calls``:
    the ``mseal`` calls the target made, one per run of adjacent ranges.
    ``stopped_seconds``: how long the target was stopped, per attempt (from
    the first ``PTRACE_INTERRUPT`` to the last ``PTRACE_DETACH``);
    ``stop_phases`` splits the last one. ``retries``: why earlier attempts
    let the target go (loader busy, a signal arrived). ``loader_state``:
    ``r_state`` at planning; ``loader_lock``: whether glibc's loader lock was
    checked. ``verified``: ``/proc/PID/smaps``, read after the target was
    let go, shows every byte of every successful call sealed and nothing
    else newly sealed; ``problems`` says what did not hold.
    """

    pid: int
    comm: str
    level: str
    system: bool
    dry_run: bool
    objects: tuple[ObjectReport, ...]
    calls: tuple[MsealCall, ...]
    threads: int
    stopped_seconds: tuple[float, ...]
    retries: tuple[str, ...]
    verified: bool
    problems: tuple[str, ...]
    loader_state: str
    loader_lock: str
    seconds: float
    stop_phases: tuple[tuple[str, float], ...] = ()

    @property
    def sealed_bytes(self) -> int:
        """Bytes sealed in the objects covered (including those sealed before)."""
        return sum(o.sealed_bytes for o in self.objects)

    @property
    def newly_sealed_bytes(self) -> int:
        """Bytes this call sealed (or would seal) that were not sealed before."""
        return sum(r.size for o in self.objects for r in o.sealed if not r.already_sealed)

    @property
    def ok(self) -> bool:
        """Every call succeeded and verification found nothing wrong."""
        return not self.problems and all(c.result in (0, None) for c in self.calls)

    def summary(self) -> str:
        """One line."""
        verb = "would seal" if self.dry_run else "sealed"
        ranges = sum(len(o.sealed) for o in self.objects)
        objects = sum(1 for o in self.objects if o.sealed)
        skipped = sum(len(o.skipped) for o in self.objects)
        text = (
            f"pid {self.pid} ({printable(self.comm)}): level={self.level}: {verb} "
            f"{human_size(self.newly_sealed_bytes)} in {ranges} ranges of {objects} "
            f"objects, {skipped} ranges skipped"
        )
        if not self.dry_run:
            stop = self.stopped_seconds[-1] if self.stopped_seconds else 0.0
            text += (
                f"; {len(self.calls)} mseal calls, {self.threads} threads stopped "
                f"{stop * 1e3:.2f} ms"
            )
            if self.retries:
                total = sum(self.stopped_seconds) * 1e3
                text += f" (after {len(self.retries)} retries; {total:.1f} ms stopped in all)"
            text += ", verified" if self.verified else ", NOT verified"
        return text

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready: every field (``data/seal.schema.json``, ``processes`` items)."""
        return {
            "pid": self.pid,
            "comm": self.comm,
            "level": self.level,
            "system": self.system,
            "dry_run": self.dry_run,
            "ok": self.ok,
            "loader_state": self.loader_state,
            "loader_lock": self.loader_lock,
            "threads": self.threads,
            "sealed_bytes": self.sealed_bytes,
            "newly_sealed_bytes": self.newly_sealed_bytes,
            "stopped_seconds": list(self.stopped_seconds),
            "stop_phases": [{"phase": p, "seconds": t} for p, t in self.stop_phases],
            "retries": list(self.retries),
            "verified": self.verified,
            "problems": list(self.problems),
            "seconds": self.seconds,
            "calls": [
                {"start": c.start, "end": c.end, "bytes": c.size, "result": c.result}
                for c in self.calls
            ],
            "objects": [o.as_dict() for o in self.objects],
        }

    def __str__(self) -> str:
        lines = [self.summary(), f"  loader: {self.loader_state}; lock {self.loader_lock}"]
        lines += [f"  problem: {printable(p)}" for p in self.problems]
        lines += [f"  retry: {printable(r)}" for r in self.retries]
        state = "would seal" if self.dry_run else "sealed"
        for obj in self.objects:
            lines.append(f"  {printable(obj.path)}  (base {obj.base:#x})")
            rows = [
                (r.start, r.end, r.kind, r.perms, r.size,
                 "already sealed" if r.already_sealed else state)
                for r in obj.sealed
            ] + [(r.start, r.end, r.kind, "", r.size, f"skipped: {r.reason}") for r in obj.skipped]  # fmt: skip
            for start, end, kind, perms, size, status in sorted(rows):
                lines.append(
                    f"    {start:#014x}-{end:#014x} {kind:<6} {perms:<3} "
                    f"{human_size(size):>10}  {printable(status)}"
                )
        return "\n".join(lines)

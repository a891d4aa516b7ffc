"""The host sweep: every process, its sealed mappings, and who could not be read.

:func:`scan_host` sweeps ``/proc``: for each process its pid, user,
command, number of mappings, and the sealed ones (``VmFlags: sl`` in
``/proc/PID/smaps``, spec linux-mseal §5) with their kind
(:mod:`.classify`). Processes that exit during the sweep are dropped and
counted (*vanished*); processes whose smaps may not be read are reported as
*denied*, never as "not sealed". Kernel threads have no user address space
and are counted, not shown. Only processes with a sealed mapping are
classified (the rest of a sweep counts ``VmFlags`` lines and looks for
``sl``, :func:`sealkit._os.procfs.scan_smaps`).
"""

from __future__ import annotations

import fnmatch
import os
import pwd
import threading
import time
from collections import Counter, deque
from collections.abc import Callable, Collection, Iterable
from functools import lru_cache
from typing import Any, Final, Literal, NamedTuple

from .._os.procfs import ProcessDir, TaskStatus, scan_smaps
from ..errors import AccessDeniedError, ArgumentError, ArgumentTypeError, ProcessGoneError
from ..text import human_size
from .classify import KINDS, FileLayouts, classify, int_list

__all__ = ["HostAudit", "ProcessAudit", "SealedMapping", "default_jobs", "scan_host"]

# Value objects are NamedTuples, not dataclasses: a frozen slotted dataclass
# costs about 1 ms to create at import (it compiles its methods), and start-up
# is part of every `sealkit audit` run measured against `cat`.


class SealedMapping(NamedTuple):
    """A sealed mapping: its range, permissions, kind and path."""

    start: int
    end: int
    perms: str
    kind: str
    path: str

    @property
    def size(self) -> int:
        """Bytes covered."""
        return self.end - self.start

    def as_dict(self) -> dict[str, Any]:
        return {
            "start": f"{self.start:#x}",
            "end": f"{self.end:#x}",
            "size": self.size,
            "perms": self.perms,
            "kind": self.kind,
            "path": self.path,
        }


class ProcessAudit(NamedTuple):
    """One process in a sweep.

    ``status`` is ``"ok"`` or ``"denied"`` (smaps could not be read: then
    ``mappings`` and ``sealed`` are ``None``, never zero: nothing is known).
    ``uid`` is the effective user id.
    """

    pid: int
    command: str
    uid: int
    user: str
    status: Literal["ok", "denied"]
    mappings: int | None
    sealed: tuple[SealedMapping, ...] | None

    @property
    def sealed_mappings(self) -> int | None:
        """Number of sealed mappings (``None`` when denied)."""
        return None if self.sealed is None else len(self.sealed)

    @property
    def sealed_bytes(self) -> int | None:
        """Bytes in sealed mappings (``None`` when denied)."""
        return None if self.sealed is None else sum(m.size for m in self.sealed)

    @property
    def any_sealed(self) -> bool:
        """Whether at least one mapping is known to be sealed."""
        return bool(self.sealed)

    def by_kind(self) -> dict[str, tuple[int, int]]:
        """``{kind: (mappings, bytes)}`` of the sealed mappings, in :data:`KINDS` order."""
        out: dict[str, tuple[int, int]] = {}
        for kind in KINDS:
            hits = [m for m in self.sealed or () if m.kind == kind]
            if hits:
                out[kind] = (len(hits), sum(m.size for m in hits))
        return out

    def as_dict(self) -> dict[str, Any]:
        kinds = None
        if self.sealed is not None:
            kinds = {k: {"mappings": n, "bytes": b} for k, (n, b) in self.by_kind().items()}
        return {
            "pid": self.pid,
            "command": self.command,
            "uid": self.uid,
            "user": self.user,
            "status": self.status,
            "mappings": self.mappings,
            "sealed_mappings": self.sealed_mappings,
            "sealed_bytes": self.sealed_bytes,
            "sealed_kinds": kinds,
            "sealed": None if self.sealed is None else [m.as_dict() for m in self.sealed],
        }


@lru_cache(maxsize=1024)
def _user_name(uid: int) -> str:
    try:
        return pwd.getpwuid(uid).pw_name
    except KeyError:
        return str(uid)


# Outcomes that are not rows: counted in the summary.
_VANISHED: Final = "vanished"
_KTHREAD: Final = "kthread"
_FILTERED: Final = "filtered"


class _Filters(NamedTuple):
    users: frozenset[int] | None
    comm: str | None


def _audit_pid(
    pid: int, procfs: str, filters: _Filters, layouts: FileLayouts
) -> ProcessAudit | str:
    try:
        with ProcessDir(pid, procfs) as proc:
            status = proc.status()
            if status.kthread:
                return _KTHREAD
            if filters.users is not None and status.uid not in filters.users:
                return _FILTERED
            if filters.comm is not None and not fnmatch.fnmatchcase(status.name, filters.comm):
                return _FILTERED
            try:
                # a zombie leader's threads may live on: their smaps then
                data = proc.smaps(status.state)
            except AccessDeniedError:
                return _row(status, "denied", None, None)
            if not data and status.state in ("Z", "X"):
                return _VANISHED  # exited: its address space is gone
            if not data:
                # No mm: the task exited between the two reads (or became a
                # zombie); the kernel prints nothing rather than failing.
                again = _status_or_none(proc, procfs, pid)
                if again is None or again.state in ("Z", "X"):
                    return _VANISHED
                if again.kthread:
                    return _KTHREAD
            count, vmas = scan_smaps(data, f"{procfs}/{pid}/smaps")
            if not vmas.sealed_indices:
                return _row(status, "ok", count, ())
            which = vmas.sealed_indices
            kinds = classify(vmas, lambda v: layouts.lookup(proc, v), which)
            sealed = tuple(
                SealedMapping(vmas[i].start, vmas[i].end, vmas[i].perms, kind, vmas[i].path)
                for i, kind in zip(which, kinds, strict=True)
            )
            return _row(status, "ok", count, sealed)
    except ProcessGoneError:
        return _VANISHED


def _status_or_none(proc: ProcessDir, procfs: str, pid: int) -> TaskStatus | None:
    try:
        return proc.status()
    except ProcessGoneError:
        return None


def _row(
    status: TaskStatus,
    state: Literal["ok", "denied"],
    count: int | None,
    sealed: tuple[SealedMapping, ...] | None,
) -> ProcessAudit:
    return ProcessAudit(
        status.pid, status.name, status.uid, _user_name(status.uid), state, count, sealed
    )


class HostAudit(NamedTuple):
    """A sweep of one host.

    ``processes`` are the rows (readable and denied processes that matched
    the filters), by pid. ``seen`` counts them; ``sealed`` those with at
    least one sealed mapping; ``denied`` those whose smaps could not be
    read; ``vanished`` processes that exited during the sweep (dropped);
    ``kernel_threads`` tasks without a user address space (skipped).
    """

    host: str
    kernel: str
    started: float
    duration: float
    processes: tuple[ProcessAudit, ...]
    vanished: int
    kernel_threads: int
    filters: dict[str, Any] | None = None

    @property
    def seen(self) -> int:
        return len(self.processes)

    @property
    def sealed(self) -> int:
        return sum(1 for p in self.processes if p.any_sealed)

    @property
    def denied(self) -> int:
        return sum(1 for p in self.processes if p.status == "denied")

    @property
    def sealed_mappings(self) -> int:
        return sum(p.sealed_mappings or 0 for p in self.processes)

    @property
    def sealed_bytes(self) -> int:
        return sum(p.sealed_bytes or 0 for p in self.processes)

    def summary(self) -> str:
        """The one-line host summary."""
        return (
            f"{self.host}: {self.seen} processes seen, {self.sealed} with sealed memory "
            f"({self.sealed_mappings} mappings, {human_size(self.sealed_bytes)}), "
            f"{self.denied} denied, {self.vanished} vanished, "
            f"{self.kernel_threads} kernel threads skipped"
        )


def default_jobs() -> int:
    """Reader threads for a sweep: one per idle CPU (usable CPUs minus the
    one-minute load average, rounded), at least 1, at most 4.

    Threads pay because the kernel generates one process's smaps text while
    another thread parses: ``read`` releases the GIL. On a busy machine they
    do not: each of the ~40 reads per process hands the GIL over, and the
    handovers (futex calls, measured with ``strace -c``) cost more than the
    overlap gains, so a loaded host gets one reader.
    """
    try:
        cpus = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        cpus = os.cpu_count() or 1
    try:
        idle = cpus - os.getloadavg()[0]
    except OSError:
        idle = float(cpus)
    return max(1, min(round(idle), cpus, 4))


def _list_pids(procfs: str) -> list[int]:
    return sorted(int(name) for name in os.listdir(procfs) if name.isdigit())


def scan_host(
    *,
    pids: Iterable[int] | None = None,
    users: Collection[int] | None = None,
    comm: str | None = None,
    procfs: str = "/proc",
    jobs: int | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> HostAudit:
    """Sweep the processes of this host (or only ``pids``).

    ``users`` keeps processes whose effective uid is listed; ``comm`` keeps
    those whose command name matches the shell pattern (``fnmatch``, case
    sensitive). ``jobs`` reader threads (default :func:`default_jobs`: one
    per idle CPU).
    ``progress(done, total)`` is called from the calling thread now and
    then. Never raises for a process that exits or may not be read.
    """
    pid_list = None if pids is None else int_list(pids, "pids", 1)
    uid_list = None if users is None else int_list(users, "users", 0)
    if comm is not None and not isinstance(comm, str):
        raise ArgumentTypeError(f"comm must be a str pattern or None, not {type(comm).__name__}")
    if not isinstance(procfs, str) or not procfs or "\0" in procfs:
        raise ArgumentTypeError(f"procfs must be a directory path, not {procfs!r}")
    if jobs is not None and (type(jobs) is not int or jobs < 1):
        raise ArgumentError(f"jobs must be a positive int or None, not {jobs!r}")
    if progress is not None and not callable(progress):
        raise ArgumentTypeError("progress must be callable or None")
    started = time.time()
    t0 = time.perf_counter()
    try:
        candidates = _list_pids(procfs) if pid_list is None else sorted(set(pid_list))
    except OSError as exc:
        raise ArgumentError(f"cannot list {procfs}: {exc.strerror}") from None
    filters = _Filters(None if uid_list is None else frozenset(uid_list), comm)
    layouts = FileLayouts()
    todo = deque(candidates)
    outcomes: list[ProcessAudit | str] = []

    def work() -> None:
        while True:
            try:
                pid = todo.popleft()
            except IndexError:
                return
            outcomes.append(_audit_pid(pid, procfs, filters, layouts))

    errors: list[BaseException] = []

    def guarded() -> None:
        try:
            work()
        except BaseException as exc:  # re-raised in the calling thread
            errors.append(exc)
            todo.clear()

    n = jobs if jobs is not None else default_jobs()
    if n <= 1:
        while todo:
            outcomes.append(_audit_pid(todo.popleft(), procfs, filters, layouts))
            if progress is not None:
                progress(len(outcomes), len(candidates))
    else:
        threads = [threading.Thread(target=guarded, daemon=True) for _ in range(n)]
        for thread in threads:
            thread.start()
        for thread in threads:
            while thread.is_alive():
                # Polling only for the progress bar: a waking main thread
                # takes the GIL from the readers.
                thread.join(0.1 if progress is not None else None)
                if progress is not None:
                    progress(len(outcomes), len(candidates))
        if errors:
            raise errors[0]
    rows = sorted((o for o in outcomes if isinstance(o, ProcessAudit)), key=lambda p: p.pid)
    counts = Counter(o for o in outcomes if isinstance(o, str))
    uname = os.uname()
    return HostAudit(
        host=uname.nodename,
        kernel=uname.release,
        started=started,
        duration=time.perf_counter() - t0,
        processes=tuple(rows),
        vanished=counts[_VANISHED],
        kernel_threads=counts[_KTHREAD],
        filters={
            "pid": None if pids is None else candidates,
            "user": None if users is None else sorted(users),
            "comm": comm,
        },
    )

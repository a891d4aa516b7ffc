"""The host sweep: every process, its sealed mappings, and what could not be known.

:func:`scan_host` sweeps ``/proc``: for each process its pid, user,
command, number of mappings, and the sealed ones (``VmFlags: sl`` in
``/proc/PID/smaps``, fs/proc/task_mmu.c ``show_smap_vma_flags()``) with their kind
(:mod:`.classify`). Only processes with a sealed mapping are classified
(the rest of a sweep counts ``VmFlags`` lines and looks for ``sl``,
:func:`sealkit._os.procfs.scan_smaps`).

What could not be known is said, never guessed (never "not sealed"):

==============  ===========================================================
``denied``      a row: its smaps (or its whole ``/proc/PID``, with
                ``hidepid=noaccess``: then the command is unknown) may not
                be read
``cut_short``   a row: reading it ran past its time budget or a size bound,
                or the kernel did not answer (a blocked read)
``unreached``   not a row: the sweep's total ``timeout`` ran out before it
                was read
``changed``     a row: it replaced its program (``execve``) while it was
                read, each of the three times it was read
``vanished``    not a row: it exited during the sweep
``zombie``      not a row: it exited and was not reaped yet (no memory)
``not_found``   not a row: a pid asked for (``pids=``) with no process
``kthread``     not a row: a kernel thread (no user address space)
==============  ===========================================================

The scope of a sweep is limited, and :class:`ScopeLimits` says so, when a
filter was given, when sealkit runs in a PID namespace other than the
initial one (a container: processes outside it are not in its ``/proc``),
or when ``/proc`` is mounted ``hidepid=invisible`` or ``ptraceable`` so
that processes the auditor may not read are not even listed.

Reading is done by worker threads; the calling thread watches the time. A
process is read within its budget (``process_timeout``), checked between
reads; a read the kernel does not return from (a process whose address
space lock is held, by a stuck page fault say) is abandoned to its thread
and reported cut short, and another thread carries on.
"""

from __future__ import annotations

import fnmatch
import operator
import os
import pwd
import threading
import time
from collections import Counter, deque
from collections.abc import Callable, Collection, Iterable
from functools import lru_cache
from itertools import compress, repeat
from typing import Any, Final, Literal, NamedTuple

from .._os.procfs import (
    PROC_PID_INIT_INO,
    Limits,
    ProcessDir,
    TaskStatus,
    pid_namespace_inode,
    proc_mount_options,
    scan_smaps,
)
from ..errors import (
    AccessDeniedError,
    ArgumentError,
    ArgumentTypeError,
    CutShortError,
    ProcessChangedError,
    ProcessGoneError,
)
from ..text import human_size
from .classify import KINDS, FileLayouts, classify, int_list

__all__ = [
    "DEFAULT_PROCESS_TIMEOUT",
    "SMAPS_LIMIT",
    "HostAudit",
    "ProcessAudit",
    "ScopeLimits",
    "SealedMapping",
    "default_jobs",
    "scan_host",
    "scope_limits",
]

DEFAULT_PROCESS_TIMEOUT: Final = 30.0
"""Seconds one process may take to read (a process with 65,530 mappings
takes well under one on an idle machine)."""

SMAPS_LIMIT: Final = 256 << 20
"""Most bytes of smaps text read from one process: 65,530 mappings (the
default ``vm.max_map_count``) with their counters come to about 80 MiB; a
process whose mapped files have very long names could make several times
that, and is cut short instead."""

# A thread still inside one read this long after its budget ran out is stuck
# in the kernel, not just slow: it is left behind.
_GRACE: Final = 2.0
# Threads left behind before the sweep stops taking new processes.
_MAX_ABANDONED: Final = 8
_POLL: Final = 0.25

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


_START, _END, _KIND = operator.itemgetter(0), operator.itemgetter(1), operator.itemgetter(3)

Status = Literal["ok", "denied", "cut_short", "changed"]


class ProcessAudit(NamedTuple):
    """One process in a sweep.

    ``status`` is ``"ok"``, or what kept it from being known:
    ``"denied"`` (its smaps may not be read), ``"cut_short"`` (a limit
    stopped the read) or ``"changed"`` (it ran ``execve`` while being
    read); then ``mappings`` and ``sealed`` are ``None``, never zero:
    nothing is known, and ``reason`` says why. ``uid`` is the effective
    user id. ``command`` is ``None`` when even the name could not be read
    (``/proc`` mounted ``hidepid=noaccess``).
    """

    pid: int
    command: str | None
    uid: int
    user: str
    status: Status
    mappings: int | None
    sealed: tuple[SealedMapping, ...] | None
    reason: str = ""

    @property
    def sealed_mappings(self) -> int | None:
        """Number of sealed mappings (``None`` when unknown)."""
        return None if self.sealed is None else len(self.sealed)

    @property
    def sealed_bytes(self) -> int | None:
        """Bytes in sealed mappings (``None`` when unknown)."""
        if self.sealed is None:
            return None
        total: int = sum(map(operator.sub, map(_END, self.sealed), map(_START, self.sealed)))
        return total

    @property
    def any_sealed(self) -> bool:
        """Whether at least one mapping is known to be sealed."""
        return bool(self.sealed)

    def by_kind(self) -> dict[str, tuple[int, int]]:
        """``{kind: (mappings, bytes)}`` of the sealed mappings, in :data:`KINDS` order."""
        sealed = self.sealed or ()
        kinds = list(map(_KIND, sealed))
        counts = Counter(kinds)
        if len(counts) == 1 and kinds[0] in KINDS:
            return {kinds[0]: (len(kinds), self.sealed_bytes or 0)}
        # one pass at C speed per kind found (a few): tens of thousands of
        # sealed mappings are common
        sizes = list(map(operator.sub, map(_END, sealed), map(_START, sealed)))
        return {
            kind: (counts[kind], sum(compress(sizes, map(operator.eq, kinds, repeat(kind)))))
            for kind in KINDS
            if kind in counts
        }


@lru_cache(maxsize=1024)
def _user_name(uid: int) -> str:
    try:
        return pwd.getpwuid(uid).pw_name
    except KeyError:
        return str(uid)


# Outcomes that are not rows: counted in the summary.
_VANISHED: Final = "vanished"
_ZOMBIE: Final = "zombie"
_NOT_FOUND: Final = "not_found"
_KTHREAD: Final = "kthread"
_FILTERED: Final = "filtered"


class _Filters(NamedTuple):
    users: frozenset[int] | None
    comm: str | None


def _unreadable(pid: int, procfs: str, filters: _Filters, reason: str) -> ProcessAudit | str:
    """A process whose ``/proc/PID`` itself is closed to us (``hidepid=noaccess``):
    a denied row whose command is unknown; its owner is the directory's."""
    try:
        uid = os.stat(os.path.join(procfs, str(pid))).st_uid
    except OSError:
        return _VANISHED
    if filters.users is not None and uid not in filters.users:
        return _FILTERED
    # A command filter cannot be applied to an unknown name: the row stays
    # (it may match, and may be sealed).
    return ProcessAudit(pid, None, uid, _user_name(uid), "denied", None, None, reason)


_DENIED_SMAPS: Final = "its memory map may not be read"
_DENIED_ALL: Final = "its /proc directory may not be read (/proc is mounted hidepid=noaccess)"


def _audit_pid(
    pid: int,
    procfs: str,
    filters: _Filters,
    layouts: FileLayouts,
    limits: Limits,
    asked: bool,
    seen: Callable[[TaskStatus], None],
) -> ProcessAudit | str:
    """What one process is: a row, or an outcome counted in the summary.
    ``asked``: the pid was named by the caller (so a missing one was never
    found, rather than gone); ``seen(status)`` is told who it is once known.
    """
    try:
        proc = ProcessDir(pid, procfs)
    except ProcessGoneError:
        return _NOT_FOUND if asked else _VANISHED
    except AccessDeniedError:
        return _unreadable(pid, procfs, filters, _DENIED_ALL)
    try:
        with proc:
            try:
                status = proc.status()
            except AccessDeniedError:
                return _unreadable(pid, procfs, filters, _DENIED_ALL)
            if status.kthread:
                return _KTHREAD
            if filters.users is not None and status.uid not in filters.users:
                return _FILTERED
            if filters.comm is not None and not fnmatch.fnmatchcase(status.name, filters.comm):
                return _FILTERED
            seen(status)
            try:
                # a zombie leader's threads may live on: their smaps then
                data = proc.smaps(status.state, limits, layout=True)
            except AccessDeniedError:
                return _row(status, "denied", None, None, _DENIED_SMAPS)
            except ProcessChangedError:
                why = "it replaced its program (exec) each time it was read"
                return _row(status, "changed", None, None, why)
            except CutShortError as exc:
                return _row(status, "cut_short", None, None, exc.reason)
            if proc.restatus is not None:  # read again after an exec: the new program's
                status = proc.restatus
            if not data:
                # No address space: it exited (a zombie until its parent reaps
                # it), or is exiting, or is gone.
                try:
                    again = proc.status()
                except ProcessGoneError:
                    return _VANISHED
                if again.kthread:
                    return _KTHREAD
                return _ZOMBIE if again.state in ("Z", "X") else _VANISHED
            if proc.counted is not None and not proc.counted[1]:
                # no mapping sealed: the C read counted them on the way, as
                # scan_smaps would (tests/unit/test_smaps_scanner_c.py)
                return _row(status, "ok", proc.counted[0], ())
            count, vmas = scan_smaps(data, f"{procfs}/{pid}/smaps")
            if not vmas.sealed_indices:
                return _row(status, "ok", count, ())
            which = vmas.sealed_indices
            kinds = classify(vmas, lambda v: layouts.lookup(proc, v), which)
            columns = vmas.columns()
            start, end, perms, path = columns.start, columns.end, columns.perms, columns.path
            # tuple.__new__ skips the NamedTuple's Python-level __new__, and
            # map and zip run the loop in C: a process may have tens of
            # thousands of sealed mappings
            rows = zip(
                map(start.__getitem__, which), map(end.__getitem__, which),
                map(perms.__getitem__, which), kinds, map(path.__getitem__, which), strict=True,
            )  # fmt: skip
            sealed = tuple(map(tuple.__new__, repeat(SealedMapping), rows))
            return _row(status, "ok", count, sealed)
    except ProcessGoneError:
        return _VANISHED


def _row(
    status: TaskStatus,
    state: Status,
    count: int | None,
    sealed: tuple[SealedMapping, ...] | None,
    reason: str = "",
) -> ProcessAudit:
    return ProcessAudit(
        status.pid, status.name, status.uid, _user_name(status.uid), state, count, sealed, reason
    )


class ScopeLimits(NamedTuple):
    """Why a sweep may not have seen every process of the host.

    ``filter``: the caller chose a subset (``pids``, ``users``, ``comm``).
    ``pid_namespace``: sealkit is not in the initial PID namespace, so only
    its namespace's processes are in its ``/proc``. ``hidepid``: ``/proc``
    is mounted so that processes the auditor may not read are not even
    listed (``hidepid=ptraceable``, or ``invisible`` without the mount's
    ``gid=`` group). ``notes`` say each limit in words.
    """

    filter: bool = False
    pid_namespace: bool = False
    hidepid: bool = False
    notes: tuple[str, ...] = ()

    @property
    def limited(self) -> bool:
        """Whether processes may be missing without being counted (not by choice)."""
        return self.pid_namespace or self.hidepid

    def reasons(self) -> list[str]:
        """The limits that apply, by name: ``filter``, ``pid_namespace``, ``hidepid``."""
        return [name for name in ("filter", "pid_namespace", "hidepid") if getattr(self, name)]

    def as_dict(self) -> dict[str, bool]:
        return {"filter": self.filter, "pid_namespace": self.pid_namespace, "hidepid": self.hidepid}


def scope_limits(procfs: str = "/proc", filtered: bool = False) -> ScopeLimits:
    """What keeps a sweep of ``procfs`` by this process from listing every
    process (see :class:`ScopeLimits`)."""
    notes = []
    inode = pid_namespace_inode(procfs)
    in_namespace = inode is not None and inode != PROC_PID_INIT_INO
    if in_namespace:
        notes.append(
            "sealkit runs in a PID namespace of its own (a container?): processes outside it "
            "are not listed"
        )
    hidden = False
    options = proc_mount_options(procfs) or {}
    mode = options.get("hidepid", "off")
    if mode == "ptraceable":
        hidden = True
        notes.append(
            f"{procfs} is mounted hidepid=ptraceable: processes sealkit may not ptrace are "
            "not listed"
        )
    elif mode == "invisible":
        gid = int(options["gid"]) if options.get("gid", "").isdigit() else 0
        if gid != os.getegid() and gid not in os.getgroups():
            hidden = True
            notes.append(
                f"{procfs} is mounted hidepid=invisible and sealkit is not in its group "
                f"(gid {gid}): processes it may not ptrace are not listed"
            )
    if filtered:
        notes.append("filters chose which processes to audit")
    return ScopeLimits(filtered, in_namespace, hidden, tuple(notes))


class HostAudit(NamedTuple):
    """A sweep of one host.

    ``processes`` are the rows (processes that matched the filters and
    were read, or could not be: see :class:`ProcessAudit`), by pid.
    ``vanished`` counts processes that exited during the sweep,
    ``zombies`` those that had exited but were not reaped,
    ``kernel_threads`` tasks without a user address space; ``not_found``
    are pids asked for that no process had, ``unreached`` pids the sweep's
    total time budget ran out before reading. ``scope`` says what may be
    missing altogether.
    """

    host: str
    kernel: str
    started: float
    duration: float
    processes: tuple[ProcessAudit, ...]
    vanished: int
    kernel_threads: int
    filters: dict[str, Any] | None = None
    zombies: int = 0
    not_found: tuple[int, ...] = ()
    unreached: tuple[int, ...] = ()
    scope: ScopeLimits = ScopeLimits()

    @property
    def seen(self) -> int:
        return len(self.processes)

    @property
    def sealed(self) -> int:
        return sum(1 for p in self.processes if p.any_sealed)

    def _count(self, status: str) -> int:
        return sum(1 for p in self.processes if p.status == status)

    @property
    def denied(self) -> int:
        return self._count("denied")

    @property
    def cut_short(self) -> int:
        """Rows cut short (processes never reached are :attr:`unreached`)."""
        return self._count("cut_short")

    @property
    def changed(self) -> int:
        return self._count("changed")

    @property
    def sealed_mappings(self) -> int:
        return sum(p.sealed_mappings or 0 for p in self.processes)

    @property
    def sealed_bytes(self) -> int:
        return sum(p.sealed_bytes or 0 for p in self.processes)

    @property
    def complete(self) -> bool:
        """Whether every process that should have been audited was read."""
        return not (
            self.denied or self.cut_short or self.changed or self.unreached or self.scope.limited
        )

    def summary(self) -> str:
        """The one-line host summary."""
        line = (
            f"{self.host}: {self.seen} processes seen, {self.sealed} with sealed memory "
            f"({self.sealed_mappings} mappings, {human_size(self.sealed_bytes)}), "
            f"{self.denied} denied, {self.vanished} vanished, "
            f"{self.kernel_threads} kernel threads skipped"
        )
        extra = []
        if self.cut_short:
            extra.append(f"{self.cut_short} cut short")
        if self.unreached:
            extra.append(f"{len(self.unreached)} not reached before the time ran out")
        if self.changed:
            extra.append(f"{self.changed} changed program while read")
        if self.zombies:
            extra.append(f"{self.zombies} zombie" + ("s" if self.zombies > 1 else ""))
        if self.not_found:
            extra.append(f"{len(self.not_found)} not found")
        limited = [r for r in self.scope.reasons() if r != "filter"]
        if limited:
            extra.append("scope limited (" + ", ".join(limited) + ")")
        return line + ("; " + ", ".join(extra) if extra else "")


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


class _Sweep:
    """The readers and the watch over them (see the module docstring)."""

    def __init__(
        self,
        candidates: list[int],
        asked: bool,
        procfs: str,
        filters: _Filters,
        timeout: float | None,
        process_timeout: float | None,
    ) -> None:
        self.todo = deque(candidates)
        self.asked = asked
        self.procfs = procfs
        self.filters = filters
        self.layouts = FileLayouts()
        self.t0 = time.monotonic()
        self.deadline = None if timeout is None else self.t0 + timeout
        self.process_timeout = process_timeout
        self.lock = threading.Lock()
        self.outcomes: list[tuple[int, ProcessAudit | str]] = []
        # worker id -> (pid, when it started, its status once read)
        self.running: dict[int, tuple[int, float, TaskStatus | None]] = {}
        self.abandoned: set[int] = set()
        self.errors: list[BaseException] = []
        self.stopped = False
        self.threads: dict[int, threading.Thread] = {}
        self._ids = 0

    def limits(self, started: float) -> Limits:
        budget = None if self.process_timeout is None else started + self.process_timeout
        if self.deadline is not None and (budget is None or self.deadline < budget):
            return Limits(self.deadline, "the sweep's total time ran out", SMAPS_LIMIT)
        if budget is None:
            return Limits(None, "", SMAPS_LIMIT)
        return Limits(budget, f"its time budget of {self.process_timeout:g} s ran out", SMAPS_LIMIT)

    def work(self, wid: int) -> None:
        try:
            while True:
                with self.lock:
                    if self.stopped or wid in self.abandoned or not self.todo:
                        return
                    if self.deadline is not None and time.monotonic() > self.deadline:
                        return
                    pid = self.todo.popleft()
                    started = time.monotonic()
                    self.running[wid] = (pid, started, None)

                def seen(status: TaskStatus, pid: int = pid, started: float = started) -> None:
                    with self.lock:
                        if wid in self.running:
                            self.running[wid] = (pid, started, status)

                outcome = _audit_pid(
                    pid, self.procfs, self.filters, self.layouts, self.limits(started),
                    self.asked, seen,
                )  # fmt: skip
                with self.lock:
                    if wid in self.abandoned:
                        return  # reported cut short meanwhile
                    self.running.pop(wid, None)
                    self.outcomes.append((pid, outcome))
        except BaseException as exc:  # re-raised in the calling thread
            with self.lock:
                self.errors.append(exc)
                self.stopped = True

    def start_worker(self) -> None:
        self._ids += 1
        thread = threading.Thread(target=self.work, args=(self._ids,), daemon=True)
        self.threads[self._ids] = thread
        thread.start()

    def abandon_stuck(self, now: float) -> int:
        """Report reads stuck in the kernel as cut short; how many were left."""
        stuck = 0
        with self.lock:
            for wid, (pid, started, status) in list(self.running.items()):
                limits = self.limits(started)
                if limits.deadline is None or now < limits.deadline + _GRACE:
                    continue
                del self.running[wid]
                self.abandoned.add(wid)
                why = f"the kernel did not answer in time ({limits.why})"
                if status is None:
                    self.outcomes.append((pid, _blocked_row(pid, self.procfs, why)))
                else:
                    self.outcomes.append((pid, _row(status, "cut_short", None, None, why)))
                stuck += 1
            if len(self.abandoned) >= _MAX_ABANDONED:
                self.stopped = True  # too many stuck readers: what is left is unreached
        return stuck

    def run(self, jobs: int, progress: Callable[[int, int], None] | None) -> None:
        total = len(self.todo)
        for _ in range(min(jobs, max(total, 1))):
            self.start_worker()
        watching = self.deadline is not None or self.process_timeout is not None
        while True:
            with self.lock:
                alive = [
                    t
                    for wid, t in self.threads.items()
                    if wid not in self.abandoned and t.is_alive()
                ]
            if not alive:
                break
            if watching or progress is not None:
                alive[0].join(_POLL)
            else:
                alive[0].join()
            now = time.monotonic()
            if watching:
                for _ in range(self.abandon_stuck(now)):
                    if not self.stopped:
                        self.start_worker()
                if self.deadline is not None and now > self.deadline + _GRACE:
                    self.abandon_stuck(float("inf"))
                    break
            if progress is not None:
                progress(len(self.outcomes), total)
        if progress is not None:
            progress(len(self.outcomes), total)  # the last word: where it ended
        if self.errors:
            raise self.errors[0]


def _blocked_row(pid: int, procfs: str, why: str) -> ProcessAudit | str:
    """A process whose reading never got as far as its name: its owner is
    its directory's."""
    try:
        uid = os.stat(os.path.join(procfs, str(pid))).st_uid
    except OSError:
        return _VANISHED
    return ProcessAudit(pid, None, uid, _user_name(uid), "cut_short", None, None, why)


def scan_host(
    *,
    pids: Iterable[int] | None = None,
    users: Collection[int] | None = None,
    comm: str | None = None,
    procfs: str = "/proc",
    jobs: int | None = None,
    progress: Callable[[int, int], None] | None = None,
    timeout: float | None = None,
    process_timeout: float | None = DEFAULT_PROCESS_TIMEOUT,
) -> HostAudit:
    """Sweep the processes of this host (or only ``pids``).

    ``users`` keeps processes whose effective uid is listed; ``comm`` keeps
    those whose command name matches the shell pattern (``fnmatch``, case
    sensitive). ``jobs`` reader threads (default :func:`default_jobs`: one
    per idle CPU). ``timeout`` bounds the whole sweep and
    ``process_timeout`` each process, in seconds (``None``: no bound); what
    they cut short is reported as such. ``progress(done, total)`` is
    called from the calling thread now and then. Never raises for a
    process that exits, may not be read, or does not answer.
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
    for name, value in (("timeout", timeout), ("process_timeout", process_timeout)):
        if value is not None and (
            isinstance(value, bool) or not isinstance(value, int | float) or not value >= 0
        ):
            raise ArgumentError(f"{name} must be a number of seconds >= 0 or None, not {value!r}")
    started = time.time()
    t0 = time.perf_counter()
    try:
        candidates = _list_pids(procfs) if pid_list is None else sorted(set(pid_list))
    except OSError as exc:
        raise ArgumentError(f"cannot list {procfs}: {exc.strerror}") from None
    filters = _Filters(None if uid_list is None else frozenset(uid_list), comm)
    sweep = _Sweep(candidates, pid_list is not None, procfs, filters, timeout, process_timeout)
    sweep.run(jobs if jobs is not None else default_jobs(), progress)
    with sweep.lock:
        outcomes = list(sweep.outcomes)
        unreached = sorted(sweep.todo)
        sweep.stopped = True
    rows = sorted((o for _, o in outcomes if isinstance(o, ProcessAudit)), key=lambda p: p.pid)
    counts = Counter(o for _, o in outcomes if isinstance(o, str))
    filtered = pids is not None or users is not None or comm is not None
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
        zombies=counts[_ZOMBIE],
        not_found=tuple(sorted(pid for pid, o in outcomes if o == _NOT_FOUND)),
        unreached=tuple(unreached),
        scope=scope_limits(procfs, filtered),
    )

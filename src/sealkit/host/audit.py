"""What is sealed on this host: every process, and each mapping's kind.

:func:`scan_host` sweeps ``/proc``: for each process its pid, user,
command, number of mappings, and the sealed ones (``VmFlags: sl`` in
``/proc/PID/smaps``, spec linux-mseal §5) with their kind. Processes that
exit during the sweep are dropped and counted (*vanished*); processes whose
smaps may not be read are reported as *denied*, never as "not sealed".
Kernel threads have no user address space and are counted, not shown.

:func:`process_maps` gives every mapping of one process, classified
(``sealkit maps``). :func:`to_json` and :func:`to_prometheus` render a
sweep; :func:`check_requirements` evaluates ``--require``.

Kinds, and how they are told apart (first rule that matches):

==========  ================================================================
``system``  a kernel-provided mapping: ``[vdso]``, ``[vvar]``,
            ``[vvar_vclock]``, ``[vsyscall]``, ``[uprobes]``, ``[sigpage]``,
            ``[vectors]`` (sealed by ``CONFIG_MSEAL_SYSTEM_MAPPINGS``)
``heap``    ``[heap]`` (the brk area)
``stack``   ``[stack]`` (the main thread's stack)
``shm``     shared memory: a shared mapping (``s`` in the permissions) of
            shared anonymous memory, SysV or POSIX shared memory, or a memfd
            (told apart by the names the kernel gives them)
``guard``   a private mapping with no access (``---p``): the loader's holes
            between an object's segments, guard pages, reservations
``text``    a private file mapping with execute permission
``data``    a private file mapping with write permission, or anonymous
            memory that is an ELF object's ``.bss`` (past ``p_filesz`` up
            to ``p_memsz`` of its writable ``PT_LOAD``)
``relro``   a read-only private mapping of an ELF object that lies inside
            its ``PT_GNU_RELRO`` range (data the loader made read-only
            after relocation)
``rodata``  any other read-only private mapping of a loaded ELF object
``file``    a mapping of a file that is not an ELF object placed by the
            loader: an ``mmap`` of a data file, private or shared
``anon``    other private anonymous memory
==========  ================================================================

Text, rodata, RELRO and data are told apart with the permissions, then the
file's ELF program headers (:func:`sealkit._os.elf.load_layout`): the mapping's
file offset gives its ``PT_LOAD`` and the load bias, and the bias places
``PT_GNU_RELRO`` and ``.bss`` in the address space. The file is opened
through ``/proc/PID/map_files`` (the very file mapped, root only), else
``/proc/PID/root/PATH`` checked against the mapping's inode. When neither
can be read, a heuristic stands in: a read-only mapping directly followed by
a writable one of the same file is RELRO, one of a file that also has an
executable mapping is rodata, others are ``file``; anonymous memory right
after a writable file mapping is ``.bss`` data.

Only processes with a sealed mapping are classified (the rest of a sweep
counts ``VmFlags`` lines and looks for ``sl``, :func:`sealkit._os.procfs.scan_smaps`).
"""

# ruff: noqa: PLC0415 (elf is imported lazily: most sweeps never classify a file mapping)

from __future__ import annotations

import fnmatch
import os
import pwd
import threading
import time
from collections import Counter, deque
from collections.abc import Callable, Collection, Iterable, Sequence
from functools import lru_cache
from typing import Any, Final, Literal, NamedTuple

from .._os.procfs import ProcessDir, ScannedVmas, TaskStatus, Vma, parse_smaps, scan_smaps
from ..errors import (
    AccessDeniedError,
    ArgumentError,
    ArgumentTypeError,
    ParseError,
    ProcessGoneError,
)
from ..flags import PAGE_SIZE
from ..text import printable

__all__ = [
    "KINDS",
    "SYSTEM_MAPPINGS",
    "HostAudit",
    "MappedRegion",
    "ProcessAudit",
    "ProcessMaps",
    "Requirement",
    "RequirementResult",
    "SealedMapping",
    "check_requirements",
    "classify",
    "default_jobs",
    "human_size",
    "parse_requirement",
    "process_maps",
    "scan_host",
    "to_json",
    "to_prometheus",
]

KINDS: Final = (
    "text", "rodata", "relro", "data", "file", "heap", "stack", "anon", "shm", "system", "guard",
)  # fmt: skip
"""Every kind a mapping can be classified as (see the module docstring)."""

SYSTEM_MAPPINGS: Final = frozenset(
    {"[vdso]", "[vvar]", "[vvar_vclock]", "[vsyscall]", "[uprobes]", "[sigpage]", "[vectors]"}
)
"""Names of kernel-provided mappings (spec other-systems §7.2)."""

_PAGE_MASK: Final = PAGE_SIZE - 1
# How shared memory names itself in /proc/PID/maps: POSIX shm, SysV shm
# (ipc/shm.c "SYSV%08x"), memfd (mm/memfd.c "memfd:"), shared anonymous memory
# (mm/shmem.c shmem_zero_setup: "/dev/zero (deleted)", or [anon_shmem:NAME]).
_SHM_PATHS: Final = ("/dev/shm/", "/SYSV", "/memfd:", "/dev/zero", "[anon_shmem")


def _down(value: int) -> int:
    return value & ~_PAGE_MASK


def _up(value: int) -> int:
    return (value + _PAGE_MASK) & ~_PAGE_MASK


# --- classification ---------------------------------------------------------

# What a file behind a mapping turned out to be: its program headers, "not-elf"
# (a data file), or "unknown" (unreadable, replaced, gone).
FileLayout = Any  # elf.LoadLayout | Literal["not-elf", "unknown"]; elf is imported lazily
LayoutOf = Callable[[Vma], FileLayout]


def _is_file(vma: Vma) -> bool:
    return vma.inode != 0 and not vma.path.startswith("[")


def _object_bias(vmas: Sequence[Vma], i: int, layout: Any) -> int | None:
    """The load bias of the ELF object that mapping ``i`` belongs to, or
    ``None`` when it does not sit inside a placement of that object.

    The loader maps the first ``PT_LOAD`` first, at the object's lowest
    address, from file offset ``p_offset`` rounded down; the nearest such
    mapping of the same file at or below ``i`` fixes the bias, and mapping
    ``i`` must fall inside the object's span (its ``PT_LOAD`` s) at that bias.
    """
    if not layout.loads:
        return None
    first = layout.loads[0]
    key = (vmas[i].dev, vmas[i].inode)
    for j in range(i, -1, -1):
        v = vmas[j]
        if (v.dev, v.inode) == key and v.offset == _down(first.offset):
            bias = v.start - _down(first.vaddr)
            hi = _up(bias + max(s.vaddr + s.memsz for s in layout.loads))
            if _placed(vmas, j, key, bias, hi, layout):
                return bias if vmas[i].start < hi else None
    return None


def _placed(
    vmas: Sequence[Vma], j: int, key: tuple[str, int], bias: int, hi: int, layout: Any
) -> bool:
    """Whether mapping ``j`` starts a placement of the object by the loader:
    another of its ``PT_LOAD`` s is mapped from the same file where the bias
    puts it. The file mmapped as data (``mmap(fd, offset 0)``, a program
    reading its own ``/proc/self/exe``) has no such neighbour."""
    others = {(_down(bias + s.vaddr), _down(s.offset)) for s in layout.loads[1:]}
    if not others:
        return True  # a single PT_LOAD: nothing to tell them apart
    k = j + 1
    while k < len(vmas) and vmas[k].start < hi:
        v = vmas[k]
        if (v.dev, v.inode) == key and (v.start, v.offset) in others:
            return True
        k += 1
    return False


def classify(
    vmas: Sequence[Vma],
    layout_of: LayoutOf | None = None,
    indices: Iterable[int] | None = None,
) -> list[str]:
    """The kind of mappings of one process, per the rules in the module
    docstring: of every mapping, or of those at ``indices`` (the others are
    context). ``layout_of(vma)`` returns the program headers of the file a
    mapping maps (:class:`sealkit._os.elf.LoadLayout`), ``"not-elf"`` or
    ``"unknown"``; without it the heuristics apply. Files are looked up only
    for the mappings being classified and the neighbours they need.
    """
    # A ScannedVmas builds its VMAs on demand: checking each would build all.
    if not isinstance(vmas, ScannedVmas) and (
        not isinstance(vmas, Sequence) or not all(isinstance(v, Vma) for v in vmas)
    ):
        raise ArgumentTypeError("vmas must be a sequence of procfs.Vma")
    if layout_of is not None and not callable(layout_of):
        raise ArgumentTypeError("layout_of must be callable or None")
    wanted = range(len(vmas)) if indices is None else _int_list(indices, "indices", 0)
    if any(i >= len(vmas) for i in wanted):
        raise ArgumentError("indices must point into vmas")
    cache: dict[int, FileLayout] = {}

    def layout(j: int) -> FileLayout:
        if j not in cache:
            v = vmas[j]
            cache[j] = layout_of(v) if (layout_of is not None and _is_file(v)) else "unknown"
        return cache[j]

    exec_files: set[tuple[str, int]] | None = None

    def executable_files() -> set[tuple[str, int]]:
        nonlocal exec_files
        if exec_files is None:
            exec_files = {(v.dev, v.inode) for v in vmas if _is_file(v) and v.executable}
        return exec_files

    return [_kind(vmas, i, layout, executable_files) for i in wanted]


def _kind(
    vmas: Sequence[Vma],
    i: int,
    layout_at: Callable[[int], FileLayout],
    executable_files: Callable[[], set[tuple[str, int]]],
) -> str:
    vma = vmas[i]
    path = vma.path
    if path in SYSTEM_MAPPINGS:
        return "system"
    if path == "[heap]":
        return "heap"
    if path.startswith("[stack") or (vma.vmflags is not None and "gd" in vma.vmflags):
        # gd (VM_GROWSDOWN) marks the main stack even where mprotect or mseal
        # split off a piece that lost the [stack] name
        return "stack"
    if vma.shared:
        return "shm" if path.startswith(_SHM_PATHS) or not _is_file(vma) else "file"
    if vma.perms.startswith("---"):
        return "guard"
    if _is_file(vma):
        return _file_kind(vmas, i, layout_at(i), executable_files)
    return _anon_kind(vmas, i, layout_at)


def _file_kind(
    vmas: Sequence[Vma],
    i: int,
    layout: FileLayout,
    executable_files: Callable[[], set[tuple[str, int]]],
) -> str:
    vma = vmas[i]
    if layout == "not-elf":
        return "file"
    bias = None if isinstance(layout, str) else _object_bias(vmas, i, layout)
    if bias is None and not isinstance(layout, str):
        return "file"  # an ELF file, but not placed by the loader here: plain data
    if bias is not None:
        if not any(
            _down(bias + s.vaddr) <= vma.start < _up(bias + s.vaddr + s.memsz) for s in layout.loads
        ):
            return "file"  # the file mapped outside its object: plain data
        if vma.executable:
            return "text"
        if vma.writable:
            return "data"
        relro = layout.relro
        # ld.so's _dl_protect_relro: start and end both rounded down.
        if (
            relro is not None
            and _down(bias + relro.vaddr) <= vma.start
            and vma.end <= _down(bias + relro.vaddr + relro.memsz)
        ):
            return "relro"
        return "rodata"
    # Program headers unknown: the heuristic.
    if vma.executable:
        return "text"
    if vma.writable:
        return "data"
    nxt = vmas[i + 1] if i + 1 < len(vmas) else None
    if (
        nxt is not None
        and nxt.start == vma.end
        and (nxt.dev, nxt.inode) == (vma.dev, vma.inode)
        and nxt.writable
    ):
        return "relro"
    return "rodata" if (vma.dev, vma.inode) in executable_files() else "file"


def _anon_kind(vmas: Sequence[Vma], i: int, layout_at: Callable[[int], FileLayout]) -> str:
    """``"data"`` for an ELF object's ``.bss``, else ``"anon"``.

    The loader maps ``.bss`` as anonymous memory right after the last file
    page of the writable ``PT_LOAD`` (elf/dl-map-segments.h): walk back over
    contiguous anonymous pieces (mprotect or mseal may have split it) to the
    file mapping before them.
    """
    vma = vmas[i]
    j = i - 1
    while (
        j >= 0
        and vmas[j].end == vmas[j + 1].start
        and not _is_file(vmas[j])
        and not vmas[j].path
        and not vmas[j].shared
    ):
        j -= 1
    if j < 0 or vmas[j].end != vmas[j + 1].start or not _is_file(vmas[j]) or vmas[j].shared:
        return "anon"
    layout = layout_at(j)
    if layout == "not-elf":
        return "anon"
    if isinstance(layout, str):
        # Unknown program headers: .bss directly follows a writable file
        # mapping, in one piece or split into several by mprotect or mseal.
        return "data" if vmas[j].writable else "anon"
    bias = _object_bias(vmas, j, layout)
    if bias is None:
        return "anon"
    for seg in layout.loads:
        if seg.memsz > seg.filesz and seg.flags & 2:  # PF_W
            lo = _up(bias + seg.vaddr + seg.filesz)
            hi = _up(bias + seg.vaddr + seg.memsz)
            if lo <= vma.start and vma.end <= hi:
                return "data"
    return "anon"


class _Layouts:
    """Program headers by file, shared by the sweep's threads.

    Keyed by (device, inode): a library mapped by a hundred processes is
    read once. Concurrent first reads of the same file may both read it;
    the answers are equal, so the race is harmless.
    """

    def __init__(self) -> None:
        self._cache: dict[tuple[str, int], FileLayout] = {}

    def lookup(self, proc: ProcessDir, vma: Vma) -> FileLayout:
        key = (vma.dev, vma.inode)
        if key in self._cache:
            return self._cache[key]
        from .._os import elf

        result: FileLayout = "unknown"
        candidates = [f"{proc.task}map_files/{vma.start:x}-{vma.end:x}"]
        path = vma.path.removesuffix(" (deleted)")
        if path.startswith("/"):
            candidates.append(f"{proc.task}root{path}")
        for name in candidates:
            try:
                result = elf.load_layout(name, dir_fd=proc.fd, inode=vma.inode)
                break
            except ParseError as exc:
                if exc.message in ("not an ELF file", elf.NOT_REGULAR):
                    result = "not-elf"
                    break
            except (OSError, ValueError, OverflowError):
                # Unreadable, or malformed beyond what load_layout checks: a
                # crafted file must not stop the host-wide sweep.
                continue
        if result != "unknown":
            self._cache[key] = result
        return result


# --- one process -------------------------------------------------------------


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


def _audit_pid(pid: int, procfs: str, filters: _Filters, layouts: _Layouts) -> ProcessAudit | str:
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


# --- the sweep --------------------------------------------------------------


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


def _int_list(values: object, name: str, minimum: int) -> list[int]:
    if isinstance(values, str | bytes) or not isinstance(values, Iterable):
        raise ArgumentTypeError(f"{name} must be an iterable of ints, not {type(values).__name__}")
    out = list(values)
    for value in out:
        if type(value) is not int:
            raise ArgumentTypeError(f"{name} must hold ints, not {type(value).__name__}")
        if value < minimum or value >= 1 << 32:
            raise ArgumentError(f"{name}: {value} is out of range")
    return out


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
    pid_list = None if pids is None else _int_list(pids, "pids", 1)
    uid_list = None if users is None else _int_list(users, "users", 0)
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
    layouts = _Layouts()
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


# --- one process, every mapping (sealkit maps) ------------------------------


class MappedRegion(NamedTuple):
    """One mapping of :func:`process_maps`: the VMA and its kind."""

    vma: Vma
    kind: str

    def as_dict(self) -> dict[str, Any]:
        v = self.vma
        return {
            "start": f"{v.start:#x}",
            "end": f"{v.end:#x}",
            "size": v.size,
            "perms": v.perms,
            "sealed": v.sealed,
            "kind": self.kind,
            "path": v.path,
            "offset": v.offset,
            "inode": v.inode,
            "vmflags": sorted(v.vmflags or ()),
        }


class ProcessMaps(NamedTuple):
    """Every mapping of one process, classified."""

    pid: int
    command: str
    regions: tuple[MappedRegion, ...]

    @property
    def sealed(self) -> tuple[MappedRegion, ...]:
        return tuple(r for r in self.regions if r.vma.sealed)

    def as_dict(self) -> dict[str, Any]:
        return {
            "schema": "sealkit.maps/1",
            "pid": self.pid,
            "command": self.command,
            "mappings": len(self.regions),
            "sealed_mappings": len(self.sealed),
            "sealed_bytes": sum(r.vma.size for r in self.sealed),
            "regions": [r.as_dict() for r in self.regions],
        }


def process_maps(pid: int | str = "self", procfs: str = "/proc") -> ProcessMaps:
    """Every mapping of process ``pid`` (``"self"``: the calling process),
    with its kind. Raises :class:`ProcessGoneError` or
    :class:`AccessDeniedError`.
    """
    with ProcessDir(pid, procfs) as proc:
        status = proc.status()
        text = proc.smaps(status.state).decode("utf-8", "surrogateescape")
        vmas = parse_smaps(text, f"{procfs}/{proc.pid}/smaps")
        layouts = _Layouts()
        kinds = classify(vmas, lambda v: layouts.lookup(proc, v))
    return ProcessMaps(
        status.pid,
        status.name,
        tuple(MappedRegion(v, k) for v, k in zip(vmas, kinds, strict=True)),
    )


# --- requirements (--require) ------------------------------------------------


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


# --- renderings --------------------------------------------------------------


def human_size(size: int) -> str:
    """``4096`` -> ``"4.0 KiB"``: sizes for people (tables, pictures)."""
    value = float(size)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB", "PiB", "EiB"):
        if value < 1024 or unit == "EiB":
            return f"{int(value)} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{size} B"  # pragma: no cover - the loop always returns


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

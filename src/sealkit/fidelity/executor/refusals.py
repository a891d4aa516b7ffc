"""What the kernel executor will not run, decided before any call runs.

A trace that would touch anything outside the arena, or holds an argument
no register can carry (outside ``[-2**63, 2**64)``; the text form refuses
those when parsed), is refused **before any call runs**, with
:class:`OutsideArenaError` naming the step
(:func:`check_trace`). Far ranges that cannot hit a mapping are allowed:
entirely at or above ``TASK_SIZE`` (the kernel half, the vsyscall page),
entirely below ``vm.mmap_min_addr`` (for calls that do not create a
mapping), and ranges whose end wraps past 2**64 (every call rejects those
with EINVAL/ENOMEM before looking at mappings). The worker re-checks with
its own addresses before running, since "wraps" depends on the base.
"Below ``vm.mmap_min_addr``" is widened to the first MiB, which every runner
verifies is empty at start. ``mseal`` and ``munmap`` ranges that start in the
window and run past ``TASK_SIZE`` are allowed too: both refuse such a range
before changing anything (scenario probe/1.5).

The calls sealing does not cover (issue 14) have their own rules:

* the writers (``pwrite_mem``, ``vm_writev``, ``poke``) write their whole
  byte range inside the window (or far away, where nothing is mapped), and
  at most ``MAX_PAGES`` pages of data; a forced write would otherwise reach
  the arena's ``PROT_NONE`` guard pages, which it can write;
* ``pwrite_mem`` runs only where the kernel's ``proc_mem.force_override`` is
  ``always`` (:mod:`sealkit._os.procmem`): elsewhere the snapshots, which
  read ``PROT_NONE`` pages through ``/proc/self/mem``, would not see them;
* the file calls act only on the trace's own files (a name in the trace is
  a fresh unnamed file of the runner), write at most ``MAX_PAGES`` pages,
  and stay below 1 TiB: beyond that the answer depends on the filesystem
  (ext4 refuses sizes past 16 TiB with EFBIG, tmpfs does not);
* a mapping placed outside the window (``mmap`` without ``MAP_FIXED``) is at
  most ``MAX_PAGES`` long: ``MAP_POPULATE``, ``MAP_LOCKED`` or an earlier
  ``mlockall(MCL_FUTURE)`` would fault all of it in;
* an anonymous ``MAP_HUGETLB`` mapping is checked with the length the kernel
  maps: ``ksys_mmap_pgoff()`` rounds it up to the huge page size
  (``MAP_HUGE_*`` bits, else the default size, ``Hugepagesize`` in
  ``/proc/meminfo``), so one page asked for at a ``MAP_FIXED`` address in the
  window is 512 pages (2 MiB) where huge pages are reserved, and a hint is
  first moved up to a huge page boundary (``generic_hugetlb_get_unmapped_area()``).
  No window holds a huge page (at most ``MAX_PAGES`` pages), so such a mapping
  only runs placed elsewhere, at most one huge page long (it comes from the
  pool the administrator reserved), and is unmapped after the trace with that
  length; a file mapping with ``MAP_HUGETLB`` is ``EINVAL`` (the trace's files
  are not on hugetlbfs);
* ``mlockall`` locks (and with ``MCL_CURRENT`` faults in) the whole runner,
  which is harmless to it; the runner calls ``munlockall`` after the trace.
* the model's caller is root (``CAP_IPC_LOCK``: no ``RLIMIT_MEMLOCK``).
  Without that capability the kernel holds every call that locks memory
  (``mlock``, ``mlock2``, ``mlockall``, ``mmap(MAP_LOCKED)``) to
  ``RLIMIT_MEMLOCK`` counted over the *whole runner*, an answer that depends
  on the runner rather than on the trace: there such calls are refused
  unless the limit is unlimited (:func:`host_refusal`; ``sealkit conform``
  reports the scenario as not run, and the fuzzer does not generate them).
"""

from __future__ import annotations

import operator
import resource
from collections.abc import Callable, Sequence
from dataclasses import dataclass, fields
from typing import Any, Final

from ..._os import syscalls
from ...errors import UnsafeTargetError
from ...flags import PAGE_SIZE, Madv, MapFlag, MclFlag, MremapFlag
from ...ops import (
    FILE_PAGES,
    MASK64,
    MODEL_BASES,
    Bases,
    Brk,
    FilePwrite,
    Fork,
    Ftruncate,
    Madvise,
    MemoryWrite,
    Mimmutable,
    Mlock,
    Mlockall,
    Mmap,
    Mremap,
    Mseal,
    MsealSplit,
    MsealV1,
    MsealV3,
    Munlockall,
    Munmap,
    Op,
    ProcessMadvise,
    Punch,
    PwriteMem,
    Step,
    format_op,
    iter_ranges,
)
from ..target import MAX_PAGES, Window, plain_ops, uses_heap

__all__ = [
    "MAX_FILES",
    "MAX_FORKS",
    "OutsideArenaError",
    "check_trace",
    "host_refusal",
    "refusal",
    "trace_refusal",
]

PS: Final = PAGE_SIZE

_POISON: Final = frozenset({Madv.HWPOISON, Madv.SOFT_OFFLINE})
_LOW_AREA: Final = 1 << 20
_NEG: Final = 1 << 63
FILE_LIMIT: Final = 1 << 40
"""File sizes and offsets the executor runs: below 1 TiB (beyond, filesystems differ)."""
_MAX_DATA: Final = MAX_PAGES * PS
_proc_mem: tuple[str, str] | None = None


def proc_mem_force() -> tuple[str, str]:
    """The running kernel's ``proc_mem.force_override`` and how it was found (cached)."""
    global _proc_mem
    if _proc_mem is None:
        from ..._os import procmem  # noqa: PLC0415 (only traces with pwrite_mem need it)

        _proc_mem = procmem.force_override()
    return _proc_mem


_CAP_IPC_LOCK: Final = 14
_MCL_VALID: Final = int(MclFlag.CURRENT | MclFlag.FUTURE | MclFlag.ONFAULT)


def _memlock() -> tuple[bool, int]:
    """Whether this process has ``CAP_IPC_LOCK``, and its ``RLIMIT_MEMLOCK``
    soft limit (``resource.RLIM_INFINITY`` for none). Read on each call: a
    test or a caller may change the limit."""
    caps = 0
    try:
        with open("/proc/self/status") as fh:
            for line in fh:
                if line.startswith("CapEff:"):
                    caps = int(line.split()[1], 16)
                    break
    except (OSError, ValueError, IndexError):
        pass
    return bool(caps >> _CAP_IPC_LOCK & 1), resource.getrlimit(resource.RLIMIT_MEMLOCK)[0]


def _lock_refusal(op: Op) -> str | None:
    """Calls that lock memory, where ``RLIMIT_MEMLOCK`` applies to the caller.
    The kernel counts the *whole process* against the limit unless
    ``capable(CAP_IPC_LOCK)`` (mm/mlock.c): ``do_mlock()`` and ``mlockall``
    refuse with EPERM when the limit is 0 (``can_do_mlock()``) and ENOMEM
    past it (``mlockall(MCL_CURRENT)`` compares the whole ``total_vm``, which
    is always past 8 MiB for a Python runner); ``mmap(MAP_LOCKED)`` and every
    mapping made after ``mlockall(MCL_FUTURE)`` go through
    ``mlock_future_ok()``. Arguments the kernel rejects first (EINVAL) are
    compared as usual."""
    if isinstance(op, Mlockall):
        flags = int(op.flags) & 0xFFFFFFFF  # the syscall takes an int
        if not flags or flags & ~_MCL_VALID or flags == MclFlag.ONFAULT:
            return None
        call = "mlockall"
    elif isinstance(op, Mlock):
        call = "mlock2" if op.onfault else "mlock"
    elif isinstance(op, Mmap) and op.flags & MapFlag.LOCKED:
        call = "mmap(MAP_LOCKED)"
    else:
        return None
    capable, limit = _memlock()
    if capable or limit == resource.RLIM_INFINITY:
        return None
    return (
        f"{call} without CAP_IPC_LOCK is held to RLIMIT_MEMLOCK ({limit // 1024} KiB here) "
        "counted over the whole runner process, so the kernel's answer depends on the "
        "runner, not on the trace; the model's caller is root: run as root or with "
        "`ulimit -l unlimited`"
    )


def host_refusal(op: Op) -> str | None:
    """Why this host cannot hold ``op`` to the model because of the caller's
    privileges rather than the trace (see the module docstring), or None."""
    return _lock_refusal(op)


def _file_refusal(op: Op) -> str | None:
    """Why a file call is refused (see the module docstring), or None."""
    ro = op.file_ro  # type: ignore[attr-defined]
    if isinstance(op, FilePwrite):
        pos, count = op.offset & MASK64, op.length & MASK64
        if pos >= _NEG or ro:
            return None  # EINVAL / EBADF before the data is looked at
        if count > _MAX_DATA:
            return f"writes {count:#x} bytes: at most {MAX_PAGES} pages of data"
        end = pos + count
    elif isinstance(op, Ftruncate):
        end = op.length & MASK64
        if end >= _NEG or ro:
            return None  # EINVAL
    else:
        assert isinstance(op, Punch)
        offset, length = op.offset & MASK64, op.length & MASK64
        if offset >= _NEG or length >= _NEG or length == 0 or ro:
            return None  # EINVAL / EBADF
        end = offset + length
    if FILE_LIMIT < end < _NEG:
        return (
            f"reaches file offset {end:#x}: past 1 TiB the answer depends on the filesystem "
            "(ext4 EFBIG past 16 TiB, tmpfs none)"
        )
    return None


_ANON_FIXED: Final = int(MapFlag.FIXED | MapFlag.FIXED_NOREPLACE)
_HUGE_SHIFT: Final = 26  # MAP_HUGE_SHIFT, include/uapi/asm-generic/hugetlb_encode.h
_HUGE_MASK: Final = 0x3F
_default_huge: int | None = None


def _default_huge_size() -> int:
    """The default huge page size (``Hugepagesize`` in ``/proc/meminfo``), cached;
    1 GiB, the largest x86_64 has, where it cannot be read (the safe side)."""
    global _default_huge
    if _default_huge is None:
        size = 1 << 30
        try:
            with open("/proc/meminfo", "rb") as fh:
                for line in fh:
                    if line.startswith(b"Hugepagesize:"):
                        size = int(line.split()[1]) * 1024
                        break
        except (OSError, ValueError, IndexError):
            pass
        _default_huge = max(size, PS)
    return _default_huge


def huge_page_size(flags: int) -> int | None:
    """The unit ``ksys_mmap_pgoff()`` rounds an ``mmap`` length up to when
    ``flags`` ask for an anonymous ``MAP_HUGETLB`` mapping (``len =
    ALIGN(len, huge_page_size(hs))``, ``hs = hstate_sizelog(flags >>
    MAP_HUGE_SHIFT)``), or None for any other mmap. A size the kernel has no
    pool for is EINVAL there, before anything is mapped."""
    flags &= MASK64
    if not flags & MapFlag.HUGETLB or not flags & MapFlag.ANONYMOUS:
        return None  # a file with MAP_HUGETLB that is not on hugetlbfs: EINVAL
    log = (flags >> _HUGE_SHIFT) & _HUGE_MASK
    return max(1 << log, PS) if log else _default_huge_size()


def mmap_length(flags: int, length: int) -> int:
    """The length the kernel maps for ``mmap(..., length, ..., flags, ...)``:
    rounded up to pages, or to huge pages for ``MAP_HUGETLB`` (may pass 2**64,
    where the kernel fails the call)."""
    length &= MASK64
    unit = huge_page_size(flags) or PS
    return (length + unit - 1) // unit * unit


class OutsideArenaError(UnsafeTargetError):
    """A trace names memory outside the executor's arena (or a call the
    executor will not make, such as ``MADV_HWPOISON``). Raised before any call
    of the trace runs. ``step`` is the 0-based index, ``op`` the call,
    ``reason`` why.
    """

    def __init__(self, step: int, op: Op, reason: str) -> None:
        super().__init__(step, op, reason)
        self.step = step
        self.op = op
        self.reason = reason

    def __reduce__(self) -> tuple[object, ...]:
        return (type(self), (self.step, self.op, self.reason))

    def __str__(self) -> str:
        try:
            call = format_op(self.op).strip()
        except ValueError:  # an Op built in Python with a number str() refuses to print
            call = self.op.NAME
        return f"step {self.step + 1} ({call}): {self.reason}"


def _read_int(path: str, default: int) -> int:
    try:
        with open(path, "rb") as fh:
            return int(fh.read().split()[0])
    except (OSError, ValueError, IndexError):
        return default


def _task_size() -> int:
    """The top of user space: ``TASK_SIZE`` (x86_64 4-level paging: 2**47 - 4096).
    Larger (safer) values where user space may be larger (LA57, other arches)."""
    if syscalls.ARCH != "x86_64":
        return (1 << 56) - PS
    try:
        with open("/proc/cpuinfo", "rb") as fh:
            for line in fh:
                if line.startswith(b"flags"):
                    return (1 << 56) - PS if b" la57" in line else (1 << 47) - PS
    except OSError:
        pass
    return (1 << 56) - PS


@dataclass(frozen=True, slots=True)
class Limits:
    task_size: int
    min_addr: int
    """Below this nothing is mapped: ``max(vm.mmap_min_addr, 1 MiB)``, verified
    by every runner at start (PIE interpreters live far above it), and the
    executor never creates a mapping there."""


_LIMITS: Limits | None = None


def limits() -> Limits:
    global _LIMITS
    if _LIMITS is None:
        # mmap_min_addr: below it nothing can be mapped by an unprivileged
        # process; the executor never *creates* mappings there either (root
        # can), so non-creating calls there cannot hit anything.
        _LIMITS = Limits(
            _task_size(), max(_read_int("/proc/sys/vm/mmap_min_addr", 4096), _LOW_AREA)
        )
    return _LIMITS


def _span_refusal(
    addr: int, length: int, creates: bool, win: Window, bases: Bases, heap: bool, lim: Limits,
    prechecked: bool = False,
) -> str | None:  # fmt: skip
    """Why touching ``[addr, addr+length)`` (page-rounded outwards) is refused, or None.

    ``prechecked``: the call refuses, before changing anything, any range that
    runs past ``TASK_SIZE`` (mseal: range_contains_unmapped, docs/reference/linux.md rule 2;
    munmap: ``len > TASK_SIZE - start`` in do_vmi_munmap)."""
    addr &= MASK64
    length &= MASK64
    start = addr & ~(PS - 1)
    end = addr + length
    end_r = (end + PS - 1) & ~(PS - 1)
    if end_r >= 1 << 64:
        # addr+len (or its page-aligned end) overflows: munmap, mprotect,
        # madvise, mseal, mlock, mremap and mmap all reject it before looking
        # at a VMA (their `end < start` / `len > TASK_SIZE - start` checks).
        return None
    if end_r <= start:
        return None  # an empty range: no page is looked at
    if start >= lim.task_size:
        return None  # kernel half or above user space: never a VMA
    if end_r <= lim.min_addr and not creates:
        return None
    p_lo = bases.arena
    in_p = p_lo <= start < p_lo + win.pages * PS
    in_h = heap and bases.heap <= start < bases.heap + win.heap_pages * PS
    if (in_p or in_h) and prechecked and end_r > lim.task_size:
        return None
    if in_p and end_r <= p_lo + win.pages * PS:
        return None
    if in_h and end_r <= bases.heap + win.heap_pages * PS:
        return None
    where = f"[{start:#x}, {end_r:#x})"
    return (
        f"{'maps' if creates else 'touches'} {where}, outside the window "
        f"(p0..p{win.pages}" + (f", h0..h{win.heap_pages}" if heap else "") + ")"
    )


_ARG_GETTERS: dict[type[Op], Callable[[Op], tuple[Any, ...]]] = {}


def _arg_getter(kind: type[Op]) -> Callable[[Op], tuple[Any, ...]]:
    names = [f.name for f in fields(kind) if f.name != "ranges"]
    if not names:
        return lambda op: ()
    get = operator.attrgetter(*names)
    return (lambda op: (get(op),)) if len(names) == 1 else get


def _argument_refusal(op: Op) -> str | None:
    """Why an argument of ``op`` cannot reach a system call (a register holds
    64 bits; negatives go as two's complement, as in ``syscalls._u64``), or
    None. The text form refuses such values when parsed (ops._fit); an Op
    built in Python may still hold them."""
    kind = type(op)
    getter = _ARG_GETTERS.get(kind)
    if getter is None:
        getter = _ARG_GETTERS[kind] = _arg_getter(kind)
    values = getter(op)
    if kind is ProcessMadvise:
        values += tuple(v for r in op.ranges for v in r)  # type: ignore[attr-defined]
    for value in values:
        if type(value) is not int or -(1 << 63) <= value <= MASK64:
            continue  # str/None/bool fields; ints of the right size
        names = [f.name for f in fields(kind) if f.name != "ranges"] + ["range"]
        name = next((n for n, v in zip(names, values, strict=False) if v is value), "range")
        return f"{name} does not fit in 64 bits (a {value.bit_length()}-bit value)"
    return None


def refusal_at(op: Op, win: Window, bases: Bases, heap: bool, lim: Limits) -> str | None:
    kind = type(op)
    bad = _argument_refusal(op)
    if bad:
        return bad
    locking = _lock_refusal(op)
    if locking:
        return locking
    if kind in (MsealV1, MsealV3, Mimmutable, MsealSplit, Fork, Mlockall, Munlockall):
        # No range reaches the kernel (the first four are ENOSYS here);
        # mlockall locks the whole runner, which munlockall undoes after the trace.
        return None
    if kind is FilePwrite or kind is Ftruncate or kind is Punch:
        return _file_refusal(op)
    if issubclass(kind, MemoryWrite):
        addr, length = op.addr & MASK64, op.length & MASK64  # type: ignore[attr-defined]
        if kind is PwriteMem and addr >= _NEG:
            return None  # pwrite(2) refuses a negative offset first (EINVAL)
        if length > _MAX_DATA:
            return f"writes {length:#x} bytes: at most {MAX_PAGES} pages of data"
        if kind is PwriteMem and length:
            setting, how = proc_mem_force()
            if setting != "always":
                return (
                    f"this kernel's proc_mem.force_override is {setting!r} (from {how}); "
                    "pwrite_mem is compared only under 'always', where the snapshots can "
                    "read PROT_NONE pages"
                )
        return _span_refusal(addr, length, False, win, bases, heap, lim)
    if (kind is Madvise or kind is ProcessMadvise) and op.advice in _POISON:  # type: ignore[attr-defined]
        return "MADV_HWPOISON/SOFT_OFFLINE take physical pages offline; never run"
    if kind is Brk:
        addr = op.addr  # type: ignore[attr-defined]
        if addr == 0 or (bases.heap <= addr <= bases.heap + win.heap_pages * PS):
            return None
        return f"brk({addr:#x}) must be 0 (query) or between h0 and h{win.heap_pages}"
    if kind is Mmap:
        assert isinstance(op, Mmap)
        huge = huge_page_size(op.flags)
        length = mmap_length(op.flags, op.length) if huge else op.length & MASK64
        if length >= 1 << 64:
            return None  # ALIGN() wraps to 0: do_mmap() fails (EINVAL) before mapping
        if not op.flags & _ANON_FIXED and (op.addr == 0 or op.addr >= lim.task_size):
            # No hint, or an ignored one: placed "elsewhere", and faulted in
            # whole by MAP_POPULATE, MAP_LOCKED or mlockall(MCL_FUTURE).
            if max(_MAX_DATA, huge or 0) < length <= lim.task_size:
                return (
                    f"maps {length:#x} bytes outside the window: at most {MAX_PAGES} pages "
                    + ("or one huge page " if huge else "")
                    + "(it could be faulted in whole)"
                )
            return None
        addr = op.addr & MASK64
        if huge and not op.flags & _ANON_FIXED:
            # A hint is moved up to a huge page boundary, then used if free.
            return _span_refusal(
                addr, (addr + huge - 1) // huge * huge + length - addr, True, win, bases, heap, lim
            )
        return _span_refusal(addr, length, True, win, bases, heap, lim)
    if kind is Mremap:
        assert isinstance(op, Mremap)
        # The source (one page at least: old_len=0 duplicates a shared VMA).
        src = _span_refusal(op.addr, op.old_length or 1, False, win, bases, heap, lim)
        if src:
            return src
        if op.flags & MremapFlag.FIXED:
            return _span_refusal(op.new_addr, op.new_length, True, win, bases, heap, lim)
        if op.flags & MremapFlag.DONTUNMAP and op.new_addr and op.new_addr < lim.task_size:
            # Without MREMAP_FIXED, new_addr is a placement hint (mremap_to ->
            # get_unmapped_area), honoured when free.
            hint = _span_refusal(op.new_addr, op.new_length, True, win, bases, heap, lim)
            if hint:
                return hint
        # In-place growth is tried first, whatever the flags.
        return _span_refusal(op.addr, op.new_length, True, win, bases, heap, lim)
    prechecked = kind is Mseal or kind is Munmap
    for addr, length in iter_ranges(op):
        reason = _span_refusal(addr, length, False, win, bases, heap, lim, prechecked)
        if reason:
            return reason
    return None


def refusal(op: Op, window: Window, heap: bool) -> str | None:
    """Why the executor would refuse ``op`` (model frame), or ``None``.
    ``heap`` says whether the trace uses the heap zone (:func:`uses_heap`)."""
    return refusal_at(op, window, MODEL_BASES, heap, limits())


MAX_FORKS: Final = 16
"""The most ``fork`` calls one trace may make: each one keeps a process
alive (the parent waits while the rest of the trace runs in its child)."""
MAX_FILES: Final = 16
"""The most file names (``file=NAME``) one trace may use: each is a file of
``FILE_PAGES`` pages (256 KiB) and two descriptors in the runner."""


def trace_refusal(ops: Sequence[Op]) -> tuple[int, str] | None:
    """``(step, reason)`` when ``ops`` as a whole asks for more processes or
    files than the executor gives one trace (:data:`MAX_FORKS`,
    :data:`MAX_FILES`), else ``None``."""
    forks = 0
    files: set[str] = set()
    for i, op in enumerate(ops):
        kind = type(op)
        if kind is Fork:
            forks += 1
            if forks > MAX_FORKS:
                return i, (
                    f"more than {MAX_FORKS} fork calls in one trace (each keeps a process "
                    "alive until the trace ends)"
                )
        elif kind is Mmap:
            name = op.file  # type: ignore[attr-defined]
            if name is not None and name not in files:
                files.add(name)
                if len(files) > MAX_FILES:
                    return i, (
                        f"more than {MAX_FILES} file names in one trace (each is a "
                        f"{FILE_PAGES * PS >> 10} KiB file and two descriptors)"
                    )
    return None


def check_trace(
    ops: Sequence[Op] | Sequence[Step], window: Window | None = None, bases: Bases = MODEL_BASES
) -> None:
    """Raise :class:`OutsideArenaError` for the first call of ``ops`` that the
    kernel executor will not run (see the module docstring); ``None`` if all
    are safe. Pure arithmetic: nothing is run.
    """
    win = window or Window()
    plain = plain_ops(ops)
    heap = uses_heap(plain, bases)
    lim = limits()
    for i, op in enumerate(plain):
        reason = refusal_at(op, win, bases, heap, lim)
        if reason:
            raise OutsideArenaError(i, op, reason)
    too_much = trace_refusal(plain)
    if too_much is not None:
        raise OutsideArenaError(too_much[0], plain[too_much[0]], too_much[1])

"""Run op traces on the real kernel, in disposable worker processes.

The kernel side of the differential machinery: the conformance suite, the
fuzzer and ``sealkit replay`` hand traces (lists of :class:`~sealkit.ops.Op`,
written against :data:`~sealkit.ops.MODEL_BASES`) to a
:class:`KernelExecutor` and get back every call's result and a
:class:`~sealkit.layout.Layout` of the window after each call.

Where traces run
----------------
Seals last until the process exits (spec linux-mseal §1.3 "No unseal"), so
traces never run in the caller. A worker is a fresh interpreter
(``python -c 'from sealkit.fidelity.executor import worker_main; worker_main()'``)
talking pickled frames over two pipes, in its own session (the terminal's
^C goes to the controller, which decides). Every process of the worker's
tree (the worker, its runners, their forked trace children) asks the kernel
for SIGKILL when its parent dies (``PR_SET_PDEATHSIG``), so nothing outlives
the controller however it ends (SIGTERM, SIGKILL, a crash). The signal
follows the controller *thread* that started the worker: an executor must
not outlive the thread that first ran a trace on it. An interrupted
controller (KeyboardInterrupt, SystemExit) kills the worker at once rather
than wait for the traces it holds (:meth:`KernelExecutor.terminate`).
At start the worker reserves an *arena*:
``MAX_WINDOWS`` slots of ``MAX_PAGES`` pages, each flanked by ``GUARD``
guard pages, as one ``PROT_NONE|MAP_SHARED|MAP_ANONYMOUS|MAP_NORESERVE``
mapping far below the kernel's top-down mmap area (so no placement the
kernel chooses, "elsewhere", can ever land in it). The guards are shmem,
a backing object no trace can create, so a trace's mapping never merges
with them (spec kernel-behaviour rule 15).

Each trace gets a fresh window: ``p0`` is the base of an empty slot, ``h0``
the worker's program break at trace start. Ops are rebased from the model's
bases to the worker's (:func:`~sealkit.ops.rebase`) and results back;
addresses the kernel chose outside the window come back as
:data:`~sealkit.ops.ELSEWHERE` (and are unmapped after the trace). After a
trace the slot is unmapped whole; if sealed leftovers refuse that, the
unsealed VMAs are unmapped one by one, the slot is abandoned and the next
trace takes the next one. The worker is recycled (a new interpreter) before
abandoned slots, leftover VMAs or leftover files approach
``vm.max_map_count`` or the arena's end, and whenever the heap cannot be put
back.

Refusals
--------
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
before changing anything (spec kernel-behaviour 1.5).

The heap zone ``h``
-------------------
``brk`` runs against the worker's real program break. glibc malloc is kept
off it: at start the worker sets ``M_TRIM_THRESHOLD`` huge (malloc never
shrinks the break), ``M_TOP_PAD`` to 64 MiB and grows the break once, so
malloc's top chunk has room for the worker's whole life and never calls
``sbrk`` during a trace. ``h0`` is the break at trace start; a ``brk`` below
``h0`` is refused. After a trace the worker puts the break back to ``h0``
and unmaps the heap window; when a seal prevents that, the worker is
recycled, since glibc's cached break would now be wrong.

Snapshots
---------
Reading ``/proc/self/smaps`` costs ~800 µs (it walks every VMA of the
process), so per-call snapshots use cheaper measurements:

* VMA boundaries, rwx, shared, inode/device and file offset from the
  ``PROCMAP_QUERY`` ioctl on ``/proc/self/maps`` (Linux 6.11+): no page walk;
* the sealed bit from ``mprotect(vma, len, <its own prot>)``: EPERM iff
  sealed, a no-op otherwise (``mprotect_fixup`` tests the seal before its
  ``newflags == oldflags`` early return; spec linux-mseal §5 "Probing",
  verified by ``tests/kernel/test_executor.py``), asked once per stretch of
  adjacent VMAs with the same protection (no VMA of it changes, and
  ``mprotect_fixup`` answers EPERM at the first sealed one), and VMA by VMA
  only where a stretch answers EPERM;
* content from ``pread`` on ``/proc/self/mem``, one read per run of
  adjacent VMAs (reads PROT_NONE pages too;
  EIO on guard markers and pages beyond a file's end gives ``#``), each page
  mapped to its token by comparing the whole page with
  :func:`~sealkit.ops.token_page`;
* the tracked VmFlags (``dc wf lo lf hg nh dd rr sr mg gd``), which only
  smaps shows, at the steps the caller asks for (``flags=``: ``"end"``,
  ``"flag-ops"``, ``"every"``, ``"never"`` or a set of step indices). At
  those steps the sealed bit from the probe is also cross-checked against
  smaps ``sl``; a disagreement is reported as an executor failure.
  :attr:`KernelRun.flags_checked` says, step by step, what was verified.

``write`` ops are ``process_vm_writev`` on the worker itself: a user-space
store that honours page permissions (EFAULT), never a forced write, and never
expands a stack.

``fork`` forks the worker; the rest of the trace runs in the child (which
opens its own ``/proc/self`` files and pidfd), sends its results to the
parent and exits. A child that dies is reported as the trace's death.
"""

from __future__ import annotations

import contextlib
import errno as _errno
import operator
import os
import pickle
import signal
import struct
import sys
import time
import traceback
from collections.abc import Callable, Generator, Iterable, Sequence
from dataclasses import dataclass, field, fields
from typing import TYPE_CHECKING, Any, Final, Literal

from .._os import procfs, syscalls
from ..errors import KernelError, SealkitError, StateError, UnsafeTargetError
from ..flags import PAGE_SIZE, Madv, MapFlag, MremapFlag, Prot
from ..layout import TRACKED_FLAGS, Layout, Run
from ..ops import (
    ELSEWHERE,
    FILE_PAGES,
    MASK64,
    MODEL_BASES,
    Bases,
    Brk,
    Fork,
    Madvise,
    Mimmutable,
    Mlock,
    Mmap,
    Mprotect,
    Mremap,
    Mseal,
    MsealSplit,
    MsealV1,
    MsealV3,
    Munlock,
    Munmap,
    Op,
    PkeyMprotect,
    ProcessMadvise,
    Step,
    Write,
    format_op,
    iter_ranges,
    rebase,
    token_page,
    write_token,
)

if TYPE_CHECKING:
    import subprocess

# The worker imports this module too, and every shared library it loads is
# five more VMAs that each smaps read formats (~5 µs apiece, §"flags" above):
# the controller-only modules (subprocess, tempfile -> shutil -> bz2, lzma,
# zlib; random; select) are imported where the controller uses them.

__all__ = [
    "FLAG_OPS",
    "GUARD",
    "MAX_PAGES",
    "FlagMode",
    "KernelExecutor",
    "KernelRun",
    "OutsideArenaError",
    "SnapshotMode",
    "Window",
    "WorkerDiedError",
    "check_trace",
    "refusal",
    "uses_heap",
    "worker_main",
]

PS: Final = PAGE_SIZE
MAX_PAGES: Final = 64
"""Largest window (pages of the ``p`` zone, and of the ``h`` zone) a trace may use."""
GUARD: Final = 4
"""Guard pages on each side of every window slot."""
_STRIDE: Final = MAX_PAGES + 2 * GUARD
MAX_WINDOWS: Final = 64
"""Window slots in the arena; a runner retires when it has used them all."""
_ARENA_HINTS: Final = (0x2000_0000_0000, 0x2400_0000_0000, 0x2800_0000_0000, 0x1C00_0000_0000)
_TOP_PAD: Final = 64 << 20
_POISON: Final = frozenset({Madv.HWPOISON, Madv.SOFT_OFFLINE})
_LOW_AREA: Final = 1 << 20
_ANON_FIXED: Final = int(MapFlag.FIXED | MapFlag.FIXED_NOREPLACE)
_PROCMAP_COVERING_OR_NEXT: Final = 0x10

FlagMode = Literal["never", "end", "flag-ops", "every"]
SnapshotMode = Literal["none", "end", "every"]

FLAG_OPS: Final[tuple[type[Op], ...]] = (
    Madvise,
    ProcessMadvise,
    Mlock,
    Munlock,
    Mmap,
    Mremap,
    Fork,
)
"""Calls after which ``flags="flag-ops"`` reads smaps: the ones that can set,
clear or move a tracked VmFlag (madvise advice, mlock, MAP_LOCKED/GROWSDOWN/
STACK, a moved VMA, a fork that drops DONTCOPY VMAs and VM_LOCKED)."""


# ------------------------------------------------------------------- errors


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


class WorkerDiedError(SealkitError):
    """A kernel worker died (or stopped answering) while running a trace.

    :class:`KernelExecutor` never raises this on its own for a trace: a death
    is reported in :attr:`KernelRun.died` and the next trace gets a new
    worker. It is raised when a worker cannot even start, and when the
    executor itself failed inside the worker. ``str()`` is one line (what a
    command prints); ``detail`` holds the worker's traceback, if any.
    """

    def __init__(self, message: str, detail: str = "") -> None:
        super().__init__(message, detail)
        self.message = message
        self.detail = detail

    def __reduce__(self) -> tuple[object, ...]:
        return (type(self), (self.message, self.detail))

    def __str__(self) -> str:
        return self.message


# ------------------------------------------------------------------- limits


@dataclass(frozen=True, slots=True)
class Window:
    """The pages a trace may address: ``p`` pages ``[0, pages)`` and, when the
    trace uses the heap zone, ``h`` pages ``[0, heap_pages)``."""

    pages: int = 16
    heap_pages: int = 16

    def __post_init__(self) -> None:
        for name, value in (("pages", self.pages), ("heap_pages", self.heap_pages)):
            if isinstance(value, bool) or not isinstance(value, int):
                raise TypeError(f"Window.{name} must be an int")
            if not 1 <= value <= MAX_PAGES:
                raise ValueError(f"Window.{name} must be in 1..{MAX_PAGES}, not {value}")


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
class _Limits:
    task_size: int
    min_addr: int
    """Below this nothing is mapped: ``max(vm.mmap_min_addr, 1 MiB)``, verified
    by every runner at start (PIE interpreters live far above it), and the
    executor never creates a mapping there."""


_LIMITS: _Limits | None = None


def _limits() -> _Limits:
    global _LIMITS
    if _LIMITS is None:
        # mmap_min_addr: below it nothing can be mapped by an unprivileged
        # process; the executor never *creates* mappings there either (root
        # can), so non-creating calls there cannot hit anything.
        _LIMITS = _Limits(
            _task_size(), max(_read_int("/proc/sys/vm/mmap_min_addr", 4096), _LOW_AREA)
        )
    return _LIMITS


def uses_heap(ops: Iterable[Op], bases: Bases = MODEL_BASES) -> bool:
    """Whether a trace needs the heap zone (a ``brk``, or an ``h`` address)."""
    for op in ops:
        if isinstance(op, Brk):
            return True
        for addr, _ in iter_ranges(op):
            zoned = bases.zone_of(addr)
            if zoned is not None and zoned[0] == "h":
                return True
    return False


def _span_refusal(
    addr: int, length: int, creates: bool, win: Window, bases: Bases, heap: bool, lim: _Limits,
    prechecked: bool = False,
) -> str | None:  # fmt: skip
    """Why touching ``[addr, addr+length)`` (page-rounded outwards) is refused, or None.

    ``prechecked``: the call refuses, before changing anything, any range that
    runs past ``TASK_SIZE`` (mseal: range_contains_unmapped, spec rule 2;
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


def _refusal(op: Op, win: Window, bases: Bases, heap: bool, lim: _Limits) -> str | None:
    kind = type(op)
    bad = _argument_refusal(op)
    if bad:
        return bad
    if kind in (MsealV1, MsealV3, Mimmutable, MsealSplit, Fork):
        return None  # no range reaches the kernel (the first four are ENOSYS here)
    if (kind is Madvise or kind is ProcessMadvise) and op.advice in _POISON:  # type: ignore[attr-defined]
        return "MADV_HWPOISON/SOFT_OFFLINE take physical pages offline; never run"
    if kind is Brk:
        addr = op.addr  # type: ignore[attr-defined]
        if addr == 0 or (bases.heap <= addr <= bases.heap + win.heap_pages * PS):
            return None
        return f"brk({addr:#x}) must be 0 (query) or between h0 and h{win.heap_pages}"
    if kind is Mmap:
        assert isinstance(op, Mmap)
        if not op.flags & _ANON_FIXED and (op.addr == 0 or op.addr >= lim.task_size):
            return None  # no hint, or an ignored one: placed "elsewhere"
        return _span_refusal(op.addr, op.length, True, win, bases, heap, lim)
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
    return _refusal(op, window, MODEL_BASES, heap, _limits())


def check_trace(
    ops: Sequence[Op] | Sequence[Step], window: Window | None = None, bases: Bases = MODEL_BASES
) -> None:
    """Raise :class:`OutsideArenaError` for the first call of ``ops`` that the
    kernel executor will not run (see the module docstring); ``None`` if all
    are safe. Pure arithmetic: nothing is run.
    """
    win = window or Window()
    plain = _plain_ops(ops)
    heap = uses_heap(plain, bases)
    lim = _limits()
    for i, op in enumerate(plain):
        reason = _refusal(op, win, bases, heap, lim)
        if reason:
            raise OutsideArenaError(i, op, reason)


def _plain_ops(ops: Sequence[Op] | Sequence[Step]) -> list[Op]:
    out: list[Op] = []
    for item in ops:
        if isinstance(item, Step):
            out.append(item.op)
        elif isinstance(item, Op):
            out.append(item)
        else:
            raise TypeError(f"a trace holds Op or Step values, not {type(item).__name__}")
    return out


# ------------------------------------------------------------------ results

# A run as the worker reports it: zone pages [start, end), prot bits, shared,
# backing, pgoff (None for anonymous memory), sealed, tracked VmFlags (None when
# not read at this step) and one content token per page.
RawRun = tuple[int, int, int, bool, str, "int | None", bool, "frozenset[str] | None", str]
RawSnap = tuple[tuple[RawRun, ...], ...]  # one tuple of runs per zone, in KernelRun.zones order


@dataclass(slots=True)
class KernelRun:
    """What one trace did on the kernel.

    ``results[i]`` is call ``i``'s result in the model's frame (addresses
    rebased, ``ELSEWHERE`` for placements outside the window). ``snapshots[i]``
    is the raw state of each zone in :attr:`zones` after call ``i`` (``None``
    when no snapshot was taken at that step); :meth:`layout` turns it into a
    :class:`~sealkit.layout.Layout`. ``flags_checked[i]`` says whether the
    tracked VmFlags were read (from smaps) at that step; when not, the
    layouts carry no flags and comparisons must ignore flags there.

    When the worker (or a forked child) died, ``died`` says how and
    ``died_step`` at which call; ``results`` then covers the calls before it.
    """

    ops: tuple[Op, ...]
    window: Window
    zones: tuple[str, ...]
    results: list[int] = field(default_factory=list)
    snapshots: list[RawSnap | None] = field(default_factory=list)
    flags_checked: list[bool] = field(default_factory=list)
    died: str | None = None
    died_step: int | None = None
    worker: int = 0
    bases: Bases = MODEL_BASES
    seconds: float = 0.0

    @property
    def ok(self) -> bool:
        """Whether every call ran (no death)."""
        return self.died is None

    def steps(self) -> list[Step]:
        """The trace with its kernel results, as :class:`~sealkit.ops.Step` values."""
        return [Step(op, r) for op, r in zip(self.ops, self.results, strict=False)]

    def _hi(self, zone: str) -> int:
        return self.window.pages if zone == "p" else self.window.heap_pages

    def layout(self, step: int, zone: str = "p") -> Layout:
        """The exact (one run per VMA) layout of ``zone`` after call ``step``."""
        snap = self.snapshots[step]
        if snap is None:
            raise StateError(f"no snapshot was taken after step {step + 1}")
        if zone not in self.zones:
            raise StateError(f"this trace did not use zone {zone!r}")
        return raw_to_layout(snap[self.zones.index(zone)], zone, 0, self._hi(zone))

    def final_layout(self, zone: str = "p") -> Layout:
        """The layout after the last call that ran."""
        for i in range(len(self.results) - 1, -1, -1):
            if self.snapshots[i] is not None:
                return self.layout(i, zone)
        raise StateError("no snapshot was taken")


def raw_to_layout(runs: Sequence[RawRun], zone: str, lo: int, hi: int) -> Layout:
    """A worker's raw runs as a :class:`~sealkit.layout.Layout`."""
    out = []
    for start, end, prot, shared, backing, pgoff, sealed, flags, content in runs:
        out.append(
            Run(
                start,
                end,
                Prot(prot),
                shared,
                backing,
                pgoff,
                None,
                "sl" if sealed else "",
                flags if flags is not None else frozenset(),
                content,
            )
        )
    return Layout(zone, lo, hi, tuple(out))


# ------------------------------------------------------------------- framing

_HEADER: Final = struct.Struct("<QB")  # payload length, flags (1: the runner retires)


def _send_frame(fd: int, payload: bytes, flag: int) -> None:
    view = memoryview(_HEADER.pack(len(payload), flag) + payload)
    while view:
        n = os.write(fd, view)
        view = view[n:]


def _send(fd: int, obj: object, flag: int = 0) -> None:
    _send_frame(fd, pickle.dumps(obj, protocol=pickle.HIGHEST_PROTOCOL), flag)


def _recv_exact(fd: int, size: int, deadline: float | None) -> bytes | None:
    chunks = []
    while size:
        if deadline is not None:
            left = deadline - time.monotonic()
            import select  # noqa: PLC0415 (controller side only, see the imports)

            if left <= 0 or not select.select([fd], [], [], left)[0]:
                raise TimeoutError
        chunk = os.read(fd, min(size, 1 << 20))
        if not chunk:
            return None
        chunks.append(chunk)
        size -= len(chunk)
    return b"".join(chunks)


def _recv_frame(fd: int, deadline: float | None = None) -> tuple[int, bytes] | None:
    head = _recv_exact(fd, _HEADER.size, deadline)
    if head is None:
        return None
    size, flag = _HEADER.unpack(head)
    body = _recv_exact(fd, size, deadline)
    return None if body is None else (flag, body)


def _recv(fd: int, deadline: float | None = None) -> Any:
    frame = _recv_frame(fd, deadline)
    return None if frame is None else pickle.loads(frame[1])


# --------------------------------------------------------------- the worker


_TOKEN_PAGES: Final = {
    tok[0]: (tok, token_page(tok)) for tok in ("0", "F", *"abcdefghijklmnopqrstuvwxyz")
}
_TOKEN_BY_BYTE: Final = {page[0]: (tok, page) for tok, page in _TOKEN_PAGES.values()}
_WRITE_PAGES: Final = dict(_TOKEN_PAGES.values())
_RUNNER_LEFTOVER_VMAS: Final = 128
_RUNNER_LEFTOVER_FILES: Final = 64
_call_ = syscalls.errno_call


_FIRST_BYTE_TOKEN: Final = bytes.maketrans(b"\x00", b"0")


def _tokens(data: bytes, pages: int) -> str:
    """One content token per page of ``data``: a page is a token only if every
    byte of it is that token's byte (:func:`~sealkit.ops.token_page`), else ``?``."""
    firsts = data[::PS]
    # Fast path: build what the pages would be if each were uniform, compare at once.
    try:
        expected = b"".join([_TOKEN_BY_BYTE[b][1] for b in firsts])
    except KeyError:
        expected = b""
    if expected == data:
        return firsts.translate(_FIRST_BYTE_TOKEN).decode("ascii")
    out = []
    for k in range(0, pages * PS, PS):
        entry = _TOKEN_BY_BYTE.get(data[k])
        out.append(entry[0] if entry is not None and data[k : k + PS] == entry[1] else "?")
    return "".join(out)


class _ChildDied(Exception):
    def __init__(self, step: int, how: str) -> None:
        super().__init__(step, how)
        self.step = step
        self.how = how


def _status_note(status: int) -> str:
    if os.WIFSIGNALED(status):
        sig = os.WTERMSIG(status)
        name = signal.Signals(sig).name if sig in signal.Signals._value2member_map_ else str(sig)
        return f"killed by signal {sig} ({name})"
    return f"exited with status {os.waitstatus_to_exitcode(status)}"


class _Zygote:
    """The worker process itself: prepares malloc, reserves the arena, and
    forks *runners* that run traces. It never runs a trace, so every runner
    starts from the same pristine state and a runner's seals vanish with it."""

    def __init__(self) -> None:
        self.lim = _limits()
        self._prepare_malloc()
        self.arena = self._reserve_arena()

    @staticmethod
    def _prepare_malloc() -> None:
        # Keep glibc malloc off the break for the worker's whole life: never
        # trim (free never lowers the break under a trace), pad every sbrk by
        # 64 MiB, and force one sbrk now so the top chunk has that room.
        with contextlib.suppress(SealkitError):
            syscalls.mallopt(-1, 0x7FFF0000)  # M_TRIM_THRESHOLD
            syscalls.mallopt(-2, _TOP_PAD)  # M_TOP_PAD
            syscalls.mallopt(-3, 128 * 1024)  # M_MMAP_THRESHOLD (fixed: no dynamic growth)
        before = syscalls.brk(0)
        hold = []
        for _ in range(4096):
            hold.append(bytearray(60 * 1024))
            if syscalls.brk(0) != before:
                break
        del hold

    @staticmethod
    def _reserve_arena() -> int:
        size = MAX_WINDOWS * _STRIDE * PS
        flags = MapFlag.SHARED | MapFlag.ANONYMOUS | MapFlag.NORESERVE | MapFlag.FIXED_NOREPLACE
        for hint in _ARENA_HINTS:
            try:
                return syscalls.mmap(hint, size, Prot.NONE, flags)
            except KernelError:
                continue
        raise WorkerDiedError("could not reserve an arena at any of the hint addresses")

    def serve(self, rfd: int, wfd: int) -> None:
        runner: tuple[int, int, int] | None = None
        while True:
            frame = _recv_frame(rfd)
            if frame is None or pickle.loads(frame[1]) == ("exit",):
                if runner is not None:
                    self._stop(runner)
                return
            if runner is None:
                runner = self._fork_runner(rfd, wfd)
            pid, to_fd, from_fd = runner
            try:
                _send_frame(to_fd, frame[1], 0)
                reply = _recv_frame(from_fd)
            except OSError:
                reply = None
            if reply is None:
                os.close(to_fd)
                os.close(from_fd)
                _, status = os.waitpid(pid, 0)
                runner = None
                _send(wfd, ("died", f"the runner process {_status_note(status)}"))
                continue
            retire, payload = reply
            _send_frame(wfd, payload, 0)
            if retire:
                self._stop(runner)
                runner = None

    @staticmethod
    def _stop(runner: tuple[int, int, int]) -> None:
        pid, to_fd, from_fd = runner
        os.close(to_fd)  # EOF: the runner exits
        os.close(from_fd)
        os.waitpid(pid, 0)

    def _fork_runner(self, rfd: int, wfd: int) -> tuple[int, int, int]:
        down_r, down_w = os.pipe()
        up_r, up_w = os.pipe()
        me = os.getpid()
        pid = os.fork()
        if pid == 0:
            code = 0
            try:
                _die_with_parent(me)
                for fd in (down_w, up_r, rfd, wfd):
                    os.close(fd)
                _Runner(self).serve(down_r, up_w)
            except BaseException:
                with contextlib.suppress(BaseException):
                    _send(up_w, ("fail", traceback.format_exc()))
                code = 1
            os._exit(code)
        os.close(down_r)
        os.close(up_w)
        return pid, down_w, up_r


class _Runner:
    """Runs traces, each in a fresh window slot of the arena it inherited.
    Lives until its sealed leftovers, leftover files, window slots or heap
    say it should retire; then the zygote forks a new one."""

    def __init__(self, zygote: _Zygote) -> None:
        self.lim = zygote.lim
        self.arena = zygote.arena
        self.h0 = self._aligned_break()
        self.slot = 0
        self.leftover_vmas = 0
        self.leftover_files = 0
        self.retire = ""
        self.query = syscalls.ProcmapQuery()
        self.tmpdir = os.environ.get("TMPDIR") or "/tmp"
        self.elsewhere: list[tuple[int, int]] = []
        self.files: dict[str, tuple[int, int, tuple[int, int, int]]] = {}
        self.file_keys: dict[tuple[int, int, int], str] = {}
        self.heap = False
        self._open_self()
        self._check_low_area_empty()
        self._open_slot(self.slot)

    # ---------------------------------------------------------- set-up

    def _open_self(self) -> None:
        """Open this process's /proc files and pidfd (again after a fork:
        they are tied to the process that opened them, spec README pitfalls)."""
        self.pid = os.getpid()
        self.maps_fd = os.open("/proc/self/maps", os.O_RDONLY | os.O_CLOEXEC)
        self.mem_fd = os.open("/proc/self/mem", os.O_RDONLY | os.O_CLOEXEC)
        self.pidfd = _call_("pidfd_open", self.pid, 0)

    @staticmethod
    def _aligned_break() -> int:
        cur = syscalls.brk(0)
        if cur % PS:
            cur = syscalls.brk((cur + PS - 1) & ~(PS - 1))
        return cur

    def _check_low_area_empty(self) -> None:
        q = self.query
        if syscalls.procmap_query(self.maps_fd, 0, _PROCMAP_COVERING_OR_NEXT, q) and (
            q.vma_start < self.lim.min_addr
        ):
            raise WorkerDiedError(
                f"something is mapped below {self.lim.min_addr:#x}: far low addresses "
                "would not be safe"
            )

    def _slot_base(self, slot: int) -> int:
        return self.arena + (slot * _STRIDE + GUARD) * PS

    def _open_slot(self, slot: int) -> None:
        syscalls.munmap(self._slot_base(slot), MAX_PAGES * PS)

    def serve(self, rfd: int, wfd: int) -> None:
        while True:
            msg = _recv(rfd)
            if msg is None:
                return
            reply = self.handle(msg)
            if reply[0] in ("done", "refused"):
                try:
                    self.cleanup()
                except Exception:
                    self.retire = "cleanup failed:\n" + traceback.format_exc()
            _send(wfd, reply, 1 if self.retire or reply[0] == "fail" else 0)
            if self.retire:
                return

    # --------------------------------------------------------- tracing

    def handle(self, msg: tuple[Any, ...]) -> tuple[Any, ...]:
        _, ops_model, win, snap_steps, flag_steps, heap = msg
        try:
            return self._run(ops_model, win, snap_steps, flag_steps, heap)
        except Exception:
            return ("fail", traceback.format_exc())

    def _run(
        self, ops_model: list[Op], win: Window, snap_steps: bytes, flag_steps: bytes, heap: bool
    ) -> tuple[Any, ...]:
        base = self._slot_base(self.slot)
        if heap:
            self.h0 = self._aligned_break()
            if self._has_vma(self.h0, self.h0 + MAX_PAGES * PS):
                raise RuntimeError("the heap window above the program break is not empty")
        self.bases = Bases(arena=base, heap=self.h0)
        self.win = win
        self.heap = heap
        self.zones = (
            (("p", base, win.pages), ("h", self.h0, win.heap_pages))
            if heap
            else (("p", base, win.pages),)
        )
        ops = [rebase(op, MODEL_BASES, self.bases) for op in ops_model]
        for i, op in enumerate(ops):
            reason = _refusal(op, win, self.bases, heap, self.lim)
            if reason:
                return ("refused", OutsideArenaError(i, ops_model[i], reason))
        for op in ops:
            if type(op) is Mmap and op.file is not None and op.file not in self.files:
                self._make_file(op.file)
        results: list[int] = []
        snaps: list[RawSnap | int | None] = []
        flagged: list[bool] = []
        died: tuple[int, str] | None = None
        try:
            self._exec(ops, 0, snap_steps, flag_steps, results, snaps, flagged)
        except _ChildDied as exc:
            died = (exc.step, exc.how)
        out = [self._result_back(ops[i], r) for i, r in enumerate(results)]
        return ("done", out, snaps, flagged, died, self.pid, base)

    def _make_file(self, name: str) -> None:
        try:
            fd = os.open(self.tmpdir, os.O_TMPFILE | os.O_RDWR | os.O_CLOEXEC, 0o600)
        except OSError:
            fd = os.memfd_create(f"sealkit-{name}", os.MFD_CLOEXEC)
        os.pwrite(fd, token_page("F") * FILE_PAGES, 0)
        ro = os.open(f"/proc/self/fd/{fd}", os.O_RDONLY | os.O_CLOEXEC)
        st = os.fstat(fd)
        key = (os.major(st.st_dev), os.minor(st.st_dev), st.st_ino)
        self.files[name] = (fd, ro, key)
        self.file_keys[key] = name

    def _result_back(self, op: Op, result: int) -> int:
        if result < 0 or not op.RETURNS_ADDRESS:
            return result
        b = self.bases
        if b.arena <= result < b.arena + self.win.pages * PS:
            return MODEL_BASES.arena + (result - b.arena)
        if type(op) is Brk or (self.heap and b.heap <= result <= b.heap + self.win.heap_pages * PS):
            return MODEL_BASES.heap + (result - b.heap)  # the break, wherever it is
        return ELSEWHERE

    def _exec(
        self, ops: list[Op], first: int, snap_steps: bytes, flag_steps: bytes,
        results: list[int], snaps: list[RawSnap | int | None], flagged: list[bool],
    ) -> None:  # fmt: skip
        last: RawSnap | None = None
        call = self._call
        for i in range(first, len(ops)):
            op = ops[i]
            if type(op) is Fork:
                self._fork(ops, i, snap_steps, flag_steps, results, snaps, flagged)
                return
            results.append(call(op))
            flags = bool(flag_steps[i])
            if snap_steps[i] or flags:
                snap = self._snapshot(flags)
                # An unchanged snapshot travels as 0 (the controller repeats the last).
                snaps.append(0 if snap == last and not flags else snap)
                last = snap
            else:
                snaps.append(None)
            flagged.append(flags)

    def _fork(
        self, ops: list[Op], i: int, snap_steps: bytes, flag_steps: bytes,
        results: list[int], snaps: list[RawSnap | int | None], flagged: list[bool],
    ) -> None:  # fmt: skip
        read_fd, write_fd = os.pipe()
        me = os.getpid()
        pid = os.fork()
        if pid == 0:  # the child: run the rest of the trace here
            os.close(read_fd)
            code = 0
            try:
                _die_with_parent(me)
                for fd in (self.maps_fd, self.mem_fd, self.pidfd):
                    if fd >= 0:
                        os.close(fd)
                self._open_self()
                mine: list[int] = [0]
                my_snaps: list[RawSnap | int | None] = []
                my_flags: list[bool] = [bool(flag_steps[i])]
                if snap_steps[i] or flag_steps[i]:
                    my_snaps.append(self._snapshot(bool(flag_steps[i])))
                else:
                    my_snaps.append(None)
                died: tuple[int, str] | None = None
                try:
                    self._exec(ops, i + 1, snap_steps, flag_steps, mine, my_snaps, my_flags)
                except _ChildDied as exc:
                    died = (exc.step, exc.how)
                payload = pickle.dumps(("ok", mine, my_snaps, my_flags, died))
            except BaseException:
                payload = pickle.dumps(("err", traceback.format_exc()))
                code = 1
            try:
                view = memoryview(payload)
                while view:
                    view = view[os.write(write_fd, view) :]
            finally:
                os._exit(code)
        os.close(write_fd)
        with os.fdopen(read_fd, "rb") as pipe:
            data = pipe.read()
        _, status = os.waitpid(pid, 0)
        if not data:
            raise _ChildDied(i, f"the forked child {_status_note(status)}")
        kind, *rest = pickle.loads(data)
        if kind == "err":
            raise _ChildDied(i, f"the forked child failed:\n{rest[0]}")
        mine, my_snaps, my_flags, died = rest
        results.extend(mine)
        snaps.extend(my_snaps)
        flagged.extend(my_flags)
        if died is not None:
            raise _ChildDied(*died)

    # ----------------------------------------------------------- calls

    def _call(self, op: Op) -> int:
        kind = type(op)
        if kind is Mmap:
            assert isinstance(op, Mmap)
            fd = -1
            if op.file is not None:
                entry = self.files[op.file]
                fd = entry[1] if op.file_ro else entry[0]
            ret = _call_("mmap", op.addr, op.length, int(op.prot), int(op.flags), fd, op.offset)
            if ret >= 0:
                self._note_elsewhere(ret, op.length)
            return ret
        if kind is Munmap:
            return _call_("munmap", op.addr, op.length)  # type: ignore[attr-defined]
        if kind is Mprotect:
            assert isinstance(op, Mprotect)
            return _call_("mprotect", op.addr, op.length, int(op.prot))
        if kind is Write:
            assert isinstance(op, Write)
            return self._write(op)
        if kind is Mseal:
            assert isinstance(op, Mseal)
            return _call_("mseal", op.addr, op.length, op.flags)
        if kind is Madvise:
            assert isinstance(op, Madvise)
            return _call_("madvise", op.addr, op.length, int(op.advice))
        if kind is Mremap:
            assert isinstance(op, Mremap)
            ret = _call_(
                "mremap", op.addr, op.old_length, op.new_length, int(op.flags), op.new_addr
            )
            if ret >= 0:
                self._note_elsewhere(ret, op.new_length)
            return ret
        if kind is PkeyMprotect:
            assert isinstance(op, PkeyMprotect)
            return _call_("pkey_mprotect", op.addr, op.length, int(op.prot), op.pkey)
        if kind is Mlock:
            assert isinstance(op, Mlock)
            if op.onfault:
                return _call_("mlock2", op.addr, op.length, 1)  # MLOCK_ONFAULT
            return _call_("mlock", op.addr, op.length)
        if kind is Munlock:
            return _call_("munlock", op.addr, op.length)  # type: ignore[attr-defined]
        if kind is Brk:
            return _call_("brk", op.addr)  # type: ignore[attr-defined]
        if kind is ProcessMadvise:
            assert isinstance(op, ProcessMadvise)
            if self.pidfd < 0:
                return self.pidfd
            try:
                return syscalls.process_madvise(self.pidfd, op.ranges, int(op.advice), 0)
            except KernelError as exc:
                return -(exc.errno or _errno.EIO)
        # mseal_v1/v3, mimmutable, mseal_split: calls Linux does not have.
        return -_errno.ENOSYS

    def _note_elsewhere(self, addr: int, length: int) -> None:
        b = self.bases
        inside = b.arena <= addr < b.arena + MAX_PAGES * PS or (
            self.heap and b.heap <= addr < b.heap + MAX_PAGES * PS
        )
        if not inside:
            self.elsewhere.append((addr, (length + PS - 1) & ~(PS - 1)))

    def _zone_page(self, addr: int) -> int:
        for _, base, _pages in self.zones:
            if base - MAX_PAGES * PS <= addr < base + 2 * MAX_PAGES * PS:
                return (addr - base) // PS
        return 0

    def _write(self, op: Write) -> int:
        if op.length == 0:
            return 0
        first = op.addr & ~(PS - 1)
        last = (op.addr + op.length + PS - 1) & ~(PS - 1)  # may pass 2**64: then it runs out
        # A store goes page by page until a page refuses it (ops.Write). Past the
        # window there is nothing writable (the slot's unused pages, then a
        # guard), and far targets fail at their first page: no giant buffer.
        pages = min((last - first) // PS, MAX_PAGES + 1)
        data = b"".join(
            _WRITE_PAGES[write_token(op.tag, self._zone_page(first + k * PS))] for k in range(pages)
        )
        try:
            done = syscalls.process_vm_writev(self.pid, [(first, len(data))], data)
        except KernelError as exc:
            return -(exc.errno or _errno.EIO)
        return 0 if done == len(data) and pages * PS == last - first else -_errno.EFAULT

    # ------------------------------------------------------- snapshots

    def _has_vma(self, lo: int, hi: int) -> bool:
        q = self.query
        return syscalls.procmap_query(self.maps_fd, lo, _PROCMAP_COVERING_OR_NEXT, q) and (
            q.vma_start < hi
        )

    def _vmas(
        self, lo: int, hi: int, names: bool = False
    ) -> list[tuple[int, int, int, int, int, int, int, str]]:
        """(start, end, flags, offset, major, minor, inode, name) of VMAs meeting [lo, hi)."""
        return syscalls.procmap_vmas(self.maps_fd, lo, hi, names)

    @staticmethod
    def _sealed(start: int, length: int, prot: int) -> bool:
        # mprotect to the VMA's own protection: EPERM iff sealed, else a no-op
        # (mprotect_fixup checks the seal before `newflags == oldflags`).
        ret = _call_("mprotect", start, length, prot)
        if ret == 0:
            return False
        if ret == -_errno.EPERM:
            return True
        raise RuntimeError(f"seal probe mprotect({start:#x}, {length:#x}) failed: {ret}")

    def _content(self, start: int, end: int) -> str:
        out: list[str] = []
        addr = start
        mem = self.mem_fd
        while addr < end:
            try:
                data = os.pread(mem, end - addr, addr)
            except OSError:
                data = b""
            got = len(data) // PS
            if got:
                out.append(_tokens(data, got))
            addr += got * PS
            if addr < end:
                out.append("#")  # unreadable: a guard marker, or beyond a file's end
                addr += PS
        return "".join(out)

    def _snapshot(self, with_flags: bool) -> RawSnap:
        zones: list[list[RawRun]] = []
        all_vmas = []
        for zone, base, pages in self.zones:
            lo, hi = base, base + pages * PS
            # The heap zone asks the kernel for VMA names: "[heap]" is its call
            # (vma_is_initial_heap(), which depends on the current break).
            vmas = self._vmas(lo, hi, zone == "h")
            n = len(vmas)
            clip = [(max(v[0], lo), min(v[1], hi)) for v in vmas]
            content = [""] * n
            sealed = [False] * n
            i = 0
            while i < n:
                # A run of contiguous VMAs: their content in one pread ...
                j = i + 1
                while j < n and clip[j][0] == clip[j - 1][1]:
                    j += 1
                first = clip[i][0]
                text = self._content(first, clip[j - 1][1])
                for k in range(i, j):
                    content[k] = text[(clip[k][0] - first) // PS : (clip[k][1] - first) // PS]
                # ... and their seals with one probe per stretch of equal
                # protection: mprotect to a VMA's own protection changes
                # nothing (mprotect_fixup returns before any split or merge),
                # so one call answers "none sealed"; EPERM: probe each.
                k = i
                while k < j:
                    prot = vmas[k][2] & 7
                    m = k + 1
                    while m < j and vmas[m][2] & 7 == prot:
                        m += 1
                    if self._sealed(clip[k][0], clip[m - 1][1] - clip[k][0], prot):
                        if m - k == 1:
                            sealed[k] = True
                        else:
                            for q in range(k, m):
                                sealed[q] = self._sealed(clip[q][0], clip[q][1] - clip[q][0], prot)
                    k = m
                i = j
            runs: list[RawRun] = []
            for k, (start, end, vflags, offset, major, minor, inode, name) in enumerate(vmas):
                s, e = clip[k]
                pgoff: int | None = None
                if inode:
                    file = self.file_keys.get((major, minor, inode))
                    backing = f"file:{file}" if file is not None else "shmem"
                    pgoff = (offset + (s - start)) // PS
                else:
                    backing = "[heap]" if name == "[heap]" else "anon"
                runs.append(
                    ((s - base) // PS, (e - base) // PS, vflags & 7, bool(vflags & 8), backing,
                     pgoff, sealed[k], None, content[k])
                )  # fmt: skip
                all_vmas.append((start, end, len(zones), k))
            zones.append(runs)
        if with_flags and all_vmas:
            self._add_flags(zones, all_vmas)
        return tuple(tuple(z) for z in zones)

    def _add_flags(self, zones: list[list[RawRun]], vmas: list[tuple[int, int, int, int]]) -> None:
        with open("/proc/self/smaps", "rb") as fh:
            text = fh.read().decode("ascii", "replace")
        for start, end, zi, ri in vmas:
            head = f"{start:x}-{end:x} "
            at = 0 if text.startswith(head) else text.find("\n" + head) + 1
            if at == 0 and not text.startswith(head):
                raise RuntimeError(f"VMA {head.strip()} is missing from smaps")
            stop = text.find("\n", text.find("\nVmFlags:", at) + 1)
            parsed = procfs.parse_smaps(text[at : stop if stop > 0 else len(text)])
            if len(parsed) != 1 or parsed[0].vmflags is None:
                raise RuntimeError(f"could not read VmFlags of {head.strip()}")
            vmflags = parsed[0].vmflags
            run = zones[zi][ri]
            if ("sl" in vmflags) != run[6]:
                raise RuntimeError(
                    f"seal probe says {'sealed' if run[6] else 'unsealed'} but smaps VmFlags "
                    f"say {' '.join(sorted(vmflags))} for zone pages [{run[0]},{run[1]})"
                )
            zones[zi][ri] = (*run[:7], frozenset(vmflags & TRACKED_FLAGS), run[8])

    # --------------------------------------------------------- cleanup

    def cleanup(self) -> None:
        """Put the runner back to a clean state for the next trace, or decide to retire."""
        for addr, size in self.elsewhere:
            _call_("munmap", addr, size)
        self.elsewhere = []
        base = self._slot_base(self.slot)
        if _call_("munmap", base, MAX_PAGES * PS) != 0:
            # Sealed leftovers: drop what can go, abandon the slot.
            for start, end, vflags, *_ in self._vmas(base, base + MAX_PAGES * PS):
                s, e = max(start, base), min(end, base + MAX_PAGES * PS)
                if self._sealed(s, e - s, vflags & 7):
                    self.leftover_vmas += 1
                else:
                    _call_("munmap", s, e - s)
            self.leftover_files += len(self.files)
            self.slot += 1
            if self.slot >= MAX_WINDOWS:
                self.retire = "every window slot holds sealed leftovers"
            else:
                self._open_slot(self.slot)
        for fd, ro, _key in self.files.values():
            os.close(fd)
            os.close(ro)
        self.files = {}
        self.file_keys = {}
        if self.heap:
            self.heap = False
            if syscalls.brk(self.h0) != self.h0:
                self.retire = "a seal keeps the program break above h0"
            elif _call_("munmap", self.h0, MAX_PAGES * PS) != 0:
                self.retire = "sealed mappings remain in the heap window"
        if self.leftover_vmas > _RUNNER_LEFTOVER_VMAS:
            self.retire = "sealed leftovers make smaps slow; a fresh runner is cheaper"
        if self.leftover_files > _RUNNER_LEFTOVER_FILES:
            self.retire = "too many files held by sealed leftovers"


def _pin(cpu: int) -> None:
    """Keep this process (and the runners it forks) on one CPU: index ``cpu``
    into the allowed CPUs, or the CPU it runs on now when ``cpu < 0``.

    Why: MADV_FREE and MADV_COLD park folios in per-CPU LRU batches (off the
    LRU), and madvise_pageout()/madvise_cold() drain only the current CPU's
    batches (lru_add_drain()) before walking. A runner that migrated between
    MADV_FREE and MADV_PAGEOUT would find its lazily freed folio still in
    the other CPU's batch and skip it (folio_test_lru() fails), keeping data
    the model (rightly, on one CPU) says is reclaimed."""
    allowed = sorted(os.sched_getaffinity(0))
    if cpu >= 0:
        target = allowed[cpu % len(allowed)]
    else:
        with open("/proc/self/stat", "rb") as fh:
            # Field 39 "processor", counted after the ")" closing comm.
            now = int(fh.read().rsplit(b")", 1)[1].split()[36])
        target = now if now in allowed else allowed[0]
    os.sched_setaffinity(0, {target})


def _die_with_parent(parent: int) -> None:
    """Have the kernel SIGKILL this process when ``parent`` dies, and exit now
    if it already has (it died between our fork and the prctl: we were
    reparented). Each generation (worker, runner, forked trace child) sets it,
    since fork clears it: whatever kills the controller (SIGTERM, SIGKILL, a
    crash) takes the whole tree with it; the worker runs in its own session,
    out of reach of the terminal's signals. A kernel that refuses the prctl
    (a seccomp filter) leaves only the pipes: the worker then notices its
    controller's end only when it next reads or writes."""
    with contextlib.suppress(SealkitError):
        syscalls.set_parent_death_signal(signal.SIGKILL)
    if os.getppid() != parent:
        os._exit(1)


def worker_main() -> None:
    """Entry point of a worker process: ``argv[1:3]`` are the request and reply
    fds, ``argv[3]`` the CPU index to stay on (``-1``: where it starts),
    ``argv[4]`` the controller's pid (the worker dies with it)."""
    rfd, wfd = int(sys.argv[1]), int(sys.argv[2])
    if len(sys.argv) > 4:
        _die_with_parent(int(sys.argv[4]))
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the controller decides when we stop
    try:
        _pin(int(sys.argv[3]) if len(sys.argv) > 3 else -1)
        zygote = _Zygote()
    except BaseException:
        _send(wfd, ("fail", traceback.format_exc()))
        return
    _send(wfd, ("ready", os.getpid(), zygote.arena))
    zygote.serve(rfd, wfd)


# ----------------------------------------------------------- the controller


def _steps_bytes(n: int, which: object, ops: Sequence[Op], kind: str) -> bytes:
    if which in ("every",):
        return b"\x01" * n
    if which in ("none", "never"):
        return b"\x00" * n
    if which == "end":
        return b"\x00" * (n - 1) + b"\x01" if n else b""
    if which == "flag-ops":
        marks = bytearray(n)
        for i, op in enumerate(ops):
            if isinstance(op, FLAG_OPS):
                marks[i] = 1
        if n:
            marks[-1] = 1
        return bytes(marks)
    if isinstance(which, set | frozenset):
        marks = bytearray(n)
        for i in which:
            if not isinstance(i, int) or not 0 <= i < n:
                raise ValueError(f"{kind} step {i!r} is not a step of this trace")
            marks[i] = 1
        return bytes(marks)
    raise ValueError(f"bad {kind} mode {which!r}")


class KernelExecutor:
    """Runs traces on the real kernel in a disposable worker process.

    ``window`` bounds what traces may address. ``timeout`` (seconds) is how
    long one trace may take before its worker is killed and the trace
    reported dead. Use as a context manager (or call :meth:`close`).

    >>> with KernelExecutor() as kx:                      # doctest: +SKIP
    ...     run = kx.run(parse_trace("mmap p0 4p rw- private|anon|fixed"))
    ...     run.results, run.layout(0).text()
    """

    def __init__(
        self, window: Window | None = None, *, timeout: float = 60.0, cpu: int | None = None
    ) -> None:
        self.window = window or Window()
        self.timeout = timeout
        self.cpu = cpu
        """Index into the allowed CPUs the worker stays on (``None``: the one it
        starts on); see :func:`_pin`."""
        self._proc: subprocess.Popen[bytes] | None = None
        self._to: int = -1
        self._from: int = -1
        self._stderr: Any = None
        self.workers_started = 0
        self.deaths = 0
        self.runners: set[int] = set()

    # ----------------------------------------------------------- lifecycle

    def __enter__(self) -> KernelExecutor:
        return self

    def __exit__(self, kind: type[BaseException] | None, *exc: object) -> None:
        if kind is not None and not issubclass(kind, Exception):
            self.terminate()  # KeyboardInterrupt, SystemExit: do not wait
        else:
            self.close()

    def terminate(self) -> None:
        """Kill the worker now (and any runner or child of it), without letting
        it finish the traces it holds: for an interrupted caller. The next
        :meth:`run` starts a new worker."""
        self._kill()
        self._reset()

    def close(self) -> None:
        """Stop the worker (its seals go with it)."""
        proc = self._proc
        if proc is None:
            return
        with contextlib.suppress(OSError):
            _send(self._to, ("exit",))
        import subprocess  # noqa: PLC0415 (controller side only, see the imports)

        try:
            proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            self._kill()
        self._reset()

    def _reset(self) -> None:
        for fd in (self._to, self._from):
            if fd >= 0:
                with contextlib.suppress(OSError):
                    os.close(fd)
        if self._stderr is not None:
            self._stderr.close()
        self._proc, self._to, self._from, self._stderr = None, -1, -1, None

    def _kill(self) -> None:
        proc = self._proc
        if proc is None:
            return
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.pid, signal.SIGKILL)  # the worker and any forked child of it
        import subprocess  # noqa: PLC0415 (controller side only, see the imports)

        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(timeout=5)

    def _start(self) -> None:
        import subprocess  # noqa: PLC0415 (controller side only, see the imports)
        import tempfile  # noqa: PLC0415

        req_r, req_w = os.pipe()
        rep_r, rep_w = os.pipe()
        src = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
        env = dict(os.environ)
        env["PYTHONPATH"] = src + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
        self._stderr = tempfile.TemporaryFile()  # noqa: SIM115 (closed in _reset)
        code = "from sealkit.fidelity.executor import worker_main; worker_main()"
        self._proc = subprocess.Popen(
            [sys.executable, "-S", "-c", code, str(req_r), str(rep_w),
             str(-1 if self.cpu is None else self.cpu), str(os.getpid())],
            pass_fds=(req_r, rep_w), stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
            stderr=self._stderr, env=env, start_new_session=True, close_fds=True,
        )  # fmt: skip
        os.close(req_r)
        os.close(rep_w)
        self._to, self._from = req_w, rep_r
        self.workers_started += 1
        try:
            hello = _recv(self._from, time.monotonic() + 60)
        except TimeoutError:
            hello = None
        if not hello or hello[0] != "ready":
            detail = hello[1] if hello else self._death_note()
            self._kill()
            self._reset()
            raise WorkerDiedError(
                f"kernel worker failed to start: {_last_line(detail)}", str(detail)
            )

    def _death_note(self) -> str:
        proc = self._proc
        note = "no reply"
        if proc is not None:
            import subprocess  # noqa: PLC0415 (controller side only, see the imports)

            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(timeout=2)
            rc = proc.returncode
            if rc is not None and rc < 0:
                note = f"killed by signal {-rc} ({signal.Signals(-rc).name})"
            elif rc is not None:
                note = f"exited with status {rc}"
        if self._stderr is not None:
            self._stderr.seek(0)
            tail = self._stderr.read()[-2000:].decode("utf-8", "replace").strip()
            if tail:
                note += f"; stderr: {tail}"
        return note

    # ----------------------------------------------------------- running

    def check(self, ops: Sequence[Op] | Sequence[Step]) -> None:
        """Raise :class:`OutsideArenaError` if :meth:`run` would refuse ``ops``."""
        check_trace(ops, self.window)

    def run(
        self, ops: Sequence[Op] | Sequence[Step], *,
        snapshots: SnapshotMode | set[int] = "every", flags: FlagMode | set[int] = "end",
    ) -> KernelRun:  # fmt: skip
        """Run one trace; see :class:`KernelRun`. Raises :class:`OutsideArenaError`
        (before anything runs) for a trace that leaves the arena."""
        return next(iter(self.run_many([ops], snapshots=snapshots, flags=flags)))

    def run_many(
        self, traces: Iterable[Sequence[Op] | Sequence[Step]], *,
        snapshots: SnapshotMode | set[int] = "every", flags: FlagMode | set[int] = "end",
        depth: int = 2, prechecked: bool = False,
    ) -> Generator[KernelRun, None, None]:  # fmt: skip
        """Run traces in order, keeping up to ``depth`` of them queued in the
        worker (so it never waits for the caller). Yields one
        :class:`KernelRun` per trace, in order; a worker death is reported in
        the run that caused it and the next trace gets a fresh worker.
        Refusals raise :class:`OutsideArenaError` when the trace is reached.
        ``prechecked``: the caller already ran :func:`refusal` on every call,
        so only the worker's own check (with its real addresses) runs.
        """
        pending: list[tuple[tuple[Op, ...], tuple[Any, ...], bool]] = []
        source = iter(traces)
        exhausted = False
        try:
            while True:
                while not exhausted and len(pending) < max(1, depth):
                    try:
                        trace = next(source)
                    except StopIteration:
                        exhausted = True
                        break
                    plain = tuple(_plain_ops(trace))
                    if not prechecked:
                        check_trace(plain, self.window)
                    heap = uses_heap(plain)
                    msg = (
                        "run", list(plain), self.window,
                        _steps_bytes(len(plain), snapshots, plain, "snapshot"),
                        _steps_bytes(len(plain), flags, plain, "flags"), heap,
                    )  # fmt: skip
                    pending.append((plain, msg, False))
                    self._post(pending, len(pending) - 1)
                if not pending:
                    return
                yield self._collect(pending)
        except BaseException as exc:
            if not isinstance(exc, Exception | GeneratorExit):
                # KeyboardInterrupt / SystemExit: the caller is leaving. Waiting
                # for the queued traces could take the whole timeout (a long
                # trace runs on): kill the worker instead.
                self.terminate()
                pending.clear()
            raise
        finally:
            if any(sent for _, _, sent in pending):
                # Abandoned mid-batch (or a refusal): the queued traces' replies
                # would answer the next run. Drop them, or the worker.
                self._drain(sum(1 for _, _, sent in pending if sent))

    def _drain(self, count: int) -> None:
        if self._proc is None:
            return  # closed or killed meanwhile: nothing to drain
        try:
            for _ in range(count):
                if _recv(self._from, time.monotonic() + self.timeout) is None:
                    raise TimeoutError
        except (TimeoutError, OSError):
            self._kill()
            self._reset()

    def _post(self, pending: list[tuple[tuple[Op, ...], tuple[Any, ...], bool]], i: int) -> None:
        plain, msg, sent = pending[i]
        if sent:
            return
        if self._proc is None:
            self._start()
        try:
            _send(self._to, msg)
        except OSError:
            return  # the worker is gone; _collect finds out and restarts
        pending[i] = (plain, msg, True)

    def _collect(self, pending: list[tuple[tuple[Op, ...], tuple[Any, ...], bool]]) -> KernelRun:
        while True:
            plain, msg, sent = pending[0]
            if not sent:
                self._post(pending, 0)
            started = time.monotonic()
            zones = ("p", "h") if msg[5] else ("p",)
            try:
                reply = _recv(self._from, started + self.timeout) if self._proc else None
            except TimeoutError:
                reply = ("timeout",)
            if reply is None or reply[0] == "timeout":
                # The worker itself is gone (or hung): report this trace, start
                # a new worker, and send again what was queued behind it.
                how = (
                    f"no answer within {self.timeout:g}s (worker killed)"
                    if reply
                    else f"the worker died: {self._death_note()}"
                )
                self._kill()
                self._reset()
                self.deaths += 1
                pending.pop(0)
                pending[:] = [(p, m, False) for p, m, _ in pending]
                for k in range(len(pending)):
                    self._post(pending, k)
                return KernelRun(plain, self.window, zones, died=how)
            kind = reply[0]
            pending.pop(0)
            if kind == "died":
                # A runner died under this trace; the worker forks a new one.
                self.deaths += 1
                return KernelRun(plain, self.window, zones, died=reply[1])
            if kind == "refused":
                raise reply[1]
            if kind == "fail":
                raise WorkerDiedError(f"kernel executor failure: {_last_line(reply[1])}", reply[1])
            _, results, snaps, flagged, died, pid, base = reply
            self.runners.add(pid)
            run = KernelRun(
                plain, self.window, zones, results, _expand(snaps), flagged, worker=pid,
                bases=Bases(base, 0), seconds=time.monotonic() - started,
            )  # fmt: skip
            if died is not None:
                run.died_step, run.died = died
                self.deaths += 1
            return run


def _last_line(text: object) -> str:
    """The last non-blank line of a traceback (the exception itself)."""
    lines = [line for line in str(text).splitlines() if line.strip()]
    return lines[-1].strip() if lines else "no detail"


def _expand(snaps: list[RawSnap | int | None]) -> list[RawSnap | None]:
    """Undo the worker's "unchanged" encoding (0 = same as the last snapshot,
    None = no snapshot at this step)."""
    out: list[RawSnap | None] = []
    last: RawSnap | None = None
    for snap in snaps:
        if snap is None:
            out.append(None)
        elif isinstance(snap, int):
            out.append(last)
        else:
            out.append(snap)
            last = snap
    return out

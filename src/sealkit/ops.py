"""The op language: one frozen value per memory-management call.

Pure data: no I/O. The same ``Op`` objects run on the model
(:mod:`sealkit.model`) and on the real kernel (:mod:`sealkit.fidelity.executor`), and a
trace recorded on one side replays on the other.

Addresses
---------
Ops hold absolute 64-bit addresses. Two *zones* give traces their
page-relative spelling: the arena (``p``: ``p0`` is the arena base) and the
heap (``h``: ``h0`` is the initial program break). A :class:`Bases` says
where the zones are; the model uses :data:`MODEL_BASES`, a kernel executor
its own reservation. :func:`rebase` moves ops and results from one to the
other. Addresses outside both zones (``0``, ``0xfffffffffffff000``, the
kernel half) are written in hex and are never moved.

Results
-------
A result is an ``int`` in the kernel's own convention: ``>= 0`` is a value
(0, an address, a byte count) and ``-errno`` is an error. :data:`ELSEWHERE`
stands for "an address outside the arena" (a mapping placed or moved where
the trace cannot see it).

Text form
---------
One call per line, ``#`` comments, blank lines ignored::

    mmap        p0 4p rw- private|anon|fixed        = p0
    write       p0 4p                               = 0
    mseal       p1 2p                               = 0
    munmap      p0 4p                               = EPERM
    mmap        p8 4p r-- private|fixed file=f1 off=2p
    mremap      p0 4p 8p maymove|fixed p12          = EPERM
    madvise     p0 4p dontneed                      = EPERM
    brk         h4                                  = h4
    pwrite_mem  p1 1p x                             = 1p
    ftruncate   f1 1p                               = 0

The calls sealing does not cover (writes from outside the process, changes
to a mapping's file, msync, mincore, mlockall) are ops too; each names in
``ATTACKER`` the capability an attacker needs to make it (:data:`ATTACKERS`,
:func:`attacker_of`). Byte counts are results written as lengths (``1p``).

``format_trace(parse_trace(text)) == format_trace(...)`` exactly, and
``parse_trace(format_trace(steps)) == steps`` (tested with Hypothesis).
"""

from __future__ import annotations

import errno as _errno
import re
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field, fields, replace
from typing import ClassVar, Final

from .errors import ParseError
from .flags import (
    PAGE_SIZE,
    Madv,
    MapFlag,
    MclFlag,
    MremapFlag,
    MsFlag,
    Prot,
    SealV1,
    SealV3,
    SplitSeal,
    prot_to_str,
)

__all__ = [
    "ATTACKERS",
    "ELSEWHERE",
    "FILE_PAGES",
    "MEMORY_WRITES",
    "MODEL_BASES",
    "Bases",
    "Brk",
    "FilePwrite",
    "Fork",
    "Ftruncate",
    "Madvise",
    "MemoryWrite",
    "Mimmutable",
    "Mincore",
    "Mlock",
    "Mlockall",
    "Mmap",
    "Mprotect",
    "Mremap",
    "Mseal",
    "MsealSplit",
    "MsealV1",
    "MsealV3",
    "Msync",
    "Munlock",
    "Munlockall",
    "Munmap",
    "Op",
    "PkeyMprotect",
    "Poke",
    "ProcessMadvise",
    "Punch",
    "PwriteMem",
    "Step",
    "VmWritev",
    "Write",
    "attacker_of",
    "errno_name",
    "format_result",
    "format_step",
    "format_trace",
    "op_names",
    "parse_op",
    "parse_result",
    "parse_step",
    "parse_trace",
    "rebase",
    "token_page",
    "write_token",
]

MASK64: Final = (1 << 64) - 1
ELSEWHERE: Final = 1 << 64
"""Result of an mmap/mremap that placed the mapping outside the arena."""

ZONE_PAGES: Final = 1 << 20
"""Pages on each side of a zone base that are spelled zone-relative (4 GiB)."""

FILE_PAGES: Final = 64
"""Size in pages of every file a trace names (``file=f1``): whoever runs the
trace (model or kernel executor) provides it, every byte ``F`` (0x46)."""


def token_page(token: str) -> bytes:
    """The page a content token stands for on a real kernel: ``"0"`` is zeroes,
    any other one-character token is that byte repeated (``F`` for file data,
    ``a``..``z`` for written data)."""
    if token == "0":
        return bytes(PAGE_SIZE)
    return token.encode("ascii") * PAGE_SIZE


def write_token(op_tag: str | None, zone_page: int) -> str:
    """The token a :class:`Write` stores into the page at ``zone_page``."""
    return op_tag if op_tag is not None else chr(ord("a") + zone_page % 26)


@dataclass(frozen=True, slots=True)
class Bases:
    """Where the zones are: ``arena`` is ``p0``, ``heap`` is ``h0`` (both page-aligned)."""

    arena: int
    heap: int

    def zone_of(self, addr: int) -> tuple[str, int] | None:
        """``("p", offset)`` / ``("h", offset)`` if ``addr`` is near a zone base."""
        for zone, base in (("p", self.arena), ("h", self.heap)):
            off = addr - base
            if -ZONE_PAGES * PAGE_SIZE <= off < ZONE_PAGES * PAGE_SIZE:
                return zone, off
        return None

    def base(self, zone: str) -> int:
        """The base address of ``zone`` ("p" or "h")."""
        return self.arena if zone == "p" else self.heap


MODEL_BASES: Final = Bases(arena=0x7E00_0000_0000, heap=0x5555_5600_0000)
"""The zone bases the model uses (and that traces are parsed against by default)."""


# --------------------------------------------------------------------------- ops


@dataclass(frozen=True, slots=True)
class Op:
    """Base of every call. ``NAME`` is the text-form keyword."""

    NAME: ClassVar[str] = ""
    RETURNS_ADDRESS: ClassVar[bool] = False
    RETURNS_BYTES: ClassVar[bool] = False
    """The result is a byte count, written as a length (``= 1p``)."""
    ADDRESS_FIELDS: ClassVar[tuple[str, ...]] = ("addr",)
    ATTACKER: ClassVar[str] = "syscalls"
    """What an attacker needs to make this call (one of :data:`ATTACKERS`):
    ``syscalls`` are the process's own memory-management calls; the others
    reach the process from outside (see :data:`ATTACKERS`)."""

    def __repr__(self) -> str:
        parts = []
        for f in fields(self):
            value = getattr(self, f.name)
            if f.name in self.ADDRESS_FIELDS and isinstance(value, int):
                parts.append(f"{f.name}={value:#x}")
            else:
                parts.append(f"{f.name}={value!r}")
        return f"{type(self).__name__}({', '.join(parts)})"


@dataclass(frozen=True, slots=True, repr=False)
class Mmap(Op):
    """``mmap(addr, length, prot, flags, fd, offset)``.

    ``file`` names a file the runner provides (filled with ``F`` pages);
    ``file_ro`` maps it from an O_RDONLY descriptor (no VM_MAYWRITE). ``None``
    with ``MapFlag.ANONYMOUS`` is anonymous memory; ``None`` without it is
    ``fd=-1`` (which the kernel rejects with EBADF).
    """

    NAME: ClassVar[str] = "mmap"
    RETURNS_ADDRESS: ClassVar[bool] = True
    addr: int
    length: int
    prot: Prot
    flags: MapFlag
    file: str | None = None
    offset: int = 0
    file_ro: bool = False


@dataclass(frozen=True, slots=True, repr=False)
class Munmap(Op):
    """``munmap(addr, length)``."""

    NAME: ClassVar[str] = "munmap"
    addr: int
    length: int


@dataclass(frozen=True, slots=True, repr=False)
class Mprotect(Op):
    """``mprotect(addr, length, prot)``."""

    NAME: ClassVar[str] = "mprotect"
    addr: int
    length: int
    prot: Prot


@dataclass(frozen=True, slots=True, repr=False)
class PkeyMprotect(Op):
    """``pkey_mprotect(addr, length, prot, pkey)``."""

    NAME: ClassVar[str] = "pkey_mprotect"
    addr: int
    length: int
    prot: Prot
    pkey: int = -1


@dataclass(frozen=True, slots=True, repr=False)
class Mremap(Op):
    """``mremap(addr, old_length, new_length, flags, new_addr)``."""

    NAME: ClassVar[str] = "mremap"
    RETURNS_ADDRESS: ClassVar[bool] = True
    ADDRESS_FIELDS: ClassVar[tuple[str, ...]] = ("addr", "new_addr")
    addr: int
    old_length: int
    new_length: int
    flags: MremapFlag = MremapFlag.NONE
    new_addr: int = 0


@dataclass(frozen=True, slots=True, repr=False)
class Madvise(Op):
    """``madvise(addr, length, advice)``; ``advice`` is a ``Madv`` or any int."""

    NAME: ClassVar[str] = "madvise"
    addr: int
    length: int
    advice: int


@dataclass(frozen=True, slots=True, repr=False)
class ProcessMadvise(Op):
    """``process_madvise(pidfd(self), iovecs, advice, 0)``: ``ranges`` are (addr, length)."""

    NAME: ClassVar[str] = "process_madvise"
    RETURNS_BYTES: ClassVar[bool] = True
    ADDRESS_FIELDS: ClassVar[tuple[str, ...]] = ()
    advice: int
    ranges: tuple[tuple[int, int], ...]


@dataclass(frozen=True, slots=True, repr=False)
class Mseal(Op):
    """Linux ``mseal(addr, length, flags)`` (6.10+)."""

    NAME: ClassVar[str] = "mseal"
    addr: int
    length: int
    flags: int = 0


@dataclass(frozen=True, slots=True, repr=False)
class MsealV1(Op):
    """The Oct 2023 RFC's ``mseal(addr, length, types, flags)`` with per-syscall types."""

    NAME: ClassVar[str] = "mseal_v1"
    addr: int
    length: int
    types: SealV1
    flags: int = 0


@dataclass(frozen=True, slots=True, repr=False)
class MsealV3(Op):
    """The Dec 2023 v3 proposal's ``mseal(addr, length, types, flags)`` with functional types."""

    NAME: ClassVar[str] = "mseal_v3"
    addr: int
    length: int
    types: SealV3
    flags: int = 0


@dataclass(frozen=True, slots=True, repr=False)
class Mimmutable(Op):
    """OpenBSD ``mimmutable(addr, length)``."""

    NAME: ClassVar[str] = "mimmutable"
    addr: int
    length: int


@dataclass(frozen=True, slots=True, repr=False)
class MsealSplit(Op):
    """Chrome's split sealing: an unmap seal and/or a protection seal."""

    NAME: ClassVar[str] = "mseal_split"
    addr: int
    length: int
    seals: SplitSeal


@dataclass(frozen=True, slots=True, repr=False)
class Brk(Op):
    """Raw ``brk(addr)``; returns the resulting break (``brk(0)`` queries it)."""

    NAME: ClassVar[str] = "brk"
    RETURNS_ADDRESS: ClassVar[bool] = True
    addr: int


@dataclass(frozen=True, slots=True, repr=False)
class Mlock(Op):
    """``mlock(addr, length)``, or ``mlock2(..., MLOCK_ONFAULT)`` when ``onfault``."""

    NAME: ClassVar[str] = "mlock"
    addr: int
    length: int
    onfault: bool = False


@dataclass(frozen=True, slots=True, repr=False)
class Munlock(Op):
    """``munlock(addr, length)``."""

    NAME: ClassVar[str] = "munlock"
    addr: int
    length: int


@dataclass(frozen=True, slots=True, repr=False)
class Write(Op):
    """A user-space store into ``[addr, addr+length)``, page by page.

    Each page gets the content token ``tag`` or, when ``tag`` is ``None``,
    the letter of its zone page index (``a`` for page 0, as the probe does).
    Stops with ``-EFAULT`` at the first page that cannot be written (no
    PROT_WRITE, unmapped, guard): the pages before it were written. Never a
    forced write (that is ``/proc/PID/mem``, which sealing does not stop).
    """

    NAME: ClassVar[str] = "write"
    addr: int
    length: int
    tag: str | None = None


@dataclass(frozen=True, slots=True, repr=False)
class Fork(Op):
    """``fork()``; the ops after it run in the child."""

    NAME: ClassVar[str] = "fork"
    ADDRESS_FIELDS: ClassVar[tuple[str, ...]] = ()


# ----------------------------------------------- what sealing does not cover
#
# Writers from outside the process, changes to a mapping's backing file, and
# calls sealing leaves alone (issue 14). Each says in ``ATTACKER`` what an
# attacker needs to make it (one place: the analyzer's attacker profiles read
# it through attacker_of()).

ATTACKERS: Final[tuple[str, ...]] = ("syscalls", "procmem", "ptrace", "file-write")
"""Attacker capabilities, from weakest: ``syscalls`` (the process's own
memory-management calls), ``procmem`` (write ``/proc/PID/mem`` and
``process_vm_writev`` into the process: same user or CAP_SYS_PTRACE, subject
to ``PTRACE_MODE_ATTACH`` and yama), ``ptrace`` (attach with ``ptrace`` and
``PTRACE_POKEDATA``), ``file-write`` (write, truncate or punch the file
behind a mapping)."""


@dataclass(frozen=True, slots=True, repr=False)
class MemoryWrite(Op):
    """A store into the process's memory from outside its own code: ``length``
    bytes at ``addr`` of ``tag`` (or, without a tag, each page the letter of
    its zone page, as ``write``). The kinds differ in how they reach the
    pages: :class:`PwriteMem`, :class:`VmWritev`, :class:`Poke`."""

    addr: int
    length: int
    tag: str | None = None


@dataclass(frozen=True, slots=True, repr=False)
class PwriteMem(MemoryWrite):
    """``pwrite`` on ``/proc/self/mem`` at ``addr``.

    Forced (``FOLL_FORCE``) when the kernel's ``proc_mem.force_override`` is
    ``always``: it then writes private pages without write permission (and
    sealed ones) by copy-on-write. Returns the bytes written, ``-EIO`` when
    none could be, ``-EINVAL`` for an address at or above 2**63 (a negative
    file offset). Pages written only in part hold mixed bytes.
    """

    NAME: ClassVar[str] = "pwrite_mem"
    RETURNS_BYTES: ClassVar[bool] = True
    ATTACKER: ClassVar[str] = "procmem"


@dataclass(frozen=True, slots=True, repr=False)
class VmWritev(MemoryWrite):
    """``process_vm_writev`` into the process itself: an unforced store
    (honours write permission). Returns the bytes written, or ``-EFAULT``
    when none could be."""

    NAME: ClassVar[str] = "vm_writev"
    RETURNS_BYTES: ClassVar[bool] = True
    ATTACKER: ClassVar[str] = "procmem"


@dataclass(frozen=True, slots=True, repr=False)
class Poke(MemoryWrite):
    """``PTRACE_POKEDATA`` word by word over ``[addr, addr+length)`` from a
    tracer (always ``FOLL_FORCE``, whatever ``proc_mem.force_override`` says).
    Returns 0, or ``-EIO`` at the first word that could not be written (the
    words before it stay written)."""

    NAME: ClassVar[str] = "poke"
    ATTACKER: ClassVar[str] = "ptrace"


@dataclass(frozen=True, slots=True, repr=False)
class FilePwrite(Op):
    """``pwrite`` of ``length`` bytes of ``tag`` at ``offset`` of the trace's
    file ``file`` (its read-write descriptor; ``file_ro``: the read-only one).
    Without a tag each file page gets the letter of its page index. Returns
    the bytes written."""

    NAME: ClassVar[str] = "file_pwrite"
    RETURNS_BYTES: ClassVar[bool] = True
    ADDRESS_FIELDS: ClassVar[tuple[str, ...]] = ()
    ATTACKER: ClassVar[str] = "file-write"
    file: str
    offset: int
    length: int
    tag: str | None = None
    file_ro: bool = False


@dataclass(frozen=True, slots=True, repr=False)
class Ftruncate(Op):
    """``ftruncate`` of the trace's file ``file`` to ``length`` bytes."""

    NAME: ClassVar[str] = "ftruncate"
    ADDRESS_FIELDS: ClassVar[tuple[str, ...]] = ()
    ATTACKER: ClassVar[str] = "file-write"
    file: str
    length: int
    file_ro: bool = False


@dataclass(frozen=True, slots=True, repr=False)
class Punch(Op):
    """``fallocate(FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, offset, length)``
    on the trace's file ``file``: the range reads as zeroes, the size stays."""

    NAME: ClassVar[str] = "punch"
    ADDRESS_FIELDS: ClassVar[tuple[str, ...]] = ()
    ATTACKER: ClassVar[str] = "file-write"
    file: str
    offset: int
    length: int
    file_ro: bool = False


@dataclass(frozen=True, slots=True, repr=False)
class Msync(Op):
    """``msync(addr, length, flags)``; ``flags`` is an ``MsFlag`` or any int."""

    NAME: ClassVar[str] = "msync"
    addr: int
    length: int
    flags: int = MsFlag.SYNC


@dataclass(frozen=True, slots=True, repr=False)
class Mincore(Op):
    """``mincore(addr, length, vec)``: only the result is an answer (the
    vector says which pages are resident, which no layout shows)."""

    NAME: ClassVar[str] = "mincore"
    addr: int
    length: int


@dataclass(frozen=True, slots=True, repr=False)
class Mlockall(Op):
    """``mlockall(flags)``; ``flags`` is an ``MclFlag`` or any int."""

    NAME: ClassVar[str] = "mlockall"
    ADDRESS_FIELDS: ClassVar[tuple[str, ...]] = ()
    flags: int = MclFlag.CURRENT


@dataclass(frozen=True, slots=True, repr=False)
class Munlockall(Op):
    """``munlockall()``."""

    NAME: ClassVar[str] = "munlockall"
    ADDRESS_FIELDS: ClassVar[tuple[str, ...]] = ()


def attacker_of(op: Op | type[Op]) -> str:
    """The capability (one of :data:`ATTACKERS`) an attacker needs to make ``op``."""
    return op.ATTACKER


OP_TYPES: Final[tuple[type[Op], ...]] = (
    Mmap, Munmap, Mprotect, PkeyMprotect, Mremap, Madvise, ProcessMadvise, Mseal,
    MsealV1, MsealV3, Mimmutable, MsealSplit, Brk, Mlock, Munlock, Write, Fork,
    PwriteMem, VmWritev, Poke, FilePwrite, Ftruncate, Punch, Msync, Mincore, Mlockall,
    Munlockall,
)  # fmt: skip
_BY_NAME: Final = {t.NAME: t for t in OP_TYPES}
MEMORY_WRITES: Final[dict[str, type[MemoryWrite]]] = {
    t.NAME: t for t in (PwriteMem, VmWritev, Poke)
}
"""The kinds of :class:`MemoryWrite`, by name."""


def op_names() -> tuple[str, ...]:
    """The text-form keywords, in a stable order."""
    return tuple(_BY_NAME)


@dataclass(frozen=True, slots=True)
class Step:
    """One call of a trace and its result (``None`` when not run yet)."""

    op: Op
    result: int | None = None
    note: str = field(default="", compare=False)


# ------------------------------------------------------------------ formatting

_WORD_RE: Final = re.compile(r"[a-z_]+")


def _fmt_addr(addr: int, bases: Bases) -> str:
    zoned = bases.zone_of(addr)
    if zoned is None:
        return "0" if addr == 0 else f"{addr & MASK64:#x}"
    zone, off = zoned
    pages, rest = divmod(off, PAGE_SIZE)
    if rest == 0:
        return f"{zone}{pages}"
    if rest <= PAGE_SIZE // 2:
        return f"{zone}{pages}+{rest}"
    return f"{zone}{pages + 1}-{PAGE_SIZE - rest}"


def _fmt_len(length: int) -> str:
    length &= MASK64
    if length >= 1 << 63 or length >= ZONE_PAGES * PAGE_SIZE * 16:
        return f"{length:#x}"
    pages, rest = divmod(length, PAGE_SIZE)
    if pages == 0:
        return str(rest)
    if rest == 0:
        return f"{pages}p"
    if rest <= PAGE_SIZE // 2:
        return f"{pages}p+{rest}"
    return f"{pages + 1}p-{PAGE_SIZE - rest}"


def _fmt_prot(prot: int) -> str:
    if prot & ~0x7:
        return f"{prot & MASK64:#x}"
    return prot_to_str(prot)


_FLAG_WORDS: Final[dict[type, dict[str, int]]] = {
    MapFlag: {
        "shared_validate": MapFlag.SHARED_VALIDATE, "shared": MapFlag.SHARED,
        "private": MapFlag.PRIVATE, "anon": MapFlag.ANONYMOUS,
        "fixed_noreplace": MapFlag.FIXED_NOREPLACE, "fixed": MapFlag.FIXED,
        "growsdown": MapFlag.GROWSDOWN,
        "denywrite": MapFlag.DENYWRITE, "executable": MapFlag.EXECUTABLE,
        "locked": MapFlag.LOCKED, "noreserve": MapFlag.NORESERVE,
        "populate": MapFlag.POPULATE, "nonblock": MapFlag.NONBLOCK, "stack": MapFlag.STACK,
        "hugetlb": MapFlag.HUGETLB, "sync": MapFlag.SYNC,
        "uninitialized": MapFlag.UNINITIALIZED, "sealable": MapFlag.SEALABLE,
    },
    MremapFlag: {
        "maymove": MremapFlag.MAYMOVE, "fixed": MremapFlag.FIXED,
        "dontunmap": MremapFlag.DONTUNMAP,
    },
    SealV1: {
        "mseal": SealV1.MSEAL, "mprotect": SealV1.MPROTECT, "munmap": SealV1.MUNMAP,
        "mmap": SealV1.MMAP, "mremap": SealV1.MREMAP,
    },
    SealV3: {
        "seal": SealV3.SEAL, "base": SealV3.BASE, "prot_pkey": SealV3.PROT_PKEY,
        "discard_ro_anon": SealV3.DISCARD_RO_ANON,
    },
    SplitSeal: {"unmap": SplitSeal.UNMAP, "prot": SplitSeal.PROT},
    MsFlag: {"async": MsFlag.ASYNC, "sync": MsFlag.SYNC, "invalidate": MsFlag.INVALIDATE},
    MclFlag: {
        "current": MclFlag.CURRENT, "future": MclFlag.FUTURE, "onfault": MclFlag.ONFAULT,
    },
}  # fmt: skip


def _fmt_flags(value: int, kind: type) -> str:
    words = _FLAG_WORDS[kind]
    rest = value & MASK64
    parts = []
    for word, bit in words.items():
        if bit and rest & bit == bit:
            parts.append(word)
            rest &= ~int(bit)
    if rest:
        parts.append(f"{rest:#x}")
    return "|".join(parts) if parts else "0"


def _fmt_advice(advice: int) -> str:
    try:
        return Madv(advice).name.lower()
    except ValueError:
        return str(advice)


def errno_name(err: int) -> str:
    """``1`` -> ``"EPERM"`` (``"E<n>"`` for an unknown number)."""
    return _errno.errorcode.get(err, f"E{err}")


def format_result(op: Op, result: int, bases: Bases = MODEL_BASES) -> str:
    """The text after ``=``: ``0``, ``p12``, ``EPERM``, ``E4095``, ``elsewhere``,
    ``4p``; :func:`parse_result` reads it back as ``result``. ``ValueError``
    for a result no 64-bit register holds (other than :data:`ELSEWHERE`)."""
    if result == ELSEWHERE:
        return "elsewhere"
    if not RESULT_MIN <= result <= MASK64:
        raise ValueError(f"result {result} does not fit in 64 bits")
    if result < 0:
        return errno_name(-result)
    if op.RETURNS_ADDRESS:
        return _fmt_addr(result, bases)
    if op.RETURNS_BYTES:
        return _fmt_len(result)
    return str(result)


def format_op(op: Op, bases: Bases = MODEL_BASES) -> str:
    """The text form of one call, without its result."""

    def a(value: int) -> str:
        return _fmt_addr(value, bases)

    words: list[str] = [f"{op.NAME:<8}"]
    if isinstance(op, Mmap):
        words += [
            a(op.addr),
            _fmt_len(op.length),
            _fmt_prot(op.prot),
            _fmt_flags(op.flags, MapFlag),
        ]
        if op.file is not None:
            words.append(f"file={op.file}{':ro' if op.file_ro else ''}")
        if op.offset:
            words.append(f"off={_fmt_len(op.offset)}")
    elif isinstance(op, Mremap):
        words += [a(op.addr), _fmt_len(op.old_length), _fmt_len(op.new_length),
                  _fmt_flags(op.flags, MremapFlag)]  # fmt: skip
        if op.new_addr or op.flags & MremapFlag.FIXED:
            words.append(a(op.new_addr))
    elif isinstance(op, ProcessMadvise):
        words.append(_fmt_advice(op.advice))
        words += [f"{a(addr)}:{_fmt_len(length)}" for addr, length in op.ranges]
    elif isinstance(op, Brk):
        words.append(a(op.addr))
    elif isinstance(op, Fork | Munlockall):
        pass
    elif isinstance(op, Mlockall):
        words.append(_fmt_flags(op.flags, MclFlag))
    elif isinstance(op, FilePwrite | Ftruncate | Punch):
        words.append(op.file + (":ro" if op.file_ro else ""))
        if isinstance(op, FilePwrite | Punch):
            words.append(_fmt_len(op.offset))
        words.append(_fmt_len(op.length))
        if isinstance(op, FilePwrite) and op.tag is not None:
            words.append(op.tag)
    else:
        words += [a(op.addr), _fmt_len(op.length)]  # type: ignore[attr-defined]
        if isinstance(op, Mprotect | PkeyMprotect):
            words.append(_fmt_prot(op.prot))
        if isinstance(op, PkeyMprotect):
            words.append(str(op.pkey))
        elif isinstance(op, Madvise):
            words.append(_fmt_advice(op.advice))
        elif isinstance(op, MsealV1):
            words.append(_fmt_flags(op.types, SealV1))
        elif isinstance(op, MsealV3):
            words.append(_fmt_flags(op.types, SealV3))
        elif isinstance(op, MsealSplit):
            words.append(_fmt_flags(op.seals, SplitSeal))
        elif isinstance(op, Mlock) and op.onfault:
            words.append("onfault")
        elif isinstance(op, Write | MemoryWrite) and op.tag is not None:
            words.append(op.tag)
        elif isinstance(op, Msync):
            words.append(_fmt_flags(op.flags, MsFlag))
        if isinstance(op, Mseal | MsealV1 | MsealV3) and op.flags:
            words.append(f"flags={op.flags & MASK64:#x}")
    return " ".join(words).rstrip()


def format_step(step: Step, bases: Bases = MODEL_BASES, width: int = 48) -> str:
    """One trace line: the call, padded, then ``= result`` when known."""
    text = format_op(step.op, bases)
    if step.result is not None:
        text = f"{text:<{width}} = {format_result(step.op, step.result, bases)}"
    if step.note:
        text = f"{text}  # {step.note}"
    return text


def format_trace(steps: Iterable[Step], bases: Bases = MODEL_BASES) -> str:
    """The whole trace, one line per call, ending with a newline."""
    return "".join(format_step(s, bases) + "\n" for s in steps)


# --------------------------------------------------------------------- parsing

_ADDR_RE: Final = re.compile(r"^([ph])(-?\d+)(?:([+-])(0x[0-9a-fA-F]+|\d+))?$")
_LEN_RE: Final = re.compile(r"^(\d+)p(?:([+-])(0x[0-9a-fA-F]+|\d+))?$")
_INT_RE: Final = re.compile(r"^-?(0x[0-9a-fA-F]+|\d+)$")
_TAG_RE: Final = re.compile(r"^[a-z]$")


class _Bad(Exception):
    pass


ARG_MIN: Final = -(1 << 63)
"""The smallest number a trace may hold: a negative is passed as its 64-bit
two's complement, as the kernel reads it (``fd=-1``, ``pkey=-1``)."""
RESULT_MIN: Final = ARG_MIN
"""The smallest result: ``-errno`` as a register holds it. The kernel's
errnos are 1..4095 (``MAX_ERRNO``, include/linux/err.h); larger ones come
only from hand-written traces and are written ``E<n>``."""
_MAX_DIGITS: Final = {10: 20, 16: 16}  # 2**64 - 1 has 20 decimal, 16 hex digits


def _quote(text: str, limit: int = 40) -> str:
    """``repr(text)``, cut short: a bad word may be megabytes long."""
    if len(text) <= limit:
        return repr(text)
    return f"{text[:limit]!r}... ({len(text)} characters)"


def _number(text: str) -> int:
    """The value of a number word (decimal or ``0x`` hex, optional ``-``) already
    matched by one of the patterns. More digits than any 64-bit value has is
    refused *before* ``int()``, which raises ValueError past 4300 decimal digits
    (``sys.get_int_max_str_digits``); decimal leading zeros are allowed (``07``,
    which ``int(text, 0)`` refuses)."""
    body = text[1:] if text.startswith(("+", "-")) else text
    base = 16 if body[:2] in ("0x", "0X") else 10
    if len(body[2 if base == 16 else 0 :].lstrip("0")) > _MAX_DIGITS[base]:
        raise _Bad(f"{_quote(text)} does not fit in 64 bits")
    return int(text, base)


def _fit(value: int, text: str) -> int:
    """``value`` if a system call can receive it (a 64-bit register, negatives
    in two's complement), else refused: the kernel executor could not pass it
    and the model would act on a value no kernel sees (_os.syscalls._u64 draws
    the same line)."""
    if not ARG_MIN <= value <= MASK64:
        raise _Bad(f"{_quote(text)} does not fit in 64 bits")
    return value


def _int(text: str) -> int:
    if not _INT_RE.match(text):
        raise _Bad(f"expected a number, got {_quote(text)}")
    return _fit(_number(text), text)


def _parse_addr(text: str, bases: Bases) -> int:
    m = _ADDR_RE.match(text)
    if m:
        zone, pages, sign, rest = m.groups()
        value = bases.base(zone) + _number(pages) * PAGE_SIZE
        if rest is not None:
            value += _number(rest) if sign == "+" else -_number(rest)
        return _fit(value, text) & MASK64
    if _INT_RE.match(text):
        return _int(text) & MASK64
    raise _Bad(f"expected an address (p3, h0, p3+100, 0x7f00...), got {_quote(text)}")


def _parse_len(text: str) -> int:
    m = _LEN_RE.match(text)
    if m:
        pages, sign, rest = m.groups()
        value = _number(pages) * PAGE_SIZE
        if rest is not None:
            value += _number(rest) if sign == "+" else -_number(rest)
        return _fit(value, text) & MASK64
    if _INT_RE.match(text):
        return _int(text) & MASK64
    raise _Bad(f"expected a length (4p, 4p+1, 4096, 0x...), got {_quote(text)}")


def _parse_prot(text: str) -> Prot:
    if re.fullmatch(r"[r-][w-][x-]", text):
        return Prot(sum(bit for ch, bit in zip(text, (1, 2, 4), strict=True) if ch != "-"))
    if _INT_RE.match(text):
        return Prot(_int(text) & MASK64)
    raise _Bad(f"expected a protection (rw-, r-x, ---) or a number, got {_quote(text)}")


def _parse_flags(text: str, kind: type) -> int:
    words = _FLAG_WORDS[kind]
    value = 0
    if text == "0":
        return kind(0)  # type: ignore[no-any-return]
    for part in text.split("|"):
        if part in words:
            value |= words[part]
        elif _INT_RE.match(part):
            value |= _int(part)
        else:
            known = ", ".join(words)
            raise _Bad(f"unknown {kind.__name__} flag {_quote(part)} (known: {known})")
    return kind(value & MASK64)  # type: ignore[no-any-return]


def _parse_advice(text: str) -> int:
    try:
        return Madv[text.upper()]
    except KeyError:
        pass
    if _INT_RE.match(text):
        value = _int(text)
        try:
            return Madv(value)
        except ValueError:
            return value
    raise _Bad(f"unknown advice {_quote(text)}")


def _options(words: list[str], allowed: Sequence[str]) -> dict[str, str]:
    opts: dict[str, str] = {}
    for word in words:
        key, eq, value = word.partition("=")
        if not eq or key not in allowed:
            raise _Bad(
                f"unexpected {_quote(word)} (allowed here: {', '.join(k + '=' for k in allowed)})"
            )
        if key in opts:
            raise _Bad(f"{key}= given twice")
        opts[key] = value
    return opts


def _arity(words: list[str], low: int, high: int, usage: str) -> None:
    if not low <= len(words) <= high:
        raise _Bad(f"expected: {usage}")


def _parse_op_words(name: str, args: list[str], bases: Bases) -> Op:
    def A(text: str) -> int:
        return _parse_addr(text, bases)

    if name == "mmap":
        _arity(args, 4, 6, "mmap ADDR LEN PROT FLAGS [file=NAME[:ro]] [off=LEN]")
        opts = _options(args[4:], ("file", "off"))
        file = opts.get("file")
        ro = False
        if file is not None:
            file, colon, mode = file.partition(":")
            if not _FILE_RE.fullmatch(file) or (colon and mode != "ro"):
                raise _Bad(f"bad file= value {_quote(opts['file'])} (use file=f1 or file=f1:ro)")
            ro = bool(colon)
        offset = _parse_len(opts["off"]) if "off" in opts else 0
        return Mmap(A(args[0]), _parse_len(args[1]), _parse_prot(args[2]),
                    MapFlag(_parse_flags(args[3], MapFlag)), file, offset, ro)  # fmt: skip
    if name == "mremap":
        _arity(args, 4, 5, "mremap ADDR OLDLEN NEWLEN FLAGS [NEWADDR]")
        new_addr = A(args[4]) if len(args) == 5 else 0
        return Mremap(A(args[0]), _parse_len(args[1]), _parse_len(args[2]),
                      MremapFlag(_parse_flags(args[3], MremapFlag)), new_addr)  # fmt: skip
    if name == "process_madvise":
        _arity(args, 1, 64, "process_madvise ADVICE ADDR:LEN...")
        ranges = []
        for word in args[1:]:
            addr, colon, length = word.partition(":")
            if not colon:
                raise _Bad(f"expected ADDR:LEN, got {_quote(word)}")
            ranges.append((A(addr), _parse_len(length)))
        return ProcessMadvise(_parse_advice(args[0]), tuple(ranges))
    if name == "brk":
        _arity(args, 1, 1, "brk ADDR")
        return Brk(A(args[0]))
    if name == "fork":
        _arity(args, 0, 0, "fork")
        return Fork()
    if name in ("munmap", "mimmutable", "munlock"):
        _arity(args, 2, 2, f"{name} ADDR LEN")
        start, size = A(args[0]), _parse_len(args[1])
        if name == "munmap":
            return Munmap(start, size)
        if name == "mimmutable":
            return Mimmutable(start, size)
        return Munlock(start, size)
    if name == "mprotect":
        _arity(args, 3, 3, "mprotect ADDR LEN PROT")
        return Mprotect(A(args[0]), _parse_len(args[1]), _parse_prot(args[2]))
    if name == "pkey_mprotect":
        _arity(args, 4, 4, "pkey_mprotect ADDR LEN PROT PKEY")
        return PkeyMprotect(A(args[0]), _parse_len(args[1]), _parse_prot(args[2]), _int(args[3]))
    if name == "madvise":
        _arity(args, 3, 3, "madvise ADDR LEN ADVICE")
        return Madvise(A(args[0]), _parse_len(args[1]), _parse_advice(args[2]))
    if name == "mseal":
        _arity(args, 2, 3, "mseal ADDR LEN [flags=N]")
        mseal_flags = _options(args[2:], ("flags",)).get("flags", "0")
        return Mseal(A(args[0]), _parse_len(args[1]), _int(mseal_flags) & MASK64)
    if name in ("mseal_v1", "mseal_v3"):
        _arity(args, 3, 4, f"{name} ADDR LEN TYPES [flags=N]")
        seal_flags = _int(_options(args[3:], ("flags",)).get("flags", "0")) & MASK64
        if name == "mseal_v1":
            return MsealV1(
                A(args[0]), _parse_len(args[1]), SealV1(_parse_flags(args[2], SealV1)), seal_flags
            )
        return MsealV3(
            A(args[0]), _parse_len(args[1]), SealV3(_parse_flags(args[2], SealV3)), seal_flags
        )
    if name == "mseal_split":
        _arity(args, 3, 3, "mseal_split ADDR LEN unmap|prot")
        return MsealSplit(
            A(args[0]), _parse_len(args[1]), SplitSeal(_parse_flags(args[2], SplitSeal))
        )
    if name == "mlock":
        _arity(args, 2, 3, "mlock ADDR LEN [onfault]")
        if len(args) == 3 and args[2] != "onfault":
            raise _Bad(f"expected 'onfault', got {_quote(args[2])}")
        return Mlock(A(args[0]), _parse_len(args[1]), len(args) == 3)
    if name == "write":
        _arity(args, 2, 3, "write ADDR LEN [TAG]")
        tag = None
        if len(args) == 3:
            if not _TAG_RE.match(args[2]):
                raise _Bad(f"a write tag is one lowercase letter, got {_quote(args[2])}")
            tag = args[2]
        return Write(A(args[0]), _parse_len(args[1]), tag)
    writer = MEMORY_WRITES.get(name)
    if writer is not None:
        _arity(args, 2, 3, f"{name} ADDR LEN [TAG]")
        tag = _parse_tag(args[2]) if len(args) == 3 else None
        return writer(A(args[0]), _parse_len(args[1]), tag)
    if name == "file_pwrite":
        _arity(args, 3, 4, "file_pwrite FILE[:ro] OFF LEN [TAG]")
        file, ro = _parse_file(args[0])
        tag = _parse_tag(args[3]) if len(args) == 4 else None
        return FilePwrite(file, _parse_len(args[1]), _parse_len(args[2]), tag, ro)
    if name == "ftruncate":
        _arity(args, 2, 2, "ftruncate FILE[:ro] LEN")
        file, ro = _parse_file(args[0])
        return Ftruncate(file, _parse_len(args[1]), ro)
    if name == "punch":
        _arity(args, 3, 3, "punch FILE[:ro] OFF LEN")
        file, ro = _parse_file(args[0])
        return Punch(file, _parse_len(args[1]), _parse_len(args[2]), ro)
    if name == "msync":
        _arity(args, 3, 3, "msync ADDR LEN async|sync|invalidate")
        return Msync(A(args[0]), _parse_len(args[1]), MsFlag(_parse_flags(args[2], MsFlag)))
    if name == "mincore":
        _arity(args, 2, 2, "mincore ADDR LEN")
        return Mincore(A(args[0]), _parse_len(args[1]))
    if name == "mlockall":
        _arity(args, 1, 1, "mlockall current|future|onfault")
        return Mlockall(MclFlag(_parse_flags(args[0], MclFlag)))
    if name == "munlockall":
        _arity(args, 0, 0, "munlockall")
        return Munlockall()
    raise _Bad(f"unknown call {_quote(name)} (known: {', '.join(_BY_NAME)})")


_FILE_RE: Final = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


def _parse_file(text: str) -> tuple[str, bool]:
    """``f1`` (the read-write descriptor) or ``f1:ro`` (the read-only one)."""
    file, colon, mode = text.partition(":")
    if not _FILE_RE.fullmatch(file) or (colon and mode != "ro"):
        raise _Bad(f"bad file {_quote(text)} (use a name such as f1, or f1:ro)")
    return file, bool(colon)


def _parse_tag(text: str) -> str:
    if not _TAG_RE.match(text):
        raise _Bad(f"a write tag is one lowercase letter, got {_quote(text)}")
    return text


def parse_op(text: str, bases: Bases = MODEL_BASES) -> Op:
    """Parse one call (no result). Raises :class:`ParseError`."""
    step = parse_step(text, bases)
    if step is None:
        raise ParseError("empty line: expected a call")
    if step.result is not None:
        raise ParseError("expected a call without '= result'")
    return step.op


_ERRNO_BY_NAME: Final = {name: num for num, name in _errno.errorcode.items()}


def parse_result(op: Op, text: str, bases: Bases = MODEL_BASES) -> int:
    """Parse the text after ``=`` for ``op`` (the inverse of :func:`format_result`)."""
    text = text.strip()
    if text in _ERRNO_BY_NAME:
        return -_ERRNO_BY_NAME[text]
    if text[:1] == "E" and text[1:].isascii() and text[1:].isdigit():
        # errno_name()'s form for a number errno does not name: the kernel's
        # go up to 4095 (MAX_ERRNO); a hand-written trace may hold any that a
        # register does, and reads back the same.
        try:
            err = _number(text[1:])
        except _Bad as exc:
            raise ParseError(f"bad result {_quote(text)}: {exc}") from None
        if not 1 <= err <= -RESULT_MIN:
            raise ParseError(
                f"bad result {_quote(text)}: an errno is 1 or more (the kernel's: 1..4095)"
                if err == 0
                else f"bad result {_quote(text)}: -{err} does not fit in 64 bits"
            )
        return -err
    if text == "elsewhere":
        return ELSEWHERE
    try:
        if op.RETURNS_ADDRESS:
            return _parse_addr(text, bases)
        if op.RETURNS_BYTES:
            return _parse_len(text)
        return _int(text)
    except _Bad as exc:
        raise ParseError(f"bad result {_quote(text)}: {exc}") from None


def parse_step(text: str, bases: Bases = MODEL_BASES, line: int | None = None) -> Step | None:
    """Parse one trace line; ``None`` for a blank or comment-only line."""
    body, _, note = text.partition("#")
    body = body.strip()
    if not body:
        return None
    # The result follows a "=" that starts a word ("munmap p0 4p = EPERM");
    # options keep their "=" inside a word ("file=f1", "off=2p", "flags=1").
    m = re.search(r"(?:^|\s)=", body)
    if m:
        call, eq, result_text = body[: m.start()], "=", body[m.end() :]
    else:
        call, eq, result_text = body, "", ""
    words = call.split()
    if not words:
        raise ParseError("a result ('= ...') with no call before it", line)
    try:
        op = _parse_op_words(words[0], words[1:], bases)
    except _Bad as exc:
        raise ParseError(str(exc), line) from None
    result = None
    if eq:
        try:
            result = parse_result(op, result_text, bases)
        except ParseError as exc:
            raise ParseError(exc.message, line) from None
    return Step(op, result, note.strip())


def parse_trace(text: str, bases: Bases = MODEL_BASES, source: str | None = None) -> list[Step]:
    """Parse a whole trace. Raises :class:`ParseError` with the line number."""
    steps = []
    for number, line in enumerate(text.splitlines(), 1):
        try:
            step = parse_step(line, bases, number)
        except ParseError as exc:
            raise ParseError(exc.message, number, source) from None
        if step is not None:
            steps.append(step)
    return steps


# ------------------------------------------------------------------- rebasing


def _move(addr: int, old: Bases, new: Bases) -> int:
    zoned = old.zone_of(addr)
    if zoned is None:
        return addr
    zone, off = zoned
    return (new.base(zone) + off) & MASK64


def rebase(op: Op, old: Bases, new: Bases) -> Op:
    """``op`` with its zone addresses moved from ``old`` bases to ``new``."""
    if isinstance(op, ProcessMadvise):
        return replace(op, ranges=tuple((_move(a, old, new), n) for a, n in op.ranges))
    changes = {name: _move(getattr(op, name), old, new) for name in op.ADDRESS_FIELDS}
    return replace(op, **changes) if changes else op


def rebase_result(op: Op, result: int, old: Bases, new: Bases) -> int:
    """A result of ``op`` moved from ``old`` bases to ``new`` (addresses only)."""
    if result < 0 or result == ELSEWHERE or not op.RETURNS_ADDRESS:
        return result
    return _move(result, old, new)


def iter_ranges(op: Op) -> Iterator[tuple[int, int]]:
    """Every (addr, length) range ``op`` names (for arena-bounds checks)."""
    if isinstance(op, ProcessMadvise):
        yield from op.ranges
    elif isinstance(op, Mremap):
        yield op.addr, op.old_length
        if op.flags & MremapFlag.FIXED:
            yield op.new_addr, op.new_length
        else:
            yield op.addr, op.new_length
    elif isinstance(op, Brk):
        yield op.addr, 0
    elif not op.ADDRESS_FIELDS:
        return  # fork, the file calls, mlockall: no memory range
    else:
        yield op.addr, op.length  # type: ignore[attr-defined]

"""Constants of the Linux memory-management interface, as enums.

Pure data: no I/O. Values are the x86_64/aarch64 (asm-generic) ABI values,
which are the same on both architectures for everything listed here.

Every enum's ``repr`` is valid Python that evaluates back to the same value,
so a shrunk Hypothesis failure or an analyzer counterexample can be pasted
into a program::

    >>> Prot.READ | Prot.WRITE
    Prot.READ | Prot.WRITE
    >>> Madv.DONTNEED
    Madv.DONTNEED
    >>> MapFlag(0x40000000)
    MapFlag(0x40000000)

Flag enums keep unknown bits (``boundary=KEEP``): sealkit passes values
through to the kernel unchanged so the kernel decides what is invalid.
"""

from __future__ import annotations

import enum
from typing import Final

__all__ = [
    "MADV_DISCARD",
    "PAGE_SIZE",
    "Madv",
    "MapFlag",
    "MclFlag",
    "MremapFlag",
    "MsFlag",
    "Prot",
    "SealV1",
    "SealV3",
    "SplitSeal",
    "prot_from_str",
    "prot_to_str",
]

PAGE_SIZE: Final = 4096
"""Base page size on x86_64 and on 4K-page aarch64 kernels."""


class _ReprFlag(enum.IntFlag, boundary=enum.KEEP):
    """IntFlag whose repr is a Python expression (``Prot.READ | Prot.WRITE``)."""

    def __repr__(self) -> str:
        cls = type(self).__name__
        value = int(self)
        members = type(self).__members__.values()
        if value == 0:
            for member in members:
                if member.value == 0:
                    return f"{cls}.{member.name}"
            return f"{cls}(0)"
        parts: list[str] = []
        rest = value
        # Named members first, biggest first, so multi-bit aliases win.
        for member in sorted(members, key=lambda m: -bin(m.value).count("1")):
            mval = member.value
            if mval and rest & mval == mval:
                parts.append(f"{cls}.{member.name}")
                rest &= ~mval
        if rest:
            parts.append(f"{cls}({rest:#x})")
        return " | ".join(parts)

    __str__ = __repr__


class Prot(_ReprFlag):
    """``PROT_*`` for mmap, mprotect and pkey_mprotect."""

    NONE = 0
    READ = 0x1
    WRITE = 0x2
    EXEC = 0x4
    SEM = 0x8
    GROWSDOWN = 0x01000000
    GROWSUP = 0x02000000


class MapFlag(_ReprFlag):
    """``MAP_*`` for mmap (x86_64/asm-generic values).

    ``SEALABLE`` is the Dec 2023 (v3) proposal's opt-in flag; no released
    kernel has it, and only the ``proposal-v3`` model policy gives it meaning.
    """

    SHARED = 0x01
    PRIVATE = 0x02
    SHARED_VALIDATE = 0x03
    FIXED = 0x10
    ANONYMOUS = 0x20
    GROWSDOWN = 0x0100
    DENYWRITE = 0x0800
    EXECUTABLE = 0x1000
    LOCKED = 0x2000
    NORESERVE = 0x4000
    POPULATE = 0x8000
    NONBLOCK = 0x10000
    STACK = 0x20000
    HUGETLB = 0x40000
    SYNC = 0x80000
    FIXED_NOREPLACE = 0x100000
    UNINITIALIZED = 0x4000000
    SEALABLE = 0x8000000


class MremapFlag(_ReprFlag):
    """``MREMAP_*`` for mremap."""

    NONE = 0
    MAYMOVE = 0x1
    FIXED = 0x2
    DONTUNMAP = 0x4


class MsFlag(_ReprFlag):
    """``MS_*`` for msync."""

    NONE = 0
    ASYNC = 0x1
    INVALIDATE = 0x2
    SYNC = 0x4


class MclFlag(_ReprFlag):
    """``MCL_*`` for mlockall."""

    NONE = 0
    CURRENT = 0x1
    FUTURE = 0x2
    ONFAULT = 0x4


class Madv(enum.IntEnum):
    """``MADV_*`` advice values: every advice of the measured madvise matrix (docs/reference/linux.md rules 10-13)."""

    NORMAL = 0
    RANDOM = 1
    SEQUENTIAL = 2
    WILLNEED = 3
    DONTNEED = 4
    FREE = 8
    REMOVE = 9
    DONTFORK = 10
    DOFORK = 11
    MERGEABLE = 12
    UNMERGEABLE = 13
    HUGEPAGE = 14
    NOHUGEPAGE = 15
    DONTDUMP = 16
    DODUMP = 17
    WIPEONFORK = 18
    KEEPONFORK = 19
    COLD = 20
    PAGEOUT = 21
    POPULATE_READ = 22
    POPULATE_WRITE = 23
    DONTNEED_LOCKED = 24
    COLLAPSE = 25
    HWPOISON = 100
    SOFT_OFFLINE = 101
    GUARD_INSTALL = 102
    GUARD_REMOVE = 103

    def __repr__(self) -> str:
        return f"Madv.{self.name}"

    __str__ = __repr__


MADV_DISCARD: Final = frozenset(
    {
        Madv.DONTNEED,
        Madv.FREE,
        Madv.DONTNEED_LOCKED,
        Madv.REMOVE,
        Madv.DONTFORK,
        Madv.WIPEONFORK,
        Madv.GUARD_INSTALL,
    }
)
"""The "discard" advices of ``is_discard()`` (mm/madvise.c; GUARD_INSTALL since 6.13; docs/reference/linux.md rule 10)."""


class SealV1(_ReprFlag):
    """Seal types of the Oct 2023 RFC v1 ``mseal(addr, len, types, flags)``.

    Each bit blocks one named system call (RFC v1, docs/reference/designs.md#proposal-v1).
    """

    NONE = 0
    MSEAL = 0x1
    MPROTECT = 0x2
    MUNMAP = 0x4
    MMAP = 0x8
    MREMAP = 0x10


class SealV3(_ReprFlag):
    """Functional seal types of the Dec 2023 v3 proposal (docs/reference/designs.md#proposal-v3)."""

    NONE = 0
    SEAL = 0x1
    BASE = 0x2
    PROT_PKEY = 0x4
    DISCARD_RO_ANON = 0x8


class SplitSeal(_ReprFlag):
    """Chrome's "partial sealing": separate unmap and protection seals (docs/reference/designs.md#chrome-split)."""

    NONE = 0
    UNMAP = 0x1
    PROT = 0x2


_PROT_LETTERS: Final = (("r", Prot.READ), ("w", Prot.WRITE), ("x", Prot.EXEC))


def prot_to_str(prot: int) -> str:
    """``Prot.READ | Prot.WRITE`` -> ``"rw-"`` (the /proc/PID/maps spelling)."""
    return "".join(ch if prot & bit else "-" for ch, bit in _PROT_LETTERS)


def prot_from_str(text: str) -> Prot:
    """``"rw-"``, ``"rw"``, ``"r-x"`` or ``"---"`` -> ``Prot``.

    Raises ``ValueError`` for anything else (a letter out of place, a repeat).
    """
    if not isinstance(text, str):
        raise TypeError(f"protection must be a string such as 'rw-', not {type(text).__name__}")
    spelled = text.strip()
    letters = zip(spelled, _PROT_LETTERS, strict=False)
    if len(spelled) == 3 and all(c in (letter, "-") for c, (letter, _) in letters):
        return Prot(
            sum(bit for c, (_, bit) in zip(spelled, _PROT_LETTERS, strict=True) if c != "-")
        )
    if spelled in ("", "none", "-"):
        return Prot.NONE
    prot = Prot.NONE
    order = "rwx"
    last = -1
    for c in spelled:
        pos = order.find(c)
        if pos <= last:
            raise ValueError(
                f"bad protection {text!r}: use letters r, w, x in that order, e.g. 'rw' or 'r-x'"
            )
        last = pos
        prot |= _PROT_LETTERS[pos][1]
    return prot

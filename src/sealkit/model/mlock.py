"""mlock, mlock2, munlock, mlockall and munlockall (mm/mlock.c).

Sealing does not stop them (docs/reference/linux.md rule 16): a partial mlock splits a sealed
VMA into sealed pieces and munlock merges them back. Holes are found while
walking, so the VMAs before a hole are already locked when ENOMEM comes back
(``apply_vma_lock_flags()``). ``mlockall`` changes every VMA of the process
and, with ``MCL_FUTURE``, ``mm->def_flags``, which every later mapping takes
(``AddressSpace.def_flags``).
"""

from __future__ import annotations

import errno
from typing import TYPE_CHECKING

from ..ops import Mlock, Mlockall, Munlock, Munlockall
from . import gup
from .vma import (
    M64,
    PAGE,
    TASK_SIZE,
    VM_DROPPABLE,
    VM_LOCKED,
    VM_LOCKED_MASK,
    VM_LOCKONFAULT,
    VM_SPECIAL,
    Vma,
    page_align,
)

if TYPE_CHECKING:
    from ..ops import Op
    from .space import AddressSpace


def sys_mlock(mm: AddressSpace, op: Op) -> int:
    """``mlock(2)``, or ``mlock2(..., MLOCK_ONFAULT)``."""
    assert isinstance(op, Mlock)
    flags = VM_LOCKED | (VM_LOCKONFAULT if op.onfault else 0)
    return do_mlock(mm, op.addr & M64, op.length & M64, flags)


def sys_munlock(mm: AddressSpace, op: Op) -> int:
    """``munlock(2)``."""
    assert isinstance(op, Munlock)
    start = op.addr & M64
    length = page_align((op.length + (start & (PAGE - 1))) & M64)
    return apply_vma_lock_flags(mm, start & ~(PAGE - 1), length, 0)


def do_mlock(mm: AddressSpace, start: int, len_in: int, flags: int) -> int:
    """``do_mlock()``: the caller is root (CAP_IPC_LOCK), so no RLIMIT_MEMLOCK."""
    length = page_align((len_in + (start & (PAGE - 1))) & M64)
    start &= ~(PAGE - 1)
    err = apply_vma_lock_flags(mm, start, length, flags)
    if err:
        return err
    err = gup.mm_populate(mm, start, length, ignore_errors=False)
    if err == -errno.EFAULT:
        return -errno.ENOMEM  # __mlock_posix_error_return()
    if err == -errno.ENOMEM:
        return -errno.EAGAIN
    return err


def apply_vma_lock_flags(mm: AddressSpace, start: int, length: int, flags: int) -> int:
    """``apply_vma_lock_flags()``: ``mlock_fixup()`` on each VMA of the range."""
    end = start + length
    if end > M64:
        return -errno.EINVAL
    if end == start:
        return 0
    vma = mm.vma_lookup(start)
    if vma is None:
        return -errno.ENOMEM
    tmp = vma.start
    cur = start
    while cur < end:
        v = mm.find_vma(cur)
        if v is None or v.start >= end:
            break
        if v.start != tmp:
            return -errno.ENOMEM
        newflags = (v.flags & ~VM_LOCKED_MASK) | flags
        tmp = min(v.end, end)
        v = mlock_fixup(mm, v, cur, tmp, newflags)
        tmp = v.end
        cur = tmp
    if tmp < end:
        return -errno.ENOMEM
    return 0


def mlock_fixup(mm: AddressSpace, v: Vma, start: int, end: int, newflags: int) -> Vma:
    """``mlock_fixup()``: no seal check; special and droppable VMAs are left alone."""
    if newflags == v.flags or v.flags & (VM_SPECIAL | VM_DROPPABLE):
        return v
    return mm.vma_modify(v, start, end, newflags, v.seal)


MCL_CURRENT = 1
MCL_FUTURE = 2
MCL_ONFAULT = 4


def sys_mlockall(mm: AddressSpace, op: Op) -> int:
    """``mlockall(flags)`` (``sys_mlockall()``; the caller is root, so no
    RLIMIT_MEMLOCK). Sealed VMAs are locked like any other
    (``mlock_fixup()`` is not a sealing enforcement point)."""
    assert isinstance(op, Mlockall)
    flags = int(op.flags) & 0xFFFF_FFFF
    if flags & 0x8000_0000:
        flags -= 1 << 32  # a C int
    if not flags or flags & ~(MCL_CURRENT | MCL_FUTURE | MCL_ONFAULT) or flags == MCL_ONFAULT:
        return -errno.EINVAL
    apply_mlockall_flags(mm, flags)
    if flags & MCL_CURRENT:
        # mm_populate(0, TASK_SIZE): every VMA, errors ignored (PROT_NONE,
        # guard markers and pages past EOF are skipped); VM_LOCKONFAULT VMAs
        # are left alone by populate_vma_page_range().
        gup.mm_populate(mm, 0, TASK_SIZE, ignore_errors=True)
    return 0


def sys_munlockall(mm: AddressSpace, op: Op) -> int:
    """``munlockall()``: ``apply_mlockall_flags(0)``."""
    assert isinstance(op, Munlockall)
    apply_mlockall_flags(mm, 0)
    return 0


def apply_mlockall_flags(mm: AddressSpace, flags: int) -> None:
    """``apply_mlockall_flags()``: ``mm->def_flags`` from ``MCL_FUTURE``
    (cleared without it), then, unless only ``MCL_FUTURE`` was asked, every
    VMA through ``mlock_fixup()`` (which merges, and leaves special and
    droppable VMAs alone)."""
    mm.def_flags &= ~VM_LOCKED_MASK
    if flags & MCL_FUTURE:
        mm.def_flags |= VM_LOCKED
        if flags & MCL_ONFAULT:
            mm.def_flags |= VM_LOCKONFAULT
        if not flags & MCL_CURRENT:
            return
    to_add = 0
    if flags & MCL_CURRENT:
        to_add = VM_LOCKED | (VM_LOCKONFAULT if flags & MCL_ONFAULT else 0)
    cur = 0
    while True:
        v = mm.find_vma(cur)
        if v is None:
            return
        newflags = (v.flags & ~VM_LOCKED_MASK) | to_add
        v = mlock_fixup(mm, v, v.start, v.end, newflags)
        cur = v.end

"""mlock, mlock2 and munlock (mm/mlock.c).

Sealing does not stop them (docs/reference/linux.md rule 16): a partial mlock splits a sealed
VMA into sealed pieces and munlock merges them back. Holes are found while
walking, so the VMAs before a hole are already locked when ENOMEM comes back
(``apply_vma_lock_flags()``).
"""

from __future__ import annotations

import errno
from typing import TYPE_CHECKING

from ..ops import Mlock, Munlock
from . import gup
from .vma import (
    M64,
    PAGE,
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

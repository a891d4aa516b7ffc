"""mprotect and pkey_mprotect (mm/mprotect.c).

``do_mprotect_pkey()`` walks the VMAs of the range and calls
``mprotect_fixup()`` on each; since 6.12 the seal is checked there, first
thing, before the same-flags shortcut. So a same-prot no-op on a sealed VMA
is refused (scenario probe/5.1), and VMAs before the first sealed one are already
changed when EPERM comes back (probe/5.4 to probe/5.8: "partial"; docs/reference/linux.md rule 7).
"""

from __future__ import annotations

import errno
from typing import TYPE_CHECKING, Final

from ..ops import Mprotect, PkeyMprotect
from . import gup
from .mapping import calc_vm_prot_bits
from .vma import (
    M64,
    PAGE,
    PAGE_SHIFT,
    VM_ACCESS_FLAGS,
    VM_ACCOUNT,
    VM_GROWSDOWN,
    VM_HUGETLB,
    VM_LOCKED,
    VM_NORESERVE,
    VM_SHARED,
    VM_WRITE,
    Vma,
    is_anonymous,
    page_align,
)

if TYPE_CHECKING:
    from ..ops import Op
    from .space import AddressSpace

PROT_SEM: Final = 0x8
PROT_GROWSDOWN: Final = 0x01000000
PROT_GROWSUP: Final = 0x02000000
ALLOCATED_PKEYS: Final = frozenset[int]()
"""No pkey is allocated, not even 0: the reference CPU has no PKU, and x86's
``mm_pkey_is_allocated()`` reads an allocation map that is set up only with
OSPKE (``pkey_mprotect(..., 0)`` is EINVAL there; found by the differential
fuzzer, conformance scenario regression/pkey-0-without-pku)."""


def _int32(value: int) -> int:
    value &= 0xFFFF_FFFF
    return value - (1 << 32) if value & 0x8000_0000 else value


def sys_mprotect(mm: AddressSpace, op: Op) -> int:
    """``mprotect(2)``."""
    assert isinstance(op, Mprotect)
    return do_mprotect_pkey(mm, op.addr & M64, op.length & M64, int(op.prot) & M64, -1)


def sys_pkey_mprotect(mm: AddressSpace, op: Op) -> int:
    """``pkey_mprotect(2)`` (``pkey`` is a C int)."""
    assert isinstance(op, PkeyMprotect)
    return do_mprotect_pkey(mm, op.addr & M64, op.length & M64, int(op.prot) & M64, _int32(op.pkey))


def new_flags(vma: Vma, prot: int) -> int:
    """The vm_flags ``prot`` gives ``vma``: r/w/x replaced, the rest kept."""
    return calc_vm_prot_bits(prot) | (vma.flags & ~VM_ACCESS_FLAGS)


def do_mprotect_pkey(mm: AddressSpace, start: int, length: int, prot: int, pkey: int) -> int:
    """``do_mprotect_pkey()``: argument checks, then ``mprotect_fixup()`` per VMA."""
    grows = prot & (PROT_GROWSDOWN | PROT_GROWSUP)
    prot &= ~(PROT_GROWSDOWN | PROT_GROWSUP)
    if grows == PROT_GROWSDOWN | PROT_GROWSUP:
        return -errno.EINVAL
    if start & (PAGE - 1):
        return -errno.EINVAL
    if not length:
        return 0
    end = (start + page_align(length)) & M64
    if end <= start:
        return -errno.ENOMEM
    if prot & ~(0x1 | 0x2 | 0x4 | PROT_SEM):  # arch_validate_prot()
        return -errno.EINVAL
    if pkey != -1 and pkey not in ALLOCATED_PKEYS:
        return -errno.EINVAL
    vma = mm.intersect(start, end)
    if vma is None:
        return -errno.ENOMEM
    if grows & PROT_GROWSDOWN:
        if vma.start >= end:
            return -errno.ENOMEM
        start = vma.start
        if not vma.flags & VM_GROWSDOWN:
            return -errno.EINVAL
    else:
        if vma.start > start:
            return -errno.ENOMEM
        if grows & PROT_GROWSUP:
            return -errno.EINVAL  # no VM_GROWSUP on x86
    policy = mm.policy
    # 6.10: can_modify_mm() over the range, before the loop (atomic).
    if "mprotect" in policy.precheck and any(
        policy.blocks_mprotect(v, new_flags(v, prot)) for v in mm.vmas.range(start, end)
    ):
        return -policy.refusal
    tmp = vma.start
    cur = start
    error = 0
    while cur < end:
        v = mm.find_vma(cur)
        if v is None or v.start >= end:
            break
        if v.start != tmp:
            error = -errno.ENOMEM
            break
        newflags = new_flags(v, prot)
        # newflags >> 4 puts VM_MAY* in place of VM_*: asking for a right the
        # VMA may not have (write to a read-only file's shared map) is EACCES.
        if (newflags & ~(newflags >> 4)) & VM_ACCESS_FLAGS:
            error = -errno.EACCES
            break
        tmp = min(v.end, end)
        error, merged = mprotect_fixup(mm, v, cur, tmp, newflags)
        if error:
            break
        tmp = merged.end
        cur = tmp
    if not error and tmp < end:
        error = -errno.ENOMEM
    return error


def mprotect_fixup(
    mm: AddressSpace, vma: Vma, start: int, end: int, newflags: int
) -> tuple[int, Vma]:
    """``mprotect_fixup()``: the seal check comes first (6.12+), then the
    same-flags shortcut, accounting, and ``vma_modify_flags()``."""
    policy = mm.policy
    if "mprotect" not in policy.precheck and policy.blocks_mprotect(vma, newflags):
        return -policy.refusal, vma
    oldflags = vma.flags
    if newflags == oldflags:
        return 0, vma
    if newflags & VM_WRITE:
        if not oldflags & (VM_ACCOUNT | VM_WRITE | VM_HUGETLB | VM_SHARED | VM_NORESERVE):
            if not mm.enough_memory((end - start) >> PAGE_SHIFT):
                return -errno.ENOMEM, vma
            newflags |= VM_ACCOUNT
    elif oldflags & VM_ACCOUNT and is_anonymous(vma) and vma.anon is None:
        # Nothing was ever faulted in: the charge can be dropped.
        newflags &= ~VM_ACCOUNT
    merged = mm.vma_modify(vma, start, end, newflags, vma.seal)
    if (oldflags & (VM_WRITE | VM_SHARED | VM_LOCKED)) == VM_LOCKED and newflags & VM_WRITE:
        # A locked private mapping becoming writable breaks COW now.
        gup.populate_vma_page_range(mm, merged, start, end)
        found = mm.vma_lookup(start)
        assert found is not None
        merged = found
    return 0, merged

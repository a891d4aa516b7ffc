"""The sealing calls: Linux ``mseal`` (mm/mseal.c) and the other designs' calls.

``do_mseal()`` -> ``range_contains_unmapped()`` -> ``mseal_apply()``: argument
checks in ``do_mseal()``'s order (flags, alignment, length rounding and
overflow, empty range), ENOMEM for any hole with nothing changed, then each
unsealed VMA is sealed through ``vma_modify_flags()``, which splits at the
range ends and merges with sealed neighbours (docs/reference/linux.md rules 1-4).

The other designs' calls follow their patches (docs/reference/designs.md):
RFC v1 and v3 ``do_mseal()`` -> ``check_mm_seal()`` (one walk) ->
``apply_mm_seal()``; OpenBSD ``sys_mimmutable()`` -> ``uvm_map_immutable()``.
"""

from __future__ import annotations

import errno
from collections.abc import Callable
from typing import TYPE_CHECKING

from ..flags import SealV1, SealV3, SplitSeal
from ..ops import Mimmutable, Mseal, MsealSplit, MsealV1, MsealV3
from .vma import M64, PAGE, TASK_SIZE, VM_SEALABLE, VM_WIPEONFORK, Vma, page_align

if TYPE_CHECKING:
    from ..ops import Op
    from .space import AddressSpace


def check_range(start: int, len_in: int) -> int | tuple[int, int]:
    """``do_mseal()``'s address checks: an errno, 0 for an empty range, or (start, end)."""
    if start & (PAGE - 1):
        return -errno.EINVAL
    length = page_align(len_in)
    if len_in and not length:
        return -errno.EINVAL  # a length within a page of 2^64 rounds up to 0
    end = start + length
    if end > M64:
        return -errno.EINVAL
    if end == start:
        return 0
    return start, end


def range_contains_unmapped(mm: AddressSpace, start: int, end: int) -> bool:
    """``range_contains_unmapped()``: a hole at the start, middle or end."""
    prev_end = start
    for v in mm.vmas.range(start, end):
        if v.start > prev_end:
            return True
        prev_end = v.end
    return prev_end < end


def mseal_apply(mm: AddressSpace, start: int, end: int, bits: int, *, merge: bool = True) -> None:
    """``mseal_apply()``: OR ``bits`` into the seal of every VMA part in
    ``[start, end)`` that lacks some of them (already sealed parts are left
    alone, so re-sealing is idempotent and does not split). Holes are skipped
    (only mimmutable can have them here). ``merge=False`` only splits (RFC v1
    ``mseal_fixup()``: "sealed VMA doesn't merge with other VMAs")."""
    cur = start
    while cur < end:
        v = mm.find_vma(cur)
        if v is None or v.start >= end:
            return
        cur = max(cur, v.start)
        cend = min(v.end, end)
        if v.seal | bits != v.seal:
            mm.vma_modify(v, cur, cend, v.flags, v.seal | bits, merge=merge)
        cur = cend


def _mseal_checks(mm: AddressSpace, op: Op) -> tuple[int, int] | int:
    """Linux mseal's argument and hole checks: the range to seal, or ``-errno``."""
    assert isinstance(op, Mseal)
    if op.flags & M64:
        return -errno.EINVAL
    checked = check_range(op.addr & M64, op.length & M64)
    if not isinstance(checked, tuple):
        return checked
    if range_contains_unmapped(mm, *checked):
        return -errno.ENOMEM
    return checked


def do_mseal(mm: AddressSpace, op: Op) -> int:
    """Linux ``mseal(addr, len, flags)``."""
    checked = _mseal_checks(mm, op)
    if not isinstance(checked, tuple):
        return checked
    mseal_apply(mm, *checked, 1)
    return 0


def do_mseal_none(mm: AddressSpace, op: Op) -> int:
    """The ``none`` policy's mseal: Linux's checks, no effect."""
    checked = _mseal_checks(mm, op)
    return checked if not isinstance(checked, tuple) else 0


def _typed_checks(
    start_in: int, len_in: int, flags: int, types: int, known: int
) -> int | tuple[int, int]:
    """The RFCs' ``can_do_mseal()`` then ``do_mseal()``'s address checks:
    unknown type bits or any flag are EINVAL (``types == 0`` is accepted),
    then alignment, length rounding, overflow; 0 for an empty range."""
    if flags & M64 or types & ~known:
        return -errno.EINVAL
    return check_range(start_in & M64, len_in & M64)


def check_mm_seal(mm: AddressSpace, start: int, end: int, refuses: Callable[[Vma], bool]) -> int:
    """The RFCs' ``check_mm_seal()``: one walk over ``[start, end)`` in address
    order; a hole gives ENOMEM and a VMA that ``refuses`` the new types gives
    the policy's refusal, whichever comes first (v1 1/8; v3 09/11, where
    ``can_add_vma_seals()`` also refuses an unsealable VMA)."""
    nstart = start
    for v in mm.vmas.range(start, end):
        if v.start > nstart:
            return -errno.ENOMEM
        if refuses(v):
            return -mm.policy.refusal
        if v.end >= end:
            return 0
        nstart = v.end
    return -errno.ENOMEM


def mseal_v1(mm: AddressSpace, op: Op) -> int:
    """Oct 2023 RFC v1 ``mseal(addr, len, types, flags)``: types accumulate;
    MM_SEAL_MSEAL refuses adding types to a VMA (EACCES); sealing splits and
    never merges (1/8 ``mseal_fixup()``)."""
    assert isinstance(op, MsealV1)
    types = int(op.types) & M64
    checked = _typed_checks(op.addr, op.length, op.flags, types, 0x1F)
    if not isinstance(checked, tuple):
        return checked
    start, end = checked

    def refuses(v: Vma) -> bool:  # 1/8 can_add_vma_seals()
        return bool(v.seal & SealV1.MSEAL and types & ~v.seal)

    err = check_mm_seal(mm, start, end, refuses)
    if err:
        return err
    mseal_apply(mm, start, end, types, merge=False)
    return 0


def mseal_v3(mm: AddressSpace, op: Op) -> int:
    """Dec 2023 v3 ``mseal(addr, len, types, flags)``: PROT_PKEY and
    DISCARD_RO_ANON imply BASE (08/11); only VMAs mapped with MAP_SEALABLE can
    be sealed and MM_SEAL_SEAL refuses adding types (EACCES, 09/11)."""
    assert isinstance(op, MsealV3)
    types = int(op.types) & M64
    if types & (SealV3.PROT_PKEY | SealV3.DISCARD_RO_ANON):
        types |= SealV3.BASE  # before can_do_mseal(), as 08/11's do_mseal()
    checked = _typed_checks(op.addr, op.length, op.flags, types, 0xF)
    if not isinstance(checked, tuple):
        return checked
    start, end = checked

    def refuses(v: Vma) -> bool:  # 09/11 can_add_vma_seals()
        if not v.flags & VM_SEALABLE:
            return True
        return bool(v.seal & SealV3.SEAL and types & ~v.seal)

    err = check_mm_seal(mm, start, end, refuses)
    if err:
        return err
    mseal_apply(mm, start, end, types)
    return 0


def mseal_split(mm: AddressSpace, op: Op) -> int:
    """Chrome's split seals: ``UNMAP`` and/or ``PROT``, checked like Linux mseal."""
    assert isinstance(op, MsealSplit)
    seals = int(op.seals) & M64
    if not seals:
        return -errno.EINVAL
    checked = _typed_checks(op.addr, op.length, 0, seals, int(SplitSeal.UNMAP | SplitSeal.PROT))
    if not isinstance(checked, tuple):
        return checked
    if range_contains_unmapped(mm, *checked):
        return -errno.ENOMEM
    mseal_apply(mm, *checked, seals)
    return 0


def mimmutable(mm: AddressSpace, op: Op) -> int:
    """OpenBSD ``sys_mimmutable()`` -> ``uvm_map_immutable()`` (uvm_map.c rev
    1.346): the address is rounded down (ALIGN_ADDR), the range clamped to the
    map, holes skipped; EINVAL only on wrap-around; EPERM when an entry in
    range is MAP_INHERIT_ZERO (Linux: WIPEONFORK), "First check for illegal
    operations"."""
    return _mimmutable(mm, op, refuse_inherit_zero=True)


def mimmutable_73(mm: AddressSpace, op: Op) -> int:
    """OpenBSD 7.3's ``uvm_map_immutable()`` (rev 1.321 and before): as
    :func:`mimmutable` without the MAP_INHERIT_ZERO test, which arrived with
    commit 114aad1 ("it should not be allowed ... calling mimmutable() upon
    MAP_INHERIT_ZERO regions")."""
    return _mimmutable(mm, op, refuse_inherit_zero=False)


def _mimmutable(mm: AddressSpace, op: Op, *, refuse_inherit_zero: bool) -> int:
    assert isinstance(op, Mimmutable)
    addr, size = op.addr & M64, op.length & M64
    pageoff = addr & (PAGE - 1)
    if pageoff:
        if size > M64 - pageoff:
            return -errno.EINVAL
        addr -= pageoff
        size += pageoff
    if size:
        size = page_align(size)
        if size == 0:
            return -errno.EINVAL
    if addr > M64 - size:
        return -errno.EINVAL
    start, end = addr, min(addr + size, TASK_SIZE)
    if start >= end:
        return 0
    if refuse_inherit_zero:
        for v in mm.vmas.range(start, end):
            if v.flags & VM_WIPEONFORK:
                return -errno.EPERM
    mseal_apply(mm, start, end, 1)
    return 0

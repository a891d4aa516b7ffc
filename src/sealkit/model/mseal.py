"""The sealing calls: Linux ``mseal`` (mm/mseal.c) and the other designs' calls.

``do_mseal()`` -> ``range_contains_unmapped()`` -> ``mseal_apply()``: argument
checks in ``do_mseal()``'s order (flags, alignment, length rounding and
overflow, empty range), ENOMEM for any hole with nothing changed, then each
unsealed VMA is sealed through ``vma_modify_flags()``, which splits at the
range ends and merges with sealed neighbours (spec kernel-behaviour rules 1-4).
"""

from __future__ import annotations

import errno
from typing import TYPE_CHECKING

from ..flags import SealV1, SealV3, SplitSeal
from ..ops import Mimmutable, Mseal, MsealSplit, MsealV1, MsealV3
from .vma import M64, PAGE, TASK_SIZE, VM_SEALABLE, VM_WIPEONFORK, page_align

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


def mseal_apply(mm: AddressSpace, start: int, end: int, bits: int) -> None:
    """``mseal_apply()``: OR ``bits`` into the seal of every VMA part in
    ``[start, end)`` that lacks some of them (already sealed parts are left
    alone, so re-sealing is idempotent and does not split). Holes are skipped
    (only mimmutable can have them here)."""
    cur = start
    while cur < end:
        v = mm.find_vma(cur)
        if v is None or v.start >= end:
            return
        cur = max(cur, v.start)
        cend = min(v.end, end)
        if v.seal | bits != v.seal:
            mm.vma_modify(v, cur, cend, v.flags, v.seal | bits)
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


def _typed_seal(
    mm: AddressSpace, start_in: int, len_in: int, flags: int, types: int, known: int
) -> int | tuple[int, int]:
    if flags & M64:
        return -errno.EINVAL
    if not types or types & ~known:
        return -errno.EINVAL
    checked = check_range(start_in & M64, len_in & M64)
    if not isinstance(checked, tuple):
        return checked
    if range_contains_unmapped(mm, *checked):
        return -errno.ENOMEM
    return checked


def mseal_v1(mm: AddressSpace, op: Op) -> int:
    """Oct 2023 RFC v1 ``mseal(addr, len, types, flags)``: types accumulate;
    MM_SEAL_MSEAL refuses adding types to a VMA (EACCES, before any change)."""
    assert isinstance(op, MsealV1)
    types = int(op.types) & M64
    checked = _typed_seal(mm, op.addr, op.length, op.flags, types, 0x1F)
    if not isinstance(checked, tuple):
        return checked
    start, end = checked
    for v in mm.vmas.range(start, end):
        if v.seal & SealV1.MSEAL and types & ~v.seal:
            return -mm.policy.refusal
    mseal_apply(mm, start, end, types)
    return 0


def mseal_v3(mm: AddressSpace, op: Op) -> int:
    """Dec 2023 v3 ``mseal(addr, len, types, flags)``: only VMAs mapped with
    MAP_SEALABLE can be sealed; PROT_PKEY implies BASE; MM_SEAL_SEAL refuses
    adding types (EACCES, before any change)."""
    assert isinstance(op, MsealV3)
    types = int(op.types) & M64
    checked = _typed_seal(mm, op.addr, op.length, op.flags, types, 0xF)
    if not isinstance(checked, tuple):
        return checked
    if types & SealV3.PROT_PKEY:
        types |= SealV3.BASE
    start, end = checked
    for v in mm.vmas.range(start, end):
        if not v.flags & VM_SEALABLE:
            return -mm.policy.refusal
    for v in mm.vmas.range(start, end):
        if v.seal & SealV3.SEAL and types & ~v.seal:
            return -mm.policy.refusal
    mseal_apply(mm, start, end, types)
    return 0


def mseal_split(mm: AddressSpace, op: Op) -> int:
    """Chrome's split seals: ``UNMAP`` and/or ``PROT``, checked like Linux mseal."""
    assert isinstance(op, MsealSplit)
    seals = int(op.seals) & M64
    checked = _typed_seal(mm, op.addr, op.length, 0, seals, int(SplitSeal.UNMAP | SplitSeal.PROT))
    if not isinstance(checked, tuple):
        return checked
    mseal_apply(mm, *checked, seals)
    return 0


def mimmutable(mm: AddressSpace, op: Op) -> int:
    """OpenBSD ``sys_mimmutable()`` -> ``uvm_map_immutable()``: the address is
    rounded down (ALIGN_ADDR), the range clamped to the map, holes skipped;
    EINVAL only on wrap-around; EPERM when an entry in range is
    MAP_INHERIT_ZERO (Linux: WIPEONFORK)."""
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
    for v in mm.vmas.range(start, end):
        if v.flags & VM_WIPEONFORK:
            return -errno.EPERM
    mseal_apply(mm, start, end, 1)
    return 0

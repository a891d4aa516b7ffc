"""msync (mm/msync.c ``sys_msync()``): no seal is consulted, nothing changes.

The model keeps no dirty state, so ``MS_SYNC`` (``vfs_fsync_range()`` on
shared file mappings), ``MS_ASYNC`` and ``MS_INVALIDATE`` change nothing it
shows; measured: even ``MS_INVALIDATE`` right after a write to the file
leaves every page as it was. What is modelled is the answer: the argument
checks, ``EBUSY`` for ``MS_INVALIDATE`` on a locked VMA, ``ENOMEM`` for
holes (at once for a bare ``MS_ASYNC``, else at the end).
"""

from __future__ import annotations

import errno
from typing import TYPE_CHECKING, Final

from ..ops import Msync
from .vma import M64, PAGE, VM_LOCKED

if TYPE_CHECKING:
    from ..ops import Op
    from .space import AddressSpace

__all__ = ["sys_msync"]

MS_ASYNC: Final = 1
MS_INVALIDATE: Final = 2
MS_SYNC: Final = 4


def sys_msync(mm: AddressSpace, op: Op) -> int:
    """``msync(start, len, flags)``; ``flags`` is a C int."""
    assert isinstance(op, Msync)
    start, length = op.addr & M64, op.length & M64
    flags = int(op.flags) & 0xFFFF_FFFF
    if flags & 0x8000_0000:
        flags -= 1 << 32
    if flags & ~(MS_ASYNC | MS_INVALIDATE | MS_SYNC):
        return -errno.EINVAL
    if start & (PAGE - 1):
        return -errno.EINVAL
    if flags & MS_ASYNC and flags & MS_SYNC:
        return -errno.EINVAL
    length = (length + PAGE - 1) & ~(PAGE - 1) & M64
    end = start + length
    if end > M64:
        return -errno.ENOMEM  # end < start: the range wraps
    if end == start:
        return 0
    policy = mm.policy
    # A design that refuses MS_INVALIDATE where an immutable VMA and
    # anonymous memory meet (OpenBSD's uvm_map_clean() rule, see
    # Policy.msync_amap): decided over the whole range first.
    amap = (
        flags & MS_INVALIDATE
        and policy.msync_amap
        and any(v.seal for v in mm.vmas.range(start, end))
    )
    unmapped = 0
    vma = mm.find_vma(start)
    while True:
        if vma is None:
            return -errno.ENOMEM
        if start < vma.start:
            if flags == MS_ASYNC:
                return -errno.ENOMEM
            start = vma.start
            if start >= end:
                return -errno.ENOMEM
            unmapped = -errno.ENOMEM
        if amap and vma.anon is not None:
            return -policy.refusal
        if flags & MS_INVALIDATE and vma.flags & VM_LOCKED:
            return -errno.EBUSY
        start = vma.end
        if start >= end:
            return unmapped
        vma = mm.find_vma(start)

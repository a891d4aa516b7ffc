"""mincore (mm/mincore.c ``sys_mincore()``): the answer, not the vector.

The vector says which pages are resident, which no layout shows (and which
the kernel executor's own snapshots change: reading ``/proc/self/mem`` maps
pages). The result does not depend on residency: ``EINVAL`` for an
unaligned start, ``ENOMEM`` when the range is not a valid user range
(``access_ok()``) or holds an unmapped page (``do_mincore()``:
``vma_lookup()`` fails), else 0. No seal is consulted and nothing changes.
"""

from __future__ import annotations

import errno
from typing import TYPE_CHECKING

from ..ops import Mincore
from .vma import M64, PAGE, PAGE_SHIFT, USER_PTR_MAX

if TYPE_CHECKING:
    from ..ops import Op
    from .space import AddressSpace

__all__ = ["sys_mincore"]


def sys_mincore(mm: AddressSpace, op: Op) -> int:
    """``mincore(start, len, vec)`` with a vector big enough (``ceil(len / 4096)`` bytes)."""
    assert isinstance(op, Mincore)
    start, length = op.addr & M64, op.length & M64
    if start & (PAGE - 1):
        return -errno.EINVAL
    if start + length > USER_PTR_MAX:
        return -errno.ENOMEM  # access_ok(start, len): the sum, unwrapped, below the limit
    pages = (length + PAGE - 1) >> PAGE_SHIFT
    end = start + (pages << PAGE_SHIFT)
    cur = start
    while cur < end:
        v = mm.vma_lookup(cur)
        if v is None:
            return -errno.ENOMEM
        cur = v.end
    return 0

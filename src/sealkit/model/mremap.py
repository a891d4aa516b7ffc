"""mremap (mm/mremap.c), in two shapes.

* 6.17+ (``do_mremap()``): ``check_mremap_params()``, then either
  ``remap_move()`` (a same-size MREMAP_FIXED move, which may span VMAs and
  checks each source VMA in turn) or ``vma_lookup()`` + ``check_prep_vma()``,
  which refuses a sealed source right after the lookup (docs/reference/linux.md rule 8), before
  anything is unmapped. The destination is unmapped through the munmap
  gather, so a sealed destination is refused too.
* 6.10 (``sys_mremap_610()``), for the pre-check policies: the old syscall
  with ``can_modify_mm()`` over ``[addr, addr+old_len)`` (in ``mremap_to()``
  for moves, before the resize otherwise) and on the destination.

Growing a VMA in place into a sealed neighbour is ENOMEM ("no room"), not
EPERM: ``vma_expandable()`` just sees an occupied range (scenario probe/6.12).
"""

from __future__ import annotations

import errno
from typing import TYPE_CHECKING, Final

from ..ops import ELSEWHERE, Mremap
from . import content, gup
from .mapping import get_unmapped_area
from .vma import (
    M64,
    PAGE,
    PAGE_SHIFT,
    TASK_SIZE,
    VM_ACCOUNT,
    VM_DONTEXPAND,
    VM_LOCKED,
    VM_LOCKED_MASK,
    VM_MAYSHARE,
    VM_PFNMAP,
    VM_SHARED,
    Vma,
    is_anonymous,
    page_align,
)

if TYPE_CHECKING:
    from ..ops import Op
    from .space import AddressSpace

MREMAP_MAYMOVE: Final = 0x1
MREMAP_FIXED: Final = 0x2
MREMAP_DONTUNMAP: Final = 0x4

NO_RESIZE, SHRINK, EXPAND = 0, 1, 2


class Remap:
    """``struct vma_remap_struct``: one mremap in progress."""

    __slots__ = (
        "addr", "delta", "elsewhere", "flags", "new_addr", "new_len", "old_len",
        "populate_expand", "remap_type", "vma",
    )  # fmt: skip

    def __init__(self, addr: int, old_len: int, new_len: int, flags: int, new_addr: int) -> None:
        self.addr = addr
        self.old_len = old_len
        self.new_len = new_len
        self.flags = flags
        self.new_addr = new_addr
        self.vma: Vma | None = None
        self.delta = 0
        self.remap_type = NO_RESIZE
        self.populate_expand = False
        self.elsewhere = False

    @property
    def implies_new_addr(self) -> bool:
        """``vrm_implies_new_addr()``."""
        return bool(self.flags & (MREMAP_FIXED | MREMAP_DONTUNMAP))


def sys_mremap(mm: AddressSpace, op: Op) -> int:
    """``mremap(2)``."""
    assert isinstance(op, Mremap)
    vrm = Remap(
        op.addr & M64, op.old_length & M64, op.new_length & M64, int(op.flags) & M64,
        op.new_addr & M64,
    )  # fmt: skip
    if "mremap" in mm.policy.precheck:
        return sys_mremap_610(mm, vrm)
    return do_mremap(mm, vrm)


# ------------------------------------------------------------------- 6.17+


def check_mremap_params(vrm: Remap) -> int:
    """``check_mremap_params()``: flags, alignment, lengths, the destination."""
    if vrm.flags & ~(MREMAP_FIXED | MREMAP_MAYMOVE | MREMAP_DONTUNMAP):
        return -errno.EINVAL
    if vrm.addr & (PAGE - 1):
        return -errno.EINVAL
    if not vrm.new_len:
        return -errno.EINVAL
    if vrm.new_len > TASK_SIZE:
        return -errno.EINVAL
    if not vrm.implies_new_addr:
        return 0
    if vrm.new_addr > TASK_SIZE - vrm.new_len:
        return -errno.EINVAL
    if vrm.new_addr & (PAGE - 1):
        return -errno.EINVAL
    if not vrm.flags & MREMAP_MAYMOVE:
        return -errno.EINVAL
    if vrm.flags & MREMAP_DONTUNMAP and vrm.old_len != vrm.new_len:
        return -errno.EINVAL
    if overlaps(vrm):
        return -errno.EINVAL
    return 0


def overlaps(vrm: Remap) -> bool:
    """``vrm_overlaps()``: source and destination ranges intersect."""
    return vrm.addr + vrm.old_len > vrm.new_addr and vrm.new_addr + vrm.new_len > vrm.addr


def do_mremap(mm: AddressSpace, vrm: Remap) -> int:
    """``do_mremap()`` (6.17+)."""
    vrm.old_len = page_align(vrm.old_len)
    vrm.new_len = page_align(vrm.new_len)
    err = check_mremap_params(vrm)
    if err:
        return err
    if mm.policy.mremap_multi and vrm.flags & MREMAP_FIXED and vrm.old_len == vrm.new_len:
        res = remap_move(mm, vrm)
    else:
        vrm.vma = mm.vma_lookup(vrm.addr)
        res = check_prep_vma(mm, vrm)
        if res:
            return res
        res = mremap_to(mm, vrm) if vrm.implies_new_addr else mremap_at(mm, vrm)
    if res >= 0 and vrm.populate_expand:
        gup.mm_populate(mm, vrm.new_addr + vrm.old_len, vrm.delta, ignore_errors=True)
    if res >= 0 and vrm.elsewhere:
        return ELSEWHERE
    return res


def check_prep_vma(mm: AddressSpace, vrm: Remap) -> int:
    """``check_prep_vma()``: the seal check comes right after the lookup
    (moved up in 6.12 "to stop us from unmapping dest while the source is
    sealed"), then the resize checks of ``remap_is_valid()``."""
    vma = vrm.vma
    if vma is None:
        return -errno.EFAULT
    policy = mm.policy
    if "mremap" not in policy.precheck and policy.blocks("mremap", vma.seal):
        return -policy.refusal
    vrm.delta = abs(vrm.new_len - vrm.old_len)
    if vrm.delta == 0:
        vrm.remap_type = NO_RESIZE
    elif vrm.old_len > vrm.new_len:
        vrm.remap_type = SHRINK
    else:
        vrm.remap_type = EXPAND
    if not vrm.implies_new_addr:
        vrm.new_addr = vrm.addr
    if vrm.remap_type != EXPAND and not vrm.implies_new_addr:
        return 0
    return remap_is_valid(vrm, vma)


def remap_is_valid(vrm: Remap, vma: Vma) -> int:
    """``remap_is_valid()`` / ``vma_to_resize()``: duplication of private
    mappings, crossing the VMA's end, offset overflow."""
    old_len, new_len = vrm.old_len, vrm.new_len
    if not old_len and not vma.flags & (VM_SHARED | VM_MAYSHARE):
        return -errno.EINVAL
    if vrm.flags & MREMAP_DONTUNMAP and vma.flags & (VM_DONTEXPAND | VM_PFNMAP):
        return -errno.EINVAL
    if vrm.remap_type == SHRINK:
        old_len = new_len  # the unmapped tail may cross VMA boundaries
    if old_len > vma.end - vrm.addr:
        return -errno.EFAULT
    if new_len == old_len:
        return 0
    if vma.flags & VM_LOCKED:
        vrm.populate_expand = True
    pgoff = ((vrm.addr - vma.start) >> PAGE_SHIFT) + vma.pgoff
    if pgoff + (new_len >> PAGE_SHIFT) > M64:
        return -errno.EINVAL
    if vma.flags & (VM_DONTEXPAND | VM_PFNMAP):
        return -errno.EFAULT
    return 0


def remap_move(mm: AddressSpace, vrm: Remap) -> int:
    """``remap_move()`` (6.17+): move every VMA of ``[addr, addr+len)``, keeping
    the gaps between them; each source VMA is checked when its turn comes,
    so a sealed VMA after the first leaves the earlier ones moved."""
    start, end = vrm.addr, vrm.addr + vrm.old_len
    target = vrm.new_addr
    res = -errno.EFAULT
    seen = False
    last_end = 0
    cur = start
    while True:
        v = mm.find_vma(cur)
        if v is None or v.start >= end:
            break
        # From where the previous VMA's move stopped: with DONTUNMAP the
        # source VMA stays, so starting at its start again would loop
        # (regression/mremap-dontunmap-part-of-a-vma).
        a = max(v.start, cur)
        if a >= end:
            break
        ln = min(end, v.end) - a
        if not seen and start < v.start:
            return -errno.EFAULT  # no gap permitted at the start of the range
        offset = v.start - last_end if seen else 0
        last_end = v.end
        sub = Remap(a, ln, ln, vrm.flags, target + offset)
        sub.vma = v
        r = check_prep_vma(mm, sub)
        if not r:
            r = mremap_to(mm, sub)
        if r < 0:
            return r
        if not seen:
            res = r
        seen = True
        target = r + ln
        # for_each_vma_range() resumes after the VMA it returned: from its end as
        # it was before the move. Resuming at a + ln instead finds the same VMA
        # again when the moved part merged back into it (DONTUNMAP onto the
        # page before the source), and never ends.
        cur = max(last_end, a + ln)
    return res


def mremap_at(mm: AddressSpace, vrm: Remap) -> int:
    """``mremap_at()``: resize in place, or move when allowed."""
    if vrm.remap_type == NO_RESIZE:
        return vrm.addr
    if vrm.remap_type == SHRINK:
        err = mm.do_vmi_munmap(vrm.addr + vrm.new_len, vrm.delta, "mremap")
        return err if err else vrm.addr
    return expand_vma(mm, vrm)


def expand_vma(mm: AddressSpace, vrm: Remap) -> int:
    """``expand_vma()``: in place when the range reaches the VMA's end and the
    space after it is free; else move if MREMAP_MAYMOVE, else ENOMEM."""
    vma = vrm.vma
    assert vma is not None
    if vma.end - vrm.addr == vrm.old_len and vma_expandable(mm, vma, vrm.delta):
        if vma.flags & VM_ACCOUNT and not mm.enough_memory(vrm.delta >> PAGE_SHIFT):
            return -errno.ENOMEM
        ext = Vma(
            vma.end, vma.end + vrm.delta, vma.flags, vma.pgoff + vma.pages, vma.file, vma.anon,
            vma.seal, (),
        )  # fmt: skip
        if mm.merged(vma, ext, vma) is None:
            return -errno.ENOMEM  # vma_merge_extend() found no merge (RFC v1: a sealed vma)
        mm.merge_new(ext)  # vma_merge_extend(): joins vma, and next if compatible
        return vrm.addr
    if not vrm.flags & MREMAP_MAYMOVE:
        return -errno.ENOMEM
    err = vrm_set_new_addr(mm, vrm)
    if err:
        return err
    return move_vma(mm, vrm)


def vma_expandable(mm: AddressSpace, vma: Vma, delta: int) -> bool:
    """``vma_expandable()``: nothing mapped in ``[end, end+delta)`` and the
    result still fits below TASK_SIZE."""
    end = vma.end + delta
    if end > M64:
        return False
    if mm.intersect(vma.end, end) is not None:
        return False
    length = end - vma.start
    return not (length > TASK_SIZE or vma.start > TASK_SIZE - length)


def vrm_set_new_addr(mm: AddressSpace, vrm: Remap) -> int:
    """``vrm_set_new_addr()``: the destination (``new_addr`` is only a hint
    without MREMAP_FIXED)."""
    hint = vrm.new_addr if vrm.implies_new_addr else 0
    addr, elsewhere = get_unmapped_area(mm, hint, vrm.new_len, bool(vrm.flags & MREMAP_FIXED))
    if addr < 0:
        return addr
    vrm.new_addr = addr
    vrm.elsewhere = elsewhere
    return 0


def mremap_to(mm: AddressSpace, vrm: Remap) -> int:
    """``mremap_to()``: unmap the destination (MREMAP_FIXED), shrink, move."""
    if vrm.flags & MREMAP_FIXED:
        err = mm.do_vmi_munmap(vrm.new_addr, vrm.new_len, "mremap")
        if err:
            return err
        vrm.vma = mm.vma_lookup(vrm.addr)
        if vrm.vma is None:
            return -errno.EFAULT
    if vrm.remap_type == SHRINK:
        err = mm.do_vmi_munmap(vrm.addr + vrm.new_len, vrm.delta, "mremap")
        if err:
            return err
        vrm.vma = mm.vma_lookup(vrm.addr)
        if vrm.vma is None:
            return -errno.EFAULT
        vrm.old_len = vrm.new_len
    err = vrm_set_new_addr(mm, vrm)
    if err:
        return err
    return move_vma(mm, vrm)


def move_vma(mm: AddressSpace, vrm: Remap) -> int:
    """``move_vma()``: ``copy_vma()`` at the destination (merging with its
    neighbours there), move the pages, then unmap the source (or, with
    MREMAP_DONTUNMAP, leave it mapped and empty)."""
    vma = vrm.vma
    assert vma is not None
    addr, old_len, new_len, new_addr = vrm.addr, vrm.old_len, vrm.new_len, vrm.new_addr
    if vma.flags & VM_ACCOUNT:
        charged = new_len if vrm.flags & MREMAP_DONTUNMAP else vrm.delta
        if not mm.enough_memory(charged >> PAGE_SHIFT):
            return -errno.ENOMEM
    off = (addr - vma.start) >> PAGE_SHIFT
    pgoff = vma.pgoff + off
    if is_anonymous(vma) and vma.anon is None:
        pgoff = new_addr >> PAGE_SHIFT  # unfaulted anon: "increase its chance of merging"
    moved = content.cut(vma.priv, off, off + (old_len >> PAGE_SHIFT))
    new = Vma(new_addr, new_addr + new_len, vma.flags, pgoff, vma.file, vma.anon, vma.seal, moved)
    new_vma = mm.merge_new(new)
    if vrm.flags & MREMAP_DONTUNMAP:
        src = mm.vma_lookup(addr)
        assert src is not None
        lo = (addr - src.start) >> PAGE_SHIFT
        whole = src.start == addr and src.end == addr + old_len and src is not new_vma
        anon = None if whole else src.anon
        src = src.with_priv(content.drop(src.priv, lo, lo + (old_len >> PAGE_SHIFT)), anon)
        # 6.18 clears only VM_LOCKED[ONFAULT] on the source: it keeps
        # VM_ACCOUNT, so what is left merges with its neighbours as before
        # (regression/dontunmap-source-merges-*, measured).
        src = src.with_flags(src.flags & ~VM_LOCKED_MASK, src.seal)
        mm.vmas.replace(src.start, src.end, [src])
    else:
        mm.do_vmi_munmap(addr, old_len, "mremap")  # best effort, as unmap_source_vma()
    if vma.flags & VM_LOCKED and new_len > old_len:
        vrm.populate_expand = True
        vrm.delta = new_len - old_len
    return new_addr


# --------------------------------------------------------------------- 6.10


def sys_mremap_610(mm: AddressSpace, vrm: Remap) -> int:
    """``SYSCALL_DEFINE5(mremap)`` as in 6.10, with whole-range pre-checks."""
    flags = vrm.flags
    if flags & ~(MREMAP_FIXED | MREMAP_MAYMOVE | MREMAP_DONTUNMAP):
        return -errno.EINVAL
    if flags & MREMAP_FIXED and not flags & MREMAP_MAYMOVE:
        return -errno.EINVAL
    if flags & MREMAP_DONTUNMAP and (not flags & MREMAP_MAYMOVE or vrm.old_len != vrm.new_len):
        return -errno.EINVAL
    if vrm.addr & (PAGE - 1):
        return -errno.EINVAL
    vrm.old_len = page_align(vrm.old_len)
    vrm.new_len = page_align(vrm.new_len)
    if not vrm.new_len:
        return -errno.EINVAL
    vrm.vma = mm.vma_lookup(vrm.addr)
    if vrm.vma is None:
        return -errno.EFAULT
    res = mremap_to_610(mm, vrm) if vrm.implies_new_addr else _resize_610(mm, vrm)
    if res >= 0 and vrm.populate_expand:
        gup.mm_populate(mm, vrm.new_addr + vrm.old_len, vrm.delta, ignore_errors=True)
    if res >= 0 and vrm.elsewhere:
        return ELSEWHERE
    return res


def _blocked_610(mm: AddressSpace, start: int, end: int) -> bool:
    return mm.precheck_blocked(start, end, "mremap")


def _resize_610(mm: AddressSpace, vrm: Remap) -> int:
    if _blocked_610(mm, vrm.addr, vrm.addr + vrm.old_len):
        return -mm.policy.refusal
    vrm.new_addr = vrm.addr
    if vrm.old_len >= vrm.new_len:
        if vrm.old_len == vrm.new_len:
            return vrm.addr
        err = mm.do_vmi_munmap(vrm.addr + vrm.new_len, vrm.old_len - vrm.new_len, "mremap")
        return err if err else vrm.addr
    vrm.delta = vrm.new_len - vrm.old_len
    vrm.remap_type = EXPAND
    vma = mm.vma_lookup(vrm.addr)
    if vma is None:
        return -errno.EFAULT
    err = remap_is_valid(vrm, vma)
    if err:
        return err
    vrm.vma = vma
    if vma.end - vrm.addr == vrm.old_len and vma_expandable(mm, vma, vrm.delta):
        return expand_vma(mm, vrm)
    if not vrm.flags & MREMAP_MAYMOVE:
        return -errno.ENOMEM
    err = vrm_set_new_addr(mm, vrm)
    if err:
        return err
    return move_vma(mm, vrm)


def mremap_to_610(mm: AddressSpace, vrm: Remap) -> int:
    """6.10 ``mremap_to()``: destination checks, the source pre-check, then
    unmap the destination (its own pre-check), shrink, move."""
    if vrm.new_addr & (PAGE - 1):
        return -errno.EINVAL
    if vrm.new_len > TASK_SIZE or vrm.new_addr > TASK_SIZE - vrm.new_len:
        return -errno.EINVAL
    if overlaps(vrm):
        return -errno.EINVAL
    if _blocked_610(mm, vrm.addr, vrm.addr + vrm.old_len):
        return -mm.policy.refusal
    if vrm.flags & MREMAP_FIXED:
        err = mm.do_vmi_munmap(vrm.new_addr, vrm.new_len, "mremap")
        if err:
            return err
    if vrm.old_len > vrm.new_len:
        err = mm.do_vmi_munmap(vrm.addr + vrm.new_len, vrm.old_len - vrm.new_len, "mremap")
        if err:
            return err
        vrm.old_len = vrm.new_len
    vma = mm.vma_lookup(vrm.addr)
    if vma is None:
        return -errno.EFAULT
    vrm.delta = vrm.new_len - vrm.old_len
    vrm.remap_type = EXPAND if vrm.delta else NO_RESIZE
    err = remap_is_valid(vrm, vma)
    if err:
        return err
    vrm.vma = vma
    err = vrm_set_new_addr(mm, vrm)
    if err:
        return err
    return move_vma(mm, vrm)

"""mmap, munmap, brk and stack growth (mm/mmap.c, mm/vma.c ``__mmap_region()``).

Argument checks run in the kernel's order so the same errno wins:
``sys_mmap`` (offset alignment) -> ``ksys_mmap_pgoff()`` (EBADF, hugetlb) ->
``do_mmap()`` (len, overflow, placement, EEXIST, file permissions, map type) ->
``mmap_region()`` (the munmap gather of MAP_FIXED, accounting, the new VMA).
"""

from __future__ import annotations

import errno
from typing import TYPE_CHECKING, Final

from ..ops import ELSEWHERE, MODEL_BASES, Brk, Mmap, Munmap
from . import content, gup
from .vma import (
    M64,
    MMAP_MIN_ADDR,
    PAGE,
    PAGE_SHIFT,
    RLIMIT_STACK,
    STACK_GUARD_GAP,
    TASK_SIZE,
    VM_ACCESS_FLAGS,
    VM_ACCOUNT,
    VM_DONTDUMP,
    VM_DROPPABLE,
    VM_GROWSDOWN,
    VM_LOCKED,
    VM_MAYEXEC,
    VM_MAYREAD,
    VM_MAYSHARE,
    VM_MAYWRITE,
    VM_NOHUGEPAGE,
    VM_NORESERVE,
    VM_READ,
    VM_SEALABLE,
    VM_SHARED,
    VM_SYNC,
    VM_WIPEONFORK,
    VM_WRITE,
    Vma,
    page_align,
)

if TYPE_CHECKING:
    from ..ops import Op
    from .space import AddressSpace

PROT_READ: Final = 0x1
PROT_WRITE: Final = 0x2
PROT_EXEC: Final = 0x4

MAP_SHARED: Final = 0x01
MAP_PRIVATE: Final = 0x02
MAP_SHARED_VALIDATE: Final = 0x03
MAP_DROPPABLE: Final = 0x08
MAP_TYPE: Final = 0x0F
MAP_FIXED: Final = 0x10
MAP_ANONYMOUS: Final = 0x20
MAP_32BIT: Final = 0x40
MAP_ABOVE4G: Final = 0x80
MAP_GROWSDOWN: Final = 0x100
MAP_DENYWRITE: Final = 0x800
MAP_EXECUTABLE: Final = 0x1000
MAP_LOCKED: Final = 0x2000
MAP_NORESERVE: Final = 0x4000
MAP_POPULATE: Final = 0x8000
MAP_NONBLOCK: Final = 0x10000
MAP_STACK: Final = 0x20000
MAP_HUGETLB: Final = 0x40000
MAP_SYNC: Final = 0x80000
MAP_FIXED_NOREPLACE: Final = 0x100000
MAP_UNINITIALIZED: Final = 0x4000000
MAP_SEALABLE: Final = 0x8000000
MAP_HUGE_SHIFT: Final = 26
MAP_HUGE_MASK: Final = 0x3F

LEGACY_MAP_MASK: Final = (
    MAP_SHARED | MAP_PRIVATE | MAP_FIXED | MAP_ANONYMOUS | MAP_DENYWRITE | MAP_EXECUTABLE
    | MAP_UNINITIALIZED | MAP_GROWSDOWN | MAP_LOCKED | MAP_NORESERVE | MAP_POPULATE
    | MAP_NONBLOCK | MAP_STACK | MAP_HUGETLB | MAP_32BIT | MAP_ABOVE4G
    | (21 << MAP_HUGE_SHIFT) | (30 << MAP_HUGE_SHIFT)
)  # fmt: skip
"""include/linux/mman.h on x86_64 (MAP_HUGE_2MB/1GB cover bits 26-30, so
MAP_UNINITIALIZED and the proposal's MAP_SEALABLE pass MAP_SHARED_VALIDATE)."""

HUGE_PAGE_LOGS: Final = (0, 21, 30)
"""``hstate_sizelog()``: the default hstate, 2 MiB and 1 GiB on x86_64."""


def calc_vm_prot_bits(prot: int) -> int:
    """``calc_vm_prot_bits()`` (no protection keys on the reference machine)."""
    return prot & (PROT_READ | PROT_WRITE | PROT_EXEC)


def _in_zone(addr: int) -> bool:
    return MODEL_BASES.zone_of(addr) is not None


# ----------------------------------------------------------------- placement


def get_unmapped_area(mm: AddressSpace, addr: int, length: int, fixed: bool) -> tuple[int, bool]:
    """``__get_unmapped_area()`` + x86 ``arch_get_unmapped_area_topdown()``:
    ``(address or -errno, placed_elsewhere)``. A hint is used when the range
    is free up to the next VMA's stack guard gap; otherwise the mapping goes
    where the trace cannot see it."""
    if length > TASK_SIZE:
        return -errno.ENOMEM, False
    if fixed:
        if addr > TASK_SIZE - length:
            return -errno.ENOMEM, False
        if addr & (PAGE - 1):
            return -errno.EINVAL, False
        return addr, False
    if addr:
        addr &= ~(PAGE - 1)
        if addr <= TASK_SIZE - length:  # mmap_address_hint_valid()
            nxt = mm.find_vma(addr)
            if nxt is None or addr + length <= vm_start_gap(nxt):
                return addr, False
    placed = mm.place_elsewhere(length)
    return placed, placed >= 0


def vm_start_gap(v: Vma) -> int:
    """Where a new mapping must end below ``v`` (its stack guard gap if it grows down)."""
    if v.flags & VM_GROWSDOWN:
        gap = v.start - STACK_GUARD_GAP
        return gap if gap <= v.start and gap >= 0 else 0
    return v.start


# ---------------------------------------------------------------------- mmap


def sys_mmap(mm: AddressSpace, op: Op) -> int:
    """``mmap(2)`` (arch/x86 sys_mmap -> ksys_mmap_pgoff -> vm_mmap_pgoff)."""
    assert isinstance(op, Mmap)
    addr, length = op.addr & M64, op.length & M64
    prot, flags, off = int(op.prot) & M64, int(op.flags) & M64, op.offset & M64
    if off & (PAGE - 1):
        return -errno.EINVAL
    pgoff = off >> PAGE_SHIFT
    file: str | None = None
    if not flags & MAP_ANONYMOUS:
        if op.file is None:
            return -errno.EBADF  # fd -1
        file = ("F:" if op.file_ro else "f:") + op.file
        if flags & MAP_HUGETLB:
            return -errno.EINVAL  # not a hugetlbfs file
    elif flags & MAP_HUGETLB:
        # hugetlb_file_setup(): an unknown page size is EINVAL; the model has
        # no huge pages, so any other size cannot be reserved.
        log = (flags >> MAP_HUGE_SHIFT) & MAP_HUGE_MASK
        return -errno.EINVAL if log not in HUGE_PAGE_LOGS else -errno.ENOMEM
    return do_mmap(mm, file, addr, length, prot, flags, pgoff)


def do_mmap(
    mm: AddressSpace, file: str | None, addr: int, length: int, prot: int, flags: int, pgoff: int
) -> int:
    """``do_mmap()`` then ``mm_populate()`` (mm/mmap.c)."""
    if not length:
        return -errno.EINVAL
    if flags & MAP_FIXED_NOREPLACE:
        flags |= MAP_FIXED
    if not flags & MAP_FIXED:
        # round_hint_to_min()
        addr &= ~(PAGE - 1)
        if addr and addr < MMAP_MIN_ADDR:
            addr = MMAP_MIN_ADDR
    length = page_align(length)
    if not length:
        return -errno.ENOMEM
    if pgoff + (length >> PAGE_SHIFT) > M64:
        return -errno.EOVERFLOW
    # mm->def_flags: VM_LOCKED (and VM_LOCKONFAULT) after mlockall(MCL_FUTURE).
    vm_flags = calc_vm_prot_bits(prot) | mm.def_flags | VM_MAYREAD | VM_MAYWRITE | VM_MAYEXEC
    if flags & MAP_GROWSDOWN:
        vm_flags |= VM_GROWSDOWN
    if flags & MAP_LOCKED:
        vm_flags |= VM_LOCKED
    if flags & MAP_SYNC:
        vm_flags |= VM_SYNC
    if flags & MAP_STACK:
        vm_flags |= VM_NOHUGEPAGE  # 6.7+: MAP_STACK stacks are not THP-backed
    if flags & MAP_SEALABLE and mm.policy.map_sealable:
        vm_flags |= VM_SEALABLE  # the v3 proposal's opt-in; Linux ignores the bit

    start, elsewhere = get_unmapped_area(mm, addr, length, bool(flags & MAP_FIXED))
    if start < 0:
        return start
    if flags & MAP_FIXED_NOREPLACE and mm.intersect(start, start + length) is not None:
        return -errno.EEXIST

    if file is not None:
        # file_mmap_ok(): a regular file may be MAX_LFS_FILESIZE long.
        if pgoff > ((1 << 63) - 1 - length) >> PAGE_SHIFT:
            return -errno.EOVERFLOW
        mtype = flags & MAP_TYPE
        if mtype == MAP_SHARED:
            flags &= LEGACY_MAP_MASK
        if mtype in (MAP_SHARED, MAP_SHARED_VALIDATE):
            # FOP_MMAP_SYNC: the filesystem validates MAP_SYNC itself (below).
            if flags & ~(LEGACY_MAP_MASK | MAP_SYNC):
                return -errno.EOPNOTSUPP
            writable_fd = file.startswith("f:")
            if prot & PROT_WRITE and not writable_fd:
                return -errno.EACCES
            vm_flags |= VM_SHARED | VM_MAYSHARE
            if not writable_fd:
                vm_flags &= ~(VM_MAYWRITE | VM_SHARED)
        elif mtype != MAP_PRIVATE:
            return -errno.EINVAL
        if vm_flags & VM_GROWSDOWN:
            return -errno.EINVAL
    else:
        mtype = flags & MAP_TYPE
        if mtype == MAP_SHARED:
            if vm_flags & VM_GROWSDOWN:
                return -errno.EINVAL
            pgoff = 0
            vm_flags |= VM_SHARED | VM_MAYSHARE
        elif mtype in (MAP_PRIVATE, MAP_DROPPABLE):
            if mtype == MAP_DROPPABLE:
                if flags & (MAP_LOCKED | MAP_HUGETLB) or vm_flags & VM_GROWSDOWN:
                    return -errno.EINVAL
                vm_flags |= VM_DROPPABLE | VM_NORESERVE | VM_WIPEONFORK | VM_DONTDUMP
            pgoff = start >> PAGE_SHIFT  # "set pgoff according to addr for anon_vma"
        else:
            return -errno.EINVAL
    if flags & MAP_NORESERVE:
        vm_flags |= VM_NORESERVE  # overcommit heuristic honours MAP_NORESERVE

    err = mmap_region(mm, file, start, length, vm_flags, pgoff)
    if err:
        return err
    if vm_flags & VM_LOCKED or (flags & (MAP_POPULATE | MAP_NONBLOCK)) == MAP_POPULATE:
        gup.mm_populate(mm, start, length, ignore_errors=True)
    return ELSEWHERE if elsewhere else start


def accountable(vm_flags: int) -> bool:
    """``accountable_mapping()``: private writable memory is charged."""
    return (vm_flags & (VM_NORESERVE | VM_SHARED | VM_WRITE)) == VM_WRITE


def mmap_region(
    mm: AddressSpace, file: str | None, addr: int, length: int, vm_flags: int, pgoff: int
) -> int:
    """``mmap_region()`` / ``__mmap_region()``: unmap what MAP_FIXED replaces
    (the munmap gather: a sealed VMA refuses with the leading split left in
    place, docs/reference/linux.md rules 5, 6), charge, then map and merge with the neighbours."""
    end = addr + length
    policy = mm.policy
    if "mmap" in policy.precheck:
        # 6.10: do_vmi_munmap() (with can_modify_mm()) first, accounting after.
        if mm.precheck_blocked(addr, end, "mmap"):
            return -policy.refusal
        err = mm.do_vmi_align_munmap(addr, end, "mmap")
        if err:
            return err
        if accountable(vm_flags):
            if not mm.enough_memory(length >> PAGE_SHIFT):
                return -errno.ENOMEM
            vm_flags |= VM_ACCOUNT
    else:
        err = mm.gather(addr, end, "mmap")
        if err:
            return err
        if accountable(vm_flags):
            charged = (length >> PAGE_SHIFT) - sum(
                v.pages for v in mm.vmas.range(addr, end) if v.flags & VM_ACCOUNT
            )
            if charged > 0 and not mm.enough_memory(charged):
                return -errno.ENOMEM  # VMAs reattached; the splits stay
            vm_flags |= VM_ACCOUNT
        mm.unmap(addr, end)  # vms_clean_up_area() + vms_complete_munmap_vmas()
    if file is not None and vm_flags & VM_SYNC:
        # ext4's ->mmap refuses MAP_SYNC without DAX; the old range is already
        # gone ("leave a gap where the MAP_FIXED mapping failed").
        return -errno.EOPNOTSUPP
    if file is not None:
        mm.object(file)  # the file exists from now on (FILE_PAGES pages of F)
    elif vm_flags & VM_SHARED:
        file = mm.new_shmem(length >> PAGE_SHIFT)  # shmem_zero_setup()
    new = Vma(addr, end, vm_flags, pgoff, file, None, 0, ())
    if file is not None and file.startswith("s:"):
        mm.vmas.replace(addr, end, [new])  # a fresh shmem object merges with nothing
    else:
        mm.merge_new(new)
    return 0


# -------------------------------------------------------------------- munmap


def sys_munmap(mm: AddressSpace, op: Op) -> int:
    """``munmap(2)``: ``__vm_munmap()`` -> ``do_vmi_munmap()``."""
    assert isinstance(op, Munmap)
    return mm.do_vmi_munmap(op.addr & M64, op.length & M64, "munmap")


# ----------------------------------------------------------------------- brk


def sys_brk(mm: AddressSpace, op: Op) -> int:
    """``brk(2)`` (mm/mmap.c): returns the new break, or the old one when the
    request fails (scenario probe/8.1: a shrink over a sealed heap page leaves the
    break unchanged and the unsealed heap VMA split at the requested break)."""
    assert isinstance(op, Brk)
    brk = op.addr & M64
    origbrk = mm.brk
    if brk < mm.start_brk:
        return origbrk
    newbrk = page_align(brk)
    oldbrk = page_align(mm.brk)
    if oldbrk == newbrk:
        mm.brk = brk
        return brk
    if brk <= mm.brk:
        # Always allow shrinking brk... unless a seal refuses the unmap.
        found = mm.intersect(newbrk, oldbrk)
        if found is None:
            return origbrk  # "mapping intersects with an existing non-brk vma"
        if mm.precheck_blocked(newbrk, oldbrk, "brk"):
            return origbrk  # 6.10: do_vma_munmap() -> can_modify_mm()
        if mm.do_vmi_align_munmap(newbrk, oldbrk, "brk"):
            return origbrk
        mm.brk = brk
        return brk
    # check_brk_limits(): get_unmapped_area(MAP_FIXED). The length is an
    # unsigned difference: a break near 2^64 rounds to 0 and wraps.
    grow = (newbrk - oldbrk) & M64
    if grow > TASK_SIZE or oldbrk > TASK_SIZE - grow:
        return origbrk
    nxt = mm.intersect(oldbrk, newbrk + PAGE + STACK_GUARD_GAP)
    if nxt is not None and newbrk + PAGE > vm_start_gap(nxt):
        return origbrk
    prev = mm.vmas.before(oldbrk)
    if prev is not None and prev.end <= mm.start_brk:
        prev = None  # vma_prev_limit(vmi, mm->start_brk)
    if do_brk_flags(mm, prev, oldbrk, grow):
        return origbrk
    mm.brk = brk
    if mm.def_flags & VM_LOCKED:
        # sys_brk(): after mlockall(MCL_FUTURE) the new heap is faulted in.
        gup.mm_populate(mm, oldbrk, grow, ignore_errors=True)
    return brk


def do_brk_flags(mm: AddressSpace, prev: Vma | None, addr: int, length: int) -> int:
    """``do_brk_flags()``: expand the heap VMA ending at ``addr`` if its flags
    match (a sealed one does not: scenario probe/8.1, "grow" gets a new VMA), else map a
    new anonymous VMA."""
    vm_flags = (
        VM_READ | VM_WRITE | VM_MAYREAD | VM_MAYWRITE | VM_MAYEXEC | VM_ACCOUNT | mm.def_flags
    )
    if not mm.enough_memory(length >> PAGE_SHIFT):
        return -errno.ENOMEM
    new = Vma(addr, addr + length, vm_flags, addr >> PAGE_SHIFT, None, None, 0, ())
    if prev is not None and prev.end == addr:
        mm.merge_new(new, prev_only=True)
    else:
        mm.vmas.replace(addr, addr + length, [new])
    return 0


# --------------------------------------------------------------- stack growth


def expand_stack(mm: AddressSpace, addr: int) -> int:
    """``expand_stack()`` -> ``expand_downwards()`` (mm/mmap.c): grow the
    grows-down VMA above ``addr`` down to it. Seals do not stop it: a sealed
    [stack] grows and stays sealed (docs/reference/linux.md rule 17)."""
    addr &= ~(PAGE - 1)
    v = mm.find_vma(addr)
    if v is not None and v.start <= addr:
        return 0
    if v is None or not v.flags & VM_GROWSDOWN:
        return -errno.EFAULT
    if addr < MMAP_MIN_ADDR:
        return -errno.EPERM
    prev = mm.vma_prev(v)
    if (
        prev is not None
        and not prev.flags & VM_GROWSDOWN
        and prev.flags & VM_ACCESS_FLAGS
        and addr - prev.end < STACK_GUARD_GAP
    ):
        return -errno.ENOMEM  # the stack guard gap
    if (prev is None or prev.end <= mm.start_brk) and mm.start_brk <= addr < (
        mm.start_brk + STACK_GUARD_GAP
    ):
        # The heap zone starts at the break of a process whose heap is in use
        # (as the kernel executor's runner's is): an accessible heap VMA ends
        # at the initial break, and the guard gap is kept from it too. Found
        # by the differential fuzzer (regression/stack-guard-gap-above-the-heap).
        return -errno.ENOMEM
    grow = (v.start - addr) >> PAGE_SHIFT
    if grow > v.pgoff or v.end - addr > RLIMIT_STACK:
        return -errno.ENOMEM  # acct_stack_growth()
    v = mm.anon_vma_prepare(v)
    grown = Vma(
        addr, v.end, v.flags, v.pgoff - grow, v.file, v.anon, v.seal, content.move(v.priv, grow)
    )
    mm.put(v, [grown])
    return 0


__all__ = ["do_mmap", "expand_stack", "mmap_region", "sys_brk", "sys_mmap", "sys_munmap"]

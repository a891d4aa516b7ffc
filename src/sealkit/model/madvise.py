"""madvise and process_madvise (mm/madvise.c, 6.17+ shape).

``do_madvise()`` -> ``madvise_should_skip()`` (EINVAL for an unknown advice,
an unaligned start or a wrapping length; 0 for an empty range) ->
``madvise_do_behavior()`` -> ``madvise_populate()`` for POPULATE_* (no seal
check) or ``madvise_walk_vmas()``, which calls ``madvise_vma_behavior()`` on
each VMA: the seal check (``can_madvise_modify()``) comes first, then the
advice's own checks. A hole does not stop the walk: ENOMEM comes back at the
end, unless a VMA's error stops it first (scenario probe/7.5: EPERM, not
ENOMEM; docs/reference/linux.md rule 10).
"""

from __future__ import annotations

import errno
from typing import TYPE_CHECKING, Final

from ..flags import Madv
from ..ops import Madvise, ProcessMadvise
from . import content, gup
from .content import GUARD, Kind
from .vma import (
    M64,
    MAX_RW_COUNT,
    PAGE,
    PAGE_SHIFT,
    UIO_MAXIOV,
    USER_PTR_MAX,
    VM_DONTCOPY,
    VM_DONTDUMP,
    VM_DROPPABLE,
    VM_HUGEPAGE,
    VM_HUGETLB,
    VM_IO,
    VM_LOCKED,
    VM_MAYBE_GUARD,
    VM_MAYSHARE,
    VM_MAYWRITE,
    VM_MERGEABLE,
    VM_NOHUGEPAGE,
    VM_PFNMAP,
    VM_RAND_READ,
    VM_SEQ_READ,
    VM_SHARED,
    VM_SPECIAL,
    VM_WIPEONFORK,
    Vma,
    is_anonymous,
    page_align,
)

if TYPE_CHECKING:
    from ..ops import Op
    from .space import AddressSpace

# Advice whose effect is a change of vm_flags (madvise_update_vma()).
_FLAG_ADVICE: Final = frozenset(
    {
        Madv.NORMAL, Madv.SEQUENTIAL, Madv.RANDOM, Madv.DONTFORK, Madv.DOFORK,
        Madv.WIPEONFORK, Madv.KEEPONFORK, Madv.DONTDUMP, Madv.DODUMP, Madv.MERGEABLE,
        Madv.UNMERGEABLE, Madv.HUGEPAGE, Madv.NOHUGEPAGE,
    }
)  # fmt: skip


def _int32(value: int) -> int:
    value &= 0xFFFF_FFFF
    return value - (1 << 32) if value & 0x8000_0000 else value


def sys_madvise(mm: AddressSpace, op: Op) -> int:
    """``madvise(2)`` (``behavior`` is a C int)."""
    assert isinstance(op, Madvise)
    return do_madvise(mm, op.addr & M64, op.length & M64, _int32(int(op.advice)))


def should_skip(mm: AddressSpace, start: int, len_in: int, behavior: int) -> int | None:
    """``madvise_should_skip()``: an errno or 0 to return at once, or ``None``."""
    if behavior not in mm.policy.valid_advice:
        return -errno.EINVAL
    if start & (PAGE - 1):
        return -errno.EINVAL
    length = page_align(len_in)
    if len_in and not length:
        return -errno.EINVAL
    if start + length > M64:
        return -errno.EINVAL
    if length == 0:
        return 0
    return None


def do_madvise(mm: AddressSpace, start: int, len_in: int, behavior: int) -> int:
    """``do_madvise()``."""
    skip = should_skip(mm, start, len_in, behavior)
    if skip is not None:
        return skip
    return madvise_do_behavior(mm, start, start + page_align(len_in), behavior)


def madvise_do_behavior(mm: AddressSpace, start: int, end: int, behavior: int) -> int:
    """``madvise_do_behavior()``, with the policy's whole-range check first
    for pre-check policies (6.10 ``can_modify_mm_madv()``)."""
    policy = mm.policy
    mode = policy.madvise_mode(behavior)
    range_sealed = False
    if mode in ("precheck", "amap"):
        range_sealed = any(policy.blocks_madvise(v, behavior) for v in mm.vmas.range(start, end))
        if mode == "precheck" and range_sealed:
            return -policy.refusal
    if behavior in (Madv.POPULATE_READ, Madv.POPULATE_WRITE):
        return gup.faultin_page_range(mm, start, end, behavior == Madv.POPULATE_WRITE)
    return madvise_walk_vmas(mm, start, end, behavior, mode, range_sealed)


def madvise_walk_vmas(
    mm: AddressSpace, start: int, end: int, behavior: int, mode: str, range_sealed: bool
) -> int:
    """``madvise_walk_vmas()``: each VMA in turn; holes give ENOMEM at the end."""
    unmapped = 0
    cur = start
    vma = mm.find_vma(cur)
    while True:
        if vma is None:
            return -errno.ENOMEM
        if cur < vma.start:
            unmapped = -errno.ENOMEM
            cur = vma.start
            if cur >= end:
                break
        rend = min(vma.end, end)
        err, after = madvise_vma_behavior(mm, vma, cur, rend, behavior, mode, range_sealed)
        if err:
            return err
        if after is not None and rend < after.end:
            rend = after.end
        if rend >= end:
            break
        vma = mm.find_vma(after.end if after is not None else rend)
        cur = rend
    return unmapped


def madvise_vma_behavior(
    mm: AddressSpace, vma: Vma, start: int, end: int, behavior: int, mode: str, range_sealed: bool
) -> tuple[int, Vma | None]:
    """``madvise_vma_behavior()``: the seal check, then the advice. Returns
    (error, the VMA now covering ``start``, or ``None`` when the mmap lock
    was dropped and the walk must look the next VMA up again)."""
    policy = mm.policy
    if mode == "walk" and policy.blocks_madvise(vma, behavior):
        return -policy.refusal, vma
    if mode == "amap" and range_sealed and _has_amap(vma):
        return -policy.refusal, vma  # OpenBSD uvm_map_clean(): an amap in an immutable range
    if behavior in _FLAG_ADVICE:
        return _update_flags(mm, vma, start, end, behavior)
    lo, hi = (start - vma.start) >> PAGE_SHIFT, (end - vma.start) >> PAGE_SHIFT
    if behavior == Madv.REMOVE:
        return madvise_remove(mm, vma, lo, hi), None
    if behavior == Madv.WILLNEED:
        return 0, (None if vma.file is not None and not vma.file.startswith("s:") else vma)
    if behavior in (Madv.COLD, Madv.PAGEOUT):
        if vma.flags & (VM_LOCKED | VM_PFNMAP | VM_HUGETLB):
            return -errno.EINVAL, vma
        if behavior == Madv.PAGEOUT and (vma.anon is None or not vma.anon.forked):
            # Reclaim drops lazily freed pages; with no swap nothing else goes.
            # In a fork child, pages not yet copied on write are still mapped
            # by the parent, and madvise_cold_or_pageout_pte_range() skips
            # folios mapped elsewhere (folio_mapcount() != nr_pages): they
            # keep their data. The model does not track which pages the
            # child has copied since, so its lazily freed pages stay `?`
            # (regression/fork-child-pageout-keeps-shared-pages).
            vma = mm.set_priv(vma, content.drop(vma.priv, lo, hi, keep=_not_lazy))
        return 0, vma
    if behavior in (Madv.DONTNEED, Madv.DONTNEED_LOCKED, Madv.FREE):
        forbidden = VM_PFNMAP | (VM_LOCKED if behavior != Madv.DONTNEED_LOCKED else 0)
        if vma.flags & forbidden:
            return -errno.EINVAL, vma
        if behavior == Madv.FREE:
            if not is_anonymous(vma):
                return -errno.EINVAL, vma
            return 0, mm.set_priv(vma, content.edit(vma.priv, lo, hi, content.lazy))
        # zap_page_range_single_batched(): private pages (and COW copies,
        # even_cows) go; guard markers stay; shared data lives in the object.
        return 0, mm.set_priv(vma, content.drop(vma.priv, lo, hi, keep=_is_guard))
    if behavior == Madv.COLLAPSE:
        return -errno.EINVAL, vma  # no huge pages in the model (measured EINVAL)
    if behavior == Madv.GUARD_INSTALL:
        if vma.flags & (VM_SPECIAL | VM_HUGETLB | VM_LOCKED):
            return -errno.EINVAL, vma
        # madvise_guard_install() (6.18.37+): once is_valid_guard_vma() passed,
        # VM_MAYBE_GUARD is set on the whole VMA (vma_flag_set_atomic(): no
        # split, no merge; smaps "gu", sticky, not a merge barrier), then an
        # anon_vma is taken for anonymous VMAs only, so guarded shmem and file
        # VMAs still merge (regression/sealed-shmem-merges-across-guard-markers).
        if not vma.flags & VM_MAYBE_GUARD:
            vma = mm.set_flags(vma, vma.flags | VM_MAYBE_GUARD)
        if is_anonymous(vma):
            vma = mm.anon_vma_prepare(vma)
        return 0, mm.set_priv(vma, content.put(vma.priv, lo, hi, GUARD))
    if behavior == Madv.GUARD_REMOVE:
        if vma.flags & (VM_SPECIAL | VM_HUGETLB):
            return -errno.EINVAL, vma
        return 0, mm.set_priv(vma, content.drop(vma.priv, lo, hi, keep=_not_guard))
    return -errno.EINVAL, vma  # unreachable for valid advice


def _has_amap(vma: Vma) -> bool:
    """Whether OpenBSD would give this mapping an amap (anonymous memory): a
    private VMA once it holds private pages, and shared anonymous memory from
    the start (``uvm_mmapanon()``: MAP_SHARED -> ``UVM_FLAG_OVERLAY`` ->
    ``amap_alloc()`` in ``uvm_mapanon()``)."""
    return vma.anon is not None or (vma.file is not None and vma.file.startswith("s:"))


def _is_guard(kind: Kind) -> bool:
    return kind == GUARD


def _not_guard(kind: Kind) -> bool:
    return kind != GUARD


def _not_lazy(kind: Kind) -> bool:
    return not content.is_lazy(kind)


def madvise_remove(mm: AddressSpace, vma: Vma, lo: int, hi: int) -> int:
    """``madvise_remove()``: punch a hole in a shared writable file or shmem
    object (EINVAL without one, EACCES when the mapping may not write it)."""
    if vma.flags & VM_LOCKED:
        return -errno.EINVAL
    if vma.file is None:
        return -errno.EINVAL
    if (vma.flags & (VM_SHARED | VM_MAYWRITE)) != (VM_SHARED | VM_MAYWRITE):
        return -errno.EACCES  # vma_is_shared_maywrite()
    size, runs = mm.object(vma.file)
    a, b = vma.pgoff + lo, min(vma.pgoff + hi, size)
    if a < b:
        mm.set_object(vma.file, content.put(runs, a, b, "0"))
    return 0


def _update_flags(
    mm: AddressSpace, vma: Vma, start: int, end: int, behavior: int
) -> tuple[int, Vma | None]:
    flags = vma.flags
    if behavior == Madv.NORMAL:
        flags &= ~(VM_RAND_READ | VM_SEQ_READ)
    elif behavior == Madv.SEQUENTIAL:
        flags = (flags & ~VM_RAND_READ) | VM_SEQ_READ
    elif behavior == Madv.RANDOM:
        flags = (flags & ~VM_SEQ_READ) | VM_RAND_READ
    elif behavior == Madv.DONTFORK:
        flags |= VM_DONTCOPY
    elif behavior == Madv.DOFORK:
        if flags & VM_IO:
            return -errno.EINVAL, vma
        flags &= ~VM_DONTCOPY
    elif behavior == Madv.WIPEONFORK:
        if vma.file is not None or flags & VM_SHARED:
            return -errno.EINVAL, vma  # "only supported on anonymous memory"
        flags |= VM_WIPEONFORK
    elif behavior == Madv.KEEPONFORK:
        if flags & VM_DROPPABLE:
            return -errno.EINVAL, vma
        flags &= ~VM_WIPEONFORK
    elif behavior == Madv.DONTDUMP:
        flags |= VM_DONTDUMP
    elif behavior == Madv.DODUMP:
        if flags & (VM_SPECIAL | VM_DROPPABLE):
            return -errno.EINVAL, vma
        flags &= ~VM_DONTDUMP
    elif behavior == Madv.MERGEABLE:
        # ksm_madvise(): shared mappings are silently ignored (vma_ksm_compatible()).
        if not flags & (VM_SHARED | VM_MAYSHARE | VM_SPECIAL | VM_DROPPABLE | VM_HUGETLB):
            flags |= VM_MERGEABLE
    elif behavior == Madv.UNMERGEABLE:
        flags &= ~VM_MERGEABLE
    elif behavior == Madv.HUGEPAGE:
        flags = (flags & ~VM_NOHUGEPAGE) | VM_HUGEPAGE
    elif behavior == Madv.NOHUGEPAGE:
        flags = (flags & ~VM_HUGEPAGE) | VM_NOHUGEPAGE
    if flags == vma.flags:
        return 0, vma  # madvise_update_vma(): nothing to change, no split
    return 0, mm.vma_modify(vma, start, end, flags, vma.seal)


# -------------------------------------------------------------- process_madvise


def sys_process_madvise(mm: AddressSpace, op: Op) -> int:
    """``process_madvise(pidfd_open(getpid()), iov, n, advice, 0)``: the
    iovecs in turn; the result is the bytes of the iovecs done before one
    failed, or that failure when none was done (``vector_madvise()``; scenario
    probe/11.7 returns 16384 after a sealed second iovec)."""
    assert isinstance(op, ProcessMadvise)
    behavior = _int32(int(op.advice))
    ranges = [(a & M64, n & M64) for a, n in op.ranges]
    if len(ranges) > UIO_MAXIOV:
        return -errno.EINVAL
    if any(n >= 1 << 63 for _, n in ranges):
        return -errno.EINVAL  # copy_iovec_from_user(): negative ssize_t
    # import_iovec(): access_ok() and the MAX_RW_COUNT cap (one iovec: cap first).
    iovs = []
    total = 0
    for addr, n_in in ranges:
        n = min(n_in, MAX_RW_COUNT) if len(ranges) == 1 else n_in  # import_ubuf() caps first
        if addr + n > USER_PTR_MAX:  # access_ok(): the sum, unwrapped, below the limit
            return -errno.EFAULT
        n = min(n, MAX_RW_COUNT - total)
        total += n
        iovs.append((addr, n))
    if not total:
        return 0  # vector_madvise() loops while iov_iter_count(): nothing to look at
    done = 0
    ret = 0
    for k, (addr, n) in enumerate(iovs):
        if k and not n:
            continue  # iov_iter_advance() skips empty iovecs after the first one
        skip = should_skip(mm, addr, n, behavior)
        ret = (
            skip
            if skip is not None
            else madvise_do_behavior(mm, addr, addr + page_align(n), behavior)
        )
        if ret < 0:
            break
        done += n
    return done if done else ret

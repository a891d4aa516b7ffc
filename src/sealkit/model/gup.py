"""Page faults and user stores (mm/memory.c, mm/gup.c).

The model has no page tables; what a fault changes is what a later read
would see and whether the VMA has an anon_vma:

* a *write* fault on a private mapping gives the VMA an anon_vma
  (``anon_vma_prepare()``) and, for a file mapping, a private copy of the file
  page (copy-on-write); a lazily freed page becomes definite again;
* a *read* fault changes nothing visible (zero page or page cache);
* a guard marker raises SIGSEGV and a file page past the end of the object
  SIGBUS: the fault fails there.

:func:`sys_write` is the ``Write`` op: a store through the kernel's user-copy
path (like ``process_vm_writev``: no FOLL_FORCE, and no stack growth, which
GUP stopped doing in 6.5; see ``AddressSpace.expand_stack``).
"""

from __future__ import annotations

import errno
from typing import TYPE_CHECKING

from ..ops import MODEL_BASES, Write
from . import content
from .content import GUARD, Kind, Runs
from .vma import (
    M64,
    PAGE,
    PAGE_SHIFT,
    TASK_SIZE,
    VM_EXEC,
    VM_LOCKONFAULT,
    VM_READ,
    VM_SHARED,
    VM_WRITE,
    Vma,
)

if TYPE_CHECKING:
    from ..ops import Op
    from .space import AddressSpace


def _is_guard(kind: Kind) -> bool:
    return kind == GUARD


def fault_stop(mm: AddressSpace, v: Vma, lo: int, hi: int) -> int:
    """The first page of ``[lo, hi)`` (offsets in ``v``) whose fault fails
    (guard marker, or past the end of the backing object); ``hi`` if none."""
    stop = hi
    g = content.first(v.priv, lo, hi, _is_guard)
    if g is not None:
        stop = g
    if v.file is not None:
        size, _ = mm.object(v.file)
        stop = min(stop, max(lo, size - v.pgoff))
    return stop


def cow_prepared(mm: AddressSpace, v: Vma, stop: int, hi: int) -> Vma:
    """``v`` after a private write fault that stopped at page ``stop`` (< ``hi``):
    ``do_cow_fault()`` prepares the anon_vma before the file read fails with
    SIGBUS past the end of the file, so the failed fault still leaves one (a
    guard marker fails before that). Found by the differential fuzzer
    (regression/mlock-beyond-eof-keeps-sealed-vmas-apart)."""
    if (
        stop < hi
        and v.file is not None
        and content.first(v.priv, stop, stop + 1, _is_guard) is None
    ):
        return mm.anon_vma_prepare(v)
    return v


def object_view(mm: AddressSpace, v: Vma, lo: int, hi: int) -> Runs:
    """The backing object's pages under ``[lo, hi)`` of ``v``, in ``v``'s
    page coordinates (holes as ``"0"``)."""
    assert v.file is not None
    size, runs = mm.object(v.file)
    top = min(hi, size - v.pgoff)
    if top <= lo:
        return ()
    view = content.move(content.cut(runs, v.pgoff + lo, v.pgoff + top), lo)
    return content.edit(view, lo, top, lambda k: k, fill="0")


def write_fault(mm: AddressSpace, v: Vma, lo: int, hi: int) -> Vma:
    """Write-fault pages ``[lo, hi)`` of private ``v`` (all fault without error):
    anon_vma, copy-on-write of file pages, lazily freed pages made definite."""
    v = mm.anon_vma_prepare(v)
    priv = content.edit(v.priv, lo, hi, content.unlazy)
    if v.file is not None:
        view = object_view(mm, v, lo, hi)
        for a, b, k in priv:  # pages already private stay as they are
            if b > lo and a < hi:
                view = content.put(view, max(a, lo), min(b, hi), k)
        priv = content.drop(priv, lo, hi)
        for a, b, k in view:
            priv = content.put(priv, a, b, k)
    return mm.set_priv(v, priv) if priv != v.priv else v


def populate_vma_page_range(mm: AddressSpace, v: Vma, start: int, end: int) -> int:
    """``populate_vma_page_range()`` (mlock, MAP_POPULATE, MAP_LOCKED): write
    faults for private writable mappings (to break COW), read faults
    otherwise. Returns pages done, or ``-EFAULT`` if the first page fails."""
    lo, hi = (start - v.start) >> PAGE_SHIFT, (end - v.start) >> PAGE_SHIFT
    if v.flags & VM_LOCKONFAULT:
        return hi - lo
    if not v.flags & (VM_READ | VM_WRITE | VM_EXEC):
        # No FOLL_FORCE for an inaccessible (PROT_NONE) VMA (vma_is_accessible()),
        # so GUP fails on the first page: mlock gets ENOMEM, its lock stays
        # (regression/mlock-prot-none, found by the differential fuzzer).
        return -errno.EFAULT
    stop = fault_stop(mm, v, lo, hi)
    if (v.flags & (VM_WRITE | VM_SHARED)) == VM_WRITE:
        if stop > lo:
            v = write_fault(mm, v, lo, stop)
        cow_prepared(mm, v, stop, hi)
    if stop == lo and lo < hi:
        return -errno.EFAULT
    return stop - lo


def mm_populate(mm: AddressSpace, start: int, length: int, ignore_errors: bool) -> int:
    """``__mm_populate()``: fault in every VMA of ``[start, start+len)``."""
    end = start + length
    cur = start
    while cur < end:
        v = mm.intersect(cur, end)
        if v is None:
            break
        cur = max(cur, v.start)
        nend = min(end, v.end)
        done = populate_vma_page_range(mm, v, cur, nend)
        if done < 0:
            if ignore_errors:
                cur = nend
                continue
            return done
        cur = cur + done * PAGE
    return 0


def faultin_page_range(mm: AddressSpace, start: int, end: int, write: bool) -> int:
    """``MADV_POPULATE_(READ|WRITE)`` through ``faultin_page_range()``:
    ENOMEM at a hole, EINVAL where the VMA lacks the permission (no
    FOLL_FORCE), EFAULT at a page that cannot be faulted; earlier pages stay
    populated."""
    cur = start
    while cur < end:
        v = mm.vma_lookup(cur)
        if v is None:
            return -errno.ENOMEM
        need = VM_WRITE if write else VM_READ
        if not v.flags & need:
            return -errno.EINVAL
        nend = min(end, v.end)
        lo, hi = (cur - v.start) >> PAGE_SHIFT, (nend - v.start) >> PAGE_SHIFT
        stop = fault_stop(mm, v, lo, hi)
        if write and not v.flags & VM_SHARED:
            if stop > lo:
                v = write_fault(mm, v, lo, stop)
            cow_prepared(mm, v, stop, hi)
        if stop < hi:
            return -errno.EFAULT
        cur = nend
    return 0


def write_kind(op_tag: str | None, addr: int, o: int) -> Kind:
    """The kind a ``Write`` leaves on a run whose page ``o`` is at ``addr``."""
    if op_tag:
        return op_tag[0]
    zoned = MODEL_BASES.zone_of(addr)
    zone_page = (zoned[1] >> PAGE_SHIFT) if zoned is not None else addr >> PAGE_SHIFT
    # A pattern run gives each page write_token(None, its zone page), as ops.Write says.
    return content.pattern_base(zone_page, o)


def sys_write(mm: AddressSpace, op: Op) -> int:
    """A user store into every page touching ``[addr, addr+length)``: -EFAULT
    at the first page that cannot be written; the pages before it are written."""
    assert isinstance(op, Write)
    addr, length = op.addr & M64, op.length & M64
    if length == 0:
        return 0
    start = addr & ~(PAGE - 1)
    # Nothing is mapped above TASK_SIZE, so a range running past it (or past
    # 2^64) ends in EFAULT at the first unmapped page.
    end = min((addr + length + PAGE - 1) & ~(PAGE - 1), 1 << 64)
    cur = start
    while cur < end:
        v = mm.vma_lookup(cur) if cur < TASK_SIZE else None
        if v is None or not v.flags & VM_WRITE:
            return -errno.EFAULT
        nend = min(end, v.end)
        lo, hi = (cur - v.start) >> PAGE_SHIFT, (nend - v.start) >> PAGE_SHIFT
        stop = fault_stop(mm, v, lo, hi)
        if stop > lo:
            kind = write_kind(op.tag, v.start + (lo << PAGE_SHIFT), lo)
            if v.flags & VM_SHARED:
                assert v.file is not None
                _, runs = mm.object(v.file)
                okind = content.move(((lo, stop, kind),), v.pgoff)[0][2]
                mm.set_object(v.file, content.put(runs, v.pgoff + lo, v.pgoff + stop, okind))
            else:
                v = mm.anon_vma_prepare(v)
                v = mm.set_priv(v, content.put(v.priv, lo, stop, kind))
        if stop < hi:
            if not v.flags & VM_SHARED:
                cow_prepared(mm, v, stop, hi)
            return -errno.EFAULT
        cur = nend
    return 0

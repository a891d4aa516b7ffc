"""Writes into the process from outside: ``/proc/PID/mem``, ``process_vm_writev``, ``ptrace``.

None of them looks at a seal. All three reach the pages through the kernel's
remote-access path, page by page from the first, and stop at the first page
that refuses (the pages before it stay written):

* ``pwrite_mem`` (fs/proc/base.c ``mem_rw()`` -> mm/memory.c
  ``__access_remote_vm()``, which grows a stack to reach an address just
  below it): ``FOLL_FORCE`` when ``proc_mem_foll_force()``
  says so, which for a process writing its own ``/proc/self/mem`` is only
  ``proc_mem.force_override=always`` (``ptrace`` forces only for the
  target's active tracer); the bytes written, ``-EIO`` when none were;
* ``vm_writev`` (mm/process_vm_access.c ``process_vm_rw_single_vec()``
  pins with ``FOLL_WRITE``, never ``FOLL_FORCE``): the bytes written,
  ``-EFAULT`` when none were (``process_vm_rw_core()``);
* ``poke`` (kernel/ptrace.c ``generic_ptrace_pokedata()`` ->
  ``ptrace_access_vm(..., FOLL_FORCE | FOLL_WRITE)`` ->
  ``__access_remote_vm()``, so it grows stacks too, whatever
  ``proc_mem.force_override`` says): 0, or ``-EIO`` at the first word not
  written whole.

Which pages accept a write is mm/gup.c ``check_vma_flags()``: a VMA with
``VM_WRITE`` always; without it only with ``FOLL_FORCE`` and only a
copy-on-write mapping (``is_cow_mapping()``: private with ``VM_MAYWRITE``):
never a shared mapping, read-only or not. Then the fault
(``faultin_page()``): a guard marker (``handle_pte_marker()``) and a file
page past the end of the file (``filemap_fault()``) fail. A forced write to
a private page without write permission breaks copy-on-write
(``do_wp_page()``/``wp_page_copy()``; ``do_anonymous_page()`` for an
untouched anonymous page), so the file is never written through a private
mapping; a shared writable mapping writes its object.
"""

from __future__ import annotations

import errno
from typing import TYPE_CHECKING

from ..ops import Poke, PwriteMem, VmWritev
from . import content, gup
from .vma import (
    M64,
    MAX_RW_COUNT,
    PAGE,
    PAGE_SHIFT,
    TASK_SIZE,
    USER_PTR_MAX,
    VM_MAYWRITE,
    VM_SHARED,
    VM_WRITE,
    Vma,
)

if TYPE_CHECKING:
    from ..ops import Op
    from .space import AddressSpace

__all__ = ["remote_write", "sys_poke", "sys_pwrite_mem", "sys_vm_writev"]


def is_cow_mapping(flags: int) -> bool:
    """``is_cow_mapping()`` (include/linux/mm.h): private and may be written."""
    return (flags & (VM_SHARED | VM_MAYWRITE)) == VM_MAYWRITE


def _accepts(v: Vma, force: bool) -> bool:
    """mm/gup.c ``check_vma_flags()`` for ``FOLL_WRITE`` (``| FOLL_FORCE`` when
    ``force``). The seal is not looked at."""
    if v.flags & VM_WRITE:
        return True
    return force and is_cow_mapping(v.flags)


def remote_write(
    mm: AddressSpace, addr: int, length: int, tag: str | None, force: bool, expand: bool
) -> int:
    """Write ``[addr, addr+length)`` page by page as the remote-access path
    does; the bytes written before the first page that refused. A page
    written whole holds the tag (or its zone page's letter); a page written
    in part holds mixed bytes (``?``). ``expand``: an unmapped page just
    below a grows-down VMA grows it first (mm/memory.c ``__access_remote_vm()``
    calls ``expand_stack()`` where ``vma_lookup()`` finds nothing; GUP itself,
    and so ``process_vm_writev``, never grows a stack since 6.5)."""
    end = addr + length  # < 2**65: past TASK_SIZE nothing is mapped
    cur = addr
    while cur < end:
        page = cur & ~(PAGE - 1)
        v = mm.vma_lookup(page) if page < TASK_SIZE else None
        if v is None and expand and page < TASK_SIZE and mm.expand_stack(page) == 0:
            v = mm.vma_lookup(page)
        if v is None or not _accepts(v, force):
            break
        nend = min((end + PAGE - 1) & ~(PAGE - 1), v.end)
        lo, hi = (page - v.start) >> PAGE_SHIFT, (nend - v.start) >> PAGE_SHIFT
        stop = gup.fault_stop(mm, v, lo, hi)
        if stop > lo:
            wend = min(end, v.start + (stop << PAGE_SHIFT))
            v = _store(mm, v, cur, wend, tag)
            cur = wend
        if stop < hi:
            if not v.flags & VM_SHARED:
                # do_cow_fault() takes the anon_vma before the file read fails
                # with SIGBUS (a guard marker fails before that).
                gup.cow_prepared(mm, v, stop, hi)
            break
    return cur - addr


def _store(mm: AddressSpace, v: Vma, start: int, end: int, tag: str | None) -> Vma:
    """Bytes ``[start, end)`` of ``v`` (all in pages that accept the write)."""
    first = start & ~(PAGE - 1)
    last = (end + PAGE - 1) & ~(PAGE - 1)
    whole_lo = (start + PAGE - 1) & ~(PAGE - 1)
    whole_hi = end & ~(PAGE - 1)
    pieces: list[tuple[int, int, bool]] = []  # (page lo, page hi, whole) in v's pages
    if whole_lo < whole_hi:
        if first < whole_lo:
            pieces.append((first, whole_lo, False))
        pieces.append((whole_lo, whole_hi, True))
        if whole_hi < last:
            pieces.append((whole_hi, last, False))
    else:
        pieces.append((first, last, False))  # within one or two pages, none whole
    for a, b, whole in pieces:
        lo, hi = (a - v.start) >> PAGE_SHIFT, (b - v.start) >> PAGE_SHIFT
        kind = gup.write_kind(tag, a, lo) if whole else content.LAZY
        if v.flags & VM_SHARED:
            assert v.file is not None
            _, runs = mm.object(v.file)
            okind = content.move(((lo, hi, kind),), v.pgoff)[0][2]
            mm.set_object(v.file, content.put(runs, v.pgoff + lo, v.pgoff + hi, okind))
        else:
            # A private write: the anon_vma, then the page becomes the
            # process's own (copy-on-write of a file page; do_wp_page()).
            v = mm.anon_vma_prepare(v)
            v = mm.set_priv(v, content.put(v.priv, lo, hi, kind))
    return v


def sys_pwrite_mem(mm: AddressSpace, op: Op) -> int:
    """``pwrite(open("/proc/self/mem", O_RDWR), buf, length, addr)``."""
    assert isinstance(op, PwriteMem)
    addr, length = op.addr & M64, op.length & M64
    if addr >= 1 << 63:
        return -errno.EINVAL  # fs/read_write.c ksys_pwrite64(): pos < 0
    if length > USER_PTR_MAX:
        # vfs_write(): access_ok(buf, count) fails for a count no user buffer
        # can have (the model assumes the caller's buffer holds `length` bytes).
        return -errno.EFAULT
    length = min(length, MAX_RW_COUNT)  # vfs_write() caps the count
    if length == 0:
        return 0  # mem_rw(): the loop does not run
    done = remote_write(mm, addr, length, op.tag, mm.proc_mem_force == "always", True)
    return done if done else -errno.EIO


def sys_vm_writev(mm: AddressSpace, op: Op) -> int:
    """``process_vm_writev(getpid(), [buf, length], 1, [addr, length], 1, 0)``."""
    assert isinstance(op, VmWritev)
    addr, length = op.addr & M64, op.length & M64
    if length >= 1 << 63:
        return -errno.EINVAL  # lib/iov_iter.c: a negative iovec length
    length = min(length, MAX_RW_COUNT)  # import_iovec() caps the local iovec
    if length == 0:
        return 0
    done = remote_write(mm, addr, length, op.tag, False, False)
    return done if done else -errno.EFAULT


def sys_poke(mm: AddressSpace, op: Op) -> int:
    """``PTRACE_POKEDATA`` over ``[addr, addr+length)`` from a tracer."""
    assert isinstance(op, Poke)
    addr, length = op.addr & M64, op.length & M64
    if length == 0:
        return 0
    done = remote_write(mm, addr, length, op.tag, True, True)
    return 0 if done == length else -errno.EIO

"""Changing a mapped file through its descriptor: pwrite, ftruncate, fallocate(PUNCH_HOLE).

No file operation looks at a VMA, sealed or not: what a mapping shows
follows from the file. A shared mapping reads the file; a private one reads
it wherever the process has no copy of its own yet (``AddressSpace.tokens``),
so a write to the file changes the pages of a sealed private mapping that
were never written. Pages past the end of the file raise SIGBUS
(``filemap_fault()``; token ``!``).

Files are the trace's own (``FILE_PAGES`` pages of ``F`` when first named),
opened read-write (``f1``) and read-only (``f1:ro``), on a disk filesystem
as the kernel executor's are (ext4 on the reference machine; the choice
matters only for ``s_maxbytes``). Sizes are kept in pages: a size that ends
inside a page makes that page read as ``?`` (file data, then zeroes) unless
it was zero already.
"""

from __future__ import annotations

import errno
from typing import TYPE_CHECKING, Final

from ..ops import FilePwrite, Ftruncate, Punch
from . import content
from .content import GUARD, Kind
from .vma import M64, MAX_RW_COUNT, PAGE, PAGE_SHIFT, USER_PTR_MAX, VM_SHARED

if TYPE_CHECKING:
    from ..ops import Op
    from .space import AddressSpace

__all__ = ["FILE_MAX_BYTES", "sys_file_pwrite", "sys_ftruncate", "sys_punch"]

FILE_MAX_BYTES: Final = 0xFFF_FFFF_F000
"""``s_maxbytes`` of ext4 with 4 KiB blocks (fs/ext4/super.c
``ext4_max_size()``: 2**32 - 1 blocks), as measured on the reference
machine's /tmp. Other filesystems differ (tmpfs: ``MAX_LFS_FILESIZE``); the
kernel executor does not run file sizes beyond 1 TiB."""

_NEG: Final = 1 << 63  # a loff_t at or above this is negative


def _key(file: str, ro: bool) -> str:
    return ("F:" if ro else "f:") + file


def _partial(kind: Kind) -> Kind:
    """A page written, zeroed or cut in part: file data and other bytes (``?``),
    unless every byte was zero already."""
    return kind if kind == "0" else content.LAZY


def _edit_bytes(
    mm: AddressSpace, key: str, start: int, end: int, whole: Kind, size: int | None = None
) -> None:
    """Object bytes ``[start, end)`` := ``whole`` on the pages they cover
    entirely; pages covered in part read ``?`` (unless ``whole`` and the page
    are both zero). ``size``: the new size in pages."""
    old_size, runs = mm.object(key)
    first, last = start >> PAGE_SHIFT, (end + PAGE - 1) >> PAGE_SHIFT
    wlo, whi = (start + PAGE - 1) >> PAGE_SHIFT, end >> PAGE_SHIFT
    if wlo < whi:
        runs = content.put(runs, wlo, whi, whole)
    for p in {first, last - 1}:
        if p < last and not wlo <= p < whi:
            was = content.find(runs, p)
            now: Kind = content.LAZY
            if whole == "0" and (was is None or was == "0"):
                now = "0"
            runs = content.put(runs, p, p + 1, now)
    mm.set_object(key, runs, size if size is not None else old_size)


def sys_file_pwrite(mm: AddressSpace, op: Op) -> int:
    """``pwrite(fd, buf, length, offset)`` (fs/read_write.c ``ksys_pwrite64()``
    -> ``vfs_write()`` -> ``generic_write_checks()`` -> the page cache)."""
    assert isinstance(op, FilePwrite)
    pos, count = op.offset & M64, op.length & M64
    if pos >= _NEG:
        return -errno.EINVAL  # ksys_pwrite64(): pos < 0
    if op.file_ro:
        return -errno.EBADF  # vfs_write(): not FMODE_WRITE
    if count > USER_PTR_MAX:
        return -errno.EFAULT  # access_ok(buf, count): no buffer is that long
    if pos + count >= _NEG:
        return -errno.EINVAL  # rw_verify_area(): pos + count overflows loff_t
    count = min(count, MAX_RW_COUNT)
    if count == 0:
        return 0  # generic_write_checks(): nothing to write
    if pos >= FILE_MAX_BYTES:
        return -errno.EFBIG  # generic_write_check_limits()
    count = min(count, FILE_MAX_BYTES - pos)
    key = _key(op.file, False)
    size, _ = mm.object(key)
    end = pos + count
    # Untagged, file page o gets the letter of o: the pattern with base 0.
    whole: Kind = op.tag[0] if op.tag else 0
    _edit_bytes(mm, key, pos, end, whole, max(size, (end + PAGE - 1) >> PAGE_SHIFT))
    return count


def _drop_private_beyond(mm: AddressSpace, key: str, pages: int) -> None:
    """``unmap_mapping_range(mapping, holebegin, 0, even_cows=1)``
    (mm/truncate.c ``truncate_pagecache()``): in every private mapping of the
    file, the process's own copies of pages at or past ``pages`` go too;
    guard markers stay (mm/memory.c ``zap_nonpresent_ptes()`` drops PTE
    markers only with ``ZAP_FLAG_DROP_MARKER``)."""
    for v in list(mm.vmas):
        if v.file is None or v.flags & VM_SHARED or mm.object_key(v.file) != key:
            continue
        lo = max(0, pages - v.pgoff)
        if lo < v.pages and content.covered(v.priv, lo, v.pages):
            priv = content.drop(v.priv, lo, v.pages, keep=lambda k: k == GUARD)
            if priv != v.priv:
                mm.set_priv(v, priv)


def sys_ftruncate(mm: AddressSpace, op: Op) -> int:
    """``ftruncate(fd, length)`` (fs/open.c ``do_sys_ftruncate()`` ->
    ``do_ftruncate()`` -> ``do_truncate()``; ext4 ``ext4_setattr()`` or
    tmpfs ``shmem_setattr()``, both ``truncate_pagecache()``)."""
    assert isinstance(op, Ftruncate)
    length = op.length & M64
    if length >= _NEG:
        return -errno.EINVAL  # do_sys_ftruncate(): length < 0
    if op.file_ro:
        return -errno.EINVAL  # do_ftruncate(): not FMODE_WRITE
    if length > FILE_MAX_BYTES:
        return -errno.EFBIG  # fs/attr.c inode_newsize_ok()
    key = _key(op.file, False)
    size, runs = mm.object(key)
    pages = (length + PAGE - 1) >> PAGE_SHIFT
    if pages < size:
        # Shrink: the page cache past the end goes (truncate_inode_pages()),
        # and with it the private copies of every mapping (even_cows).
        runs = content.drop(runs, pages, size)
        mm.set_object(key, runs, pages)
        _drop_private_beyond(mm, key, pages)
    elif pages > size:
        # Grow: the new pages read as zeroes (no run covers them).
        mm.set_object(key, content.drop(runs, size, pages), pages)
    if length & (PAGE - 1):
        # truncate_inode_pages(): the rest of the last page reads as zeroes.
        last = length >> PAGE_SHIFT
        _, runs = mm.object(key)
        was = content.find(runs, last)
        if was is not None:
            mm.set_object(key, content.put(runs, last, last + 1, _partial(was)))
    return 0


def sys_punch(mm: AddressSpace, op: Op) -> int:
    """``fallocate(fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, offset,
    length)`` (fs/open.c ``vfs_fallocate()`` -> ext4 ``ext4_punch_hole()`` or
    tmpfs ``shmem_fallocate()``, both ``truncate_pagecache_range()``:
    ``even_cows=0``, so private copies stay)."""
    assert isinstance(op, Punch)
    offset, length = op.offset & M64, op.length & M64
    if offset >= _NEG or length >= _NEG or length == 0:
        return -errno.EINVAL  # vfs_fallocate(): offset < 0 || len <= 0
    if op.file_ro:
        return -errno.EBADF  # vfs_fallocate(): not FMODE_WRITE
    if offset + length >= _NEG or offset + length > FILE_MAX_BYTES:
        return -errno.EFBIG  # vfs_fallocate(): wrap-around, or past s_maxbytes
    key = _key(op.file, False)
    size, _ = mm.object(key)
    end = min(offset + length, size << PAGE_SHIFT)  # KEEP_SIZE: only inside the file
    if offset < end:
        _edit_bytes(mm, key, offset, end, "0")
    return 0

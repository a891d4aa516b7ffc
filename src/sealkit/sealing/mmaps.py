"""seal_mmap(): seal an anonymous ``mmap.mmap`` the caller created, after checking it."""

from __future__ import annotations

import ctypes
import functools
import mmap as _mmap
import os
from dataclasses import dataclass
from typing import Final

from .._os import procfs, syscalls
from ..errors import StateError, UnsafeTargetError
from ..flags import MapFlag, Prot
from ._buffers import export, release
from ._checks import PAGE, refuse, round_up

__all__ = ["SealedMmap", "seal_mmap"]


@dataclass(frozen=True, slots=True)
class SealedMmap:
    """What :func:`seal_mmap` sealed: ``[address, address + length)``, whole
    pages of an anonymous ``mmap.mmap``."""

    address: int
    length: int


_SHMEM_ZERO: Final = "/dev/zero (deleted)"


@functools.cache
def _shmem_dev() -> str | None:
    """The device smaps prints for shared anonymous memory, measured once
    on a probe page (``None`` if it could not be found: nothing shared then
    counts as anonymous).

    A regular file can be *named* ``/dev/zero (deleted)`` (unlink a file
    created at that path), but it cannot live on the kernel's internal shm
    mount. memfds do live there, and print as ``/memfd:NAME (deleted)``.
    """
    addr = syscalls.mmap(0, PAGE, int(Prot.NONE), int(MapFlag.SHARED | MapFlag.ANONYMOUS))
    try:
        return next((v.dev for v in procfs.read_maps("self") if v.start == addr), None)
    finally:
        syscalls.munmap(addr, PAGE)


def _is_anonymous(vma: procfs.Vma, shmem_dev: str | None) -> bool:
    """Whether ``vma`` is anonymous memory: private anonymous, or shared
    anonymous (shmem with no file anyone can open, hence none to truncate).
    ``shmem_dev`` is what :func:`_shmem_dev` measures; with ``None`` no
    shared VMA counts as anonymous. A private mapping of ``/dev/zero``
    keeps the device as its file, so it is (harmlessly) not anonymous here."""
    if not vma.shared:
        return vma.inode == 0 and (not vma.path or vma.path.startswith("[anon:"))
    return vma.dev == shmem_dev and (vma.path == _SHMEM_ZERO or vma.path.startswith("[anon_shmem:"))


def _open_fds_on(vma: procfs.Vma) -> list[int]:
    """File descriptors of this process open on the object behind ``vma``
    (same device and inode), from ``/proc/self/fd``.

    Shared anonymous memory has no path anyone can open, except through
    ``/proc/PID/map_files/`` (which needs CAP_SYS_ADMIN): an ``mmap.mmap``
    made from such a descriptor maps the same shmem object, and CPython
    keeps the descriptor, so ``resize()`` would truncate the object under
    the sealed pages (SIGBUS on the next touch). smaps cannot tell that mmap
    from ``mmap.mmap(-1, n)``; the open descriptor can.
    """
    major, minor = (int(part, 16) for part in vma.dev.split(":"))
    found = []
    for name in os.listdir("/proc/self/fd"):
        try:
            st = os.stat(f"/proc/self/fd/{name}")
        except OSError:  # closed meanwhile, or the listing's own descriptor
            continue
        if st.st_ino == vma.inode and (os.major(st.st_dev), os.minor(st.st_dev)) == (major, minor):
            found.append(int(name))
    return found


def seal_mmap(m: _mmap.mmap) -> SealedMmap:
    """Seal an *anonymous* ``mmap.mmap`` the caller created; returns what was sealed.

    Accepted: ``mmap.mmap(-1, n)`` (shared anonymous) and
    ``mmap.mmap(-1, n, flags=mmap.MAP_PRIVATE)`` (private anonymous).
    Checked first, from ``/proc/self/smaps``: the mmap is open, starts on a
    page boundary, the pages ``[address, address + len)`` rounded up to
    whole pages are one mapping (the same permissions and backing
    throughout; a shared mapping must start and end at the mmap's bounds; a
    private anonymous mmap the kernel merged with a neighbour is accepted,
    since sealing a sub-range only seals those pages), and that mapping is
    anonymous. Otherwise :class:`~sealkit.errors.UnsafeTargetError` and
    nothing is sealed. The buffer stays exported while checking and
    sealing, so a concurrent ``close()`` cannot swap the mapping underneath.

    **File-backed mmaps are refused**, whatever their access mode: CPython's
    ``mmap.resize()`` calls ``ftruncate`` on the file *before* ``mremap``,
    so on a sealed mapping the file shrinks, the kernel refuses the move
    (EPERM), and touching the sealed pages now past end-of-file kills the
    process with SIGBUS. ``/proc`` cannot tell a resizable mmap from a
    read-only one (an ``ACCESS_WRITE`` mmap made read-only with ``mprotect``
    shows the same ``r--s`` and VmFlags as ``ACCESS_READ``), so no file
    mmap is safe to seal. Use :func:`map_file` for a sealed read-only file
    mapping, or :func:`freeze` for a private copy. For the same reason a
    shared mmap is refused while any file descriptor of this process is open
    on the memory behind it (an mmap made from ``/proc/self/map_files/...``
    is file-backed, though smaps shows it as shared anonymous memory).

    What CPython (3.11 and later) then does with the sealed anonymous mmap,
    tested in ``tests/kernel/test_mmap_seal.py``:

    * ``m.close()``, also at the end of a ``with`` block, returns normally
      and ``m`` reports closed, but CPython ignores munmap's EPERM: the pages
      stay mapped (leaked) until exit. Further use of ``m`` raises
      ``ValueError``.
    * garbage collection and interpreter exit: the same ignored munmap, no
      exception, no warning; the kernel frees the pages at exit.
    * ``m.resize()``: ``PermissionError`` (EPERM from mremap) and ``m`` is
      unchanged. CPython holds no file descriptor for ``mmap.mmap(-1, n)``,
      so there is nothing to truncate.
    """
    if not isinstance(m, _mmap.mmap):
        raise refuse(m)
    if m.closed:
        raise StateError("cannot seal a closed mmap")
    exported = export(m)
    try:
        addr, size = exported.buf or 0, exported.len
        if size <= 0 or addr % PAGE:
            raise UnsafeTargetError(
                f"refusing to seal an mmap at {addr:#x} of {size} bytes: not a page-aligned "
                "mapping; nothing was sealed"
            )
        length = round_up(size)
        vmas = _covering(addr, length)
        first, last = vmas[0], vmas[-1]
        shmem_dev = _shmem_dev() if any(v.shared for v in vmas) else None
        if not all(_is_anonymous(vma, shmem_dev) for vma in vmas):
            raise UnsafeTargetError(
                f"refusing to seal the file-backed mmap at {addr:#x}: CPython's mmap.resize() "
                "truncates the file before the kernel refuses to move sealed pages, and touching "
                "them past end-of-file kills the process with SIGBUS; use sealkit.map_file(path) "
                "for a sealed read-only file mapping or sealkit.freeze(m) for a sealed copy; "
                "nothing was sealed"
            )
        fds = _open_fds_on(first) if first.shared else []
        if fds:
            raise UnsafeTargetError(
                f"refusing to seal the shared mmap at {addr:#x}: file descriptor(s) {fds} of this "
                "process are open on the memory behind it (an mmap made from one, as through "
                "/proc/self/map_files, truncates it on resize(), killing the process with SIGBUS "
                "once sealed); nothing was sealed"
            )
        for vma in vmas:
            if (vma.perms, vma.path, vma.inode, vma.dev) != (
                first.perms,
                first.path,
                first.inode,
                first.dev,
            ):
                raise UnsafeTargetError(
                    f"refusing to seal the mmap at {addr:#x}: its pages are not one mapping "
                    f"({first.perms} {first.path!r} vs {vma.perms} {vma.path!r}); nothing was sealed"
                )
        if first.shared and (first.start != addr or last.end != addr + length):
            raise UnsafeTargetError(
                f"refusing to seal the mmap at {addr:#x}+{length:#x}: the mapping there spans "
                f"[{first.start:#x}, {last.end:#x}), more than the mmap; nothing was sealed"
            )
        syscalls.mseal(addr, length)
        return SealedMmap(addr, length)
    finally:
        release(ctypes.byref(exported))


def _covering(addr: int, length: int) -> list[procfs.Vma]:
    """The VMAs covering ``[addr, addr+length)`` without a gap, or refuse."""
    end = addr + length
    vmas = [v for v in procfs.read_smaps("self") if v.end > addr and v.start < end]
    cursor = addr
    for vma in vmas:
        if vma.start > cursor:
            break
        cursor = vma.end
    if not vmas or cursor < end:
        raise UnsafeTargetError(
            f"refusing to seal [{addr:#x}, {end:#x}): not all of it is mapped; nothing was sealed"
        )
    return vmas

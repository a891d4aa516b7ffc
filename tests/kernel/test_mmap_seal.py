"""seal_mmap and what CPython 3.11 does with a sealed mmap afterwards.

Findings (each asserted below):

* CPython ignores munmap's return value in ``mmap.close()`` and in
  deallocation, so closing (also at the end of a ``with`` block), collecting
  or exiting with a sealed anonymous mmap is silent and safe; the pages stay
  mapped until exit. ``resize()`` of a sealed anonymous mmap raises
  PermissionError and changes nothing.
* ``resize()`` of a file-backed mmap calls ``ftruncate`` *before*
  ``mremap``: on a sealed mapping the file shrinks, mremap fails with EPERM,
  and touching the sealed pages past the new end of file kills the process
  with SIGBUS. smaps cannot tell a resizable file mmap from a read-only one
  (an ``ACCESS_WRITE`` mmap made read-only with mprotect looks exactly like
  ``ACCESS_READ``, VmFlags ``mw`` included), so seal_mmap refuses every
  file-backed mmap and seals nothing; ``map_file`` is the safe way.
"""

from __future__ import annotations

import ctypes
import errno
import gc
import mmap
import os
import signal
import tempfile
from collections.abc import Callable
from typing import Any

import pytest

from sealkit import StateError, UnsafeTargetError, is_sealed, seal, seal_mmap, sealed_ranges
from sealkit._os import syscalls as sc
from sealkit._os.procfs import read_smaps
from sealkit.flags import Prot
from sealkit.sealing._buffers import buffer_span

pytestmark = pytest.mark.kernel

PAGE = mmap.PAGESIZE


def vma_at(addr: int) -> tuple[int, int, str, bool | None] | None:
    for v in read_smaps():
        if v.start <= addr < v.end:
            return v.start, v.end, v.perms, v.sealed
    return None


def sealed_spans() -> list[tuple[int, int]]:
    return [(v.start, v.end) for v in sealed_ranges()]


# --- the hole: a sealed file mmap that CPython can truncate ---------------------

HOLE_SCRIPT = r"""
import mmap, os, sys, tempfile
from sealkit._os import syscalls
from sealkit.sealing._buffers import buffer_span
PAGE = mmap.PAGESIZE
fd, name = tempfile.mkstemp(); os.unlink(name)
os.write(fd, b"F" * 2 * PAGE)
m = mmap.mmap(fd, 2 * PAGE)                           # ACCESS_WRITE: resizable
addr = buffer_span(m)[0]
syscalls.mprotect(addr, 2 * PAGE, mmap.PROT_READ)   # r--s: looks like ACCESS_READ
syscalls.mseal(addr, 2 * PAGE)                       # what an unchecked seal does
try:
    m.resize(PAGE)
except OSError as exc:
    print("resize", exc.errno)
print("file", os.fstat(fd).st_size, flush=True)
print("page 1", bytes(memoryview(m)[PAGE:PAGE + 1]), flush=True)   # past end of file
"""


def test_resize_truncates_a_sealed_file_mmap_then_sigbus(python: Callable[..., Any]) -> None:
    """Why seal_mmap refuses file mmaps: the crash it would allow, measured."""
    proc = python(HOLE_SCRIPT)
    assert proc.returncode == -signal.SIGBUS, (proc.returncode, proc.stdout, proc.stderr)
    # mremap's EPERM reached Python, but only after ftruncate shrank the file
    assert proc.stdout.split("\n")[:2] == [f"resize {errno.EPERM}", f"file {PAGE}"]
    assert "page 1" not in proc.stdout


def _open_rw(data: bytes) -> int:
    fd, name = tempfile.mkstemp()
    os.unlink(name)
    os.write(fd, data)
    return fd


def _mprotected_write(fd: int) -> mmap.mmap:
    m = mmap.mmap(fd, 2 * PAGE)
    sc.mprotect(buffer_span(m)[0], 2 * PAGE, int(Prot.READ))
    return m


def _memfd(_: int) -> mmap.mmap:
    mfd = os.memfd_create("sealkit-test")
    os.ftruncate(mfd, 2 * PAGE)
    return mmap.mmap(mfd, 2 * PAGE)


def _read_only_fd(fd: int) -> mmap.mmap:
    ro = os.open(f"/proc/self/fd/{fd}", os.O_RDONLY)
    return mmap.mmap(ro, 2 * PAGE, access=mmap.ACCESS_READ)


FILE_MMAPS: dict[str, Callable[[int], mmap.mmap]] = {
    "ACCESS_WRITE": lambda fd: mmap.mmap(fd, 2 * PAGE, access=mmap.ACCESS_WRITE),
    "ACCESS_DEFAULT": lambda fd: mmap.mmap(fd, 2 * PAGE),
    "ACCESS_WRITE, mprotect r": _mprotected_write,
    "ACCESS_READ": lambda fd: mmap.mmap(fd, 2 * PAGE, access=mmap.ACCESS_READ),
    "prot=PROT_READ": lambda fd: mmap.mmap(fd, 2 * PAGE, prot=mmap.PROT_READ),
    "ACCESS_COPY": lambda fd: mmap.mmap(fd, 2 * PAGE, access=mmap.ACCESS_COPY),
    "MAP_PRIVATE rw": lambda fd: mmap.mmap(fd, 2 * PAGE, flags=mmap.MAP_PRIVATE),
    "O_RDONLY fd, ACCESS_READ": _read_only_fd,
    "memfd (shmem, truncatable)": _memfd,
}


def _file_mmap_refused(kind: str) -> dict[str, object]:
    fd = _open_rw(b"F" * 2 * PAGE)
    m = FILE_MMAPS[kind](fd)
    addr = buffer_span(m)[0]
    before = sealed_spans()
    out: dict[str, object] = {"refused": None}
    try:
        seal_mmap(m)
    except UnsafeTargetError as exc:
        out["refused"] = str(exc)
    out["nothing_sealed"] = sealed_spans() == before
    out["vma_sealed"] = [
        v.sealed for v in read_smaps() if v.end > addr and v.start < addr + 2 * PAGE
    ]
    try:  # unsealed, resize is harmless again (or refused by CPython for read-only maps)
        m.resize(PAGE)
        out["resize"] = len(m)
    except (TypeError, OSError, BufferError) as exc:
        out["resize"] = type(exc).__name__
    # The process survives touching the mmap's last byte. Had the mapping been
    # sealed, a resizable mmap's file would now be one page long and this
    # would be SIGBUS (ChildDied).
    out["readable"] = m[len(m) - 1 :]
    m.close()
    return out


@pytest.mark.parametrize("kind", sorted(FILE_MMAPS))
def test_file_backed_mmaps_are_refused_and_nothing_sealed(
    in_child: Callable[..., Any], kind: str
) -> None:
    out = in_child(_file_mmap_refused, kind)
    assert out["refused"] is not None, f"{kind}: sealed, resize() could SIGBUS"
    assert "file-backed" in out["refused"] and "SIGBUS" in out["refused"]
    assert "map_file" in out["refused"] and "nothing was sealed" in out["refused"]
    assert out["nothing_sealed"] is True
    assert out["vma_sealed"] and not any(out["vma_sealed"])  # smaps: no 'sl'
    assert out["resize"] in (PAGE, "TypeError")
    assert out["readable"] == (b"\x00" if kind.startswith("memfd") else b"F")


# --- anonymous mmaps: sealed, and CPython copes --------------------------------


def _dev_zero_mmap(size: int) -> mmap.mmap:
    fd = os.open("/dev/zero", os.O_RDWR)
    try:
        return mmap.mmap(fd, size)  # shmem_zero_setup: smaps says "/dev/zero (deleted)"
    finally:
        os.close(fd)


ANON_MMAPS: dict[str, Callable[[int], mmap.mmap]] = {
    "shared": lambda size: mmap.mmap(-1, size),
    "private": lambda size: mmap.mmap(-1, size, flags=mmap.MAP_PRIVATE),
    # CPython keeps a /dev/zero fd here: resize's ftruncate fails, EINVAL
    "shared /dev/zero": _dev_zero_mmap,
}


def _anon_close_gc(kind: str) -> dict[str, object]:
    out: dict[str, object] = {}
    make = ANON_MMAPS[kind]
    m = make(2 * PAGE)
    m[:5] = b"hello"
    sealed = seal_mmap(m)
    out["sealed"] = (sealed.length, is_sealed(m))
    addr = sealed.address
    try:
        m.resize(PAGE)
    except OSError as exc:
        out["resize"] = (exc.errno, len(m), m[:5])
    m.close()  # CPython ignores munmap's EPERM: no exception
    out["closed"] = m.closed
    try:
        m[0]
    except ValueError as exc:
        out["use_after_close"] = str(exc)
    out["after_close"] = (vma_at(addr), ctypes.string_at(addr, 5))
    m2 = make(PAGE)
    m2[:3] = b"abc"
    addr2 = seal_mmap(m2).address
    del m2
    gc.collect()  # dealloc: the same ignored munmap
    out["after_gc"] = (vma_at(addr2), ctypes.string_at(addr2, 3))
    with make(PAGE) as m3:  # the natural form: the with-block closes a sealed mmap
        m3[:4] = b"with"
        addr3 = seal_mmap(m3).address
    out["after_with"] = (m3.closed, vma_at(addr3), ctypes.string_at(addr3, 4))
    return out


@pytest.mark.parametrize("kind", sorted(ANON_MMAPS))
def test_sealed_anonymous_mmap_close_gc_with_resize(
    in_child: Callable[..., Any], kind: str
) -> None:
    out = in_child(_anon_close_gc, kind)
    assert out["sealed"] == (2 * PAGE, True)
    resize_errno = errno.EINVAL if kind.endswith("/dev/zero") else errno.EPERM
    assert out["resize"] == (resize_errno, 2 * PAGE, b"hello")
    assert out["closed"] is True and "closed" in out["use_after_close"]
    vma, content = out["after_close"]
    assert vma[3] is True and content == b"hello"  # still mapped and sealed
    vma2, content2 = out["after_gc"]
    assert vma2[3] is True and content2 == b"abc"
    closed3, vma3, content3 = out["after_with"]
    assert closed3 is True and vma3[3] is True and content3 == b"with"


EXIT_SCRIPT = r"""
import gc, mmap, os, sys, tempfile
import sealkit
KEEP = mmap.mmap(-1, 8192)                       # alive at exit, module global
KEEP[:4] = b"keep"
sealkit.seal_mmap(KEEP)
class Cycle:                                      # freed by the cyclic GC at exit
    pass
c = Cycle(); c.me = c; c.m = mmap.mmap(-1, 4096); sealkit.seal_mmap(c.m); del c
with mmap.mmap(-1, 4096) as scoped:               # the with-block closes a sealed mmap
    sealkit.seal_mmap(scoped)
with mmap.mmap(-1, 4096, flags=mmap.MAP_PRIVATE) as scoped_private:
    sealkit.seal_mmap(scoped_private)
fd, name = tempfile.mkstemp(); os.write(fd, b"x" * 5000); os.close(fd)
FILE = sealkit.map_file(name)                     # a sealed file mapping alive at exit
VIEW = FILE.view()                                # and a view into it
os.unlink(name)                                   # the mapping keeps the file alive
print(bytes(VIEW[4990:]).decode(), len(VIEW))
print("end")
"""


def test_interpreter_exit_with_sealed_mmaps_is_silent(python: Callable[..., Any]) -> None:
    for dev_mode in ("", "1"):  # plain, then -X dev -W error (ResourceWarnings, debug hooks)
        proc = python(EXIT_SCRIPT, env={"PYTHONWARNINGS": "error", "PYTHONDEVMODE": dev_mode})
        assert proc.returncode == 0, proc.stderr
        assert proc.stdout.split() == ["xxxxxxxxxx", "5000", "end"]
        assert proc.stderr == ""


# --- refusals of anonymous mmaps that are not one whole mapping -----------------


def _merged_private() -> dict[str, object]:
    first = mmap.mmap(-1, PAGE, flags=mmap.MAP_PRIVATE)
    second = mmap.mmap(-1, PAGE, flags=mmap.MAP_PRIVATE)
    a1 = buffer_span(first)[0]
    a2 = buffer_span(second)[0]
    merged = vma_at(a2)
    seal_mmap(second)
    return {
        "adjacent": abs(a1 - a2) == PAGE,
        "merged_span": (merged[1] - merged[0]) if merged else 0,
        "second": is_sealed(second),
        "first": is_sealed(first),
    }


def test_private_anonymous_mmap_merged_with_neighbour(in_child: Callable[..., Any]) -> None:
    out = in_child(_merged_private)
    assert out["second"] is True and out["first"] is False
    if out["adjacent"]:  # the kernel merged the two: one VMA of 2 pages, split by the seal
        assert out["merged_span"] == 2 * PAGE


def _split_shared_mapping() -> dict[str, object]:
    m = mmap.mmap(-1, 2 * PAGE)
    addr = buffer_span(m)[0]
    sc.mprotect(addr + PAGE, PAGE, int(Prot.READ))  # no longer one mapping
    before = sealed_spans()
    try:
        seal_mmap(m)
        return {"refused": None}
    except UnsafeTargetError as exc:
        return {"refused": str(exc), "unchanged": before == sealed_spans()}


def test_mmap_that_is_not_one_mapping_is_refused(in_child: Callable[..., Any]) -> None:
    out = in_child(_split_shared_mapping)
    assert out["refused"] is not None and "not one mapping" in out["refused"]
    assert out["unchanged"] is True


def test_closed_mmap_and_non_mmaps() -> None:
    m = mmap.mmap(-1, PAGE)
    m.close()
    with pytest.raises(StateError, match="closed"):
        seal_mmap(m)
    with pytest.raises(StateError):
        seal(m)
    for bad in (b"x", bytearray(PAGE), PAGE, None):
        with pytest.raises(UnsafeTargetError):
            seal_mmap(bad)  # type: ignore[arg-type]

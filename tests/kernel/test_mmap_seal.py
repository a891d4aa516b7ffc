"""seal_mmap and what CPython 3.11 does with a sealed mmap afterwards.

Findings (each asserted below): CPython ignores munmap's return value in
``mmap.close()`` and in deallocation, so closing, collecting or exiting with
a sealed mmap is silent and safe; the pages stay mapped until exit.
``resize()`` of an anonymous sealed mmap raises PermissionError and changes
nothing; ``resize()`` of a writable file-backed mmap would truncate the
file before the kernel refuses (SIGBUS later), which sealkit prevents by
pinning such mmaps with a permanent buffer export."""

from __future__ import annotations

import ctypes
import errno
import gc
import mmap
import os
import tempfile
from collections.abc import Callable
from typing import Any

import pytest

from sealkit import StateError, UnsafeTargetError, is_sealed, seal, seal_mmap, sealed_ranges
from sealkit import _syscalls as sc
from sealkit.flags import Prot
from sealkit.procfs import read_smaps

pytestmark = pytest.mark.kernel

PAGE = mmap.PAGESIZE


def vma_at(addr: int) -> tuple[int, int, str, bool | None] | None:
    for v in read_smaps():
        if v.start <= addr < v.end:
            return v.start, v.end, v.perms, v.sealed
    return None


def _anon_close_gc() -> dict[str, object]:
    out: dict[str, object] = {}
    m = mmap.mmap(-1, 2 * PAGE)
    m[:5] = b"hello"
    sealed = seal_mmap(m)
    out["sealed"] = (sealed.length, sealed.pinned, is_sealed(m))
    addr = sealed.address
    try:
        m.resize(PAGE)
    except PermissionError as exc:
        out["resize"] = (exc.errno, len(m), m[:5])
    m.close()  # CPython ignores munmap's EPERM: no exception
    out["closed"] = m.closed
    try:
        m[0]
    except ValueError as exc:
        out["use_after_close"] = str(exc)
    out["after_close"] = (vma_at(addr), ctypes.string_at(addr, 5))
    m2 = mmap.mmap(-1, PAGE)
    m2[:3] = b"abc"
    addr2 = seal_mmap(m2).address
    del m2
    gc.collect()  # dealloc: the same ignored munmap
    out["after_gc"] = (vma_at(addr2), ctypes.string_at(addr2, 3))
    return out


def test_sealed_anonymous_mmap_close_gc_resize(in_child: Callable[..., Any]) -> None:
    out = in_child(_anon_close_gc)
    assert out["sealed"] == (2 * PAGE, False, True)
    assert out["resize"] == (errno.EPERM, 2 * PAGE, b"hello")
    assert out["closed"] is True and "closed" in out["use_after_close"]
    vma, content = out["after_close"]
    assert vma[3] is True and content == b"hello"  # still mapped and sealed
    vma2, content2 = out["after_gc"]
    assert vma2[3] is True and content2 == b"abc"


EXIT_SCRIPT = r"""
import gc, mmap, sys, tempfile
import sealkit
KEEP = mmap.mmap(-1, 8192)                       # alive at exit, module global
KEEP[:4] = b"keep"
sealkit.seal_mmap(KEEP)
class Cycle:                                      # freed by the cyclic GC at exit
    pass
c = Cycle(); c.me = c; c.m = mmap.mmap(-1, 4096); sealkit.seal_mmap(c.m); del c
f = tempfile.TemporaryFile(); f.write(b"x" * 8192); f.flush()
FILE_MAP = mmap.mmap(f.fileno(), 8192)            # writable file mmap: pinned
print(sealkit.seal_mmap(FILE_MAP).pinned)
RO = mmap.mmap(f.fileno(), 4096, access=mmap.ACCESS_READ)
print(sealkit.seal_mmap(RO).pinned)
f.close()                                          # the mmaps hold their own fds
with mmap.mmap(-1, 4096) as scoped:               # the with-block closes a sealed mmap
    sealkit.seal_mmap(scoped)
print("end")
"""


def test_interpreter_exit_with_sealed_mmaps_is_silent(python: Callable[..., Any]) -> None:
    for dev_mode in ("", "1"):  # plain, then -X dev (ResourceWarnings, debug hooks)
        proc = python(EXIT_SCRIPT, env={"PYTHONWARNINGS": "error", "PYTHONDEVMODE": dev_mode})
        assert proc.returncode == 0, proc.stderr
        assert proc.stdout.split() == ["True", "False", "end"]
        assert proc.stderr == ""


def _file_backed(access: int) -> dict[str, object]:
    out: dict[str, object] = {}
    with tempfile.TemporaryFile() as f:
        f.write(b"F" * (2 * PAGE))
        f.flush()
        m = mmap.mmap(f.fileno(), 2 * PAGE, access=access)
        sealed = seal_mmap(m)
        out["pinned"] = sealed.pinned
        out["sealed"] = is_sealed(m)
        for name, op in {"resize": lambda: m.resize(PAGE), "close": m.close}.items():
            try:
                op()
                out[name] = "ok"
            except BufferError:
                out[name] = "BufferError"
            except (PermissionError, TypeError) as exc:
                out[name] = type(exc).__name__
        out["file_size"] = os.fstat(f.fileno()).st_size
        out["readable"] = ctypes.string_at(sealed.address + PAGE, 1)
    return out


def test_writable_file_mmap_is_pinned_so_resize_cannot_truncate(
    in_child: Callable[..., Any],
) -> None:
    out = in_child(_file_backed, mmap.ACCESS_WRITE)
    assert out["pinned"] is True and out["sealed"] is True
    assert out["resize"] == "BufferError" and out["close"] == "BufferError"
    assert out["file_size"] == 2 * PAGE  # not truncated
    assert out["readable"] == b"F"  # no SIGBUS: the page is still backed


def test_readonly_file_mmap_is_not_pinned(in_child: Callable[..., Any]) -> None:
    out = in_child(_file_backed, mmap.ACCESS_READ)
    assert out["pinned"] is False and out["sealed"] is True
    assert out["resize"] == "TypeError"  # CPython refuses to resize read-only maps
    assert out["close"] == "ok" and out["file_size"] == 2 * PAGE and out["readable"] == b"F"


def _merged_private() -> dict[str, object]:
    first = mmap.mmap(-1, PAGE, flags=mmap.MAP_PRIVATE)
    second = mmap.mmap(-1, PAGE, flags=mmap.MAP_PRIVATE)
    a1 = seal_mmap.__globals__["_buffer_span"](first)[0]
    a2 = seal_mmap.__globals__["_buffer_span"](second)[0]
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


def _split_file_mapping() -> dict[str, object]:
    with tempfile.TemporaryFile() as f:
        f.write(b"F" * (2 * PAGE))
        f.flush()
        m = mmap.mmap(f.fileno(), 2 * PAGE)
        addr = seal_mmap.__globals__["_buffer_span"](m)[0]
        sc.mprotect(addr + PAGE, PAGE, int(Prot.READ))  # no longer one mapping
        before = [(v.start, v.end) for v in sealed_ranges()]
        try:
            seal_mmap(m)
            return {"refused": None}
        except UnsafeTargetError as exc:
            after = [(v.start, v.end) for v in sealed_ranges()]
            return {"refused": str(exc), "unchanged": before == after}


def test_mmap_that_is_not_one_mapping_is_refused(in_child: Callable[..., Any]) -> None:
    out = in_child(_split_file_mapping)
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

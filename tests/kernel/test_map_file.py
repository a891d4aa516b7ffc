"""map_file: a read-only file mapping that sealkit opens, maps and seals itself.

Every test that maps runs in a forked child (the seals vanish with it).
"""

from __future__ import annotations

import errno
import faulthandler
import mmap
import os
import signal
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

import sealkit
from sealkit import (
    ArgumentError,
    ArgumentTypeError,
    KernelError,
    SealedError,
    SealedFile,
    is_sealed,
    map_file,
    seal,
    sealed_ranges,
)
from sealkit._os import syscalls as sc
from sealkit._os.procfs import read_maps, read_smaps
from sealkit.errors import kernel_error
from sealkit.flags import Madv, MapFlag, MremapFlag, Prot
from tests.conftest import ChildDied

pytestmark = pytest.mark.kernel

PAGE = mmap.PAGESIZE
ANON = int(MapFlag.PRIVATE | MapFlag.ANONYMOUS)


def pattern(n: int) -> bytes:
    """``n`` bytes that differ page to page and byte to byte."""
    return bytes((i * 7 + i // PAGE) % 251 for i in range(n))


def fd_targets() -> list[str]:
    """What this process's file descriptors point to (listdir's own fd is gone by then)."""
    targets = []
    for n in os.listdir("/proc/self/fd"):
        try:
            targets.append(os.readlink(f"/proc/self/fd/{n}"))
        except FileNotFoundError:
            pass
    return targets


def mappings_of(path: str) -> list[tuple[int, int]]:
    return [(v.start, v.end) for v in read_maps() if v.path.startswith(path)]


# --- content, view, properties --------------------------------------------------

# (file size, offset, length)
RANGES = [
    (1, 0, None),
    (PAGE - 1, 0, None),
    (PAGE, 0, None),
    (PAGE + 1, 0, None),
    (3 * PAGE + 5, PAGE, None),  # from the second page to the end
    (3 * PAGE + 5, PAGE, 10),  # a few bytes inside
    (3 * PAGE + 5, 2 * PAGE, PAGE + 5),  # ends exactly at end of file
    (3 * PAGE, 2 * PAGE, PAGE),  # the last whole page
    (3 * PAGE, 0, 1),  # one byte of a larger file
]


def _map_and_inspect(path: str, offset: int, length: int | None) -> dict[str, object]:
    fds_before = fd_targets()
    sf = map_file(path, offset=offset, length=length)
    view = sf.view()
    [vma] = [v for v in read_smaps() if v.start <= sf.address < v.end]
    try:
        view[0] = 1
        writable = True
    except TypeError:
        writable = False
    return {
        "props": (sf.path, sf.offset, sf.length, sf.size, sf.address % PAGE, sf.sealed),
        "read": sf.read(),
        "read_parts": (sf.read(1), sf.read(-1, sf.length - 1), sf.read(0), sf.read(0, sf.length)),
        "view": (bytes(view), len(view), view.readonly, view.obj is None, writable),
        "vma": (vma.start, vma.end, vma.perms, vma.offset, vma.inode, vma.sealed),
        "inode": os.stat(path).st_ino,
        "is_sealed": (is_sealed(sf), is_sealed(view), is_sealed(sf.address, sf.size)),
        "fd_leaked": sorted(fd_targets()) != sorted(fds_before),
        "repr": repr(sf),
        "seal_again": seal(sf),  # already sealed: a no-op
    }


@pytest.mark.parametrize(("file_size", "offset", "length"), RANGES)
def test_map_file_content_view_and_seal(
    in_child: Callable[..., Any],
    make_file: Callable[[bytes], str],
    file_size: int,
    offset: int,
    length: int | None,
) -> None:
    data = pattern(file_size)
    path = make_file(data)
    expected = data[offset:] if length is None else data[offset : offset + length]
    out = in_child(_map_and_inspect, path, offset, length)
    mapped = (len(expected) + PAGE - 1) // PAGE * PAGE
    assert out["props"] == (path, offset, len(expected), mapped, 0, True)
    assert out["read"] == expected
    assert out["read_parts"] == (expected[:1], expected[-1:], b"", b"")
    assert out["view"] == (expected, len(expected), True, True, False)
    start, end, perms, vma_offset, inode, sealed = out["vma"]
    assert (end - start, perms, vma_offset, inode, sealed) == (
        mapped,
        "r--s",
        offset,
        out["inode"],
        True,
    )
    assert out["is_sealed"] == (True, True, True)
    assert out["fd_leaked"] is False  # the descriptor was closed after mapping
    assert "lives until process exit" in out["repr"] and repr(path) in out["repr"]
    assert out["seal_again"] is None


def _relative_and_pathlike(path: str) -> tuple[str, str, bytes]:
    os.chdir(os.path.dirname(path))
    rel = map_file(os.path.basename(path))
    as_path = map_file(Path(path))
    as_bytes = map_file(os.fsencode(path))
    return rel.path, as_path.path, as_bytes.read()


def test_map_file_accepts_str_bytes_pathlike_and_records_absolute_path(
    in_child: Callable[..., Any], make_file: Callable[[bytes], str]
) -> None:
    path = make_file(b"abc")
    assert in_child(_relative_and_pathlike, path) == (path, path, b"abc")


READS = {  # read(size, offset) on a 10-byte file -> outcome
    (10,): "ok",
    (0, 10): "ok",  # an empty read at the end
    (11,): "ArgumentError",  # more than the file
    (1, 10): "ArgumentError",  # past the end
    (0, 11): "ArgumentError",  # offset past the end
    (-1, -1): "ArgumentError",
    ("1",): "ArgumentTypeError",
    (1, None): "ArgumentTypeError",
    (True,): "ArgumentTypeError",
}


def _read_bounds(path: str) -> dict[tuple[object, ...], str]:
    sf = map_file(path)
    out: dict[tuple[object, ...], str] = {}
    for args in READS:
        try:
            sf.read(*args)  # type: ignore[arg-type]
            out[args] = "ok"
        except (ArgumentError, ArgumentTypeError) as exc:
            out[args] = type(exc).__name__
    return out


def test_read_out_of_bounds_is_a_typed_error(
    in_child: Callable[..., Any], make_file: Callable[[bytes], str]
) -> None:
    assert in_child(_read_bounds, make_file(b"0123456789")) == READS


# --- the seal holds ----------------------------------------------------------------


def _sealed_ops(path: str) -> dict[str, object]:
    sf = map_file(path)
    addr, size = sf.address, sf.size
    attempts: dict[str, Callable[[], object]] = {
        "munmap": lambda: sc.munmap(addr, size),
        "munmap first page": lambda: sc.munmap(addr, PAGE),
        "mprotect r": lambda: sc.mprotect(addr, size, int(Prot.READ)),
        "mprotect none": lambda: sc.mprotect(addr, size, int(Prot.NONE)),
        "mremap shrink": lambda: sc.mremap(addr, size, PAGE),
        "mremap grow": lambda: sc.mremap(addr, size, size + PAGE, int(MremapFlag.MAYMOVE)),
        "mmap MAP_FIXED": lambda: sc.mmap(
            addr, PAGE, int(Prot.READ | Prot.WRITE), ANON | int(MapFlag.FIXED)
        ),
        # not sealing: an O_RDONLY shared mapping may not punch holes in its file
        "madvise REMOVE": lambda: sc.madvise(addr, size, int(Madv.REMOVE)),
    }
    results: dict[str, object] = {}
    for name, attempt in attempts.items():
        try:
            attempt()
            results[name] = "ok"
        except KernelError as exc:
            results[name] = (type(exc).__name__, exc.errno)
    return {"results": results, "content": sf.read(), "sealed": is_sealed(sf)}


def test_sealed_file_mapping_resists_unmap_protect_remap_fixed(
    in_child: Callable[..., Any], make_file: Callable[[bytes], str]
) -> None:
    data = pattern(2 * PAGE + 100)
    out = in_child(_sealed_ops, make_file(data))
    sealed = ("SealedError", errno.EPERM)
    assert out["results"] == {
        "munmap": sealed,
        "munmap first page": sealed,
        "mprotect r": sealed,
        "mprotect none": sealed,
        "mremap shrink": sealed,
        "mremap grow": sealed,
        "mmap MAP_FIXED": sealed,
        "madvise REMOVE": ("KernelError", errno.EACCES),
    }
    assert out["content"] == data and out["sealed"] is True
    assert issubclass(SealedError, PermissionError)


# --- the documented caveat: the file itself is not sealed --------------------------


def _truncated_by_someone_else(path: str) -> None:
    faulthandler.disable()  # the SIGBUS below is expected: no stack dump
    sf = map_file(path)
    with open(path, "r+b") as other:  # any writer of the file, here or elsewhere
        other.write(b"X")
        other.flush()
        assert sf.read(1) == b"X"  # MAP_SHARED: the file's bytes show through
        other.truncate(0)
    sf.read(1, PAGE)  # a page past the new end of file: SIGBUS, sealed or not


def test_truncating_the_file_elsewhere_still_raises_sigbus(
    in_child: Callable[..., Any], make_file: Callable[[bytes], str]
) -> None:
    path = make_file(pattern(2 * PAGE))
    with pytest.raises(ChildDied, match=f"signal {int(signal.SIGBUS)}"):
        in_child(_truncated_by_someone_else, path)


# --- refusals ------------------------------------------------------------------


def _refusal(path: object, kwargs: dict[str, object]) -> dict[str, object]:
    fds_before = sorted(fd_targets())
    sealed_before = [(v.start, v.end) for v in sealed_ranges()]
    try:
        map_file(path, **kwargs)  # type: ignore[arg-type]
        outcome = ("ok", "")
    except Exception as exc:
        outcome = (type(exc).__name__, str(exc))
    return {
        "outcome": outcome,
        "fds_unchanged": sorted(fd_targets()) == fds_before,
        "mapped": mappings_of(os.path.abspath(path)) if isinstance(path, str) else [],
        "sealed_unchanged": [(v.start, v.end) for v in sealed_ranges()] == sealed_before,
    }


def test_bad_paths_and_ranges_are_refused_with_nothing_mapped(
    in_child: Callable[..., Any], make_file: Callable[[bytes], str], tmp_path: Path
) -> None:
    small = make_file(pattern(2 * PAGE + 10))
    empty = make_file(b"")
    fifo = str(tmp_path / "fifo")
    os.mkfifo(fifo)
    cases: dict[str, tuple[object, dict[str, object], str, str]] = {
        "unaligned offset": (small, {"offset": 1}, "ArgumentError", "multiple of"),
        "unaligned offset 2": (small, {"offset": PAGE + 1}, "ArgumentError", "multiple of"),
        "negative offset": (small, {"offset": -PAGE}, "ArgumentError", "multiple of"),
        "offset at end": (small, {"offset": 3 * PAGE}, "ArgumentError", "past its end"),
        "offset past end": (small, {"offset": 4 * PAGE}, "ArgumentError", "past its end"),
        "length past end": (small, {"length": 2 * PAGE + 11}, "ArgumentError", "SIGBUS"),
        "length past end 2": (small, {"offset": PAGE, "length": 2 * PAGE}, "ArgumentError", "end"),
        "length 0": (small, {"length": 0}, "ArgumentError", "length"),
        "negative length": (small, {"length": -1}, "ArgumentError", "length"),
        "float length": (small, {"length": 1.0}, "ArgumentTypeError", "length"),
        "bool offset": (small, {"offset": False}, "ArgumentTypeError", "offset"),
        "empty file": (empty, {}, "ArgumentError", "nothing to map"),
        "directory": (str(tmp_path), {}, "ArgumentError", "directory"),
        "fifo (must not block)": (fifo, {}, "ArgumentError", "not a regular file"),
        "char device": ("/dev/null", {}, "ArgumentError", "not a regular file"),
        "procfs file (size 0)": ("/proc/self/status", {}, "ArgumentError", "nothing to map"),
        "missing": (str(tmp_path / "missing"), {}, "FileNotFoundError", "missing"),
        "NUL in path": ("a\x00b", {}, "ArgumentError", "bad path"),
        "int path (not an fd)": (0, {}, "ArgumentTypeError", "path"),
        "None path": (None, {}, "ArgumentTypeError", "path"),
    }
    for name, (path, kwargs, error, words) in cases.items():
        out = in_child(_refusal, path, kwargs, timeout=20)
        kind, message = out["outcome"]
        assert (kind, words in message) == (error, True), (name, message)
        assert out["fds_unchanged"] and out["sealed_unchanged"], name
        assert out["mapped"] == [], name


def _seal_fails(path: str) -> dict[str, object]:
    def refuse(addr: int, length: int, flags: int = 0) -> None:
        raise kernel_error(errno.ENOSYS, "mseal", addr, length)

    sc.mseal = refuse  # type: ignore[assignment]  # this child has "no mseal"
    try:
        map_file(path)
        outcome = "mapped"
    except KernelError as exc:
        outcome = type(exc).__name__
    return {"outcome": outcome, "mappings": mappings_of(path), "fds": fd_targets()}


def test_without_mseal_nothing_stays_mapped(
    in_child: Callable[..., Any], make_file: Callable[[bytes], str]
) -> None:
    path = make_file(b"data")
    out = in_child(_seal_fails, path)
    assert out["outcome"] == "NotSupportedError"
    assert out["mappings"] == [] and path not in out["fds"]


def test_public_names() -> None:
    assert sealkit.map_file is map_file and sealkit.SealedFile is SealedFile
    assert {"map_file", "SealedFile"} <= set(sealkit.__all__)

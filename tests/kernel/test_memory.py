"""The safe API on the real kernel: every path and every refusal.

Anything that seals runs in a forked child (``in_child``)."""

from __future__ import annotations

import array
import ctypes
import errno
import gc
import platform
import threading
from collections.abc import Callable
from typing import Any

import pytest

import sealkit
from sealkit import (
    CodePages,
    Pages,
    PageState,
    StateError,
    UnmappedError,
    UnsafeTargetError,
    freeze,
    is_sealed,
    seal,
    sealed_ranges,
    support,
)
from sealkit._os import syscalls as sc
from sealkit._os.procfs import read_smaps
from sealkit._os.support import _explain
from sealkit.errors import ArgumentError, ArgumentTypeError, SealedError
from sealkit.sealing._buffers import buffer_span

pytestmark = pytest.mark.kernel

PAGE = 4096


def vma_at(addr: int) -> tuple[int, int, str, bool | None] | None:
    for v in read_smaps():
        if v.start <= addr < v.end:
            return v.start, v.end, v.perms, v.sealed
    return None


# --- Pages: open state (no sealing: runs in the test process) ---------------------


def test_pages_allocate_round_up_and_zero_fill() -> None:
    with Pages(100) as p:
        assert len(p) == p.size == PAGE and p.address % PAGE == 0
        assert p.state is PageState.OPEN and not p.sealed and not p.closed
        assert p.read() == bytes(PAGE)
        assert vma_at(p.address) is not None
        assert vma_at(p.address)[2] == "rw-p"  # type: ignore[index]
    assert p.closed and p.state is PageState.CLOSED
    assert vma_at(p.address) is None or vma_at(p.address)[0] != p.address  # type: ignore[index]


def test_write_read_offsets_and_bounds() -> None:
    with Pages(2 * PAGE) as p:
        assert p.write(b"hello", offset=PAGE - 2) == 5
        assert p.read(5, offset=PAGE - 2) == b"hello"
        assert p.read(offset=2 * PAGE - 3) == bytes(3)
        p.write(array.array("i", [1, 2]))  # any contiguous buffer, as bytes
        assert p.read(8) == array.array("i", [1, 2]).tobytes()
        with pytest.raises(ArgumentError):
            p.write(b"xx", offset=2 * PAGE - 1)
        with pytest.raises(ArgumentError):
            p.read(2, offset=2 * PAGE - 1)
        with pytest.raises(ArgumentError):
            p.write(b"x", offset=-1)
        with pytest.raises(ArgumentTypeError):
            p.write("text")  # type: ignore[arg-type]
        with pytest.raises(ArgumentTypeError):
            p.read(offset=1.0)  # type: ignore[arg-type]


def test_views_writable_then_readonly_and_tracked() -> None:
    p = Pages(PAGE)
    view = p.view()
    assert not view.readonly and view.obj is None
    view[:3] = b"abc"
    assert p.read(3) == b"abc" and p.views_alive == 1
    part = view[1:2].cast("B")
    assert p.views_alive == 2
    with pytest.raises(StateError, match="writable view"):
        p.protect("r")
    with pytest.raises(StateError, match="memoryview"):
        p.close()
    assert p.state is PageState.OPEN and p.read(3) == b"abc"  # nothing happened
    part.release()
    del view
    assert p.views_alive == 0
    p.protect("r")
    ro = p.view()
    assert ro.readonly and ro.obj is None and bytes(ro[:3]) == b"abc"
    with pytest.raises(TypeError):
        ro[0] = 1  # read-only memoryview: no way to write, hence no crash
    with pytest.raises(StateError, match="reading them would crash"):
        p.protect("none")
    with pytest.raises(StateError, match="not writable"):
        p.write(b"x")
    ro.release()
    p.protect("none")
    with pytest.raises(StateError, match="'none'"):
        p.read()
    with pytest.raises(StateError, match="'none'"):
        p.view()
    p.close()
    for op in (p.read, p.view, lambda: p.write(b"x"), lambda: p.protect("rw"), p.seal):
        with pytest.raises(StateError, match="closed"):
            op()
    p.close()  # idempotent


def test_views_held_by_other_objects_block_close() -> None:
    p = Pages(PAGE)
    holder = (ctypes.c_char * 4).from_buffer(p.view())  # exports from the view
    with pytest.raises(StateError):
        p.close()
    del holder
    gc.collect()
    p.close()
    assert p.closed


def test_gc_with_live_view_leaks_instead_of_crashing() -> None:
    p = Pages(PAGE)
    p.write(b"still here")
    view = p.view()
    addr = p.address
    del p
    gc.collect()
    # The object is gone but the view keeps working: the mapping was leaked.
    assert bytes(view[:10]) == b"still here"
    assert vma_at(addr) is not None
    view.release()


def test_gc_of_open_pages_unmaps() -> None:
    p = Pages(PAGE)
    addr = p.address
    del p
    gc.collect()
    with pytest.raises(UnmappedError):  # mincore: ENOMEM for an unmapped page
        sc.mincore(addr, PAGE)


@pytest.mark.parametrize(
    ("size", "prot", "exc"),
    [
        (0, "rw", ArgumentError),
        (-1, "rw", ArgumentError),
        (1 << 64, "rw", ArgumentError),
        (4096.0, "rw", ArgumentTypeError),
        ("4096", "rw", ArgumentTypeError),
        (True, "rw", ArgumentTypeError),
        (None, "rw", ArgumentTypeError),
        (PAGE, "rwx", ArgumentError),
        (PAGE, "w", ArgumentError),
        (PAGE, 3, ArgumentTypeError),
    ],
)
def test_pages_bad_arguments(size: object, prot: object, exc: type[Exception]) -> None:
    with pytest.raises(exc):
        Pages(size, prot)  # type: ignore[arg-type]


def test_pages_too_big_for_memory_is_the_kernels_enomem() -> None:
    with pytest.raises(UnmappedError) as info:
        Pages(1 << 62)
    assert info.value.call == "mmap" and info.value.errno == errno.ENOMEM


def test_concurrent_close_and_read_never_crash() -> None:
    for _ in range(50):
        p = Pages(PAGE)
        results: list[object] = []

        def reader(p: Pages = p, results: list[object] = results) -> None:
            for _ in range(200):
                try:
                    results.append(len(p.read()))
                except StateError:
                    results.append("closed")

        thread = threading.Thread(target=reader)
        thread.start()
        p.close()
        thread.join()
        assert set(results) <= {PAGE, "closed"}


# --- Pages: sealing (children) -------------------------------------------------------


def _seal_lifecycle() -> dict[str, object]:
    out: dict[str, object] = {}
    with Pages(2 * PAGE) as p:
        p.write(b"config")
        p.protect("r")
        view = p.view()
        p.seal()
        out["state"] = p.state
        out["repr"] = repr(p)
        out["sealed"] = is_sealed(p)
        p.seal()  # idempotent
        for name, op in {
            "protect": lambda: p.protect("rw"),
            "write": lambda: p.write(b"x"),
        }.items():
            try:
                op()
            except StateError as exc:
                out[name] = str(exc)
    # The with-block called close(): a documented no-op on sealed pages.
    out["after_close_state"] = p.state
    out["after_close_read"] = p.read(6)
    out["view"] = bytes(view[:6])
    out["vma"] = vma_at(p.address)
    return out


def test_sealed_pages_live_until_exit_and_say_so(in_child: Callable[..., Any]) -> None:
    out = in_child(_seal_lifecycle)
    assert out["state"] is PageState.SEALED and out["sealed"] is True
    assert "lives until process exit" in out["repr"]
    assert "sealed" in out["protect"] and "EPERM" in out["protect"]
    assert "not writable" in out["write"] and "sealed" in out["write"]
    assert out["after_close_state"] is PageState.SEALED
    assert out["after_close_read"] == b"config" and out["view"] == b"config"
    start, end, perms, sealed = out["vma"]
    assert perms == "r--p" and sealed is True and end - start >= 2 * PAGE


def _freeze(data: bytes) -> dict[str, object]:
    view = freeze(data)
    out: dict[str, object] = {
        "bytes": bytes(view),
        "readonly": view.readonly,
        "obj": view.obj,
        "sealed": is_sealed(view) if len(view) else None,
    }
    addr = ctypes.addressof(ctypes.c_char.from_buffer_copy(b"x"))  # unrelated heap, for contrast
    out["heap_sealed"] = is_sealed(addr, 1)
    try:
        view_addr = buffer_span(view)[0]
        sc.munmap(view_addr // PAGE * PAGE, PAGE)
    except SealedError:
        out["munmap"] = "SealedError"
    vma = vma_at(buffer_span(view)[0]) if len(view) else None
    out["perms"] = vma[2] if vma else None
    return out


@pytest.mark.parametrize("data", [b"secret key", bytes(range(256)) * 40, b""])
def test_freeze(in_child: Callable[..., Any], data: bytes) -> None:
    out = in_child(_freeze, data)
    assert out["bytes"] == data and out["readonly"] is True and out["obj"] is None
    assert out["heap_sealed"] is False
    assert out["munmap"] == "SealedError"
    if data:
        assert out["sealed"] is True and out["perms"] == "r--p"


def test_freeze_refuses_non_bytes() -> None:
    for bad in ("text", 42, None, [1, 2]):
        with pytest.raises(ArgumentTypeError):
            freeze(bad)  # type: ignore[arg-type]


# --- W^X code pages ---------------------------------------------------------------


def _run_code() -> dict[str, object]:
    code = CodePages(PAGE)
    out: dict[str, object] = {"before": code.protection}
    try:
        code.function(ctypes.c_int)
    except StateError as exc:
        out["unsealed_function"] = str(exc)
    code.write(bytes.fromhex("b82a000000c3"))  # mov eax, 42; ret
    code.seal()
    out["after"] = code.protection
    out["vma"] = vma_at(code.address)
    out["result"] = code.function(ctypes.c_int)()
    try:
        code.write(b"\xc3")
    except StateError as exc:
        out["write_after"] = str(exc)
    try:
        sc.mprotect(code.address, PAGE, 7)
    except SealedError:
        out["rwx"] = "SealedError"
    # Two functions in one page: add(a, b) at offset 16.
    adder = CodePages.from_code(b"\x90" * 16 + bytes.fromhex("8d0437c3"))  # lea eax,[rdi+rsi]; ret
    out["add"] = adder.function(ctypes.c_int, ctypes.c_int, ctypes.c_int, offset=16)(40, 2)
    return out


@pytest.mark.skipif(platform.machine() != "x86_64", reason="the machine code is x86_64")
def test_code_pages_run_sealed_machine_code(in_child: Callable[..., Any]) -> None:
    out = in_child(_run_code)
    assert out["before"] == "rw" and out["after"] == "rx"
    assert "seal() the code pages first" in out["unsealed_function"]
    assert out["vma"][2] == "r-xp" and out["vma"][3] is True
    assert out["result"] == 42 and out["add"] == 42
    assert "W^X" in out["write_after"]
    assert out["rwx"] == "SealedError"


def test_code_pages_never_writable_and_executable() -> None:
    """Every protection CodePages passes to the kernel: rw- then r-x, never rwx."""
    with pytest.raises(ArgumentError, match="W\\^X"):
        Pages(PAGE, "rwx")
    code = CodePages(PAGE)
    assert code.protection == "rw"
    assert vma_at(code.address)[2] == "rw-p"  # type: ignore[index]
    with pytest.raises(StateError):
        code.function("int")  # the state is checked before the signature
    code.close()


# --- refusals: nothing sealed -------------------------------------------------------


def _refusals() -> dict[str, object]:
    before = [(v.start, v.end) for v in sealed_ranges()]
    refused: dict[str, str] = {}
    buffer = bytearray(3 * PAGE)
    targets: dict[str, object] = {
        "bytes": b"x" * PAGE,
        "bytearray": buffer,
        "array": array.array("B", bytes(PAGE)),
        "memoryview": memoryview(buffer),
        "int": buffer_span(buffer)[0] // PAGE * PAGE,
        "str": "text",
        "None": None,
        "ctypes": ctypes.create_string_buffer(PAGE),
        "list": [1, 2, 3],
    }
    try:
        import numpy

        targets["numpy"] = numpy.zeros(PAGE, dtype=numpy.uint8)
    except ImportError:
        pass
    for name, target in targets.items():
        try:
            seal(target)  # type: ignore[arg-type]
        except UnsafeTargetError as exc:
            refused[name] = str(exc)
        try:
            sealkit.seal_mmap(target)  # type: ignore[arg-type]
        except UnsafeTargetError:
            refused[name + " (seal_mmap)"] = "refused"
    after = [(v.start, v.end) for v in sealed_ranges()]
    return {"refused": refused, "unchanged": before == after, "targets": sorted(targets)}


def test_unowned_memory_is_refused_and_nothing_sealed(in_child: Callable[..., Any]) -> None:
    out = in_child(_refusals)
    assert out["unchanged"] is True
    assert sorted(k for k in out["refused"] if "(" not in k) == out["targets"]
    assert len([k for k in out["refused"] if "(seal_mmap)" in k]) == len(out["targets"])
    assert "heap" in out["refused"]["bytearray"] and "nothing was sealed" in out["refused"]["bytes"]
    assert "integer address" in out["refused"]["int"]


def test_numpy_arrays_are_refused(in_child: Callable[..., Any]) -> None:
    numpy = pytest.importorskip("numpy", reason="numpy is not installed (not a dependency)")
    assert numpy is not None
    out = in_child(_refusals)
    assert "numpy" in out["refused"] and out["unchanged"] is True


# --- questions ---------------------------------------------------------------------


def _is_sealed_per_page() -> dict[str, object]:
    p = Pages(4 * PAGE)
    sc.mseal(p.address + PAGE, 2 * PAGE)  # seal the middle two pages only
    a = p.address
    out: dict[str, object] = {
        "middle": is_sealed(a + PAGE, 2 * PAGE),
        "unaligned_inside": is_sealed(a + PAGE + 10, PAGE),  # touches pages 1 and 2
        "first": is_sealed(a, PAGE),
        "straddle": is_sealed(a, 2 * PAGE),
        "last_byte": is_sealed(a + 3 * PAGE - 1, 1),
        "ranges": [
            (v.start - a, v.end - a) for v in sealed_ranges() if a <= v.start < a + 4 * PAGE
        ],
    }
    return out


def test_is_sealed_answers_per_page(in_child: Callable[..., Any]) -> None:
    out = in_child(_is_sealed_per_page)
    assert out == {
        "middle": True,
        "unaligned_inside": True,
        "first": False,
        "straddle": False,
        "last_byte": True,
        "ranges": [(PAGE, 3 * PAGE)],
    }


def test_is_sealed_on_unmapped_raises_enomem() -> None:
    with Pages(3 * PAGE) as p:
        sc.munmap(p.address + PAGE, PAGE)  # a hole in the middle (our own pages)
        with pytest.raises(UnmappedError) as info:
            is_sealed(p.address, 3 * PAGE)
        assert info.value.errno == errno.ENOMEM and info.value.call == "is_sealed"
        assert is_sealed(p.address, PAGE) is False
        sc.munmap(p.address, 3 * PAGE)
        # close() would munmap again: harmless for a range already unmapped.


@pytest.mark.parametrize(
    ("target", "length", "exc"),
    [
        (0x1000, None, ArgumentTypeError),
        (0x1000, 0, ArgumentError),
        (0x1000, -1, ArgumentError),
        (-1, 1, ArgumentError),
        (1 << 64, 1, ArgumentError),
        ((1 << 64) - 1, 2, ArgumentError),
        ("0x1000", 1, ArgumentTypeError),
        (1.0, 1, ArgumentTypeError),
        (None, None, ArgumentTypeError),
        (True, 1, ArgumentTypeError),
        (b"abc", 3, ArgumentError),  # length is only for integer addresses
        (object(), None, ArgumentTypeError),
    ],
)
def test_is_sealed_bad_arguments(target: object, length: object, exc: type[Exception]) -> None:
    with pytest.raises(exc):
        is_sealed(target, length)  # type: ignore[arg-type]


def test_sealed_ranges_of_this_process_and_bad_pid() -> None:
    assert all(v.sealed for v in sealed_ranges())
    with pytest.raises(ArgumentError):
        sealed_ranges(-5)


def test_support_probe() -> None:
    info = support(refresh=True)
    assert info.available is True and info.errno is None
    assert "available" in info.reason and info.kernel == platform.release()
    # Verified for real: a forked child sealed a page and its smaps showed sl.
    assert info.smaps_reports_seals is True and "'sl'" in info.smaps_detail
    assert support() is support()  # cached
    # The probe sealed nothing here.
    with pytest.raises(ArgumentTypeError):
        support(refresh="yes")  # type: ignore[arg-type]


def test_support_explains_failures() -> None:
    explain = _explain
    assert "6.10" in explain(errno.ENOSYS, "5.15.0", "x86_64", 0, 0)
    assert "no system call table" in explain(errno.ENOSYS, "6.12", "sparc64", 0, 0)
    eperm = explain(errno.EPERM, "6.12", "x86_64", 2, 1)
    assert "seccomp" in eperm and "mode 2 with 1 filter" in eperm
    assert "no seccomp filter is visible" in explain(errno.EPERM, "6.12", "x86_64", 0, 0)


def test_support_under_a_seccomp_filter_that_denies_mseal(
    python: Callable[..., Any],
) -> None:
    """A real seccomp filter returning EPERM for syscall 462, as an old
    container profile does: support() must say EPERM and seccomp."""
    code = r"""
import ctypes, struct, sys
import sealkit
libc = ctypes.CDLL(None, use_errno=True)
# BPF: load nr; if nr == 462 return ERRNO(EPERM) else ALLOW (x86_64 arch check skipped: test box).
def stmt(code, k): return struct.pack("HBBI", code, 0, 0, k)
def jump(code, k, jt, jf): return struct.pack("HBBI", code, jt, jf, k)
prog = b"".join([
    stmt(0x20, 0),                 # ld [0] (nr)
    jump(0x15, 462, 0, 1),         # jeq 462
    stmt(0x06, 0x00050000 | 1),    # ret ERRNO(1)
    stmt(0x06, 0x7fff0000),        # ret ALLOW
])
buf = ctypes.create_string_buffer(prog)
class FProg(ctypes.Structure):
    _fields_ = [("len", ctypes.c_ushort), ("filter", ctypes.c_void_p)]
fprog = FProg(len(prog) // 8, ctypes.addressof(buf))
assert libc.prctl(38, 1, 0, 0, 0) == 0  # PR_SET_NO_NEW_PRIVS
assert libc.prctl(22, 2, ctypes.byref(fprog), 0, 0) == 0, ctypes.get_errno()  # SECCOMP_MODE_FILTER
info = sealkit.support()
print(info.available, info.errno, info.seccomp_mode, info.smaps_reports_seals)
print(info.reason)
try:
    sealkit.Pages(4096).seal()
except sealkit.SealingDeniedError as exc:
    print("denied", isinstance(exc, PermissionError))
"""
    proc = python(code)
    assert proc.returncode == 0, proc.stderr
    first, reason, denied = proc.stdout.splitlines()
    assert first == f"False {errno.EPERM} 2 None"
    assert reason.startswith("EPERM") and "seccomp mode 2" in reason
    assert denied == "denied True"


_FILTERED_SUPPORT = r"""
import ctypes, struct, sys
import sealkit
libc = ctypes.CDLL(None, use_errno=True)
def stmt(code, k): return struct.pack("HBBI", code, 0, 0, k)
def jump(code, k, jt, jf): return struct.pack("HBBI", code, jt, jf, k)
ALLOW, EPERM, ENOSYS = 0x7fff0000, 0x00050000 | 1, 0x00050000 | 38
if sys.argv[1] == "enosys":  # mseal -> ENOSYS, as many sandboxes answer unknown calls
    prog = [stmt(0x20, 0), jump(0x15, 462, 0, 1), stmt(0x06, ENOSYS), stmt(0x06, ALLOW)]
else:  # "arglen": mseal with length 0 allowed, any real range EPERM
    prog = [stmt(0x20, 0), jump(0x15, 462, 0, 3), stmt(0x20, 24), jump(0x15, 0, 1, 0),
            stmt(0x06, EPERM), stmt(0x06, ALLOW)]
prog = b"".join(prog)
buf = ctypes.create_string_buffer(prog)
class FProg(ctypes.Structure):
    _fields_ = [("len", ctypes.c_ushort), ("filter", ctypes.c_void_p)]
fprog = FProg(len(prog) // 8, ctypes.addressof(buf))
assert libc.prctl(38, 1, 0, 0, 0) == 0
assert libc.prctl(22, 2, ctypes.byref(fprog), 0, 0) == 0, ctypes.get_errno()
info = sealkit.support()
print(info.available, info.errno)
print(info.reason)
"""


@pytest.mark.parametrize(
    ("kind", "err", "words"),
    [
        ("enosys", errno.ENOSYS, ("although this 64-bit Linux", "seccomp mode 2 with 1 filter")),
        ("arglen", errno.EPERM, ("mseal(0, 0, 0) succeeds but sealing a page fails", "seccomp")),
    ],
)
def test_support_blames_the_filter_not_the_kernel(
    python: Callable[..., Any], kind: str, err: int, words: tuple[str, ...]
) -> None:
    """A filter answering ENOSYS must not read as "this kernel has no mseal";
    one that allows only mseal(0, 0, 0) must not read as "available"."""
    proc = python(_FILTERED_SUPPORT, kind)
    assert proc.returncode == 0, proc.stderr
    first, reason = proc.stdout.splitlines()
    assert first == f"False {err}"
    assert all(w in reason for w in words), reason

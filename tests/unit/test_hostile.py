"""Hostile arguments at every public function of the safe sealing API, _os.syscalls, _os.procfs
and environment: the only outcomes allowed are a result or a sealkit
exception (``SealkitError``), and the interpreter never crashes.

Functions that can seal or change mappings run each example in a forked
child, so a crash is detected (``ChildDied``), not suffered, and seals
vanish with the child. Integer addresses that are valid-looking point into
an arena this module reserves (PROT_NONE), and lengths keep such ranges
inside it: the raw layer is dangerous by design, and a *valid* munmap of the
interpreter's own code is not a bad argument. Everything else is fair game:
wrong types, None, bools, floats, strings, negative, beyond 64 bits,
unaligned, kernel-half addresses.
"""

from __future__ import annotations

import atexit
import ctypes
import mmap
import os
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import sealkit
from sealkit._os import procfs, support, syscalls
from sealkit.errors import SealkitError
from sealkit.flags import MapFlag
from sealkit.host import environment
from sealkit.sealing import code, entry, files, mmaps, pages, questions
from tests.conftest import MSEAL_MISSING, run_in_child

PAGE = mmap.PAGESIZE
U64 = (1 << 64) - 1
ARENA_PAGES = 128
# Reserved once in the test process; children inherit it. Addresses come from
# its first half and lengths stay below half of it, so every range stays inside.
ARENA = syscalls.mmap(
    0, ARENA_PAGES * PAGE, 0, int(MapFlag.PRIVATE | MapFlag.ANONYMOUS | MapFlag.NORESERVE)
)

junk = st.one_of(
    st.none(),
    st.booleans(),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=6),
    st.binary(max_size=6),
    st.lists(st.integers(-3, 3), max_size=3),
    st.tuples(st.integers(-3, 3)),
    st.just(object()),
    st.just(b"\x00" * 5000),
)
too_big = st.one_of(
    st.integers(min_value=1 << 64, max_value=1 << 80),
    st.integers(min_value=-(1 << 80), max_value=-(1 << 63) - 1),
)
address = st.one_of(
    junk,
    too_big,
    st.integers(0, ARENA_PAGES // 2 - 1).map(lambda p: ARENA + p * PAGE),  # inside the arena
    st.integers(0, ARENA_PAGES // 2 - 1).map(lambda p: ARENA + p * PAGE + 123),  # unaligned
    st.integers(0xFFFF800000000000, U64),  # kernel half
    st.integers(-PAGE, -1),  # top of the address space, two's complement
    st.sampled_from([0, 1, PAGE - 1]),
)
length = st.one_of(
    junk,
    too_big,
    st.integers(0, ARENA_PAGES // 2 * PAGE),  # keeps [arena + x, + length) inside the arena
    st.sampled_from([U64, U64 - PAGE + 1, -1, -PAGE]),  # wrap around: the kernel's EINVAL
)
anything_int = st.one_of(junk, too_big, st.integers(-(1 << 63), U64))
small_int = st.one_of(junk, too_big, st.integers(-5, 300))
pid = st.one_of(junk, too_big, st.sampled_from([0, -1, 1 << 22, 99_999_999, "self", "0", " 7"]))
ranges = st.one_of(
    junk,
    st.lists(st.tuples(address, length), max_size=3),
    st.lists(st.one_of(junk, st.tuples(address)), max_size=2),
)
buffer_data = st.one_of(junk, st.binary(max_size=64), st.binary(max_size=64).map(bytearray))


def outcome(fn: Callable[..., object], *args: object) -> tuple[str, str]:
    """Call and classify; never lets an untyped exception look like success."""
    try:
        fn(*args)
    except SealkitError as exc:
        return "typed", type(exc).__name__
    except OSError as exc:
        if fn in OS_ERRORS_ALLOWED and exc.filename is not None:
            return "os", type(exc).__name__  # the OS's own error about the path it was given
        return "UNTYPED", f"{type(exc).__name__}: {exc}"
    except BaseException as exc:  # classifying every exception is the point
        return "UNTYPED", f"{type(exc).__name__}: {exc}"
    return "ok", ""


def check(fn: Callable[..., object], *args: object, child: bool) -> None:
    result = run_in_child(outcome, fn, *args, timeout=30) if child else outcome(fn, *args)
    assert result[0] != "UNTYPED", f"{fn!r}{args!r} raised {result[1]}"


SETTINGS = settings(max_examples=20, deadline=None, suppress_health_check=[HealthCheck.too_slow])

# name -> (function, argument strategies, run in a child?)
RAW: dict[str, tuple[Callable[..., object], tuple[st.SearchStrategy[Any], ...]]] = {
    "mseal": (syscalls.mseal, (address, length, small_int)),
    "mmap": (syscalls.mmap, (address, length, small_int, anything_int, small_int, anything_int)),
    "munmap": (syscalls.munmap, (address, length)),
    "mprotect": (syscalls.mprotect, (address, length, anything_int)),
    "pkey_mprotect": (syscalls.pkey_mprotect, (address, length, anything_int, small_int)),
    "pkey_alloc": (syscalls.pkey_alloc, (anything_int, anything_int)),
    "pkey_free": (syscalls.pkey_free, (small_int,)),
    "mremap": (syscalls.mremap, (address, length, length, small_int, address)),
    "madvise": (syscalls.madvise, (address, length, small_int)),
    "brk": (syscalls.brk, (st.one_of(junk, too_big, st.sampled_from([0, 1, -1, U64])),)),
    "pidfd_open": (syscalls.pidfd_open, (pid, small_int)),
    "process_madvise": (syscalls.process_madvise, (small_int, ranges, small_int, small_int)),
    "process_vm_readv": (syscalls.process_vm_readv, (pid, ranges, length)),
    "process_vm_writev": (syscalls.process_vm_writev, (pid, ranges, buffer_data)),
    "mlock": (syscalls.mlock, (address, length)),
    "mlock2": (syscalls.mlock2, (address, length, small_int)),
    "munlock": (syscalls.munlock, (address, length)),
    "msync": (syscalls.msync, (address, length, small_int)),
    "mincore": (syscalls.mincore, (address, length)),
    "procmap_query": (
        syscalls.procmap_query,
        (small_int, address, anything_int, st.one_of(junk, st.builds(syscalls.ProcmapQuery))),
    ),
    "libc_has_symbol": (syscalls.libc_has_symbol, (st.one_of(junk, st.text(max_size=10)),)),
    "loaded_objects": (syscalls.loaded_objects, ()),
    "pin_loaded": (
        syscalls.pin_loaded,
        (st.one_of(junk, st.text(max_size=10), st.sampled_from(["libc.so.6", "a\0b"])), address),
    ),
    "set_parent_death_signal": (syscalls.set_parent_death_signal, (small_int,)),
    "set_process_name": (syscalls.set_process_name, (buffer_data,)),
    "raise_exit_status_at_exit": (syscalls.raise_exit_status_at_exit, ()),
    # Only requests that act on a tracee of the caller (it has none: ESRCH),
    # never TRACEME, ATTACH or SEIZE, which would reach other processes.
    "ptrace_call": (
        syscalls.ptrace_call,
        (
            st.one_of(junk, too_big, st.sampled_from([3, 12, 17, 0x4207, 0x420C, 0x7FFFFFFF, -1])),
            pid,
            anything_int,
            anything_int,
        ),
    ),
    "dynamic_has_textrel": (
        syscalls.dynamic_has_textrel,
        (st.one_of(junk, st.binary(max_size=100), st.binary(max_size=40).map(bytearray)),),
    ),
    # The kernel executor's entry points (fidelity branch).
    "errno_call": (
        syscalls.errno_call,
        (
            st.one_of(junk, st.sampled_from(["munmap", "mprotect", "madvise", "mseal", "nope"])),
            address,
            length,
            small_int,
        ),
    ),
    "mallopt": (syscalls.mallopt, (anything_int, anything_int)),
    "procmap_vmas": (syscalls.procmap_vmas, (small_int, address, anything_int)),
    "seal_verified": (
        syscalls.seal_verified,
        (
            small_int,
            st.one_of(
                junk,
                st.lists(
                    st.one_of(
                        junk,
                        st.tuples(
                            *[address, length, small_int, small_int, small_int],
                            anything_int,
                            anything_int,
                            st.one_of(st.none(), junk, st.binary(max_size=8)),
                        ),
                    ),
                    max_size=3,
                ),
            ),
        ),
    ),
}


def _pages_method(name: str) -> Callable[..., object]:
    def call(*args: object) -> object:
        pages = sealkit.Pages(2 * PAGE)
        pages.write(b"x" * 10)
        return getattr(pages, name)(*args)

    return call


def _code_function(*args: object) -> object:
    code = sealkit.CodePages.from_code(b"\xc3")
    return code.function(*args[:-1], offset=args[-1])


def _seal_mmap_of(size: int, flags: int) -> object:
    return sealkit.seal_mmap(mmap.mmap(-1, size, flags=flags))


def _seal_file_mmap_of(size: int, access: int) -> object:
    with tempfile.TemporaryFile() as f:
        f.write(b"x" * size)
        f.flush()
        return sealkit.seal_mmap(mmap.mmap(f.fileno(), size, access=access))


def _map_file(path: object, offset: object, length: object) -> object:
    return sealkit.map_file(path, offset=offset, length=length)  # type: ignore[arg-type]


def _sealed_file_read(*args: object) -> object:
    return sealkit.map_file(__file__).read(*args)  # type: ignore[arg-type]


# Functions whose path argument may give the OS's own OSError (with the filename)
OS_ERRORS_ALLOWED: set[Callable[..., object]] = {_map_file}
# A regular file, an empty one, a directory, a FIFO and devices, for map_file
PATHS_DIR = tempfile.mkdtemp(prefix="sealkit-hostile-")
atexit.register(shutil.rmtree, PATHS_DIR, ignore_errors=True)
Path(PATHS_DIR, "empty").touch()
os.mkfifo(os.path.join(PATHS_DIR, "fifo"))
hostile_paths = st.one_of(
    junk,
    st.text(max_size=12),
    st.sampled_from(
        [
            *(PATHS_DIR, f"{PATHS_DIR}/empty", f"{PATHS_DIR}/fifo", f"{PATHS_DIR}/none"),
            *("/dev/null", "/dev/zero", "/proc/self/status", "/", "", "a\x00b", "\udcff"),
        ]
    ),
)
good_paths = st.sampled_from([__file__, Path(__file__), os.fsencode(__file__)])
hostile_offsets = st.one_of(small_int, st.integers(-2, 4).map(lambda p: p * PAGE), too_big)
hostile_lengths = st.one_of(small_int, length, st.integers(PAGE - 2, 3 * PAGE))


def half_plausible(good: st.SearchStrategy[Any], bad: st.SearchStrategy[Any]) -> Any:
    """Plausible values half the time, so some calls get past argument checks
    to open, map and seal (one_of would drown them in junk's many branches)."""
    return st.booleans().flatmap(lambda plausible: good if plausible else bad)


file_paths = half_plausible(good_paths, hostile_paths)
file_offsets = half_plausible(st.sampled_from([0, PAGE, 2 * PAGE, 8 * PAGE]), hostile_offsets)
file_lengths = half_plausible(st.sampled_from([None, 1, 100, PAGE, 2 * PAGE]), hostile_lengths)

SAFE: dict[str, tuple[Callable[..., object], tuple[st.SearchStrategy[Any], ...]]] = {
    "Pages": (
        sealkit.Pages,
        (length, st.one_of(junk, st.sampled_from(["rw", "r", "rx", "none", "rwx", ""]))),
    ),
    "Pages.write": (_pages_method("write"), (buffer_data, small_int)),
    "Pages.read": (_pages_method("read"), (small_int, small_int)),
    "Pages.protect": (
        _pages_method("protect"),
        (st.one_of(junk, st.sampled_from(["r", "rw", "rx", "none", "x"])),),
    ),
    "freeze": (sealkit.freeze, (buffer_data,)),
    "seal": (sealkit.seal, (st.one_of(junk, address, buffer_data),)),
    "seal_mmap": (sealkit.seal_mmap, (st.one_of(junk, address, buffer_data),)),
    "seal_mmap(real)": (
        _seal_mmap_of,
        (st.integers(1, 3 * PAGE), st.sampled_from([mmap.MAP_SHARED, mmap.MAP_PRIVATE])),
    ),
    "seal_mmap(file)": (
        _seal_file_mmap_of,
        (
            st.integers(1, 3 * PAGE),
            st.sampled_from([mmap.ACCESS_READ, mmap.ACCESS_WRITE, mmap.ACCESS_COPY]),
        ),
    ),
    "map_file": (_map_file, (file_paths, file_offsets, file_lengths)),
    "SealedFile.read": (_sealed_file_read, (small_int, small_int)),
    "CodePages": (sealkit.CodePages, (length,)),
    "CodePages.from_code": (sealkit.CodePages.from_code, (buffer_data,)),
    "CodePages.function": (
        _code_function,
        (st.one_of(junk, st.just(ctypes.c_int)), st.one_of(junk, st.just(ctypes.c_int)), small_int),
    ),
    "is_sealed": (
        sealkit.is_sealed,
        (st.one_of(junk, address, buffer_data), st.one_of(length, st.none())),
    ),
    "sealed_ranges": (sealkit.sealed_ranges, (pid,)),
    "support": (sealkit.support, (st.one_of(junk, st.booleans()),)),
}

path = st.one_of(
    junk, st.text(max_size=12), st.sampled_from(["/proc", "/", "", "/nonexistent", "a\x00b"])
)
PURE: dict[str, tuple[Callable[..., object], tuple[st.SearchStrategy[Any], ...]]] = {
    "parse_maps": (
        procfs.parse_maps,
        (st.one_of(junk, st.text(max_size=80)), st.one_of(st.none(), junk)),
    ),
    "parse_smaps": (
        procfs.parse_smaps,
        (st.one_of(junk, st.text(max_size=80)), st.one_of(st.none(), junk)),
    ),
    "parse_status": (procfs.parse_status, (st.one_of(junk, st.text(max_size=80)),)),
    "parse_kernel_config": (procfs.parse_kernel_config, (st.one_of(junk, st.text(max_size=80)),)),
    "read_maps": (procfs.read_maps, (pid, path)),
    "read_smaps": (procfs.read_smaps, (pid, path)),
    "read_status": (procfs.read_status, (pid, path)),
    "read_kernel_config": (
        procfs.read_kernel_config,
        (st.one_of(junk, st.text(max_size=8)), path, path),
    ),
    "resolve_pid": (procfs.resolve_pid, (pid,)),
    "parse_mountinfo_line": (procfs.parse_mountinfo_line, (st.text(max_size=80),)),
    "proc_mount_options": (procfs.proc_mount_options, (path, path)),
    "pid_namespace_inode": (procfs.pid_namespace_inode, (path,)),
    "scan_smaps": (
        procfs.scan_smaps,
        (st.one_of(junk, st.binary(max_size=80), st.text(max_size=80)), st.one_of(st.none(), junk)),
    ),
    "task_status": (
        procfs.task_status,
        (
            st.one_of(
                junk,
                st.dictionaries(
                    st.sampled_from(["Name", "State", "Pid", "Uid"]),
                    st.one_of(junk, st.text(max_size=8)),
                ),
            ),
            st.one_of(st.none(), junk),
        ),
    ),
    "ProcessDir": (procfs.ProcessDir, (pid, path)),
    "check_environment": (environment.check_environment, (path, path)),
    "unmet": (
        environment.unmet,
        (st.one_of(junk, st.just("report")), st.one_of(junk, st.text(max_size=12))),
    ),
    "libc_version": (syscalls.libc_version, ()),
}


def _run(
    table: dict[str, tuple[Callable[..., object], tuple[st.SearchStrategy[Any], ...]]],
    name: str,
    child: bool,
) -> None:
    fn, strategies = table[name]

    @SETTINGS
    @given(st.tuples(*strategies))
    def hostile(args: tuple[object, ...]) -> None:
        check(fn, *args, child=child)

    hostile()


needs_mseal = pytest.mark.skipif(MSEAL_MISSING is not None, reason=MSEAL_MISSING or "")


@pytest.mark.parametrize("name", sorted(RAW))
def test_raw_syscalls_hostile(name: str) -> None:
    _run(RAW, name, child=True)


@needs_mseal
@pytest.mark.parametrize("name", sorted(SAFE))
def test_safe_api_hostile(name: str) -> None:
    _run(SAFE, name, child=True)


@pytest.mark.parametrize("name", sorted(PURE))
def test_procfs_and_environment_hostile(name: str) -> None:
    _run(PURE, name, child=False)


def test_every_public_function_is_covered() -> None:
    raw_public = {
        n
        for n in syscalls.__all__
        if callable(getattr(syscalls, n)) and not isinstance(getattr(syscalls, n), type)
    }
    assert raw_public - {"ARCH", "NR"} <= set(RAW) | {"libc_version"}
    safe_functions = {
        n
        for module in (pages, code, mmaps, files, entry, questions, support)
        for n in module.__all__
        if callable(getattr(module, n)) and not isinstance(getattr(module, n), type)
    }
    assert safe_functions <= {name.split("(")[0] for name in SAFE}
    procfs_functions = {n for n in procfs.__all__ if n != "Vma"}
    assert procfs_functions <= set(PURE)
    assert {"check_environment", "unmet"} <= set(PURE)
    assert os.getpid() > 0

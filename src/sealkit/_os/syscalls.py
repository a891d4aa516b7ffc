"""The raw system-call layer: the only module that loads libc.

Every call goes through ``syscall(2)`` with the architecture's number, so
glibc wrappers (which pre-check some arguments, and which older glibc lacks
for mseal) never stand between sealkit and the kernel. Values are passed
through unchanged: unaligned addresses, lengths that overflow, unknown flag
bits all reach the kernel, which decides. Only what cannot be passed at all
is refused here: a non-integer, or an integer that does not fit in 64 bits
(``ArgumentTypeError`` / ``ArgumentError``).

:func:`_fail` is the one place where a failed call becomes an exception.

This module is dangerous by design: ``mseal`` of memory you do not own can
crash the process much later. The safe API lives in :mod:`sealkit.sealing`.
"""

from __future__ import annotations

import ctypes
import functools
import operator
import os
import struct
from collections.abc import Callable, Sequence
from typing import Any, Final, NamedTuple, NoReturn, cast

from ..errors import (
    ArgumentError,
    ArgumentTypeError,
    NotSupportedError,
    kernel_error,
)

__all__ = [
    "ARCH",
    "FAST_PATH",
    "FAST_PATH_DETAIL",
    "NR",
    "LoadedObject",
    "Phdr",
    "brk",
    "dynamic_has_textrel",
    "errno_call",
    "libc_has_symbol",
    "libc_version",
    "loaded_objects",
    "madvise",
    "mallopt",
    "mincore",
    "mlock",
    "mlock2",
    "mmap",
    "mprotect",
    "mremap",
    "mseal",
    "msync",
    "munlock",
    "munmap",
    "pidfd_open",
    "pin_loaded",
    "pkey_alloc",
    "pkey_free",
    "pkey_mprotect",
    "process_madvise",
    "process_vm_readv",
    "process_vm_writev",
    "procmap_query",
    "procmap_vmas",
    "ptrace_call",
    "seal_verified",
    "set_parent_death_signal",
    "set_process_name",
]

# os.uname() is what platform.machine() returns, without importing platform
# (a few ms of start-up that `sealkit run` would add to every program).
ARCH: Final = os.uname().machine

# System call numbers: x86_64 (arch/x86/entry/syscalls/syscall_64.tbl) and the
# generic table (include/uapi/asm-generic/unistd.h) used by aarch64, riscv64
# and loongarch64. mseal is 462 on both (include/uapi/asm-generic/unistd.h,
# arch/x86/entry/syscalls/syscall_64.tbl).
_X86_64: Final = {
    "mmap": 9, "mprotect": 10, "munmap": 11, "brk": 12, "ioctl": 16, "msync": 26,
    "mincore": 27, "madvise": 28, "mremap": 25, "getpid": 39, "mlock": 149,
    "munlock": 150, "process_vm_readv": 310, "process_vm_writev": 311,
    "mlock2": 325, "pkey_mprotect": 329, "pkey_alloc": 330, "pkey_free": 331,
    "pidfd_open": 434, "process_madvise": 440, "mseal": 462, "prctl": 157,
    "ptrace": 101,
}  # fmt: skip
_GENERIC: Final = {
    "ioctl": 29, "brk": 214, "munmap": 215, "mremap": 216, "mmap": 222,
    "mprotect": 226, "msync": 227, "mlock": 228, "munlock": 229, "mincore": 232,
    "madvise": 233, "getpid": 172, "process_vm_readv": 270, "process_vm_writev": 271,
    "mlock2": 284, "pkey_mprotect": 288, "pkey_alloc": 289, "pkey_free": 290,
    "pidfd_open": 434, "process_madvise": 440, "mseal": 462, "prctl": 167,
    "ptrace": 117,
}  # fmt: skip
# The kernel executor's calls for what sealing does not cover (issue 14):
# writes through /proc/self/mem (pwrite64), ptrace POKEDATA, the trace
# files' ftruncate and fallocate(PUNCH_HOLE), mlockall/munlockall.
_X86_64.update(
    {"pwrite64": 18, "ptrace": 101, "ftruncate": 77, "mlockall": 151, "munlockall": 152,
     "fallocate": 285}
)  # fmt: skip
_GENERIC.update(
    {"pwrite64": 68, "ptrace": 117, "ftruncate": 46, "mlockall": 230, "munlockall": 231,
     "fallocate": 47}
)  # fmt: skip
_TABLES: Final = {
    "x86_64": _X86_64,
    "aarch64": _GENERIC,
    "arm64": _GENERIC,
    "riscv64": _GENERIC,
    "loongarch64": _GENERIC,
}
NR: Final[dict[str, int]] = dict(_TABLES.get(ARCH, {}))
"""System call numbers for this machine (empty on an unsupported architecture)."""


def _load_libc() -> ctypes.CDLL:
    # glibc's soname first: ctypes.util.find_library imports subprocess,
    # shutil and tempfile and runs `ldconfig -p`, about 20 ms of start-up that
    # `sealkit run` would add to every program. It stays the fallback (musl).
    try:
        return ctypes.CDLL("libc.so.6", use_errno=True)
    except OSError:
        from ctypes.util import find_library  # noqa: PLC0415

        return ctypes.CDLL(find_library("c") or "libc.so", use_errno=True)


_libc = _load_libc()


def _ctypes_prototype(nargs: int) -> Callable[..., int]:
    """``syscall(2)`` through ctypes with ``nargs`` unsigned long arguments,
    returning the kernel convention (``-errno`` on failure) like ``_fastsys``.
    """
    fn = ctypes.CFUNCTYPE(_L, _L, *([_U] * nargs), use_errno=True)(("syscall", _libc))

    def call(number: int, *args: int) -> int:
        ret: int = fn(number, *args)
        return -ctypes.get_errno() if ret == -1 else ret

    return call


_L, _U = ctypes.c_long, ctypes.c_ulong

# The fast path is sealkit._os._fastsys, a 40-line C extension (ctypes costs
# ~1 us per call here, more than mmap + mseal themselves; see
# benchmarks/bench_mseal.py). Without it (no compiler at install time) the
# ctypes prototypes below do the same job, slower. Both return the kernel
# convention: the result, or -errno.
_fast: Callable[..., int] | None
_fast_objects: Callable[[], list[tuple[bytes, int, tuple[tuple[int, ...], ...]]]] | None
_fast_seal: Callable[..., list[tuple[int, int]] | None] | None
_fast_detail: str
try:
    from . import _fastsys
except ImportError as _exc:  # pragma: no cover - depends on how sealkit was installed
    _fast = _fast_objects = _fast_seal = None
    _fast_detail = f"not built or not loadable ({_exc})"
else:
    _fast = _fastsys.syscall
    # getattr: an extension built from an older source lacks the loader walks.
    _fast_objects = getattr(_fastsys, "loaded_objects", None)
    _fast_seal = getattr(_fastsys, "seal_verified", None)
    _fast_detail = str(getattr(_fastsys, "__file__", "sealkit._os._fastsys"))
    if _fast_objects is None or _fast_seal is None:
        _fast_detail += " (built from an older source: no loader walk or locked sealing)"
if not NR or os.environ.get("SEALKIT_NO_FASTSYS"):
    # No table for this architecture (every call raises NotSupportedError),
    # or the fast path is switched off (tests compare both paths).
    if _fast is not None:
        _fast_detail = (
            "switched off by SEALKIT_NO_FASTSYS"
            if NR
            else f"not used: no system call table for {ARCH}"
        )
    _fast = _fast_objects = _fast_seal = None

FAST_PATH: Final = _fast is not None
"""Whether the C fast path (``sealkit._os._fastsys``) is in use."""
FAST_PATH_DETAIL: Final = _fast_detail
"""Where the fast path was loaded from, or why it is not in use."""


def _syscall(nargs: int) -> Callable[..., int]:
    return _fast if _fast is not None else _ctypes_prototype(nargs)


_sys1 = _syscall(1)
_sys2 = _syscall(2)
_sys3 = _syscall(3)
_sys4 = _syscall(4)
_sys5 = _syscall(5)
_sys6 = _syscall(6)

_MASK: Final = (1 << 64) - 1
_MIN: Final = -(1 << 63)
_NR_MSEAL: Final = NR.get("mseal")
_NR_MMAP: Final = NR.get("mmap")
_NR_MPROTECT: Final = NR.get("mprotect")
_NR_MUNMAP: Final = NR.get("munmap")


def _nr(name: str) -> int:
    try:
        return NR[name]
    except KeyError:
        raise NotSupportedError(38, name, detail=f"no system call table for {ARCH}") from None


def _fail(call: str, ret: int, addr: int | None = None, length: int | None = None) -> NoReturn:
    """Raise the exception for a failed ``call`` that returned ``ret`` (``-errno``).

    The one place where a failed system call becomes an exception.
    """
    raise kernel_error(-ret, call, addr, length)


def _u64(value: object, name: str) -> int:
    """``value`` as an unsigned 64-bit integer, two's complement for negatives."""
    if type(value) is not int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ArgumentTypeError(f"{name} must be an int, not {type(value).__name__}")
        value = operator.index(value)  # the integer value, whatever __int__ says
    if not _MIN <= value <= _MASK:
        raise ArgumentError(f"{name}={value:#x} does not fit in 64 bits")
    return value & _MASK


def mseal(addr: int, length: int, flags: int = 0) -> None:
    """``mseal(addr, length, flags)``: seal ``[addr, addr+length)`` against
    unmapping, remapping, permission changes and destructive madvise, until
    the process exits. **Dangerous**: sealing memory you do not own (the
    heap behind a ``bytes``, an allocator's arena) makes later frees fail in
    ways that crash the process. Prefer :mod:`sealkit.sealing`.
    """
    # Fast path (benchmarks/bench_mseal.py): exact ints go straight to C,
    # which refuses anything outside [0, 2**64) with OverflowError; then (and
    # for anything else) _call masks negatives and raises typed errors.
    if _fast is not None and type(addr) is int and type(length) is int and type(flags) is int:
        try:
            ret = _fast(_NR_MSEAL, addr, length, flags)
        except OverflowError:
            pass
        else:
            if ret < 0:
                _fail("mseal", ret, addr, length)
            return
    _call("mseal", 3, addr, length, flags, addr=addr, length=length)


def _int_or_none(value: object) -> int | None:
    return value if isinstance(value, int) else None


def _call(call: str, nargs: int, *args: object, addr: object = None, length: object = None) -> int:
    """Validate ``args`` as 64-bit integers, make the call, raise on failure."""
    values = [_u64(a, f"{call} argument {i + 1}") for i, a in enumerate(args)]
    nr = _nr(call)
    fn = (_sys1, _sys2, _sys3, _sys4, _sys5, _sys6)[nargs - 1]
    ret: int = fn(nr, *values)
    if ret < 0:
        _fail(call, ret, _int_or_none(addr), _int_or_none(length))
    return ret


_BY_ARITY: Final = (None, _sys1, _sys2, _sys3, _sys4, _sys5, _sys6)


def errno_call(call: str, *args: int) -> int:
    """Make ``call`` (a name in :data:`NR`) with up to six integer arguments and
    return the kernel's answer in the kernel convention: the result (as an
    unsigned value) or ``-errno``. Never raises for a kernel error: this is
    for the kernel executor, which records errnos rather than handling them
    (and makes hundreds of thousands of calls). Arguments are validated like
    every other call here; an unknown call is ``-ENOSYS``.
    """
    if not isinstance(call, str):
        raise ArgumentTypeError(f"call must be a system call name, not {type(call).__name__}")
    if len(args) > 6:
        raise ArgumentError(f"{call}: at most 6 arguments, not {len(args)}")
    nr = NR.get(call)
    if nr is None:
        return -38  # ENOSYS
    for value in args:
        # Plain ints in [0, 2**64) go through as they are; anything else is
        # validated (negatives become two's complement, as the kernel reads them).
        if type(value) is not int or not 0 <= value <= _MASK:
            args = tuple(_u64(v, f"{call} argument {i + 1}") for i, v in enumerate(args))
            break
    if not args:
        args = (0,)  # a call without arguments (munlockall) ignores the register
    ret: int = _BY_ARITY[len(args)](nr, *args)  # type: ignore[misc]
    return ret if ret < 0 else ret & _MASK  # the helpers return -errno on failure


def mmap(addr: int, length: int, prot: int, flags: int, fd: int = -1, offset: int = 0) -> int:
    """``mmap`` returning the mapped address; the kernel validates everything."""
    # Fast path, as in mseal (the safe API allocates through here). fd=-1 is
    # the common negative value: passed as the kernel reads it, 2**64 - 1.
    if (
        _fast is not None
        and type(addr) is int
        and type(length) is int
        and type(prot) is int
        and type(flags) is int
        and type(fd) is int
        and type(offset) is int
        and fd >= _MIN
    ):
        try:
            ret = _fast(_NR_MMAP, addr, length, prot, flags, fd & _MASK, offset)
        except OverflowError:
            pass
        else:
            if ret < 0:
                _fail("mmap", ret, addr, length)
            return ret
    return _call("mmap", 6, addr, length, prot, flags, fd, offset, addr=addr, length=length) & _MASK


def munmap(addr: int, length: int) -> None:
    """``munmap``: EPERM (``SealedError``) if any VMA in range is sealed; atomic."""
    if _fast is not None and type(addr) is int and type(length) is int:
        try:
            ret = _fast(_NR_MUNMAP, addr, length)
        except OverflowError:
            pass
        else:
            if ret < 0:
                _fail("munmap", ret, addr, length)
            return
    _call("munmap", 2, addr, length, addr=addr, length=length)


def mprotect(addr: int, length: int, prot: int) -> None:
    """``mprotect``: EPERM on sealed VMAs, after changing the VMAs before them (6.12+)."""
    if _fast is not None and type(addr) is int and type(length) is int and type(prot) is int:
        try:
            ret = _fast(_NR_MPROTECT, addr, length, prot)
        except OverflowError:
            pass
        else:
            if ret < 0:
                _fail("mprotect", ret, addr, length)
            return
    _call("mprotect", 3, addr, length, prot, addr=addr, length=length)


def pkey_mprotect(addr: int, length: int, prot: int, pkey: int) -> None:
    """``pkey_mprotect``; ``pkey=-1`` behaves as mprotect."""
    _call("pkey_mprotect", 4, addr, length, prot, pkey, addr=addr, length=length)


def pkey_alloc(flags: int = 0, access_rights: int = 0) -> int:
    """``pkey_alloc``: EINVAL (``InvalidArgumentError``) when the CPU lacks PKU."""
    return _call("pkey_alloc", 2, flags, access_rights)


def pkey_free(pkey: int) -> None:
    """``pkey_free``."""
    _call("pkey_free", 1, pkey)


def mremap(old_addr: int, old_len: int, new_len: int, flags: int = 0, new_addr: int = 0) -> int:
    """``mremap`` returning the new address."""
    ret = _call(
        "mremap", 5, old_addr, old_len, new_len, flags, new_addr, addr=old_addr, length=old_len
    )
    return ret & _MASK


def madvise(addr: int, length: int, advice: int) -> None:
    """``madvise``: discard advice on sealed read-only anonymous memory is EPERM."""
    _call("madvise", 3, addr, length, advice, addr=addr, length=length)


def brk(addr: int) -> int:
    """Raw ``brk``: returns the (possibly unchanged) break; never raises for a
    refused change, exactly like the kernel. ``brk(0)`` queries the break.
    """
    return _call("brk", 1, addr) & _MASK


def pidfd_open(pid: int, flags: int = 0) -> int:
    """``pidfd_open``: a file descriptor for ``pid`` (the caller closes it)."""
    return _call("pidfd_open", 2, pid, flags)


class _IoVec(ctypes.Structure):
    _fields_ = (("base", ctypes.c_void_p), ("len", ctypes.c_size_t))


_IOV_MAX: Final = 1024  # UIO_MAXIOV: the kernel's limit on iovecs per call


def _ranges(ranges: object, name: str) -> list[tuple[int, int]]:
    """``ranges`` as a list of ``(base, length)`` int pairs, or a typed error."""
    if isinstance(ranges, str | bytes) or not isinstance(ranges, Sequence):
        raise ArgumentTypeError(
            f"{name} must be a sequence of (addr, length) pairs, not {type(ranges).__name__}"
        )
    if len(ranges) > _IOV_MAX:
        raise ArgumentError(f"{name} has {len(ranges)} ranges; the kernel takes at most {_IOV_MAX}")
    out = []
    for item in ranges:
        if not isinstance(item, tuple) or len(item) != 2:
            raise ArgumentTypeError(f"each of {name} must be an (addr, length) tuple, not {item!r}")
        out.append((_u64(item[0], "iovec base"), _u64(item[1], "iovec length")))
    return out


def _iovecs(ranges: Sequence[tuple[int, int]]) -> ctypes.Array[_IoVec]:
    array = (_IoVec * len(ranges))()
    for i, (base, size) in enumerate(ranges):
        array[i].base = _u64(base, "iovec base") or None
        array[i].len = _u64(size, "iovec length")
    return array


def _buffer_size(size: object) -> int:
    """A local buffer size: a non-negative int small enough to allocate (1 GiB)."""
    if isinstance(size, bool) or not isinstance(size, int):
        raise ArgumentTypeError(f"size must be an int, not {type(size).__name__}")
    if not 0 <= size <= 1 << 30:
        raise ArgumentError(f"size={size} must be between 0 and 1 GiB")
    return operator.index(size)


def process_madvise(
    pidfd: int, ranges: Sequence[tuple[int, int]], advice: int, flags: int = 0
) -> int:
    """``process_madvise`` over ``ranges`` [(addr, length), ...]; returns the
    bytes advised. A refusal after some ranges were done returns the count
    done so far with no error (scenario probe/11.7).
    """
    ranges = _ranges(ranges, "ranges")
    vec = _iovecs(ranges)
    first = ranges[0] if ranges else (None, None)
    return _call(
        "process_madvise", 5, pidfd, ctypes.addressof(vec), len(ranges), advice, flags,
        addr=first[0], length=first[1],
    )  # fmt: skip


def process_vm_readv(pid: int, remote: Sequence[tuple[int, int]], size: int) -> bytes:
    """Read ``remote`` ranges of ``pid`` (honours page permissions, unlike /proc/PID/mem)."""
    remote = _ranges(remote, "remote")
    size = _buffer_size(size)
    buf = ctypes.create_string_buffer(size)
    local = _iovecs([(ctypes.addressof(buf), size)])
    rvec = _iovecs(remote)
    got = _call(
        "process_vm_readv", 6, pid, ctypes.addressof(local), 1, ctypes.addressof(rvec),
        len(remote), 0, addr=remote[0][0] if remote else None, length=size,
    )  # fmt: skip
    return buf.raw[:got]


def process_vm_writev(pid: int, remote: Sequence[tuple[int, int]], data: bytes) -> int:
    """Write ``data`` into ``remote`` ranges of ``pid``: a user-space store
    (EFAULT on a page without write permission), never a forced write.
    """
    remote = _ranges(remote, "remote")
    if not isinstance(data, bytes | bytearray | memoryview):
        raise ArgumentTypeError(f"data must be bytes-like, not {type(data).__name__}")
    data = bytes(data)
    buf = ctypes.create_string_buffer(data, len(data))
    local = _iovecs([(ctypes.addressof(buf), len(data))])
    rvec = _iovecs(remote)
    return _call(
        "process_vm_writev", 6, pid, ctypes.addressof(local), 1, ctypes.addressof(rvec),
        len(remote), 0, addr=remote[0][0] if remote else None, length=len(data),
    )  # fmt: skip


def mlock(addr: int, length: int) -> None:
    """``mlock``: not blocked by sealing (docs/reference/linux.md rule 16)."""
    _call("mlock", 2, addr, length, addr=addr, length=length)


def mlock2(addr: int, length: int, flags: int) -> None:
    """``mlock2`` (``flags=1`` is MLOCK_ONFAULT)."""
    _call("mlock2", 3, addr, length, flags, addr=addr, length=length)


def munlock(addr: int, length: int) -> None:
    """``munlock``."""
    _call("munlock", 2, addr, length, addr=addr, length=length)


def msync(addr: int, length: int, flags: int) -> None:
    """``msync`` (MS_ASYNC=1, MS_INVALIDATE=2, MS_SYNC=4)."""
    _call("msync", 3, addr, length, flags, addr=addr, length=length)


def mincore(addr: int, length: int) -> bytes:
    """``mincore``: one byte per page, bit 0 set when resident. ENOMEM on a hole."""
    pages = (_u64(length, "length") + 4095) // 4096
    if pages > 1 << 30:  # the kernel would answer EINVAL/ENOMEM; don't allocate 4 TiB first
        raise ArgumentError(f"mincore length={length:#x} is too large for a result vector")
    vec = ctypes.create_string_buffer(max(pages, 1))
    _call("mincore", 3, addr, length, ctypes.addressof(vec), addr=addr, length=length)
    return vec.raw[:pages]


def set_parent_death_signal(sig: int) -> None:
    """``prctl(PR_SET_PDEATHSIG, sig)``: the kernel sends ``sig`` to this process
    when the *thread* that created it exits (for a single-threaded parent: when
    the parent dies, however it dies). Cleared in a child of ``fork``, so each
    generation sets it again. The kernel executor's workers use ``SIGKILL`` so
    none outlives the process that runs it. ``sig=0`` clears it.
    """
    _call("prctl", 5, 1, sig, 0, 0, 0)  # PR_SET_PDEATHSIG = 1


def ptrace_call(request: int, pid: int, addr: int = 0, data: int = 0) -> int:
    """Raw ``ptrace(request, pid, addr, data)`` in the kernel convention: the
    result, or ``-errno``. Never raises for a kernel error: the ptrace layer
    (:mod:`sealkit._os.ptrace`) names the request in its own exception, and
    some answers (ENOENT past the last seccomp filter) are not errors there.

    The raw call, not glibc's wrapper: for the ``PEEK`` requests the kernel
    stores the word at ``data`` (the wrapper returns it); sealkit never peeks.
    """
    for name, value in (("request", request), ("pid", pid)):
        if isinstance(value, bool) or not isinstance(value, int):
            raise ArgumentTypeError(f"ptrace {name} must be an int, not {type(value).__name__}")
    # Never truncated into another request or another process: the kernel
    # reads both as C ints, so anything outside that range is refused here.
    if not 0 <= request < 1 << 31:
        raise ArgumentError(f"ptrace request {request} is not a ptrace request")
    if not -(1 << 31) <= pid < 1 << 31:
        raise ArgumentError(f"ptrace pid {pid} does not fit in a pid_t")
    addr, data = _u64(addr, "ptrace addr"), _u64(data, "ptrace data")
    nr = NR.get("ptrace")
    if nr is None:
        return -38  # ENOSYS: no system call table for this architecture
    ret: int = _sys4(nr, request, pid & _MASK, addr, data)
    return ret


def set_process_name(name: bytes) -> None:
    """``prctl(PR_SET_NAME, name)``: the calling thread's name, which for the
    main thread is the process's ``/proc/PID/comm`` (what ``ps``, ``top`` and
    ``sealkit audit`` show). The kernel keeps the first 15 bytes; a NUL ends
    the name early, so one is refused. ``/proc/PID/cmdline`` is not changed.
    """
    if not isinstance(name, bytes):
        raise ArgumentTypeError(f"name must be bytes, not {type(name).__name__}")
    if b"\0" in name:
        raise ArgumentError(f"a process name cannot contain NUL: {name!r}")
    buf = ctypes.create_string_buffer(name[:15], 16)
    _call("prctl", 5, 15, ctypes.addressof(buf), 0, 0, 0)  # PR_SET_NAME = 15


def raise_exit_status_at_exit() -> bool:
    """Ask libc to ``raise(status)`` once every exit handler has run, where
    ``status`` is the status the process exits with (glibc ``on_exit(raise,
    NULL)``; its handlers run after Python's finalisation). ``sealkit run``
    exits with SIGINT's number after an uncaught ``KeyboardInterrupt``, so the
    process dies by SIGINT as ``python`` does, after finalising. Returns False,
    changing nothing, where libc has no ``on_exit`` or refuses.
    """
    fn = getattr(_libc, "on_exit", None)
    if fn is None:
        return False
    fn.argtypes = (ctypes.c_void_p, ctypes.c_void_p)
    fn.restype = ctypes.c_int
    return bool(fn(ctypes.cast(_libc["raise"], ctypes.c_void_p), None) == 0)


def mallopt(param: int, value: int) -> None:
    """glibc ``mallopt(param, value)`` (``M_TRIM_THRESHOLD=-1``, ``M_TOP_PAD=-2``,
    ``M_MMAP_THRESHOLD=-3``). The kernel executor uses it to keep malloc off
    the program break while traces move it. Raises ``NotSupportedError`` on a
    libc without ``mallopt`` and ``ArgumentError`` when glibc rejects the value.
    """
    for name, given in (("param", param), ("value", value)):
        if isinstance(given, bool) or not isinstance(given, int):
            raise ArgumentTypeError(f"mallopt {name} must be an int, not {type(given).__name__}")
        if not -(1 << 31) <= given < 1 << 31:
            raise ArgumentError(f"mallopt {name}={given} does not fit in a C int")
    fn = getattr(_libc, "mallopt", None)
    if fn is None:
        raise NotSupportedError(38, "mallopt", detail="this libc has no mallopt")
    fn.argtypes = (ctypes.c_int, ctypes.c_int)
    fn.restype = ctypes.c_int
    if (
        fn(operator.index(param), operator.index(value)) != 1
    ):  # mallopt returns 1 on success, 0 on error
        raise ArgumentError(f"mallopt({param}, {value}) was rejected")


class ProcmapQuery(ctypes.Structure):
    """``struct procmap_query`` (include/uapi/linux/fs.h, Linux 6.11+)."""

    _fields_ = (
        ("size", ctypes.c_uint64),
        ("query_flags", ctypes.c_uint64),
        ("query_addr", ctypes.c_uint64),
        ("vma_start", ctypes.c_uint64),
        ("vma_end", ctypes.c_uint64),
        ("vma_flags", ctypes.c_uint64),
        ("vma_page_size", ctypes.c_uint64),
        ("vma_offset", ctypes.c_uint64),
        ("inode", ctypes.c_uint64),
        ("dev_major", ctypes.c_uint32),
        ("dev_minor", ctypes.c_uint32),
        ("vma_name_size", ctypes.c_uint32),
        ("build_id_size", ctypes.c_uint32),
        ("vma_name_addr", ctypes.c_uint64),
        ("build_id_addr", ctypes.c_uint64),
    )


PROCMAP_QUERY: Final = (3 << 30) | (ctypes.sizeof(ProcmapQuery) << 16) | (ord("f") << 8) | 17
"""``_IOWR('f', 17, struct procmap_query)``."""


def procmap_query(maps_fd: int, addr: int, flags: int, query: ProcmapQuery) -> bool:
    """One ``PROCMAP_QUERY`` ioctl on an open ``/proc/PID/maps`` fd, filling
    ``query`` in place. Returns ``False`` when no VMA matches (ENOENT);
    raises for any other error (ENOTTY on kernels before 6.11).
    """
    if not isinstance(query, ProcmapQuery):
        raise ArgumentTypeError(f"query must be a ProcmapQuery, not {type(query).__name__}")
    maps_fd, addr, flags = _u64(maps_fd, "maps_fd"), _u64(addr, "addr"), _u64(flags, "flags")
    query.size = ctypes.sizeof(ProcmapQuery)
    query.query_flags = flags
    query.query_addr = addr
    query.vma_name_size = 0
    query.build_id_size = 0
    ret = _sys3(_nr("ioctl"), maps_fd, PROCMAP_QUERY, ctypes.addressof(query))
    if ret < 0:
        if ret == -2:  # ENOENT: nothing at or after addr
            return False
        _fail("ioctl(PROCMAP_QUERY)", ret, addr)
    return True


_PROCMAP_COVERING_OR_NEXT: Final = 0x10


def procmap_vmas(
    maps_fd: int, lo: int, hi: int, names: bool = False
) -> list[tuple[int, int, int, int, int, int, int, str]]:
    """Every VMA meeting ``[lo, hi)``, one ``PROCMAP_QUERY`` ioctl each (no page
    walk, unlike smaps): ``(start, end, vma_flags, file_offset, dev_major,
    dev_minor, inode, name)``. ``vma_flags`` holds PROCMAP_QUERY_VMA_READABLE
    (1), WRITABLE (2), EXECUTABLE (4) and SHARED (8); ``inode`` is 0 for memory
    without a file; ``name`` is the kernel's name for the VMA, as maps prints
    it (``[heap]``, ``[stack]``, a path), when ``names``, else ``""``. Raises
    on an error other than "nothing further" (ENOTTY before Linux 6.11). This
    is the kernel executor's per-call snapshot, so it keeps Python work per VMA
    to a minimum.
    """
    maps_fd, lo, hi = _u64(maps_fd, "maps_fd"), _u64(lo, "lo"), _u64(hi, "hi")
    query = ProcmapQuery()
    where = ctypes.addressof(query)
    name_buf = ctypes.create_string_buffer(256) if names else None
    ioctl = _nr("ioctl")
    out = []
    addr = lo
    while addr < hi:
        query.size = ctypes.sizeof(ProcmapQuery)
        query.query_flags = _PROCMAP_COVERING_OR_NEXT
        query.query_addr = addr
        if name_buf is not None:
            query.vma_name_size = len(name_buf)
            query.vma_name_addr = ctypes.addressof(name_buf)
        ret = _sys3(ioctl, maps_fd, PROCMAP_QUERY, where)
        if ret < 0:
            if ret == -2:  # ENOENT: nothing at or after addr
                break
            _fail("ioctl(PROCMAP_QUERY)", ret, addr)
        start = query.vma_start
        if start >= hi:
            break
        end = query.vma_end
        name = ""
        if name_buf is not None and query.vma_name_size:
            name = name_buf.value.decode("utf-8", "surrogateescape")
        out.append(
            (start, end, query.vma_flags, query.vma_offset, query.dev_major, query.dev_minor,
             query.inode, name)
        )  # fmt: skip
        addr = end
    return out


_gnu_get_libc_version: Callable[[], bytes] | None
try:
    _gnu_get_libc_version = cast(Callable[[], bytes], _libc.gnu_get_libc_version)
    _gnu_get_libc_version.restype = ctypes.c_char_p  # type: ignore[attr-defined]
    _gnu_get_libc_version.argtypes = ()  # type: ignore[attr-defined]
except AttributeError:  # musl and other libcs have no such function
    _gnu_get_libc_version = None


def libc_version() -> str | None:
    """glibc's version string (``gnu_get_libc_version()``), or ``None`` for another libc."""
    if _gnu_get_libc_version is None:
        return None
    return _gnu_get_libc_version().decode("ascii", "replace")


def libc_has_symbol(name: str) -> bool:
    """Whether the loaded libc exports ``name`` (``dlsym``), e.g. ``"mseal"``:
    glibc 2.43+ has an ``mseal`` wrapper, older glibc has none (glibc
    2.43 NEWS). sealkit never calls the wrapper; it uses ``syscall``.
    """
    if not isinstance(name, str):
        raise ArgumentTypeError(f"name must be a str, not {type(name).__name__}")
    if not name or "\0" in name:
        raise ArgumentError(f"not a symbol name: {name!r}")
    try:
        _libc[name]
    except AttributeError:
        return False
    return True


# --- loaded ELF objects: dl_iterate_phdr (for sealkit.sealing.hardening) ---------

PT_LOAD: Final = 1
PT_GNU_RELRO: Final = 0x6474E552
PF_X: Final = 0x1
PF_W: Final = 0x2
PF_R: Final = 0x4


class Phdr(NamedTuple):
    """One ELF program header (``Elf64_Phdr``) of a loaded object, unchanged."""

    type: int
    flags: int
    offset: int
    vaddr: int
    filesz: int
    memsz: int
    align: int


class LoadedObject(NamedTuple):
    """One object on the dynamic loader's list (``struct dl_phdr_info``).

    ``addr`` is ``dlpi_addr``, the load bias: a segment lives at
    ``addr + phdr.vaddr``. ``name`` is ``dlpi_name`` as the loader has it
    (``""`` for the main program, the ``DT_NEEDED``/dlopen name otherwise,
    ``"linux-vdso.so.1"`` for the vDSO). ``textrel``: see below.
    """

    addr: int
    name: str
    phdrs: tuple[Phdr, ...]
    textrel: bool = False
    """The object's dynamic section asks for text relocations (``DT_TEXTREL``,
    or ``DF_TEXTREL`` in ``DT_FLAGS``): the loader makes its text writable to
    relocate it, so it is never sealed (:mod:`sealkit.sealing.hardening.plan`)."""


class _DlPhdrInfo(ctypes.Structure):
    # The leading fields of struct dl_phdr_info (<link.h>); the callback's
    # size argument says more follow (dlpi_adds, dlpi_subs, TLS), unused here.
    _fields_ = (
        ("addr", ctypes.c_uint64),
        ("name", ctypes.c_char_p),
        ("phdr", ctypes.c_void_p),
        ("phnum", ctypes.c_uint16),
    )


# Elf64_Phdr: p_type p_flags p_offset p_vaddr p_paddr p_filesz p_memsz p_align
_PHDR64: Final = struct.Struct("=IIQQQQQQ")
_DlCallback = ctypes.CFUNCTYPE(
    ctypes.c_int, ctypes.POINTER(_DlPhdrInfo), ctypes.c_size_t, ctypes.c_void_p
)
# PYFUNCTYPE: the GIL stays held while dl_iterate_phdr runs (it holds glibc's
# dl_load_write_lock for the whole walk and calls back under it).
_dl_iterate_phdr = ctypes.PYFUNCTYPE(ctypes.c_int, _DlCallback, ctypes.c_void_p)(
    ("dl_iterate_phdr", _libc)
)
# While the callback runs, no thread may take the GIL from the walker: a thread
# importing an extension module calls dlopen with the GIL held and blocks on
# the loader lock the walker holds, while the walker waits for the GIL, and
# both hang. The C walk (_fastsys.loaded_objects) runs no Python code under
# the lock. This fallback can only make a switch unlikely: see _walk_quietly.
# The interval bounds how long the walker may wait to get the GIL back from a
# busy thread before the walk, and must exceed the walk itself (~5 us/object).
_QUIET_INTERVAL: Final = 0.05


def _object(name: bytes, addr: int, phdrs: Sequence[tuple[int, ...]]) -> LoadedObject:
    return LoadedObject(addr, os.fsdecode(name), tuple(Phdr(*p) for p in phdrs))


def _walk_quietly() -> list[tuple[int, bytes, bytes]]:
    """The ctypes walk, best-effort against the deadlock above: the callback
    only copies bytes (parsing waits until the walk is over), the cyclic GC
    (whose finalisers run arbitrary Python code) is off, and the switch
    interval is raised, then the GIL handed over once (``sleep(0)``): a drop
    request already pending is served then, not inside the callback, and a
    thread waiting for the GIL re-arms its timer with the long interval
    (CPython's take_gil asks for a drop only when a whole interval passed
    without a switch). A walk longer than the interval, a signal handler or a
    thread switching off the interval itself can still run Python code in
    the callback: the fallback is not a guarantee.
    """
    import gc  # noqa: PLC0415 - a builtin module, only for this path
    import sys  # noqa: PLC0415
    import time  # noqa: PLC0415

    raw: list[tuple[int, bytes, bytes]] = []
    string_at = ctypes.string_at
    size = _PHDR64.size

    def visit(info_p: ctypes._Pointer[_DlPhdrInfo], _size: int, _data: object) -> int:
        info = info_p.contents
        raw.append((info.addr, info.name or b"", string_at(info.phdr, info.phnum * size)))
        return 0

    callback = _DlCallback(visit)
    interval = sys.getswitchinterval()
    gc_was_on = gc.isenabled()
    try:
        gc.disable()
        sys.setswitchinterval(max(interval, _QUIET_INTERVAL))
        time.sleep(0)
        _dl_iterate_phdr(callback, None)
    finally:
        sys.setswitchinterval(interval)
        if gc_was_on:
            gc.enable()
    return raw


def loaded_objects() -> list[LoadedObject]:
    """Every ELF object the dynamic loader has mapped, in the loader's order
    (main program first), from ``dl_iterate_phdr(3)``, with all its program
    headers. 64-bit only (mseal is 64-bit only): raises
    :class:`~sealkit.errors.NotSupportedError` elsewhere.

    The C fast path copies the list under the loader's lock and runs no Python
    code there; the ctypes fallback runs a (tiny) Python callback under it,
    which is only best-effort against a deadlock with a concurrent import
    (see ``docs/hardening.md``).
    """
    if ctypes.sizeof(ctypes.c_void_p) != 8:
        raise NotSupportedError(38, "dl_iterate_phdr", detail="sealkit reads 64-bit ELF only")
    if _fast_objects is not None:
        objects = [_object(name, addr, phdrs) for name, addr, phdrs in _fast_objects()]
    else:
        objects = [
            _object(name, addr, [p[:4] + p[5:] for p in _PHDR64.iter_unpack(phdrs)])
            for addr, name, phdrs in _walk_quietly()
        ]
    return _with_textrel(objects)


# --- text relocations: read from each object's dynamic section -------------------

PT_DYNAMIC: Final = 2
DT_NULL: Final = 0
DT_TEXTREL: Final = 22
DT_FLAGS: Final = 30
DF_TEXTREL: Final = 0x4
_DYN: Final = struct.Struct("=qQ")  # Elf64_Dyn: d_tag, d_un
_MAX_DYNAMIC: Final = 2048 * _DYN.size  # a bound on one object's dynamic section


def dynamic_has_textrel(data: bytes) -> bool:
    """Whether the dynamic section ``data`` (``Elf64_Dyn`` entries, native
    byte order) asks for text relocations: ``DT_TEXTREL``, or ``DF_TEXTREL``
    in a ``DT_FLAGS`` entry. Pure; entries after ``DT_NULL`` or past the end
    of ``data`` do not count.
    """
    if not isinstance(data, bytes | bytearray | memoryview):
        raise ArgumentTypeError(f"data must be bytes-like, not {type(data).__name__}")
    data = bytes(data)
    return _textrel_in(memoryview(data[: len(data) - len(data) % 16]).cast("q").tolist())


def _textrel_in(words: list[int]) -> bool:
    """:func:`dynamic_has_textrel` on the section's 64-bit words (tag, value,
    tag, value...): list operations in C rather than a loop over entries,
    since this runs for every object of every ``harden()``."""
    tags = words[0::2]
    if DT_NULL in tags:
        tags = tags[: tags.index(DT_NULL)]
    if DT_TEXTREL in tags:
        return True
    at = tags.index(DT_FLAGS) if DT_FLAGS in tags else -1
    while at >= 0:
        if words[2 * at + 1] & DF_TEXTREL:
            return True
        at = tags.index(DT_FLAGS, at + 1) if DT_FLAGS in tags[at + 1 :] else -1
    return False


def _read_own(spans: Sequence[tuple[int, int, int]]) -> bytes:
    """The bytes of ``(_, addr, size)`` spans of this process, up to the first
    that cannot be read (``process_vm_readv`` on itself, iovecs packed in one
    go: this runs on every ``harden()`` and import-hook sweep)."""
    total = sum(size for _, _, size in spans)
    buf = ctypes.create_string_buffer(total)
    local = _IOVEC_PAIR.pack(ctypes.addressof(buf), total)
    remote = b"".join(_IOVEC_PAIR.pack(addr, size) for _, addr, size in spans)
    lbuf = ctypes.create_string_buffer(local, len(local))
    rbuf = ctypes.create_string_buffer(remote, len(remote))
    ret = _sys6(
        _nr("process_vm_readv"), os.getpid(), ctypes.addressof(lbuf), 1,
        ctypes.addressof(rbuf), len(spans), 0,
    )  # fmt: skip
    return buf.raw[:ret] if ret > 0 else b""


_IOVEC_PAIR: Final = struct.Struct("=QQ")


def _with_textrel(objects: list[LoadedObject]) -> list[LoadedObject]:
    """``objects`` with ``textrel`` read from each one's ``PT_DYNAMIC`` in this
    process's memory, through ``process_vm_readv`` on itself: an object that
    another thread unmapped meanwhile gives EFAULT, never a crash. All the
    sections in one call (a few microseconds); ranges after one that fails
    are read one by one. An unreadable section leaves ``textrel`` False: the
    object is no longer mapped, and the planner skips it as not mapped.
    """
    spans: list[tuple[int, int, int]] = []  # (index, addr, size)
    for i, obj in enumerate(objects):
        for ph in obj.phdrs:
            if ph.type == PT_DYNAMIC and ph.memsz >= _DYN.size:
                size = min(ph.memsz - ph.memsz % _DYN.size, _MAX_DYNAMIC)
                spans.append((i, obj.addr + ph.vaddr, size))
                break
    if not spans:
        return objects
    got = _read_own(spans[:_IOV_MAX])
    words = memoryview(got[: len(got) - len(got) % 8]).cast("q").tolist()
    out = list(objects)
    at = 0  # in bytes; every size is a multiple of 16 (checked above)
    for k, (i, addr, size) in enumerate(spans):
        if at + size <= len(got):
            found = _textrel_in(words[at // 8 : (at + size) // 8])
            at += size
        else:  # past the first range that failed: each one alone
            at = len(got) + 1
            one = _read_own([(k, addr, size)])
            found = len(one) == size and dynamic_has_textrel(one)
        if found:
            out[i] = out[i]._replace(textrel=True)
    return out


SEAL_VERIFIED_REASONS: Final = {
    1: "not mapped",
    2: "protection differs",
    3: "mapped from another file or anonymous memory",
    4: "file offset differs",
    5: "a shared mapping",
    6: "mapped writable and executable",
    7: "a different kernel mapping",
}
"""Why :func:`seal_verified` left a range unsealed (codes 1-7: it changed)."""
SEAL_QUERY_FAILED: Final = 8
SEAL_MSEAL_FAILED: Final = 9


def seal_verified(
    maps_fd: int, ranges: Sequence[tuple[int, int, int, int, int, int, int, bytes | None]]
) -> list[tuple[int, int]] | None:
    """Under the dynamic loader's lock (inside a ``dl_iterate_phdr`` callback,
    in C), re-check each planned range with ``PROCMAP_QUERY`` on ``maps_fd``
    (an open ``/proc/self/maps``) and ``mseal`` it only if it is unchanged.

    ``ranges``: ``(start, end, vma_flags, dev_major, dev_minor, inode, offset,
    name)``, where ``vma_flags`` are PROCMAP_QUERY's r/w/x bits (1/2/4),
    ``inode`` 0 means anonymous, ``offset`` is the file offset at ``start``
    and ``name`` (bytes or ``None``) the VMA name to insist on. Returns
    ``(code, errno)`` per range: 0 sealed, 1-7 changed
    (:data:`SEAL_VERIFIED_REASONS`), 8 the query failed, 9 mseal failed.
    ``None`` when the C fast path is absent (the caller re-checks in Python).
    Holding the lock means no dlclose can unmap a library between the check
    and the seal (glibc unmaps under ``dl_load_write_lock``).
    """
    fd = _u64(maps_fd, "maps_fd")
    if fd >= 1 << 31:
        raise ArgumentError(f"maps_fd={maps_fd} is not a file descriptor")
    given: object = ranges  # checked as what a caller may really pass
    if isinstance(given, str | bytes) or not isinstance(given, Sequence):
        raise ArgumentTypeError(f"ranges must be a sequence, not {type(given).__name__}")
    checked = []
    for item in given:
        if not isinstance(item, tuple) or len(item) != 8:
            raise ArgumentTypeError(f"each range must be an 8-tuple, not {item!r}")
        *numbers, name = item
        if name is not None and not isinstance(name, bytes):
            raise ArgumentTypeError(f"a range's name must be bytes or None, not {name!r}")
        if name is not None and b"\0" in name:
            raise ArgumentError(f"a range's name cannot contain NUL: {name!r}")
        # Plain ints in [0, 2**64) as they are (the common case, cheap);
        # anything else through _u64's typed errors.
        if not all(type(v) is int and 0 <= v <= _MASK for v in numbers):
            numbers = [_u64(v, "range field") for v in numbers]
        checked.append((*numbers, name))
    if _fast_seal is None:
        return None
    return _fast_seal(fd, checked)


# <dlfcn.h>: dlopen modes, dlinfo request.
_RTLD_LAZY: Final = 0x1
_RTLD_NOLOAD: Final = 0x4
_RTLD_NODELETE: Final = 0x1000
_RTLD_DI_LINKMAP: Final = 2


def pin_loaded(name: str, base: int) -> str:
    """Make the loaded object ``name`` (its ``dlpi_name``) at load bias
    ``base`` undeletable: ``dlclose`` no longer unloads it. Returns ``""``
    when pinned, else why not (nothing else changed).

    ``dlopen(name, RTLD_LAZY | RTLD_NOLOAD | RTLD_NODELETE)`` finds an object
    that is already loaded (never loads one: no file is opened, no
    constructor runs) and marks it NODELETE, as dlopen(3) documents for
    promoting the flags of a loaded library; the reference it adds is
    dropped again with ``dlclose``, which for a NODELETE object unloads
    nothing. ``dlinfo(RTLD_DI_LINKMAP)`` checks that the object found is the
    one at ``base``: if ``name`` was unloaded and loaded again elsewhere in
    between, that newer copy stays pinned (harmless) and the answer says so.
    An object of another link-map namespace (dlmopen) is not found.
    """
    if not isinstance(name, str):
        raise ArgumentTypeError(f"name must be a str, not {type(name).__name__}")
    base = _u64(base, "base")
    try:
        encoded = os.fsencode(name)
    except UnicodeEncodeError:
        raise ArgumentError(f"name {name!r} cannot be encoded as a file name") from None
    if b"\0" in encoded:
        raise ArgumentError(f"name cannot contain NUL: {name!r}")
    if not name:
        return "the main program has no name to pin it by (it is never unloaded anyway)"
    dlopen, dlinfo, dlclose, dlerror = _dl_functions()
    handle = dlopen(encoded, _RTLD_LAZY | _RTLD_NOLOAD | _RTLD_NODELETE)
    if not handle:
        err = dlerror()
        return "not found by dlopen(RTLD_NOLOAD)" + (
            f": {err.decode(errors='replace')}" if err else ""
        )
    try:
        link_map = ctypes.c_void_p()
        if dlinfo(handle, _RTLD_DI_LINKMAP, ctypes.byref(link_map)) != 0 or not link_map.value:
            return "dlinfo(RTLD_DI_LINKMAP) failed"
        l_addr = ctypes.c_uint64.from_address(link_map.value).value  # struct link_map's first field
        if l_addr != base:
            return f"the loader's {name} is now at {l_addr:#x}, not {base:#x} (reloaded since)"
        return ""
    finally:
        dlclose(handle)


@functools.cache
def _dl_functions() -> tuple[Any, Any, Any, Any]:
    """``dlopen``, ``dlinfo``, ``dlclose``, ``dlerror`` of libc (glibc 2.34+
    has them in libc itself), with their prototypes. ctypes releases the GIL
    around each call, so a thread loading a library with the GIL held (an
    import) never waits for this one while it waits for the loader's lock."""
    dlopen = _libc.dlopen
    dlopen.argtypes, dlopen.restype = (ctypes.c_char_p, ctypes.c_int), ctypes.c_void_p
    dlinfo = _libc.dlinfo
    dlinfo.argtypes, dlinfo.restype = (ctypes.c_void_p, ctypes.c_int, ctypes.c_void_p), ctypes.c_int
    dlclose = _libc.dlclose
    dlclose.argtypes, dlclose.restype = (ctypes.c_void_p,), ctypes.c_int
    dlerror = _libc.dlerror
    dlerror.argtypes, dlerror.restype = (), ctypes.c_char_p
    return dlopen, dlinfo, dlclose, dlerror

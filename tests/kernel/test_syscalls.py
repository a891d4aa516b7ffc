"""The raw layer passes values through unchanged; the kernel decides
(docs/reference/linux.md rule 1). Errors carry call/addr/length/errno and pickle."""

from __future__ import annotations

import errno
import pickle
from collections.abc import Callable
from typing import Any

import pytest

from sealkit import is_sealed
from sealkit._os import syscalls
from sealkit.errors import (
    ArgumentError,
    ArgumentTypeError,
    InvalidArgumentError,
    KernelError,
    SealedError,
    UnmappedError,
)
from sealkit.flags import MapFlag, Prot

pytestmark = pytest.mark.kernel

PAGE = 4096
RW = int(Prot.READ | Prot.WRITE)
ANON = int(MapFlag.PRIVATE | MapFlag.ANONYMOUS)
U64 = (1 << 64) - 1


def errno_of(call: Callable[[], object]) -> tuple[int, KernelError]:
    with pytest.raises(KernelError) as info:
        call()
    return info.value.errno, info.value


@pytest.mark.parametrize(
    ("addr", "length", "flags", "expected"),
    [
        (PAGE + 1, PAGE, 0, errno.EINVAL),  # unaligned addr
        (PAGE + 1, 0, 0, errno.EINVAL),  # unaligned even with len 0
        (0, PAGE, 1, errno.EINVAL),  # flags != 0
        (PAGE, U64, 0, errno.EINVAL),  # (size_t)-1 rounds up to 0
        (PAGE, -4095, 0, errno.EINVAL),  # the same, as a negative int
        (U64 - PAGE + 1, 2 * PAGE, 0, errno.EINVAL),  # addr + len wraps
        (PAGE, 1 << 60, 0, errno.ENOMEM),  # huge, no wrap
        (PAGE, PAGE, 0, errno.ENOMEM),  # unmapped page 1
        (0xFFFFFFFFFF600000, PAGE, 0, errno.ENOMEM),  # [vsyscall]
        (-PAGE, PAGE, 0, errno.EINVAL),  # two's complement top page: wraps
    ],
)
def test_mseal_arguments_reach_the_kernel(
    addr: int, length: int, flags: int, expected: int
) -> None:
    got, exc = errno_of(lambda: syscalls.mseal(addr, length, flags))
    assert got == expected, exc
    assert exc.call == "mseal" and exc.addr == addr and exc.length == length
    assert isinstance(exc, InvalidArgumentError if expected == errno.EINVAL else UnmappedError)


def test_mseal_length_zero_is_a_no_op_even_unmapped() -> None:
    syscalls.mseal(0, 0, 0)
    syscalls.mseal(PAGE, 0)  # aligned, unmapped, length 0: 0


def _seal_rounding() -> tuple[bool, bool, bool]:
    base = syscalls.mmap(0, 4 * PAGE, RW, ANON)
    syscalls.mseal(base, 1)  # 1 byte seals page 0
    syscalls.mseal(base + 2 * PAGE, PAGE + 1)  # page + 1 byte seals pages 2 and 3
    return is_sealed(base, PAGE), is_sealed(base + PAGE, PAGE), is_sealed(base + 2 * PAGE, 2 * PAGE)


def test_mseal_rounds_length_up_to_pages(in_child: Callable[..., Any]) -> None:
    assert in_child(_seal_rounding) == (True, False, True)


def test_values_beyond_64_bits_and_wrong_types_never_reach_the_kernel() -> None:
    with pytest.raises(ArgumentError):
        syscalls.mseal(1 << 64, PAGE)
    with pytest.raises(ArgumentError):
        syscalls.munmap(-(1 << 63) - 1, PAGE)
    for bad in ("0", 0.0, None, True, [0]):
        with pytest.raises(ArgumentTypeError):
            syscalls.mseal(bad, PAGE)  # type: ignore[arg-type]
        with pytest.raises(ArgumentTypeError):
            syscalls.mprotect(0, bad, 0)  # type: ignore[arg-type]


def test_other_calls_pass_through() -> None:
    assert errno_of(lambda: syscalls.munmap(PAGE + 1, PAGE))[0] == errno.EINVAL
    assert errno_of(lambda: syscalls.mprotect(PAGE, PAGE, 0))[0] == errno.ENOMEM
    assert errno_of(lambda: syscalls.madvise(PAGE + 7, PAGE, 4))[0] == errno.EINVAL
    assert errno_of(lambda: syscalls.mmap(0, 0, RW, ANON))[0] == errno.EINVAL
    assert errno_of(lambda: syscalls.mremap(PAGE + 1, PAGE, PAGE))[0] == errno.EINVAL
    addr = syscalls.mmap(0, PAGE, RW, ANON)
    assert addr % PAGE == 0
    syscalls.mprotect(addr, PAGE, int(Prot.READ))
    assert syscalls.mincore(addr, PAGE) in (b"\x00", b"\x01")
    syscalls.munmap(addr, PAGE)


def _refused_after_seal() -> tuple[str, int, int | None, int | None, bool]:
    addr = syscalls.mmap(0, PAGE, RW, ANON)
    syscalls.mseal(addr, PAGE)
    try:
        syscalls.munmap(addr, PAGE)
    except SealedError as exc:
        return exc.call, exc.errno, exc.addr, exc.length, isinstance(exc, PermissionError)
    raise AssertionError("munmap of sealed memory succeeded")


def test_sealed_error_carries_call_range_errno(in_child: Callable[..., Any]) -> None:
    call, err, addr, length, is_permission = in_child(_refused_after_seal)
    assert (call, err, length, is_permission) == ("munmap", errno.EPERM, PAGE, True)
    assert addr is not None and addr % PAGE == 0


def test_libc_helpers() -> None:
    version = syscalls.libc_version()
    assert version is None or version[0].isdigit()
    assert syscalls.libc_has_symbol("mmap") is True
    assert syscalls.libc_has_symbol("surely_not_a_libc_symbol_42") is False
    with pytest.raises(ArgumentTypeError):
        syscalls.libc_has_symbol(b"mmap")  # type: ignore[arg-type]
    with pytest.raises(ArgumentError):
        syscalls.libc_has_symbol("")


def test_kernel_errors_from_real_calls_pickle_with_their_context() -> None:
    for call in (
        lambda: syscalls.mseal(PAGE + 1, PAGE),
        lambda: syscalls.mprotect(PAGE, PAGE, 0),
        lambda: syscalls.munmap(PAGE + 1, PAGE),
    ):
        _, exc = errno_of(call)
        copy = pickle.loads(pickle.dumps(exc))
        assert type(copy) is type(exc)
        assert (copy.call, copy.addr, copy.length, copy.errno) == (
            exc.call,
            exc.addr,
            exc.length,
            exc.errno,
        )
        assert str(copy) == str(exc)

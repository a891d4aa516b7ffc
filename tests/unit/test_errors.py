"""Every sealkit exception pickles with its context and subclasses the right builtin."""

from __future__ import annotations

import errno
import pickle

import pytest

from sealkit.errors import (
    AccessDeniedError,
    CutShortError,
    KernelError,
    NotSupportedError,
    ParseError,
    ProcessChangedError,
    ProcessGoneError,
    SealedError,
    SealingDeniedError,
    StateError,
    UnmappedError,
    UnsafeTargetError,
    kernel_error,
)


@pytest.mark.parametrize(
    ("err", "call", "cls"),
    [
        (errno.EPERM, "munmap", SealedError),
        (errno.EPERM, "madvise", SealedError),
        (errno.EPERM, "mseal", SealingDeniedError),
        (errno.ENOMEM, "mseal", UnmappedError),
        (errno.ENOSYS, "mseal", NotSupportedError),
        (errno.EIO, "mmap", KernelError),
    ],
)
def test_kernel_error_classes_pickle(err: int, call: str, cls: type[KernelError]) -> None:
    exc = kernel_error(err, call, 0x7F0000001000, 8192, detail="why")
    assert type(exc) is cls and isinstance(exc, OSError)
    copy = pickle.loads(pickle.dumps(exc))
    assert type(copy) is cls
    assert (copy.errno, copy.call, copy.addr, copy.length, copy.detail) == (
        err,
        call,
        0x7F0000001000,
        8192,
        "why",
    )
    assert str(copy) == str(exc) and "0x7f0000001000, 0x2000" in str(exc)


def test_sealed_error_is_a_permission_error_and_refusals_are_not_oserrors() -> None:
    assert issubclass(SealedError, PermissionError)
    assert issubclass(ProcessChangedError, ProcessGoneError)
    assert str(CutShortError(8, "why")) == "process 8: cut short (why)"
    assert not issubclass(UnsafeTargetError, OSError)
    for exc in (
        UnsafeTargetError("no"),
        StateError("closed"),
        ParseError("bad", 3, "src"),
        ProcessGoneError(5),
        AccessDeniedError(6),
        ProcessChangedError(7),
        CutShortError(8, "the process budget of 2 s ran out"),
    ):
        copy = pickle.loads(pickle.dumps(exc))
        assert type(copy) is type(exc) and str(copy) == str(exc)

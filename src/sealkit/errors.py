"""Exceptions raised by sealkit.

Pure data: no I/O. Every exception pickles (so it crosses process boundaries
from disposable workers) and says *when* it is raised::

    SealkitError (Exception)
    ├── KernelError (OSError)             a system call returned -1; carries call, addr, length, errno
    │   ├── SealedError (PermissionError)     EPERM from a call that sealing blocks
    │   ├── SealingDeniedError (PermissionError)
    │   │                                     EPERM from mseal itself (seccomp, old container profile)
    │   ├── UnmappedError                     ENOMEM: part of the range is not mapped (or no room)
    │   ├── InvalidArgumentError              EINVAL: the kernel rejected an argument
    │   └── NotSupportedError                 ENOSYS / EOPNOTSUPP: the kernel lacks the call
    ├── UnsafeTargetError (ValueError)    sealkit refused before any system call: the target is
    │   │                                 not memory the caller exclusively owns; nothing was sealed
    │   └── TargetRefusedError            sealkit seal --pid refused a running process (a reason
    │                                     code: traced, seccomp, busy...); it was let go as it was
    ├── ArgumentError (ValueError)        a Python-side argument has a bad value
    ├── ArgumentTypeError (TypeError)     a Python-side argument has a bad type
    ├── StateError (RuntimeError)         the object cannot do that in its current state
    │                                     (closed, or sealed: sealed memory lives until exit)
    ├── ProcessGoneError (ProcessLookupError)
    │   │                                 the process exited while sealkit was reading it
    │   └── ProcessChangedError           it replaced its program (exec) while being read,
    │                                     each time sealkit tried: nothing consistent was read
    ├── CutShortError (TimeoutError)      reading a process stopped at a limit (a time budget,
    │                                     a size bound) before the end: nothing is known
    ├── AccessDeniedError (PermissionError)
    │                                     /proc/PID of another user's process is not readable
    └── ParseError (ValueError)           malformed /proc text, trace text or file; carries line

``KernelError`` and its subclasses are ``OSError`` so code that already
catches ``OSError`` keeps working; ``SealedError`` is also a
``PermissionError``. ``UnsafeTargetError`` is deliberately *not* an
``OSError``: the kernel never saw the call.
"""

from __future__ import annotations

import errno as _errno
from os import strerror  # pure: a table lookup, no I/O
from typing import Final

__all__ = [
    "SEAL_ENFORCED_CALLS",
    "AccessDeniedError",
    "ArgumentError",
    "ArgumentTypeError",
    "CutShortError",
    "InvalidArgumentError",
    "KernelError",
    "NotSupportedError",
    "ParseError",
    "ProcessChangedError",
    "ProcessGoneError",
    "SealedError",
    "SealingDeniedError",
    "SealkitError",
    "StateError",
    "TargetRefusedError",
    "UnmappedError",
    "UnsafeTargetError",
    "kernel_error",
]


class SealkitError(Exception):
    """Base of every exception sealkit raises on purpose."""


class KernelError(SealkitError, OSError):
    """A system call failed.

    Attributes: ``call`` (the system call's name), ``addr`` and ``length``
    (the range it was asked to act on, or ``None``), ``errno`` and
    ``strerror`` (as for any ``OSError``), and ``detail`` (why sealkit thinks
    it failed, or ``""``).
    """

    def __init__(
        self,
        errno: int,
        call: str,
        addr: int | None = None,
        length: int | None = None,
        detail: str = "",
    ) -> None:
        OSError.__init__(self, errno, strerror(errno))
        self.call = call
        self.addr = addr
        self.length = length
        self.detail = detail

    def __reduce__(self) -> tuple[object, ...]:
        return (type(self), (self.errno, self.call, self.addr, self.length, self.detail))

    def __str__(self) -> str:
        where = ""
        if self.addr is not None:
            where = f"{self.addr:#x}" if self.addr >= 0 else str(self.addr)
            if self.length is not None:
                where += f", {self.length:#x}"
        name = _errno.errorcode.get(self.errno or 0, str(self.errno))
        text = f"{self.call}({where}): {name} ({self.strerror})"
        if self.detail:
            text += f": {self.detail}"
        return text


class SealedError(KernelError, PermissionError):
    """EPERM from munmap, mmap(MAP_FIXED), mremap, mprotect, pkey_mprotect,
    madvise or brk: the range touches a sealed mapping, and the kernel
    refused. What was already applied before the sealed mapping (mprotect and
    madvise apply partially on Linux 6.12+) stays applied.
    """


class SealingDeniedError(KernelError, PermissionError):
    """EPERM from ``mseal`` itself. Sealing an already-sealed range succeeds,
    so this is never "already sealed": it is a seccomp filter (for example a
    container profile written before mseal existed) or a kernel that
    documents 32-bit as unsupported.
    """


class UnmappedError(KernelError):
    """ENOMEM: some page of the range is not mapped (mseal, mprotect, madvise),
    or there is no room (mmap, mremap growing in place).
    """


class InvalidArgumentError(KernelError):
    """EINVAL: the kernel rejected an argument (unaligned address, bad
    flags, a length that overflows, an advice that does not apply here).
    """


class NotSupportedError(KernelError):
    """ENOSYS or EOPNOTSUPP: the running kernel does not have the call
    (mseal needs a 64-bit Linux 6.10 or later).
    """


class UnsafeTargetError(SealkitError, ValueError):
    """sealkit refused to seal (or otherwise alter) memory before any system
    call was made, because the target is not whole pages that the caller
    exclusively owns. Nothing was changed.
    """


class TargetRefusedError(UnsafeTargetError):
    """Live sealing (:func:`sealkit.sealing.live.seal_process`) refused a
    running process and left it as it was: never stopped, or stopped and let
    go with every register and signal intact, nothing sealed by the attempt
    that gave up (``message`` says when an earlier attempt sealed some
    ranges before a signal interrupted it). ``pid`` is the process id and
    ``reason`` a short code: ``arch``, ``no-mseal``, ``permission``,
    ``traced``, ``seccomp``, ``32-bit``, ``stopped``, ``zombie``,
    ``kernel-thread``, ``gone``, ``busy``, ``no-loader`` or ``self``.
    """

    def __init__(self, pid: int, reason: str, message: str) -> None:
        super().__init__(pid, reason, message)
        self.pid = pid
        self.reason = reason
        self.message = message

    def __str__(self) -> str:
        return f"process {self.pid}: {self.message}"


class ArgumentError(SealkitError, ValueError):
    """A Python-side argument has a value sealkit cannot use."""


class ArgumentTypeError(SealkitError, TypeError):
    """A Python-side argument has a type sealkit cannot use."""


class StateError(SealkitError, RuntimeError):
    """The object cannot do that in its current state. States only move
    forward: once memory is sealed it stays mapped until the process exits.
    """


class ProcessGoneError(SealkitError, ProcessLookupError):
    """The process vanished (exited, or its pid was reaped) while being read.

    ``pid`` is the process id.
    """

    def __init__(self, pid: int | str, message: str = "") -> None:
        super().__init__(pid, message)
        self.pid = pid
        self.message = message or f"process {pid} vanished"

    def __str__(self) -> str:
        return self.message


class ProcessChangedError(ProcessGoneError):
    """The process replaced its program (``execve``) while its address
    space was being read, on every try: what was read belongs to no one
    program, so it is not reported. ``pid`` is the process id.
    """

    def __init__(self, pid: int | str, message: str = "") -> None:
        super().__init__(pid, message or f"process {pid} replaced its program while being read")


class CutShortError(SealkitError, TimeoutError):
    """Reading a process stopped at a limit before the end: a time budget
    ran out, the kernel did not answer in time, or the text grew past a
    size bound. Nothing is known about what was not read (never "not
    sealed"). ``pid`` is the process id, ``reason`` the limit in words.
    """

    def __init__(self, pid: int | str, reason: str) -> None:
        super().__init__(pid, reason)
        self.pid = pid
        self.reason = reason

    def __str__(self) -> str:
        return f"process {self.pid}: cut short ({self.reason})"


class AccessDeniedError(SealkitError, PermissionError):
    """Reading ``/proc/PID`` was refused (another user's process, ptrace
    restrictions). Never evidence that nothing is sealed. ``pid`` is the
    process id.
    """

    def __init__(self, pid: int | str, message: str = "") -> None:
        super().__init__(pid, message)
        self.pid = pid
        self.message = message or f"access to process {pid} denied"

    def __str__(self) -> str:
        return self.message


class ParseError(SealkitError, ValueError):
    """Text (a /proc file, a trace, a scenario) is malformed.

    ``line`` is the 1-based line number, or ``None`` when not line-based;
    ``source`` names where the text came from, when known.
    """

    def __init__(self, message: str, line: int | None = None, source: str | None = None) -> None:
        super().__init__(message, line, source)
        self.message = message
        self.line = line
        self.source = source

    def __str__(self) -> str:
        where = self.source or ""
        if self.line is not None:
            where = f"{where}:{self.line}" if where else f"line {self.line}"
        return f"{where}: {self.message}" if where else self.message


SEAL_ENFORCED_CALLS: Final = frozenset(
    {"munmap", "mmap", "mremap", "mprotect", "pkey_mprotect", "madvise", "process_madvise", "brk"}
)
"""Calls whose EPERM means "sealed" (docs/reference/linux.md rules 5-10)."""

_BY_ERRNO: Final[dict[int, type[KernelError]]] = {
    _errno.ENOMEM: UnmappedError,
    _errno.EINVAL: InvalidArgumentError,
    _errno.ENOSYS: NotSupportedError,
    _errno.EOPNOTSUPP: NotSupportedError,
}


def kernel_error(
    errno: int, call: str, addr: int | None = None, length: int | None = None, detail: str = ""
) -> KernelError:
    """The ``KernelError`` subclass for ``errno`` returned by ``call``."""
    cls: type[KernelError]
    if errno == _errno.EPERM and call in SEAL_ENFORCED_CALLS:
        cls = SealedError
    elif errno == _errno.EPERM and call == "mseal":
        cls = SealingDeniedError
    else:
        cls = _BY_ERRNO.get(errno, KernelError)
    return cls(errno, call, addr, length, detail)

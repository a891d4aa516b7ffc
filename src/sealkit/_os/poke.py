"""Writing this process's memory with ``PTRACE_POKEDATA``, from a helper it forks.

A process cannot ptrace itself, so :func:`poke_self` forks a helper that
attaches to its parent (``PTRACE_SEIZE``, then ``PTRACE_INTERRUPT`` and a
wait for the stop: ``POKEDATA`` needs a stopped tracee), writes the data
word by word, and detaches. The parent lets the helper trace it
(``prctl(PR_SET_PTRACER)``, which matters only under yama's
``ptrace_scope=1``) and waits for the answer on a pipe; the ptrace stop is
invisible to it (its ``read`` is restarted). Nothing is left stopped: a
seized tracee gets no ``SIGSTOP``, and if the helper dies the kernel
detaches it.

:class:`Poker` keeps one helper for many pokes (the kernel executor's
runners use it for the op language's ``poke``: kernel/ptrace.c
``generic_ptrace_pokedata()``, always ``FOLL_FORCE``).
"""

from __future__ import annotations

import contextlib
import ctypes
import errno as _errno
import os
import signal
import struct
from collections.abc import Callable
from typing import Final

from . import syscalls

__all__ = ["Poker", "poke_self"]

PTRACE_PEEKDATA: Final = 2
PTRACE_POKEDATA: Final = 5
PTRACE_DETACH: Final = 17
PTRACE_SEIZE: Final = 0x4206
PTRACE_INTERRUPT: Final = 0x4207
PR_SET_PTRACER: Final = 0x59616D61
WALL: Final = 0x40000000
_M64: Final = (1 << 64) - 1


def _ptrace(request: int, pid: int, addr: int = 0, data: int = 0) -> int:
    return syscalls.errno_call("ptrace", request, pid, addr & _M64, data & _M64)


def _peek(pid: int, addr: int) -> int | None:
    word = ctypes.c_uint64(0)
    # The raw system call stores the word at `data` (the libc wrapper hides this).
    if _ptrace(PTRACE_PEEKDATA, pid, addr, ctypes.addressof(word)) < 0:
        return None
    return word.value


def _poke_as_tracer(pid: int, addr: int, data: bytes) -> int:
    ret = _ptrace(PTRACE_SEIZE, pid)
    if ret < 0:
        return ret
    try:
        ret = _ptrace(PTRACE_INTERRUPT, pid)
        if ret < 0:
            return ret
        os.waitpid(pid, WALL)
        n = len(data)
        if n < 8:
            # A partial word: read the word, change the bytes asked for.
            old = _peek(pid, addr)
            if old is None:
                return -_errno.EIO
            word = bytearray(old.to_bytes(8, "little"))
            word[:n] = data
            return min(_ptrace(PTRACE_POKEDATA, pid, addr, int.from_bytes(word, "little")), 0)
        offsets = list(range(0, n - 7, 8))
        if n % 8:
            offsets.append(n - 8)  # the last word overlaps the one before: same bytes
        for off in offsets:
            value = int.from_bytes(data[off : off + 8], "little")
            ret = _ptrace(PTRACE_POKEDATA, pid, addr + off, value)
            if ret < 0:
                return ret
        return 0
    finally:
        _ptrace(PTRACE_DETACH, pid)


def _read_all(fd: int, size: int) -> bytes:
    out = b""
    while len(out) < size:
        chunk = os.read(fd, size - len(out))
        if not chunk:
            break
        out += chunk
    return out


def _fork_helper(serve: Callable[[int, int], None]) -> tuple[int, int, int]:
    """Fork a ptrace helper for this process; both helpers start here.

    Two pipes: requests to the helper, answers from it. In the helper, the
    parent's ends are closed, ``PR_SET_PDEATHSIG`` makes it die with this
    process, it exits (1) at once if this process already died (it was
    reparented between the fork and the prctl), then runs ``serve(requests,
    answers)`` on its ends and exits: 0 when ``serve`` returns, 1 if anything
    raised (a refused prctl included). Here the helper's ends are closed;
    returns ``(pid, requests, answers)``: the helper's pid, the write end of
    the requests and the read end of the answers. A refused pipe or fork
    (``EMFILE``, ``EAGAIN``) is raised as it came, after closing the
    descriptors already opened.
    """
    fds: list[int] = []
    try:
        fds += os.pipe()
        fds += os.pipe()
        parent = os.getpid()
        pid = os.fork()
    except BaseException:
        for fd in fds:
            os.close(fd)
        raise
    req_r, req_w, res_r, res_w = fds
    if pid == 0:  # the helper
        code = 0
        try:
            os.close(req_w)
            os.close(res_r)
            syscalls.set_parent_death_signal(signal.SIGKILL)
            if os.getppid() != parent:
                os._exit(1)
            serve(req_r, res_w)
        except BaseException:
            code = 1
        finally:
            os._exit(code)
    os.close(req_r)
    os.close(res_w)
    return pid, req_w, res_r


def _ask(requests: int, answers: int, message: bytes) -> int | None:
    """Send ``message`` to a helper and return its answer, or ``None`` when
    the helper died before it answered: its request pipe refused the write
    (``EPIPE``: it died before it read) or its answer was cut short."""
    view = memoryview(message)
    try:
        while view:
            view = view[os.write(requests, view) :]
    except BrokenPipeError:
        return None
    got = _read_all(answers, 8)
    if len(got) != 8:
        return None
    result: int = struct.unpack("<q", got)[0]
    return result


def _end_helper(pid: int, requests: int, answers: int) -> None:
    """End a helper :func:`_fork_helper` started: close this side's pipe ends
    (its next read of a request sees the end of the pipe and it exits) and
    reap it. A process that ignores ``SIGCHLD`` has its children reaped by the
    kernel: ``waitpid`` then waits for the helper's exit and fails with
    ``ECHILD``, which is not an error here."""
    os.close(requests)
    os.close(answers)
    with contextlib.suppress(ChildProcessError):
        os.waitpid(pid, 0)


def _serve_pokes(requests: int, answers: int) -> None:
    """The kept helper's loop: a request is (pid, addr, size) and ``size``
    bytes, the answer is :func:`_poke_as_tracer`'s result; it returns when the
    request pipe closes."""
    while True:
        head = _read_all(requests, 24)
        if len(head) < 24:
            return
        target, addr, size = struct.unpack("<qQQ", head)
        data = _read_all(requests, size)
        os.write(answers, struct.pack("<q", _poke_as_tracer(target, addr, data)))


class Poker:
    """A ptrace helper forked once and kept, serving :meth:`poke` requests
    for the process that made it (and for that process's forked children,
    which inherit the pipes): one fork for many pokes, where
    :func:`poke_self` forks for each. The helper dies with its parent
    (``PR_SET_PDEATHSIG``) or when the request pipe closes."""

    def __init__(self) -> None:
        self.pid = 0
        self._req = -1
        self._res = -1

    def _start(self) -> None:
        self.pid, self._req, self._res = _fork_helper(_serve_pokes)

    def poke(self, addr: int, data: bytes) -> int:
        """As :func:`poke_self`, through the kept helper (started on first use)."""
        if not data:
            return 0
        if not self.pid:
            self._start()
        # Under yama ptrace_scope=1 only a declared tracer may attach to a
        # process that is not its descendant; without yama this is EINVAL.
        syscalls.errno_call("prctl", PR_SET_PTRACER, self.pid, 0, 0, 0)
        request = struct.pack("<qQQ", os.getpid(), addr & _M64, len(data)) + bytes(data)
        result = _ask(self._req, self._res, request)
        if result is None:
            self.close()
            return -_errno.ECHILD  # the helper died before it answered
        return result

    def close(self) -> None:
        """Stop the helper (it exits when its request pipe closes)."""
        if self.pid:
            _end_helper(self.pid, self._req, self._res)
            self.pid = 0


def poke_self(addr: int, data: bytes) -> int:
    """Write ``data`` at ``addr`` of this process with ``PTRACE_POKEDATA`` from
    a forked tracer. Returns 0, ``-EIO`` when a word could not be written
    whole (the words before it were), the ``-errno`` of an attach that
    failed (``-EPERM``: yama or a security module forbids it), or ``-ECHILD``
    when the helper died before it answered."""
    if not data:
        return 0
    me = os.getpid()

    def serve(go: int, answers: int) -> None:
        if not _read_all(go, 1):
            os._exit(1)
        os.write(answers, struct.pack("<q", _poke_as_tracer(me, addr, bytes(data))))

    pid, go_w, res_r = _fork_helper(serve)
    try:
        # Under yama ptrace_scope=1 only a declared tracer may attach to an
        # ancestor; without yama the call is EINVAL and not needed.
        syscalls.errno_call("prctl", PR_SET_PTRACER, pid, 0, 0, 0)
        result = _ask(go_w, res_r, b"g")
    finally:
        _end_helper(pid, go_w, res_r)
        syscalls.errno_call("prctl", PR_SET_PTRACER, 0, 0, 0, 0)
    if result is None:
        return -_errno.ECHILD  # the helper died before it answered
    return result

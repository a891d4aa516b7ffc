"""The small ptrace layer: seize, interrupt, wait, registers, detach (x86_64).

Just what live sealing (:mod:`sealkit.sealing.live`) needs, over the
kernel's ptrace(2) and waitpid(2), and nothing that a debugger would add.
Every request is made through :func:`sealkit._os.syscalls.ptrace_call` (the
syscall module is the only one that loads libc); this module only packs
arguments, decodes wait statuses and turns ``-errno`` into
:class:`PtraceError` with the request's name. Waits use ``os.waitpid`` and
``os.waitid``.

Why not a library from PyPI (``docs/live.md``, "Why a small ptrace layer"):
python-ptrace has no PTRACE_SEIZE or PTRACE_INTERRUPT and attaches with
SIGSTOP, is GPL-2 and unmaintained; libdebug attaches with PTRACE_ATTACH and
detaches by sending SIGSTOP then SIGCONT, which changes the target's signal
and job-control state; both load libc themselves and take about 100 ms to
import. The rest are Python 2, unbuildable, or inject a library into the
target (the opposite of what sealing needs).

A tracer is a *thread* (ptrace(2): "a tracee is attached to a tracer
thread"): every request about a tracee must come from the thread that
attached it, and when that thread exits the kernel detaches all its
tracees (``exit_ptrace``), stopped or not.

Vocabulary (ptrace(2), "Stopped states"): a *stop* is what ``waitpid``
reports for a tracee. :class:`Stop.kind` is one of

* ``"event-stop"``: PTRACE_EVENT_STOP, from PTRACE_INTERRUPT (``sig`` is
  SIGTRAP) or a group-stop (``sig`` is the stop signal); the tracee is inside
  ``get_signal()``, where resuming applies syscall-restart rules as usual;
* ``"signal"``: signal-delivery-stop; ``sig`` was dequeued and is lost unless
  passed back on the next resume or detach;
* ``"syscall"``: syscall-enter or -exit stop (PTRACE_O_TRACESYSGOOD);
* ``"clone"``, ``"exec"``, ``"exit-event"``: PTRACE_EVENT_* stops;
* ``"exited"``: the thread is gone (``sig`` is the killing signal or 0).
"""

from __future__ import annotations

import ctypes
import errno as _errno
import os
import time
from typing import Final, NamedTuple

from ..errors import KernelError
from .syscalls import ptrace_call

__all__ = [
    "EVENT_STOP",
    "OPTIONS",
    "PTRACE_O_EXITKILL",
    "STOP_SIGNALS",
    "PtraceError",
    "Regs",
    "Stop",
    "WaitTimeout",
    "cont",
    "decode",
    "detach",
    "geteventmsg",
    "getregs",
    "interrupt",
    "interrupt_if_traced",
    "seccomp_filter",
    "seize",
    "setoptions",
    "setregs",
    "singlestep",
    "syscall",
    "wait_stop",
]

# include/uapi/linux/ptrace.h, arch/x86/include/uapi/asm/ptrace-abi.h
PTRACE_CONT: Final = 7
PTRACE_SINGLESTEP: Final = 9
PTRACE_GETREGS: Final = 12
PTRACE_SETREGS: Final = 13
PTRACE_DETACH: Final = 17
PTRACE_SYSCALL: Final = 24
PTRACE_GETEVENTMSG: Final = 0x4201
PTRACE_GETSIGINFO: Final = 0x4202
PTRACE_SETOPTIONS: Final = 0x4200
PTRACE_SEIZE: Final = 0x4206
PTRACE_INTERRUPT: Final = 0x4207
PTRACE_SECCOMP_GET_FILTER: Final = 0x420C

PTRACE_O_TRACESYSGOOD: Final = 0x1
PTRACE_O_TRACECLONE: Final = 0x8
PTRACE_O_EXITKILL: Final = 0x100000
OPTIONS: Final = PTRACE_O_TRACESYSGOOD | PTRACE_O_TRACECLONE
"""The options live sealing seizes with: syscall stops marked, new threads traced."""

EVENT_CLONE: Final = 3
EVENT_EXEC: Final = 4
EVENT_EXIT: Final = 6
EVENT_STOP: Final = 128

_WALL: Final = 0x40000000  # __WALL: threads are "clone" children to wait(2)
SIGTRAP: Final = 5
STOP_SIGNALS: Final = frozenset({19, 20, 21, 22})  # SIGSTOP SIGTSTP SIGTTIN SIGTTOU

_NAMES: Final = {
    PTRACE_CONT: "PTRACE_CONT",
    PTRACE_SINGLESTEP: "PTRACE_SINGLESTEP",
    PTRACE_GETREGS: "PTRACE_GETREGS",
    PTRACE_SETREGS: "PTRACE_SETREGS",
    PTRACE_DETACH: "PTRACE_DETACH",
    PTRACE_SYSCALL: "PTRACE_SYSCALL",
    PTRACE_GETEVENTMSG: "PTRACE_GETEVENTMSG",
    PTRACE_GETSIGINFO: "PTRACE_GETSIGINFO",
    PTRACE_SETOPTIONS: "PTRACE_SETOPTIONS",
    PTRACE_SEIZE: "PTRACE_SEIZE",
    PTRACE_INTERRUPT: "PTRACE_INTERRUPT",
    PTRACE_SECCOMP_GET_FILTER: "PTRACE_SECCOMP_GET_FILTER",
}


class PtraceError(KernelError):
    """A ptrace request failed: a :class:`~sealkit.errors.KernelError` whose
    ``call`` is the request's name (``PTRACE_SEIZE``...), with ``tid``."""

    def __init__(self, err: int, request: int | str, tid: int) -> None:
        name = request if isinstance(request, str) else _NAMES.get(request, str(request))
        super().__init__(err, name)
        self.request = name
        self.tid = tid

    def __str__(self) -> str:
        name = _errno.errorcode.get(self.errno or 0, str(self.errno))
        return f"ptrace({self.request}, {self.tid}): {name} ({self.strerror})"

    def __reduce__(self) -> tuple[object, ...]:
        return (PtraceError, (self.errno, self.request, self.tid))


def _call(request: int, tid: int, addr: int = 0, data: int = 0) -> int:
    ret = ptrace_call(request, tid, addr, data)
    if ret < 0:
        raise PtraceError(-ret, request, tid)
    return ret


class Regs(ctypes.Structure):
    """``struct user_regs_struct`` (arch/x86/include/asm/user_64.h), 27 words."""

    _fields_ = [
        (name, ctypes.c_uint64)
        for name in [
            "r15",
            "r14",
            "r13",
            "r12",
            "rbp",
            "rbx",
            "r11",
            "r10",
            "r9",
            "r8",
            "rax",
            "rcx",
            "rdx",
            "rsi",
            "rdi",
            "orig_rax",
            "rip",
            "cs",
            "eflags",
            "rsp",
            "ss",
            "fs_base",
            "gs_base",
            "ds",
            "es",
            "fs",
            "gs",
        ]
    ]

    def copy(self) -> Regs:
        """An independent copy."""
        return Regs.from_buffer_copy(self)

    def as_tuple(self) -> tuple[int, ...]:
        """Every field, in order (for exact comparisons)."""
        return tuple(getattr(self, field[0]) for field in self._fields_)


def seize(tid: int, options: int = OPTIONS) -> None:
    """PTRACE_SEIZE: trace ``tid`` without stopping it and without a signal."""
    _call(PTRACE_SEIZE, tid, 0, options)


def setoptions(tid: int, options: int) -> None:
    """PTRACE_SETOPTIONS on a stopped tracee (replaces every option)."""
    _call(PTRACE_SETOPTIONS, tid, 0, options)


def interrupt(tid: int) -> None:
    """PTRACE_INTERRUPT: ask a seized tracee to stop (an event-stop follows)."""
    _call(PTRACE_INTERRUPT, tid)


def detach(tid: int, sig: int = 0) -> None:
    """PTRACE_DETACH from a stopped tracee; ``sig`` is delivered if it was in a
    signal-delivery-stop (pass back the signal it dequeued)."""
    _call(PTRACE_DETACH, tid, 0, sig)


def cont(tid: int, sig: int = 0) -> None:
    """PTRACE_CONT."""
    _call(PTRACE_CONT, tid, 0, sig)


def singlestep(tid: int, sig: int = 0) -> None:
    """PTRACE_SINGLESTEP: run one instruction (a ``syscall`` runs whole), then
    a SIGTRAP signal-delivery-stop."""
    _call(PTRACE_SINGLESTEP, tid, 0, sig)


def syscall(tid: int, sig: int = 0) -> None:
    """PTRACE_SYSCALL: resume until the next syscall-enter or -exit stop."""
    _call(PTRACE_SYSCALL, tid, 0, sig)


def getregs(tid: int) -> Regs:
    """PTRACE_GETREGS."""
    regs = Regs()
    _call(PTRACE_GETREGS, tid, 0, ctypes.addressof(regs))
    return regs


def setregs(tid: int, regs: Regs) -> None:
    """PTRACE_SETREGS (every general register, ``orig_rax`` included)."""
    _call(PTRACE_SETREGS, tid, 0, ctypes.addressof(regs))


def geteventmsg(tid: int) -> int:
    """PTRACE_GETEVENTMSG (the new thread's id after a clone event)."""
    value = ctypes.c_ulong()
    _call(PTRACE_GETEVENTMSG, tid, 0, ctypes.addressof(value))
    return value.value


def seccomp_filter(tid: int, index: int) -> list[tuple[int, int, int, int]] | None:
    """The classic BPF program of seccomp filter ``index`` of ``tid`` (0 is the
    most recently installed), as ``(code, jt, jf, k)`` rows; ``None`` past the
    last filter. Needs CAP_SYS_ADMIN and a stopped tracee (PtraceError:
    EACCES without it, EMEDIUMTYPE for a filter that is not classic BPF).
    """
    count = ptrace_call(PTRACE_SECCOMP_GET_FILTER, tid, index, 0)
    if count == -_errno.ENOENT:
        return None
    if count < 0:
        raise PtraceError(-count, PTRACE_SECCOMP_GET_FILTER, tid)
    if count > 4096:  # BPF_MAXINSNS: the kernel refuses longer programs
        raise PtraceError(_errno.E2BIG, PTRACE_SECCOMP_GET_FILTER, tid)
    buf = (ctypes.c_uint8 * (8 * count))()
    got = _call(PTRACE_SECCOMP_GET_FILTER, tid, index, ctypes.addressof(buf))
    raw = bytes(buf)
    rows = []
    for i in range(min(got, count)):
        word = raw[8 * i : 8 * i + 8]
        rows.append(
            (
                int.from_bytes(word[0:2], "little"),
                word[2],
                word[3],
                int.from_bytes(word[4:8], "little"),
            )
        )
    return rows


class Stop(NamedTuple):
    """One wait status of a tracee, decoded (see the module docstring)."""

    tid: int
    kind: str
    sig: int
    status: int

    @property
    def group_stop(self) -> bool:
        """An event-stop that is a group-stop (job control), not an interrupt."""
        return self.kind == "event-stop" and self.sig in STOP_SIGNALS


def decode(tid: int, status: int) -> Stop:
    """The :class:`Stop` for a raw ``waitpid`` status of ``tid``."""
    if os.WIFEXITED(status):
        return Stop(tid, "exited", 0, status)
    if os.WIFSIGNALED(status):
        return Stop(tid, "exited", os.WTERMSIG(status), status)
    sig = os.WSTOPSIG(status)
    event = status >> 16
    if event == EVENT_STOP:
        return Stop(tid, "event-stop", sig, status)
    if event == EVENT_CLONE:
        return Stop(tid, "clone", sig, status)
    if event == EVENT_EXEC:
        return Stop(tid, "exec", sig, status)
    if event == EVENT_EXIT:
        return Stop(tid, "exit-event", sig, status)
    if event:
        return Stop(tid, f"event-{event}", sig, status)
    if sig == SIGTRAP | 0x80:
        return Stop(tid, "syscall", SIGTRAP, status)
    return Stop(tid, "signal", sig, status)


class WaitTimeout(TimeoutError):
    """A tracee did not report a stop before the deadline (``tid``)."""

    def __init__(self, tid: int) -> None:
        super().__init__(f"thread {tid} did not stop in time")
        self.tid = tid


def _poll(tid: int, leader_is_child: bool) -> Stop | None:
    if leader_is_child:
        # Peek first: the exit of a process we are also the parent of stays
        # for its parent's own wait (reaping it here would hide its status).
        info = os.waitid(os.P_PID, tid, os.WEXITED | os.WNOHANG | os.WNOWAIT | _WALL)
        if info is None:
            return None
        if info.si_code in (os.CLD_EXITED, os.CLD_KILLED, os.CLD_DUMPED):
            sig = info.si_status if info.si_code != os.CLD_EXITED else 0
            return Stop(tid, "exited", sig, -1)
    try:
        got, status = os.waitpid(tid, _WALL | os.WNOHANG)
    except ChildProcessError:
        return Stop(tid, "exited", 0, -1)  # reaped by someone else: gone
    if got == 0:
        return None
    return decode(tid, status)


def wait_stop(tid: int, deadline: float, *, leader_is_child: bool = False) -> Stop:
    """Wait for the next stop (or exit) of tracee ``tid`` until ``deadline``
    (``time.monotonic()``); :class:`WaitTimeout` after it.

    Polls with ``WNOHANG`` (a blocking wait cannot time out, and a thread in
    uninterruptible sleep may take long to stop): spinning with
    ``sched_yield`` first, as a stop normally follows within microseconds,
    then sleeping in growing steps. ``leader_is_child``: ``tid`` is a process
    this process is the parent of (its exit is peeked, never reaped).
    """
    spins = 0
    pause = 20e-6
    while True:
        stop = _poll(tid, leader_is_child)
        if stop is not None:
            return stop
        if time.monotonic() >= deadline:
            raise WaitTimeout(tid)
        if spins < 2000:
            spins += 1
            os.sched_yield()
        else:
            time.sleep(pause)
            pause = min(pause * 2, 2e-3)


def interrupt_if_traced(tid: int) -> bool:
    """PTRACE_INTERRUPT ``tid`` if this thread traces it; whether it does.
    (A thread created by a traced one is traced from birth, with
    PTRACE_O_TRACECLONE: its PTRACE_SEIZE fails with EPERM, and only the
    tracer may interrupt it.)"""
    return ptrace_call(PTRACE_INTERRUPT, tid) == 0

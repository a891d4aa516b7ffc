"""The stop: every thread attached and stopped, the calls injected, every thread let go.

A :class:`Session` runs on a thread of its own (:func:`run_as_tracer`): the
kernel ties a tracee to the tracer *thread*, and detaches every tracee of a
thread that exits, stopped or not (``exit_ptrace``, kernel/ptrace.c). So
however an attempt ends, nothing of the target stays attached to sealkit:
even a thread that never reached its stop (uninterruptible sleep) is let go
when the session thread returns, its pending interrupt cleared
(``__ptrace_unlink``).

Signals to sealkit are held (blocked) while a session runs: ^C, SIGTERM or
SIGHUP take effect once the target has been let go, milliseconds later,
never between two steps of restoring it. Only SIGKILL cannot be held; the
injecting thread carries ``PTRACE_O_EXITKILL`` while its registers are not
its own, so a SIGKILL of sealkit then kills the target rather than letting
it run on with the injected registers (``docs/live.md``, Limits).
"""

from __future__ import annotations

import contextlib
import errno as _errno
import os
import signal
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from typing import Final, TypeVar

from ..._os import ptrace
from ...errors import ProcessGoneError
from .plan import Busy, Gone
from .preflight import may_trace_anyone, refusal_for_eperm
from .target import Process

__all__ = [
    "Session",
    "SignalArrived",
    "Thread",
    "choose_injector",
    "run_as_tracer",
    "set_fault_hook",
    "signals_held",
    "step_is_clean",
]

NR_MSEAL: Final = 462
USER_CS: Final = 0x33  # __USER_CS: the 64-bit user code segment
_MINUS_ONE: Final = (1 << 64) - 1
RELEASE_WAIT: Final = 10.0
ATTACH_BUDGET = 0.25  # seconds for every thread to stop (a module setting: tests lower it)
"""How long :meth:`Session.release` waits for the injecting thread to come
back from its call (``mseal`` only waits for the target's mmap lock)."""

T = TypeVar("T")


class SignalArrived(Exception):
    """A signal was dequeued on the injecting thread; it was handed back."""


# --- fault injection, for the tests of each safety path ----------------------------------
#
# A hook the tests install in-process through this private API (there is no
# environment variable or option that reaches it, so nothing outside a
# Python caller that imports this module on purpose can trigger it). It is
# called with a point name and an index: "attach" (planned, about to
# attach), "attached" (every thread stopped, nothing changed), "call" (before
# the k-th injected call; k from 0), "injected" (every call made, registers
# not yet restored). It may sleep or raise.
_fault_hook: Callable[[str, int], None] | None = None


def set_fault_hook(hook: Callable[[str, int], None] | None) -> Callable[[str, int], None] | None:
    """Install ``hook`` (None removes it); returns the previous one. Tests only."""
    global _fault_hook
    previous, _fault_hook = _fault_hook, hook
    return previous


def _fault(point: str, index: int = 0) -> None:
    hook = _fault_hook
    if hook is not None:
        hook(point, index)


# --- signals and the tracer thread ---------------------------------------------------------

_HELD_SIGNALS: Final = frozenset(signal.valid_signals()) - {
    signal.SIGKILL, signal.SIGSTOP, signal.SIGSEGV, signal.SIGBUS, signal.SIGFPE,
    signal.SIGILL, signal.SIGTRAP, signal.SIGSYS, signal.SIGABRT, signal.SIGCHLD,
}  # fmt: skip


@contextlib.contextmanager
def signals_held() -> Iterator[None]:
    """Block every catchable asynchronous signal in this thread (threads it
    starts inherit the mask) until the block ends; then they are delivered."""
    old = signal.pthread_sigmask(signal.SIG_BLOCK, _HELD_SIGNALS)
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, old)


def run_as_tracer(fn: Callable[[], T]) -> T:
    """Run ``fn`` on a new thread, with signals held, and return its result
    (or raise its exception) once that thread has exited, and with it every
    ptrace attachment it made."""
    box: list[T] = []
    error: list[BaseException] = []
    tids: list[int] = []

    def body() -> None:
        tids.append(threading.get_native_id())
        try:
            box.append(fn())
        except BaseException as exc:  # handed to the caller below
            error.append(exc)

    with signals_held():
        thread = threading.Thread(target=body, name="sealkit-tracer", daemon=True)
        thread.start()
        thread.join()
        _wait_for_exit(tids[0] if tids else 0)
    if error:
        raise error[0]
    return box[0]


def _wait_for_exit(tid: int) -> None:
    """Wait until thread ``tid`` of this process has exited in the kernel,
    not just finished its Python function: ``join()`` returns before that
    (the thread still needs the GIL to clean up), and until it exits it
    stays the tracer of whatever it did not detach. A new attempt started
    meanwhile finds the target traced, and racing that exit it once got the
    target killed by SIGTRAP (tests/kernel/test_live.py). Sleeping hands the
    thread the GIL; bounded by RELEASE_WAIT."""
    if tid <= 0:
        return
    path = f"/proc/self/task/{tid}"
    deadline = time.monotonic() + RELEASE_WAIT
    pause = 20e-6
    while os.path.exists(path) and time.monotonic() < deadline:
        time.sleep(pause)
        pause = min(pause * 2, 1e-3)


# --- the session ---------------------------------------------------------------------------


class Thread:
    """One thread of the target, as the session sees it."""

    __slots__ = ("deliver", "dirty", "exitkill", "gone", "regs", "saved", "stop", "tid", "where")

    def __init__(self, tid: int) -> None:
        self.tid = tid
        self.stop: ptrace.Stop | None = None
        self.where = "running"  # running | get_signal | syscall | other | gone
        self.deliver = 0  # the signal to pass on detach (one it was stopped for)
        self.regs: ptrace.Regs | None = None
        self.saved: ptrace.Regs | None = None  # set while its registers are not its own
        self.dirty = False
        self.exitkill = False
        self.gone = False


class Session:
    """Every thread of one process, stopped; :meth:`release` always lets go.

    Use from one thread only (the tracer): see the module docstring."""

    def __init__(
        self, process: Process, deadline: float, attach_budget: float | None = None
    ) -> None:
        self.process = process
        self.pid = process.pid
        self.deadline = deadline
        self.attach_budget = ATTACH_BUDGET if attach_budget is None else attach_budget
        self.threads: dict[int, Thread] = {}
        self.leader_is_child = process.ppid() == os.getpid()
        self.started = 0.0
        self.ended = 0.0
        self.notes: list[str] = []
        self.phases: list[tuple[str, float]] = []  # (what, seconds since the last mark)
        self._last = 0.0

    def mark(self, what: str) -> None:
        now = time.perf_counter()
        self.phases.append((what, now - self._last))
        self._last = now

    # attach

    def _wait(self, th: Thread, deadline: float) -> ptrace.Stop:
        stop = ptrace.wait_stop(
            th.tid, deadline, leader_is_child=self.leader_is_child and th.tid == self.pid
        )
        self._record(th, stop)
        return stop

    def _record(self, th: Thread, stop: ptrace.Stop) -> None:
        th.stop = stop
        if stop.kind == "exited":
            th.gone = True
            th.where = "gone"
            if th.tid == self.pid:
                raise Gone()
        elif stop.kind in ("event-stop", "signal"):
            th.where = "get_signal"
            if stop.kind == "signal":
                th.deliver = stop.sig
        elif stop.kind == "syscall":
            th.where = "syscall"
        else:
            th.where = "other"

    def attach(self) -> None:
        """Seize and interrupt every thread, until every listed one is stopped.

        A thread that does not stop within the attach budget makes the
        attempt :class:`Busy` (the others are let go by :meth:`release`, that
        one when the tracer thread exits)."""
        self.started = self._last = time.perf_counter()
        deadline = min(self.deadline, time.monotonic() + self.attach_budget)
        for _round in range(1000):
            tids = self.process.tasks()
            if self.pid not in tids:
                raise Gone()
            new = [t for t in tids if t not in self.threads]
            if not new and all(th.where != "running" for th in self.threads.values()):
                return
            for tid in new:
                self._seize(tid)
                if tid == self.pid and self.process.exited():
                    # The process that was checked is gone: the pid may now
                    # name another one, which must not be touched further.
                    raise Gone()
            for th in list(self.threads.values()):
                if th.where != "running":
                    continue
                try:
                    stop = self._wait(th, deadline)
                except ptrace.WaitTimeout:
                    raise Busy(
                        f"thread {th.tid} did not stop within {self.attach_budget * 1e3:g} ms "
                        "(uninterruptible sleep?)"
                    ) from None
                if stop.kind == "clone":
                    child = ptrace.geteventmsg(th.tid)
                    if child and child not in self.threads:
                        self.threads[child] = Thread(child)  # starts with an event-stop
                if stop.kind == "exec":
                    raise Busy("the process is executing a new program")
        raise Busy("threads keep appearing")

    def _seize(self, tid: int) -> None:
        th = Thread(tid)
        try:
            ptrace.seize(tid)
        except ptrace.PtraceError as exc:
            if exc.errno == _errno.ESRCH:
                return  # exited meanwhile
            if exc.errno == _errno.EPERM and tid != self.pid and ptrace.interrupt_if_traced(tid):
                self.threads[tid] = th  # traced from birth (a clone event): ours, interrupted
                return
            if exc.errno == _errno.EPERM:
                refusal = refusal_for_eperm(self.process, tid)
                if refusal.reason == "permission" and may_trace_anyone():
                    # With CAP_SYS_PTRACE, ptrace_attach()'s lasting EPERMs are
                    # named above (a tracer, Yama); what is left passes: a
                    # thread already exiting (task->exit_state) while the
                    # process executes a new program. Retried until --timeout.
                    raise Busy(f"thread {tid}: PTRACE_SEIZE said EPERM (exiting?)") from None
                raise refusal from None
            raise
        self.threads[tid] = th
        try:
            ptrace.interrupt(tid)
        except ptrace.PtraceError as exc:
            if exc.errno != _errno.ESRCH:
                raise

    def drop_strangers(self) -> None:
        """Let go of any seized thread that is not (or no longer) one of the
        target's: a thread id read from ``task/`` may have been reused by
        another process between the listing and the seize."""
        mine = set(self.process.tasks())
        for tid, th in list(self.threads.items()):
            if tid in mine or th.gone:
                continue
            with contextlib.suppress(ptrace.PtraceError):
                ptrace.detach(tid, th.deliver)
            del self.threads[tid]

    # inject

    def to_get_signal_stop(self, th: Thread) -> None:
        """Bring ``th`` to a stop inside get_signal(), where resuming runs the
        kernel's syscall-restart logic on the registers as they are then."""
        for _ in range(8):
            if th.gone or th.where == "get_signal":
                return
            if th.where == "running":
                ptrace.interrupt(th.tid)
                self._wait(th, time.monotonic() + RELEASE_WAIT)
                continue
            ptrace.interrupt(th.tid)
            ptrace.cont(th.tid, 0)
            th.where = "running"
            self._wait(th, time.monotonic() + RELEASE_WAIT)
        raise RuntimeError(f"thread {th.tid} did not reach a stop in get_signal()")

    def call(
        self, th: Thread, insn: int, nr: int, args: tuple[int, int, int], *, step: bool
    ) -> int:
        """One system call ``nr(*args)`` made by ``th`` at ``insn``; its result
        (``-errno`` on failure). ``th`` keeps the injected registers until
        :meth:`release` restores its own.

        ``step``: PTRACE_SINGLESTEP over the ``syscall`` instruction (one stop
        per call, a SIGTRAP that is ours and suppressed); else PTRACE_SYSCALL
        from syscall-enter to syscall-exit (two stops, no signal at all).
        Either way ``orig_rax`` is -1 in the registers the thread runs with,
        so the kernel never applies syscall restart to them.
        """
        if th.saved is None:
            if th.regs is None or th.where != "get_signal" or th.deliver:
                raise RuntimeError(f"thread {th.tid} is not stopped where it can be injected")
            th.saved = th.regs.copy()
        if not th.exitkill:
            ptrace.setoptions(th.tid, ptrace.OPTIONS | ptrace.PTRACE_O_EXITKILL)
            th.exitkill = True
        regs = th.saved.copy()
        regs.orig_rax = _MINUS_ONE
        regs.rip, regs.rax = insn, nr
        regs.rdi, regs.rsi, regs.rdx = args
        ptrace.setregs(th.tid, regs)
        th.dirty = True
        if step:
            ret = self._step(th, insn, nr)
        else:
            self._resume_syscall(th)  # to syscall-enter
            entered = ptrace.getregs(th.tid)
            if entered.orig_rax != nr or entered.rip != insn + 2:
                raise RuntimeError(
                    f"thread {th.tid} entered syscall {entered.orig_rax} at "
                    f"{entered.rip:#x}, not the injected one"
                )
            self._resume_syscall(th)  # to syscall-exit
            ret = ptrace.getregs(th.tid).rax
        return ret - (1 << 64) if ret >= 1 << 63 else ret

    def _step(self, th: Thread, insn: int, nr: int) -> int:
        for _ in range(8):
            ptrace.singlestep(th.tid, 0)  # 0: our previous SIGTRAP is not delivered
            th.where = "running"
            stop = self._wait(th, time.monotonic() + RELEASE_WAIT)
            if stop.kind == "signal" and stop.sig == ptrace.SIGTRAP:
                regs = ptrace.getregs(th.tid)
                if regs.rip == insn + 2 and regs.orig_rax == nr:
                    th.deliver = 0  # the step's own trap: never the target's
                    value: int = regs.rax
                    return value
                raise SignalArrived(stop.sig)  # a SIGTRAP of the target's own
            if stop.kind == "signal":
                raise SignalArrived(stop.sig)
            if stop.kind == "event-stop" and not stop.group_stop:
                continue  # a leftover PTRACE_INTERRUPT trap: step again
            raise RuntimeError(f"unexpected stop while injecting: {stop}")
        raise RuntimeError(f"thread {th.tid} keeps stopping before the injected call")

    def _resume_syscall(self, th: Thread) -> ptrace.Stop:
        for _ in range(8):
            ptrace.syscall(th.tid, 0)
            th.where = "running"
            stop = self._wait(th, time.monotonic() + RELEASE_WAIT)
            if stop.kind == "syscall":
                return stop
            if stop.kind == "signal":
                raise SignalArrived(stop.sig)
            if stop.kind == "event-stop" and not stop.group_stop:
                continue  # a leftover PTRACE_INTERRUPT trap: go on
            raise RuntimeError(f"unexpected stop while injecting: {stop}")
        raise RuntimeError(f"thread {th.tid} keeps stopping before the injected call")

    # release

    def release(self) -> None:
        """Restore and detach every stopped thread; never raises for a thread
        that is gone. Runs on every path (the caller's ``finally``). A thread
        that never stopped cannot be detached (PTRACE_DETACH needs a stopped
        tracee): the tracer thread's exit lets it go."""
        errors: list[str] = []
        order = sorted(self.threads.values(), key=lambda th: th.dirty)  # the injector last
        for th in order:
            if th.gone:
                continue
            try:
                if th.dirty and th.saved is not None:
                    self.to_get_signal_stop(th)
                    if not th.gone:
                        ptrace.setregs(th.tid, th.saved)
                        back = ptrace.getregs(th.tid).as_tuple()
                        if back != th.saved.as_tuple():
                            errors.append(f"thread {th.tid}: registers read back differ")
                            continue  # keep EXITKILL: better killed than run corrupted
                        th.dirty = False
                        ptrace.setoptions(th.tid, ptrace.OPTIONS)
                        th.exitkill = False
                elif th.where == "running":
                    continue  # never stopped: let go when the tracer thread exits
                if not th.gone:
                    ptrace.detach(th.tid, th.deliver)
                    th.where = "detached"
            except (Gone, ProcessGoneError):
                th.gone = True
            except ptrace.PtraceError as exc:
                if exc.errno == _errno.ESRCH:
                    th.gone = True  # died (SIGKILL) while stopped
                else:
                    errors.append(str(exc))
            except Exception as exc:  # keep going: every other thread must be let go
                errors.append(f"thread {th.tid}: {exc}")
        self.ended = time.perf_counter()
        self.notes.extend(errors)


def choose_injector(live: Sequence[Thread]) -> Thread | None:
    """A thread stopped in get_signal() by our interrupt (not for a signal it
    must be given, not in a group-stop): its registers can be replaced and
    restored with syscall restart intact. The leader first."""
    for th in sorted(live, key=lambda t: t.tid):
        if (
            th.where == "get_signal"
            and not th.deliver
            and th.stop is not None
            and th.stop.kind == "event-stop"
            and not th.stop.group_stop
        ):
            return th
    return None


_SIGTRAP_BIT: Final = 1 << (signal.SIGTRAP - 1)


def step_is_clean(status: dict[str, str]) -> bool:
    """Whether single-stepping this thread leaves no trace: the kernel raises
    the step's SIGTRAP with force_sig_fault(), which resets the handler to
    SIG_DFL and unblocks SIGTRAP when the thread blocks or ignores it
    (kernel/signal.c force_sig_info_to_task). Then PTRACE_SYSCALL is used,
    whose stops are not signals (two stops per call instead of one)."""
    try:
        blocked = int(status.get("SigBlk", "0"), 16)
        ignored = int(status.get("SigIgn", "0"), 16)
    except ValueError:
        return False
    return not (blocked | ignored) & _SIGTRAP_BIT

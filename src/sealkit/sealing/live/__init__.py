"""Seal a process that is already running (``sealkit seal --pid``).

:func:`seal_process` does for another, running process what
:func:`sealkit.harden` does for the caller: it seals the text, read-only
data and RELRO (``level="code"``) or the whole range (``level="all"``) of
every ELF object the target's dynamic loader has mapped, with the planner
of ``harden()`` and therefore its rules (exact segment ranges, never
writable and executable, never an object with text relocations, each range
checked against the target's smaps, skip and report what does not fit).
The differences:

* The objects come from the target's own ``link_map`` (``r_debug.r_map``,
  found through ``DT_DEBUG`` of the executable), read through
  ``/proc/PID/mem``, and the program headers from the ELF header each
  object has mapped.
* The target makes the ``mseal`` calls itself: every thread is stopped with
  ``PTRACE_SEIZE`` + ``PTRACE_INTERRUPT``; one thread is pointed at an
  existing ``syscall`` instruction of its vDSO with ``rax=462`` and stepped
  over it, once per run of adjacent ranges; then every register is
  restored and every thread let go; then smaps is checked.
* Nothing happens while the loader is changing: ``r_state`` of every
  namespace must be ``RT_CONSISTENT``, glibc's loader lock free (no thread
  inside ``dlopen`` or ``dlclose``), no thread running the loader's code,
  the loader's list and the planned mappings as planned; otherwise sealkit
  lets the target go, waits, and tries again until ``timeout``.

The target is left as it was apart from the seals: registers (``orig_rax``
included, so an interrupted system call restarts or returns EINTR exactly
as after a debugger attach and detach), signal mask and dispositions (never
touched), pending signals (a signal the kernel dequeues on the injecting
thread ends the injection at once: the thread gets its registers back and
the signal, where the kernel dequeued it, and sealkit starts over). Signals
to sealkit are held while the target is stopped. Refusals are one line each
(:class:`~sealkit.errors.TargetRefusedError`, with a ``reason``).

Where each part lives: :mod:`.target` (reading the running process: pinned
/proc, memory, the loader and its lock), :mod:`.plan` (the plan made while
it runs, and the checks after), :mod:`.preflight` (refusals, the seccomp
proof), :mod:`.session` (the stop), :mod:`._bpf` (a seccomp BPF
evaluator), :mod:`.report` (what is returned). :func:`seal_process` is here.
Details and limits: ``docs/live.md``.
"""

from __future__ import annotations

import errno as _errno
import signal
import time
from typing import Final, NamedTuple, NoReturn

from ..._os import ptrace
from ...errors import (
    AccessDeniedError,
    ArgumentError,
    ArgumentTypeError,
    ProcessGoneError,
    TargetRefusedError,
)
from ..hardening.plan import LEVELS
from ..hardening.report import ObjectReport
from . import session as _session
from .plan import STATIC, Busy, Gone, Plan, apply_results, layout_lines, make_plan, verify
from .preflight import check_seccomp, preflight
from .report import LiveReport, MsealCall
from .target import RT_STATES, Loader, Process, Unreadable

__all__ = ["LEVELS", "MAX_TIMEOUT", "LiveReport", "MsealCall", "seal_process"]

MAX_TIMEOUT: Final = 3600.0


class _Attempt(NamedTuple):
    plan: Plan
    calls: list[MsealCall]
    threads: int
    notes: list[str]
    phases: list[tuple[str, float]]


def seal_process(
    pid: int,
    level: str = "code",
    *,
    system: bool = False,
    dry_run: bool = False,
    timeout: float = 5.0,
) -> LiveReport:
    """Seal the loaded code of the running process ``pid`` (see the module
    docstring); ``system`` also seals ``[vdso]`` and ``[vvar]``; ``dry_run``
    plans and reports without stopping the target; ``timeout`` bounds the
    retries while the loader is busy.

    Raises :class:`~sealkit.errors.TargetRefusedError` for every refusal
    (the target left as it was), including a loader that stays busy for
    ``timeout`` seconds (``busy``) and a process that exits (``gone``);
    :class:`~sealkit.errors.ArgumentError` /
    :class:`~sealkit.errors.ArgumentTypeError` for bad arguments.
    """
    if isinstance(pid, bool) or not isinstance(pid, int):
        raise ArgumentTypeError(f"pid must be an int, not {type(pid).__name__}")
    if pid <= 0:
        raise ArgumentError(f"pid must be positive, not {pid}")
    if not isinstance(level, str):
        raise ArgumentTypeError(f"level must be a str, not {type(level).__name__}")
    if level not in LEVELS:
        raise ArgumentError(f"level must be one of {', '.join(map(repr, LEVELS))}, not {level!r}")
    for name, flag in (("system", system), ("dry_run", dry_run)):
        if not isinstance(flag, bool):
            raise ArgumentTypeError(f"{name} must be a bool, not {type(flag).__name__}")
    if isinstance(timeout, bool) or not isinstance(timeout, int | float):
        raise ArgumentTypeError(f"timeout must be a number, not {type(timeout).__name__}")
    if not 0 < timeout <= MAX_TIMEOUT:
        raise ArgumentError(f"timeout must be above 0 and at most {MAX_TIMEOUT:.0f} seconds")
    started = time.perf_counter()
    deadline = time.monotonic() + timeout
    with Process(pid) as process:
        try:
            status = preflight(process, dry_run)
            comm = status.get("Name", "?")
            images = 0
            pause = 0.001
            while True:
                # Memory first, then what is read about it (auxv, maps): a
                # program executed in between shows as image_gone().
                if process.image_gone():
                    images += 1
                process.open_memory()
                try:
                    loader = Loader(process)
                    why = loader.locate(process.vmas(smaps=False))
                    if why and time.monotonic() + pause < deadline and process.alive():
                        # A program that has just been executed has no loader
                        # state yet (DT_DEBUG unset until ld.so starts it):
                        # wait for it as for a busy loader.
                        time.sleep(pause)
                        pause = min(pause * 2, 0.05)
                        continue
                    if why and images:
                        raise TargetRefusedError(
                            pid, "busy", f"it executed a new program {images} times while being "
                            f"sealed, for as long as allowed, and the last one is not ready: {why}",
                        )  # fmt: skip
                    if why:
                        _new_image_or(process, TargetRefusedError(
                            pid, "no-loader", f"cannot find the dynamic loader's state: {why}"
                        ))  # fmt: skip
                    if dry_run:
                        return _dry_run(process, loader, comm, level, system, started)
                    return _seal(process, loader, comm, level, system, deadline, started)
                except _NewImage:  # counted at the top of the loop
                    if time.monotonic() >= deadline:
                        raise TargetRefusedError(
                            pid, "busy", f"it executed a new program {images + 1} times while being "
                            "sealed, for as long as allowed; the program it runs now is not sealed",
                        ) from None  # fmt: skip
        except ProcessGoneError:
            raise TargetRefusedError(pid, "gone", "the process exited") from None
        except AccessDeniedError as exc:
            raise TargetRefusedError(pid, "permission", f"{exc}") from None


class _NewImage(Exception):
    """The process executed a new program: start again with its new memory."""


def _new_image_or(process: Process, exc: BaseException) -> NoReturn:
    """Raise :class:`_NewImage` if the process has executed a new program
    since its memory was opened (what failed was reading the old one), else
    ``exc``."""
    if process.image_gone() and process.alive():
        raise _NewImage() from None
    raise exc


def _dry_run(
    process: Process, loader: Loader, comm: str, level: str, system: bool, started: float
) -> LiveReport:
    try:
        plan = make_plan(process, loader, level, system)
    except Busy as exc:
        _new_image_or(process, TargetRefusedError(process.pid, "busy", str(exc)))
    except Gone:
        raise TargetRefusedError(process.pid, "gone", "the process exited") from None
    except TargetRefusedError as exc:
        _new_image_or(process, exc)
    if process.image_gone():
        _new_image_or(process, TargetRefusedError(process.pid, "gone", "the process exited"))
    return LiveReport(
        process.pid, comm, level, system, True, tuple(plan.reports), tuple(plan.calls),
        len(process.tasks()), (), (), False, (), plan.state, plan.lock.note,
        time.perf_counter() - started,
    )  # fmt: skip


def _seal(
    process: Process,
    loader: Loader,
    comm: str,
    level: str,
    system: bool,
    deadline: float,
    started: float,
) -> LiveReport:
    pid = process.pid
    retries: list[str] = []
    stops: list[float] = []
    earlier: list[MsealCall] = []  # made by attempts a signal cut short: they stay sealed
    unreadable = 0
    pause = 0.001
    while True:
        try:
            try:
                attempt = _attempt(process, loader, level, system, deadline, stops, earlier)
            except ptrace.PtraceError as exc:
                if exc.errno == _errno.ESRCH and not process.alive():
                    raise Gone() from None
                raise
            break
        except Busy as exc:
            if process.image_gone() and process.alive():
                raise _NewImage() from None
            retries.append(str(exc))
        except TargetRefusedError as exc:
            # PTRACE_SEIZE answers EPERM to a thread caught in another
            # thread's execve; a new program is planned again, not refused.
            if exc.reason not in ("no-loader", "permission"):
                raise
            if process.image_gone() and process.alive():
                raise _NewImage() from None
            if exc.reason != "permission" and unreadable < 2 and process.alive():
                # The text with the syscall instruction read as nothing in
                # the same image: seen once in many runs against a process
                # executing every few milliseconds (an address space being
                # replaced reads empty before the pid's memory file says
                # so). Planned again twice; a third time is the answer.
                unreadable += 1
                retries.append(f"{exc.message}; planned again")
                continue
            raise
        except _session.SignalArrived as exc:
            retries.append(
                f"signal {signal.Signals(exc.args[0]).name} arrived; handed back to the target"
            )
        except Gone:
            raise TargetRefusedError(pid, "gone", "the process exited while being sealed") from None
        if time.monotonic() + pause >= deadline:
            kept = (
                f"; {len(earlier)} ranges sealed by an attempt a signal cut short stay sealed"
                if earlier
                else ""
            )
            raise TargetRefusedError(
                pid, "busy", f"gave up after {len(retries)} tries in the time allowed "
                f"(the last one sealed nothing{kept}): {retries[-1]}"
            )  # fmt: skip
        time.sleep(pause)
        pause = min(pause * 2, 0.05)

    try:
        after = process.vmas(smaps=True)
        if not process.alive():  # a zombie's smaps reads empty: nothing to verify
            raise TargetRefusedError(pid, "gone", "")
    except TargetRefusedError:
        raise TargetRefusedError(pid, "gone", "the process exited just after sealing") from None
    if process.image_gone():
        # It executed a new program right after the stop: what was sealed is
        # gone with the old one, and the new one is sealed from scratch.
        raise _NewImage()
    plan = attempt.plan
    problems = attempt.notes + verify(attempt.calls, plan.smaps, after)
    reports: list[ObjectReport] = apply_results(plan.reports, attempt.calls)
    return LiveReport(
        pid, comm, level, system, False, tuple(reports), tuple(attempt.calls), attempt.threads,
        tuple(stops), tuple(retries), not problems, tuple(problems), plan.state, plan.lock.note,
        time.perf_counter() - started, tuple(attempt.phases),
    )  # fmt: skip


def _attempt(
    process: Process,
    loader: Loader,
    level: str,
    system: bool,
    deadline: float,
    stops: list[float],
    earlier: list[MsealCall],
) -> _Attempt:
    # Plan while the target runs: reading headers and planning cost
    # milliseconds. Inside the stop, only what could have changed since is
    # read again.
    pid = process.pid
    if process.state() == "T":
        # A job-control stop began meanwhile (a SIGSTOP handed back to the
        # target by an earlier attempt, or sent by someone): never resume it.
        raise TargetRefusedError(
            pid, "stopped", "stopped by job control (state T) while being sealed; nothing sealed "
            "in the last attempt; continue it (SIGCONT) and run sealkit again",
        )  # fmt: skip
    plan = make_plan(process, loader, level, system)
    if plan.state not in ("RT_CONSISTENT", STATIC):
        raise Busy(f"the loader is mid-change (r_state {plan.state})")
    if plan.lock.addr and plan.loader_bytes is not None:
        owner = plan.lock.held_by(plan.loader_bytes[-20:])
        if owner is not None:
            raise Busy(_lock_busy(owner))
    for tid in process.tasks():
        if process.task_state(tid) == "D":
            raise Busy(f"thread {tid} is in uninterruptible sleep (D)")
    return _session.run_as_tracer(lambda: _stop(process, loader, plan, deadline, stops, earlier))


def _lock_busy(owner: int) -> str:
    who = f"thread {owner}" if owner > 0 else "a thread"
    return f"{who} is inside dlopen or dlclose (glibc's loader lock is held)"


def _stop(
    process: Process,
    loader: Loader,
    plan: Plan,
    deadline: float,
    stops: list[float],
    earlier: list[MsealCall],
) -> _Attempt:
    """The stop itself, on the tracer thread."""
    pid = process.pid
    session = _session.Session(process, deadline)
    try:
        _session._fault("attach")
        session.attach()
        session.drop_strangers()
        session.mark("attach")
        _session._fault("attached")
        live = [th for th in session.threads.values() if not th.gone]
        for th in live:
            th.regs = ptrace.getregs(th.tid)
            if th.regs.cs != _session.USER_CS:
                raise TargetRefusedError(
                    pid, "32-bit", f"thread {th.tid} runs 32-bit code (cs={th.regs.cs:#x})"
                )
            if th.stop is not None and th.stop.group_stop:
                raise Busy("the process is entering a job-control stop")
        _check_loader(process, loader, plan)
        for th in live:
            assert th.regs is not None
            if any(lo <= th.regs.rip < hi for lo, hi in plan.loader_text):
                raise Busy(f"thread {th.tid} is running the dynamic loader's code")
        session.mark("loader check")
        try:
            raw = process.maps()
        except ProcessGoneError:
            raise Gone() from None
        if raw != plan.raw_maps and layout_lines(raw, plan.watched) != plan.lines:
            raise Busy("the mappings of planned ranges changed since planned")
        calls = plan.calls
        if calls:
            injector = _session.choose_injector(live)
            if injector is None:
                # Every thread is in another kind of stop (a clone event):
                # bring one into get_signal() with its own registers.
                injector = live[0]
                session.to_get_signal_stop(injector)
                if injector.deliver:
                    raise Busy(f"thread {injector.tid} is receiving signal {injector.deliver}")
                injector.regs = ptrace.getregs(injector.tid)
            status = process.status(injector.tid)
            if status.get("Seccomp") == "1":  # entered since the preflight: per thread
                raise TargetRefusedError(
                    pid, "seccomp", f"thread {injector.tid} runs in seccomp strict mode: a call "
                    "to mseal would kill the process",
                )  # fmt: skip
            if status.get("Seccomp") == "2":
                assert injector.regs is not None
                check_seccomp(pid, injector.tid, plan.insn, injector.regs, calls)
            step = _session.step_is_clean(status)
            session.mark("maps check, seccomp")
            results: list[int] = []
            try:
                for k, call in enumerate(calls):
                    _session._fault("call", k)
                    args = (call.start, call.size, 0)
                    results.append(
                        session.call(injector, plan.insn, _session.NR_MSEAL, args, step=step)
                    )
            except _session.SignalArrived:
                earlier.extend(c for c, r in zip(calls, results, strict=False) if r == 0)
                raise
            _session._fault("injected")
            session.mark(f"{len(calls)} calls ({'step' if step else 'syscall'})")
            calls = [c._replace(result=r) for c, r in zip(calls, results, strict=True)]
        return _Attempt(plan, calls, len(live), session.notes, session.phases)
    finally:
        session.release()
        session.mark("release")
        stops.append(session.ended - session.started)


def _check_loader(process: Process, loader: Loader, plan: Plan) -> None:
    """Inside the stop: the loader is as planned and idle. One batched read
    of the r_debug and link_map heads (and the loader lock); equal bytes
    mean the same objects, still RT_CONSISTENT; otherwise a full walk says
    what changed."""
    if loader.static:
        return
    got = process.read_spans(plan.loader_spans)
    if got is None or got != plan.loader_bytes:
        try:
            namespaces, nodes = loader.walk()
        except Unreadable as exc:
            raise Busy(f"the loader's list is unreadable: {exc}") from None
        for ns in namespaces:
            if ns.state != 0:
                raise Busy(
                    f"the loader is mid-change (r_state {RT_STATES.get(ns.state, ns.state)})"
                )
        if nodes != plan.nodes:
            raise Busy("the loader's list of objects changed since planned")
    if plan.lock.addr:
        data = got[-20:] if got is not None else process.read_spans([(plan.lock.addr, 20)])
        if data is None:
            raise Busy("the loader lock is unreadable")
        owner = plan.lock.held_by(data)
        if owner is not None:
            raise Busy(_lock_busy(owner))

"""Live sealing against real processes: what is sealed, and that the target is
left exactly as it was (registers, blocking calls, signals, threads) on every
path, including errors, a dying target, a reused pid, signals to sealkit and
SIGKILL of sealkit. The C targets are in tests/targets/."""

from __future__ import annotations

import ctypes
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from sealkit._os import procfs, ptrace
from sealkit.errors import TargetRefusedError
from sealkit.sealing.live import seal_process, session
from sealkit.sealing.live.plan import covered
from sealkit.sealing.live.target import Memory, Process, find_syscall_insn
from tests.conftest import python_env
from tests.live_support import CTargets, Spawn, Target, thread_states, wait_until

pytestmark = pytest.mark.kernel


def sealed_ranges(pid: int) -> list[tuple[int, int]]:
    return [(v.start, v.end) for v in procfs.read_smaps(pid, counters=False) if v.sealed]


def blocked_in(pid: int, nr: int) -> bool:
    """The process is blocked in system call ``nr`` (/proc/PID/syscall)."""
    try:
        return Path(f"/proc/{pid}/syscall").read_text().split()[0] == str(nr)
    except (OSError, IndexError):
        return False


@contextmanager
def fault(hook: Callable[[str, int], None]) -> Iterator[None]:
    previous = session.set_fault_hook(hook)
    try:
        yield
    finally:
        session.set_fault_hook(previous)


def pause_at(point: str, seconds: float, index: int = 0) -> Callable[[str, int], None]:
    def hook(at: str, k: int) -> None:
        if at == point and k == index:
            time.sleep(seconds)

    return hook


def later(seconds: float, *argv: str) -> subprocess.Popen[bytes]:
    """Run ``argv`` after ``seconds``, in the background (signals sent mid-stop)."""
    return subprocess.Popen(["sh", "-c", f'sleep {seconds}; exec "$@"', "sh", *argv])


def inject(pid: int, nr: int, args: tuple[int, int, int], *, step: bool = True) -> int:
    """Make ``pid`` call ``nr(*args)`` through the same door sealkit uses."""
    with Process(pid) as process:
        vmas = procfs.read_maps(pid)
        insn = find_syscall_insn(Memory(process), vmas, None)
        stop = session.Session(process, time.monotonic() + 5)
        try:
            stop.attach()
            th = stop.threads[pid]
            th.regs = ptrace.getregs(th.tid)
            return stop.call(th, insn, nr, args, step=step)
        finally:
            stop.release()


# --- what gets sealed --------------------------------------------------------------------


def test_seals_the_planned_ranges_and_nothing_else(c_targets: CTargets, spawn: Spawn) -> None:
    target = spawn([c_targets["sleeper"], "nanosleep", "30"])
    assert sealed_ranges(target.pid) == []
    plan = seal_process(target.pid, dry_run=True)
    assert plan.stopped_seconds == () and plan.calls
    assert sealed_ranges(target.pid) == [], "a dry run sealed something"
    report = seal_process(target.pid)
    assert report.ok and report.verified, report.problems
    assert [(c.start, c.end) for c in report.calls] == [(c.start, c.end) for c in plan.calls]
    assert all(c.result == 0 for c in report.calls)
    sealed = sealed_ranges(target.pid)
    for call in report.calls:
        assert covered(sealed, call.start, call.end) == call.end
    for lo, hi in sealed:
        assert covered([(c.start, c.end) for c in report.calls], lo, hi) == hi
    libc = [o for o in report.objects if "libc.so" in o.path]
    assert {"text", "rodata", "relro"} <= {r.kind for o in libc for r in o.sealed}
    assert not any(r.kind in ("data", "bss") for o in report.objects for r in o.sealed)
    assert report.loader_lock == "checked (glibc 2.36)" or report.loader_lock.startswith("checked")
    assert target.let_go()


def test_a_dry_run_makes_no_ptrace_request(
    c_targets: CTargets, spawn: Spawn, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The dry run reads /proc only: not one ptrace request (so the target
    is never stopped), counted at the one function every request goes
    through; the same counter sees the requests of a real seal."""
    target = spawn([c_targets["threads"], "2"], stdin=True)
    requests: list[int] = []
    real = ptrace.ptrace_call

    def counting(request: int, tid: int, addr: int = 0, data: int = 0) -> int:
        requests.append(request)
        return real(request, tid, addr, data)

    monkeypatch.setattr(ptrace, "ptrace_call", counting)
    plan = seal_process(target.pid, dry_run=True)
    assert plan.calls and plan.stopped_seconds == () and requests == []
    assert target.let_go() and sealed_ranges(target.pid) == []
    assert seal_process(target.pid).ok
    assert ptrace.PTRACE_SEIZE in requests and ptrace.PTRACE_INTERRUPT in requests


def test_level_all_seals_whole_objects_and_is_idempotent(c_targets: CTargets, spawn: Spawn) -> None:
    target = spawn([c_targets["sleeper"], "nanosleep", "30"])
    first = seal_process(target.pid, "all")
    assert first.ok
    assert {"text", "data"} <= {r.kind for o in first.objects for r in o.sealed}
    again = seal_process(target.pid, "all")
    assert again.ok and again.calls == () and again.newly_sealed_bytes == 0


def test_system_seals_the_vdso_too(c_targets: CTargets, spawn: Spawn) -> None:
    target = spawn([c_targets["sleeper"], "nanosleep", "30"])
    assert seal_process(target.pid).ok
    vdso = next(v for v in procfs.read_smaps(target.pid) if v.path == "[vdso]")
    assert not vdso.sealed  # not without system=True
    assert seal_process(target.pid, system=True).ok
    vdso = next(v for v in procfs.read_smaps(target.pid) if v.path == "[vdso]")
    assert vdso.sealed
    # the calls run through the vDSO's own syscall instruction, sealed or not
    assert seal_process(target.pid, system=True).calls == ()
    assert target.let_go()


def test_an_attack_from_inside_fails_with_eperm_after_sealing(
    c_targets: CTargets, spawn: Spawn
) -> None:
    control = spawn([c_targets["attack"]])  # not sealed: the same mprotect succeeds
    control.proc.send_signal(signal.SIGUSR1)
    assert control.finish()[1].strip() == "mprotect=0 errno=0"
    target = spawn([c_targets["attack"]])
    assert seal_process(target.pid).ok
    target.proc.send_signal(signal.SIGUSR1)
    code, out, _ = target.finish()
    assert code == 0 and out.strip() == "mprotect=-1 errno=1"  # EPERM


def test_injected_mprotect_and_munmap_are_refused_by_the_seal(
    c_targets: CTargets, spawn: Spawn
) -> None:
    """Attacks through the door sealkit itself uses: the target calls
    mprotect (and munmap) on libc's text. Allowed before sealing (control,
    with the same protection so nothing changes), EPERM after."""
    target = spawn([c_targets["sleeper"], "nanosleep", "30"])
    text = next(v for v in procfs.read_maps(target.pid) if "libc.so" in v.path and "x" in v.perms)
    assert inject(target.pid, 10, (text.start, 4096, 5)) == 0  # PROT_READ|PROT_EXEC
    assert seal_process(target.pid).ok
    assert inject(target.pid, 10, (text.start, 4096, 7)) == -1  # mprotect RWX: -EPERM
    assert inject(target.pid, 11, (text.start, 4096, 0)) == -1  # munmap: -EPERM
    assert target.let_go()


# --- the target is left as it was --------------------------------------------------------


def regs_ok(target: Target) -> tuple[int, str]:
    """Stop the register-checking spinner; its exit code and verdict."""
    target.proc.send_signal(signal.SIGUSR2)
    code, out, _ = target.finish()
    return code, out.strip()


def test_every_register_survives(c_targets: CTargets, spawn: Spawn) -> None:
    """A thread spinning with a known value in each register, checked by
    itself on every turn, sealed five times (the first seals, the others find
    nothing to do, with the same stop and release)."""
    target = spawn([c_targets["regs"]])
    reports = [seal_process(target.pid) for _ in range(5)]
    assert all(r.ok for r in reports) and reports[0].calls
    assert regs_ok(target) == (0, "ok")


def test_nanosleep_resumes_as_after_a_debugger(c_targets: CTargets, spawn: Spawn) -> None:
    target = spawn([c_targets["sleeper"], "nanosleep", "1.0"])
    assert wait_until(lambda: blocked_in(target.pid, 230))  # clock_nanosleep
    time.sleep(0.2)
    assert seal_process(target.pid).ok
    match = re.fullmatch(r"ret=(\S+) errno=(\S+) elapsed=(\S+) usr1=0", target.finish()[1].strip())
    assert match
    assert match.group(1) == "0" and match.group(2) == "0"  # restarted, not EINTR
    assert 0.99 <= float(match.group(3)) < 1.5  # the remaining time, not a fresh second


def test_read_on_a_pipe_resumes_and_gets_the_data(c_targets: CTargets, spawn: Spawn) -> None:
    target = spawn([c_targets["sleeper"], "read"], stdin=True)
    assert wait_until(lambda: blocked_in(target.pid, 0))
    assert seal_process(target.pid).ok
    assert target.let_go()
    code, out, _ = target.finish(input=b"hello")
    assert (code, out.strip()) == (0, "ret=5 errno=0 data=hello usr1=0")


BLOCKING = {  # blocker.c mode: the system call it blocks in (x86_64 numbers, glibc 2.36)
    "nanosleep": 230, "poll": 7, "select": 270, "epoll": 232, "futex": 202,
    "sigtimedwait": 128, "pause": 34, "read": 0, "wait4": 61, "accept": 43,
}  # fmt: skip


def debugger_attach_detach(pid: int) -> None:
    """What a debugger does to a single-threaded process, with libc's own
    ptrace and nothing of sealkit's: PTRACE_ATTACH (which sends SIGSTOP),
    wait for the stop, PTRACE_DETACH without a signal."""
    libc = ctypes.CDLL(None, use_errno=True)
    libc.ptrace.restype = ctypes.c_long
    libc.ptrace.argtypes = [ctypes.c_long, ctypes.c_int, ctypes.c_void_p, ctypes.c_void_p]
    assert libc.ptrace(16, pid, None, None) == 0, os.strerror(ctypes.get_errno())  # ATTACH
    _, status = os.waitpid(pid, 0x40000000)  # __WALL
    assert os.WIFSTOPPED(status) and os.WSTOPSIG(status) == signal.SIGSTOP, status
    assert libc.ptrace(17, pid, None, None) == 0, os.strerror(ctypes.get_errno())  # DETACH


def test_blocking_calls_end_exactly_as_after_a_debugger_attach(
    c_targets: CTargets, spawn: Spawn
) -> None:
    """Ten blocking system calls (timed sleeps and waits, poll, select,
    epoll_wait, futex, sigtimedwait, pause, read, wait4, accept), each in two
    processes: one attached and detached by a plain debugger, one sealed,
    both 0.6 s or more into a 4 s call. Each call must return the same in
    both (value, errno, early or on time, never restarted with a fresh
    timeout)."""
    pairs = {
        mode: (spawn([c_targets["blocker"], mode]), spawn([c_targets["blocker"], mode]))
        for mode in BLOCKING
    }
    started = time.monotonic()
    for mode, pair in pairs.items():
        for target in pair:
            assert wait_until(lambda t=target, m=mode: blocked_in(t.pid, BLOCKING[m])), mode
    time.sleep(max(0.0, started + 0.6 - time.monotonic()))
    for reference, sealed in pairs.values():
        debugger_attach_detach(reference.pid)
        assert seal_process(sealed.pid).ok
    took = time.monotonic() - started
    if took > 3.5:  # some calls may have ended on their own first: nothing to compare
        pytest.skip(f"the machine is too loaded: 20 stops took {took:.1f} s of a 4 s window")
    results = {mode: tuple(t.finish()[1].strip() for t in pair) for mode, pair in pairs.items()}
    for mode, (by_debugger, by_sealkit) in results.items():
        assert by_debugger.startswith(f"{mode} ret=") and "late=0" in by_debugger, by_debugger
        assert by_sealkit == by_debugger, mode
    assert "early=1" in results["epoll"][0]  # the stop did interrupt the calls
    assert "early=0" in results["nanosleep"][0]


def test_a_signal_arriving_while_stopped_is_delivered_once(
    c_targets: CTargets, spawn: Spawn
) -> None:
    """SIGUSR1 (handler without SA_RESTART) sent while every thread is
    stopped: afterwards the handler has run exactly once and read() returned
    EINTR, as it would have without sealkit."""
    target = spawn([c_targets["sleeper"], "read"], stdin=True)
    assert wait_until(lambda: blocked_in(target.pid, 0))
    killer = later(0.1, "kill", "-USR1", str(target.pid))
    with fault(pause_at("attached", 0.3)):
        report = seal_process(target.pid)
    killer.wait()
    assert report.ok
    _code, out, _ = target.finish(input=b"hello")
    assert out.splitlines() == ["ret=-1 errno=4 data= usr1=1", "ret=5 errno=0 data=hello usr1=1"]


def test_a_signal_during_injection_is_handed_back_and_sealing_completes(
    c_targets: CTargets, spawn: Spawn
) -> None:
    target = spawn([c_targets["sleeper"], "read"], stdin=True)
    assert wait_until(lambda: blocked_in(target.pid, 0))
    killer = later(0.1, "kill", "-USR1", str(target.pid))
    with fault(pause_at("call", 0.3)):
        report = seal_process(target.pid)
    killer.wait()
    assert report.ok and report.verified
    assert any("SIGUSR1" in r for r in report.retries), report.retries
    _code, out, _ = target.finish(input=b"hello")
    assert out.splitlines() == ["ret=-1 errno=4 data= usr1=1", "ret=5 errno=0 data=hello usr1=1"]


SIGNAL_FIELDS = ("SigPnd", "ShdPnd", "SigBlk", "SigIgn", "SigCgt")


def signal_state(pid: int) -> dict[int, tuple[str, ...]]:
    """Per thread: pending (own and shared), blocked, ignored and caught
    signals, and the system call it is blocked in."""
    out = {}
    for tid in sorted(int(t) for t in os.listdir(f"/proc/{pid}/task")):
        status = procfs.read_status(tid)
        call = Path(f"/proc/{pid}/task/{tid}/syscall").read_text().split()[0]
        out[tid] = (*(status[k] for k in SIGNAL_FIELDS), call)
    return out


def sigstate_run(spawn: Spawn, exe: str, seal: bool) -> tuple[list[str], bool]:
    """Run the sigstate target (sealing it twice if ``seal``): its output,
    and whether every thread's signal state read the same across the seals."""
    target = spawn([exe], stdin=True)
    assert wait_until(lambda: len(signal_state(target.pid)) == 2)
    worker = max(signal_state(target.pid))
    calls = {target.pid: "0", worker: "130"}  # read, rt_sigsuspend
    assert wait_until(lambda: {t: s[-1] for t, s in signal_state(target.pid).items()} == calls)
    before = signal_state(target.pid)
    main = before[target.pid]
    assert int(main[0], 16) and int(main[1], 16), main  # the set-up made signals pending
    assert before[worker][2] != main[2]  # sigsuspend's temporary mask
    if seal:
        reports = [seal_process(target.pid) for _ in range(2)]
        assert all(r.ok and r.verified for r in reports) and reports[0].calls
    same = signal_state(target.pid) == before
    target.proc.send_signal(signal.SIGUSR1)
    first = target.readline(5).decode().strip()
    target.send(b"go\n")
    code, out, _ = target.finish()
    assert code == 0
    return [first, *out.splitlines()], same


def test_signal_state_and_pending_signals_are_left_as_they_were(
    c_targets: CTargets, spawn: Spawn
) -> None:
    """Blocked, ignored and caught signals, signals pending on the process
    (a standard one, a real-time one queued twice with values) and on one
    thread, and a thread in sigsuspend() with a temporary mask: after
    sealing every thread's signal state reads the same, every pending signal
    is still there once with its siginfo, and sigsuspend resumes, returns
    EINTR to the signal that ends it and restores its caller's mask. The same
    program run without sealing is the reference."""
    control, _ = sigstate_run(spawn, c_targets["sigstate"], seal=False)
    assert control[0] == "suspend ret=-1 errno=4 usr1=1 mask_restored=1"
    assert control[-1] == "done" and len(control) == 6, control
    assert {"pending sig=100 code=-1 value=1", "pending sig=100 code=-1 value=2"} < set(control)
    sealed, same = sigstate_run(spawn, c_targets["sigstate"], seal=True)
    assert same, "a thread's signal state changed across sealing"
    assert sealed == control


def test_sigstop_during_the_stop_leaves_the_target_stopped_as_asked(
    c_targets: CTargets, spawn: Spawn
) -> None:
    """SIGSTOP sent while sealkit holds the target: handed back where the
    kernel dequeued it, the process enters its job-control stop as asked,
    sealkit does not resume it (it gives up, nothing sealed) and SIGCONT lets
    it go on as if sealkit had never been there."""
    target = spawn([c_targets["sleeper"], "nanosleep", "1"])
    killer = later(0.1, "kill", "-STOP", str(target.pid))
    with fault(pause_at("attached", 0.3)), pytest.raises(TargetRefusedError) as info:
        seal_process(target.pid, timeout=1.0)
    killer.wait()
    assert info.value.reason == "stopped" and "SIGCONT" in str(info.value)
    assert wait_until(lambda: target.state() == "T") and target.tracer() == 0
    assert sealed_ranges(target.pid) == []
    target.proc.send_signal(signal.SIGCONT)
    code, out, _ = target.finish()
    assert code == 0 and out.startswith("ret=0 errno=0"), out


# --- threads ---------------------------------------------------------------------------------


def test_threads_created_and_exiting_during_attach(c_targets: CTargets, spawn: Spawn) -> None:
    target = spawn([c_targets["threads"], "4"], stdin=True)
    reports = [seal_process(target.pid) for _ in range(20)]
    assert all(r.ok for r in reports)
    assert max(r.threads for r in reports) >= 6  # main, 4 spinners, the churner (+ its child)
    code, out, _ = target.finish(input=b"")
    assert code == 0 and out.startswith("ok "), out
    assert int(out.split("created=")[1]) > 100  # threads kept coming and going meanwhile


def test_a_syscall_instruction_read_as_nothing_is_looked_for_again_then_refused(
    c_targets: CTargets, spawn: Spawn, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The vDSO's text read as nothing while the image stayed the same (a
    race with a process executing, seen once in many runs): the plan is made
    again, up to twice; a text that never shows a syscall instruction is
    refused ("no-loader") after the third plan, with nothing sealed."""
    from sealkit.sealing.live import plan as plan_mod

    target = spawn([c_targets["regs"]])
    misses = [1]

    def flaky(*args: object) -> int:
        if misses[0] > 0:
            misses[0] -= 1
            return 0
        return find_syscall_insn(*args)  # type: ignore[arg-type]

    monkeypatch.setattr(plan_mod, "find_syscall_insn", flaky)
    report = seal_process(target.pid, timeout=5)
    assert report.ok and report.verified
    assert any(r.endswith("planned again") for r in report.retries), report.retries
    target2 = spawn([c_targets["regs"]])
    misses[0] = 3
    with pytest.raises(TargetRefusedError) as info:
        seal_process(target2.pid, timeout=5)
    assert info.value.reason == "no-loader" and misses[0] == 0
    assert wait_until(target2.let_go) and sealed_ranges(target2.pid) == []
    assert regs_ok(target) == (0, "ok") and regs_ok(target2) == (0, "ok")


@pytest.mark.parametrize("threads", ["single", "threads"])
def test_a_process_executing_new_images_is_never_sealed_by_a_stale_plan(
    c_targets: CTargets, spawn: Spawn, threads: str
) -> None:
    """A process that executes itself every few milliseconds (with a busy
    second thread in each image, or not): each seal either seals and
    verifies the image it stopped, or gives up (busy), and the process
    runs all its images to the end, never left stopped or traced."""
    target = spawn([c_targets["execer"], "300", threads])
    outcomes = []
    deadline = time.monotonic() + 20
    while target.proc.poll() is None and len(outcomes) < 15 and time.monotonic() < deadline:
        try:
            report = seal_process(target.pid, timeout=0.2)
        except TargetRefusedError as exc:
            assert exc.reason in ("busy", "gone"), exc
            outcomes.append(exc.reason)
            continue
        assert report.ok and report.verified, report.problems
        outcomes.append("sealed")
    assert outcomes, "the target ended before it could be sealed once"
    code, out, _ = target.finish()
    assert (code, out.split()) == (0, ["done"]), (code, out, outcomes)


def test_attempts_that_give_up_on_a_slow_thread_and_retry_at_once_leave_it_intact(
    c_targets: CTargets, spawn: Spawn, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An attach budget of nothing (one poll right after the interrupt) for
    a busy thread: many attempts give up before the thread stops, leave it
    to the exit of the attempt's tracer thread, and the next attempt or the
    next call starts at once. A new tracer thread must not start while the
    previous one still holds the target: when one did, the next call found
    the target "traced" by sealkit itself, and racing that exit killed an
    executing target with SIGTRAP. The target keeps its registers and runs
    on. Calls go on, back to back, until three attempts have given up (on a
    quiet machine a thread often stops within the first poll; 20 us of
    budget let every attempt of a run succeed there, proving nothing)."""
    target = spawn([c_targets["regs"]])
    monkeypatch.setattr(session, "ATTACH_BUDGET", 0.0)
    outcomes: list[str] = []
    gave_up = 0
    while gave_up < 3 and len(outcomes) < 400:  # as a caller sealing in a loop would
        try:
            retries = seal_process(target.pid, timeout=0.2).retries
            gave_up += len(retries)
            outcomes.append(f"sealed after {len(retries)}")
        except TargetRefusedError as exc:
            gave_up += 1
            outcomes.append(exc.reason)
    assert set(outcomes) <= {"busy"} | {o for o in outcomes if o.startswith("sealed")}, outcomes
    assert gave_up >= 3, f"nothing gave up in {len(outcomes)} calls: the test proves nothing"
    assert wait_until(target.let_go), "left stopped or traced"
    assert regs_ok(target) == (0, "ok")


def test_a_thread_that_cannot_stop_is_let_go_and_sealing_retries(
    c_targets: CTargets, spawn: Spawn
) -> None:
    """A thread in uninterruptible sleep (a vfork parent waiting for its
    child: PTRACE_INTERRUPT cannot stop it) is refused up front (busy), and,
    when it enters that sleep after the check, the attempt gives up after the
    attach budget and lets everything go: the other threads are detached, and
    the unstoppable one when the tracer thread exits (its pending interrupt
    cleared). Sealing then succeeds once the sleep is over."""
    target = spawn([c_targets["vforker"]], stdin=True)
    target.send(b"go\n")
    assert wait_until(lambda: target.pid in thread_states(target.pid) and
                      thread_states(target.pid)[target.pid] == "D")  # fmt: skip
    with pytest.raises(TargetRefusedError) as info:
        seal_process(target.pid, timeout=0.2)
    assert info.value.reason == "busy" and "uninterruptible sleep (D)" in str(info.value)
    assert target.readline(5) == b"back\n"
    assert target.let_go()

    def go_once(point: str, _k: int) -> None:
        if point == "attach" and not sent:
            sent.append(True)  # the vfork starts after the D check, before the attach
            target.send(b"go\n")
            assert wait_until(lambda: thread_states(target.pid).get(target.pid) == "D")

    sent: list[bool] = []
    with fault(go_once):
        report = seal_process(target.pid, timeout=10)
    assert report.ok and report.verified
    assert any("did not stop within" in r for r in report.retries), report.retries
    assert target.readline(5) == b"back\n"
    assert target.let_go()
    code, out, _ = target.finish(input=b"")
    assert (code, out.strip()) == (0, "ok")


# --- every failure path lets the target go --------------------------------------------------


@pytest.mark.parametrize(
    ("point", "index"),
    [("attach", 0), ("attached", 0), ("call", 0), ("call", 1), ("injected", 0)],
)
def test_an_error_at_any_point_lets_the_target_go_as_it_was(
    c_targets: CTargets, spawn: Spawn, point: str, index: int
) -> None:
    """An exception raised before the attach, with every thread stopped,
    before the first or second injected call, or after the last one: it
    reaches the caller, and the target (spinning with a known value in every
    register) is detached with its registers as they were."""
    target = spawn([c_targets["regs"]])

    def fail(at: str, k: int) -> None:
        if at == point and k == index:
            raise RuntimeError(f"injected failure at {at} {k}")

    with fault(fail), pytest.raises(RuntimeError, match="injected failure"):
        seal_process(target.pid)
    assert wait_until(target.let_go)
    assert regs_ok(target) == (0, "ok")


@pytest.mark.parametrize("point", ["attached", "call", "injected"])
def test_target_killed_while_stopped(c_targets: CTargets, spawn: Spawn, point: str) -> None:
    """SIGKILL to the target while every thread is stopped, in the middle of
    the injected calls, or after them: sealkit says ``gone`` within seconds,
    holds nothing, and the target's parent still collects its exit status."""
    target = spawn([c_targets["sleeper"], "nanosleep", "30"])
    killer = later(0.1, "kill", "-KILL", str(target.pid))
    started = time.monotonic()
    with fault(pause_at(point, 0.5)), pytest.raises(TargetRefusedError) as info:
        seal_process(target.pid)
    killer.wait()
    assert info.value.reason == "gone"
    assert time.monotonic() - started < 5
    assert target.proc.wait(5) == -signal.SIGKILL  # its parent still gets its status


def test_a_reused_pid_is_never_sealed(c_targets: CTargets, spawn: Spawn) -> None:
    """The planned process dies and its pid goes to another process before
    the attach (forced here with clone3's set_tid): the pinned /proc
    directory and the pidfd tell them apart, and the newcomer is let go
    untouched."""
    if os.geteuid() != 0:
        pytest.skip("choosing a pid (clone3 set_tid) needs CAP_SYS_ADMIN")
    target = spawn([c_targets["sleeper"], "nanosleep", "30"])
    pid = target.pid
    newcomer: list[subprocess.Popen[bytes]] = []

    def swap(point: str, _k: int) -> None:
        if point != "attach" or newcomer:
            return
        target.proc.kill()
        target.proc.wait()
        proc = subprocess.Popen(
            [c_targets["pidreuse"], str(pid), "/bin/sleep", "30"], stdout=subprocess.PIPE
        )
        newcomer.append(proc)
        assert proc.stdout is not None
        line = proc.stdout.readline()
        if line.strip() != str(pid).encode():
            pytest.skip(f"pid {pid} was taken by another process first")

    try:
        with fault(swap), pytest.raises(TargetRefusedError) as info:
            seal_process(pid)
        assert info.value.reason == "gone"
        # the newcomer (it may still be executing sleep: pidreuse prints first)
        assert wait_until(lambda: Path(f"/proc/{pid}/comm").read_text().strip() == "sleep")
        assert sealed_ranges(pid) == []
        assert wait_until(lambda: "\tS" in Path(f"/proc/{pid}/status").read_text())
        assert "TracerPid:\t0" in Path(f"/proc/{pid}/status").read_text()
    finally:
        os.kill(pid, signal.SIGKILL)
        for proc in newcomer:
            proc.wait(10)
            assert proc.stdout is not None
            proc.stdout.close()


HOOKED_CLI = """
import sys, time
from sealkit.sealing.live import session
point, seconds = sys.argv[1], float(sys.argv[2])
def hook(at, k):
    if at == point and k == 0:
        print("at " + at, file=sys.stderr, flush=True)
        time.sleep(seconds)
session.set_fault_hook(hook)
from sealkit.cli.main import main
sys.exit(main(sys.argv[3:]))
"""


def hooked_cli(point: str, seconds: float, *args: str) -> subprocess.Popen[bytes]:
    """``sealkit ARGS`` in a fresh interpreter with a pause installed at ``point``."""
    return subprocess.Popen(
        [sys.executable, "-c", HOOKED_CLI, point, str(seconds), *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=python_env(),
    )


def wait_for_line(proc: subprocess.Popen[bytes], line: bytes) -> None:
    assert proc.stderr is not None
    assert proc.stderr.readline().strip() == line


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM, signal.SIGHUP])
def test_a_signal_to_sealkit_takes_effect_after_the_target_is_let_go(
    c_targets: CTargets, spawn: Spawn, sig: signal.Signals
) -> None:
    target = spawn([c_targets["regs"]])
    cli = hooked_cli("attached", 0.5, "seal", "--pid", str(target.pid))
    wait_for_line(cli, b"at attached")
    assert target.tracer() != 0  # held
    cli.send_signal(sig)
    cli.communicate(timeout=30)
    assert cli.returncode in (-sig, 130), (sig, cli.returncode)
    assert wait_until(target.let_go)
    assert sealed_ranges(target.pid), "the signal was not held until the attempt ended"
    assert regs_ok(target) == (0, "ok"), sig


def test_sigkill_of_sealkit_while_attached_lets_the_target_go(
    c_targets: CTargets, spawn: Spawn
) -> None:
    """Killed before any register was changed: the kernel detaches the
    target, which goes on untouched."""
    target = spawn([c_targets["regs"]])
    cli = hooked_cli("attached", 5, "seal", "--pid", str(target.pid))
    wait_for_line(cli, b"at attached")
    cli.kill()
    cli.communicate(timeout=30)
    assert wait_until(target.let_go)
    assert regs_ok(target) == (0, "ok")


def test_sigkill_of_sealkit_mid_injection_kills_the_target(
    c_targets: CTargets, spawn: Spawn
) -> None:
    """Killed while the injecting thread holds the injected registers: the
    target is killed too (PTRACE_O_EXITKILL, set for that window only), never
    left to run on with registers that are not its own."""
    target = spawn([c_targets["regs"]])
    cli = hooked_cli("injected", 5, "seal", "--pid", str(target.pid))
    wait_for_line(cli, b"at injected")
    cli.kill()
    cli.communicate(timeout=30)
    assert target.proc.wait(10) == -signal.SIGKILL

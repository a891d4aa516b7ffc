"""Live sealing refuses, in one line and with nothing sealed, what it cannot
seal safely; and the command line around it (``sealkit seal``)."""

from __future__ import annotations

import importlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import jsonschema
import pytest

import sealkit
from sealkit._os import procfs, ptrace, syscalls
from sealkit.errors import NotSupportedError, TargetRefusedError
from sealkit.sealing.live import seal_process, session
from sealkit.sealing.live.target import Memory, Process, find_syscall_insn
from tests.conftest import python_env
from tests.live_support import CTargets, Spawn, wait_until

pytestmark = pytest.mark.kernel

SCHEMA = json.loads((Path(sealkit.__file__).parent / "data" / "seal.schema.json").read_text())
Cli = Callable[..., subprocess.CompletedProcess[str]]


def sealed_ranges(pid: int) -> list[tuple[int, int]]:
    return [(v.start, v.end) for v in procfs.read_smaps(pid, counters=False) if v.sealed]


def refused(pid: int, **kwargs: object) -> TargetRefusedError:
    with pytest.raises(TargetRefusedError) as info:
        seal_process(pid, **kwargs)  # type: ignore[arg-type]
    assert "\n" not in str(info.value)
    return info.value


@pytest.mark.parametrize("mode", ["kill", "errno", "argkill"])
def test_seccomp_filter_forbidding_mseal_is_refused(
    c_targets: CTargets, spawn: Spawn, mode: str
) -> None:
    """Filters answering KILL_PROCESS, ERRNO(EPERM), and KILL only for
    lengths above 1 MiB: each is read and evaluated before any call, so the
    target is refused, alive, and nothing is sealed."""
    target = spawn([c_targets["seccomp"], mode])
    exc = refused(target.pid)
    assert exc.reason == "seccomp"
    assert "KILL_PROCESS" in str(exc) or "ERRNO(1)" in str(exc)
    assert sealed_ranges(target.pid) == []
    assert wait_until(target.let_go)
    target.proc.terminate()
    assert target.finish()[:2] == (0, "ok\n")


def test_seccomp_filter_allowing_mseal_is_proven_and_sealed(
    c_targets: CTargets, spawn: Spawn
) -> None:
    target = spawn([c_targets["seccomp"], "allow"])
    assert seal_process(target.pid).ok
    target.proc.terminate()
    assert target.finish()[:2] == (0, "ok\n")


def test_strict_seccomp_entered_after_the_checks_is_refused_in_the_stop(
    c_targets: CTargets, spawn: Spawn
) -> None:
    """The target enters seccomp strict mode after sealkit's first checks
    and plan (a fault hook tells it to, just before the attach): the thread
    about to make the calls is checked again inside the stop, so the
    process is refused, not killed by its first mseal."""
    target = spawn([c_targets["strict"]], stdin=True)

    def go_strict(point: str, _k: int) -> None:
        if point == "attach" and not told:
            told.append(True)
            target.send(b"go\n")
            assert target.readline(5) == b"strict\n"

    told: list[bool] = []
    previous = session.set_fault_hook(go_strict)
    try:
        exc = refused(target.pid)
    finally:
        session.set_fault_hook(previous)
    assert told and exc.reason == "seccomp" and "strict" in str(exc)
    assert wait_until(target.let_go)
    code, out, _ = target.finish(input=b"end\n")
    assert (code, out) == (0, "ok\n")


def test_already_traced_target_is_refused_but_dry_run_works(
    c_targets: CTargets, spawn: Spawn
) -> None:
    target = spawn([c_targets["sleeper"], "nanosleep", "30"])
    tracer = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sys, time; from sealkit._os import ptrace; ptrace.seize(int(sys.argv[1])); "
            "print('on', flush=True); time.sleep(30)",
            str(target.pid),
        ],
        stdout=subprocess.PIPE,
        env=python_env(),
    )
    try:
        assert tracer.stdout is not None and tracer.stdout.readline() == b"on\n"
        exc = refused(target.pid)
        assert exc.reason == "traced" and str(tracer.pid) in str(exc)
        plan = seal_process(target.pid, dry_run=True)  # reads only: no attach needed
        assert plan.calls and sealed_ranges(target.pid) == []
    finally:
        tracer.kill()
        tracer.communicate()


def test_32_bit_target_is_refused(c_targets: CTargets) -> None:
    proc = subprocess.Popen([c_targets["i386"]])
    try:
        assert wait_until(lambda: Path(f"/proc/{proc.pid}/exe").resolve().name == "i386")
        assert refused(proc.pid).reason == "32-bit"
        assert proc.poll() is None
    finally:
        proc.kill()
        proc.wait()


def test_stopped_zombie_thread_and_missing_targets_are_refused(
    c_targets: CTargets, spawn: Spawn
) -> None:
    target = spawn([c_targets["sleeper"], "nanosleep", "30"])
    target.proc.send_signal(signal.SIGSTOP)
    assert wait_until(lambda: target.state() == "T")
    assert refused(target.pid).reason == "stopped"
    target.proc.send_signal(signal.SIGCONT)
    zombie = subprocess.Popen(["true"])
    assert wait_until(lambda: "State:\tZ" in Path(f"/proc/{zombie.pid}/status").read_text())
    assert refused(zombie.pid).reason == "zombie"
    zombie.wait()
    assert refused(zombie.pid).reason == "gone"
    orphaned = spawn([c_targets["mainexit"]])
    assert wait_until(lambda: orphaned.state() == "Z")
    exc = refused(orphaned.pid)
    assert exc.reason == "zombie" and "main thread has exited" in str(exc)
    threads = spawn([c_targets["threads"], "2"], stdin=True)
    tid = max(int(t.name) for t in Path(f"/proc/{threads.pid}/task").iterdir())
    exc = refused(tid)
    assert exc.reason == "thread" and f"--pid {threads.pid}" in str(exc)
    assert refused(os.getpid()).reason == "self"


def test_another_user_without_cap_sys_ptrace_is_refused(c_targets: CTargets, spawn: Spawn) -> None:
    if os.geteuid() != 0 or shutil.which("setpriv") is None:
        pytest.skip("needs root and setpriv to run sealkit as another user")
    target = spawn([c_targets["sleeper"], "nanosleep", "30"])
    cli = subprocess.run(
        ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", "--inh-caps=-all",
         sys.executable, "-m", "sealkit", "seal", "--pid", str(target.pid)],
        capture_output=True, text=True, env=python_env(), timeout=60, check=False,
    )  # fmt: skip
    assert cli.returncode == 1
    line = cli.stderr.strip()
    assert "\n" not in line and "CAP_SYS_PTRACE" in line, line
    assert "owned by uid 0" in line and "uid 65534" in line, line
    assert target.let_go()


NOBODY = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", "--inh-caps=-all"]


def test_a_process_that_is_not_dumpable_is_refused(spawn: Spawn) -> None:
    """Same user, no CAP_SYS_PTRACE, a target that made itself not dumpable
    (prctl PR_SET_DUMPABLE 0, as ssh-agent and setuid programs are): the
    kernel refuses access, and sealkit says so in one line, dry run included."""
    if os.geteuid() != 0 or shutil.which("setpriv") is None:
        pytest.skip("needs root and setpriv to run both processes as another user")
    target = spawn(
        [*NOBODY, sys.executable, "-I", "-c", "import ctypes, time; "
         "ctypes.CDLL(None).prctl(4, 0, 0, 0, 0); print('ready', flush=True); time.sleep(30)"]
    )  # fmt: skip
    for extra in ([], ["--dry-run"]):
        cli = subprocess.run(
            [*NOBODY, sys.executable, "-m", "sealkit", "seal", "--pid", str(target.pid), *extra],
            capture_output=True, text=True, env=python_env(), timeout=60, check=False,
        )  # fmt: skip
        assert cli.returncode == 1, cli.stderr
        line = cli.stderr.strip()
        assert "\n" not in line and "not dumpable" in line, line
    assert target.let_go() and sealed_ranges(target.pid) == []


def test_yama_ptrace_scope_refusals(
    c_targets: CTargets, spawn: Spawn, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Simulated (this kernel has no Yama): kernel.yama.ptrace_scope 3
    refuses everyone, 2 refuses without CAP_SYS_PTRACE (and lets root seal),
    and 1 explains an EPERM from PTRACE_SEIZE; nothing is sealed by a
    refusal and the target is not left stopped or traced."""
    preflight = importlib.import_module("sealkit.sealing.live.preflight")  # not the function
    target = spawn([c_targets["sleeper"], "nanosleep", "30"])
    with monkeypatch.context() as m:
        m.setattr(preflight, "ptrace_scope", lambda: 3)
        for dry_run in (False, True):
            exc = refused(target.pid, dry_run=dry_run)
            assert exc.reason == "permission" and "ptrace_scope is 3" in str(exc)
    with monkeypatch.context() as m:
        m.setattr(preflight, "ptrace_scope", lambda: 2)
        m.setattr(preflight, "_caps", lambda: 0)
        exc = refused(target.pid)
        assert exc.reason == "permission" and "ptrace_scope is 2" in str(exc)
        assert "CAP_SYS_PTRACE" in str(exc)
    assert sealed_ranges(target.pid) == []

    def eperm(tid: int, options: int = ptrace.OPTIONS) -> None:
        raise ptrace.PtraceError(1, ptrace.PTRACE_SEIZE, tid)

    with monkeypatch.context() as m:
        m.setattr(preflight, "ptrace_scope", lambda: 1)
        m.setattr(ptrace, "seize", eperm)
        exc = refused(target.pid)
        assert exc.reason == "permission" and "ptrace_scope is 1" in str(exc)
    assert sealed_ranges(target.pid) == [] and target.let_go()
    with monkeypatch.context() as m:
        m.setattr(preflight, "ptrace_scope", lambda: 2)  # root has CAP_SYS_PTRACE
        assert seal_process(target.pid).ok
    assert target.let_go()


def test_kernel_without_mseal_and_other_architectures_are_refused(
    c_targets: CTargets, spawn: Spawn, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Simulated (this kernel has mseal and is x86_64): the refusals name
    what is needed."""
    target = spawn([c_targets["sleeper"], "nanosleep", "30"])

    def no_mseal(*args: int) -> None:
        raise NotSupportedError(38, "mseal")

    with monkeypatch.context() as m:
        m.setattr(syscalls, "mseal", no_mseal)
        exc = refused(target.pid)
        assert exc.reason == "no-mseal" and "6.10" in str(exc)
    with monkeypatch.context() as m:
        m.setattr(syscalls, "ARCH", "aarch64")
        exc = refused(target.pid)
        assert str(exc).endswith("supports x86_64 only; this machine is aarch64")
    assert sealed_ranges(target.pid) == []


def _sigtrap_ignored(pid: int) -> bool:
    return bool(int(procfs.read_status(pid)["SigIgn"], 16) & (1 << (signal.SIGTRAP - 1)))


def test_a_thread_ignoring_sigtrap_is_driven_by_syscall_stops(
    c_targets: CTargets, spawn: Spawn
) -> None:
    """Single-stepping raises SIGTRAP with force_sig_fault(), which resets an
    ignored SIGTRAP to SIG_DFL (the control below): for such a thread sealkit
    uses PTRACE_SYSCALL, and the disposition stays as the program set it."""
    control = spawn([c_targets["trapignore"]])
    assert _sigtrap_ignored(control.pid)
    with Process(control.pid) as process:
        insn = find_syscall_insn(Memory(process), procfs.read_maps(control.pid), None)
        stop = session.Session(process, time.monotonic() + 5)
        try:
            stop.attach()
            th = stop.threads[control.pid]
            th.regs = ptrace.getregs(th.tid)
            assert stop.call(th, insn, 39, (0, 0, 0), step=True) == control.pid  # getpid
        finally:
            stop.release()
    assert not _sigtrap_ignored(control.pid), "the kernel no longer resets it: revisit the rule"

    target = spawn([c_targets["trapignore"]])
    report = seal_process(target.pid)
    assert report.ok
    assert any("(syscall)" in phase for phase, _ in report.stop_phases), report.stop_phases
    assert _sigtrap_ignored(target.pid)
    assert target.let_go()


# --- the command line ------------------------------------------------------------------------


def test_cli_json_follows_its_schema_and_comm_selects(
    c_targets: CTargets, spawn: Spawn, sealkit_cli: Cli
) -> None:
    first = spawn([c_targets["trapignore"]])
    done = sealkit_cli("seal", "--pid", str(first.pid), "--json", "--dry-run")
    doc = json.loads(done.stdout)
    jsonschema.validate(doc, SCHEMA)
    assert done.returncode == 0 and doc["refused"] == []
    (proc,) = doc["processes"]
    assert proc["pid"] == first.pid and proc["dry_run"] and proc["calls"]
    assert proc["stopped_seconds"] == [] and sealed_ranges(first.pid) == []
    second = spawn([c_targets["trapignore"]])
    done = sealkit_cli("seal", "--comm", "trapignore")
    assert done.returncode == 2 and "pass --all-matching" in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1
    done = sealkit_cli("seal", "--comm", "trapignore", "--all-matching", "--json")
    assert done.returncode == 0, done.stderr
    doc = json.loads(done.stdout)
    jsonschema.validate(doc, SCHEMA)
    assert sorted(p["pid"] for p in doc["processes"]) == sorted([first.pid, second.pid])
    assert all(p["ok"] and p["verified"] and p["calls"] for p in doc["processes"])
    done = sealkit_cli("seal", "--pid", str(first.pid), "-v")
    assert done.returncode == 0 and "already sealed" in done.stdout


def test_cli_refusals_are_one_line(c_targets: CTargets, spawn: Spawn, sealkit_cli: Cli) -> None:
    done = sealkit_cli("seal", "--pid", "999999999")
    assert done.returncode == 1
    assert done.stderr.strip() == "sealkit seal: process 999999999: no such process"
    target = spawn([c_targets["seccomp"], "kill"])
    done = sealkit_cli("seal", "--pid", str(target.pid), "--json")
    assert done.returncode == 1
    doc = json.loads(done.stdout)
    jsonschema.validate(doc, SCHEMA)
    assert doc["processes"] == [] and doc["refused"][0]["reason"] == "seccomp"
    for args in (
        ["--pid", "1", "--timeout", "0"],
        ["--pid", "1", "--timeout", "nan"],
        ["--pid", "0"],
        ["--pid", "1", "--all-matching"],
        ["--pid", "x"],
        [],
    ):
        done = sealkit_cli("seal", *args)
        assert done.returncode == 2, args
        assert len(done.stderr.strip().splitlines()) == 1, (args, done.stderr)
    done = sealkit_cli("seal", "--comm", "no-such-command-here")
    assert done.returncode == 1 and "no process named" in done.stderr

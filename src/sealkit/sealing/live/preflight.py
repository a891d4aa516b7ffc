"""Refusals that need no stop, and the seccomp proof that needs one.

Each refusal is one :class:`~sealkit.errors.TargetRefusedError` with a
reason code and a one-line message; the target is not touched.
"""

from __future__ import annotations

import errno as _errno
import os
from collections.abc import Sequence
from typing import Final

from ..._os import ptrace, syscalls
from ...errors import KernelError, NotSupportedError, SealingDeniedError, TargetRefusedError
from . import _bpf
from .report import MsealCall
from .target import Process

__all__ = ["check_seccomp", "kernel_lacks_mseal", "preflight", "refusal_for_eperm"]

NR_MSEAL: Final = 462
_CAP_SYS_PTRACE: Final = 19
_CAP_SYS_ADMIN: Final = 21
_MAX_FILTERS: Final = 256


def kernel_lacks_mseal() -> str:
    """``""`` when the running kernel has mseal, else why not (one sentence)."""
    release = os.uname().release
    why = f"the kernel has no mseal (needs Linux 6.10 or later; this is {release})"
    try:
        syscalls.mseal(0, 0, 0)
    except NotSupportedError:
        return why
    except SealingDeniedError:
        # sealkit itself runs under a filter: judge the kernel by its version.
        try:
            major, minor = (int(x) for x in release.split(".")[:2])
        except ValueError:
            return ""
        return why if (major, minor) < (6, 10) else ""
    except KernelError:
        pass
    return ""


def _caps() -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("CapEff:"):
                return int(line.split()[1], 16)
    return 0


def ptrace_scope() -> int | None:
    """Yama's ``kernel.yama.ptrace_scope``, or None without Yama."""
    try:
        with open("/proc/sys/kernel/yama/ptrace_scope") as f:
            return int(f.read().strip())
    except (OSError, ValueError):
        return None  # no Yama: the classic rules (same user, or CAP_SYS_PTRACE)


def comm(pid: int) -> str:
    try:
        with open(f"/proc/{pid}/comm") as f:
            return f.read().strip()
    except OSError:
        return "?"


def preflight(process: Process, dry_run: bool) -> dict[str, str]:
    """Refuse what can be refused without stopping the target; its status."""
    pid = process.pid
    if syscalls.ARCH != "x86_64":
        raise TargetRefusedError(
            pid, "arch", f"live sealing supports x86_64 only; this machine is {syscalls.ARCH}"
        )
    if pid == os.getpid():
        raise TargetRefusedError(pid, "self", "sealkit cannot stop itself; use sealkit.harden()")
    why = kernel_lacks_mseal()
    if why:
        raise TargetRefusedError(pid, "no-mseal", why)
    status = process.status()
    state = status.get("State", "?")[:1]
    if status.get("Kthread") == "1" or ("VmSize" not in status and state not in "ZX"):
        raise TargetRefusedError(pid, "kernel-thread", "a kernel thread has no user memory to seal")
    if state in ("Z", "X"):
        if int(status.get("Threads", "1") or 1) > 1:
            raise TargetRefusedError(
                pid, "zombie", "its main thread has exited while other threads run on: "
                "live sealing needs the main thread"
            )  # fmt: skip
        raise TargetRefusedError(pid, "zombie", "the process has exited (zombie)")
    tracer = int(status.get("TracerPid", "0") or 0)
    if tracer and not dry_run:
        raise TargetRefusedError(
            pid, "traced", f"already traced by process {tracer} ({comm(tracer)}); detach it first"
        )
    if state == "T" and not dry_run:
        raise TargetRefusedError(
            pid, "stopped", "stopped by job control (state T); continue it (SIGCONT) first"
        )
    caps = _caps()
    uid = os.geteuid()
    target_uids = {int(u) for u in status.get("Uid", "0 0 0 0").split()[:3]}
    ptrace_cap = bool(caps >> _CAP_SYS_PTRACE & 1)
    scope = ptrace_scope()
    if scope == 3:
        raise TargetRefusedError(
            pid,
            "permission",
            "kernel.yama.ptrace_scope is 3: no process may be traced until reboot",
        )
    if scope == 2 and not ptrace_cap:
        raise TargetRefusedError(
            pid,
            "permission",
            "kernel.yama.ptrace_scope is 2: tracing needs CAP_SYS_PTRACE (run as root)",
        )
    if target_uids != {uid} and not ptrace_cap:
        raise TargetRefusedError(
            pid,
            "permission",
            f"owned by uid {min(target_uids)}, sealkit runs as uid {uid} without CAP_SYS_PTRACE",
        )
    try:
        head = process.exe_head()
    except PermissionError:
        # With CAP_SYS_PTRACE held (root), asking for it is no advice at all.
        fix = (
            "refused even with CAP_SYS_PTRACE (a security module, or a process outside "
            "this user namespace)"
            if ptrace_cap
            else "the process is not dumpable, or a security module forbids it; needs "
            "CAP_SYS_PTRACE"
        )
        raise TargetRefusedError(
            pid, "permission", f"ptrace access refused (/proc/{pid}/exe is not readable): {fix}"
        ) from None
    except FileNotFoundError:
        raise TargetRefusedError(
            pid, "gone", "no such process (or its executable is gone)"
        ) from None
    if head[:4] == b"\x7fELF" and head[4] == 1:
        raise TargetRefusedError(
            pid, "32-bit", "a 32-bit program: mseal exists for 64-bit processes only"
        )
    if head[:4] == b"\x7fELF" and int.from_bytes(head[18:20], "little") != 62:
        raise TargetRefusedError(
            pid, "arch", "not an x86_64 program; live sealing supports x86_64 only"
        )
    seccomp = status.get("Seccomp", "0")
    if seccomp == "1":
        raise TargetRefusedError(
            pid, "seccomp", "runs in seccomp strict mode: a call to mseal would kill it"
        )
    if seccomp == "2" and not dry_run and not caps >> _CAP_SYS_ADMIN & 1:
        raise TargetRefusedError(
            pid,
            "seccomp",
            "runs under a seccomp filter that sealkit cannot read without CAP_SYS_ADMIN, "
            "so it cannot prove mseal is allowed (a filter may kill the process)",
        )
    return status


def may_trace_anyone() -> bool:
    """sealkit holds CAP_SYS_PTRACE and Yama (if any) restricts nothing
    (scope 0): then no lasting reason for an EPERM is left unnamed."""
    scope = ptrace_scope()
    return bool(_caps() >> _CAP_SYS_PTRACE & 1) and (scope is None or scope == 0)


def refusal_for_eperm(process: Process, tid: int) -> TargetRefusedError:
    """Why PTRACE_SEIZE of ``tid`` said EPERM, as a refusal."""
    pid = process.pid
    try:
        tracer = int(process.status(tid).get("TracerPid", "0") or 0)
    except TargetRefusedError:
        tracer = 0
    if tracer:
        return TargetRefusedError(
            pid, "traced", f"thread {tid} is already traced by process {tracer} ({comm(tracer)})"
        )
    if ptrace_scope() == 1:
        return TargetRefusedError(
            pid,
            "permission",
            "ptrace refused: kernel.yama.ptrace_scope is 1 (only descendants may be traced "
            "without CAP_SYS_PTRACE)",
        )
    return TargetRefusedError(
        pid,
        "permission",
        "ptrace refused (EPERM): not dumpable, another user, or a security module",
    )


def check_seccomp(
    pid: int, tid: int, insn: int, regs: ptrace.Regs, calls: Sequence[MsealCall]
) -> None:
    """Refuse unless every seccomp filter of the stopped thread ``tid`` allows
    each planned mseal (filters read with PTRACE_SECCOMP_GET_FILTER and
    evaluated here, before any call: a filter that would kill is never
    triggered)."""
    programs = []
    for index in range(_MAX_FILTERS):
        try:
            program = ptrace.seccomp_filter(tid, index)
        except ptrace.PtraceError as exc:
            what = (
                "a filter that is not classic BPF" if exc.errno == _errno.EMEDIUMTYPE else str(exc)
            )
            raise TargetRefusedError(
                pid, "seccomp", f"cannot read its seccomp filter to prove mseal is allowed: {what}"
            ) from None
        if program is None:
            break
        programs.append(program)
    else:
        raise TargetRefusedError(pid, "seccomp", f"more than {_MAX_FILTERS} seccomp filters")
    if not programs:
        return
    for call in calls or [MsealCall(0, 0)]:
        args = (call.start, call.end - call.start, 0, regs.r10, regs.r8, regs.r9)
        data = _bpf.seccomp_data(NR_MSEAL, _bpf.AUDIT_ARCH_X86_64, insn + 2, args)
        verdicts = []
        for program in programs:
            try:
                verdicts.append(_bpf.run(program, data))
            except _bpf.BpfError as exc:
                raise TargetRefusedError(
                    pid, "seccomp", f"cannot evaluate its seccomp filter: {exc}"
                ) from None
        ret = _bpf.combine([v.ret for v in verdicts])
        if ret & 0xFFFF0000 not in (_bpf.RET_ALLOW, _bpf.RET_LOG):
            raise TargetRefusedError(
                pid,
                "seccomp",
                f"its seccomp filter answers {_bpf.action_name(ret)} to mseal; not sealed",
            )
        if not any(v.depends_on_call_site for v in verdicts):
            return

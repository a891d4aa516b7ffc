"""support(): what sealing this process can do, probed without side effects.

``mseal(0, 0, 0)`` answers whether the kernel (and any seccomp filter)
lets this process seal; a forked child seals one page to check that
``/proc/PID/smaps`` reports seals as ``sl``. ``sealkit check`` builds on it.
"""

from __future__ import annotations

import errno as _errno
import mmap as _mmap
import os
import platform
from dataclasses import dataclass
from typing import Final

from ..errors import ArgumentTypeError, KernelError
from ..flags import MapFlag, Prot
from . import procfs, syscalls

__all__ = ["Support", "support"]

PAGE: Final = _mmap.PAGESIZE
_ANON_PRIVATE: Final = int(MapFlag.PRIVATE | MapFlag.ANONYMOUS)


@dataclass(frozen=True, slots=True)
class Support:
    """What this kernel and process can do, from :func:`support`.

    ``available``: ``mseal(0, 0, 0)`` returned 0. ``errno``: its errno when
    it did not. ``reason``: one sentence saying why. ``smaps_reports_seals``:
    a forked child sealed a page and its ``/proc/PID/smaps`` showed ``sl``
    (``None`` when that could not be tried). ``seccomp_mode``: this
    process's ``Seccomp`` field (0 none, 1 strict, 2 filter) or ``None``.
    """

    available: bool
    errno: int | None
    reason: str
    kernel: str
    arch: str
    smaps_reports_seals: bool | None
    smaps_detail: str
    seccomp_mode: int | None
    seccomp_filters: int | None


def _seccomp() -> tuple[int | None, int | None]:
    try:
        status = procfs.read_status("self")
    except Exception:
        return None, None

    def num(key: str) -> int | None:
        value = status.get(key, "")
        return int(value) if value.isdigit() else None

    return num("Seccomp"), num("Seccomp_filters")


def _probe_smaps_sl() -> tuple[bool | None, str, int | None]:
    """Seal a page in a forked child and look for ``sl`` in its smaps; the
    third value is the errno when the child could not seal the page (a
    seccomp filter can allow ``mseal(0, 0, 0)`` and refuse real ranges)."""
    ready_r, ready_w = os.pipe()
    done_r, done_w = os.pipe()
    try:
        pid = os.fork()
    except OSError as exc:
        for fd in (ready_r, ready_w, done_r, done_w):
            os.close(fd)
        return None, f"could not fork a probe child: {exc}", None
    if pid == 0:  # pragma: no cover - the child: system calls only, then _exit
        code = 1
        try:
            os.close(ready_r)
            os.close(done_w)
            addr = syscalls.mmap(0, PAGE, int(Prot.READ), _ANON_PRIVATE)
            try:
                syscalls.mseal(addr, PAGE)
            except KernelError as exc:
                os.write(ready_w, b"E" + (exc.errno or 0).to_bytes(8, "little"))
            else:
                os.write(ready_w, b"A" + addr.to_bytes(8, "little"))
                os.read(done_r, 1)
            code = 0
        finally:
            os._exit(code)
    os.close(ready_w)
    os.close(done_r)
    try:
        raw = os.read(ready_r, 9)
        if len(raw) != 9:
            return None, "the probe child could not seal a page", None
        value = int.from_bytes(raw[1:], "little")
        if raw[:1] == b"E":
            name = _errno.errorcode.get(value, str(value))
            return None, f"not checked: the probe child could not seal a page ({name})", value
        for vma in procfs.read_smaps(pid):
            if vma.start <= value < vma.end:
                if vma.sealed:
                    return True, "a page sealed in a child shows 'sl' in its smaps VmFlags", None
                return (
                    False,
                    (
                        "a page sealed in a child has no 'sl' in its smaps VmFlags "
                        f"({' '.join(sorted(vma.vmflags or ()))}): seals are invisible in /proc"
                    ),
                    None,
                )
        return None, "the probe child's sealed page is missing from its smaps", None
    finally:
        os.close(ready_r)
        os.close(done_w)
        os.waitpid(pid, 0)


def _explain(
    err: int | None, release: str, arch: str, mode: int | None, filters: int | None
) -> str:
    if err is None:
        return f"mseal(2) is available (Linux {release}, {arch})"
    bits = platform.architecture()[0]
    if err == _errno.ENOSYS:
        if arch not in ("x86_64", "aarch64", "arm64", "riscv64", "loongarch64"):
            return f"ENOSYS: sealkit has no system call table for {arch}"
        if mode == 2 and _release_at_least(release, (6, 10)) and bits == "64bit":
            return (
                f"ENOSYS from mseal(2), although this 64-bit Linux {release} has it (since "
                f"6.10): this process runs under seccomp mode 2 with {filters} filter(s), and "
                "returning ENOSYS for system calls a filter does not know is a common default "
                "(containers, sandboxes)"
            )
        return (
            f"ENOSYS: this kernel has no mseal(2); it needs a 64-bit Linux 6.10 or later "
            f"(running {release}, {bits} userland)"
        )
    if err == _errno.EPERM:
        where = (
            f"this process runs under seccomp mode {mode} with {filters} filter(s)"
            if mode
            else "no seccomp filter is visible in /proc/self/status"
        )
        return (
            "EPERM from mseal(0, 0, 0): a seccomp filter denies the call, e.g. a container "
            f"profile written before mseal existed (Docker allows it since 2025); {where}"
        )
    name = _errno.errorcode.get(err, str(err))
    return f"{name} from mseal(0, 0, 0): unexpected; the kernel refuses the call"


def _release_at_least(release: str, version: tuple[int, int]) -> bool:
    """Whether a ``uname -r`` string such as ``6.18.44-fc`` is at least ``version``."""
    parts = release.split("-", 1)[0].split(".")
    try:
        return (int(parts[0]), int(parts[1])) >= version
    except (IndexError, ValueError):
        return False


_SUPPORT: Support | None = None


def support(refresh: bool = False) -> Support:
    """Probe what sealing this process can do, without side effects.

    ``mseal(0, 0, 0)`` returns 0 on a kernel with mseal (length 0 is checked
    before anything is looked up, docs/reference/linux.md rule 1) and fails
    with ENOSYS (kernel < 6.10, 32-bit kernel) or EPERM (a seccomp filter)
    otherwise. When available, a forked child seals one page to check that
    ``/proc/PID/smaps`` reports seals as ``sl``. The result is cached;
    ``refresh=True`` probes again.
    """
    global _SUPPORT
    if not isinstance(refresh, bool):
        raise ArgumentTypeError(f"refresh must be a bool, not {type(refresh).__name__}")
    if _SUPPORT is not None and not refresh:
        return _SUPPORT
    release, arch = os.uname().release, platform.machine()
    mode, filters = _seccomp()
    err: int | None = None
    try:
        syscalls.mseal(0, 0, 0)
    except KernelError as exc:
        err = exc.errno
    page_err: int | None = None
    if err is None:
        sl, detail, page_err = _probe_smaps_sl()
    else:
        sl, detail = None, "not checked: mseal is unavailable"
    reason = _explain(err, release, arch, mode, filters)
    if page_err is not None:
        err = page_err
        reason = (
            f"{_errno.errorcode.get(err, str(err))}: mseal(0, 0, 0) succeeds but sealing a "
            "page fails, so something between this process and the kernel inspects the "
            "arguments (a seccomp filter?); "
            + _explain(err, release, arch, mode, filters).split(": ", 1)[-1]
        )
    _SUPPORT = Support(
        available=err is None,
        errno=err,
        reason=reason,
        kernel=release,
        arch=arch,
        smaps_reports_seals=sl,
        smaps_detail=detail,
        seccomp_mode=mode,
        seccomp_filters=filters,
    )
    return _SUPPORT

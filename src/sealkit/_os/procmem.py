"""The running kernel's ``proc_mem.force_override``: may ``/proc/PID/mem`` force writes?

Linux 6.12 (commit 41e8149c8892, also in 6.10.y/6.11.y stable) added the
choice, fs/proc/base.c ``proc_mem_foll_force()``: ``always`` (every opener
of ``/proc/PID/mem`` writes with ``FOLL_FORCE``, as every earlier kernel
did), ``ptrace`` (only the target's active tracer) or ``never``. It is the
last ``proc_mem.force_override=`` on the kernel command line when that names
one of the three (``early_proc_mem_force_override()``), else the Kconfig
choice (``CONFIG_PROC_MEM_NO_FORCE``, ``CONFIG_PROC_MEM_FORCE_PTRACE``,
``CONFIG_PROC_MEM_ALWAYS_FORCE``). :func:`force_override` reads the command
line; when it says nothing it asks the kernel: a forked child writes its own
read-only page through ``/proc/self/mem`` (success: ``always``), and only a
failure sends it to the configuration to tell ``ptrace`` from ``never``.
"""

from __future__ import annotations

import os
from typing import Final

from . import syscalls

__all__ = ["VALUES", "force_override"]

VALUES: Final = ("always", "ptrace", "never")
_CONFIG: Final = (
    ("CONFIG_PROC_MEM_NO_FORCE=y", "never"),
    ("CONFIG_PROC_MEM_FORCE_PTRACE=y", "ptrace"),
    ("CONFIG_PROC_MEM_ALWAYS_FORCE=y", "always"),
)
_found: tuple[str, str] | None = None


def _from_cmdline(text: str) -> str | None:
    value = None
    for word in text.split():
        if word == "--":
            break  # what follows goes to init
        key, eq, val = word.partition("=")
        if eq and key == "proc_mem.force_override" and val in VALUES:
            value = val
    return value


def _from_config(text: str) -> str | None:
    if "CONFIG_PROC_MEM_" not in text:
        return None
    for line, value in _CONFIG:
        if line in text.splitlines():
            return value
    return None


def _config_text() -> str | None:
    import gzip  # noqa: PLC0415 (only where the kernel does not force)

    try:
        with gzip.open("/proc/config.gz", "rt", encoding="ascii", errors="replace") as fh:
            return fh.read()
    except OSError:
        pass
    try:
        with open(f"/boot/config-{os.uname().release}", encoding="ascii", errors="replace") as fh:
            return fh.read()
    except OSError:
        return None


def _probe() -> str:
    """A forked child maps a read-only private page and writes it through its
    own ``/proc/self/mem``: only ``always`` forces that write."""
    pid = os.fork()
    if pid == 0:
        code = 2
        try:
            page = syscalls.mmap(0, 4096, 1, 0x22)  # PROT_READ, MAP_PRIVATE|MAP_ANONYMOUS
            fd = os.open("/proc/self/mem", os.O_RDWR)
            try:
                code = 0 if os.pwrite(fd, b"x", page) == 1 else 1
            except OSError:
                code = 1
        except BaseException:
            code = 2
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    code = os.waitstatus_to_exitcode(status)
    if code == 0:
        return "always"
    return "ptrace or never" if code == 1 else "unknown"


def force_override() -> tuple[str, str]:
    """``(setting, how it was found)``: the setting is ``always``, ``ptrace``,
    ``never``, ``ptrace or never`` (when nothing tells those two apart) or
    ``unknown``. The command line decides if it names one; otherwise a child
    tries the write (only ``always`` forces it), and only when it fails is the
    kernel configuration read to name the setting. Cached for the process."""
    global _found
    if _found is None:
        try:
            with open("/proc/cmdline", encoding="ascii", errors="replace") as fh:
                cmdline = fh.read()
        except OSError:
            cmdline = ""
        value = _from_cmdline(cmdline)
        if value is not None:
            _found = (value, "the kernel command line")
        else:
            probed = _probe()
            config = _config_text() if probed == "ptrace or never" else None
            named = _from_config(config) if config is not None else None
            if named in ("ptrace", "never"):
                _found = (
                    named,
                    "a write through /proc/self/mem in a child, and the kernel configuration",
                )
            else:
                _found = (probed, "a write through /proc/self/mem in a child")
    return _found

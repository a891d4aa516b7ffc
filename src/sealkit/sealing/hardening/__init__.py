"""Harden the running interpreter: seal the loaded code of this process.

:func:`harden` does for a Python process what glibc's unmerged loader
sealing (``-z memory-seal``, Adhemerval Zanella's "elf: Add support to memory
sealing" series, libc-alpha, 2024) would do for a marked
program: it walks every ELF object the dynamic loader has mapped (the python
executable, libpython, libc, ld.so, extension modules, ctypes-loaded
libraries), from ``dl_iterate_phdr(3)``, and ``mseal(2)``\\ s their segments.

* ``level="code"`` seals what is never written after loading: text
  (``r-x``), read-only data (``r--``) and RELRO (``r--`` once the loader
  has relocated it).
* ``level="all"`` seals each object's whole range, as glibc's proposal does:
  also writable data, the zero-fill ``.bss`` pages beyond the file, and the
  ``PROT_NONE`` gaps between segments that the loader filled from the
  object's file (so nothing can be mapped into them; a hole the kernel left
  unmapped, and whatever someone else mapped there, is not the object's).
  Writable pages stay writable: a seal fixes the mapping and its protection,
  not the contents.

Nothing is sealed on faith. Every range is computed from the program headers
and then checked against ``/proc/self/smaps``: it must be mapped, privately,
from the same file at the same offset (or anonymous, for ``.bss``), with the
protection the segment calls for. Anything else (a hole, another file, a
RELRO still writable, a page two segments share, a writable and executable
mapping) is skipped, and the report says why. Each range is checked again at
the moment it is sealed (in C under the loader's lock when the extension is
built), so a library another thread replaced in the meantime is skipped as
"changed since planned" rather than sealed (``docs/hardening.md``, Threads).

Sealing is irreversible until the process exits. What breaks afterwards is
listed in ``docs/hardening.md``: a sealed library is pinned (RTLD_NODELETE,
:mod:`.pinning`), so dlclose no longer unloads it, a later dlopen of a library that needs an
executable stack fails (glibc must mprotect ld.so's RELRO for it), and
checkpoint/restore (CRIU) and rr cannot remap a sealed process.

Where each part lives: :mod:`.plan` (what to seal, pure), :mod:`.pinning`
(each object made undeletable before it is sealed), :mod:`.apply`
(sealing, each range checked again first), :mod:`.hooks` (sealing later
imports, and the state harden() shares with them), :mod:`.report` (what
harden() returns). :func:`harden` itself is here.
"""

from __future__ import annotations

import time

from ..._os import procfs, syscalls

# for `sealkit run`, which dies by SIGINT after finalising as python does, and
# names the process after its program
from ..._os.syscalls import raise_exit_status_at_exit, set_process_name
from ...errors import ArgumentError, ArgumentTypeError
from .apply import apply_plans
from .hooks import STATE, hook_reports, install_hooks, object_key, page_size
from .pinning import pin_plans, pinned_objects
from .plan import LEVELS, SYSTEM_MAPPINGS, build_plans, build_report, plan
from .report import KINDS, HardenReport, ObjectReport, SealedRange, SkippedRange

__all__ = [
    "KINDS",
    "LEVELS",
    "SYSTEM_MAPPINGS",
    "HardenReport",
    "ObjectReport",
    "SealedRange",
    "SkippedRange",
    "harden",
    "hook_reports",
    "pinned_objects",
    "plan",
    "raise_exit_status_at_exit",
    "set_process_name",
]


def harden(
    level: str = "code", *, system: bool = False, imports: bool = False, dry_run: bool = False
) -> HardenReport:
    """Seal the loaded ELF objects of this process; return what was sealed.

    ``level``: ``"code"`` (text, read-only data, RELRO) or ``"all"`` (each
    object's whole range: also data, .bss and gaps). ``system``: also seal
    ``[vdso]``, ``[vvar]`` and ``[vvar_vclock]`` (breaks CRIU and rr).
    ``imports``: seal extension modules imported later, and libraries loaded
    through ``ctypes.CDLL``, as they load (see :func:`hook_reports`).
    ``dry_run``: plan and report, change nothing (no seal, no hook).

    Idempotent: ranges sealed before are reported as ``already_sealed``.
    **Irreversible**: sealed memory stays sealed until the process exits.

    Raises :class:`~sealkit.errors.ArgumentError` /
    :class:`~sealkit.errors.ArgumentTypeError` for bad arguments,
    :class:`~sealkit.errors.NotSupportedError` when the kernel lacks mseal and
    :class:`~sealkit.errors.SealingDeniedError` when a seccomp filter refuses
    it (both before anything is sealed; a dry run does not probe).
    """
    if not isinstance(level, str):
        raise ArgumentTypeError(f"level must be a str, not {type(level).__name__}")
    if level not in LEVELS:
        raise ArgumentError(f"level must be one of {', '.join(map(repr, LEVELS))}, not {level!r}")
    for flag_name, flag in (("system", system), ("imports", imports), ("dry_run", dry_run)):
        if not isinstance(flag, bool):
            raise ArgumentTypeError(f"{flag_name} must be a bool, not {type(flag).__name__}")
    started = time.perf_counter()
    if not dry_run:
        # mseal(0, 0, 0) is a no-op that fails exactly when sealing cannot
        # work: ENOSYS (kernel < 6.10, 32-bit) or EPERM (seccomp). Probe first so
        # a refusal never leaves the process half hardened.
        syscalls.mseal(0, 0, 0)
        if imports:
            install_hooks(level)
    page = page_size()
    with STATE.lock:
        objects = syscalls.loaded_objects()
        plans = build_plans(objects, procfs.read_smaps(counters=False), level, system, page)
        if not dry_run:
            pin_plans(plans)
            apply_plans(plans)
            STATE.seen.update(object_key(o) for o in objects)
        return build_report(plans, level, system, imports, dry_run, "harden()", page, started)

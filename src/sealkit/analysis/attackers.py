"""What stops an attack the analyzer found: a seal of some design, or nothing
a seal can be.

The analyzer's attacker profiles (``--attacker``, parsed by
:func:`sealkit.analysis.alphabet.parse_attacker`) add calls that no sealing
design of the debate refuses: they do not go through the memory-management
calls a seal guards. :func:`needed_seal` says, for a counterexample, what
would have to exist to stop it:

* a forced write through ``/proc/PID/mem`` (``mem_rw()`` with ``FOLL_FORCE``
  when ``proc_mem.force_override`` allows it: ``proc_mem_foll_force()`` in
  fs/proc/base.c) and ``PTRACE_POKEDATA`` (``ptrace_access_vm()`` always
  passes ``FOLL_FORCE``) write through ``get_user_pages_remote()``, which
  breaks copy-on-write on a private page without write permission and never
  asks ``can_modify_vma()``: no seal covers them, only access to the
  process (``PTRACE_MODE_ATTACH``: yama's ``ptrace_scope``, another user,
  ``CAP_SYS_PTRACE``, a non-dumpable process) and, for ``/proc/PID/mem``,
  ``proc_mem.force_override=never`` (or ``ptrace``);
* ``process_vm_writev`` is not forced: it writes only pages that are
  writable, so the protection, not a seal, is what stops it;
* a write, truncation or hole punched in a mapping's file changes every page
  still read from the page cache (shared pages, and private pages not yet
  copied by a write): a seal fixes the mapping, not the file, so only the
  file's own protection stops it (memfd ``F_SEAL_WRITE``, ``F_SEAL_SHRINK``,
  ``F_SEAL_FUTURE_WRITE``; a file the attacker cannot write; or pages copied
  into the process before sealing).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Final

from ..ops import ATTACKERS, Op

__all__ = ["NO_SEAL", "attacker_text", "needed_seal"]

NO_SEAL: Final[dict[str, str]] = {
    "pwrite_mem": (
        "no seal in any design covers a FOLL_FORCE write through /proc/PID/mem: "
        "only proc_mem.force_override=never (or =ptrace with no tracer) and ptrace "
        "access restrictions (yama ptrace_scope, another user, no CAP_SYS_PTRACE, "
        "a non-dumpable process) stop it"
    ),
    "poke": (
        "no seal in any design covers PTRACE_POKEDATA (always FOLL_FORCE, whatever "
        "proc_mem.force_override says): only ptrace restrictions stop it (yama "
        "ptrace_scope 2 or 3, another user, no CAP_SYS_PTRACE, a non-dumpable process)"
    ),
    "vm_writev": (
        "process_vm_writev is not forced: it writes only writable pages, so the "
        "protection stops it, not a seal"
    ),
    "file_pwrite": (
        "no seal in any design covers the backing file: a seal fixes the mapping, "
        "not the file's pages; only file-side protection stops it (memfd F_SEAL_WRITE "
        "or F_SEAL_FUTURE_WRITE, a file the attacker cannot write, or pages copied "
        "into the process before sealing)"
    ),
    "punch": (
        "no seal in any design covers the backing file: a hole punched in it reads as "
        "zeroes through every page not yet copied; only file-side protection stops it "
        "(memfd F_SEAL_WRITE, a file the attacker cannot write)"
    ),
    "ftruncate": (
        "no seal in any design covers the backing file's size: pages past the new end "
        "raise SIGBUS; only file-side protection stops it (memfd F_SEAL_SHRINK, a file "
        "the attacker cannot write)"
    ),
}
"""For each call no seal refuses: what stops it instead."""


def needed_seal(attack: Sequence[Op]) -> str:
    """What would have to exist to stop ``attack`` (its calls in order).

    The first call that needs more than the process's own calls decides
    (:data:`NO_SEAL`); an attack made of memory-management calls only is one
    the design's seal lets through, so a seal refusing its calls would stop it.
    """
    for op in attack:
        if op.NAME in NO_SEAL:
            return NO_SEAL[op.NAME]
    names = ", ".join(dict.fromkeys(op.NAME for op in attack))
    return (
        f"a seal that refuses {names} on these pages (this design's seal lets "
        "it through; the debate's table shows which designs refuse it)"
    )


def attacker_text(attacker: Iterable[str]) -> str:
    """``syscalls`` then each extra capability as ``+NAME``, in :data:`ATTACKERS` order."""
    given = set(attacker)
    return ",".join(
        a if a == "syscalls" else f"+{a}" for a in ATTACKERS if a in given or a == "syscalls"
    )

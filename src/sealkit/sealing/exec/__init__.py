"""``sealkit exec``: run any dynamically linked glibc program with its loaded code sealed.

The sealing is done inside the program by ``libsealexec.so`` (C, built at
install time: :mod:`sealkit._os.sealexec`, source ``sealkit/_os/_sealexec.c``),
which glibc's dynamic loader loads twice: as an rtld-audit module
(``LD_AUDIT``), which seals, and as a preloaded library (``LD_PRELOAD``),
whose ``dlopen`` wrapper tells it the mode of each ``dlopen`` and seals
RELRO that the loader protects only after the audit callback (glibc before
2.41). This package decides whether that can work for a program, builds the
environment that asks for it, and reads what the library reports. The
``sealkit exec`` command then replaces itself with the program (same PID,
argv and environment apart from the added variables): nothing of Python
stays in the program.

What is sealed, and when (docs/exec.md has the details and sources):

* ``level="code"`` (default): text, read-only data and RELRO of every object
  present at start-up (the executable, its dependencies, the preloads,
  ld.so, the audit modules), after relocation and RELRO and before the first
  constructor (at the loader's first ``la_activity(LA_ACT_CONSISTENT)``);
  and of every object loaded later that can never be unloaded: ``dlopen``
  with ``RTLD_NODELETE`` (as glibc's memory-seal series), objects linked
  ``-z nodelete``, the NSS modules and libgcc_s that libc loads and keeps.
* ``level="all"``: whole objects (data, ``.bss``, gaps) and every object
  loaded later (``dlclose`` then leaves the sealed mapping in place).

Never sealed: writable and executable pages, objects with ``DT_TEXTREL``,
``PT_GNU_MUTABLE`` / ``PT_OPENBSD_MUTABLE`` ranges, the vDSO, and anything
that does not match ``/proc/self/maps`` when it is sealed.

====================  =========================================================
:mod:`.program`       what a program is (glibc, static, setuid, musl, ...),
                      :class:`ExecRefused`
:mod:`.plan`          the environment (:func:`environment`,
                      :func:`exec_environment`), ``--report`` targets, :func:`plan`
:mod:`.report`        :func:`read_exec_report`, :func:`check_against_smaps`
====================  =========================================================

``sealkit`` re-exports :func:`exec_environment` (for a Python supervisor that
starts services itself) and :func:`read_exec_report`.
"""

from __future__ import annotations

from .plan import (
    ENV_PREFIX,
    LEVELS,
    NO_LIBRARY,
    ExecPlan,
    environment,
    exec_environment,
    library_path,
    mseal_errno,
    plan,
    report_target,
)
from .program import ExecRefused, Program, inspect_program, resolve_program
from .report import REPORT_SCHEMA, ReportObject, check_against_smaps, read_exec_report

__all__ = [
    "ENV_PREFIX",
    "LEVELS",
    "NO_LIBRARY",
    "REPORT_SCHEMA",
    "ExecPlan",
    "ExecRefused",
    "Program",
    "ReportObject",
    "check_against_smaps",
    "environment",
    "exec_environment",
    "inspect_program",
    "library_path",
    "mseal_errno",
    "plan",
    "read_exec_report",
    "report_target",
    "resolve_program",
]

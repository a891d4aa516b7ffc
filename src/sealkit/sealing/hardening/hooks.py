"""The import hooks of ``harden(imports=True)``, and the state harden() shares with them.

Extension modules imported later, and libraries loaded through ``ctypes``,
are planned and sealed as they load; each such sweep leaves a report
(:func:`hook_reports`).
"""

from __future__ import annotations

import _thread
import functools
import os
import time
from typing import Any, Final

from ..._os import procfs, syscalls
from ..._os.syscalls import LoadedObject
from .apply import apply_plans
from .pinning import pin_plans
from .plan import build_plans, build_report
from .report import HardenReport

__all__ = ["hook_reports"]


class _State:
    """Process-wide: which objects were swept, and the hooks' settings."""

    def __init__(self) -> None:
        self.lock = _thread.RLock()
        self.busy = False
        self.seen: set[tuple[int, str]] = set()
        self.hook_level: str | None = None
        self.reports: list[HardenReport] = []


STATE: Final = _State()


def _after_fork_in_child() -> None:
    # A thread of the parent may have held the lock mid-sweep when another
    # forked: in the child that thread is gone and the lock would never be
    # released, so the child's next extension import would hang.
    STATE.lock = _thread.RLock()
    STATE.busy = False


os.register_at_fork(after_in_child=_after_fork_in_child)


def object_key(obj: LoadedObject) -> tuple[int, str]:
    return (obj.addr, obj.name)


def page_size() -> int:
    return os.sysconf("SC_PAGE_SIZE")


def hook_reports() -> list[HardenReport]:
    """The reports of the import hooks' sweeps so far (one per load that
    brought new objects), oldest first. Empty until ``harden(imports=True)``.
    """
    with STATE.lock:
        return list(STATE.reports)


def _after_load(trigger: str) -> None:
    """Seal the objects loaded since the last sweep. Never raises an
    ``Exception``: an import must behave exactly as without the hook, so a
    failure to seal becomes a ``RuntimeWarning`` (and a skipped range).
    """
    level = STATE.hook_level
    if level is None:
        return
    started = time.perf_counter()
    try:
        with STATE.lock:
            if STATE.busy:  # a load during our own sweep: the next event covers it
                return
            STATE.busy = True
            try:
                new = [o for o in syscalls.loaded_objects() if object_key(o) not in STATE.seen]
                if not new:
                    return
                page = page_size()
                # /proc/self/maps, not smaps: smaps walks the page tables of the
                # whole process on every read (its cost grows with RSS, and this
                # runs on every extension import); maps shows the same layout,
                # perms, files and offsets. What only smaps has, the seal bit,
                # a just-loaded object cannot have; re-sealing would be a no-op.
                plans = build_plans(new, procfs.read_maps(), level, None, page)
                pin_plans(plans)
                apply_plans(plans)
                STATE.seen.update(object_key(o) for o in new)
                report = build_report(plans, level, False, True, False, trigger, page, started)
                STATE.reports.append(report)
            finally:
                STATE.busy = False
    except Exception as exc:  # see the docstring: never fail an import
        import warnings  # noqa: PLC0415

        warnings.warn(
            f"sealkit: could not seal after {trigger}: {exc}", RuntimeWarning, stacklevel=3
        )


def install_hooks(level: str) -> None:
    """Wrap the two doors through which Python code loads ELF objects.

    * ``ExtensionFileLoader.create_module``, where ``_imp.create_dynamic``
      dlopens an extension module (and its dependencies): the class is
      wrapped in place, so specs, loaders, ``module.__loader__``, errors and
      ``importlib.reload`` are exactly as before; the sweep runs after the
      dlopen (relocation done, RELRO read-only) and before ``exec_module``.
    * ``ctypes.CDLL.__init__`` (also behind ``PyDLL`` and ``ctypes.cdll``),
      which dlopens the library.

    Objects loaded behind Python's back (a C library calling dlopen, glibc's
    NSS or iconv modules) are sealed at the next such event.
    """
    with STATE.lock:
        if STATE.hook_level is not None:
            if level == "all":
                STATE.hook_level = "all"
            return
        STATE.hook_level = level
    import ctypes  # noqa: PLC0415 - already loaded by _os.syscalls
    from importlib.machinery import ExtensionFileLoader  # noqa: PLC0415

    create_module = ExtensionFileLoader.create_module

    @functools.wraps(create_module)
    def sealing_create_module(self: ExtensionFileLoader, spec: Any) -> Any:
        try:
            return create_module(self, spec)
        finally:
            _after_load(f"import {spec.name}")

    init = ctypes.CDLL.__init__

    @functools.wraps(init)
    def sealing_init(self: Any, name: Any, *args: Any, **kwargs: Any) -> None:
        try:
            init(self, name, *args, **kwargs)
        finally:
            _after_load(f"ctypes {name}")

    setattr(ExtensionFileLoader, "create_module", sealing_create_module)  # noqa: B010
    setattr(ctypes.CDLL, "__init__", sealing_init)  # noqa: B010

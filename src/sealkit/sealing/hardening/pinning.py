"""Pinning: an object is made undeletable (``RTLD_NODELETE``) before it is sealed.

A sealed object cannot be unmapped. glibc's ``dlclose`` ignores the refused
``munmap`` and forgets the object, so its mappings stay behind, and the next
``dlopen`` maps a fresh copy, which the import hooks seal again: glibc's iconv
(gconv) modules, loaded and unloaded as conversions come and go, then grow the
process by one copy per cycle until ``vm.max_map_count`` (measured in
``tests/kernel/test_hardening_ownership.py``; docs/hardening.md gives the
figures). Pinned, the object simply stays loaded: ``dlclose`` drops a
reference and unloads nothing, a later ``dlopen`` returns the same copy, so
the mappings are bounded by the number of distinct objects ever loaded. An
object that cannot be pinned is not sealed.
"""

from __future__ import annotations

from typing import Final

from ..._os import syscalls
from .plan import Plan
from .report import SkippedRange

__all__ = ["pin_plans", "pinned_objects"]

# (load bias, dlpi_name) -> path, of every object pinned by this process.
# Guarded by the hooks' lock (harden() and the sweeps hold it).
_PINNED: Final[dict[tuple[int, str], str]] = {}


def pinned_objects() -> tuple[str, ...]:
    """The paths of the objects sealkit pinned (made undeletable) before
    sealing them, oldest first: each stays loaded until the process exits."""
    return tuple(_PINNED.values())


def pin_plans(plans: list[Plan]) -> None:
    """Pin each object with ranges to seal; an object that cannot be pinned
    has those ranges moved to ``skip``, with the reason. The main program
    (no name) and system mappings are never unloaded and need no pin."""
    for entry in plans:
        if not entry.name or all(r.already_sealed for r in entry.seal):
            continue
        key = (entry.base, entry.name)
        if key in _PINNED:
            continue
        why = syscalls.pin_loaded(entry.name, entry.base)
        if not why:
            _PINNED[key] = entry.path
            continue
        reason = (
            f"could not be pinned ({why}): a dlclose would leave its sealed mappings "
            "behind, so it is not sealed"
        )
        keep = [k for k, r in enumerate(entry.seal) if r.already_sealed]
        entry.skip += [
            SkippedRange(r.start, r.end, r.kind, reason) for r in entry.seal if not r.already_sealed
        ]
        entry.seal = [entry.seal[k] for k in keep]
        entry.expect = [entry.expect[k] for k in keep]

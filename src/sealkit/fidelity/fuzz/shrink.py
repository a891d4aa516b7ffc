"""Shrinking a divergent trace: delta debugging, then simpler calls."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import replace

from ...flags import MapFlag, MclFlag
from ...ops import (
    MODEL_BASES,
    FilePwrite,
    Ftruncate,
    MemoryWrite,
    Mlock,
    Mlockall,
    Mmap,
    Mprotect,
    Mseal,
    Op,
    PkeyMprotect,
    ProcessMadvise,
    Punch,
    Write,
)
from ..differential import Divergence
from .generator import EXTRA_FLAGS, PS

__all__ = ["shrink"]


def _simpler(op: Op) -> list[Op]:
    """Simpler variants of one call (each removes one complication)."""
    out: list[Op] = []
    if isinstance(op, Write | MemoryWrite | FilePwrite) and op.tag is not None:
        out.append(replace(op, tag=None))
    if isinstance(op, FilePwrite | Ftruncate | Punch) and op.file_ro:
        out.append(replace(op, file_ro=False))
    if isinstance(op, Mlockall) and op.flags & MclFlag.ONFAULT and op.flags != MclFlag.ONFAULT:
        out.append(replace(op, flags=MclFlag(op.flags & ~MclFlag.ONFAULT)))
    if isinstance(op, Mmap):
        for bit in MapFlag:
            if bit in EXTRA_FLAGS and op.flags & bit:
                out.append(replace(op, flags=MapFlag(op.flags & ~bit)))
        if op.offset:
            out.append(replace(op, offset=0))
        if op.file_ro:
            out.append(replace(op, file_ro=False))
    if isinstance(op, Mseal) and op.flags:
        out.append(replace(op, flags=0))
    if isinstance(op, Mlock) and op.onfault:
        out.append(replace(op, onfault=False))
    if isinstance(op, PkeyMprotect):
        out.append(Mprotect(op.addr, op.length, op.prot))
    length = getattr(op, "length", None)
    if isinstance(length, int) and length % PS and length < 1 << 40:
        out.append(replace(op, length=(length + PS - 1) // PS * PS))  # type: ignore[call-arg]
    addr = getattr(op, "addr", None)
    if isinstance(addr, int) and addr % PS and MODEL_BASES.zone_of(addr):
        out.append(replace(op, addr=addr - addr % PS))  # type: ignore[call-arg]
    if isinstance(op, ProcessMadvise) and len(op.ranges) > 1:
        out += [replace(op, ranges=(r,)) for r in op.ranges]
    return out


def shrink(
    ops: Sequence[Op],
    fails: Callable[[list[Op]], Divergence | None],
    *,
    budget: int = 400,
) -> tuple[list[Op], Divergence | None]:
    """A smaller trace that still diverges: drop what follows the divergence,
    then chunks and single calls (delta debugging), then simplify calls one
    complication at a time. ``fails`` runs a candidate on both sides."""
    best = list(ops)
    found = fails(best)
    if found is None:
        return best, None
    tries = 0

    def attempt(candidate: list[Op]) -> bool:
        nonlocal best, found, tries
        if tries >= budget or not candidate:
            return False
        tries += 1
        got = fails(candidate)
        if got is None:
            return False
        best, found = candidate, got
        return True

    if found.step is not None and found.step + 1 < len(best):
        attempt(best[: found.step + 1])
    chunk = max(len(best) // 2, 1)
    while chunk >= 1 and tries < budget:
        i = 0
        progressed = False
        while i < len(best) and tries < budget:
            if attempt(best[:i] + best[i + chunk :]):
                progressed = True
                if found.step is not None and found.step + 1 < len(best):
                    attempt(best[: found.step + 1])
            else:
                i += chunk
        if not progressed:
            chunk //= 2
    changed = True
    while changed and tries < budget:
        changed = False
        for i in range(len(best)):
            for variant in _simpler(best[i]):
                if attempt([*best[:i], variant, *best[i + 1 :]]):
                    changed = True
                    break
    return best, found

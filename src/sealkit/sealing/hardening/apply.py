"""Sealing a plan: each range checked again right before it is sealed.

Another thread may have dlclosed a library and mapped something else at its
address since the plan was made: that must never be sealed. What changed, or
what the kernel refused, moves from the plan's ``seal`` list to its ``skip``
list, with the reason.
"""

from __future__ import annotations

import errno
import os
from collections.abc import Sequence
from typing import TYPE_CHECKING, Final

from ..._os import procfs, syscalls
from ...errors import KernelError, kernel_error
from .plan import Expect, Plan, vma_flags
from .report import SkippedRange

if TYPE_CHECKING:
    from ..._os.procfs import Vma

__all__ = ["apply_plans"]

_CHANGED: Final = "changed since planned"


def _changed(want: Expect, found: Sequence[tuple[int, int, int, int, int, int, int, str]]) -> str:
    """Why the VMAs ``found`` over ``want``'s range (``procmap_vmas`` form:
    start, end, vma_flags, offset, dev_major, dev_minor, inode, name) are not
    what was planned, or ``""``. Mirrors ``verify`` in ``_fastsys.c``.
    """
    start, end, flags, major, minor, inode, offset, name = want
    addr = start
    for v_start, v_end, v_flags, v_offset, v_major, v_minor, v_inode, v_name in found:
        if v_end <= addr:
            continue
        if v_start > addr:
            break
        if v_flags & 2 and v_flags & 4:
            return "mapped writable and executable"
        if v_flags & 8:
            return "a shared mapping"
        if v_flags & 7 != flags:
            return "protection differs"
        if v_inode != inode or (inode and (v_major, v_minor) != (major, minor)):
            return "mapped from another file or anonymous memory"
        if inode and v_offset + (addr - v_start) != offset + (addr - start):
            return "file offset differs"
        if name is not None and os.fsencode(v_name) != name:
            return "a different kernel mapping"
        addr = v_end
        if addr >= end:
            return ""
    return "not mapped"


def _seal_checked(wants: Sequence[Expect]) -> list[str]:
    """Re-check each planned range right before sealing it and seal it only if
    it is still exactly what was planned; ``""`` per range sealed, else why not.

    Another thread may have dlclosed a library and mapped something else at
    its address since the plan was made: that must never be sealed. Strongest
    first: in C under the loader's lock (no dlclose/dlopen can interleave
    between check and seal); else in Python with PROCMAP_QUERY, range by range
    (microseconds between check and seal); else (Linux 6.10, no
    PROCMAP_QUERY) against one fresh /proc/self/maps read.
    """
    out = [""] * len(wants)
    todo = list(range(len(wants)))
    fd = os.open("/proc/self/maps", os.O_RDONLY | os.O_CLOEXEC)
    try:
        results = syscalls.seal_verified(fd, wants)
        if results is not None:
            todo = []
            for k, (code, err) in enumerate(results):
                start, end = wants[k][0], wants[k][1]
                if code == syscalls.SEAL_QUERY_FAILED and err in (errno.ENOTTY, errno.EINVAL):
                    todo.append(k)  # no PROCMAP_QUERY here: nothing done, re-check below
                elif code == syscalls.SEAL_QUERY_FAILED:
                    out[k] = f"could not re-check before sealing: {os.strerror(err)}"
                elif code == syscalls.SEAL_MSEAL_FAILED:
                    out[k] = f"mseal failed: {kernel_error(err, 'mseal', start, end - start)}"
                elif code:
                    out[k] = f"{_CHANGED}: {syscalls.SEAL_VERIFIED_REASONS[code]}"
        if not todo:
            return out
        try:
            syscalls.procmap_vmas(fd, 0, 1)
        except KernelError:
            fd_ok = False
        else:
            fd_ok = True
        snapshot = None if fd_ok else [_as_query(v) for v in procfs.read_maps()]
        for k in todo:
            want = wants[k]
            start, end = want[0], want[1]
            if snapshot is None:
                found = syscalls.procmap_vmas(fd, start, end, names=want[7] is not None)
            else:
                found = snapshot
            why = _changed(want, found)
            if why:
                out[k] = f"{_CHANGED}: {why}"
                continue
            try:
                syscalls.mseal(start, end - start)
            except KernelError as exc:
                out[k] = f"mseal failed: {exc}"
    finally:
        os.close(fd)
    return out


def _as_query(vma: Vma) -> tuple[int, int, int, int, int, int, int, str]:
    """A maps/smaps VMA in ``procmap_vmas``' form."""
    major, _, minor = vma.dev.partition(":")
    flags = vma_flags(vma.perms, vma.shared)
    return (vma.start, vma.end, flags, vma.offset, int(major or "0", 16),
            int(minor or "0", 16), vma.inode, vma.path)  # fmt: skip


def apply_plans(plans: list[Plan]) -> None:
    """mseal every planned range not yet sealed, each re-checked right before
    (:func:`_seal_checked`); move what changed or failed to ``skip``.
    """
    todo = [
        (i, j) for i, p in enumerate(plans) for j, r in enumerate(p.seal) if not r.already_sealed
    ]
    if not todo:
        return
    outcomes = _seal_checked([plans[i].expect[j] for i, j in todo])
    failed = {(i, j): why for (i, j), why in zip(todo, outcomes, strict=True) if why}
    for (i, j), reason in sorted(failed.items(), reverse=True):
        r = plans[i].seal.pop(j)
        plans[i].expect.pop(j)
        plans[i].skip.append(SkippedRange(r.start, r.end, r.kind, reason))

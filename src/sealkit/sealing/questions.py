"""is_sealed() and sealed_ranges(): questions about seals, no side effects."""

from __future__ import annotations

import errno as _errno
import operator

from .._os import procfs
from ..errors import ArgumentError, ArgumentTypeError, StateError, kernel_error
from ._buffers import buffer_span
from ._checks import PAGE, exact_int, round_up
from .code import CodePages
from .files import SealedFile
from .pages import Pages, PageState

__all__ = ["is_sealed", "sealed_ranges"]


def _target_span(target: object, length: object) -> tuple[int, int]:
    if isinstance(target, Pages | CodePages):
        if target.state is PageState.CLOSED:
            raise StateError("the pages are closed (unmapped)")
        span = (target.address, target.size)
    elif isinstance(target, SealedFile):
        span = (target.address, target.size)
    elif isinstance(target, int) and not isinstance(target, bool):
        span = (operator.index(target), exact_int(length, "with an integer address, length"))
    elif target is None or isinstance(target, bool | float | str):
        raise ArgumentTypeError(
            f"target must be an address, Pages or a buffer, not {type(target).__name__}"
        )
    else:
        span = buffer_span(target)
    if length is not None and not isinstance(target, int):
        raise ArgumentError("length is only for integer addresses")
    addr, size = span
    if not 0 <= addr < 1 << 64:
        raise ArgumentError(f"address {addr:#x} is outside the 64-bit address space")
    if not 0 < size <= (1 << 64) - addr:
        raise ArgumentError(f"length={size} must be positive and end inside 64 bits")
    return addr, size


def is_sealed(
    target: int | Pages | CodePages | SealedFile | object, length: int | None = None
) -> bool:
    """Whether every page touched by the range is sealed, from ``/proc/self/smaps``.

    ``target`` is an address (then ``length`` is required), a
    :class:`Pages`/:class:`CodePages`/:class:`SealedFile`, or any contiguous
    buffer (a view from :func:`freeze` or :meth:`SealedFile.view`, an
    ``mmap.mmap``). The answer is per page, not per VMA:
    an unaligned range covers the pages it touches. If any of those pages is
    unmapped the question has no answer and
    :class:`~sealkit.errors.UnmappedError` (ENOMEM, the same answer mseal
    gives for a hole, docs/reference/linux.md rule 2) is raised.
    """
    addr, size = _target_span(target, length)
    lo = addr // PAGE * PAGE
    hi = min(round_up(addr + size), 1 << 64)
    cursor = lo
    sealed = True
    for vma in procfs.read_smaps("self"):
        if vma.end <= cursor or vma.start >= hi:
            continue
        if vma.start > cursor:
            break
        sealed = sealed and bool(vma.sealed)
        cursor = vma.end
        if cursor >= hi:
            return sealed
    raise kernel_error(
        _errno.ENOMEM, "is_sealed", addr, size, detail=f"page {cursor:#x} is not mapped"
    )


def sealed_ranges(pid: int | str = "self") -> list[procfs.Vma]:
    """The sealed VMAs of a process (``VmFlags`` ``sl`` in its smaps)."""
    return [vma for vma in procfs.read_smaps(pid) if vma.sealed]

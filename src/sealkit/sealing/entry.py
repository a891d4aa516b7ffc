"""seal(target): the one entry point for "seal this object"."""

from __future__ import annotations

import mmap as _mmap

from ._checks import refuse
from .code import CodePages
from .files import SealedFile
from .mmaps import SealedMmap, seal_mmap
from .pages import Pages

__all__ = ["seal"]


def seal(target: Pages | CodePages | SealedFile | _mmap.mmap) -> SealedMmap | None:
    """Seal ``target`` if sealkit can prove it owns whole pages.

    One contract: ``seal(x)`` is the call for ``x``'s kind, and returns what
    that call returns. A :class:`Pages` or :class:`CodePages` is sealed with
    its ``seal()`` (returns ``None``: the object itself has ``address`` and
    ``size``); an anonymous ``mmap.mmap`` with :func:`seal_mmap` (returns its
    :class:`SealedMmap`, since an mmap does not tell its address); a
    :class:`SealedFile` is sealed already (``None``). Anything else
    (``bytes``, ``bytearray``, ``array.array``, a ``memoryview``, a numpy
    array, an integer address, a file-backed mmap, ...) is refused with
    :class:`~sealkit.errors.UnsafeTargetError` before any system call; for
    data, the message names the call that makes a sealed copy instead.
    """
    if isinstance(target, Pages | CodePages):
        target.seal()
        return None
    if isinstance(target, _mmap.mmap):
        return seal_mmap(target)
    if not isinstance(target, SealedFile):
        raise refuse(target)
    return None

"""seal(target): the one entry point for "seal this object"."""

from __future__ import annotations

import mmap as _mmap

from ._checks import refuse
from .code import CodePages
from .files import SealedFile
from .mmaps import seal_mmap
from .pages import Pages

__all__ = ["seal"]


def seal(target: Pages | CodePages | SealedFile | _mmap.mmap) -> None:
    """Seal ``target`` if sealkit can prove it owns whole pages: a
    :class:`Pages`, :class:`CodePages` or anonymous ``mmap.mmap`` (see
    :func:`seal_mmap`); a :class:`SealedFile` is sealed already (no-op).
    Anything else (``bytes``, ``bytearray``, ``array.array``, a
    ``memoryview``, a numpy array, an integer address, a file-backed mmap,
    ...) is refused with :class:`~sealkit.errors.UnsafeTargetError` before
    any system call.
    """
    if isinstance(target, Pages | CodePages):
        target.seal()
    elif isinstance(target, _mmap.mmap):
        seal_mmap(target)
    elif not isinstance(target, SealedFile):
        raise refuse(target)

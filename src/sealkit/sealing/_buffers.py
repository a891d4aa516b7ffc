"""Views over raw memory and buffer addresses, through the C API.

``ctypes.pythonapi`` is the interpreter itself, not libc (only
``sealkit._os`` loads libc). ``PyMemoryView_FromMemory`` makes a view with
no exporter object, so a read-only view cannot be turned back into a
writable one via ``view.obj``; :class:`ViewBase` counts the views derived
from one base view, so the owner of the pages can refuse to unmap them
while a view is alive.
"""

from __future__ import annotations

import ctypes
import gc
import sys
from typing import Final

from ..errors import ArgumentTypeError

PYBUF_READ: Final = 0x100
PYBUF_WRITE: Final = 0x200
_PyBUF_SIMPLE: Final = 0

memory_view = ctypes.pythonapi.PyMemoryView_FromMemory
memory_view.restype = ctypes.py_object
memory_view.argtypes = (ctypes.c_void_p, ctypes.c_ssize_t, ctypes.c_int)


class _PyBuffer(ctypes.Structure):
    """``Py_buffer`` (Include/pybuffer.h), layout stable since Python 3.3."""

    _fields_ = (
        ("buf", ctypes.c_void_p),
        ("obj", ctypes.c_void_p),
        ("len", ctypes.c_ssize_t),
        ("itemsize", ctypes.c_ssize_t),
        ("readonly", ctypes.c_int),
        ("ndim", ctypes.c_int),
        ("format", ctypes.c_char_p),
        ("shape", ctypes.c_void_p),
        ("strides", ctypes.c_void_p),
        ("suboffsets", ctypes.c_void_p),
        ("internal", ctypes.c_void_p),
    )


_get_buffer = ctypes.pythonapi.PyObject_GetBuffer
_get_buffer.restype = ctypes.c_int
_get_buffer.argtypes = (ctypes.py_object, ctypes.POINTER(_PyBuffer), ctypes.c_int)
release = ctypes.pythonapi.PyBuffer_Release
release.restype = None
release.argtypes = (ctypes.POINTER(_PyBuffer),)


def export(obj: object) -> _PyBuffer:
    """A buffer export of ``obj`` (the caller must release or keep it)."""
    view = _PyBuffer()
    try:
        _get_buffer(obj, ctypes.byref(view), _PyBUF_SIMPLE)
    except (BufferError, TypeError, ValueError) as exc:
        raise ArgumentTypeError(
            f"{type(obj).__name__} does not expose a contiguous buffer: {exc}"
        ) from None
    return view


def buffer_span(obj: object) -> tuple[int, int]:
    """``(address, length)`` of a buffer-protocol object (released at once)."""
    view = export(obj)
    try:
        return view.buf or 0, view.len
    finally:
        release(ctypes.byref(view))


def _mbuf_exports_offset() -> int | None:
    """Offset of ``exports`` in CPython's ``_PyManagedBufferObject``, verified.

    Every memoryview made from a base view (slices, casts, ``memoryview(v)``)
    registers with the base's managed buffer, which counts the views that
    are not released in ``exports`` (memoryobject.c ``mbuf_add_view``,
    ``_memory_release``). An object that exported a buffer from such a view
    (numpy, ctypes ``from_buffer``) keeps that view unreleasable. The field
    follows ``PyObject_HEAD`` and an ``int flags``; the layout is checked
    here on a scratch buffer, and ``None`` (fall back to counting
    references, which also counts released-but-alive views) if it differs.
    """
    word = ctypes.sizeof(ctypes.c_ssize_t)
    offset = 3 * word  # ob_refcnt, ob_type, int flags (padded)
    scratch = ctypes.create_string_buffer(16)
    base = memory_view(ctypes.addressof(scratch), 16, PYBUF_READ)
    (mbuf,) = gc.get_referents(base)

    def exports() -> int:
        return ctypes.c_ssize_t.from_address(id(mbuf) + offset).value

    try:
        if exports() != 1:
            return None
        first, second = base[:], memoryview(base)
        if exports() != 3:
            return None
        first.release()
        if exports() != 2:
            return None
        del first, second
        return offset if exports() == 1 else None
    finally:
        base.release()


_EXPORTS_OFFSET: Final = _mbuf_exports_offset()


class ViewBase:
    """A raw memoryview over the pages plus the count of live views derived
    from it (see :func:`_mbuf_exports_offset`)."""

    __slots__ = ("base", "baseline", "mbuf")

    def __init__(self, addr: int, length: int, writable: bool) -> None:
        self.base: memoryview = memory_view(addr, length, PYBUF_WRITE if writable else PYBUF_READ)
        (self.mbuf,) = gc.get_referents(self.base)
        self.baseline = sys.getrefcount(self.mbuf)

    def live(self) -> int:
        if _EXPORTS_OFFSET is not None:
            return ctypes.c_ssize_t.from_address(id(self.mbuf) + _EXPORTS_OFFSET).value - 1
        return sys.getrefcount(self.mbuf) - self.baseline

    def drop(self) -> None:
        self.base.release()

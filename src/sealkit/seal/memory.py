"""The safe sealing API: memory that sealkit owns, sealed without surprises.

Sealing is irreversible: a sealed mapping cannot be unmapped, moved, or
have its protection changed until the process exits (spec
kernel-behaviour rules 5-8). Sealing memory that someone else manages (the
heap behind a ``bytes``, an allocator's arena, a numpy buffer) therefore
breaks that someone later, often with a crash far from the cause. This
module only seals whole pages that it can prove are exclusively owned:

* :class:`Pages`: private anonymous pages sealkit maps itself. Write, read,
  view, :meth:`Pages.protect`, :meth:`Pages.seal`. States move one way:
  ``open -> sealed`` or ``open -> closed``.
* :func:`freeze`: copy bytes into fresh pages, make them read-only, seal,
  and return a read-only ``memoryview`` (secrets, configuration).
* :func:`seal_mmap`: seal an *anonymous* ``mmap.mmap`` the caller created,
  after checking in ``/proc/self/smaps`` that it is a whole, page-aligned
  anonymous mapping. File-backed mmaps are refused: CPython's ``resize()``
  truncates the file before the kernel refuses to move sealed pages (SIGBUS).
* :func:`map_file`: sealkit opens a file read-only itself, maps it
  ``PROT_READ | MAP_SHARED``, closes the descriptor and seals the mapping
  (:class:`SealedFile`): the safe way to seal a file mapping.
* :class:`CodePages`: W^X code pages. Machine code is written while the
  pages are ``rw-``, then one ``mprotect`` makes them ``r-x`` and they are
  sealed; the pages are never writable and executable at the same time.
* :func:`seal`: the one entry point for "seal this object"; anything that is
  not one of the above is refused with :class:`~sealkit.errors.UnsafeTargetError`
  before any system call, and nothing is sealed.
* :func:`is_sealed`, :func:`sealed_ranges`, :func:`support`: questions, no
  side effects.

The raw ``sealkit._os.syscalls.mseal(addr, length, flags=0)`` remains for
experts. It is **dangerous**: it seals whatever lies at ``addr``, including
memory the interpreter or an allocator will later try to free or move.

Memoryviews and unmapping
-------------------------
A ``memoryview`` into unmapped memory crashes the interpreter on access, so
:class:`Pages` counts the views it has handed out (every view, slice and
cast of a view keeps the view's managed buffer alive; sealkit watches that
buffer's reference count) and refuses :meth:`Pages.close`, and a
:meth:`Pages.protect` that would make a live view fault, while any view is
alive. Views handed out while the pages are not writable are read-only
memoryviews with no underlying object to reach for (``view.obj is None``).
Once sealed, the pages and every view into them stay valid until the
process exits.
"""

from __future__ import annotations

import ctypes
import enum
import errno as _errno
import functools
import gc
import mmap as _mmap
import operator
import os
import platform
import stat
import sys
import threading
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final, NoReturn

from .._os import procfs, syscalls
from .._os.files import NotRegularFile, open_regular
from ..errors import (
    ArgumentError,
    ArgumentTypeError,
    KernelError,
    StateError,
    UnsafeTargetError,
    kernel_error,
)
from ..flags import MapFlag, Prot

__all__ = [
    "CodePages",
    "PageState",
    "Pages",
    "SealedFile",
    "SealedMmap",
    "Support",
    "freeze",
    "is_sealed",
    "map_file",
    "seal",
    "seal_mmap",
    "sealed_ranges",
    "support",
]

PAGE: Final = _mmap.PAGESIZE
"""The running system's page size (sealing works on whole pages)."""

_MAX_LENGTH: Final = (1 << 63) - PAGE  # larger lengths cannot be mapped at all
_PROTS: Final[dict[str, int]] = {
    "none": int(Prot.NONE),
    "r": int(Prot.READ),
    "rw": int(Prot.READ | Prot.WRITE),
    "rx": int(Prot.READ | Prot.EXEC),
}
_ANON_PRIVATE: Final = int(MapFlag.PRIVATE | MapFlag.ANONYMOUS)


# --- the C-API helpers: views over raw memory, buffer addresses -------------
#
# ctypes.pythonapi is the interpreter itself, not libc (only _os.syscalls loads
# libc). PyMemoryView_FromMemory makes a view with no exporter object, so a
# read-only view cannot be turned back into a writable one via ``view.obj``.

_PyBUF_READ: Final = 0x100
_PyBUF_WRITE: Final = 0x200
_PyBUF_SIMPLE: Final = 0

_memory_view = ctypes.pythonapi.PyMemoryView_FromMemory
_memory_view.restype = ctypes.py_object
_memory_view.argtypes = (ctypes.c_void_p, ctypes.c_ssize_t, ctypes.c_int)


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
_release_buffer = ctypes.pythonapi.PyBuffer_Release
_release_buffer.restype = None
_release_buffer.argtypes = (ctypes.POINTER(_PyBuffer),)


def _export(obj: object) -> _PyBuffer:
    """A buffer export of ``obj`` (the caller must release or keep it)."""
    view = _PyBuffer()
    try:
        _get_buffer(obj, ctypes.byref(view), _PyBUF_SIMPLE)
    except (BufferError, TypeError, ValueError) as exc:
        raise ArgumentTypeError(
            f"{type(obj).__name__} does not expose a contiguous buffer: {exc}"
        ) from None
    return view


def _buffer_span(obj: object) -> tuple[int, int]:
    """``(address, length)`` of a buffer-protocol object (released at once)."""
    view = _export(obj)
    try:
        return view.buf or 0, view.len
    finally:
        _release_buffer(ctypes.byref(view))


def _round_up(n: int) -> int:
    return (n + PAGE - 1) // PAGE * PAGE


def _exact_int(value: object, name: str) -> int:
    """``value`` as an exact ``int``, or :class:`ArgumentTypeError`.

    ``operator.index`` yields the integer value itself, even for an ``int``
    subclass whose ``__int__`` or ``__index__`` says otherwise, so what is
    checked is what is used.
    """
    if isinstance(value, bool) or not isinstance(value, int):
        raise ArgumentTypeError(f"{name} must be an int, not {type(value).__name__}")
    return operator.index(value)


def _check_size(size: object, name: str = "size") -> int:
    size = _exact_int(size, name)
    if not 0 < size <= _MAX_LENGTH:
        raise ArgumentError(f"{name}={size} must be between 1 and {_MAX_LENGTH}")
    return size


def _check_prot(prot: object) -> int:
    if not isinstance(prot, str):
        raise ArgumentTypeError(
            f"protection must be one of {sorted(_PROTS)}, not {type(prot).__name__}"
        )
    try:
        return _PROTS[prot]
    except KeyError:
        raise ArgumentError(
            f"protection must be one of {sorted(_PROTS)}, not {prot!r}"
            + (" (W^X: use CodePages for code)" if "x" in prot and "w" in prot else "")
        ) from None


def _bytes_like(data: object) -> memoryview:
    """``data`` as a flat byte view, or a typed error (``str`` is not bytes)."""
    if isinstance(data, str):
        raise ArgumentTypeError("data must be bytes-like, not str (encode it first)")
    try:
        view = memoryview(data)  # type: ignore[arg-type]
    except TypeError:
        raise ArgumentTypeError(f"data must be bytes-like, not {type(data).__name__}") from None
    if not view.c_contiguous:
        raise ArgumentError("data must be a contiguous buffer")
    return view.cast("B") if view.format != "B" or view.ndim != 1 else view


def _check_offset(offset: object, limit: int) -> int:
    offset = _exact_int(offset, "offset")
    if not 0 <= offset <= limit:
        raise ArgumentError(f"offset={offset} is outside 0..{limit}")
    return offset


def _check_span(offset: object, size: object, limit: int, what: str) -> tuple[int, int]:
    """``(start, size)`` of a read of ``size`` bytes (``-1``: to the end) at
    ``offset`` inside ``limit`` bytes, or a typed error."""
    start = _check_offset(offset, limit)
    size = _exact_int(size, "size")
    if size < 0:
        size = limit - start
    if start + size > limit:
        raise ArgumentError(f"[{start}, {start + size}) is outside {what} {limit} bytes")
    return start, size


# --- Pages --------------------------------------------------------------------


class PageState(enum.Enum):
    """Where a :class:`Pages` object is in its one-way life.

    ``OPEN`` -> ``SEALED`` (irreversible: the pages stay mapped until the
    process exits) or ``OPEN`` -> ``CLOSED`` (unmapped). Nothing leads back.
    """

    OPEN = "open"
    SEALED = "sealed"
    CLOSED = "closed"

    def __repr__(self) -> str:
        return f"PageState.{self.name}"


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
    base = _memory_view(ctypes.addressof(scratch), 16, _PyBUF_READ)
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


_OPEN: Final = PageState.OPEN
_SEALED: Final = PageState.SEALED
_CLOSED: Final = PageState.CLOSED
_PAGE_MASK: Final = PAGE - 1
_mmap_call: Final = syscalls.mmap
_mseal_call: Final = syscalls.mseal
# One lock for every Pages object: state checks and the memory access or
# system call they guard must not interleave with another thread's close()
# (a read racing an munmap would crash). Operations take microseconds, and
# one shared lock costs nothing per object (benchmarks/bench_mseal.py).
# Reentrant because __del__ takes it too, and the garbage collector can run
# a finaliser in a thread that already holds it (as fast as a plain Lock).
_LOCK: Final = threading.RLock()


def _no_copy(obj: object) -> NoReturn:
    """``__reduce_ex__`` of the objects that own a mapping: copying or
    pickling one would give two objects the same pages, and the second
    would read, unmap or seal memory the first had unmapped (and someone
    else mapped since)."""
    raise ArgumentTypeError(
        f"cannot copy or pickle a {type(obj).__name__}: it owns a mapping in this process "
        "(copy its bytes with read() instead)"
    )


def _uninitialised(obj: object, name: str, slots: tuple[str, ...]) -> NoReturn:
    """``__getattr__`` of those objects: only reached when a slot was never
    set, i.e. ``__init__`` did not run (a subclass that skips it,
    ``cls.__new__(cls)``)."""
    if name in slots:
        raise StateError(
            f"this {type(obj).__name__} was never initialised (its __init__ did not run)"
        )
    raise AttributeError(f"{type(obj).__name__!r} object has no attribute {name!r}")


class _ViewBase:
    """A raw memoryview over the pages plus the count of live views derived
    from it (see :func:`_mbuf_exports_offset`)."""

    __slots__ = ("base", "baseline", "mbuf")

    def __init__(self, addr: int, length: int, writable: bool) -> None:
        self.base: memoryview = _memory_view(
            addr, length, _PyBUF_WRITE if writable else _PyBUF_READ
        )
        (self.mbuf,) = gc.get_referents(self.base)
        self.baseline = sys.getrefcount(self.mbuf)

    def live(self) -> int:
        if _EXPORTS_OFFSET is not None:
            return ctypes.c_ssize_t.from_address(id(self.mbuf) + _EXPORTS_OFFSET).value - 1
        return sys.getrefcount(self.mbuf) - self.baseline

    def drop(self) -> None:
        self.base.release()


class Pages:
    """Private anonymous pages that sealkit maps and owns.

    ``Pages(size, prot="rw")`` maps ``size`` bytes rounded up to whole pages
    (``len(pages)`` is the rounded length), zero-filled. Protection is one of
    ``"rw"``, ``"r"``, ``"rx"``, ``"none"``; there is no ``"rwx"`` (W^X).

    ::

        with Pages(4096) as p:
            p.write(b"key material")
            p.protect("r")
            p.seal()            # from here on the pages live until exit
            view = p.view()     # read-only memoryview, valid forever

    States (:class:`PageState`) only move forward: ``open -> sealed`` or
    ``open -> closed``. :meth:`close` of open pages unmaps them (refused
    while views are alive); :meth:`close` of sealed pages does nothing,
    because the kernel refuses to unmap sealed memory: it lives until the
    process exits, and :attr:`state` keeps saying ``SEALED``. Reads and
    writes that the protection would turn into a crash raise
    :class:`~sealkit.errors.StateError` instead. A ``Pages`` object
    serialises its methods with a lock.
    """

    __slots__ = ("__weakref__", "_addr", "_length", "_prot", "_ro", "_rw", "_state")

    def __init__(self, size: int, prot: str = "rw") -> None:
        # Lean on purpose (benchmarks/bench_mseal.py): the common case is
        # checked inline, the general checks only run for anything else.
        if type(size) is int and 0 < size <= _MAX_LENGTH:
            length = (size + _PAGE_MASK) & ~_PAGE_MASK
        else:
            length = _round_up(_check_size(size))
        prot_bits = _PROTS.get(prot) if type(prot) is str else None
        if prot_bits is None:
            prot_bits = _check_prot(prot)
        self._ro: _ViewBase | None = None
        self._rw: _ViewBase | None = None
        self._state = _CLOSED  # until the mapping exists
        self._length = length
        self._prot = prot
        self._addr = _mmap_call(0, length, prot_bits, _ANON_PRIVATE)
        self._state = _OPEN

    # -- what it is

    @property
    def address(self) -> int:
        """Start address of the mapping (page-aligned)."""
        return self._addr

    def __len__(self) -> int:
        return self._length

    @property
    def size(self) -> int:
        """Mapped length in bytes: the requested size rounded up to whole pages."""
        return self._length

    @property
    def protection(self) -> str:
        """``"rw"``, ``"r"``, ``"rx"`` or ``"none"``."""
        return self._prot

    @property
    def state(self) -> PageState:
        """``OPEN``, ``SEALED`` or ``CLOSED``; it only moves forward."""
        return self._state

    @property
    def sealed(self) -> bool:
        """True once :meth:`seal` succeeded: mapped and immutable until exit."""
        return self._state is PageState.SEALED

    @property
    def closed(self) -> bool:
        """True once :meth:`close` unmapped the pages."""
        return self._state is PageState.CLOSED

    @property
    def views_alive(self) -> int:
        """How many memoryviews (and objects built on them) into the pages are alive."""
        return (self._ro.live() if self._ro else 0) + (self._rw.live() if self._rw else 0)

    def __repr__(self) -> str:
        if self._state is PageState.CLOSED:
            return f"<Pages closed, {self._length} bytes>"
        extra = ", lives until process exit" if self._state is PageState.SEALED else ""
        return (
            f"<Pages {self._state.value} at {self._addr:#x}, {self._length} bytes, "
            f"{self._prot!r}{extra}>"
        )

    # -- checks

    def _mapped(self, doing: str) -> None:
        if self._state is PageState.CLOSED:
            raise StateError(f"cannot {doing}: the pages are closed (unmapped)")

    def _readable(self, doing: str) -> None:
        self._mapped(doing)
        if self._prot == "none":
            raise StateError(
                f"cannot {doing}: the pages have protection 'none'"
                + (" and are sealed" if self.sealed else "; call protect('r') first")
            )

    # -- data

    def write(self, data: bytes | bytearray | memoryview, offset: int = 0) -> int:
        """Copy ``data`` into the pages at ``offset``; returns the bytes written.

        Refused with :class:`StateError` when the protection is not ``"rw"``
        (a store would fault) or the pages are closed; with
        :class:`ArgumentError` when ``data`` does not fit.
        """
        src = _bytes_like(data)
        with _LOCK:
            self._mapped("write")
            if self._prot != "rw":
                raise StateError(
                    f"cannot write: the pages are {self._prot!r}, not writable"
                    + (
                        " and sealed (protection can no longer change)"
                        if self.sealed
                        else "; call protect('rw') first"
                    )
                )
            start = _check_offset(offset, self._length)
            end = start + src.nbytes
            if end > self._length:
                raise ArgumentError(
                    f"{src.nbytes} bytes at offset {start} do not fit in {self._length} bytes"
                )
            if self._rw is None:
                self._rw = _ViewBase(self._addr, self._length, True)
            self._rw.base[start:end] = src
            return src.nbytes

    def read(self, size: int = -1, offset: int = 0) -> bytes:
        """``size`` bytes from ``offset`` (``-1``: to the end) as ``bytes``."""
        with _LOCK:
            self._readable("read")
            start, size = _check_span(offset, size, self._length, "the pages'")
            return bytes(self._view_base().base[start : start + size])

    def _view_base(self) -> _ViewBase:
        if self._prot == "rw":
            if self._rw is None:
                self._rw = _ViewBase(self._addr, self._length, True)
            return self._rw
        if self._ro is None:
            self._ro = _ViewBase(self._addr, self._length, False)
        return self._ro

    def view(self) -> memoryview:
        """A memoryview of the whole pages: writable while the protection is
        ``"rw"``, read-only otherwise. While any view is alive, :meth:`close`
        and protection changes that would make it fault are refused.
        """
        with _LOCK:
            self._readable("make a view")
            return self._view_base().base[:]

    # -- transitions

    def protect(self, prot: str) -> None:
        """Change the protection to ``"rw"``, ``"r"``, ``"rx"`` or ``"none"``.

        Refused (:class:`StateError`) once sealed (mprotect on sealed memory
        is EPERM, spec kernel-behaviour rule 7), once closed, and while live
        views would fault under the new protection (writable views and a
        protection without write; any view and ``"none"``).
        """
        bits = _check_prot(prot)
        with _LOCK:
            self._mapped("change protection")
            if self._state is PageState.SEALED:
                raise StateError(
                    f"cannot change protection: the pages are sealed as {self._prot!r} "
                    "until the process exits (mprotect would fail with EPERM)"
                )
            writable_views = self._rw.live() if self._rw else 0
            readonly_views = self._ro.live() if self._ro else 0
            if prot != "rw" and writable_views:
                raise StateError(
                    f"cannot make the pages {prot!r}: {writable_views} writable view(s) are "
                    "alive and a write through them would crash; release them first"
                )
            if prot == "none" and readonly_views:
                raise StateError(
                    f"cannot make the pages 'none': {readonly_views} view(s) are alive and "
                    "reading them would crash; release them first"
                )
            syscalls.mprotect(self._addr, self._length, bits)
            self._prot = prot

    def seal(self) -> None:
        """Seal the pages (``mseal``): from now on they cannot be unmapped,
        moved, re-protected or discarded, until the process exits. Sealing
        sealed pages is a no-op (the kernel's mseal is idempotent). Raises
        :class:`StateError` if closed, and the kernel's error
        (:class:`~sealkit.errors.NotSupportedError`,
        :class:`~sealkit.errors.SealingDeniedError`) if sealing is
        unavailable; the state is then unchanged.
        """
        with _LOCK:
            state = self._state
            if state is _OPEN:
                _mseal_call(self._addr, self._length)
                self._state = _SEALED
            elif state is _CLOSED:
                raise StateError("cannot seal: the pages are closed (unmapped)")

    def close(self) -> None:
        """Unmap open pages; do nothing for sealed or closed ones.

        Sealed pages cannot be unmapped (munmap is EPERM, spec
        kernel-behaviour rule 5): they stay mapped, readable per their
        protection, until the process exits, and :attr:`state` stays
        ``SEALED``. Open pages with live views are not unmapped: that raises
        :class:`StateError` (a view into unmapped memory crashes on access).
        """
        with _LOCK:
            if self._state is not PageState.OPEN:
                return
            alive = self.views_alive
            if alive:
                raise StateError(
                    f"cannot close: {alive} memoryview(s) into the pages are alive; "
                    "release them (view.release() or del) first"
                )
            for base in (self._ro, self._rw):
                if base is not None:
                    base.drop()
            self._ro = self._rw = None
            syscalls.munmap(self._addr, self._length)
            self._state = PageState.CLOSED

    def __enter__(self) -> Pages:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __reduce_ex__(self, protocol: object) -> NoReturn:
        _no_copy(self)

    def __init_subclass__(cls, **kwargs: Any) -> None:
        # A subclass whose __init__ forgets Pages.__init__ would leave the
        # slots unset and fail later with AttributeError; say so at once.
        # (Not a __getattr__ as on CodePages: defining one slows down every
        # attribute lookup, and Pages sits on the hot path.)
        super().__init_subclass__(**kwargs)
        init = cls.__dict__.get("__init__")
        if init is None:
            return

        @functools.wraps(init)
        def checked_init(self: Pages, *args: Any, **kw: Any) -> None:
            init(self, *args, **kw)
            try:
                self._state  # noqa: B018 - set by Pages.__init__ and nothing else
            except AttributeError:
                raise StateError(
                    f"{cls.__name__}.__init__ must call Pages.__init__ (super().__init__(size))"
                ) from None

        cls.__init__ = checked_init  # type: ignore[method-assign]

    def __del__(self) -> None:
        # Unmap open pages nobody can reach any more, unless a view into them
        # survives (then the mapping is deliberately leaked: a view into
        # unmapped memory would crash). Under the lock and CLOSED before the
        # munmap: a weak reference can still hand the object to another
        # thread while this runs, and that thread must see it closed, not
        # read pages being unmapped. Sealed and closed are final states, so
        # they need no lock. Never raise, even at interpreter exit.
        try:
            if self._state is not _OPEN:
                return
            with _LOCK:
                if self._state is _OPEN and not self.views_alive:
                    self._state = _CLOSED
                    syscalls.munmap(self._addr, self._length)
        except Exception:
            pass


# --- freeze -------------------------------------------------------------------


def freeze(data: bytes | bytearray | memoryview) -> memoryview:
    """Copy ``data`` into fresh pages, make them read-only, seal them, and
    return a read-only memoryview of exactly ``len(data)`` bytes.

    The memory can never be written, unmapped or discarded again by this
    process (``/proc/self/mem`` writes and ptrace are the exceptions the
    kernel allows, spec kernel-behaviour rule 18); it is freed at exit. Empty
    data still gets one sealed page. If sealing is not available the pages
    are unmapped and the kernel's error is raised.
    """
    src = _bytes_like(data)
    pages = Pages(max(src.nbytes, 1))
    try:
        pages.write(src)
        pages.protect("r")
        pages.seal()
    except BaseException:
        pages.close()
        raise
    return pages.view()[: src.nbytes]


# --- CodePages ------------------------------------------------------------------


class CodePages:
    """W^X pages for machine code.

    Write code while the pages are ``rw-``; :meth:`seal` switches them to
    ``r-x`` with a single ``mprotect`` (so no moment is both writable and
    executable) and seals them; :meth:`function` then returns a ctypes
    function pointer into them, valid until the process exits::

        code = CodePages.from_code(bytes.fromhex("b82a000000c3"))  # mov eax, 42; ret
        answer = code.function(ctypes.c_int)
        assert answer() == 42

    Machine code is architecture-specific; sealkit does not check it.
    """

    __slots__ = ("_pages",)

    def __init__(self, size: int) -> None:
        self._pages = Pages(size, "rw")

    @classmethod
    def from_code(cls, code: bytes | bytearray | memoryview) -> CodePages:
        """Pages holding ``code``, already executable and sealed."""
        src = _bytes_like(code)
        pages = cls(max(src.nbytes, 1))
        try:
            pages.write(src)
            pages.seal()
        except BaseException:
            pages.close()
            raise
        return pages

    @property
    def address(self) -> int:
        return self._pages.address

    @property
    def size(self) -> int:
        return self._pages.size

    @property
    def state(self) -> PageState:
        return self._pages.state

    @property
    def sealed(self) -> bool:
        return self._pages.sealed

    @property
    def protection(self) -> str:
        return self._pages.protection

    def __repr__(self) -> str:
        return repr(self._pages).replace("<Pages", "<CodePages", 1)

    def write(self, code: bytes | bytearray | memoryview, offset: int = 0) -> int:
        """Copy machine code in while the pages are still writable."""
        if self._pages.sealed:
            raise StateError("cannot write: the code pages are sealed r-x (W^X)")
        return self._pages.write(code, offset)

    def read(self, size: int = -1, offset: int = 0) -> bytes:
        return self._pages.read(size, offset)

    def seal(self) -> None:
        """``rw-`` -> ``r-x`` in one mprotect, then ``mseal``. Idempotent."""
        if self._pages.sealed:
            return
        self._pages.protect("rx")
        self._pages.seal()

    def function(self, restype: Any = None, *argtypes: Any, offset: int = 0) -> Any:
        """A ctypes function pointer to ``address + offset`` with the given
        C signature (``restype``, ``*argtypes``, as for ``ctypes.CFUNCTYPE``).
        Only sealed (hence ``r-x`` and immortal) code can be called.
        """
        if not self._pages.sealed:
            raise StateError(
                "cannot make a function pointer: seal() the code pages first "
                "(they are still writable and could be unmapped)"
            )
        start = _check_offset(offset, self._pages.size - 1)
        try:
            prototype = ctypes.CFUNCTYPE(restype, *argtypes)
        except TypeError as exc:
            raise ArgumentTypeError(f"not a ctypes signature: {exc}") from None
        return prototype(self._pages.address + start)

    def close(self) -> None:
        """Unmap unsealed code pages; sealed ones live until the process exits."""
        self._pages.close()

    def __reduce_ex__(self, protocol: object) -> NoReturn:
        _no_copy(self)

    if not TYPE_CHECKING:  # a runtime guard; type checkers keep flagging unknown names

        def __getattr__(self, name: str) -> NoReturn:
            _uninitialised(self, name, CodePages.__slots__)

    def __enter__(self) -> CodePages:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


# --- mmap ---------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class SealedMmap:
    """What :func:`seal_mmap` sealed: ``[address, address + length)``, whole
    pages of an anonymous ``mmap.mmap``."""

    address: int
    length: int


def _refuse(target: object) -> UnsafeTargetError:
    kind = type(target).__name__
    module = type(target).__module__
    if isinstance(target, int):
        why = "an integer address: sealkit cannot know who owns that memory (use sealkit._os.syscalls.mseal at your own risk)"
    elif isinstance(target, bytes | bytearray | str):
        why = "its buffer lives on the heap, shared with other objects the allocator will free or move"
    elif isinstance(target, memoryview):
        why = "a memoryview does not own its memory; seal the Pages or mmap it came from"
    elif module == "array":
        why = "its buffer lives on the heap and moves when the array grows"
    elif module.startswith("numpy"):
        why = "numpy buffers come from the heap allocator, shared with other objects"
    elif module == "ctypes" or module.startswith("_ctypes"):
        why = "ctypes buffers come from the heap allocator"
    else:
        why = (
            "only Pages, CodePages and anonymous mmap.mmap objects are known to own "
            "whole pages (for files use sealkit.map_file)"
        )
    return UnsafeTargetError(f"refusing to seal this {kind}: {why}; nothing was sealed")


# smaps names a MAP_SHARED|MAP_ANONYMOUS mapping "/dev/zero (deleted)":
# shmem_zero_setup() (mm/shmem.c) backs it with an unlinked shmem file of
# that name on the kernel's internal shm mount. Named anonymous mappings
# (prctl PR_SET_VMA_ANON_NAME) print as "[anon:NAME]" / "[anon_shmem:NAME]".
_SHMEM_ZERO: Final = "/dev/zero (deleted)"


@functools.cache
def _shmem_dev() -> str | None:
    """The device smaps prints for shared anonymous memory, measured once
    on a probe page (``None`` if it could not be found: nothing shared then
    counts as anonymous).

    A regular file can be *named* ``/dev/zero (deleted)`` (unlink a file
    created at that path), but it cannot live on the kernel's internal shm
    mount. memfds do live there, and print as ``/memfd:NAME (deleted)``.
    """
    addr = syscalls.mmap(0, PAGE, int(Prot.NONE), int(MapFlag.SHARED | MapFlag.ANONYMOUS))
    try:
        return next((v.dev for v in procfs.read_maps("self") if v.start == addr), None)
    finally:
        syscalls.munmap(addr, PAGE)


def _is_anonymous(vma: procfs.Vma, shmem_dev: str | None) -> bool:
    """Whether ``vma`` is anonymous memory: private anonymous, or shared
    anonymous (shmem with no file anyone can open, hence none to truncate).
    ``shmem_dev`` is what :func:`_shmem_dev` measures; with ``None`` no
    shared VMA counts as anonymous. A private mapping of ``/dev/zero``
    keeps the device as its file, so it is (harmlessly) not anonymous here."""
    if not vma.shared:
        return vma.inode == 0 and (not vma.path or vma.path.startswith("[anon:"))
    return vma.dev == shmem_dev and (vma.path == _SHMEM_ZERO or vma.path.startswith("[anon_shmem:"))


def _open_fds_on(vma: procfs.Vma) -> list[int]:
    """File descriptors of this process open on the object behind ``vma``
    (same device and inode), from ``/proc/self/fd``.

    Shared anonymous memory has no path anyone can open, except through
    ``/proc/PID/map_files/`` (which needs CAP_SYS_ADMIN): an ``mmap.mmap``
    made from such a descriptor maps the same shmem object, and CPython
    keeps the descriptor, so ``resize()`` would truncate the object under
    the sealed pages (SIGBUS on the next touch). smaps cannot tell that mmap
    from ``mmap.mmap(-1, n)``; the open descriptor can.
    """
    major, minor = (int(part, 16) for part in vma.dev.split(":"))
    found = []
    for name in os.listdir("/proc/self/fd"):
        try:
            st = os.stat(f"/proc/self/fd/{name}")
        except OSError:  # closed meanwhile, or the listing's own descriptor
            continue
        if st.st_ino == vma.inode and (os.major(st.st_dev), os.minor(st.st_dev)) == (major, minor):
            found.append(int(name))
    return found


def seal_mmap(m: _mmap.mmap) -> SealedMmap:
    """Seal an *anonymous* ``mmap.mmap`` the caller created; returns what was sealed.

    Accepted: ``mmap.mmap(-1, n)`` (shared anonymous) and
    ``mmap.mmap(-1, n, flags=mmap.MAP_PRIVATE)`` (private anonymous).
    Checked first, from ``/proc/self/smaps``: the mmap is open, starts on a
    page boundary, the pages ``[address, address + len)`` rounded up to
    whole pages are one mapping (the same permissions and backing
    throughout; a shared mapping must start and end at the mmap's bounds; a
    private anonymous mmap the kernel merged with a neighbour is accepted,
    since sealing a sub-range only seals those pages), and that mapping is
    anonymous. Otherwise :class:`~sealkit.errors.UnsafeTargetError` and
    nothing is sealed. The buffer stays exported while checking and
    sealing, so a concurrent ``close()`` cannot swap the mapping underneath.

    **File-backed mmaps are refused**, whatever their access mode: CPython's
    ``mmap.resize()`` calls ``ftruncate`` on the file *before* ``mremap``,
    so on a sealed mapping the file shrinks, the kernel refuses the move
    (EPERM), and touching the sealed pages now past end-of-file kills the
    process with SIGBUS. ``/proc`` cannot tell a resizable mmap from a
    read-only one (an ``ACCESS_WRITE`` mmap made read-only with ``mprotect``
    shows the same ``r--s`` and VmFlags as ``ACCESS_READ``), so no file
    mmap is safe to seal. Use :func:`map_file` for a sealed read-only file
    mapping, or :func:`freeze` for a private copy. For the same reason a
    shared mmap is refused while any file descriptor of this process is open
    on the memory behind it (an mmap made from ``/proc/self/map_files/...``
    is file-backed, though smaps shows it as shared anonymous memory).

    What CPython (3.11 and later) then does with the sealed anonymous mmap,
    tested in ``tests/kernel/test_mmap_seal.py``:

    * ``m.close()``, also at the end of a ``with`` block, returns normally
      and ``m`` reports closed, but CPython ignores munmap's EPERM: the pages
      stay mapped (leaked) until exit. Further use of ``m`` raises
      ``ValueError``.
    * garbage collection and interpreter exit: the same ignored munmap, no
      exception, no warning; the kernel frees the pages at exit.
    * ``m.resize()``: ``PermissionError`` (EPERM from mremap) and ``m`` is
      unchanged. CPython holds no file descriptor for ``mmap.mmap(-1, n)``,
      so there is nothing to truncate.
    """
    if not isinstance(m, _mmap.mmap):
        raise _refuse(m)
    if m.closed:
        raise StateError("cannot seal a closed mmap")
    exported = _export(m)
    try:
        addr, size = exported.buf or 0, exported.len
        if size <= 0 or addr % PAGE:
            raise UnsafeTargetError(
                f"refusing to seal an mmap at {addr:#x} of {size} bytes: not a page-aligned "
                "mapping; nothing was sealed"
            )
        length = _round_up(size)
        vmas = _covering(addr, length)
        first, last = vmas[0], vmas[-1]
        shmem_dev = _shmem_dev() if any(v.shared for v in vmas) else None
        if not all(_is_anonymous(vma, shmem_dev) for vma in vmas):
            raise UnsafeTargetError(
                f"refusing to seal the file-backed mmap at {addr:#x}: CPython's mmap.resize() "
                "truncates the file before the kernel refuses to move sealed pages, and touching "
                "them past end-of-file kills the process with SIGBUS; use sealkit.map_file(path) "
                "for a sealed read-only file mapping or sealkit.freeze(m) for a sealed copy; "
                "nothing was sealed"
            )
        fds = _open_fds_on(first) if first.shared else []
        if fds:
            raise UnsafeTargetError(
                f"refusing to seal the shared mmap at {addr:#x}: file descriptor(s) {fds} of this "
                "process are open on the memory behind it (an mmap made from one, as through "
                "/proc/self/map_files, truncates it on resize(), killing the process with SIGBUS "
                "once sealed); nothing was sealed"
            )
        for vma in vmas:
            if (vma.perms, vma.path, vma.inode, vma.dev) != (
                first.perms,
                first.path,
                first.inode,
                first.dev,
            ):
                raise UnsafeTargetError(
                    f"refusing to seal the mmap at {addr:#x}: its pages are not one mapping "
                    f"({first.perms} {first.path!r} vs {vma.perms} {vma.path!r}); nothing was sealed"
                )
        if first.shared and (first.start != addr or last.end != addr + length):
            raise UnsafeTargetError(
                f"refusing to seal the mmap at {addr:#x}+{length:#x}: the mapping there spans "
                f"[{first.start:#x}, {last.end:#x}), more than the mmap; nothing was sealed"
            )
        syscalls.mseal(addr, length)
        return SealedMmap(addr, length)
    finally:
        _release_buffer(ctypes.byref(exported))


def _covering(addr: int, length: int) -> list[procfs.Vma]:
    """The VMAs covering ``[addr, addr+length)`` without a gap, or refuse."""
    end = addr + length
    vmas = [v for v in procfs.read_smaps("self") if v.end > addr and v.start < end]
    cursor = addr
    for vma in vmas:
        if vma.start > cursor:
            break
        cursor = vma.end
    if not vmas or cursor < end:
        raise UnsafeTargetError(
            f"refusing to seal [{addr:#x}, {end:#x}): not all of it is mapped; nothing was sealed"
        )
    return vmas


# --- map_file -------------------------------------------------------------------


class SealedFile:
    """A read-only, sealed mapping of (part of) a file, from :func:`map_file`.

    ``address`` and ``size`` are the mapping (whole pages); ``offset`` and
    ``length`` the file bytes it shows; ``path`` the file. The mapping lives
    until the process exits: there is nothing to close, and :meth:`view`
    stays valid forever. Sealing fixes the *mapping* (it cannot be unmapped,
    moved, replaced or made writable), not the file: another process that
    can write the file can change the bytes, and one that truncates it makes
    reads past the new end of file kill this process with SIGBUS.
    """

    __slots__ = ("_addr", "_length", "_offset", "_path", "_size")

    def __init__(
        self, path: str, offset: int, length: int, addr: int, size: int, *, _key: object = None
    ) -> None:
        if _key is not _MAP_FILE_KEY:
            # Its reads trust addr and length: only map_file() knows them true.
            raise ArgumentTypeError("SealedFile objects come from sealkit.map_file(path)")
        self._path = path
        self._offset = offset
        self._length = length
        self._addr = addr
        self._size = size

    @property
    def path(self) -> str:
        """The file's absolute path, as given (symbolic links not resolved)."""
        return self._path

    @property
    def address(self) -> int:
        """Start address of the sealed mapping (page-aligned)."""
        return self._addr

    @property
    def size(self) -> int:
        """Mapped bytes: :attr:`length` rounded up to whole pages."""
        return self._size

    @property
    def offset(self) -> int:
        """File offset of the first mapped byte (page-aligned)."""
        return self._offset

    @property
    def length(self) -> int:
        """File bytes the mapping shows, from :attr:`offset`."""
        return self._length

    @property
    def sealed(self) -> bool:
        """Always True: a ``SealedFile`` only exists once its mapping is sealed."""
        return True

    def __repr__(self) -> str:
        return (
            f"<SealedFile {self._path!r} bytes [{self._offset}, {self._offset + self._length}) "
            f"at {self._addr:#x}, {self._size} bytes, 'r', sealed, lives until process exit>"
        )

    def view(self) -> memoryview:
        """A read-only memoryview of exactly :attr:`length` bytes, with no
        underlying object (``view.obj is None``), valid until exit."""
        view: memoryview = _memory_view(self._addr, self._length, _PyBUF_READ)
        return view

    def read(self, size: int = -1, offset: int = 0) -> bytes:
        """``size`` bytes from ``offset`` (``-1``: to the end) as ``bytes``."""
        start, size = _check_span(offset, size, self._length, "the file mapping's")
        return ctypes.string_at(self._addr + start, size)

    def __reduce_ex__(self, protocol: object) -> NoReturn:
        _no_copy(self)

    if not TYPE_CHECKING:  # a runtime guard; type checkers keep flagging unknown names

        def __getattr__(self, name: str) -> NoReturn:
            _uninitialised(self, name, SealedFile.__slots__)


_MAP_FILE_KEY: Final = object()


def map_file(
    path: str | bytes | os.PathLike[str] | os.PathLike[bytes],
    *,
    offset: int = 0,
    length: int | None = None,
) -> SealedFile:
    """Map ``length`` bytes of a regular file from ``offset`` read-only and seal the mapping.

    sealkit opens the file itself ``O_RDONLY``, maps
    ``[offset, offset + length)`` with ``PROT_READ | MAP_SHARED``, closes
    the descriptor and seals the mapping, so no file descriptor in this
    process can truncate or write the file through sealkit, the mapping can
    never become writable (an ``O_RDONLY`` shared mapping lacks
    ``VM_MAYWRITE``), and ``MADV_REMOVE`` cannot punch holes in it (EACCES;
    with an ``O_RDWR`` descriptor it would zero the file's data, spec
    kernel-behaviour rule 11). ``offset`` must be page-aligned; ``length``
    defaults to the rest of the file.

    Errors: the OS's own ``OSError`` (``FileNotFoundError``,
    ``PermissionError``, ...) when the file cannot be opened;
    :class:`~sealkit.errors.ArgumentError` for a directory or other
    non-regular file, an unaligned offset, an empty range or one that ends
    past end of file (its pages would raise SIGBUS);
    :class:`~sealkit.errors.ArgumentTypeError` for wrong types; the
    kernel's error if the file system cannot map it or sealing is
    unavailable (then nothing stays mapped).

    The remaining caveat: sealing does not stop *another* process from
    truncating the file, and touching a mapping past end of file raises
    SIGBUS whether sealed or not. For content that must never change, copy
    it with :func:`freeze`.
    """
    if isinstance(path, bool | int) or not isinstance(path, str | bytes | os.PathLike):
        raise ArgumentTypeError(
            f"path must be str, bytes or os.PathLike, not {type(path).__name__}"
        )
    try:
        raw = os.fspath(path)
    except TypeError as exc:
        raise ArgumentTypeError(f"path: {exc}") from None
    name = os.path.abspath(os.fsdecode(raw))
    offset = _exact_int(offset, "offset")
    if not 0 <= offset <= _MAX_LENGTH or offset % PAGE:
        raise ArgumentError(f"offset={offset} must be a non-negative multiple of {PAGE}")
    if length is not None:
        length = _check_size(length, "length")
    try:
        fd, st = open_regular(raw)  # a FIFO or device is refused before it is opened
    except ValueError as exc:  # embedded NUL, unencodable name
        raise ArgumentError(f"bad path {name!r}: {exc}") from None
    except NotRegularFile as exc:
        kind = "a directory" if stat.S_ISDIR(exc.mode) else "not a regular file"
        raise ArgumentError(f"cannot map {name!r}: it is {kind}") from None
    try:
        available = st.st_size - offset
        if available <= 0:
            raise ArgumentError(
                f"nothing to map in {name!r}: the file has {st.st_size} bytes"
                + (f" and offset={offset} is at or past its end" if offset else "")
            )
        if length is None:
            length = available
        elif length > available:
            raise ArgumentError(
                f"offset={offset} + length={length} ends past the end of {name!r} "
                f"({st.st_size} bytes): touching those pages would raise SIGBUS"
            )
        size = _round_up(length)
        addr = syscalls.mmap(0, size, int(Prot.READ), int(MapFlag.SHARED), fd, offset)
    finally:
        os.close(fd)  # the mapping holds its own reference to the file
    try:
        syscalls.mseal(addr, size)
    except BaseException:
        syscalls.munmap(addr, size)
        raise
    return SealedFile(name, offset, length, addr, size, _key=_MAP_FILE_KEY)


# --- seal(target) ---------------------------------------------------------------


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
        raise _refuse(target)


# --- questions ------------------------------------------------------------------


def _target_span(target: object, length: object) -> tuple[int, int]:
    if isinstance(target, Pages | CodePages):
        if target.state is PageState.CLOSED:
            raise StateError("the pages are closed (unmapped)")
        span = (target.address, target.size)
    elif isinstance(target, SealedFile):
        span = (target.address, target.size)
    elif isinstance(target, int) and not isinstance(target, bool):
        span = (operator.index(target), _exact_int(length, "with an integer address, length"))
    elif target is None or isinstance(target, bool | float | str):
        raise ArgumentTypeError(
            f"target must be an address, Pages or a buffer, not {type(target).__name__}"
        )
    else:
        span = _buffer_span(target)
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
    gives for a hole, spec kernel-behaviour rule 2) is raised.
    """
    addr, size = _target_span(target, length)
    lo = addr // PAGE * PAGE
    hi = min(_round_up(addr + size), 1 << 64)
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


# --- support ------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Support:
    """What this kernel and process can do, from :func:`support`.

    ``available``: ``mseal(0, 0, 0)`` returned 0. ``errno``: its errno when
    it did not. ``reason``: one sentence saying why. ``smaps_reports_seals``:
    a forked child sealed a page and its ``/proc/PID/smaps`` showed ``sl``
    (``None`` when that could not be tried). ``seccomp_mode``: this
    process's ``Seccomp`` field (0 none, 1 strict, 2 filter) or ``None``.
    """

    available: bool
    errno: int | None
    reason: str
    kernel: str
    arch: str
    smaps_reports_seals: bool | None
    smaps_detail: str
    seccomp_mode: int | None
    seccomp_filters: int | None


def _seccomp() -> tuple[int | None, int | None]:
    try:
        status = procfs.read_status("self")
    except Exception:
        return None, None

    def num(key: str) -> int | None:
        value = status.get(key, "")
        return int(value) if value.isdigit() else None

    return num("Seccomp"), num("Seccomp_filters")


def _probe_smaps_sl() -> tuple[bool | None, str, int | None]:
    """Seal a page in a forked child and look for ``sl`` in its smaps; the
    third value is the errno when the child could not seal the page (a
    seccomp filter can allow ``mseal(0, 0, 0)`` and refuse real ranges)."""
    ready_r, ready_w = os.pipe()
    done_r, done_w = os.pipe()
    try:
        pid = os.fork()
    except OSError as exc:
        for fd in (ready_r, ready_w, done_r, done_w):
            os.close(fd)
        return None, f"could not fork a probe child: {exc}", None
    if pid == 0:  # pragma: no cover - the child: system calls only, then _exit
        code = 1
        try:
            os.close(ready_r)
            os.close(done_w)
            addr = syscalls.mmap(0, PAGE, int(Prot.READ), _ANON_PRIVATE)
            try:
                syscalls.mseal(addr, PAGE)
            except KernelError as exc:
                os.write(ready_w, b"E" + (exc.errno or 0).to_bytes(8, "little"))
            else:
                os.write(ready_w, b"A" + addr.to_bytes(8, "little"))
                os.read(done_r, 1)
            code = 0
        finally:
            os._exit(code)
    os.close(ready_w)
    os.close(done_r)
    try:
        raw = os.read(ready_r, 9)
        if len(raw) != 9:
            return None, "the probe child could not seal a page", None
        value = int.from_bytes(raw[1:], "little")
        if raw[:1] == b"E":
            name = _errno.errorcode.get(value, str(value))
            return None, f"not checked: the probe child could not seal a page ({name})", value
        for vma in procfs.read_smaps(pid):
            if vma.start <= value < vma.end:
                if vma.sealed:
                    return True, "a page sealed in a child shows 'sl' in its smaps VmFlags", None
                return (
                    False,
                    (
                        "a page sealed in a child has no 'sl' in its smaps VmFlags "
                        f"({' '.join(sorted(vma.vmflags or ()))}): seals are invisible in /proc"
                    ),
                    None,
                )
        return None, "the probe child's sealed page is missing from its smaps", None
    finally:
        os.close(ready_r)
        os.close(done_w)
        os.waitpid(pid, 0)


def _explain(
    err: int | None, release: str, arch: str, mode: int | None, filters: int | None
) -> str:
    if err is None:
        return f"mseal(2) is available (Linux {release}, {arch})"
    bits = platform.architecture()[0]
    if err == _errno.ENOSYS:
        if arch not in ("x86_64", "aarch64", "arm64", "riscv64", "loongarch64"):
            return f"ENOSYS: sealkit has no system call table for {arch}"
        if mode == 2 and _release_at_least(release, (6, 10)) and bits == "64bit":
            return (
                f"ENOSYS from mseal(2), although this 64-bit Linux {release} has it (since "
                f"6.10): this process runs under seccomp mode 2 with {filters} filter(s), and "
                "returning ENOSYS for system calls a filter does not know is a common default "
                "(containers, sandboxes)"
            )
        return (
            f"ENOSYS: this kernel has no mseal(2); it needs a 64-bit Linux 6.10 or later "
            f"(running {release}, {bits} userland)"
        )
    if err == _errno.EPERM:
        where = (
            f"this process runs under seccomp mode {mode} with {filters} filter(s)"
            if mode
            else "no seccomp filter is visible in /proc/self/status"
        )
        return (
            "EPERM from mseal(0, 0, 0): a seccomp filter denies the call, e.g. a container "
            f"profile written before mseal existed (Docker allows it since 2025); {where}"
        )
    name = _errno.errorcode.get(err, str(err))
    return f"{name} from mseal(0, 0, 0): unexpected; the kernel refuses the call"


def _release_at_least(release: str, version: tuple[int, int]) -> bool:
    """Whether a ``uname -r`` string such as ``6.18.44-fc`` is at least ``version``."""
    parts = release.split("-", 1)[0].split(".")
    try:
        return (int(parts[0]), int(parts[1])) >= version
    except (IndexError, ValueError):
        return False


_SUPPORT: Support | None = None


def support(refresh: bool = False) -> Support:
    """Probe what sealing this process can do, without side effects.

    ``mseal(0, 0, 0)`` returns 0 on a kernel with mseal (length 0 is checked
    before anything is looked up, spec kernel-behaviour rule 1) and fails
    with ENOSYS (kernel < 6.10, 32-bit kernel) or EPERM (a seccomp filter)
    otherwise. When available, a forked child seals one page to check that
    ``/proc/PID/smaps`` reports seals as ``sl``. The result is cached;
    ``refresh=True`` probes again.
    """
    global _SUPPORT
    if not isinstance(refresh, bool):
        raise ArgumentTypeError(f"refresh must be a bool, not {type(refresh).__name__}")
    if _SUPPORT is not None and not refresh:
        return _SUPPORT
    release, arch = os.uname().release, platform.machine()
    mode, filters = _seccomp()
    err: int | None = None
    try:
        syscalls.mseal(0, 0, 0)
    except KernelError as exc:
        err = exc.errno
    page_err: int | None = None
    if err is None:
        sl, detail, page_err = _probe_smaps_sl()
    else:
        sl, detail = None, "not checked: mseal is unavailable"
    reason = _explain(err, release, arch, mode, filters)
    if page_err is not None:
        err = page_err
        reason = (
            f"{_errno.errorcode.get(err, str(err))}: mseal(0, 0, 0) succeeds but sealing a "
            "page fails, so something between this process and the kernel inspects the "
            "arguments (a seccomp filter?); "
            + _explain(err, release, arch, mode, filters).split(": ", 1)[-1]
        )
    _SUPPORT = Support(
        available=err is None,
        errno=err,
        reason=reason,
        kernel=release,
        arch=arch,
        smaps_reports_seals=sl,
        smaps_detail=detail,
        seccomp_mode=mode,
        seccomp_filters=filters,
    )
    return _SUPPORT

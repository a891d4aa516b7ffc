"""Pages: private anonymous memory that sealkit maps, owns and seals; freeze().

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

import enum
import functools
import os
import threading
from typing import Any, Final, NoReturn

from .._os import syscalls
from ..errors import ArgumentError, ArgumentTypeError, StateError
from ..flags import Madv, MapFlag
from ._buffers import ViewBase
from ._checks import (
    MAX_LENGTH,
    PAGE,
    PROTS,
    bytes_like,
    check_offset,
    check_prot,
    check_size,
    check_span,
    no_copy,
    round_up,
)

__all__ = ["PageState", "Pages", "freeze"]

_ANON_PRIVATE: Final = int(MapFlag.PRIVATE | MapFlag.ANONYMOUS)


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
_LOCK = threading.RLock()


def _lock_before_fork() -> None:
    # Fork only between two Pages operations: a child forked while another
    # thread is inside one (say, between munmap and marking the pages closed)
    # would inherit a half-done state, and a lock held by a thread it does
    # not have, so its first Pages/freeze would hang. Operations take
    # microseconds, so fork waits at most that long. (logging does the same.)
    _LOCK.acquire()


def _unlock_in_parent() -> None:
    _LOCK.release()


def _new_lock_in_child() -> None:
    global _LOCK
    _LOCK = threading.RLock()


os.register_at_fork(
    before=_lock_before_fork, after_in_parent=_unlock_in_parent, after_in_child=_new_lock_in_child
)


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
        if type(size) is int and 0 < size <= MAX_LENGTH:
            length = (size + _PAGE_MASK) & ~_PAGE_MASK
        else:
            length = round_up(check_size(size))
        prot_bits = PROTS.get(prot) if type(prot) is str else None
        if prot_bits is None:
            prot_bits = check_prot(prot)
        self._ro: ViewBase | None = None
        self._rw: ViewBase | None = None
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
        src = bytes_like(data)
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
            start = check_offset(offset, self._length)
            end = start + src.nbytes
            if end > self._length:
                raise ArgumentError(
                    f"{src.nbytes} bytes at offset {start} do not fit in {self._length} bytes"
                )
            if self._rw is None:
                self._rw = ViewBase(self._addr, self._length, True)
            self._rw.base[start:end] = src
            return src.nbytes

    def read(self, size: int = -1, offset: int = 0) -> bytes:
        """``size`` bytes from ``offset`` (``-1``: to the end) as ``bytes``."""
        with _LOCK:
            self._readable("read")
            start, size = check_span(offset, size, self._length, "the pages'")
            return bytes(self._view_base().base[start : start + size])

    def _view_base(self) -> ViewBase:
        if self._prot == "rw":
            if self._rw is None:
                self._rw = ViewBase(self._addr, self._length, True)
            return self._rw
        if self._ro is None:
            self._ro = ViewBase(self._addr, self._length, False)
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
        is EPERM, docs/reference/linux.md rule 7), once closed, and while live
        views would fault under the new protection (writable views and a
        protection without write; any view and ``"none"``).
        """
        bits = check_prot(prot)
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

        Sealed pages cannot be unmapped (munmap is EPERM,
        docs/reference/linux.md rule 5): they stay mapped, readable per their
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
        no_copy(self)

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


def freeze(data: bytes | bytearray | memoryview, *, secret: bool = False) -> memoryview:
    """Copy ``data`` into fresh pages, make them read-only, seal them, and
    return a read-only memoryview of exactly ``len(data)`` bytes.

    The memory can never be written, unmapped or discarded again through the
    mm system calls; it is freed at exit. Empty data still gets one sealed
    page. If sealing is not available the pages are unmapped and the kernel's
    error is raised. What sealing does not stop (docs/memory.md, "What
    sealing promises"): root or a ptrace-capable process writing through
    ``/proc/PID/mem`` or ``ptrace(POKEDATA)``, which overrides read-only
    protection and seals alike (docs/reference/linux.md rule 18).

    ``secret=True``, for key material: the pages are also locked in memory
    (``mlock``: never written to swap) and left out of core dumps
    (``MADV_DONTDUMP``), both before the data is copied in; sealing is
    probed first, so the data is copied nowhere when it cannot be sealed;
    and if any step fails after the copy the pages are zeroed before they
    are unmapped. The copy goes straight from ``data`` into the locked pages
    (no intermediate buffer); ``data`` itself is the caller's to wipe (pass
    a ``bytearray`` and zero it). ``mlock`` counts against
    ``RLIMIT_MEMLOCK`` for unprivileged processes: past it the kernel's
    error is raised and nothing is kept.
    """
    if not isinstance(secret, bool):
        raise ArgumentTypeError(f"secret must be a bool, not {type(secret).__name__}")
    src = bytes_like(data)
    if secret:
        _mseal_call(0, 0)  # no side effect; fails exactly when sealing cannot work
    pages = Pages(max(src.nbytes, 1))
    try:
        if secret:
            syscalls.mlock(pages.address, pages.size)
            syscalls.madvise(pages.address, pages.size, int(Madv.DONTDUMP))
        pages.write(src)
        pages.protect("r")
        pages.seal()
    except BaseException:
        if secret:
            _wipe(pages)
        pages.close()
        raise
    return pages.view()[: src.nbytes]


def _wipe(pages: Pages) -> None:
    """Zero open pages (made writable again if need be) before they are
    unmapped; best effort, never raises (it runs while an error propagates)."""
    try:
        with _LOCK:
            if pages.state is not _OPEN:
                return
            if pages.protection != "rw":
                pages.protect("rw")
            pages.write(bytes(pages.size))
    except Exception:
        pass

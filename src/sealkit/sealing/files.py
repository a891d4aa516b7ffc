"""map_file(): a read-only, sealed mapping of a file that sealkit opens itself."""

from __future__ import annotations

import ctypes
import os
import stat
from typing import TYPE_CHECKING, Final, NoReturn

from .._os import syscalls
from .._os.files import NotRegularFile, open_regular
from ..errors import ArgumentError, ArgumentTypeError
from ..flags import MapFlag, Prot
from ._buffers import PYBUF_READ, memory_view
from ._checks import (
    MAX_LENGTH,
    PAGE,
    check_size,
    check_span,
    exact_int,
    no_copy,
    round_up,
    uninitialised,
)

__all__ = ["SealedFile", "map_file"]


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
        view: memoryview = memory_view(self._addr, self._length, PYBUF_READ)
        return view

    def read(self, size: int = -1, offset: int = 0) -> bytes:
        """``size`` bytes from ``offset`` (``-1``: to the end) as ``bytes``."""
        start, size = check_span(offset, size, self._length, "the file mapping's")
        return ctypes.string_at(self._addr + start, size)

    def __reduce_ex__(self, protocol: object) -> NoReturn:
        no_copy(self)

    if not TYPE_CHECKING:  # a runtime guard; type checkers keep flagging unknown names

        def __getattr__(self, name: str) -> NoReturn:
            uninitialised(self, name, SealedFile.__slots__)


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
    with an ``O_RDWR`` descriptor it would zero the file's data,
    docs/reference/linux.md rule 11). ``offset`` must be page-aligned; ``length``
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
    offset = exact_int(offset, "offset")
    if not 0 <= offset <= MAX_LENGTH or offset % PAGE:
        raise ArgumentError(f"offset={offset} must be a non-negative multiple of {PAGE}")
    if length is not None:
        length = check_size(length, "length")
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
        size = round_up(length)
        addr = syscalls.mmap(0, size, int(Prot.READ), int(MapFlag.SHARED), fd, offset)
    finally:
        os.close(fd)  # the mapping holds its own reference to the file
    try:
        syscalls.mseal(addr, size)
    except BaseException:
        syscalls.munmap(addr, size)
        raise
    return SealedFile(name, offset, length, addr, size, _key=_MAP_FILE_KEY)

"""CodePages: W^X pages for machine code, sealed ``r-x``."""

from __future__ import annotations

import ctypes
from typing import TYPE_CHECKING, Any, NoReturn

from ..errors import ArgumentTypeError, StateError
from ._checks import bytes_like, check_offset, no_copy, uninitialised
from .pages import Pages, PageState

__all__ = ["CodePages"]


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
        src = bytes_like(code)
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
        start = check_offset(offset, self._pages.size - 1)
        try:
            prototype = ctypes.CFUNCTYPE(restype, *argtypes)
        except TypeError as exc:
            raise ArgumentTypeError(f"not a ctypes signature: {exc}") from None
        return prototype(self._pages.address + start)

    def close(self) -> None:
        """Unmap unsealed code pages; sealed ones live until the process exits."""
        self._pages.close()

    def __reduce_ex__(self, protocol: object) -> NoReturn:
        no_copy(self)

    if not TYPE_CHECKING:  # a runtime guard; type checkers keep flagging unknown names

        def __getattr__(self, name: str) -> NoReturn:
            uninitialised(self, name, CodePages.__slots__)

    def __enter__(self) -> CodePages:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

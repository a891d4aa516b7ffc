"""Reading ELF files: the header, the program headers, the magic.

:func:`load_layout` reads only the ELF header and program headers with
:mod:`struct`: the host audit calls it on the hot path of a sweep to tell
text, rodata, RELRO and data apart, where importing pyelftools (tens of
milliseconds) would cost more than the rest of the sweep. The tests hold it
to pyelftools on real binaries. Files are opened with
:func:`sealkit._os.files.open_regular`: no blocking on a FIFO or a device,
no acting on a device node. ``sealkit elf`` (:mod:`sealkit.host.elf`) builds
its report on these constants and readers.
"""

from __future__ import annotations

import os
import stat
import struct
from typing import Final, NamedTuple

from ..errors import ArgumentError, ArgumentTypeError, ParseError
from .files import NotRegularFile, open_regular

__all__ = [
    "ELF_MAGIC",
    "NOT_REGULAR",
    "PT_GNU_RELRO",
    "PT_LOAD",
    "LoadLayout",
    "Segment",
    "ident",
    "is_elf",
    "load_layout",
    "open_file",
]

ELF_MAGIC: Final = b"\x7fELF"
PT_LOAD: Final = 1
PT_DYNAMIC: Final = 2
PT_INTERP: Final = 3
PT_GNU_STACK: Final = 0x6474E551
PT_GNU_RELRO: Final = 0x6474E552
PT_GNU_PROPERTY: Final = 0x6474E553
NT_GNU_PROPERTY_TYPE_0: Final = 5
GNU_PROPERTY_MEMORY_SEAL: Final = 3
PF_X: Final = 1
PF_W: Final = 2
DT_NULL: Final = 0
DT_BIND_NOW: Final = 24
DT_FLAGS: Final = 30
DT_FLAGS_1: Final = 0x6FFFFFFB
DF_BIND_NOW: Final = 0x8
DF_1_NOW: Final = 0x1
DF_1_PIE: Final = 0x08000000


class Segment(NamedTuple):
    """One program header: type, flags (``PF_*``), file offset and size,
    virtual address and memory size, alignment."""

    type: int
    flags: int
    offset: int
    vaddr: int
    filesz: int
    memsz: int
    align: int


class LoadLayout(NamedTuple):
    """The program headers of an ELF file (what the loader maps).

    ``loads`` are the ``PT_LOAD`` segments by address, ``relro`` the
    ``PT_GNU_RELRO`` segment (or ``None``): both derived from ``segments``
    once, since a sweep asks for them per mapping.
    """

    elfclass: int
    little: bool
    type: int
    segments: tuple[Segment, ...]
    loads: tuple[Segment, ...]
    relro: Segment | None

    @classmethod
    def of(
        cls, elfclass: int, little: bool, e_type: int, segments: tuple[Segment, ...]
    ) -> LoadLayout:
        """Build from the program headers, deriving ``loads`` and ``relro``."""
        loads = tuple(sorted((s for s in segments if s.type == PT_LOAD), key=lambda s: s.vaddr))
        relro = next((s for s in segments if s.type == PT_GNU_RELRO), None)
        return cls(elfclass, little, e_type, segments, loads, relro)


_EHDR: Final = {32: "16xHHIIIIIHHHHHH", 64: "16xHHIQQQIHHHHHH"}
_PHDR: Final = {32: "IIIIIIII", 64: "IIQQQQQQ"}


def ident(head: bytes, source: str) -> tuple[int, bool]:
    if len(head) < 16 or head[:4] != ELF_MAGIC:
        raise ParseError("not an ELF file", None, source)
    if head[4] not in (1, 2) or head[5] not in (1, 2):
        raise ParseError(f"unknown ELF class {head[4]} or data encoding {head[5]}", None, source)
    return (32 if head[4] == 1 else 64), head[5] == 1


NOT_REGULAR: Final = "not a regular file"


def open_file(path: str, dir_fd: int | None = None) -> tuple[int, os.stat_result]:
    """:func:`sealkit._os.files.open_regular` (no blocking on a FIFO or device,
    no acting on a device node), with this module's errors."""
    try:
        return open_regular(path, dir_fd)
    except NotRegularFile as exc:
        if stat.S_ISDIR(exc.mode):
            raise IsADirectoryError(21, "Is a directory", path) from None
        raise ParseError(NOT_REGULAR, None, path) from None


def load_layout(path: str, dir_fd: int | None = None, inode: int | None = None) -> LoadLayout:
    """Program headers of the ELF file at ``path`` (relative to ``dir_fd``).

    With ``inode``, the file opened must be that inode (a mapping's file
    may have been replaced on disk since it was mapped). Raises
    :class:`ParseError` for a file that is not ELF, is truncated or is not
    the expected inode, and ``OSError`` when the file cannot be read.
    """
    if not isinstance(path, str | os.PathLike):
        raise ArgumentTypeError(f"path must be a str or path, not {type(path).__name__}")
    if dir_fd is not None and type(dir_fd) is not int:
        raise ArgumentTypeError(f"dir_fd must be an int or None, not {type(dir_fd).__name__}")
    if inode is not None and type(inode) is not int:
        raise ArgumentTypeError(f"inode must be an int or None, not {type(inode).__name__}")
    if "\0" in os.fspath(path):
        raise ArgumentError("path contains a NUL byte")
    try:
        fd, st = open_file(path, dir_fd)  # processes map device nodes too
    except IsADirectoryError:
        raise ParseError(NOT_REGULAR, None, path) from None
    try:
        if inode is not None and st.st_ino != inode:
            raise ParseError(f"not inode {inode} (replaced since it was mapped?)", None, path)
        head = os.pread(fd, 4096, 0)
        elfclass, little = ident(head, path)
        order = "<" if little else ">"
        ehdr = struct.Struct(order + _EHDR[elfclass])
        if len(head) < ehdr.size:
            raise ParseError("truncated ELF header", None, path)
        e_type, _, _, _, phoff, _, _, _, phentsize, phnum, _, _, _ = ehdr.unpack_from(head)
        phdr = struct.Struct(order + _PHDR[elfclass])
        if phnum and phentsize < phdr.size:
            raise ParseError(f"program header entries of {phentsize} bytes", None, path)
        table = phentsize * phnum
        if phoff + table > st.st_size:  # also keeps pread's offset in range
            raise ParseError("truncated program headers", None, path)
        blob = head[phoff : phoff + table] if phoff + table <= len(head) else b""
        if len(blob) < table:
            blob = os.pread(fd, table, phoff)
        if len(blob) < table:
            raise ParseError("truncated program headers", None, path)
    finally:
        os.close(fd)
    segments = []
    for i in range(phnum):
        fields = phdr.unpack_from(blob, i * phentsize)
        if elfclass == 64:
            p_type, flags, offset, vaddr, _, filesz, memsz, align = fields
        else:
            p_type, offset, vaddr, _, filesz, memsz, flags, align = fields
        segments.append(Segment(p_type, flags, offset, vaddr, filesz, memsz, align))
    return LoadLayout.of(elfclass, little, e_type, tuple(segments))


def is_elf(path: str) -> bool:
    """Whether ``path`` is a regular file starting with the ELF magic."""
    try:
        fd, _ = open_file(path)
    except (OSError, ParseError):
        return False
    try:
        return os.pread(fd, 4, 0) == ELF_MAGIC
    except OSError:
        return False
    finally:
        os.close(fd)

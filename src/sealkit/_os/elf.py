"""Reading ELF files, bounded: header, program and section headers, the
dynamic segment, symbols, property notes.

Every file here may be hostile (the audit reads the file behind any mapping
of any process; ``sealkit elf`` reads whatever it is pointed at), so every
read and every loop has a bound that does not depend on what the file
claims:

* the program header table: ``e_phentsize`` must be ``sizeof(ElfN_Phdr)``
  and the table at most 64 KiB, the kernel's own limits
  (fs/binfmt_elf.c, ``load_elf_phdrs()``; glibc's loader also refuses
  another ``e_phentsize``, elf/dl-load.c ``open_verify()``);
  ``e_phnum == PN_XNUM`` takes the count from section 0's ``sh_info``, as
  the gABI says, under the same 64 KiB bound;
* section headers at most :data:`MAX_SHDR_BYTES`, names
  :data:`MAX_NAMES_BYTES`, notes :data:`MAX_NOTE_BYTES`, the dynamic
  segment :data:`MAX_DYNAMIC_BYTES`, dynamic symbols and strings
  :data:`MAX_DYNSYM_BYTES` and :data:`MAX_DYNSTR_BYTES`; ``.symtab`` and its
  strings are scanned in 1 MiB pieces, never held whole, up to
  :data:`MAX_SYMTAB_BYTES` each; at most :data:`MAX_NOTE_SECTIONS` note
  sections;
* nothing is read past the end of the file (``fstat``), so a sparse file
  that claims gigabytes costs what its claims are allowed, never more:
  one file costs at most :data:`MAX_READ` bytes of reads, and memory of
  the largest single table.

:func:`load_layout` (the audit's hot path) reads the ELF header and program
headers only: 4 KiB in one ``pread`` for an ordinary file, at most 68 KiB.
Files are opened with :func:`sealkit._os.files.open_regular`: no blocking on
a FIFO or a device, no acting on a device node.

:func:`walk_properties` walks a ``PT_GNU_PROPERTY`` segment by the rules of
glibc's loader; :mod:`sealkit.host.elf` (``sealkit elf``) and the exec
library's marker check build on it. The tests hold the reader to
pyelftools and binutils' readelf on real binaries.
"""

from __future__ import annotations

import os
import stat
import struct
from collections.abc import Iterator
from typing import Final, NamedTuple

from ..errors import ArgumentError, ArgumentTypeError, ParseError
from .files import NotRegularFile, open_regular

__all__ = [
    "ELF_MAGIC",
    "MAX_PHDR_TABLE",
    "MAX_READ",
    "NOT_REGULAR",
    "PT_GNU_RELRO",
    "PT_LOAD",
    "ElfFile",
    "LoadLayout",
    "Section",
    "Segment",
    "TooLarge",
    "ident",
    "is_elf",
    "load_layout",
    "note_properties",
    "open_elf",
    "open_file",
    "property_values",
    "walk_properties",
]

ELF_MAGIC: Final = b"\x7fELF"
ET_REL: Final = 1
ET_EXEC: Final = 2
ET_DYN: Final = 3
EM_386: Final = 3
EM_X86_64: Final = 62
PT_LOAD: Final = 1
PT_DYNAMIC: Final = 2
PT_INTERP: Final = 3
PT_NOTE: Final = 4
PT_GNU_STACK: Final = 0x6474E551
PT_GNU_RELRO: Final = 0x6474E552
PT_GNU_PROPERTY: Final = 0x6474E553
PF_X: Final = 1
PF_W: Final = 2
PN_XNUM: Final = 0xFFFF
SHN_UNDEF: Final = 0
SHN_XINDEX: Final = 0xFFFF
SHT_SYMTAB: Final = 2
SHT_NOTE: Final = 7
SHT_DYNSYM: Final = 11
SHF_EXECINSTR: Final = 4
NT_GNU_PROPERTY_TYPE_0: Final = 5
GNU_PROPERTY_MEMORY_SEAL: Final = 3
GNU_PROPERTY_X86_FEATURE_1_AND: Final = 0xC0000002
GNU_PROPERTY_X86_FEATURE_1_IBT: Final = 1 << 0
GNU_PROPERTY_X86_FEATURE_1_SHSTK: Final = 1 << 1
DT_NULL: Final = 0
DT_HASH: Final = 4
DT_STRTAB: Final = 5
DT_SYMTAB: Final = 6
DT_STRSZ: Final = 10
DT_RPATH: Final = 15
DT_TEXTREL: Final = 22
DT_BIND_NOW: Final = 24
DT_RUNPATH: Final = 29
DT_FLAGS: Final = 30
DT_GNU_HASH: Final = 0x6FFFFEF5
DT_FLAGS_1: Final = 0x6FFFFFFB
DF_TEXTREL: Final = 0x4
DF_BIND_NOW: Final = 0x8
DF_1_NOW: Final = 0x1
DF_1_PIE: Final = 0x08000000

# Bounds (bytes). The kernel reads at most 64 KiB of program headers;
# everything else is one order of magnitude above the largest table found on
# a Debian 12 system (node's .strtab, 7.2 MiB; libLLVM's .dynstr, 4 MiB).
MAX_PHDR_TABLE: Final = 1 << 16
MAX_SHDR_BYTES: Final = 1 << 22  # 65,536 ELF64 section headers
MAX_NAMES_BYTES: Final = 1 << 20
MAX_NOTE_BYTES: Final = 1 << 16
MAX_DYNAMIC_BYTES: Final = 1 << 20
MAX_DYNSYM_BYTES: Final = 1 << 24
MAX_DYNSTR_BYTES: Final = 1 << 25
MAX_SYMTAB_BYTES: Final = 1 << 26
MAX_NOTE_SECTIONS: Final = 16
_CHUNK: Final = 1 << 20
MAX_READ: Final = 1 << 28
"""The most one file may cost in reads, whatever its tables claim (256 MiB,
reached only by a crafted file: a real one needs a few MiB at most). A read
past it is :class:`TooLarge`, like a table past its own bound."""


class TooLarge(ParseError):
    """A table claims more bytes than the reader reads (its bound)."""


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


class Section(NamedTuple):
    """One section header; ``name`` is ``None`` when the section names
    cannot be read (``e_shstrndx`` out of range, say)."""

    name: str | None
    type: int
    flags: int
    addr: int
    offset: int
    size: int
    link: int
    info: int
    entsize: int


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


# e_type e_machine e_version e_entry e_phoff e_shoff e_flags e_ehsize
# e_phentsize e_phnum e_shentsize e_shnum e_shstrndx
_EHDR: Final = {32: "16xHHIIIIIHHHHHH", 64: "16xHHIQQQIHHHHHH"}
_PHDR: Final = {32: "IIIIIIII", 64: "IIQQQQQQ"}
# sh_name sh_type sh_flags sh_addr sh_offset sh_size sh_link sh_info sh_addralign sh_entsize
_SHDR: Final = {32: "IIIIIIIIII", 64: "IIQQQQIIQQ"}
# 32: st_name st_value st_size st_info st_other st_shndx; 64: name info other shndx value size
_SYM: Final = {32: "IIIBBH", 64: "IBBHQQ"}
_DYN: Final = {32: "iI", 64: "qQ"}


def ident(head: bytes, source: str) -> tuple[int, bool]:
    """ELF class (32 or 64) and whether little-endian, from ``e_ident``."""
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


def _check_path(path: object, dir_fd: object = None) -> str:
    if not isinstance(path, str | os.PathLike):
        raise ArgumentTypeError(f"path must be a str or path, not {type(path).__name__}")
    if dir_fd is not None and type(dir_fd) is not int:
        raise ArgumentTypeError(f"dir_fd must be an int or None, not {type(dir_fd).__name__}")
    text = os.fspath(path)
    if not isinstance(text, str):
        raise ArgumentTypeError("path must be a str or path")
    if "\0" in text:
        raise ArgumentError("path contains a NUL byte")
    return text


class ElfFile:
    """An open ELF file: header and program headers read at construction,
    the rest on demand, every read bounded (see the module docstring).

    Raises :class:`ParseError` when the file is not ELF or its header or
    program headers are unusable (what the loader would refuse too);
    ``OSError`` when it cannot be read. Use as a context manager, or call
    :meth:`close`.
    """

    def __init__(self, fd: int, size: int, source: str) -> None:
        self.fd = fd
        self.size = size
        self.source = source
        self.read_bytes = 0
        head = self.read(0, min(size, 4096), "ELF header")
        self.elfclass, self.little = ident(head, source)
        self.order = "<" if self.little else ">"
        ehdr = struct.Struct(self.order + _EHDR[self.elfclass])
        if len(head) < ehdr.size:
            raise ParseError("truncated ELF header", None, source)
        (self.type, self.machine, _, _, self.phoff, self.shoff, _, _, self.phentsize,
         self.e_phnum, self.shentsize, self.e_shnum, self.e_shstrndx) = ehdr.unpack_from(head)  # fmt: skip
        self._shdr = struct.Struct(self.order + _SHDR[self.elfclass])
        self._sections: tuple[Section, ...] | None = None
        self._sections_error: ParseError | None = None
        self.names_error: str | None = None
        self.segments = self._read_segments(head)

    def close(self) -> None:
        os.close(self.fd)

    def __enter__(self) -> ElfFile:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    # -- reading --------------------------------------------------------------

    def read(self, offset: int, length: int, what: str, cap: int | None = None) -> bytes:
        """``length`` bytes at ``offset``: :class:`TooLarge` over ``cap``,
        :class:`ParseError` past the end of the file."""
        if cap is not None and length > cap:
            raise TooLarge(f"{what} of {length} bytes: more than sealkit reads ({cap})")
        end = offset + length
        if end > self.size:
            raise ParseError(
                f"truncated {what}: it ends at byte {end}, the file has {self.size}",
                None,
                self.source,
            )
        if self.read_bytes + length > MAX_READ:
            raise TooLarge(f"reading {what} would pass {MAX_READ} bytes for this file")
        self.read_bytes += length
        chunks: list[bytes] = []
        while length > 0:
            chunk = os.pread(self.fd, length, offset)
            if not chunk:
                raise ParseError(f"truncated {what}: the file shrank while read", None, self.source)
            chunks.append(chunk)
            offset += len(chunk)
            length -= len(chunk)
        return b"".join(chunks)

    def _section0(self) -> Section:
        """Section header 0, which holds the real counts when ``e_phnum``
        is PN_XNUM or ``e_shnum`` is 0 (gABI, "Extended section numbering")."""
        if self.shoff == 0:
            raise ParseError("no section header table", None, self.source)
        if self.shentsize != self._shdr.size:
            raise ParseError(
                f"section header entries of {self.shentsize} bytes, not {self._shdr.size}",
                None, self.source,
            )  # fmt: skip
        blob = self.read(self.shoff, self._shdr.size, "section header 0")
        return self._section(blob, 0, None)

    def _section(self, blob: bytes, at: int, names: bytes | None) -> Section:
        (name, sh_type, flags, addr, offset, size, link, info, _, entsize) = self._shdr.unpack_from(
            blob, at
        )
        text: str | None = None
        if names is not None and name < len(names):
            end = names.find(b"\0", name)
            text = names[name : end if end >= 0 else len(names)].decode("utf-8", "surrogateescape")
        return Section(text, sh_type, flags, addr, offset, size, link, info, entsize)

    def _read_segments(self, head: bytes) -> tuple[Segment, ...]:
        phdr = struct.Struct(self.order + _PHDR[self.elfclass])
        phnum = self.e_phnum
        if phnum == PN_XNUM:
            try:
                phnum = self._section0().info
            except ParseError as exc:
                raise ParseError(
                    f"e_phnum is PN_XNUM, but section 0 (which holds the count) is unusable: "
                    f"{exc.message}", None, self.source,
                ) from None  # fmt: skip
        if phnum == 0:
            return ()
        if self.phentsize != phdr.size:
            raise ParseError(
                f"program header entries of {self.phentsize} bytes, not {phdr.size} "
                "(the loader refuses them)", None, self.source,
            )  # fmt: skip
        table = phnum * phdr.size
        if table > MAX_PHDR_TABLE:
            raise ParseError(
                f"{phnum} program headers ({table} bytes): more than the kernel reads "
                f"({MAX_PHDR_TABLE})", None, self.source,
            )  # fmt: skip
        if self.phoff + table <= len(head):
            blob = head[self.phoff : self.phoff + table]
        else:
            blob = self.read(self.phoff, table, "program headers")
        segments = []
        for fields in phdr.iter_unpack(blob):
            if self.elfclass == 64:
                p_type, flags, offset, vaddr, _, filesz, memsz, align = fields
            else:
                p_type, offset, vaddr, _, filesz, memsz, flags, align = fields
            segments.append(Segment(p_type, flags, offset, vaddr, filesz, memsz, align))
        return tuple(segments)

    def sections(self) -> tuple[Section, ...]:
        """The section headers (``()`` when there are none): :class:`ParseError`
        when the table is unusable. Names are ``None`` (and
        :attr:`names_error` says why) when the name table is unusable."""
        if self._sections_error is not None:
            raise self._sections_error
        if self._sections is None:
            try:
                self._sections = self._read_sections()
            except ParseError as exc:
                self._sections_error = exc
                raise
        return self._sections

    def _read_sections(self) -> tuple[Section, ...]:
        if self.shoff == 0:
            return ()
        first = self._section0()
        shnum = self.e_shnum or first.size  # e_shnum 0: the count is section 0's sh_size
        table = shnum * self._shdr.size
        if table > MAX_SHDR_BYTES:
            raise TooLarge(f"{shnum} section headers: more than sealkit reads", None, self.source)
        blob = self.read(self.shoff, table, "section headers")
        strndx = first.link if self.e_shstrndx == SHN_XINDEX else self.e_shstrndx
        names: bytes | None = None
        if strndx == SHN_UNDEF:
            self.names_error = "the file has no section name table (e_shstrndx 0)"
        elif strndx >= shnum:
            self.names_error = f"e_shstrndx {strndx} is out of range ({shnum} sections)"
        else:
            table_section = self._section(blob, strndx * self._shdr.size, None)
            try:
                names = self.read(table_section.offset, table_section.size, "section names",
                                  MAX_NAMES_BYTES)  # fmt: skip
            except ParseError as exc:
                self.names_error = exc.message
        step = self._shdr.size
        return tuple(self._section(blob, i * step, names) for i in range(shnum))

    def segment_data(self, segment: Segment, what: str, cap: int) -> bytes:
        """The file bytes of ``segment`` (``p_offset``, ``p_filesz``)."""
        return self.read(segment.offset, segment.filesz, what, cap)

    # -- the dynamic segment ------------------------------------------------

    def dynamic(self) -> list[tuple[int, int]] | None:
        """The entries of the dynamic segment up to ``DT_NULL``, or ``None``
        without one. Like glibc's loader (elf/dl-load.c), the last
        ``PT_DYNAMIC`` whose ``p_filesz`` is not 0 is the one."""
        found = [s for s in self.segments if s.type == PT_DYNAMIC and s.filesz]
        if not found:
            return None
        blob = self.segment_data(found[-1], "PT_DYNAMIC", MAX_DYNAMIC_BYTES)
        entry = struct.Struct(self.order + _DYN[self.elfclass])
        entries = []
        for tag, value in entry.iter_unpack(blob[: len(blob) - len(blob) % entry.size]):
            if tag == DT_NULL:
                break
            entries.append((tag, value))
        return entries

    def file_offset(self, vaddr: int, length: int, what: str) -> int:
        """The file offset of ``length`` bytes at address ``vaddr``, through
        the ``PT_LOAD`` that maps them (what the loader makes of an address
        in the dynamic segment)."""
        for seg in self.segments:
            if (
                seg.type == PT_LOAD
                and seg.vaddr <= vaddr
                and vaddr + length <= seg.vaddr + seg.filesz
            ):
                return seg.offset + (vaddr - seg.vaddr)
        raise ParseError(
            f"{what} at {vaddr:#x} is not in the file's PT_LOAD segments", None, self.source
        )

    def dynamic_string(self, dyn: dict[int, int], offset: int, what: str) -> str:
        """The NUL-terminated string at ``offset`` of ``DT_STRTAB`` (at most 64 KiB)."""
        if DT_STRTAB not in dyn:
            raise ParseError(f"{what} without DT_STRTAB", None, self.source)
        strsz = dyn.get(DT_STRSZ, 0)
        if offset >= strsz:
            raise ParseError(
                f"{what} at offset {offset} is past DT_STRSZ {strsz}", None, self.source
            )
        length = min(strsz - offset, 1 << 16)
        start = self.file_offset(dyn[DT_STRTAB] + offset, length, what)
        blob = self.read(start, length, what)
        end = blob.find(b"\0")
        return blob[: end if end >= 0 else len(blob)].decode("utf-8", "surrogateescape")

    def _symbol_count(self, dyn: dict[int, int]) -> int:
        """How many dynamic symbols there are. The ``.dynsym`` section says
        it when the section headers are usable and it is the table
        ``DT_SYMTAB`` points at (what readelf and checksec read). Otherwise
        the loader's tables: ``nchain`` of ``DT_HASH``; or one past the
        highest index the ``DT_GNU_HASH`` chains reach (linkers put the
        hashed symbols last); or, when no symbol is hashed (a program that
        exports nothing), the distance from ``DT_SYMTAB`` to ``DT_STRTAB``,
        which GNU ld places right after the symbols."""
        symsize = struct.calcsize(self.order + _SYM[self.elfclass])
        try:
            for section in self.sections():
                if section.type == SHT_DYNSYM and section.addr == dyn[DT_SYMTAB]:
                    return section.size // symsize
        except ParseError:
            pass
        if DT_HASH in dyn:
            at = self.file_offset(dyn[DT_HASH], 8, "DT_HASH")
            _, nchain = struct.unpack(self.order + "II", self.read(at, 8, "DT_HASH"))
            return int(nchain)
        hashed = self._gnu_hash_count(dyn) if DT_GNU_HASH in dyn else None
        if hashed is not None:
            return hashed
        gap = dyn.get(DT_STRTAB, 0) - dyn[DT_SYMTAB]
        if gap > 0 and gap % symsize == 0:
            return gap // symsize
        raise ParseError("the dynamic symbols cannot be counted (no usable hash table)",
                         None, self.source)  # fmt: skip

    def _gnu_hash_count(self, dyn: dict[int, int]) -> int | None:
        """One past the highest symbol index the ``DT_GNU_HASH`` chains
        reach, or ``None`` when no symbol is hashed."""
        symsize = struct.calcsize(self.order + _SYM[self.elfclass])
        most = MAX_DYNSYM_BYTES // symsize
        at = self.file_offset(dyn[DT_GNU_HASH], 16, "DT_GNU_HASH")
        nbuckets, symoffset, bloom_size, _ = struct.unpack(
            self.order + "IIII", self.read(at, 16, "DT_GNU_HASH")
        )
        if nbuckets > most or bloom_size > most or symoffset > most:
            raise TooLarge(f"DT_GNU_HASH with {nbuckets} buckets: more than sealkit reads",
                           None, self.source)  # fmt: skip
        buckets_at = at + 16 + bloom_size * (self.elfclass // 8)
        buckets = struct.unpack(
            f"{self.order}{nbuckets}I", self.read(buckets_at, 4 * nbuckets, "DT_GNU_HASH buckets")
        )
        last = max(buckets, default=0)
        if last == 0:
            return None
        if last < symoffset:
            raise ParseError("DT_GNU_HASH bucket below its symoffset", None, self.source)
        chain_at = buckets_at + 4 * nbuckets + 4 * (last - symoffset)
        index = last
        while index < most:  # the chain ends at an entry with bit 0 set
            count = min(1024, most - index, (self.size - chain_at) // 4)
            if count <= 0:
                raise ParseError(
                    "DT_GNU_HASH chain runs past the end of the file", None, self.source
                )
            words = struct.unpack(
                f"{self.order}{count}I", self.read(chain_at, 4 * count, "DT_GNU_HASH chain")
            )
            for word in words:
                if word & 1:
                    return index + 1
                index += 1
            chain_at += 4 * count
        raise TooLarge("DT_GNU_HASH chain longer than sealkit reads", None, self.source)

    def dynamic_symbols(self, dyn: dict[int, int]) -> list[tuple[bytes, bool]]:
        """``(name, defined)`` of every dynamic symbol, found the loader's
        way: ``DT_SYMTAB`` and ``DT_STRTAB``/``DT_STRSZ`` through the
        ``PT_LOAD`` segments, counted as :meth:`_symbol_count` says (so
        damaged section headers do not hide them)."""
        if DT_SYMTAB not in dyn or DT_STRTAB not in dyn:
            return []
        sym = struct.Struct(self.order + _SYM[self.elfclass])
        count = self._symbol_count(dyn)
        size = count * sym.size
        if size > MAX_DYNSYM_BYTES:
            raise TooLarge(f"{count} dynamic symbols: more than sealkit reads", None, self.source)
        symbols = self.read(self.file_offset(dyn[DT_SYMTAB], size, "DT_SYMTAB"), size,
                            "dynamic symbols")  # fmt: skip
        strsz = dyn.get(DT_STRSZ, 0)
        strings = self.read(self.file_offset(dyn[DT_STRTAB], strsz, "DT_STRTAB"), strsz,
                            "dynamic strings", MAX_DYNSTR_BYTES)  # fmt: skip
        return _names(sym, symbols, strings, self.elfclass)

    # -- sections -------------------------------------------------------------

    def symtab_symbols(self) -> list[tuple[bytes, bool]]:
        """``(name, defined)`` of every ``.symtab`` symbol (object files,
        whose calls are there; bounded like the dynamic symbols)."""
        sections = self.sections()
        sym = struct.Struct(self.order + _SYM[self.elfclass])
        for section in sections:
            if section.type != SHT_SYMTAB:
                continue
            if section.link >= len(sections):
                raise ParseError(".symtab's string table is out of range", None, self.source)
            strtab = sections[section.link]
            symbols = self.read(section.offset, section.size - section.size % sym.size, ".symtab",
                                MAX_DYNSYM_BYTES)  # fmt: skip
            strings = self.read(strtab.offset, strtab.size, ".strtab", MAX_DYNSTR_BYTES)
            return _names(sym, symbols, strings, self.elfclass)
        return []

    def symtab_has(self, names: frozenset[bytes]) -> bool:
        """Whether a ``.symtab`` symbol has one of ``names``. The string
        table is searched for each name in 1 MiB pieces, then the symbol
        table for a symbol pointing at a match: memory stays at a piece."""
        sections = self.sections()
        sym = struct.Struct(self.order + _SYM[self.elfclass])
        for section in sections:
            if section.type != SHT_SYMTAB or section.link >= len(sections):
                continue
            strtab = sections[section.link]
            for what, part in ((".symtab", section), (".strtab", strtab)):
                if part.size > MAX_SYMTAB_BYTES:
                    raise TooLarge(f"{what} of {part.size} bytes: more than sealkit reads",
                                   None, self.source)  # fmt: skip
            offsets = self._find_strings(strtab, names)
            if not offsets:
                continue
            per_chunk = _CHUNK // sym.size
            for first in range(0, section.size // sym.size, per_chunk):
                count = min(per_chunk, section.size // sym.size - first)
                blob = self.read(section.offset + first * sym.size, count * sym.size, ".symtab")
                if any(f[0] in offsets for f in sym.iter_unpack(blob)):  # f[0]: st_name
                    return True
        return False

    def _find_strings(self, strtab: Section, names: frozenset[bytes]) -> set[int]:
        """Offsets in ``strtab`` where one of ``names`` starts (NUL-terminated)."""
        needles = [name + b"\0" for name in names]
        overlap = max(len(n) for n in needles)
        found: set[int] = set()
        for start in range(0, strtab.size, _CHUNK):
            length = min(_CHUNK + overlap, strtab.size - start)
            blob = self.read(strtab.offset + start, length, ".strtab")
            for needle in needles:
                at = blob.find(needle)
                while 0 <= at < _CHUNK:
                    found.add(start + at)
                    at = blob.find(needle, at + 1)
        return found

    def section_named(self, name: str) -> Section | None:
        return next((s for s in self.sections() if s.name == name), None)


def _names(
    sym: struct.Struct, symbols: bytes, strings: bytes, elfclass: int
) -> list[tuple[bytes, bool]]:
    shndx_at = 5 if elfclass == 32 else 3
    out = []
    for fields in sym.iter_unpack(symbols[: len(symbols) - len(symbols) % sym.size]):
        name = fields[0]
        if not name or name >= len(strings):
            continue
        end = strings.find(b"\0", name)
        out.append(
            (strings[name : end if end >= 0 else len(strings)], fields[shndx_at] != SHN_UNDEF)
        )
    return out


def open_elf(path: str, dir_fd: int | None = None, inode: int | None = None) -> ElfFile:
    """Open the ELF file ``path`` (relative to ``dir_fd``) and read its
    header and program headers. With ``inode``, the file opened must be
    that inode. :class:`ParseError` for a file that is not ELF, is
    truncated or malformed in its headers, or is not the expected inode;
    ``IsADirectoryError``, ``OSError`` when it cannot be read."""
    path = _check_path(path, dir_fd)
    if inode is not None and type(inode) is not int:
        raise ArgumentTypeError(f"inode must be an int or None, not {type(inode).__name__}")
    fd, st = open_file(path, dir_fd)  # processes map device nodes too
    try:
        if inode is not None and st.st_ino != inode:
            raise ParseError(f"not inode {inode} (replaced since it was mapped?)", None, path)
        return ElfFile(fd, st.st_size, path)
    except BaseException:
        os.close(fd)
        raise


def load_layout(path: str, dir_fd: int | None = None, inode: int | None = None) -> LoadLayout:
    """Program headers of the ELF file at ``path`` (relative to ``dir_fd``).

    With ``inode``, the file opened must be that inode (a mapping's file
    may have been replaced on disk since it was mapped). Raises
    :class:`ParseError` for a file that is not ELF, is truncated, has
    program headers the loader would refuse, or is not the expected inode,
    and ``OSError`` when the file cannot be read. Reads at most 68 KiB.
    """
    try:
        elf = open_elf(path, dir_fd, inode)
    except IsADirectoryError:
        raise ParseError(NOT_REGULAR, None, path) from None
    with elf:
        return LoadLayout.of(elf.elfclass, elf.little, elf.type, elf.segments)


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


# --- property notes: the loader's walk (pure) ----------------------------------


def _align_up(value: int, align: int) -> int:
    return (value + align - 1) & ~(align - 1) if align > 1 else value


def property_values(
    blob: bytes, elfclass: int, little: bool, align: int
) -> tuple[list[tuple[int, bytes]], str | None]:
    """Walk a ``PT_GNU_PROPERTY`` segment as glibc's loader does: the
    ``(pr_type, data)`` pairs the walk reaches, in order, and why it stopped
    early (``None`` when it read everything). :func:`walk_properties` gives
    the same walk with data sizes."""
    if not isinstance(blob, bytes | bytearray):
        raise ArgumentTypeError(f"blob must be bytes, not {type(blob).__name__}")
    if elfclass not in (32, 64) or type(elfclass) is not int:
        raise ArgumentError(f"elfclass must be 32 or 64, not {elfclass!r}")
    if type(little) is not bool or type(align) is not int:
        raise ArgumentTypeError("little must be a bool and align an int")
    word = elfclass // 8
    if align != word:
        return [], f"PT_GNU_PROPERTY is aligned to {align}, the loader needs {word}"
    order = "<" if little else ">"
    nhdr = struct.Struct(order + "III")
    prop = struct.Struct(order + "II")
    found: list[tuple[int, bytes]] = []
    last_type = 0
    off = 0
    size = len(blob)
    while off + nhdr.size < size:  # every pass moves off forward by at least 12
        namesz, descsz, ntype = nhdr.unpack_from(blob, off)
        desc = _align_up(off + nhdr.size + namesz, align)
        if (
            namesz == 4
            and ntype == NT_GNU_PROPERTY_TYPE_0
            and blob[off + nhdr.size : off + nhdr.size + 4] == b"GNU\0"
        ):
            if descsz < 8 or descsz % word:
                return found, f"property note with n_descsz {descsz} (the loader stops)"
            ptr, end = desc, desc + descsz
            if end > size:
                return found, "property note runs past the segment"
            while True:  # every pass moves ptr forward by at least 8
                pr_type, pr_datasz = prop.unpack_from(blob, ptr)
                if pr_type < last_type:
                    return found, (
                        f"property {pr_type:#x} after {last_type:#x}: types must ascend "
                        "(notes concatenated, not merged, by a linker that does not know "
                        "the property)"
                    )
                ptr += prop.size
                if ptr + pr_datasz > end:
                    return found, f"property {pr_type:#x} overruns its note"
                last_type = pr_type
                found.append((pr_type, bytes(blob[ptr : ptr + pr_datasz])))
                ptr += _align_up(pr_datasz, word)
                if end - ptr < 8:
                    break
        off = desc + _align_up(descsz, align)
    return found, None


def walk_properties(
    blob: bytes, elfclass: int, little: bool, align: int
) -> tuple[list[tuple[int, int]], str | None]:
    """Walk a ``PT_GNU_PROPERTY`` segment as glibc's loader does.

    Returns the ``(pr_type, pr_datasz)`` pairs the walk reaches, in order,
    and why it stopped early (``None`` when it read everything). The rules
    are those of ``_dl_process_pt_gnu_property`` (glibc elf/dl-load.c): the
    segment alignment must be the word size (8 on ELF64, 4 on ELF32); only
    notes with ``n_namesz`` 4, owner ``GNU`` and type
    ``NT_GNU_PROPERTY_TYPE_0`` are read; such a note needs
    ``n_descsz >= 8`` and a multiple of the word size; property types must
    ascend across the whole segment; each property's data is padded to the
    word size; notes follow each other at ``align``.
    """
    found, stopped = property_values(blob, elfclass, little, align)
    return [(t, len(data)) for t, data in found], stopped


def note_properties(blob: bytes, little: bool, word: int) -> Iterator[tuple[int, bytes]]:
    """Every ``(pr_type, data)`` in a ``.note.gnu.property`` section,
    without the loader's rules (what a linker or ``readelf -n`` would see)."""
    order = "<" if little else ">"
    off = 0
    while off + 12 <= len(blob):
        namesz, descsz, ntype = struct.unpack_from(order + "III", blob, off)
        desc = off + 12 + _align_up(namesz, 4)
        if ntype == NT_GNU_PROPERTY_TYPE_0 and blob[off + 12 : off + 16] == b"GNU\0":
            ptr, end = desc, min(desc + descsz, len(blob))
            while ptr + 8 <= end:
                pr_type, pr_datasz = struct.unpack_from(order + "II", blob, ptr)
                yield pr_type, bytes(blob[ptr + 8 : min(ptr + 8 + pr_datasz, end)])
                ptr += 8 + _align_up(pr_datasz, word)
        off = desc + _align_up(descsz, word)

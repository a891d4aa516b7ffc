"""``sealkit elf``: the sealing marker and its neighbours in ELF files.

:func:`inspect` reads a file with pyelftools and says whether it carries
``GNU_PROPERTY_MEMORY_SEAL``, next to what an auditor expects in the same
row (RELRO, BIND_NOW, PIE, NX; checksec's columns). The file readers it
shares with the host audit (ELF header, program headers) are in
:mod:`sealkit._os.elf`.
The marker (spec other-systems §4.3): property type 3 in an
``NT_GNU_PROPERTY_TYPE_0`` note (owner ``GNU``, type 5) with ``pr_datasz`` 0,
found by the loader through the ``PT_GNU_PROPERTY`` (0x6474e553) segment,
whose alignment must be 8 on ELF64 and 4 on ELF32. :func:`walk_properties`
follows the loader's own walk (glibc ``_dl_process_pt_gnu_property``,
elf/dl-load.c): a property the walk cannot reach (wrong segment alignment,
a malformed note, types out of ascending order, as when a linker that does
not know type 3 concatenates notes instead of merging them) is reported as
*ignored*, with the reason.

No released glibc acts on the marker yet (spec other-systems §0 finding 1,
§4.2: loader sealing is an unmerged series), so *marked* is not *sealed at
run time*: :func:`sealkit.host.audit.scan_host` shows what is sealed.
"""

# ruff: noqa: PLC0415 (pyelftools is imported lazily: the audit hot path must not pay for it)

from __future__ import annotations

import os
import struct
from collections.abc import Iterator, Sequence
from typing import Any, Final, Literal, NamedTuple

from .._os.elf import (
    DF_1_NOW,
    DF_1_PIE,
    DF_BIND_NOW,
    DT_BIND_NOW,
    DT_FLAGS,
    DT_FLAGS_1,
    DT_NULL,
    GNU_PROPERTY_MEMORY_SEAL,
    NT_GNU_PROPERTY_TYPE_0,
    PF_X,
    PT_DYNAMIC,
    PT_GNU_PROPERTY,
    PT_GNU_RELRO,
    PT_GNU_STACK,
    PT_INTERP,
    PT_LOAD,
    ident,
    is_elf,
    open_file,
)
from ..errors import ArgumentError, ArgumentTypeError, ParseError

__all__ = [
    "GNU_PROPERTY_MEMORY_SEAL",
    "NOT_ENFORCED_NOTE",
    "PT_GNU_PROPERTY",
    "ElfReport",
    "inspect",
    "iter_paths",
    "walk_properties",
]

NOT_ENFORCED_NOTE: Final = (
    "no released glibc acts on GNU_PROPERTY_MEMORY_SEAL yet (glibc 2.43 adds only the "
    "mseal() wrapper; loader sealing is an unmerged series), so 'marked' is not 'sealed "
    "at run time': `sealkit audit` shows what is sealed"
)


# --- the marker: the loader's walk (pure) ------------------------------------


def _align_up(value: int, align: int) -> int:
    return (value + align - 1) & ~(align - 1) if align > 1 else value


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
    found: list[tuple[int, int]] = []
    last_type = 0
    off = 0
    size = len(blob)
    while off + nhdr.size < size:
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
            while True:
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
                found.append((pr_type, pr_datasz))
                ptr += _align_up(pr_datasz, word)
                if end - ptr < 8:
                    break
        off = desc + _align_up(descsz, align)
    return found, None


def _note_properties(blob: bytes, little: bool, word: int) -> Iterator[tuple[int, int]]:
    """Every ``(pr_type, pr_datasz)`` in a ``.note.gnu.property`` section,
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
                yield pr_type, pr_datasz
                ptr += 8 + _align_up(pr_datasz, word)
        off = desc + _align_up(descsz, word)


# --- sealkit elf: one row per file (pyelftools) ------------------------------

SealMark = Literal["yes", "no", "ignored", "section-only"]


class ElfReport(NamedTuple):
    """One file, as ``sealkit elf`` shows it.

    ``error`` is set (and the rest unknown) when the file could not be read
    as ELF. ``seal_marker``: ``"yes"`` when the loader's walk of
    ``PT_GNU_PROPERTY`` reaches type 3 with ``pr_datasz`` 0; ``"ignored"``
    when type 3 is present but the walk would not honour it
    (``seal_detail`` says why); ``"section-only"`` when only the
    ``.note.gnu.property`` section carries it (an object file, or a section
    added after linking without its segment): no loader reads sections;
    ``"no"`` otherwise. ``relro``: ``"full"`` (PT_GNU_RELRO and BIND_NOW),
    ``"partial"`` or ``"no"``; ``pie``: ``"yes"``, ``"no"`` (ET_EXEC),
    ``"dso"`` (a shared library) or ``"rel"`` (an object file); ``nx``:
    ``PT_GNU_STACK`` without execute permission.
    """

    path: str
    error: str | None = None
    elfclass: int | None = None
    endian: str | None = None
    machine: str | None = None
    type: str | None = None
    seal_marker: SealMark | None = None
    seal_detail: str = ""
    relro: str | None = None
    bind_now: bool | None = None
    pie: str | None = None
    nx: bool | None = None

    @property
    def marked(self) -> bool:
        """Whether the loader would see the sealing marker."""
        return self.seal_marker == "yes"

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready form (``sealkit elf --json``)."""
        return {
            "path": self.path,
            "error": self.error,
            "class": self.elfclass,
            "endian": self.endian,
            "machine": self.machine,
            "type": self.type,
            "memory_seal": self.seal_marker,
            "memory_seal_detail": self.seal_detail,
            "relro": self.relro,
            "bind_now": self.bind_now,
            "pie": self.pie,
            "nx": self.nx,
        }


def iter_paths(paths: Sequence[str], recursive: bool) -> Iterator[tuple[str, bool]]:
    """Expand ``paths``: ``(path, named)`` where ``named`` is true for a path
    given on the command line. Directories are walked (sorted, without
    following symlinked directories) only when ``recursive``; files found by
    the walk are yielded only when they start with the ELF magic, so a
    directory of mixed files gives rows for its ELF files only.
    """
    given: object = paths
    if not isinstance(given, list | tuple) or not all(isinstance(p, str) for p in given):
        raise ArgumentTypeError("paths must be a list of str")
    for path in paths:
        if recursive and os.path.isdir(path):
            for root, dirs, files in os.walk(path):
                dirs.sort()
                for name in sorted(files):
                    full = os.path.join(root, name)
                    if os.path.isfile(full) and is_elf(full):
                        yield full, False
        else:
            yield path, True


def inspect(path: str) -> ElfReport:
    """Read ``path`` and report its sealing marker, RELRO, BIND_NOW, PIE and NX.

    Never raises for a bad file: a missing, unreadable, non-ELF, truncated
    or malformed file gives an :class:`ElfReport` whose ``error`` says what
    is wrong.
    """
    if not isinstance(path, str | os.PathLike):
        raise ArgumentTypeError(f"path must be a str or path, not {type(path).__name__}")
    path = os.fspath(path)
    if "\0" in path:
        return ElfReport(path.replace("\0", "\\0"), error="path contains a NUL byte")
    from elftools.common.exceptions import ELFError  # lazy: ~60 ms of imports
    from elftools.construct import ConstructError
    from elftools.elf.elffile import ELFFile

    try:
        with os.fdopen(open_file(path)[0], "rb") as stream:
            head = stream.read(64)
            ident(head, path)
            size = os.fstat(stream.fileno()).st_size
            elf = ELFFile(stream)
            return _inspect(path, elf, size)
    except ParseError as exc:
        return ElfReport(path, error=exc.message)
    except IsADirectoryError:
        return ElfReport(path, error="is a directory (use -r to walk it)")
    except OSError as exc:
        return ElfReport(path, error=exc.strerror or str(exc))
    except (
        ELFError, ConstructError, struct.error, ValueError, OverflowError, EOFError, KeyError,
        AssertionError,
    ) as exc:  # fmt: skip
        # pyelftools checks some structure with assert: still a malformed file.
        return ElfReport(path, error=f"malformed or truncated ELF: {exc}")


def _inspect(path: str, elf: Any, size: int) -> ElfReport:
    header = elf.header
    elfclass = elf.elfclass
    little = elf.little_endian
    word = elfclass // 8
    # Everything the headers describe must be in the file: a truncated file
    # is an error row, not a half-read answer.
    needed = header["e_phoff"] + header["e_phnum"] * header["e_phentsize"]
    if header["e_shnum"]:
        needed = max(needed, header["e_shoff"] + header["e_shnum"] * header["e_shentsize"])
    segments = list(elf.iter_segments())
    for seg in segments:
        needed = max(needed, seg["p_offset"] + seg["p_filesz"])
    if size < needed:
        raise ParseError(f"truncated: the file has {size} bytes, its headers describe {needed}")

    def ptype(seg: Any) -> int:
        value = seg["p_type"]
        return value if isinstance(value, int) else int(_PT_BY_NAME.get(value, -1))

    types = [ptype(s) for s in segments]
    marker: SealMark = "no"
    detail = ""
    for seg, t in zip(segments, types, strict=True):
        if t != PT_GNU_PROPERTY:
            continue
        props, stopped = walk_properties(
            _data(seg, seg["p_offset"], seg["p_filesz"], "PT_GNU_PROPERTY", size),
            elfclass,
            little,
            seg["p_align"],
        )
        seals = [datasz for ptype_, datasz in props if ptype_ == GNU_PROPERTY_MEMORY_SEAL]
        if seals and seals[0] == 0:
            marker, detail = "yes", ""
        elif seals:
            marker, detail = "ignored", f"pr_datasz is {seals[0]}, the loader requires 0"
        elif stopped:
            section = _section_props(elf, little, word, size)
            if any(t_ == GNU_PROPERTY_MEMORY_SEAL for t_, _ in section):
                marker, detail = "ignored", stopped
    if marker == "no":
        section = _section_props(elf, little, word, size)
        if any(t_ == GNU_PROPERTY_MEMORY_SEAL for t_, _ in section):
            marker, detail = "section-only", "no PT_GNU_PROPERTY segment carries it"

    e_type = header["e_type"]
    # Dynamic tags straight from PT_DYNAMIC (or .dynamic): pyelftools'
    # iter_tags wants a string table, which only names need.
    dyn_blob = b""
    if PT_DYNAMIC in types:
        seg = next(s for s, t in zip(segments, types, strict=True) if t == PT_DYNAMIC)
        dyn_blob = _data(seg, seg["p_offset"], seg["p_filesz"], "PT_DYNAMIC", size, _MAX_DYNAMIC)
    elif (dynamic := elf.get_section_by_name(".dynamic")) is not None:
        dyn_blob = _data(
            dynamic, dynamic["sh_offset"], dynamic["sh_size"], ".dynamic", size, _MAX_DYNAMIC
        )
    flags = flags_1 = 0
    bind_now = False
    entry = struct.Struct(("<" if little else ">") + ("iI" if elfclass == 32 else "qQ"))
    for off in range(0, len(dyn_blob) - entry.size + 1, entry.size):
        tag, value = entry.unpack_from(dyn_blob, off)
        if tag == DT_NULL:
            break
        if tag == DT_BIND_NOW:
            bind_now = True
        elif tag == DT_FLAGS:
            flags = value
        elif tag == DT_FLAGS_1:
            flags_1 = value
    bind_now = bind_now or bool(flags & DF_BIND_NOW) or bool(flags_1 & DF_1_NOW)
    relro = "no"
    if PT_GNU_RELRO in types:
        relro = "full" if bind_now else "partial"
    if e_type == "ET_DYN":
        pie = "yes" if (flags_1 & DF_1_PIE or PT_INTERP in types) else "dso"
    elif e_type == "ET_EXEC":
        pie = "no"
    elif e_type == "ET_REL":
        pie = "rel"
    else:
        pie = str(e_type).removeprefix("ET_").lower()
    stack = [s for s, t in zip(segments, types, strict=True) if t == PT_GNU_STACK]
    nx = bool(stack) and not stack[0]["p_flags"] & PF_X
    return ElfReport(
        path=path,
        elfclass=elfclass,
        endian="little" if little else "big",
        machine=str(header["e_machine"]).removeprefix("EM_"),
        type=str(e_type).removeprefix("ET_"),
        seal_marker=marker,
        seal_detail=detail,
        relro=relro,
        bind_now=bind_now,
        pie=pie,
        nx=nx,
    )


_PT_BY_NAME: Final = {
    "PT_LOAD": PT_LOAD,
    "PT_DYNAMIC": PT_DYNAMIC,
    "PT_INTERP": PT_INTERP,
    "PT_GNU_STACK": PT_GNU_STACK,
    "PT_GNU_RELRO": PT_GNU_RELRO,
    "PT_GNU_PROPERTY": PT_GNU_PROPERTY,
}


def _section_props(elf: Any, little: bool, word: int, size: int) -> list[tuple[int, int]]:
    section = elf.get_section_by_name(".note.gnu.property")
    if section is None:
        return []
    blob = _data(section, section["sh_offset"], section["sh_size"], ".note.gnu.property", size)
    return list(_note_properties(blob, little, word))


# Property notes hold a few dozen bytes and .dynamic a few kilobytes; a
# crafted file can claim gigabytes (read into memory and walked in 12-byte
# steps). Larger claims are malformed files, reported as such.
_MAX_NOTES: Final = 1 << 16
_MAX_DYNAMIC: Final = 1 << 24


def _data(
    part: Any, offset: int, length: int, what: str, size: int, cap: int = _MAX_NOTES
) -> bytes:
    """``part.data()`` (a pyelftools segment or section) once its claimed
    extent is inside the file and at most ``cap`` bytes."""
    if offset + length > size:
        raise ParseError(f"truncated: {what} ends at {offset + length}, the file has {size} bytes")
    if length > cap:
        raise ParseError(f"{what} of {length} bytes: implausibly large (at most {cap})")
    data: bytes = part.data()
    return data

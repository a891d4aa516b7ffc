"""``sealkit elf``: the sealing marker and checksec's columns in ELF files.

:func:`inspect` reads a file with the bounded reader of
:mod:`sealkit._os.elf` and says whether it carries
``GNU_PROPERTY_MEMORY_SEAL``, next to what an auditor expects in the same
row: RELRO, BIND_NOW, PIE, NX, stack canary, FORTIFY_SOURCE, RPATH,
RUNPATH, TEXTREL, the symbol table, CET (IBT, SHSTK).

The sealing columns (marker, RELRO, BIND_NOW, PIE, NX, TEXTREL, RPATH,
RUNPATH, CET) follow the loader, which reads program headers only: the
marker and the x86 features from ``PT_GNU_PROPERTY``, NX from the *last*
``PT_GNU_STACK`` (the kernel's ``load_elf_binary()`` and glibc's loader
both keep the last one they see), the dynamic tags from the last non-empty
``PT_DYNAMIC``, the dynamic symbols through ``DT_SYMTAB`` and the hash
table. A binary whose section headers are damaged (``sh_entsize`` 0,
``e_shstrndx`` out of range, a table past the end of the file) loads and
runs, and gets the same answers; only what the section headers alone say
(the symbol table, whether a section carries the marker) becomes unknown,
with the reason in ``unknown``.

The marker (binutils-gdb commit 4d890484df4b, "elf: Add
GNU_PROPERTY_MEMORY_SEAL gnu property"; glibc elf/elf.h): property type 3 in an ``NT_GNU_PROPERTY_TYPE_0`` note (owner
``GNU``, type 5) with ``pr_datasz`` 0, found by the loader through the
``PT_GNU_PROPERTY`` (0x6474e553) segment, whose alignment must be 8 on ELF64
and 4 on ELF32. :func:`walk_properties` follows the loader's own walk (glibc
``_dl_process_pt_gnu_property``, elf/dl-load.c): a property the walk cannot
reach (wrong segment alignment, a malformed note, types out of ascending
order, as when a linker that does not know type 3 concatenates notes
instead of merging them) is reported as *ignored*, with the reason.

No released glibc acts on the marker yet (glibc 2.43 adds only the
``mseal()`` wrapper; loader sealing is Adhemerval Zanella's unmerged "elf:
Add support to memory sealing" series, libc-alpha 2024), so *marked* is
not *sealed at run time*: :func:`sealkit.host.audit.scan_host` shows what
is sealed.

Object files (``ET_REL``) are not loaded: NX comes from the
``.note.GNU-stack`` section, as the linker reads it; RELRO, BIND_NOW,
TEXTREL, RPATH and RUNPATH are not applicable; the canary and FORTIFY
counts come from ``.symtab``.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Callable, Iterator, Sequence
from typing import Any, Final, Literal, NamedTuple

from .._os.elf import (
    DF_1_NOW,
    DF_1_PIE,
    DF_BIND_NOW,
    DF_TEXTREL,
    DT_BIND_NOW,
    DT_FLAGS,
    DT_FLAGS_1,
    DT_RPATH,
    DT_RUNPATH,
    DT_TEXTREL,
    EM_386,
    EM_X86_64,
    ET_DYN,
    ET_EXEC,
    ET_REL,
    GNU_PROPERTY_MEMORY_SEAL,
    GNU_PROPERTY_X86_FEATURE_1_AND,
    GNU_PROPERTY_X86_FEATURE_1_IBT,
    GNU_PROPERTY_X86_FEATURE_1_SHSTK,
    MAX_NOTE_BYTES,
    MAX_NOTE_SECTIONS,
    NOT_REGULAR,
    PF_X,
    PT_GNU_PROPERTY,
    PT_GNU_RELRO,
    PT_GNU_STACK,
    PT_INTERP,
    SHF_EXECINSTR,
    SHT_NOTE,
    SHT_SYMTAB,
    ElfFile,
    TooLarge,
    is_elf,
    note_properties,
    open_elf,
    property_values,
    walk_properties,
)
from ..errors import ArgumentTypeError, ParseError

__all__ = [
    "GNU_PROPERTY_MEMORY_SEAL",
    "NOT_ENFORCED_NOTE",
    "PT_GNU_PROPERTY",
    "ElfReport",
    "c_library",
    "fortify_functions",
    "inspect",
    "iter_paths",
    "walk_properties",
]

NOT_ENFORCED_NOTE: Final = (
    "no released glibc acts on GNU_PROPERTY_MEMORY_SEAL yet (glibc 2.43 adds only the "
    "mseal() wrapper; loader sealing is an unmerged series), so 'marked' is not 'sealed "
    "at run time': `sealkit audit` shows what is sealed"
)

SealMark = Literal["yes", "no", "ignored", "section-only"]

# What checksec looks for (checksec.sh filecheck(): readelf -s, both
# tables): the stack protector's failure path and guard (GCC, Clang), and
# ICC's cookie. 32-bit PIC code calls __stack_chk_fail_local.
CANARY_SYMBOLS: Final = frozenset(
    {b"__stack_chk_fail", b"__stack_chk_fail_local", b"__stack_chk_guard",
     b"__intel_security_cookie"}
)  # fmt: skip

_E_MACHINE: Final = {
    0: "NONE", 2: "SPARC", 3: "386", 8: "MIPS", 20: "PPC", 21: "PPC64", 22: "S390",
    40: "ARM", 42: "SH", 43: "SPARCV9", 50: "IA_64", 62: "X86_64", 183: "AARCH64",
    243: "RISCV", 247: "BPF", 258: "LOONGARCH",
}  # fmt: skip
_E_TYPE: Final = {0: "NONE", 1: "REL", 2: "EXEC", 3: "DYN", 4: "CORE"}


class ElfReport(NamedTuple):
    """One file, as ``sealkit elf`` shows it.

    ``error`` is set (and the rest unknown) when the file could not be read
    as ELF; with ``skipped`` it says why the file is not one (not ELF, a
    directory, not a regular file), which is not an error unless asked for.

    ``seal_marker``: ``"yes"`` when the loader's walk of ``PT_GNU_PROPERTY``
    reaches type 3 with ``pr_datasz`` 0; ``"ignored"`` when type 3 is
    present but the walk would not honour it (``seal_detail`` says why);
    ``"section-only"`` when only a ``.note.gnu.property`` section carries it
    (an object file, or a section added after linking without its segment):
    no loader reads sections; ``"no"`` otherwise. ``relro``: ``"full"``
    (PT_GNU_RELRO and BIND_NOW), ``"partial"`` or ``"no"``; ``pie``:
    ``"yes"``, ``"no"`` (ET_EXEC), ``"dso"`` (a shared library) or ``"rel"``
    (an object file); ``nx``: the last ``PT_GNU_STACK`` without execute
    permission. ``canary``: a stack-protector symbol (``__stack_chk_fail``,
    ...) among the dynamic symbols or in ``.symtab``; ``fortified``: the
    imported ``__X_chk`` functions that the C library provides,
    ``fortifiable``: those plus the imported plain ``X``; ``rpath`` and
    ``runpath``: the ``DT_RPATH``/``DT_RUNPATH`` string (``None`` when
    absent); ``textrel``: ``DT_TEXTREL`` or ``DF_TEXTREL``; ``stripped``: no
    ``SHT_SYMTAB`` section; ``ibt``/``shstk``: the x86 feature bits of
    ``GNU_PROPERTY_X86_FEATURE_1_AND`` as the loader's walk reaches them.

    A column that does not apply to this file (RELRO of an object file, CET
    of an ARM file) is ``None`` and named in ``not_applicable``; one that
    could not be read is ``None`` and in ``unknown`` with the reason.
    """

    path: str
    error: str | None = None
    skipped: bool = False
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
    canary: bool | None = None
    fortified: int | None = None
    fortifiable: int | None = None
    rpath: str | None = None
    runpath: str | None = None
    textrel: bool | None = None
    stripped: bool | None = None
    ibt: bool | None = None
    shstk: bool | None = None
    not_applicable: tuple[str, ...] = ()
    unknown: tuple[tuple[str, str], ...] = ()

    @property
    def marked(self) -> bool:
        """Whether the loader would see the sealing marker."""
        return self.seal_marker == "yes"

    @property
    def fortify_source(self) -> bool | None:
        """Whether any fortified function is called (checksec's FORTIFY column)."""
        return None if self.fortified is None else self.fortified > 0

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
            "canary": self.canary,
            "fortify_source": self.fortify_source,
            "fortified": self.fortified,
            "fortifiable": self.fortifiable,
            "rpath": self.rpath,
            "runpath": self.runpath,
            "textrel": self.textrel,
            "stripped": self.stripped,
            "ibt": self.ibt,
            "shstk": self.shstk,
            "not_applicable": list(self.not_applicable),
            "unknown": dict(self.unknown),
        }


def iter_paths(
    paths: Sequence[str],
    recursive: bool,
    *,
    on_entry: Callable[[], None] | None = None,
    on_error: Callable[[str, str], None] | None = None,
) -> Iterator[tuple[str, bool]]:
    """Expand ``paths``: ``(path, named)`` where ``named`` is true for a path
    given on the command line. Directories are walked (sorted, without
    following symlinked directories) only when ``recursive``; files found by
    the walk are yielded only when they start with the ELF magic, so a
    directory of mixed files gives rows for its ELF files only. Paths are
    yielded as they are found. ``on_entry()`` is called for every directory
    entry examined (progress), ``on_error(path, message)`` for a directory
    that cannot be read.
    """
    given: object = paths
    if not isinstance(given, list | tuple) or not all(isinstance(p, str) for p in given):
        raise ArgumentTypeError("paths must be a list of str")

    def walk_error(exc: OSError) -> None:
        if on_error is not None:
            on_error(str(exc.filename), exc.strerror or str(exc))

    for path in paths:
        if recursive and os.path.isdir(path):
            for root, dirs, files in os.walk(path, onerror=walk_error):
                dirs.sort()
                for name in sorted(files):
                    if on_entry is not None:
                        on_entry()
                    full = os.path.join(root, name)
                    if is_elf(full):
                        yield full, False
        else:
            yield path, True


_SKIP: Final = ("not an ELF file", NOT_REGULAR)


def inspect(path: str) -> ElfReport:
    """Read ``path`` and report its sealing marker and checksec's columns.

    Never raises for a bad file: a missing, unreadable, non-ELF, truncated
    or malformed file gives an :class:`ElfReport` whose ``error`` says what
    is wrong (with ``skipped`` for a file that is not ELF at all). Reads are
    bounded (:data:`sealkit._os.elf.MAX_READ` per file), whatever the file
    claims.
    """
    if not isinstance(path, str | os.PathLike):
        raise ArgumentTypeError(f"path must be a str or path, not {type(path).__name__}")
    path = os.fspath(path)
    if not isinstance(path, str):
        raise ArgumentTypeError("path must be a str or path")
    if "\0" in path:
        return ElfReport(path.replace("\0", "\\0"), error="path contains a NUL byte")
    try:
        with open_elf(path) as elf:
            return _report(path, elf)
    except ParseError as exc:
        return ElfReport(path, error=exc.message, skipped=exc.message in _SKIP)
    except IsADirectoryError:
        return ElfReport(path, error="a directory (use -r to walk it)", skipped=True)
    except OSError as exc:
        return ElfReport(path, error=exc.strerror or str(exc))


def _report(path: str, elf: ElfFile) -> ElfReport:
    na: list[str] = []
    unknown: dict[str, str] = {}
    segments = elf.segments
    for seg in segments:  # the loader maps these: a file cut short of them is an error
        if seg.offset + seg.filesz > elf.size:
            raise ParseError(
                f"truncated: the file has {elf.size} bytes, its program headers describe "
                f"{seg.offset + seg.filesz}"
            )
    types = [s.type for s in segments]
    is_rel = elf.type == ET_REL
    x86 = elf.machine in (EM_386, EM_X86_64)

    def sections_unusable(exc: ParseError) -> str:
        return f"the section headers are unusable: {exc.message}"

    # -- the marker and the x86 features: PT_GNU_PROPERTY ------------------
    marker: SealMark = "no"
    detail = ""
    features = 0
    stopped_any: str | None = None
    for seg in segments:
        if seg.type != PT_GNU_PROPERTY:
            continue
        try:
            blob = elf.segment_data(seg, "PT_GNU_PROPERTY", MAX_NOTE_BYTES)
        except TooLarge as exc:
            raise ParseError(
                f"{exc.message} (the loader reads notes of a few dozen bytes)"
            ) from None
        props, stopped = property_values(blob, elf.elfclass, elf.little, seg.align)
        seals = [len(data) for t, data in props if t == GNU_PROPERTY_MEMORY_SEAL]
        if seals and seals[0] == 0:
            marker, detail = "yes", ""
        elif seals:
            marker, detail = "ignored", f"pr_datasz is {seals[0]}, the loader requires 0"
        stopped_any = stopped_any or stopped
        cet = [d for t, d in props if t == GNU_PROPERTY_X86_FEATURE_1_AND and len(d) == 4]
        features = int.from_bytes(cet[0], "little" if elf.little else "big") if cet else 0
    section_props: list[tuple[int, bytes]] | None = None
    if marker == "no" or is_rel:
        try:
            section_props = _section_properties(elf)
        except ParseError as exc:
            detail = f"no section was read: {exc.message}"
        else:
            if any(t == GNU_PROPERTY_MEMORY_SEAL for t, _ in section_props):
                if stopped_any and marker == "no":
                    marker, detail = "ignored", stopped_any
                elif marker == "no":
                    marker, detail = "section-only", "no PT_GNU_PROPERTY segment carries it"
    ibt = shstk = None
    if not x86:
        na += ["ibt", "shstk"]
    elif is_rel and section_props is None:
        unknown["ibt"] = unknown["shstk"] = "the .note.gnu.property section could not be read"
    else:
        if is_rel and section_props is not None:  # what the linker will AND together
            cet = [
                d for t, d in section_props if t == GNU_PROPERTY_X86_FEATURE_1_AND and len(d) == 4
            ]
            features = int.from_bytes(cet[0], "little" if elf.little else "big") if cet else 0
        ibt = bool(features & GNU_PROPERTY_X86_FEATURE_1_IBT)
        shstk = bool(features & GNU_PROPERTY_X86_FEATURE_1_SHSTK)

    # -- the dynamic segment -------------------------------------------------
    entries = elf.dynamic()
    dyn: dict[int, int] = {}  # the last of each tag, as glibc's get-dynamic-info.h keeps
    tags: set[int] = set()
    for tag, value in entries or ():
        dyn[tag] = value
        tags.add(tag)
    flags, flags_1 = dyn.get(DT_FLAGS, 0), dyn.get(DT_FLAGS_1, 0)
    relro: str | None
    bind_now: bool | None
    textrel: bool | None
    rpath: str | None = None
    runpath: str | None = None
    if is_rel:
        relro = bind_now = textrel = None
        na += ["relro", "bind_now", "textrel", "rpath", "runpath"]
    else:
        bind_now = DT_BIND_NOW in tags or bool(flags & DF_BIND_NOW) or bool(flags_1 & DF_1_NOW)
        relro = ("full" if bind_now else "partial") if PT_GNU_RELRO in types else "no"
        textrel = DT_TEXTREL in tags or bool(flags & DF_TEXTREL)
        for column, tag in (("rpath", DT_RPATH), ("runpath", DT_RUNPATH)):
            if tag in dyn:
                try:
                    text = elf.dynamic_string(dyn, dyn[tag], f"DT_{column.upper()}")
                except ParseError as exc:
                    unknown[column] = exc.message
                else:
                    if column == "rpath":
                        rpath = text
                    else:
                        runpath = text

    if elf.type == ET_DYN:
        pie = "yes" if (flags_1 & DF_1_PIE or PT_INTERP in types) else "dso"
    elif elf.type == ET_EXEC:
        pie = "no"
    elif is_rel:
        pie = "rel"
    else:
        pie = _E_TYPE.get(elf.type, f"{elf.type:#x}").lower()

    # -- NX ---------------------------------------------------------------------
    nx: bool | None = None
    if is_rel:
        try:
            elf.sections()
        except ParseError as exc:
            unknown["nx"] = sections_unusable(exc)
        else:
            if elf.names_error is not None:
                unknown["nx"] = f"section names unknown: {elf.names_error}"
            else:
                # ld: no .note.GNU-stack means an executable stack on x86
                # ("missing .note.GNU-stack section implies executable stack")
                note = elf.section_named(".note.GNU-stack")
                nx = note is not None and not note.flags & SHF_EXECINSTR
    else:
        # The last PT_GNU_STACK decides: load_elf_binary() (fs/binfmt_elf.c)
        # sets executable_stack in a switch inside its loop over every header
        # (the `break` leaves the switch, not the loop); glibc assigns
        # `stack_flags = ph->p_flags` (elf/dl-load.c) and
        # `GL(dl_stack_flags) = ph->p_flags` (elf/rtld.c) in loops over all.
        stacks = [s for s in segments if s.type == PT_GNU_STACK]
        nx = bool(stacks) and not stacks[-1].flags & PF_X

    # -- symbols: canary, FORTIFY -----------------------------------------------
    canary: bool | None = None
    fortified = fortifiable = None
    try:
        symbols = elf.symtab_symbols() if is_rel else elf.dynamic_symbols(dyn)
    except ParseError as exc:
        why = sections_unusable(exc) if is_rel else exc.message
        unknown.update(canary=why, fortified=why, fortifiable=why)
    else:
        canary = any(name in CANARY_SYMBOLS for name, _ in symbols)
        if not canary and not is_rel:
            try:
                canary = elf.symtab_has(CANARY_SYMBOLS)
            except ParseError as exc:
                canary = None
                unknown["canary"] = f"not among the dynamic symbols; .symtab: {exc.message}"
        chk = fortify_functions()
        if chk is None:
            unknown["fortified"] = unknown["fortifiable"] = (
                "no C library found to list the fortified (__*_chk) functions"
            )
        else:
            imported = {name for name, defined in symbols if not defined}
            fortified = sum(
                1 for n in imported if n[:2] == b"__" and n[-4:] == b"_chk" and n[2:-4] in chk
            )
            fortifiable = fortified + sum(1 for n in imported if n in chk)

    # -- the symbol table -------------------------------------------------------
    stripped: bool | None = None
    try:
        stripped = not any(s.type == SHT_SYMTAB for s in elf.sections())
    except ParseError as exc:
        unknown["stripped"] = sections_unusable(exc)

    return ElfReport(
        path=path,
        elfclass=elf.elfclass,
        endian="little" if elf.little else "big",
        machine=_E_MACHINE.get(elf.machine, f"machine {elf.machine}"),
        type=_E_TYPE.get(elf.type, f"{elf.type:#x}"),
        seal_marker=marker,
        seal_detail=detail,
        relro=relro,
        bind_now=bind_now,
        pie=pie,
        nx=nx,
        canary=canary,
        fortified=fortified,
        fortifiable=fortifiable,
        rpath=rpath,
        runpath=runpath,
        textrel=textrel,
        stripped=stripped,
        ibt=ibt,
        shstk=shstk,
        not_applicable=tuple(na),
        unknown=tuple(sorted(unknown.items())),
    )


def _section_properties(elf: ElfFile) -> list[tuple[int, bytes]]:
    """Every property of the ``.note.gnu.property`` sections (every note
    section when the names are unknown), without the loader's rules."""
    notes = [
        s
        for s in elf.sections()
        if s.type == SHT_NOTE and (elf.names_error is not None or s.name == ".note.gnu.property")
    ]
    found: list[tuple[int, bytes]] = []
    for section in notes[:MAX_NOTE_SECTIONS]:
        blob = elf.read(section.offset, section.size, "a note section", MAX_NOTE_BYTES)
        found.extend(note_properties(blob, elf.little, elf.elfclass // 8))
    return found


# --- FORTIFY_SOURCE: the C library's __*_chk functions ------------------------

_LIBC_PATHS: Final = (
    "/lib/x86_64-linux-gnu/libc.so.6", "/lib64/libc.so.6", "/lib/libc.so.6",
    "/usr/lib/libc.so.6", "/lib/aarch64-linux-gnu/libc.so.6", "/lib/i386-linux-gnu/libc.so.6",
)  # fmt: skip


def c_library() -> str | None:
    """The C library this process runs with (its ``libc.so.6`` mapping), or
    the first of the usual paths that exists; ``None`` when there is none."""
    try:
        with open("/proc/self/maps", encoding="utf-8", errors="surrogateescape") as fh:
            for line in fh:
                path = line.rstrip("\n").split(None, 5)[-1]
                if path.startswith("/") and os.path.basename(path).startswith("libc.so"):
                    return path
    except OSError:
        pass
    return next((p for p in _LIBC_PATHS if os.path.exists(p)), None)


@functools.lru_cache(maxsize=4)
def fortify_functions(libc: str | None = None) -> frozenset[bytes] | None:
    """The names ``X`` for which the C library (``libc``, or
    :func:`c_library`) defines ``__X_chk``: what ``-D_FORTIFY_SOURCE``
    turns a call to ``X`` into, the way checksec lists them (79 in glibc
    2.36). ``None`` when no C library can be read."""
    path = libc if libc is not None else c_library()
    if path is None:
        return None
    try:
        with open_elf(path) as elf:
            entries = elf.dynamic() or []
            symbols = elf.dynamic_symbols(dict(entries))
    except (OSError, ParseError):
        return None
    return frozenset(
        name[2:-4]
        for name, defined in symbols
        if defined and name[:2] == b"__" and name[-4:] == b"_chk" and len(name) > 6
    )

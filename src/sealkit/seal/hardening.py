"""Harden the running interpreter: seal the loaded code of this process.

:func:`harden` does for a Python process what glibc's unmerged loader
sealing (``-z memory-seal``, spec other-systems §4.2) would do for a marked
program: it walks every ELF object the dynamic loader has mapped (the python
executable, libpython, libc, ld.so, extension modules, ctypes-loaded
libraries), from ``dl_iterate_phdr(3)``, and ``mseal(2)``\\ s their segments.

* ``level="code"`` seals what is never written after loading: text
  (``r-x``), read-only data (``r--``) and RELRO (``r--`` once the loader
  has relocated it).
* ``level="all"`` seals each object's whole range, as glibc's proposal does:
  also writable data, the zero-fill ``.bss`` pages beyond the file, and the
  ``PROT_NONE`` gaps between segments (so nothing can be mapped into them).
  Writable pages stay writable: a seal fixes the mapping and its protection,
  not the contents.

Nothing is sealed on faith. Every range is computed from the program headers
and then checked against ``/proc/self/smaps``: it must be mapped, privately,
from the same file at the same offset (or anonymous, for ``.bss``), with the
protection the segment calls for. Anything else (a hole, another file, a
RELRO still writable, a page two segments share, a writable and executable
mapping) is skipped, and the report says why. Each range is checked again at
the moment it is sealed (in C under the loader's lock when the extension is
built), so a library another thread replaced in the meantime is skipped as
"changed since planned" rather than sealed (``docs/hardening.md``, Threads).

Sealing is irreversible until the process exits. What breaks afterwards is
listed in ``docs/hardening.md``: dlclose of a sealed library leaks its
mapping instead of unmapping it, a later dlopen of a library that needs an
executable stack fails (glibc must mprotect ld.so's RELRO for it), and
checkpoint/restore (CRIU) and rr cannot remap a sealed process.
"""

from __future__ import annotations

import _thread
import errno
import functools
import os
import time
from bisect import bisect_right
from collections.abc import Callable, Iterable, Sequence
from typing import TYPE_CHECKING, Any, Final, NamedTuple

from .._os import procfs, syscalls

# for `sealkit run`, which dies by SIGINT after finalising as python does
from .._os.syscalls import (
    PF_W,
    PF_X,
    PT_GNU_RELRO,
    PT_LOAD,
    LoadedObject,
    raise_exit_status_at_exit,
)
from ..errors import ArgumentError, ArgumentTypeError, KernelError, kernel_error

if TYPE_CHECKING:
    from rich.console import RenderableType

    from .._os.procfs import Vma

__all__ = [
    "KINDS",
    "LEVELS",
    "SYSTEM_MAPPINGS",
    "HardenReport",
    "ObjectReport",
    "SealedRange",
    "SkippedRange",
    "harden",
    "hook_reports",
    "plan",
    "raise_exit_status_at_exit",
]

LEVELS: Final = ("code", "all")
"""Accepted ``level`` values of :func:`harden`."""

KINDS: Final = ("text", "rodata", "relro", "data", "bss", "gap", "system")
"""What a range of an object is: ``text`` (executable), ``rodata``
(read-only), ``relro`` (read-only after relocation), ``data`` (writable, from
the file), ``bss`` (writable zero-fill beyond the file), ``gap`` (``PROT_NONE``
hole between segments), ``system`` (``[vdso]``, ``[vvar]``, ``[vvar_vclock]``).
"""

CODE_KINDS: Final = frozenset({"text", "rodata", "relro"})
"""The kinds ``level="code"`` seals."""

SYSTEM_MAPPINGS: Final = ("[vdso]", "[vvar]", "[vvar_vclock]")
"""Kernel-provided mappings sealed only with ``system=True`` (what
``CONFIG_MSEAL_SYSTEM_MAPPINGS`` seals on x86-64, spec linux-mseal §2.6)."""

_SYSTEM_CAVEAT: Final = (
    "system mapping: sealed only with system=True (breaks CRIU, rr, gVisor and "
    "anything that moves the vDSO)"
)


# --- the report -------------------------------------------------------------------


class SealedRange(NamedTuple):
    """A page range that was sealed (or, in a dry run, would be).

    ``perms`` is the protection ``/proc/self/smaps`` showed; ``already_sealed``
    is true when the range was sealed before this call (``harden`` is
    idempotent: such ranges are not sealed again).
    """

    start: int
    end: int
    kind: str
    perms: str
    already_sealed: bool = False

    @property
    def size(self) -> int:
        """Bytes covered."""
        return self.end - self.start


class SkippedRange(NamedTuple):
    """A page range of an object that was left unsealed, and why."""

    start: int
    end: int
    kind: str
    reason: str

    @property
    def size(self) -> int:
        """Bytes covered."""
        return self.end - self.start


class ObjectReport(NamedTuple):
    """What happened to one loaded object (or one system mapping).

    ``path`` is the file as ``/proc/self/smaps`` names it (or ``[vdso]``...);
    ``name`` is the loader's ``dlpi_name`` (``""`` for the main program);
    ``base`` is the load bias (the start of the mapping for system mappings).
    """

    path: str
    name: str
    base: int
    sealed: tuple[SealedRange, ...]
    skipped: tuple[SkippedRange, ...]

    @property
    def sealed_bytes(self) -> int:
        """Bytes sealed, counting those that were already sealed."""
        return sum(r.size for r in self.sealed)

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready: every field, addresses as integers."""
        return {
            "path": self.path,
            "name": self.name,
            "base": self.base,
            "sealed_bytes": self.sealed_bytes,
            "sealed": [
                {
                    "start": r.start,
                    "end": r.end,
                    "bytes": r.size,
                    "kind": r.kind,
                    "perms": r.perms,
                    "already_sealed": r.already_sealed,
                }
                for r in self.sealed
            ],
            "skipped": [
                {
                    "start": r.start,
                    "end": r.end,
                    "bytes": r.size,
                    "kind": r.kind,
                    "reason": r.reason,
                }
                for r in self.skipped
            ],
        }


class HardenReport(NamedTuple):
    """The result of :func:`harden` (or of one import-hook event).

    ``objects`` lists every object considered, in the loader's order, then the
    system mappings. In a dry run ``sealed`` ranges are what *would* be
    sealed and nothing changed. ``trigger`` says what caused the sweep:
    ``"harden()"``, ``"import NAME"`` or ``"ctypes NAME"``.
    """

    level: str
    system: bool
    imports: bool
    dry_run: bool
    trigger: str
    page_size: int
    objects: tuple[ObjectReport, ...]
    seconds: float

    @property
    def sealed_bytes(self) -> int:
        """Bytes sealed by now in the objects covered (including already sealed ones)."""
        return sum(o.sealed_bytes for o in self.objects)

    @property
    def newly_sealed_bytes(self) -> int:
        """Bytes this call sealed (or would seal) that were not sealed before."""
        return sum(r.size for o in self.objects for r in o.sealed if not r.already_sealed)

    @property
    def skipped(self) -> tuple[tuple[ObjectReport, SkippedRange], ...]:
        """Every skipped range with its object."""
        return tuple((o, r) for o in self.objects for r in o.skipped)

    def find(self, path_part: str) -> list[ObjectReport]:
        """The objects whose path or loader name contains ``path_part``."""
        return [o for o in self.objects if path_part in o.path or path_part in o.name]

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready: everything ``str()`` shows, and more."""
        return {
            "level": self.level,
            "system": self.system,
            "imports": self.imports,
            "dry_run": self.dry_run,
            "trigger": self.trigger,
            "page_size": self.page_size,
            "seconds": self.seconds,
            "sealed_bytes": self.sealed_bytes,
            "newly_sealed_bytes": self.newly_sealed_bytes,
            "skipped_ranges": len(self.skipped),
            "objects": [o.as_dict() for o in self.objects],
        }

    def summary(self) -> str:
        """One line: what was sealed, how much, how many ranges skipped."""
        verb = "would seal" if self.dry_run else "sealed"
        ranges = sum(len(o.sealed) for o in self.objects)
        objects = sum(1 for o in self.objects if o.sealed)
        already = self.sealed_bytes - self.newly_sealed_bytes
        text = (
            f"{self.trigger}: level={self.level}: {verb} {_size(self.newly_sealed_bytes)} "
            f"in {ranges} ranges of {objects} objects"
        )
        if already:
            text += f" ({_size(already)} already sealed)"
        text += f", {len(self.skipped)} ranges skipped"
        if self.imports:
            text += (
                ", would seal later imports as they load"
                if self.dry_run
                else ", later imports sealed as they load"
            )
        return text + f" [{self.seconds * 1e3:.1f} ms]"

    def _rows(self, obj: ObjectReport) -> list[tuple[int, int, str, str, int, str]]:
        """``(start, end, kind, perms, size, status)`` per range of ``obj``, by address."""
        state = "would seal" if self.dry_run else "sealed"
        rows = [
            (r.start, r.end, r.kind, r.perms, r.size,
             "already sealed" if r.already_sealed else state)
            for r in obj.sealed
        ]  # fmt: skip
        rows += [(r.start, r.end, r.kind, "", r.size, f"skipped: {r.reason}") for r in obj.skipped]
        return sorted(rows)

    def __str__(self) -> str:
        lines = [self.summary()]
        for obj in self.objects:
            lines.append(f"  {obj.path}  (base {obj.base:#x})")
            lines += [
                f"    {start:#014x}-{end:#014x} {kind:<6} {perms:<3} {_size(size):>10}  {status}"
                for start, end, kind, perms, size, status in self._rows(obj)
            ]
        return "\n".join(lines)

    def __rich__(self) -> RenderableType:
        """A rich table (rich is imported only when a report is rendered)."""
        from rich.table import Table  # noqa: PLC0415 - keep `import sealkit` light
        from rich.text import Text  # noqa: PLC0415

        table = Table(title=Text(self.summary()), title_justify="left", expand=False)
        for column in ("object", "range", "kind", "perms", "size", "status"):
            table.add_column(column, justify="right" if column == "size" else "left")
        styles = {"sealed": "green", "would seal": "green", "already sealed": "dim"}
        for obj in self.objects:
            name = os.path.basename(obj.path) or obj.path
            for start, end, kind, perms, size, status in self._rows(obj):
                table.add_row(
                    # Text, not markup: "[vdso]" and reasons naming "[heap]"
                    # would otherwise be read as style tags.
                    Text(name),
                    f"{start:#x}-{end:#x}",
                    kind,
                    perms,
                    _size(size),
                    Text(status, style=styles.get(status, "yellow")),
                )
                name = ""
        return table


def _size(n: int) -> str:
    if n < 1024:
        return f"{n} B"
    if n < 1024 * 1024:
        return f"{n / 1024:.1f} KiB"
    return f"{n / (1024 * 1024):.1f} MiB"


# --- planning: pure, from program headers and smaps --------------------------------


class _Piece(NamedTuple):
    """A page range of an object and what /proc must show there.

    ``perms``: the expected ``rwx`` letters (``None``: any, but never w+x);
    ``offset``: the expected file offset at ``start`` (``None``: not checked);
    ``backing``: ``file`` (this object's file), ``anon`` (zero-fill),
    ``any`` (this object's file or anonymous: gaps, shared pages),
    ``system`` (a kernel mapping named ``kind``).
    ``shared``: the kind of another segment that maps the same page.
    """

    start: int
    end: int
    kind: str
    perms: str | None
    offset: int | None
    backing: str
    shared: str = ""


def _down(value: int, page: int) -> int:
    return value & ~(page - 1)


def _up(value: int, page: int) -> int:
    return (value + page - 1) & ~(page - 1)


def _perms(flags: int) -> str:
    return (
        ("r" if flags & syscalls.PF_R else "-")
        + ("w" if flags & PF_W else "-")
        + ("x" if flags & PF_X else "-")
    )


def _cut(piece: _Piece, start: int, end: int) -> _Piece:
    """``piece`` narrowed to ``[start, end)`` (inside it), its offset following."""
    offset = None if piece.offset is None else piece.offset + (start - piece.start)
    return piece._replace(start=start, end=end, offset=offset)


def _carve(
    pieces: list[_Piece], lo: int, hi: int, change: Callable[[_Piece], _Piece]
) -> list[_Piece]:
    """Split ``pieces`` at ``lo`` and ``hi`` and apply ``change`` to the parts inside."""
    out: list[_Piece] = []
    for piece in pieces:
        if piece.end <= lo or piece.start >= hi:
            out.append(piece)
            continue
        if piece.start < lo:
            out.append(_cut(piece, piece.start, lo))
        out.append(change(_cut(piece, max(piece.start, lo), min(piece.end, hi))))
        if piece.end > hi:
            out.append(_cut(piece, hi, piece.end))
    return out


def _object_pieces(obj: LoadedObject, page: int) -> tuple[list[_Piece], list[SkippedRange]]:
    """Every page range of ``obj``, from its program headers, as the loader maps them.

    Mirrors glibc's ``_dl_map_segments``: a PT_LOAD maps the file from its
    page-rounded-down start to the page-rounded-up end of ``p_filesz``, and
    anonymous zero-fill from there to the page-rounded-up end of ``p_memsz``
    (``.bss``). RELRO is mprotected read-only by ``_dl_protect_relro`` from its
    start rounded *down* to its end rounded *down*: a last page it shares with
    ``.data``/``.got.plt`` stays writable, so it is not RELRO at run time.
    """
    bias = obj.addr
    pieces: list[_Piece] = []
    for ph in sorted(
        (p for p in obj.phdrs if p.type == PT_LOAD and p.memsz), key=lambda p: p.vaddr
    ):
        start = bias + ph.vaddr
        lo, file_end, mem_end = (
            _down(start, page),
            _up(start + ph.filesz, page),
            _up(start + ph.memsz, page),
        )
        perms = _perms(ph.flags)
        kind = "text" if ph.flags & PF_X else "data" if ph.flags & PF_W else "rodata"
        if file_end > lo:
            pieces.append(_Piece(lo, file_end, kind, perms, ph.offset - (start - lo), "file"))
        if mem_end > max(file_end, lo):
            zero_kind = "bss" if ph.flags & PF_W else kind
            pieces.append(_Piece(max(file_end, lo), mem_end, zero_kind, perms, None, "anon"))

    # Pages two segments both claim (possible when the linker's max page size is
    # below the run-time page size): the later mmap wins at run time, so which
    # protection the page has is not something the headers say. Ambiguous.
    pieces.sort(key=lambda p: p.start)
    resolved: list[_Piece] = []
    for piece in pieces:
        current: _Piece | None = piece
        while current is not None and resolved and current.start < resolved[-1].end:
            prev = resolved.pop()
            both_end = min(prev.end, current.end)
            if prev.start < current.start:
                resolved.append(_cut(prev, prev.start, current.start))
            shared = _cut(current, current.start, both_end)
            resolved.append(
                shared._replace(perms=None, offset=None, backing="any", shared=prev.kind)
            )
            if prev.end > current.end:
                current = _cut(prev, current.end, prev.end)
            elif current.end > both_end:
                current = _cut(current, both_end, current.end)
            else:
                current = None
        if current is not None:
            resolved.append(current)

    # Holes between segments: glibc fills them with PROT_NONE (a mapping of the
    # file, or anonymous), so that nothing else lands inside the object.
    with_gaps: list[_Piece] = []
    for piece in resolved:
        if with_gaps and piece.start > with_gaps[-1].end:
            with_gaps.append(_Piece(with_gaps[-1].end, piece.start, "gap", "---", None, "any"))
        with_gaps.append(piece)

    notes: list[SkippedRange] = []
    for ph in obj.phdrs:
        if ph.type != PT_GNU_RELRO or not ph.memsz:
            continue
        start, end = bias + ph.vaddr, bias + ph.vaddr + ph.memsz
        lo, hi = _down(start, page), _down(end, page)
        if hi > lo:
            with_gaps = _carve(with_gaps, lo, hi, lambda p: p._replace(kind="relro", perms="r--"))
        if _up(end, page) > max(hi, lo):
            notes.append(
                SkippedRange(
                    max(hi, lo),
                    _up(end, page),
                    "relro",
                    "RELRO ends inside this page, which it shares with writable data: "
                    "the loader leaves the page writable (glibc _dl_protect_relro rounds down)",
                )
            )
    return with_gaps, notes


def _vma_at(vmas: Sequence[Vma], starts: Sequence[int], addr: int) -> Vma | None:
    i = bisect_right(starts, addr) - 1
    if i >= 0 and vmas[i].start <= addr < vmas[i].end:
        return vmas[i]
    return None


def _mismatch(piece: _Piece, vma: Vma, addr: int, ident: Vma | None) -> str:
    """Why ``vma`` at ``addr`` is not what ``piece`` expects there, or ``""``."""
    perms = vma.perms[:3]
    if "w" in perms and "x" in perms:
        return f"mapped writable and executable ({perms}): never sealed"
    if vma.shared:
        return "a shared mapping, not the loader's private one"
    if piece.backing == "system":
        return "" if vma.path == piece.kind else f"now mapped as {vma.path or 'anonymous'}"
    if piece.perms is not None and perms != piece.perms:
        what = (
            "RELRO not yet read-only"
            if piece.kind == "relro" and "w" in perms
            else "protection differs"
        )
        return f"{what}: /proc shows {perms}, the {piece.kind} segment calls for {piece.perms}"
    same_file = (
        ident is not None and vma.inode == ident.inode and vma.dev == ident.dev and vma.inode != 0
    )
    anonymous = vma.inode == 0 and vma.path == ""
    if piece.backing == "file":
        if not same_file:
            return f"mapped from {vma.path or 'anonymous memory'}, not from the object's file"
        expected = piece.offset + (addr - piece.start) if piece.offset is not None else None
        actual = vma.offset + (addr - vma.start)
        if expected is not None and actual != expected:
            return f"file offset {actual:#x} where the segment calls for {expected:#x}"
    elif piece.backing == "anon" and not anonymous:
        return f"mapped from {vma.path}, where the segment's zero-fill should be anonymous"
    elif piece.backing == "any" and not (same_file or anonymous):
        return f"mapped from {vma.path}, which is neither the object's file nor zero-fill"
    return ""


# What a planned range must still be when it is sealed: (start, end, vma_flags,
# dev_major, dev_minor, inode, offset at start, name or None), vma_flags in
# PROCMAP_QUERY's bits (r 1, w 2, x 4, shared 8). The form syscalls.seal_verified takes.
_Expect = tuple[int, int, int, int, int, int, int, bytes | None]


def _vma_flags(perms: str, shared: bool) -> int:
    return (
        (1 if perms[0] == "r" else 0)
        | (2 if perms[1] == "w" else 0)
        | (4 if perms[2] == "x" else 0)
        | (8 if shared else 0)
    )


def _expect(vma: Vma, start: int, end: int, system: bool) -> _Expect:
    """The identity of ``[start, end)`` as ``vma`` (from smaps or maps) shows it."""
    major, _, minor = vma.dev.partition(":")
    return (
        start,
        end,
        _vma_flags(vma.perms, False),
        int(major or "0", 16),
        int(minor or "0", 16),
        vma.inode,
        vma.offset + (start - vma.start),
        os.fsencode(vma.path) if system else None,
    )


class _Plan:
    """One object's plan: ranges to seal (checked) and ranges skipped.

    ``expect[k]`` is what ``seal[k]`` must still be when it is sealed.
    """

    __slots__ = ("base", "expect", "name", "path", "seal", "skip")

    def __init__(self, path: str, name: str, base: int) -> None:
        self.path = path
        self.name = name
        self.base = base
        self.seal: list[SealedRange] = []
        self.expect: list[_Expect] = []
        self.skip: list[SkippedRange] = []


def _check(
    piece: _Piece, vmas: Sequence[Vma], starts: Sequence[int], ident: Vma | None, plan_: _Plan
) -> None:
    """Cross-check ``piece`` against smaps, VMA by VMA, into ``plan_``."""
    addr = piece.start
    while addr < piece.end:
        vma = _vma_at(vmas, starts, addr)
        if vma is None:
            i = bisect_right(starts, addr)
            stop = min(piece.end, vmas[i].start) if i < len(vmas) else piece.end
            plan_.skip.append(SkippedRange(addr, stop, piece.kind, "not mapped"))
            addr = stop
            continue
        stop = min(piece.end, vma.end)
        reason = _mismatch(piece, vma, addr, ident)
        if reason:
            plan_.skip.append(SkippedRange(addr, stop, piece.kind, reason))
        else:
            plan_.seal.append(SealedRange(addr, stop, piece.kind, vma.perms[:3], bool(vma.sealed)))
            plan_.expect.append(_expect(vma, addr, stop, piece.backing == "system"))
        addr = stop


def plan(
    objects: Sequence[LoadedObject],
    vmas: Sequence[Vma],
    level: str = "code",
    system: bool = False,
    page: int = 4096,
) -> tuple[ObjectReport, ...]:
    """What :func:`harden` would seal, per object, given the loader's objects
    (:func:`sealkit._os.syscalls.loaded_objects`) and a ``/proc/PID/smaps`` (or
    maps) snapshot. Pure: no system call, so it can be fed recorded or made-up
    data. ``sealed`` ranges are what would be sealed.
    """
    return tuple(_object_report(p) for p in _plan(objects, vmas, level, system, page))


def _plan(
    objects: Sequence[LoadedObject],
    vmas: Sequence[Vma],
    level: str,
    system: bool | None,
    page: int,
) -> list[_Plan]:
    """:func:`plan`'s work, as mutable plans for :func:`_apply`.
    ``system=None`` leaves system mappings out entirely (the hooks' sweeps).
    """
    vmas = sorted(vmas, key=lambda v: v.start)
    starts = [v.start for v in vmas]
    plans: list[_Plan] = []
    checked: list[tuple[_Plan, list[_Piece], Vma]] = []
    for obj in objects:
        planned = _plan_object(obj, vmas, starts, level, page)
        if planned is not None:
            plans.append(planned[0])
            if planned[2] is not None:
                checked.append((planned[0], planned[1], planned[2]))
    conflicts = _conflicts([(entry.path, chosen) for entry, chosen, _ in checked])
    for i, (entry, chosen, ident) in enumerate(checked):
        for piece in chosen:
            for part in _without(piece, conflicts.get(i, ()), entry):
                _check(part, vmas, starts, ident, entry)
    if system is not None:
        plans += _plan_system(vmas, starts, system)
    return plans


def _plan_object(
    obj: LoadedObject, vmas: Sequence[Vma], starts: Sequence[int], level: str, page: int
) -> tuple[_Plan, list[_Piece], Vma | None] | None:
    """One object's plan before the smaps check: the pieces ``level`` wants,
    and the VMA that fixes the object's identity (``None``: object skipped).
    ``None`` for an object with no segment or for the vDSO (a system mapping).
    """
    pieces, notes = _object_pieces(obj, page)
    if not pieces:
        return None
    first = next((p for p in pieces if p.backing == "file"), pieces[0])
    ident = _vma_at(vmas, starts, first.start)
    if ident is not None and ident.inode == 0 and ident.path.startswith("["):
        return None  # the vDSO: planned by name with the system mappings
    # The first segment fixes identity: the file (device, inode) mapped where
    # the loader put the object, at the offset its header names. Every other
    # range must then be that file at consistent offsets (_mismatch).
    why = ""
    if ident is None:
        why = "first segment not mapped"
    elif ident.inode == 0:
        why = "first segment not mapped from a file"
    elif first.offset is not None and ident.offset + (first.start - ident.start) != first.offset:
        actual = ident.offset + (first.start - ident.start)
        why = f"first segment maps file offset {actual:#x}, expected {first.offset:#x}"
    path = ident.path if ident is not None and ident.inode else (obj.name or "(main program)")
    entry = _Plan(path, obj.name, obj.addr)
    if why:
        reason = f"{why}: object ambiguous"
        entry.skip.append(SkippedRange(pieces[0].start, pieces[-1].end, first.kind, reason))
        return entry, [], None
    if level == "code":
        entry.skip.extend(notes)
    chosen: list[_Piece] = []
    for piece in pieces:
        if piece.perms is not None and "w" in piece.perms and "x" in piece.perms:
            reason = "writable and executable segment: never sealed"
            entry.skip.append(SkippedRange(piece.start, piece.end, piece.kind, reason))
        elif level == "all":
            chosen.append(piece)
        elif piece.kind in CODE_KINDS and piece.shared:
            reason = (
                f"page shared by a {piece.shared} and a {piece.kind} segment: "
                "its protection is ambiguous"
            )
            entry.skip.append(SkippedRange(piece.start, piece.end, piece.kind, reason))
        elif piece.kind in CODE_KINDS:
            chosen.append(piece)
    return entry, chosen, ident


def _conflicts(
    claims: Sequence[tuple[str, Sequence[_Piece]]],
) -> dict[int, list[tuple[int, int, str]]]:
    """Ranges two objects both claim (never expected: never guessed at), per
    claimant index, with the other's path. Gaps are weak claims: ignored.
    """
    spans = sorted(
        (p.start, p.end, i) for i, (_, pieces) in enumerate(claims) for p in pieces
        if p.kind != "gap"
    )  # fmt: skip
    found: dict[int, list[tuple[int, int, str]]] = {}
    active: list[tuple[int, int, int]] = []
    for start, end, index in spans:
        active = [a for a in active if a[1] > start]
        for _, other_end, other in active:
            if other != index:
                lo, hi = start, min(end, other_end)
                found.setdefault(index, []).append((lo, hi, claims[other][0]))
                found.setdefault(other, []).append((lo, hi, claims[index][0]))
        active.append((start, end, index))
    return found


def _without(
    piece: _Piece, conflicts: Iterable[tuple[int, int, str]], entry: _Plan
) -> list[_Piece]:
    """``piece`` minus the conflicting ranges, which go to ``entry.skip``."""
    parts = [piece]
    for lo, hi, other in conflicts:
        kept: list[_Piece] = []
        for part in parts:
            if part.end <= lo or part.start >= hi:
                kept.append(part)
                continue
            reason = f"also claimed by {other}"
            entry.skip.append(
                SkippedRange(max(part.start, lo), min(part.end, hi), part.kind, reason)
            )
            if part.start < lo:
                kept.append(_cut(part, part.start, lo))
            if part.end > hi:
                kept.append(_cut(part, hi, part.end))
        parts = kept
    return parts


def _plan_system(vmas: Sequence[Vma], starts: Sequence[int], system: bool) -> list[_Plan]:
    """``[vdso]``, ``[vvar]``, ``[vvar_vclock]``: whole VMAs, sealed only when asked."""
    plans = []
    for vma in vmas:
        if vma.path not in SYSTEM_MAPPINGS:
            continue
        entry = _Plan(vma.path, "", vma.start)
        plans.append(entry)
        if system:
            _check(
                _Piece(vma.start, vma.end, vma.path, None, None, "system"),
                vmas,
                starts,
                None,
                entry,
            )
            entry.seal = [r._replace(kind="system") for r in entry.seal]
            entry.skip = [r._replace(kind="system") for r in entry.skip]
        else:
            entry.skip.append(SkippedRange(vma.start, vma.end, "system", _SYSTEM_CAVEAT))
    return plans


# --- sealing --------------------------------------------------------------------------


def _merge_sealed(ranges: Iterable[SealedRange]) -> tuple[SealedRange, ...]:
    out: list[SealedRange] = []
    for r in sorted(ranges, key=lambda r: r.start):
        last = out[-1] if out else None
        if (
            last
            and last.end == r.start
            and (last.kind, last.perms, last.already_sealed) == (r.kind, r.perms, r.already_sealed)
        ):
            out[-1] = last._replace(end=r.end)
        else:
            out.append(r)
    return tuple(out)


def _merge_skipped(ranges: Iterable[SkippedRange]) -> tuple[SkippedRange, ...]:
    out: list[SkippedRange] = []
    for r in sorted(ranges, key=lambda r: (r.start, r.end)):
        last = out[-1] if out else None
        if last and last.end == r.start and (last.kind, last.reason) == (r.kind, r.reason):
            out[-1] = last._replace(end=r.end)
        else:
            out.append(r)
    return tuple(out)


_CHANGED: Final = "changed since planned"


def _changed(want: _Expect, found: Sequence[tuple[int, int, int, int, int, int, int, str]]) -> str:
    """Why the VMAs ``found`` over ``want``'s range (``procmap_vmas`` form:
    start, end, vma_flags, offset, dev_major, dev_minor, inode, name) are not
    what was planned, or ``""``. Mirrors ``verify`` in ``_fastsys.c``.
    """
    start, end, flags, major, minor, inode, offset, name = want
    addr = start
    for v_start, v_end, v_flags, v_offset, v_major, v_minor, v_inode, v_name in found:
        if v_end <= addr:
            continue
        if v_start > addr:
            break
        if v_flags & 2 and v_flags & 4:
            return "mapped writable and executable"
        if v_flags & 8:
            return "a shared mapping"
        if v_flags & 7 != flags:
            return "protection differs"
        if v_inode != inode or (inode and (v_major, v_minor) != (major, minor)):
            return "mapped from another file or anonymous memory"
        if inode and v_offset + (addr - v_start) != offset + (addr - start):
            return "file offset differs"
        if name is not None and os.fsencode(v_name) != name:
            return "a different kernel mapping"
        addr = v_end
        if addr >= end:
            return ""
    return "not mapped"


def _seal_checked(wants: Sequence[_Expect]) -> list[str]:
    """Re-check each planned range right before sealing it and seal it only if
    it is still exactly what was planned; ``""`` per range sealed, else why not.

    Another thread may have dlclosed a library and mapped something else at
    its address since the plan was made: that must never be sealed. Strongest
    first: in C under the loader's lock (no dlclose/dlopen can interleave
    between check and seal); else in Python with PROCMAP_QUERY, range by range
    (microseconds between check and seal); else (Linux 6.10, no
    PROCMAP_QUERY) against one fresh /proc/self/maps read.
    """
    out = [""] * len(wants)
    todo = list(range(len(wants)))
    fd = os.open("/proc/self/maps", os.O_RDONLY | os.O_CLOEXEC)
    try:
        results = syscalls.seal_verified(fd, wants)
        if results is not None:
            todo = []
            for k, (code, err) in enumerate(results):
                start, end = wants[k][0], wants[k][1]
                if code == syscalls.SEAL_QUERY_FAILED and err in (errno.ENOTTY, errno.EINVAL):
                    todo.append(k)  # no PROCMAP_QUERY here: nothing done, re-check below
                elif code == syscalls.SEAL_QUERY_FAILED:
                    out[k] = f"could not re-check before sealing: {os.strerror(err)}"
                elif code == syscalls.SEAL_MSEAL_FAILED:
                    out[k] = f"mseal failed: {kernel_error(err, 'mseal', start, end - start)}"
                elif code:
                    out[k] = f"{_CHANGED}: {syscalls.SEAL_VERIFIED_REASONS[code]}"
        if not todo:
            return out
        try:
            syscalls.procmap_vmas(fd, 0, 1)
        except KernelError:
            fd_ok = False
        else:
            fd_ok = True
        snapshot = None if fd_ok else [_as_query(v) for v in procfs.read_maps()]
        for k in todo:
            want = wants[k]
            start, end = want[0], want[1]
            if snapshot is None:
                found = syscalls.procmap_vmas(fd, start, end, names=want[7] is not None)
            else:
                found = snapshot
            why = _changed(want, found)
            if why:
                out[k] = f"{_CHANGED}: {why}"
                continue
            try:
                syscalls.mseal(start, end - start)
            except KernelError as exc:
                out[k] = f"mseal failed: {exc}"
    finally:
        os.close(fd)
    return out


def _as_query(vma: Vma) -> tuple[int, int, int, int, int, int, int, str]:
    """A maps/smaps VMA in ``procmap_vmas``' form."""
    major, _, minor = vma.dev.partition(":")
    flags = _vma_flags(vma.perms, vma.shared)
    return (vma.start, vma.end, flags, vma.offset, int(major or "0", 16),
            int(minor or "0", 16), vma.inode, vma.path)  # fmt: skip


def _apply(plans: list[_Plan]) -> None:
    """mseal every planned range not yet sealed, each re-checked right before
    (:func:`_seal_checked`); move what changed or failed to ``skip``.
    """
    todo = [
        (i, j) for i, p in enumerate(plans) for j, r in enumerate(p.seal) if not r.already_sealed
    ]
    if not todo:
        return
    outcomes = _seal_checked([plans[i].expect[j] for i, j in todo])
    failed = {(i, j): why for (i, j), why in zip(todo, outcomes, strict=True) if why}
    for (i, j), reason in sorted(failed.items(), reverse=True):
        r = plans[i].seal.pop(j)
        plans[i].expect.pop(j)
        plans[i].skip.append(SkippedRange(r.start, r.end, r.kind, reason))


def _object_report(p: _Plan) -> ObjectReport:
    return ObjectReport(p.path, p.name, p.base, _merge_sealed(p.seal), _merge_skipped(p.skip))


def _report(
    plans: list[_Plan],
    level: str,
    system: bool,
    imports: bool,
    dry_run: bool,
    trigger: str,
    page: int,
    started: float,
) -> HardenReport:
    objects = tuple(_object_report(p) for p in plans)
    return HardenReport(
        level, system, imports, dry_run, trigger, page, objects, time.perf_counter() - started
    )


# --- state shared by harden() and the import hooks ------------------------------------


class _State:
    """Process-wide: which objects were swept, and the hooks' settings."""

    def __init__(self) -> None:
        self.lock = _thread.RLock()
        self.busy = False
        self.seen: set[tuple[int, str]] = set()
        self.hook_level: str | None = None
        self.reports: list[HardenReport] = []


_STATE: Final = _State()


def _after_fork_in_child() -> None:
    # A thread of the parent may have held the lock mid-sweep when another
    # forked: in the child that thread is gone and the lock would never be
    # released, so the child's next extension import would hang.
    _STATE.lock = _thread.RLock()
    _STATE.busy = False


os.register_at_fork(after_in_child=_after_fork_in_child)


def _key(obj: LoadedObject) -> tuple[int, str]:
    return (obj.addr, obj.name)


def _page_size() -> int:
    return os.sysconf("SC_PAGE_SIZE")


def harden(
    level: str = "code", *, system: bool = False, imports: bool = False, dry_run: bool = False
) -> HardenReport:
    """Seal the loaded ELF objects of this process; return what was sealed.

    ``level``: ``"code"`` (text, read-only data, RELRO) or ``"all"`` (each
    object's whole range: also data, .bss and gaps). ``system``: also seal
    ``[vdso]``, ``[vvar]`` and ``[vvar_vclock]`` (breaks CRIU and rr).
    ``imports``: seal extension modules imported later, and libraries loaded
    through ``ctypes.CDLL``, as they load (see :func:`hook_reports`).
    ``dry_run``: plan and report, change nothing (no seal, no hook).

    Idempotent: ranges sealed before are reported as ``already_sealed``.
    **Irreversible**: sealed memory stays sealed until the process exits.

    Raises :class:`~sealkit.errors.ArgumentError` /
    :class:`~sealkit.errors.ArgumentTypeError` for bad arguments,
    :class:`~sealkit.errors.NotSupportedError` when the kernel lacks mseal and
    :class:`~sealkit.errors.SealingDeniedError` when a seccomp filter refuses
    it (both before anything is sealed; a dry run does not probe).
    """
    if not isinstance(level, str):
        raise ArgumentTypeError(f"level must be a str, not {type(level).__name__}")
    if level not in LEVELS:
        raise ArgumentError(f"level must be one of {', '.join(map(repr, LEVELS))}, not {level!r}")
    for flag_name, flag in (("system", system), ("imports", imports), ("dry_run", dry_run)):
        if not isinstance(flag, bool):
            raise ArgumentTypeError(f"{flag_name} must be a bool, not {type(flag).__name__}")
    started = time.perf_counter()
    if not dry_run:
        # mseal(0, 0, 0) is a no-op that fails exactly when sealing cannot
        # work: ENOSYS (kernel < 6.10, 32-bit) or EPERM (seccomp). Probe first so
        # a refusal never leaves the process half hardened.
        syscalls.mseal(0, 0, 0)
        if imports:
            _install_hooks(level)
    page = _page_size()
    with _STATE.lock:
        objects = syscalls.loaded_objects()
        plans = _plan(objects, procfs.read_smaps(counters=False), level, system, page)
        if not dry_run:
            _apply(plans)
            _STATE.seen.update(_key(o) for o in objects)
        return _report(plans, level, system, imports, dry_run, "harden()", page, started)


def hook_reports() -> list[HardenReport]:
    """The reports of the import hooks' sweeps so far (one per load that
    brought new objects), oldest first. Empty until ``harden(imports=True)``.
    """
    with _STATE.lock:
        return list(_STATE.reports)


def _after_load(trigger: str) -> None:
    """Seal the objects loaded since the last sweep. Never raises an
    ``Exception``: an import must behave exactly as without the hook, so a
    failure to seal becomes a ``RuntimeWarning`` (and a skipped range).
    """
    level = _STATE.hook_level
    if level is None:
        return
    started = time.perf_counter()
    try:
        with _STATE.lock:
            if _STATE.busy:  # a load during our own sweep: the next event covers it
                return
            _STATE.busy = True
            try:
                new = [o for o in syscalls.loaded_objects() if _key(o) not in _STATE.seen]
                if not new:
                    return
                page = _page_size()
                # /proc/self/maps, not smaps: smaps walks the page tables of the
                # whole process on every read (its cost grows with RSS, and this
                # runs on every extension import); maps shows the same layout,
                # perms, files and offsets. What only smaps has, the seal bit,
                # a just-loaded object cannot have; re-sealing would be a no-op.
                plans = _plan(new, procfs.read_maps(), level, None, page)
                _apply(plans)
                _STATE.seen.update(_key(o) for o in new)
                report = _report(plans, level, False, True, False, trigger, page, started)
                _STATE.reports.append(report)
            finally:
                _STATE.busy = False
    except Exception as exc:  # see the docstring: never fail an import
        import warnings  # noqa: PLC0415

        warnings.warn(
            f"sealkit: could not seal after {trigger}: {exc}", RuntimeWarning, stacklevel=3
        )


def _install_hooks(level: str) -> None:
    """Wrap the two doors through which Python code loads ELF objects.

    * ``ExtensionFileLoader.create_module``, where ``_imp.create_dynamic``
      dlopens an extension module (and its dependencies): the class is
      wrapped in place, so specs, loaders, ``module.__loader__``, errors and
      ``importlib.reload`` are exactly as before; the sweep runs after the
      dlopen (relocation done, RELRO read-only) and before ``exec_module``.
    * ``ctypes.CDLL.__init__`` (also behind ``PyDLL`` and ``ctypes.cdll``),
      which dlopens the library.

    Objects loaded behind Python's back (a C library calling dlopen, glibc's
    NSS or iconv modules) are sealed at the next such event.
    """
    with _STATE.lock:
        if _STATE.hook_level is not None:
            if level == "all":
                _STATE.hook_level = "all"
            return
        _STATE.hook_level = level
    import ctypes  # noqa: PLC0415 - already loaded by _os.syscalls
    from importlib.machinery import ExtensionFileLoader  # noqa: PLC0415

    create_module = ExtensionFileLoader.create_module

    @functools.wraps(create_module)
    def sealing_create_module(self: ExtensionFileLoader, spec: Any) -> Any:
        try:
            return create_module(self, spec)
        finally:
            _after_load(f"import {spec.name}")

    init = ctypes.CDLL.__init__

    @functools.wraps(init)
    def sealing_init(self: Any, name: Any, *args: Any, **kwargs: Any) -> None:
        try:
            init(self, name, *args, **kwargs)
        finally:
            _after_load(f"ctypes {name}")

    setattr(ExtensionFileLoader, "create_module", sealing_create_module)  # noqa: B010
    setattr(ctypes.CDLL, "__init__", sealing_init)  # noqa: B010

"""Planning: which ranges of each loaded object to seal, checked against /proc.

Pure: computed from the loader's program headers
(:func:`sealkit._os.syscalls.loaded_objects`) and a ``/proc/self/smaps`` (or
maps) snapshot, without a system call. A range is planned only where /proc
shows exactly the object's mapping with the protection its segment calls
for; everything else is skipped with the reason. A plan also carries, per
range, what it must still be when it is sealed (:data:`Expect`), for
:mod:`.apply` to check again at that moment.
"""

from __future__ import annotations

import os
import time
from bisect import bisect_right
from collections.abc import Callable, Iterable, Sequence
from typing import TYPE_CHECKING, Final, NamedTuple

from ..._os import syscalls
from ..._os.syscalls import PF_W, PF_X, PT_GNU_RELRO, PT_LOAD, LoadedObject
from .report import HardenReport, ObjectReport, SealedRange, SkippedRange

if TYPE_CHECKING:
    from ..._os.procfs import Vma

__all__ = ["CODE_KINDS", "LEVELS", "SYSTEM_MAPPINGS", "plan"]

LEVELS: Final = ("code", "all")
"""Accepted ``level`` values of :func:`harden`."""


CODE_KINDS: Final = frozenset({"text", "rodata", "relro"})
"""The kinds ``level="code"`` seals."""

SYSTEM_MAPPINGS: Final = ("[vdso]", "[vvar]", "[vvar_vclock]")
"""Kernel-provided mappings sealed only with ``system=True`` (what
``CONFIG_MSEAL_SYSTEM_MAPPINGS`` seals on x86-64: security/Kconfig and
arch/x86/entry/vdso/vma.c, Linux 6.15+)."""

_SYSTEM_CAVEAT: Final = (
    "system mapping: sealed only with system=True (breaks CRIU, rr, gVisor and "
    "anything that moves the vDSO)"
)


class _Piece(NamedTuple):
    """A page range of an object and what /proc must show there.

    ``perms``: the expected ``rwx`` letters (``None``: any, but never w+x);
    ``offset``: the expected file offset at ``start`` (``None``: not checked);
    ``backing``: ``file`` (this object's file), ``anon`` (zero-fill),
    ``any`` (this object's file or anonymous: pages two segments share),
    ``hole`` (a hole between segments: only this object's file fills it),
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

    # Holes between segments. glibc's _dl_map_segments maps a library's whole
    # span from its file and mprotects the holes PROT_NONE, so its holes are
    # its file ("hole" backing: that file only). The kernel maps the main
    # program segment by segment (binfmt_elf elf_map() unmaps the rest of the
    # total mapping), so the main program's holes are free address space:
    # whatever is mapped there (an anonymous PROT_NONE reservation, say)
    # belongs to someone else and is never sealed as the object's.
    with_gaps: list[_Piece] = []
    for piece in resolved:
        if with_gaps and piece.start > with_gaps[-1].end:
            with_gaps.append(_Piece(with_gaps[-1].end, piece.start, "gap", "---", None, "hole"))
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
    elif piece.backing == "hole" and not same_file:
        return (
            f"a hole between the object's segments, mapped from {vma.path or 'anonymous memory'}:"
            " the loader fills holes from the object's own file, so this belongs to someone else"
        )
    elif piece.backing == "any" and not (same_file or anonymous):
        return f"mapped from {vma.path}, which is neither the object's file nor zero-fill"
    return ""


# What a planned range must still be when it is sealed: (start, end, vma_flags,
# dev_major, dev_minor, inode, offset at start, name or None), vma_flags in
# PROCMAP_QUERY's bits (r 1, w 2, x 4, shared 8). The form syscalls.seal_verified takes.
Expect = tuple[int, int, int, int, int, int, int, bytes | None]


def vma_flags(perms: str, shared: bool) -> int:
    return (
        (1 if perms[0] == "r" else 0)
        | (2 if perms[1] == "w" else 0)
        | (4 if perms[2] == "x" else 0)
        | (8 if shared else 0)
    )


def _expect(vma: Vma, start: int, end: int, system: bool) -> Expect:
    """The identity of ``[start, end)`` as ``vma`` (from smaps or maps) shows it."""
    major, _, minor = vma.dev.partition(":")
    return (
        start,
        end,
        vma_flags(vma.perms, False),
        int(major or "0", 16),
        int(minor or "0", 16),
        vma.inode,
        vma.offset + (start - vma.start),
        os.fsencode(vma.path) if system else None,
    )


class Plan:
    """One object's plan: ranges to seal (checked) and ranges skipped.

    ``expect[k]`` is what ``seal[k]`` must still be when it is sealed.
    """

    __slots__ = ("base", "expect", "name", "path", "seal", "skip")

    def __init__(self, path: str, name: str, base: int) -> None:
        self.path = path
        self.name = name
        self.base = base
        self.seal: list[SealedRange] = []
        self.expect: list[Expect] = []
        self.skip: list[SkippedRange] = []


def _check(
    piece: _Piece, vmas: Sequence[Vma], starts: Sequence[int], ident: Vma | None, plan_: Plan
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
    return tuple(_object_report(p) for p in build_plans(objects, vmas, level, system, page))


def build_plans(
    objects: Sequence[LoadedObject],
    vmas: Sequence[Vma],
    level: str,
    system: bool | None,
    page: int,
) -> list[Plan]:
    """:func:`plan`'s work, as mutable plans for :func:`apply_plans`.
    ``system=None`` leaves system mappings out entirely (the hooks' sweeps).
    """
    vmas = sorted(vmas, key=lambda v: v.start)
    starts = [v.start for v in vmas]
    plans: list[Plan] = []
    checked: list[tuple[Plan, list[_Piece], Vma]] = []
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
) -> tuple[Plan, list[_Piece], Vma | None] | None:
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
    entry = Plan(path, obj.name, obj.addr)
    if not why and obj.textrel:
        why = (
            "text relocations (DT_TEXTREL): the loader makes this object's text "
            "writable to relocate it; never sealed"
        )
        entry.skip.append(SkippedRange(pieces[0].start, pieces[-1].end, first.kind, why))
        return entry, [], None
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


def _without(piece: _Piece, conflicts: Iterable[tuple[int, int, str]], entry: Plan) -> list[_Piece]:
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


def _plan_system(vmas: Sequence[Vma], starts: Sequence[int], system: bool) -> list[Plan]:
    """``[vdso]``, ``[vvar]``, ``[vvar_vclock]``: whole VMAs, sealed only when asked."""
    plans = []
    for vma in vmas:
        if vma.path not in SYSTEM_MAPPINGS:
            continue
        entry = Plan(vma.path, "", vma.start)
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


def _object_report(p: Plan) -> ObjectReport:
    return ObjectReport(p.path, p.name, p.base, _merge_sealed(p.seal), _merge_skipped(p.skip))


def build_report(
    plans: list[Plan],
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

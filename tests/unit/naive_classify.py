"""The audit's classification as it was first written: simple and quadratic.

Kept as the reference that :func:`sealkit.host.classify.classify` (which
remembers what it learns, to stay O(n log n)) must agree with on every
layout (tests/unit/test_audit_complexity.py). Walks back and forth over
the mappings for every mapping, exactly as the rules in
``sealkit.host.classify``'s docstring read.
"""

# ruff: noqa

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from sealkit._os.procfs import Vma
from sealkit.host.classify import SYSTEM_MAPPINGS, _SHM_PATHS, _down, _up

FileLayout = Any


def _is_file(vma: Vma) -> bool:
    return vma.inode != 0 and not vma.path.startswith("[")


def _object_bias(vmas: Sequence[Vma], i: int, layout: Any) -> int | None:
    """The load bias of the ELF object that mapping ``i`` belongs to, or
    ``None`` when it does not sit inside a placement of that object.

    The loader maps the first ``PT_LOAD`` first, at the object's lowest
    address, from file offset ``p_offset`` rounded down; the nearest such
    mapping of the same file at or below ``i`` fixes the bias, and mapping
    ``i`` must fall inside the object's span (its ``PT_LOAD`` s) at that bias.
    """
    if not layout.loads:
        return None
    first = layout.loads[0]
    key = (vmas[i].dev, vmas[i].inode)
    for j in range(i, -1, -1):
        v = vmas[j]
        if (v.dev, v.inode) == key and v.offset == _down(first.offset):
            bias = v.start - _down(first.vaddr)
            hi = _up(bias + max(s.vaddr + s.memsz for s in layout.loads))
            if _placed(vmas, j, key, bias, hi, layout):
                return bias if vmas[i].start < hi else None
    return None


def _placed(
    vmas: Sequence[Vma], j: int, key: tuple[str, int], bias: int, hi: int, layout: Any
) -> bool:
    """Whether mapping ``j`` starts a placement of the object by the loader:
    another of its ``PT_LOAD`` s is mapped from the same file where the bias
    puts it. The file mmapped as data (``mmap(fd, offset 0)``, a program
    reading its own ``/proc/self/exe``) has no such neighbour."""
    others = {(_down(bias + s.vaddr), _down(s.offset)) for s in layout.loads[1:]}
    if not others:
        return True  # a single PT_LOAD: nothing to tell them apart
    k = j + 1
    while k < len(vmas) and vmas[k].start < hi:
        v = vmas[k]
        if (v.dev, v.inode) == key and (v.start, v.offset) in others:
            return True
        k += 1
    return False


def naive_classify(
    vmas: Sequence[Vma],
    layout_of: Callable[[Vma], FileLayout] | None = None,
    indices: Sequence[int] | None = None,
) -> list[str]:
    """The kind of every mapping (or of those at ``indices``)."""
    wanted = range(len(vmas)) if indices is None else list(indices)
    cache: dict[int, FileLayout] = {}

    def layout(j: int) -> FileLayout:
        if j not in cache:
            v = vmas[j]
            cache[j] = layout_of(v) if (layout_of is not None and _is_file(v)) else "unknown"
        return cache[j]

    exec_files: set[tuple[str, int]] | None = None

    def executable_files() -> set[tuple[str, int]]:
        nonlocal exec_files
        if exec_files is None:
            exec_files = {(v.dev, v.inode) for v in vmas if _is_file(v) and v.executable}
        return exec_files

    return [_kind(vmas, i, layout, executable_files) for i in wanted]


def _kind(
    vmas: Sequence[Vma],
    i: int,
    layout_at: Callable[[int], FileLayout],
    executable_files: Callable[[], set[tuple[str, int]]],
) -> str:
    vma = vmas[i]
    path = vma.path
    if path in SYSTEM_MAPPINGS:
        return "system"
    if path == "[heap]":
        return "heap"
    if path.startswith("[stack") or (vma.vmflags is not None and "gd" in vma.vmflags):
        # gd (VM_GROWSDOWN) marks the main stack even where mprotect or mseal
        # split off a piece that lost the [stack] name
        return "stack"
    if vma.shared:
        return "shm" if path.startswith(_SHM_PATHS) or not _is_file(vma) else "file"
    if vma.perms.startswith("---"):
        return "guard"
    if _is_file(vma):
        return _file_kind(vmas, i, layout_at(i), executable_files)
    return _anon_kind(vmas, i, layout_at)


def _file_kind(
    vmas: Sequence[Vma],
    i: int,
    layout: FileLayout,
    executable_files: Callable[[], set[tuple[str, int]]],
) -> str:
    vma = vmas[i]
    if layout == "not-elf":
        return "file"
    bias = None if isinstance(layout, str) else _object_bias(vmas, i, layout)
    if bias is None and not isinstance(layout, str):
        return "file"  # an ELF file, but not placed by the loader here: plain data
    if bias is not None:
        if not any(
            _down(bias + s.vaddr) <= vma.start < _up(bias + s.vaddr + s.memsz) for s in layout.loads
        ):
            return "file"  # the file mapped outside its object: plain data
        if vma.executable:
            return "text"
        if vma.writable:
            return "data"
        relro = layout.relro
        # ld.so's _dl_protect_relro: start and end both rounded down.
        if (
            relro is not None
            and _down(bias + relro.vaddr) <= vma.start
            and vma.end <= _down(bias + relro.vaddr + relro.memsz)
        ):
            return "relro"
        return "rodata"
    # Program headers unknown: the heuristic.
    if vma.executable:
        return "text"
    if vma.writable:
        return "data"
    nxt = vmas[i + 1] if i + 1 < len(vmas) else None
    if (
        nxt is not None
        and nxt.start == vma.end
        and (nxt.dev, nxt.inode) == (vma.dev, vma.inode)
        and nxt.writable
    ):
        return "relro"
    return "rodata" if (vma.dev, vma.inode) in executable_files() else "file"


def _anon_kind(vmas: Sequence[Vma], i: int, layout_at: Callable[[int], FileLayout]) -> str:
    """``"data"`` for an ELF object's ``.bss``, else ``"anon"``.

    The loader maps ``.bss`` as anonymous memory right after the last file
    page of the writable ``PT_LOAD`` (elf/dl-map-segments.h): walk back over
    contiguous anonymous pieces (mprotect or mseal may have split it) to the
    file mapping before them.
    """
    vma = vmas[i]
    j = i - 1
    while (
        j >= 0
        and vmas[j].end == vmas[j + 1].start
        and not _is_file(vmas[j])
        and not vmas[j].path
        and not vmas[j].shared
    ):
        j -= 1
    if j < 0 or vmas[j].end != vmas[j + 1].start or not _is_file(vmas[j]) or vmas[j].shared:
        return "anon"
    layout = layout_at(j)
    if layout == "not-elf":
        return "anon"
    if isinstance(layout, str):
        # Unknown program headers: .bss directly follows a writable file
        # mapping, in one piece or split into several by mprotect or mseal.
        return "data" if vmas[j].writable else "anon"
    bias = _object_bias(vmas, j, layout)
    if bias is None:
        return "anon"
    for seg in layout.loads:
        if seg.memsz > seg.filesz and seg.flags & 2:  # PF_W
            lo = _up(bias + seg.vaddr + seg.filesz)
            hi = _up(bias + seg.vaddr + seg.memsz)
            if lo <= vma.start and vma.end <= hi:
                return "data"
    return "anon"

"""The attacker's alphabet: every call of the op language, with arguments
drawn from a small finite set derived from the starting layout.

Nothing here knows what the analyzer is expected to find. The arguments
come from the layout alone:

* **points**: every boundary of a run or hole in the arena window, plus the
  middle page of every run longer than one page (so every VMA can be split);
* **ranges**: ``[a, b)`` between consecutive points, spanning one or two
  segments (so a call can cover a region, part of it, or straddle a border);
* **protections**: ``---``, ``r--``, ``rw-``, ``r-x``, ``rwx`` (every
  combination x86 can express);
* **mmap kinds**: anonymous private/shared and, for each file the scenario
  maps, private/shared at each page offset it is mapped at, from a descriptor
  with the same access mode as the scenario's (an attacker cannot open a
  read-only binary for writing); ``MAP_FIXED`` and ``MAP_FIXED_NOREPLACE``
  (plus ``MAP_SEALABLE`` variants where the design has it);
* **mremap**: every form (shrink, grow in place, grow with ``MAYMOVE``,
  ``MAYMOVE|FIXED`` move to each run boundary, ``DONTUNMAP`` with and without
  a target, duplication with ``old_len = 0`` to each run boundary);
* **madvise** and **process_madvise**: every advice :class:`~sealkit.flags.Madv`
  lists, on every range;
* **seal calls**: the design's own, with each seal type and all of them;
* **mlock** (plain and ``onfault``), **munlock**, **write** (tag ``z``, so an
  attacker's store is told apart from the scenario's data), **brk** to each
  page of the heap window.

**Attacker profiles** (:func:`parse_attacker`) add the calls sealing does
not cover, each only for an attacker with the capability it names
(:func:`sealkit.ops.attacker_of`): ``procmem`` adds ``pwrite_mem`` (a forced
write through ``/proc/PID/mem``) and ``vm_writev`` (``process_vm_writev``) on
every range, ``ptrace`` adds ``poke`` (``PTRACE_POKEDATA``) on every range,
``file-write`` adds, for each file the scenario maps, ``file_pwrite`` and
``punch`` of each page it maps and ``ftruncate`` to each page boundary up to
its end (the attacker's own descriptor: write access to the file, not the
victim's descriptor). The default, ``syscalls``, is the alphabet above and
nothing more. ``msync``, ``mincore`` and ``mlockall``/``munlockall`` are in
no profile: none of them changes a mapping, a protection or page data.

``fork`` is left out unless asked for: the properties are about the address
space that sealed. After ``fork`` the rest of a trace acts on the child, a
new address space the kernel builds by its ``dup_mmap`` rules (DONTFORK
mappings are not copied, WIPEONFORK ones are zeroed: docs/reference/linux.md rule 14), not
on the memory the victim sealed. ``include_fork=True`` adds it, and then the
properties are judged in whatever process the trace ends in.

Calls the policy's world lacks (the model answers ``-ENOSYS``) are dropped
by :func:`build_alphabet` when given a probe.
"""

from __future__ import annotations

import errno
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Final

from ..errors import ArgumentError
from ..flags import PAGE_SIZE, Madv, MapFlag, MremapFlag, Prot
from ..layout import Layout
from ..ops import (
    ATTACKERS,
    MODEL_BASES,
    Brk,
    FilePwrite,
    Fork,
    Ftruncate,
    Madvise,
    Mlock,
    Mmap,
    Mprotect,
    Mremap,
    Munlock,
    Munmap,
    Op,
    PkeyMprotect,
    Poke,
    ProcessMadvise,
    Punch,
    PwriteMem,
    VmWritev,
    Write,
    iter_ranges,
)
from .properties import Page, Property
from .scenario import PolicySpec

__all__ = [
    "DEFAULT_ATTACKER",
    "EFFECTS",
    "PROTS",
    "Alphabet",
    "alphabet_of",
    "build_alphabet",
    "op_pages",
    "parse_attacker",
    "points_of",
    "ranges_of",
]

PROTS: Final = (
    Prot.NONE,
    Prot.READ,
    Prot.READ | Prot.WRITE,
    Prot.READ | Prot.EXEC,
    Prot.READ | Prot.WRITE | Prot.EXEC,
)
ATTACK_TAG: Final = "z"

_ALL: Final = frozenset(Property)
EFFECTS: Final[dict[str, frozenset[Property]]] = {
    # What each call can change of a page it names, by the kernel's semantics:
    # a mapping (object, offset, mapped at all), a protection, the data.
    "mmap": _ALL,  # a new mapping replaces whatever was there
    "munmap": _ALL,
    "mremap": _ALL,  # moves mappings, with their protection and data
    "brk": _ALL,
    "fork": _ALL,  # the rest runs in a child built by dup_mmap()
    "mprotect": frozenset({Property.PERMISSION}),  # mprotect_fixup(): vm_flags only
    "pkey_mprotect": frozenset({Property.PERMISSION}),
    "madvise": frozenset({Property.CONTENT}),  # discards and guards pages; VMA flags
    "process_madvise": frozenset({Property.CONTENT}),
    "write": frozenset({Property.CONTENT}),
    "mlock": frozenset(),  # mlock_fixup(): VM_LOCKED, pages populated, data unchanged
    "munlock": frozenset(),
    "mseal": frozenset(),  # a seal only adds refusals
    "mseal_v1": frozenset(),
    "mseal_v3": frozenset(),
    "mimmutable": frozenset(),
    "mseal_split": frozenset(),
    # The calls sealing does not cover: they store data (or make the file
    # shorter, or zero it), never change a VMA or its protection.
    "pwrite_mem": frozenset({Property.CONTENT}),
    "vm_writev": frozenset({Property.CONTENT}),
    "poke": frozenset({Property.CONTENT}),
    "file_pwrite": frozenset({Property.CONTENT}),
    "ftruncate": frozenset({Property.CONTENT}),  # pages past the end raise SIGBUS
    "punch": frozenset({Property.CONTENT}),
}
"""The call frames: which properties a call can break at all (tested against
the model in tests/unit/test_analysis_frames.py). The search uses them only
to skip, on its last level, calls that cannot break a property still open.

The calls that can break mapping or permission integrity but not content
integrity alone (mprotect, pkey_mprotect) and those whose mapping effects
are judged without content (mmap, munmap, mremap, brk) do not *read* page
data either: what they do to mappings and protections is the same whatever
the pages hold (also tested), so when only mapping and permission integrity
are still open the last level judges them on the pages they name, without
content tokens."""

DEFAULT_ATTACKER: Final = frozenset({"syscalls"})
"""The attacker of the debate: the process's own memory-management calls."""


def parse_attacker(values: Sequence[str] | None) -> frozenset[str]:
    """The capabilities named by ``--attacker`` values (:data:`DEFAULT_ATTACKER`
    for none).

    Each value is a comma-separated list of ``syscalls`` and ``+CAPABILITY``
    (``+procmem``, ``+ptrace``, ``+file-write``); values add up, and
    ``syscalls`` is always included (every profile keeps the process's own
    calls). Anything else raises :class:`~sealkit.errors.ArgumentError` with
    a one-line message.
    """
    extra = [a for a in ATTACKERS if a != "syscalls"]
    known = ", ".join(["syscalls", *(f"+{a}" for a in extra)])
    out = set(DEFAULT_ATTACKER)
    for value in values or ():
        for raw in value.split(","):
            item = raw.strip()
            if item == "syscalls":
                continue
            if item.startswith("+") and item[1:] in extra:
                out.add(item[1:])
                continue
            hint = f" (did you mean +{item}?)" if item in extra else ""
            raise ArgumentError(f"unknown attacker {item!r}{hint}; known: {known}")
    return frozenset(out)


_ARENA: Final = MODEL_BASES.arena
_HEAP: Final = MODEL_BASES.heap


def _addr(page: int) -> int:
    return _ARENA + page * PAGE_SIZE


def points_of(layout: Layout) -> list[int]:
    """Run and hole boundaries of ``layout`` (window ends included) plus the
    middle page of every run of two pages or more."""
    points = {layout.lo, layout.hi}
    for run in layout.runs:
        points.update((run.start, run.end))
        if run.pages >= 2:
            points.add(run.start + run.pages // 2)
    return sorted(p for p in points if layout.lo <= p <= layout.hi)


def ranges_of(points: list[int]) -> list[tuple[int, int]]:
    """``[a, b)`` over one or two consecutive segments, by start then length."""
    out = []
    for i, a in enumerate(points):
        for j in (i + 1, i + 2):
            if j < len(points):
                out.append((a, points[j]))
    return sorted(out)


def _boundaries(layout: Layout) -> list[int]:
    found = {layout.lo, layout.hi}
    for run in layout.runs:
        found.update((run.start, run.end))
    return sorted(found)


def op_pages(op: Op, heap_pages: int = 2) -> frozenset[Page] | None:
    """The pages ``op`` names (``None``: the whole address space, e.g. fork).

    ``brk`` names the whole heap window ``[0, heap_pages)``, whatever its
    argument: what it changes depends on where the break is.
    """
    if isinstance(op, Brk):
        return frozenset(("h", p) for p in range(heap_pages))
    ranges = list(iter_ranges(op))
    if not ranges:
        return None  # fork, the file calls, mlockall: not confined to pages
    pages: set[Page] = set()
    for addr, length in ranges:
        zoned = MODEL_BASES.zone_of(addr)
        if zoned is None:
            continue
        zone, off = zoned
        first = off // PAGE_SIZE
        last = -(-(off + max(length, 1)) // PAGE_SIZE)
        pages.update((zone, p) for p in range(first, last))
    return frozenset(pages)


@dataclass(frozen=True)
class Alphabet:
    """The calls, in op-language order, with what each one names.

    ``windows[i]`` is the set of pages call ``i`` names, or ``None`` for a
    call that acts on the whole address space. ``groups[g]`` lists the calls
    naming the same pages ``group_named[g]``; ``group_windows[g]`` is that set
    widened by one page on each side (so a merge with a neighbour is
    visible). ``group_of[i]`` is call ``i``'s group (``-1`` for ``None``).
    """

    ops: tuple[Op, ...]
    windows: tuple[frozenset[Page] | None, ...]
    group_of: tuple[int, ...]
    groups: tuple[tuple[int, ...], ...]
    group_named: tuple[frozenset[Page], ...]
    group_windows: tuple[frozenset[Page], ...]
    dropped: tuple[str, ...] = field(default=())

    def __len__(self) -> int:
        return len(self.ops)

    def counts(self) -> dict[str, int]:
        """Number of calls per op-language name, in first-appearance order."""
        return dict(Counter(op.NAME for op in self.ops))


def _widen(pages: frozenset[Page]) -> frozenset[Page]:
    out: set[Page] = set()
    for zone, p in pages:
        out.update(((zone, p - 1), (zone, p), (zone, p + 1)))
    return frozenset(out)


def candidate_ops(
    start: Layout,
    spec: PolicySpec,
    files: dict[str, bool],
    file_offsets: dict[str, list[int]],
    heap_pages: int,
    include_fork: bool = False,
    attacker: frozenset[str] = DEFAULT_ATTACKER,
) -> list[Op]:
    """Every call the alphabet may hold, before dropping the policy's missing calls."""
    points = points_of(start)
    ranges = ranges_of(points)
    targets = _boundaries(start)
    hi = start.hi
    ops: list[Op] = []

    # mmap: anonymous and file-backed, private and shared, FIXED and FIXED_NOREPLACE.
    kinds: list[tuple[MapFlag, str | None, int, bool]] = [
        (MapFlag.PRIVATE | MapFlag.ANONYMOUS, None, 0, False),
        (MapFlag.SHARED | MapFlag.ANONYMOUS, None, 0, False),
    ]
    for name, ro in files.items():
        for off in file_offsets.get(name, [0]):
            kinds.append((MapFlag.PRIVATE, name, off * PAGE_SIZE, ro))
            kinds.append((MapFlag.SHARED, name, off * PAGE_SIZE, ro))
    placements = [MapFlag.FIXED, MapFlag.FIXED_NOREPLACE]
    if spec.map_flags:
        placements += [
            MapFlag(p | spec.map_flags) for p in (MapFlag.FIXED, MapFlag.FIXED_NOREPLACE)
        ]
    for a, b in ranges:
        for flags, file, offset, ro in kinds:
            for place in placements:
                for prot in PROTS:
                    ops.append(
                        Mmap(
                            _addr(a),
                            (b - a) * PAGE_SIZE,
                            prot,
                            MapFlag(flags | place),
                            file,
                            offset,
                            ro,
                        )
                    )
    ops += [Munmap(_addr(a), (b - a) * PAGE_SIZE) for a, b in ranges]
    ops += [Mprotect(_addr(a), (b - a) * PAGE_SIZE, prot) for a, b in ranges for prot in PROTS]
    ops += [
        PkeyMprotect(_addr(a), (b - a) * PAGE_SIZE, prot, -1) for a, b in ranges for prot in PROTS
    ]

    # mremap, every form.
    moves = MremapFlag.MAYMOVE | MremapFlag.FIXED
    for a, b in ranges:
        size = (b - a) * PAGE_SIZE
        if b - a >= 2:
            ops.append(Mremap(_addr(a), size, size - PAGE_SIZE))
        if b + 1 <= hi:
            ops.append(Mremap(_addr(a), size, size + PAGE_SIZE))
            ops.append(Mremap(_addr(a), size, size + PAGE_SIZE, MremapFlag.MAYMOVE))
        for t in targets:
            if t != a and t + (b - a) <= hi:
                ops.append(Mremap(_addr(a), size, size, moves, _addr(t)))
        ops.append(Mremap(_addr(a), size, size, MremapFlag.MAYMOVE | MremapFlag.DONTUNMAP))
        for t in targets:
            if t != a and t + (b - a) <= hi:
                ops.append(Mremap(_addr(a), size, size, moves | MremapFlag.DONTUNMAP, _addr(t)))
    for a in points[:-1]:
        ops.append(Mremap(_addr(a), 0, PAGE_SIZE, MremapFlag.MAYMOVE))
        for t in targets:
            if t != a and t + 1 <= hi:
                ops.append(Mremap(_addr(a), 0, PAGE_SIZE, moves, _addr(t)))

    advices = list(Madv)
    ops += [Madvise(_addr(a), (b - a) * PAGE_SIZE, adv) for a, b in ranges for adv in advices]
    ops += [
        ProcessMadvise(adv, ((_addr(a), (b - a) * PAGE_SIZE),))
        for a, b in ranges
        for adv in advices
    ]
    for a, b in ranges:
        ops += spec.seal_variants(_addr(a), (b - a) * PAGE_SIZE)
    ops += [Brk(_HEAP + p * PAGE_SIZE) for p in range(heap_pages + 1)]
    ops += [
        Mlock(_addr(a), (b - a) * PAGE_SIZE, onfault)
        for a, b in ranges
        for onfault in (False, True)
    ]
    ops += [Munlock(_addr(a), (b - a) * PAGE_SIZE) for a, b in ranges]
    ops += [Write(_addr(a), (b - a) * PAGE_SIZE, ATTACK_TAG) for a, b in ranges]
    if "procmem" in attacker:
        ops += [PwriteMem(_addr(a), (b - a) * PAGE_SIZE, ATTACK_TAG) for a, b in ranges]
        ops += [VmWritev(_addr(a), (b - a) * PAGE_SIZE, ATTACK_TAG) for a, b in ranges]
    if "ptrace" in attacker:
        ops += [Poke(_addr(a), (b - a) * PAGE_SIZE, ATTACK_TAG) for a, b in ranges]
    if "file-write" in attacker:
        for name in files:
            end = _file_end(start, name)
            ops += [FilePwrite(name, p * PAGE_SIZE, PAGE_SIZE, ATTACK_TAG) for p in range(end)]
            ops += [Punch(name, p * PAGE_SIZE, PAGE_SIZE) for p in range(end)]
            ops += [Ftruncate(name, p * PAGE_SIZE) for p in range(end + 1)]
    if include_fork:
        ops.append(Fork())
    return _order(ops)


def _file_end(layout: Layout, name: str) -> int:
    """One past the last page of file ``name`` that ``layout`` maps (at least 1)."""
    end = 1
    for run in layout.runs:
        if run.backing == f"file:{name}" and run.pgoff is not None:
            end = max(end, run.pgoff + run.pages)
    return end


_ORDER: Final = (
    "mmap", "munmap", "mprotect", "pkey_mprotect", "mremap", "madvise", "process_madvise",
    "mseal", "mseal_v1", "mseal_v3", "mimmutable", "mseal_split", "brk", "mlock", "munlock",
    "write", "pwrite_mem", "vm_writev", "poke", "file_pwrite", "punch", "ftruncate", "fork",
)  # fmt: skip


def _order(ops: Iterable[Op]) -> list[Op]:
    seen: set[Op] = set()
    unique = []
    for op in ops:
        if op not in seen:
            seen.add(op)
            unique.append(op)
    rank = {name: i for i, name in enumerate(_ORDER)}
    return sorted(unique, key=lambda op: rank[op.NAME])  # stable: keeps range order within a call


def build_alphabet(
    start: Layout,
    spec: PolicySpec,
    files: dict[str, bool],
    file_offsets: dict[str, list[int]] | None = None,
    heap_pages: int = 2,
    include_fork: bool = False,
    probe: Callable[[Op], int] | None = None,
    attacker: frozenset[str] = DEFAULT_ATTACKER,
) -> Alphabet:
    """The alphabet for a search from ``start`` under ``spec``.

    ``probe(op)`` runs ``op`` on a scratch copy of the start state; a call
    type whose first candidate answers ``-ENOSYS`` is not in the policy's
    world and is dropped (listed in ``Alphabet.dropped``). ``attacker`` is
    the set of capabilities (:func:`parse_attacker`) whose calls it holds.
    """
    if file_offsets is None:
        file_offsets = {}
        for run in start.runs:
            if run.backing.startswith("file:") and run.pgoff is not None:
                file_offsets.setdefault(run.backing[5:], []).append(run.pgoff)
        file_offsets = {k: sorted(set(v)) for k, v in file_offsets.items()}
    ops = candidate_ops(start, spec, files, file_offsets, heap_pages, include_fork, attacker)
    dropped: list[str] = []
    if probe is not None:
        first: dict[str, Op] = {}
        for op in ops:
            first.setdefault(op.NAME, op)
        missing = {name for name, op in first.items() if probe(op) == -errno.ENOSYS}
        dropped = [name for name in first if name in missing]
        ops = [op for op in ops if op.NAME not in missing]
    return alphabet_of(ops, heap_pages, tuple(dropped))


def alphabet_of(ops: Sequence[Op], heap_pages: int = 2, dropped: tuple[str, ...] = ()) -> Alphabet:
    """An :class:`Alphabet` holding exactly ``ops`` (grouped by the pages they name)."""
    windows: list[frozenset[Page] | None] = []
    group_ids: dict[frozenset[Page], int] = {}
    group_of: list[int] = []
    members: list[list[int]] = []
    for i, op in enumerate(ops):
        pages = op_pages(op, heap_pages)
        windows.append(pages)
        if pages is None:
            group_of.append(-1)
            continue
        g = group_ids.setdefault(pages, len(group_ids))
        if g == len(members):
            members.append([])
        members[g].append(i)
        group_of.append(g)
    return Alphabet(
        ops=tuple(ops),
        windows=tuple(windows),
        group_of=tuple(group_of),
        groups=tuple(tuple(m) for m in members),
        group_named=tuple(group_ids),
        group_windows=tuple(_widen(named) for named in group_ids),
        dropped=dropped,
    )

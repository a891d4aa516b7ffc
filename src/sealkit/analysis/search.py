"""Breadth-first search for the shortest call sequence that breaks a property.

The search needs six things of a state (the model's interface, CONTRIBUTING
"The model's interface"): ``apply(op)``, ``copy()``, ``layout(zone, lo,
hi)``, ``vma_view(zone, lo, hi)``, ``backing_view()`` and, for the exact
search's cross-check, ``state_key(zone, lo, hi)``. It explores call sequences
level by level and, for each property, returns a shortest violating sequence,
or the depth it holds to and the number of states it kept.

States
------
A state is observed as a *page vector*: one entry per page of each zone
window (widened by one page on each side) and one per resource outside the
VMAs (the break, each file's contents). A page's entry holds everything a
call can read of it (``AddressSpace.vma_view``): whether it starts a VMA, all
of the VMA's ``vm_flags`` (also those no layout shows, such as
``VM_SEALABLE`` or ``VM_ACCOUNT``), the seal, the open file, the page's
offset, the object it maps, its own data and, for a file or shmem page, the
object's whole contents. Two states with equal vectors behave the same under
every call sequence of the alphabet (the alphabet names no page outside the
windows).

**Symmetry.** Objects the start state has (anon_vmas, shmem objects) keep
their names; objects created later are named by first appearance in page
order, so states equal up to renaming of new objects are one state. The
properties compare a page only with the same page at the start, where no new
object exists, so the renaming never changes a verdict; and the model only
ever compares objects for equality (merging, aliasing), which a renaming
keeps.

Footprints
----------
The reductions rest on the *footprint* ``F(c, s)`` of a call ``c`` in state
``s``, computed from the vector: the pages ``c`` names, one page either side,
every VMA meeting those pages (with one page either side of it), every page
mapping the same file or shmem object as a page ``c`` names, and the
resources ``c`` reads (the files it maps, the break for ``brk``). ``fork``
has every slot. Three facts about calls, checked against the model for every
design (tests/unit/test_analysis_frames.py) and asserted by the search
itself every time it runs the model:

* **L1**: ``c`` changes only slots of ``F(c, s)``;
* **L2**: if two states agree on ``F(c, s) | F(c, s')``, then ``c`` changes
  them the same way and ``F(c, s) = F(c, s')``;
* **L3**: a call changes the object a page maps only on pages it names,
  and merges only with the VMAs next to them.

From these, for calls ``a`` and ``b``:

* **swap**: if ``F(a, t) & F(b, t·a)`` is empty then ``t·a·b = t·b·a`` and both
  calls keep their footprints and effects in either order (``a`` changes
  nothing ``b`` reads, so by L2 ``b`` acts alike; symmetrically for ``a``;
  the changes are disjoint). Likewise ``F(a, t) & F(b, t)`` empty implies
  ``F(b, t·a) = F(b, t)``.
* **growth**: ``F(b, t·a) <= F(b, t) | F(a, t)`` (a VMA or alias set can only
  grow into what ``a`` changed, L1 and L3).

Reductions
----------
Depth 3 over a few thousand calls is tens of billions of sequences. None of
the reductions changes a finding (which properties break, at which depth,
the number of breaking (state, call) pairs at that depth); ``cache=False``
turns them all off (every call applied to every state) and
tests/slow/test_analysis_depth.py checks both agree.

1. **Effects from views** (locality). By L2 what a call does is a function
   of the vector restricted to its footprint (its *view*, objects renamed
   locally). The change it makes (a patch of the view) and the properties
   it breaks are cached per (group of calls naming the same pages, view);
   a successor's vector is the parent's with the patch applied, so the
   model runs only for views never seen (then the search checks that the
   model's state equals the vector, and that the call changed nothing
   outside its footprint: L1). A view untouched since the start state is
   answered by the start state's outcome.
2. **Frames** (:data:`~sealkit.analysis.alphabet.EFFECTS`): on the last
   level only calls that can still break an open property are applied;
   once content integrity is no longer open, calls are judged on views
   without page data (mapping and protection calls do not read it).
3. **Causality** (partial-order reduction). Record with each state the
   footprints of the *maximal* calls of the sequence that reached it (calls
   no later call depends on). In a shortest violating sequence ``w·c``
   the last call depends on every maximal call ``m`` of ``w``: otherwise
   ``m`` could be swapped to the very end, and ``w`` without ``m`` followed
   by ``c`` would leave the violated page as it is (``c`` changed it and
   ``F(m) & F(c)`` is empty), a shorter violation. So:

   * on the last level a call is judged only if its footprint meets every
     recorded footprint (the others cannot break an open property);
   * a state on the last level is kept only if some call could meet all of
     them; by *growth* this is decided from the parent's footprints before
     the call is applied (``N states`` counts the states kept);
   * two calls ``a``, ``i`` with ``i < a`` independent after ``s·a``: the
     successor ``s·a·i`` is not generated when ``s·i`` is itself a kept
     state of the same level (it generates ``s·i·a``, the same state, with
     the same recorded footprints, by *swap*).

   The argument holds for every shortest sequence reaching a state, so it
   does not matter which one a state keeps; and every state of a shortest
   violating sequence is kept (its recorded footprints are joined by the
   rest of that sequence), so the search finds it at the same depth.

A property broken at depth ``d`` and not before is broken on a page the
last call changed, so judging a call only looks at the protected pages in
its footprint. Every counterexample is re-run from scratch before it is
reported (:func:`sealkit.analysis.analyzer.rerun`).

Parallelism
-----------
With ``workers > 1`` each level's states are split into chunks expanded in
forked worker processes (``fork`` start method: the workers inherit the
start state, the alphabet and the caches without pickling). Every cache
answer equals what the model would answer (L2), and every decision depends
only on the state and on the level before it, so the successors, findings
and state counts do not depend on the worker count; results are merged in
chunk order. Only the work counters (calls applied, cache answers) do.
"""

from __future__ import annotations

import gc
import hashlib
import multiprocessing
import os
import signal
import time
from collections import Counter, deque
from collections.abc import Callable, Hashable, Iterable, Sequence
from concurrent.futures import Future, ProcessPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Final, TypeAlias

from .._os import syscalls
from ..flags import Madv, MapFlag, Prot
from ..layout import Layout
from ..model.vma import VM_STICKY
from ..ops import Brk, Madvise, Mmap, Mremap, Op, ProcessMadvise
from .alphabet import EFFECTS, Alphabet
from .properties import Page, PageFact, PermissionPromise, Property, check, page_facts
from .space import Space

__all__ = ["Found", "Holds", "Problem", "SearchResult", "SearchStats", "Space", "search"]


@dataclass(frozen=True)
class Problem:
    """One search: a start state, the zone windows observed, the alphabet,
    the properties wanted, the protected pages and the permission promise."""

    start: Space
    windows: tuple[tuple[str, int, int], ...]
    alphabet: Alphabet
    properties: tuple[Property, ...]
    protected: frozenset[Page]
    promise: PermissionPromise = PermissionPromise.NO_GAIN
    key_windows: tuple[tuple[str, int, int], ...] | None = None
    """Zone windows whose ``state_key`` identifies a state in the exact search
    with ``model_key=True`` (default: ``windows``)."""


@dataclass(frozen=True)
class Found:
    """The shortest violating sequence: ``path`` indexes the alphabet.

    ``alternatives`` counts, per kind of call (its name, and the advice for
    madvise), the (state, call) pairs at that depth whose call breaks the
    property: how many ways there are.
    """

    property: Property
    depth: int
    path: tuple[int, ...]
    alternatives: dict[str, int]
    others: tuple[tuple[int, ...], ...] = ()
    """The first sequence ending in each other kind of call that also breaks it."""


@dataclass(frozen=True)
class Holds:
    """The property holds for every sequence of up to ``depth`` calls;
    ``states`` distinct states (depth below ``depth``) were kept and expanded."""

    property: Property
    depth: int
    states: int
    cut: int = 0
    """The depth whose search was cut short by the state budget (0: none):
    the property holds to ``depth``; sequences of ``cut`` calls were not all
    tried."""


@dataclass
class SearchStats:
    """What the search did. ``levels`` is a result (the same for any worker
    count); the other counters measure work and depend on how the levels
    were split between processes (each has its own caches)."""

    levels: list[int] = field(default_factory=list)
    """Distinct states kept at each depth (index 0: the start state)."""
    expanded: int = 0
    """States whose successors were all accounted for."""
    pairs: int = 0
    """(state, call) pairs covered."""
    applied: int = 0
    """Calls actually applied to the model."""
    untouched: int = 0
    """(state, call) pairs answered because the call's view is as at the start."""
    cached: int = 0
    """(state, call) pairs answered from the view caches."""
    commuted: int = 0
    """Successors not generated because the same state comes from the other order."""
    pruned: int = 0
    """Successors not kept: no call could join their independent changes."""
    independent: int = 0
    """Last-level (state, call) pairs not judged: the call is independent of a change."""
    seconds: float = 0.0
    workers: int = 1
    cut: int = 0
    """The depth at which the state budget (``max_states``) stopped the
    search (0: it was not stopped)."""
    max_states: int | None = None
    digest: str = ""
    """With ``search(..., digest=True)``: a hash of every kept state, level by
    level, in order (equal digests: the same states were kept)."""

    @property
    def states(self) -> int:
        """Distinct states kept."""
        return sum(self.levels)

    def add(self, other: SearchStats) -> None:
        """Accumulate a worker's counters."""
        self.expanded += other.expanded
        self.pairs += other.pairs
        self.applied += other.applied
        self.untouched += other.untouched
        self.cached += other.cached
        self.commuted += other.commuted
        self.pruned += other.pruned
        self.independent += other.independent


@dataclass(frozen=True)
class SearchResult:
    """One outcome per property asked for, and the statistics."""

    outcomes: dict[Property, Found | Holds]
    stats: SearchStats
    depth: int


# ------------------------------------------------------------------ internals

Entry: TypeAlias = Any
"""A slot of a page vector: ``None`` (nothing mapped), a page tuple (see
``_Engine.observe``) or a resource value."""
Vec: TypeAlias = tuple[Entry, ...]
Patch: TypeAlias = tuple[tuple[int, Entry], ...]
"""Changed slots of a view, objects named as in the view (``~k``) or fresh (``+k``)."""
Effect: TypeAlias = tuple[tuple[Patch | None, frozenset[Property]], ...]
"""Per call of a group: the change it makes (``None``: nothing) and the properties it breaks."""
Verdicts: TypeAlias = tuple[frozenset[Property], ...]
"""Per call of a group: the properties it breaks."""
ViewKey: TypeAlias = tuple[int, int, tuple[Entry, ...]]
VerdictKey: TypeAlias = tuple[int, int, bool, int, tuple[Entry, ...]]
"""(group, part, without page data, window, view)."""

_NOTHING: Final[frozenset[Property]] = frozenset()
_DATA: Final = frozenset({Property.CONTENT})
DEFAULT_MAX_STATES: Final = 1_000_000
"""States a search keeps at most (all levels) unless told otherwise.
Measured at this budget (``sealkit analyze --policy linux --depth 4``, two
workers, docs/analyze.md "Depth 4 and the state budget"): 1.7 GB in the
process that merges the levels, 3.7 GB with its workers."""
CACHE_LIMIT: Final = 1_000_000
"""Entries a process keeps in each answer cache before emptying it (the
caches only save work: emptying one changes counters, never a result)."""
_MIN_PARALLEL: Final = 48
"""Fewer states than this in a level are expanded in-process (forking costs more)."""

# Page entry fields (``_Engine.observe``).
_START, _FLAGS, _SEAL, _OPENED, _PGOFF, _FORKED, _NAME, _ANON, _LNAME, _OWN, _BODY = range(11)
_FIELDS: Final = 11
_BLIND: Final = 9
"""Page entry fields a call that does not read page data looks at (all but data)."""
_VM_MAYSHARE: Final = 0x80
_SEEN_FLAGS: Final = ~VM_STICKY
"""The vm_flags a state is told apart by: all but the sticky ones
(``VM_MAYBE_GUARD``, the ``gu`` VmFlag). The model only ever writes those:
``MADV_GUARD_INSTALL`` sets the flag on a whole VMA, a merge ORs it into the
merged VMA, and no call, merge check or property reads it (merges ignore it,
``fork`` copies guard markers whether or not it is set). Two states that
differ only in it have the same future, call for call, so it is left out:
kept, it made every call that merges beside a guarded VMA change pages
outside its footprint (``tests/unit/test_analysis_footprints.py``)."""
"""The kernel's ``VM_MAYSHARE`` bit of ``vm_flags``: a shared mapping."""
_RIGHTS: Final = int(Prot.READ | Prot.WRITE | Prot.EXEC)


def _renamed(e: Entry, rename: Callable[[str], str]) -> Entry:
    """Page entry ``e`` with its new objects (names not of the start state,
    ``~k``/``+k``) renamed by ``rename``."""
    name, anon = e[_NAME], e[_ANON]
    new_name = rename(name) if name is not None and name[0] in "~+" else name
    new_anon = rename(anon) if anon is not None and anon[0] in "~+" else anon
    if new_name is name and new_anon is anon:
        return e
    return (*e[:_NAME], new_name, new_anon, *e[_LNAME:])


class _Node:
    """One kept state: how it was reached and what the search knows of it."""

    __slots__ = ("cand", "delta", "frontier", "op", "parent", "reads", "vec", "writes")

    def __init__(
        self,
        parent: int,
        op: int,
        vec: Vec,
        delta: int,
        reads: int,
        writes: int,
        frontier: Frontier,
        cand: int,
    ) -> None:
        self.parent = parent
        self.op = op
        self.vec = vec
        self.delta = delta
        """Slots that differ from the start state."""
        self.reads = reads
        self.writes = writes
        """What the calls that reached it read and wrote (unions of footprints)."""
        self.frontier = frontier
        """Footprints of the maximal calls of that sequence (the last call's is last)."""
        self.cand = cand
        """On the last level: the groups that may break a property here (bit per group)."""


Footprint: TypeAlias = tuple[int, int]
"""What a call reads and what it may write (slot masks; writes within reads)."""
Frontier: TypeAlias = tuple[Footprint, ...]
_Successor: TypeAlias = tuple[int, int, Hashable, Vec, int, int, int, Frontier, int]
"""(parent, call, key, vector, delta, reads, writes, frontier, candidate groups)."""


def _depends(a: Footprint, b: Footprint) -> bool:
    """Whether two calls may not commute: one writes what the other reads."""
    return bool(a[0] & b[1] or a[1] & b[0])


@dataclass
class _Chunk:
    """What expanding a run of states produced (sent back from a worker)."""

    successors: list[_Successor] = field(default_factory=list)
    hits: dict[tuple[Property, str], tuple[int, int]] = field(default_factory=dict)
    """First (state, call) breaking a property, per property and final call name."""
    counts: dict[Property, Counter[str]] = field(default_factory=dict)
    effects: dict[ViewKey, Effect] = field(default_factory=dict)
    verdicts: dict[VerdictKey, Verdicts] = field(default_factory=dict)
    refusals: dict[ViewKey, dict[int, bool]] = field(default_factory=dict)
    stats: SearchStats = field(default_factory=SearchStats)
    local: set[Hashable] = field(default_factory=set)
    """Successors already collected (not sent back)."""
    keep: bool = True
    """Whether new cache answers are collected for the next level (none
    comes after the last)."""

    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        state["local"] = set()
        return state


def _mask(indices: Iterable[int]) -> int:
    out = 0
    for i in indices:
        out |= 1 << i
    return out


_BITS: dict[int, tuple[int, ...]] = {}


def _bits(mask: int) -> tuple[int, ...]:
    found = _BITS.get(mask)
    if found is not None:
        return found
    out = []
    m = mask
    while m:
        low = m & -m
        out.append(low.bit_length() - 1)
        m ^= low
    found = tuple(out)
    if len(_BITS) < 1 << 18:
        _BITS[mask] = found
    return found


class _Engine:
    def __init__(self, problem: Problem, cache: bool, model_key: bool = False) -> None:
        self.problem = problem
        self.use_cache = cache
        self.model_key = model_key
        alphabet = problem.alphabet
        self.ops = alphabet.ops
        self.groups = alphabet.groups
        self.group_of = alphabet.group_of
        self.effects_of = [EFFECTS.get(op.NAME, frozenset(Property)) for op in self.ops]
        self.kinds = [call_kind(op) for op in self.ops]
        self.kind_rank: dict[str, int] = {}
        for kind in self.kinds:
            self.kind_rank.setdefault(kind, len(self.kind_rank))
        self.global_ops = tuple(i for i, g in enumerate(alphabet.group_of) if g < 0)
        start = problem.start

        # Slots: each zone window one page wider on each side, then the break
        # and one slot per file the start state has.
        self.pages: list[Page] = []
        self.zones: list[tuple[str, int, int, int]] = []
        for zone, lo, hi in problem.windows:
            self.zones.append((zone, lo - 1, hi + 1, len(self.pages)))
            self.pages += [(zone, p) for p in range(lo - 1, hi + 1)]
        self.index = {page: i for i, page in enumerate(self.pages)}
        _, objects = start.backing_view()
        self.brk_slot = len(self.pages)
        self.file_slots = {
            key: self.brk_slot + 1 + n
            for n, key in enumerate(k for k, _, _ in objects if k.startswith("f:"))
        }
        self.nslots = self.brk_slot + 1 + len(self.file_slots)
        self.all_slots = (1 << self.nslots) - 1
        self.resources = self.all_slots & ~((1 << self.brk_slot) - 1)
        self.zone_of_slot = [z for z, _ in self.pages]

        # Names of the start state's objects (kept by every renaming).
        self.root_names: dict[Hashable, str] = {}
        self.root_lnames: set[str] = set()
        for zone, lo, hi, _ in self.zones:
            for _, _, _, obj, anon, lname, _ in start.vma_view(zone, lo, hi):
                if lname is not None:
                    self.root_lnames.add(lname)
                if obj is not None and obj not in self.root_names:
                    self.root_names[obj] = (
                        obj if obj.startswith("f:") else f"S{len(self.root_names)}"
                    )
                if anon is not None and anon not in self.root_names:
                    self.root_names[anon] = f"A{len(self.root_names)}"
        for key in self.file_slots:
            self.root_names.setdefault(key, key)
        self.intern: dict[Entry, Entry] = {}

        # Static masks per group: the slots its calls name (pages, and the
        # resources they read) and the same pages one wider on each side.
        self.named: list[int] = []
        self.widened: list[int] = []
        self.group_files: list[tuple[str, ...]] = []
        for g, pages in enumerate(alphabet.group_named):
            named = _mask(self.index[p] for p in pages if p in self.index)
            wide = 0
            for zone, p in pages:
                for q in (p - 1, p, p + 1):
                    j = self.index.get((zone, q))
                    if j is not None:
                        wide |= 1 << j
            files = sorted(
                {
                    "f:" + op.file
                    for op in (self.ops[i] for i in self.groups[g])
                    if isinstance(op, Mmap) and op.file is not None
                }
            )
            res = _mask(self.file_slots[f] for f in files if f in self.file_slots)
            if any(isinstance(self.ops[i], Brk) for i in self.groups[g]):
                res |= 1 << self.brk_slot
            self.named.append(named | res)
            self.widened.append(wide | res)
            self.group_files.append(tuple(f for f in files if f in self.file_slots))
        # Calls that may leave a private anonymous VMA without an anon_vma on
        # the pages they name take a neighbour's anon_vma when they merge: what
        # they do to those pages depends on the neighbours (their whole
        # footprint). Every other call's effect on page facts depends only on
        # its narrow window (``_View.narrow``).
        self.parts: list[tuple[tuple[int, ...], tuple[int, ...]]] = []
        for members in self.groups:
            creating = tuple(i for i in members if _creates_anonymous(self.ops[i]))
            plain = tuple(i for i in members if i not in set(creating))
            self.parts.append((plain, creating))
        self.named_bits = [_bits(m & ((1 << self.brk_slot) - 1)) for m in self.named]
        self.op_files = [
            1 << self.file_slots["f:" + op.file]
            if isinstance(op, Mmap) and op.file is not None and "f:" + op.file in self.file_slots
            else 0
            for op in self.ops
        ]
        self.group_file_mask = [
            _mask(self.file_slots[f] for f in files) for files in self.group_files
        ]
        # What a call may write for sure: the pages it names, the page after
        # each named run (a split or merge there moves a VMA start), the break.
        page_mask = (1 << self.brk_slot) - 1
        self.writes_static: list[int] = []
        for g, pages in enumerate(alphabet.group_named):
            m = self.named[g] & page_mask
            for zone, p in pages:
                if (zone, p + 1) not in pages:
                    j = self.index.get((zone, p + 1))
                    if j is not None:
                        m |= 1 << j
            if any(isinstance(self.ops[i], Brk) for i in self.groups[g]):
                m |= 1 << self.brk_slot
            self.writes_static.append(m)
        self.wide_bits = [_bits(m & ((1 << self.brk_slot) - 1)) for m in self.widened]
        self.protected_mask = _mask(self.index[p] for p in problem.protected if p in self.index)
        self.judged = (
            tuple(w for w in problem.windows if w[0] in {z for z, _ in problem.protected})
            or problem.windows
        )
        self.key_windows = problem.key_windows or problem.windows
        self._wanted: dict[tuple[int, int, frozenset[Property]], tuple[int, ...]] = {}
        self.effects: dict[ViewKey, Effect] = {}
        self.verdicts: dict[VerdictKey, Verdicts] = {}
        self.refusals: dict[ViewKey, dict[int, bool]] = {}
        """Per (group, view of the pages it names): which calls fail without
        changing anything (known so far)."""
        self.levels: list[list[_Node]] = []
        self.reps: list[set[tuple[int, int]]] = []
        """Per level: the (parent, call) pairs its states were kept from."""
        self.seen: set[Hashable] = set()
        self.root = start
        self.root_vec, self.root_names_map = self.observe(start)
        root_layouts = self._layouts(start)
        self.before = page_facts(root_layouts)
        self.same = {
            page: (f.backing, f.obj, f.pgoff, f.shared, f.prot, f.token)
            for page, f in self.before.items()
        }
        # Entries show everything layouts do but "[heap]" (a heap page's name
        # depends on the break): pages can be judged from entries outside it.
        self.entry_judging = all(z != "h" for z, _ in problem.protected)
        self._spans: dict[int, tuple[tuple[tuple[str, int, int], ...], bool]] = {}
        self.before_blind = {
            self.pages[j]: self.fact_of(j, self.root_vec[j])
            for j in _bits(self.protected_mask)
            if self.root_vec[j] is not None
        }
        self.before_blind_facts = {
            page: (int(f.prot), f.shared, f.backing, f.obj, f.pgoff)
            for page, f in self.before_blind.items()
        }
        self.root_view = _View(self, self.root_vec)
        self.root_fp = [self.root_view.footprint(g) for g in range(len(self.groups))]
        self.root_writes = [self.root_view.writes(g) for g in range(len(self.groups))]
        self.root_narrow = [self.root_view.narrow(g) for g in range(len(self.groups))]
        self.root_effects: list[Effect | None] = [None] * len(self.groups)
        self.root_refusals: list[dict[int, bool]] = [{} for _ in self.groups]

    # ------------------------------------------------------------ observing

    def _layouts(self, space: Space) -> list[Layout]:
        return [space.layout(zone, lo, hi) for zone, lo, hi in self.problem.windows]

    def observe(
        self, space: Space, known: dict[Hashable, str] | None = None, mask: int | None = None
    ) -> tuple[Vec, dict[Hashable, str]]:
        """The page vector of ``space``, canonical when ``known`` is ``None``
        (new objects named ``~k`` by first appearance); with ``known``
        (a parent's names) objects it lacks are named ``+k``. Returns the
        vector and the names given to objects the start state lacks. With
        ``mask`` only those slots are observed (the others are ``None``).

        A page entry: (starts a VMA, vm_flags, seal, open file, page offset,
        forked, object name, anon_vma name, layout name if the start state
        has it (else ``"+"``, or ``None`` when unnamed), own data, object
        contents).
        """
        brk, objects = space.backing_view()
        contents = {key: (size, runs) for key, size, runs in objects}
        entries: list[Entry] = [None] * self.nslots
        names: dict[Hashable, str] = {}
        root_names, root_lnames, intern = self.root_names, self.root_lnames, self.intern
        fresh = "~" if known is None else "+"
        counter = [0]

        def name_of(obj: Hashable) -> str | None:
            if obj is None:
                return None
            found = root_names.get(obj)
            if found is None:
                found = names.get(obj)
                if found is None:
                    if known is not None and obj in known:
                        found = known[obj]
                    else:
                        found = f"{fresh}{counter[0]}"
                        counter[0] += 1
                    names[obj] = found
            return found

        for zone, zlo, zhi, base in self.zones:
            lo, hi = zlo, zhi
            if mask is not None:
                inside = _bits((mask >> base) & ((1 << (zhi - zlo)) - 1))
                if not inside:
                    continue
                lo, hi = zlo + inside[0], zlo + inside[-1] + 1
            for start, end, attrs, obj, anon, lname, data in space.vma_view(zone, lo, hi):
                flags, seal, opened, pgoff, forked = attrs
                flags &= _SEEN_FLAGS
                name, aname = name_of(obj), name_of(anon)
                lroot = lname if lname is None or lname in root_lnames else "+"
                body = contents.get(obj) if obj is not None else None
                first = max(start, lo)
                for p in range(first, min(end, hi)):
                    e = (
                        p == start, flags, seal, opened, pgoff + p - start, forked, name, aname,
                        lroot, data[p - first], body,
                    )  # fmt: skip
                    entries[base + p - zlo] = intern.setdefault(e, e)
        entries[self.brk_slot] = brk
        for key, slot in self.file_slots.items():
            entries[slot] = contents.get(key)
        return tuple(entries), names

    def key_of(self, space: Space, vec: Vec) -> Hashable:
        """What deduplicates states: the vector, or the model's own key."""
        if self.model_key:
            return tuple(space.state_key(zone, lo, hi) for zone, lo, hi in self.key_windows)
        return vec

    def delta_of(self, vec: Vec) -> int:
        root = self.root_vec
        return _mask(j for j in range(self.nslots) if vec[j] != root[j])

    def wanted(self, g: int, part: int, props: frozenset[Property]) -> tuple[int, ...]:
        """The calls of part ``part`` of group ``g`` whose frame reaches one of ``props``."""
        found = self._wanted.get((g, part, props))
        if found is None:
            found = tuple(i for i in self.parts[g][part] if self.effects_of[i] & props)
            self._wanted[(g, part, props)] = found
        return found

    # ------------------------------------------------------------ judging

    def fact_of(self, slot: int, e: Entry) -> PageFact:
        """What a layout says of a page, but its data (for judging mapping and
        permission integrity straight from page entries)."""
        flags, opened = e[_FLAGS], e[_OPENED]
        if opened is None:
            backing = "anon"
        elif opened == "s":
            backing = "shmem"
        else:
            backing = "file:" + opened[2:]
        return PageFact(
            Prot(flags & _RIGHTS), bool(flags & _VM_MAYSHARE), backing, e[_LNAME], e[_PGOFF], "", ""
        )

    def spans_of(self, mask: int) -> tuple[tuple[tuple[str, int, int], ...], bool]:
        """The zone page ranges covering the page slots of ``mask``, and
        whether it has resource slots."""
        found = self._spans.get(mask)
        if found is None:
            out = []
            for zone, zlo, zhi, base in self.zones:
                inside = _bits((mask >> base) & ((1 << (zhi - zlo)) - 1))
                if inside:
                    out.append((zone, zlo + inside[0], zlo + inside[-1] + 1))
            found = self._spans[mask] = (tuple(out), bool(mask >> self.brk_slot))
        return found

    def raw(self, space: Space, mask: int) -> tuple[Any, ...]:
        """What the model shows of the slots of ``mask`` (compared, not read:
        a VMA no call touched is the same object in a copy)."""
        spans, res = self.spans_of(mask)
        views = tuple(space.vma_view(zone, lo, hi) for zone, lo, hi in spans)
        return (views, space.backing_view()) if res else views

    def judge_blind(
        self, views: tuple[Any, ...], slots: int, props: frozenset[Property]
    ) -> frozenset[Property]:
        """Mapping and permission integrity on the protected pages among
        ``slots``, from the model's VMA views of them (:meth:`raw`: what a
        layout shows but data)."""
        p = self.problem
        wanted = slots & self.protected_mask
        pages = frozenset(self.pages[j] for j in _bits(wanted))
        # Each page's facts as (rights, shared, backing, object, offset): the
        # fields of the PageFact judged below (its seal and token are empty).
        facts: dict[Page, tuple[int, bool, str, str | None, int]] = {}
        spans, _ = self.spans_of(wanted)
        roots = self.root_lnames
        for (zone, lo, hi), view in zip(spans, views, strict=True):
            for start, end, attrs, _, _, lname, _ in view:
                flags, _, opened, pgoff, _ = attrs
                if opened is None:
                    backing = "anon"
                elif opened == "s":
                    backing = "shmem"
                else:
                    backing = "file:" + opened[2:]
                name = lname if lname is None or lname in roots else "+"
                rights, shared = flags & _RIGHTS, bool(flags & _VM_MAYSHARE)
                for q in range(max(start, lo), min(end, hi)):
                    page = (zone, q)
                    if page in pages:
                        facts[page] = (rights, shared, backing, name, pgoff + q - start)
        before = self.before_blind_facts
        if len(facts) == len(pages) and all(before.get(page) == f for page, f in facts.items()):
            # Every page as at the start: no property of these can be broken.
            return _NOTHING
        after = {
            page: PageFact(Prot(rights), shared, backing, name, pgoff, "", "")
            for page, (rights, shared, backing, name, pgoff) in facts.items()
        }
        return frozenset(
            prop
            for prop in props
            if check(prop, self.before_blind, after, pages, p.promise) is not None
        )

    def violated(self, layouts: Sequence[Layout]) -> frozenset[Property]:
        p = self.problem
        after = page_facts(layouts)
        return frozenset(
            prop
            for prop in p.properties
            if check(prop, self.before, after, p.protected, p.promise) is not None
        )

    def judge_pages(
        self, space: Space, slots: int, props: frozenset[Property]
    ) -> frozenset[Property]:
        """The properties of ``props`` broken on the protected pages among
        ``slots`` of ``space`` (the pages a call changed)."""
        pages = [self.pages[j] for j in _bits(slots & self.protected_mask)]
        if not pages or not props:
            return _NOTHING
        layouts = []
        for zone in sorted({z for z, _ in pages}):
            idx = [p for z, p in pages if z == zone]
            layouts.append(space.layout(zone, min(idx), max(idx) + 1))
        same = self.same
        wanted = set(pages)
        for layout in layouts:
            for run in layout.runs:
                for p in range(run.start, run.end):
                    page = (layout.zone, p)
                    if page not in wanted:
                        continue
                    wanted.discard(page)
                    off = None if run.pgoff is None else run.pgoff + (p - run.start)
                    token = run.content[p - run.start] if run.content else "?"
                    if same.get(page) != (run.backing, run.obj, off, run.shared, run.prot, token):
                        return self._violated_at(layouts, frozenset(pages), props)
        if wanted:
            return self._violated_at(layouts, frozenset(pages), props)
        return _NOTHING

    def _violated_at(
        self, layouts: list[Layout], pages: frozenset[Page], props: frozenset[Property]
    ) -> frozenset[Property]:
        p = self.problem
        after = page_facts(layouts)
        return frozenset(
            prop for prop in props if check(prop, self.before, after, pages, p.promise) is not None
        )

    # ------------------------------------------------------------ states

    def path(self, level: int, idx: int) -> list[int]:
        ops: list[int] = []
        while level > 0:
            node = self.levels[level][idx]
            ops.append(node.op)
            idx = node.parent
            level -= 1
        return ops[::-1]

    def materialize(self, level: int, idx: int, stats: SearchStats) -> Space:
        space = self.root.copy()
        for i in self.path(level, idx):
            space.apply(self.ops[i])
            stats.applied += 1
        return space

    def trim_caches(self) -> None:
        """Empty each answer cache that has grown past :data:`CACHE_LIMIT`
        entries (they save work only; the start state's answers are kept
        apart and stay)."""
        for cache in (self.effects, self.verdicts, self.refusals):
            if len(cache) > CACHE_LIMIT:
                cache.clear()

    def expand(
        self, level: int, lo: int, hi: int, last: bool, prune: bool, open_props: frozenset[Property]
    ) -> _Chunk:
        """Expand states ``[lo, hi)`` of ``level``. On the last level only
        judge the calls; before it also collect successors (``prune``: the
        successors are on the last level)."""
        out = _Chunk(keep=not last)
        for idx in range(lo, hi):
            if not idx & 255:
                self.trim_caches()
            node = self.levels[level][idx]
            out.stats.expanded += 1
            out.stats.pairs += len(self.ops)
            exp = _Expansion(self, out, level, idx, node, open_props)
            if not self.use_cache:
                exp.exact(last)
            elif last:
                exp.judge()
            else:
                exp.expand(prune)
        return out


class _View:
    """Footprints in one state (computed from its vector)."""

    def __init__(self, engine: _Engine, vec: Vec) -> None:
        self.engine = engine
        self.vec = vec
        n = engine.brk_slot
        # span[i]: when page i is in a private VMA without an anon_vma (a call
        # may give it one, or one of its neighbour's), that VMA one page wider
        # on each side; else nothing.
        span = [0] * n
        span_w = [0] * n
        for _, lo, hi, base in engine.zones:
            j = base
            end = base + hi - lo
            while j < end:
                e = vec[j]
                if e is None:
                    j += 1
                    continue
                k = j + 1
                while k < end and vec[k] is not None and not vec[k][_START]:
                    k += 1
                if e[_ANON] is None and not e[_FLAGS] & _VM_MAYSHARE:
                    inner = ((1 << (k - j)) - 1) << j
                    m = inner | (1 << (j - 1) if j > base else 0) | (1 << k if k < end else 0)
                    for q in range(j, k):
                        span[q] = m
                        span_w[q] = inner
                j = k
        # alias[name]: the pages mapping a file or shmem object, and the file's slot.
        alias: dict[str, int] = {}
        for j in range(n):
            e = vec[j]
            if e is not None and e[_NAME] is not None:
                alias[e[_NAME]] = alias.get(e[_NAME], 0) | (1 << j)
        for name in alias:
            slot = engine.file_slots.get(name)
            if slot is not None:
                alias[name] |= 1 << slot
        # page_alias[i]: what a call naming page i reaches through its object:
        # every page mapping it for a shared mapping (a store shows through all
        # of them), the file's contents for a private one (read on a fault).
        page_alias = [0] * n
        page_alias_w = [0] * n
        for j in range(n):
            e = vec[j]
            if e is None or e[_NAME] is None:
                continue
            if e[_FLAGS] & _VM_MAYSHARE:
                page_alias[j] = page_alias_w[j] = alias[e[_NAME]]
            else:
                slot = engine.file_slots.get(e[_NAME])
                page_alias[j] = 0 if slot is None else 1 << slot
        self.span = span
        self.span_w = span_w
        self.page_alias_w = page_alias_w
        self.alias = alias
        self.page_alias = page_alias
        self._fp: dict[int, int] = {}
        self._writes: dict[int, int] = {}
        self._narrow: dict[int, int] = {}
        self._tables: tuple[list[int], list[int]] | None = None
        self._deps: dict[Footprint, int] = {}
        self._fresh: int | None = None
        self._blind_vec: Vec | None = None

    def footprint(self, g: int) -> int:
        """``F(c, s)`` for the calls of group ``g`` (``g < 0``: everything):
        the union of its calls' footprints (:meth:`call_footprint`)."""
        if g < 0:
            return self.engine.all_slots
        return self.base(g) | self.engine.group_file_mask[g]

    def call_footprint(self, i: int) -> Footprint:
        """What call ``i`` reads and may write here."""
        g = self.engine.group_of[i]
        if g < 0:
            return (self.engine.all_slots, self.engine.all_slots)
        return (self.base(g) | self.engine.op_files[i], self.writes(g))

    def _grown(self, g: int, start: int, span: list[int], alias: list[int]) -> int:
        """``start`` with, for each page group ``g`` widens to, its ``span``
        entry, and for each page it names, its ``alias`` entry."""
        engine = self.engine
        m = start
        for j in engine.wide_bits[g]:
            m |= span[j]
        for j in engine.named_bits[g]:
            m |= alias[j]
        return m

    def writes(self, g: int) -> int:
        """What group ``g``'s calls may write: the pages they name and the
        page after each named run, private VMAs without an anon_vma beside
        them (a merge or fault gives them one), the pages of a shared object
        they name and its file (a store shows through all of them), the break."""
        found = self._writes.get(g)
        if found is None:
            found = self._writes[g] = self._grown(
                g, self.engine.writes_static[g], self.span_w, self.page_alias_w
            )
        return found

    def base(self, g: int) -> int:
        """The footprint of group ``g``'s calls but the files they map: the
        slots they name, one page either side, private VMAs without an
        anon_vma among those, what they reach through their objects."""
        found = self._fp.get(g)
        if found is None:
            engine = self.engine
            start = engine.widened[g] & ~engine.group_file_mask[g]
            found = self._fp[g] = self._grown(g, start, self.span, self.page_alias)
        return found

    def narrow(self, g: int) -> int:
        """The window of group ``g``'s calls that cannot leave an anonymous
        VMA without anon_vma: the slots they name (with the files its calls
        map and the break), private VMAs without an anon_vma next to them,
        what they reach through their objects. What such a call does to the
        facts of pages (mapping, protection, data) is a function of this
        window."""
        found = self._narrow.get(g)
        if found is None:
            found = self._narrow[g] = self._grown(
                g, self.engine.named[g], self.span, self.page_alias
            )
        return found

    def depending(self, fp: Footprint) -> int:
        """The groups (bit per group) whose calls may not commute with a call
        of footprint ``fp`` here."""
        found = self._deps.get(fp)
        if found is not None:
            return found
        if self._tables is None:
            n = self.engine.nslots
            readers, writers = [0] * n, [0] * n
            for g in range(len(self.engine.groups)):
                bit = 1 << g
                for j in _bits(self.footprint(g)):
                    readers[j] |= bit
                for j in _bits(self.writes(g)):
                    writers[j] |= bit
            self._tables = (readers, writers)
        readers, writers = self._tables
        out = 0
        for j in _bits(fp[1]):
            out |= readers[j]
        for j in _bits(fp[0]):
            out |= writers[j]
        self._deps[fp] = out
        return out

    def view(self, mask: int, blind: bool = False) -> tuple[tuple[Entry, ...], dict[str, str]]:
        """The entries of ``mask`` with new objects renamed by first appearance
        (``~0``, ``~1``...); returns the view and the renaming (global -> local)."""
        vec = self.vec
        fresh = self._fresh
        if fresh is None:
            fresh = self._fresh = self._fresh_slots()
        if not mask & fresh:
            # No new object to rename: the entries as they are.
            if blind:
                if self._blind_vec is None:
                    self._blind_vec = tuple(
                        e[:_BLIND] if type(e) is tuple and len(e) == _FIELDS else e for e in vec
                    )
                vec = self._blind_vec
            return tuple(map(vec.__getitem__, _bits(mask))), {}
        out: list[Entry] = []
        local: dict[str, str] = {}

        def rename(name: str) -> str:
            new = local.get(name)
            if new is None:
                new = local[name] = f"~{len(local)}"
            return new

        for j in _bits(mask):
            e = vec[j]
            if type(e) is tuple and len(e) == _FIELDS:
                e = _renamed(e, rename)
                if blind:
                    e = e[:_BLIND]
            out.append(e)
        return tuple(out), local

    def _fresh_slots(self) -> int:
        """The page slots whose entry names an object the start state lacks
        (what :func:`_renamed` renames)."""
        out = 0
        for j, e in enumerate(self.vec):
            if type(e) is tuple and len(e) == _FIELDS:
                name, anon = e[_NAME], e[_ANON]
                if (name is not None and name[0] in "~+") or (anon is not None and anon[0] in "~+"):
                    out |= 1 << j
        return out


class _Expansion:
    """Expanding one state: the calls' outcomes, recorded into a chunk."""

    def __init__(
        self,
        engine: _Engine,
        out: _Chunk,
        level: int,
        idx: int,
        node: _Node,
        open_props: frozenset[Property],
    ) -> None:
        self.engine = engine
        self.out = out
        self.stats = out.stats
        self.level = level
        self.idx = idx
        self.node = node
        self.open = open_props
        self.fp = engine.root_view if level == 0 else _View(engine, node.vec)
        self._space: Space | None = None
        self._known: dict[Hashable, str] = {}
        self._raw: dict[int, tuple[Any, ...]] = {}

    def space(self) -> Space:
        """The node's state on the model (replayed from the start), checked
        against its vector."""
        if self._space is None:
            engine = self.engine
            space = engine.materialize(self.level, self.idx, self.stats)
            vec, names = engine.observe(space)
            if vec != self.node.vec:
                raise RuntimeError(
                    "analyzer: a state built from cached effects differs from the model's "
                    f"(locality assumption broken) after {self._path_text()}"
                )
            self._space, self._known = space, names
        return self._space

    def raw_here(self, mask: int) -> tuple[Any, ...]:
        """:meth:`_Engine.raw` of this state (remembered)."""
        found = self._raw.get(mask)
        if found is None:
            found = self._raw[mask] = self.engine.raw(self.space(), mask)
        return found

    def _path_text(self) -> str:
        from ..ops import format_op  # noqa: PLC0415

        ops = self.engine.path(self.level, self.idx)
        return "; ".join(format_op(self.engine.ops[i]).strip() for i in ops) or "(start)"

    def record(self, i: int, broken: frozenset[Property]) -> None:
        out, name = self.out, self.engine.kinds[i]
        for prop in broken & self.open:
            slot = (prop, name)
            best = out.hits.get(slot)
            if best is None or (self.idx, i) < best:
                out.hits[slot] = (self.idx, i)
            out.counts.setdefault(prop, Counter())[name] += 1

    # ------------------------------------------------------------ exact

    def exact(self, last: bool) -> None:
        """No reductions: apply every call, judge the whole protected set."""
        engine, stats = self.engine, self.stats
        space = engine.materialize(self.level, self.idx, stats)
        key = engine.key_of(space, self.node.vec)
        for i, op in enumerate(engine.ops):
            twin = space.copy()
            twin.apply(op)
            stats.applied += 1
            vec, _ = engine.observe(twin)
            if vec == self.node.vec:
                continue
            layouts = [twin.layout(z, lo, hi) for z, lo, hi in engine.judged]
            after = page_facts(layouts)
            p = engine.problem
            broken = frozenset(
                prop
                for prop in self.open
                if check(prop, engine.before, after, p.protected, p.promise) is not None
            )
            self.record(i, broken)
            if not last:
                twin_key = engine.key_of(twin, vec)
                if twin_key == key:
                    continue
                self.collect(i, twin_key, vec, (0, 0), (), 0)

    def collect(
        self, i: int, key: Hashable, vec: Vec, footprint: Footprint, frontier: Frontier, cand: int
    ) -> None:
        engine, out, node = self.engine, self.out, self.node
        if key in engine.seen or key in out.local:
            return
        out.local.add(key)
        out.successors.append(
            (
                self.idx, i, key, vec, engine.delta_of(vec), node.reads | footprint[0],
                node.writes | footprint[1], frontier, cand,
            )
        )  # fmt: skip

    # ------------------------------------------------------------ effects

    def effect(self, g: int, fp: int) -> Effect:
        """What each call of group ``g`` does here: from the start state's
        answer when its view is untouched, else from the view cache, else
        from the model."""
        engine, node, stats = self.engine, self.node, self.stats
        members = engine.groups[g]
        if self.level > 0 and not (fp | engine.root_fp[g]) & node.delta:
            found = engine.root_effects[g]
            assert found is not None
            stats.untouched += len(members)
            return found
        view, local = self.fp.view(fp)
        key = (g, fp, view)
        found = engine.effects.get(key)
        if found is not None:
            stats.cached += len(members)
            return found
        found = self.run(g, members, fp, local, judge=self.open)
        engine.effects[key] = found
        if self.out.keep:
            self.out.effects[key] = found
        if self.level == 0:
            engine.root_effects[g] = found
        self.remember_verdicts(g, found)
        return found

    def refusals(self, g: int) -> tuple[ViewKey | None, dict[int, bool]]:
        """Which calls of group ``g`` are known to fail here without changing
        anything. A call's checks read only the pages it names (errors are
        decided before any merge with a neighbour), so this is cached per
        view of those pages; the start state's answers hold while they are
        untouched."""
        engine = self.engine
        named = engine.named[g]
        if not named & self.node.delta:
            return None, engine.root_refusals[g]
        view, _ = self.fp.view(named)
        key = (g, named, view)
        return key, engine.refusals.get(key, {})

    def learn(self, g: int, key: ViewKey | None, found: dict[int, bool]) -> None:
        """Remember which calls failed without changing anything."""
        engine = self.engine
        if key is None:
            engine.root_refusals[g].update(found)
            return
        known = engine.refusals.setdefault(key, {})
        known.update(found)
        if self.out.keep:
            self.out.refusals.setdefault(key, {}).update(found)

    def run(
        self,
        g: int,
        members: Sequence[int],
        fp: int,
        local: dict[str, str],
        judge: frozenset[Property],
    ) -> Effect:
        """Apply the calls of group ``g`` to copies of the state: their
        patches and the properties of ``judge`` they break (calls known to
        fail without a change are not applied)."""
        engine, stats = self.engine, self.stats
        space = self.space()
        parent = self.node.vec
        rkey, refused = self.refusals(g)
        learned: dict[int, bool] = {}
        out: list[tuple[Patch | None, frozenset[Property]]] = []
        for i in members:
            if refused.get(i):
                out.append((None, _NOTHING))
                continue
            twin = space.copy()
            result = twin.apply(engine.ops[i])
            stats.applied += 1
            vec, _ = engine.observe(twin, self._known)
            changed = _mask(j for j in range(engine.nslots) if vec[j] != parent[j])
            if i not in refused:
                learned[i] = result < 0 and not changed
            if not changed:
                out.append((None, _NOTHING))
                continue
            if changed & ~fp:
                raise RuntimeError(
                    f"analyzer: {self._call_text(i)} changed slots outside its footprint "
                    f"after {self._path_text()} (locality assumption broken)"
                )
            patch = tuple((j, self._localize(vec[j], local)) for j in _bits(changed))
            broken = (
                engine.judge_pages(twin, changed, judge)
                if engine.effects_of[i] & judge
                else _NOTHING
            )
            out.append((patch, broken))
        if learned:
            self.learn(g, rkey, learned)
        return tuple(out)

    def _call_text(self, i: int) -> str:
        from ..ops import format_op  # noqa: PLC0415

        return format_op(self.engine.ops[i]).strip()

    @staticmethod
    def _localize(e: Entry, local: dict[str, str]) -> Entry:
        if type(e) is not tuple or len(e) != _FIELDS:
            return e

        def rename(name: str) -> str:
            if name[0] == "+":
                return name
            new = local.get(name)
            if new is None:
                raise RuntimeError(
                    "analyzer: a call reached an object outside its footprint "
                    "(locality assumption broken)"
                )
            return new

        return _renamed(e, rename)

    def patched(self, patch: Patch, local: dict[str, str]) -> Vec:
        """The node's vector with ``patch`` applied (view names mapped back),
        new objects renamed canonically."""
        engine = self.engine
        back = {v: k for k, v in local.items()}
        entries = list(self.node.vec)

        def unlocal(name: str) -> str:
            # view names back to the state's; fresh objects get a mark the
            # renaming below cannot confuse with the state's own
            return back[name] if name[0] == "~" else "+" + name

        for j, change in patch:
            entries[j] = (
                _renamed(change, unlocal)
                if type(change) is tuple and len(change) == _FIELDS
                else change
            )
        names: dict[str, str] = {}

        def canonical(name: str) -> str:
            new = names.get(name)
            if new is None:
                new = names[name] = f"~{len(names)}"
            return new

        intern = engine.intern
        for j in range(engine.brk_slot):
            e = entries[j]
            if e is None:
                continue
            new_e = _renamed(e, canonical)
            entries[j] = intern.setdefault(new_e, new_e)
        return tuple(entries)

    # ------------------------------------------------------------ levels

    def expand(self, prune: bool) -> None:
        """Before the last level: the calls' verdicts, and successors."""
        engine, node, stats, fpv = self.engine, self.node, self.stats, self.fp
        level = self.level
        por = level > 0
        last: Footprint = node.frontier[-1] if node.frontier else (0, 0)
        reps = engine.reps[level] if por else set()
        joins: dict[Footprint, tuple[Frontier, int]] = {}

        def join(fp: Footprint) -> tuple[Frontier, int]:
            # The successor's maximal calls, and (when it is on the last
            # level) the groups that could depend on all of them (growth).
            found = joins.get(fp)
            if found is None:
                frontier = (*(m for m in node.frontier if not _depends(m, fp)), fp)
                cand = -1
                if prune:
                    cand = fpv.depending(fp)
                    for m in frontier[:-1]:
                        cand &= fpv.depending(m)
                found = joins[fp] = (frontier, cand)
            return found

        for g, members in enumerate(engine.groups):
            effect: Effect | None = None
            view = fpv
            if level > 0 and not (
                engine.root_fp[g] & node.writes or engine.root_writes[g] & node.reads
            ):
                # Every call that reached this state commutes with group g's:
                # its footprint and effects are the start state's (swap).
                effect = engine.root_effects[g]
                stats.untouched += len(members)
                view = engine.root_view
            base, writes = view.base(g), view.writes(g)
            if (
                effect is None
                and prune
                and not any(join((base | engine.op_files[i], writes))[1] for i in members)
            ):
                # No successor could be kept: only the verdicts are needed.
                stats.pruned += len(members)
                self.judge_group(g)
                continue
            if effect is None:
                effect = self.effect(g, base | engine.group_file_mask[g])
            local: dict[str, str] | None = None
            for i, (patch, broken) in zip(members, effect, strict=True):
                if broken:
                    self.record(i, broken)
                if patch is None:
                    continue
                fp = (base | engine.op_files[i], writes)
                if por and i < node.op and not _depends(fp, last) and (node.parent, i) in reps:
                    # s·a·i = s·i·a, generated by the kept state s·i (swap).
                    stats.commuted += 1
                    continue
                frontier, cand = join(fp)
                if not cand:
                    stats.pruned += 1
                    continue
                if local is None:
                    local = fpv.view(base | engine.group_file_mask[g])[1]
                vec = self.patched(patch, local)
                if vec == node.vec:
                    continue
                self.collect(i, vec, vec, fp, frontier, cand if prune else 0)
        if engine.global_ops:
            self.apply_global(last=False)

    def apply_global(self, last: bool) -> None:
        """Calls on the whole address space (fork): always applied."""
        engine, stats = self.engine, self.stats
        space = self.space()
        for i in engine.global_ops:
            twin = space.copy()
            twin.apply(engine.ops[i])
            stats.applied += 1
            vec, _ = engine.observe(twin)
            if vec == self.node.vec:
                continue
            self.record(i, engine.violated([twin.layout(z, lo, hi) for z, lo, hi in engine.judged]))
            if not last:
                every = (engine.all_slots, engine.all_slots)
                self.collect(i, vec, vec, every, (every,), -1)

    def judge(self) -> None:
        """Last level: which calls break an open property."""
        engine, node = self.engine, self.node
        # ``cand`` is 0 on a node kept for a level that was not to be the last
        # (its successors' budget ran out): every group, then.
        groups = range(len(engine.groups)) if node.cand in (-1, 0) else _bits(node.cand)
        skipped = len(engine.ops) - len(engine.global_ops)
        for g in groups:
            skipped -= len(engine.groups[g])
            self.judge_group(g)
        self.stats.independent += skipped
        if engine.global_ops:
            self.apply_global(last=True)

    def judge_group(self, g: int) -> None:
        """Record the open properties the calls of group ``g`` break here.

        Only calls whose window meets the footprint of every maximal call
        of the sequence that reached this state are judged (causality); a
        window as at the start breaks nothing still open."""
        engine, node, stats, fpv = self.engine, self.node, self.stats, self.fp
        open_props = self.open
        blind = not open_props & _DATA
        if node.frontier:
            # _depends((footprint, writes), m) for every recorded footprint m
            reads, writes = fpv.footprint(g), fpv.writes(g)
            for m_reads, m_writes in node.frontier:
                if not (reads & m_writes or writes & m_reads):
                    stats.independent += len(engine.groups[g])
                    return
        parts = engine.parts[g]
        for part in (0, 1):
            members = parts[part]
            if not members:
                continue
            wanted = engine.wanted(g, part, open_props)
            if not wanted:
                stats.untouched += len(members)
                continue
            narrow = fpv.narrow(g)
            if not narrow & engine.protected_mask:
                # The facts of a page change only in the narrow window (named
                # pages, VMAs without anon_vma beside them, shared aliases):
                # no protected page there.
                stats.untouched += len(members)
                continue
            win = narrow if part == 0 else fpv.footprint(g)
            root_win = engine.root_narrow[g] if part == 0 else engine.root_fp[g]
            if self.level > 0 and not (win | root_win) & node.delta:
                # As at the start, where it broke nothing still open.
                stats.untouched += len(members)
                continue
            verdicts = self.verdicts(g, part, members, wanted, win, blind)
            if verdicts is not None and any(verdicts):
                for i, broken in zip(members, verdicts, strict=True):
                    if broken:
                        self.record(i, broken)

    def verdicts(
        self,
        g: int,
        part: int,
        members: Sequence[int],
        wanted: tuple[int, ...],
        win: int,
        blind: bool,
    ) -> Verdicts | None:
        """The properties each call of ``members`` breaks here (``None``:
        none breaks any)."""
        engine, stats = self.engine, self.stats
        view, _ = self.fp.view(win, blind)
        key = (g, part, blind, win, view)
        found = engine.verdicts.get(key)
        if found is not None:
            stats.cached += len(members)
            return found
        # Looked up second: a cached verdict for this window already says
        # nothing for calls known to fail without a change (the window holds
        # the pages they name, so they failed without a change there too).
        rkey, refused = self.refusals(g)
        if all(map(refused.get, wanted)):
            stats.cached += len(members)
            return None
        learned: dict[int, bool] = {}
        # A call changes the facts of protected pages only in its window,
        # where the state breaks nothing still open: judge those pages after
        # each call. Calls known to fail without a change break nothing.
        space = self.space()
        todo = set(wanted)
        fp = self.fp.footprint(g)
        guarded = win & engine.protected_mask
        compared = guarded if blind else guarded | engine.resources
        from_entries = blind and engine.entry_judging
        results: list[frozenset[Property]] = []
        for i in members:
            if i not in todo or refused.get(i):
                results.append(_NOTHING)
                continue
            twin = space.copy()
            result = twin.apply(engine.ops[i])
            stats.applied += 1
            if i not in refused:
                # Failed without changing its footprint (the only slots it
                # changes, L1): nothing changed at all.
                learned[i] = result < 0 and engine.raw(twin, fp) == self.raw_here(fp)
                if learned[i]:
                    results.append(_NOTHING)
                    continue
            # Protected pages of the window as they were (with the objects
            # they may show, when data is judged): nothing broken.
            views = engine.raw(twin, compared)
            if views == self.raw_here(compared):
                results.append(_NOTHING)
            elif from_entries:
                results.append(engine.judge_blind(views, guarded, self.open))
            else:
                results.append(engine.judge_pages(twin, guarded, self.open))
        if learned:
            self.learn(g, rkey, learned)
        found = tuple(results)
        engine.verdicts[key] = found
        if self.out.keep:
            self.out.verdicts[key] = found
        return found

    def remember_verdicts(self, g: int, effect: Effect) -> None:
        """Store what an effect computed here says about verdicts, for both
        windows, with and without page data."""
        engine = self.engine
        broken = dict(zip(engine.groups[g], (b for _, b in effect), strict=True))
        for part in (0, 1):
            members = engine.parts[g][part]
            if not members:
                continue
            win = self.fp.narrow(g) if part == 0 else self.fp.footprint(g)
            for blind in (False, True):
                view, _ = self.fp.view(win, blind)
                key = (g, part, blind, win, view)
                found = tuple(broken[i] - _DATA if blind else broken[i] for i in members)
                if engine.verdicts.setdefault(key, found) is found and self.out.keep:
                    self.out.verdicts[key] = found


def _creates_anonymous(op: Op) -> bool:
    """Whether ``op`` may leave a private anonymous VMA without anon_vma on
    the pages it names (then merging with a neighbour decides its object)."""
    if isinstance(op, Mmap):
        return bool(op.flags & MapFlag.ANONYMOUS) and not op.flags & MapFlag.SHARED
    return isinstance(op, Mremap | Brk)


def call_kind(op: Op) -> str:
    """What a counterexample is grouped by: the call, and the advice for madvise."""
    if isinstance(op, Madvise | ProcessMadvise):
        try:
            return f"{op.NAME} {Madv(op.advice).name.lower()}"
        except ValueError:
            return f"{op.NAME} {op.advice}"
    return op.NAME


_ENGINE: _Engine | None = None


def _worker_init(parent: int) -> None:
    # A worker dies with the search that forked it, however that ends (a
    # SIGKILL, the OOM killer): orphaned, each went on expanding its level,
    # holding gigabytes. Set before checking the parent is still there, so
    # no death falls between the two.
    syscalls.set_parent_death_signal(signal.SIGKILL)
    if os.getppid() != parent:
        os._exit(1)
    # The inherited heap is frozen (gc.freeze() before the fork) and the
    # collector stays off: a collection would walk, and so copy, every page
    # of it.
    gc.disable()


def _run_chunk(
    level: int, lo: int, hi: int, last: bool, prune: bool, open_props: frozenset[Property]
) -> _Chunk:
    assert _ENGINE is not None
    return _ENGINE.expand(level, lo, hi, last, prune, open_props)


def _chunks(total: int, parts: int) -> list[tuple[int, int]]:
    size = max(1, -(-total // parts))
    return [(lo, min(total, lo + size)) for lo in range(0, total, size)]


def search(
    problem: Problem,
    depth: int,
    *,
    workers: int = 1,
    cache: bool = True,
    model_key: bool = False,
    digest: bool = False,
    progress: Callable[[int, int, int], None] | None = None,
    max_states: int | None = DEFAULT_MAX_STATES,
) -> SearchResult:
    """Search sequences of up to ``depth`` calls, breadth-first.

    ``workers`` > 1 expands each level in that many forked processes (the
    result is the same). ``cache=False`` is the exact search: no reduction,
    every call applied to every state and judged on every protected page.
    ``model_key=True`` (exact search only) deduplicates states by the model's
    ``state_key`` instead of the page vector, to cross-check the symmetry
    reduction. ``digest=True`` fills ``stats.digest``.
    ``progress(level, states_done, states_total)`` is called as levels
    advance.

    ``max_states`` bounds the states kept (all levels; ``None``: no bound).
    When the states of depth ``d`` would pass it, every call of depth ``d``
    is still judged (what breaks there is found), but those states are
    dropped and depth ``d + 1`` is not searched: the properties still open
    hold to ``d``, with ``Holds.cut`` (and ``stats.cut``) naming ``d + 1``.
    States are merged in their order, so where it stops does not depend on
    ``workers``.
    """
    global _ENGINE
    if model_key and cache:
        raise ValueError("model_key is for the exact search (cache=False)")
    if max_states is not None and max_states < 1:
        raise ValueError(f"max_states must be at least 1, got {max_states}")
    started = time.perf_counter()
    engine = _Engine(problem, cache, model_key)
    root_vec = engine.root_vec
    root = _Node(-1, -1, root_vec, 0, 0, 0, (), -1)
    engine.levels.append([root])
    engine.reps.append(set())
    seen = engine.seen
    seen.add(engine.key_of(problem.start, root_vec))
    stats = SearchStats(levels=[1], workers=workers, max_states=max_states)
    outcomes: dict[Property, Found | Holds] = {}
    open_props = frozenset(problem.properties)
    # A property broken before any call (a scenario that starts broken) is found at depth 0.
    for prop in engine.violated(engine._layouts(problem.start)) & open_props:
        outcomes[prop] = Found(prop, 0, (), {})
    open_props -= frozenset(outcomes)
    context = multiprocessing.get_context("fork")
    budget = None if max_states is None else max_states - 1
    level = 0
    while level < depth and open_props:
        frontier = engine.levels[level]
        last = level + 1 == depth
        prune = level + 2 == depth
        if progress is not None:
            progress(level + 1, 0, len(frontier))
        merge = _Merge(engine, stats, budget, reps=not prune)
        # The start state is always expanded here: its outcomes answer every
        # later call whose view is untouched.
        if workers > 1 and level > 0 and len(frontier) >= _MIN_PARALLEL:
            _ENGINE = engine
            gc.freeze()  # keep the collector off the pages the workers share
            try:
                before = set(multiprocessing.active_children())
                pool = ProcessPoolExecutor(
                    max_workers=workers,
                    mp_context=context,
                    initializer=_worker_init,
                    initargs=(os.getpid(),),
                )
                try:
                    # A few chunks in flight, submitted in order: once the
                    # budget is passed the rest are only judged (as on a
                    # last level: no successors). On the last level every
                    # chunk is only judged whatever the budget says, so all
                    # are submitted at once: with a few in flight, a worker
                    # done with its chunks waited, idle, for a slower chunk
                    # ahead of them to be merged (linux depth 3 ran its last
                    # level on 1.15 cores of 2).
                    spans = _chunks(len(frontier), workers * 16)
                    window = len(spans) if last else workers * 2
                    pending: deque[Future[_Chunk]] = deque()
                    submitted = 0
                    for n in range(1, len(spans) + 1):
                        while submitted < len(spans) and len(pending) < window:
                            lo, hi = spans[submitted]
                            judge_only = last or merge.cut
                            pending.append(
                                pool.submit(
                                    _run_chunk, level, lo, hi, judge_only, prune, open_props
                                )
                            )
                            submitted += 1
                        # In chunk order, whichever worker finished first.
                        merge.add(pending.popleft().result(), caches=not last)
                        if progress is not None:
                            progress(
                                level + 1,
                                min(len(frontier), n * len(frontier) // len(spans)),
                                len(frontier),
                            )
                except BaseException:
                    # Interrupted (Ctrl-C) or failed: the workers' chunks are
                    # of no use now, and shutting down would wait for them
                    # (seconds each at depth 3).
                    for child in set(multiprocessing.active_children()) - before:
                        child.kill()
                    raise
                finally:
                    pool.shutdown(wait=True, cancel_futures=True)
            finally:
                _ENGINE = None
                gc.unfreeze()
        else:
            step = max(1, len(frontier) // 20)
            for lo, hi in _chunks(len(frontier), max(1, len(frontier) // step)):
                chunk = engine.expand(level, lo, hi, last or merge.cut, prune, open_props)
                merge.add(chunk, caches=False)
                if progress is not None:
                    progress(level + 1, hi, len(frontier))
        engine.trim_caches()
        broken = {prop for prop, _ in merge.hits}
        for prop in broken:
            # One example per final call, in (state, call) order; the first is the answer.
            mine = sorted(where for (p, _), where in merge.hits.items() if p is prop)
            paths = [(*engine.path(level, idx), op) for idx, op in mine]
            # Kinds in alphabet order, whatever order the chunks met them in.
            ways = dict(sorted(merge.counts[prop].items(), key=lambda kv: engine.kind_rank[kv[0]]))
            outcomes[prop] = Found(prop, level + 1, paths[0], ways, tuple(paths[1:]))
        open_props -= frozenset(broken)
        level += 1
        if merge.cut:
            # Every call of this level was judged, but its states would pass
            # the budget: the next depth is not searched.
            stats.cut = level + 1
            break
        if not last:
            engine.levels.append(merge.nxt)
            engine.reps.append(merge.reps)
            stats.levels.append(len(merge.nxt))
    expanded_states = sum(len(engine.levels[d]) for d in range(min(level, len(engine.levels))))
    for prop in open_props:
        outcomes[prop] = Holds(prop, level, expanded_states, stats.cut)
    if digest:
        h = hashlib.sha256()
        for nodes in engine.levels:
            for node in nodes:
                h.update(repr((node.parent, node.op, node.vec)).encode())
            h.update(b"|")
        stats.digest = h.hexdigest()
    stats.seconds = time.perf_counter() - started
    ordered = {p: outcomes[p] for p in problem.properties}
    return SearchResult(ordered, stats, depth)


class _Merge:
    """One level's chunks merged in order: the new states (each kept once,
    from the first chunk that reached it), the first hits and the counts.
    Once the states would pass the budget ``cut`` is set and the states are
    dropped; hits and counts are still merged."""

    def __init__(self, engine: _Engine, stats: SearchStats, budget: int | None, reps: bool) -> None:
        self.engine = engine
        self.keep_reps = reps
        """Whether the (parent, call) pairs are kept (only a level that is
        expanded, not just judged, reads them)."""
        self.stats = stats
        self.room = None if budget is None else budget - sum(stats.levels[1:])
        self.nxt: list[_Node] = []
        self.reps: set[tuple[int, int]] = set()
        self.hits: dict[tuple[Property, str], tuple[int, int]] = {}
        self.counts: dict[Property, Counter[str]] = {}
        self.cut = False

    def add(self, chunk: _Chunk, caches: bool) -> None:
        engine, stats = self.engine, self.stats
        stats.add(chunk.stats)
        if caches:
            # A worker's new answers, for the next level's workers to inherit.
            engine.effects.update(chunk.effects)
            engine.verdicts.update(chunk.verdicts)
            for rkey, known in chunk.refusals.items():
                engine.refusals.setdefault(rkey, {}).update(known)
        for slot, where in chunk.hits.items():
            if slot not in self.hits or where < self.hits[slot]:
                self.hits[slot] = where
        for prop, counter in chunk.counts.items():
            self.counts.setdefault(prop, Counter()).update(counter)
        engine.trim_caches()
        if self.cut:
            return
        seen, intern, nxt = engine.seen, engine.intern, self.nxt
        reps = self.reps if self.keep_reps else None
        room = self.room
        for parent, op, key, vec, delta, reads, writes, front, cand in chunk.successors:
            if key not in seen:
                if room is not None and len(nxt) >= room:
                    self.cut = True
                    self.nxt, self.reps = [], set()
                    return
                seen.add(key)
                kept = tuple(intern.setdefault(e, e) for e in vec)
                nxt.append(_Node(parent, op, kept, delta, reads, writes, front, cand))
                if reps is not None:
                    reps.add((parent, op))

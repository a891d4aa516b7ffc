"""Breadth-first search for the shortest call sequence that breaks a property.

The search needs four things of a state (the model's interface,
CONTRIBUTING "The model's interface"): ``apply(op)``, ``copy()``,
``state_key(zone, lo, hi)`` and ``layout(zone, lo, hi)``. It explores every
sequence of alphabet calls level by level, keeps one state per
``state_key`` (so a state reached twice is expanded once), and for each
property returns the first violating sequence in (state order, call order),
which is a shortest one; or the depth it holds to and the number of states
whose every successor was checked.

Reductions
----------
Depth 3 over a few thousand calls is tens of billions of sequences. The
search cuts the work with facts about the calls that are checked against
the model for every design (tests/unit/test_analysis_frames.py) and never
changes an answer (an exact search, ``cache=False``, applies every call to
every state; tests/slow/test_analysis_depth.py checks both agree):

* **locality**: a call changes only the pages it names and the pages mapping
  the same file or shared object (a store through a shared mapping shows
  through every mapping of that page), and what it does depends only on
  those pages. Its *window* is that set. A call whose window is as in the
  start state does what it did there; a call whose window looks like one
  already seen does what it did then: outcomes are cached per (group of
  calls naming the same pages, state of the window) and a call is applied
  to the model only for a window never seen;
* **frames** (:data:`~sealkit.analysis.alphabet.EFFECTS`): which properties
  a call can break at all. On the last level (no successor is kept) only
  calls that can still break an open property are applied, and they are
  judged on the protected pages of their window only; calls that change
  mappings or protections do not read page data, so when content integrity
  is no longer open they are judged without content tokens;
* **commuting calls**: on depth 1, two calls whose (widened) windows do not
  meet reach the same state in either order; it is collected once.

A property broken at depth ``d`` and not before is broken on a page the
last call changed, which is what makes the last level's judging local.
Every counterexample is re-run from scratch before it is reported
(:func:`sealkit.analysis.analyzer.rerun`).

Parallelism
-----------
With ``workers > 1`` each level's states are split into chunks run in
forked worker processes (``fork`` start method: the workers inherit the
start state, the alphabet and the caches without pickling); results are
merged in chunk order, so the outcome does not depend on the worker count.
The start state is always expanded in the parent (its outcomes answer every
later untouched window).
"""

from __future__ import annotations

import gc
import multiprocessing
import time
from collections import Counter
from collections.abc import Callable, Hashable, Iterable, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Final, TypeAlias

from ..flags import Madv
from ..layout import Layout
from ..ops import Madvise, Op, ProcessMadvise
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
    """Zone windows whose ``state_key`` identifies a state (default: ``windows``)."""


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
    ``states`` distinct states (depth below ``depth``) were fully expanded."""

    property: Property
    depth: int
    states: int


@dataclass
class SearchStats:
    """What the search did."""

    levels: list[int] = field(default_factory=list)
    """Distinct new states at each depth (index 0: the start state)."""
    expanded: int = 0
    """States whose every successor was checked."""
    pairs: int = 0
    """(state, call) pairs covered."""
    applied: int = 0
    """Calls actually applied to the model."""
    untouched: int = 0
    """(state, call) pairs answered because the call's window is as at the start."""
    cached: int = 0
    """(state, call) pairs answered from the window cache."""
    commuted: int = 0
    """Successors not generated because the same state is reached in the other order."""
    seconds: float = 0.0
    workers: int = 1

    @property
    def states(self) -> int:
        """Distinct states reached."""
        return sum(self.levels)

    def add(self, other: SearchStats) -> None:
        """Accumulate a worker's counters."""
        self.expanded += other.expanded
        self.pairs += other.pairs
        self.applied += other.applied
        self.untouched += other.untouched
        self.cached += other.cached
        self.commuted += other.commuted


@dataclass(frozen=True)
class SearchResult:
    """One outcome per property asked for, and the statistics."""

    outcomes: dict[Property, Found | Holds]
    stats: SearchStats
    depth: int


# ------------------------------------------------------------------ internals

Entry: TypeAlias = tuple[Any, ...] | None
Vector: TypeAlias = tuple[Entry, ...]
Outcome: TypeAlias = tuple[tuple[bool, frozenset[Property]], ...]
"""Per call of a group: (changed the state, properties broken)."""
Verdicts: TypeAlias = tuple[frozenset[Property], ...]
"""Per call of a group: the properties it breaks."""

_NOTHING: Final[frozenset[Property]] = frozenset()
_DATA: Final = frozenset({Property.CONTENT})
_MIN_PARALLEL: Final = 48
"""Fewer states than this in a level are expanded in-process (forking costs more)."""


@dataclass
class _Node:
    parent: int
    op: int
    key: Hashable
    vec: Vector
    delta: int
    """Bit ``i`` set: page ``i`` differs from the start state."""


@dataclass
class _Chunk:
    """What expanding a run of states produced (sent back from a worker)."""

    successors: list[tuple[int, int, Hashable, Vector, int]] = field(default_factory=list)
    hits: dict[tuple[Property, str], tuple[int, int]] = field(default_factory=dict)
    """First (state, call) breaking a property, per property and final call name."""
    counts: dict[Property, Counter[str]] = field(default_factory=dict)
    cache: dict[tuple[int, int, tuple[Entry, ...]], Outcome] = field(default_factory=dict)
    verdicts: dict[tuple[int, int, tuple[Entry, ...]], Verdicts] = field(default_factory=dict)
    stats: SearchStats = field(default_factory=SearchStats)
    local: set[Hashable] = field(default_factory=set)
    """Keys of the successors already collected (not sent back)."""

    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        state["local"] = set()
        return state


class _Engine:
    def __init__(self, problem: Problem, cache: bool) -> None:
        self.problem = problem
        self.use_cache = cache
        alphabet = problem.alphabet
        self.ops = alphabet.ops
        root_layouts = self._layouts(problem.start)
        self.start_objects = frozenset(
            run.obj for layout in root_layouts for run in layout.runs if run.obj is not None
        )
        # The page order every vector follows: each zone window, one page wider on
        # each side (the alphabet's windows are widened by one page).
        self.pages: list[Page] = [
            (zone, p) for zone, lo, hi in problem.windows for p in range(lo - 1, hi + 1)
        ]
        self.index = {page: i for i, page in enumerate(self.pages)}
        self.before = page_facts(root_layouts)
        self.same = {
            page: (f.backing, f.obj, f.pgoff, f.shared, f.prot, f.token)
            for page, f in self.before.items()
        }
        self._wanted: dict[tuple[int, frozenset[Property]], tuple[int, ...]] = {}
        self.group_windows: list[tuple[int, ...]] = [
            tuple(sorted(self.index[p] for p in w if p in self.index))
            for w in alphabet.group_windows
        ]
        # Widened windows (one page either side): only for deciding that two
        # calls commute, where erring wide is safe.
        self.group_masks: list[int] = [_mask(w) for w in self.group_windows]
        self.named_masks: list[int] = [
            _mask(self.index[p] for p in w if p in self.index) for w in alphabet.group_named
        ]
        # The window every level keys its cache on: the pages a call names. A
        # call that changes nothing returns before any merge (mprotect_fixup(),
        # madvise_update_vma(), mlock_fixup() compare the flags first), and a
        # split shows in the VMA-start bit of the first named page.
        self.expand_masks = self.named_masks
        self.protected_mask = _mask(self.index[p] for p in problem.protected if p in self.index)
        self.key_windows = problem.key_windows or problem.windows
        # Zone windows holding protected pages: all a verdict needs to look at.
        zones = {zone for zone, _ in problem.protected}
        self.judged = tuple(w for w in problem.windows if w[0] in zones) or problem.windows
        self.verdicts: dict[tuple[int, int, tuple[Entry, ...]], Verdicts] = {}
        self.use_commute = cache
        self.effects = [EFFECTS.get(op.NAME, frozenset(Property)) for op in self.ops]
        self.kinds = [call_kind(op) for op in self.ops]
        self._spans: dict[int, tuple[list[tuple[str, int, int]], frozenset[Page]]] = {}
        root_aliases = self.aliases(self.vector_of(root_layouts))
        # Pages a call of each group changes from the start state (named + aliases).
        self.root_effect = [self.window(m, root_aliases) for m in self.named_masks]
        self.seen: set[Hashable] = set()
        """Keys of every state of the levels already complete."""
        # Vector positions of each zone window, and the zones each call names.
        self.zone_slots: list[tuple[int, int]] = []
        first = 0
        for _, lo, hi in problem.windows:
            self.zone_slots.append((first, first + hi - lo + 2))
            first += hi - lo + 2
        self.op_zones: list[frozenset[str] | None] = [
            None if w is None else frozenset(z for z, _ in w) for w in alphabet.windows
        ]
        self.global_ops = [i for i, g in enumerate(alphabet.group_of) if g < 0]
        self.cache: dict[tuple[int, int, tuple[Entry, ...]], Outcome] = {}
        self.root_outcomes: list[Outcome | None] = [None] * len(alphabet.groups)
        self.levels: list[list[_Node]] = []
        self.root = problem.start

    # ------------------------------------------------------------ observing

    def _layouts(self, space: Space) -> list[Layout]:
        return [space.layout(zone, lo, hi) for zone, lo, hi in self.problem.windows]

    def key_of(self, space: Space) -> Hashable:
        return tuple(space.state_key(zone, lo, hi) for zone, lo, hi in self.key_windows)

    def vector_of(self, layouts: Sequence[Layout | None]) -> Vector:
        """One entry per page: the VMA start bit and the page's attributes,
        with objects the start state did not have renamed by first appearance."""
        entries: list[Entry] = [None] * len(self.pages)
        names: dict[str, str] = {}
        for layout in layouts:
            if layout is None:
                continue
            for run in layout.runs:
                obj = run.obj
                if obj is not None and obj not in self.start_objects:
                    obj = names.setdefault(obj, f"~{layout.zone}{len(names)}")
                for p in range(run.start, run.end):
                    i = self.index.get((layout.zone, p))
                    if i is None:
                        continue
                    off = None if run.pgoff is None else run.pgoff + (p - run.start)
                    token = run.content[p - run.start] if run.content else ""
                    entries[i] = (
                        p == run.start, run.prot, run.shared, run.backing, obj, off, run.seal,
                        run.flags, token,
                    )  # fmt: skip
        return tuple(entries)

    def spans(self, win: int) -> tuple[list[tuple[str, int, int]], frozenset[Page]]:
        """The protected pages of window ``win`` and the zone spans covering them."""
        found = self._spans.get(win)
        if found is None:
            pages = frozenset(self.pages[j] for j in _bits(win & self.protected_mask))
            spans = []
            for zone in sorted({z for z, _ in pages}):
                idx = [p for z, p in pages if z == zone]
                spans.append((zone, min(idx), max(idx) + 1))
            found = self._spans[win] = (spans, pages)
        return found

    def wanted(self, g: int, props: frozenset[Property]) -> tuple[int, ...]:
        """The calls of group ``g`` whose frame reaches one of ``props``."""
        found = self._wanted.get((g, props))
        if found is None:
            members = self.problem.alphabet.groups[g]
            found = tuple(i for i in members if self.effects[i] & props)
            self._wanted[(g, props)] = found
        return found

    def independent(self, a: int, i: int) -> bool:
        """Calls ``a`` and ``i`` commute from the start state: neither can see
        what the other changes (widened windows against changed pages)."""
        ga, gi = self.problem.alphabet.group_of[a], self.problem.alphabet.group_of[i]
        if ga < 0 or gi < 0:
            return False
        return not (
            self.group_masks[ga] & self.root_effect[gi]
            or self.group_masks[gi] & self.root_effect[ga]
        )

    def successor_vector(self, parent: Vector, i: int, twin: Space) -> Vector:
        """The vector of ``twin`` (``parent`` after call ``i``): zones the call
        does not name keep the parent's entries (a call changes only what it names)."""
        zones = self.op_zones[i]
        windows = self.problem.windows
        if zones is None or not self.use_cache:
            return self.vector_of(self._layouts(twin))
        entries = list(parent)
        fresh = self.vector_of(
            [twin.layout(z, lo, hi) if z in zones else None for z, lo, hi in windows]
        )
        for (z, _, _), (a, b) in zip(windows, self.zone_slots, strict=True):
            if z in zones:
                entries[a:b] = fresh[a:b]
        return tuple(entries)

    def violated(self, layouts: Sequence[Layout]) -> frozenset[Property]:
        after = page_facts(layouts)
        return self._violated(after)

    def judge_layouts(
        self, layouts: Sequence[Layout], pages: frozenset[Page], props: frozenset[Property]
    ) -> frozenset[Property]:
        """The properties of ``props`` broken on ``pages``, given layouts that
        cover them. Fast path: every judged page as at the start breaks nothing."""
        same = self.same
        seen = 0
        for layout in layouts:
            zone = layout.zone
            for run in layout.runs:
                for p in range(run.start, run.end):
                    page = (zone, p)
                    if page not in pages:
                        continue
                    seen += 1
                    off = None if run.pgoff is None else run.pgoff + (p - run.start)
                    token = run.content[p - run.start] if run.content else "?"
                    fact = (run.backing, run.obj, off, run.shared, run.prot, token)
                    if same.get(page) != fact:
                        return self.violated_at(page_facts(layouts), pages, props)
        if seen != len(pages):
            return self.violated_at(page_facts(layouts), pages, props)
        return _NOTHING

    def violated_at(
        self,
        after: dict[Page, PageFact],
        pages: frozenset[Page],
        props: frozenset[Property] | None = None,
    ) -> frozenset[Property]:
        """The properties (of ``props``, default all) broken on ``pages``
        (``after`` describes at least those)."""
        p = self.problem
        return frozenset(
            prop
            for prop in (p.properties if props is None else props)
            if check(prop, self.before, after, pages, p.promise) is not None
        )

    def _violated(self, after: dict[Page, PageFact]) -> frozenset[Property]:
        p = self.problem
        return frozenset(
            prop
            for prop in p.properties
            if check(prop, self.before, after, p.protected, p.promise) is not None
        )

    # ------------------------------------------------------------ windows

    @staticmethod
    def aliases(vec: Vector) -> list[int]:
        """Page masks of the files and shared objects ``vec`` maps (one mask
        per object: every page that maps it)."""
        masks: dict[tuple[Any, Any], int] = {}
        for i, e in enumerate(vec):
            if e is not None and (e[2] or e[3] != "anon"):
                key = (e[3], e[4])
                masks[key] = masks.get(key, 0) | (1 << i)
        return list(masks.values())

    @staticmethod
    def window(base: int, aliases: list[int]) -> int:
        """Page mask ``base`` plus every page mapping the same file or shared
        object as a page in it."""
        mask = base
        for alias in aliases:
            if alias & base:
                mask |= alias
        return mask

    @staticmethod
    def tainted(delta: int, aliases: list[int]) -> int:
        """``delta`` plus every page aliasing a page in ``delta``: a window
        touching this mask may not behave as it did from the start state."""
        out = delta
        for alias in aliases:
            if alias & delta:
                out |= alias
        return out

    # ------------------------------------------------------------ materializing

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

    # ------------------------------------------------------------ expanding

    def evaluate(
        self,
        space: Space,
        node: _Node,
        group_ops: Sequence[int],
        stats: SearchStats,
        judge: tuple[frozenset[Property], list[int]] | None = None,
    ) -> tuple[Outcome, list[tuple[int, Space]]]:
        """Apply each call to a copy of ``space``: did it change the state,
        which properties does the result break. Returns the changed copies too.

        Without ``judge`` the whole state is judged on every property. With
        ``judge=(open properties, aliases)`` only calls whose frame reaches an
        open property are judged, on the protected pages they name (or alias).
        """
        outcome: list[tuple[bool, frozenset[Property]]] = []
        changed: list[tuple[int, Space]] = []
        for i in group_ops:
            twin = space.copy()
            twin.apply(self.ops[i])
            stats.applied += 1
            if self.key_of(twin) == node.key:
                outcome.append((False, _NOTHING))
                continue
            if judge is None:
                broken = self.violated(self._judged(twin))
            else:
                props, aliases = judge
                g = self.problem.alphabet.group_of[i]
                if g < 0:
                    broken = self.violated(self._judged(twin)) & props
                elif self.effects[i] & props:
                    spans, pages = self.spans(self.window(self.named_masks[g], aliases))
                    layouts = [twin.layout(z, lo, hi) for z, lo, hi in spans]
                    broken = self.judge_layouts(layouts, pages, props)
                else:
                    broken = _NOTHING
            outcome.append((True, broken))
            changed.append((i, twin))
        return tuple(outcome), changed

    def _judged(self, space: Space) -> list[Layout]:
        return [space.layout(zone, lo, hi) for zone, lo, hi in self.judged]

    def verdict_key(
        self, g: int, node: _Node, aliases: list[int]
    ) -> tuple[int, int, tuple[Entry, ...]]:
        """What a call of group ``g`` can see of ``node``: the pages it names
        and the pages aliasing them."""
        win = self.window(self.named_masks[g], aliases)
        return (g, win, tuple(node.vec[j] for j in _bits(win)))

    def expand(
        self, level: int, lo: int, hi: int, last: bool, open_props: frozenset[Property]
    ) -> _Chunk:
        """Expand states ``[lo, hi)`` of ``level``: on the last level only judge
        the calls (no successor is kept), before it also collect successors."""
        out = _Chunk()
        stats = out.stats
        groups = self.problem.alphabet.groups
        for idx in range(lo, hi):
            node = self.levels[level][idx]
            stats.expanded += 1
            stats.pairs += len(self.ops)
            state = _Expansion(self, out, level, idx, node, open_props)
            for g, members in enumerate(groups):
                if not self.use_cache:
                    state.exact(g, members, last)
                elif last:
                    state.judge(g, members)
                else:
                    state.expand(g, members)
            # Calls that act on the whole address space (fork): always applied.
            if self.global_ops:
                outcome, changed = self.evaluate(state.space(), node, self.global_ops, stats)
                for i, (_, broken) in zip(self.global_ops, outcome, strict=True):
                    state.record(i, broken)
                if not last:
                    for i, twin in changed:
                        state.successor(i, twin)
        return out

    root_vec: Vector = ()


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
        self.aliases = engine.aliases(node.vec)
        self.tainted = engine.tainted(node.delta, self.aliases)
        self._space: Space | None = None
        self._blind: Vector | None = None

    def blind_vec(self) -> Vector:
        """The node's vector without content tokens."""
        if self._blind is None:
            self._blind = tuple(None if e is None else e[:8] for e in self.node.vec)
        return self._blind

    def space(self) -> Space:
        if self._space is None:
            self._space = self.engine.materialize(self.level, self.idx, self.stats)
        return self._space

    def record(self, i: int, broken: frozenset[Property]) -> None:
        out, name = self.out, self.engine.kinds[i]
        for prop in broken & self.open:
            slot = (prop, name)
            best = out.hits.get(slot)
            if best is None or (self.idx, i) < best:
                out.hits[slot] = (self.idx, i)
            out.counts.setdefault(prop, Counter())[name] += 1

    def successor(self, i: int, twin: Space) -> None:
        engine = self.engine
        key = engine.key_of(twin)
        if key == self.node.key or key in engine.seen or key in self.out.local:
            return
        self.out.local.add(key)
        vec = engine.successor_vector(self.node.vec, i, twin)
        delta = _mask(j for j, e in enumerate(vec) if e != engine.root_vec[j])
        self.out.successors.append((self.idx, i, key, vec, delta))

    def exact(self, g: int, members: Sequence[int], last: bool) -> None:
        """No cache: apply every call."""
        outcome, changed = self.engine.evaluate(self.space(), self.node, members, self.stats)
        for i, (_, broken) in zip(members, outcome, strict=True):
            self.record(i, broken)
        if not last:
            for i, twin in changed:
                self.successor(i, twin)

    def judge(self, g: int, members: Sequence[int]) -> None:
        """Last level: which calls of group ``g`` break an open property."""
        engine, stats = self.engine, self.stats
        blind = not self.open & _DATA
        # Calls that can break mapping or permission integrity neither read nor
        # write page data (READ_FRAMES): when content is no longer open, their
        # verdict depends on the pages they name, without tokens or aliases.
        win = engine.named_masks[g] if blind else engine.window(engine.named_masks[g], self.aliases)
        if not win & engine.protected_mask:
            # A call changes only the pages it names (and their aliases): none
            # is protected, so it breaks nothing.
            stats.untouched += len(members)
            return
        if self.level > 0 and not win & self.tainted:
            # Everything it can see is as at the start, where it broke nothing open.
            stats.untouched += len(members)
            return
        wanted = engine.wanted(g, self.open)
        if not wanted:
            # No call here can change what an open property looks at (call frames).
            stats.untouched += len(members)
            return
        vec = self.blind_vec() if blind else self.node.vec
        key = (g if not blind else -1 - g, win, tuple(vec[j] for j in _bits(win)))
        verdicts = engine.verdicts.get(key)
        if verdicts is None:
            verdicts = self.verdicts_of(members, wanted, win)
            engine.verdicts[key] = verdicts
        else:
            stats.cached += len(members)
        for i, broken in zip(members, verdicts, strict=True):
            if broken:
                self.record(i, broken)

    def verdicts_of(self, members: Sequence[int], wanted: Sequence[int], win: int) -> Verdicts:
        """Apply the ``wanted`` calls and judge the protected pages of the
        window (the only pages they can change); the others break nothing
        still open."""
        engine, stats = self.engine, self.stats
        spans, pages = engine.spans(win)
        space = self.space()
        todo = set(wanted)
        found: list[frozenset[Property]] = []
        for i in members:
            if i not in todo:
                found.append(_NOTHING)
                continue
            twin = space.copy()
            twin.apply(engine.ops[i])
            stats.applied += 1
            layouts = [twin.layout(z, lo, hi) for z, lo, hi in spans]
            found.append(engine.judge_layouts(layouts, pages, self.open))
        return tuple(found)

    def expand(self, g: int, members: Sequence[int]) -> None:
        """Before the last level: outcomes and successors of group ``g``."""
        engine, stats = self.engine, self.stats
        known: Outcome | None
        fresh: list[tuple[int, Space]] | None = None
        if self.level > 0 and not engine.expand_masks[g] & self.tainted:
            known = engine.root_outcomes[g]
            stats.untouched += len(members)
        else:
            window = engine.window(engine.expand_masks[g], self.aliases)
            cache_key = (g, window, tuple(self.node.vec[j] for j in _bits(window)))
            known = engine.cache.get(cache_key)
            if known is not None:
                stats.cached += len(members)
            else:
                known, fresh = engine.evaluate(
                    self.space(), self.node, members, stats, (self.open, self.aliases)
                )
                engine.cache[cache_key] = known
                self.out.cache[cache_key] = known
                if self.level == 0:
                    engine.root_outcomes[g] = known
                # What the last level will ask about this window, answered now.
                verdicts = tuple(broken for _, broken in known)
                named = engine.named_masks[g]
                blind = tuple(self.blind_vec()[j] for j in _bits(named))
                for vkey in (
                    engine.verdict_key(g, self.node, self.aliases),
                    (-1 - g, named, blind),
                ):
                    engine.verdicts.setdefault(vkey, verdicts)
                    self.out.verdicts.setdefault(vkey, verdicts)
        assert known is not None
        for i, (_, broken) in zip(members, known, strict=True):
            if broken:
                self.record(i, broken)
        if fresh is not None:
            for i, twin in fresh:
                self.successor(i, twin)
            return
        commute = self.level == 1 and fresh is None and engine.use_commute
        for i, (did, _) in zip(members, known, strict=True):
            if did:
                if commute and i < self.node.op and engine.independent(self.node.op, i):
                    # s(a, i) = s(i, a): the state reached by the smaller call
                    # first collects it (and i breaks nothing here: it acts as
                    # from the start state).
                    stats.commuted += 1
                    continue
                twin = self.space().copy()
                twin.apply(engine.ops[i])
                stats.applied += 1
                self.successor(i, twin)


def call_kind(op: Op) -> str:
    """What a counterexample is grouped by: the call, and the advice for madvise."""
    if isinstance(op, Madvise | ProcessMadvise):
        try:
            return f"{op.NAME} {Madv(op.advice).name.lower()}"
        except ValueError:
            return f"{op.NAME} {op.advice}"
    return op.NAME


def _mask(indices: Iterable[int]) -> int:
    out = 0
    for i in indices:
        out |= 1 << i
    return out


_BITS: dict[int, list[int]] = {}


def _bits(mask: int) -> list[int]:
    found = _BITS.get(mask)
    if found is not None:
        return found
    mask_in = mask
    out = []
    i = 0
    while mask:
        if mask & 1:
            out.append(i)
        mask >>= 1
        i += 1
    if len(_BITS) < 1 << 16:
        _BITS[mask_in] = out
    return out


_ENGINE: _Engine | None = None


def _worker_init() -> None:
    # The inherited heap is frozen (gc.freeze() before the fork) and the
    # collector stays off: a collection would walk, and so copy, every page
    # of it.
    gc.disable()


def _run_chunk(level: int, lo: int, hi: int, last: bool, open_props: frozenset[Property]) -> _Chunk:
    assert _ENGINE is not None
    return _ENGINE.expand(level, lo, hi, last, open_props)


def _chunks(total: int, parts: int) -> list[tuple[int, int]]:
    size = max(1, -(-total // parts))
    return [(lo, min(total, lo + size)) for lo in range(0, total, size)]


def search(
    problem: Problem,
    depth: int,
    *,
    workers: int = 1,
    cache: bool = True,
    progress: Callable[[int, int, int], None] | None = None,
) -> SearchResult:
    """Search sequences of up to ``depth`` calls, breadth-first.

    ``workers`` > 1 expands each level in that many forked processes.
    ``cache=False`` turns the locality cache off (every call applied to every
    state). ``progress(level, states_done, states_total)`` is called as
    levels advance.
    """
    global _ENGINE
    started = time.perf_counter()
    engine = _Engine(problem, cache)
    root_layouts = engine._layouts(problem.start)
    engine.root_vec = engine.vector_of(root_layouts)
    root = _Node(-1, -1, engine.key_of(problem.start), engine.root_vec, 0)
    engine.levels.append([root])
    seen: set[Hashable] = engine.seen
    seen.add(root.key)
    stats = SearchStats(levels=[1], workers=workers)
    outcomes: dict[Property, Found | Holds] = {}
    open_props = frozenset(problem.properties)
    # A property broken before any call (a scenario that starts broken) is found at depth 0.
    for prop in engine.violated(root_layouts) & open_props:
        outcomes[prop] = Found(prop, 0, (), {})
    open_props -= frozenset(outcomes)
    context = multiprocessing.get_context("fork")
    level = 0
    while level < depth and open_props:
        frontier = engine.levels[level]
        last = level + 1 == depth
        if progress is not None:
            progress(level + 1, 0, len(frontier))
        chunks: list[_Chunk]
        # The start state is always expanded here: its outcomes answer every
        # later call whose window is untouched.
        if workers > 1 and level > 0 and len(frontier) >= _MIN_PARALLEL:
            _ENGINE = engine
            gc.freeze()  # keep the collector off the pages the workers share
            try:
                with ProcessPoolExecutor(
                    max_workers=workers, mp_context=context, initializer=_worker_init
                ) as pool:
                    futures = [
                        pool.submit(_run_chunk, level, lo, hi, last, open_props)
                        for lo, hi in _chunks(len(frontier), workers * 16)
                    ]
                    chunks = []
                    for n, future in enumerate(futures, 1):
                        chunks.append(future.result())
                        if progress is not None:
                            progress(
                                level + 1,
                                min(len(frontier), n * len(frontier) // len(futures)),
                                len(frontier),
                            )
            finally:
                _ENGINE = None
                gc.unfreeze()
            for chunk in chunks:
                engine.cache.update(chunk.cache)
                for vkey, verdicts in chunk.verdicts.items():
                    engine.verdicts.setdefault(vkey, verdicts)
        else:
            chunks = []
            step = max(1, len(frontier) // 20)
            for lo, hi in _chunks(len(frontier), max(1, len(frontier) // step)):
                chunks.append(engine.expand(level, lo, hi, last, open_props))
                if progress is not None:
                    progress(level + 1, hi, len(frontier))
        nxt: list[_Node] = []
        hits: dict[tuple[Property, str], tuple[int, int]] = {}
        counts: dict[Property, Counter[str]] = {}
        for chunk in chunks:
            stats.add(chunk.stats)
            for slot, where in chunk.hits.items():
                if slot not in hits or where < hits[slot]:
                    hits[slot] = where
            for prop, counter in chunk.counts.items():
                counts.setdefault(prop, Counter()).update(counter)
            for parent, op, key, vec, delta in chunk.successors:
                if key not in seen:
                    seen.add(key)
                    nxt.append(_Node(parent, op, key, vec, delta))
        broken = {prop for prop, _ in hits}
        for prop in broken:
            # One example per final call, in (state, call) order; the first is the answer.
            mine = sorted(where for (p, _), where in hits.items() if p is prop)
            paths = [(*engine.path(level, idx), op) for idx, op in mine]
            outcomes[prop] = Found(prop, level + 1, paths[0], dict(counts[prop]), tuple(paths[1:]))
        open_props -= frozenset(broken)
        level += 1
        if not last:
            engine.levels.append(nxt)
            stats.levels.append(len(nxt))
    expanded_states = sum(len(engine.levels[d]) for d in range(min(level, len(engine.levels))))
    for prop in open_props:
        outcomes[prop] = Holds(prop, level, expanded_states)
    stats.seconds = time.perf_counter() - started
    ordered = {p: outcomes[p] for p in problem.properties}
    return SearchResult(ordered, stats, depth)

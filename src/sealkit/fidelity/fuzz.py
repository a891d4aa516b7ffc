"""Differential fuzzing: random calls on the model and on the kernel, compared.

Two engines share one generator (:func:`gen_op`), which picks calls and
arguments biased toward the edges where implementations go wrong: VMA
borders, sealed/unsealed borders and holes of the model's current layout,
the window's edges, unaligned addresses and lengths, lengths that overflow,
far addresses, every mapping type, every mremap form and every madvise
advice.

* :class:`DifferentialMachine`, a Hypothesis ``RuleBasedStateMachine``: each
  rule draws a call (through Hypothesis, so failures shrink) and applies it to
  the ``linux`` model; at teardown the whole trace runs on the kernel executor
  in one batch and every step is compared (result, layout, exact boundaries
  where defined, VmFlags at the end). A failure prints the minimal trace in
  the text form, ready for ``sealkit replay``. pytest runs it with a short
  profile (``tests/slow/test_fuzz.py``).
* :func:`campaign`, for long runs (``sealkit fuzz``): the same generator
  driven by ``random.Random(seed)``, traces pipelined so the model (and the
  generator) work on the next trace while the kernel worker runs the
  current one; each divergence is shrunk with :func:`shrink`.

What the kernel leaves undefined, and what the fuzzer does not generate, is
listed once, in :data:`UNDEFINED` and :data:`EXCLUDED`.
"""

from __future__ import annotations

import random
import time
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, Final, Protocol, TypeVar

from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, rule

from ..flags import PAGE_SIZE, Madv, MapFlag, MremapFlag, Prot
from ..layout import Layout
from ..ops import (
    FILE_PAGES,
    MASK64,
    MODEL_BASES,
    Brk,
    Fork,
    Madvise,
    Mlock,
    Mmap,
    Mprotect,
    Mremap,
    Mseal,
    Munlock,
    Munmap,
    Op,
    PkeyMprotect,
    ProcessMadvise,
    Step,
    Write,
    format_trace,
)
from .differential import Canon, Divergence, annotate, canonical, compare_runs
from .executor import refusal as kernel_refusal
from .target import FlagMode, ModelTarget, SpaceLike, Target, TraceRun, Window, make_target

__all__ = [
    "EXCLUDED",
    "UNDEFINED",
    "VERIFIED",
    "CampaignResult",
    "Chooser",
    "DataChooser",
    "DifferentialMachine",
    "Found",
    "GenState",
    "RandomChooser",
    "campaign",
    "gen_op",
    "gen_trace",
    "shrink",
]

PS: Final = PAGE_SIZE
T = TypeVar("T")

# ------------------------------------------------------------------ the lists

UNDEFINED: Final[tuple[tuple[str, str], ...]] = (
    (
        "placement of a mapping the kernel chooses (mmap without MAP_FIXED whose hint is "
        "taken, mremap MAYMOVE that cannot grow in place, DONTUNMAP/old_len=0 without a target)",
        "generated; both sides must say `elsewhere`, and the window must lose what moved; "
        "where it lands is not compared (the executor's arena sits far below the kernel's "
        "top-down area, so the kernel never picks a window address)",
    ),
    (
        "content of pages after MADV_FREE, until they are written again",
        "generated; the model says `?`, which matches any kernel content (the kernel drops "
        "lazily-freed pages only under reclaim: a later MADV_PAGEOUT makes them zero, and the "
        "kernel workers stay on one CPU so that it always does; in a fork child, pages still "
        "shared with the parent survive PAGEOUT, and the model, which does not track "
        "copy-on-write per page, keeps a forked VMA's lazily freed pages `?`)",
    ),
    (
        "residency (MADV_PAGEOUT/COLD/WILLNEED/POPULATE_*, MAP_POPULATE, mlock): "
        "which pages are in RAM",
        "generated; results, VMAs and content are compared, residency is not observed",
    ),
    (
        "VMA boundaries that only depend on when the kernel merges (anon_vma history, rule 15 "
        "case 10.3)",
        "compared in the merged form; exact boundaries are compared where the spec defines "
        "them (the leftover split at the ends of a munmap/MAP_FIXED range refused with EPERM; "
        "the refused brk shrink is conformance scenario 8.1), or everywhere with --exact",
    ),
    (
        "tracked VmFlags (dc wf lo lf hg nh dd rr sr mg gd) between checkpoints",
        "read from smaps at trace end by default (--flags flag-ops: after every call that can "
        "change them; --flags every: after every call)",
    ),
)
"""Cases the kernel leaves undefined or unobservable, and how the fuzzer treats each."""

EXCLUDED: Final[tuple[tuple[str, str], ...]] = (
    ("MADV_HWPOISON, MADV_SOFT_OFFLINE", "take physical pages offline where "
     "CONFIG_MEMORY_FAILURE=y (EINVAL on the reference kernel); the executor refuses them"),
    ("addresses outside the window (other than far ones)", "the executor refuses them: it "
     "never touches the worker's own mappings"),
    ("MAP_HUGETLB", "the result depends on the machine's hugepage pool, not on sealing"),
    ("MAP_DROPPABLE (mapping type 0x08)", "content may vanish under memory pressure"),
    ("pkey_mprotect with an allocated pkey > 0", "no PKU on the reference machine "
     "(pkey_alloc is EINVAL); pkeys -1, 0 and 1 are generated"),
    ("mseal_v1, mseal_v3, mimmutable, mseal_split", "calls Linux does not have (ENOSYS); "
     "compared only by the conformance suite across policies"),
    ("shmat, remap_file_pages, msync, mincore, mlockall, /proc/PID/mem writes, vdso, stack",
     "not in the op language (see sealkit.fidelity.conformance.NOT_EXPRESSIBLE)"),
)  # fmt: skip
"""Calls and arguments the fuzzer never generates, and why."""

VERIFIED: Final[dict[str, str]] = {
    "after every call": "the result; each zone's layout in the merged canonical form: runs "
    "with protection, shared, backing, file/shmem page offset, seal, and one content token "
    "per page (model `?` matches anything)",
    "after a munmap or mmap(MAP_FIXED) refused with EPERM": "the exact VMA boundaries at the "
    "ends of the call's range (the leftover split, spec rule 5); every boundary with --exact",
    "at flag checkpoints": "the tracked VmFlags from /proc/self/smaps, and the seal probe "
    "against smaps `sl`",
}
"""What the fuzzer compares, and when (printed in its report)."""

# ------------------------------------------------------------------ choosers


class Chooser(Protocol):
    """Where the generator's decisions come from. The first option, 0 and
    ``False`` are the "simplest" choices (Hypothesis shrinks toward them)."""

    def pick(self, options: Sequence[T]) -> T: ...

    def below(self, n: int) -> int: ...

    def chance(self, percent: int) -> bool: ...


class RandomChooser:
    """Decisions from a seeded :class:`random.Random` (fast: the campaign)."""

    def __init__(self, rng: random.Random) -> None:
        self.random = rng.random

    def pick(self, options: Sequence[T]) -> T:
        return options[int(self.random() * len(options))]

    def below(self, n: int) -> int:
        return int(self.random() * n) if n > 0 else 0

    def chance(self, percent: int) -> bool:
        return self.random() * 100 < percent


class DataChooser:
    """Decisions drawn through Hypothesis (``st.data()``), so failures shrink."""

    def __init__(self, data: Any) -> None:
        self._data = data

    def pick(self, options: Sequence[T]) -> T:
        return self._data.draw(st.sampled_from(options))  # type: ignore[no-any-return]

    def below(self, n: int) -> int:
        return self._data.draw(st.integers(0, n - 1)) if n > 1 else 0

    def chance(self, percent: int) -> bool:
        # Shrinks toward 0, i.e. toward "no": the common branch.
        return bool(self._data.draw(st.integers(0, 99)) >= 100 - percent)


# ------------------------------------------------------------------ generator

ADVICES: Final = tuple(a for a in Madv if a not in (Madv.HWPOISON, Madv.SOFT_OFFLINE))
_BAD_ADVICES: Final = (5, 6, 7, 26, 99, 104, 12345, -1)
_PROTS: Final = (3, 1, 0, 3, 1, 5, 7, 2, 4, 6)
_ODD_PROTS: Final = (8, 0x1000001, 0x2000003, 0x10, 0x7FFFFFFF)
_EXTRA_FLAGS: Final = (
    MapFlag.NORESERVE, MapFlag.POPULATE, MapFlag.LOCKED, MapFlag.GROWSDOWN, MapFlag.STACK,
    MapFlag.NONBLOCK, MapFlag.DENYWRITE, MapFlag.EXECUTABLE, MapFlag.SEALABLE,
    MapFlag.UNINITIALIZED, MapFlag.SYNC,
)  # fmt: skip
_WRAP_LENGTHS: Final = (
    MASK64,
    MASK64 - 4094,
    MASK64 - 4095,
    (1 << 64) - 2 * PS,
    (1 << 64) - (1 << 40),
)
_FAR: Final = (
    0xFFFF_8000_0000_0000,
    0xFFFF_FFFF_FF60_0000,
    0x7FFF_FFFF_F000,
    0xFFFF_FFFF_FFFF_F000,
)
_UNALIGNED: Final = (1, PS // 2, PS - 1)


@dataclass(slots=True)
class GenState:
    """What the generator knows: the window, the model's current runs (for the
    borders it aims at), whether this trace uses the heap, forks so far."""

    window: Window
    heap: bool = False
    borders: list[int] = field(default_factory=lambda: [0])
    heap_borders: list[int] = field(default_factory=lambda: [0])
    mapped: list[tuple[int, int]] = field(default_factory=list)
    forks: int = 0
    fork_budget: int = 1

    def observe(self, canon: Canon, zone: str = "p") -> None:
        """Learn the borders of ``zone`` from the model's canonical runs."""
        marks = {0}
        spans = []
        for run in canon:
            marks.add(run[0])
            marks.add(run[1])
            spans.append((run[0], run[1]))
        if zone == "p":
            marks.add(self.window.pages)
            self.borders = sorted(marks)
            self.mapped = spans
        else:
            marks.add(self.window.heap_pages)
            self.heap_borders = sorted(marks)


def _page(c: Chooser, st: GenState, zone: str, hi: int) -> int:
    borders = st.borders if zone == "p" else st.heap_borders
    roll = c.below(10)
    if roll < 5:
        page = c.pick(borders)
    elif roll < 7:
        page = c.pick(borders) + c.pick((-1, 1))
    elif roll < 8 and zone == "p" and st.mapped:
        lo, end = c.pick(st.mapped)
        page = lo + c.below(max(end - lo, 1))
    else:
        page = c.below(hi + 1)
    return min(max(page, 0), hi)


def _range(c: Chooser, st: GenState, zone: str = "p", *, far: bool = True) -> tuple[int, int]:
    """An (address, length) inside the zone's window (page-rounded outward), or
    occasionally a far or wrapping range that the executor allows."""
    hi = st.window.pages if zone == "p" else st.window.heap_pages
    base = MODEL_BASES.base(zone)
    if far and c.chance(2):
        return c.pick(_FAR), c.pick((PS, 2 * PS, 0, 1 << 40))
    start = _page(c, st, zone, hi)
    off = c.pick(_UNALIGNED) if c.chance(4) and start < hi else 0
    room = hi - start - (1 if off else 0)
    if c.chance(3):
        return base + start * PS + off, c.pick(_WRAP_LENGTHS)
    if room <= 0:
        return base + start * PS + off, c.pick((0, 0, PS)) if room == 0 and not off else 0
    # Aim the end at a border most of the time.
    borders = st.borders if zone == "p" else st.heap_borders
    ends = [b for b in borders if start < b <= start + room]
    pages = c.pick(ends) - start if ends and c.chance(60) else c.below(room) + 1
    length = pages * PS
    tweak = c.below(20)
    if tweak == 0:
        length = 0
    elif tweak == 1 and pages < room:
        length += 1
    elif tweak == 2:
        length -= 1
    return base + start * PS + off, length


def _prot(c: Chooser) -> int:
    return c.pick(_ODD_PROTS) if c.chance(3) else c.pick(_PROTS)


def _zone(c: Chooser, st: GenState) -> str:
    return "h" if st.heap and c.chance(30) else "p"


def gen_op(c: Chooser, st: GenState) -> Op:
    """One call, biased toward the edges of the model's current layout."""
    kind = c.pick(_KINDS)
    zone = _zone(c, st)
    if kind == "mmap":
        return _gen_mmap(c, st, zone)
    if kind == "munmap":
        return Munmap(*_range(c, st, zone))
    if kind == "mprotect":
        return Mprotect(*_range(c, st, zone), Prot(_prot(c)))
    if kind == "pkey_mprotect":
        return PkeyMprotect(*_range(c, st, zone), Prot(_prot(c)), c.pick((-1, -1, -1, 0, 1)))
    if kind == "mremap":
        return _gen_mremap(c, st, zone)
    if kind == "madvise":
        advice = c.pick(_BAD_ADVICES) if c.chance(3) else c.pick(ADVICES)
        return Madvise(*_range(c, st, zone), advice)
    if kind == "process_madvise":
        advice = c.pick(ADVICES)
        ranges = tuple(_range(c, st, zone, far=False) for _ in range(c.below(3) + 1))
        return ProcessMadvise(advice, ranges)
    if kind == "mseal":
        flags = c.pick((1, MASK64, 2)) if c.chance(3) else 0
        return Mseal(*_range(c, st, zone), flags)
    if kind == "mlock":
        return Mlock(*_range(c, st, zone), c.chance(30))
    if kind == "munlock":
        return Munlock(*_range(c, st, zone))
    if kind == "write":
        addr, length = _range(c, st, zone)
        tag = chr(ord("a") + c.below(26)) if c.chance(30) else None
        return Write(addr, length, tag)
    if kind == "brk" and st.heap:
        return _gen_brk(c, st)
    if kind == "fork" and st.forks < st.fork_budget:
        st.forks += 1
        return Fork()
    return Mseal(*_range(c, st, zone))


_KINDS: Final = (
    ("mmap",) * 20 + ("munmap",) * 7 + ("mprotect",) * 10 + ("pkey_mprotect",) * 2
    + ("mremap",) * 9 + ("madvise",) * 12 + ("process_madvise",) * 3 + ("mseal",) * 12
    + ("mlock",) * 3 + ("munlock",) * 2 + ("write",) * 9 + ("brk",) * 5 + ("fork",) * 2
)  # fmt: skip
"""Weights of the calls: one entry per chance in a hundred or so. A fork costs
the kernel side a process (~3 ms), so a trace gets at most ``fork_budget``."""


def _gen_mmap(c: Chooser, st: GenState, zone: str) -> Mmap:
    kind = c.below(20)
    flags = MapFlag.PRIVATE
    if kind < 6:
        flags = MapFlag.SHARED
    elif kind == 6:
        flags = MapFlag.SHARED_VALIDATE
    elif kind == 7:
        flags = MapFlag(0)
    file = None
    ro = False
    offset = 0
    if c.chance(40):
        file = c.pick(("f1", "f2"))
        ro = c.chance(30)
        pages = c.below(FILE_PAGES + 4) if c.chance(20) else c.below(8)
        offset = pages * PS + (c.pick(_UNALIGNED) if c.chance(2) else 0)
    else:
        flags |= MapFlag.ANONYMOUS
    place = c.below(20)
    if place < 15:
        flags |= MapFlag.FIXED
    elif place < 17:
        flags |= MapFlag.FIXED_NOREPLACE
    for _ in range(c.below(3) if c.chance(15) else 0):
        flags |= c.pick(_EXTRA_FLAGS)
    prot = Prot(_prot(c))
    if place >= 17 and c.chance(20):
        return Mmap(0, c.pick((PS, 2 * PS, 3 * PS)), prot, flags, file, offset, ro)
    addr, length = _range(c, st, zone, far=place < 17)
    return Mmap(addr, length, prot, flags, file, offset, ro)


def _gen_mremap(c: Chooser, st: GenState, zone: str) -> Mremap:
    hi = st.window.pages if zone == "p" else st.window.heap_pages
    base = MODEL_BASES.base(zone)
    addr, old = _range(c, st, zone, far=c.chance(20))
    start_page = (addr - base) // PS if 0 <= addr - base < hi * PS + PS else 0
    room = max(hi - start_page, 0)
    form = c.below(12)
    if form < 3:  # shrink or grow in place, maybe allowed to move
        new = (c.below(room) + 1) * PS if room else PS
        flags = MremapFlag.MAYMOVE if c.chance(50) else MremapFlag.NONE
        return Mremap(addr, old, new, flags)
    if form < 7:  # move to a fixed target in the window
        new_len = old if c.chance(50) or old >= 1 << 63 else (c.below(4) + 1) * PS
        tgt_page = _page(c, st, zone, hi)
        new_len = min(new_len, max(hi - tgt_page, 0) * PS) if new_len < 1 << 63 else new_len
        flags = MremapFlag.MAYMOVE | MremapFlag.FIXED
        if c.chance(30):
            flags |= MremapFlag.DONTUNMAP
        return Mremap(addr, old, new_len, flags, base + tgt_page * PS)
    if form < 9:  # DONTUNMAP to wherever the kernel likes
        return Mremap(addr, old, old, MremapFlag.MAYMOVE | MremapFlag.DONTUNMAP)
    if form < 11:  # old_len = 0: duplicate a shared mapping
        new = (c.below(max(room, 1)) + 1) * PS
        return Mremap(addr, 0, new, MremapFlag.MAYMOVE)
    bad = c.pick((MremapFlag.FIXED, MremapFlag.DONTUNMAP, MremapFlag(8), MremapFlag(0x13)))
    return Mremap(addr, old, old, bad, base + _page(c, st, zone, hi) * PS)


def _gen_brk(c: Chooser, st: GenState) -> Brk:
    if c.chance(10):
        return Brk(0)
    page = _page(c, st, "h", st.window.heap_pages)
    off = c.pick(_UNALIGNED) if c.chance(5) and page < st.window.heap_pages else 0
    return Brk(MODEL_BASES.heap + page * PS + off)


# ------------------------------------------------------------------ traces


@dataclass(slots=True)
class _ModelTrace:
    ops: list[Op]
    run: TraceRun
    canon: list[dict[str, Canon]]


_StateKey = tuple[tuple[object, ...], tuple[tuple[str, object], ...], tuple[object, ...]]


def _state_key(space: SpaceLike, window: Window) -> _StateKey | None:
    """What the model's layouts of the window are a function of, for
    :class:`sealkit.model.AddressSpace` (whose VMAs are immutable once stored
    and whose object contents are replaced, never changed in place): the VMAs
    over the zones, the backing objects and the break. ``None`` for other
    spaces (their layouts are never reused)."""
    vmas = getattr(space, "vmas", None)
    objects = getattr(space, "objects", None)
    if vmas is None or not isinstance(objects, dict) or not hasattr(vmas, "range"):
        return None
    p_lo = MODEL_BASES.base("p")
    h_lo = MODEL_BASES.base("h")
    return (
        (*vmas.range(p_lo, p_lo + window.pages * PS), None,
         *vmas.range(h_lo, h_lo + window.heap_pages * PS)),
        tuple(objects.items()),
        (getattr(space, "brk", None), getattr(space, "start_brk", None)),
    )  # fmt: skip


def _same_state(a: _StateKey, b: _StateKey) -> bool:
    """The same VMA objects, the same object contents (by identity: both are
    immutable) and the same break."""
    return (
        a[2] == b[2]
        and len(a[0]) == len(b[0])
        and len(a[1]) == len(b[1])
        and all(x is y for x, y in zip(a[0], b[0], strict=True))
        and all(x[0] == y[0] and x[1] is y[1] for x, y in zip(a[1], b[1], strict=True))
    )


def gen_trace(
    c: Chooser, window: Window, length: int, model: ModelTarget, *, heap: bool = False,
    forks: int = 0, refusal: Callable[[Op, bool], str | None] | None = None,
) -> _ModelTrace:  # fmt: skip
    """Generate ``length`` calls on a fresh address space of ``model``
    (applying them as it goes: the generator steers by the model's state),
    with at most ``forks`` fork calls; the trace's run is ``model``'s
    :class:`~sealkit.fidelity.target.TraceRun`. ``refusal(op, heap)`` keeps
    the calls to what the other side runs (default: the kernel executor's
    rules for ``window``)."""
    refuse = refusal or (lambda op, heap: kernel_refusal(op, window, heap))
    space = model.space()
    st = GenState(window, heap=heap, fork_budget=forks)
    zones = ("p", "h") if heap else ("p",)
    ops: list[Op] = []
    run = TraceRun(model.name, (), window, zones)
    canon: list[dict[str, Canon]] = []
    key: _StateKey | None = None
    lays: dict[str, Layout] = {}
    cans: dict[str, Canon] = {}
    for _ in range(length):
        op = gen_op(c, st)
        if refuse(op, heap) is not None or (not heap and isinstance(op, Brk)):
            continue
        ops.append(op)
        run.results.append(space.apply(op))
        run.flags_checked.append(True)
        now = _state_key(space, window)
        if now is None or key is None or not _same_state(now, key):
            # Rendering the model's layout is most of the controller's time;
            # a call that left the model's state untouched (most refusals)
            # leaves the layout as it was, so the same objects are reused.
            lays, cans = {}, {}
            for z in zones:
                lay = space.layout(z, 0, window.pages if z == "p" else window.heap_pages)
                lays[z] = lay
                cans[z] = canonical(lay.runs, flags=False)
                st.observe(cans[z], z)
        key = now
        run.layouts.append(lays)
        canon.append(cans)
    # A heap trace must say so even if no heap call survived (uses_heap decides zones).
    if heap and not any(isinstance(op, Brk) for op in ops):
        ops.append(Brk(0))
        run.results.append(space.apply(ops[-1]))
        run.flags_checked.append(True)
        run.layouts.append(
            {z: space.layout(z, 0, window.pages if z == "p" else window.heap_pages) for z in zones}
        )
        last = run.layouts[-1]
        assert last is not None
        canon.append({z: canonical(last[z].runs, flags=False) for z in zones})
    run.ops = tuple(ops)
    return _ModelTrace(ops, run, canon)


# ------------------------------------------------------------------ shrinking


def _simpler(op: Op) -> list[Op]:
    """Simpler variants of one call (each removes one complication)."""
    out: list[Op] = []
    if isinstance(op, Write) and op.tag is not None:
        out.append(replace(op, tag=None))
    if isinstance(op, Mmap):
        for bit in MapFlag:
            if bit in _EXTRA_FLAGS and op.flags & bit:
                out.append(replace(op, flags=MapFlag(op.flags & ~bit)))
        if op.offset:
            out.append(replace(op, offset=0))
        if op.file_ro:
            out.append(replace(op, file_ro=False))
    if isinstance(op, Mseal) and op.flags:
        out.append(replace(op, flags=0))
    if isinstance(op, Mlock) and op.onfault:
        out.append(replace(op, onfault=False))
    if isinstance(op, PkeyMprotect):
        out.append(Mprotect(op.addr, op.length, op.prot))
    length = getattr(op, "length", None)
    if isinstance(length, int) and length % PS and length < 1 << 40:
        out.append(replace(op, length=(length + PS - 1) // PS * PS))  # type: ignore[call-arg]
    addr = getattr(op, "addr", None)
    if isinstance(addr, int) and addr % PS and MODEL_BASES.zone_of(addr):
        out.append(replace(op, addr=addr - addr % PS))  # type: ignore[call-arg]
    if isinstance(op, ProcessMadvise) and len(op.ranges) > 1:
        out += [replace(op, ranges=(r,)) for r in op.ranges]
    return out


def shrink(
    ops: Sequence[Op],
    fails: Callable[[list[Op]], Divergence | None],
    *,
    budget: int = 400,
) -> tuple[list[Op], Divergence | None]:
    """A smaller trace that still diverges: drop what follows the divergence,
    then chunks and single calls (delta debugging), then simplify calls one
    complication at a time. ``fails`` runs a candidate on both sides."""
    best = list(ops)
    found = fails(best)
    if found is None:
        return best, None
    tries = 0

    def attempt(candidate: list[Op]) -> bool:
        nonlocal best, found, tries
        if tries >= budget or not candidate:
            return False
        tries += 1
        got = fails(candidate)
        if got is None:
            return False
        best, found = candidate, got
        return True

    if found.step is not None and found.step + 1 < len(best):
        attempt(best[: found.step + 1])
    chunk = max(len(best) // 2, 1)
    while chunk >= 1 and tries < budget:
        i = 0
        progressed = False
        while i < len(best) and tries < budget:
            if attempt(best[:i] + best[i + chunk :]):
                progressed = True
                if found.step is not None and found.step + 1 < len(best):
                    attempt(best[: found.step + 1])
            else:
                i += chunk
        if not progressed:
            chunk //= 2
    changed = True
    while changed and tries < budget:
        changed = False
        for i in range(len(best)):
            for variant in _simpler(best[i]):
                if attempt([*best[:i], variant, *best[i + 1 :]]):
                    changed = True
                    break
    return best, found


# ------------------------------------------------------------------ campaign


@dataclass(slots=True)
class Found:
    """One divergence: the trace as found and as shrunk, both annotated."""

    divergence: Divergence
    trace: str
    shrunk: str
    shrunk_divergence: Divergence | None
    calls: int

    def to_json(self) -> dict[str, Any]:
        return {
            "divergence": self.divergence.to_json(),
            "calls": self.calls,
            "trace": self.trace,
            "shrunk": self.shrunk,
            "shrunk_divergence": None
            if self.shrunk_divergence is None
            else self.shrunk_divergence.to_json(),
        }


@dataclass(slots=True)
class CampaignResult:
    """What a campaign did."""

    seed: int
    calls: int = 0
    traces: int = 0
    seconds: float = 0.0
    found: list[Found] = field(default_factory=list)
    deaths: int = 0
    workers: int = 0
    runners: int = 0
    flags: str = "end"
    exact: bool = False
    window: Window = field(default_factory=Window)

    @property
    def rate(self) -> float:
        """Verified calls per second."""
        return self.calls / self.seconds if self.seconds else 0.0

    def to_json(self) -> dict[str, Any]:
        return {
            "seed": self.seed,
            "calls": self.calls,
            "traces": self.traces,
            "seconds": round(self.seconds, 3),
            "calls_per_second": round(self.rate, 1),
            "divergences": [f.to_json() for f in self.found],
            "worker_deaths": self.deaths,
            "workers_started": self.workers,
            "runners": self.runners,
            "window": {"pages": self.window.pages, "heap_pages": self.window.heap_pages},
            "flags_checked": self.flags,
            "exact": self.exact,
            "verified": VERIFIED,
            "undefined": [{"case": a, "treatment": b} for a, b in UNDEFINED],
            "excluded": [{"case": a, "reason": b} for a, b in EXCLUDED],
        }


def _fails_with(
    reference: Target, model: Target, flags: FlagMode, exact: bool
) -> Callable[[list[Op]], Divergence | None]:
    def fails(candidate: list[Op]) -> Divergence | None:
        if any(reference.refusal(op, True) for op in candidate):
            return None
        run = model.run(candidate)
        kernel = reference.run(candidate, flags=flags)
        return compare_runs(run, kernel, exact=exact)

    return fails


def campaign(
    calls: int,
    seed: int = 0,
    *,
    window: Window | None = None,
    trace_length: tuple[int, int] = (60, 200),
    flags: FlagMode = "end",
    exact: bool = False,
    heap_percent: int = 15,
    fork_percent: int = 8,
    max_found: int = 5,
    progress: Callable[[int], None] | None = None,
    executor: Target | None = None,
    workers: int = 1,
    policy: str = "linux",
    space_factory: Callable[[], SpaceLike] | None = None,
) -> CampaignResult:
    """Run about ``calls`` random calls on the model (``policy``) and on the
    kernel, compare every one, shrink every divergence (up to ``max_found``).
    ``executor``: the :class:`~sealkit.fidelity.target.Target` to hold the
    model to (default: ``workers`` kernel executors).

    The model runs here while ``workers`` kernel workers run the traces
    generated before (each keeps two traces queued), so the model and the
    kernel work in parallel; with two workers the kernel side uses both
    cores when the model leaves room.
    """
    win = window or Window()
    rng = random.Random(seed)
    chooser = RandomChooser(rng)
    result = CampaignResult(seed, flags=flags, exact=exact, window=win)
    model = ModelTarget(policy, win, space_factory=space_factory)
    own = executor is None
    kxs = (
        [executor]
        if executor is not None
        else [make_target("kernel", win, cpu=i if workers > 1 else None) for i in range(workers)]
    )
    refusal = kxs[0].refusal
    queues: list[deque[_ModelTrace]] = [deque() for _ in kxs]
    divergent: list[tuple[_ModelTrace, TraceRun, Divergence]] = []
    made = 0

    def feeder(queue: deque[_ModelTrace]) -> Iterator[list[Op]]:
        nonlocal made
        while made < calls and len(divergent) < max_found:
            length = trace_length[0] + rng.randrange(trace_length[1] - trace_length[0] + 1)
            heap = rng.random() * 100 < heap_percent
            forks = 1 if rng.random() * 100 < fork_percent else 0
            mt = gen_trace(
                chooser, win, min(length, calls - made), model, heap=heap, forks=forks,
                refusal=refusal,
            )  # fmt: skip
            made += len(mt.ops)
            queue.append(mt)
            yield mt.ops

    started = time.perf_counter()
    # The generator already keeps every call where the executor runs it
    # (refusal()), and the worker re-checks before running: no second check here.
    streams = [
        kx.run_many(feeder(q), flags=flags, prechecked=True)
        for kx, q in zip(kxs, queues, strict=True)
    ]
    try:
        active = list(range(len(streams)))
        while active and len(divergent) < max_found:
            for i in list(active):
                try:
                    krun = next(streams[i])
                except StopIteration:
                    active.remove(i)
                    continue
                mt = queues[i].popleft()
                result.traces += 1
                result.calls += len(mt.ops)
                div = compare_runs(mt.run, krun, exact=exact, canon_cache=mt.canon)
                if div is not None:
                    divergent.append((mt, krun, div))
                if progress is not None:
                    progress(len(mt.ops))
        result.seconds = time.perf_counter() - started
        for stream in streams:
            stream.close()
        fails = _fails_with(kxs[0], model, flags, exact)
        for mt, krun, div in divergent[:max_found]:
            small, small_div = shrink(mt.ops, fails)
            small_model = model.run(small)
            small_kernel = kxs[0].run(small, flags=flags)
            result.found.append(
                Found(
                    div,
                    annotate(mt.ops, krun, mt.run, div),
                    annotate(small, small_kernel, small_model, small_div),
                    small_div,
                    len(mt.ops),
                )
            )
    except BaseException as exc:
        if own and not isinstance(exc, Exception):
            # Interrupted (KeyboardInterrupt, SystemExit): kill the workers now
            # rather than let close() wait for the traces they hold.
            for kx in kxs:
                kx.terminate()
        raise
    finally:
        usages = [kx.usage() for kx in kxs]
        result.deaths = sum(u.deaths for u in usages)
        result.workers = sum(u.workers for u in usages)
        result.runners = sum(u.runners for u in usages)
        if own:
            for kx in kxs:
                kx.close()
    return result


# ------------------------------------------------------------------ Hypothesis


class DifferentialMachine(RuleBasedStateMachine):
    """Hypothesis state machine: random calls on the ``linux`` model, the whole
    trace replayed on the kernel at teardown and compared step by step.

    Configure through class attributes (``executor`` must be set; tests share
    one worker): ``window``, ``flags``, ``exact``, ``heap``, ``policy``.
    """

    executor: Target | None = None
    window: Window = Window()
    flags: FlagMode = "end"
    exact: bool = False
    heap: bool = False
    policy: str = "linux"
    space_factory: Callable[[], SpaceLike] | None = None

    def __init__(self) -> None:
        super().__init__()
        cls = type(self)
        target = ModelTarget(cls.policy, cls.window, space_factory=cls.space_factory)
        self.space = target.space()
        self.state = GenState(cls.window, heap=cls.heap)
        zones = ("p", "h") if cls.heap else ("p",)
        self.model = TraceRun(target.name, (), cls.window, zones)
        self.ops: list[Op] = []

    @rule(data=st.data())
    def call(self, data: Any) -> None:
        """Draw one call, apply it to the model, remember it for teardown."""
        cls = type(self)
        op = gen_op(DataChooser(data), self.state)
        refused = (
            cls.executor.refusal(op, cls.heap)
            if cls.executor is not None
            else kernel_refusal(op, cls.window, cls.heap)
        )
        if refused is not None or (not cls.heap and isinstance(op, Brk)):
            return
        self.ops.append(op)
        self.model.results.append(self.space.apply(op))
        self.model.flags_checked.append(True)
        lays = {}
        for z in self.model.zones:
            lay = self.space.layout(z, 0, cls.window.pages if z == "p" else cls.window.heap_pages)
            lays[z] = lay
            self.state.observe(canonical(lay.runs, flags=False), z)
        self.model.layouts.append(lays)

    def teardown(self) -> None:
        cls = type(self)
        if not self.ops or cls.executor is None:
            return
        ops = list(self.ops)
        if cls.heap and not any(isinstance(op, Brk) for op in ops):
            ops.append(Brk(0))
            self.model.results.append(self.space.apply(ops[-1]))
            self.model.flags_checked.append(True)
            self.model.layouts.append(
                {
                    z: self.space.layout(
                        z, 0, cls.window.pages if z == "p" else cls.window.heap_pages
                    )
                    for z in self.model.zones
                }
            )
        self.model.ops = tuple(ops)
        kernel = cls.executor.run(ops, flags=cls.flags)
        div = compare_runs(self.model, kernel, exact=cls.exact)
        if div is not None:
            raise AssertionError(
                f"model and kernel diverge\n{div.describe()}\n\ntrace (kernel results; "
                f"replay with `sealkit replay FILE --diff`):\n"
                + annotate(ops, kernel, self.model, div)
            )


def trace_text(ops: Sequence[Op]) -> str:
    """``ops`` in the text form (no results)."""
    return format_trace([Step(op) for op in ops])

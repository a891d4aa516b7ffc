"""The fuzzer's generator: calls biased toward the edges of the model's current layout.

Decisions come from a :class:`Chooser`: a seeded :class:`random.Random`
(:class:`RandomChooser`, the campaign) or Hypothesis (:class:`DataChooser`,
the state machine, so failures shrink). Only :class:`DataChooser` needs
Hypothesis (an optional dependency), and imports it when it is made. :func:`gen_op` picks one call;
:func:`gen_trace` generates a trace on a model, applying each call as it
goes, and records the model's run.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Final, Protocol, TypeVar

from ...flags import PAGE_SIZE, Madv, MapFlag, MclFlag, MremapFlag, MsFlag, Prot
from ...layout import Layout
from ...ops import (
    FILE_PAGES,
    MASK64,
    MEMORY_WRITES,
    MODEL_BASES,
    Brk,
    FilePwrite,
    Fork,
    Ftruncate,
    Madvise,
    Mincore,
    Mlock,
    Mlockall,
    Mmap,
    Mprotect,
    Mremap,
    Mseal,
    Msync,
    Munlock,
    Munlockall,
    Munmap,
    Op,
    PkeyMprotect,
    ProcessMadvise,
    Punch,
    Step,
    Write,
    format_trace,
)
from ..differential import Canon, canonical
from ..executor import refusal as kernel_refusal
from ..target import ModelTarget, SpaceLike, TraceRun, Window

__all__ = [
    "ADVICES",
    "Chooser",
    "DataChooser",
    "GenState",
    "ModelTrace",
    "RandomChooser",
    "gen_op",
    "gen_trace",
]

PS: Final = PAGE_SIZE
T = TypeVar("T")


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
        from hypothesis import strategies  # noqa: PLC0415 (optional: the campaign never needs it)

        self._data = data
        self._st = strategies

    def pick(self, options: Sequence[T]) -> T:
        return self._data.draw(self._st.sampled_from(options))  # type: ignore[no-any-return]

    def below(self, n: int) -> int:
        return self._data.draw(self._st.integers(0, n - 1)) if n > 1 else 0

    def chance(self, percent: int) -> bool:
        # Shrinks toward 0, i.e. toward "no": the common branch.
        return bool(self._data.draw(self._st.integers(0, 99)) >= 100 - percent)


# ------------------------------------------------------------------ generator

ADVICES: Final = tuple(a for a in Madv if a not in (Madv.HWPOISON, Madv.SOFT_OFFLINE))
_BAD_ADVICES: Final = (5, 6, 7, 26, 99, 104, 12345, -1)
_PROTS: Final = (3, 1, 0, 3, 1, 5, 7, 2, 4, 6)
_ODD_PROTS: Final = (8, 0x1000001, 0x2000003, 0x10, 0x7FFFFFFF)
EXTRA_FLAGS: Final = (
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
    writer = MEMORY_WRITES.get(kind)
    if writer is not None:
        addr, length = _write_range(c, st, zone)
        tag = chr(ord("a") + c.below(26)) if c.chance(30) else None
        return writer(addr, length, tag)
    if kind in ("file_pwrite", "ftruncate", "punch"):
        return _gen_file_call(c, kind)
    if kind == "msync":
        flags = c.pick(_MSYNC_ODD) if c.chance(5) else c.pick(_MSYNC_FLAGS)
        return Msync(*_range(c, st, zone), MsFlag(flags))
    if kind == "mincore":
        return Mincore(*_range(c, st, zone))
    if kind == "mlockall":
        # Rare (it locks, and with MCL_CURRENT faults in, the whole runner)
        # and mostly undone again.
        if c.chance(60):
            return Munlockall()
        return Mlockall(MclFlag(c.pick(_MLOCKALL_ODD) if c.chance(5) else c.pick(_MLOCKALL)))
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
    + ("pwrite_mem",) * 3 + ("vm_writev",) * 2 + ("poke",) * 1
    + ("file_pwrite",) * 3 + ("ftruncate",) * 2 + ("punch",) * 1
    + ("msync",) * 2 + ("mincore",) * 1 + ("mlockall",) * 1
)  # fmt: skip
"""Weights of the calls: one entry per chance in a hundred or so. A fork costs
the kernel side a process (~3 ms), so a trace gets at most ``fork_budget``; a
``poke`` forks a ptrace helper and ``mlockall(MCL_CURRENT)`` faults in the
whole runner (~20 ms), so both are rare."""

_MSYNC_FLAGS: Final = (1, 4, 2, 3, 6, 0)
_MSYNC_ODD: Final = (5, 8, 7, 0x10, 0xFFFF_FFFF)
_MLOCKALL: Final = (5, 5, 6, 7, 3, 1, 2)  # onfault mostly: MCL_CURRENT alone faults in everything
_MLOCKALL_ODD: Final = (0, 4, 8, 0x10)
_FILES: Final = ("f1", "f2")


def _write_range(c: Chooser, st: GenState, zone: str) -> tuple[int, int]:
    """A writer's byte range: inside the window (its data must be; a forced
    write would otherwise reach the arena's PROT_NONE guard pages), now and
    then a page in part, empty, or far away where nothing is mapped."""
    hi = st.window.pages if zone == "p" else st.window.heap_pages
    base = MODEL_BASES.base(zone)
    roll = c.below(40)
    if roll == 0:
        return c.pick((0, 0xFFFF_8000_0000_0000, 0x1000)), c.pick((PS, 8, 0))
    start = _page(c, st, zone, hi)
    if start >= hi:
        start = hi - 1
    room = hi - start
    if roll <= 3:  # a part of a page (mixed bytes: `?`)
        off = c.pick((8, 100, PS // 2, PS - 8))
        return base + start * PS + off, c.pick((8, 100, PS // 2, PS)) if room > 1 else 8
    borders = st.borders if zone == "p" else st.heap_borders
    ends = [b for b in borders if start < b <= start + room]
    pages = c.pick(ends) - start if ends and c.chance(60) else c.below(room) + 1
    return base + start * PS, 0 if roll == 4 else pages * PS


def _file_page(c: Chooser) -> int:
    """A file page, mostly where the generated mappings look (their offsets
    are 0..8 pages), now and then anywhere in the file or past its end."""
    return c.below(12) if c.chance(70) else c.below(FILE_PAGES + 8)


def _gen_file_call(c: Chooser, kind: str) -> Op:
    file = c.pick(_FILES)
    ro = c.chance(4)
    if kind == "ftruncate":
        if c.chance(4):
            length = c.pick((MASK64, (1 << 63) - PS, PS // 2, 3 * PS + 100))
        else:
            length = c.pick((_file_page(c), c.below(2 * FILE_PAGES), FILE_PAGES)) * PS
        return Ftruncate(file, length, ro)
    offset = _file_page(c) * PS
    length = (c.below(8) + 1) * PS
    if c.chance(5):
        offset += c.pick((100, PS // 2))
    if c.chance(5):
        length = c.pick((0, 100, PS + 100, MASK64 - PS + 1))
    if kind == "punch":
        return Punch(file, offset, length, ro)
    tag = chr(ord("a") + c.below(26)) if c.chance(50) else None
    return FilePwrite(file, offset, length, tag, ro)


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
        flags |= c.pick(EXTRA_FLAGS)
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


@dataclass(slots=True)
class ModelTrace:
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
) -> ModelTrace:  # fmt: skip
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
    return ModelTrace(ops, run, canon)


def trace_text(ops: Sequence[Op]) -> str:
    """``ops`` in the text form (no results)."""
    return format_trace([Step(op) for op in ops])

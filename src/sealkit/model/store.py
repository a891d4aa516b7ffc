"""An ordered store of VMAs with logarithmic lookup and O(n/64) copies.

Why not ``sortedcontainers``: the analyzer copies address spaces all the time,
and ``SortedKeyList.copy()`` copies every element. This store keeps the VMAs
in *immutable* chunks (tuples of at most :data:`CHUNK` VMAs) under two small
index lists, so :meth:`VmaStore.copy` copies only the index (one pointer per
64 VMAs) and the two copies share every chunk; a modification rebuilds just
the chunks it touches (copy-on-write for free, because tuples never change).
Lookups bisect the index, then the chunk: O(log n).

The store knows nothing about the kernel: items only need ``start`` and
``end`` attributes, are kept sorted by ``start`` and must not overlap (the
model guarantees it; ``check()`` verifies it in tests).
"""

from __future__ import annotations

from bisect import bisect_left, bisect_right
from collections.abc import Iterator, Sequence
from operator import attrgetter
from typing import Final, Generic, Protocol, TypeVar

CHUNK: Final = 64
"""Maximum VMAs per chunk."""

_START: Final = attrgetter("start")


class _Span(Protocol):
    @property
    def start(self) -> int: ...

    @property
    def end(self) -> int: ...


T = TypeVar("T", bound=_Span)


class VmaStore(Generic[T]):
    """Sorted, non-overlapping items; see the module docstring."""

    __slots__ = ("_chunks", "_firsts", "_len")

    def __init__(self, items: Sequence[T] = ()) -> None:
        self._chunks: list[tuple[T, ...]] = []
        self._firsts: list[int] = []
        self._len = 0
        if items:
            self.replace(items[0].start, items[0].start, items)

    def copy(self) -> VmaStore[T]:
        """An independent store sharing every (immutable) chunk with this one."""
        twin: VmaStore[T] = VmaStore.__new__(VmaStore)
        twin._chunks = self._chunks.copy()
        twin._firsts = self._firsts.copy()
        twin._len = self._len
        return twin

    def __len__(self) -> int:
        return self._len

    def __iter__(self) -> Iterator[T]:
        for chunk in self._chunks:
            yield from chunk

    # ------------------------------------------------------------ lookups

    def find(self, addr: int) -> T | None:
        """The first item with ``end > addr`` (the kernel's ``find_vma``)."""
        firsts = self._firsts
        if not firsts:
            return None
        ci = bisect_right(firsts, addr) - 1
        if ci < 0:
            return self._chunks[0][0]
        chunk = self._chunks[ci]
        pi = bisect_right(chunk, addr, key=_START) - 1
        item = chunk[pi]
        if item.end > addr:
            return item
        if pi + 1 < len(chunk):
            return chunk[pi + 1]
        if ci + 1 < len(self._chunks):
            return self._chunks[ci + 1][0]
        return None

    def lookup(self, addr: int) -> T | None:
        """The item containing ``addr`` (the kernel's ``vma_lookup``)."""
        item = self.find(addr)
        if item is not None and item.start <= addr:
            return item
        return None

    def before(self, addr: int) -> T | None:
        """The last item with ``start < addr``."""
        firsts = self._firsts
        ci = bisect_left(firsts, addr) - 1
        if ci < 0:
            return None
        chunk = self._chunks[ci]
        return chunk[bisect_left(chunk, addr, key=_START) - 1]

    def range(self, start: int, end: int) -> Iterator[T]:
        """Items intersecting ``[start, end)``, in order (do not modify while iterating)."""
        firsts = self._firsts
        if not firsts or start >= end:
            return
        ci = max(bisect_right(firsts, start) - 1, 0)
        chunks = self._chunks
        chunk = chunks[ci]
        pi = max(bisect_right(chunk, start, key=_START) - 1, 0)
        while ci < len(chunks):
            chunk = chunks[ci]
            while pi < len(chunk):
                item = chunk[pi]
                if item.start >= end:
                    return
                if item.end > start:
                    yield item
                pi += 1
            ci += 1
            pi = 0

    def between(self, start: int, end: int) -> list[T]:
        """:meth:`range` as a list (the same items; cheaper than the
        generator when all of them are wanted)."""
        firsts = self._firsts
        if not firsts or start >= end:
            return []
        ci = bisect_right(firsts, start) - 1
        ci = max(ci, 0)
        chunks = self._chunks
        chunk = chunks[ci]
        pi = bisect_right(chunk, start, key=_START) - 1
        pi = max(pi, 0)
        out: list[T] = []
        n = len(chunks)
        while True:
            for k in range(pi, len(chunk)):
                item = chunk[k]
                if item.start >= end:
                    return out
                if item.end > start:
                    out.append(item)
            ci += 1
            if ci >= n:
                return out
            chunk = chunks[ci]
            pi = 0

    def last(self) -> T | None:
        """The item with the highest address."""
        return self._chunks[-1][-1] if self._chunks else None

    # ---------------------------------------------------------- mutation

    def replace(self, lo: int, hi: int, new: Sequence[T]) -> None:
        """Remove the items whose ``start`` is in ``[lo, hi)`` and insert
        ``new`` (sorted, and sorted relative to the items that stay)."""
        chunks, firsts = self._chunks, self._firsts
        if not chunks:
            if new:
                self._len = len(new)
                self._rebuild(0, 0, tuple(new))
            return
        ci = max(bisect_right(firsts, lo) - 1, 0)
        pi = bisect_left(chunks[ci], lo, key=_START)
        cj = max(bisect_left(firsts, hi) - 1, ci) if hi > lo else ci
        pj = bisect_left(chunks[cj], hi, key=_START) if hi > lo else pi
        if cj == ci and pj < pi:
            pj = pi
        removed = (pj - pi) if cj == ci else (len(chunks[ci]) - pi + pj)
        for k in range(ci + 1, cj):
            removed += len(chunks[k])
        mid = chunks[ci][:pi] + tuple(new) + chunks[cj][pj:]
        self._len += len(new) - removed
        self._rebuild(ci, cj + 1, mid)

    def _rebuild(self, ci: int, cj: int, mid: tuple[T, ...]) -> None:
        chunks, firsts = self._chunks, self._firsts
        # Keep chunks from shrinking to nothing: fold a small one into a neighbour.
        if 0 < len(mid) < CHUNK // 4:
            if ci > 0:
                ci -= 1
                mid = chunks[ci] + mid
            elif cj < len(chunks):
                mid = mid + chunks[cj]
                cj += 1
        if len(mid) <= CHUNK:
            pieces = [mid] if mid else []
        else:
            step = CHUNK // 2
            pieces = [mid[k : k + step] for k in range(0, len(mid), step)]
        chunks[ci:cj] = pieces
        firsts[ci:cj] = [p[0].start for p in pieces]

    # ---------------------------------------------------------- checking

    def check(self) -> None:
        """Raise ``AssertionError`` unless items are sorted and non-overlapping
        and the index agrees with the chunks."""
        assert len(self._chunks) == len(self._firsts)
        count = 0
        prev_end = None
        for chunk, first_start in zip(self._chunks, self._firsts, strict=True):
            assert chunk, "empty chunk"
            assert len(chunk) <= CHUNK, "oversized chunk"
            assert chunk[0].start == first_start, "stale index"
            for item in chunk:
                assert item.start < item.end, f"empty item {item}"
                if prev_end is not None:
                    assert item.start >= prev_end, f"overlap or disorder at {item.start:#x}"
                prev_end = item.end
                count += 1
        assert count == self._len, "stale length"

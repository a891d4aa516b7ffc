"""Page contents as immutable run lists (the model's answer to "which data is where").

A *run list* is a sorted tuple of non-overlapping ``(lo, hi, kind)`` runs over
page indices (relative to a VMA start for private pages, or to the start of a
backing object for file and shmem pages). Pages no run covers have the
default content of whoever owns the list (zero page, file data, ...).

A *kind* says what the pages of a run hold:

* a one-character ``str``: that content token on every page (``"F"``, ``"x"``,
  ``"0"``, or ``"#"`` for a guard marker);
* an ``int`` ``b`` in ``0..25``: the write *pattern*, page ``o`` holds
  ``LETTERS[(b + o) % 26]``; this is how an untagged ``write`` of many pages
  stays one run (``ops.write_token`` gives each page the letter of its zone
  page index);
* a two-character ``str`` ``"?t"`` or an ``int`` ``26..51``: the same content,
  lazily freed by ``MADV_FREE`` (shown as ``?``; reclaim turns it into zeroes,
  a new write or a write fault makes it definite again).

Everything here is O(number of runs), never O(pages), so a write or a
discard over a terabyte-long mapping costs the same as over one page.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Final, TypeAlias

Kind: TypeAlias = str | int
Run: TypeAlias = tuple[int, int, Kind]
Runs: TypeAlias = tuple[Run, ...]

LETTERS: Final = "abcdefghijklmnopqrstuvwxyz"
GUARD: Final = "#"
SIGBUS: Final = "!"
"""A file or shmem page past the end of its object (no run holds it: the
object's size decides)."""
LAZY: Final = "?"
EMPTY: Final[Runs] = ()


def token(kind: Kind, o: int) -> str:
    """The content token of page ``o`` of a run of ``kind``."""
    if type(kind) is str:
        return kind if len(kind) == 1 else LAZY
    if kind >= 26:  # type: ignore[operator]
        return LAZY
    return LETTERS[(kind + o) % 26]  # type: ignore[operator]


def is_lazy(kind: Kind) -> bool:
    """Whether ``kind`` is lazily freed content (``MADV_FREE``)."""
    if type(kind) is str:
        return len(kind) == 2
    return kind >= 26  # type: ignore[operator]


def lazy(kind: Kind) -> Kind | None:
    """``kind`` after ``MADV_FREE`` (guard markers and zero pages stay as they are)."""
    if type(kind) is str:
        if kind in (GUARD, "0") or len(kind) == 2:
            return kind
        return LAZY + kind
    return kind if kind >= 26 else kind + 26  # type: ignore[operator]


def unlazy(kind: Kind) -> Kind:
    """``kind`` made definite again (the page was dirtied before reclaim)."""
    if type(kind) is str:
        return kind[1] if len(kind) == 2 else kind
    return kind - 26 if kind >= 26 else kind  # type: ignore[operator]


def _shift_kind(kind: Kind, d: int) -> Kind:
    # Coordinates move by d (o' = o + d): the pattern base moves by -d.
    if type(kind) is str:
        return kind
    base = (kind % 26 - d) % 26  # type: ignore[operator]
    return base + 26 if kind >= 26 else base  # type: ignore[operator]


def move(runs: Runs, d: int) -> Runs:
    """The same pages in coordinates shifted by ``d`` (page ``o`` becomes ``o + d``)."""
    if not runs or d == 0:
        return runs
    return tuple((lo + d, hi + d, _shift_kind(k, d)) for lo, hi, k in runs)


def cut(runs: Runs, lo: int, hi: int) -> Runs:
    """The runs inside ``[lo, hi)``, re-based so that ``lo`` becomes 0."""
    if not runs:
        return runs
    out = []
    for a, b, k in runs:
        if b <= lo or a >= hi:
            continue
        out.append((max(a, lo), min(b, hi), k))
    return move(tuple(out), -lo)


def concat(left: Runs, right: Runs, offset: int) -> Runs:
    """``left`` followed by ``right`` placed at ``offset`` (adjacent runs that
    continue each other are coalesced)."""
    if not right:
        return left
    moved = move(right, offset)
    if not left:
        return moved
    a, b, k = left[-1]
    c, d, m = moved[0]
    if b == c and k == m:
        return (*left[:-1], (a, d, k), *moved[1:])
    return left + moved


def edit(
    runs: Runs, lo: int, hi: int, fn: Callable[[Kind], Kind | None], fill: Kind | None = None
) -> Runs:
    """Replace the parts of runs inside ``[lo, hi)`` by ``fn(kind)`` (``None``
    drops the part) and, when ``fill`` is given, cover the uncovered pages of
    ``[lo, hi)`` with it."""
    if lo >= hi:
        return runs
    out: list[Run] = []
    cursor = lo
    for a, b, k in runs:
        if b <= lo or a >= hi:
            if a >= hi and cursor < hi and fill is not None:
                out.append((cursor, hi, fill))
                cursor = hi
            out.append((a, b, k))
            continue
        if a < lo:
            out.append((a, lo, k))
        s, e = max(a, lo), min(b, hi)
        if fill is not None and cursor < s:
            out.append((cursor, s, fill))
        new = fn(k)
        if new is not None:
            out.append((s, e, new))
        cursor = e
        if b > hi:
            out.append((hi, b, k))
    if fill is not None and cursor < hi:
        out.append((cursor, hi, fill))
        out.sort(key=lambda r: r[0])
    return _coalesce(out)


def _coalesce(out: list[Run]) -> Runs:
    merged: list[Run] = []
    for run in out:
        if merged:
            a, b, k = merged[-1]
            if b == run[0] and k == run[2]:
                merged[-1] = (a, run[1], k)
                continue
        merged.append(run)
    return tuple(merged)


def put(runs: Runs, lo: int, hi: int, kind: Kind) -> Runs:
    """``[lo, hi)`` set to ``kind``."""
    return edit(runs, lo, hi, lambda k: kind, fill=kind)


def drop(runs: Runs, lo: int, hi: int, keep: Callable[[Kind], bool] | None = None) -> Runs:
    """``[lo, hi)`` cleared (runs whose kind satisfies ``keep`` stay)."""
    if keep is None:
        return edit(runs, lo, hi, lambda k: None)
    return edit(runs, lo, hi, lambda k: k if keep(k) else None)


def first(runs: Runs, lo: int, hi: int, pred: Callable[[Kind], bool]) -> int | None:
    """The first page of ``[lo, hi)`` covered by a run whose kind satisfies ``pred``."""
    for a, b, k in runs:
        if b <= lo:
            continue
        if a >= hi:
            break
        if pred(k):
            return max(a, lo)
    return None


def covered(runs: Runs, lo: int, hi: int) -> bool:
    """Whether some page of ``[lo, hi)`` is covered by a run."""
    return any(b > lo and a < hi for a, b, _ in runs)


def find(runs: Runs, o: int) -> Kind | None:
    """The kind of the run covering page ``o``, or ``None``."""
    for a, b, k in runs:
        if a <= o < b:
            return k
        if a > o:
            break
    return None


def render(runs: Runs, lo: int, hi: int, base: list[str]) -> list[str]:
    """Tokens of pages ``[lo, hi)``: ``base`` (one default token per page)
    overlaid with the runs."""
    for a, b, k in runs:
        if b <= lo or a >= hi:
            continue
        for o in range(max(a, lo), min(b, hi)):
            base[o - lo] = token(k, o)
    return base


def pattern_base(zone_page: int, o: int) -> int:
    """The pattern kind that gives page ``o`` the letter of ``zone_page``."""
    return (zone_page - o) % 26

"""Layout snapshots: the state of an address range at page granularity.

Pure data: no I/O. The model and the kernel executor both describe a zone
(``p``: the arena, ``h``: the heap; see :mod:`sealkit.ops`) as a
:class:`Layout`: sorted, non-overlapping :class:`Run` s of pages with their
protection, sharing, backing object and offset, seal, tracked VmFlags and one
content token per page.

Content tokens (one character per page):

=========  ==============================================================
``0``      zero page (never written, or discarded)
``F``      the backing file's original content
``a``-``z``  data written by a ``write`` op (see :class:`sealkit.ops.Write`)
``#``      mapped but unreadable: a guard region (``MADV_GUARD_INSTALL``)
``!``      a file or shmem page past the end of its object (after a
           truncation, or a mapping longer than its file): any access
           raises SIGBUS
``?``      unknown or mixed content
=========  ==============================================================

Two canonical forms:

* :meth:`Layout.merged`: adjacent runs with equal attributes and contiguous
  offsets are merged, so comparisons do not depend on when the kernel merges
  VMAs;
* the layout itself (exact form): one run per VMA, for cases where the
  split is itself the behaviour (the leftover split of a refused munmap).

Text form, one run per line (the probe's spelling)::

    [0,4) rw-p anon abcd
    [4,8) rw-p,sl anon efgh
    [8,12) r--s,sl,dc file:f1@2 FFFF
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, replace
from typing import Final

from .errors import ParseError
from .flags import Prot, prot_to_str

__all__ = [
    "TOKEN_FILE",
    "TOKEN_GUARD",
    "TOKEN_SIGBUS",
    "TOKEN_UNKNOWN",
    "TOKEN_ZERO",
    "TRACKED_FLAGS",
    "Layout",
    "Run",
]

TOKEN_ZERO: Final = "0"
TOKEN_FILE: Final = "F"
TOKEN_GUARD: Final = "#"
TOKEN_SIGBUS: Final = "!"
TOKEN_UNKNOWN: Final = "?"

TRACKED_FLAGS: Final = frozenset(
    {"dc", "wf", "lo", "lf", "hg", "nh", "dd", "rr", "sr", "mg", "gd", "gu"}
)
"""VmFlags mnemonics a layout carries (besides rwx, shared and ``sl``):
DONTCOPY, WIPEONFORK, locked, lock-on-fault, (no)hugepage, dontdump,
random/sequential read, mergeable, grows-down, and ``gu``
(``VM_MAYBE_GUARD``: a guard region was installed in the VMA at some time;
sticky, it never goes away)."""


@dataclass(frozen=True, slots=True)
class Run:
    """A run of pages ``[start, end)`` (zone page indices) with equal attributes.

    ``backing`` is ``"anon"``, ``"shmem"``, ``"file:NAME"`` or a special name
    such as ``"[heap]"``. ``pgoff`` is the page offset of ``start`` within the
    backing object (``None`` when not known, e.g. anonymous memory on the
    kernel side). ``obj`` identifies the backing object (the model names
    each anonymous or shmem object; ``None`` means "not compared"). ``seal``
    is ``""`` when unsealed, ``"sl"`` for a Linux seal, or the policy's own
    spelling (``"munmap+mprotect"``). ``content`` has one token per page, or
    is ``""`` when not captured.
    """

    start: int
    end: int
    prot: Prot
    shared: bool
    backing: str
    pgoff: int | None = None
    obj: str | None = None
    seal: str = ""
    flags: frozenset[str] = frozenset()
    content: str = ""

    @property
    def pages(self) -> int:
        """Number of pages."""
        return self.end - self.start

    @property
    def sealed(self) -> bool:
        """Whether any seal is set."""
        return bool(self.seal)

    @property
    def perms(self) -> str:
        """``rw-p`` / ``r--s``, as in /proc/PID/maps."""
        return prot_to_str(self.prot) + ("s" if self.shared else "p")

    def attrs(self) -> tuple[object, ...]:
        """Everything but position and content (what must match to merge)."""
        return (self.prot, self.shared, self.backing, self.obj, self.seal, self.flags)

    def continues(self, other: Run) -> bool:
        """Whether ``other`` directly follows this run and could be merged into it."""
        if self.end != other.start or self.attrs() != other.attrs():
            return False
        if self.pgoff is None or other.pgoff is None:
            return self.pgoff is None and other.pgoff is None
        return other.pgoff == self.pgoff + self.pages

    def text(self) -> str:
        """The one-line text form: ``[0,4) rw-p,sl anon abcd``."""
        marks = [self.perms]
        if self.seal:
            marks.append("sl" if self.seal == "sl" else f"sl={self.seal}")
        marks.extend(sorted(self.flags))
        where = self.backing
        if self.obj is not None:
            where += f"#{self.obj}"
        if self.pgoff is not None:
            where += f"@{self.pgoff}"
        line = f"[{self.start},{self.end}) {','.join(marks)} {where}"
        return f"{line} {self.content}" if self.content else line


_RUN_RE: Final = re.compile(
    r"^\[(-?\d+),(-?\d+)\)\s+([r-][w-][x-][ps])((?:,[a-z]+(?:=[A-Za-z0-9_+|]+)?)*)\s+"
    r"([^\s#@]+)(?:#([^\s@]+))?(?:@(-?\d+))?(?:\s+(\S+))?\s*$"
)


@dataclass(frozen=True, slots=True)
class Layout:
    """Pages ``[lo, hi)`` of zone ``zone``, as sorted non-overlapping runs."""

    zone: str
    lo: int
    hi: int
    runs: tuple[Run, ...]

    def __post_init__(self) -> None:
        last = self.lo
        for run in self.runs:
            if run.start < last or run.end <= run.start or run.end > self.hi:
                raise ValueError(f"run {run.text()} out of order or outside [{self.lo},{self.hi})")
            if run.content and len(run.content) != run.pages:
                raise ValueError(f"run {run.text()} has {len(run.content)} content tokens")
            last = run.end

    # -------------------------------------------------------------- forms

    def merged(self) -> Layout:
        """The canonical merged form (independent of when VMAs merge)."""
        out: list[Run] = []
        for run in self.runs:
            if out and out[-1].continues(run):
                prev = out[-1]
                content = prev.content + run.content if prev.content and run.content else ""
                out[-1] = replace(prev, end=run.end, content=content)
            else:
                out.append(run)
        return replace(self, runs=tuple(out))

    def project(
        self, *, obj: bool = False, pgoff_anon: bool = False, flags: Iterable[str] | None = None,
        content: bool = True,
    ) -> Layout:  # fmt: skip
        """Keep only what both sides can observe: drop object identities
        (unless ``obj``), anonymous page offsets (unless ``pgoff_anon``),
        flags outside ``flags`` (all tracked flags when ``None``) and,
        unless ``content``, the content tokens.
        """
        keep = TRACKED_FLAGS if flags is None else frozenset(flags)
        runs = []
        for run in self.runs:
            anon = not run.backing.startswith(("file:", "shmem"))
            runs.append(
                replace(
                    run,
                    obj=run.obj if obj else None,
                    pgoff=run.pgoff if (pgoff_anon or not anon) else None,
                    flags=run.flags & keep,
                    content=run.content if content else "",
                )
            )
        return replace(self, runs=tuple(runs))

    def window(self, lo: int, hi: int) -> Layout:
        """The part of the layout in pages ``[lo, hi)`` (runs are clipped)."""
        runs = []
        for run in self.runs:
            start, end = max(run.start, lo), min(run.end, hi)
            if start >= end:
                continue
            cut = start - run.start
            runs.append(
                replace(
                    run,
                    start=start,
                    end=end,
                    pgoff=None if run.pgoff is None else run.pgoff + cut,
                    content=run.content[cut : cut + end - start] if run.content else "",
                )
            )
        return Layout(self.zone, lo, hi, tuple(runs))

    # ------------------------------------------------------------ queries

    def run_at(self, page: int) -> Run | None:
        """The run containing ``page``, or ``None`` if it is unmapped."""
        for run in self.runs:
            if run.start <= page < run.end:
                return run
        return None

    def pages(self) -> Iterator[tuple[int, Run, str]]:
        """``(page, run, token)`` for every mapped page."""
        for run in self.runs:
            for i in range(run.pages):
                yield run.start + i, run, run.content[i] if run.content else TOKEN_UNKNOWN

    @property
    def sealed_pages(self) -> frozenset[int]:
        """Pages that carry any seal."""
        return frozenset(p for r in self.runs if r.seal for p in range(r.start, r.end))

    # ---------------------------------------------------------- rendering

    def render(self) -> str:
        """One character per page of ``[lo, hi)``, in the style of the
        kernel's VMA test harness: each run gets the next letter, lowercase
        when unsealed and UPPERCASE when sealed; a space is unmapped::

            "aaaaBBBB    cc"
        """
        chars = [" "] * (self.hi - self.lo)
        for i, run in enumerate(self.runs):
            letter = chr(ord("a") + i % 26)
            if run.seal:
                letter = letter.upper()
            for p in range(run.start, run.end):
                chars[p - self.lo] = letter
        return "".join(chars)

    def render_content(self) -> str:
        """One content token per page of ``[lo, hi)``; ``-`` where unmapped."""
        chars = ["-"] * (self.hi - self.lo)
        for run in self.runs:
            for i in range(run.pages):
                chars[run.start + i - self.lo] = run.content[i] if run.content else TOKEN_UNKNOWN
        return "".join(chars)

    def text(self) -> str:
        """The multi-line text form (one run per line; ``(nothing mapped)`` if empty)."""
        if not self.runs:
            return "(nothing mapped)"
        return "\n".join(run.text() for run in self.runs)

    def picture(self) -> str:
        """``render()`` and ``render_content()`` under a page ruler, then the runs."""
        width = self.hi - self.lo
        ruler = "".join(str((self.lo + i) % 10) for i in range(width))
        return f"page {ruler}\nvma  {self.render()}\ndata {self.render_content()}\n{self.text()}"

    def diff(self, other: Layout) -> str | None:
        """``None`` when equal; otherwise the first differing line, as
        ``"- expected line\\n+ actual line"`` (``self`` is the expected side).
        """
        if self == other:
            return None
        mine, theirs = self.text().splitlines(), other.text().splitlines()
        for a, b in zip(mine, theirs, strict=False):
            if a != b:
                return f"- {a}\n+ {b}"
        if len(mine) != len(theirs):
            extra = mine[len(theirs)] if len(mine) > len(theirs) else theirs[len(mine)]
            sign = "-" if len(mine) > len(theirs) else "+"
            return f"{sign} {extra}"
        return f"- window [{self.lo},{self.hi}) {self.zone}\n+ window [{other.lo},{other.hi}) {other.zone}"

    # ------------------------------------------------------------ parsing

    @classmethod
    def parse(cls, text: str, zone: str = "p", lo: int = 0, hi: int | None = None) -> Layout:
        """Parse the text form (``(nothing mapped)`` or blank means no runs).

        ``hi`` defaults to the end of the last run. Raises :class:`ParseError`.
        """
        runs = []
        for number, raw in enumerate(text.splitlines(), 1):
            line = raw.strip()
            if not line or line == "(nothing mapped)":
                continue
            m = _RUN_RE.match(line)
            if not m:
                raise ParseError(
                    f"bad layout line {line!r} (expected e.g. '[0,4) rw-p,sl anon abcd')", number
                )
            start, end, perms, marks, backing, obj, pgoff, content = m.groups()
            seal = ""
            flags = set()
            for mark in filter(None, marks.split(",")):
                if mark == "sl":
                    seal = "sl"
                elif mark.startswith("sl="):
                    seal = mark[3:]
                else:
                    flags.add(mark)
            prot = Prot(sum(b for ch, b in zip(perms[:3], (1, 2, 4), strict=True) if ch != "-"))
            runs.append(
                Run(
                    int(start),
                    int(end),
                    prot,
                    perms[3] == "s",
                    backing,
                    None if pgoff is None else int(pgoff),
                    obj,
                    seal,
                    frozenset(flags),
                    content or "",
                )
            )
        top = hi if hi is not None else (runs[-1].end if runs else lo)
        try:
            return cls(zone, lo, top, tuple(runs))
        except ValueError as exc:
            raise ParseError(str(exc)) from None

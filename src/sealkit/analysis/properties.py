"""Integrity properties of sealed memory, over a trace's before/after layouts.

From the 2023 debate (docs/debate.md, "What sealing is for"): the purpose of
sealing is to fix the mapping of an address range to its object; the
secondary purpose is to lock its permissions; and the reason destructive
``madvise`` was added to what a seal blocks is that read-only data must not
be thrown away behind the program's back (docs/reference/linux.md rules 10-11).

Every check compares two :class:`~sealkit.layout.Layout` s of the same
window, page by page, *by address*: the question is what a program that
sealed address ``X`` finds at ``X`` afterwards. ``protected`` is the set of
pages the scenario sealed (or meant to seal: under the ``none`` policy
nothing carries a seal, yet the same pages are checked, which is what makes
``none`` the baseline). A page is a ``(zone, index)`` pair.

* **mapping integrity**: every protected page still maps the same object at
  the same offset: backing, object identity (when the layout names it),
  page offset and private/shared are unchanged, and the page is still mapped.
* **permission integrity**: a protected page never gains a right
  (``PermissionPromise.NO_GAIN``); for designs that promise no change at all
  (``NO_CHANGE``: Linux refuses even a same-protection mprotect, OpenBSD
  refuses every mprotect) its protection never changes. A page that is no
  longer mapped has no rights: that is a mapping violation, not a
  permission one.
* **content integrity**: the data in a protected page that had no write
  permission at the start is unchanged: not discarded (unmapped, guarded,
  freed), not zeroed, not reverted to the file, not overwritten.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Final

from ..flags import PAGE_SIZE, Prot, prot_to_str
from ..layout import (
    TOKEN_FILE,
    TOKEN_GUARD,
    TOKEN_SIGBUS,
    TOKEN_UNKNOWN,
    TOKEN_ZERO,
    Layout,
    Run,
)
from ..ops import MODEL_BASES

__all__ = [
    "PROPERTIES",
    "Page",
    "PageFact",
    "PermissionPromise",
    "Property",
    "Violation",
    "check",
    "check_content",
    "check_mapping",
    "check_permission",
    "page_facts",
]

Page = tuple[str, int]
"""A page: ``(zone, zone page index)``, e.g. ``("p", 3)``."""

RIGHTS: Final = Prot.READ | Prot.WRITE | Prot.EXEC
_RIGHTS: Final = int(RIGHTS)
_WRITE: Final = int(Prot.WRITE)


class Property(enum.Enum):
    """The three integrity properties (values are the CLI spellings)."""

    MAPPING = "mapping"
    PERMISSION = "permission"
    CONTENT = "content"

    def __repr__(self) -> str:
        return f"Property.{self.name}"


PROPERTIES: Final = tuple(Property)


class PermissionPromise(enum.Enum):
    """What a design promises about the protection of sealed pages."""

    NO_GAIN = "no-gain"
    """Sealed pages never gain a right (downgrades allowed, or no promise at all)."""
    NO_CHANGE = "no-change"
    """Sealed pages' protection never changes, not even a downgrade."""

    def __repr__(self) -> str:
        return f"PermissionPromise.{self.name}"


@dataclass(frozen=True, slots=True)
class PageFact:
    """What a layout says about one mapped page."""

    prot: Prot
    shared: bool
    backing: str
    obj: str | None
    pgoff: int | None
    seal: str
    token: str

    def identity(self) -> tuple[str, str | None, int | None, bool]:
        """The mapping: backing, object, offset of this page, private/shared."""
        return (self.backing, self.obj, self.pgoff, self.shared)

    def where(self) -> str:
        """``anon#av1@p3 private`` / ``file:f1@0 private`` / ``shmem#shm2@1 shared``.

        An anonymous page's offset is its creation address (``do_mmap()``
        sets ``vm_pgoff = addr >> PAGE_SHIFT``), shown zone-relative (``@p3``).
        """
        text = self.backing
        if self.obj is not None:
            text += f"#{self.obj}"
        if self.pgoff is not None:
            zoned = MODEL_BASES.zone_of(self.pgoff * PAGE_SIZE) if self.backing == "anon" else None
            text += f"@{zoned[0]}{zoned[1] // PAGE_SIZE}" if zoned else f"@{self.pgoff}"
        return f"{text} {'shared' if self.shared else 'private'}"


def _fact(run: Run, page: int, token: str) -> PageFact:
    pgoff = None if run.pgoff is None else run.pgoff + (page - run.start)
    return PageFact(run.prot, run.shared, run.backing, run.obj, pgoff, run.seal, token)


def page_facts(layouts: Iterable[Layout]) -> dict[Page, PageFact]:
    """Every mapped page of ``layouts`` (one per zone) with its facts."""
    facts: dict[Page, PageFact] = {}
    for layout in layouts:
        for page, run, token in layout.pages():
            facts[(layout.zone, page)] = _fact(run, page, token)
    return facts


def _as_facts(
    value: Layout | Iterable[Layout] | Mapping[Page, PageFact],
) -> Mapping[Page, PageFact]:
    if isinstance(value, Layout):
        return page_facts([value])
    if isinstance(value, Mapping):
        return value
    return page_facts(value)


def _pname(page: Page) -> str:
    return f"{page[0]}{page[1]}"


@dataclass(frozen=True, slots=True)
class Violation:
    """A property broken at some pages. ``details`` has one line per page
    (``"p1: anon#a1@1 private -> anon#a4@1 private"``), ``kinds`` says how
    (``"replaced"``, ``"unmapped"``, ``"gained w"``, ``"reverted to file"``...).
    """

    property: Property
    pages: tuple[Page, ...]
    details: tuple[str, ...]
    kinds: frozenset[str]

    def summary(self) -> str:
        """One line: the property, how it broke, where."""
        where = ",".join(_pname(p) for p in self.pages)
        return (
            f"{self.property.value} integrity broken ({', '.join(sorted(self.kinds))}) at {where}"
        )


def _violation(prop: Property, found: list[tuple[Page, str, str]]) -> Violation | None:
    if not found:
        return None
    found.sort()
    return Violation(
        prop,
        tuple(p for p, _, _ in found),
        tuple(f"{_pname(p)}: {detail}" for p, _, detail in found),
        frozenset(kind for _, kind, _ in found),
    )


def check_mapping(
    before: Layout | Iterable[Layout] | Mapping[Page, PageFact],
    after: Layout | Iterable[Layout] | Mapping[Page, PageFact],
    protected: Iterable[Page] | None = None,
) -> Violation | None:
    """Mapping integrity: each protected page still maps the same object at the
    same offset (``None`` when it holds). ``protected`` defaults to the pages
    sealed in ``before``.
    """
    old, new = _as_facts(before), _as_facts(after)
    pages = _protected(old, protected)
    found: list[tuple[Page, str, str]] = []
    for page in pages:
        was, now = old.get(page), new.get(page)
        if was is None:
            continue  # nothing was mapped there: nothing to keep
        if now is None:
            found.append((page, "unmapped", f"{was.where()} -> unmapped"))
        elif now.identity() != was.identity():
            found.append((page, "replaced", f"{was.where()} -> {now.where()}"))
    return _violation(Property.MAPPING, found)


def check_permission(
    before: Layout | Iterable[Layout] | Mapping[Page, PageFact],
    after: Layout | Iterable[Layout] | Mapping[Page, PageFact],
    protected: Iterable[Page] | None = None,
    promise: PermissionPromise = PermissionPromise.NO_GAIN,
) -> Violation | None:
    """Permission integrity: no protected page gains a right (``NO_GAIN``) or
    changes its protection at all (``NO_CHANGE``).
    """
    old, new = _as_facts(before), _as_facts(after)
    pages = _protected(old, protected)
    found: list[tuple[Page, str, str]] = []
    for page in pages:
        was, now = old.get(page), new.get(page)
        if was is None or now is None:
            continue  # an unmapped page has no rights: a mapping matter
        before_rights, after_rights = int(was.prot) & _RIGHTS, int(now.prot) & _RIGHTS
        if before_rights == after_rights:
            continue
        gained = after_rights & ~before_rights
        change = f"{prot_to_str(was.prot)} -> {prot_to_str(now.prot)}"
        if gained:
            letters = prot_to_str(gained).replace("-", "")
            found.append((page, f"gained {letters}", change))
        elif promise is PermissionPromise.NO_CHANGE:
            found.append((page, "changed", change))
    return _violation(Property.PERMISSION, found)


def _content_kind(was: str, now: str | None) -> str:
    if now is None:
        return "discarded (unmapped)"
    if now == TOKEN_GUARD:
        return "discarded (guard)"
    if now == TOKEN_SIGBUS:
        return "discarded (past the end of the file: SIGBUS)"
    if now == TOKEN_UNKNOWN:
        return "discarded (undefined until reclaim)"
    if now == TOKEN_ZERO:
        return "zeroed"
    if now == TOKEN_FILE:
        return "reverted to file"
    return "overwritten"


def check_content(
    before: Layout | Iterable[Layout] | Mapping[Page, PageFact],
    after: Layout | Iterable[Layout] | Mapping[Page, PageFact],
    protected: Iterable[Page] | None = None,
) -> Violation | None:
    """Content integrity: the data of each protected page that had no write
    permission in ``before`` is unchanged in ``after``.

    A ``?`` token before (content the layout could not tell) is not checked;
    a ``?`` after (the kernel may throw the page away at any time, as after
    ``MADV_FREE``) counts as discarded.
    """
    old, new = _as_facts(before), _as_facts(after)
    pages = _protected(old, protected)
    found: list[tuple[Page, str, str]] = []
    for page in pages:
        was = old.get(page)
        if was is None or int(was.prot) & _WRITE or was.token == TOKEN_UNKNOWN:
            continue
        now = new.get(page)
        token = None if now is None else now.token
        if token != was.token:
            found.append((page, _content_kind(was.token, token), f"{was.token} -> {token or '-'}"))
    return _violation(Property.CONTENT, found)


def _protected(old: Mapping[Page, PageFact], protected: Iterable[Page] | None) -> list[Page]:
    if protected is None:
        return sorted(page for page, fact in old.items() if fact.seal)
    return sorted(protected)


def check(
    prop: Property,
    before: Layout | Iterable[Layout] | Mapping[Page, PageFact],
    after: Layout | Iterable[Layout] | Mapping[Page, PageFact],
    protected: Iterable[Page] | None = None,
    promise: PermissionPromise = PermissionPromise.NO_GAIN,
) -> Violation | None:
    """Check one property (``None`` when it holds)."""
    if prop is Property.MAPPING:
        return check_mapping(before, after, protected)
    if prop is Property.PERMISSION:
        return check_permission(before, after, protected, promise)
    return check_content(before, after, protected)

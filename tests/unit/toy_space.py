"""A tiny page-map address space for testing the analyzer's search on its own.

Not a model of Linux: one VMA per page, a handful of calls (anonymous
MAP_FIXED / MAP_FIXED_NOREPLACE mmap, munmap, mprotect, madvise DONTNEED,
write, mseal) and a seal that blocks a configurable set of calls. Everything
else answers -ENOSYS, like a call the policy's world lacks. It has the
methods the search needs: apply, copy, state_key, layout, vma_view, backing_view.
"""

from __future__ import annotations

import errno
from dataclasses import dataclass

from sealkit.flags import PAGE_SIZE, Madv, MapFlag, Prot
from sealkit.layout import Layout, Run
from sealkit.ops import MODEL_BASES, Madvise, Mmap, Mprotect, Mseal, Munmap, Op, Write

BASE = MODEL_BASES.arena


@dataclass(frozen=True)
class Page:
    prot: Prot
    obj: str
    pgoff: int
    sealed: bool
    token: str


class ToySpace:
    """Pages of the arena zone only; ``blocks`` names the calls a seal refuses
    (``"discard_ro"``: DONTNEED on a sealed page without write)."""

    def __init__(self, blocks: frozenset[str] = frozenset({"munmap", "mmap", "mprotect"})) -> None:
        self.blocks = blocks
        self.pages: dict[int, Page] = {}
        self.counter = 0

    def copy(self) -> ToySpace:
        twin = ToySpace(self.blocks)
        twin.pages = dict(self.pages)
        twin.counter = self.counter
        return twin

    def _range(self, addr: int, length: int) -> range | None:
        if (addr - BASE) % PAGE_SIZE or length <= 0 or length % PAGE_SIZE:
            return None
        first = (addr - BASE) // PAGE_SIZE
        return range(first, first + length // PAGE_SIZE)

    def apply(self, op: Op) -> int:
        if isinstance(op, Mmap):
            pages = self._range(op.addr, op.length)
            if pages is None or op.file is not None or not op.flags & MapFlag.ANONYMOUS:
                return -errno.EINVAL
            if op.flags & MapFlag.FIXED_NOREPLACE and any(p in self.pages for p in pages):
                return -errno.EEXIST
            if "mmap" in self.blocks and any(
                p in self.pages and self.pages[p].sealed for p in pages
            ):
                return -errno.EPERM
            self.counter += 1
            for p in pages:
                self.pages[p] = Page(Prot(op.prot), f"o{self.counter}", p, False, "0")
            return op.addr
        if isinstance(op, Munmap):
            pages = self._range(op.addr, op.length)
            if pages is None:
                return -errno.EINVAL
            if "munmap" in self.blocks and any(
                p in self.pages and self.pages[p].sealed for p in pages
            ):
                return -errno.EPERM
            for p in pages:
                self.pages.pop(p, None)
            return 0
        if isinstance(op, Mprotect):
            pages = self._range(op.addr, op.length)
            if pages is None:
                return -errno.EINVAL
            if any(p not in self.pages for p in pages):
                return -errno.ENOMEM
            if "mprotect" in self.blocks and any(self.pages[p].sealed for p in pages):
                return -errno.EPERM
            for p in pages:
                old = self.pages[p]
                self.pages[p] = Page(Prot(op.prot), old.obj, old.pgoff, old.sealed, old.token)
            return 0
        if isinstance(op, Mseal):
            pages = self._range(op.addr, op.length)
            if pages is None:
                return -errno.EINVAL
            if any(p not in self.pages for p in pages):
                return -errno.ENOMEM
            for p in pages:
                old = self.pages[p]
                self.pages[p] = Page(old.prot, old.obj, old.pgoff, True, old.token)
            return 0
        if isinstance(op, Write):
            pages = self._range(op.addr, op.length)
            if pages is None:
                return -errno.EINVAL
            for p in pages:
                old = self.pages.get(p)
                if old is None or not old.prot & Prot.WRITE:
                    return -errno.EFAULT
                self.pages[p] = Page(
                    old.prot, old.obj, old.pgoff, old.sealed, op.tag or chr(97 + p)
                )
            return 0
        if isinstance(op, Madvise):
            pages = self._range(op.addr, op.length)
            if pages is None:
                return -errno.EINVAL
            if any(p not in self.pages for p in pages):
                return -errno.ENOMEM
            if op.advice != Madv.DONTNEED:
                return 0
            if "discard_ro" in self.blocks and any(
                self.pages[p].sealed and not self.pages[p].prot & Prot.WRITE for p in pages
            ):
                return -errno.EPERM
            for p in pages:
                old = self.pages[p]
                self.pages[p] = Page(old.prot, old.obj, old.pgoff, old.sealed, "0")
            return 0
        return -errno.ENOSYS

    def layout(self, zone: str, lo: int, hi: int) -> Layout:
        if zone != "p":
            return Layout(zone, lo, hi, ())
        runs = []
        for p in range(lo, hi):
            page = self.pages.get(p)
            if page is None:
                continue
            runs.append(
                Run(
                    p,
                    p + 1,
                    page.prot,
                    False,
                    "anon",
                    page.pgoff,
                    page.obj,
                    "sl" if page.sealed else "",
                    frozenset(),
                    page.token,
                )
            )
        return Layout(zone, lo, hi, tuple(runs))

    def vma_view(self, zone: str, lo: int, hi: int) -> tuple[tuple[object, ...], ...]:
        # One VMA per page; every attribute is in the Page (nothing hidden).
        if zone != "p":
            return ()
        out = []
        for p in range(lo, hi):
            page = self.pages.get(p)
            if page is None:
                continue
            attrs = (int(page.prot), int(page.sealed), None, page.pgoff, False)
            out.append((p, p + 1, attrs, None, page.obj, page.obj, (page.token,)))
        return tuple(out)

    def backing_view(self) -> tuple[int, tuple[object, ...]]:
        return (0, ())

    def state_key(self, zone: str, lo: int, hi: int) -> object:
        if zone != "p":
            return ()
        return tuple((p, self.pages[p]) for p in range(lo, hi) if p in self.pages)

"""VMAs, their flags, and the merge rule (``include/linux/mm.h``, ``mm/vma.c``).

A :class:`Vma` is immutable once it is in the store: every change builds a
new one (so copies of an address space can share VMAs and chunks).

Flag values are the kernel's own ``VM_*`` bits on x86_64 where they exist;
``VM_SEALABLE`` is the Dec 2023 proposal's opt-in bit (model only). Seals are
not flags here: each VMA carries a ``seal`` integer whose bits mean what the
policy says (``1`` for Linux's ``VM_SEALED``, ``SealV1``/``SealV3`` bits for
the 2023 proposals, ...). Under Linux sealed and unsealed VMAs never merge
because :func:`can_merge` requires equal seals, exactly as
``is_mergeable_vma()`` requires equal ``vm_flags`` (which hold ``VM_SEALED``);
a policy may say otherwise (``Policy.merge_rule``, ``AddressSpace.merged``).
"""

from __future__ import annotations

from typing import Final

from . import content
from .content import Runs

PAGE_SHIFT: Final = 12
PAGE: Final = 1 << PAGE_SHIFT

VM_READ: Final = 0x1
VM_WRITE: Final = 0x2
VM_EXEC: Final = 0x4
VM_SHARED: Final = 0x8
VM_MAYREAD: Final = 0x10
VM_MAYWRITE: Final = 0x20
VM_MAYEXEC: Final = 0x40
VM_MAYSHARE: Final = 0x80
VM_GROWSDOWN: Final = 0x100
VM_MAYBE_GUARD: Final = 0x800
"""A guard region was installed in this VMA (smaps ``gu``; include/linux/mm.h
bit 11, in 6.18.y from 6.18.37 and upstream after v6.18.0). Sticky
(``VM_STICKY``): never cleared, kept by splits, fork and mremap, OR-ed into
a merged VMA; and ignored by the merge checks (``VM_IGNORE_MERGE``)."""
VM_STICKY: Final = VM_MAYBE_GUARD
VM_IGNORE_MERGE: Final = VM_STICKY
VM_LOCKED: Final = 0x2000
VM_IO: Final = 0x4000
VM_SEQ_READ: Final = 0x8000
VM_RAND_READ: Final = 0x10000
VM_DONTCOPY: Final = 0x20000
VM_DONTEXPAND: Final = 0x40000
VM_LOCKONFAULT: Final = 0x80000
VM_ACCOUNT: Final = 0x100000
VM_NORESERVE: Final = 0x200000
VM_HUGETLB: Final = 0x400000
VM_SYNC: Final = 0x800000
VM_WIPEONFORK: Final = 0x2000000
VM_DONTDUMP: Final = 0x4000000
VM_MIXEDMAP: Final = 0x10000000
VM_HUGEPAGE: Final = 0x20000000
VM_NOHUGEPAGE: Final = 0x40000000
VM_MERGEABLE: Final = 0x80000000
VM_DROPPABLE: Final = 1 << 40
VM_SEALABLE: Final = 1 << 62  # the Dec 2023 proposal's MAP_SEALABLE opt-in (model only)

VM_ACCESS_FLAGS: Final = VM_READ | VM_WRITE | VM_EXEC
VM_LOCKED_MASK: Final = VM_LOCKED | VM_LOCKONFAULT
VM_SPECIAL: Final = VM_IO | VM_DONTEXPAND | VM_MIXEDMAP
VM_PFNMAP: Final = 0x400

# smaps VmFlags mnemonics that layouts carry (fs/proc/task_mmu.c show_smap_vma_flags).
MNEMONICS: Final = (
    (VM_GROWSDOWN, "gd"),
    (VM_SEQ_READ, "sr"),
    (VM_RAND_READ, "rr"),
    (VM_DONTCOPY, "dc"),
    (VM_LOCKED, "lo"),
    (VM_LOCKONFAULT, "lf"),
    (VM_WIPEONFORK, "wf"),
    (VM_DONTDUMP, "dd"),
    (VM_HUGEPAGE, "hg"),
    (VM_NOHUGEPAGE, "nh"),
    (VM_MERGEABLE, "mg"),
    (VM_MAYBE_GUARD, "gu"),
)


class AnonVma:
    """Identity of an ``anon_vma`` (compared by identity, like the kernel's pointer).

    ``forked`` marks an anon_vma created by ``fork()`` for a child VMA: its
    ``anon_vma_chain`` also links the parent's, so ``vma_had_uncowed_parents()``
    forbids merging it with a VMA that has no anon_vma.

    ``serial`` names it in layouts (``av<serial>``), so the same object has the
    same name in every layout of an address space and its copies (the analyzer
    compares objects across a before/after pair). A child's anon_vma keeps its
    parent's serial: it holds the inherited pages.
    """

    __slots__ = ("forked", "serial")

    def __init__(self, forked: bool = False, serial: int = 0) -> None:
        self.forked = forked
        self.serial = serial

    def __repr__(self) -> str:
        return f"AnonVma(forked={self.forked}, serial={self.serial}) at {id(self):#x}"


class Vma:
    """One VMA: ``[start, end)`` (bytes, page-aligned) and its attributes.

    ``file`` names the backing object (``None`` for private anonymous memory;
    ``"f:NAME"`` / ``"F:NAME"`` for a file opened read-write / read-only, one
    open file per name and mode; ``"s:N"`` for shmem). ``pgoff`` is the page
    offset of ``start`` in it (``start >> 12`` at creation for anonymous
    memory, as ``do_mmap()`` sets). ``anon`` is the anon_vma (``None`` until a
    private page is first written, as ``anon_vma_prepare()`` runs on the first
    write fault). ``priv`` holds the private pages (copy-on-write copies,
    anonymous data, guard markers ``#``) as runs relative to ``start``.
    """

    __slots__ = ("anon", "end", "file", "flags", "pgoff", "priv", "seal", "start", "views")

    def __init__(
        self,
        start: int,
        end: int,
        flags: int,
        pgoff: int,
        file: str | None,
        anon: AnonVma | None,
        seal: int,
        priv: Runs,
    ) -> None:
        self.start = start
        self.end = end
        self.flags = flags
        self.pgoff = pgoff
        self.file = file
        self.anon = anon
        self.seal = seal
        self.priv = priv
        self.views: dict[tuple[int, int, int], tuple[object, ...]] | None = None
        """``AddressSpace.vma_view``'s entries for this VMA, per window it was
        clipped to (a cache: the VMA never changes, so neither do they)."""

    def __repr__(self) -> str:
        return (
            f"Vma({self.start:#x}-{self.end:#x} flags={self.flags:#x} pgoff={self.pgoff:#x} "
            f"file={self.file} seal={self.seal} anon={'yes' if self.anon else 'no'} "
            f"priv={self.priv})"
        )

    @property
    def pages(self) -> int:
        """Length in pages."""
        return (self.end - self.start) >> PAGE_SHIFT

    def cut(self, start: int, end: int) -> Vma:
        """The part ``[start, end)`` (inside this VMA) as its own VMA (a split)."""
        off = (start - self.start) >> PAGE_SHIFT
        priv = content.cut(self.priv, off, (end - self.start) >> PAGE_SHIFT)
        return Vma(start, end, self.flags, self.pgoff + off, self.file, self.anon, self.seal, priv)

    def with_flags(self, flags: int, seal: int) -> Vma:
        """A copy with other flags and seal."""
        return Vma(self.start, self.end, flags, self.pgoff, self.file, self.anon, seal, self.priv)

    def with_priv(self, priv: Runs, anon: AnonVma | None) -> Vma:
        """A copy with other private pages and anon_vma."""
        return Vma(self.start, self.end, self.flags, self.pgoff, self.file, anon, self.seal, priv)

    def moved(self, start: int, end: int, pgoff: int) -> Vma:
        """A copy at another place (``copy_vma()``), keeping flags, object and anon_vma."""
        return Vma(start, end, self.flags, pgoff, self.file, self.anon, self.seal, self.priv)


def is_anonymous(vma: Vma) -> bool:
    """``vma_is_anonymous()``: private anonymous memory (no ``vm_ops``)."""
    return vma.file is None


def anon_compatible(a: AnonVma | None, b: AnonVma | None) -> bool:
    """``is_mergeable_anon_vma()``: a missing anon_vma merges with one that
    has no forked parents; two anon_vmas merge only when they are the same."""
    if a is None:
        return b is None or not b.forked
    if b is None:
        return not a.forked
    return a is b


def can_merge(a: Vma, b: Vma) -> bool:
    """Whether ``a`` (left) and ``b`` (right, adjacent) are one VMA to the
    kernel's merge code: same flags (but ``VM_IGNORE_MERGE``: mm/vma.c
    ``is_mergeable_vma()`` compares ``(vm_flags ^ flags) & ~VM_IGNORE_MERGE``),
    seal and object, contiguous offsets, compatible anon_vmas, nothing special
    (``can_vma_merge_after()``)."""
    return (
        a.end == b.start
        and not (a.flags ^ b.flags) & ~VM_IGNORE_MERGE
        and a.seal == b.seal
        and a.file == b.file
        and a.pgoff + a.pages == b.pgoff
        and not a.flags & VM_SPECIAL
        and anon_compatible(a.anon, b.anon)
    )


def merge(a: Vma, b: Vma) -> Vma:
    """``a`` and ``b`` as one VMA (the caller checked :func:`can_merge`); the
    sticky flags of both survive (mm/vma.c ``vma_merge_existing_range()``,
    ``vma_expand()``: ``vm_flags_set(vma, sticky_flags)``)."""
    return Vma(
        a.start,
        b.end,
        a.flags | (b.flags & VM_STICKY),
        a.pgoff,
        a.file,
        a.anon if a.anon is not None else b.anon,
        a.seal,
        content.concat(a.priv, b.priv, a.pages),
    )


def anon_reusable(a: Vma, b: Vma, *, seals: bool = True) -> bool:
    """``anon_vma_compatible()``: adjacent, same object and policy, contiguous
    offsets, flags equal except access bits and ``VM_IGNORE_MERGE`` (mm/vma.c),
    so a new anon_vma can be shared instead of allocated
    (``find_mergeable_anon_vma()``). ``seals``: whether the seal is one of the
    flags compared (not for RFC v1's ``vm_seals``)."""
    return (
        a.end == b.start
        and a.file == b.file
        and (a.seal == b.seal or not seals)
        and not (a.flags ^ b.flags) & ~(VM_ACCESS_FLAGS | VM_IGNORE_MERGE)
        and b.pgoff == a.pgoff + a.pages
    )


# ----------------------------------------------------------------- limits

M64: Final = (1 << 64) - 1
TASK_SIZE: Final = 0x7FFF_FFFF_F000
"""x86_64 with 4-level page tables: the top of user space (``TASK_SIZE_MAX``)."""
USER_PTR_MAX: Final = TASK_SIZE
"""``access_ok()``: ``ptr + size`` may be at most this (arch/x86/kernel/cpu/common.c)."""
MMAP_MIN_ADDR: Final = 0x10000
"""``vm.mmap_min_addr`` default (hints below it are raised to it)."""
STACK_GUARD_GAP: Final = 256 << PAGE_SHIFT
"""``stack_guard_gap`` default: 256 pages kept free below a grows-down VMA."""
RLIMIT_STACK: Final = 8 << 20
"""Default ``RLIMIT_STACK`` (8 MiB)."""
MAX_RW_COUNT: Final = 0x7FFF_F000
"""``INT_MAX & PAGE_MASK``: the most bytes one iovec array carries."""
UIO_MAXIOV: Final = 1024


def page_align(n: int) -> int:
    """``PAGE_ALIGN()`` on an unsigned long (wraps to 0 near the top)."""
    return (n + PAGE - 1) & ~(PAGE - 1) & M64

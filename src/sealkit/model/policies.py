"""Sealing policies: one registry of plain objects (data and small functions).

A policy says what a seal blocks, with which errno, and where the check sits
in the kernel's code (which decides whether a refusal is atomic or partial):

* ``precheck``: operations checked over the whole range before anything
  changes (Linux 6.10/6.11 ``can_modify_mm()``; the 2023 proposals;
  OpenBSD's first pass over the entries). Such refusals are atomic.
* every other operation is checked per VMA where Linux 6.12+ checks it: the
  munmap gather (``vms_gather_munmap_vmas()``: atomic, but a leading split
  remains), ``mprotect_fixup()`` (partial), mremap's ``check_prep_vma()`` and
  ``madvise_vma_behavior()`` (partial).

The non-Linux policies model *that design applied to a Linux address space*:
mmap, munmap, mremap, brk and madvise keep their Linux meaning and only the
seal checks change. Each rule cites the source line it follows
(``docs/reference/designs.md`` collects them); how a design is put on a
Linux address space is written in the policy's ``choices``. Where no source
settles a rule, both readings are policies: the default reading has the
design's name and the other is registered as ``DESIGN:READING``
(``mimmutable:permissive-advice``), each naming the other in its
``unsettled`` entries (``sealkit analyze --explain POLICY`` runs both).

``refusals`` lists, per operation, what the seal blocks and whether a refusal
is ``"atomic"`` (nothing changed, apart from a leading split where noted),
``"partial"`` (VMAs before the refusing one changed) or ``"undefined"``.
"""

from __future__ import annotations

import errno
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from types import MappingProxyType
from typing import TYPE_CHECKING, Final

from ..flags import MADV_DISCARD, Madv, SealV1, SealV3, SplitSeal
from ..ops import Mimmutable, Mseal, MsealSplit, MsealV1, MsealV3, Op
from . import mseal
from .vma import VM_EXEC, VM_READ, VM_WRITE, Vma, is_anonymous

if TYPE_CHECKING:
    from .space import AddressSpace

__all__ = ["POLICIES", "Policy", "Unsettled"]

PURPOSES: Final = ("munmap", "mmap", "brk", "mremap")
"""Unmapping paths that check seals: munmap(2), MAP_FIXED replacement, brk
shrink, and every unmap done by mremap (destination, shrink, source)."""

VALID_ADVICE: Final = frozenset(int(a) for a in Madv if a not in (Madv.HWPOISON, Madv.SOFT_OFFLINE))
"""``madvise_behavior_valid()`` on the reference kernel: CONFIG_KSM and
CONFIG_TRANSPARENT_HUGEPAGE are set, CONFIG_MEMORY_FAILURE is not (so
HWPOISON and SOFT_OFFLINE are EINVAL; docs/reference/linux.md, "Limits")."""

VALID_ADVICE_610: Final = VALID_ADVICE - {Madv.GUARD_INSTALL, Madv.GUARD_REMOVE}
"""6.10 had no guard regions (added in 6.13)."""

DISCARD: Final = frozenset(int(a) for a in MADV_DISCARD)
DISCARD_610Y: Final = DISCARD - {Madv.GUARD_INSTALL}
"""``is_madv_discard()`` as fixed by e46bc2e7eb90 (6.10.y, 6.11)."""

DISCARD_INHERIT: Final = frozenset({Madv.DONTFORK, Madv.DOFORK, Madv.WIPEONFORK, Madv.KEEPONFORK})
DISCARD_DATA: Final = frozenset(
    {Madv.DONTNEED, Madv.DONTNEED_LOCKED, Madv.FREE, Madv.REMOVE, Madv.GUARD_INSTALL}
)
OPENBSD_DISCARD: Final = frozenset({Madv.DONTNEED, Madv.FREE})
"""The discarding advice OpenBSD has (``sys_madvise()``, uvm_mmap.c rev 1.203:
NORMAL, RANDOM, SEQUENTIAL, WILLNEED, DONTNEED, FREE, SPACEAVAIL)."""
LINUX_ONLY_DISCARD: Final = DISCARD_DATA - OPENBSD_DISCARD
"""Advice that destroys data or access and has no OpenBSD counterpart:
GUARD_INSTALL, REMOVE, DONTNEED_LOCKED."""


def _ro_anon(vma: Vma) -> bool:
    """``is_ro_anon()`` / the tail of ``can_madvise_modify()``: private
    anonymous and not writable (no PKU on the reference machine)."""
    return is_anonymous(vma) and not vma.flags & VM_WRITE


@dataclass(frozen=True)
class Unsettled:
    """A rule of a design that no source settles, as one policy reads it.

    Both readings are registered policies; each carries the same ``key`` and
    ``question`` with ``reading`` and ``other_reading`` swapped, and names
    the policy taking the other reading (``other``).
    """

    key: str
    """Stable id, as in docs/reference/designs.md (``M2``, ``C2``, ``V1-3``)."""
    question: str
    reading: str
    """The reading this policy takes."""
    other: str
    """The ``POLICIES`` name of the policy taking the other reading."""
    other_reading: str
    why: str
    """Why the default reading is the default (the sources that lean to it)."""


@dataclass(frozen=True, eq=False)
class Policy:
    """One sealing design. See the module docstring for the fields' meaning."""

    name: str
    summary: str
    source: str
    seal_op: type[Op]
    """The sealing call of this world; the others return ``-ENOSYS``."""
    seal_call: Callable[[AddressSpace, Op], int]
    seal_text: Callable[[int], str]
    refusal: int
    """errno of a blocked operation."""
    blocks: Callable[[str, int], bool]
    """(purpose in :data:`PURPOSES`, seal bits) -> blocked."""
    blocks_mprotect: Callable[[Vma, int], bool]
    """(VMA, new vm_flags) -> blocked."""
    blocks_madvise: Callable[[Vma, int], bool]
    """(VMA, advice) -> this VMA refuses the advice."""
    madvise_mode: Callable[[int], str]
    """advice -> ``"walk"`` (per VMA, partial), ``"precheck"`` (whole range,
    atomic), ``"amap"`` (OpenBSD: any sealed VMA in range, then the first VMA
    with anonymous memory refuses; partial) or ``"free"`` (never blocked)."""
    precheck: frozenset[str] = frozenset()
    """Operations checked over the whole range first (subset of
    :data:`PURPOSES` plus ``"mprotect"``)."""
    map_sealable: bool = False
    """mmap(MAP_SEALABLE) marks the VMA sealable (the v3 proposal's opt-in)."""
    mremap_multi: bool = True
    """6.17+ ``remap_move()``: a same-size MREMAP_FIXED move may span VMAs."""
    valid_advice: frozenset[int] = VALID_ADVICE
    msync_amap: bool = False
    """``msync(MS_INVALIDATE)`` is refused (``refusal``) when the range holds a
    sealed VMA and the walk meets a VMA with anonymous memory (OpenBSD
    ``uvm_map_clean()``, mimmutable.2 rev 1.5); Linux never refuses msync."""
    merge_rule: str = "equal"
    """Which adjacent VMAs merge, as far as seals go (``is_mergeable_vma()``):
    ``"equal"`` (the seal is compared like a vm_flag: Linux's ``VM_SEALED``,
    v3's ``check_vma_seals_mergeable()``), ``"never-sealed"`` (no merge when
    either side is sealed) or ``"kept-neighbour"`` (only the neighbour that
    survives the merge is asked, and the merged pages take its seals)."""
    seal_in_flags: bool = True
    """The seal is part of ``vm_flags``, so ``anon_vma_compatible()`` compares
    it (v1 kept seals in a separate ``vm_seals``: "vm_flags is full")."""
    refusals: Mapping[str, tuple[str, str]] = field(default_factory=dict)
    choices: tuple[str, ...] = ()
    """How the design is put on a Linux address space, and what its sources
    settle that a reader might not expect (each with its source)."""
    unsettled: tuple[Unsettled, ...] = ()
    """Rules no source settles: the reading taken and the policy taking the other."""

    def __post_init__(self) -> None:
        # Each policy's docstring: what it is, what it blocks, the choices it
        # makes and the readings it takes where no source settles a rule
        # (help(POLICIES[name]) / .__doc__).
        lines = [f"{self.name}: {self.summary}.", f"Source: {self.source}.", "", "Refusals:"]
        lines += [f"  {op}: {what} [{kind}]" for op, (what, kind) in self.refusals.items()]
        if self.choices:
            lines += ["", "Choices:"]
            lines += [f"  - {choice}" for choice in self.choices]
        if self.unsettled:
            lines += ["", "Where no source settles a rule (the other reading is another policy):"]
            for u in self.unsettled:
                lines += [
                    f"  - {u.key}: {u.question}",
                    f"    this reading: {u.reading}",
                    f"    other reading ({u.other}): {u.other_reading}",
                ]
        object.__setattr__(self, "__doc__", "\n".join(lines))

    def __repr__(self) -> str:
        return f"POLICIES[{self.name!r}]"

    @property
    def design(self) -> str:
        """The design this policy reads: the name before ``:`` (``mimmutable``)."""
        return self.name.partition(":")[0]

    @property
    def reading(self) -> str:
        """The reading after ``:`` (``permissive-advice``), ``""`` for the default."""
        return self.name.partition(":")[2]

    def refuses_every_mprotect(self, seal: int) -> bool:
        """Whether a VMA with ``seal`` refuses every mprotect, downgrades and
        same-protection no-ops included: the design promises that a sealed
        page's protection never changes (else at most that it gains no right)."""
        prots = (0, VM_READ, VM_READ | VM_WRITE, VM_READ | VM_EXEC, VM_READ | VM_WRITE | VM_EXEC)
        may = 0x70  # VM_MAYREAD | VM_MAYWRITE | VM_MAYEXEC
        return all(
            self.blocks_mprotect(Vma(0, 4096, old | may, 0, None, None, seal, ()), new | may)
            for old in prots
            for new in prots
        )


def _never(*_: object) -> bool:
    return False


def _sealed(_purpose: str, seal: int) -> bool:
    return bool(seal)


def _sealed_vma(vma: Vma, _newflags: int) -> bool:
    return bool(vma.seal)


def _walk(_advice: int) -> str:
    return "walk"


def _precheck(_advice: int) -> str:
    return "precheck"


def _free(_advice: int) -> str:
    return "free"


def _linux_madvise(vma: Vma, advice: int) -> bool:
    # can_madvise_modify() (mm/madvise.c, 6.17+): refuse only a discard on a
    # sealed, anonymous, non-writable VMA (docs/reference/linux.md rule 10).
    return bool(vma.seal) and advice in DISCARD and _ro_anon(vma)


def _madvise_610(vma: Vma, advice: int) -> bool:
    # 6.10.0 is_madv_discard(): "behavior & (FREE|DONTNEED|DONTNEED_LOCKED|
    # REMOVE|DONTFORK|WIPEONFORK)" == behavior & 31, so any advice with one of
    # bits 0-4 set counted as a discard (fixed by e46bc2e7eb90).
    return bool(vma.seal) and bool(advice & 31) and _ro_anon(vma)


def _madvise_610y(vma: Vma, advice: int) -> bool:
    return bool(vma.seal) and advice in DISCARD_610Y and _ro_anon(vma)


_UNSEALED_CALLS: Final = MappingProxyType(
    {
        # Issue 14: what no design of the 2023 debate restricts. Writes from
        # outside the process (FOLL_FORCE through /proc/PID/mem, ptrace; the
        # unforced process_vm_writev), changes to the backing file through its
        # descriptor, msync, mincore, mlockall: none of the designs' sources
        # names them, so every design answers them as Linux does (Linux's own
        # Documentation/userspace-api/mseal.rst, "mseal doesn't block", lists the
        # /proc/self/mem and ptrace writes).
        "pwrite_mem": ("nothing (forced under proc_mem.force_override=always)", "-"),
        "vm_writev": ("nothing (honours write permission, not the seal)", "-"),
        "poke": ("nothing (always forced)", "-"),
        "file_pwrite": ("nothing (no file operation looks at a VMA)", "-"),
        "ftruncate": ("nothing (pages past the new end raise SIGBUS, private copies too)", "-"),
        "punch": ("nothing", "-"),
        "msync": ("nothing", "-"),
        "mincore": ("nothing", "-"),
        "mlockall": ("nothing; sealed VMAs are locked like any other", "-"),
    }
)

_LINUX_REFUSALS: Final = MappingProxyType(
    {
        **_UNSEALED_CALLS,
        "mseal": ("ENOMEM on any unmapped page, nothing sealed", "atomic"),
        "munmap": ("any sealed VMA in range (EPERM)", "atomic (leading split remains)"),
        "mmap MAP_FIXED": ("any sealed VMA in range (EPERM)", "atomic (leading split remains)"),
        "mmap MAP_FIXED_NOREPLACE": ("any mapping in range (EEXIST), sealed or not", "atomic"),
        "mremap": ("sealed source VMA, or sealed VMA at the destination (EPERM)", "undefined"),
        "mprotect": ("any sealed VMA, even a same-prot no-op (EPERM)", "partial"),
        "pkey_mprotect": ("as mprotect", "partial"),
        "madvise": ("discard advice on a sealed anonymous VMA without write (EPERM)", "partial"),
        "process_madvise": ("as madvise, per iovec; returns bytes done before it", "partial"),
        "brk": ("shrink over a sealed heap VMA: break unchanged", "atomic (leading split remains)"),
        "mlock": ("nothing", "-"),
        "fork": ("nothing; seals are inherited", "-"),
        "write": ("nothing (a seal is not a protection)", "-"),
    }
)

_ATOMIC_REFUSALS: Final = MappingProxyType(
    {
        **_LINUX_REFUSALS,
        "munmap": ("any sealed VMA in range (EPERM)", "atomic"),
        "mmap MAP_FIXED": ("any sealed VMA in range (EPERM)", "atomic"),
        "mremap": ("sealed VMA in the source range or at the destination (EPERM)", "atomic"),
        "mprotect": ("any sealed VMA, even a same-prot no-op (EPERM)", "atomic"),
        "pkey_mprotect": ("as mprotect", "atomic"),
        "madvise": ("discard advice on a sealed anonymous VMA without write (EPERM)", "atomic"),
        "brk": ("shrink over a sealed heap VMA: break unchanged", "atomic"),
    }
)

_ALL: Final = frozenset({*PURPOSES, "mprotect"})

LINUX: Final = Policy(
    name="linux",
    summary="Linux 6.12+ as measured on 6.18: per-VMA checks; munmap and MAP_FIXED atomic "
    "(leftover split), mprotect and madvise partial; discard madvise refused only on "
    "anonymous memory without write",
    source="docs/reference/linux.md (measured on 6.18; mm/mseal.c, mm/vma.c, mm/mprotect.c, "
    "mm/mremap.c, mm/madvise.c)",
    seal_op=Mseal,
    seal_call=mseal.do_mseal,
    seal_text=lambda seal: "sl",
    refusal=errno.EPERM,
    blocks=_sealed,
    blocks_mprotect=_sealed_vma,
    blocks_madvise=_linux_madvise,
    madvise_mode=_walk,
    refusals=_LINUX_REFUSALS,
    choices=(
        "COLLAPSE is always EINVAL: the model has no huge pages (measured EINVAL for small VMAs).",
        "MAP_HUGETLB is EINVAL for an unknown size and ENOMEM otherwise: no hugetlb pages.",
        "the caller is root: MAP_FIXED below mmap_min_addr and mlock beyond RLIMIT_MEMLOCK work.",
        "files are regular files on a disk filesystem (as the probe's O_TMPFILE on ext4): "
        "MAP_SYNC is EOPNOTSUPP, MADV_REMOVE punches holes.",
        "vm.max_map_count and RLIMIT_AS/RLIMIT_DATA are not modelled (unlimited).",
        "proc_mem.force_override is a parameter of the address space (AddressSpace("
        "proc_mem_force=...), default 'always', this kernel's setting); a trace's pwrite_mem is "
        "the process writing its own /proc/self/mem, so 'ptrace' and 'never' answer alike.",
        "the trace's files are on ext4 (s_maxbytes 16 TiB - 4 KiB); file sizes are kept in "
        "pages, a page the end of the file cuts reads '?'.",
    ),
)

LINUX_610: Final = Policy(
    name="linux-6.10",
    summary="Linux 6.10.0 as released: whole-range can_modify_mm() pre-checks, every refusal "
    "atomic, and the is_madv_discard() bitmask bug (any advice with bits 0-4 set is a "
    "discard on sealed read-only anonymous memory, POPULATE included)",
    source="v10 2/5 (20240415163527.626541-3-jeffxu@chromium.org, merged as 8be7258aad44); "
    "docs/reference/designs.md#linux-610-and-linux-610y",
    seal_op=Mseal,
    seal_call=mseal.do_mseal,
    seal_text=lambda seal: "sl",
    refusal=errno.EPERM,
    blocks=_sealed,
    blocks_mprotect=_sealed_vma,
    blocks_madvise=_madvise_610,
    madvise_mode=_precheck,
    precheck=_ALL,
    mremap_multi=False,
    valid_advice=VALID_ADVICE_610,
    refusals=_ATOMIC_REFUSALS,
    choices=(
        "models 6.10.0 (the buggy bitmask); 'linux-6.10.y' models the fixed 6.10.y/6.11.",
        "MADV_GUARD_INSTALL/REMOVE did not exist (6.13): EINVAL, as on a 6.10 kernel.",
        "mremap is the 6.10 single-VMA code: can_modify_mm(addr, addr+old_len) for resizes, "
        "in mremap_to() for moves (so old_len=0 duplication of a sealed mapping is allowed).",
        "mmap MAP_FIXED unmaps (with the pre-check) before accounting, as 6.10 did.",
        "everything not about sealing is the 6.18 model (VMA merging, MAP_STACK, ...).",
    ),
)

LINUX_610Y: Final = replace(
    LINUX_610,
    name="linux-6.10.y",
    summary="Linux 6.10.y/6.11: as linux-6.10 with is_madv_discard() fixed (e46bc2e7eb90)",
    source="e46bc2e7eb90 'mseal: fix is_madv_discard()' (6.10.y backport "
    "20240827143834.961134042@linuxfoundation.org); docs/reference/designs.md"
    "#linux-610-and-linux-610y",
    blocks_madvise=_madvise_610y,
    choices=LINUX_610.choices[1:],
)


# ------------------------------------------------------------ proposal v1
# RFC v1, 2023-10-16: 20231016143828.647848-N-jeffxu@chromium.org (N = patch + 1).

_V1_FOR: Final = {
    "munmap": SealV1.MUNMAP,
    "mmap": SealV1.MMAP,
    "mremap": SealV1.MREMAP,
}


def _v1_blocks(purpose: str, seal: int) -> bool:
    # 5/8: only SYSCALL_DEFINE2(munmap) is ON_BEHALF_OF_USERSPACE; brk shrinks
    # through do_vma_munmap(), which no v1 patch touches: brk is never checked.
    if purpose == "brk":
        return False
    return bool(seal & _V1_FOR[purpose])


def _names(kind: type, order: tuple[int, ...]) -> Callable[[int], str]:
    def text(seal: int) -> str:
        return "+".join(kind(bit).name.lower() for bit in order if seal & bit) or "-"

    return text


_V1_MERGE_QUESTION: Final = (
    "Patch 1/8 makes is_mergeable_vma() return 0 for a sealed VMA ('If a VMA is sealed, it "
    "won't be merged with another VMA'), but vma_merge() asks it only about the neighbours "
    "that survive a merge, never about the VMA being changed, and copies no vm_seals: can "
    "an unsealed neighbour absorb a sealed VMA whose flags an allowed call made equal?"
)
_V1_NEVER: Final = (
    "no: no merge involves a sealed VMA, on either side (the patch's stated intent; sealing "
    "itself only splits, mseal_fixup(): 'sealed VMA doesn't merge with other VMAs')"
)
_V1_AS_CODED: Final = (
    "yes: only the surviving neighbour's seals are tested; an unsealed neighbour absorbs the "
    "changed part of a sealed VMA, whose pages lose their seals (the 6.6 vma_merge() with "
    "1/8's test, read, not run on an RFC kernel)"
)
_V1_WHY: Final = (
    "the patch says sealed VMAs never merge and its author meant it; the as-coded gap is a "
    "bug of the RFC's merge code, not of seal types per system call"
)

_V1_REFUSALS: Final = MappingProxyType(
    {
        **_UNSEALED_CALLS,
        "mseal_v1": (
            "one walk in address order: a hole (ENOMEM) or a new type on an MSEAL VMA "
            "(EACCES), whichever comes first",
            "atomic",
        ),
        "munmap": ("MUNMAP (EACCES)", "atomic"),
        "mmap MAP_FIXED": ("MMAP (EACCES); MUNMAP alone does not stop it", "atomic"),
        "mremap": ("MREMAP on the source or destination (EACCES)", "atomic"),
        "mprotect": ("MPROTECT (EACCES)", "atomic"),
        "pkey_mprotect": ("MPROTECT (EACCES)", "atomic"),
        "madvise": ("nothing (v1 had no madvise seal)", "-"),
        "process_madvise": ("nothing", "-"),
        "brk": ("nothing (v1 did not touch do_vma_munmap())", "-"),
        "mlock": ("nothing", "-"),
        "fork": ("nothing; seals are inherited", "-"),
        "write": ("nothing", "-"),
    }
)

PROPOSAL_V1: Final = Policy(
    name="proposal-v1",
    summary="Oct 2023 RFC v1: mseal(addr, len, types, flags), each type blocking only its "
    "named syscall (MSEAL, MPROTECT, MUNMAP, MMAP, MREMAP); whole-range pre-checks; "
    "sealed VMAs never merge",
    source="RFC v1 20231016143828.647848-{1..8}-jeffxu@chromium.org; "
    "docs/reference/designs.md#proposal-v1",
    seal_op=MsealV1,
    seal_call=mseal.mseal_v1,
    seal_text=_names(SealV1, (1, 2, 4, 8, 16)),
    refusal=errno.EACCES,
    blocks=_v1_blocks,
    blocks_mprotect=lambda vma, newflags: bool(vma.seal & SealV1.MPROTECT),
    blocks_madvise=_never,
    madvise_mode=_free,
    precheck=_ALL,
    mremap_multi=False,
    merge_rule="never-sealed",
    seal_in_flags=False,
    refusals=_V1_REFUSALS,
    choices=(
        "blocked operations return EACCES, as every revision before v7 did (3/8-7/8).",
        "types may be any subset of the five bits, 0 included; flags must be 0 (1/8 "
        "can_do_mseal(): only unknown bits and flags are EINVAL).",
        "holes and MSEAL refusals are found in one walk in address order (1/8 check_mm_seal()): "
        "ENOMEM or EACCES, whichever comes first, nothing sealed.",
        "MSEAL blocks a call that would add a type a VMA lacks; re-sealing with types a VMA "
        "already has is allowed (1/8 can_add_vma_seals()).",
        "brk shrink is not checked (5/8 checks only munmap(2); brk shrinks through "
        "do_vma_munmap(), untouched); the unmaps mremap does itself (source, shrink, "
        "destination) answer to MREMAP, not MUNMAP (they were 'on behalf of the kernel').",
        "no madvise type existed, so discards are never refused (the cover-letter thread).",
        "seals live in vm_seals, not vm_flags: anon_vma_compatible() ignores them; mremap "
        "growing a sealed VMA in place fails with ENOMEM (vma_merge() of the extension "
        "refuses the sealed VMA), as the 6.6 base tree would.",
        "mremap is single-VMA (the 6.6 base tree's code).",
    ),
    unsettled=(
        Unsettled(
            "V1-3",
            _V1_MERGE_QUESTION,
            _V1_NEVER,
            "proposal-v1:merge-as-coded",
            _V1_AS_CODED,
            _V1_WHY,
        ),
    ),
)

PROPOSAL_V1_AS_CODED: Final = replace(
    PROPOSAL_V1,
    name="proposal-v1:merge-as-coded",
    summary="RFC v1 with its merge code as written: an unsealed neighbour may absorb a sealed "
    "VMA whose flags now match, and the absorbed pages lose their seals",
    merge_rule="kept-neighbour",
    unsettled=(
        Unsettled("V1-3", _V1_MERGE_QUESTION, _V1_AS_CODED, "proposal-v1", _V1_NEVER, _V1_WHY),
    ),
)


# ------------------------------------------------------------ proposal v3
# RFC v3, 2023-12-12: 20231212231706.2680890-N-jeffxu@chromium.org (N = patch + 1).


def _v3_blocks(purpose: str, seal: int) -> bool:
    # 04/11: do_vmi_munmap(), do_vma_munmap() (brk), do_mmap(), mremap_to() and
    # SYSCALL_DEFINE5(mremap) all test MM_SEAL_BASE.
    return bool(seal & SealV3.BASE)


def _v3_madvise(vma: Vma, advice: int) -> bool:
    # 08/11 can_modify_mm_madv(): is_madv_discard() is "behavior & (MADV_FREE |
    # MADV_DONTNEED | MADV_DONTNEED_LOCKED | MADV_REMOVE | MADV_DONTFORK |
    # MADV_WIPEONFORK)" (== behavior & 31) and is_ro_anon() the VMA test.
    return bool(vma.seal & SealV3.DISCARD_RO_ANON) and bool(advice & 31) and _ro_anon(vma)


PROPOSAL_V3: Final = Policy(
    name="proposal-v3",
    summary="Dec 2023 v3: functional types SEAL, BASE (munmap, mremap, MAP_FIXED, brk), "
    "PROT_PKEY (mprotect) and DISCARD_RO_ANON (both imply BASE); only MAP_SEALABLE mappings "
    "can be sealed",
    source="RFC v3 20231212231706.2680890-{2,5,9,10}-jeffxu@chromium.org; "
    "docs/reference/designs.md#proposal-v3",
    seal_op=MsealV3,
    seal_call=mseal.mseal_v3,
    seal_text=_names(SealV3, (1, 2, 4, 8)),
    refusal=errno.EACCES,
    blocks=_v3_blocks,
    blocks_mprotect=lambda vma, newflags: bool(vma.seal & SealV3.PROT_PKEY),
    blocks_madvise=_v3_madvise,
    madvise_mode=_precheck,
    precheck=_ALL,
    map_sealable=True,
    mremap_multi=False,
    refusals=MappingProxyType(
        {
            **_UNSEALED_CALLS,
            "mseal_v3": (
                "one walk in address order: a hole (ENOMEM), a VMA mapped without "
                "MAP_SEALABLE or a new type on a SEAL VMA (EACCES), whichever comes first",
                "atomic",
            ),
            "munmap": ("BASE (EACCES)", "atomic"),
            "mmap MAP_FIXED": ("BASE (EACCES)", "atomic"),
            "mremap": ("BASE on the source or destination (EACCES)", "atomic"),
            "mprotect": ("PROT_PKEY (EACCES)", "atomic"),
            "pkey_mprotect": ("PROT_PKEY (EACCES)", "atomic"),
            "madvise": (
                "DISCARD_RO_ANON: advice with any of bits 0-4 set on anonymous memory "
                "without write, anywhere in the range",
                "atomic",
            ),
            "process_madvise": ("as madvise, per iovec", "atomic per iovec"),
            "brk": ("BASE on the heap pages being released", "atomic"),
            "mlock": ("nothing", "-"),
            "fork": ("nothing; seals are inherited", "-"),
            "write": ("nothing", "-"),
        }
    ),
    choices=(
        "blocked operations and unsealable VMAs return EACCES (04/11, 09/11).",
        "PROT_PKEY and DISCARD_RO_ANON add BASE before the argument checks (08/11 do_mseal(): "
        "'types & (MM_SEAL_PROT_PKEY | MM_SEAL_DISCARD_RO_ANON)'); types may be 0, flags 0.",
        "holes, unsealable VMAs and SEAL refusals are found in one walk in address order "
        "(09/11: check_mm_seal() with the sealable test in can_add_vma_seals()).",
        "VM_SEALABLE comes only from mmap(MAP_SEALABLE) and survives split, merge, mremap and "
        "fork; brk memory is not sealable. In this world MAP_SEALABLE is a known flag.",
        "the discard test is 08/11's bitmask (advice & 31) applied to a 6.18 address space: "
        "GUARD_INSTALL (102), GUARD_REMOVE (103) and POPULATE_READ/WRITE (22, 23) have bits "
        "0-4 set and count too, since the check runs before the walk.",
        "v3's PROT_SEAL_* mmap bits are not modelled: sealing is only by mseal_v3.",
    ),
)


# ------------------------------------------------------------- mimmutable
# OpenBSD: sys/uvm/uvm_map.c, uvm_mmap.c, uvm_unix.c (openbsd/src), mimmutable.2.


def _imm_blocks(purpose: str, seal: int) -> bool:
    # sys_obreak() shrinks with uvm_unmap() (uvm_unix.c rev 1.73; uvm_deallocate()
    # -> uvm_unmap() before), which calls uvm_unmap_remove(..., checkimmutable
    # FALSE) (uvm_map.c rev 1.321 and 1.346): the break is never checked.
    return bool(seal) and purpose != "brk"


def _imm_mode(advice: int) -> str:
    # Reading A of M2: advice OpenBSD lacks is refused over the whole range.
    if advice in LINUX_ONLY_DISCARD:
        return "precheck"
    return _imm_mode_permissive(advice)


def _imm_mode_permissive(advice: int) -> str:
    # uvm_map_clean() (DONTNEED/FREE) gates on an amap; minherit (inheritance
    # advice) refuses any immutable entry first (uvm_map.c rev 1.346).
    if advice in DISCARD_DATA:
        return "amap"
    if advice in DISCARD_INHERIT:
        return "precheck"
    return "free"


def _imm_mprotect_73(vma: Vma, newflags: int) -> bool:
    # mimmutable.2 rev 1.2 CAVEATS: "mprotect(2) may reduce permissions on
    # immutable pages marked PROT_READ | PROT_WRITE to the less permissive
    # PROT_READ" (removed by 38558285: "demote ... from RW to R").
    if not vma.seal:
        return False
    old = vma.flags & (VM_READ | VM_WRITE | 0x4)
    new = newflags & (VM_READ | VM_WRITE | 0x4)
    return not (old == VM_READ | VM_WRITE and new == VM_READ)


_IMM_REFUSALS: Final = MappingProxyType(
    {
        **_UNSEALED_CALLS,
        "msync": (
            "MS_INVALIDATE when the range holds an immutable VMA: the first VMA with "
            "anonymous memory refuses (EPERM)",
            "partial (msync changes nothing anyway)",
        ),
        "mimmutable": ("EPERM if a VMA in range has WIPEONFORK (MAP_INHERIT_ZERO)", "atomic"),
        "munmap": ("any immutable VMA in range (EPERM)", "atomic"),
        "mmap MAP_FIXED": ("any immutable VMA in range (EPERM)", "atomic"),
        "mremap": ("immutable source range or destination (EPERM)", "atomic"),
        "mprotect": ("any change on an immutable VMA, downgrades and no-ops included", "atomic"),
        "pkey_mprotect": ("as mprotect", "atomic"),
        "madvise": (
            "DONTNEED/FREE when the range holds an immutable VMA: the first VMA with "
            "anonymous memory (private data, or shared anonymous) refuses; GUARD_INSTALL, "
            "REMOVE, DONTNEED_LOCKED (no OpenBSD counterpart) and DONTFORK/WIPEONFORK/DOFORK/"
            "KEEPONFORK (minherit): any immutable VMA in range",
            "partial (DONTNEED/FREE), atomic (the rest)",
        ),
        "process_madvise": ("as madvise, per iovec", "partial"),
        "brk": ("nothing (sys_obreak() unmaps without the immutability check)", "-"),
        "mlock": ("nothing", "-"),
        "fork": ("nothing; immutability is inherited", "-"),
        "write": ("nothing", "-"),
    }
)

_IMM_CHOICES: Final = (
    "mimmutable rounds addr down and len up (ALIGN_ADDR), skips holes, returns 0 on an "
    "unmapped or out-of-range range and EINVAL on wrap-around (sys_mimmutable(), "
    "uvm_map_immutable()).",
    "Linux's WIPEONFORK stands for MAP_INHERIT_ZERO: mimmutable refuses a range holding one "
    "(uvm_map_immutable(), rev 1.346); inheritance advice counts as minherit.",
    "munmap, MAP_FIXED and mremap keep their Linux meaning (munmap of holes succeeds; "
    "OpenBSD's EINVAL for holes is not a property of immutability); their immutability check "
    "is OpenBSD's first pass (uvm_unmap_remove()): atomic, no leading split.",
    "brk shrink is not checked: sys_obreak() -> uvm_unmap(), checkimmutable FALSE.",
    "mremap (OpenBSD has none) is refused like munmap: immutable source or destination.",
    "'anonymous memory' (OpenBSD's amap) is a private VMA with an anon_vma, or a shared "
    "anonymous VMA (uvm_mmapanon(): MAP_SHARED gets UVM_FLAG_OVERLAY, an amap at mmap time).",
    "DONTNEED discards data as on Linux (OpenBSD's own DONTNEED only deactivates pages): the "
    "design is judged on a Linux address space.",
    "mprotect's first pass refuses before any change; holes still give Linux's ENOMEM.",
    "msync(MS_INVALIDATE) is OpenBSD's PGO_FREE (uvm_map_clean()): refused like "
    "MADV_FREE where an immutable VMA and anonymous memory meet, checked in Linux's msync "
    "walk before its EBUSY for locked VMAs; MS_SYNC and MS_ASYNC are not restricted.",
    "writes through /proc/PID/mem, process_vm_writev, ptrace POKEDATA and the backing file "
    "keep their Linux meaning: OpenBSD has neither /proc/PID/mem nor process_vm_writev, and "
    "no source says immutability restricts a debugger's writes or the file's contents.",
)

_IMM_ADVICE_QUESTION: Final = (
    "How does immutability treat Linux advice OpenBSD does not have (GUARD_INSTALL, REMOVE, "
    "DONTNEED_LOCKED), which destroys data or access?"
)
_IMM_STRICT: Final = (
    "refused with EPERM when any VMA in the range is immutable, before anything changes "
    "(114aad1: ops 'not destructive in OpenBSD, but ... destructive on other systems, so we "
    'take the "all ops" are illegal approach\')'
)
_IMM_PERMISSIVE: Final = (
    "judged like DONTNEED/FREE by uvm_map_clean()'s amap rule: refused only at the first VMA "
    "with anonymous memory, file-only ranges pass"
)
_IMM_WHY: Final = (
    "114aad1 states OpenBSD's policy for exactly this case, and its first implementation "
    "(uvm_map.c rev 1.324) refused the whole range"
)

MIMMUTABLE: Final = Policy(
    name="mimmutable",
    summary="OpenBSD today (uvm_map.c rev 1.346, mimmutable.2 of Jan 2024): address rounded "
    "down, holes skipped, every mprotect refused, atomic munmap/mmap, discards refused where "
    "anonymous memory is, destructive Linux-only advice refused",
    source="openbsd/src uvm_map.c rev 1.346, uvm_mmap.c rev 1.203, uvm_unix.c rev 1.73; commit "
    "114aad1984406bb6d9522da21182f9fcf7b0f369; mimmutable.2 (Jan 21 2024); "
    "docs/reference/designs.md#mimmutable",
    seal_op=Mimmutable,
    seal_call=mseal.mimmutable,
    seal_text=lambda seal: "immutable",
    refusal=errno.EPERM,
    blocks=_imm_blocks,
    blocks_mprotect=_sealed_vma,
    blocks_madvise=lambda vma, advice: bool(vma.seal),
    madvise_mode=_imm_mode,
    precheck=_ALL,
    mremap_multi=False,
    msync_amap=True,
    refusals=_IMM_REFUSALS,
    choices=_IMM_CHOICES,
    unsettled=(
        Unsettled(
            "M2",
            _IMM_ADVICE_QUESTION,
            _IMM_STRICT,
            "mimmutable:permissive-advice",
            _IMM_PERMISSIVE,
            _IMM_WHY,
        ),
    ),
)

MIMMUTABLE_PERMISSIVE: Final = replace(
    MIMMUTABLE,
    name="mimmutable:permissive-advice",
    summary="OpenBSD today, with Linux-only destructive advice judged like DONTNEED/FREE "
    "(refused only where the range holds anonymous memory)",
    madvise_mode=_imm_mode_permissive,
    refusals=MappingProxyType(
        {
            **_IMM_REFUSALS,
            "madvise": (
                "DONTNEED/FREE/DONTNEED_LOCKED/REMOVE/GUARD_INSTALL when the range holds an "
                "immutable VMA: the first VMA with anonymous memory refuses; inheritance "
                "advice (minherit) on an immutable VMA",
                "partial (discard), atomic (inheritance)",
            ),
        }
    ),
    unsettled=(
        Unsettled("M2", _IMM_ADVICE_QUESTION, _IMM_PERMISSIVE, "mimmutable", _IMM_STRICT, _IMM_WHY),
    ),
)

MIMMUTABLE_73: Final = replace(
    MIMMUTABLE,
    name="mimmutable-7.3",
    summary="OpenBSD 7.3 to 20 Jan 2024 (mimmutable.2 rev 1.2): only mmap, mprotect and munmap "
    "refuse immutable pages, and mprotect may downgrade an immutable RW mapping to R",
    source="mimmutable.2 rev 1.2 (OpenBSD 7.3); openbsd/src uvm_map.c rev 1.321 (commit "
    "38558285c928dfef552f8b65b2631f0a433f7b4c), uvm_unix.c; docs/reference/designs.md"
    "#mimmutable-73",
    seal_call=mseal.mimmutable_73,
    blocks_mprotect=_imm_mprotect_73,
    msync_amap=False,
    blocks_madvise=_never,
    madvise_mode=_free,
    refusals=MappingProxyType(
        {
            **_IMM_REFUSALS,
            "mimmutable": ("nothing: every entry in range is marked", "-"),
            "mprotect": ("any change except exactly RW -> R on an immutable VMA", "atomic"),
            "madvise": ("nothing (uvm_map_clean() and minherit checked only holes)", "-"),
            "process_madvise": ("nothing", "-"),
            "msync": ("nothing (uvm_map_clean() checked only holes)", "-"),
        }
    ),
    choices=(
        *(c for c in _IMM_CHOICES if "WIPEONFORK" not in c and "anonymous memory" not in c),
        "madvise, msync and minherit ignore immutability (rev 1.321: uvm_map_clean() only "
        "'Make a first pass to check for holes', uvm_map_inherit() has no test; 114aad1 "
        "added them); mimmutable marks a MAP_INHERIT_ZERO range like any other.",
        "the downgrade exception is exactly rw- -> r-- (no exec, no PROT_NONE), the man page's "
        "words: the 7.3 code of uvm_map_protect() was not found.",
    ),
    unsettled=(),
)


# ----------------------------------------------------------- chrome-split
# Röttger, 2023-10-19: CAEAAPHYgg49WtpE7Jdq6HDecFp5RHPhdxtPTUaNF12RONu5aDA@mail.gmail.com


def _split_blocks(purpose: str, seal: int) -> bool:
    return bool(seal & SplitSeal.UNMAP)


def _split_madvise(vma: Vma, advice: int) -> bool:
    return bool(vma.seal & SplitSeal.UNMAP) and advice in DISCARD and _ro_anon(vma)


_SPLIT_QUESTION: Final = (
    "Does Chrome's unmap seal also refuse discarding advice? Chrome asked for 'unmap and "
    "mprotect' seals and said nothing about madvise."
)
_SPLIT_NO: Final = (
    "no: the unmap seal refuses munmap, MAP_FIXED, mremap and brk shrink; no madvise is "
    "refused by either seal"
)
_SPLIT_YES: Final = (
    "yes: the unmap seal also refuses Linux's discard advice on anonymous memory without "
    "write (losing data is like unmapping it)"
)
_SPLIT_WHY: Final = (
    "Röttger asked for unmap and mprotect only; the one implementation of the split (v3) made "
    "discard a separate type (DISCARD_RO_ANON, co-suggested by him); Chrome discards sealed "
    "memory it can write ('requirement of free/discard unused memory', Jeff Xu on v3)"
)

_SPLIT_REFUSALS: Final = MappingProxyType(
    {
        **{k: v for k, v in _LINUX_REFUSALS.items() if k != "mseal"},
        "mseal_split": ("ENOMEM on any unmapped page, nothing sealed", "atomic"),
        "munmap": ("UNMAP (EPERM)", "atomic (leading split remains)"),
        "mmap MAP_FIXED": ("UNMAP (EPERM)", "atomic (leading split remains)"),
        "mremap": ("UNMAP on the source or destination (EPERM)", "undefined"),
        "mprotect": ("PROT (EPERM)", "partial"),
        "pkey_mprotect": ("PROT (EPERM)", "partial"),
        "madvise": ("nothing", "-"),
        "process_madvise": ("nothing", "-"),
        "brk": ("UNMAP on the heap pages being released", "atomic (leading split remains)"),
    }
)

CHROME_SPLIT: Final = Policy(
    name="chrome-split",
    summary="Chrome's partial sealing: an unmap seal (munmap, MAP_FIXED, mremap, brk) and a "
    "separate protection seal (mprotect); neither refuses madvise",
    source="Röttger CAEAAPHYgg49WtpE7Jdq6HDecFp5RHPhdxtPTUaNF12RONu5aDA@mail.gmail.com; "
    "RFC v3 08/11 (20231212231706.2680890-9-jeffxu@chromium.org); "
    "docs/reference/designs.md#chrome-split",
    seal_op=MsealSplit,
    seal_call=mseal.mseal_split,
    seal_text=_names(SplitSeal, (1, 2)),
    refusal=errno.EPERM,
    blocks=_split_blocks,
    blocks_mprotect=lambda vma, newflags: bool(vma.seal & SplitSeal.PROT),
    blocks_madvise=_never,
    madvise_mode=_free,
    refusals=_SPLIT_REFUSALS,
    choices=(
        "built on Linux 6.18's enforcement points (per-VMA checks, partial mprotect, EPERM), "
        "the design as 'Linux with two bits': no source gives a split call's checks, and "
        "these change only errnos and unsealed VMAs, never what happens to sealed pages.",
        "seals must be a non-empty subset of UNMAP|PROT (else EINVAL); they accumulate; holes "
        "give ENOMEM (Linux's mseal).",
    ),
    unsettled=(
        Unsettled(
            "C2",
            _SPLIT_QUESTION,
            _SPLIT_NO,
            "chrome-split:unmap-refuses-discard",
            _SPLIT_YES,
            _SPLIT_WHY,
        ),
    ),
)

CHROME_SPLIT_DISCARD: Final = replace(
    CHROME_SPLIT,
    name="chrome-split:unmap-refuses-discard",
    summary="Chrome's partial sealing with the unmap seal also refusing Linux's discard advice "
    "on anonymous memory without write",
    blocks_madvise=_split_madvise,
    madvise_mode=_walk,
    refusals=MappingProxyType(
        {
            **_SPLIT_REFUSALS,
            "madvise": ("UNMAP: discard on anonymous memory without write (EPERM)", "partial"),
            "process_madvise": ("as madvise, per iovec", "partial"),
        }
    ),
    unsettled=(
        Unsettled("C2", _SPLIT_QUESTION, _SPLIT_YES, "chrome-split", _SPLIT_NO, _SPLIT_WHY),
    ),
)


# ----------------------------------------------------------------- none

NONE: Final = Policy(
    name="none",
    summary="no sealing: mseal is validated like Linux's and changes nothing; nothing is "
    "ever refused for being sealed (the baseline)",
    source="-",
    seal_op=Mseal,
    seal_call=mseal.do_mseal_none,
    seal_text=lambda seal: "",
    refusal=errno.EPERM,
    blocks=_never,
    blocks_mprotect=_never,
    blocks_madvise=_never,
    madvise_mode=_free,
    refusals=MappingProxyType(dict.fromkeys(_LINUX_REFUSALS, ("nothing", "-"))),
    choices=(
        "mseal keeps Linux's argument checks (EINVAL, ENOMEM on holes) so traces written for "
        "'linux' run unchanged; the other sealing calls return ENOSYS.",
    ),
)


POLICIES: Final[Mapping[str, Policy]] = MappingProxyType(
    {
        p.name: p
        for p in (
            LINUX,
            LINUX_610,
            LINUX_610Y,
            PROPOSAL_V1,
            PROPOSAL_V3,
            MIMMUTABLE,
            MIMMUTABLE_73,
            CHROME_SPLIT,
            NONE,
            PROPOSAL_V1_AS_CODED,
            MIMMUTABLE_PERMISSIVE,
            CHROME_SPLIT_DISCARD,
        )
    }
)
"""Every policy by name. ``POLICIES["linux"]`` is the measured 6.18 kernel;
``DESIGN:READING`` names are the other readings of rules no source settles."""

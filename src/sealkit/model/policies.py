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
seal checks change. Where a source is silent the choice is written in the
policy's ``choices`` and tested in ``tests/unit/test_model_policies.py``.

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
from .vma import VM_READ, VM_WRITE, Vma, is_anonymous

if TYPE_CHECKING:
    from .space import AddressSpace

__all__ = ["POLICIES", "Policy"]

PURPOSES: Final = ("munmap", "mmap", "brk", "mremap")
"""Unmapping paths that check seals: munmap(2), MAP_FIXED replacement, brk
shrink, and every unmap done by mremap (destination, shrink, source)."""

VALID_ADVICE: Final = frozenset(int(a) for a in Madv if a not in (Madv.HWPOISON, Madv.SOFT_OFFLINE))
"""``madvise_behavior_valid()`` on the reference kernel: CONFIG_KSM and
CONFIG_TRANSPARENT_HUGEPAGE are set, CONFIG_MEMORY_FAILURE is not (so
HWPOISON and SOFT_OFFLINE are EINVAL, spec kernel-behaviour "Environment")."""

VALID_ADVICE_610: Final = VALID_ADVICE - {Madv.GUARD_INSTALL, Madv.GUARD_REMOVE}
"""6.10 had no guard regions (added in 6.13)."""

DISCARD: Final = frozenset(int(a) for a in MADV_DISCARD)
DISCARD_610Y: Final = DISCARD - {Madv.GUARD_INSTALL}
"""``is_madv_discard()`` as fixed by e46bc2e7eb90 (6.10.y, 6.11)."""

DISCARD_INHERIT: Final = frozenset({Madv.DONTFORK, Madv.DOFORK, Madv.WIPEONFORK, Madv.KEEPONFORK})
DISCARD_DATA: Final = frozenset(
    {Madv.DONTNEED, Madv.DONTNEED_LOCKED, Madv.FREE, Madv.REMOVE, Madv.GUARD_INSTALL}
)


def _ro_anon(vma: Vma) -> bool:
    """``is_ro_anon()`` / the tail of ``can_madvise_modify()``: private
    anonymous and not writable (no PKU on the reference machine)."""
    return is_anonymous(vma) and not vma.flags & VM_WRITE


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
    refusals: Mapping[str, tuple[str, str]] = field(default_factory=dict)
    choices: tuple[str, ...] = ()
    """Decisions the sources leave open, as taken by the model."""

    def __post_init__(self) -> None:
        # Each policy's docstring: what it is, what it blocks, and the choices
        # taken where its sources are silent (help(POLICIES[name]) / .__doc__).
        lines = [f"{self.name}: {self.summary}.", f"Source: {self.source}.", "", "Refusals:"]
        lines += [f"  {op}: {what} [{kind}]" for op, (what, kind) in self.refusals.items()]
        if self.choices:
            lines += ["", "Choices where the sources are silent:"]
            lines += [f"  - {choice}" for choice in self.choices]
        object.__setattr__(self, "__doc__", "\n".join(lines))

    def __repr__(self) -> str:
        return f"POLICIES[{self.name!r}]"


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
    # sealed, anonymous, non-writable VMA (spec kernel-behaviour rule 10).
    return bool(vma.seal) and advice in DISCARD and _ro_anon(vma)


def _madvise_610(vma: Vma, advice: int) -> bool:
    # 6.10.0 is_madv_discard(): "behavior & (FREE|DONTNEED|DONTNEED_LOCKED|
    # REMOVE|DONTFORK|WIPEONFORK)" == behavior & 31, so any advice with one of
    # bits 0-4 set counted as a discard (spec linux-mseal §2.4).
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
    source="spec/kernel-behaviour.md, spec/linux-mseal.md §1-§2",
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
    source="spec/linux-mseal.md §2.1, §2.3, §2.4 (v10 patch 2/5, 8be7258aad44)",
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
    source="spec/linux-mseal.md §2.3, §2.4",
    blocks_madvise=_madvise_610y,
    choices=LINUX_610.choices[1:],
)


# ------------------------------------------------------------ proposal v1

_V1_FOR: Final = {
    "munmap": SealV1.MUNMAP,
    "brk": SealV1.MUNMAP,
    "mmap": SealV1.MMAP,
    "mremap": SealV1.MREMAP,
}


def _v1_blocks(purpose: str, seal: int) -> bool:
    return bool(seal & _V1_FOR[purpose])


def _names(kind: type, order: tuple[int, ...]) -> Callable[[int], str]:
    def text(seal: int) -> str:
        return "+".join(kind(bit).name.lower() for bit in order if seal & bit) or "-"

    return text


PROPOSAL_V1: Final = Policy(
    name="proposal-v1",
    summary="Oct 2023 RFC v1: mseal(addr, len, types, flags), each type blocking only its "
    "named syscall (MSEAL, MPROTECT, MUNMAP, MMAP, MREMAP); whole-range pre-checks",
    source="spec/linux-mseal.md §3.1 (RFC v1 cover letter), other-systems.md §2.3",
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
    refusals=MappingProxyType(
        {
            **_UNSEALED_CALLS,
            "mseal_v1": ("adding types to a range sealed with MSEAL (EACCES)", "atomic"),
            "munmap": ("MUNMAP (EACCES)", "atomic"),
            "mmap MAP_FIXED": ("MMAP (EACCES); MUNMAP alone does not stop it", "atomic"),
            "mremap": ("MREMAP on the source or destination (EACCES)", "atomic"),
            "mprotect": ("MPROTECT (EACCES)", "atomic"),
            "pkey_mprotect": ("MPROTECT (EACCES)", "atomic"),
            "madvise": ("nothing (v1 had no madvise seal)", "-"),
            "process_madvise": ("nothing", "-"),
            "brk": ("MUNMAP on the heap pages being released", "atomic"),
            "mlock": ("nothing", "-"),
            "fork": ("nothing; seals are inherited", "-"),
            "write": ("nothing", "-"),
        }
    ),
    choices=(
        "blocked operations return EACCES, as every revision before v7 did.",
        "types must be a non-empty subset of the five bits and flags must be 0 (else EINVAL); "
        "holes give ENOMEM and nothing is sealed, as in the merged mseal.",
        "MSEAL blocks a call that would add a type a VMA lacks; re-sealing with types a VMA "
        "already has is allowed.",
        "brk shrink is an munmap (MUNMAP); the unmaps mremap does itself (source, shrink, "
        "destination) answer to MREMAP, not MUNMAP (they were 'on behalf of the kernel').",
        "no madvise type existed, so discards are never refused.",
        "VMAs merge only when their seal types are equal; mremap is single-VMA (6.10 code).",
    ),
)


# ------------------------------------------------------------ proposal v3


def _v3_blocks(purpose: str, seal: int) -> bool:
    return bool(seal & SealV3.BASE)


def _v3_madvise(vma: Vma, advice: int) -> bool:
    return bool(vma.seal & SealV3.DISCARD_RO_ANON) and advice in DISCARD and _ro_anon(vma)


PROPOSAL_V3: Final = Policy(
    name="proposal-v3",
    summary="Dec 2023 v3: functional types SEAL, BASE (munmap, mremap, MAP_FIXED), PROT_PKEY "
    "(mprotect; implies BASE), DISCARD_RO_ANON; only MAP_SEALABLE mappings can be sealed",
    source="spec/linux-mseal.md §3.1 (v3 mseal.rst)",
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
                "a VMA mapped without MAP_SEALABLE, or adding types to a SEAL-sealed VMA (EACCES)",
                "atomic",
            ),
            "munmap": ("BASE (EACCES)", "atomic"),
            "mmap MAP_FIXED": ("BASE (EACCES)", "atomic"),
            "mremap": ("BASE on the source or destination (EACCES)", "atomic"),
            "mprotect": ("PROT_PKEY (EACCES)", "atomic"),
            "pkey_mprotect": ("PROT_PKEY (EACCES)", "atomic"),
            "madvise": (
                "DISCARD_RO_ANON: discard advice on anonymous memory without write",
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
        "blocked operations and unsealable VMAs return EACCES (v3's errno).",
        "PROT_PKEY adds BASE at seal time; types must be a non-empty subset, flags 0.",
        "VM_SEALABLE comes only from mmap(MAP_SEALABLE) and survives split, merge, mremap and "
        "fork; brk memory is not sealable. In this world MAP_SEALABLE is a known flag.",
        "the discard set is today's (it includes GUARD_INSTALL): the design applied to a 6.18 "
        "address space.",
        "v3's PROT_SEAL_* mmap bits are not modelled: sealing is only by mseal_v3.",
    ),
)


# ------------------------------------------------------------- mimmutable


def _imm_mode(advice: int) -> str:
    if advice in DISCARD_DATA:
        return "amap"
    if advice in DISCARD_INHERIT:
        return "precheck"
    return "free"


def _imm_mprotect_73(vma: Vma, newflags: int) -> bool:
    # OpenBSD 7.3 uvm_map_protect(): an immutable RW entry may become R.
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
            "DONTNEED/FREE-like advice when the range holds an immutable VMA: the first VMA "
            "with anonymous memory refuses; DONTFORK/WIPEONFORK/DOFORK/KEEPONFORK (minherit) "
            "on an immutable VMA",
            "partial (discard), atomic (inheritance)",
        ),
        "process_madvise": ("as madvise, per iovec", "partial"),
        "brk": ("shrink over an immutable heap VMA", "atomic"),
        "mlock": ("nothing", "-"),
        "fork": ("nothing; immutability is inherited", "-"),
        "write": ("nothing", "-"),
    }
)

_IMM_CHOICES: Final = (
    "mimmutable rounds addr down and len up (ALIGN_ADDR), skips holes, returns 0 on an "
    "unmapped or out-of-range range and EINVAL on wrap-around.",
    "Linux's WIPEONFORK stands for MAP_INHERIT_ZERO: mimmutable refuses a range holding one.",
    "munmap, MAP_FIXED, mremap and brk keep their Linux meaning (munmap of holes succeeds; "
    "OpenBSD's EINVAL for holes is not a property of immutability); their seal check is "
    "OpenBSD's first pass: atomic, no leading split.",
    "mremap (OpenBSD has none) is refused like munmap: immutable source or destination.",
    "'anonymous memory' (OpenBSD's amap) is a Linux VMA with an anon_vma; DONTNEED_LOCKED, "
    "REMOVE and GUARD_INSTALL count as DONTNEED/FREE; inheritance advice counts as minherit.",
    "mprotect's first pass refuses before any change; holes still give Linux's ENOMEM.",
    "msync(MS_INVALIDATE) is OpenBSD's PGO_FREE (uvm_map_clean()): refused like "
    "MADV_FREE where an immutable VMA and anonymous memory meet, checked in Linux's msync "
    "walk before its EBUSY for locked VMAs; MS_SYNC and MS_ASYNC are not restricted.",
    "writes through /proc/PID/mem, process_vm_writev, ptrace POKEDATA and the backing file "
    "keep their Linux meaning: OpenBSD has neither /proc/PID/mem nor process_vm_writev, and "
    "no source says immutability restricts a debugger's writes or the file's contents.",
)

MIMMUTABLE: Final = Policy(
    name="mimmutable",
    summary="OpenBSD today (mimmutable.2 rev 1.4+): address rounded down, holes skipped, "
    "every mprotect refused, atomic munmap/mmap, partial madvise on anonymous memory",
    source="spec/other-systems.md §1.1-§1.2, §2.2",
    seal_op=Mimmutable,
    seal_call=mseal.mimmutable,
    seal_text=lambda seal: "immutable",
    refusal=errno.EPERM,
    blocks=_sealed,
    blocks_mprotect=_sealed_vma,
    blocks_madvise=lambda vma, advice: bool(vma.seal),
    madvise_mode=_imm_mode,
    precheck=_ALL,
    mremap_multi=False,
    msync_amap=True,
    refusals=_IMM_REFUSALS,
    choices=_IMM_CHOICES,
)

MIMMUTABLE_73: Final = replace(
    MIMMUTABLE,
    name="mimmutable-7.3",
    summary="OpenBSD 7.3 to Jan 2024 (mimmutable.2 rev 1.3): as mimmutable, but mprotect "
    "may downgrade an immutable RW mapping to R",
    source="spec/other-systems.md §1.1 (CAVEATS removed in rev 1.4)",
    blocks_mprotect=_imm_mprotect_73,
    msync_amap=False,
    refusals=MappingProxyType(
        {
            **_IMM_REFUSALS,
            "mprotect": ("any change except exactly RW -> R on an immutable VMA", "atomic"),
            "msync": ("nothing (the msync rule came with mimmutable.2 rev 1.5)", "-"),
        }
    ),
    choices=(
        *(c for c in _IMM_CHOICES if not c.startswith("msync")),
        "the downgrade exception is exactly rw- -> r-- (no exec, no PROT_NONE).",
        "msync is not restricted (rev 1.3 restricts only mmap, mprotect and munmap).",
    ),
)


# ----------------------------------------------------------- chrome-split


def _split_blocks(purpose: str, seal: int) -> bool:
    return bool(seal & SplitSeal.UNMAP)


def _split_madvise(vma: Vma, advice: int) -> bool:
    return bool(vma.seal & SplitSeal.UNMAP) and advice in DISCARD and _ro_anon(vma)


CHROME_SPLIT: Final = Policy(
    name="chrome-split",
    summary="Chrome's partial sealing: an unmap seal (munmap, MAP_FIXED, mremap, brk, "
    "discarding read-only anonymous memory) and a separate protection seal (mprotect)",
    source="spec/other-systems.md §2.3 (Röttger, Oct 2023; Xu's two types)",
    seal_op=MsealSplit,
    seal_call=mseal.mseal_split,
    seal_text=_names(SplitSeal, (1, 2)),
    refusal=errno.EPERM,
    blocks=_split_blocks,
    blocks_mprotect=lambda vma, newflags: bool(vma.seal & SplitSeal.PROT),
    blocks_madvise=_split_madvise,
    madvise_mode=_walk,
    refusals=MappingProxyType(
        {
            **{k: v for k, v in _LINUX_REFUSALS.items() if k != "mseal"},
            "mseal_split": ("ENOMEM on any unmapped page, nothing sealed", "atomic"),
            "munmap": ("UNMAP (EPERM)", "atomic (leading split remains)"),
            "mmap MAP_FIXED": ("UNMAP (EPERM)", "atomic (leading split remains)"),
            "mremap": ("UNMAP on the source or destination (EPERM)", "undefined"),
            "mprotect": ("PROT (EPERM)", "partial"),
            "pkey_mprotect": ("PROT (EPERM)", "partial"),
            "madvise": ("UNMAP: discard on anonymous memory without write", "partial"),
            "brk": ("UNMAP on the heap pages being released", "atomic (leading split remains)"),
        }
    ),
    choices=(
        "built on Linux 6.18's enforcement points (per-VMA checks, partial mprotect and "
        "madvise), so the only difference from 'linux' is the split of the seal bit.",
        "the discard rule (anonymous, no write) belongs to the unmap seal: losing data is "
        "like unmapping it; the protection seal alone lets every madvise through.",
        "seals must be a non-empty subset of UNMAP|PROT (else EINVAL); they accumulate.",
        "blocked operations return EPERM (the errno Linux settled on).",
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
        )
    }
)
"""Every policy by name. ``POLICIES["linux"]`` is the measured 6.18 kernel."""

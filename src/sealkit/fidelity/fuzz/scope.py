"""What the fuzzer compares, what the kernel leaves undefined, and what it never generates.

Printed with every campaign's report (``sealkit fuzz``, also in ``--json``).
"""

from __future__ import annotations

from typing import Final

__all__ = ["EXCLUDED", "UNDEFINED", "VERIFIED"]

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
        "residency (MADV_PAGEOUT/COLD/WILLNEED/POPULATE_*, MAP_POPULATE, mlock, mlockall): "
        "which pages are in RAM, and so mincore's vector",
        "generated; results, VMAs and content are compared, residency is not observed (the "
        "executor's snapshots read every page through /proc/self/mem, which maps it)",
    ),
    (
        "the bytes of a page written, truncated or punched in part (pwrite_mem, vm_writev, "
        "poke, file_pwrite, ftruncate, punch at an offset inside a page)",
        "generated; the model says `?` for such a page (a token stands for a whole page), "
        "which matches any kernel content; results and every other page are compared",
    ),
    (
        "VMA boundaries that only depend on when the kernel merges (anon_vma history, "
        "docs/reference/linux.md rule 15, scenario probe/10.3)",
        "compared in the merged form; exact boundaries are compared where the kernel's rules "
        "fix them (the leftover split at the ends of a munmap/MAP_FIXED range refused with "
        "EPERM; the refused brk shrink is conformance scenario probe/8.1), or everywhere with "
        "--exact",
    ),
    (
        "tracked VmFlags (dc wf lo lf hg nh dd rr sr mg gd gu) between checkpoints",
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
    ("writes of more than 64 pages of data, writers' ranges outside the window, file sizes "
     "and offsets past 1 TiB, mappings of more than 64 pages outside the window",
     "the executor refuses them: a forced write would reach the arena's PROT_NONE guard "
     "pages, file-size limits depend on the filesystem, a locked or populated mapping would "
     "be faulted in whole"),
    ("pwrite_mem where proc_mem.force_override is not 'always'", "the executor refuses it: "
     "the snapshots read PROT_NONE pages through /proc/self/mem and need FOLL_FORCE"),
    ("shmat, remap_file_pages, memfd_secret, memfd file seals, /proc/PID/mem written by "
     "another process or a tracer, fallocate without KEEP_SIZE, vdso, stack",
     "not in the op language (see sealkit.fidelity.conformance.NOT_EXPRESSIBLE)"),
)  # fmt: skip
"""Calls and arguments the fuzzer never generates, and why."""

VERIFIED: Final[dict[str, str]] = {
    "after every call": "the result; each zone's layout in the merged canonical form: runs "
    "with protection, shared, backing, file/shmem page offset, seal, and one content token "
    "per page (model `?` matches anything)",
    "after a munmap or mmap(MAP_FIXED) refused with EPERM": "the exact VMA boundaries at the "
    "ends of the call's range (the leftover split, docs/reference/linux.md rule 5); every "
    "boundary with --exact",
    "at flag checkpoints": "the tracked VmFlags (incl. `gu`) from /proc/self/smaps, and the seal probe "
    "against smaps `sl`",
}
"""What the fuzzer compares, and when (printed in its report)."""

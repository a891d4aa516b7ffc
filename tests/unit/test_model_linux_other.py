"""docs/reference/linux.md rules 9 and 14-16 (brk, fork, merging, mlock,
process_madvise; probe cases 8-11) under ``linux``, the cases the model cannot express (with the reason), and a
check that every numbered probe case is covered by one or the other.
"""

from __future__ import annotations

import sys

from sealkit.ops import Fork

from .model_helpers import ascii, data, expect, make, run

# ---------------------------------------------------------------------- probe 8: brk


def test_8_1_brk_shrink_over_sealed_top_page_is_refused_break_unchanged() -> None:
    s = make("brk h4 = h4\nmseal h3 1p = 0")
    expect(s, "[0,3) rw-p [heap] 000\n[3,4) rw-p,sl [heap] 0", 0, 8, "h")
    run(s, """
        brk h3   = h4
        brk h2   = h4
        brk 0    = h4
    """)  # fmt: skip
    # The failed shrink to h2 left the unsealed heap VMA split at h2 (rule 5).
    assert ascii(s, 0, 8, "h")[0] == "aabC    "
    run(s, "brk h6 = h6")
    assert ascii(s, 0, 8, "h")[0] == "aabCdd  "  # a new unsealed VMA, not merged
    run(s, "brk h4 = h4")
    expect(
        s,
        "[0,2) rw-p [heap] 00\n[2,3) rw-p [heap] 0\n[3,4) rw-p,sl [heap] 0",
        0,
        8,
        "h",
    )


def test_8_2_whole_heap_sealed() -> None:
    s = make("brk h4 = h4\nmseal h0 4p = 0")
    run(s, "brk h3 = h4\nbrk h6 = h6")
    expect(s, "[0,4) rw-p,sl [heap] 0000\n[4,6) rw-p [heap] 00", 0, 8, "h")
    run(s, "brk h4 = h4")
    expect(s, "[0,4) rw-p,sl [heap] 0000", 0, 8, "h")


def test_8_3_top_heap_page_sealed() -> None:
    s = make("brk h4 = h4\nmseal h3 1p = 0")
    run(s, "brk h3 = h4\nbrk h2 = h4\nbrk h5 = h5")
    expect(
        s,
        "[0,2) rw-p [heap] 00\n[2,3) rw-p [heap] 0\n[3,4) rw-p,sl [heap] 0\n[4,5) rw-p [heap] 0",
        0,
        8,
        "h",
    )


def test_brk_semantics() -> None:
    s = make()
    run(s, """
        brk 0        = h0
        brk h0-1     = h0
        brk h0+100   = h0+100
        brk 0        = h0+100
        brk h2       = h2
        brk h1       = h1
    """)  # fmt: skip
    expect(s, "[0,1) rw-p [heap] 0", 0, 4, "h")
    # Growth needs a free page after the new break (and the guard gap of a stack).
    run(s, "mmap h3 1p rw- private|anon|fixed = h3\nbrk h3 = h1\nbrk h2 = h2")


# --------------------------------------------------------------------- probe 9: fork


def test_9_1_fork_inherits_seals() -> None:
    parent = make("""
        mmap     p0 4p rw- private|anon|fixed = p0
        write    p0 4p = 0
        mseal    p0 4p = 0
        mmap     p6 2p rw- private|anon|fixed = p6
        write    p6 2p = 0
        mprotect p6 2p r-- = 0
        mseal    p6 2p = 0
    """)  # fmt: skip
    assert ascii(parent, 0, 8) == ("AAAA  BB", "abcd--gh")  # 9.1a
    child = parent.copy()
    run(child, """
        fork                                   = 0
        munmap   p0 4p                         = EPERM
        mprotect p0 4p r--                     = EPERM
        mmap     p0 4p rw- private|anon|fixed  = EPERM
        madvise  p6 2p dontneed                = EPERM
        madvise  p0 4p dontneed                = 0
        mseal    p0 8p                         = ENOMEM
        mseal    p0 4p                         = 0
    """)  # fmt: skip
    expect(child, "[0,4) rw-p,sl anon 0000\n[6,8) r--p,sl anon gh", 0, 8)  # 9.1b
    expect(parent, "[0,4) rw-p,sl anon abcd\n[6,8) r--p,sl anon gh", 0, 8)  # 9.1c


def test_fork_drops_dontfork_wipes_wipeonfork_and_unlocks() -> None:
    s = make("""
        mmap    p0 2p rw- private|anon|fixed = p0
        mmap    p4 2p rw- private|anon|fixed = p4
        mmap    p8 2p rw- shared|anon|fixed  = p8
        write   p0 10p = EFAULT
        write   p0 2p = 0
        write   p4 2p = 0
        write   p8 2p = 0
        madvise p0 2p dontfork = 0
        madvise p4 2p wipeonfork = 0
        mlock   p8 2p = 0
        fork = 0
    """)  # fmt: skip
    expect(s, "[4,6) rw-p,wf anon 00\n[8,10) rw-s shmem@0 ij", 0, 10)


def test_forked_anon_vmas_no_longer_merge() -> None:
    # anon_vma_fork(): the child's anon_vma chains its parent's, so it will
    # not merge with a VMA that has none (vma_had_uncowed_parents()).
    s = make("""
        mmap  p0 2p rw- private|anon|fixed = p0
        write p0 2p = 0
        fork = 0
        mmap  p2 2p rw- private|anon|fixed = p2
    """)  # fmt: skip
    assert ascii(s, 0, 4)[0] == "aabb"
    parent = make("mmap p0 2p rw- private|anon|fixed = p0\nwrite p0 2p = 0")
    run(parent, "mmap p2 2p rw- private|anon|fixed = p2")
    assert ascii(parent, 0, 4)[0] == "aaaa"


# ----------------------------------------------------------------- probe 10: merging


def test_10_1_sealed_then_adjacent_mmap_then_seal_merges() -> None:
    s = make("mmap p0 4p rw- private|anon|fixed = p0\nwrite p0 4p = 0\nmseal p0 4p = 0")
    run(s, "mmap p4 4p rw- private|anon|fixed = p4")
    assert ascii(s, 0, 8)[0] == "AAAAbbbb"  # 10.1a
    run(s, "mseal p4 4p = 0")
    expect(s, "[0,8) rw-p,sl anon abcd0000", 0, 8)  # 10.1b


def test_10_2_seal_halves_of_one_vma_separately() -> None:
    s = make("mmap p0 8p rw- private|anon|fixed = p0\nwrite p0 8p = 0")
    run(s, "mseal p0 4p = 0")
    assert ascii(s, 0, 8)[0] == "AAAAbbbb"
    run(s, "mseal p4 4p = 0")
    expect(s, "[0,8) rw-p,sl anon abcdefgh", 0, 8)


def test_10_3_both_halves_populated_before_sealing_stay_two_vmas() -> None:
    s = make("""
        mmap  p0 4p rw- private|anon|fixed = p0
        write p0 4p = 0
        mseal p0 4p = 0
        mmap  p4 4p rw- private|anon|fixed = p4
        write p4 4p = 0
    """)  # fmt: skip
    run(s, "mseal p4 4p = 0")
    # Distinct anon_vmas (the second half faulted while its neighbour was
    # sealed, so it could not share the first one's).
    assert ascii(s, 0, 8) == ("AAAABBBB", "abcdefgh")
    objs = [r.obj for r in s.layout("p", 0, 8).runs]
    assert objs[0] != objs[1]


def test_10_4_mmap_below_sealed_then_seal_merges() -> None:
    s = make("mmap p4 4p rw- private|anon|fixed = p4\nwrite p4 4p = 0\nmseal p4 4p = 0")
    run(s, "mmap p0 4p rw- private|anon|fixed = p0\nmseal p0 4p = 0")
    expect(s, "[0,8) rw-p,sl anon 0000efgh", 0, 8)


def test_10_5_mprotected_neighbour_then_seal_merges() -> None:
    s = make("""
        mmap  p0 4p rw- private|anon|fixed = p0
        write p0 4p = 0
        mseal p0 4p = 0
        mmap  p4 4p r-- private|anon|fixed = p4
    """)  # fmt: skip
    run(s, "mprotect p4 4p rw- = 0")
    assert ascii(s, 0, 8)[0] == "AAAAbbbb"  # 10.5a
    run(s, "mseal p4 4p = 0")
    assert ascii(s, 0, 8)[0] == "AAAAAAAA"  # 10.5b


def test_10_6_file_private_halves_sealed_separately_merge() -> None:
    s = make("mmap p0 8p r-- private|fixed file=f1 = p0")
    run(s, "mseal p0 4p = 0\nmseal p4 4p = 0")
    expect(s, "[0,8) r--p,sl file:f1@0 FFFFFFFF", 0, 8)


def test_10_7_unpopulated_sealed_half_merges_with_populated_one() -> None:
    s = make("""
        mmap  p0 4p rw- private|anon|fixed = p0
        mseal p0 4p = 0
        mmap  p4 4p rw- private|anon|fixed = p4
        write p4 4p = 0
    """)  # fmt: skip
    run(s, "mseal p4 4p = 0")
    expect(s, "[0,8) rw-p,sl anon 0000efgh", 0, 8)


# ----------------------------------------------------------------- probe 11: mlock


SEALED_RW = "mmap p0 4p rw- private|anon|fixed = p0\nwrite p0 4p = 0\nmseal p0 4p = 0"


def test_11_1_mlock_and_munlock_whole_sealed_vma() -> None:
    s = make(SEALED_RW)
    run(s, "mlock p0 4p = 0")
    expect(s, "[0,4) rw-p,sl,lo anon abcd", 0, 4)
    run(s, "munlock p0 4p = 0")
    expect(s, "[0,4) rw-p,sl anon abcd", 0, 4)


def test_11_2_partial_mlock_splits_sealed_vma_munlock_merges() -> None:
    s = make(SEALED_RW)
    run(s, "mlock p1 1p = 0")
    assert ascii(s, 0, 4) == ("ABCC", "abcd")
    expect(s, "[0,1) rw-p,sl anon a\n[1,2) rw-p,sl,lo anon b\n[2,4) rw-p,sl anon cd", 0, 4)
    run(s, "munlock p1 1p = 0")
    assert ascii(s, 0, 4) == ("AAAA", "abcd")


def test_11_3_mlock2_onfault() -> None:
    s = make(SEALED_RW)
    run(s, "mlock p0 4p onfault = 0")
    expect(s, "[0,4) rw-p,sl,lf,lo anon abcd", 0, 4)


def test_11_4_locked_sealed_read_only_dontneed_locked_refused() -> None:
    s = make("""
        mmap     p0 4p rw- private|anon|fixed = p0
        write    p0 4p = 0
        mprotect p0 4p r-- = 0
        mseal    p0 4p = 0
    """)  # fmt: skip
    run(s, "mlock p0 4p = 0\nmadvise p0 4p dontneed_locked = EPERM\nmunlock p0 4p = 0")
    expect(s, "[0,4) r--p,sl anon abcd", 0, 4)


def test_11_5_msync_on_sealed_shared_file_changes_nothing() -> None:
    s = make("mmap p0 4p rw- shared|fixed file=f1 = p0\nwrite p0 4p = 0\nmseal p0 4p = 0")
    run(s, """
        msync p0 4p async           = 0
        msync p0 4p sync            = 0
        msync p0 4p invalidate      = 0
        msync p0 4p sync|invalidate = 0
    """)  # fmt: skip
    expect(s, "[0,4) rw-s,sl file:f1@0 abcd", 0, 4)


def test_11_6_mincore_on_sealed_read_only_anon_answers_zero() -> None:
    s = make("""
        mmap     p0 4p rw- private|anon|fixed = p0
        write    p0 2p = 0
        mprotect p0 4p r-- = 0
        mseal    p0 4p = 0
    """)  # fmt: skip
    run(s, "mincore p0 4p = 0")  # the vector (1100) is residency: not modelled
    expect(s, "[0,4) r--p,sl anon ab00", 0, 4)


def test_11_8_mlockall_locks_a_sealed_vma_and_munlockall_unlocks_it() -> None:
    s = make(SEALED_RW)
    run(s, "mlockall current = 0")
    expect(s, "[0,4) rw-p,sl,lo anon abcd", 0, 4)
    run(s, "munlockall = 0")
    expect(s, "[0,4) rw-p,sl anon abcd", 0, 4)


def test_11_9_11_10_proc_self_mem_writes_ignore_seals_and_force_read_only() -> None:
    # /proc/self/mem with proc_mem.force_override=always: FOLL_FORCE, so the
    # sealed read-only page is written too (copy-on-write of an anon page).
    s = make(SEALED_RW)
    run(s, "pwrite_mem p1 1p v = 1p")
    expect(s, "[0,4) rw-p,sl anon avcd", 0, 4)
    r = make(SEALED_RW.replace("mseal", "mprotect p0 4p r-- = 0\nmseal"))
    run(r, "pwrite_mem p1 1p v = 1p\nwrite p2 1p w = EFAULT")
    expect(r, "[0,4) r--p,sl anon avcd", 0, 4)


def test_mlock_hole_is_enomem_after_locking_what_came_before() -> None:
    s = make("mmap p0 2p rw- private|anon|fixed = p0\nmmap p3 2p rw- private|anon|fixed = p3")
    run(s, "mlock p0 5p = ENOMEM\nmlock p2 2p = ENOMEM\nmunlock p0+100 1 = 0")
    expect(s, "[0,1) rw-p anon 0\n[1,2) rw-p,lo anon 0\n[3,5) rw-p anon 00", 0, 6)


def test_mlock_populates_private_file_mappings_by_copy_on_write() -> None:
    s = make("""
        mmap  p0 2p rw- private|fixed file=f1 = p0
        mmap  p4 2p rw- shared|fixed file=f1  = p4
        mlock p0 2p = 0
        write p4 2p = 0
    """)  # fmt: skip
    # Page-cache pages were copied at mlock time: later file writes are not seen.
    assert data(s, 0, 6) == "FF--ef"


# ------------------------------------------------------- what is not expressible

UNEXPRESSIBLE = {
    "2.2": "vDSO/vvar/vvar_vclock sealing: the model has no kernel-installed special mappings",
    "2.3": "munmap of the unsealed vDSO: same",
    "4.9": "shmat(SHM_REMAP): System V shared memory is not in the op language",
    "4.10": "remap_file_pages(): not in the op language (deprecated syscall)",
    "5.10-pkey_alloc": "pkey_alloc(): no PKU on the reference CPU; only pkey 0 is allocated",
    "8.2-glibc": "glibc sbrk()'s return value: libc behaviour, not the kernel's (the kernel "
    "side of 8.2/8.3 is tested through brk)",
}

CASES = [
    "1.1",
    "1.2",
    "1.3",
    "1.4",
    "1.5",
    "1.6",
    "1.7",
    "1.8",
    "1.9",
    "1.10",
    "1.11",
    "1.12",
    "1.13",
    "1.14",
    "2.1",
    "2.2",
    "2.3",
    "3.1",
    "3.2",
    "3.3",
    "3.4",
    "3.5",
    "3.6",
    "3.7",
    "3.8",
    "3.9",
    "4.1",
    "4.2",
    "4.3",
    "4.4",
    "4.5",
    "4.6",
    "4.7",
    "4.8",
    "4.9",
    "4.10",
    "5.1",
    "5.2",
    "5.3",
    "5.4",
    "5.5",
    "5.6",
    "5.7",
    "5.8",
    "5.9",
    "5.10",
    "5.11",
    "5.12",
    "6.1",
    "6.2",
    "6.3",
    "6.4",
    "6.5",
    "6.6",
    "6.7",
    "6.8",
    "6.9",
    "6.10",
    "6.11",
    "6.12",
    "7.1",
    "7.2",
    "7.3",
    "7.4",
    "7.5",
    "7.6",
    "7.7",
    "7.8",
    "8.1",
    "8.2",
    "8.3",
    "9.1",
    "10.1",
    "10.2",
    "10.3",
    "10.4",
    "10.5",
    "10.6",
    "10.7",
    "11.1",
    "11.2",
    "11.3",
    "11.4",
    "11.5",
    "11.6",
    "11.7",
    "11.8",
    "11.9",
    "11.10",
]
"""Every numbered case of the probe run (the ``probe/`` scenarios, docs/reference/linux.md)."""


def test_every_probe_case_is_tested_or_listed_as_unexpressible() -> None:
    from . import (
        test_model_linux_madvise,
        test_model_linux_mprotect_mremap,
        test_model_linux_mseal,
        test_model_linux_unmap,
    )

    modules = [
        sys.modules[__name__],
        test_model_linux_madvise,
        test_model_linux_mprotect_mremap,
        test_model_linux_mseal,
        test_model_linux_unmap,
    ]
    names = [n for m in modules for n in vars(m) if n.startswith("test_")]
    for case in CASES:
        tag = "test_" + case.replace(".", "_") + "_"
        tested = any(n.startswith(tag) or f"_{case.replace('.', '_')}_" in n for n in names)
        assert tested or case in UNEXPRESSIBLE, f"probe case {case} has no model test"
    assert all(k.split("-")[0] in CASES for k in UNEXPRESSIBLE)


def test_fork_op_returns_zero_and_runs_on_in_the_child() -> None:
    s = make("mmap p0 1p rw- private|anon|fixed = p0")
    assert s.apply(Fork()) == 0
    run(s, "write p0 1p = 0")
    assert data(s, 0, 1) == "a"

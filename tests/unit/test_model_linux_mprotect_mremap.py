"""Probe cases 5 (mprotect, pkey_mprotect) and 6 (mremap) under ``linux`` (linux.md rules 7-8).

Rule 7: any mprotect touching a sealed VMA is EPERM, a same-prot no-op too,
and VMAs before the first sealed one are changed anyway. Rule 8: every
mremap form with a sealed source or destination is EPERM; growing in place
into a sealed neighbour is ENOMEM.
"""

from __future__ import annotations

from sealkit.flags import MremapFlag
from sealkit.ops import ELSEWHERE, MODEL_BASES, Mremap

from .model_helpers import ascii, expect, make, run

SEALED_0_4 = """
    mmap  p0 4p rw- private|anon|fixed = p0
    write p0 4p                        = 0
    mseal p0 4p                        = 0
"""
ONE_8_SEAL_4_8 = """
    mmap  p0 8p rw- private|anon|fixed = p0
    write p0 8p                        = 0
    mseal p4 4p                        = 0
"""


def test_5_1_same_prot_noop_is_refused() -> None:
    s = make(SEALED_0_4)
    run(s, "mprotect p0 4p rw- = EPERM")
    expect(s, "[0,4) rw-p,sl anon abcd", 0, 4)


def test_5_2_fewer_rights_refused() -> None:
    s = make(SEALED_0_4)
    run(s, "mprotect p0 4p r-- = EPERM\nmprotect p0 4p --- = EPERM\nmprotect p1 1p r-- = EPERM")
    assert ascii(s, 0, 4) == ("AAAA", "abcd")


def test_5_3_read_only_same_or_more_rights_refused() -> None:
    s = make(SEALED_0_4.replace("mseal", "mprotect p0 4p r-- = 0\nmseal"))
    run(s, "mprotect p0 4p r-- = EPERM\nmprotect p0 4p rw- = EPERM\nmprotect p0 4p r-x = EPERM")
    expect(s, "[0,4) r--p,sl anon abcd", 0, 4)


def test_5_4_unsealed_part_before_the_sealed_one_is_changed() -> None:
    s = make(ONE_8_SEAL_4_8)
    run(s, "mprotect p0 8p r-- = EPERM")
    expect(s, "[0,4) r--p anon abcd\n[4,8) rw-p,sl anon efgh", 0, 8)


def test_5_5_sealed_first_nothing_changes() -> None:
    s = make(ONE_8_SEAL_4_8.replace("mseal p4", "mseal p0"))
    run(s, "mprotect p0 8p r-- = EPERM")
    expect(s, "[0,4) rw-p,sl anon abcd\n[4,8) rw-p anon efgh", 0, 8)


def test_5_6_starting_inside_unsealed_splits_and_changes_the_tail() -> None:
    s = make(ONE_8_SEAL_4_8)
    run(s, "mprotect p2 6p r-- = EPERM")
    assert ascii(s, 0, 8) == ("aabbCCCC", "abcdefgh")
    expect(s, "[0,2) rw-p anon ab\n[2,4) r--p anon cd\n[4,8) rw-p,sl anon efgh", 0, 8)


def test_5_7_vma_after_the_sealed_one_is_untouched() -> None:
    s = make("mmap p0 12p rw- private|anon|fixed = p0\nwrite p0 12p = 0\nmseal p4 4p = 0")
    run(s, "mprotect p0 12p r-- = EPERM")
    expect(s, "[0,4) r--p anon abcd\n[4,8) rw-p,sl anon efgh\n[8,12) rw-p anon ijkl", 0, 12)


def test_5_8_two_unsealed_vmas_changed_and_merged_before_eperm() -> None:
    s = make("""
        mmap  p0 2p r-- private|anon|fixed = p0
        mmap  p2 2p --- private|anon|fixed = p2
        mmap  p4 4p rw- private|anon|fixed = p4
        mseal p4 4p = 0
    """)  # fmt: skip
    assert ascii(s, 0, 8)[0] == "aabbCCCC"
    run(s, "mprotect p0 8p rw- = EPERM")
    assert ascii(s, 0, 8)[0] == "aaaaBBBB"
    expect(s, "[0,4) rw-p anon 0000\n[4,8) rw-p,sl anon 0000", 0, 8)


def test_5_9_hole_before_the_sealed_vma_is_enomem_first_part_changed() -> None:
    s = make("""
        mmap  p0 4p rw- private|anon|fixed = p0
        write p0 4p = 0
        mmap  p6 2p rw- private|anon|fixed = p6
        mseal p6 2p = 0
    """)  # fmt: skip
    run(s, "mprotect p0 8p r-- = ENOMEM")
    expect(s, "[0,4) r--p anon abcd\n[6,8) rw-p,sl anon 00", 0, 8)


def test_5_10_pkey_mprotect() -> None:
    s = make(ONE_8_SEAL_4_8)
    run(s, """
        pkey_mprotect p4 4p rw- -1   = EPERM
        pkey_mprotect p4 4p r-- -1   = EPERM
        pkey_mprotect p4 4p rw- 1    = EINVAL
        pkey_mprotect p0 4p r-- -1   = 0
    """)  # fmt: skip
    expect(s, "[0,4) r--p anon abcd\n[4,8) rw-p,sl anon efgh", 0, 8)


def test_5_11_pkey_mprotect_partial() -> None:
    s = make(ONE_8_SEAL_4_8)
    run(s, "pkey_mprotect p0 8p r-- -1 = EPERM")
    expect(s, "[0,4) r--p anon abcd\n[4,8) rw-p,sl anon efgh", 0, 8)


def test_5_12_sealed_shared_file_rw_to_r() -> None:
    s = make("mmap p0 4p rw- shared|fixed file=f1 = p0\nmseal p0 4p = 0")
    run(s, "mprotect p0 4p r-- = EPERM")
    expect(s, "[0,4) rw-s,sl file:f1@0 FFFF", 0, 4)


def test_mprotect_argument_checks_in_kernel_order() -> None:
    # pkey 0 is not allocated without PKU: EINVAL before the seal is looked at
    # (measured: conformance regression/pkey-0-without-pku).
    s = make(SEALED_0_4)
    run(s, """
        mprotect p0 0 r--                     = 0
        mprotect p0+1 1p r--                  = EINVAL
        mprotect p0 0xffffffffffffffff r--    = ENOMEM
        mprotect p0 1p 0x10                   = EINVAL
        mprotect p0 1p 0x3000000              = EINVAL
        mprotect p8 1p r--                    = ENOMEM
        pkey_mprotect p0 1p r-- 0             = EINVAL
        pkey_mprotect p0 1p r-- -1            = EPERM
        pkey_mprotect p0 1p r-- 2             = EINVAL
        mprotect p0 1p 0x1000001              = EINVAL
    """)  # fmt: skip


# ------------------------------------------------------------------ probe 6: mremap


def test_6_1_shrink_sealed() -> None:
    s = make(SEALED_0_4)
    run(s, "mremap p0 4p 2p 0 = EPERM\nmremap p0 4p 2p maymove = EPERM")
    assert ascii(s, 0, 4) == ("AAAA", "abcd")


def test_6_2_grow_sealed_in_place() -> None:
    s = make(SEALED_0_4)
    run(s, "mremap p0 4p 6p 0 = EPERM")
    assert ascii(s, 0, 6) == ("AAAA  ", "abcd--")


def test_6_3_grow_sealed_with_maymove() -> None:
    s = make(SEALED_0_4 + "mmap p4 2p rw- private|anon|fixed = p4")
    run(s, "mremap p0 4p 8p maymove = EPERM")
    assert ascii(s, 0, 6) == ("AAAAbb", "abcd00")


def test_6_4_move_sealed_source() -> None:
    s = make(SEALED_0_4)
    run(s, "mremap p0 4p 4p maymove|fixed p8 = EPERM\nmremap p1 1p 1p maymove|fixed p8 = EPERM")
    assert ascii(s, 0, 12) == ("AAAA        ", "abcd--------")


def test_6_5_unsealed_onto_sealed_destination() -> None:
    s = make(SEALED_0_4 + "mmap p8 4p rw- private|anon|fixed = p8\nwrite p8 4p = 0")
    run(s, "mremap p8 4p 4p maymove|fixed p0 = EPERM")
    assert ascii(s, 0, 12) == ("AAAA    bbbb", "abcd----ijkl")


def test_6_6_destination_sealed_plus_hole() -> None:
    s = make(SEALED_0_4 + "mmap p8 4p rw- private|anon|fixed = p8\nwrite p8 4p = 0")
    run(s, "mremap p8 4p 4p maymove|fixed p2 = EPERM")
    expect(s, "[0,4) rw-p,sl anon abcd\n[8,12) rw-p anon ijkl", 0, 12)


def test_6_7_dontunmap_sealed_source() -> None:
    s = make(SEALED_0_4)
    run(s, """
        mremap p0 4p 4p maymove|dontunmap           = EPERM
        mremap p0 4p 4p maymove|fixed|dontunmap p8  = EPERM
    """)  # fmt: skip
    assert ascii(s, 0, 12) == ("AAAA        ", "abcd--------")


def test_6_8_dontunmap_onto_sealed_destination() -> None:
    s = make(SEALED_0_4 + "mmap p8 4p rw- private|anon|fixed = p8\nwrite p8 4p = 0")
    run(s, "mremap p8 4p 4p maymove|fixed|dontunmap p0 = EPERM")
    assert ascii(s, 0, 12) == ("AAAA    bbbb", "abcd----ijkl")


def test_6_9_same_size_noop_refused() -> None:
    s = make(SEALED_0_4)
    run(s, "mremap p0 4p 4p 0 = EPERM\nmremap p0 2p 2p 0 = EPERM")
    assert ascii(s, 0, 4) == ("AAAA", "abcd")


def test_6_10_sealed_shmem_duplication_refused() -> None:
    s = make("mmap p0 4p rw- shared|anon|fixed = p0\nwrite p0 4p = 0\nmseal p0 4p = 0")
    run(s, "mremap p0 0 4p maymove = EPERM\nmremap p0 0 4p maymove|fixed p8 = EPERM")
    expect(s, "[0,4) rw-s,sl shmem@0 abcd", 0, 12)


def test_6_11_control_move_unsealed_neighbour() -> None:
    s = make(ONE_8_SEAL_4_8)
    run(s, "mremap p0 4p 4p maymove|fixed p10 = p10")
    assert ascii(s, 0, 14) == ("    AAAA  bbbb", "----efgh--abcd")


def test_6_12_grow_in_place_into_sealed_neighbour_is_enomem() -> None:
    s = make(ONE_8_SEAL_4_8)
    run(s, "mremap p0 4p 8p 0 = ENOMEM")
    assert ascii(s, 0, 8) == ("aaaaBBBB", "abcdefgh")
    op = Mremap(MODEL_BASES.arena, 4 * 4096, 6 * 4096, MremapFlag.MAYMOVE)
    assert s.apply(op) == ELSEWHERE
    assert ascii(s, 0, 8) == ("    AAAA", "----efgh")


def test_mremap_argument_checks_in_kernel_order() -> None:
    s = make("mmap p0 4p rw- private|anon|fixed = p0")
    run(s, """
        mremap p0 4p 4p 0x8                          = EINVAL
        mremap p0+1 4p 4p 0                          = EINVAL
        mremap p0 4p 0 0                             = EINVAL
        mremap p0 4p 0x800000000000 0                = EINVAL
        mremap p0 4p 4p fixed p8                     = EINVAL
        mremap p0 4p 4p maymove|fixed p8+1           = EINVAL
        mremap p0 4p 2p maymove|dontunmap p8         = EINVAL
        mremap p0 4p 4p maymove|fixed p2             = EINVAL
        mremap p8 4p 8p 0                            = EFAULT
        mremap p0 0 4p maymove                       = EINVAL
        mremap p1 4p 8p maymove                      = EFAULT
        mremap p0 4p 5p 0                            = p0
    """)  # fmt: skip
    assert ascii(s, 0, 6)[0] == "aaaaa "


def test_mremap_shrink_may_cross_vma_boundaries() -> None:
    s = make("mmap p0 4p rw- private|anon|fixed = p0\nmmap p4 4p r-- private|anon|fixed = p4")
    run(s, "mremap p0 8p 2p 0 = p0")
    assert ascii(s, 0, 8)[0] == "aa      "


def test_mremap_grow_in_place_merges_with_compatible_next() -> None:
    s = make("""
        mmap p0 2p rw- private|anon|fixed = p0
        mmap p4 2p rw- private|anon|fixed = p4
    """)  # fmt: skip
    run(s, "mremap p0 2p 4p 0 = p0")
    assert ascii(s, 0, 8)[0] == "aaaaaa  "


def test_mremap_move_keeps_content_and_populated_pgoff() -> None:
    s = make("mmap p0 4p rw- private|anon|fixed = p0\nwrite p0 4p = 0")
    run(s, "mremap p0 4p 4p maymove|fixed p8 = p8\nmmap p12 2p rw- private|anon|fixed = p12")
    # The moved VMA keeps its old page offset (it has an anon_vma), so it does
    # not merge with a new neighbour whose offset follows its new address.
    assert ascii(s, 0, 16) == ("        aaaabb  ", "--------abcd00--")


def test_mremap_dontunmap_leaves_source_mapped_and_empty() -> None:
    s = make("mmap p0 4p rw- private|anon|fixed = p0\nwrite p0 4p = 0\nmlock p0 4p = 0")
    run(s, "mremap p0 4p 4p maymove|fixed|dontunmap p8 = p8")
    expect(s, "[0,4) rw-p anon 0000\n[8,12) rw-p,lo anon abcd", 0, 12)


def test_mremap_multi_vma_move_stops_at_a_sealed_vma() -> None:
    # 6.17+ remap_move(): earlier VMAs are moved before the sealed one refuses.
    s = make("""
        mmap  p0 2p rw- private|anon|fixed = p0
        mmap  p2 2p r-- private|anon|fixed = p2
        write p0 2p = 0
        mseal p2 2p = 0
    """)  # fmt: skip
    run(s, "mremap p0 4p 4p maymove|fixed p8 = EPERM")
    assert ascii(s, 0, 12) == ("  AA    bb  ", "--00----ab--")

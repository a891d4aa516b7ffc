"""Probe cases 3 (munmap) and 4 (mmap over sealed memory) under ``linux`` (linux.md rules 5-6).

Rule 5: a refused munmap (or MAP_FIXED) unmaps nothing, but an unsealed VMA
the range *starts inside* is left split at the range start.
"""

from __future__ import annotations

from sealkit.flags import Madv, MapFlag, Prot
from sealkit.ops import ELSEWHERE, MODEL_BASES, Mmap, ProcessMadvise

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
ONE_8_SEAL_0_4 = """
    mmap  p0 8p rw- private|anon|fixed = p0
    write p0 8p                        = 0
    mseal p0 4p                        = 0
"""


def test_3_1_munmap_whole_sealed_vma() -> None:
    s = make(SEALED_0_4)
    run(s, "munmap p0 4p = EPERM")
    assert ascii(s, 0, 4) == ("AAAA", "abcd")


def test_3_2_munmap_part_of_sealed_vma() -> None:
    s = make(SEALED_0_4)
    run(s, """
        munmap p0 1p        = EPERM
        munmap p1 2p        = EPERM
        munmap p3 1p        = EPERM
        munmap p1+100 10    = EINVAL
    """)  # fmt: skip
    expect(s, "[0,4) rw-p,sl anon abcd", 0, 4)


def test_3_3_unsealed_then_sealed_nothing_unmapped() -> None:
    s = make(ONE_8_SEAL_4_8)
    assert ascii(s, 0, 8) == ("aaaaBBBB", "abcdefgh")
    run(s, "munmap p0 8p = EPERM")
    assert ascii(s, 0, 8) == ("aaaaBBBB", "abcdefgh")


def test_3_4_sealed_then_unsealed() -> None:
    s = make(ONE_8_SEAL_0_4)
    run(s, "munmap p0 8p = EPERM")
    expect(s, "[0,4) rw-p,sl anon abcd\n[4,8) rw-p anon efgh", 0, 8)


def test_3_5_range_starting_inside_unsealed_leaves_a_split() -> None:
    s = make(ONE_8_SEAL_4_8)
    run(s, "munmap p2 6p = EPERM")
    assert ascii(s, 0, 8) == ("aabbCCCC", "abcdefgh")
    expect(
        s,
        """
        [0,2) rw-p anon ab
        [2,4) rw-p anon cd
        [4,8) rw-p,sl anon efgh
        """,
        0,
        8,
    )


def test_3_6_unsealed_sealed_unsealed_split_only_at_start() -> None:
    s = make("mmap p0 12p rw- private|anon|fixed = p0\nwrite p0 12p = 0\nmseal p4 4p = 0")
    run(s, "munmap p2 8p = EPERM")
    assert ascii(s, 0, 12) == ("aabbCCCCdddd", "abcdefghijkl")


def test_3_7_three_vmas_nothing_unmapped() -> None:
    s = make("""
        mmap  p0 2p rw- private|anon|fixed = p0
        mmap  p2 2p r-- private|anon|fixed = p2
        mmap  p4 4p rw- private|anon|fixed = p4
        write p4 4p = 0
        mseal p4 4p = 0
    """)  # fmt: skip
    run(s, "munmap p0 8p = EPERM")
    expect(s, "[0,2) rw-p anon 00\n[2,4) r--p anon 00\n[4,8) rw-p,sl anon efgh", 0, 8)


def test_3_8_sealed_hole_unsealed_then_without_the_sealed_part() -> None:
    s = make("""
        mmap  p0 4p rw- private|anon|fixed = p0
        write p0 4p = 0
        mseal p0 4p = 0
        mmap  p6 2p rw- private|anon|fixed = p6
        write p6 2p = 0
    """)  # fmt: skip
    run(s, "munmap p0 8p = EPERM")  # 3.8a
    assert ascii(s, 0, 8) == ("AAAA  bb", "abcd--gh")
    run(s, "munmap p4 4p = 0")  # 3.8b
    assert ascii(s, 0, 8) == ("AAAA    ", "abcd----")


def test_3_9_control_unmap_only_the_unsealed_neighbour() -> None:
    s = make(ONE_8_SEAL_4_8)
    run(s, "munmap p0 4p = 0")
    assert ascii(s, 0, 8) == ("    AAAA", "----efgh")


def test_munmap_argument_checks() -> None:
    s = make()
    run(s, """
        munmap p0 0                    = EINVAL
        munmap p0+1 1p                 = EINVAL
        munmap 0x7ffffffff000 2p       = EINVAL
        munmap 0xffff800000000000 1p   = EINVAL
        munmap p0 4p                   = 0
    """)  # fmt: skip


# ------------------------------------------------------------------- probe 4: mmap


def test_4_1_map_fixed_inside_sealed_vma() -> None:
    s = make(SEALED_0_4)
    run(s, """
        mmap p0 4p rw- anon|private|fixed  = EPERM
        mmap p0 4p --- anon|private|fixed  = EPERM
        mmap p1 1p rw- anon|private|fixed  = EPERM
    """)  # fmt: skip
    expect(s, "[0,4) rw-p,sl anon abcd", 0, 4)


def test_4_2_straddling_sealed_then_unsealed() -> None:
    s = make(ONE_8_SEAL_0_4)
    run(s, "mmap p2 4p rw- anon|private|fixed = EPERM")
    assert ascii(s, 0, 8) == ("AAAAbbbb", "abcdefgh")


def test_4_3_straddling_unsealed_then_sealed_leaves_the_split() -> None:
    s = make(ONE_8_SEAL_4_8)
    run(s, "mmap p2 4p rw- anon|private|fixed = EPERM")
    assert ascii(s, 0, 8) == ("aabbCCCC", "abcdefgh")


def test_4_4_hole_then_sealed_holes_stay_unmapped() -> None:
    s = make("mmap p2 4p rw- private|anon|fixed = p2\nwrite p2 4p = 0\nmseal p2 4p = 0")
    run(s, "mmap p0 4p rw- anon|private|fixed = EPERM")
    assert ascii(s, 0, 6) == ("  AAAA", "--cdef")


def test_4_5_file_map_fixed_over_sealed_anon() -> None:
    s = make(SEALED_0_4)
    run(s, """
        mmap p0 4p rw- shared|fixed file=f1   = EPERM
        mmap p0 4p r-- private|fixed file=f1  = EPERM
    """)  # fmt: skip
    expect(s, "[0,4) rw-p,sl anon abcd", 0, 4)


def test_4_6_fixed_noreplace_is_eexist_not_eperm() -> None:
    s = make(SEALED_0_4)
    run(s, """
        mmap p0 4p rw- anon|private|fixed_noreplace  = EEXIST
        mmap p2 4p rw- anon|private|fixed_noreplace  = EEXIST
        mmap p4 4p rw- anon|private|fixed_noreplace  = p4
    """)  # fmt: skip
    assert ascii(s, 0, 8) == ("AAAAbbbb", "abcd0000")


def test_4_7_plain_mmap_hint_on_sealed_address_goes_elsewhere() -> None:
    s = make(SEALED_0_4)
    op = Mmap(
        MODEL_BASES.arena, 4 * 4096, Prot.READ | Prot.WRITE, MapFlag.ANONYMOUS | MapFlag.PRIVATE
    )
    assert s.apply(op) == ELSEWHERE
    assert ascii(s, 0, 4) == ("AAAA", "abcd")


def test_4_8_control_map_fixed_over_unsealed_neighbour() -> None:
    s = make(ONE_8_SEAL_4_8)
    run(s, "mmap p0 4p rw- anon|private|fixed = p0")
    assert ascii(s, 0, 8) == ("aaaaBBBB", "0000efgh")


# --------------------------------------------------------- mmap argument checks


def test_mmap_argument_checks_in_kernel_order() -> None:
    s = make("mmap p0 4p rw- private|anon|fixed = p0")
    run(s, """
        mmap p8 0 rw- private|anon|fixed                     = EINVAL
        mmap p8 1p rw- private|fixed                         = EBADF
        mmap p8 1p rw- private|fixed file=f1 off=100         = EINVAL
        mmap p8 0xffffffffffffffff rw- private|anon|fixed    = ENOMEM
        mmap p8+1 1p rw- private|anon|fixed                  = EINVAL
        mmap 0x7ffffffff000 2p rw- private|anon|fixed        = ENOMEM
        mmap p8 1p rw- anon|fixed                            = EINVAL
        mmap p8 1p rw- shared_validate|anon|fixed            = EINVAL
        mmap p8 1p rw- shared|anon|fixed|growsdown           = EINVAL
        mmap p8 1p rw- shared_validate|fixed|0x200000 file=f1 = ENOTSUP
        mmap p8 1p rw- shared|fixed|0x200000 file=f1         = p8
        mmap p9 1p rw- shared|fixed file=f1:ro               = EACCES
        mmap p9 1p r-- shared|fixed file=f1:ro               = p9
        mmap p10 1p r-- private|fixed|growsdown file=f1      = EINVAL
        mmap p10 1p rw- private|anon|fixed|hugetlb           = ENOMEM
        mmap p10 1p rw- private|anon|fixed|hugetlb|0x4000000 = EINVAL
        mmap p10 1p rw- private|fixed|hugetlb file=f1        = EINVAL
        mmap p10 1p rw- shared|fixed|sync file=f1            = ENOTSUP
    """)  # fmt: skip


def test_mmap_file_ro_shared_has_no_maywrite() -> None:
    s = make("mmap p0 4p r-- shared|fixed file=f1:ro = p0")
    run(s, "mprotect p0 4p rw- = EACCES\nmadvise p0 4p remove = EACCES")
    expect(s, "[0,4) r--s file:f1@0 FFFF", 0, 4)


def test_map_fixed_replacement_merges_with_neighbours() -> None:
    s = make("mmap p0 8p rw- private|anon|fixed = p0\nmmap p2 2p r-- private|anon|fixed = p2")
    assert ascii(s, 0, 8)[0] == "aabbcccc"
    run(s, "mmap p2 2p rw- private|anon|fixed = p2")
    assert ascii(s, 0, 8)[0] == "aaaaaaaa"


def test_map_shared_file_writes_are_seen_through_every_mapping() -> None:
    s = make("""
        mmap p0 4p rw- shared|fixed file=f1          = p0
        mmap p4 4p r-- shared|fixed file=f1:ro       = p4
        mmap p8 4p r-- private|fixed file=f1         = p8
        write p0 2p                                  = 0
    """)  # fmt: skip
    assert ascii(s, 0, 12)[1] == "abFFabFFabFF"
    run(s, "mprotect p8 4p rw- = 0\nwrite p9 1p z = 0\nwrite p2 1p = 0")
    # The private copy of page 9 keeps 'z'; the others follow the file.
    assert ascii(s, 0, 12)[1] == "abcFabcFazcF"
    run(s, "madvise p8 4p dontneed = 0")
    assert ascii(s, 0, 12)[1] == "abcFabcFabcF"


def test_process_madvise_counts_bytes_of_iovecs_done() -> None:
    s = make()
    p = MODEL_BASES.arena
    assert s.apply(ProcessMadvise(Madv.DONTNEED, ())) == 0
    assert s.apply(ProcessMadvise(12345, ())) == 0  # no iovec: nothing validated
    assert s.apply(ProcessMadvise(Madv.DONTNEED, ((p, 4096),))) == -12
    assert s.apply(ProcessMadvise(Madv.DONTNEED, ((p, 1 << 63),))) == -22
    assert s.apply(ProcessMadvise(Madv.DONTNEED, ((0x7FFFFFFFF000, 8192),))) == -14


def test_no_room_elsewhere_is_enomem() -> None:
    s = make()
    op = Mmap(
        0, 0x7F00_0000_0000, Prot.NONE, MapFlag.ANONYMOUS | MapFlag.PRIVATE | MapFlag.NORESERVE
    )
    assert s.apply(op) == -12
    small = Mmap(0, 1 << 30, Prot.NONE, MapFlag.ANONYMOUS | MapFlag.PRIVATE | MapFlag.NORESERVE)
    assert s.apply(small) == ELSEWHERE
    s.check()

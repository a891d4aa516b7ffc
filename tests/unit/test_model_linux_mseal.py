"""Probe cases 1-2 (mseal itself, system mappings) under ``linux`` (linux.md rules 1-4).

Each test is one numbered probe case: the setup as a trace, the call(s) with
their measured results, then the layout after, drawn one character per page
(lowercase unsealed VMA, UPPERCASE sealed, space unmapped) and in full.
"""

from __future__ import annotations

from sealkit.flags import MapFlag, Prot
from sealkit.ops import MODEL_BASES, Mmap

from .model_helpers import ascii, expect, make, run

RW4 = """
    mmap  p0 4p rw- private|anon|fixed = p0
    write p0 4p                        = 0
"""


def test_1_1_flags_nonzero_is_einval() -> None:
    s = make(RW4)
    run(s, """
        mseal p0 4p flags=0x1                 = EINVAL
        mseal p0 4p flags=0xffffffffffffffff  = EINVAL
        mseal p0+1 4p flags=0x1               = EINVAL
    """)  # fmt: skip
    assert ascii(s, 0, 4) == ("aaaa", "abcd")
    expect(s, "[0,4) rw-p anon abcd", 0, 4)


def test_1_2_unaligned_addr_is_einval_even_with_len_0() -> None:
    s = make("mmap p0 4p rw- private|anon|fixed = p0")
    run(s, """
        mseal p0+1 4p     = EINVAL
        mseal p0+2048 1p  = EINVAL
        mseal p0+1 4p-1   = EINVAL
        mseal p0+1 0      = EINVAL
    """)  # fmt: skip
    expect(s, "[0,4) rw-p anon 0000", 0, 4)


def test_1_3_len_0_succeeds_mapped_or_not() -> None:
    s = make("mmap p0 4p rw- private|anon|fixed = p0")
    run(s, """
        mseal p0 0  = 0
        mseal p8 0  = 0
        mseal 0 0   = 0
    """)  # fmt: skip
    assert ascii(s, 0, 8)[0] == "aaaa    "


def test_1_4_len_rounds_up_to_pages() -> None:
    s = make("mmap p0 8p rw- private|anon|fixed = p0")
    run(s, "mseal p0 1 = 0")  # 1.4a: 1 byte seals 1 page
    assert ascii(s, 0, 8)[0] == "Abbbbbbb"
    run(s, "mseal p4 1p+1 = 0")  # 1.4b: 1 page + 1 byte seals 2 pages
    assert ascii(s, 0, 8)[0] == "AbbbCCdd"
    expect(
        s,
        """
        [0,1) rw-p,sl anon 0
        [1,4) rw-p anon 000
        [4,6) rw-p,sl anon 00
        [6,8) rw-p anon 00
        """,
        0,
        8,
    )


def test_1_4c_rounded_up_page_unmapped_is_enomem() -> None:
    s = make("mmap p0 2p rw- private|anon|fixed = p0")
    run(s, "mseal p0 2p+1 = ENOMEM")
    expect(s, "[0,2) rw-p anon 00", 0, 4)


def test_1_5_overflow_and_huge_lengths() -> None:
    s = make("mmap p0 4p rw- private|anon|fixed = p0")
    run(s, """
        mseal p0 0xffffffffffffffff   = EINVAL
        mseal p0 0xfffffffffffff001   = EINVAL
        mseal p0 0xfffffffffffff000   = EINVAL
        mseal 0xfffffffffffff000 2p   = EINVAL
        mseal p0 0x800000000000       = ENOMEM
        mseal p0 0x4000000000000000   = ENOMEM
    """)  # fmt: skip
    expect(s, "[0,4) rw-p anon 0000", 0, 4)


def test_1_6_gap_at_start_middle_end_is_enomem_and_nothing_sealed() -> None:
    a = make("mmap p1 3p rw- private|anon|fixed = p1")
    run(a, "mseal p0 4p = ENOMEM")
    assert ascii(a, 0, 4)[0] == " aaa"
    b = make("mmap p0 2p rw- private|anon|fixed = p0\nmmap p3 2p rw- private|anon|fixed = p3")
    run(b, "mseal p0 5p = ENOMEM")
    assert ascii(b, 0, 5)[0] == "aa bb"
    c = make("mmap p0 3p rw- private|anon|fixed = p0")
    run(c, "mseal p0 4p = ENOMEM")
    assert ascii(c, 0, 4)[0] == "aaa "


def test_1_7_range_entirely_unmapped_is_enomem() -> None:
    s = make()
    run(s, "mseal p0 4p = ENOMEM\nmseal 0 4p = ENOMEM")
    expect(s, "", 0, 16)


def test_1_8_resealing_is_idempotent() -> None:
    s = make("mmap p0 4p rw- private|anon|fixed = p0")
    run(s, "mseal p0 4p = 0\nmseal p0 4p = 0\nmseal p1 1p = 0")
    assert ascii(s, 0, 4)[0] == "AAAA"
    expect(s, "[0,4) rw-p,sl anon 0000", 0, 4)


def test_1_9_split_then_merge_with_sealed_neighbour() -> None:
    s = make("mmap p0 8p rw- private|anon|fixed = p0\nwrite p0 8p = 0")
    run(s, "mseal p2 2p = 0")  # 1.9a
    assert ascii(s, 0, 8) == ("aaBBcccc", "abcdefgh")
    run(s, "mseal p4 2p = 0")  # 1.9b: merges with the sealed [2,4)
    expect(
        s,
        """
        [0,2) rw-p anon ab
        [2,6) rw-p,sl anon cdef
        [6,8) rw-p anon gh
        """,
        0,
        8,
    )
    run(s, "mseal p0 8p = 0")  # 1.9c
    assert ascii(s, 0, 8) == ("AAAAAAAA", "abcdefgh")


def test_1_10_prot_none_can_be_sealed() -> None:
    s = make(RW4 + "mprotect p0 4p --- = 0")
    run(s, "mseal p0 4p = 0")
    expect(s, "[0,4) ---p,sl anon abcd", 0, 4)


def test_1_11_file_mappings_can_be_sealed() -> None:
    a = make("mmap p0 4p rw- shared|fixed file=f1 = p0\nwrite p0 2p = 0")
    run(a, "mseal p0 4p = 0")
    expect(a, "[0,4) rw-s,sl file:f1@0 abFF", 0, 4)
    b = make("mmap p0 4p rw- private|fixed file=f1 = p0\nwrite p0 2p = 0")
    run(b, "mseal p0 4p = 0")
    expect(b, "[0,4) rw-p,sl file:f1@0 abFF", 0, 4)
    c = make("mmap p0 4p r-- private|fixed file=f1 = p0")
    run(c, "mseal p0 4p = 0")
    expect(c, "[0,4) r--p,sl file:f1@0 FFFF", 0, 4)


def test_1_12_one_call_over_two_prots_seals_each_without_merging() -> None:
    s = make("mmap p0 2p rw- private|anon|fixed = p0\nmmap p2 2p r-- private|anon|fixed = p2")
    run(s, "mseal p0 4p = 0")
    assert ascii(s, 0, 4)[0] == "AABB"
    expect(s, "[0,2) rw-p,sl anon 00\n[2,4) r--p,sl anon 00", 0, 4)


def test_1_13_range_partly_sealed_already() -> None:
    s = make("mmap p0 4p rw- private|anon|fixed = p0\nmseal p1 1p = 0")
    assert ascii(s, 0, 4)[0] == "aBcc"
    run(s, "mseal p0 4p = 0")
    expect(s, "[0,4) rw-p,sl anon 0000", 0, 4)


def test_1_14_non_user_addresses_are_enomem() -> None:
    s = make()
    run(s, """
        mseal 0xffffffffff600000 1p  = ENOMEM
        mseal 0xffff800000000000 1p  = ENOMEM
        mseal 0x7ffffffff000 1p      = ENOMEM
    """)  # fmt: skip


# ----------------------------------------------------------- probe 2: system mappings


STACK = """
    mmap  p8 8p rw- private|anon|fixed|growsdown = p8
    write p8 8p                                  = 0
"""


def test_2_1_sealed_stack_refuses_unmap_and_mprotect_but_not_dontneed_rw() -> None:
    # The main thread's [stack] is a grows-down rw anonymous VMA: modelled by
    # a MAP_GROWSDOWN mapping (the model has no initial stack of its own).
    s = make(STACK)
    run(s, """
        mseal    p8 8p           = 0
        munmap   p8 1p           = EPERM
        mprotect p8 1p r--       = EPERM
        madvise  p8 1p dontneed  = 0
    """)  # fmt: skip
    expect(s, "[8,16) rw-p,sl,gd anon 0jklmnop", 0, 16)


def test_2_1b_sealed_stack_still_grows_down_and_stays_sealed() -> None:
    s = make(STACK + "mseal p8 8p = 0")
    below = MODEL_BASES.arena + 3 * 4096
    assert s.expand_stack(below) == 0
    assert ascii(s, 0, 16) == ("   AAAAAAAAAAAAA", "---00000ijklmnop")
    expect(s, "[3,16) rw-p,sl,gd anon 00000ijklmnop", 0, 16)
    # Within the same call of a fault: an address already mapped is fine.
    assert s.expand_stack(below + 4096) == 0


def test_2_1b_stack_growth_keeps_the_guard_gap_and_rlimit() -> None:
    s = make(STACK + "mmap p0 1p rw- private|anon|fixed = p0")
    # An accessible VMA right below: the 256-page stack guard gap refuses it.
    assert s.expand_stack(MODEL_BASES.arena + 4 * 4096) == -12
    run(s, "mprotect p0 1p --- = 0")  # a PROT_NONE neighbour does not count
    assert s.expand_stack(MODEL_BASES.arena + 4 * 4096) == 0
    far = make(STACK)
    assert far.expand_stack(MODEL_BASES.arena - (8 << 20)) == -12  # RLIMIT_STACK
    assert far.expand_stack(MODEL_BASES.arena + 17 * 4096) == -14  # nothing grows up to it


def test_2_1_plain_mmap_hint_below_a_stack_respects_its_guard_gap() -> None:
    s = make(STACK)
    op = Mmap(MODEL_BASES.arena, 4096, Prot.READ, MapFlag.PRIVATE | MapFlag.ANONYMOUS)
    from sealkit.ops import ELSEWHERE

    assert s.apply(op) == ELSEWHERE  # the hint is inside the guard gap

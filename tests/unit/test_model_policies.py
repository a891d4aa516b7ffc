"""What distinguishes each policy from ``linux`` (and the choices each documents).

Every policy models its design *applied to a Linux address space*: the calls
keep their Linux meaning and only the seal checks (what, where, which errno)
change. The ASCII pictures read as in the kernel's VMA harness: one letter
per VMA, UPPERCASE when sealed, a space where nothing is mapped.
"""

from __future__ import annotations

import errno

import pytest

from sealkit.errors import ArgumentError, ArgumentTypeError
from sealkit.flags import Madv, SealV1, SealV3, SplitSeal
from sealkit.model import POLICIES, AddressSpace
from sealkit.ops import (
    ELSEWHERE,
    MODEL_BASES,
    Madvise,
    Mimmutable,
    Mseal,
    MsealSplit,
    MsealV1,
    MsealV3,
)

from .model_helpers import ascii, data, expect, make, run

P0 = MODEL_BASES.arena
PG = 4096


def test_registry_holds_the_design_table() -> None:
    assert list(POLICIES) == [
        "linux", "linux-6.10", "linux-6.10.y", "proposal-v1", "proposal-v3",
        "mimmutable", "mimmutable-7.3", "chrome-split", "none",
        # the other readings of rules no source settles (DESIGN:READING)
        "proposal-v1:merge-as-coded", "mimmutable:permissive-advice",
        "chrome-split:unmap-refuses-discard",
    ]  # fmt: skip
    for name, policy in POLICIES.items():
        assert policy.name == name
        assert policy.design in POLICIES and f"{policy.design}:{policy.reading}".rstrip(":") == name
        for u in policy.unsettled:
            assert u.reading in policy.__doc__ and u.other in policy.__doc__
        assert repr(policy) == f"POLICIES[{name!r}]"
        for operation in ("munmap", "mprotect", "madvise", "brk", "fork", "write"):
            blocked, kind = policy.refusals[operation]
            assert blocked and kind, (name, operation)
        assert policy.summary and policy.source
        assert policy.__doc__ is not None and policy.summary in policy.__doc__
        assert all(choice in policy.__doc__ for choice in policy.choices)
    with pytest.raises(ArgumentError, match="unknown policy 'linux-9'"):
        AddressSpace("linux-9")
    with pytest.raises(ArgumentTypeError):
        AddressSpace(3)  # type: ignore[arg-type]
    with pytest.raises(ArgumentError, match="zone"):
        AddressSpace().layout("q", 0, 4)
    with pytest.raises(ArgumentError, match="empty window"):
        AddressSpace().state_key("p", 4, 0)


SEAL_CALLS = {
    Mseal: Mseal(P0, PG),
    MsealV1: MsealV1(P0, PG, SealV1.MUNMAP),
    MsealV3: MsealV3(P0, PG, SealV3.BASE),
    Mimmutable: Mimmutable(P0, PG),
    MsealSplit: MsealSplit(P0, PG, SplitSeal.UNMAP),
}


@pytest.mark.parametrize("name", list(POLICIES))
def test_a_world_has_exactly_its_own_sealing_call(name: str) -> None:
    for kind, op in SEAL_CALLS.items():
        s = make("mmap p0 1p rw- private|anon|fixed|sealable = p0", name)
        got = s.apply(op)
        if kind is POLICIES[name].seal_op:
            assert got == 0, (name, op)
        else:
            assert got == -errno.ENOSYS, (name, op)


# ----------------------------------------------------------------- linux-6.10

UNSEALED_SEALED = """
    mmap  p0 8p rw- private|anon|fixed = p0
    write p0 8p                        = 0
    mseal p4 4p                        = 0
"""


@pytest.mark.parametrize("name", ["linux-6.10", "linux-6.10.y"])
def test_610_every_refusal_is_atomic_without_leftover_split(name: str) -> None:
    s = make(UNSEALED_SEALED, name)
    run(s, """
        munmap   p2 6p                        = EPERM
        mmap     p2 4p rw- private|anon|fixed = EPERM
        mprotect p0 8p r--                    = EPERM
        mprotect p2 6p r--                    = EPERM
        mremap   p0 8p 8p maymove|fixed p8    = EPERM
    """)  # fmt: skip
    assert ascii(s, 0, 8) == ("aaaaBBBB", "abcdefgh")
    linux = make(UNSEALED_SEALED)
    run(linux, "munmap p2 6p = EPERM")
    assert ascii(linux, 0, 8) == ("aabbCCCC", "abcdefgh")  # the leftover split
    run(linux, "mprotect p0 8p r-- = EPERM")  # partial: [0,4) changed (and merged back)
    expect(linux, "[0,4) r--p anon abcd\n[4,8) rw-p,sl anon efgh", 0, 8)


@pytest.mark.parametrize("name", ["linux-6.10", "linux-6.10.y"])
def test_610_madvise_refusal_is_atomic(name: str) -> None:
    setup = UNSEALED_SEALED.replace("mseal", "mprotect p0 8p r-- = 0\nmseal")
    s = make(setup, name)
    run(s, "madvise p0 8p dontneed = EPERM")
    assert data(s, 0, 8) == "abcdefgh"
    linux = make(setup)
    run(linux, "madvise p0 8p dontneed = EPERM")
    assert data(linux, 0, 8) == "0000efgh"


READ_ONLY_SEALED = """
    mmap     p0 4p rw- private|anon|fixed = p0
    write    p0 4p                        = 0
    mprotect p0 4p r--                    = 0
    mseal    p0 4p                        = 0
"""


@pytest.mark.parametrize(
    ("advice", "v6100", "v610y"),
    [
        (Madv.NORMAL, 0, 0),  # 0 & 31 == 0
        (Madv.RANDOM, -errno.EPERM, 0),  # the selftest that caught the bug
        (Madv.WILLNEED, -errno.EPERM, 0),
        (Madv.HUGEPAGE, -errno.EPERM, 0),
        (Madv.POPULATE_READ, -errno.EPERM, 0),
        (Madv.DONTDUMP, 0, 0),  # 16 & 31 == 16... is a discard? no: 16 & 31 = 16
        (Madv.DONTNEED, -errno.EPERM, -errno.EPERM),
        (Madv.GUARD_INSTALL, -errno.EINVAL, -errno.EINVAL),  # no guard regions in 6.10
    ],
)
def test_610_is_madv_discard_bitmask_bug(advice: Madv, v6100: int, v610y: int) -> None:
    if advice == Madv.DONTDUMP:
        v6100 = -errno.EPERM  # 16 has bit 4 set: the bitmask calls it a discard
    for name, want in (("linux-6.10", v6100), ("linux-6.10.y", v610y)):
        s = make(READ_ONLY_SEALED, name)
        assert s.apply(Madvise(P0, 4 * PG, advice)) == want, name
    linux = make(READ_ONLY_SEALED)
    expected = -errno.EPERM if advice in (Madv.DONTNEED, Madv.GUARD_INSTALL) else 0
    assert linux.apply(Madvise(P0, 4 * PG, advice)) == expected


def test_610_bug_spares_writable_and_unsealed_memory() -> None:
    s = make("mmap p0 4p rw- private|anon|fixed = p0\nmseal p0 4p = 0", "linux-6.10")
    run(s, "madvise p0 4p random = 0\nmadvise p0 4p dontneed = 0")


def test_610_sealed_shmem_duplication_was_not_checked() -> None:
    # 6.10 checked [addr, addr+old_len): empty for old_len 0 (6.18 refuses: scenario probe/6.10).
    setup = "mmap p0 4p rw- shared|anon|fixed = p0\nmseal p0 4p = 0"
    old = make(setup, "linux-6.10")
    run(old, "mremap p0 0 4p maymove|fixed p8 = p8")
    assert ascii(old, 0, 12)[0] == "AAAA    BBBB"
    new = make(setup)
    run(new, "mremap p0 0 4p maymove|fixed p8 = EPERM")


def test_610_brk_shrink_refused_without_split() -> None:
    s = make("brk h4 = h4\nmseal h3 1p = 0", "linux-6.10")
    run(s, "brk h2 = h4")
    assert ascii(s, 0, 4, "h")[0] == "aaaB"


def test_610_mremap_is_single_vma() -> None:
    s = make(
        "mmap p0 2p rw- private|anon|fixed = p0\nmmap p2 2p r-- private|anon|fixed = p2",
        "linux-6.10",
    )
    run(s, "mremap p0 4p 4p maymove|fixed p8 = EFAULT")
    linux = make("mmap p0 2p rw- private|anon|fixed = p0\nmmap p2 2p r-- private|anon|fixed = p2")
    run(linux, "mremap p0 4p 4p maymove|fixed p8 = p8")
    assert ascii(linux, 0, 12)[0] == "        aabb"


# ---------------------------------------------------------------- proposal-v1


def test_v1_munmap_seal_refuses_munmap_but_map_fixed_replaces_the_range() -> None:
    s = make(
        "mmap p0 4p rw- private|anon|fixed = p0\nwrite p0 4p = 0\nmseal_v1 p0 4p munmap = 0",
        "proposal-v1",
    )
    expect(s, "[0,4) rw-p,sl=munmap anon abcd", 0, 4)
    run(s, "munmap p0 4p = EACCES\nbrk 0 = h0")
    assert ascii(s, 0, 4) == ("AAAA", "abcd")
    run(s, "mmap p0 4p r-- private|anon|fixed = p0")
    assert ascii(s, 0, 4) == ("aaaa", "0000")  # the sealed mapping is gone


def test_v1_munmap_seal_does_not_stop_mremap_or_mprotect() -> None:
    s = make(
        "mmap p0 4p rw- private|anon|fixed = p0\nwrite p0 4p = 0\nmseal_v1 p0 4p munmap = 0",
        "proposal-v1",
    )
    run(s, "mprotect p0 4p r-- = 0\nmremap p0 4p 4p maymove|fixed p8 = p8")
    assert ascii(s, 0, 12) == ("        AAAA", "--------abcd")


def test_v1_each_type_blocks_only_its_syscall() -> None:
    s = make("mmap p0 4p rw- private|anon|fixed = p0\nmseal_v1 p0 4p mmap = 0", "proposal-v1")
    run(s, "mmap p0 4p rw- private|anon|fixed = EACCES\nmunmap p0 4p = 0")
    t = make("mmap p0 8p rw- private|anon|fixed = p0\nmseal_v1 p4 4p mprotect = 0", "proposal-v1")
    run(t, "mprotect p0 8p r-- = EACCES")  # whole-range pre-check: atomic
    expect(t, "[0,4) rw-p anon 0000\n[4,8) rw-p,sl=mprotect anon 0000", 0, 8)
    u = make(
        "mmap p0 4p rw- private|anon|fixed = p0\nmmap p8 4p rw- private|anon|fixed = p8",
        "proposal-v1",
    )
    run(
        u,
        "mseal_v1 p0 4p mremap = 0\nmremap p0 4p 2p 0 = EACCES\nmremap p8 4p 4p maymove|fixed p0 = EACCES",
    )


def test_v1_mseal_type_refuses_adding_types_not_repeating_them() -> None:
    s = make("mmap p0 4p rw- private|anon|fixed = p0", "proposal-v1")
    run(s, """
        mseal_v1 p0 4p mseal|munmap         = 0
        mseal_v1 p0 4p munmap               = 0
        mseal_v1 p0 4p mprotect             = EACCES
        mseal_v1 p0 4p 0x20                 = EINVAL
        mseal_v1 p0 4p 0                    = 0
        mseal_v1 p0 4p munmap flags=0x1     = EINVAL
        mseal_v1 p0 8p munmap               = ENOMEM
    """)  # fmt: skip
    expect(s, "[0,4) rw-p,sl=mseal+munmap anon 0000", 0, 4)


def test_v1_never_refuses_madvise() -> None:
    s = make(READ_ONLY_SEALED.replace("mseal    p0 4p", "mseal_v1 p0 4p 0x1f"), "proposal-v1")
    run(s, "madvise p0 4p dontneed = 0")
    assert data(s, 0, 4) == "0000"


# ---------------------------------------------------------------- proposal-v3


def test_v3_needs_map_sealable() -> None:
    s = make(
        "mmap p0 4p rw- private|anon|fixed = p0\nmmap p4 4p rw- private|anon|fixed|sealable = p4",
        "proposal-v3",
    )
    run(s, "mseal_v3 p0 8p base = EACCES\nmseal_v3 p4 4p base = 0")
    assert ascii(s, 0, 8)[0] == "aaaaBBBB"
    linux = make("mmap p0 4p rw- private|anon|fixed|sealable = p0")
    assert linux.apply(MsealV3(P0, PG, SealV3.BASE)) == -errno.ENOSYS


def test_v3_base_blocks_unmapping_not_protection() -> None:
    s = make(
        "mmap p0 4p rw- private|anon|fixed|sealable = p0\nmseal_v3 p0 4p base = 0", "proposal-v3"
    )
    run(s, """
        munmap   p0 4p                         = EACCES
        mmap     p0 4p rw- private|anon|fixed  = EACCES
        mremap   p0 4p 8p maymove              = EACCES
        mprotect p0 4p r--                     = 0
    """)  # fmt: skip
    expect(s, "[0,4) r--p,sl=base anon 0000", 0, 4)


def test_v3_prot_pkey_implies_base() -> None:
    s = make(
        "mmap p0 4p rw- private|anon|fixed|sealable = p0\nmseal_v3 p0 4p prot_pkey = 0",
        "proposal-v3",
    )
    run(s, "mprotect p0 4p r-- = EACCES\nmunmap p0 4p = EACCES")
    expect(s, "[0,4) rw-p,sl=base+prot_pkey anon 0000", 0, 4)


def test_v3_discard_ro_anon_and_seal() -> None:
    s = make(
        READ_ONLY_SEALED.replace("private|anon|fixed", "private|anon|fixed|sealable").replace(
            "mseal    p0 4p", "mseal_v3 p0 4p discard_ro_anon|seal"
        ),
        "proposal-v3",
    )
    run(s, """
        madvise  p0 4p dontneed       = EACCES
        madvise  p0 4p normal         = 0
        mseal_v3 p0 4p prot_pkey      = EACCES
        mseal_v3 p0 4p base           = 0
        mseal_v3 p0 4p seal           = 0
        mprotect p0 4p rw-            = 0
        madvise  p0 4p dontneed       = 0
        munmap   p0 4p                = EACCES
    """)  # fmt: skip
    expect(s, "[0,4) rw-p,sl=seal+base+discard_ro_anon anon 0000", 0, 4)


# ----------------------------------------------------------------- mimmutable


def test_mimmutable_rounds_down_skips_holes_and_never_enomems() -> None:
    s = make(
        "mmap p0 2p rw- private|anon|fixed = p0\nmmap p3 2p rw- private|anon|fixed = p3",
        "mimmutable",
    )
    run(s, """
        mimmutable p1+100 1          = 0
        mimmutable p2 3p             = 0
        mimmutable p8 4p             = 0
        mimmutable 0xffff800000000000 1p = 0
        mimmutable 0xfffffffffffff000 2p = EINVAL
        mimmutable p0 0              = 0
    """)  # fmt: skip
    assert ascii(s, 0, 6)[0] == "aB CC "
    expect(
        s,
        "[0,1) rw-p anon 0\n[1,2) rw-p,sl=immutable anon 0\n[3,5) rw-p,sl=immutable anon 00",
        0,
        6,
    )


def test_mimmutable_refuses_every_mprotect_atomically() -> None:
    s = make("mmap p0 8p rw- private|anon|fixed = p0\nmimmutable p4 4p = 0", "mimmutable")
    run(s, """
        mprotect p0 8p r--   = EPERM
        mprotect p4 4p rw-   = EPERM
        mprotect p4 4p r--   = EPERM
        munmap   p2 6p       = EPERM
    """)  # fmt: skip
    assert ascii(s, 0, 8)[0] == "aaaaBBBB"  # nothing changed, no leftover split


def test_mimmutable_73_allows_rw_to_r_only() -> None:
    s = make("mmap p0 4p rw- private|anon|fixed = p0\nmimmutable p0 4p = 0", "mimmutable-7.3")
    run(s, """
        mprotect p0 4p ---   = EPERM
        mprotect p0 4p rw-   = EPERM
        mprotect p0 4p r--   = 0
        mprotect p0 4p rw-   = EPERM
        mprotect p0 4p r--   = EPERM
    """)  # fmt: skip
    expect(s, "[0,4) r--p,sl=immutable anon 0000", 0, 4)
    today = make("mmap p0 4p rw- private|anon|fixed = p0\nmimmutable p0 4p = 0", "mimmutable")
    run(today, "mprotect p0 4p r-- = EPERM")


def test_mimmutable_discard_refused_on_anonymous_memory_even_writable() -> None:
    s = make(
        "mmap p0 4p rw- private|anon|fixed = p0\nwrite p0 4p = 0\nmimmutable p0 4p = 0",
        "mimmutable",
    )
    run(s, "madvise p0 4p dontneed = EPERM")  # Linux allows this (writable)
    assert data(s, 0, 4) == "abcd"
    linux = make("mmap p0 4p rw- private|anon|fixed = p0\nwrite p0 4p = 0\nmseal p0 4p = 0")
    run(linux, "madvise p0 4p dontneed = 0")


def test_mimmutable_discard_amap_rule_is_partial_and_file_only_passes() -> None:
    # An immutable file mapping with no anonymous memory: nothing to protect.
    f = make("mmap p0 4p r-- private|fixed file=f1 = p0\nmimmutable p0 4p = 0", "mimmutable")
    run(f, "madvise p0 4p dontneed = 0")
    # [file, no anonymous memory: processed][anon with memory: refuses][immutable]:
    # partial, like uvm_map_clean()'s second pass (shown with GUARD_INSTALL
    # judged like DONTNEED, mimmutable:permissive-advice, so that the
    # processed file pages show it).
    setup = """
        mmap  p0 2p r-- private|fixed file=f1 = p0
        mmap  p2 2p rw- private|anon|fixed    = p2
        write p2 2p = 0
        mmap  p4 2p r-- private|fixed file=f2 = p4
        mimmutable p4 2p = 0
    """
    s = make(setup, "mimmutable")
    run(s, "madvise p0 6p dontneed = EPERM")
    assert data(s, 0, 6) == "FFcdFF"
    # The default reading refuses Linux-only advice over the whole range first.
    run(s, "madvise p0 6p guard_install = EPERM")
    assert data(s, 0, 6) == "FFcdFF"
    p = make(setup, "mimmutable:permissive-advice")
    run(p, "madvise p0 6p guard_install = EPERM")
    assert data(p, 0, 6) == "##cdFF"


def test_mimmutable_inheritance_and_wipeonfork() -> None:
    s = make("mmap p0 4p rw- private|anon|fixed = p0\nmimmutable p0 4p = 0", "mimmutable")
    run(
        s,
        "madvise p0 4p dontfork = EPERM\nmadvise p0 4p wipeonfork = EPERM\nmadvise p0 4p random = 0",
    )
    t = make("mmap p0 4p rw- private|anon|fixed = p0\nmadvise p0 4p wipeonfork = 0", "mimmutable")
    run(t, "mimmutable p0 4p = EPERM")


# --------------------------------------------------------------- chrome-split


def test_split_unmap_seal_lets_mprotect_through() -> None:
    s = make(
        "mmap p0 4p rw- private|anon|fixed = p0\nwrite p0 4p = 0\nmseal_split p0 4p unmap = 0",
        "chrome-split",
    )
    run(s, """
        mprotect p0 4p r-x   = 0
        munmap   p0 4p       = EPERM
        mmap     p0 4p rw- private|anon|fixed = EPERM
    """)  # fmt: skip
    expect(s, "[0,4) r-xp,sl=unmap anon abcd", 0, 4)
    # Discards: chrome-split's unsettled rule C2 (tests/unit/test_model_design_sources.py).
    run(s, "madvise p0 4p dontneed = 0")


def test_split_prot_seal_lets_unmap_and_discard_through() -> None:
    s = make(READ_ONLY_SEALED.replace("mseal    p0 4p", "mseal_split p0 4p prot"), "chrome-split")
    run(s, "mprotect p0 4p rw- = EPERM\nmadvise p0 4p dontneed = 0\nmunmap p0 4p = 0")


def test_split_keeps_linux_partial_mprotect_and_leftover_split() -> None:
    s = make(UNSEALED_SEALED.replace("mseal p4 4p", "mseal_split p4 4p unmap|prot"), "chrome-split")
    run(s, "munmap p2 6p = EPERM\nmprotect p0 8p r-- = EPERM")
    expect(s, "[0,4) r--p anon abcd\n[4,8) rw-p,sl=unmap+prot anon efgh", 0, 8)
    run(s, "mseal_split p0 1p 0 = EINVAL\nmseal_split p0 1p 0x4 = EINVAL")


# ---------------------------------------------------------------------- none


def test_none_accepts_mseal_and_never_refuses() -> None:
    s = make(UNSEALED_SEALED, "none")
    assert ascii(s, 0, 8) == ("aaaaaaaa", "abcdefgh")
    run(s, """
        mseal    p0 16p                        = ENOMEM
        mseal    p0+1 1p                       = EINVAL
        mprotect p0 8p r--                     = 0
        madvise  p0 8p dontneed                = 0
        mremap   p0 8p 8p maymove|fixed p8     = p8
        munmap   p8 8p                         = 0
    """)  # fmt: skip
    assert ascii(s, 0, 16)[0] == " " * 16


def test_elsewhere_result_for_a_policy_world_too() -> None:
    s = make(
        "mmap p0 4p rw- private|anon|fixed = p0\nmmap p4 1p r-- private|anon|fixed = p4",
        "mimmutable",
    )
    run(s, "mremap p0 4p 8p maymove = elsewhere")
    assert s.apply(Mimmutable(P0, PG)) == 0
    assert ELSEWHERE > 0


# ----------------------------------------------- the remaining documented choices


def test_v1_brk_grows_beside_sealed_heap_without_merging() -> None:
    s = make("brk h4 = h4\nmseal_v1 h2 2p munmap = 0", "proposal-v1")
    run(s, "brk h6 = h6")
    assert ascii(s, 0, 6, "h")[0] == "aaBBcc"
    t = make("mmap p0 4p rw- private|anon|fixed = p0", "proposal-v1")
    run(t, "mseal_v1 p0 2p munmap = 0\nmseal_v1 p2 2p mmap = 0")
    assert ascii(t, 0, 4)[0] == "AABB"
    run(t, "mseal_v1 p2 2p munmap = 0\nmseal_v1 p0 2p mmap = 0")
    assert ascii(t, 0, 4)[0] == "AABB"  # equal types now, but sealing never merges


def test_v1_mremap_is_single_vma() -> None:
    s = make(
        "mmap p0 2p rw- private|anon|fixed = p0\nmmap p2 2p r-- private|anon|fixed = p2",
        "proposal-v1",
    )
    run(s, "mremap p0 4p 4p maymove|fixed p8 = EFAULT")


def test_v3_sealable_survives_mremap_and_fork_but_brk_is_not_sealable() -> None:
    s = make("mmap p0 2p rw- private|anon|fixed|sealable = p0\nbrk h2 = h2", "proposal-v3")
    run(s, """
        mremap   p0 2p 2p maymove|fixed p8 = p8
        fork                                = 0
        mseal_v3 p8 2p base                 = 0
        mseal_v3 h0 2p base                 = EACCES
    """)  # fmt: skip
    assert ascii(s, 8, 10)[0] == "AA"


def test_v3_discard_bitmask_includes_guard_advice() -> None:
    s = make(
        READ_ONLY_SEALED.replace("private|anon|fixed", "private|anon|fixed|sealable").replace(
            "mseal    p0 4p", "mseal_v3 p0 4p discard_ro_anon"
        ),
        "proposal-v3",
    )
    # 102 & 31 and 103 & 31 are not 0: the 2023 bitmask applied to 6.18's advice.
    run(s, "madvise p0 4p guard_install = EACCES\nmadvise p0 4p guard_remove = EACCES")


def test_mimmutable_keeps_linux_munmap_and_mprotect_hole_semantics() -> None:
    s = make(
        "mmap p0 2p rw- private|anon|fixed = p0\nmmap p4 2p rw- private|anon|fixed = p4",
        "mimmutable",
    )
    run(s, "munmap p0 8p = 0")  # OpenBSD would say EINVAL for the holes
    t = make(
        "mmap p0 2p rw- private|anon|fixed = p0\nmmap p4 2p rw- private|anon|fixed = p4",
        "mimmutable",
    )
    run(t, "mprotect p0 6p r-- = ENOMEM")  # Linux's partial ENOMEM at the hole
    expect(t, "[0,2) r--p anon 00\n[4,6) rw-p anon 00", 0, 6)


def test_mimmutable_refuses_mremap_of_source_and_destination() -> None:
    s = make(
        "mmap p0 2p rw- private|anon|fixed = p0\nmmap p8 2p rw- private|anon|fixed = p8\nmimmutable p0 2p = 0",
        "mimmutable",
    )
    run(s, """
        mremap p0 2p 4p maymove              = EPERM
        mremap p8 2p 2p maymove|fixed p0     = EPERM
        mremap p8 2p 2p maymove|fixed p4     = p4
    """)  # fmt: skip


def test_linux_root_may_map_below_mmap_min_addr() -> None:
    s = make()
    run(s, "mmap 0 1p rw- private|anon|fixed = 0\nmseal 0 1p = 0\nmunmap 0 1p = EPERM")


@pytest.mark.parametrize(("name", "after"), [("linux", "aaaa"), ("linux-6.10", "    ")])
def test_map_fixed_accounting_failure_after_the_unmap(name: str, after: str) -> None:
    # 6.10 unmapped the old range before charging the new mapping (the gap
    # Liam Howlett's 6.12 series closed); 6.12+ reattaches the old VMAs.
    s = AddressSpace(name, ram_pages=8)
    run(s, "mmap p0 4p r-- private|anon|fixed = p0")
    run(s, "mmap p0 16p rw- private|anon|fixed = ENOMEM")  # 16 pages > 8 of RAM
    assert ascii(s, 0, 4)[0] == after

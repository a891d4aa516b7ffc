"""Each non-Linux design as its authors wrote it (issue 15, items 1-6).

Every test names, in its docstring, the source line it follows: the file
and function, and the revision, commit or Message-ID where it was read
(docs/reference/designs.md collects them). RFC patches are cited by
Message-ID: RFC v1 is ``20231016143828.647848-N-jeffxu@chromium.org`` and
RFC v3 ``20231212231706.2680890-N-jeffxu@chromium.org``, N = patch + 1.
Pictures: one letter per VMA, UPPERCASE when sealed, a space where nothing
is mapped; data: one content token per page.
"""

from __future__ import annotations

import pytest

from sealkit.model import POLICIES

from .model_helpers import ascii, data, expect, make, run

RO_ANON = """
    mmap     p0 4p rw- private|anon|fixed = p0
    write    p0 4p                        = 0
    mprotect p0 4p r--                    = 0
"""

# ------------------------------------------------- item 1: mimmutable-7.3


def test_73_madvise_ignores_immutability() -> None:
    """OpenBSD 7.3 refused only mmap, mprotect and munmap on immutable pages.

    Sources: lib/libc/sys/mimmutable.2 rev 1.2 (2022/11/06, the OpenBSD 7.3
    manual), DESCRIPTION: "mmap(2), mprotect(2), and munmap(2) to pages marked
    immutable will return with error EPERM"; sys/uvm/uvm_map.c rev 1.321
    (openbsd/src commit 38558285c928dfef552f8b65b2631f0a433f7b4c, the last
    revision before the change), ``uvm_map_clean()``: "Make a first pass to
    check for holes." and nothing else, ``uvm_map_inherit()``: no immutability
    test; commit 114aad1984406bb6d9522da21182f9fcf7b0f369 (2024-01-21) is the
    one that made madvise, msync and minherit "now also return EPERM".
    """
    s = make(RO_ANON + "mimmutable p0 4p = 0", "mimmutable-7.3")
    run(s, """
        madvise  p0 2p dontneed   = 0
        madvise  p2 2p dontfork   = 0
        madvise  p2 2p wipeonfork = 0
    """)  # fmt: skip
    assert ascii(s, 0, 4) == ("AABB", "00cd")
    today = make(RO_ANON + "mimmutable p0 4p = 0", "mimmutable")
    run(today, "madvise p0 2p dontneed = EPERM\nmadvise p2 2p dontfork = EPERM")


def test_73_mimmutable_marks_a_map_inherit_zero_range() -> None:
    """7.3's ``uvm_map_immutable()`` marked every entry in range.

    Source: sys/uvm/uvm_map.c rev 1.321 (commit 38558285), ``uvm_map_immutable()``
    has no ``MAP_INHERIT_ZERO`` test; commit 114aad1 message: "it should not be
    allowed to ... [call] mimmutable() upon MAP_INHERIT_ZERO regions ... These
    now also return EPERM" (uvm_map.c rev 1.346: ``if (entry1->inheritance ==
    MAP_INHERIT_ZERO) goto out;``).
    """
    setup = "mmap p0 4p rw- private|anon|fixed = p0\nmadvise p0 4p wipeonfork = 0"
    run(make(setup, "mimmutable-7.3"), "mimmutable p0 4p = 0")
    run(make(setup, "mimmutable"), "mimmutable p0 4p = EPERM")


def test_73_still_refuses_mmap_munmap_and_all_but_the_rw_to_r_mprotect() -> None:
    """Source: mimmutable.2 rev 1.2, DESCRIPTION (mmap, mprotect, munmap: EPERM)
    and CAVEATS: "mprotect(2) may reduce permissions on immutable pages marked
    PROT_READ | PROT_WRITE to the less permissive PROT_READ"."""
    s = make("mmap p0 4p rw- private|anon|fixed = p0\nmimmutable p0 4p = 0", "mimmutable-7.3")
    run(s, """
        munmap   p0 4p                        = EPERM
        mmap     p0 2p rw- private|anon|fixed = EPERM
        mprotect p0 4p r-x                    = EPERM
        mprotect p0 4p r--                    = 0
    """)  # fmt: skip


# --------------------------------------------- item 2: mimmutable, advice


def test_mimmutable_refuses_linux_only_destructive_advice_over_the_whole_range() -> None:
    """Reading A (default) of an unsettled rule: advice OpenBSD does not have.

    Sources: sys/uvm/uvm_mmap.c rev 1.203 ``sys_madvise()`` knows only NORMAL,
    RANDOM, SEQUENTIAL, WILLNEED, DONTNEED, FREE and SPACEAVAIL; commit
    114aad1984406bb6d9522da21182f9fcf7b0f369 message: "Some of these ops are
    not destructive in OpenBSD, but they are destructive on other systems, so
    we take the "all ops" are illegal approach", and its uvm_map.c rev 1.324
    refused the whole range before changing anything. The other reading is the
    policy ``mimmutable:permissive-advice``.
    """
    text = "mmap p0 2p r-x private|fixed file=f1 = p0\nmimmutable p0 2p = 0"
    strict = make(text, "mimmutable")
    run(strict, "madvise p0 1p guard_install = EPERM\nmadvise p0 2p dontneed_locked = EPERM")
    assert data(strict, 0, 2) == "FF"
    loose = make(text, "mimmutable:permissive-advice")
    run(loose, "madvise p0 1p guard_install = 0")  # a file-only range has no amap
    assert data(loose, 0, 2) == "#F"
    # Atomic: [anonymous, unsealed, written][immutable file], nothing changes.
    both = """
        mmap  p0 2p rw- private|anon|fixed    = p0
        write p0 2p                           = 0
        mmap  p2 2p r-- private|fixed file=f1 = p2
        mimmutable p2 2p                      = 0
    """
    s = make(both, "mimmutable")
    run(s, "madvise p0 4p guard_install = EPERM")
    assert data(s, 0, 4) == "abFF"
    p = make(both, "mimmutable:permissive-advice")
    run(p, "madvise p0 4p guard_install = EPERM")  # the first VMA with an amap refuses
    assert data(p, 0, 4) == "abFF"


def test_mimmutable_shared_anonymous_memory_has_an_amap() -> None:
    """OpenBSD's MAP_SHARED anonymous memory has an amap from mmap on, so
    DONTNEED on an immutable range of it is refused (both readings).

    Sources: sys/uvm/uvm_mmap.c rev 1.203 ``uvm_mmapanon()``: ``if ((flags &
    MAP_SHARED) == 0) uvmflag |= UVM_FLAG_COPYONW; else uvmflag |=
    UVM_FLAG_OVERLAY;``; sys/uvm/uvm_map.c rev 1.346 ``uvm_mapanon()``: ``if
    (flags & UVM_FLAG_OVERLAY) { ... entry->aref.ar_amap = amap_alloc(...)``,
    and ``uvm_map_clean()``: ``if (amap == NULL || ...) goto flush_object; if
    (imut) { ... return EPERM; }``.
    """
    text = "mmap p0 2p rw- shared|anon|fixed = p0\nwrite p0 2p = 0\nmimmutable p0 2p = 0"
    for name in ("mimmutable", "mimmutable:permissive-advice"):
        s = make(text, name)
        run(s, "madvise p0 2p dontneed = EPERM\nmadvise p0 2p free = EPERM")
        assert data(s, 0, 2) == "ab", name


# --------------------------------------------------------- item 3: v3


def test_v3_discard_ro_anon_implies_base() -> None:
    """Source: RFC v3 08/11 "mseal: add MM_SEAL_DISCARD_RO_ANON"
    (20231212231706.2680890-9-jeffxu@chromium.org), ``do_mseal()``: ``if
    (types & (MM_SEAL_PROT_PKEY | MM_SEAL_DISCARD_RO_ANON)) types |=
    MM_SEAL_BASE;`` ("Setting this implies MM_SEAL_BASE is also set")."""
    s = make(
        "mmap p0 4p rw- private|anon|fixed|sealable = p0\nmseal_v3 p0 4p discard_ro_anon = 0",
        "proposal-v3",
    )
    expect(s, "[0,4) rw-p,sl=base+discard_ro_anon anon 0000", 0, 4)
    run(s, """
        munmap   p0 4p                        = EACCES
        mmap     p0 4p rw- private|anon|fixed = EACCES
        mprotect p0 4p r--                    = 0
    """)  # fmt: skip


@pytest.mark.parametrize(
    ("advice", "refused"),
    [
        ("normal", False),  # 0: no bit of 0-4
        ("random", True),  # 1
        ("willneed", True),  # 3
        ("mergeable", True),  # 12
        ("dontdump", True),  # 16
        ("cold", True),  # 20
        ("populate_read", True),  # 22: the check runs before madvise_populate()
        ("guard_remove", True),  # 103 = 0b1100111
    ],
)
def test_v3_discard_test_is_the_bitmask(advice: str, refused: bool) -> None:
    """Source: RFC v3 08/11 (20231212231706.2680890-9-jeffxu@chromium.org),
    ``is_madv_discard()``: ``return behavior & (MADV_FREE | MADV_DONTNEED |
    MADV_DONTNEED_LOCKED | MADV_REMOVE | MADV_DONTFORK | MADV_WIPEONFORK);``
    (8 | 4 | 4 | 9 | 10 | 18 = 31: any of bits 0-4), tested by
    ``can_modify_mm_madv()`` in ``do_madvise()`` before the walk. The same text
    shipped in 6.10.0 and was fixed by e46bc2e7eb90."""
    s = make(
        RO_ANON.replace("private|anon|fixed", "private|anon|fixed|sealable")
        + "mseal_v3 p0 4p discard_ro_anon = 0",
        "proposal-v3",
    )
    run(s, f"madvise p0 4p {advice} = {'EACCES' if refused else '0'}")
    assert data(s, 0, 4) == "abcd"


# ------------------------------------------------ item 4: chrome-split


def test_split_unmap_seal_refuses_no_discard_by_default() -> None:
    """Reading A (default) of an unsettled rule: Chrome's unmap seal and discards.

    Sources: Stephen Röttger, "Re: [RFC PATCH v1 0/8] Introduce mseal()
    syscall", 2023-10-19, CAEAAPHYgg49WtpE7Jdq6HDecFp5RHPhdxtPTUaNF12RONu5aDA@mail.gmail.com:
    "split the sealing into unmap and mprotect" (nothing about madvise); RFC v3
    08/11 (20231212231706.2680890-9-jeffxu@chromium.org), the one
    implementation of the split, made discard its own type, "Suggested-by:
    Stephen Röttger". The other reading is ``chrome-split:unmap-refuses-discard``.
    """
    setup = RO_ANON + "mseal_split p0 4p unmap|prot = 0"
    s = make(setup, "chrome-split")
    run(s, "madvise p0 4p dontneed = 0\nmunmap p0 4p = EPERM")
    assert data(s, 0, 4) == "0000"
    v = make(setup, "chrome-split:unmap-refuses-discard")
    run(v, "madvise p0 4p dontneed = EPERM")
    assert data(v, 0, 4) == "abcd"
    prot_only = make(RO_ANON + "mseal_split p0 4p prot = 0", "chrome-split:unmap-refuses-discard")
    run(prot_only, "madvise p0 4p dontneed = 0")  # the rule belongs to the unmap seal


# --------------------------------------------------- item 5: brk shrink


@pytest.mark.parametrize(
    ("name", "seal"),
    [
        ("proposal-v1", "mseal_v1 h2 2p munmap|mseal"),
        ("mimmutable", "mimmutable h2 2p"),
        ("mimmutable-7.3", "mimmutable h2 2p"),
    ],
)
def test_brk_shrink_over_sealed_heap_is_not_checked(name: str, seal: str) -> None:
    """Shrinking the break unmaps sealed heap pages under v1 and OpenBSD.

    Sources: RFC v1 5/8 "mseal munmap" (20231016143828.647848-6-jeffxu@chromium.org):
    only ``SYSCALL_DEFINE2(munmap)`` passes ``ON_BEHALF_OF_USERSPACE``, and no v1
    patch touches ``do_vma_munmap()``, which the 6.6 ``brk()`` shrinks with;
    OpenBSD sys/uvm/uvm_unix.c rev 1.73 ``sys_obreak()``: ``uvm_unmap(&vm->vm_map,
    new, old);`` and sys/uvm/uvm_map.c rev 1.321 and 1.346 ``uvm_unmap()``:
    ``uvm_unmap_remove(map, start, end, &dead, FALSE, TRUE, FALSE);``
    (checkimmutable FALSE). RFC v3 04/11 (…-5-jeffxu@chromium.org) did check
    ``do_vma_munmap()`` with BASE, and Linux refuses.
    """
    s = make(f"brk h4 = h4\n{seal} = 0", name)
    assert ascii(s, 0, 4, "h")[0] == "aaBB"
    run(s, "brk h1 = h1")
    assert ascii(s, 0, 4, "h")[0] == "a   "
    v3 = make("brk h4 = h4", "proposal-v3")
    run(v3, "munmap h2 2p = 0\nmmap h2 2p rw- private|anon|fixed|sealable = h2")
    run(v3, "mseal_v3 h2 2p base = 0\nbrk h1 = h4")
    linux = make("brk h4 = h4\nmseal h2 2p = 0")
    run(linux, "brk h1 = h4")


# ------------------------------------------ item 6: v1 (and v3) mseal


def test_v1_types_zero_is_accepted() -> None:
    """Source: RFC v1 1/8 "Add mseal syscall" (20231016143828.647848-2-jeffxu@chromium.org),
    ``can_do_mseal()``: ``if (types & ~MM_SEAL_ALL) return false; if (flags)
    return false; return true;``: only unknown bits and flags are EINVAL. RFC
    v3 01/11 (20231212231706.2680890-2-jeffxu@chromium.org) has the same test."""
    s = make("mmap p0 4p rw- private|anon|fixed = p0", "proposal-v1")
    run(s, """
        mseal_v1 p0 4p 0        = 0
        mseal_v1 p0 8p 0        = ENOMEM
        mseal_v1 p0 4p 0x20     = EINVAL
        mseal_v1 p0 4p 0 flags=1 = EINVAL
    """)  # fmt: skip
    assert ascii(s, 0, 4)[0] == "aaaa"
    v3 = make("mmap p0 2p rw- private|anon|fixed = p0", "proposal-v3")
    run(v3, "mseal_v3 p0 2p 0 = EACCES")  # 0 types, but the VMA is not sealable
    run(v3, "mmap p2 2p rw- private|anon|fixed|sealable = p2\nmseal_v3 p2 2p 0 = 0")


def test_v1_holes_and_refusals_are_found_in_one_walk_in_address_order() -> None:
    """Source: RFC v1 1/8 (20231016143828.647848-2-jeffxu@chromium.org),
    ``check_mm_seal()``: ``for_each_vma_range(vmi, vma, end) { if
    (vma->vm_start > nstart) return -ENOMEM; if (!can_add_vma_seals(vma,
    newtypes)) return -EACCES; ...}``: whichever comes first. RFC v3 09/11
    (20231212231706.2680890-10-jeffxu@chromium.org) folds the sealable test
    into ``can_add_vma_seals()``, so the same walk finds unsealable VMAs."""
    s = make(
        "mmap p0 2p rw- private|anon|fixed = p0\nmmap p4 2p rw- private|anon|fixed = p4\n"
        "mseal_v1 p0 2p mseal = 0\nmseal_v1 p4 2p mseal = 0",
        "proposal-v1",
    )
    run(s, "mseal_v1 p0 6p munmap = EACCES\nmseal_v1 p2 4p munmap = ENOMEM")
    v3 = make(
        "mmap p0 2p rw- private|anon|fixed = p0\nmmap p4 2p rw- private|anon|fixed|sealable = p4",
        "proposal-v3",
    )
    run(v3, "mseal_v3 p0 6p base = EACCES\nmseal_v3 p2 4p base = ENOMEM")


def test_v1_sealed_vmas_never_merge() -> None:
    """Source: RFC v1 1/8 (20231016143828.647848-2-jeffxu@chromium.org):
    ``mseal_fixup()`` only splits ("Note: sealed VMA doesn't merge with other
    VMAs") and ``is_mergeable_vma()``: "If a VMA is sealed, it won't be merged
    with another VMA. ... if (vma->vm_seals & VM_SEAL_ALL) return 0;"."""
    s = make("mmap p0 4p rw- private|anon|fixed = p0", "proposal-v1")
    run(s, "mseal_v1 p0 2p munmap = 0\nmseal_v1 p2 2p munmap = 0")
    assert ascii(s, 0, 4)[0] == "AABB"  # equal seals, still two VMAs
    run(s, "madvise p0 1p random = 0\nmadvise p0 1p normal = 0")
    assert ascii(s, 0, 4)[0] == "ABCC"  # a split sealed VMA does not merge back
    linux = make("mmap p0 4p rw- private|anon|fixed = p0\nmseal p0 2p = 0\nmseal p2 2p = 0")
    assert ascii(linux, 0, 4)[0] == "AAAA"


MERGE_TRACE = """
    mmap     p0 3p rw- private|anon|fixed = p0
    write    p0 3p                        = 0
    mprotect p1 2p r--                    = 0
    mseal_v1 p1 2p 0x1f                   = 0
    mprotect p0 1p r--                    = 0
    madvise  p0 3p random                 = 0
"""


def test_v1_merge_as_coded_loses_seals_and_the_default_does_not() -> None:
    """The two readings of 1/8's merge rule, on the analyzer's 3-call trace.

    Source: RFC v1 1/8 (20231016143828.647848-2-jeffxu@chromium.org),
    ``is_mergeable_vma()`` gains ``if (vma->vm_seals & VM_SEAL_ALL) return 0;``,
    and the 6.6 ``vma_merge()`` calls it (through ``can_vma_merge_after()`` /
    ``can_vma_merge_before()``) only on ``prev`` and ``next``, the VMAs that
    survive, with no code carrying ``vm_seals`` into the result. Default
    (``proposal-v1``): the stated intent, no merge involving a sealed VMA;
    ``proposal-v1:merge-as-coded``: the unsealed p0, made read-only, absorbs
    the sealed p1-p2 once RANDOM gives them equal flags, and the seals are gone.
    """
    s = make(MERGE_TRACE, "proposal-v1")
    assert ascii(s, 0, 3) == ("aBB", "abc")
    run(s, "mmap p0 3p --- private|anon|fixed = EACCES\nmunmap p1 1p = EACCES")
    coded = make(MERGE_TRACE, "proposal-v1:merge-as-coded")
    assert ascii(coded, 0, 3) == ("aaa", "abc")
    run(coded, "mmap p0 3p --- private|anon|fixed = p0")
    assert ascii(coded, 0, 3) == ("aaa", "000")


def test_v1_mremap_cannot_grow_a_sealed_vma_in_place() -> None:
    """Growing in place merges an extension into the VMA, and 1/8's
    ``is_mergeable_vma()`` refuses a sealed one, so ``vma_merge()`` returns
    NULL and mremap fails with ENOMEM (6.6 ``SYSCALL_DEFINE5(mremap)``: ``if
    (!vma) { ... ret = -ENOMEM; ...}``) in both readings. Source: RFC v1 1/8
    (20231016143828.647848-2-jeffxu@chromium.org) on the 6.6 mm/mremap.c."""
    for name in ("proposal-v1", "proposal-v1:merge-as-coded"):
        s = make("mmap p0 2p rw- private|anon|fixed = p0\nmseal_v1 p0 2p mprotect = 0", name)
        run(s, "mremap p0 2p 4p 0 = ENOMEM")
        t = make("mmap p0 2p rw- private|anon|fixed = p0", name)
        run(t, "mremap p0 2p 4p 0 = p0")


def test_every_reading_is_a_registered_policy_naming_the_other() -> None:
    """Each unsettled rule has both readings registered, each naming the other."""
    pairs = {
        ("mimmutable", "mimmutable:permissive-advice"),
        ("chrome-split", "chrome-split:unmap-refuses-discard"),
        ("proposal-v1", "proposal-v1:merge-as-coded"),
    }
    found = set()
    for name, policy in POLICIES.items():
        for u in policy.unsettled:
            other = POLICIES[u.other]
            (back,) = [x for x in other.unsettled if x.key == u.key]
            assert back.other == name and back.reading == u.other_reading
            assert back.question == u.question
            found.add((name, u.other) if not policy.reading else (u.other, name))
            assert policy.design == other.design
    assert found == pairs

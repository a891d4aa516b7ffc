"""Probe case 7 (madvise) under ``linux`` (docs/reference/linux.md rules 10-13).

7.1 is the full matrix, transcribed from the probe run's per-type tables
(the same cells as ``sealkit.fidelity.conformance.matrix``): 25 advices x 10 mapping types, the unsealed control at pages [0,4)
and the sealed copy at [8,12), each with its result, its content after and
its layout after (fork-child content for WIPEONFORK/DONTFORK, content after a
reclaiming PAGEOUT for FREE). Then the cross-VMA cases 7.2-7.8.

Content notation in the matrix: ``X`` is the page's intact content (``abcd``
at [0,4), ``ijkl`` at [8,12), ``F`` for the never-written file c2), ``?`` a
lazily freed page (MADV_FREE: old data or zero until reclaim), ``#`` a guard
page (the probe's ``x``).
"""

from __future__ import annotations

import pytest

from sealkit.flags import Madv
from sealkit.ops import Fork

from .model_helpers import ascii, data, expect, make, run, view

# (setup for pages [P, P+4) of backing file F; perms; backing; intact content)
TYPES: dict[str, tuple[str, str, str]] = {
    "a": ("mmap P 4p rw- private|anon|fixed\nwrite P 4p", "rw-p", "anon"),
    "b": ("mmap P 4p rw- private|anon|fixed\nwrite P 4p\nmprotect P 4p r--", "r--p", "anon"),
    "b2": ("mmap P 4p rw- private|anon|fixed\nwrite P 4p\nmprotect P 4p ---", "---p", "anon"),
    "e": ("mmap P 4p rw- shared|anon|fixed\nwrite P 4p\nmprotect P 4p r--", "r--s", "shmem@0"),
    "c": ("mmap P 4p rw- private|fixed file=F\nwrite P 4p\nmprotect P 4p r--", "r--p", "file:F@0"),
    "c2": ("mmap P 4p r-- private|fixed file=F", "r--p", "file:F@0"),
    "c3": ("mmap P 4p rw- private|fixed file=F\nwrite P 4p", "rw-p", "file:F@0"),
    "d": ("mmap P 4p rw- shared|fixed file=F\nwrite P 4p", "rw-s", "file:F@0"),
    "d2": ("mmap P 4p rw- shared|fixed file=F\nwrite P 4p\nmprotect P 4p r--", "r--s", "file:F@0"),
    # d3: O_RDONLY fd; the pattern was pwrite()n into the file before mapping.
    "d3": (
        "mmap P 4p rw- shared|fixed file=F\nwrite P 4p\nmunmap P 4p\n"
        "mmap P 4p r-- shared|fixed file=F:ro",
        "r--s",
        "file:F@0",
    ),
}
ORDER = ("a", "b", "b2", "e", "c", "c2", "c3", "d", "d2", "d3")

# Matrix rows: advice -> per type "unsealed/sealed" results (one value when
# equal) and "unsealed/sealed" content codes.


def _row(results: str, contents: str) -> dict[str, tuple[str, str, str, str]]:
    out = {}
    for t, r, c in zip(ORDER, results.split(), contents.split(), strict=True):
        ur, _, sr = r.partition("/")
        uc, _, sc = c.partition("/")
        out[t] = (ur, sr or ur, uc, sc or uc)
    return out


MATRIX: dict[Madv, dict[str, tuple[str, str, str, str]]] = {
    Madv.DONTNEED: _row(
        "0 0/EPERM 0/EPERM 0 0 0 0 0 0 0",
        "0000 0000/X 0000/X X FFFF X FFFF X X X",
    ),
    Madv.FREE: _row(
        "0 0/EPERM 0/EPERM EINVAL EINVAL EINVAL EINVAL EINVAL EINVAL EINVAL",
        "???? ????/X ????/X X X X X X X X",
    ),
    Madv.DONTNEED_LOCKED: _row(
        "0 0/EPERM 0/EPERM 0 0 0 0 0 0 0",
        "0000 0000/X 0000/X X FFFF X FFFF X X X",
    ),
    Madv.REMOVE: _row(
        "EINVAL EINVAL/EPERM EINVAL/EPERM 0 EACCES EACCES EACCES 0 0 EACCES",
        "X X X 0000 X X X 0000 0000 X",
    ),
    Madv.WIPEONFORK: _row(
        "0 0/EPERM 0/EPERM EINVAL EINVAL EINVAL EINVAL EINVAL EINVAL EINVAL",
        "X X X X X X X X X X",
    ),
    Madv.KEEPONFORK: _row("0 0 0 0 0 0 0 0 0 0", "X X X X X X X X X X"),
    Madv.DONTFORK: _row("0 0/EPERM 0/EPERM 0 0 0 0 0 0 0", "X X X X X X X X X X"),
    Madv.DOFORK: _row("0 0 0 0 0 0 0 0 0 0", "X X X X X X X X X X"),
    Madv.GUARD_INSTALL: _row(
        "0 0/EPERM 0/EPERM 0 0 0 0 0 0 0",
        "#### ####/X ####/X #### #### #### #### #### #### ####",
    ),
    # A guard was installed on the 2nd page before sealing (data lost at install).
    Madv.GUARD_REMOVE: _row("0 0 0 0 0 0 0 0 0 0", "X0XX X0XX X0XX X XFXX X XFXX X X X"),
    Madv.COLD: _row("0 0 0 0 0 0 0 0 0 0", "X X X X X X X X X X"),
    Madv.PAGEOUT: _row("0 0 0 0 0 0 0 0 0 0", "X X X X X X X X X X"),
    Madv.WILLNEED: _row("0 0 0 0 0 0 0 0 0 0", "X X X X X X X X X X"),
    Madv.NORMAL: _row("0 0 0 0 0 0 0 0 0 0", "X X X X X X X X X X"),
    Madv.RANDOM: _row("0 0 0 0 0 0 0 0 0 0", "X X X X X X X X X X"),
    Madv.SEQUENTIAL: _row("0 0 0 0 0 0 0 0 0 0", "X X X X X X X X X X"),
    Madv.POPULATE_READ: _row("0 0 EINVAL 0 0 0 0 0 0 0", "X X X X X X X X X X"),
    Madv.POPULATE_WRITE: _row(
        "0 EINVAL EINVAL EINVAL EINVAL EINVAL 0 0 EINVAL EINVAL", "X X X X X X X X X X"
    ),
    Madv.HUGEPAGE: _row("0 0 0 0 0 0 0 0 0 0", "X X X X X X X X X X"),
    Madv.NOHUGEPAGE: _row("0 0 0 0 0 0 0 0 0 0", "X X X X X X X X X X"),
    Madv.COLLAPSE: _row(" ".join(["EINVAL"] * 10), "X X X X X X X X X X"),
    Madv.DONTDUMP: _row("0 0 0 0 0 0 0 0 0 0", "X X X X X X X X X X"),
    Madv.DODUMP: _row("0 0 0 0 0 0 0 0 0 0", "X X X X X X X X X X"),
    Madv.MERGEABLE: _row("0 0 0 0 0 0 0 0 0 0", "X X X X X X X X X X"),
    Madv.UNMERGEABLE: _row("0 0 0 0 0 0 0 0 0 0", "X X X X X X X X X X"),
}

# The VmFlags mnemonic a successful advice leaves (the "layout after" column).
FLAG = {
    Madv.WIPEONFORK: "wf",
    Madv.DONTFORK: "dc",
    Madv.RANDOM: "rr",
    Madv.SEQUENTIAL: "sr",
    Madv.HUGEPAGE: "hg",
    Madv.NOHUGEPAGE: "nh",
    Madv.DONTDUMP: "dd",
    Madv.MERGEABLE: "mg",
}
SHARED_TYPES = {"e", "d", "d2", "d3"}  # KSM ignores MADV_MERGEABLE on them


def test_matrix_is_complete() -> None:
    assert len(MATRIX) == 25 and all(len(row) == 10 for row in MATRIX.values())
    # Rule 10: sealing changes exactly 14 cells, all EPERM on b and b2.
    differ = [(adv, t) for adv, row in MATRIX.items() for t, (u, s, _, _) in row.items() if u != s]
    assert len(differ) == 14
    assert {t for _, t in differ} == {"b", "b2"}
    assert all(
        row[t][1] == "EPERM"
        for adv, row in MATRIX.items()
        for t in ("b", "b2")
        if (adv, t) in differ
    )


def _setup(kind: str, advice: Madv) -> str:
    setup, _, _ = TYPES[kind]
    control = setup.replace("P", "p0").replace("=F", "=f1")
    sealed = setup.replace("P", "p8").replace("=F", "=f2")
    guard = ""
    if advice == Madv.GUARD_REMOVE:
        guard = "\nmadvise {p}1 1p guard_install"
    return (
        control
        + guard.format(p="p")
        + "\n"
        + sealed
        + guard.format(p="p").replace("p1", "p9")
        + "\nmseal p8 4p = 0\n"
    )


def _expand(code: str, intact: str) -> str:
    if code == "X":
        return intact
    return "".join(i if c == "X" else c for c, i in zip(code, intact, strict=True))


@pytest.mark.parametrize("kind", ORDER)
@pytest.mark.parametrize("advice", list(MATRIX), ids=lambda a: a.name)
def test_7_1_madvise_matrix(advice: Madv, kind: str) -> None:
    s = make(_setup(kind, advice))
    name = advice.name.lower()
    u_res, s_res, u_code, s_code = MATRIX[advice][kind]
    run(s, f"madvise p0 4p {name} = {u_res}\nmadvise p8 4p {name} = {s_res}")
    _, perms, backing = TYPES[kind]
    for lo, res, code, file, letters in (
        (0, u_res, u_code, "f1", "abcd"),
        (8, s_res, s_code, "f2", "ijkl"),
    ):
        intact = "FFFF" if kind == "c2" else letters
        flag = FLAG.get(advice) if res == "0" else None
        if advice == Madv.MERGEABLE and kind in SHARED_TYPES:
            flag = None
        if (advice == Madv.GUARD_INSTALL and res == "0") or advice == Madv.GUARD_REMOVE:
            flag = "gu"  # VM_MAYBE_GUARD: set by a guard install, never cleared (limits/G1)
        marks = perms + (",sl" if lo == 8 else "") + (f",{flag}" if flag else "")
        where = backing.replace("F", file)
        expect(s, f"[{lo},{lo + 4}) {marks} {where} {_expand(code, intact)}", lo, lo + 4)
    if advice == Madv.FREE:
        # Reclaim (a follow-up MADV_PAGEOUT, allowed everywhere) drops freed pages.
        run(s, "madvise p0 4p pageout = 0\nmadvise p8 4p pageout = 0")
        after = data(s, 0, 12)
        c2 = kind == "c2"
        assert after[:4] == ("0000" if u_res == "0" else _expand(u_code, "FFFF" if c2 else "abcd"))
        assert after[8:] == ("0000" if s_res == "0" else _expand(s_code, "FFFF" if c2 else "ijkl"))
    if advice in (Madv.WIPEONFORK, Madv.DONTFORK):
        child = s.copy()
        assert child.apply(Fork()) == 0
        got = data(child, 0, 12)
        for lo, res, letters in ((0, u_res, "abcd"), (8, s_res, "ijkl")):
            intact = "FFFF" if kind == "c2" else letters
            if res != "0":
                want = intact
            elif advice == Madv.WIPEONFORK:
                want = "0000"
            else:
                want = "----"
            assert got[lo : lo + 4] == want, (lo, got)
        # The parent is unchanged by the fork.
        assert data(s, 8, 12) != "----"


# ------------------------------------------------------------------ 7.2 - 7.8

UNSEALED_R_SEALED_R = """
    mmap     p0 8p rw- private|anon|fixed = p0
    write    p0 8p                        = 0
    mprotect p0 8p r--                    = 0
    mseal    p4 4p                        = 0
"""


@pytest.mark.parametrize(
    ("advice", "flags", "content"),
    [
        ("dontneed", "", "0000efgh"),
        ("free", "", "????efgh"),
        ("dontneed_locked", "", "0000efgh"),
        ("wipeonfork", ",wf", "abcdefgh"),
        ("dontfork", ",dc", "abcdefgh"),
        ("guard_install", ",gu", "####efgh"),  # the first VMA was guarded (limits/G8)
    ],
)
def test_7_2_earlier_vmas_are_processed_before_eperm(advice: str, flags: str, content: str) -> None:
    s = make(UNSEALED_R_SEALED_R)
    run(s, f"madvise p0 8p {advice} = EPERM")
    expect(s, f"[0,4) r--p{flags} anon {content[:4]}\n[4,8) r--p,sl anon efgh", 0, 8)
    if advice == "free":
        run(s, "madvise p0 8p pageout = 0")
        assert data(s, 0, 8) == "0000efgh"


def test_7_2_pageout_is_allowed() -> None:
    s = make(UNSEALED_R_SEALED_R)
    run(s, "madvise p0 8p pageout = 0")
    assert ascii(s, 0, 8) == ("aaaaBBBB", "abcdefgh")


@pytest.mark.parametrize(
    "advice", ["dontneed", "free", "dontneed_locked", "wipeonfork", "dontfork", "guard_install"]
)
def test_7_3_sealed_first_nothing_changes(advice: str) -> None:
    s = make(UNSEALED_R_SEALED_R.replace("mseal    p4", "mseal    p0"))
    run(s, f"madvise p0 8p {advice} = EPERM\nmadvise p0 8p pageout = 0")
    expect(s, "[0,4) r--p,sl anon abcd\n[4,8) r--p anon efgh", 0, 8)


def test_7_4_sealed_rw_then_sealed_r_rw_part_zeroed() -> None:
    s = make("""
        mmap     p0 4p rw- private|anon|fixed = p0
        write    p0 4p = 0
        mseal    p0 4p = 0
        mmap     p4 4p rw- private|anon|fixed = p4
        write    p4 4p = 0
        mprotect p4 4p r-- = 0
        mseal    p4 4p = 0
    """)  # fmt: skip
    run(s, "madvise p0 8p dontneed = EPERM")
    expect(s, "[0,4) rw-p,sl anon 0000\n[4,8) r--p,sl anon efgh", 0, 8)


def test_7_5_hole_between_gives_eperm_not_enomem() -> None:
    s = make("""
        mmap     p0 4p rw- private|anon|fixed = p0
        write    p0 4p = 0
        mprotect p0 4p r-- = 0
        mmap     p6 2p rw- private|anon|fixed = p6
        write    p6 2p = 0
        mprotect p6 2p r-- = 0
        mseal    p6 2p = 0
    """)  # fmt: skip
    run(s, "madvise p0 8p dontneed = EPERM\nmadvise p0 8p willneed = ENOMEM")
    assert ascii(s, 0, 8) == ("aaaa  BB", "0000--gh")


def test_7_6_flag_advice_splits_a_sealed_vma_and_merges_back() -> None:
    s = make("mmap p0 4p rw- private|anon|fixed = p0\nwrite p0 4p = 0\nmseal p0 4p = 0")
    run(s, "madvise p1 1p nohugepage = 0")  # 7.6a
    assert ascii(s, 0, 4) == ("ABCC", "abcd")
    expect(s, "[0,1) rw-p,sl anon a\n[1,2) rw-p,sl,nh anon b\n[2,4) rw-p,sl anon cd", 0, 4)
    run(s, """
        madvise p1 1p hugepage   = 0
        madvise p1 1p nohugepage = 0
        madvise p0 4p nohugepage = 0
    """)  # fmt: skip
    expect(s, "[0,4) rw-p,sl,nh anon abcd", 0, 4)  # 7.6b
    run(s, "madvise p2 1p dontfork = 0\nmadvise p3 1p dontdump = 0")  # 7.6c
    expect(
        s,
        "[0,2) rw-p,sl,nh anon ab\n[2,3) rw-p,sl,dc,nh anon c\n[3,4) rw-p,sl,dd,nh anon d",
        0,
        4,
    )


def test_7_7_errno_precedence_on_sealed_read_only() -> None:
    s = make("""
        mmap p0 4p rw- private|anon|fixed = p0
        write p0 4p = 0
        mprotect p0 4p r-- = 0
        mseal p0 4p = 0
    """)  # fmt: skip
    run(s, """
        madvise p1 1p dontneed        = EPERM
        madvise p0 4p pageout         = 0
        madvise p0 4p cold            = 0
        madvise p0+1 1p dontneed      = EINVAL
        madvise p0 4p 12345           = EINVAL
        madvise p0 4p remove          = EPERM
    """)  # fmt: skip
    expect(s, "[0,4) r--p,sl anon abcd", 0, 4)


def test_7_8_never_populated_read_only_still_refused() -> None:
    s = make("mmap p0 4p rw- private|anon|fixed = p0\nmprotect p0 4p r-- = 0\nmseal p0 4p = 0")
    run(s, "madvise p0 4p dontneed = EPERM")
    expect(s, "[0,4) r--p,sl anon 0000", 0, 4)


def test_11_7_process_madvise_returns_bytes_before_the_refusal() -> None:
    s = make(UNSEALED_R_SEALED_R)
    run(s, """
        process_madvise dontneed p4:4p          = EPERM
        process_madvise cold p4:4p              = 4p
        process_madvise pageout p4:4p           = 4p
        process_madvise willneed p4:4p          = 4p
        process_madvise dontneed p0:4p p4:4p    = 4p
    """)  # fmt: skip
    expect(s, "[0,4) r--p anon 0000\n[4,8) r--p,sl anon efgh", 0, 8)


def test_madvise_argument_checks() -> None:
    s = make("mmap p0 4p rw- private|anon|fixed = p0")
    run(s, """
        madvise p0 0 dontneed                    = 0
        madvise p8 0 12345                       = EINVAL
        madvise p0 0xffffffffffffffff dontneed   = EINVAL
        madvise 0xfffffffffffff000 2p dontneed   = EINVAL
        madvise p0 4p hwpoison                   = EINVAL
        madvise p0 4p soft_offline               = EINVAL
        madvise p4 4p dontneed                   = ENOMEM
        madvise p0 8p dontneed                   = ENOMEM
        madvise p0 8p populate_read              = ENOMEM
        madvise p0 4p collapse                   = EINVAL
    """)  # fmt: skip


def test_madvise_locked_vmas() -> None:
    s = make("mmap p0 4p rw- private|anon|fixed = p0\nwrite p0 4p = 0\nmlock p0 4p = 0")
    run(s, """
        madvise p0 4p dontneed        = EINVAL
        madvise p0 4p guard_install   = EINVAL
        madvise p0 4p cold            = EINVAL
        madvise p0 4p pageout         = EINVAL
        madvise p0 4p free            = EINVAL
        madvise p0 4p dontneed_locked = 0
    """)  # fmt: skip
    assert data(s, 0, 4) == "0000"


def test_guard_pages_refuse_writes_and_populate_and_survive_dontneed() -> None:
    s = make("mmap p0 4p rw- private|anon|fixed = p0\nmadvise p1 1p guard_install = 0")
    run(s, """
        write p0 4p                  = EFAULT
        madvise p0 4p populate_read  = EFAULT
        madvise p0 4p dontneed       = 0
        mlock p0 4p                  = ENOMEM
    """)  # fmt: skip
    # The store stopped at the guard: page 0 written, the rest not.
    assert data(s, 0, 4) == "0#00"
    expect(s, "[0,4) rw-p,gu,lo anon 0#00", 0, 4)  # mlock set the flags before failing
    view(s)


def test_mergeable_is_ignored_on_shared_mappings() -> None:
    s = make("mmap p0 4p rw- shared|anon|fixed = p0\nmmap p4 4p rw- private|anon|fixed = p4")
    run(s, "madvise p0 8p mergeable = 0")
    expect(s, "[0,4) rw-s shmem@0 0000\n[4,8) rw-p,mg anon 0000", 0, 8)

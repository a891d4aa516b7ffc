"""The hardening planner, on made-up loaders and /proc snapshots (no system call).

Each test draws an object's program headers and the smaps the kernel would
show, page by page relative to the load bias ``B``, and checks what
``plan()`` would seal and what it refuses, with the reason.
"""

from __future__ import annotations

import io
import json

import pytest

from sealkit import HardenReport, harden
from sealkit._os.procfs import Vma, parse_smaps
from sealkit._os.syscalls import PF_R, PF_W, PF_X, PT_GNU_RELRO, PT_LOAD, LoadedObject, Phdr
from sealkit.errors import ArgumentError, ArgumentTypeError
from sealkit.sealing.hardening import ObjectReport, SealedRange, plan

B = 0x7F0000000000
P = 0x1000
LIB = "/usr/lib/libx.so"
INODE = 4242
R, RX, RW = PF_R, PF_R | PF_X, PF_R | PF_W


def load(flags: int, offset: int, vaddr: int, filesz: int, memsz: int | None = None) -> Phdr:
    return Phdr(PT_LOAD, flags, offset, vaddr, filesz, filesz if memsz is None else memsz, P)


def relro(vaddr: int, memsz: int) -> Phdr:
    return Phdr(PT_GNU_RELRO, R, vaddr - 0x1000, vaddr, memsz, memsz, 1)


def smaps(
    *rows: tuple[int, int, str, int | None, str] | tuple[int, int, str, int | None, str, bool],
) -> list[Vma]:
    """``(first page, end page, perms, file offset or None for anonymous, path[, sealed])``."""
    lines = []
    for row in rows:
        lo, hi, perms, offset, path = row[:5]
        sealed = len(row) > 5 and row[5]
        inode = 0 if offset is None else (INODE if path == LIB else INODE + 1)
        lines.append(
            f"{B + lo * P:x}-{B + hi * P:x} {perms} {offset or 0:08x} fe:00 {inode}  "
            f"{path if offset is not None or path.startswith('[') else ''}"
        )
        lines.append("Size: 4 kB")
        lines.append("VmFlags: rd mr mw me" + (" sl" if sealed else ""))
    return parse_smaps("\n".join(lines))


# A typical object (GNU ld, 4K pages, -z separate-code, full RELRO):
#   page  0      1 2    3      4     5     6 7
#         rodata text   rodata relro data  bss
TYPICAL = LoadedObject(
    B,
    LIB,
    (
        load(R, 0x0, 0x0, 0x800),
        load(RX, 0x1000, 0x1000, 0x1155),
        load(R, 0x3000, 0x3000, 0xD0),
        load(RW, 0x3DB0, 0x4DB0, 0x268, 0x2270),
        relro(0x4DB0, 0x250),
    ),
)
TYPICAL_SMAPS = smaps(
    (0, 1, "r--p", 0x0, LIB),
    (1, 3, "r-xp", 0x1000, LIB),
    (3, 4, "r--p", 0x3000, LIB),
    (4, 5, "r--p", 0x3000, LIB),
    (5, 6, "rw-p", 0x4000, LIB),
    (6, 8, "rw-p", None, ""),
)


def pages(report: ObjectReport, what: str = "sealed") -> list[tuple[int, int, str]]:
    ranges = report.sealed if what == "sealed" else report.skipped
    return [((r.start - B) // P, (r.end - B) // P, r.kind) for r in ranges]


def reasons(report: ObjectReport) -> dict[tuple[int, int], str]:
    return {((r.start - B) // P, (r.end - B) // P): r.reason for r in report.skipped}


def only(reports: tuple[ObjectReport, ...], name: str = LIB) -> ObjectReport:
    [report] = [r for r in reports if r.name == name]
    return report


def test_code_level_seals_text_rodata_and_relro_exactly() -> None:
    report = only(plan([TYPICAL], TYPICAL_SMAPS, "code"))
    assert pages(report) == [(0, 1, "rodata"), (1, 3, "text"), (3, 4, "rodata"), (4, 5, "relro")]
    assert report.skipped == ()
    assert [r.perms for r in report.sealed] == ["r--", "r-x", "r--", "r--"]
    assert report.sealed_bytes == 5 * P
    assert not any(r.already_sealed for r in report.sealed)


def test_all_level_adds_data_and_anonymous_bss() -> None:
    report = only(plan([TYPICAL], TYPICAL_SMAPS, "all"))
    assert pages(report)[-2:] == [(5, 6, "data"), (6, 8, "bss")]
    assert report.sealed_bytes == 8 * P


def test_relro_tail_page_shared_with_data_is_not_relro() -> None:
    # RELRO [0x4db0, 0x55b0): its last page also holds .got.plt/.data, so the
    # loader rounds the end down and leaves page 5 writable.
    obj = TYPICAL._replace(phdrs=(*TYPICAL.phdrs[:4], relro(0x4DB0, 0x800)))
    report = only(plan([obj], TYPICAL_SMAPS, "code"))
    assert (4, 5, "relro") in pages(report)
    assert (5, 6, "relro") in pages(report, "skipped")
    assert "shares with writable data" in reasons(report)[5, 6]
    assert not any(kind == "data" for *_, kind in pages(report))


def test_relro_still_writable_in_proc_is_refused() -> None:
    rows = smaps(
        (0, 1, "r--p", 0x0, LIB),
        (1, 3, "r-xp", 0x1000, LIB),
        (3, 4, "r--p", 0x3000, LIB),
        (4, 6, "rw-p", 0x3000, LIB),
    )
    report = only(plan([TYPICAL], rows, "code"))
    assert "RELRO not yet read-only: /proc shows rw-" in reasons(report)[4, 5]
    assert (4, 5, "relro") not in pages(report)


def test_text_from_another_file_or_offset_is_refused() -> None:
    moved = smaps(
        (0, 1, "r--p", 0x0, LIB),
        (1, 2, "r-xp", 0x1000, "/tmp/other.so"),
        (2, 3, "r-xp", 0x5000, LIB),
        (3, 4, "r--p", 0x3000, LIB),
        (4, 5, "r--p", 0x3000, LIB),
    )
    report = only(plan([TYPICAL], moved, "code"))
    why = reasons(report)
    assert "not from the object's file" in why[1, 2]
    assert "file offset 0x5000 where the segment calls for 0x2000" in why[2, 3]
    assert pages(report) == [(0, 1, "rodata"), (3, 4, "rodata"), (4, 5, "relro")]


def test_holes_and_shared_mappings_are_refused() -> None:
    rows = smaps(
        (0, 1, "r--p", 0x0, LIB),
        (2, 3, "r-xs", 0x2000, LIB),
        (3, 4, "r--p", 0x3000, LIB),
        (4, 5, "r--p", 0x3000, LIB),
    )
    why = reasons(only(plan([TYPICAL], rows, "code")))
    assert why[1, 2] == "not mapped"
    assert "shared mapping" in why[2, 3]


def test_writable_and_executable_is_never_sealed() -> None:
    wx = TYPICAL._replace(phdrs=(TYPICAL.phdrs[0], load(RX | PF_W, 0x1000, 0x1000, 0x1155)))
    rows = smaps((0, 1, "r--p", 0x0, LIB), (1, 3, "rwxp", 0x1000, LIB))
    for level in ("code", "all"):
        report = only(plan([wx], rows, level))
        assert "writable and executable segment" in reasons(report)[1, 3]
        assert pages(report) == [(0, 1, "rodata")]
    # Headers say r-x but someone made it rwx since: also refused.
    report = only(
        plan([TYPICAL], smaps((0, 1, "r--p", 0, LIB), (1, 3, "rwxp", 0x1000, LIB)), "code")
    )
    assert "never sealed" in reasons(report)[1, 3]


@pytest.mark.parametrize("level", ["code", "all"])
def test_an_object_with_text_relocations_is_never_sealed(level: str) -> None:
    """DT_TEXTREL: the loader makes the text writable to relocate it; the
    whole object is skipped with the reason, at every level (the same rule
    for harden() and live sealing)."""
    report = only(plan([TYPICAL._replace(textrel=True)], TYPICAL_SMAPS, level))
    assert report.sealed == ()
    assert pages(report, "skipped") == [(0, 8, "rodata")]
    assert "DT_TEXTREL" in reasons(report)[0, 8]
    other = LoadedObject(B + 16 * P, "other", (load(RX, 0, 0, 0x800),))
    other_smaps = smaps((16, 17, "r-xp", 0x0, "/usr/lib/other.so"))
    both = plan([TYPICAL._replace(textrel=True), other], [*TYPICAL_SMAPS, *other_smaps], level)
    assert pages(only(both, "other")) == [(16, 17, "text")]  # the others are still sealed


def test_bss_must_be_anonymous() -> None:
    rows = [*TYPICAL_SMAPS[:5], *smaps((6, 8, "rw-p", 0x0, "/tmp/other.so"))]
    report = only(plan([TYPICAL], rows, "all"))
    assert "zero-fill should be anonymous" in reasons(report)[6, 8]


def test_gaps_are_sealed_only_at_level_all() -> None:
    # max-page-size 0x10000 on a 4K kernel: PROT_NONE holes between segments.
    gappy = LoadedObject(B, LIB, (load(R, 0, 0, 0x480), load(RX, 0x4000, 0x4000, 0x111)))
    rows = smaps((0, 1, "r--p", 0, LIB), (1, 4, "---p", 0x1000, LIB), (4, 5, "r-xp", 0x4000, LIB))
    assert pages(only(plan([gappy], rows, "all"))) == [
        (0, 1, "rodata"),
        (1, 4, "gap"),
        (4, 5, "text"),
    ]
    assert pages(only(plan([gappy], rows, "code"))) == [(0, 1, "rodata"), (4, 5, "text")]


def test_a_hole_is_sealed_only_when_the_objects_own_file_fills_it() -> None:
    # glibc fills a library's holes from its file; the kernel leaves the main
    # program's holes unmapped. Anything else in a hole (another component's
    # anonymous PROT_NONE reservation, another file) is someone else's.
    gappy = LoadedObject(B, LIB, (load(R, 0, 0, 0x480), load(RX, 0x4000, 0x4000, 0x111)))
    anon_gap = smaps((0, 1, "r--p", 0, LIB), (1, 4, "---p", None, ""), (4, 5, "r-xp", 0x4000, LIB))
    report = only(plan([gappy], anon_gap, "all"))
    assert pages(report) == [(0, 1, "rodata"), (4, 5, "text")]
    assert "belongs to someone else" in reasons(report)[1, 4]
    foreign = smaps(
        (0, 1, "r--p", 0, LIB), (1, 4, "---p", 0, "/tmp/other.so"), (4, 5, "r-xp", 0x4000, LIB)
    )
    assert "mapped from /tmp/other.so" in reasons(only(plan([gappy], foreign, "all")))[1, 4]
    unmapped = smaps((0, 1, "r--p", 0, LIB), (4, 5, "r-xp", 0x4000, LIB))
    assert reasons(only(plan([gappy], unmapped, "all")))[1, 4] == "not mapped"


def test_page_claimed_by_two_segments_is_ambiguous() -> None:
    # rodata ends at 0x1800 and text starts at 0x1900: page 1 holds both.
    tight = LoadedObject(B, LIB, (load(R, 0, 0, 0x1800), load(RX, 0x1900, 0x1900, 0x1000)))
    rows = smaps((0, 1, "r--p", 0, LIB), (1, 3, "r-xp", 0x1000, LIB))
    report = only(plan([tight], rows, "code"))
    assert "page shared by a rodata and a text segment" in reasons(report)[1, 2]
    assert pages(report) == [(0, 1, "rodata"), (2, 3, "text")]
    # Level "all" seals the whole object range, whatever each page holds.
    assert pages(only(plan([tight], rows, "all"))) == [(0, 1, "rodata"), (1, 3, "text")]


def test_object_whose_first_segment_is_not_where_the_loader_put_it_is_skipped_whole() -> None:
    # The first segment fixes the object's identity (file and offset); if it
    # is not mapped, not from a file, or not at the expected file offset,
    # nothing of the object is trusted.
    for rows, why in (
        (smaps((0, 8, "r--p", 0x9000, LIB)), "maps file offset 0x9000, expected 0x0"),
        (smaps((0, 8, "r--p", None, "")), "first segment not mapped from a file"),
        (smaps((1, 8, "r--p", 0x1000, LIB)), "first segment not mapped"),
    ):
        report = only(plan([TYPICAL], rows, "code"))
        assert report.sealed == ()
        assert why in report.skipped[0].reason and "object ambiguous" in report.skipped[0].reason
    # Once the first segment is the object's file, every other range must be
    # that same file (device and inode), not another one mapped over it.
    rows = smaps((0, 1, "r--p", 0x0, LIB), (1, 3, "r-xp", 0x1000, "/tmp/other.so"))
    assert "not from the object's file" in reasons(only(plan([TYPICAL], rows, "code")))[1, 3]


def test_two_objects_claiming_the_same_page_are_not_guessed_at() -> None:
    # A second loader entry whose first segment checks out (page 2 maps the
    # file at offset 0x2000) but which claims page 2, already TYPICAL's text.
    twin = LoadedObject(B + 2 * P, "twin", (load(RX, 0x2000, 0, 0x800),))
    reports = plan([TYPICAL, twin], TYPICAL_SMAPS, "code")
    assert "also claimed by" in reasons(only(reports))[2, 3]
    assert "also claimed by" in reasons(only(reports, "twin"))[2, 3]
    assert (1, 2, "text") in pages(only(reports))
    assert only(reports, "twin").sealed == ()


def test_already_sealed_ranges_are_reported_as_such() -> None:
    rows = smaps(
        (0, 1, "r--p", 0x0, LIB, True),
        (1, 3, "r-xp", 0x1000, LIB, True),
        (3, 4, "r--p", 0x3000, LIB),
        (4, 5, "r--p", 0x3000, LIB),
    )
    report = only(plan([TYPICAL], rows, "code"))
    assert [r.already_sealed for r in report.sealed] == [True, True, False, False]


def test_system_mappings_only_when_asked() -> None:
    vdso = LoadedObject(B + 0x100 * P, "linux-vdso.so.1", (load(RX, 0, 0, 0x1522),))
    rows = [
        *TYPICAL_SMAPS,
        *smaps((0xFC, 0x100, "r--p", None, "[vvar]"), (0x100, 0x102, "r-xp", None, "[vdso]")),
    ]
    off = plan([TYPICAL, vdso], rows, "code", system=False)
    assert [o.path for o in off] == [LIB, "[vvar]", "[vdso]"]  # the vDSO object is not doubled
    assert all("system=True" in r.reason and "CRIU" in r.reason for o in off[1:] for r in o.skipped)
    on = plan([TYPICAL, vdso], rows, "code", system=True)
    assert [pages(o) for o in on[1:]] == [[(0xFC, 0x100, "system")], [(0x100, 0x102, "system")]]


def test_page_size_comes_from_the_caller() -> None:
    big = 0x4000  # 16K pages: the typical object's segments share pages
    report = only(plan([TYPICAL], smaps((0, 8, "r--p", 0, LIB)), "code", page=big))
    assert all((r.start - B) % big == 0 and (r.end - B) % big == 0 for r in report.skipped)


def test_report_renders_as_text_json_and_rich() -> None:
    vdso = smaps((0x100, 0x102, "r-xp", None, "[vdso]"))
    objects = plan([TYPICAL], [*TYPICAL_SMAPS, *vdso], "code")
    report = HardenReport("code", False, False, True, "harden()", P, objects, 0.001)
    text = str(report)
    assert text.splitlines()[0].startswith("harden(): level=code: would seal 20.0 KiB in 4 ranges")
    assert f"{B + P:#014x}-{B + 3 * P:#014x} text   r-x" in text
    data = json.loads(json.dumps(report.as_dict()))
    assert (
        data["newly_sealed_bytes"] == 5 * P == sum(r["bytes"] for r in data["objects"][0]["sealed"])
    )
    assert data["objects"][0]["sealed"][1] == {
        "start": B + P, "end": B + 3 * P, "bytes": 2 * P, "kind": "text", "perms": "r-x",
        "already_sealed": False,
    }  # fmt: skip
    from rich.console import Console

    out = io.StringIO()
    Console(file=out, width=200, color_system=None).print(report)
    assert "libx.so" in out.getvalue() and "would seal" in out.getvalue()
    assert "[vdso]" in out.getvalue()  # plain text, not taken for a style tag
    assert isinstance(report.objects[0].sealed[0], SealedRange)


@pytest.mark.parametrize(
    ("kwargs", "error"),
    [
        ({"level": "everything"}, ArgumentError),
        ({"level": 1}, ArgumentTypeError),
        ({"system": "yes"}, ArgumentTypeError),
        ({"imports": 1}, ArgumentTypeError),
        ({"dry_run": None}, ArgumentTypeError),
    ],
)
def test_bad_arguments_are_refused_before_anything_happens(
    kwargs: dict[str, object], error: type[Exception]
) -> None:
    with pytest.raises(error):
        harden(**kwargs)  # type: ignore[arg-type]

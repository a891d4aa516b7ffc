"""The audit's pure parts: classification rules, requirements, renderings,
and hostile arguments at every public function of audit, elf and mapsvg.

The address-space drawings above each classification test show the
mappings in order (one letter per mapping: T text, R rodata, L relro, D data,
B .bss, A anon, G guard).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import jsonschema
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

import sealkit
from sealkit._os import elf as elf_file
from sealkit._os.elf import LoadLayout, Segment
from sealkit._os.procfs import Vma
from sealkit.errors import ArgumentError, ArgumentTypeError, SealkitError
from sealkit.host import audit, elf, mapsvg

PAGE = 4096
SCHEMA = json.loads((Path(sealkit.__file__).parent / "data" / "audit.schema.json").read_text())


def vma(start: int, pages: int, perms: str, path: str = "", inode: int = 0, offset: int = 0,
        flags: frozenset[str] = frozenset()) -> Vma:  # fmt: skip
    return Vma(start, start + pages * PAGE, perms, offset, "fe:00" if inode else "00:00",
               inode, path, flags)  # fmt: skip


LIB = "/usr/lib/libx.so"
# A typical -z separate-code, -z relro shared object: R, R E, R, RW (RELRO at
# the start of RW, .bss past the file).
LAYOUT = LoadLayout.of(64, True, 3, (
    Segment(1, 4, 0x0000, 0x0000, 0x0800, 0x0800, 0x1000),
    Segment(1, 5, 0x1000, 0x1000, 0x2000, 0x2000, 0x1000),
    Segment(1, 4, 0x3000, 0x3000, 0x1000, 0x1000, 0x1000),
    Segment(1, 6, 0x4DB0, 0x5DB0, 0x1260, 0x4260, 0x1000),
    Segment(elf_file.PT_GNU_RELRO, 4, 0x4DB0, 0x5DB0, 0x1250, 0x1250, 1),
))  # fmt: skip
BASE = 0x7F0000000000


def placed_lib() -> list[Vma]:
    """R T R L D B: the object as ld.so maps it at BASE, after RELRO."""
    return [
        vma(BASE + 0x0000, 1, "r--p", LIB, 9, 0x0000),
        vma(BASE + 0x1000, 2, "r-xp", LIB, 9, 0x1000),
        vma(BASE + 0x3000, 1, "r--p", LIB, 9, 0x3000),
        vma(BASE + 0x5000, 2, "r--p", LIB, 9, 0x4000),  # RELRO: [0x5db0, 0x7000) rounded
        vma(BASE + 0x7000, 1, "rw-p", LIB, 9, 0x6000),
        vma(BASE + 0x8000, 2, "rw-p"),  # .bss: up to page_up(0x5db0 + 0x4260) = 0xa000
        vma(BASE + 0xA000, 4, "rw-p"),  # plain anonymous memory after it
    ]


def test_classify_with_program_headers() -> None:
    # R T R L D B A
    kinds = audit.classify(placed_lib(), lambda v: LAYOUT)
    assert kinds == ["rodata", "text", "rodata", "relro", "data", "data", "anon"]


def test_classify_only_some_indices() -> None:
    assert audit.classify(placed_lib(), lambda v: LAYOUT, [5, 3, 0]) == ["data", "relro", "rodata"]


def test_classify_a_second_placement_of_the_same_file() -> None:
    # R T R L D B A | R T R L D: dlmopen of the same file elsewhere
    again = [Vma(v.start + 0x100000, v.end + 0x100000, v.perms, v.offset, v.dev, v.inode, v.path)
             for v in placed_lib()[:5]]  # fmt: skip
    kinds = audit.classify(placed_lib() + again, lambda v: LAYOUT)
    assert kinds[7:] == ["rodata", "text", "rodata", "relro", "data"]


def test_classify_heuristics_without_program_headers() -> None:
    # R T R L D B, the file unreadable
    kinds = audit.classify(placed_lib()[:6], lambda v: "unknown")
    assert kinds == ["rodata", "text", "rodata", "relro", "data", "data"]
    assert audit.classify(placed_lib()[:6]) == kinds  # no lookup at all: the same


def test_classify_special_and_shared_mappings() -> None:
    vmas = [
        vma(0x1000, 1, "r--p", "/data/file.bin", 5),
        vma(0x3000, 1, "r--s", "/data/file.bin", 5),
        vma(0x5000, 1, "rw-s", "/memfd:buffer (deleted)", 6),
        vma(0x7000, 1, "rw-s", "/dev/zero (deleted)", 7),
        vma(0x9000, 1, "rw-s", "/SYSV0000002a (deleted)", 8),
        vma(0xB000, 1, "rw-s", "/dev/shm/x", 9),
        vma(0xD000, 1, "---p"),
        vma(0xF000, 1, "rw-p", "[heap]"),
        vma(0x11000, 1, "rw-p", "[stack]"),
        vma(0x13000, 1, "r-xp", "[vdso]"),
        vma(0x15000, 1, "r--p", "[vvar_vclock]"),
        vma(0x17000, 1, "rw-p", "[anon:jit]"),
    ]
    kinds = audit.classify(vmas, lambda v: "not-elf")
    assert kinds == ["file", "file", "shm", "shm", "shm", "shm", "guard", "heap", "stack",
                     "system", "system", "anon"]  # fmt: skip


def test_classify_an_elf_file_mapped_as_data() -> None:
    # An ELF file mapped by someone other than the loader: not at offset 0 first.
    stray = [vma(0x1000, 1, "r--p", LIB, 9, 0x3000)]
    assert audit.classify(stray, lambda v: LAYOUT) == ["file"]  # not placed: the heuristic
    assert audit.classify(stray, lambda v: "unknown") == ["file"]


@pytest.mark.parametrize(
    ("args", "error"),
    [
        (("not vmas",), ArgumentTypeError),
        (([1, 2],), ArgumentTypeError),
        (([], 5), ArgumentTypeError),
        ((placed_lib(), None, [99]), ArgumentError),
        ((placed_lib(), None, ["0"]), ArgumentTypeError),
    ],
)
def test_classify_refuses_bad_arguments(args: tuple[Any, ...], error: type[Exception]) -> None:
    with pytest.raises(error):
        audit.classify(*args)


def host(*procs: audit.ProcessAudit, vanished: int = 0) -> audit.HostAudit:
    return audit.HostAudit("h", "6.18", 1_700_000_000.0, 0.25, procs, vanished, 3)


def proc(pid: int, command: str, sealed: tuple[audit.SealedMapping, ...] | None = (),
         status: str = "ok") -> audit.ProcessAudit:  # fmt: skip
    return audit.ProcessAudit(pid, command, 0, "root", status,  # type: ignore[arg-type]
                              None if status == "denied" else 10, sealed)  # fmt: skip


TEXT = audit.SealedMapping(0x1000, 0x3000, "r-xp", "text", LIB)
VDSO = audit.SealedMapping(0x8000, 0x9000, "r-xp", "system", "[vdso]")


def test_requirements() -> None:
    report = host(proc(1, "nginx", (TEXT, VDSO)), proc(2, "nginx", ()), proc(3, "sshd", (VDSO,)),
                  proc(4, "cron", None, "denied"))  # fmt: skip
    reqs = [audit.parse_requirement(r) for r in (
        "complete", "system", "sealed:nginx", "sealed:ssh*", "sealed:ssh*:text",
        "sealed:cron", "sealed:none",
    )]  # fmt: skip
    got = {r.requirement: (r.met, r.reason) for r in audit.check_requirements(report, reqs)}
    assert got == {
        "complete": (False, "1 process could not be read (pids 4)"),
        "system": (False, "[vdso] not sealed (or not readable) in pids 2, 4"),
        "sealed:nginx": (False, "1 of 2 processes named 'nginx' without a sealed mapping (pids 2)"),
        "sealed:ssh*": (True, ""),
        "sealed:ssh*:text": (False, "1 of 1 process named 'ssh*' without sealed text (pids 3)"),
        "sealed:cron": (False, "1 could not be read (pids 4)"),
        "sealed:none": (False, "no process named 'none' was audited"),
    }


def test_json_carries_the_table() -> None:
    report = host(proc(1, "nginx", (TEXT, VDSO)), proc(4, "cron", None, "denied"), vanished=2)
    doc = audit.to_json(report, requirements=audit.check_requirements(
        report, [audit.parse_requirement("complete")]))  # fmt: skip
    jsonschema.validate(doc, SCHEMA)
    assert doc["summary"] == {
        "seen": 2, "sealed": 1, "denied": 1, "cut_short": 0, "unreached": 0, "changed": 0, "vanished": 2,
        "zombies": 0, "not_found": 0, "kernel_threads": 3, "sealed_mappings": 2,
        "sealed_bytes": 0x3000,
    }  # fmt: skip
    assert doc["processes"][0]["sealed_kinds"] == {
        "text": {"mappings": 1, "bytes": 0x2000}, "system": {"mappings": 1, "bytes": 0x1000},
    }  # fmt: skip
    assert doc["time"] == "2023-11-14T22:13:20Z"
    assert "1 processes seen" not in report.summary()
    assert report.summary() == (
        "h: 2 processes seen, 1 with sealed memory (2 mappings, 12.0 KiB), 1 denied, "
        "2 vanished, 3 kernel threads skipped"
    )


def test_svg_has_one_shape_per_group_and_a_compressed_gap() -> None:
    regions = tuple(audit.MappedRegion(v, k) for v, k in zip(
        placed_lib(), audit.classify(placed_lib(), lambda v: LAYOUT), strict=True))  # fmt: skip
    far = audit.MappedRegion(vma(0x7FFF00000000, 33, "rw-p", "[stack]"), "stack")
    text = mapsvg.render_svg(audit.ProcessMaps(7, "x", (*regions, far)))
    groups = mapsvg.group_regions((*regions, far))
    # R T R L D B A S: D and B stay apart (a file mapping and anonymous memory)
    assert [g.kind for g in groups] == ["rodata", "text", "rodata", "relro", "data", "data",
                                        "anon", "stack"]  # fmt: skip
    assert text.count('class="vma ') == len(groups)
    gap = far.vma.start - placed_lib()[-1].end
    assert f"{audit.human_size(gap)} unmapped</text>" in text


def test_human_size() -> None:
    assert [audit.human_size(n) for n in (0, 4096, 3 << 20, 1 << 62)] == [
        "0 B", "4.0 KiB", "3.0 MiB", "4.0 EiB",
    ]  # fmt: skip


# --- hostile arguments ---------------------------------------------------------

junk = st.one_of(
    st.none(), st.booleans(), st.floats(allow_nan=True), st.text(max_size=6),
    st.binary(max_size=6), st.lists(st.integers(-3, 3), max_size=3), st.just(object()),
    st.integers(-(1 << 70), 1 << 70),
)  # fmt: skip
small_pids = st.lists(
    st.one_of(st.integers(-2, 3), st.integers(1 << 22, 1 << 40), junk), max_size=3
)

HOSTILE: dict[str, tuple[Callable[..., object], tuple[st.SearchStrategy[Any], ...]]] = {
    "scan_host": (
        lambda pids, users, comm, procfs, jobs: audit.scan_host(
            pids=pids, users=users, comm=comm, procfs=procfs, jobs=jobs
        ),
        (
            st.one_of(small_pids, junk.filter(lambda x: x is not None)),
            st.one_of(st.none(), junk, st.lists(st.integers(-1, 2), max_size=2)),
            st.one_of(st.none(), junk, st.text(max_size=4)),
            st.one_of(junk, st.sampled_from(["/proc", "", "/nonexistent", "a\x00b", "/"])),
            st.one_of(st.none(), junk, st.integers(-1, 3)),
        ),
    ),
    "process_maps": (
        audit.process_maps,
        (
            st.one_of(junk, st.sampled_from(["self", 0, -1, 1 << 22])),
            st.one_of(junk, st.just("/proc")),
        ),
    ),
    "classify": (audit.classify, (junk, st.one_of(st.none(), junk), st.one_of(st.none(), junk))),
    "parse_requirement": (audit.parse_requirement, (st.one_of(junk, st.text(max_size=12)),)),
    "check_requirements": (audit.check_requirements, (junk, junk)),
    "to_json": (audit.to_json, (junk,)),
    "to_prometheus": (audit.to_prometheus, (junk, st.just(()), junk)),
    "human_size": (audit.human_size, (st.integers(0, 1 << 70),)),
    "inspect": (elf.inspect, (st.one_of(junk, st.sampled_from(["/", "/proc/self/mem", "\x00"])),)),
    "load_layout": (
        elf_file.load_layout,
        (st.one_of(junk, st.sampled_from(["/", "/bin/sh", "x\x00"])),),
    ),
    "walk_properties": (
        elf.walk_properties,
        (st.one_of(junk, st.binary(max_size=40)), junk, junk, junk),
    ),
    "iter_paths": (lambda p, r: list(elf.iter_paths(p, r)), (junk, st.booleans())),
    "render_svg": (mapsvg.render_svg, (junk,)),
}


@pytest.mark.parametrize("name", sorted(HOSTILE))
def test_hostile_arguments(name: str) -> None:
    fn, strategies = HOSTILE[name]

    @settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
    @given(st.tuples(*strategies))
    def hostile(args: tuple[object, ...]) -> None:
        try:
            fn(*args)
        except SealkitError:
            pass
        except OSError as exc:  # load_layout documents OSError for unreadable files
            assert name == "load_layout", f"{name}{args!r}: {exc!r}"

    hostile()


@settings(max_examples=200, deadline=None)
@example([(0, 4096, "odd")])  # the only kind, and not one of KINDS
@example([(0, 4096, "odd"), (8192, 4096, "odd")])
@given(
    st.lists(
        # "odd": a kind a hand-made row may carry; by_kind lists KINDS only
        st.tuples(
            st.integers(0, 1 << 48), st.integers(0, 1 << 20), st.sampled_from((*audit.KINDS, "odd"))
        ),
        max_size=40,
    )
)
def test_by_kind_and_sealed_bytes_add_up(rows: list[tuple[int, int, str]]) -> None:
    """The per-kind counts and byte sums (computed a kind at a time, at C
    speed) are the plain loop's, in KINDS order, of the kinds in KINDS
    only (also when a row's kind is the only one)."""
    sealed = tuple(audit.SealedMapping(lo, lo + size, "r--p", kind, "") for lo, size, kind in rows)
    row = audit.ProcessAudit(1, "c", 0, "root", "ok", len(rows), sealed)
    expected: dict[str, list[int]] = {}
    for m in sealed:
        total = expected.setdefault(m.kind, [0, 0])
        total[0] += 1
        total[1] += m.end - m.start
    assert row.by_kind() == {k: tuple(expected[k]) for k in audit.KINDS if k in expected}
    assert list(row.by_kind()) == [k for k in audit.KINDS if k in expected]
    assert row.sealed_bytes == sum(size for _, size, _ in rows)
    unknown = row._replace(status="denied", sealed=None, mappings=None)
    assert unknown.sealed_bytes is None and unknown.by_kind() == {}

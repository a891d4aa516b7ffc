"""What the analyzer finds on the default scenario (issue 7, "Show" 1-4).

Nothing in the analyzer knows these answers: each test runs the search and
checks the shortest counterexample it reports, re-run from scratch on the
model. The depth-3 results (Show 5) are in tests/slow/test_analysis_depth.py;
the kernel replay of the linux finding in tests/kernel/test_analysis_replay.py.
"""

from __future__ import annotations

import errno

from sealkit.analysis import Property, analyze_policy, parse_policy
from sealkit.analysis.analyzer import PolicyReport
from sealkit.analysis.scenario import DEFAULT_SCENARIO
from sealkit.flags import PAGE_SIZE, Madv, MapFlag, Prot
from sealkit.ops import MODEL_BASES, Madvise, Mmap, Mprotect, Munmap, Op

REGIONS = {r.name: r for r in DEFAULT_SCENARIO.regions}


def pages(name: str) -> set[tuple[str, int]]:
    r = REGIONS[name]
    return {("p", p) for p in range(r.start, r.end)}


def one_call(report: PolicyReport, prop: Property) -> tuple[Op, int]:
    verdict = report.verdicts[prop]
    c = verdict.counterexample
    assert c is not None, f"{report.spec.name}: {prop.value} not broken: {verdict.cell()}"
    assert c.length == 1, c.attack_text()
    return c.attack[0].op, c.attack[0].result or 0


def test_1_v1_munmap_seal_map_fixed_replaces_the_range_in_one_call() -> None:
    report = analyze_policy(parse_policy("proposal-v1:munmap"), [Property.MAPPING], depth=1)
    op, result = one_call(report, Property.MAPPING)
    assert isinstance(op, Mmap) and op.flags & MapFlag.FIXED
    assert result == op.addr  # the mmap succeeded, over sealed pages
    c = report.verdicts[Property.MAPPING].counterexample
    assert c is not None
    assert c.violation.kinds == {"replaced"}
    assert set(c.violation.pages) <= pages("ro-anon") | pages("ro-file")
    # ...while the call the seal is named after is refused on the same range
    # (EACCES: blocked calls failed with EACCES until v7; the v10 cover letter's
    # changelog: "return EPERM for blocked operations").
    space, _ = DEFAULT_SCENARIO.build(report.spec)
    assert space.apply(Munmap(op.addr, op.length)) == -errno.EACCES


def test_2_v1_all_five_types_dontneed_destroys_read_only_anonymous_data() -> None:
    report = analyze_policy(parse_policy("proposal-v1"), list(Property), depth=1)
    op, result = one_call(report, Property.CONTENT)
    assert isinstance(op, Madvise) and op.advice == Madv.DONTNEED and result == 0
    c = report.verdicts[Property.CONTENT].counterexample
    assert c is not None
    assert c.violation.kinds == {"zeroed"}
    assert set(c.violation.pages) <= pages("ro-anon")
    page = c.violation.pages[0][1]
    assert c.before.run_at(page) is not None and c.before.render_content()[page] == "b"
    assert c.after.render_content()[page] == "0"
    # With all five types the mapping calls are refused: nothing else breaks in one call.
    assert not report.verdicts[Property.MAPPING].broken
    assert not report.verdicts[Property.PERMISSION].broken


def test_3_chrome_unmap_seal_lets_mprotect_grant_write() -> None:
    report = analyze_policy(parse_policy("chrome-split:unmap"), list(Property), depth=1)
    op, result = one_call(report, Property.PERMISSION)
    assert isinstance(op, Mprotect) and op.prot & Prot.WRITE and result == 0
    c = report.verdicts[Property.PERMISSION].counterexample
    assert c is not None and any(k.startswith("gained") and "w" in k for k in c.violation.kinds)
    assert not report.verdicts[Property.MAPPING].broken  # depth 2 in tests/slow


def test_4_linux_dontneed_reverts_private_file_data_that_was_written_before_sealing() -> None:
    report = analyze_policy(parse_policy("linux"), [Property.CONTENT], depth=1)
    op, result = one_call(report, Property.CONTENT)
    assert isinstance(op, Madvise) and op.advice == Madv.DONTNEED and result == 0
    c = report.verdicts[Property.CONTENT].counterexample
    assert c is not None
    assert c.violation.kinds == {"reverted to file"}
    assert set(c.violation.pages) <= pages("ro-file")
    page = c.violation.pages[0][1]
    assert c.before.render_content()[page] == "d" and c.after.render_content()[page] == "F"
    # The sealed read-only *anonymous* region is protected against the same call.
    ro_anon = REGIONS["ro-anon"]
    space, _ = DEFAULT_SCENARIO.build(report.spec)
    addr = MODEL_BASES.arena + ro_anon.start * PAGE_SIZE
    assert space.apply(Madvise(addr, ro_anon.pages * PAGE_SIZE, Madv.DONTNEED)) == -errno.EPERM


def test_none_is_broken_everywhere_in_one_call() -> None:
    report = analyze_policy(parse_policy("none"), list(Property), depth=1)
    for prop in Property:
        one_call(report, prop)


def test_mapping_and_permission_hold_at_depth_one_for_the_one_bit_designs() -> None:
    for name in ("linux", "linux-6.10", "mimmutable", "mimmutable-7.3"):
        report = analyze_policy(
            parse_policy(name), [Property.MAPPING, Property.PERMISSION], depth=1
        )
        for prop in (Property.MAPPING, Property.PERMISSION):
            verdict = report.verdicts[prop]
            assert not verdict.broken, f"{name} {prop.value}: {verdict.cell()}"
            assert verdict.holds_to == 1 and verdict.states == 1

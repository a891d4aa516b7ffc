"""The conformance suite's scenarios: coverage of the sources, format, matching."""

from __future__ import annotations

import re

import pytest

from sealkit.errors import ParseError
from sealkit.fidelity.conformance import (
    NOT_EXPRESSIBLE,
    _scenario_from_table,
    load_scenarios,
    match_layout,
    translate,
)
from sealkit.layout import Layout
from sealkit.ops import Mimmutable, Mmap, Mseal, MsealSplit, MsealV1, MsealV3, parse_trace

# The 50 test functions of tools/testing/selftests/mm/mseal_test.c (its 6.12+ shape).
SELFTEST_FUNCTIONS = """
test_seal_addseal test_seal_unmapped_start test_seal_unmapped_middle test_seal_unmapped_end
test_seal_multiple_vmas test_seal_split_start test_seal_split_end test_seal_invalid_input
test_seal_zero_length test_seal_twice test_seal_mprotect test_seal_start_mprotect
test_seal_end_mprotect test_seal_mprotect_unalign_len test_seal_mprotect_unalign_len_variant_2
test_seal_mprotect_two_vma test_seal_mprotect_two_vma_with_split test_seal_mprotect_partial_mprotect
test_seal_mprotect_two_vma_with_gap test_seal_mprotect_merge test_seal_mprotect_split
test_seal_mprotect_partial_mprotect_tail test_seal_munmap test_seal_munmap_two_vma
test_seal_munmap_vma_with_gap test_seal_munmap_partial_across_vmas test_munmap_start_freed
test_munmap_middle_freed test_munmap_end_freed test_seal_mremap_shrink test_seal_mremap_expand
test_seal_mremap_move test_seal_mremap_shrink_fixed test_seal_mremap_expand_fixed
test_seal_mremap_move_fixed test_seal_mremap_move_dontunmap test_seal_mremap_move_fixed_zero
test_seal_mremap_move_dontunmap_anyaddr test_seal_madvise_nodiscard test_seal_discard_ro_anon
test_seal_discard_across_vmas test_seal_discard_ro_anon_on_rw test_seal_discard_ro_anon_on_shared
test_seal_discard_ro_anon_on_filebacked test_seal_mmap_overwrite_prot test_seal_mmap_expand
test_seal_mmap_shrink test_seal_merge_and_split test_seal_zero_address
test_seal_discard_ro_anon_on_pkey
""".split()  # noqa: SIM905 (pasted from mseal_test.c)

# Every numbered case of the probe run (docs/reference/linux.md numbers them by topic).
PROBE_CASES = """
1.1 1.2 1.3 1.4a 1.4b 1.4c 1.5 1.6a 1.6b 1.6c 1.7 1.8 1.9a 1.9b 1.9c 1.10 1.11a 1.11b 1.11c 1.12
1.13 1.14 2.1 2.1b 2.2 2.3 3.1 3.2 3.3 3.4 3.5 3.6 3.7 3.8a 3.8b 3.9 4.1 4.2 4.3 4.4 4.5 4.6 4.7
4.8 4.9 4.10 5.1 5.2 5.3 5.4 5.5 5.6 5.7 5.8 5.9 5.10 5.11 5.12 6.1 6.2 6.3 6.4 6.5 6.6 6.7 6.8
6.9 6.10 6.11 6.12 7.1 7.2 7.3 7.4 7.5 7.6a 7.6b 7.6c 7.7 7.8 8.1 8.2 8.3 9.1a 9.1b 9.1c 10.1a
10.1b 10.2a 10.2b 10.3 10.4 10.5a 10.5b 10.6 10.7 11.1a 11.1b 11.2a 11.2b 11.3 11.4 11.5 11.6
11.7 11.8a 11.8b 11.9 11.10
""".split()  # noqa: SIM905 (pasted from the probe's output)


@pytest.fixture(scope="module")
def scenarios() -> list:
    return load_scenarios()


def test_every_scenario_names_its_source_and_checks_a_layout(scenarios: list) -> None:
    assert len(scenarios) >= 62 + len(PROBE_CASES)
    names = [s.name for s in scenarios]
    assert len(names) == len(set(names))
    for sc in scenarios:
        assert sc.source.strip(), sc.name
        assert sc.checks, sc.name
        assert all(step.result is not None for step in sc.steps), sc.name


def test_all_fifty_selftest_functions_are_covered(scenarios: list) -> None:
    sources = " ".join(s.source for s in scenarios if s.family == "selftest")
    missing = [f for f in SELFTEST_FUNCTIONS if not re.search(rf"\b{f}\(", sources)]
    assert missing == []
    assert len(SELFTEST_FUNCTIONS) == 50
    runs = [s for s in scenarios if s.family == "selftest"]
    # 88 runs, one of which (two_vma_with_gap) is the same body twice.
    assert len(runs) == 87


def test_the_twelve_ltp_cases_are_covered(scenarios: list) -> None:
    ltp = [s for s in scenarios if s.family == "ltp"]
    assert len([s for s in ltp if "mseal01" in s.name]) == 6
    assert len([s for s in ltp if "mseal02" in s.name]) == 6


def test_every_numbered_probe_case_is_covered_or_listed(scenarios: list) -> None:
    text = " ".join(s.source for s in scenarios if s.family == "probe")
    listed = " ".join(case for case, _ in NOT_EXPRESSIBLE)
    for case in PROBE_CASES:
        base = re.sub(r"[a-c]$", "", case)
        covered = (
            re.search(rf"\bcase {re.escape(case)}\b", text)
            or re.search(rf"\bcase {re.escape(base)}[a-c]?-{re.escape(base)}", text)
            or re.search(rf"\bcase {re.escape(base)}\b", text)
            or re.search(rf"\b{re.escape(case)}\b", listed)
            or re.search(rf"\b{re.escape(base)}\b", listed)
        )
        assert covered, f"probe case {case} is neither a scenario nor listed"
    # The madvise matrix: 25 advices x 10 types, plus the fork-child views.
    matrix = [s for s in scenarios if s.name.startswith("probe/7.1-")]
    assert len(matrix) == 250 + 20


def test_scenario_trace_parses_layout_blocks() -> None:
    table = {
        "name": "t/x",
        "source": "here",
        "trace": "mmap p0 2p rw- private|anon|fixed = p0\n> [0,2) rw-p anon 00\n"
        "mseal p0 1p = 0  # key\n> [0,1) rw-p,sl anon 0\n> [1,2) rw-p anon 0\n"
        "brk 0 = h0\n>h (nothing mapped)\n",
    }
    sc = _scenario_from_table(table, "test")
    assert [c.step for c in sc.checks] == [0, 1, 2]
    assert sc.checks[1].layout.text() == "[0,1) rw-p,sl anon 0\n[1,2) rw-p anon 0"
    assert sc.checks[2].zone == "h"
    assert sc.key_step == 1


@pytest.mark.parametrize(
    ("table", "message"),
    [
        (
            {"name": "t", "trace": "mmap p0 1p r-- private|anon|fixed = p0\n> (nothing mapped)"},
            "must name its source",
        ),
        (
            {
                "name": "t",
                "source": "s",
                "trace": "mmap p0 1p r-- private|anon|fixed\n> [0,1) r--p anon",
            },
            "needs its '= result'",
        ),
        (
            {"name": "t", "source": "s", "trace": "> [0,1) r--p anon\nmseal p0 1p = 0"},
            "layout before any call",
        ),
        ({"name": "t", "source": "s", "trace": "mseal p0 1p = 0"}, "at least one '>' layout"),
        (
            {"name": "t", "source": "s", "trace": "mseal p0 1p = 0\n> [0,20) r--p anon"},
            "past the window",
        ),
        (
            {
                "name": "t",
                "source": "s",
                "trace": "mseal p0 1p = 0\n> [0,1) r--p anon",
                "policy": {"mimmutable": {"results": []}},
            },
            "one result per call",
        ),
    ],
)
def test_bad_scenarios_are_parse_errors(table: dict, message: str) -> None:
    with pytest.raises(ParseError, match=re.escape(message)):
        _scenario_from_table(table, "test.toml")


def test_match_layout_wildcards_and_first_difference() -> None:
    expected = Layout.parse("[0,2) rw-p anon a?\n[2,4) r--s,sl file:f1 FF", "p", 0, 16)
    same = Layout.parse("[0,2) rw-p anon ab\n[2,4) r--s,sl file:f1@7 FF", "p", 0, 16)
    assert match_layout(expected, same) is None  # '?' content, no pgoff expected
    flagged = Layout.parse("[0,2) rw-p,dd anon ab\n[2,4) r--s,sl file:f1@7 FF", "p", 0, 16)
    assert match_layout(expected, flagged) == "- [0,2) rw-p anon a?\n+ [0,2) rw-p,dd anon ab"
    assert match_layout(expected, flagged, flags=False) is None
    split = Layout.parse("[0,1) rw-p anon a\n[1,2) rw-p anon b", "p", 0, 16)
    assert match_layout(expected, split) == "- [0,2) rw-p anon a?\n+ [0,1) rw-p anon a"
    model_unknown = Layout.parse("[0,2) rw-p anon ??\n[2,4) r--s,sl file:f1 FF", "p", 0, 16)
    assert match_layout(expected, model_unknown) is None


def test_translate_swaps_the_seal_call_per_policy() -> None:
    ops = [s.op for s in parse_trace("mmap p0 1p r-- private|anon|fixed\nmseal p0 1p\n")]
    assert translate(ops, "linux") == ops
    assert isinstance(translate(ops, "proposal-v1")[1], MsealV1)
    v3 = translate(ops, "proposal-v3")
    assert isinstance(v3[1], MsealV3)
    assert isinstance(v3[0], Mmap) and v3[0].flags & 0x8000000  # MAP_SEALABLE
    assert isinstance(translate(ops, "mimmutable-7.3")[1], Mimmutable)
    assert isinstance(translate(ops, "chrome-split")[1], MsealSplit)
    assert isinstance(translate(ops, "none")[1], Mseal)

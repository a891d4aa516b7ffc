"""The conformance suite against the running kernel, and the CLIs that run it."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from sealkit.fidelity.conformance import Check, load_scenarios, run_scenarios
from sealkit.layout import Layout
from sealkit.ops import Step

pytestmark = pytest.mark.kernel


def test_every_scenario_passes_on_this_kernel() -> None:
    scenarios = load_scenarios()
    outcomes = run_scenarios(scenarios, "kernel")
    assert len(outcomes) == len(scenarios)
    failures = [f"{o.scenario}: {o.diff}" for o in outcomes if not o.passed]
    assert failures == []


def test_a_wrong_expectation_fails_with_the_differing_line() -> None:
    sc = load_scenarios("probe/3.5")[0]
    last = sc.checks[-1]
    wrong_layout = Layout.parse(
        "[0,4) rw-p anon abcd\n[4,8) rw-p,sl anon efgh", "p", 0, sc.window.pages
    )
    no_split = replace(sc, checks=(Check(last.step, "p", wrong_layout),))
    wrong_result = replace(sc, steps=(*sc.steps[:-1], Step(sc.steps[-1].op, 0)))
    flag = Layout.parse(
        "[0,2) rw-p anon ab\n[2,4) rw-p,dd anon cd\n[4,8) rw-p,sl anon efgh", "p", 0, 16
    )
    wrong_flag = replace(sc, checks=(Check(last.step, "p", flag),))
    outcomes = run_scenarios([no_split, wrong_result, wrong_flag], "kernel")
    assert [o.passed for o in outcomes] == [False, False, False]
    assert outcomes[0].diff.endswith("- [0,4) rw-p anon abcd\n+ [0,2) rw-p anon ab")
    assert outcomes[1].diff == "step 4 (munmap   p2 6p): expected 0, got EPERM"
    assert "+ [2,4) rw-p anon cd" in outcomes[2].diff


def test_conform_cli_json_and_exit_codes(sealkit_cli: Any) -> None:
    done = sealkit_cli("conform", "--target", "kernel", "--scenario", "ltp/*", "--json")
    assert done.returncode == 0, done.stderr
    payload = json.loads(done.stdout)
    assert payload["summary"]["kernel"] == {"pass": 12}
    assert payload["by_source"]["ltp"]["scenarios"] == 12
    assert any("mseal01" in s["source"] for s in payload["scenarios"])
    table = sealkit_cli("conform", "--scenario", "probe/3.*", env={"COLUMNS": "200"})
    assert table.returncode == 0
    assert "probe/3.5" in table.stdout and "kernel: 9 passed, 0 failed" in table.stdout
    for args, message in (
        (("--scenario", "nothing/*"), "no scenario matches"),
        (("--target", "bogus"), "--target must be"),
    ):
        bad = sealkit_cli("conform", *args)
        assert bad.returncode == 2
        assert message in bad.stderr and "Traceback" not in bad.stderr
        assert len(bad.stderr.strip().splitlines()) == 1


TRACE = """\
mmap     p0 8p rw- private|anon|fixed = p0
write    p0 8p                        = 0
mseal    p4 4p                        = 0
munmap   p2 6p                        = EPERM
"""


def test_replay_cli_on_the_kernel(sealkit_cli: Any, tmp_path: Path) -> None:
    good = tmp_path / "good.trace"
    good.write_text(TRACE)
    done = sealkit_cli("replay", str(good))
    assert done.returncode == 0, done.stderr
    assert "vma  aabbCCCC" in done.stdout  # the leftover split, drawn
    assert "data abcdefgh" in done.stdout
    as_json = json.loads(sealkit_cli("replay", str(good), "--json").stdout)
    assert as_json["steps"][3]["kernel"] == "EPERM"
    assert as_json["steps"][3]["layout"]["p"].startswith("[0,2) rw-p anon ab\n[2,4)")
    wrong = tmp_path / "wrong.trace"
    wrong.write_text(TRACE.replace("= EPERM", "= 0"))
    mismatch = sealkit_cli("replay", str(wrong))
    assert mismatch.returncode == 1
    assert "recorded 0" in mismatch.stdout


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("munmap p0\n", "expected: munmap ADDR LEN"),
        ("# only a comment\n", "no calls"),
        ("munmap p-4 1p\n", "refuses this trace"),
        (None, "cannot read trace file"),
    ],
)
def test_replay_cli_bad_files_are_one_line(
    sealkit_cli: Any, tmp_path: Path, content: str | None, message: str
) -> None:
    path = tmp_path / "t.trace"
    if content is not None:
        path.write_text(content)
    done = sealkit_cli("replay", str(path))
    assert done.returncode == 2
    assert message in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1 and "Traceback" not in done.stderr

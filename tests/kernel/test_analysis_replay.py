"""``sealkit analyze --replay``: counterexamples on the running kernel (issue 7, Show 4)."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Callable

import pytest

from sealkit.analysis import DEFAULT_SCENARIO, Property, analyze, analyze_policy, parse_policy
from sealkit.analysis.replay import replay_counterexample, replay_report

pytestmark = pytest.mark.kernel


def test_linux_private_file_revert_is_confirmed_on_this_kernel() -> None:
    report = analyze([parse_policy("linux")], [Property.CONTENT], depth=1, workers=1)
    replayed, refuted = replay_report(report)
    assert refuted == 0
    verdict = replayed.policies[0].verdicts[Property.CONTENT]
    outcome = verdict.replay
    assert outcome is not None and outcome.status == "confirmed", outcome
    assert "reverted to file" in outcome.detail
    # What the kernel itself showed: the call succeeded and the written page
    # of the sealed read-only private file mapping holds the file's data again.
    [step] = outcome.attack
    assert step.op.NAME == "madvise" and step.result == 0
    assert outcome.before is not None and outcome.after is not None
    assert outcome.before.render_content()[3] == "d"
    assert outcome.after.render_content()[3] == "F"
    assert outcome.after.run_at(3) is not None and outcome.after.run_at(3).seal == "sl"


def test_a_trace_the_kernel_disagrees_with_is_refuted() -> None:
    # proposal-v1's seal call is not a Linux call: replayed on this kernel the
    # setup already differs from the model, and the replay says so.
    spec = parse_policy("proposal-v1:munmap")
    report = analyze_policy(spec, [Property.MAPPING], depth=1, workers=1)
    c = report.verdicts[Property.MAPPING].counterexample
    assert c is not None
    outcome = replay_counterexample(c, DEFAULT_SCENARIO, spec)
    assert outcome.status == "refuted", outcome
    assert outcome.detail.startswith("setup: ")


def test_cli_replay_marks_cells_and_exits_0(
    sealkit_cli: Callable[..., subprocess.CompletedProcess[str]],
) -> None:
    proc = sealkit_cli(
        "analyze",
        "--policy",
        "linux",
        "--property",
        "content",
        "--depth",
        "1",
        "--replay",
        "--json",
    )
    assert proc.returncode == 0, proc.stderr
    cell = json.loads(proc.stdout)["policies"][0]["verdicts"]["content"]
    assert cell["replay"]["status"] == "confirmed"
    assert "madvise" in cell["replay"]["attack"]

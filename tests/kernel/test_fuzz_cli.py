"""``sealkit fuzz`` prints what the campaign found; the fixed tables (what is
compared, what the kernel leaves undefined, what is never generated) are
behind ``--explain``, which runs nothing."""

from __future__ import annotations

import subprocess
from collections.abc import Callable

import pytest

from sealkit.fidelity.fuzz import EXCLUDED, UNDEFINED, VERIFIED

pytestmark = pytest.mark.kernel

Run = Callable[..., subprocess.CompletedProcess[str]]


def test_a_run_prints_its_summary_only(sealkit_cli: Run) -> None:
    done = sealkit_cli("fuzz", "--ops", "300", "--seed", "5", "--no-progress")
    assert done.returncode == 0, done.stdout + done.stderr
    lines = done.stdout.splitlines()
    # It used to add some 90 lines of the same tables to every run.
    assert len(lines) < 20, done.stdout
    assert "calls verified" in done.stdout and "sealkit fuzz --explain" in done.stdout
    assert "never generated" not in done.stdout and EXCLUDED[0][0] not in done.stdout


def test_explain_prints_the_tables_and_runs_nothing(sealkit_cli: Run) -> None:
    done = sealkit_cli("fuzz", "--explain")
    assert done.returncode == 0, done.stderr
    for title in ("what is compared", "left undefined by the kernel", "never generated"):
        assert title in done.stdout
    for case, _ in (*UNDEFINED, *EXCLUDED):
        assert case in done.stdout
    for when in VERIFIED:
        assert when in done.stdout
    assert "calls verified" not in done.stdout  # no campaign ran

"""``sealkit analyze``: table, JSON, and one-line usage errors."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Callable

import pytest

Cli = Callable[..., subprocess.CompletedProcess[str]]


def test_json_carries_every_cell(sealkit_cli: Cli) -> None:
    proc = sealkit_cli(
        "analyze", "--policy", "proposal-v1:munmap", "--policy", "linux", "--depth", "1",
        "--workers", "1", "--json",
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    data = json.loads(proc.stdout)
    assert data["depth"] == 1 and data["properties"] == ["mapping", "permission", "content"]
    v1, linux = data["policies"]
    assert v1["policy"] == "proposal-v1:munmap" and linux["policy"] == "linux"
    mapping = v1["verdicts"]["mapping"]
    assert mapping["broken"] and mapping["length"] == 1
    assert mapping["attack"].startswith("mmap")
    assert "fixed" in mapping["attack"] and "= p0" in mapping["attack"]
    assert "replaced" in mapping["violation"]
    assert "mseal_v1" in mapping["trace"] and "# attack" in mapping["trace"]
    assert linux["verdicts"]["mapping"] == {
        "broken": False, "summary": "holds to depth 1 (1 states)", "holds_to": 1, "states": 1,
    }  # fmt: skip
    assert linux["permission_promise"] == "no-change"
    assert linux["alphabet_size"] == sum(linux["alphabet"].values()) > 1000
    assert linux["search"]["pairs"] == linux["alphabet_size"]


def test_table_shows_the_counterexample_and_pictures(sealkit_cli: Cli) -> None:
    proc = sealkit_cli("analyze", "--policy", "linux", "--property", "content", "--depth", "1")
    assert proc.returncode == 0, proc.stderr
    out = proc.stdout
    assert "linux" in out and "content integrity" in out
    assert "broken in 1 call" in out
    assert "madvise  p3 1p dontneed" in out
    assert "reverted to file" in out
    assert "before" in out and "after" in out and "vma" in out


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--policy", "nope"], "unknown policy 'nope'"),
        (["--policy", "linux:munmap"], "has no seal types"),
        (["--policy", "proposal-v1:bogus"], "unknown seal type or reading 'bogus'"),
        (["--depth", "-1"], "--depth must be between"),
        (["--depth", "99"], "--depth must be between"),
        (["--depth", "two"], "invalid int value"),
        (["--workers", "0"], "--workers must be at least 1"),
        (["--property", "speed"], "invalid choice"),
        (["--scenario", "huge"], "unknown scenario"),
    ],
)
def test_bad_input_is_one_line_and_exit_2(sealkit_cli: Cli, args: list[str], message: str) -> None:
    proc = sealkit_cli("analyze", *args)
    assert proc.returncode == 2
    assert proc.stdout == ""
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and message in lines[0], proc.stderr

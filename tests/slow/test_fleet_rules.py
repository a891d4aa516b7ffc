"""The Prometheus rules in deploy/prometheus/: valid, and held by their tests.

``promtool check rules`` parses them; ``promtool test rules`` runs the
cases in sealkit-rules.test.yml. Then each rule is broken on purpose, one
at a time, in a copy of the directory, and the same cases must fail: a
renamed alert or recording rule (so every rule has a case that needs it),
and one change per condition that a case exists to pin down (a threshold,
a ``for:``, a label filter, a term of an expression).

promtool comes with Debian's ``prometheus`` package; without it these tests
skip and say so.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[2]
RULES_DIR = REPO / "deploy" / "prometheus"
RULES = "sealkit-rules.yml"
EXPECTATIONS = "sealkit-expectations.example.yml"
TESTS = "sealkit-rules.test.yml"

PROMTOOL = shutil.which("promtool")
needs_promtool = pytest.mark.skipif(
    PROMTOOL is None, reason="promtool not found (Debian package 'prometheus')"
)


def promtool(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    assert PROMTOOL is not None
    return subprocess.run(
        [PROMTOOL, *args], cwd=cwd, capture_output=True, text=True, timeout=60, check=False
    )


@needs_promtool
def test_rules_parse() -> None:
    done = promtool("check", "rules", RULES, EXPECTATIONS, cwd=RULES_DIR)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "SUCCESS: 11 rules found" in done.stdout  # 3 recording + 8 alerts
    assert "SUCCESS: 2 rules found" in done.stdout


@needs_promtool
def test_rule_unit_tests_pass() -> None:
    done = promtool("test", "rules", TESTS, cwd=RULES_DIR)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "SUCCESS" in done.stdout


def _names(text: str) -> list[tuple[str, str]]:
    return re.findall(r"^\s*- (alert|record): (\S+)\s*$", text, flags=re.M)


def test_every_rule_is_listed_here() -> None:
    """The renaming mutations below cover every rule in the files."""
    names = _names((RULES_DIR / RULES).read_text())
    assert sorted(n for _, n in names) == sorted(
        [
            "sealkit:audit_age_seconds",
            "sealkit:command_unsealed_processes",
            "sealkit:host_sealed_process_ratio",
            "SealkitRequirementUnmet",
            "SealkitCommandNotSealed",
            "SealkitAuditIncomplete",
            "SealkitAuditScopeLimited",
            "SealkitAuditCutShort",
            "SealkitAuditStale",
            "SealkitAuditMissing",
            "SealkitAuditFailed",
        ]
    )


# (file, old text, new text, which occurrence of old, what a case must catch)
MUTATIONS: list[tuple[str, str, str, int, str]] = [
    (RULES, '{requirement!="complete"} == 0', " == 0", 1, "'complete' alerting as a sealing requirement"),
    (RULES, '{requirement!="complete"} == 0', '{requirement!="complete"} == 1', 1, "inverted requirement"),
    (RULES, "for: 10m", "for: 0m", 1, "RequirementUnmet without its two-sweep delay"),
    (RULES, "for: 10m", "for: 0m", 2, "CommandNotSealed without its delay"),
    (RULES, "for: 10m", "for: 0m", 3, "AuditIncomplete without its delay"),
    (RULES, "for: 10m", "for: 0m", 4, "AuditScopeLimited without its delay"),
    (RULES, "for: 10m", "for: 0m", 5, "AuditCutShort without its delay"),
    (RULES, "for: 15m", "for: 0m", 1, "AuditMissing without its delay"),
    (RULES, "(sealkit_audit_command_unread_processes or sealkit_audit_command_denied_processes)", "sealkit_audit_command_denied_processes", 1, "cut short counted as unsealed"),
    (RULES, " or sealkit_audit_command_denied_processes)", ")", 1, "no stand-in for an older sealkit"),
    (RULES, "- (sealkit_audit_command_unread_processes", "+ (sealkit_audit_command_unread_processes", 1, "unread counted as unsealed"),
    (RULES, "and on(command) sealkit:expected_sealed_command", "", 1, "every command expected sealed"),
    (RULES, '{state="denied"} > 0', '{state="denied"} >= 0', 1, "incomplete with none denied"),
    (RULES, '{reason!="filter"}', "", 1, "a deliberate filter alerting"),
    (RULES, "> 3 * 300", "> 2 * 300", 1, "stale too early"),
    (RULES, "> 3 * 300", "> 4 * 300", 1, "stale too late"),
    (RULES, "unless on(instance) up == 0", "", 1, "missing alerting for a down target"),
    (RULES, "unless sealkit_audit_last_run_timestamp_seconds\n", "\n", 1, "missing while present"),
    (RULES, 'state="failed"} == 1', 'state="inactive"} == 1', 1, "failed on an inactive unit"),
    (RULES, 'name="sealkit-audit.service", ', "", 1, "any failed unit"),
    (RULES, 'state=~"denied|cut_short|changed"', 'state="denied"', 1, "ratio over cut short and changed too"),
    (RULES, 'state=~"denied|cut_short|changed"', 'state=~"denied|cut_short|unreached|changed"', 1, "unreached taken from the rows"),
    (RULES, 'state=~"cut_short|unreached|changed"} > 0', 'state="cut_short"} > 0', 1, "unreached and changed not alerting"),
    (RULES, 'state=~"cut_short|unreached|changed"} > 0', 'state=~"cut_short|unreached|changed|denied"} > 0', 1, "denied alerting as cut short"),
]  # fmt: skip


def _replace_nth(text: str, old: str, new: str, nth: int) -> str:
    start = -1
    for _ in range(nth):
        start = text.find(old, start + 1)
        assert start >= 0, f"{old!r} occurs fewer than {nth} times"
    return text[:start] + new + text[start + len(old) :]


def _mutants() -> list[tuple[str, str, str, str]]:
    """(label, file, new text of that file): every rule renamed, then MUTATIONS."""
    out = []
    for file in (RULES, EXPECTATIONS):
        text = (RULES_DIR / file).read_text()
        for kind, name in sorted(set(_names(text))):
            mutated = re.sub(
                rf"^(\s*- {kind}: ){re.escape(name)}\s*$", rf"\g<1>{name}_renamed", text,
                flags=re.M,
            )  # fmt: skip
            out.append((f"rename {name}", file, mutated, f"{kind} {name} renamed"))
    for file, old, new, nth, why in MUTATIONS:
        text = (RULES_DIR / file).read_text()
        out.append((f"{old!r}#{nth} -> {new!r}", file, _replace_nth(text, old, new, nth), why))
    return out


@needs_promtool
@pytest.mark.parametrize(("label", "file", "mutated", "why"), _mutants(), ids=lambda v: str(v)[:60])
def test_a_broken_rule_fails_the_tests(
    tmp_path: Path, label: str, file: str, mutated: str, why: str
) -> None:
    for name in (RULES, EXPECTATIONS, TESTS):
        shutil.copy(RULES_DIR / name, tmp_path / name)
    (tmp_path / file).write_text(mutated)
    done = promtool("test", "rules", TESTS, cwd=tmp_path)
    out = done.stdout + done.stderr
    assert done.returncode != 0, f"the rule tests still pass with {why} ({label})"
    # failed by a case (expected vs got), not by a mutant that does not parse
    assert "could not parse" not in out and "got:" in out, out

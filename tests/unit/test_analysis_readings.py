"""Readings of unsettled rules in the analyzer: names, promises, ``--explain``.

A rule no source settles is two policies (``DESIGN`` and ``DESIGN:READING``);
the analyzer names a reading after the seal types, takes the permission
promise from the policy itself, and ``--explain`` computes both readings.
"""

from __future__ import annotations

import json
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest

from sealkit.analysis import (
    DEBATE_POLICIES,
    DEFAULT_SCENARIO,
    PermissionPromise,
    Property,
    analyze_policy,
    parse_policy,
)
from sealkit.analysis.explain import explain
from sealkit.errors import ArgumentError
from sealkit.flags import PAGE_SIZE, Madv, Prot
from sealkit.model import POLICIES
from sealkit.ops import MODEL_BASES, Madvise, Mprotect

Cli = Callable[..., subprocess.CompletedProcess[str]]
SCHEMAS = Path(__file__).resolve().parents[2] / "src" / "sealkit" / "data"


@pytest.mark.parametrize(
    ("text", "policy"),
    [
        ("mimmutable:permissive-advice", "mimmutable:permissive-advice"),
        ("chrome-split:unmap+unmap-refuses-discard", "chrome-split:unmap-refuses-discard"),
        ("chrome-split:unmap-refuses-discard", "chrome-split:unmap-refuses-discard"),
        ("proposal-v1:munmap+merge-as-coded", "proposal-v1:merge-as-coded"),
        ("proposal-v1:merge-as-coded", "proposal-v1:merge-as-coded"),
        ("proposal-v1:munmap", "proposal-v1"),
    ],
)
def test_a_reading_is_named_after_the_seal_types(text: str, policy: str) -> None:
    spec = parse_policy(text)
    assert spec.policy == policy
    assert spec.name == text
    assert parse_policy(spec.name) == spec


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("mimmutable:unmap-refuses-discard", "unknown seal type or reading"),
        ("chrome-split:unmap-refuses-discard+unmap-refuses-discard", "one reading at a time"),
        ("mimmutable-7.3:permissive-advice", "has no seal types or readings"),
        ("mimmutable:", "empty variant"),
    ],
)
def test_bad_readings_are_refused(text: str, message: str) -> None:
    with pytest.raises(ArgumentError, match=message):
        parse_policy(text)


def test_every_reading_is_in_the_debate_right_after_its_default() -> None:
    rows = list(DEBATE_POLICIES)
    for name in POLICIES:
        if POLICIES[name].reading:
            design = POLICIES[name].design
            assert name in rows, name
            assert rows.index(name) == rows.index(design) + 1, name


def _refuses_every_mprotect_in_the_scenario(text: str) -> bool:
    """Ask the model, not the policy's predicate: every protection, on every
    sealed region of the scenario, refused?"""
    spec = parse_policy(text)
    space, _ = DEFAULT_SCENARIO.build(spec)
    for region in DEFAULT_SCENARIO.regions:
        if not region.sealed:
            continue
        addr = MODEL_BASES.arena + region.start * PAGE_SIZE
        for prot in (Prot(0), Prot.READ, Prot.READ | Prot.WRITE, Prot.READ | Prot.EXEC):
            if space.copy().apply(Mprotect(addr, region.pages * PAGE_SIZE, prot)) >= 0:
                return False
    return True


@pytest.mark.parametrize(
    "text",
    [
        *DEBATE_POLICIES,
        "linux-6.10.y",
        "proposal-v1:mprotect",
        "proposal-v3:base",
        "proposal-v3:prot_pkey",
        "chrome-split:prot",
        "chrome-split:unmap+unmap-refuses-discard",
        "proposal-v1:munmap+merge-as-coded",
    ],
)
def test_the_permission_promise_comes_from_what_the_policy_refuses(text: str) -> None:
    """The trap of deciding by name: a new reading or policy would silently
    get the weaker promise. The promise must match what the model refuses."""
    want = (
        PermissionPromise.NO_CHANGE
        if _refuses_every_mprotect_in_the_scenario(text)
        else PermissionPromise.NO_GAIN
    )
    assert parse_policy(text).promise is want


def test_explain_runs_both_readings_with_the_same_seal_types() -> None:
    found = explain(parse_policy("chrome-split:unmap"), [Property.CONTENT], depth=1, workers=1)
    assert [c.rule.key for c in found.choices] == ["C2"]
    (choice,) = found.choices
    assert choice.chosen.spec.name == "chrome-split:unmap"
    assert choice.other.spec.name == "chrome-split:unmap+unmap-refuses-discard"
    zeroed = choice.chosen.verdicts[Property.CONTENT].counterexample
    reverted = choice.other.verdicts[Property.CONTENT].counterexample
    assert zeroed is not None and reverted is not None
    # Default: nothing refuses DONTNEED, the read-only anonymous data goes;
    # the other reading protects it, and the private file copy goes instead.
    assert zeroed.attack[0].op == Madvise(MODEL_BASES.arena, 2 * PAGE_SIZE, Madv.DONTNEED)
    assert zeroed.violation.kinds == {"zeroed"}
    assert reverted.violation.kinds == {"reverted to file"}
    data = found.to_json()["unsettled"][0]
    assert [r["chosen"] for r in data["readings"]] == [True, False]
    assert data["readings"][1]["verdicts"]["content"]["broken"]


def test_explain_from_the_other_side_names_the_default() -> None:
    found = explain(
        parse_policy("mimmutable:permissive-advice"), [Property.CONTENT], depth=1, workers=1
    )
    (choice,) = found.choices
    assert choice.other.spec.name == "mimmutable"
    assert choice.chosen.verdicts[Property.CONTENT].broken  # GUARD_INSTALL on the text
    assert not choice.other.verdicts[Property.CONTENT].broken


def test_a_policy_without_open_rules_explains_its_choices_only(sealkit_cli: Cli) -> None:
    proc = sealkit_cli("analyze", "--explain", "linux-6.10", "--depth", "0", "--json")
    assert proc.returncode == 0, proc.stderr
    data = json.loads(proc.stdout)
    assert data["unsettled"] == [] and data["choices"] == list(POLICIES["linux-6.10"].choices)
    assert data["schema"] == "sealkit.analyze-explain/1"


def test_explain_json_names_and_follows_its_schema(sealkit_cli: Cli) -> None:
    import jsonschema

    proc = sealkit_cli("analyze", "--explain", "mimmutable", "--depth", "0", "--json")
    assert proc.returncode == 0, proc.stderr
    data = json.loads(proc.stdout)
    assert next(iter(data)) == "schema"
    schema = json.loads((SCHEMAS / "analyze-explain.schema.json").read_text())
    jsonschema.validate(data, schema)
    assert data["unsettled"] and all(len(u["readings"]) == 2 for u in data["unsettled"])


def test_readme_explain_command_runs(sealkit_cli: Cli) -> None:
    # The README's `sealkit analyze --explain mimmutable --depth 1`.
    proc = sealkit_cli("analyze", "--explain", "mimmutable", "--depth", "1", "--workers", "1")
    assert proc.returncode == 0, proc.stderr
    out = proc.stdout
    assert "M2" in out and "mimmutable:permissive-advice" in out
    assert "taken: mimmutable" in out and "holds to depth 1" in out
    assert "guard_install" in out  # the other reading's break, computed
    assert "Choices" in out and "ALIGN_ADDR" in out


def test_explain_usage_errors(sealkit_cli: Cli) -> None:
    for args, message in (
        (["--explain", "linux", "--policy", "none"], "--explain takes one policy"),
        (["--explain", "mimmutable:nope"], "unknown seal type or reading 'nope'"),
    ):
        proc = sealkit_cli("analyze", *args)
        assert proc.returncode == 2, (args, proc.stdout)
        assert message in proc.stderr and len(proc.stderr.strip().splitlines()) == 1


def test_7_3_content_breaks_in_one_call_the_data_is_zeroed() -> None:
    """Issue 15 item 1, the consequence: OpenBSD 7.3 refused no madvise."""
    report = analyze_policy(parse_policy("mimmutable-7.3"), [Property.CONTENT], depth=1)
    c = report.verdicts[Property.CONTENT].counterexample
    assert c is not None and c.length == 1
    assert c.attack[0].op == Madvise(MODEL_BASES.arena, 2 * PAGE_SIZE, Madv.DONTNEED)
    assert c.violation.kinds == {"zeroed"}

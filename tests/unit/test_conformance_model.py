"""The conformance suite on the model: every scenario under linux, and each
policy where a scenario says what that design does (pure: no kernel)."""

from __future__ import annotations

from dataclasses import replace

import pytest

from sealkit.fidelity.conformance import load_scenarios, run_scenarios
from sealkit.model import POLICIES
from sealkit.ops import parse_step


@pytest.fixture(scope="module")
def scenarios() -> list:
    return load_scenarios()


def test_linux_model_passes_every_scenario(scenarios: list) -> None:
    outcomes = run_scenarios(scenarios, "model:linux")
    assert len(outcomes) == len(scenarios)
    assert [f"{o.scenario}: {o.diff}" for o in outcomes if not o.passed] == []


@pytest.mark.parametrize("policy", [p for p in POLICIES if p != "linux"])
def test_each_policy_meets_the_debate_expectations(scenarios: list, policy: str) -> None:
    outcomes = run_scenarios(scenarios, f"model:{policy}")
    judged = [o for o in outcomes if o.expected]
    assert judged, f"no scenario says what {policy} does"
    assert [f"{o.scenario}: {o.diff}" for o in judged if not o.passed] == []
    # Scenarios without an expectation for this policy are run, shown, not judged.
    assert all(o.passed for o in outcomes if not o.expected)


def test_a_wrong_policy_expectation_fails(scenarios: list) -> None:
    sc = next(s for s in scenarios if s.name == "debate/mprotect-rw-to-r-downgrade")
    exp = sc.policies["mimmutable-7.3"]
    last = parse_step("mprotect p0 4p r-- = EPERM")  # 7.3 allowed this downgrade: 0
    assert last is not None and last.op == exp.steps[-1].op
    lying = replace(exp, steps=(*exp.steps[:-1], last))
    wrong = replace(sc, policies={**sc.policies, "mimmutable-7.3": lying})
    [outcome] = run_scenarios([wrong], "model:mimmutable-7.3")
    assert not outcome.passed
    assert outcome.diff.endswith("expected EPERM, got 0")
    assert outcome.key_result == "0"

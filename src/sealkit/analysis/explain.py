"""Where a design's sources are silent: each reading, and what the analyzer finds for it.

A rule no source settles is two policies of the model (``Policy.unsettled``):
the design's default reading and the other one, registered as
``DESIGN:READING``. :func:`explain` runs the analyzer on a policy and on the
other reading of each of its unsettled rules (same seal types, same scenario,
same depth), so the other reading's result is computed, never written by
hand; ``sealkit analyze --explain POLICY`` prints it and
``docs/debate.md`` carries the same pairs at the document's depth.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from ..model import POLICIES, Policy
from ..model.policies import Unsettled
from .analyzer import PolicyReport, Report, _verdict_json, analyze
from .properties import Property
from .scenario import DEFAULT_SCENARIO, PolicySpec, Scenario

__all__ = ["Choice", "Explanation", "explain"]


@dataclass(frozen=True)
class Choice:
    """One unsettled rule: the reading ``chosen`` by the explained policy and
    the ``other`` reading, each with the analyzer's verdicts."""

    rule: Unsettled
    chosen: PolicyReport
    other: PolicyReport

    def to_json(self) -> dict[str, Any]:
        """Everything the explanation shows for this rule."""
        return {
            "key": self.rule.key,
            "question": self.rule.question,
            "why_default": self.rule.why,
            "readings": [
                {
                    "policy": r.spec.name,
                    "reading": text,
                    "chosen": r is self.chosen,
                    "verdicts": {p.value: _verdict_json(v) for p, v in r.verdicts.items()},
                }
                for r, text in (
                    (self.chosen, self.rule.reading),
                    (self.other, self.rule.other_reading),
                )
            ],
        }


@dataclass(frozen=True)
class Explanation:
    """A policy's modelling choices and its unsettled rules with both readings' results."""

    spec: PolicySpec
    policy: Policy
    choices: tuple[Choice, ...]
    report: Report

    def to_json(self) -> dict[str, Any]:
        """JSON-ready: the policy, its choices, each unsettled rule with both results."""
        return {
            "policy": self.spec.name,
            "model_policy": self.spec.policy,
            "summary": self.policy.summary,
            "source": self.policy.source,
            "choices": list(self.policy.choices),
            "scenario": self.report.scenario.name,
            "depth": self.report.depth,
            "properties": [p.value for p in self.report.properties],
            "unsettled": [c.to_json() for c in self.choices],
        }


def explain(
    spec: PolicySpec,
    properties: Sequence[Property] = tuple(Property),
    depth: int = 2,
    scenario: Scenario = DEFAULT_SCENARIO,
    *,
    workers: int | None = None,
) -> Explanation:
    """Run ``spec`` and the other reading of each of its unsettled rules
    through the analyzer, with the same seal types, scenario and depth."""
    policy = POLICIES[spec.policy]
    others = [spec.reading_of(rule.other) for rule in policy.unsettled]
    report = analyze([spec, *others], list(properties), depth, scenario, workers=workers)
    by_name = {r.spec.name: r for r in report.policies}
    choices = tuple(
        Choice(rule, by_name[spec.name], by_name[other.name])
        for rule, other in zip(policy.unsettled, others, strict=True)
    )
    return Explanation(spec, policy, choices, report)

"""The analyzer: the shortest way around a sealing design.

For a policy of the model (:mod:`sealkit.model`), a starting scenario and an
attacker alphabet (every call of the op language, with arguments drawn from
the scenario's boundaries), search call sequences breadth-first for the
shortest one that breaks an integrity property (mapping, permission,
content), or report the depth the property holds to.

Public surface::

    from sealkit.analysis import analyze, parse_policy, Property
    report = analyze([parse_policy("proposal-v1:munmap")], depth=1)
"""

from __future__ import annotations

from .analyzer import (
    Counterexample,
    PolicyReport,
    Report,
    Verdict,
    analyze,
    analyze_policy,
    default_workers,
    picture,
    runs_text,
    side_by_side,
)
from .properties import (
    PROPERTIES,
    PermissionPromise,
    Property,
    Violation,
    check,
    check_content,
    check_mapping,
    check_permission,
)
from .scenario import (
    DEBATE_POLICIES,
    DEFAULT_SCENARIO,
    SCENARIOS,
    PolicySpec,
    Region,
    Scenario,
    parse_policy,
)

__all__ = [
    "DEBATE_POLICIES",
    "DEFAULT_SCENARIO",
    "PROPERTIES",
    "SCENARIOS",
    "Counterexample",
    "PermissionPromise",
    "PolicyReport",
    "PolicySpec",
    "Property",
    "Region",
    "Report",
    "Scenario",
    "Verdict",
    "Violation",
    "analyze",
    "analyze_policy",
    "check",
    "check_content",
    "check_mapping",
    "check_permission",
    "default_workers",
    "parse_policy",
    "picture",
    "runs_text",
    "side_by_side",
]

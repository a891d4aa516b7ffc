"""The model against the naive page-map model, thoroughly (slow tier).

``tests/unit/test_model_properties.py`` runs the same check with 40
examples per policy. This tier runs ``SEALKIT_MODEL_EXAMPLES`` per policy
(default 300, a few seconds a policy here; 1500 is a thorough profile).
"""

from __future__ import annotations

import os

import pytest
from hypothesis import HealthCheck, given, settings

from sealkit import ops as O
from sealkit.fidelity.strategies import traces
from sealkit.model import POLICIES
from tests.unit.test_model_properties import cross_check

EXAMPLES = int(os.environ.get("SEALKIT_MODEL_EXAMPLES", "300"))


@pytest.mark.slow
@pytest.mark.parametrize("policy", list(POLICIES))
def test_vma_model_matches_naive_page_model_thoroughly(policy: str) -> None:
    @settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=list(HealthCheck))
    @given(traces(policy, pages=8, max_size=30))
    def check(trace: list[O.Op]) -> None:
        cross_check(policy, trace)

    check()

"""The shared Hypothesis strategies: well-formed ops, each policy's alphabet,
traces that start by mapping the window, and mostly in-window ranges."""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sealkit import ops as O
from sealkit.fidelity.strategies import addresses, lengths, ops, seal_ops, traces
from sealkit.model import POLICIES

SETTINGS = settings(max_examples=60, deadline=None, suppress_health_check=list(HealthCheck))


@SETTINGS
@given(st.lists(ops("linux", pages=8), max_size=10))
def test_ops_round_trip_through_the_text_form(calls: list[O.Op]) -> None:
    steps = [O.Step(op) for op in calls]
    assert O.parse_trace(O.format_trace(steps)) == steps


@pytest.mark.parametrize("policy", list(POLICIES))
def test_each_policy_gets_its_own_sealing_call(policy: str) -> None:
    wanted = POLICIES[policy].seal_op

    @SETTINGS
    @given(seal_ops(policy, pages=8))
    def check(op: O.Op) -> None:
        assert isinstance(op, wanted)

    check()


@SETTINGS
@given(traces("proposal-v3", pages=8, max_size=5))
def test_traces_start_by_mapping_most_of_the_window(trace: list[O.Op]) -> None:
    first = trace[0]
    assert isinstance(first, O.Mmap)
    assert first.addr == O.MODEL_BASES.arena and first.length >= 4 * 4096
    assert first.flags & O.MapFlag.SEALABLE  # v3 mappings must be sealable


def test_addresses_and_lengths_stay_mostly_in_the_window() -> None:
    inside = 0
    total = 300

    @settings(max_examples=total, deadline=None, suppress_health_check=list(HealthCheck))
    @given(addresses(8), lengths(8))
    def count(addr: int, length: int) -> None:
        nonlocal inside
        page, rest = divmod(addr - O.MODEL_BASES.arena, 4096)
        if 0 <= page < 8 and not rest and length <= 10 * 4096:
            inside += 1

    count()
    assert inside > total * 0.6

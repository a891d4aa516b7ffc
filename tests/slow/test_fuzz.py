"""The differential fuzzer, short CI profile: the linux model against the kernel.

The Hypothesis state machine draws calls (biased toward the edges of the
model's layout) and replays the whole trace on the kernel at teardown; a
divergence fails with the shrunk trace in the text form. A short campaign
checks the fast engine the same way. Thorough runs: ``sealkit fuzz --ops N``.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from hypothesis import HealthCheck, Phase, settings
from hypothesis.stateful import run_state_machine_as_test

from sealkit.fidelity.executor import KernelExecutor
from sealkit.fidelity.fuzz import DifferentialMachine, campaign
from sealkit.fidelity.target import ModelTarget, Window

pytestmark = [pytest.mark.slow, pytest.mark.kernel]


@pytest.fixture(scope="module")
def executor() -> Iterator[KernelExecutor]:
    with KernelExecutor(Window(16, 16)) as kx:
        yield kx


PROFILE = settings(
    max_examples=25,
    stateful_step_count=30,
    deadline=None,
    database=None,
    suppress_health_check=list(HealthCheck),
    phases=[Phase.generate, Phase.shrink],
)


@pytest.mark.parametrize("heap", [False, True], ids=["arena", "arena+heap"])
def test_state_machine_model_matches_kernel(executor: KernelExecutor, heap: bool) -> None:
    machine = type(
        "Machine", (DifferentialMachine,), {"executor": executor, "heap": heap, "flags": "flag-ops"}
    )
    run_state_machine_as_test(machine, settings=PROFILE)


def test_short_campaign_finds_no_divergence() -> None:
    result = campaign(3000, seed=20260101, max_found=1)
    assert result.calls >= 3000 - 200
    assert [f.shrunk for f in result.found] == []
    assert result.deaths == 0


def test_a_planted_divergence_is_found_and_shrunk(executor: KernelExecutor) -> None:
    """The machinery works: a model that lies about one call is caught, and the
    report carries a replayable trace."""
    from sealkit.ops import Munmap

    class Lying:
        def __init__(self) -> None:
            self.inner = ModelTarget("linux").space()

        def apply(self, op: object) -> int:
            result = self.inner.apply(op)  # type: ignore[arg-type]
            return 0 if isinstance(op, Munmap) and result == -1 else result

        def layout(self, zone: str, lo: int, hi: int) -> object:
            return self.inner.layout(zone, lo, hi)

    result = campaign(4000, seed=7, max_found=1, space_factory=Lying)  # type: ignore[arg-type]
    assert len(result.found) == 1
    found = result.found[0]
    assert found.divergence.kind == "result"
    assert found.shrunk_divergence is not None
    lines = [line for line in found.shrunk.splitlines() if line.strip()]
    assert len(lines) <= 4, found.shrunk
    assert any(line.startswith("munmap") and "EPERM" in line for line in lines)

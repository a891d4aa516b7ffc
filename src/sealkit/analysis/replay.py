"""Replay the analyzer's ``linux`` counterexamples on the running kernel.

A counterexample is a trace (the scenario's setup and seals, then the
attack). It runs on the real kernel through the kernel executor
(:mod:`sealkit.executor`, disposable worker, reserved arena) and on a fresh
model, and the two are compared call by call with the differential machinery
(:func:`sealkit.differential.compare_runs`: results, and layouts in the
merged form both sides can observe). The kernel cannot name anonymous
objects, so a confirmation rests on what it shows: results, protections,
backing kind, file offsets, content tokens.

Outcomes:

* ``confirmed``: the kernel agrees with the model at every call, and the
  property is broken *on the kernel's own layouts* (before the attack vs
  after it);
* ``agrees``: the kernel agrees with the model at every call, but what breaks
  the property is not observable on the kernel (an anonymous object replaced
  by another one with the same protection and data);
* ``refuted``: the kernel differs from the model (the first difference is
  given): the counterexample is a model artefact until the model is fixed;
* ``error``: the trace could not run (no mseal, the executor refused it, the
  worker died).
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

from ..errors import SealkitError
from ..layout import Layout
from ..ops import Step, format_trace
from .analyzer import Counterexample, PolicyReport, Report, Verdict
from .properties import check
from .scenario import PolicySpec, Scenario

__all__ = ["ReplayOutcome", "replay_counterexample", "replay_report"]

REPLAYED_POLICY = "linux"
"""Only the design the running kernel implements is replayed."""


@dataclass(frozen=True)
class ReplayOutcome:
    """What the kernel said about one counterexample."""

    status: str
    detail: str
    attack: tuple[Step, ...] = ()
    before: Layout | None = None
    after: Layout | None = None

    def to_json(self) -> dict[str, Any]:
        """JSON-ready form (the kernel's attack results and layouts)."""
        return {
            "status": self.status,
            "detail": self.detail,
            "attack": format_trace(self.attack) if self.attack else "",
            "before": None if self.before is None else self.before.text(),
            "after": None if self.after is None else self.after.text(),
        }


def replay_counterexample(
    c: Counterexample, scenario: Scenario, spec: PolicySpec, executor: Any = None
) -> ReplayOutcome:
    """Run ``c`` on the kernel and on a fresh model; compare; judge the kernel's layouts.

    ``executor`` is a :class:`~sealkit.executor.KernelExecutor` to reuse (one
    is started and stopped here otherwise).
    """
    # The kernel side is imported here: the analyzer itself is pure.
    from ..fidelity.differential import compare_runs, run_model  # noqa: PLC0415
    from ..fidelity.executor import KernelExecutor, Window  # noqa: PLC0415

    ops = [s.op for s in c.setup] + [s.op for s in c.attack]
    n_setup = len(c.setup)
    window = Window(pages=max(16, scenario.pages), heap_pages=max(16, scenario.heap_pages))
    own = executor is None
    kx = KernelExecutor(window) if own else executor
    try:
        try:
            run = kx.run(ops, snapshots="every", flags="never")
        except SealkitError as exc:
            return ReplayOutcome("error", f"the executor could not run the trace: {exc}")
    finally:
        if own:
            kx.close()
    if not run.ok:
        return ReplayOutcome("error", f"the kernel worker died at step {run.died_step}: {run.died}")
    model = run_model(ops, spec.policy, window)
    attack = tuple(Step(op, r) for op, r in zip(ops[n_setup:], run.results[n_setup:], strict=True))
    divergence = compare_runs(model, run)
    if divergence is not None:
        where = divergence.step
        phase = "setup" if where is not None and where < n_setup else "attack"
        return ReplayOutcome("refuted", f"{phase}: {divergence.describe()}", attack)
    before = run.layout(n_setup - 1, "p").window(0, scenario.pages)
    after = run.final_layout("p").window(0, scenario.pages)
    violation = check(c.prop, before, after, scenario.protected, spec.promise)
    if violation is None:
        return ReplayOutcome(
            "agrees",
            "the kernel agrees with the model at every call; what breaks the property "
            "(object identity) is not observable on the kernel",
            attack, before, after,
        )  # fmt: skip
    return ReplayOutcome(
        "confirmed",
        f"the kernel agrees at every call and shows {violation.summary()} "
        f"({'; '.join(violation.details)})",
        attack, before, after,
    )  # fmt: skip


def replay_report(report: Report) -> tuple[Report, int]:
    """Replay every ``linux`` counterexample of ``report``; returns the report
    with each verdict's ``replay`` set, and how many were refuted."""
    from ..fidelity.executor import KernelExecutor, Window  # noqa: PLC0415

    scenario = report.scenario
    refuted = 0
    policies: list[PolicyReport] = []
    window = Window(pages=max(16, scenario.pages), heap_pages=max(16, scenario.heap_pages))
    with KernelExecutor(window) as kx:
        for pol in report.policies:
            if pol.spec.policy != REPLAYED_POLICY:
                policies.append(pol)
                continue
            verdicts: dict[Any, Verdict] = {}
            for prop, verdict in pol.verdicts.items():
                if verdict.counterexample is None:
                    verdicts[prop] = verdict
                    continue
                outcome = replay_counterexample(verdict.counterexample, scenario, pol.spec, kx)
                refuted += outcome.status == "refuted"
                verdicts[prop] = replace(verdict, replay=outcome)
            policies.append(replace(pol, verdicts=verdicts))
    return replace(report, policies=tuple(policies)), refuted

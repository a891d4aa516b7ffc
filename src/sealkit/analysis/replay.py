"""Replay the analyzer's ``linux`` counterexamples on the running kernel.

A counterexample is a trace (the scenario's setup and seals, then the
attack). It runs on two :class:`~sealkit.fidelity.target.Target` s: the
``kernel`` (the kernel executor: disposable worker, reserved arena) and the
model of the same design, and the two are compared call by call with the
differential machinery (:func:`sealkit.fidelity.differential.compare_runs`:
results, and layouts in the merged form both sides can observe). The kernel
cannot name anonymous objects, so a confirmation rests on what it shows:
results, protections, backing kind, file offsets, content tokens.

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
from typing import TYPE_CHECKING, Any

from ..errors import SealkitError
from ..layout import Layout
from ..ops import Step, format_trace
from .analyzer import Counterexample, PolicyReport, Report, Verdict
from .properties import check
from .scenario import PolicySpec, Scenario

if TYPE_CHECKING:
    from ..fidelity.target import Target, Window

__all__ = ["ReplayOutcome", "replay_counterexample", "replay_report"]

REPLAYED_TARGET = "kernel"
"""Where counterexamples are replayed: the running kernel. Only the design it
implements (its ``policy``, ``linux``) is replayed."""


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
    c: Counterexample, scenario: Scenario, spec: PolicySpec, executor: Target | None = None
) -> ReplayOutcome:
    """Run ``c`` on the kernel and on a fresh model; compare; judge the kernel's layouts.

    ``executor`` is the kernel :class:`~sealkit.fidelity.target.Target` to
    reuse (one is made and closed here otherwise).
    """
    # The fidelity face is imported here: the analyzer itself is pure.
    from ..fidelity.differential import compare_runs  # noqa: PLC0415
    from ..fidelity.target import make_target  # noqa: PLC0415

    ops = [s.op for s in c.setup] + [s.op for s in c.attack]
    n_setup = len(c.setup)
    window = _window(scenario)
    own = executor is None
    kx = make_target(REPLAYED_TARGET, window) if executor is None else executor
    try:
        try:
            run = kx.run(ops, layouts="every", flags="never")
        except SealkitError as exc:
            return ReplayOutcome("error", f"the executor could not run the trace: {exc}")
    finally:
        if own:
            kx.close()
    if not run.ok:
        return ReplayOutcome("error", f"the kernel worker died at step {run.died_step}: {run.died}")
    with make_target(f"model:{spec.policy}", window) as model_target:
        model = model_target.run(ops, layouts="every")
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


def _window(scenario: Scenario) -> Window:
    from ..fidelity.target import Window  # noqa: PLC0415

    return Window(pages=max(16, scenario.pages), heap_pages=max(16, scenario.heap_pages))


def replay_report(report: Report) -> tuple[Report, int]:
    """Replay every counterexample of ``report`` for the design the running
    kernel implements; returns the report with each verdict's ``replay``
    set, and how many were refuted."""
    from ..fidelity.target import make_target  # noqa: PLC0415

    scenario = report.scenario
    refuted = 0
    policies: list[PolicyReport] = []
    with make_target(REPLAYED_TARGET, _window(scenario)) as kx:
        for pol in report.policies:
            if pol.spec.policy != kx.policy:
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

"""Run the analyzer: for each policy, build the scenario, search, and turn the
search's answers into reports with traces and before/after layouts.

Every counterexample the search returns is re-run from scratch on a fresh
model (setup, seals, attack) and the property is checked again on the
layouts that run produces; a counterexample that does not reproduce is an
internal error, never a finding.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from ..flags import PAGE_SIZE
from ..layout import Layout
from ..ops import MODEL_BASES, Op, Step, attacker_of, format_trace
from .alphabet import DEFAULT_ATTACKER, Alphabet, build_alphabet
from .attackers import attacker_text, needed_seal
from .properties import PROPERTIES, PermissionPromise, Property, Violation, check
from .scenario import DEFAULT_SCENARIO, PolicySpec, Scenario
from .search import DEFAULT_MAX_STATES, Found, Holds, Problem, SearchStats, search

__all__ = [
    "Counterexample",
    "PolicyReport",
    "Report",
    "Verdict",
    "analyze",
    "analyze_policy",
    "picture",
    "runs_text",
    "side_by_side",
]


@dataclass(frozen=True)
class Counterexample:
    """A shortest call sequence that breaks a property, re-run on the model.

    ``setup`` is the scenario's setup and seal calls, ``attack`` the
    violating calls, both with the model's results; ``before`` and
    ``after`` are the arena window before and after the attack.
    """

    prop: Property
    setup: tuple[Step, ...]
    attack: tuple[Step, ...]
    before: Layout
    after: Layout
    violation: Violation
    alternatives: dict[str, int]

    @property
    def length(self) -> int:
        """Number of attack calls."""
        return len(self.attack)

    def attack_text(self) -> str:
        """The attack in the op-language text form."""
        return format_trace(self.attack)

    def picture(self) -> str:
        """Before and after, side by side: page ruler, VMAs (UPPERCASE sealed),
        content tokens, in the style of the kernel's VMA test harness."""
        return side_by_side(self.before, self.after)

    def needed(self) -> str:
        """Which seal would have to exist to stop this attack (or that none can)."""
        return needed_seal(tuple(step.op for step in self.attack))

    def trace_text(self) -> str:
        """Setup, seals and attack, replayable with ``sealkit replay``."""
        return (
            "# setup and seals\n"
            + format_trace(self.setup)
            + "# attack\n"
            + format_trace(self.attack)
        )


def runs_text(layout: Layout) -> str:
    """``Layout.text()`` with anonymous page offsets shown zone-relative:
    ``anon#av1@p1`` (an anonymous VMA's offset is its creation address,
    ``vm_pgoff = addr >> PAGE_SHIFT``)."""
    lines = []
    for run in layout.runs:
        text = run.text()
        if run.backing == "anon" and run.pgoff is not None:
            zoned = MODEL_BASES.zone_of(run.pgoff * PAGE_SIZE)
            if zoned is not None:
                text = text.replace(f"@{run.pgoff}", f"@{zoned[0]}{zoned[1] // PAGE_SIZE}", 1)
        lines.append(text)
    return "\n".join(lines) if lines else "(nothing mapped)"


def picture(layout: Layout) -> str:
    """``Layout.picture()`` with :func:`runs_text` for the run list."""
    return "\n".join([*layout.picture().splitlines()[:3], runs_text(layout)])


def side_by_side(before: Layout, after: Layout, gap: int = 4) -> str:
    """``before`` and ``after`` pictures (ruler, VMA letters, content) next to each other."""
    left = ["before", *before.picture().splitlines()[:3]]
    right = ["after", *after.picture().splitlines()[:3]]
    width = max(len(line) for line in left) + gap
    return "\n".join(f"{a:<{width}}{b}".rstrip() for a, b in zip(left, right, strict=True))


@dataclass(frozen=True)
class Verdict:
    """One (policy, property) cell: a counterexample, or the bound reached."""

    prop: Property
    counterexample: Counterexample | None = None
    holds_to: int | None = None
    states: int = 0
    replay: Any = None
    others: tuple[Counterexample, ...] = ()
    """Other shortest counterexamples, one per final call name."""
    cut: int = 0
    """The depth the state budget stopped the search at (0: not stopped)."""

    @property
    def broken(self) -> bool:
        """Whether a counterexample was found."""
        return self.counterexample is not None

    def cell(self) -> str:
        """Short text: ``broken in 1 call`` / ``holds to depth 3 (1,234 states)``."""
        if self.counterexample is not None:
            n = self.counterexample.length
            return f"broken in {n} call{'s' if n != 1 else ''}"
        held = f"holds to depth {self.holds_to} ({self.states:,} states)"
        if self.cut:
            held += f"; depth {self.cut} cut short (state budget)"
        return held


@dataclass(frozen=True)
class PolicyReport:
    """Everything the analyzer found for one policy (and seal variant)."""

    spec: PolicySpec
    promise: PermissionPromise
    verdicts: dict[Property, Verdict]
    stats: SearchStats
    alphabet: dict[str, int]
    dropped: tuple[str, ...]
    before: Layout
    setup: tuple[Step, ...]
    depth: int
    attacker: frozenset[str] = DEFAULT_ATTACKER


@dataclass(frozen=True)
class Report:
    """The analyzer's answer for several policies over one scenario."""

    scenario: Scenario
    depth: int
    properties: tuple[Property, ...]
    policies: tuple[PolicyReport, ...]
    seconds: float = 0.0
    extra: dict[str, Any] = field(default_factory=dict)
    attacker: frozenset[str] = DEFAULT_ATTACKER

    def to_json(self) -> dict[str, Any]:
        """Everything the table shows, as JSON-ready data."""
        return {
            "scenario": {
                "name": self.scenario.name,
                "description": self.scenario.description,
                "pages": self.scenario.pages,
                "regions": [
                    {
                        "name": r.name,
                        "start": r.start,
                        "pages": r.pages,
                        "sealed": r.sealed,
                        "what": r.what,
                    }
                    for r in self.scenario.regions
                ],
            },
            "depth": self.depth,
            "properties": [p.value for p in self.properties],
            "attacker": attacker_text(self.attacker),
            "seconds": round(self.seconds, 3),
            "policies": [_policy_json(r) for r in self.policies],
            **self.extra,
        }


def _policy_json(report: PolicyReport) -> dict[str, Any]:
    s = report.stats
    return {
        "policy": report.spec.name,
        "model_policy": report.spec.policy,
        "permission_promise": report.promise.value,
        "before": runs_text(report.before),
        "before_picture": picture(report.before),
        "setup": format_trace(report.setup),
        "alphabet": report.alphabet,
        "alphabet_size": sum(report.alphabet.values()),
        "dropped_calls": list(report.dropped),
        "search": {
            "depth": report.depth,
            "states": s.states,
            "states_per_level": s.levels,
            "expanded": s.expanded,
            "pairs": s.pairs,
            "applied": s.applied,
            "untouched": s.untouched,
            "cached": s.cached,
            "seconds": round(s.seconds, 3),
            "workers": s.workers,
            "max_states": s.max_states,
            **({"cut_at": s.cut} if s.cut else {}),
        },
        "verdicts": {p.value: _verdict_json(v) for p, v in report.verdicts.items()},
    }


def _verdict_json(v: Verdict) -> dict[str, Any]:
    out: dict[str, Any] = {"broken": v.broken, "summary": v.cell()}
    if v.counterexample is None:
        out.update(holds_to=v.holds_to, states=v.states)
        if v.cut:
            out["cut_at"] = v.cut
    else:
        c = v.counterexample
        out.update(
            length=c.length,
            attack=c.attack_text(),
            trace=c.trace_text(),
            violation=c.violation.summary(),
            needed=c.needed(),
            details=list(c.violation.details),
            before=runs_text(c.before),
            after=runs_text(c.after),
            before_picture=picture(c.before),
            after_picture=picture(c.after),
            picture=c.picture(),
            alternatives=c.alternatives,
            others=[
                {"attack": o.attack_text(), "violation": o.violation.summary()} for o in v.others
            ],
        )
    if v.replay is not None:
        out["replay"] = v.replay.to_json()
    return out


def _windows(scenario: Scenario) -> tuple[tuple[str, int, int], ...]:
    return (("p", 0, scenario.pages), ("h", 0, scenario.heap_pages))


def make_problem(
    scenario: Scenario,
    spec: PolicySpec,
    properties: Sequence[Property] = PROPERTIES,
    include_fork: bool = False,
    attacker: frozenset[str] = DEFAULT_ATTACKER,
) -> tuple[Problem, list[Step]]:
    """Build the start state for ``spec`` and the search problem over it."""
    space, setup = scenario.build(spec)
    before = scenario.start_layout(space)

    def probe(op: Op) -> int:
        return space.copy().apply(op)

    alphabet: Alphabet = build_alphabet(
        before,
        spec,
        scenario.files(),
        heap_pages=scenario.heap_pages,
        include_fork=include_fork,
        probe=probe,
        attacker=attacker,
    )
    problem = Problem(
        start=space,
        windows=_windows(scenario),
        alphabet=alphabet,
        properties=tuple(properties),
        protected=scenario.protected,
        promise=spec.promise,
        # The model's arena key already covers what can still influence the
        # arena: backing-object contents and the break (AddressSpace.state_key);
        # the alphabet reaches the heap zone only through brk, so the arena key
        # identifies the state and the heap key would only be computed twice.
        key_windows=_windows(scenario)[:1],
    )
    return problem, setup


def rerun(
    scenario: Scenario,
    spec: PolicySpec,
    problem: Problem,
    found: Found,
    path: tuple[int, ...] | None = None,
) -> Counterexample:
    """Re-run a counterexample (``found.path``, or ``path``) from scratch and
    check the property again."""
    space, setup = scenario.build(spec)
    windows = _windows(scenario)
    before_all = [space.layout(z, lo, hi) for z, lo, hi in windows]
    attack = []
    for i in found.path if path is None else path:
        op = problem.alphabet.ops[i]
        attack.append(Step(op, space.apply(op)))
    after_all = [space.layout(z, lo, hi) for z, lo, hi in windows]
    violation = check(found.property, before_all, after_all, scenario.protected, spec.promise)
    if violation is None:
        raise RuntimeError(
            f"analyzer: the {found.property.value} counterexample for {spec.name} does not "
            f"reproduce on a fresh model (locality assumption broken?):\n{format_trace(attack)}"
        )
    return Counterexample(
        found.property,
        tuple(setup),
        tuple(attack),
        before_all[0],
        after_all[0],
        violation,
        found.alternatives,
    )


def analyze_policy(
    spec: PolicySpec,
    properties: Sequence[Property] = PROPERTIES,
    depth: int = 2,
    scenario: Scenario = DEFAULT_SCENARIO,
    *,
    workers: int = 1,
    cache: bool = True,
    include_fork: bool = False,
    progress: Callable[[int, int, int], None] | None = None,
    attacker: frozenset[str] = DEFAULT_ATTACKER,
    max_states: int | None = DEFAULT_MAX_STATES,
) -> PolicyReport:
    """Search one policy; returns its report. ``attacker``: the capabilities
    whose calls the alphabet holds (:func:`~sealkit.analysis.alphabet.parse_attacker`);
    ``max_states``: the state budget (:func:`~sealkit.analysis.search.search`)."""
    problem, setup = make_problem(scenario, spec, properties, include_fork, attacker)
    result = search(
        problem, depth, workers=workers, cache=cache, progress=progress, max_states=max_states
    )
    verdicts: dict[Property, Verdict] = {}
    for prop, outcome in result.outcomes.items():
        if isinstance(outcome, Found):
            first = rerun(scenario, spec, problem, outcome)
            others = [rerun(scenario, spec, problem, outcome, p) for p in outcome.others]
            first, others = _profile_first(first, others, attacker)
            verdicts[prop] = Verdict(prop, first, others=tuple(others))
        else:
            assert isinstance(outcome, Holds)
            verdicts[prop] = Verdict(
                prop, holds_to=outcome.depth, states=outcome.states, cut=outcome.cut
            )
    return PolicyReport(
        spec=spec,
        promise=spec.promise,
        verdicts=verdicts,
        stats=result.stats,
        alphabet=problem.alphabet.counts(),
        dropped=problem.alphabet.dropped,
        before=scenario.start_layout(problem.start),
        setup=tuple(setup),
        depth=depth,
        attacker=attacker,
    )


def _profile_first(
    first: Counterexample, others: list[Counterexample], attacker: frozenset[str]
) -> tuple[Counterexample, list[Counterexample]]:
    """With an attacker profile beyond ``syscalls``, the counterexample shown
    (and replayed) first is the first of the shortest ones that uses one of
    the profile's own calls, when there is one: the question a profile asks is
    what its capability adds. The others keep their order."""
    if attacker <= DEFAULT_ATTACKER:
        return first, others
    candidates = [first, *others]
    for i, c in enumerate(candidates):
        if any(attacker_of(step.op) in attacker - DEFAULT_ATTACKER for step in c.attack):
            return c, candidates[:i] + candidates[i + 1 :]
    return first, others


def default_workers() -> int:
    """One worker process per core this process may run on
    (``os.sched_getaffinity``; ``os.cpu_count`` where that is missing).

    The search's results do not depend on the number of workers (the same
    states, counts and findings for any number: tested), so this choice is
    only about speed; a busy machine is the user's to account for with
    ``--workers``.
    """
    getaffinity = getattr(os, "sched_getaffinity", None)
    if getaffinity is not None:
        return max(1, len(getaffinity(0)))
    return max(1, os.cpu_count() or 1)


def analyze(
    specs: Sequence[PolicySpec],
    properties: Sequence[Property] = PROPERTIES,
    depth: int = 2,
    scenario: Scenario = DEFAULT_SCENARIO,
    *,
    workers: int | None = None,
    cache: bool = True,
    include_fork: bool = False,
    progress: Callable[[str, int, int, int], None] | None = None,
    attacker: frozenset[str] = DEFAULT_ATTACKER,
    max_states: int | None = DEFAULT_MAX_STATES,
) -> Report:
    """Analyze each policy in ``specs``; returns the whole report."""
    started = time.perf_counter()
    n = default_workers() if workers is None else workers
    reports = []
    for spec in specs:
        hook = None
        if progress is not None:
            name = spec.name

            def hook(level: int, done: int, total: int, name: str = name) -> None:
                assert progress is not None
                progress(name, level, done, total)

        reports.append(
            analyze_policy(
                spec,
                properties,
                depth,
                scenario,
                workers=n,
                cache=cache,
                include_fork=include_fork,
                progress=hook,
                attacker=attacker,
                max_states=max_states,
            )
        )
    return Report(
        scenario,
        depth,
        tuple(properties),
        tuple(reports),
        time.perf_counter() - started,
        attacker=attacker,
    )

"""Analyzer speed: states per second and time to each counterexample.

Measured in one run, side by side:

* **baseline**: the bare model, applying the ``linux`` alphabet to the start
  state (copy + apply + state_key), in calls per second: what a search that
  applies every call to every state can do at best;
* **time to each finding** (goal: finding 1 in under a second);
* **depth 3 for linux** on the default scenario, with one process and with
  two (goal: under a minute on two idle cores), the same states and
  findings either way, and the exact search (no reduction) at depth 2
  against the reduced one.

``--quick`` is a short smoke profile (depth 2, no exact run).
"""

from __future__ import annotations

import os
import sys
import time

from sealkit.analysis import Property, analyze_policy, parse_policy
from sealkit.analysis.analyzer import make_problem
from sealkit.analysis.scenario import DEFAULT_SCENARIO


def bare_model(seconds: float = 2.0) -> float:
    """Alphabet calls applied to copies of the linux start state, per second."""
    problem, _ = make_problem(DEFAULT_SCENARIO, parse_policy("linux"))
    start = problem.start
    ops = problem.alphabet.ops
    done = 0
    t0 = time.perf_counter()
    while time.perf_counter() - t0 < seconds:
        for op in ops:
            twin = start.copy()
            twin.apply(op)
            twin.state_key("p", 0, DEFAULT_SCENARIO.pages)
            twin.state_key("h", 0, DEFAULT_SCENARIO.heap_pages)
        done += len(ops)
    return done / (time.perf_counter() - t0)


FINDINGS = [
    ("1 proposal-v1:munmap mapping", "proposal-v1:munmap", Property.MAPPING),
    ("2 proposal-v1 content", "proposal-v1", Property.CONTENT),
    ("3 chrome-split:unmap permission", "chrome-split:unmap", Property.PERMISSION),
    ("4 linux content", "linux", Property.CONTENT),
]


def time_to_finding(policy: str, prop: Property) -> tuple[float, int]:
    """Seconds from nothing (scenario built, alphabet made) to the re-run counterexample."""
    t0 = time.perf_counter()
    report = analyze_policy(parse_policy(policy), [prop], depth=3, workers=1)
    seconds = time.perf_counter() - t0
    c = report.verdicts[prop].counterexample
    assert c is not None, f"{policy}: no {prop.value} counterexample"
    return seconds, c.length


def deep(policy: str, depth: int, workers: int, cache: bool = True) -> tuple[float, int, int, int]:
    """Wall seconds, states kept, (state, call) pairs covered, calls applied."""
    t0 = time.perf_counter()
    report = analyze_policy(
        parse_policy(policy), [Property.MAPPING, Property.PERMISSION], depth, workers=workers,
        cache=cache,
    )  # fmt: skip
    seconds = time.perf_counter() - t0
    s = report.stats
    for verdict in report.verdicts.values():
        assert verdict.counterexample is None, f"{policy} broken: {verdict.cell()}"
    return seconds, s.states, s.pairs, s.applied


def main(argv: list[str]) -> int:
    quick = "--quick" in argv
    depth = 2 if quick else 3
    print("analyzer benchmark (default scenario)")
    print(f"load average at start: {os.getloadavg()[0]:.2f} on {os.cpu_count()} cores")
    rate = bare_model(0.5 if quick else 2.0)
    print(f"baseline: bare model copy+apply+state_key: {rate:,.0f} calls/s")
    for label, policy, prop in FINDINGS:
        seconds, length = time_to_finding(policy, prop)
        goal = "  (goal < 1 s)" if label.startswith("1 ") else ""
        print(f"finding {label}: {length} call(s) in {seconds:.2f}s{goal}")
    results = {}
    kept = {}
    for workers in (1, 2):
        seconds, states, pairs, applied = deep("linux", depth, workers)
        results[workers] = seconds
        kept[workers] = states
        print(
            f"linux depth {depth}, {workers} process(es): {seconds:.1f}s, {states:,} states "
            f"({states / seconds:,.0f}/s), {pairs:,} (state, call) pairs covered "
            f"({pairs / seconds:,.0f}/s), {applied:,} calls applied"
            + ("  (goal < 60 s)" if depth == 3 and workers == 2 else "")
        )
    assert kept[1] == kept[2], f"states depend on the worker count: {kept}"
    print(
        f"parallel speed-up (1 -> 2 processes): {results[1] / results[2]:.2f}x "
        f"(load average now {os.getloadavg()[0]:.2f}; other work on the cores eats the gain)"
    )
    if not quick:
        exact, states_e, pairs_e, applied_e = deep("linux", 2, 1, cache=False)
        cached, states_c, _, applied_c = deep("linux", 2, 1, cache=True)
        assert states_e == states_c
        print(
            f"linux depth 2, exact search (every call applied): {exact:.1f}s, {applied_e:,} applied; "
            f"cached: {cached:.1f}s, {applied_c:,} applied; speed-up {exact / cached:.1f}x"
        )
        print(
            f"exact search: {pairs_e / exact:,.0f} pairs/s vs bare model {rate:,.0f} calls/s "
            f"(ratio {pairs_e / exact / rate:.2f})"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

"""The analyzer's answer does not depend on how many processes compute it.

The smallest case that showed the bug (found by shrinking the proposal-v3
alphabet while one and two workers disagreed): two calls at depth 3.
``mremap p8 -> p0 MREMAP_DONTUNMAP`` leaves an empty VMA at p8 that keeps
``VM_SEALABLE`` (the scenario mapped p8 sealable); ``mmap p8`` makes one
without it. Their layouts are identical, so a search that keyed its caches on
layouts answered one from the other, and which one it met first (one
process or several) decided the state count: 2 states at depth 2 with one
worker, 3 with two. The search now sees every VMA attribute (``vma_view``).
"""

from __future__ import annotations

import os

import pytest

from sealkit.analysis import parse_policy
from sealkit.analysis import search as search_mod
from sealkit.analysis.alphabet import alphabet_of
from sealkit.analysis.analyzer import default_workers, make_problem
from sealkit.analysis.scenario import DEFAULT_SCENARIO
from sealkit.analysis.search import Problem, search
from sealkit.ops import parse_trace

TWO_CALLS = """\
mmap     p8 1p rw- private|anon|fixed
mremap   p8 1p 1p maymove|fixed|dontunmap p0
"""


def two_call_problem() -> Problem:
    problem, _ = make_problem(DEFAULT_SCENARIO, parse_policy("proposal-v3"))
    ops = [step.op for step in parse_trace(TWO_CALLS)]
    return Problem(
        problem.start, problem.windows, alphabet_of(ops, DEFAULT_SCENARIO.heap_pages),
        problem.properties, problem.protected, problem.promise, problem.key_windows,
    )  # fmt: skip


def test_the_two_states_look_alike_but_differ() -> None:
    problem = two_call_problem()
    mapped, moved = problem.start.copy(), problem.start.copy()
    mapped.apply(problem.alphabet.ops[0])
    moved.apply(problem.alphabet.ops[1])
    # Layouts cannot tell them apart...
    assert mapped.layout("p", 8, 9) == moved.layout("p", 8, 9)
    # ...but the VMAs differ (VM_SEALABLE), and so does what mmap p8 does to them.
    assert mapped.vma_view("p", 8, 9)[0][2] != moved.vma_view("p", 8, 9)[0][2]
    again = moved.copy()
    again.apply(problem.alphabet.ops[0])
    assert again.vma_view("p", 8, 9)[0][2] == mapped.vma_view("p", 8, 9)[0][2]


@pytest.mark.parametrize("cache", [True, False], ids=["reduced", "exact"])
def test_two_calls_give_the_same_states_for_any_worker_count(
    monkeypatch: pytest.MonkeyPatch, cache: bool
) -> None:
    monkeypatch.setattr(search_mod, "_MIN_PARALLEL", 1)  # split even tiny levels
    problem = two_call_problem()
    results = [search(problem, 3, workers=w, cache=cache, digest=True) for w in (1, 2, 3)]
    first = results[0]
    # The exact search agrees: three distinct states two calls away.
    assert first.stats.levels == [1, 2, 3]
    for other in results[1:]:
        assert other.stats.levels == first.stats.levels
        assert other.stats.digest == first.stats.digest
        assert other.outcomes == first.outcomes


@pytest.mark.parametrize("cores", [1, 3, 8])
def test_workers_default_to_the_cores_available(
    monkeypatch: pytest.MonkeyPatch, cores: int
) -> None:
    # Results do not depend on the worker count, so nothing caps it: one per
    # core this process may run on, whatever the load.
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: set(range(cores)), raising=False)
    monkeypatch.setattr(os, "getloadavg", lambda: (50.0, 50.0, 50.0))
    assert default_workers() == cores

"""A call's footprint holds every slot it can change.

``MADV_GUARD_INSTALL`` does not split the VMA it meets: it sets
``VM_MAYBE_GUARD`` (the ``gu`` VmFlag the model tracks) on all of it, so a
guard installed on one page changes the entries of the VMA's other pages.
A footprint of the named pages only made the reduced search stop with
"changed slots outside its footprint" (and, had the check not been there,
cache effects that are wrong for the pages it did not look at). Here the
reduced search must find exactly what the exact one finds.
"""

from __future__ import annotations

import pytest

from sealkit.analysis import Property, parse_policy
from sealkit.analysis.alphabet import alphabet_of
from sealkit.analysis.analyzer import make_problem
from sealkit.analysis.scenario import DEFAULT_SCENARIO
from sealkit.analysis.search import Found, Holds, Problem, search
from sealkit.ops import parse_trace

CALLS = """\
madvise  p5 2p guard_install
madvise  p0 1p guard_install
mprotect p6 1p r--
munmap   p1 1p
madvise  p0 2p dontneed
"""


def problem_for(policy: str) -> Problem:
    problem, _ = make_problem(DEFAULT_SCENARIO, parse_policy(policy))
    ops = [step.op for step in parse_trace(CALLS)]
    return Problem(
        problem.start, problem.windows, alphabet_of(ops, DEFAULT_SCENARIO.heap_pages),
        problem.properties, problem.protected, problem.promise, problem.key_windows,
    )  # fmt: skip


@pytest.mark.parametrize("policy", ["none", "linux", "mimmutable"])
def test_guard_install_on_part_of_a_vma_reduced_equals_exact(policy: str) -> None:
    problem = problem_for(policy)
    exact = search(problem, 3, cache=False)
    fast = search(problem, 3, cache=True)
    for prop in Property:
        a, b = exact.outcomes[prop], fast.outcomes[prop]
        assert type(a) is type(b), (prop, a, b)
        if isinstance(a, Found):
            assert isinstance(b, Found)
            assert (a.depth, a.alternatives) == (b.depth, b.alternatives), prop
        else:
            assert isinstance(b, Holds) and a.depth == b.depth
    assert fast.stats.levels[:-1] == exact.stats.levels[:-1]

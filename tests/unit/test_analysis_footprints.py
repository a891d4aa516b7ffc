"""The search leaves the sticky ``gu`` flag out of its states, and loses nothing.

``MADV_GUARD_INSTALL`` sets ``VM_MAYBE_GUARD`` (the ``gu`` VmFlag) on the
whole VMA it meets, without a split, and a merge ORs the flag into the merged
VMA while the merge checks ignore it. Kept in the search's page vectors, it
made a guard on two pages of a larger VMA, or ``mseal p8 1p`` after ``madvise
p8 1p guard_install`` (its neighbour merged), change pages outside the
call's footprint, and the search stopped ("locality assumption broken").
Nothing in the model reads the flag, so states that differ only in it have
the same future: shown here call by call, then on the search itself.
"""

from __future__ import annotations

import pytest

from sealkit.analysis import Property, parse_policy
from sealkit.analysis.alphabet import alphabet_of, op_pages
from sealkit.analysis.analyzer import make_problem
from sealkit.analysis.scenario import DEFAULT_SCENARIO
from sealkit.analysis.search import Found, Holds, Problem, search
from sealkit.layout import Layout
from sealkit.model import AddressSpace
from sealkit.model.vma import VM_STICKY
from sealkit.ops import parse_trace

CALLS = """\
madvise  p5 2p guard_install
madvise  p0 1p guard_install
mprotect p6 1p r--
munmap   p1 1p
madvise  p0 2p dontneed
madvise  p8 1p guard_install
mseal    p8 1p
mprotect p9 1p r--
"""


def _sticky_everywhere(space: AddressSpace) -> AddressSpace:
    twin = space.copy()
    for v in list(twin.vmas):
        twin.set_flags(v, v.flags | VM_STICKY)
    return twin


def _without_gu(layout: Layout) -> str:
    return layout.text().replace(",gu", "")


@pytest.mark.parametrize("policy", ["linux", "mimmutable", "proposal-v3", "none"])
def test_no_call_reads_the_sticky_flag(policy: str) -> None:
    problem, _ = make_problem(DEFAULT_SCENARIO, parse_policy(policy))
    start = problem.start
    assert isinstance(start, AddressSpace)
    everything, _ = make_problem(
        DEFAULT_SCENARIO, parse_policy(policy), include_fork=True,
        attacker=frozenset({"syscalls", "procmem", "ptrace", "file-write"}),
    )  # fmt: skip
    ops = list(everything.alphabet.ops)
    assert any(op.NAME == "fork" for op in ops) and any(op.NAME == "poke" for op in ops)
    states = [start]
    for step in parse_trace("madvise p0 12p guard_install\nmprotect p3 1p r--\n"):
        s = start.copy()
        s.apply(step.op)
        states.append(s)
    windows = [("p", 0, DEFAULT_SCENARIO.pages), ("h", 0, DEFAULT_SCENARIO.heap_pages)]
    for state in states:
        other = _sticky_everywhere(state)
        for op in ops:
            a, b = state.copy(), other.copy()
            ra, rb = a.apply(op), b.apply(op)
            assert ra == rb, op
            for zone, lo, hi in windows:
                assert _without_gu(a.layout(zone, lo, hi)) == _without_gu(b.layout(zone, lo, hi))
            assert a.backing_view() == b.backing_view(), op


def problem_for(policy: str) -> Problem:
    problem, _ = make_problem(DEFAULT_SCENARIO, parse_policy(policy))
    ops = [step.op for step in parse_trace(CALLS)]
    return Problem(
        problem.start, problem.windows, alphabet_of(ops, DEFAULT_SCENARIO.heap_pages),
        problem.properties, problem.protected, problem.promise, problem.key_windows,
    )  # fmt: skip


@pytest.mark.parametrize("policy", ["none", "linux", "mimmutable"])
def test_guards_and_merges_beside_them_reduced_equals_exact(policy: str) -> None:
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


def test_only_calls_without_a_memory_range_act_on_the_whole_space() -> None:
    # process_madvise names its ranges in a vector, not in address fields:
    # taken for a whole-space call, its 621 calls were applied to every
    # state in full (linux depth 2 took 7 times as long, same findings).
    problem, _ = make_problem(
        DEFAULT_SCENARIO, parse_policy("linux"), include_fork=True,
        attacker=frozenset({"syscalls", "procmem", "ptrace", "file-write"}),
    )  # fmt: skip
    alphabet = problem.alphabet
    whole = {alphabet.ops[i].NAME for i, g in enumerate(alphabet.group_of) if g < 0}
    assert whole == {"fork", "file_pwrite", "punch", "ftruncate"}
    (op,) = [step.op for step in parse_trace("process_madvise dontneed p3:1p p5:2p\n")]
    assert op_pages(op) == {("p", 3), ("p", 5), ("p", 6)}

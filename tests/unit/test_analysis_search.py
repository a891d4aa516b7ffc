"""The breadth-first search and the alphabet, on a toy address space.

The toy (tests/unit/toy_space.py) has a configurable seal, so each test knows
the answer from first principles; the same engine runs on the real model in
test_analysis_findings.py.
"""

from __future__ import annotations

import pytest

from sealkit.analysis import search as search_mod
from sealkit.analysis.alphabet import build_alphabet, points_of, ranges_of
from sealkit.analysis.properties import PermissionPromise, Property
from sealkit.analysis.scenario import PolicySpec
from sealkit.analysis.search import Found, Holds, Problem, search
from sealkit.flags import Madv, Prot
from sealkit.layout import Layout
from sealkit.ops import (
    MODEL_BASES,
    Madvise,
    Mmap,
    Mprotect,
    Mseal,
    Munmap,
    Write,
    format_op,
    parse_trace,
)

from .toy_space import ToySpace

SETUP = """\
mmap     p0 4p rw- private|anon|fixed
write    p0 4p
mprotect p1 2p r--
mseal    p1 2p
"""
PROTECTED = frozenset({("p", 1), ("p", 2)})


def toy_problem(blocks: set[str], props: tuple[Property, ...] = tuple(Property)) -> Problem:
    space = ToySpace(frozenset(blocks))
    for step in parse_trace(SETUP):
        assert space.apply(step.op) >= 0
    start = space.layout("p", 0, 6)
    alphabet = build_alphabet(
        start, PolicySpec("linux"), files={}, heap_pages=0, probe=lambda op: space.copy().apply(op)
    )
    return Problem(
        start=space,
        windows=(("p", 0, 6),),
        alphabet=alphabet,
        properties=props,
        protected=PROTECTED,
        promise=PermissionPromise.NO_CHANGE,
    )


def found_ops(problem: Problem, outcome: Found | Holds) -> list[str]:
    assert isinstance(outcome, Found), outcome
    return [format_op(problem.alphabet.ops[i]) for i in outcome.path]


# ------------------------------------------------------------------ alphabet


def test_points_and_ranges_come_from_the_layout() -> None:
    layout = Layout.parse("[0,1) rw-p anon a\n[1,3) r--p,sl anon bc\n[4,6) rw-p anon ef", hi=7)
    # run and hole boundaries, plus the middle of every run of two pages or more
    assert points_of(layout) == [0, 1, 2, 3, 4, 5, 6, 7]
    assert ranges_of([0, 1, 3]) == [(0, 1), (0, 3), (1, 3)]


def test_alphabet_has_every_call_and_drops_what_the_world_lacks() -> None:
    problem = toy_problem({"munmap"})
    counts = problem.alphabet.counts()
    # The toy lacks mremap, process_madvise, brk, mlock...: the probe dropped them.
    assert set(counts) == {"mmap", "munmap", "mprotect", "madvise", "mseal", "write"}
    assert {"mremap", "brk", "mlock", "process_madvise"} <= set(problem.alphabet.dropped)
    ranges = len(ranges_of(points_of(problem.start.layout("p", 0, 6))))
    assert counts["madvise"] == ranges * len(Madv)
    assert counts["mprotect"] == ranges * 5
    assert counts["write"] == ranges
    # A call's window is the pages it names; its group's widened window adds
    # one page either side.
    a = problem.alphabet
    for op, window, g in zip(a.ops, a.windows, a.group_of, strict=True):
        if isinstance(op, Munmap):
            first = (op.addr - MODEL_BASES.arena) // 4096
            pages = op.length // 4096
            assert window == {("p", p) for p in range(first, first + pages)}
            assert a.group_named[g] == window
            assert a.group_windows[g] == {("p", p) for p in range(first - 1, first + pages + 1)}
    assert len(a.groups) == ranges


def test_alphabet_has_no_fork_unless_asked() -> None:
    space = ToySpace()
    for step in parse_trace(SETUP):
        space.apply(step.op)
    start = space.layout("p", 0, 6)
    plain = build_alphabet(start, PolicySpec("linux"), {}, heap_pages=0)
    forked = build_alphabet(start, PolicySpec("linux"), {}, heap_pages=0, include_fork=True)
    assert "fork" not in plain.counts()
    assert forked.counts()["fork"] == 1
    assert forked.windows[-1] is None and forked.group_of[-1] == -1


def test_alphabet_seal_variants_follow_the_design() -> None:
    start = Layout.parse("[0,2) rw-p anon ab", hi=2)
    v1 = build_alphabet(start, PolicySpec("proposal-v1", 0x1F), {}, heap_pages=0)
    # three ranges ([0,1), [0,2), [1,2)) x (five single types + all five)
    assert v1.counts()["mseal_v1"] == 3 * 6
    split = build_alphabet(start, PolicySpec("chrome-split", 3), {}, heap_pages=0)
    assert split.counts()["mseal_split"] == 3 * 3
    # `none` keeps Linux's mseal call, which seals nothing (the model's baseline).
    none = build_alphabet(start, PolicySpec("none"), {}, heap_pages=0)
    assert {"mseal_v1", "mseal_v3", "mimmutable", "mseal_split"}.isdisjoint(none.counts())
    assert none.counts()["mseal"] == 3


# ------------------------------------------------------------------ search


def test_replacement_found_in_one_call_when_only_munmap_is_sealed() -> None:
    problem = toy_problem({"munmap"}, (Property.MAPPING,))
    result = search(problem, 2)
    outcome = result.outcomes[Property.MAPPING]
    assert isinstance(outcome, Found) and outcome.depth == 1
    [op] = [problem.alphabet.ops[i] for i in outcome.path]
    assert isinstance(op, Mmap)
    assert outcome.alternatives["mmap"] > 0 and "munmap" not in outcome.alternatives


def test_everything_holds_when_the_seal_blocks_everything() -> None:
    problem = toy_problem({"munmap", "mmap", "mprotect", "discard_ro"})
    result = search(problem, 2)
    for prop in Property:
        outcome = result.outcomes[prop]
        assert isinstance(outcome, Holds), outcome
        assert outcome.depth == 2
        assert outcome.states == result.stats.levels[0] + result.stats.levels[1]
    assert result.stats.levels[0] == 1 and result.stats.levels[1] > 10


def test_shortest_trace_needs_two_calls() -> None:
    # mprotect is not sealed: making the page writable first lets DONTNEED zero it.
    problem = toy_problem({"munmap", "mmap", "discard_ro"}, (Property.CONTENT, Property.PERMISSION))
    result = search(problem, 3)
    perm = result.outcomes[Property.PERMISSION]
    assert isinstance(perm, Found) and perm.depth == 1
    ops = found_ops(problem, result.outcomes[Property.CONTENT])
    assert len(ops) == 2
    first, second = (problem.alphabet.ops[i] for i in result.outcomes[Property.CONTENT].path)  # type: ignore[union-attr]
    assert isinstance(first, Mprotect) and first.prot & Prot.WRITE
    assert isinstance(second, Madvise) and second.advice == Madv.DONTNEED


def test_depth_zero_violation_is_reported() -> None:
    problem = toy_problem({"munmap"}, (Property.MAPPING,))
    broken = Problem(
        problem.start, problem.windows, problem.alphabet, problem.properties,
        frozenset({("p", 5)}) | problem.protected, problem.promise,
    )  # fmt: skip
    # page 5 is unmapped at the start: nothing to keep, so still not broken at depth 0
    assert search(broken, 0).outcomes[Property.MAPPING] == Holds(Property.MAPPING, 0, 0)


@pytest.mark.parametrize(
    "blocks",
    [
        {"munmap"},
        {"munmap", "mmap", "discard_ro"},
        {"munmap", "mmap", "mprotect", "discard_ro"},
        set(),
    ],
)
def test_cache_agrees_with_exact_search(blocks: set[str]) -> None:
    problem = toy_problem(blocks)
    exact = search(problem, 2, cache=False)
    cached = search(problem, 2, cache=True)
    assert exact.outcomes == cached.outcomes
    assert exact.stats.levels == cached.stats.levels
    if exact.stats.expanded > 1:  # a second level was searched: the cache saved applies
        assert cached.stats.applied < exact.stats.applied


def test_workers_agree_with_one_process(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(search_mod, "_MIN_PARALLEL", 1)
    problem = toy_problem({"munmap", "mmap", "mprotect", "discard_ro"})
    one = search(problem, 2, workers=1)
    two = search(problem, 2, workers=2)
    assert one.outcomes == two.outcomes
    assert one.stats.levels == two.stats.levels
    assert two.stats.workers == 2


def test_progress_reports_each_level() -> None:
    seen: list[tuple[int, int, int]] = []
    problem = toy_problem({"munmap", "mmap", "mprotect", "discard_ro"})
    search(problem, 2, progress=lambda *a: seen.append(a))
    assert seen[0] == (1, 0, 1)
    assert seen[-1][0] == 2 and seen[-1][1] == seen[-1][2]


def test_write_and_munmap_are_the_ops_they_claim() -> None:
    # guard against reordering surprises: op-language order within the alphabet
    problem = toy_problem({"munmap"})
    names = [op.NAME for op in problem.alphabet.ops]
    assert names.index("mmap") < names.index("munmap") < names.index("mprotect")
    assert names.index("madvise") < names.index("mseal") < names.index("write")
    assert all(isinstance(op, Write) for op in problem.alphabet.ops if op.NAME == "write")
    assert any(isinstance(op, Mseal) for op in problem.alphabet.ops)

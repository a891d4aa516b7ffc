"""The search's state budget: a deep search stops, says so, and never
passes it (``sealkit analyze --depth 4`` of the linux policy kept states
until the kernel's OOM killer ended it at 14 GB); emptying the answer caches
changes no result."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Callable
from pathlib import Path

import jsonschema
import pytest

import sealkit
from sealkit.analysis import parse_policy
from sealkit.analysis import search as search_mod
from sealkit.analysis.alphabet import alphabet_of
from sealkit.analysis.analyzer import make_problem
from sealkit.analysis.scenario import DEFAULT_SCENARIO
from sealkit.analysis.search import Found, Holds, Problem, search
from sealkit.ops import format_op

Cli = Callable[..., subprocess.CompletedProcess[str]]


def _problem(policy: str) -> Problem:
    problem, _ = make_problem(DEFAULT_SCENARIO, parse_policy(policy))
    return problem


def _sliced() -> Problem:
    # Every 25th call of proposal-v3's alphabet: content breaks in one call,
    # mapping and permission hold to depth 3 over 1 + 38 + 718 states.
    problem = _problem("proposal-v3")
    ops = problem.alphabet.ops[::25]
    return Problem(
        problem.start, problem.windows, alphabet_of(ops, DEFAULT_SCENARIO.heap_pages),
        problem.properties, problem.protected, problem.promise, problem.key_windows,
    )  # fmt: skip


@pytest.fixture(scope="module")
def v3() -> Problem:
    return _sliced()


@pytest.fixture(scope="module")
def full(v3: Problem) -> search_mod.SearchResult:
    result = search(v3, 3, workers=1, max_states=None, digest=True)
    assert result.stats.levels == [1, 38, 718]
    assert [type(o) for o in result.outcomes.values()] == [Holds, Holds, Found]
    return result


def test_a_budget_that_fits_changes_nothing(v3: Problem, full: search_mod.SearchResult) -> None:
    total = full.stats.states
    assert total > 100 and full.stats.cut == 0
    exact = search(v3, 3, workers=1, max_states=total, digest=True)
    assert exact.stats.cut == 0
    assert exact.outcomes == full.outcomes
    assert exact.stats.digest == full.stats.digest


@pytest.mark.parametrize("workers", [1, 2])
def test_one_state_over_the_budget_stops_before_the_next_depth(
    monkeypatch: pytest.MonkeyPatch, v3: Problem, full: search_mod.SearchResult, workers: int
) -> None:
    monkeypatch.setattr(search_mod, "_MIN_PARALLEL", 1)  # split even tiny levels
    cut = search(v3, 3, workers=workers, max_states=full.stats.states - 1)
    # Every call of depth 2 was judged, but keeping its states would pass
    # the budget by one: depth 3 is not tried.
    assert cut.stats.cut == 3
    assert cut.stats.levels == [1, 38]
    for prop, outcome in full.outcomes.items():
        got = cut.outcomes[prop]
        if isinstance(outcome, Found):
            assert got == outcome
        else:
            assert got == Holds(prop, 2, 39, cut=3)


@pytest.mark.parametrize("workers", [1, 2])
def test_what_breaks_at_the_cut_depth_is_found(
    monkeypatch: pytest.MonkeyPatch, v3: Problem, full: search_mod.SearchResult, workers: int
) -> None:
    monkeypatch.setattr(search_mod, "_MIN_PARALLEL", 1)
    # The start state alone fills a budget of one: depth 1 is judged (content
    # breaks there), its states are not kept.
    one = search(v3, 3, workers=workers, max_states=1)
    assert one.stats.levels == [1] and one.stats.cut == 2
    for prop, outcome in full.outcomes.items():
        got = one.outcomes[prop]
        assert got == (outcome if isinstance(outcome, Found) else Holds(prop, 1, 1, cut=2))


def test_a_budget_below_one_is_refused(v3: Problem) -> None:
    with pytest.raises(ValueError, match="at least 1"):
        search(v3, 2, max_states=0)


def test_emptied_caches_give_the_same_states_and_findings(
    monkeypatch: pytest.MonkeyPatch, full: search_mod.SearchResult
) -> None:
    monkeypatch.setattr(search_mod, "CACHE_LIMIT", 3)
    small = search(_sliced(), 3, workers=1, max_states=None, digest=True)
    assert small.outcomes == full.outcomes
    assert small.stats.digest == full.stats.digest
    # The caches answered less: the model ran more often.
    assert small.stats.applied > full.stats.applied


def _validate(text: str) -> dict[str, object]:
    schema_path = Path(sealkit.__file__).parent / "data" / "analyze.schema.json"
    doc: dict[str, object] = json.loads(text)
    jsonschema.validate(doc, json.loads(schema_path.read_text()))
    return doc


def test_cli_reports_a_cut_search(sealkit_cli: Cli) -> None:
    proc = sealkit_cli(
        "analyze", "--policy", "linux", "--depth", "2", "--max-states", "100", "--json",
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert lines == [
        "sealkit analyze: linux: depth 2 not finished: it needs more than 100 states "
        "(--max-states); results stand to depth 1"
    ]
    doc = _validate(proc.stdout)
    (linux,) = doc["policies"]  # type: ignore[misc]
    # Depth 1's 335 states do not fit in 100: every call of depth 1 is
    # judged, depth 2 is not tried.
    assert linux["search"]["cut_at"] == 2 and linux["search"]["max_states"] == 100
    assert linux["search"]["states_per_level"] == [1]
    mapping = linux["verdicts"]["mapping"]
    assert mapping["holds_to"] == 1 and mapping["cut_at"] == 2
    assert mapping["summary"] == "holds to depth 1 (1 states); depth 2 cut short (state budget)"
    # Content breaks in one call: found before the cut, so it stands.
    assert linux["verdicts"]["content"]["broken"] and linux["verdicts"]["content"]["length"] == 1


def test_cli_refuses_a_budget_below_one(sealkit_cli: Cli) -> None:
    proc = sealkit_cli("analyze", "--max-states", "0")
    assert proc.returncode == 2 and proc.stdout == ""
    assert proc.stderr.strip() == "sealkit analyze: --max-states must be at least 1, got 0"


def _merge_as_coded() -> Problem:
    # proposal-v1 as coded lets three calls replace a sealed mapping
    # (docs/debate.md): every 40th call of its alphabet and those three.
    problem = _problem("proposal-v1:merge-as-coded")
    want = {"mprotect p0 1p r--", "madvise p0 2p random", "mmap p0 2p --- private|anon|fixed"}
    ops = problem.alphabet.ops
    three = [op for op in ops if " ".join(format_op(op).split()) in want]
    assert len(three) == 3
    sliced = list(dict.fromkeys([*ops[::40], *three]))
    return Problem(
        problem.start, problem.windows, alphabet_of(sliced, DEFAULT_SCENARIO.heap_pages),
        problem.properties, problem.protected, problem.promise, problem.key_windows,
    )  # fmt: skip


@pytest.mark.parametrize("workers", [1, 2])
def test_after_the_cut_the_level_is_judged_as_in_full(
    monkeypatch: pytest.MonkeyPatch, workers: int
) -> None:
    monkeypatch.setattr(search_mod, "_MIN_PARALLEL", 1)
    problem = _merge_as_coded()
    three = search(problem, 3, workers=1, max_states=None)
    broken = {p: o for p, o in three.outcomes.items() if isinstance(o, Found) and o.depth == 3}
    assert broken and three.stats.levels == [1, 22, 242]
    # Asked for depth 4, the search keeps depth 2's states and ten of depth
    # 3's, then judges the rest of depth 3's calls without keeping states:
    # the same findings, with the same examples and counts, as the full
    # depth-3 search.
    cut = search(problem, 4, workers=workers, max_states=1 + 22 + 242 + 10)
    assert cut.stats.cut == 4 and cut.stats.levels == [1, 22, 242]
    assert cut.outcomes == three.outcomes

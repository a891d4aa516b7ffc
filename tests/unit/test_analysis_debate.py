"""docs/debate.md still says what the analyzer says.

The command that writes the document (``debate.COMMAND``) writes the results
behind its table to ``docs/debate-results.json`` in the same run. Here, fast:
the committed table and the unsettled-rules section are exactly what the
command renders from that record; every counterexample in the document
agrees with the record; the traces found within two calls, the fork aside,
the scenario and the alphabet are regenerated and compared text for text;
deeper traces are re-run from scratch and must still break what they say.
``tests/slow/test_debate_table.py`` regenerates every row of the record
(and the deep traces) at the document's depth. The kernel replay section
depends on the machine and is not compared.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from sealkit.analysis import (
    DEBATE_POLICIES,
    DEFAULT_SCENARIO,
    Property,
    analyze,
    check,
    debate,
    parse_policy,
)
from sealkit.ops import parse_trace

DOCS = Path(__file__).resolve().parents[2] / "docs"
DOC = DOCS / "debate.md"
BLOCKS = debate.extract(DOC.read_text())
RECORD = json.loads((DOCS / debate.RECORD).read_text())
TRACES = sorted(name for name in BLOCKS if name.startswith("trace:"))
SHALLOW = [name for name in TRACES if debate.trace_depth(BLOCKS[name]) <= 2]
DEEP = [name for name in TRACES if debate.trace_depth(BLOCKS[name]) > 2]


def test_the_document_has_every_generated_section() -> None:
    forks = {f"fork:{name}:mapping" for name in debate.FORK_POLICIES}
    assert {"table", "unsettled", "scenario", "alphabet", "replay", *forks} <= set(BLOCKS)
    assert len(TRACES) >= 10
    for name, body in BLOCKS.items():
        assert body.strip(), f"section {name} is empty: run {debate.COMMAND}"
    assert debate.COMMAND in DOC.read_text()


def test_the_record_is_the_documents_analysis() -> None:
    assert RECORD["command"] == debate.COMMAND
    assert RECORD["depth"] == debate.DOC_DEPTH
    assert RECORD["scenario"] == DEFAULT_SCENARIO.name
    assert RECORD["properties"] == [p.value for p in Property]
    assert [row["policy"] for row in RECORD["rows"]] == list(DEBATE_POLICIES)
    for row in RECORD["rows"]:
        assert row["promise"] == parse_policy(row["policy"]).promise.value


def test_the_committed_table_is_what_the_command_renders() -> None:
    assert BLOCKS["table"] == debate.render_record(RECORD)


def test_the_unsettled_section_is_what_the_command_renders() -> None:
    assert BLOCKS["unsettled"] == debate.render_unsettled(RECORD)
    keys = {key for key, _, _ in debate.unsettled_pairs(list(DEBATE_POLICIES))}
    assert keys == {"V1-3", "M2", "C2"}


def _attack(block: str) -> list[str]:
    m = re.search(r"```\n(.*?)```", block, re.S)
    assert m is not None
    return [" ".join(line.split()) for line in m.group(1).splitlines()]


def test_every_broken_cell_has_its_trace_and_every_trace_its_cell() -> None:
    cells = {}
    for row in RECORD["rows"]:
        for prop, cell in row["verdicts"].items():
            if "attack" in cell:
                cells[f"trace:{row['policy']}:{prop}"] = cell
    assert sorted(cells) == TRACES
    for name, cell in cells.items():
        assert _attack(BLOCKS[name]) == cell["attack"], name
        assert debate.trace_depth(BLOCKS[name]) == cell["length"] == len(cell["attack"])
        assert f"({', '.join(cell['kinds'])})" in BLOCKS[name].splitlines()[0], name


@pytest.mark.parametrize("name", SHALLOW)
def test_trace_matches_the_analyzer(name: str) -> None:
    block = BLOCKS[name]
    fresh = debate.trace_block(name, debate.trace_depth(block), workers=1)
    assert fresh is not None, f"{name}: no longer broken at depth {debate.trace_depth(block)}"
    assert fresh == block


@pytest.mark.parametrize("name", DEEP)
def test_deep_trace_still_breaks_what_it_says(name: str) -> None:
    """Re-run the attack from scratch on the model; the search that found it
    (and that it is shortest) is re-done by tests/slow/test_debate_table.py."""
    policy, _, prop = name.removeprefix("trace:").rpartition(":")
    spec = parse_policy(policy)
    space, _ = DEFAULT_SCENARIO.build(spec)
    lo, hi = 0, DEFAULT_SCENARIO.pages
    before = space.layout("p", lo, hi)
    for step in parse_trace("\n".join(_attack(BLOCKS[name]))):
        assert space.apply(step.op) == step.result, step
    violation = check(
        Property(prop), before, space.layout("p", lo, hi), DEFAULT_SCENARIO.protected, spec.promise
    )
    assert violation is not None
    assert BLOCKS[name].startswith(f"`{policy}`, {prop} integrity: {violation.summary()}.")


def test_fork_aside_matches_the_analyzer() -> None:
    fork = debate.fork_report(2, workers=1)
    fresh = debate.fork_blocks(fork)
    for name in debate.FORK_POLICIES:
        assert fresh[f"fork:{name}:mapping"] == BLOCKS[f"fork:{name}:mapping"], name


def test_scenario_and_alphabet_sections_match() -> None:
    report = analyze([parse_policy("linux")], [Property.CONTENT], depth=1, workers=1)
    assert debate.render_scenario(report) == BLOCKS["scenario"]
    assert debate.render_alphabet(report) == BLOCKS["alphabet"]
    assert report.scenario is DEFAULT_SCENARIO


def test_table_broken_cells_match_the_traces() -> None:
    def cells(line: str) -> list[str]:
        return [c.strip().replace("\\|", "|") for c in re.split(r"(?<!\\)\|", line)]

    rows = {
        cells(line)[1].strip("`"): cells(line)[3:-1] for line in BLOCKS["table"].splitlines()[2:]
    }
    props = [p.value for p in Property]
    for name in TRACES:
        policy, _, prop = name.removeprefix("trace:").rpartition(":")
        cell = rows[policy][props.index(prop)]
        attack = re.search(r"```\n(.*?)```", BLOCKS[name], re.S)
        assert attack is not None
        calls = [" ".join(line.split()) for line in attack.group(1).splitlines()]
        assert cell.startswith("**broken**"), (name, cell)
        assert all(f"`{c}`" in cell for c in calls), (name, cell)
    # A cell without a trace section holds.
    for policy, cells in rows.items():
        for prop, cell in zip(props, cells, strict=True):
            if f"trace:{policy}:{prop}" not in BLOCKS:
                assert cell.startswith(f"holds to depth {debate.DOC_DEPTH} ("), (policy, prop, cell)


def test_what_no_seal_covers_matches_the_analyzer() -> None:
    # The "What no seal covers" section: every design, every attacker
    # capability, content integrity at depth 1; and the command it names.
    assert "nocover" in BLOCKS
    fresh = debate.render_nocover(debate.nocover_report(workers=1))
    assert fresh == BLOCKS["nocover"]
    assert debate.NOCOVER_COMMAND in DOC.read_text()
    rows = [line for line in BLOCKS["nocover"].splitlines() if line.startswith("| `")]
    assert len(rows) == len(DEBATE_POLICIES)
    for row in rows:
        assert "`pwrite_mem " in row and "`poke " in row and "`file_pwrite f2 " in row, row

"""docs/debate.md still says what the analyzer says.

Every counterexample in the document (``trace:`` and ``fork:`` sections),
the scenario and the alphabet sections, and the table's broken cells are
regenerated here and compared text for text; they are short searches. The
table's "holds to depth 3" cells take minutes; tests/slow/test_analysis_depth.py
re-derives the linux and mimmutable ones. The kernel
replay section depends on the machine and is not compared.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from sealkit.analysis import (
    DEBATE_POLICIES,
    DEFAULT_SCENARIO,
    Property,
    analyze,
    debate,
    parse_policy,
)

DOC = Path(__file__).resolve().parents[2] / "docs" / "debate.md"
BLOCKS = debate.extract(DOC.read_text())
TRACES = sorted(name for name in BLOCKS if name.startswith("trace:"))


def test_the_document_has_every_generated_section() -> None:
    assert {"table", "scenario", "alphabet", "replay", "fork:linux:mapping"} <= set(BLOCKS)
    assert len(TRACES) >= 10
    for name, body in BLOCKS.items():
        assert body.strip(), f"section {name} is empty: run {debate.COMMAND}"
    assert debate.COMMAND in DOC.read_text()


@pytest.mark.parametrize("name", TRACES)
def test_trace_matches_the_analyzer(name: str) -> None:
    block = BLOCKS[name]
    fresh = debate.trace_block(name, debate.trace_depth(block), workers=1)
    assert fresh is not None, f"{name}: no longer broken at depth {debate.trace_depth(block)}"
    assert fresh == block


def test_fork_aside_matches_the_analyzer() -> None:
    fork = debate.fork_report(2, workers=1)
    assert debate.fork_blocks(fork)["fork:linux:mapping"] == BLOCKS["fork:linux:mapping"]


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

"""The repository's documents stand on their own.

Every reference a reader meets must be followable inside the repository or
to a primary source: no file may point at notes that are not in it (the
research notes the project started from), and the project's own reference
(``docs/reference/``) must hold what is cited from it: each ``linux.md
rule N`` exists, each ``#anchor`` is a heading, each scenario named is one.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from sealkit.fidelity.conformance import load_scenarios

ROOT = Path(__file__).resolve().parents[2]
REFERENCE = ROOT / "docs" / "reference"
FILES = sorted(
    [
        *(p for p in (ROOT / "src" / "sealkit").rglob("*") if p.suffix in (".py", ".c", ".toml")),
        *(ROOT / "docs").rglob("*.md"),
        *(p for p in (ROOT / "tests").rglob("*.py") if p.name != Path(__file__).name),
        *(ROOT / "benchmarks").glob("*.py"),
        ROOT / "README.md",
        ROOT / "CONTRIBUTING.md",
    ]
)

# Written in pieces so that this file does not match itself.
OUTSIDE = [
    ("a spec/ note", re.compile(r"(?<![\w.-])" + "spec" + r"/")),
    ("the kernel-behaviour note", re.compile("kernel" + "[-_]behaviour")),
    ("the other-systems note", re.compile("other" + "-systems")),
    ("the linux-mseal note", re.compile(r"\blinux" + r"-mseal\b(?!\()")),
    ("design.md", re.compile(r"\bdesign" + r"\.md\b")),
    ("/work/shared", re.compile("/work" + "/shared")),
    ("an issue report", re.compile(r"report of " + r"issue \d+", re.I)),
    ("a spec rule", re.compile(r"\bspec" + r" (rule|§|\d)")),
]


def test_no_file_points_outside_the_repository() -> None:
    found = []
    for path in FILES:
        text = path.read_text(errors="replace")
        for what, pattern in OUTSIDE:
            for m in pattern.finditer(text):
                line = text.count("\n", 0, m.start()) + 1
                found.append(f"{path.relative_to(ROOT)}:{line}: {what}: {m.group(0)!r}")
    assert found == []


def test_the_lint_catches_what_it_looks_for() -> None:
    samples = [
        "see " + "spec" + "/kernel-behaviour.md",
        "(" + "other" + "-systems §2.3)",
        "the report " + "of issue 3",
        "spec" + " rule 5",
        "design" + ".md's ideas",
        "/work" + "/shared/spec",
    ]
    for sample in samples:
        assert any(p.search(sample) for _, p in OUTSIDE), sample
    for fine in ["docs/reference/designs.md", "inspect/", "PolicySpec", "linux.md rule 5"]:
        assert not any(p.search(fine) for _, p in OUTSIDE), fine


def _anchors(path: Path) -> set[str]:
    """GitHub's anchors for the headings of a Markdown file."""
    out = set()
    for line in path.read_text().splitlines():
        if line.startswith("#"):
            title = line.lstrip("#").strip().lower()
            title = re.sub(r"[^\w\- ]", "", title)
            out.add(title.replace(" ", "-"))
    return out


LINUX_RULES = {
    int(n) for n in re.findall(r"^### Rule (\d+)\.", (REFERENCE / "linux.md").read_text(), re.M)
}


def test_linux_reference_numbers_its_rules() -> None:
    assert set(range(1, 19)) == LINUX_RULES


def test_every_cited_linux_rule_exists() -> None:
    bad = []
    for path in FILES:
        text = path.read_text(errors="replace")
        for m in re.finditer(r"linux\.md\)?,? rules? ([\d, and-]+\d)", text):
            numbers = [int(n) for n in re.findall(r"\d+", m.group(1))]
            if not all(n in LINUX_RULES for n in numbers):
                bad.append(f"{path.relative_to(ROOT)}: {m.group(0)}")
    assert bad == []


def test_every_reference_anchor_is_a_heading() -> None:
    anchors = {p.name: _anchors(p) for p in REFERENCE.glob("*.md")}
    bad = []
    for path in FILES:
        text = path.read_text(errors="replace")
        for m in re.finditer(r"(linux|designs)\.md#([\w-]+)", text):
            if m.group(2) not in anchors[f"{m.group(1)}.md"]:
                bad.append(f"{path.relative_to(ROOT)}: {m.group(0)}")
    assert bad == []


@pytest.mark.parametrize("doc", ["linux.md", "designs.md"])
def test_every_scenario_the_reference_names_exists(doc: str) -> None:
    names = [s.name for s in load_scenarios()]
    text = (REFERENCE / doc).read_text()
    cited = re.findall(r"`((?:probe|selftest|ltp|debate|regression)/[^`\s]+)`", text)
    assert cited
    missing = []
    for name in cited:
        pattern = re.escape(name).replace(r"\*", ".*").replace("KIND", "[^/]+")
        pattern = pattern.replace("ADVICE", "[^/]+").replace(r"N\.M", r"[\d.]+")
        if not any(re.fullmatch(pattern, n) for n in names):
            missing.append(name)
    assert missing == []

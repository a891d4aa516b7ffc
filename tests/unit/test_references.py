"""What the prose names exists: no stale module paths or file paths.

Docs, docstrings, comments, scenario files and benchmarks name modules
(``sealkit.fidelity.target.make_target``) and files
(``src/sealkit/data/audit.schema.json``). When code moves, these must move
with it: every dotted ``sealkit.`` name must import or resolve, and every
``sealkit/`` path must exist. Upper-case parts are placeholders
(``sealkit.sealing.NAME``).
"""

from __future__ import annotations

import importlib
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SRC = ROOT / "src"
SOURCES = sorted(
    [
        *(p for p in (SRC / "sealkit").rglob("*") if p.suffix in (".py", ".pyi", ".c", ".toml")),
        *(ROOT / "docs").glob("*.md"),
        *(ROOT / "benchmarks").glob("*.py"),
        ROOT / "README.md",
        ROOT / "CONTRIBUTING.md",
        ROOT / "setup.py",
        ROOT / "pyproject.toml",
    ]
)
DOTTED = re.compile(r"\bsealkit(?:\.[A-Za-z_][A-Za-z0-9_]*)+")
PATH = re.compile(r"(?<![\w./-])(?:src/)?sealkit/[\w./*-]*[\w*]")  # not /opt/sealkit/...
NOT_MODULES = {"sealkit.prom", "sealkit.invalid"}  # a metrics file name, an example domain


def _resolves(ref: str) -> bool:
    parts = ref.split(".")
    for i in range(len(parts), 0, -1):
        try:
            obj = importlib.import_module(".".join(parts[:i]))
        except ImportError:
            continue
        try:
            for part in parts[i:]:
                obj = getattr(obj, part)
        except AttributeError:
            return False
        return True
    return False


def _refs(pattern: re.Pattern[str]) -> list[tuple[str, str]]:
    """``(reference, file:line)``; a dotted name followed by ``/`` is a schema
    id (``"schema": "sealkit.audit/2"``), not a module, and is left out."""
    found = []
    for path in SOURCES:
        text = path.read_text(errors="replace")
        for match in pattern.finditer(text):
            if text[match.end() : match.end() + 1] == "/" and pattern is DOTTED:
                continue
            line = text.count("\n", 0, match.start()) + 1
            found.append((match.group(0), f"{path.relative_to(ROOT)}:{line}"))
    return found


def test_dotted_names_resolve() -> None:
    stale = []
    for ref, where in _refs(DOTTED):
        tail = ref.split(".")
        if ref in NOT_MODULES or any(p.isupper() and len(p) > 1 for p in tail[2:]):
            continue
        if not _resolves(ref):
            stale.append(f"{where}: {ref}")
    assert stale == []


def test_schema_ids_are_not_taken_for_modules() -> None:
    text = (ROOT / "docs" / "audit.md").read_text()
    assert "sealkit.audit/2" in text  # a schema id, kept as it is in the documents
    where = [w for ref, w in _refs(DOTTED) if ref == "sealkit.audit"]
    assert where == []  # no module sealkit.audit is named anywhere else


def test_file_paths_exist() -> None:
    stale = []
    for ref, where in _refs(PATH):
        path = ref if ref.startswith("src/") else f"src/{ref}"
        if "<" in path or not list(ROOT.glob(path)):
            stale.append(f"{where}: {ref}")
    assert stale == []


@pytest.mark.parametrize(
    ("ref", "ok"),
    [
        ("sealkit.fidelity.target.make_target", True),
        ("sealkit.sealing.hardening.hook_reports", True),
        ("sealkit.ops.parse_trace", True),
        ("sealkit.fuzz.campaign", False),
        ("sealkit._syscalls.mseal", False),
        ("sealkit.memory", False),
    ],
)
def test_the_resolver_tells_stale_from_live(ref: str, ok: bool) -> None:
    assert _resolves(ref) is ok

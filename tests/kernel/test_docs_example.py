"""The library example in docs/memory.md (and the README section) really runs."""

from __future__ import annotations

import platform
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

pytestmark = pytest.mark.kernel

DOC = Path(__file__).resolve().parents[2] / "docs" / "memory.md"


@pytest.mark.skipif(platform.machine() != "x86_64", reason="the example's machine code is x86_64")
def test_memory_doc_example_runs(python: Callable[..., Any]) -> None:
    match = re.search(r"```python\n(.*?)```", DOC.read_text(), re.S)
    assert match is not None
    proc = python(match.group(1), env={"PYTHONWARNINGS": "error"})
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert lines[0].startswith("mseal(2) is available")
    assert "lives until process exit" in lines[1]
    assert lines[2] == "42"
    assert lines[3].startswith("refusing to seal this bytearray")
    assert proc.stderr == ""


DOCS = sorted((DOC.parent).glob("*.md"))
BLOCKS = [
    pytest.param(doc, i, block, id=f"{doc.name}#{i}")
    for doc in DOCS
    for i, block in enumerate(re.findall(r"```python\n(.*?)```", doc.read_text(), re.S))
]


@pytest.mark.parametrize(("doc", "index", "block"), BLOCKS)
def test_every_python_block_in_the_docs_runs(
    python: Callable[..., Any], doc: Path, index: int, block: str
) -> None:
    """A documented example that no longer runs is a false promise: each
    ```python block of docs/*.md runs as written in a fresh interpreter."""
    proc = python(block)
    assert proc.returncode == 0, f"{doc.name} block {index}:\n{proc.stderr}"

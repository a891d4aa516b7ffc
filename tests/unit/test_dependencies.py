"""Dependencies are chosen: pyproject declares what the code imports, no more.

Read from pyproject.toml and from the ``import`` statements themselves (every
one, lazy ones too): a runtime dependency nobody imports fails, as does an
import that no dependency provides; the test extra is held to the tests'
imports the same way, and the dev extra to the tools CI runs. Then the
optional part is tried for real: without Hypothesis, the command line and
``sealkit fuzz`` work, and what needs it says so in one line.
"""

from __future__ import annotations

import ast
import re
import sys
import tomllib
from collections.abc import Iterable
from importlib import metadata
from pathlib import Path

import pytest

from tests.conftest import MSEAL_MISSING

ROOT = Path(__file__).resolve().parents[2]
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())
PROJECT = PYPROJECT["project"]


def _name(requirement: str) -> str:
    match = re.match(r"[A-Za-z0-9][A-Za-z0-9._-]*", requirement)
    assert match, requirement
    return re.sub(r"[-_.]+", "-", match.group(0)).lower()


def _extra(name: str, seen: frozenset[str] = frozenset()) -> set[str]:
    """The distributions an extra declares, with ``sealkit[...]`` expanded."""
    out: set[str] = set()
    for requirement in PROJECT["optional-dependencies"][name]:
        inner = re.fullmatch(r"sealkit\[([a-z0-9,-]+)\]", requirement.replace(" ", ""))
        if inner:
            for other in inner.group(1).split(","):
                assert other not in seen, f"extra {name} includes itself"
                out |= _extra(other, seen | {name})
        else:
            out.add(_name(requirement))
    return out


def _optional_import(tree: ast.AST, node: ast.AST) -> bool:
    """Whether ``node`` sits in a ``try`` whose handler catches ImportError."""
    for parent in ast.walk(tree):
        if not isinstance(parent, ast.Try) or not any(node is n for n in ast.walk(parent)):
            continue
        for handler in parent.handlers:
            names = ast.unparse(handler.type) if handler.type is not None else ""
            if "ImportError" in names and any(
                node is n for stmt in parent.body for n in ast.walk(stmt)
            ):
                return True
    return False


def _imports(paths: Iterable[Path]) -> dict[str, list[str]]:
    """Third-party top-level modules imported by ``paths`` -> where (every
    import statement, also inside functions; not those guarded by
    ``except ImportError``, which are optional by construction)."""
    found: dict[str, list[str]] = {}
    for path in paths:
        tree = ast.parse(path.read_text(), str(path))
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names = [node.module]
            else:
                continue
            for name in names:
                top = name.split(".")[0]
                if top in sys.stdlib_module_names or top in ("sealkit", "tests", "__future__"):
                    continue
                if _optional_import(tree, node):
                    continue
                where = path.relative_to(ROOT) if path.is_relative_to(ROOT) else path
                found.setdefault(top, []).append(f"{where}:{node.lineno}")
    return found


def _distributions(modules: dict[str, list[str]]) -> dict[str, list[str]]:
    """Import names -> the distributions that provide them (as installed here)."""
    provided = metadata.packages_distributions()
    out: dict[str, list[str]] = {}
    for module, where in modules.items():
        dists = provided.get(module)
        assert dists, f"{module} (imported at {where[0]}) comes from no installed distribution"
        for dist in dists:
            out.setdefault(_name(dist), []).extend(where)
    return out


SRC = _distributions(_imports((ROOT / "src").rglob("*.py")))
TESTS = _distributions(
    _imports([*(ROOT / "tests").rglob("*.py"), *(ROOT / "benchmarks").rglob("*.py")])
)
RUNTIME = {_name(r) for r in PROJECT["dependencies"]}
EXTRAS = {name: _extra(name) for name in PROJECT["optional-dependencies"]}


def test_every_runtime_dependency_is_imported_by_the_package() -> None:
    unused = RUNTIME - set(SRC)
    assert not unused, f"declared in [project] dependencies but never imported: {sorted(unused)}"


def test_every_import_of_the_package_is_declared() -> None:
    declared = RUNTIME | set().union(*EXTRAS.values())
    undeclared = {dist: where for dist, where in SRC.items() if dist not in declared}
    assert not undeclared, f"imported but not declared: {undeclared}"


def test_the_reading_of_imports_sees_what_it_must(tmp_path: Path) -> None:
    module = tmp_path / "m.py"
    module.write_text(
        "import os, rich.table\n"
        "def f():\n    from jsonschema import validate\n"  # lazy: still a dependency
        "try:\n    import numpy\nexcept ImportError:\n    numpy = None\n"  # optional
    )
    found = _distributions(_imports([module]))
    assert set(found) == {"rich", "jsonschema"}
    assert "jsonschema" not in RUNTIME  # what the package check would call undeclared


def test_optional_imports_are_in_an_extra_not_the_runtime() -> None:
    # Hypothesis serves the strategies and the state machine only.
    assert "hypothesis" not in RUNTIME and "hypothesis" in EXTRAS["hypothesis"]
    for name in ("psutil", "sortedcontainers"):
        assert name not in RUNTIME


def test_the_test_extra_is_what_the_tests_import() -> None:
    test = EXTRAS["test"]
    undeclared = {d: w for d, w in TESTS.items() if d not in RUNTIME | test}
    assert not undeclared, f"the tests import what [test] does not declare: {undeclared}"
    unused = test - set(TESTS) - set(SRC)
    assert not unused, f"declared in [test] but imported by no test: {sorted(unused)}"


def test_the_dev_extra_is_the_tools_ci_runs() -> None:
    ci = (ROOT / ".ci" / "run").read_text()
    tools = EXTRAS["dev"] - EXTRAS["test"]
    assert tools, "the dev extra adds the linters"
    for tool in tools:
        assert f".venv/bin/{tool}" in ci, f"[dev] declares {tool}, which .ci/run never runs"
        assert tool not in SRC and tool not in TESTS, f"{tool} is a tool, not a library"


# --- without the optional part -----------------------------------------------------

NO_HYPOTHESIS = """
import sys
class _NotInstalled:
    def find_spec(self, name, path=None, target=None):
        if name == "hypothesis" or name.startswith("hypothesis."):
            raise ModuleNotFoundError(f"No module named {name!r}", name=name)
        return None
sys.meta_path.insert(0, _NotInstalled())
"""


def test_without_hypothesis_the_command_line_works_and_the_rest_says_why(python) -> None:  # type: ignore[no-untyped-def]
    helped = python(NO_HYPOTHESIS + "from sealkit.cli.main import main\nsys.exit(main(['--help']))")
    assert helped.returncode == 0 and "fuzz" in helped.stdout, helped.stderr
    explained = python(
        NO_HYPOTHESIS + "from sealkit.cli.main import main\nsys.exit(main(['fuzz', '--explain']))"
    )
    assert explained.returncode == 0 and "never generated" in explained.stdout, explained.stderr
    for module in ("sealkit.fidelity.strategies", "sealkit.fidelity.fuzz.machine"):
        done = python(NO_HYPOTHESIS + f"import {module}")
        assert done.returncode == 1
        last = done.stderr.strip().splitlines()[-1]
        assert last == (
            f"ModuleNotFoundError: {module} needs Hypothesis, an optional dependency: "
            "pip install 'sealkit[hypothesis]'"
        ), done.stderr
    lazy = python(NO_HYPOTHESIS + "import sealkit.fidelity.fuzz as f\nf.DifferentialMachine")
    assert "pip install 'sealkit[hypothesis]'" in lazy.stderr


@pytest.mark.kernel
@pytest.mark.skipif(MSEAL_MISSING is not None, reason=MSEAL_MISSING or "")
def test_without_hypothesis_a_fuzz_campaign_runs(python) -> None:  # type: ignore[no-untyped-def]
    done = python(
        NO_HYPOTHESIS + "from sealkit.cli.main import main\n"
        "sys.exit(main(['fuzz', '--ops', '300', '--json']))"
    )
    assert done.returncode == 0, done.stderr
    assert '"calls": 3' in done.stdout and "hypothesis" not in done.stderr.lower()

"""The public API, pinned: its names, and where each one resolves.

In the spirit of trio's ``test_exports.py``: a change to what ``sealkit``
exports, or to where a public name lives, has to change this file too, so it
is never an accident of moving code around. Type checkers see the lazily
exported names through the ``TYPE_CHECKING`` block of ``sealkit/__init__.py``,
which must say exactly what the runtime does.
"""

from __future__ import annotations

import ast
import importlib
import json
import subprocess
import tomllib
from collections.abc import Callable
from pathlib import Path

import pytest

import sealkit

ROOT = Path(__file__).resolve().parents[2]

# Every name of sealkit.__all__ and the module that defines it.
TOP_LEVEL: dict[str, str] = {
    **dict.fromkeys(
        (
            "AccessDeniedError", "ArgumentError", "ArgumentTypeError", "CutShortError",
            "InvalidArgumentError", "KernelError", "NotSupportedError", "ParseError",
            "ProcessChangedError", "ProcessGoneError", "SealedError", "SealingDeniedError",
            "SealkitError", "StateError", "TargetRefusedError", "UnmappedError",
            "UnsafeTargetError",
        ),
        "sealkit.errors",
    ),
    **dict.fromkeys(("Madv", "MapFlag", "MremapFlag", "Prot"), "sealkit.flags"),
    "CodePages": "sealkit.sealing.code",
    "HardenReport": "sealkit.sealing.hardening.report",
    "LiveReport": "sealkit.sealing.live.report",
    "PageState": "sealkit.sealing.pages",
    "Pages": "sealkit.sealing.pages",
    "SealedFile": "sealkit.sealing.files",
    "SealedMmap": "sealkit.sealing.mmaps",
    "Support": "sealkit._os.support",
    "exec_environment": "sealkit.sealing.exec.plan",
    "freeze": "sealkit.sealing.pages",
    "harden": "sealkit.sealing.hardening",
    "is_sealed": "sealkit.sealing.questions",
    "map_file": "sealkit.sealing.files",
    "read_exec_report": "sealkit.sealing.exec.report",
    "seal": "sealkit.sealing.entry",
    "seal_mmap": "sealkit.sealing.mmaps",
    "seal_process": "sealkit.sealing.live",
    "sealed_ranges": "sealkit.sealing.questions",
    "support": "sealkit._os.support",
}  # fmt: skip
VALUES: dict[str, object] = {"PAGE_SIZE": 4096, "__version__": "0.1.0"}

# The modules whose whole __all__ is a contract (CONTRIBUTING.md, "Contracts").
CONTRACTS: dict[str, list[str]] = {
    "sealkit.errors": [
        "AccessDeniedError", "ArgumentError", "ArgumentTypeError", "CutShortError",
        "InvalidArgumentError", "KernelError", "NotSupportedError", "ParseError",
        "ProcessChangedError", "ProcessGoneError", "SEAL_ENFORCED_CALLS", "SealedError",
        "SealingDeniedError", "SealkitError", "StateError", "TargetRefusedError", "UnmappedError",
        "UnsafeTargetError", "kernel_error",
    ],
    "sealkit.flags": [
        "MADV_DISCARD", "Madv", "MapFlag", "MclFlag", "MremapFlag", "MsFlag", "PAGE_SIZE", "Prot",
        "SealV1", "SealV3", "SplitSeal", "prot_from_str", "prot_to_str",
    ],
    "sealkit.layout": [
        "Layout", "Run", "TOKEN_FILE", "TOKEN_GUARD", "TOKEN_SIGBUS", "TOKEN_UNKNOWN", "TOKEN_ZERO",
        "TRACKED_FLAGS",
    ],
    "sealkit.model": ["AddressSpace", "POLICIES", "Policy"],
    "sealkit.ops": [
        "ATTACKERS", "Bases", "Brk", "ELSEWHERE", "FILE_PAGES", "FilePwrite", "Fork", "Ftruncate",
        "MEMORY_WRITES", "MODEL_BASES", "Madvise", "MemoryWrite", "Mimmutable", "Mincore", "Mlock", "Mlockall", "Mmap",
        "Mprotect", "Mremap", "Mseal", "MsealSplit", "MsealV1", "MsealV3", "Msync", "Munlock",
        "Munlockall", "Munmap", "Op", "PkeyMprotect", "Poke", "ProcessMadvise", "Punch",
        "PwriteMem", "Step", "VmWritev", "Write", "attacker_of", "errno_name", "format_result",
        "format_step", "format_trace", "op_names", "parse_op", "parse_result", "parse_step",
        "parse_trace", "rebase", "token_page", "write_token",
    ],
}  # fmt: skip

# What the docs show from the faces' modules (docs/*.md, README.md): these
# names must stay there.
DOCUMENTED: dict[str, list[str]] = {
    "sealkit.model": ["AddressSpace", "POLICIES"],
    "sealkit.analysis": ["analyze", "analyze_policy", "parse_policy", "Property"],
    "sealkit.host.audit": [
        "scan_host", "process_maps", "to_json", "to_prometheus", "check_requirements",
        "parse_requirement", "HostAudit", "ProcessMaps", "KINDS",
    ],
    "sealkit.host.elf": ["inspect", "iter_paths", "walk_properties", "ElfReport"],
    "sealkit.sealing.hardening": ["harden", "hook_reports", "plan", "HardenReport", "LEVELS"],
    "sealkit.sealing.exec": [
        "exec_environment", "read_exec_report", "check_against_smaps", "inspect_program",
        "ReportObject",
    ],
    "sealkit.sealing.live": ["seal_process", "LiveReport", "MsealCall", "LEVELS"],
    "sealkit.fidelity.fuzz": ["campaign", "DifferentialMachine", "UNDEFINED", "EXCLUDED"],
    "sealkit.fidelity.conformance": ["NOT_EXPRESSIBLE", "load_scenarios", "run_scenarios"],
    "sealkit.fidelity.target": [
        "Target", "TraceRun", "ModelTarget", "Window", "make_target", "target_names",
    ],
    "sealkit.fidelity.replay": ["replay", "load_trace"],
    "sealkit.fidelity.executor": ["KernelExecutor", "OutsideArenaError", "WorkerDiedError"],
}  # fmt: skip


def test_the_top_level_names_are_pinned() -> None:
    assert sorted(sealkit.__all__) == sorted([*TOP_LEVEL, *VALUES])
    assert set(sealkit.__all__) <= set(dir(sealkit))


@pytest.mark.parametrize("name", sorted(TOP_LEVEL))
def test_each_top_level_name_resolves_where_pinned(name: str) -> None:
    value = getattr(sealkit, name)
    assert value.__module__ == TOP_LEVEL[name], value
    assert value is getattr(importlib.import_module(TOP_LEVEL[name]), name)
    assert value.__name__ == name


def test_top_level_values() -> None:
    for name, value in VALUES.items():
        assert getattr(sealkit, name) == value
    with pytest.raises(AttributeError, match="has no attribute 'nope'"):
        sealkit.nope  # type: ignore[attr-defined]  # noqa: B018


@pytest.mark.parametrize("module", sorted(CONTRACTS))
def test_contract_modules_export_exactly_their_contract(module: str) -> None:
    mod = importlib.import_module(module)
    assert sorted(mod.__all__) == sorted(CONTRACTS[module])
    for name in mod.__all__:
        value = getattr(mod, name)
        owner = getattr(value, "__module__", module)
        if callable(value) and owner.startswith("sealkit"):
            assert owner == module or owner.startswith(module + "."), (name, owner)


@pytest.mark.parametrize("module", sorted(DOCUMENTED))
def test_documented_names_stay_where_the_docs_show_them(module: str) -> None:
    mod = importlib.import_module(module)
    missing = [name for name in DOCUMENTED[module] if name not in mod.__all__]
    assert missing == []
    for name in DOCUMENTED[module]:
        getattr(mod, name)


def test_static_tools_see_the_lazy_names() -> None:
    """The ``TYPE_CHECKING`` imports of sealkit/__init__.py are _LAZY, name for name."""
    tree = ast.parse((ROOT / "src" / "sealkit" / "__init__.py").read_text())
    static: dict[str, str] = {}
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and getattr(node.test, "id", "") == "TYPE_CHECKING":
            for stmt in node.body:
                assert isinstance(stmt, ast.ImportFrom) and stmt.level == 1 and stmt.module
                static.update(dict.fromkeys((a.name for a in stmt.names), stmt.module))
    lazy: dict[str, str] = sealkit._LAZY  # type: ignore[attr-defined]
    assert static == lazy
    assert {f"sealkit.{m}" for m in static.values()} <= set(TOP_LEVEL.values())


def test_seal_stays_the_function_when_the_sealing_package_loads(
    python: Callable[..., subprocess.CompletedProcess[str]],
) -> None:
    """``sealkit.seal`` is the public function; the sealing face is the
    package ``sealkit.sealing``, importable every way, and loading it never
    rebinds the function."""
    proc = python(
        "import json, sys, sealkit\n"
        "before = sorted(m for m in sys.modules if m.startswith('sealkit.sealing'))\n"
        "from sealkit.sealing.pages import Pages\n"
        "import sealkit.sealing.hardening\n"
        "import sealkit.sealing.entry as entry\n"
        "first = sealkit.seal\n"
        "from sealkit import seal\n"
        "print(json.dumps([before, callable(first), first is seal is entry.seal,\n"
        "                  Pages is sealkit.Pages]))\n"
    )
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout) == [[], True, True, True]


def test_the_console_script_resolves() -> None:
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())
    target = config["project"]["scripts"]["sealkit"]
    module, _, function = target.partition(":")
    assert callable(getattr(importlib.import_module(module), function))

"""Every ``--json`` document names its schema (``"schema": "sealkit.NAME/N"``,
version 1 except where a document changed: ``audit`` is at 2)
and validates against ``sealkit/data/NAME.schema.json``, which ships in the
package. Each command runs for real, in a configuration small enough to be
cheap and rich enough to fill the optional parts of its document."""

from __future__ import annotations

import argparse
import json
import os
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import jsonschema
import pytest

import sealkit
from sealkit.cli.main import discover

pytestmark = pytest.mark.kernel

DATA = Path(sealkit.__file__).parent / "data"
# Documents whose shape changed since version 1 (docs/cli.md: a change that
# breaks readers bumps the version): the audit's gained states and its scope
# (docs/audit.md, "JSON"); elf's, checksec's columns and null for what does
# not apply.
VERSIONS = {"audit": "sealkit.audit/2", "elf": "sealkit.elf/2"}
Run = Callable[..., subprocess.CompletedProcess[str]]

TRACE = """\
mmap     p0 4p r-- private|anon|fixed = p0
mseal    p2 2p                        = 0
> [0,2) r--p anon 00
> [2,4) r--p,sl anon 00
munmap   p0 4p                        = 0       # recorded wrong: the kernel says EPERM
> [0,4) rw-p anon 0000
"""


def _schema(name: str) -> dict[str, Any]:
    schema: dict[str, Any] = json.loads((DATA / f"{name}.schema.json").read_text())
    return schema


def _validate(name: str, text: str) -> dict[str, Any]:
    doc: dict[str, Any] = json.loads(text)
    assert next(iter(doc)) == "schema" and doc["schema"] == VERSIONS.get(name, f"sealkit.{name}/1")
    jsonschema.validate(doc, _schema(name))
    return doc


def _json_commands() -> list[str]:
    """Commands with a ``--json`` option, and ``run`` (``--report=json``)."""
    found = []
    for command in discover():
        parser = argparse.ArgumentParser()
        command.add_arguments(parser)
        if any("--json" in a.option_strings for a in parser._actions) or command.NAME == "run":
            found.append(command.NAME)
    return sorted(found)


def test_every_command_with_json_has_a_valid_schema_in_the_package() -> None:
    commands = _json_commands()
    assert {"audit", "maps", "elf", "check", "conform", "fuzz", "analyze", "replay"} <= set(
        commands
    )
    for name in commands:
        schema = _schema(name)
        jsonschema.Draft202012Validator.check_schema(schema)
        expected = VERSIONS.get(name, f"sealkit.{name}/1")
        assert schema["properties"]["schema"] == {"const": expected}, name
        assert "schema" in schema["required"], name
    shipped = {p.name.removesuffix(".schema.json") for p in DATA.glob("*.schema.json")}
    assert set(commands) <= shipped


def test_check(sealkit_cli: Run) -> None:
    done = sealkit_cli("check", "--json", "--require", "mseal", "--require", "sysmap-config")
    doc = _validate("check", done.stdout)
    assert set(doc["requirements"]) == {"mseal", "sysmap-config"}
    assert [c["key"] for c in doc["components"]][:1] == ["fast-path"]


@pytest.mark.parametrize("target", ["kernel", "model:mimmutable"])
def test_conform(sealkit_cli: Run, target: str) -> None:
    done = sealkit_cli("conform", "--json", "--target", target, "--scenario", "selftest/seal_a*")
    doc = _validate("conform", done.stdout)
    assert doc["targets"] == [target] and doc["scenarios"]
    assert done.returncode == (1 if doc["failed"] else 0)


def test_fuzz(sealkit_cli: Run) -> None:
    done = sealkit_cli("fuzz", "--json", "--ops", "300", "--seed", "3")
    assert done.returncode == 0, done.stderr
    doc = _validate("fuzz", done.stdout)
    assert doc["calls"] >= 300 and doc["undefined"] and doc["excluded"]


def test_analyze_with_a_replayed_counterexample(sealkit_cli: Run) -> None:
    done = sealkit_cli(
        "analyze", "--json", "--policy", "linux", "--depth", "1", "--workers", "1", "--replay"
    )
    assert done.returncode == 0, done.stderr
    doc = _validate("analyze", done.stdout)
    verdicts = doc["policies"][0]["verdicts"]
    assert verdicts["content"]["broken"] and verdicts["content"]["replay"]["status"] == "confirmed"
    assert not verdicts["mapping"]["broken"]


@pytest.mark.parametrize("diff", [False, True])
def test_replay_with_recorded_results_and_layout_lines(
    sealkit_cli: Run, tmp_path: Path, diff: bool
) -> None:
    trace = tmp_path / "t.trace"
    trace.write_text(TRACE)
    done = sealkit_cli("replay", str(trace), "--json", *(["--diff"] if diff else []))
    assert done.returncode == 1, done.stderr  # a recorded result and a layout line differ
    doc = _validate("replay", done.stdout)
    assert doc["recorded_mismatches"] == [3]
    assert [c["diff"] is None for c in doc["layout_checks"]] == [True, False]


def test_run_report(sealkit_cli: Run, tmp_path: Path) -> None:
    done = sealkit_cli("run", "--report=json", "--level", "all", "-c", "print('ok')")
    assert (done.returncode, done.stdout) == (0, "ok\n"), done.stderr
    (line,) = done.stderr.splitlines()
    doc = _validate("run", line)
    assert doc["hardened"] and doc["report"]["newly_sealed_bytes"] > 0


def test_audit_maps_elf(sealkit_cli: Run) -> None:
    _validate("audit", sealkit_cli("audit", "--pid", str(os.getpid()), "--json").stdout)
    _validate("maps", sealkit_cli("maps", "self", "--json").stdout)
    _validate("elf", sealkit_cli("elf", "/bin/true", "--json").stdout)

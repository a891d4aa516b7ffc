"""``sealkit check``: table, JSON, --require exit codes, one-line usage errors."""

from __future__ import annotations

import dataclasses
import json
import platform
from collections.abc import Callable
from typing import Any

import pytest

from sealkit._os.procfs import read_smaps
from sealkit.errors import ArgumentError, ArgumentTypeError
from sealkit.host.environment import REQUIREMENTS, EnvironmentReport, check_environment, unmet

pytestmark = pytest.mark.kernel

Run = Callable[..., Any]


def test_table_shows_every_check(sealkit_cli: Run) -> None:
    proc = sealkit_cli("check", env={"COLUMNS": "200"})
    assert proc.returncode == 0, proc.stderr
    for label in (
        "kernel",
        "mseal(2) available",
        "smaps reports seals",
        "system mappings sealed",
        "CONFIG_MSEAL_SYSTEM_MAPPINGS",
        "CONFIG_CHECKPOINT_RESTORE",
        "glibc",
        "seccomp",
    ):
        assert label in proc.stdout, label
    assert platform.release() in proc.stdout
    assert "[vdso]" in proc.stdout  # system text is not swallowed as rich markup


def test_json_carries_every_field_and_matches_this_system(sealkit_cli: Run) -> None:
    proc = sealkit_cli("check", "--json")
    assert proc.returncode == 0, proc.stderr
    data = json.loads(proc.stdout)
    fields = {f.name for f in dataclasses.fields(EnvironmentReport)}
    assert fields | {"schema", "requirements"} == set(data)
    assert data["kernel_release"] == platform.release()
    assert data["mseal_available"] is True and data["smaps_reports_seals"] is True
    assert data["requirements"] == {}
    # Cross-check against smaps read here (a second source): same system mappings.
    here = {v.path: bool(v.sealed) for v in read_smaps() if v.path in ("[vdso]", "[vvar]")}
    for name, sealed in here.items():
        assert data["system_mappings"][name] == sealed


def test_require_met_and_unmet_exit_codes(sealkit_cli: Run) -> None:
    report = check_environment()
    met = [name for name in REQUIREMENTS if unmet(report, name) is None]
    failing = [name for name in REQUIREMENTS if unmet(report, name) is not None]
    assert "mseal" in met and "smaps-sl" in met
    ok = sealkit_cli("check", "--json", *[a for name in met for a in ("--require", name)])
    assert ok.returncode == 0, ok.stderr
    assert all(v["met"] for v in json.loads(ok.stdout)["requirements"].values())
    if not failing:
        pytest.skip("every requirement holds on this machine")
    bad = sealkit_cli("check", "--require", "mseal", "--require", failing[0])
    assert bad.returncode == 1
    lines = bad.stderr.strip().splitlines()
    assert len(lines) == 1 and failing[0] in lines[0] and "not met" in lines[0]


@pytest.mark.parametrize(
    "argv",
    [
        ["check", "--require", "bogus"],
        ["check", "--require"],
        ["check", "--frobnicate"],
        ["check", "extra"],
    ],
)
def test_bad_flags_are_one_line_exit_2(sealkit_cli: Run, argv: list[str]) -> None:
    proc = sealkit_cli(*argv)
    assert proc.returncode == 2
    assert len(proc.stderr.strip().splitlines()) == 1
    assert "Traceback" not in proc.stderr and proc.stdout == ""


def _report(**changes: Any) -> EnvironmentReport:
    return dataclasses.replace(check_environment(), **changes)


def test_requirement_reasons() -> None:
    no_mseal = _report(mseal_available=False, mseal_reason="ENOSYS: old kernel")
    assert unmet(no_mseal, "mseal") == "ENOSYS: old kernel"
    sealed_sys = _report(
        system_mappings={"[vdso]": True, "[vvar]": True}, system_mappings_sealed=True
    )
    assert unmet(sealed_sys, "sysmap-sealed") is None
    half = _report(system_mappings={"[vdso]": True, "[vvar]": False}, system_mappings_sealed=False)
    assert "[vvar]" in (unmet(half, "sysmap-sealed") or "")
    assert "[vdso]," not in (unmet(half, "sysmap-sealed") or "")
    assert unmet(_report(config_mseal_system_mappings="y"), "sysmap-config") is None
    assert "unknown" in (unmet(_report(config_mseal_system_mappings=None), "sysmap-config") or "")
    assert unmet(_report(glibc_mseal_wrapper=True), "glibc-mseal") is None
    assert "filter" in (
        unmet(_report(seccomp_mode=2, seccomp_mode_name="filter"), "no-seccomp") or ""
    )
    with pytest.raises(ArgumentError):
        unmet(no_mseal, "nope")
    with pytest.raises(ArgumentTypeError):
        unmet("report", "mseal")  # type: ignore[arg-type]


def test_config_note_explains_checkpoint_restore() -> None:
    report = check_environment()
    if report.config_mseal_system_mappings == "absent" and report.config_checkpoint_restore == "y":
        assert "CHECKPOINT_RESTORE" in report.config_note
    assert report.glibc_version is None or report.glibc_version[0].isdigit()
    assert report.seccomp_mode in (0, 1, 2, None)


# --- optional components: what an installation lacks, and what that costs ------------

BLOCK_FASTSYS = """
import sys
class _NoFastPath:
    # What an install without a C compiler leaves: no sealkit._os._fastsys.
    def find_spec(self, name, path=None, target=None):
        if name == "sealkit._os._fastsys":
            raise ImportError("No module named 'sealkit._os._fastsys'")
        return None
sys.meta_path.insert(0, _NoFastPath())
from sealkit.cli.main import main
sys.exit(main(sys.argv[1:]))
"""


def test_the_fast_path_is_listed_with_what_is_lost_without_it(
    sealkit_cli: Run, python: Run
) -> None:
    from sealkit._os import syscalls

    here = sealkit_cli("check", "--json")
    (fast,) = [c for c in json.loads(here.stdout)["components"] if c["key"] == "fast-path"]
    assert fast["present"] is syscalls.FAST_PATH
    assert "ctypes" in fast["without"] and "loader's lock" in fast["without"]
    if syscalls.FAST_PATH:
        assert fast["detail"].endswith(".so") and "_fastsys" in fast["detail"]

    # A failed build (pip -q hid it): check says so, why, and how to get it.
    missing = python(BLOCK_FASTSYS, "check", "--json")
    assert missing.returncode == 0, missing.stderr
    (gone,) = [c for c in json.loads(missing.stdout)["components"] if c["key"] == "fast-path"]
    assert gone["present"] is False
    assert "not built" in gone["detail"] and "pip install" in gone["detail"]
    table = python(BLOCK_FASTSYS, "check")
    row = next(line for line in table.stdout.splitlines() if "C fast path" in line)
    assert "absent" in row and "ctypes" in row

    # ... and --require fast-path turns it into a failed check (exit 1, one line).
    required = python(BLOCK_FASTSYS, "check", "--require", "fast-path")
    assert required.returncode == 1
    (line,) = required.stderr.splitlines()
    assert "fast-path" in line and "not built" in line

    off = sealkit_cli("check", "--json", env={"SEALKIT_NO_FASTSYS": "1"})
    (switched,) = [c for c in json.loads(off.stdout)["components"] if c["key"] == "fast-path"]
    assert switched["present"] is False and "SEALKIT_NO_FASTSYS" in switched["detail"]

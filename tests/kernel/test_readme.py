"""The README's promises hold: its Python examples run, its two set-up
commands are what CI runs, and every later command line runs as written,
from the checkout, after them.

Each shell line of the README (after the set-up block) runs in bash, in a
scratch directory that has the checkout's ``.venv`` and ``benchmarks`` (so
the lines run exactly as written and their output files land there), with
the files the README names as the user's own (``app.py``, ``mypkg``). A line
passes when it exits with a code docs/cli.md allows for it (0; or 1 where it
states a ``--require`` that a stock host does not meet) with no traceback.

Lines whose whole cost is the point run smaller, and say so in
:data:`SMALLER` (a million fuzzing calls, analyzer depth 3); the line that
runs every benchmark runs each one in its ``--quick`` profile, one test per
benchmark. ``sudo`` runs as written where it is installed; elsewhere the
line runs in what sudo leaves of the environment (``env -i`` with sudo's
``secure_path``), which is the point of writing ``.venv/bin/sealkit`` there.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
README = (ROOT / "README.md").read_text()
VENV = ROOT / ".venv"

# What sudo leaves: env_reset, and Debian's secure_path.
SUDO_ENV = "env -i PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

SMALLER: dict[str, tuple[str, str]] = {
    # a line (up to its comment), as a pattern: (what runs instead, why)
    r"(.* fuzz) --ops 1000000 (.*)": (
        r"\1 --ops 3000 \2",
        "a million calls take minutes; the same options run on 3,000",
    ),
    r"(.* analyze --policy linux) --depth 3": (
        r"\1 --depth 1",
        "depth 3 takes about a minute (tests/slow/test_analysis_depth.py runs it)",
    ),
    r"(\.venv/bin/sealkit analyze)": (
        r"\1 --depth 1",
        "the debate's designs at depth 2 take most of a minute on two cores",
    ),
}

APP = """\
import argparse, sys
parser = argparse.ArgumentParser()
parser.add_argument("--port", type=int, default=0)
print("app running, port", parser.parse_args().port, file=sys.stderr)
"""


def _blocks(lang: str) -> list[str]:
    return re.findall(rf"```{lang}\n(.*?)```", README, re.S)


def _lines() -> list[str]:
    """Every command line of every shell block after the set-up block."""
    out = []
    for block in _blocks("sh")[1:]:
        out += [line for line in block.splitlines() if line.strip() and not line.startswith("#")]
    return out


def _benchmarks() -> list[str]:
    return sorted(p.stem.removeprefix("bench_") for p in (ROOT / "benchmarks").glob("bench_*.py"))


def _cases() -> list[pytest.param]:  # type: ignore[valid-type]
    cases = []
    for line in _lines():
        command = line.split("  #", 1)[0].strip()
        if command == ".venv/bin/python benchmarks/run.py":
            cases += [
                pytest.param(
                    line, f"{command} --quick {name}", marks=pytest.mark.slow, id=f"bench {name}"
                )
                for name in _benchmarks()
            ]
            continue
        run = command
        if "benchmarks/run.py" in run:
            run += " --quick"
        for pattern, (instead, _why) in SMALLER.items():
            if re.fullmatch(pattern, run):
                run = re.sub(pattern, instead, run)
                break
        cases.append(pytest.param(line, run, id=command[:70]))
    return cases


@pytest.mark.kernel
@pytest.mark.parametrize("index", range(len(_blocks("python"))))
def test_python_examples_run(python, index: int) -> None:  # type: ignore[no-untyped-def]
    code = _blocks("python")[index]
    done = python(code)
    assert done.returncode == 0, done.stderr[-2000:]


def test_the_set_up_commands_and_ci() -> None:
    setup = _blocks("sh")[0]
    commands = [line for line in setup.splitlines() if line and not line.startswith("#")]
    assert len(commands) == 2, "the README gives exactly two set-up commands"
    install_and_run, run_tests = commands
    # The main job installs what sealkit needs to run, nothing for development;
    # the test command what the tests need.
    assert install_and_run.endswith(".venv/bin/pip install -q -e . && .venv/bin/sealkit audit")
    assert "'.[test]'" in run_tests and run_tests.endswith(".venv/bin/python -m pytest")
    ci = (ROOT / ".ci" / "run").read_text()
    assert run_tests in ci.splitlines(), "the CI must run exactly the README's test command"


def test_every_later_line_uses_the_venv() -> None:
    lines = _lines()
    assert len(lines) > 20
    for line in lines:
        # a bare `sealkit` or `python` is "command not found" after the set-up
        words = re.findall(r"(?:^|[|;&] *|sudo )(\S+)", line.split("  #", 1)[0])
        for word in words:
            assert word not in ("sealkit", "python", "python3"), line


@pytest.mark.kernel
@pytest.mark.parametrize(("line", "run"), _cases())
def test_readme_line_runs(line: str, run: str, tmp_path: Path) -> None:
    if not (VENV / "bin" / "sealkit").exists():
        pytest.skip(f"{VENV} is not set up: the README's lines run from it")
    (tmp_path / ".venv").symlink_to(VENV)
    (tmp_path / "benchmarks").symlink_to(ROOT / "benchmarks")
    (tmp_path / "app.py").write_text(APP)
    (tmp_path / "mypkg").mkdir()
    (tmp_path / "mypkg" / "__init__.py").write_text("")
    (tmp_path / "mypkg" / "server.py").write_text(APP)
    if run.startswith("sudo "):
        if shutil.which("sudo") is None:
            run = SUDO_ENV + " " + run.removeprefix("sudo ")
        elif os.geteuid() != 0:
            pytest.skip("sudo needs a password here")
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "SEALKIT_DEBUG")}
    done = subprocess.run(
        ["bash", "-c", run], cwd=tmp_path, env=env, capture_output=True, text=True,
        timeout=300, check=False,
    )  # fmt: skip
    allowed = {0, 1} if "--require" in run else {0}
    assert done.returncode in allowed, (run, done.returncode, done.stderr[-3000:])
    assert "Traceback" not in done.stderr, done.stderr[-3000:]
    assert "command not found" not in done.stderr
    if "--require" in run and done.returncode == 1:
        assert "not met" in done.stderr  # failed for the stated reason, and said why
    if "--svg space.svg" in run:
        assert (tmp_path / "space.svg").read_text().rstrip().endswith("</svg>")
    if "-o sealkit.prom" in run:
        assert "sealkit_audit_processes" in (tmp_path / "sealkit.prom").read_text()


def test_every_command_shown_exists(sealkit_cli) -> None:  # type: ignore[no-untyped-def]
    shell = "\n".join(_blocks("sh"))
    shown = set(re.findall(r"\.venv/bin/sealkit (\w+)", shell))
    shown |= set(re.findall(r"-m sealkit (\w+)", shell))
    assert {"audit", "run", "maps", "elf", "check", "conform", "fuzz", "replay", "analyze"} <= shown
    for command in sorted(shown):
        done = sealkit_cli(command, "--help")
        assert done.returncode == 0, (command, done.stderr)

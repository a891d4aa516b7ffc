"""The README's promises hold: its Python examples run, its two set-up
commands are what CI runs, and every subcommand it shows exists.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
README = (ROOT / "README.md").read_text()


def _blocks(lang: str) -> list[str]:
    return re.findall(rf"```{lang}\n(.*?)```", README, re.S)


@pytest.mark.kernel
@pytest.mark.parametrize("index", range(len(_blocks("python"))))
def test_python_examples_run(python, index: int) -> None:
    code = _blocks("python")[index]
    done = python(code)
    assert done.returncode == 0, done.stderr[-2000:]


def test_ci_runs_the_readme_test_command() -> None:
    setup = _blocks("sh")[0]
    commands = [line for line in setup.splitlines() if line and not line.startswith("#")]
    assert len(commands) == 2, "the README gives exactly two set-up commands"
    install_and_run, run_tests = commands
    assert "sealkit" in install_and_run and "pytest" in run_tests
    ci = (ROOT / ".ci" / "run").read_text()
    assert run_tests in ci.splitlines(), "the CI must run exactly the README's test command"


def test_every_command_shown_exists(sealkit_cli) -> None:
    shell = "\n".join(_blocks("sh"))
    shown = set(re.findall(r"(?:^|&& |sudo )(?:\.venv/bin/)?sealkit (\w+)", shell, re.M))
    shown |= set(re.findall(r"python -m sealkit (\w+)", shell))
    assert shown, "the README shows sealkit commands"
    for command in sorted(shown):
        done = sealkit_cli(command, "--help")
        assert done.returncode == 0, (command, done.stderr)

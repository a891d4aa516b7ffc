"""The README's "Seal any program" commands work as written after the set-up
(``sealkit`` on PATH), and do what their comments say."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

from sealkit.sealing.exec import read_exec_report
from tests.exec_support import ROOT, SRC, plain_env

pytestmark = pytest.mark.kernel


def _section_commands() -> list[str]:
    readme = (ROOT / "README.md").read_text()
    section = readme.split("## Seal any program", 1)[1].split("\n## ", 1)[0]
    (block,) = re.findall(r"```sh\n(.*?)```", section, re.S)
    return [line for line in block.splitlines() if line.strip()]


def test_the_readme_commands_run_as_written(tmp_path: Path, exec_lib: Path) -> None:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    shim = bin_dir / "sealkit"  # what the set-up's venv provides
    shim.write_text(f'#!/bin/sh\nexec {sys.executable} -m sealkit "$@"\n')
    shim.chmod(0o755)
    env = plain_env(PYTHONPATH=str(SRC))
    env["PATH"] = f"{bin_dir}:{Path(sys.executable).parent}:{env.get('PATH', '/usr/bin:/bin')}"
    outputs = []
    for line in _section_commands():
        # the only change: its own directory instead of /tmp
        command = line.replace("/tmp/", f"{tmp_path}/")
        done = subprocess.run(
            ["bash", "-c", command], capture_output=True, text=True, env=env, cwd=tmp_path,
            timeout=120, check=False,
        )  # fmt: skip
        assert done.returncode == 0, (line, done.stderr)
        outputs.append(done.stdout)
    assert re.fullmatch(r"pid \d+: sealed before its first instruction\n", outputs[0])
    (report,) = read_exec_report(tmp_path / "sealkit-exec.jsonl").values()
    ssl = [o for o in report.values() if "_ssl" in o.path]
    assert ssl and not ssl[0].sealing  # an extension module: unloadable, level all only
    assert any("libpython" in o.path or "python3" in o.path for o in report.values() if o.sealed)
    env_lines = (tmp_path / "sealkit-exec.env").read_text().splitlines()
    assert any(x.startswith("LD_AUDIT=/") for x in env_lines)
    audit = outputs[5]
    assert "sleep" in audit and "text" in audit and "relro" in audit
    assert json.loads(subprocess.check_output(
        [sys.executable, "-m", "sealkit", "check", "--json"], env=env, text=True
    ))["exec_library"] == str(exec_lib)  # fmt: skip

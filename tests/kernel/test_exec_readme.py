"""The README's "Seal any program" commands work as written after the set-up
(from the checkout, with its ``.venv``), and do what their comments say.
(tests/kernel/test_readme.py runs every README line; this holds these lines'
comments to what they print and write.)"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

from sealkit.sealing.exec import read_exec_report
from tests.exec_support import ROOT, plain_env

pytestmark = pytest.mark.kernel


def _section_commands() -> list[str]:
    readme = (ROOT / "README.md").read_text()
    section = readme.split("## Seal any program", 1)[1].split("\n## ", 1)[0]
    (block,) = re.findall(r"```sh\n(.*?)```", section, re.S)
    return [line for line in block.splitlines() if line.strip()]


def test_the_readme_commands_run_as_written(tmp_path: Path, exec_lib: Path) -> None:
    venv = ROOT / ".venv"
    if not (venv / "bin" / "sealkit").exists():
        pytest.skip(f"{venv} is not set up: the README's lines run from it")
    (tmp_path / ".venv").symlink_to(venv)
    env = plain_env()
    # The README names `.venv/bin/python`, a Python binary; a `python3` on
    # PATH may be a wrapper script (pyenv's shim), sealed in its interpreter
    # (`env`), whose report, without %p, would hold no Python at all
    env["PATH"] = f"{Path(sys.executable).parent}:{env.get('PATH', '/usr/bin:/bin')}"
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

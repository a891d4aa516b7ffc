"""The README's "Seal a running process" commands work as written, run by a
shell against a process this test starts. ``--comm nginx`` is pointed at
that process's own command name (a copy of sleep under a name of its own):
a test must never seal the host's other processes."""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from sealkit._os import procfs
from tests.conftest import python_env

pytestmark = pytest.mark.kernel

ROOT = Path(__file__).resolve().parents[2]


def _block() -> list[str]:
    readme = (ROOT / "README.md").read_text()
    section = readme.split("## Seal a running process", 1)[1]
    block = re.search(r"```sh\n(.*?)```", section, re.S)
    assert block is not None
    return [line.split("  #")[0].strip() for line in block.group(1).splitlines() if line.strip()]


def test_the_readme_commands_seal_a_process_the_test_starts(tmp_path: Path) -> None:
    lines = _block()
    assert lines[0].startswith("sleep 300 & pid=$!")
    assert [line.split()[:2] for line in lines[1:]] == [["sealkit", "seal"]] * (len(lines) - 1)
    comm = f"sksleep{os.getpid() % 100000}"
    sleeper = tmp_path / comm
    shutil.copy2(shutil.which("sleep") or "/bin/sleep", sleeper)
    script = "\n".join(
        [
            "set -e",
            lines[0].replace("sleep", str(sleeper), 1),
            'echo "pid $pid"',
            *[f'echo "== {i}"; {line.replace("--comm nginx", f"--comm {comm}")}'
              for i, line in enumerate(lines[1:], 1)],
        ]
    )  # fmt: skip
    env = python_env({"PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"})
    out, err = tmp_path / "out", tmp_path / "err"
    with out.open("w") as stdout, err.open("w") as stderr:  # files: the sleep keeps pipes open
        done = subprocess.run(
            ["sh", "-c", script], stdout=stdout, stderr=stderr, timeout=120, env=env, check=False
        )
    text = out.read_text()
    pid = int(text.split("pid ", 1)[1].split()[0])
    try:
        assert done.returncode == 0, text + err.read_text()
        outputs = re.split(r"^== \d+\n", text, flags=re.M)[1:]
        dry, seal, all_level, service = outputs
        assert f"pid {pid} ({comm}): level=code: would seal" in dry
        assert f"pid {pid} ({comm}): level=code: sealed" in seal and ", verified" in seal
        assert "level=all: sealed" in all_level and "already sealed" in all_level
        doc = json.loads(service)
        assert [p["pid"] for p in doc["processes"]] == [pid] and doc["processes"][0]["ok"]
        assert any(v.sealed for v in procfs.read_smaps(pid, counters=False))
        state = Path(f"/proc/{pid}/status").read_text()
        assert "TracerPid:\t0" in state and "State:\tS" in state
    finally:
        os.kill(pid, signal.SIGKILL)

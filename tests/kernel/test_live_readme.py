"""The README's "Seal a running process" lines work as written and say what
the README promises, each run by bash on its own as tests/kernel/test_readme.py
runs them, with ``sleep`` replaced by a copy under a name of its own so that
the test can find and end exactly the processes it started."""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import signal
import subprocess
from pathlib import Path

import pytest

from sealkit._os import procfs

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
    prefix = "sleep 30 >/dev/null 2>&1 & .venv/bin/sealkit seal --pid $!"
    assert len(lines) == 3 and all(line.startswith(prefix) for line in lines), lines
    comm = f"sksleep{os.getpid() % 100000}"
    sleeper = tmp_path / comm
    shutil.copy2(shutil.which("sleep") or "/bin/sleep", sleeper)
    (tmp_path / ".venv").symlink_to(ROOT / ".venv")
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "SEALKIT_DEBUG")}
    outputs, pids = [], []
    try:
        for line in lines:
            done = subprocess.run(
                ["bash", "-c", line.replace("sleep 30", f"{sleeper} 30", 1)], cwd=tmp_path,
                env=env, capture_output=True, text=True, timeout=120, check=False,
            )  # fmt: skip
            found = re.search(rf"pid (\d+) \({comm}\)", done.stdout)
            if found:
                pids.append(int(found.group(1)))
            assert done.returncode == 0 and found, (line, done.stdout, done.stderr)
            outputs.append(done.stdout)
        dry, seal, all_level = outputs
        assert "level=code: would seal" in dry
        assert "level=code: sealed" in seal and ", verified" in seal
        assert "level=all: sealed" in all_level and ", verified" in all_level
        assert not any(v.sealed for v in procfs.read_smaps(pids[0], counters=False))  # dry run
        for pid in pids[1:]:
            assert any(v.sealed for v in procfs.read_smaps(pid, counters=False))
            state = Path(f"/proc/{pid}/status").read_text()
            assert "TracerPid:\t0" in state and "State:\tS" in state
    finally:
        for pid in pids:
            with contextlib.suppress(OSError):
                os.kill(pid, signal.SIGKILL)

"""The README's first set-up command, as written, on a fresh copy of the
checkout: it installs sealkit with its runtime dependencies only, builds the
C fast path where a compiler is present, runs the main job, and leaves a
``.venv/bin/sealkit`` that works in what sudo leaves of the environment.

It needs the package index (CI installs from it anyway): about 45 s here,
most of it pip; it gives up after 300 s and shows what was printed.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SUDO_ENV = {"PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"}

pytestmark = pytest.mark.slow


def _tracked_files() -> list[str]:
    if shutil.which("git") is None:
        pytest.skip("git lists the checkout's files; it is not installed")
    done = subprocess.run(
        ["git", "-C", str(ROOT), "ls-files", "-z"], capture_output=True, check=False
    )
    if done.returncode != 0:
        pytest.skip(f"{ROOT} is not a git checkout: {done.stderr.decode()[:200]}")
    return [name for name in done.stdout.decode().split("\0") if name]


def test_the_main_job_on_a_fresh_copy(tmp_path: Path) -> None:
    readme = (ROOT / "README.md").read_text()
    setup = re.findall(r"```sh\n(.*?)```", readme, re.S)[0]
    first = next(line for line in setup.splitlines() if line and not line.startswith("#"))
    fresh = tmp_path / "sealkit"
    for name in _tracked_files():
        source = ROOT / name
        if source.is_file():
            (fresh / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, fresh / name)
    assert not (fresh / ".venv").exists()

    # The user's own shell: their PATH, proxies and pip settings; nothing of
    # this test run's interpreter.
    shell = {
        k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV")
    }
    try:
        done = subprocess.run(
            ["bash", "-c", first], cwd=fresh, capture_output=True, text=True, timeout=300,
            env=shell, check=False,
        )  # fmt: skip
    except subprocess.TimeoutExpired as exc:
        # pip waiting on the package index, or the host-wide audit on a host
        # with a huge process (docs/audit.md): say which, from what was printed.
        out = (exc.stdout or b"")[-2000:], (exc.stderr or b"")[-2000:]
        pytest.fail(f"the set-up command did not finish in 300 s: {out!r}")
    assert done.returncode == 0, done.stderr[-3000:]
    assert "processes seen" in done.stdout and "PID" in done.stdout

    listed = subprocess.run(
        [str(fresh / ".venv/bin/python"), "-m", "pip", "list", "--format=freeze"],
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    installed = {line.split("==")[0].lower() for line in listed.stdout.splitlines()}
    assert {"rich", "sealkit"} <= installed
    for extra in ("pytest", "hypothesis", "jsonschema", "psutil", "pyelftools", "mypy", "ruff"):
        assert extra not in installed, f"the main job installed {extra}"

    # sudo resets PATH and the environment: the explicit path still works.
    check = subprocess.run(
        [".venv/bin/sealkit", "check", "--require", "fast-path"], cwd=fresh, env=SUDO_ENV,
        capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    if shutil.which("gcc") or shutil.which("cc"):
        assert check.returncode == 0, check.stderr  # the C fast path was built
        assert str(fresh) in check.stdout
    else:
        assert check.returncode == 1 and "not built" in check.stderr

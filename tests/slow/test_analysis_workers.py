"""No analyzer worker outlives the search that forked it.

Killed (SIGKILL, or the OOM killer, which ended a depth-4 search holding
14 GB), ``sealkit analyze`` used to leave its worker processes expanding
their level, about 5 GB each, with nobody to read their answers.
"""

from __future__ import annotations

import signal
import subprocess
import sys
import time

import psutil
import pytest

from tests.conftest import python_env

pytestmark = pytest.mark.slow


def test_workers_die_with_a_killed_search() -> None:
    proc = subprocess.Popen(
        [sys.executable, "-m", "sealkit", "analyze", "--policy", "linux", "--depth", "3",
         "--workers", "2"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=python_env(),
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 60
        workers: list[psutil.Process] = []
        while time.monotonic() < deadline and proc.poll() is None:
            workers = psutil.Process(proc.pid).children()
            if len(workers) >= 2:
                break
            time.sleep(0.05)
        assert len(workers) >= 2, "the search started no workers"
        time.sleep(0.5)  # well into a level
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)
        _, alive = psutil.wait_procs(workers, timeout=5)
        assert alive == [], f"workers outlived the search: {[p.pid for p in alive]}"
    finally:
        proc.kill()
        proc.wait()
        for p in psutil.Process().children(recursive=True):
            p.kill()

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
from collections.abc import Iterator

import psutil
import pytest

from tests.conftest import python_env

pytestmark = pytest.mark.slow


@pytest.fixture
def search() -> Iterator[subprocess.Popen[bytes]]:
    """``sealkit analyze --policy linux --depth 3`` with two workers; it and
    anything it left are killed afterwards."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "sealkit", "analyze", "--policy", "linux", "--depth", "3",
         "--workers", "2"],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=python_env(),
    )  # fmt: skip
    try:
        yield proc
    finally:
        proc.kill()
        proc.communicate()
        for p in psutil.Process().children(recursive=True):
            p.kill()


def test_workers_die_with_a_killed_search(search: subprocess.Popen[bytes]) -> None:
    proc = search
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


def test_ctrl_c_ends_a_parallel_level_at_once(search: subprocess.Popen[bytes]) -> None:
    # Depth 3's second level runs in chunks of about 4 s each; interrupted
    # there, the search waited for the chunks its workers held before exit
    # 130: 17 to 24 s with every chunk queued at once, 4 s with a few in
    # flight. The workers are killed now: 0.5 s.
    proc = search
    deadline = time.monotonic() + 120
    first: set[int] = set()
    workers: list[psutil.Process] = []
    # The first level's pool, then the second's (new processes).
    while time.monotonic() < deadline and proc.poll() is None:
        workers = psutil.Process(proc.pid).children()
        pids = {p.pid for p in workers}
        if not first and len(pids) >= 2:
            first = pids
        elif first and len(pids) >= 2 and not pids & first:
            break
        time.sleep(0.05)
    assert first and workers and not {p.pid for p in workers} & first, (
        "the search never reached its second parallel level"
    )
    time.sleep(1)  # into the first chunks (about 4 s each here)
    sent = time.monotonic()
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    took = time.monotonic() - sent
    assert proc.returncode == 130, err
    assert took < 2, f"exit {took:.1f} s after SIGINT"
    _, alive = psutil.wait_procs(workers, timeout=5)
    assert alive == [], f"workers outlived the search: {[p.pid for p in alive]}"

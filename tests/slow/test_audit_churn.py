"""A host sweep while processes come and go.

A churner keeps about twenty short-lived children alive: each maps and
unmaps memory for a few milliseconds, then exits, and the churner reaps it
and starts another. Meanwhile the sweep runs again and again (in this
process, one thread and several, and through the command line). Every sweep
must finish without error, report the sealing control child with exactly its
sealed ranges, and report no seal anywhere in the churn (the churn never
seals). Vanished processes must be counted, which proves the race happened.

``SEALKIT_CHURN_SECONDS`` sets how long the churn runs (CI profile: 6 s).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from sealkit.host import audit
from tests.conftest import python_env

pytestmark = [pytest.mark.slow, pytest.mark.kernel]

SECONDS = float(os.environ.get("SEALKIT_CHURN_SECONDS", "6"))

CHURNER = r"""
import mmap, os, random, sys, time
open("/proc/self/comm", "w").write("sk-churn")
deadline = time.monotonic() + float(sys.argv[1])
children = set()
started = 0
while time.monotonic() < deadline:
    while len(children) < 20:
        pid = os.fork()
        if pid == 0:
            try:
                maps = [mmap.mmap(-1, 4096 * random.randint(1, 64)) for _ in range(8)]
                time.sleep(random.random() * 0.01)
                for m in maps[::2]:
                    m.close()
                time.sleep(random.random() * 0.01)
            finally:
                os._exit(0)
        children.add(pid)
        started += 1
    pid, _ = os.waitpid(-1, 0)
    children.discard(pid)
for pid in children:
    os.waitpid(pid, 0)
print(started, flush=True)
"""

SEALER = r"""
import json, sys
import sealkit
open("/proc/self/comm", "w").write("sk-control")
pages = sealkit.Pages(8192)
pages.seal()
print(json.dumps([pages.address, pages.address + 8192]), flush=True)
sys.stdin.read()
"""


def test_sweeps_survive_churn_and_report_no_false_seal(tmp_path: Path) -> None:
    env = python_env()
    with subprocess.Popen(
        [sys.executable, "-c", SEALER], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
        text=True, env=env,
    ) as control:  # fmt: skip
        assert control.stdout is not None and control.stdin is not None
        sealed = tuple(json.loads(control.stdout.readline()))
        with subprocess.Popen(
            [sys.executable, "-c", CHURNER, str(SECONDS)], stdout=subprocess.PIPE, text=True,
            env=env,
        ) as churner:  # fmt: skip
            try:
                sweeps, vanished, churn_seen = 0, 0, 0
                deadline = time.monotonic() + SECONDS - 0.5
                while time.monotonic() < deadline:
                    for jobs in (1, 2, 4):
                        report = audit.scan_host(jobs=jobs)
                        sweeps += 1
                        vanished += report.vanished
                        rows = {p.pid: p for p in report.processes}
                        ctl = rows[control.pid]
                        assert [(m.start, m.end) for m in ctl.sealed or ()] == [sealed]
                        churn = [p for p in report.processes if p.command == "sk-churn"]
                        churn_seen += len(churn)
                        falsely = [p.pid for p in churn if p.any_sealed or p.status != "ok"]
                        assert falsely == [], f"churn children reported sealed/denied: {falsely}"
                done = subprocess.run(
                    [sys.executable, "-m", "sealkit", "audit", "--json", "--comm", "sk-*"],
                    capture_output=True, text=True, env=env, check=False, timeout=120,
                )  # fmt: skip
                assert done.returncode == 0 and done.stderr == ""
                doc = json.loads(done.stdout)
                assert [p["pid"] for p in doc["processes"] if p["sealed_mappings"]] == [control.pid]
            finally:
                assert churner.stdout is not None
                started = int(churner.stdout.read() or 0)
                churner.wait(60)
        control.stdin.close()
        control.wait(10)
    assert churner.returncode == 0
    assert started > 100, "the churn did not churn"
    assert sweeps >= 3
    assert churn_seen > 0, "no sweep met a churn child"
    assert vanished > 0, "no process vanished mid-sweep: the race was not exercised"

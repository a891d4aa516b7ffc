"""Real services sealed while they work: a multi-threaded Python service
(threads in C code and in dlopen/dlclose, serving HTTP), nginx master and
workers under a request loop, sqlite3 mid-transaction, and nginx workers
sealed one after another (200, as issue 12 asks; ``SEALKIT_LIVE_STRESS``
changes the count). Each keeps working; no request fails; every load is
bounded in count and time, on 127.0.0.1 only.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator

import pytest

from sealkit._os import procfs
from sealkit.sealing.live import seal_process
from tests.conftest import python_env
from tests.live_services import Nginx, RequestLoop, python_service

pytestmark = [pytest.mark.slow, pytest.mark.kernel]

STRESS = int(os.environ.get("SEALKIT_LIVE_STRESS", "200"))


def sealed_bytes(pid: int) -> int:
    return sum(v.size for v in procfs.read_smaps(pid, counters=False) if v.sealed)


@pytest.fixture
def nginx() -> Iterator[Nginx]:
    why = Nginx.missing()
    if why:
        pytest.skip(why)
    server = Nginx(workers=4)
    try:
        yield server
    finally:
        assert server.stop() == 0, "nginx did not quit"


def test_python_service_busy_in_c_and_dlopen_keeps_working() -> None:
    proc, port = python_service()
    try:
        with RequestLoop(port, seconds=30, limit=3000) as loop:
            reports = [seal_process(proc.pid, timeout=20) for _ in range(3)]
            after_seal = loop.ok
            deadline = time.monotonic() + 20  # keep the load on after sealing
            while loop.ok < after_seal + 100 and time.monotonic() < deadline:
                time.sleep(0.01)
        assert loop.failed == [] and loop.ok >= after_seal + 100
        first = reports[0]
        assert first.ok and first.verified and first.threads >= 5, first.problems
        assert first.newly_sealed_bytes > 0 and first.loader_lock.startswith("checked")
        assert all(r.ok for r in reports)
        assert proc.poll() is None
    finally:
        proc.send_signal(signal.SIGTERM)
        out, _ = proc.communicate(timeout=30)
    stats = out.split()
    assert stats[0] == b"stats", out
    hashes, squeezes, dlopens, bad = (int(x) for x in stats[1:])
    assert bad == 0 and hashes > 0 and squeezes > 0 and dlopens > 0
    assert proc.returncode == 0


def crashes(nginx: Nginx) -> list[str]:
    """Lines of nginx's log that report a worker lost, or a fatal error."""
    bad = ("exited on signal", "alert", "emerg", "crit")
    return [line for line in nginx.errors().splitlines() if any(b in line for b in bad)]


def test_nginx_master_and_workers_sealed_under_requests(nginx: Nginx) -> None:
    """``sealkit seal --comm NAME --all-matching`` on nginx's master and its
    four workers while a request loop runs: every process sealed, the same
    workers still serving afterwards (a crashed worker would be replaced by
    a new pid, and logged), no failed request before, during or after."""
    pids = [nginx.master, *nginx.workers()]
    with RequestLoop(nginx.port, check=nginx.body, seconds=30, limit=4000) as loop:
        deadline = time.monotonic() + 10
        while loop.ok < 20 and time.monotonic() < deadline:
            time.sleep(0.01)  # requests are flowing before the seal
        cli = subprocess.run(
            [sys.executable, "-m", "sealkit", "seal", "--comm", nginx.comm, "--all-matching"],
            capture_output=True, text=True, timeout=60, check=False, env=python_env(),
        )  # fmt: skip
        after_seal = loop.ok
        while loop.ok < after_seal + 100 and time.monotonic() < deadline + 20:
            time.sleep(0.01)  # and keep serving after it
    assert cli.returncode == 0, cli.stderr
    assert len(cli.stdout.splitlines()) >= len(pids)
    assert loop.failed == [] and loop.ok >= after_seal + 100 and after_seal >= 20
    for pid in pids:
        assert sealed_bytes(pid) > 0
    assert [nginx.master, *nginx.workers()] == pids
    assert crashes(nginx) == []


def test_sqlite3_mid_transaction() -> None:
    exe = shutil.which("sqlite3")
    if exe is None:
        pytest.skip("sqlite3 is not installed (apt-get install sqlite3)")
    proc = subprocess.Popen(
        [exe, ":memory:"], stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )
    assert proc.stdin is not None and proc.stdout is not None
    proc.stdin.write(
        b"BEGIN; CREATE TABLE t(x INTEGER); "
        b"WITH RECURSIVE c(n) AS (SELECT 1 UNION ALL SELECT n+1 FROM c WHERE n < 5000) "
        b"INSERT INTO t SELECT n FROM c; SELECT 'mid', count(*) FROM t;\n"
    )
    proc.stdin.flush()
    assert proc.stdout.readline() == b"mid|5000\n"
    report = seal_process(proc.pid)
    assert report.ok and report.verified
    assert any("libsqlite3" in o.path and o.sealed for o in report.objects)
    out, err = proc.communicate(
        b"INSERT INTO t VALUES (5001); COMMIT; SELECT count(*), sum(x) FROM t; "
        b"PRAGMA integrity_check;\n",
        timeout=30,
    )
    assert (proc.returncode, err) == (0, b"")
    assert out.decode().split() == ["5001|12507501", "ok"]


def test_nginx_workers_sealed_one_after_another(nginx: Nginx) -> None:
    """Stress: nginx reloaded again and again, each new worker sealed at
    once, under a request loop: 200 processes sealed in a row, no crash
    (nginx logs a worker that dies on a signal), no failed request."""
    sealed = []
    with RequestLoop(nginx.port, check=nginx.body, seconds=300, limit=200_000) as loop:
        assert seal_process(nginx.master).ok
        last: list[int] = []
        while len(sealed) < STRESS:
            last = nginx.reload()
            for pid in last:
                report = seal_process(pid)
                assert report.ok and report.verified, report.problems
                sealed.append(report)
    assert len(sealed) >= STRESS
    assert loop.failed == [], loop.failed[:5]
    assert loop.ok > len(sealed)
    assert crashes(nginx) == []
    assert os.path.exists(f"/proc/{nginx.master}")
    assert "alert" not in nginx.errors() and "emerg" not in nginx.errors(), nginx.errors()[-2000:]
    assert all(sealed_bytes(pid) > 0 for pid in last)
    assert len(sealed) >= STRESS

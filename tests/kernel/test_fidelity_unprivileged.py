"""`sealkit conform` and `sealkit fuzz` as a user without CAP_IPC_LOCK (a
default 8 MiB RLIMIT_MEMLOCK): the kernel then refuses mlockall(MCL_CURRENT)
and large mlocks for the runner's size, which the model (whose caller is
root) does not have. Those calls are not run there, and say why; they used
to be 7 conformance failures and fuzzing "divergences" such as
`mlockall current = ENOMEM  # model: 0`."""

from __future__ import annotations

import json
import os
import resource
import shutil
import subprocess
import sys
from collections.abc import Callable

import pytest

from tests.conftest import python_env

pytestmark = pytest.mark.kernel

LIMIT = 8 << 20  # what a user gets by default


def _has_cap_ipc_lock() -> bool:
    with open("/proc/self/status") as fh:
        eff = next(int(line.split()[1], 16) for line in fh if line.startswith("CapEff:"))
    return bool(eff & (1 << 14))


def _unprivileged() -> list[str]:
    """The command prefix that drops CAP_IPC_LOCK (none when it is not held)."""
    if not _has_cap_ipc_lock():
        return []
    setpriv = shutil.which("setpriv")
    if setpriv is None:
        pytest.skip("CAP_IPC_LOCK is held and setpriv (util-linux) is missing to drop it")
    return [setpriv, "--bounding-set=-ipc_lock", "--inh-caps=-ipc_lock"]


def _limit() -> Callable[[], None]:
    def set_limit() -> None:
        resource.setrlimit(resource.RLIMIT_MEMLOCK, (LIMIT, LIMIT))

    return set_limit


def _sealkit(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*_unprivileged(), sys.executable, "-m", "sealkit", *args], capture_output=True,
        text=True, env=python_env(), timeout=300, check=False, preexec_fn=_limit(),
    )  # fmt: skip


def test_conform_does_not_fail_what_only_the_memory_lock_limit_decides() -> None:
    done = _sealkit("conform", "--scenario", "probe/11.8", "--json")
    assert done.returncode == 0, done.stderr + done.stdout[-2000:]
    (scenario,) = json.loads(done.stdout)["scenarios"]
    result = scenario["results"]["kernel"]
    assert result["status"] == "n/a", result
    assert "not run here" in result["diff"] and "CAP_IPC_LOCK" in result["diff"]
    assert f"{LIMIT // 1024} KiB" in result["diff"]


def test_conform_still_runs_everything_else() -> None:
    # Scenarios without a locking call are compared as before.
    done = _sealkit("conform", "--scenario", "selftest/seal_munmap*", "--json")
    assert done.returncode == 0, done.stderr
    statuses = {s["results"]["kernel"]["status"] for s in json.loads(done.stdout)["scenarios"]}
    assert statuses == {"pass"}


def test_fuzz_finds_no_divergence_from_the_limit() -> None:
    # Seed 7 met `mlockall current` and a huge `mlock` (ENOMEM) within 2,100 calls.
    done = _sealkit("fuzz", "--ops", "5000", "--seed", "7", "--workers", "1", "--json")
    assert done.returncode == 0, done.stderr + done.stdout[-3000:]
    report = json.loads(done.stdout)
    assert report["calls"] >= 5000 and not report["divergences"]


def test_the_test_really_runs_without_cap_ipc_lock() -> None:
    probe = "import resource; print(open('/proc/self/status').read(), resource.getrlimit(8))"
    done = subprocess.run(
        [*_unprivileged(), sys.executable, "-c", probe], capture_output=True, text=True,
        timeout=60, check=True, preexec_fn=_limit(),
    )  # fmt: skip
    eff = next(int(line.split()[1], 16) for line in done.stdout.splitlines() if "CapEff" in line)
    assert not eff & (1 << 14) and f"({LIMIT}, {LIMIT})" in done.stdout
    assert os.geteuid() == 0 or not _has_cap_ipc_lock()

"""What a sweep cannot see: /proc mounted with hidepid, and PID namespaces.

A forked child enters a mount namespace of its own, mounts a private procfs
with the option under test in a temporary directory, drops to ``nobody``
where the case needs another user, and sweeps that directory
(``scan_host(procfs=...)``): nothing outside the child changes. The PID
namespace case runs the command line under ``unshare --pid --fork
--mount-proc``. Needs root (mounting); skipped, and says so, otherwise.

What must hold (fs/proc/base.c ``has_pid_permissions``):

* ``hidepid=invisible``, as nobody: other users' processes are not listed
  at all, so the sweep must say its scope is limited and ``--require
  complete`` must fail (it used to pass);
* ``hidepid=noaccess``, as nobody: they are listed but every file in their
  directory is refused: denied rows with an unknown command (the sweep used
  to die on the first one);
* ``hidepid=ptraceable``: limited even for root (an LSM may hide a process
  from root too); ``hidepid=invisible`` for root (in the mount's group, 0)
  or for a member of its ``gid=`` group: not limited.
"""

from __future__ import annotations

import ctypes
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import jsonschema
import pytest

import sealkit
from sealkit.host import audit
from sealkit.host.outputs import json_text
from tests.conftest import python_env, run_in_child
from tests.kernel.test_audit import parse_prometheus

pytestmark = [
    pytest.mark.kernel,
    pytest.mark.skipif(os.geteuid() != 0, reason="mounting a private /proc needs root"),
]

SCHEMA = json.loads((Path(sealkit.__file__).parent / "data" / "audit.schema.json").read_text())
CLONE_NEWNS = 0x00020000
MS_REC, MS_PRIVATE = 0x4000, 0x40000
NOBODY = 65534


def _sweep_private_proc(options: str, user: int | None) -> dict[str, Any]:
    """In a forked child: a private procfs mounted with ``options``, swept
    as ``user`` (or root); what every output says."""
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.unshare(CLONE_NEWNS) != 0:
        raise OSError(ctypes.get_errno(), "unshare(CLONE_NEWNS)")
    if libc.mount(b"none", b"/", None, MS_REC | MS_PRIVATE, None) != 0:
        raise OSError(ctypes.get_errno(), "mount --make-rprivate /")
    where = tempfile.mkdtemp(prefix="sealkit-proc-")
    os.chmod(where, 0o755)
    if libc.mount(b"proc", where.encode(), b"proc", 0, options.encode()) != 0:
        raise OSError(ctypes.get_errno(), f"mount -t proc -o {options}")
    if user is not None:
        os.setgroups([])
        os.setresgid(user, user, user)
        os.setresuid(user, user, user)
    report = audit.scan_host(procfs=where, jobs=1)
    results = audit.check_requirements(report, [audit.parse_requirement("complete")])
    return {
        "me": os.getpid(),
        "rows": [(p.pid, p.uid, p.command, p.status, p.reason) for p in report.processes],
        "scope": report.scope,
        "summary": report.summary(),
        "complete": results[0],
        "json": json_text(audit.to_json(report, requirements=results)),
        "prometheus": audit.to_prometheus(report, results),
    }


def sweep(options: str, user: int | None = None) -> dict[str, Any]:
    # every import the sweep makes, made now, as root (nobody may not read /root)
    audit.to_json(audit.scan_host(pids=[os.getpid()], jobs=1))
    result: dict[str, Any] = run_in_child(_sweep_private_proc, options, user)
    jsonschema.validate(json.loads(result["json"]), SCHEMA)
    return result


def _scope_series(text: str) -> dict[str, float]:
    samples = parse_prometheus(text)
    host = os.uname().nodename
    return {
        reason: samples[f'sealkit_audit_scope_limited{{host="{host}",reason="{reason}"}}']
        for reason in ("filter", "pid_namespace", "hidepid")
    }


def test_hidepid_invisible_hides_other_users_processes_and_says_so() -> None:
    got = sweep("hidepid=invisible", NOBODY)
    assert {uid for _, uid, *_ in got["rows"]} == {NOBODY}  # root's processes are not listed
    assert os.getpid() not in [pid for pid, *_ in got["rows"]]
    assert got["scope"].hidepid and not got["scope"].pid_namespace
    assert not got["complete"].met
    assert "hidepid=invisible" in got["complete"].reason
    assert "scope limited (hidepid)" in got["summary"]
    doc = json.loads(got["json"])
    assert doc["scope_limited"] == {"filter": False, "pid_namespace": False, "hidepid": True}
    assert _scope_series(got["prometheus"]) == {"filter": 0, "pid_namespace": 0, "hidepid": 1}


def test_hidepid_noaccess_lists_them_as_denied_with_unknown_names() -> None:
    got = sweep("hidepid=noaccess", NOBODY)
    rows = {pid: rest for pid, *rest in got["rows"]}
    uid, command, status, reason = rows[os.getpid()]  # this test's process, as root
    assert (uid, command, status) == (0, None, "denied")
    assert "hidepid=noaccess" in reason
    assert rows[got["me"]][2] == "ok"  # its own process: readable
    assert not got["scope"].hidepid  # listed: nothing is missing, only closed
    assert not got["complete"].met and "could not be read" in got["complete"].reason
    doc = json.loads(got["json"])
    row = next(p for p in doc["processes"] if p["pid"] == os.getpid())
    assert (row["command"], row["status"], row["mappings"]) == (None, "denied", None)


def test_hidepid_ptraceable_is_a_limit_even_for_root() -> None:
    got = sweep("hidepid=ptraceable")
    assert os.getpid() in [pid for pid, *_ in got["rows"]]
    assert got["scope"].hidepid and not got["complete"].met
    assert "hidepid=ptraceable" in got["complete"].reason


def test_hidepid_invisible_limits_no_one_in_its_group() -> None:
    assert not sweep("hidepid=invisible")["scope"].hidepid  # root: gid 0, the default group
    got = sweep(f"hidepid=invisible,gid={NOBODY}", NOBODY)
    assert not got["scope"].hidepid
    assert os.getpid() in [pid for pid, *_ in got["rows"]]  # listed (denied: no ptrace)


@pytest.mark.skipif(shutil.which("unshare") is None, reason="unshare(1) not installed")
def test_a_pid_namespace_is_a_limit() -> None:
    done = subprocess.run(
        ["unshare", "--pid", "--fork", "--mount-proc", sys.executable, "-m", "sealkit", "audit",
         "--format", "prometheus", "--require", "complete"],
        capture_output=True, text=True, env=python_env(), timeout=120, check=False,
    )  # fmt: skip
    assert done.returncode == 1, done.stderr
    assert "PID namespace" in done.stderr
    assert _scope_series(done.stdout) == {"filter": 0, "pid_namespace": 1, "hidepid": 0}
    samples = parse_prometheus(done.stdout)
    host = os.uname().nodename
    assert samples[f'sealkit_audit_processes{{host="{host}",state="seen"}}'] <= 2

"""A process that execs while it is read, a zombie, a pid that never existed,
and progress on stderr: each told apart in every output and in the exit code.

The exec race is made certain rather than waited for: ``os.read`` is wrapped
so that after the first chunk of the target's ``/proc/PID/smaps`` the target runs ``execve`` and the read goes on
against the released address space, which is exactly what happens when a
program execs while a sweep reads it. The kernel then simply stops the text
early: before the fix that truncated text was reported as the whole
process ("ok", a few mappings, not sealed).
"""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager, redirect_stderr, redirect_stdout
from pathlib import Path

import jsonschema
import pytest

import sealkit
from sealkit._os.procfs import read_smaps
from sealkit.cli.main import main as cli_main
from tests.conftest import python_env
from tests.kernel.test_audit import parse_prometheus

pytestmark = pytest.mark.kernel

SCHEMA = json.loads((Path(sealkit.__file__).parent / "data" / "audit.schema.json").read_text())
PID_MAX_LIMIT = 1 << 22  # kernel/pid.c: no pid is ever above this

# Prints "ready <comm>" and, for each line on stdin, execs itself again
# (with the next name) or, on "sleep", execs sleep(1).
EXECER = r"""
import os, sys
n = int(sys.argv[1])
open("/proc/self/comm", "w").write(f"sk-exec{n}")
print(f"ready sk-exec{n}", flush=True)
line = sys.stdin.readline().strip()
if line == "sleep":
    os.execv("/bin/sleep", ["sleep", "300"])
os.execv(sys.executable, [sys.executable, "-c", sys.argv[2], str(n + 1), sys.argv[2]])
"""


def cli(*args: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with redirect_stdout(out), redirect_stderr(err):
        code = cli_main(list(args))
    return code, out.getvalue(), err.getvalue()


@contextmanager
def execer() -> Iterator[subprocess.Popen[str]]:
    with subprocess.Popen(
        [sys.executable, "-c", EXECER, "0", EXECER], stdin=subprocess.PIPE,
        stdout=subprocess.PIPE, text=True, env=python_env(),
    ) as child:  # fmt: skip
        assert child.stdout is not None
        assert child.stdout.readline() == "ready sk-exec0\n"
        try:
            yield child
        finally:
            child.kill()
            child.wait(10)


def exec_during_reads(
    monkeypatch: pytest.MonkeyPatch, child: subprocess.Popen[str], times: int, last: str = ""
) -> list[int]:
    """Make ``child`` exec after the first chunk of each of the next
    ``times`` reads of its smaps (the last one into ``last`` if given);
    returns a list that counts the reads of its smaps."""
    assert child.stdin is not None and child.stdout is not None
    reads: list[int] = []
    real = os.read
    lock = threading.Lock()

    def read_chunk(fd: int, size: int) -> bytes:
        chunk = real(fd, size)
        try:
            target = os.readlink(f"/proc/self/fd/{fd}")
        except OSError:
            return chunk
        first = chunk and os.lseek(fd, 0, os.SEEK_CUR) == len(chunk)
        if target != f"/proc/{child.pid}/smaps" or not first:
            return chunk
        with lock:
            reads.append(fd)
            if len(reads) <= times:
                order = last if (len(reads) == times and last) else "again"
                child.stdin.write(order + "\n")  # type: ignore[union-attr]
                child.stdin.flush()  # type: ignore[union-attr]
                if order != "sleep":
                    assert child.stdout.readline().startswith("ready ")  # type: ignore[union-attr]
                else:
                    _wait_until_asleep(child.pid)
        return chunk

    monkeypatch.setattr(os, "read", read_chunk)
    return reads


def _wait_until_asleep(pid: int) -> None:
    """Until ``pid`` is sleep(1) in its nanosleep: its name changes at the
    exec, but its loader maps and splits libraries after that, so a read in
    between sees fewer mappings than the settled process (a race a loaded
    machine lost)."""
    for _ in range(2000):
        with open(f"/proc/{pid}/comm") as fh:
            comm = fh.read().strip()
        with open(f"/proc/{pid}/wchan") as fh:
            wchan = fh.read()
        with open(f"/proc/{pid}/stat") as fh:
            state = fh.read().rpartition(")")[2].split()[0]
        # wchan is "0" where the kernel will not say (no kallsyms)
        if comm == "sleep" and state == "S" and ("nanosleep" in wchan or wchan in ("", "0")):
            return
        time.sleep(0.005)
    raise AssertionError(f"process {pid} never went to sleep as sleep(1)")


def test_a_process_that_execs_while_read_is_read_again(monkeypatch: pytest.MonkeyPatch) -> None:
    with execer() as child:
        reads = exec_during_reads(monkeypatch, child, times=1, last="sleep")
        code, out, err = cli("audit", "--json", "--pid", str(child.pid))
        monkeypatch.undo()
        truth = read_smaps(child.pid, counters=False)
    assert (code, err) == (0, "")
    assert len(reads) == 2  # the read cut off by the exec, then the new program's
    doc = json.loads(out)
    jsonschema.validate(doc, SCHEMA)
    (row,) = doc["processes"]
    # the new program, whole: not the first chunk of the old one
    assert (row["status"], row["command"], row["mappings"]) == ("ok", "sleep", len(truth))


def test_a_process_that_execs_at_every_read_is_changed(monkeypatch: pytest.MonkeyPatch) -> None:
    with execer() as child:
        exec_during_reads(monkeypatch, child, times=12)  # 3 reads for each of 4 commands
        results = {
            fmt: cli("audit", "--pid", str(child.pid), "--format", fmt) for fmt in ("table", "json")
        }
        prom = cli("audit", "--pid", str(child.pid), "--format", "prometheus",
                   "--require", "complete")  # fmt: skip
        maps = cli("maps", str(child.pid))
    code, table, _ = results["table"]
    assert code == 0
    row = next(line for line in table.splitlines() if line.split()[:1] == [str(child.pid)])
    assert "CHANGED" in row and "not sealed" not in row
    assert "1 changed program while read" in table
    code, out, _ = results["json"]
    doc = json.loads(out)
    jsonschema.validate(doc, SCHEMA)
    (proc,) = doc["processes"]
    assert (proc["status"], proc["mappings"], proc["sealed"]) == ("changed", None, None)
    assert proc["reason"] == "it replaced its program (exec) each time it was read"
    assert doc["summary"]["changed"] == 1
    code, out, err = prom
    assert code == 1 and "requirement complete not met: 1 process changed program" in err
    host = os.uname().nodename
    samples = parse_prometheus(out)
    assert samples[f'sealkit_audit_processes{{host="{host}",state="changed"}}'] == 1
    assert samples[f'sealkit_audit_requirement_met{{host="{host}",requirement="complete"}}'] == 0
    code, _, err = maps
    assert code == 1 and "replaced its program (exec) each time it was read" in err


@pytest.fixture
def zombie() -> Iterator[int]:
    """A child of this process that exited and is not reaped yet."""
    child = subprocess.Popen(["true"])
    try:
        for _ in range(1000):
            with open(f"/proc/{child.pid}/stat", "rb") as fh:
                if fh.read().rsplit(b")", 1)[1].split()[0] == b"Z":
                    break
            time.sleep(0.005)
        else:
            raise AssertionError("the child never became a zombie")
        yield child.pid
    finally:
        child.wait()


def test_a_zombie_a_pid_that_never_existed_and_a_live_one(zombie: int) -> None:
    never = PID_MAX_LIMIT + 1
    me = str(os.getpid())
    code, out, err = cli("audit", "--json", "--pid", str(zombie), "--pid", str(never), "--pid", me)
    assert code == 1 and err == f"sealkit audit: no process {never}\n"
    doc = json.loads(out)
    jsonschema.validate(doc, SCHEMA)
    assert [p["pid"] for p in doc["processes"]] == [os.getpid()]
    assert (doc["summary"]["zombies"], doc["summary"]["not_found"], doc["summary"]["vanished"]) == (
        1, 1, 0,
    )  # fmt: skip
    assert doc["not_found"] == [never]

    code, out, err = cli("audit", "--pid", str(zombie))
    assert code == 0 and "0 processes seen" in out and "; 1 zombie" in out
    assert "not found" not in out and "vanished" in out  # "0 vanished": told apart

    code, out, err = cli("audit", "--pid", str(never), "--format", "prometheus")
    assert code == 1 and err == f"sealkit audit: no process {never}\n"
    samples = parse_prometheus(out)
    host = os.uname().nodename
    assert samples[f'sealkit_audit_processes{{host="{host}",state="not_found"}}'] == 1
    assert samples[f'sealkit_audit_processes{{host="{host}",state="zombie"}}'] == 0


def run_sealkit(*args: str, **kw: object) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "sealkit", *args], capture_output=True, text=True,
        env=python_env(), timeout=120, check=False, **kw,  # type: ignore[call-overload]
    )  # fmt: skip


def test_progress_goes_to_stderr_when_output_goes_to_a_file(tmp_path: Path) -> None:
    out = tmp_path / "audit.txt"
    done = run_sealkit("audit", "--progress", "always", "--pid", str(os.getpid()), "-o", str(out))
    assert done.returncode == 0 and done.stdout == ""
    assert "sealkit audit: 1 of 1 processes audited" in done.stderr
    assert "processes seen" in out.read_text()
    # a short sweep says nothing unless asked: stderr is not a terminal here
    done = run_sealkit("audit", "--pid", str(os.getpid()), "--json", "-o", str(out))
    assert (done.returncode, done.stderr) == (0, "")


def test_time_budgets_on_the_command_line() -> None:
    pid = str(os.getpid())
    done = run_sealkit("audit", "--json", "--pid", pid, "--process-timeout", "0")
    doc = json.loads(done.stdout)
    (row,) = doc["processes"]
    assert (row["status"], row["mappings"]) == ("cut_short", None)
    assert row["reason"] == "its time budget of 0 s ran out"
    done = run_sealkit("audit", "--pid", pid, "--timeout", "0", "--require", "complete")
    assert done.returncode == 1
    assert "1 not reached before the time ran out" in done.stderr
    assert "1 not reached before the time ran out" in done.stdout
    for bad in ("-1", "nan", "inf", "soon"):
        done = run_sealkit("audit", "--timeout", bad)
        assert done.returncode == 2 and done.stderr.count("\n") == 1, bad

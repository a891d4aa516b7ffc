"""The sweep's outcomes and time budgets, on /proc trees made for the test.

``scan_host(procfs=DIR)`` reads ``DIR/PID/status`` and ``DIR/PID/smaps``
like the real thing, so a tree can hold what a live host rarely offers on
cue: a process whose smaps read never returns (a FIFO: ``open`` blocks
until a writer comes, as a read of a process whose address-space lock is
held does), a process too large for its budget, a zombie, a process that
may not be listed. What was cut short must come out as such in every
output, never as "not sealed", and ``--require complete`` must fail.

No test here times anything: budgets of 0 seconds make the outcome certain,
and a blocked read is blocked for as long as the test keeps its FIFO shut.
"""

from __future__ import annotations

import json
import os
import threading
from collections.abc import Iterator
from pathlib import Path

import jsonschema
import pytest

import sealkit
from sealkit.host import audit
from sealkit.host.outputs import json_text
from tests.kernel.test_audit import parse_prometheus

SCHEMA = json.loads((Path(sealkit.__file__).parent / "data" / "audit.schema.json").read_text())

# as the kernel prints it: a blank after the header and after each flag
SMAPS = (
    "7f0000000000-7f0000002000 rw-p 00000000 00:00 0 \n"
    "Size:                  8 kB\n"
    "VmFlags: rd wr mr mw me ac sd \n"
    "7f0000002000-7f0000003000 r--p 00000000 00:00 0 \n"
    "Size:                  4 kB\n"
    "VmFlags: rd mr mw me ac sd sl \n"
)


def status(pid: int, name: str, state: str = "S (sleeping)", uid: int = 0) -> str:
    return (
        f"Name:\t{name}\nUmask:\t0022\nState:\t{state}\nTgid:\t{pid}\nNgid:\t0\nPid:\t{pid}\n"
        f"PPid:\t1\nUid:\t{uid}\t{uid}\t{uid}\t{uid}\nGid:\t0\t0\t0\t0\nKthread:\t0\n"
        "VmPeak:\t  1000 kB\nVmSize:\t  1000 kB\nVmLck:\t0 kB\nThreads:\t1\n"
    )


def make(root: Path, pid: int, name: str, smaps: str | None = SMAPS, **kw: object) -> Path:
    d = root / str(pid)
    d.mkdir()
    (d / "status").write_text(status(pid, name, **kw))  # type: ignore[arg-type]
    if smaps is not None:
        (d / "smaps").write_text(smaps)
    return d


@pytest.fixture
def proc_tree(tmp_path: Path) -> Path:
    root = tmp_path / "proc"
    root.mkdir()
    make(root, 10, "sk-ok")
    make(root, 11, "sk-big", SMAPS * 400)  # a few hundred reads: the clock is looked at
    return root


@pytest.fixture
def blocked(proc_tree: Path) -> Iterator[Path]:
    """Process 12, whose smaps is a FIFO nobody writes: reading it blocks."""
    d = make(proc_tree, 12, "sk-stuck", smaps=None)
    fifo = d / "smaps"
    os.mkfifo(fifo)
    try:
        yield proc_tree
    finally:
        # let the abandoned reader go: a writer that closes at once means EOF
        try:
            os.close(os.open(fifo, os.O_WRONLY | os.O_NONBLOCK))
        except OSError:
            pass  # ENXIO: no reader left


def test_a_zero_budget_cuts_every_process_short_and_says_so(proc_tree: Path) -> None:
    report = audit.scan_host(procfs=str(proc_tree), process_timeout=0, jobs=1)
    assert [(p.pid, p.status) for p in report.processes] == [(10, "cut_short"), (11, "cut_short")]
    for p in report.processes:
        assert p.mappings is None and p.sealed is None and not p.any_sealed
        assert p.reason == "its time budget of 0 s ran out"
    assert report.cut_short == 2 and not report.complete
    _check_outputs(report, cut_short=2)


def test_the_total_timeout_leaves_processes_unreached(proc_tree: Path) -> None:
    report = audit.scan_host(procfs=str(proc_tree), timeout=0, jobs=2)
    assert report.processes == () and report.unreached == (10, 11)
    assert report.cut_short == 0 and not report.complete
    assert report.summary().endswith("; 2 not reached before the time ran out")
    doc = _check_outputs(report, unreached=2)
    assert doc["unreached"] == [10, 11]


def test_without_budgets_the_same_tree_is_read(proc_tree: Path) -> None:
    report = audit.scan_host(procfs=str(proc_tree), timeout=None, process_timeout=None, jobs=1)
    assert [(p.pid, p.status, p.mappings) for p in report.processes] == [
        (10, "ok", 2), (11, "ok", 800),
    ]  # fmt: skip
    assert report.complete


def test_a_read_the_kernel_never_returns_is_left_behind(blocked: Path) -> None:
    """The reader stuck on process 12 is abandoned once its budget and the
    grace period are over; the other processes are read; 12 is cut short
    with its name (read before it blocked)."""
    threads = threading.active_count()
    report = audit.scan_host(procfs=str(blocked), process_timeout=0.1, jobs=1)
    rows = {p.pid: p for p in report.processes}
    assert rows[10].status == "ok" and rows[11].status == "ok"
    stuck = rows[12]
    assert (stuck.status, stuck.command, stuck.mappings) == ("cut_short", "sk-stuck", None)
    assert stuck.reason.startswith("the kernel did not answer in time")
    assert threading.active_count() == threads + 1  # the one reader left behind
    assert not audit.check_requirements(report, [audit.parse_requirement("complete")])[0].met


def test_a_blocked_read_under_the_total_timeout(blocked: Path) -> None:
    report = audit.scan_host(procfs=str(blocked), timeout=0.1, process_timeout=None, jobs=1)
    rows = {p.pid: p for p in report.processes}
    assert rows[12].status == "cut_short"
    assert "the sweep's total time ran out" in rows[12].reason
    assert report.cut_short == 1


def test_zombies_and_pids_that_never_existed(proc_tree: Path) -> None:
    make(proc_tree, 13, "sk-zombie", smaps="", state="Z (zombie)")
    (proc_tree / "13" / "task").mkdir()  # a zombie leader whose threads are all gone
    report = audit.scan_host(procfs=str(proc_tree), pids=[10, 13, 99], jobs=1)
    assert [p.pid for p in report.processes] == [10]
    assert (report.zombies, report.not_found, report.vanished) == (1, (99,), 0)
    assert report.summary().endswith("; 1 zombie, 1 not found")
    doc = _check_outputs(report)
    assert doc["not_found"] == [99] and doc["summary"]["zombies"] == 1
    samples = parse_prometheus(audit.to_prometheus(report))
    assert samples[f'sealkit_audit_processes{{host="{report.host}",state="zombie"}}'] == 1
    assert samples[f'sealkit_audit_processes{{host="{report.host}",state="not_found"}}'] == 1
    # listed by /proc, then gone: vanished, not "not found"
    listed = audit.scan_host(procfs=str(proc_tree), jobs=1)
    assert listed.zombies == 1 and listed.not_found == ()


def _check_outputs(
    report: audit.HostAudit, cut_short: int = 0, unreached: int = 0
) -> dict[str, object]:
    """JSON (valid, and the table's counts), Prometheus (the states), requirements."""
    doc = json.loads(json_text(audit.to_json(report)))
    jsonschema.validate(doc, SCHEMA)
    assert doc["summary"]["cut_short"] == cut_short
    assert doc["summary"]["unreached"] == unreached
    for row in doc["processes"]:
        if row["status"] == "cut_short":
            assert row["mappings"] is None and row["sealed"] is None and row["reason"]
    samples = parse_prometheus(audit.to_prometheus(report))
    host = report.host
    assert samples[f'sealkit_audit_processes{{host="{host}",state="cut_short"}}'] == cut_short
    assert samples[f'sealkit_audit_processes{{host="{host}",state="unreached"}}'] == unreached
    for p in report.processes:
        key = f'host="{host}",command="{p.command}"'
        assert samples[f"sealkit_audit_command_sealed_processes{{{key}}}"] == int(p.any_sealed)
        assert samples[f"sealkit_audit_command_unread_processes{{{key}}}"] == int(p.status != "ok")
    (complete,) = audit.check_requirements(report, [audit.parse_requirement("complete")])
    assert complete.met == (cut_short == unreached == 0 and not report.scope.limited), complete
    if cut_short:
        assert "cut short" in complete.reason
    if unreached:
        assert f"{unreached} not reached before the time ran out" in complete.reason
    return doc

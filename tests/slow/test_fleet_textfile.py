"""The timer's command, through node_exporter's textfile collector.

node_exporter (Debian's ``prometheus-node-exporter``) runs on 127.0.0.1 with
only the textfile collector, as the ``prometheus`` user when we are root (as
Debian's unit runs it). The command is ``ExecStart=`` of
deploy/systemd/sealkit-audit.service, read from the unit, with the unit's
umask. What is checked comes from ``/metrics``, never from the file:

* node_exporter read the file without error, and every sealkit series
  carries this host's name;
* processes this test started are counted exactly, and their mappings
  match ``/proc/PID/maps`` line by line (a second source);
* the host totals agree with a listing of ``/proc`` made while the sweep ran;
* a sealed process shows its sealed bytes, by kind, and the requirements
  passed through ``$SEALKIT_AUDIT_ARGS`` come out met and unmet, with an
  exit status the unit counts as success;
* the file only ever appears by a rename, and no other ``*.prom`` name is
  ever created in the directory (inotify), so node_exporter never reads half
  a file or a second copy.

Skipped, with the reason, where node_exporter is not installed.
"""

from __future__ import annotations

import ctypes
import os
import stat
import struct
import subprocess
import tempfile
import threading
import time
from collections.abc import Iterator

import pytest

from tests.conftest import MSEAL_MISSING, python_env
from tests.slow.fleet_support import (
    IDLE,
    SEALED,
    Probe,
    Service,
    missing_node_exporter,
    one,
    parse_metrics,
    run_unit_command,
    sealkit_cli,
    start_node_exporter,
    unit_command,
    unit_settings,
    unit_success_statuses,
)

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(missing_node_exporter() is not None, reason=str(missing_node_exporter())),
]

PAGE = os.sysconf("SC_PAGESIZE")
SEALED_PAGES = 3

# --- a listing of /proc, during the sweep ----------------------------------------

PF_KTHREAD = 0x00200000  # include/linux/sched.h


def _is_kthread(pid: str) -> bool | None:
    try:
        with open(f"/proc/{pid}/stat", "rb") as fh:
            data = fh.read()
    except OSError:
        return None
    fields = data[data.rindex(b")") + 2 :].split()
    return bool(int(fields[6]) & PF_KTHREAD)  # field 9: flags


class ProcPoller:
    """Lists /proc over and over until stopped: every pid seen, user or kernel."""

    def __init__(self) -> None:
        self.user: set[str] = set()
        self.kernel: set[str] = set()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    @staticmethod
    def snapshot() -> tuple[set[str], set[str]]:
        user, kernel = set(), set()
        for pid in os.listdir("/proc"):
            if pid.isdigit():
                k = _is_kthread(pid)
                (kernel if k else user).add(pid)  # gone before we looked: count as user
        return user, kernel

    def _run(self) -> None:
        while not self._stop.is_set():
            user, kernel = self.snapshot()
            self.user |= user
            self.kernel |= kernel

    def __enter__(self) -> ProcPoller:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


def _own_pid_namespace() -> bool:
    """Whether this process is outside the initial PID namespace
    (include/linux/proc_ns.h PROC_PID_INIT_INO)."""
    return os.stat("/proc/self/ns/pid").st_ino != 0xEFFFFFFC


def _hidepid() -> bool:
    """Whether /proc hides processes from root: hidepid=ptraceable (or 4);
    invisible hides nothing from root, in its default group 0."""
    options = ""
    with open("/proc/self/mountinfo") as fh:
        for line in fh:
            fields = line.split(" - ")
            if fields[0].split()[4] == "/proc" and fields[1].split()[0] == "proc":
                options = fields[1].split()[2]
    mode = dict(o.partition("=")[::2] for o in options.split(",")).get("hidepid", "off")
    return mode in ("ptraceable", "4")


# --- inotify ---------------------------------------------------------------------------

IN_MODIFY, IN_CLOSE_WRITE, IN_MOVED_FROM, IN_MOVED_TO, IN_CREATE = 0x2, 0x8, 0x40, 0x80, 0x100
_EVENT = struct.Struct("iIII")


class DirWatch:
    """inotify on one directory: (mask, cookie, name) of what happened in it."""

    def __init__(self, path: str) -> None:
        self.libc = ctypes.CDLL(None, use_errno=True)
        self.fd = self.libc.inotify_init1(os.O_NONBLOCK | os.O_CLOEXEC)
        assert self.fd >= 0, os.strerror(ctypes.get_errno())
        mask = IN_MODIFY | IN_CLOSE_WRITE | IN_MOVED_FROM | IN_MOVED_TO | IN_CREATE
        wd = self.libc.inotify_add_watch(self.fd, os.fsencode(path), mask)
        assert wd >= 0, os.strerror(ctypes.get_errno())

    def events(self) -> list[tuple[int, int, str]]:
        out = []
        while True:
            try:
                buf = os.read(self.fd, 65536)
            except BlockingIOError:
                return out
            pos = 0
            while pos < len(buf):
                _, mask, cookie, length = _EVENT.unpack_from(buf, pos)
                name = buf[pos + _EVENT.size : pos + _EVENT.size + length].rstrip(b"\0")
                out.append((mask, cookie, os.fsdecode(name)))
                pos += _EVENT.size + length

    def close(self) -> None:
        os.close(self.fd)


# --- fixtures ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def textfile_dir() -> Iterator[str]:
    # not under pytest's 0700 tmp_path: node_exporter runs as another user
    path = tempfile.mkdtemp(prefix="sealkit-textfile-")
    os.chmod(path, 0o755)
    try:
        yield path
    finally:
        for name in os.listdir(path):
            os.unlink(os.path.join(path, name))
        os.rmdir(path)


@pytest.fixture(scope="module")
def node_exporter(textfile_dir: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Service]:
    log = tmp_path_factory.mktemp("node-exporter") / "log"
    service = start_node_exporter(textfile_dir, log)
    try:
        yield service
    finally:
        service.stop()


@pytest.fixture
def idle_probes() -> Iterator[list[Probe]]:
    probes: list[Probe] = []
    try:
        for _ in range(3):
            probes.append(Probe(IDLE))
        yield probes
    finally:
        for probe in probes:
            probe.stop()


# --- tests --------------------------------------------------------------------------------


def test_unit_command_through_node_exporter(
    node_exporter: Service, textfile_dir: str, idle_probes: list[Probe]
) -> None:
    argv, textfile = unit_command(textfile_dir, sealkit_cli())
    maps_before = [p.maps_lines() for p in idle_probes]
    watch = DirWatch(textfile_dir)
    try:
        for _ in range(2):  # the first run creates the file, the second replaces it
            user0, kernel0 = ProcPoller.snapshot()
            t0 = time.time()
            with ProcPoller() as poller:
                done = run_unit_command(argv, python_env())
            t1 = time.time()
            user1, kernel1 = ProcPoller.snapshot()
            assert done.returncode == 0, done.stderr
            assert done.stdout == ""
        events = watch.events()
    finally:
        watch.close()
    maps_after = [p.maps_lines() for p in idle_probes]
    assert maps_before == maps_after  # idle: a stable second source

    # The file: replaced by a rename, twice; no other *.prom ever existed.
    name = os.path.basename(textfile)
    assert sorted(os.listdir(textfile_dir)) == [name]
    assert [
        e for e in events if e[2] == name and e[0] & (IN_CREATE | IN_MODIFY | IN_CLOSE_WRITE)
    ] == []
    moved_to = [e for e in events if e[2] == name and e[0] & IN_MOVED_TO]
    assert len(moved_to) == 2, events
    created = [e[2] for e in events if e[0] & IN_CREATE]
    assert len(created) == 2 and not any(c.endswith(".prom") for c in created), created
    for _, cookie, _ in moved_to:
        (source,) = [e[2] for e in events if e[0] & IN_MOVED_FROM and e[1] == cookie]
        assert source in created
    mode = os.stat(textfile).st_mode
    assert stat.S_IMODE(mode) == 0o666 & ~0o022  # the unit's UMask=0022: node_exporter can read it

    # What node_exporter serves.
    metrics = parse_metrics(node_exporter.get("/metrics"))
    assert one(metrics, "node_textfile_scrape_error") == 0
    mtimes = metrics["node_textfile_mtime_seconds"]
    assert len(mtimes) == 1 and dict(next(iter(mtimes)))["file"].endswith(name)
    assert next(iter(mtimes.values())) == int(os.stat(textfile).st_mtime)

    host = os.uname().nodename
    sealkit = {n: s for n, s in metrics.items() if n.startswith("sealkit_")}
    assert set(sealkit) >= {
        "sealkit_audit_processes", "sealkit_audit_sealed_mappings", "sealkit_audit_sealed_bytes",
        "sealkit_audit_command_processes", "sealkit_audit_command_sealed_processes",
        "sealkit_audit_command_denied_processes", "sealkit_audit_command_unread_processes",
        "sealkit_audit_command_mappings", "sealkit_audit_scope_limited",
        "sealkit_audit_duration_seconds", "sealkit_audit_last_run_timestamp_seconds",
    }  # fmt: skip
    for samples in sealkit.values():
        for labels in samples:
            assert dict(labels)["host"] == host

    # When: the second run, as measured around it.
    started = one(metrics, "sealkit_audit_last_run_timestamp_seconds")
    assert t0 - 0.01 <= started <= t1
    assert 0 < one(metrics, "sealkit_audit_duration_seconds") < t1 - t0

    # What the sweep could see: this host's PID namespace and /proc mount, read here.
    assert {dict(k)["reason"]: v for k, v in metrics["sealkit_audit_scope_limited"].items()} == {
        "filter": 0, "pid_namespace": float(_own_pid_namespace()), "hidepid": float(_hidepid()),
    }  # fmt: skip
    for state in ("cut_short", "unreached", "changed", "zombie", "not_found"):
        one(metrics, "sealkit_audit_processes", state=state)  # always written

    # The processes this test started: exactly.
    assert one(metrics, "sealkit_audit_command_processes", command=IDLE) == 3
    assert one(metrics, "sealkit_audit_command_denied_processes", command=IDLE) == 0
    # 0 unless the kernel seals [vdso] & co. in every process
    expected_sealed = sum(p.any_sealed() for p in idle_probes)
    assert one(metrics, "sealkit_audit_command_sealed_processes", command=IDLE) == expected_sealed
    assert one(metrics, "sealkit_audit_command_mappings", command=IDLE) == sum(maps_after)

    # The host: what /proc listed around and during the sweep.
    seen = one(metrics, "sealkit_audit_processes", state="seen")
    vanished = one(metrics, "sealkit_audit_processes", state="vanished")
    kthreads = one(metrics, "sealkit_audit_processes", state="kernel_threads")
    stable_user, stable_kernel = user0 & user1, kernel0 & kernel1
    assert len(stable_user) <= seen + vanished <= len(poller.user | user0 | user1)
    assert len(stable_kernel) <= kthreads <= len(poller.kernel | kernel0 | kernel1)
    per_command = sum(metrics["sealkit_audit_command_processes"].values())
    assert per_command == seen
    assert one(metrics, "sealkit_audit_processes", state="denied") == sum(
        metrics["sealkit_audit_command_denied_processes"].values()
    )
    sealed = one(metrics, "sealkit_audit_processes", state="sealed")
    assert sealed == sum(metrics["sealkit_audit_command_sealed_processes"].values())


@pytest.mark.kernel
def test_sealed_process_and_requirements_through_node_exporter(
    node_exporter: Service, textfile_dir: str, idle_probes: list[Probe]
) -> None:
    assert MSEAL_MISSING is None  # the kernel marker skips this test otherwise
    sealed = Probe(SEALED, SEALED_PAGES)
    try:
        met, unmet = f"sealed:{SEALED}:anon", f"sealed:{IDLE}:anon"
        argv, _ = unit_command(
            textfile_dir, sealkit_cli(), audit_args=f"--require {met} --require {unmet}"
        )
        done = run_unit_command(argv, python_env())
    finally:
        sealed.stop()
    # one unmet requirement: exit 1, which the unit counts as success
    assert done.returncode == 1, done.stderr
    assert done.returncode in unit_success_statuses()
    assert f"requirement {unmet} not met" in done.stderr
    assert met not in done.stderr

    metrics = parse_metrics(node_exporter.get("/metrics"))
    assert one(metrics, "node_textfile_scrape_error") == 0
    assert one(metrics, "sealkit_audit_requirement_met", requirement=met) == 1
    assert one(metrics, "sealkit_audit_requirement_met", requirement=unmet) == 0
    assert len(metrics["sealkit_audit_requirement_met"]) == 2

    assert one(metrics, "sealkit_audit_command_processes", command=SEALED) == 1
    assert one(metrics, "sealkit_audit_command_sealed_processes", command=SEALED) == 1
    by_kind = {
        dict(k)["kind"]: v
        for k, v in metrics["sealkit_audit_command_sealed_bytes"].items()
        if dict(k)["command"] == SEALED
    }
    # what the probe sealed; and [vdso] & co. where the kernel seals them
    assert by_kind.pop("anon") == SEALED_PAGES * PAGE
    assert set(by_kind) <= {"system"}
    assert one(metrics, "sealkit_audit_command_sealed_mappings", command=SEALED, kind="anon") == 1
    assert one(metrics, "sealkit_audit_processes", state="sealed") >= 1
    assert one(metrics, "sealkit_audit_sealed_bytes") >= SEALED_PAGES * PAGE


def test_the_unit_stops_its_sweep_before_systemd_does() -> None:
    """The unit's command gives the sweep a --timeout shorter than the
    unit's TimeoutStartSec=: a long sweep ends by itself, writes what it has
    and counts the rest as unreached, rather than being killed and leaving
    a stale file."""
    argv, _ = unit_command("/tmp/x", ["sealkit"])
    timeout = float(argv[argv.index("--timeout") + 1])
    (start,) = unit_settings()["TimeoutStartSec"]
    assert start.endswith("min")
    assert 0 < timeout < 60 * float(start.removesuffix("min")) - 30


def test_the_textfile_is_readable_by_node_exporter_whatever_the_umask(
    node_exporter: Service, textfile_dir: str
) -> None:
    """Root's umask 027 (a common hardening) made the file -rw-r----- and
    node_exporter (user prometheus) could not read it. The file must come
    out world-readable (0644) whatever the umask: this depends on ``-o``
    writing the mode itself (the command line's file writing)."""
    argv, textfile = unit_command(textfile_dir, sealkit_cli())
    done = subprocess.run(
        argv, env=python_env(), capture_output=True, text=True, timeout=240, check=False,
        umask=0o027,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert stat.S_IMODE(os.stat(textfile).st_mode) == 0o644
    metrics = parse_metrics(node_exporter.get("/metrics"))
    assert one(metrics, "node_textfile_scrape_error") == 0
    assert "sealkit_audit_processes" in metrics

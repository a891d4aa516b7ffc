"""How long live sealing stops the target, per process, against a bare ptrace
cycle measured on the same processes in the same run; then a stress run.

1. For each of N fresh processes of a typical Python service (about fifty
   ELF objects: the interpreter, libc, and the extension modules a service
   imports; the exact count is printed):

   * baseline: PTRACE_SEIZE + PTRACE_INTERRUPT of every thread, wait for
     each stop, PTRACE_DETACH (sealkit's own attach and release with nothing
     in between): the least any ptrace-based tool stops the target;
   * ``seal_process(pid)``: the time from the first PTRACE_INTERRUPT to the
     last PTRACE_DETACH (``LiveReport.stopped_seconds``), with its phases.

   Baseline and seal alternate process by process (the machine is shared
   and noisy: medians and ratios taken side by side mean something, single
   timings do not). Goal (issue 12): under 5 ms for ~50 objects.

2. Stress (needs nginx): a 4-worker nginx reloaded again and again under a
   request loop on 127.0.0.1, each new worker sealed at once, N of them:
   crashes, failed requests, and the stop per worker.

    python benchmarks/run.py live            # N = 200
    python benchmarks/bench_live.py [--processes N] [--batch B] [--quick]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(
    0, os.environ.get("SEALKIT_SRC") or str(Path(__file__).resolve().parent.parent / "src")
)
# tests.live_services: the same nginx and request loop as the slow tests
sys.path.insert(1, str(Path(__file__).resolve().parent.parent))

from sealkit.errors import SealkitError
from sealkit.sealing.live import seal_process
from sealkit.sealing.live.preflight import kernel_lacks_mseal
from sealkit.sealing.live.session import Session
from sealkit.sealing.live.target import Process

SERVICE = """
import importlib, sys, warnings
warnings.simplefilter("ignore")
for name in ("ssl sqlite3 decimal json hashlib ctypes lzma bz2 zlib uuid csv select mmap "
             "array math socket asyncio unicodedata _multibytecodec pyexpat readline "
             "_posixshmem _queue _contextvars _statistics cmath _bisect _heapq _random "
             "_struct binascii _zoneinfo _asyncio _uuid _csv _json _pickle _datetime").split():
    try:
        importlib.import_module(name)
    except ImportError:
        pass
print("ready", flush=True)
sys.stdin.read()
"""


def baseline(pid: int) -> float:
    """Seize + interrupt every thread, wait for the stops, detach: seconds stopped."""
    with Process(pid) as process:
        session = Session(process, time.monotonic() + 5)
        try:
            session.attach()
        finally:
            session.release()
    return session.ended - session.started


def quantiles(values: list[float]) -> str:
    values = sorted(values)
    p90 = values[min(len(values) - 1, int(len(values) * 0.9))]
    return (
        f"median {statistics.median(values) * 1e3:6.2f} ms  p90 {p90 * 1e3:6.2f} ms  "
        f"worst {values[-1] * 1e3:6.2f} ms"
    )


def machine() -> str:
    load = os.getloadavg()
    return (
        f"{os.uname().sysname} {os.uname().release} {os.uname().machine}, "
        f"{os.cpu_count()} CPUs, load average {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}"
    )


def python_services(total: int, batch: int) -> int:
    base: list[float] = []
    stop: list[float] = []
    phases: dict[str, list[float]] = {}
    objects: list[int] = []
    calls: list[int] = []
    failures = 0
    done = 0
    while done < total:
        procs = [
            subprocess.Popen(
                [sys.executable, "-c", SERVICE], stdin=subprocess.PIPE, stdout=subprocess.PIPE
            )
            for _ in range(min(batch, total - done))
        ]
        try:
            for proc in procs:
                assert proc.stdout is not None
                if proc.stdout.readline().strip() != b"ready":
                    raise SystemExit("a service process did not start")
            time.sleep(0.2)  # let start-up settle
            for proc in procs:
                try:
                    base.append(baseline(proc.pid))
                    report = seal_process(proc.pid)
                except (SealkitError, OSError) as exc:
                    print(f"bench_live: skipped: cannot trace a child here: {exc}")
                    return 0
                if not report.ok or proc.poll() is not None:
                    failures += 1
                stop.append(report.stopped_seconds[-1])
                objects.append(sum(1 for o in report.objects if o.sealed))
                calls.append(len(report.calls))
                for name, seconds in report.stop_phases:
                    key = "calls" if name.endswith(")") and "calls" in name else name
                    phases.setdefault(key, []).append(seconds)
                done += 1
        finally:
            for proc in procs:
                proc.kill()
                proc.wait()
                for pipe in (proc.stdin, proc.stdout):
                    if pipe is not None:
                        pipe.close()
    print(
        f"python service, {done} processes ({statistics.median(objects):.0f} objects, "
        f"{statistics.median(calls):.0f} mseal calls each, median), {failures} failures"
    )
    print(f"  bare seize+interrupt+detach  {quantiles(base)}")
    print(f"  seal_process                 {quantiles(stop)}")
    ratio = statistics.median(stop) / statistics.median(base)
    print(f"  ratio of medians             {ratio:.1f}x the bare ptrace cycle")
    for name, values in phases.items():
        print(f"  phase {name:<22} median {statistics.median(values) * 1e3:6.3f} ms")
    per_call = [p / max(c, 1) for p, c in zip(phases.get("calls", []), calls, strict=False)]
    if per_call:
        print(f"  per mseal call               median {statistics.median(per_call) * 1e6:6.1f} us")
    goal = statistics.median(stop) < 0.005
    print(f"  goal < 5 ms (median): {'met' if goal else 'NOT met'}")
    return failures


def nginx_stress(total: int) -> int:
    from tests.live_services import Nginx, RequestLoop

    why = Nginx.missing()
    if why:
        print(f"nginx stress: skipped: {why}")
        return 0
    nginx = Nginx(workers=4)
    stops: list[float] = []
    crashed = 0
    try:
        with RequestLoop(nginx.port, check=nginx.body, seconds=600, limit=1_000_000) as loop:
            seal_process(nginx.master)
            while len(stops) < total:
                for pid in nginx.reload():
                    report = seal_process(pid)
                    stops.append(report.stopped_seconds[-1])
                    crashed += not report.ok
        errors = nginx.errors()
        crashed += errors.count("exited on signal")
        alerts = errors.count("[alert]") + errors.count("[emerg]")
    finally:
        nginx.stop()
    print(
        f"nginx stress: {len(stops)} workers sealed right after each reload: "
        f"{crashed} crashes, {len(loop.failed)} failed of {loop.ok + len(loop.failed)} "
        f"requests, {alerts} alerts in the error log"
    )
    print(f"  stopped per worker           {quantiles(stops)}")
    return crashed + len(loop.failed) + alerts


def main() -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--processes", type=int, default=200)
    parser.add_argument("--batch", type=int, default=20, help="service processes alive at once")
    parser.add_argument("--quick", action="store_true", help="20 of each")
    args = parser.parse_args()
    total = 20 if args.quick else args.processes
    why = kernel_lacks_mseal()
    if why:
        print(f"bench_live: skipped: {why}")
        return 0
    print(f"machine: {machine()}")
    failures = python_services(total, args.batch)
    failures += nginx_stress(total)
    print(f"machine after: {machine()}")
    return 0 if failures == 0 else 1


if __name__ == "__main__":
    sys.exit(main())

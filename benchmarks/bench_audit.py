"""``sealkit audit`` and ``sealkit maps`` against ``cat`` of the same smaps, same run.

Two cases (``--case host|maps|both``, default both):

``maps``
    ``sealkit maps PID --json`` of a process with 65,000 mappings
    (``tests/data/many_vmas.py alternating 65000``: one-page mappings whose
    kinds alternate, anonymous read-write, a page of an ELF file, anonymous
    read-only, every other one sealed, every page used) against ``cat
    /proc/PID/smaps > /dev/null``. Goal: at most 2x.
``host``
    Full-host ``sealkit audit --json`` against ``cat /proc/*/smaps > /dev/null``,
    with that 65,000-mapping process among the interpreters described below.
    Goal: at most 1.3x.

The benchmark makes the host busy itself: it starts at least 200 Python
interpreters that import a handful of modules (so they have realistic
mappings: the interpreter, libpython, extension modules, locale files,
malloc arenas) and wait; one in five also seals memory through the library
(a ``Pages`` page and a ``map_file`` mapping of a file), so the sweep classifies some sealed
processes too. Then, in the same run, it times the two commands in
alternating order, several rounds, and prints the median ratio. The kernel
generating smaps text is the floor both commands share.

sealkit runs as an installed command runs: a fresh interpreter
(``python -m sealkit``) with its bytecode cached (this environment sets
``PYTHONDONTWRITEBYTECODE``; the benchmark points ``PYTHONPYCACHEPREFIX`` at a
temporary directory instead, warmed by one run before timing).

Besides the ratio it prints where sealkit's time goes: interpreter start,
``sealkit --version`` (start-up and imports of the command line), the sweep
inside the process (``duration_seconds`` of the JSON) and a one-thread sweep.

Every spawned interpreter is stopped on the way out (their stdin is a pipe
from this script: when it closes, for any reason, they exit).

Usage: ``python benchmarks/bench_audit.py [--case host|maps|both] [--quick]
[--procs N] [--vmas N] [--rounds N]`` (``--quick``: 40 interpreters, 16,000
mappings, 3 rounds; a smoke profile, not for figures).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SRC = ROOT / "src"

CHILD = r"""
import sys, os, json, decimal, sqlite3, ssl, asyncio, email.parser, ctypes
sealed = []
if sys.argv[1] == "seal":
    import sealkit
    page = sealkit.Pages(4096)
    page.seal()
    mapped = sealkit.map_file(sys.argv[2], length=8192)
    sealed = [[page.address, page.address + 4096], [mapped.address, mapped.address + 8192]]
blob = [bytes(1000) * i for i in range(200)]  # some heap, so page tables exist
sys.stdout.write(json.dumps(sealed) + "\n")
sys.stdout.flush()
sys.stdin.buffer.read()
"""


def _env(cache: str) -> dict[str, str]:
    env = dict(os.environ)
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    env["PYTHONPYCACHEPREFIX"] = cache
    env["PYTHONPATH"] = str(SRC) + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    return env


def spawn(n: int, datafile: str, env: dict[str, str]) -> list[subprocess.Popen[bytes]]:
    """Start ``n`` waiting interpreters (every fifth seals); return once all are ready."""
    children = []
    try:
        for i in range(n):
            mode = "seal" if i % 5 == 0 else "plain"
            children.append(
                subprocess.Popen(
                    [sys.executable, "-c", CHILD, mode, datafile],
                    stdin=subprocess.PIPE,
                    stdout=subprocess.PIPE,
                    env=env,
                )
            )
        for child in children:
            assert child.stdout is not None
            line = child.stdout.readline()
            if not line:
                raise RuntimeError(f"child {child.pid} died before it was ready")
    except BaseException:
        stop(children)
        raise
    return children


def stop(children: list[subprocess.Popen[bytes]]) -> None:
    for child in children:
        try:
            if child.stdin is not None:
                child.stdin.close()
        except OSError:
            pass
    deadline = time.monotonic() + 20
    for child in children:
        try:
            child.wait(max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            child.kill()
            child.wait()


_CPU = [0.0]


def timed(cmd: list[str], env: dict[str, str] | None = None) -> tuple[float, bytes]:
    """Wall time of ``cmd`` and its output; its CPU time (user + system of
    the command and its children) is left in ``_CPU[0]``."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    out = subprocess.run(
        cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, check=False
    )
    took = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    _CPU[0] = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return took, out.stdout


def spawn_many_vmas(n: int, env: dict[str, str]) -> tuple[subprocess.Popen[bytes], dict[str, int]]:
    """The process with ``n`` mappings of alternating kinds (tests/data/many_vmas.py)."""
    child = subprocess.Popen(
        [sys.executable, str(ROOT / "tests" / "data" / "many_vmas.py"), "alternating", str(n)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        env=env,
    )
    assert child.stdout is not None
    line = child.stdout.readline()
    if not line:
        stop([child])
        raise RuntimeError("tests/data/many_vmas.py failed (vm.max_map_count too low?)")
    info: dict[str, int] = json.loads(line)
    return child, info


def alternate(
    rounds: int, first: list[str], second: list[str], env: dict[str, str]
) -> tuple[list[float], list[float], list[float], list[float], bytes]:
    """Time two commands in alternating order: (first's walls, second's,
    first's CPU times, second's, first's last output)."""
    a_t: list[float] = []
    b_t: list[float] = []
    a_cpu: list[float] = []
    b_cpu: list[float] = []
    out = b""
    for r in range(rounds):
        order = [("a", first), ("b", second)]
        if r % 2:
            order.reverse()
        for name, cmd in order:
            took, output = timed(cmd, env)
            if name == "a":
                a_t.append(took)
                a_cpu.append(_CPU[0])
                out = output
            else:
                b_t.append(took)
                b_cpu.append(_CPU[0])
    return a_t, b_t, a_cpu, b_cpu, out


def report(name: str, goal: float, a_t: list[float], b_t: list[float], a_cpu: list[float],
           b_cpu: list[float]) -> float:  # fmt: skip
    med = statistics.median
    ratios = [a / b for a, b in zip(a_t, b_t, strict=True)]
    cpu_ratios = [a / b for a, b in zip(a_cpu, b_cpu, strict=True) if b > 0]
    print(f"ratio {name} per round: {' '.join(f'{r:.2f}' for r in ratios)}")
    print(f"CPU time (user+sys) median: cat {med(b_cpu) * 1000:.0f} ms, sealkit "
          f"{med(a_cpu) * 1000:.0f} ms, ratio {med(cpu_ratios):.2f}x "
          f"(load average now: {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs)")  # fmt: skip
    print(f"RATIO (median) {name}: {med(ratios):.2f}x (goal <= {goal}x)")
    return med(ratios)


def maps_case(vmas: int, rounds: int, env: dict[str, str]) -> None:
    print(f"\n--- maps: one process with {vmas} mappings ---")
    started = time.perf_counter()
    child, info = spawn_many_vmas(vmas, env)
    try:
        print(f"process {child.pid}: {info['vmas']} mappings, {info['sealed']} sealed, made in "
              f"{time.perf_counter() - started:.1f}s")  # fmt: skip
        sealkit = [sys.executable, "-m", "sealkit", "maps", str(child.pid), "--json"]
        cat = ["sh", "-c", f"cat /proc/{child.pid}/smaps > /dev/null"]
        timed(sealkit, env)  # warm the bytecode cache and the page cache
        a_t, b_t, a_cpu, b_cpu, out = alternate(rounds, sealkit, cat, env)
        doc = json.loads(out)
        assert doc["mappings"] == info["vmas"] and doc["sealed_mappings"] == info["sealed"], doc
        # Start-up and imports of the maps path: a pid that cannot exist
        # (above pid_max), so nothing is read.
        nothing = [*sealkit[:-2], str((1 << 22) + 1), "--json"]
        startup_t = [timed(nothing, env)[0] for _ in range(rounds)]
    finally:
        stop([child])
    med = statistics.median
    print(f"cat /proc/PID/smaps > /dev/null    median {med(b_t) * 1000:7.1f} ms")
    print(f"sealkit maps PID --json            median {med(a_t) * 1000:7.1f} ms")
    print(
        f"  of which start-up + imports      median {med(startup_t) * 1000:7.1f} ms (maps <none>)"
    )
    report("sealkit maps --json / cat", 2.0, a_t, b_t, a_cpu, b_cpu)


def host_case(procs: int, vmas: int, rounds: int, env: dict[str, str]) -> None:
    print(f"\n--- host: {procs} interpreters and one process with {vmas} mappings ---")
    sealkit = [sys.executable, "-m", "sealkit", "audit", "--json"]
    baseline = ["sh", "-c", "cat /proc/*/smaps > /dev/null 2>/dev/null"]
    with tempfile.NamedTemporaryFile(prefix="sealkit-bench-", suffix=".dat") as data:
        data.write(b"sealkit benchmark data\n" * 1000)
        data.flush()
        started = time.perf_counter()
        big, info = spawn_many_vmas(vmas, env) if vmas else (None, {"vmas": 0})
        children = spawn(procs, data.name, env)
        try:
            print(f"host: {procs} interpreters started in {time.perf_counter() - started:.1f}s "
                  f"({(procs + 4) // 5} of them sealing), one with {info['vmas']} mappings, "
                  f"{sum(1 for n in os.listdir('/proc') if n.isdigit())} processes in /proc")  # fmt: skip
            timed(sealkit, env)  # warm the bytecode cache and the page cache
            timed(baseline)
            audit_t, cat_t, audit_cpu, cat_cpu, out = alternate(rounds, sealkit, baseline, env)
            doc = json.loads(out)
            inner = [float(doc["duration_seconds"])]
            one_t = [timed([*sealkit, "--jobs", "1"], env)[0] for _ in range(max(1, rounds // 3))]
            start_t = [timed([sys.executable, "-c", "pass"], env)[0] for _ in range(rounds)]
            # Start-up and imports of the audit path: a sweep of one pid that
            # cannot exist (above pid_max), so nothing is read.
            nothing = [*sealkit, "--pid", str((1 << 22) + 1)]
            startup_t = [timed(nothing, env)[0] for _ in range(rounds)]
        finally:
            stop(children + ([big] if big is not None else []))
    summary = doc.get("summary", {})
    med = statistics.median
    print(f"audit saw {summary.get('seen')} processes, {summary.get('sealed')} with seals "
          f"({summary.get('sealed_mappings')} sealed mappings), {summary.get('denied')} denied, "
          f"{summary.get('cut_short')} cut short, {summary.get('vanished')} vanished, "
          f"{summary.get('zombies')} zombies, {summary.get('kernel_threads')} kernel threads")  # fmt: skip
    print(f"rounds: {rounds}")
    print(f"cat /proc/*/smaps > /dev/null      median {med(cat_t) * 1000:7.1f} ms")
    print(f"sealkit audit --json               median {med(audit_t) * 1000:7.1f} ms")
    print(f"  of which: interpreter start      median {med(start_t) * 1000:7.1f} ms")
    print(f"            start-up + imports     median {med(startup_t) * 1000:7.1f} ms (audit --pid <none>)")  # fmt: skip
    print(f"            sweep in-process       last   {inner[-1] * 1000:7.1f} ms")
    print(f"sealkit audit --json --jobs 1      median {med(one_t) * 1000:7.1f} ms")
    report("sealkit audit --json / cat", 1.3, audit_t, cat_t, audit_cpu, cat_cpu)


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--case", choices=("host", "maps", "both"), default="both")
    parser.add_argument("--quick", action="store_true", help="short smoke profile")
    parser.add_argument("--procs", type=int, help="interpreters to start (default 220; quick 40)")
    parser.add_argument(
        "--vmas", type=int, help="mappings of the large process (default 65000; quick 16000)"
    )
    parser.add_argument("--rounds", type=int, help="timed rounds (default 9; quick 3)")
    args = parser.parse_args(argv)
    procs = args.procs if args.procs is not None else (40 if args.quick else 220)
    vmas = args.vmas if args.vmas is not None else (16000 if args.quick else 65000)
    rounds = args.rounds or (3 if args.quick else 9)
    cache = tempfile.mkdtemp(prefix="sealkit-bench-pyc-")
    env = _env(cache)
    try:
        if args.case in ("maps", "both"):
            maps_case(vmas, rounds, env)
        if args.case in ("host", "both"):
            host_case(procs, vmas, rounds, env)
    finally:
        shutil.rmtree(cache, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

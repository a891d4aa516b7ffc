"""Full-host ``sealkit audit --json`` against ``cat /proc/*/smaps > /dev/null``.

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

Usage: ``python benchmarks/bench_audit.py [--quick] [--procs N] [--rounds N]``
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


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="short smoke profile")
    parser.add_argument("--procs", type=int, help="interpreters to start (default 220; quick 40)")
    parser.add_argument("--rounds", type=int, help="timed rounds (default 9; quick 3)")
    args = parser.parse_args(argv)
    procs = args.procs or (40 if args.quick else 220)
    rounds = args.rounds or (3 if args.quick else 9)
    cache = tempfile.mkdtemp(prefix="sealkit-bench-pyc-")
    env = _env(cache)
    sealkit = [sys.executable, "-m", "sealkit", "audit", "--json"]
    baseline = ["sh", "-c", "cat /proc/*/smaps > /dev/null 2>/dev/null"]
    with tempfile.NamedTemporaryFile(prefix="sealkit-bench-", suffix=".dat") as data:
        data.write(b"sealkit benchmark data\n" * 1000)
        data.flush()
        started = time.perf_counter()
        children = spawn(procs, data.name, env)
        try:
            print(f"host: {procs} interpreters started in {time.perf_counter() - started:.1f}s "
                  f"({(procs + 4) // 5} of them sealing), "
                  f"{sum(1 for n in os.listdir('/proc') if n.isdigit())} processes in /proc")  # fmt: skip
            timed(sealkit, env)  # warm the bytecode cache and the page cache
            timed(baseline)
            cat_t, audit_t, one_t, inner, cat_cpu, audit_cpu = [], [], [], [], [], []
            doc: dict[str, object] = {}
            for r in range(rounds):
                order = [("cat", baseline, None), ("audit", sealkit, env)]
                if r % 2:
                    order.reverse()
                for name, cmd, e in order:
                    took, out = timed(cmd, e)
                    if name == "cat":
                        cat_t.append(took)
                        cat_cpu.append(_CPU[0])
                    else:
                        audit_t.append(took)
                        audit_cpu.append(_CPU[0])
                        doc = json.loads(out)
                        inner.append(float(doc["duration_seconds"]))  # type: ignore[arg-type]
                one, _ = timed([*sealkit, "--jobs", "1"], env)
                one_t.append(one)
            start_t = [timed([sys.executable, "-c", "pass"], env)[0] for _ in range(rounds)]
            # Start-up and imports of the audit path: a sweep of one pid that
            # cannot exist (above pid_max), so nothing is read.
            nothing = [*sealkit, "--pid", str((1 << 22) + 1)]
            startup_t = [timed(nothing, env)[0] for _ in range(rounds)]
        finally:
            stop(children)
            shutil.rmtree(cache, ignore_errors=True)
    summary = doc.get("summary", {})
    assert isinstance(summary, dict)
    ratios = [a / c for a, c in zip(audit_t, cat_t, strict=True)]
    med = statistics.median
    print(f"audit saw {summary.get('seen')} processes, {summary.get('sealed')} with seals "
          f"({summary.get('sealed_mappings')} sealed mappings), {summary.get('denied')} denied, "
          f"{summary.get('vanished')} vanished, {summary.get('kernel_threads')} kernel threads")  # fmt: skip
    print(f"rounds: {rounds}")
    print(f"cat /proc/*/smaps > /dev/null      median {med(cat_t) * 1000:7.1f} ms")
    print(f"sealkit audit --json               median {med(audit_t) * 1000:7.1f} ms")
    print(f"  of which: interpreter start      median {med(start_t) * 1000:7.1f} ms")
    print(f"            start-up + imports     median {med(startup_t) * 1000:7.1f} ms (audit --pid <none>)")  # fmt: skip
    print(f"            sweep in-process       median {med(inner) * 1000:7.1f} ms")
    print(f"sealkit audit --json --jobs 1      median {med(one_t) * 1000:7.1f} ms")
    print(f"ratio audit/cat per round: {' '.join(f'{r:.2f}' for r in ratios)}")
    cpu_ratios = [a / c for a, c in zip(audit_cpu, cat_cpu, strict=True) if c > 0]
    print(f"CPU time (user+sys) median: cat {med(cat_cpu) * 1000:.0f} ms, audit "
          f"{med(audit_cpu) * 1000:.0f} ms, ratio {med(cpu_ratios):.2f}x "
          f"(load average at the end: {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs)")  # fmt: skip
    print(f"RATIO (median) sealkit audit --json / cat: {med(ratios):.2f}x (goal <= 1.3x)")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

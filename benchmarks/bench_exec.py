"""Cost of `sealkit exec`: the loader-side library, and the Python wrapper.

Measured in the same run, configurations interleaved round by round,
medians reported (these machines are shared and noisy: ratios and
differences of medians taken side by side mean something, single timings do
not). Start-up is timed by a small C helper that posix_spawns the program
and waits (no Python between the clock reads).

1. Start-up to exit of ``/bin/true`` and ``python3 -c pass``:
   plain; with the library as `sealkit exec` sets it up (``LD_AUDIT`` +
   ``LD_PRELOAD`` + ``SEALKIT_EXEC_*``, level code and level all); with
   ``LD_PRELOAD`` alone (the library's preload-only mode); and, to separate
   the loader's own cost from ours, with an empty audit module (``la_version``
   only). Added time = median(configuration) - median(plain).
   Goal (issue 11): the library adds at most 0.5 ms.
2. nginx (1 worker): requests per second over one keep-alive connection
   from a C client, sealed vs plain, alternating runs of the same length.
   Goal: ratio >= 0.98.
3. The wrapper: ``sealkit exec -- /bin/true`` (a Python start-up, then the
   exec) against the library alone, reported separately.

    python benchmarks/run.py exec
    python benchmarks/bench_exec.py [--quick] [--rounds N] [--only startup|nginx|wrapper]

The library is the package's (``src/sealkit/_os/libsealexec.so``, as an
editable install builds it); it is built there first if it is missing.
nginx comes from Debian's ``nginx-light`` (skipped, saying so, without it).
"""

from __future__ import annotations

import os
import random
import runpy
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
SRC = HERE.parent / "src"
LIB = SRC / "sealkit" / "_os" / "libsealexec.so"
PY = "/usr/bin/python3" if os.path.exists("/usr/bin/python3") else sys.executable
# `sealkit exec` from this checkout (run with wrapper_env())
SEALKIT_EXEC = [sys.executable, "-m", "sealkit", "exec", "--"]

EMPTY_AUDIT = "unsigned int la_version(unsigned int v) { return 1; }\n"


def clean_env() -> dict[str, str]:
    return {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("SEALKIT_", "LD_PRELOAD", "LD_AUDIT", "PYTHON"))
    }


def wrapper_env() -> dict[str, str]:
    """clean_env() with this checkout's sealkit importable (for SEALKIT_EXEC)."""
    return {**clean_env(), "PYTHONPATH": str(SRC)}


def build(tmp: Path) -> tuple[Path, Path]:
    helpers = tmp / "exec_helpers"
    subprocess.run(["cc", "-O2", "-o", str(helpers), str(HERE / "exec_helpers.c")], check=True)
    empty = tmp / "empty_audit.so"
    (tmp / "empty_audit.c").write_text(EMPTY_AUDIT)
    subprocess.run(
        [
            "cc",
            "-shared",
            "-fPIC",
            "-O2",
            "-nostdlib",
            "-o",
            str(empty),
            str(tmp / "empty_audit.c"),
        ],
        check=True,
    )
    if not LIB.exists():
        builder = runpy.run_path(str(SRC / "sealkit" / "_os" / "sealexec.py"))
        why = builder["build"](str(LIB))
        if why:
            raise SystemExit(f"bench_exec: cannot build libsealexec.so: {why}")
    return helpers, empty


def spawn_runs(
    helpers: Path, env: dict[str, str], count: int, argv: list[str]
) -> list[tuple[float, float]]:
    """``(wall ms, child CPU ms)`` per run."""
    out = subprocess.run(
        [str(helpers), "spawn", str(count), *argv],
        env=env,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    return [(int(w) / 1e6, int(c) / 1e6) for w, c in (line.split() for line in out.splitlines())]


def spawn_times(helpers: Path, env: dict[str, str], count: int, argv: list[str]) -> list[float]:
    return [w for w, _ in spawn_runs(helpers, env, count, argv)]


def quartile(values: list[float]) -> float:
    return statistics.quantiles(values, n=4)[0]


def configs(empty: Path) -> dict[str, dict[str, str]]:
    lib = str(LIB)
    base = clean_env()
    sealed = {**base, "LD_AUDIT": lib, "LD_PRELOAD": lib, "SEALKIT_EXEC_LIB": lib}
    return {
        "plain": base,
        "empty LD_AUDIT": {**base, "LD_AUDIT": str(empty)},
        "sealed code": {**sealed, "SEALKIT_EXEC_LEVEL": "code"},
        "sealed all": {**sealed, "SEALKIT_EXEC_LEVEL": "all"},
        "LD_PRELOAD only": {**base, "LD_PRELOAD": lib, "SEALKIT_EXEC_LIB": lib},
    }


def work_inside(helpers: Path, tmp: Path, argv: list[str], runs: int) -> list[int]:
    """The library's own account of its start-up work (the report's
    ``work_us``: reading the maps, checking, sealing, writing the line)."""
    lib = str(LIB)
    d = tmp / f"work-{len(list(tmp.glob('work-*')))}"
    d.mkdir()
    env = {**clean_env(), "LD_AUDIT": lib, "LD_PRELOAD": lib, "SEALKIT_EXEC_LIB": lib,
           "SEALKIT_EXEC_REPORT": str(d / "r-%p.jsonl")}  # fmt: skip
    spawn_runs(helpers, env, runs, argv)
    import json

    out = []
    for f in d.glob("r-*.jsonl"):
        first = json.loads(f.read_text().splitlines()[0])
        programs = {o["path"] for o in first["objects"] if o["loaded_by"] == "initial"}
        # the helper that spawns them runs with the same environment: skip its report
        if first["event"] == "startup" and os.path.realpath(argv[0]) in programs:
            out.append(int(first["work_us"]))
    return out


def startup(helpers: Path, empty: Path, rounds: int, per_round: int, tmp: Path) -> None:
    for argv in (["/bin/true"], [PY, "-c", "pass"]):
        samples: dict[str, list[float]] = {name: [] for name in configs(empty)}
        cpu: dict[str, list[float]] = {name: [] for name in configs(empty)}
        order = random.Random(7)  # the same shuffles every run
        for _ in range(rounds):
            # a fresh order each round: no configuration always follows another
            round_configs = list(configs(empty).items())
            order.shuffle(round_configs)
            for name, env in round_configs:
                runs = spawn_runs(helpers, env, per_round, argv)
                samples[name] += [w for w, _ in runs]
                cpu[name] += [c for _, c in runs]
        base = statistics.median(samples["plain"])
        base_q = quartile(samples["plain"])
        print(
            f"\nstart-up of {' '.join(argv)} ({rounds} rounds x {per_round} runs each; "
            "median, and the first quartile, which preemption by other load disturbs less)"
        )
        for name, values in samples.items():
            med, q = statistics.median(values), quartile(values)
            if name == "plain":
                print(f"  {name:<16} {med:7.3f} ms            (q1 {q:6.3f} ms)")
            else:
                print(
                    f"  {name:<16} {med:7.3f} ms  x{med / base:5.3f}  +{med - base:6.3f} ms"
                    f"   (q1 {q:6.3f} ms  +{q - base_q:6.3f} ms)"
                )
        work = work_inside(helpers, tmp, argv, per_round * 2)
        print(
            f"  the library's own start-up work, from its report: median {statistics.median(work):.0f} us "
            f"over {len(work)} runs (the rest of the added time is the loader mapping it twice)"
        )
        # CPU time of the child (user + system, wait4): what the work costs,
        # unaffected by waiting for a CPU; tick-granular, so means
        base_cpu = statistics.fmean(cpu["plain"])
        print(
            "  child CPU time (mean): "
            + ", ".join(
                f"{name} {statistics.fmean(v):.3f} ms"
                + ("" if name == "plain" else f" (+{statistics.fmean(v) - base_cpu:.3f})")
                for name, v in cpu.items()
            )
        )


NGINX_CONF = """\
worker_processes 1;
pid {d}/nginx.pid;
error_log {d}/error.log;
events {{ worker_connections 64; }}
http {{
  access_log off;
  server {{ listen 127.0.0.1:{port}; location / {{ return 200 "hello\\n"; }} }}
}}
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def nginx(helpers: Path, tmp: Path, rounds: int, seconds: float) -> None:
    if not os.path.exists("/usr/sbin/nginx"):
        print("\nnginx: skipped (nginx-light is not installed)")
        return
    procs = {}
    for name, prefix in (("plain", []), ("sealed", SEALKIT_EXEC)):
        d = tmp / name
        d.mkdir()
        port = free_port()
        (d / "nginx.conf").write_text(NGINX_CONF.format(d=d, port=port))
        p = subprocess.Popen(
            [
                *prefix,
                "/usr/sbin/nginx",
                "-p",
                str(d),
                "-c",
                str(d / "nginx.conf"),
                "-g",
                "daemon off;",
            ],
            env=wrapper_env(),
        )
        for _ in range(200):
            if (d / "nginx.pid").exists():
                break
            time.sleep(0.05)
        time.sleep(0.3)
        procs[name] = (p, port)
    rps: dict[str, list[float]] = {"plain": [], "sealed": []}
    cpu: dict[str, float] = {"plain": 0.0, "sealed": 0.0}
    sealed_vmas = {name: sealed_mappings(family(p.pid)) for name, (p, _) in procs.items()}
    try:
        for r in range(rounds):
            # alternate which server goes first, so neither always follows the other
            order = list(procs.items()) if r % 2 == 0 else list(reversed(procs.items()))
            for name, (p, port) in order:
                pids = family(p.pid)
                before = cpu_seconds(pids)
                out = subprocess.run(
                    [str(helpers), "http", str(port), str(seconds)],
                    capture_output=True,
                    text=True,
                    check=True,
                ).stdout
                cpu[name] += cpu_seconds(pids) - before
                rps[name].append(int(out) / seconds)
    finally:
        for p, _ in procs.values():
            p.send_signal(signal.SIGQUIT)
            p.wait(timeout=10)
    plain, sealed = statistics.median(rps["plain"]), statistics.median(rps["sealed"])
    total = {name: sum(v) * seconds for name, v in rps.items()}
    print(
        f"\nnginx, 1 worker, one keep-alive connection from the same C client "
        f"({rounds} x {seconds}s each, alternating, {sum(total.values()):,.0f} requests)"
    )
    print(
        f"  sealed mappings in master + worker: plain {sealed_vmas['plain']}, "
        f"sealed {sealed_vmas['sealed']}"
    )
    print(f"  plain   {plain:10,.0f} req/s")
    print(
        f"  sealed  {sealed:10,.0f} req/s   ratio of medians {sealed / plain:5.3f}   (goal >= 0.98)"
    )
    paired = sorted(b / a for a, b in zip(rps["plain"], rps["sealed"], strict=True))
    q1, _, q3 = statistics.quantiles(paired, n=4)
    print(
        f"  per-round ratio sealed/plain: median {statistics.median(paired):5.3f}, "
        f"quartiles {q1:5.3f}..{q3:5.3f} (the spread is this machine's noise)"
    )
    per = {name: 1e6 * cpu[name] / total[name] for name in cpu if total[name]}
    if per.get("plain") and per.get("sealed"):
        print(
            f"  server CPU time per request (utime + stime of master and worker, "
            f"{os.sysconf('SC_CLK_TCK')} Hz ticks): plain {per['plain']:.2f} us, "
            f"sealed {per['sealed']:.2f} us, ratio plain/sealed {per['plain'] / per['sealed']:5.3f}"
        )


def family(master: int) -> list[int]:
    """``master`` and its children (nginx's workers)."""
    pids = [master]
    for task in os.listdir(f"/proc/{master}/task"):
        try:
            with open(f"/proc/{master}/task/{task}/children") as f:
                pids += [int(c) for c in f.read().split()]
        except OSError:
            continue
    return pids


def cpu_seconds(pids: list[int]) -> float:
    """utime + stime of ``pids``, in seconds (/proc/PID/stat fields 14 and 15)."""
    ticks = 0
    for pid in pids:
        try:
            with open(f"/proc/{pid}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        ticks += int(fields[11]) + int(fields[12])
    return ticks / os.sysconf("SC_CLK_TCK")


def sealed_mappings(pids: list[int]) -> int:
    """How many mappings of ``pids`` are sealed (smaps ``sl``): a check that
    the sealed server is sealed and the plain one is not."""
    count = 0
    for pid in pids:
        try:
            with open(f"/proc/{pid}/smaps") as f:
                count += sum(
                    1 for line in f if line.startswith("VmFlags:") and " sl" in line.split(":")[1]
                )
        except OSError:
            continue
    return count


def wrapper(helpers: Path, rounds: int, per_round: int) -> None:
    lib = str(LIB)
    env_lib = {**clean_env(), "LD_AUDIT": lib, "LD_PRELOAD": lib, "SEALKIT_EXEC_LIB": lib}
    lib_only: list[float] = []
    wrapped: list[float] = []
    for _ in range(rounds):
        lib_only += spawn_times(helpers, env_lib, per_round, ["/bin/true"])
        wrapped += spawn_times(helpers, wrapper_env(), per_round, [*SEALKIT_EXEC, "/bin/true"])
    a, b = statistics.median(lib_only), statistics.median(wrapped)
    print(
        f"\nthe wrapper: `sealkit exec -- /bin/true` (python {sys.version.split()[0]}) vs the library alone"
    )
    print(f"  library alone   {a:7.3f} ms")
    print(
        f"  sealkit exec    {b:7.3f} ms   +{b - a:6.2f} ms of Python start-up and checks, once per exec"
    )


def main(argv: list[str]) -> int:
    quick = "--quick" in argv
    rounds = 3 if quick else 15
    if "--rounds" in argv:
        rounds = int(argv[argv.index("--rounds") + 1])
    if shutil.which("cc") is None:
        print("bench_exec: no C compiler", file=sys.stderr)
        return 2
    print(
        f"{os.uname().release}, {os.cpu_count()} cpus, load {os.getloadavg()[0]:.2f}, {rounds} rounds"
    )
    with tempfile.TemporaryDirectory(prefix="bench-exec-") as t:
        tmp = Path(t)
        helpers, empty = build(tmp)
        only = argv[argv.index("--only") + 1] if "--only" in argv else None
        if only in (None, "startup"):
            startup(helpers, empty, rounds, 5 if quick else 20, tmp)
        if only in (None, "nginx"):
            nginx(helpers, tmp, rounds * 2, 0.5 if quick else 1.0)
        if only in (None, "wrapper"):
            wrapper(helpers, rounds, 3 if quick else 5)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

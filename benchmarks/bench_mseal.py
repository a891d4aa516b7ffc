"""Seal a fresh one-page mapping: sealkit vs the same loop in C, same run.

Each iteration maps one fresh private anonymous page and seals it:

* ``C``: ``mmap`` + ``syscall(462, p, 4096, 0)``, built with ``gcc -O2`` in
  a temporary directory at benchmark time;
* ``sealkit raw``: ``sealkit._os.syscalls.mmap`` + ``mseal``;
* ``sealkit Pages``: ``Pages(4096).seal()``, the safe API users call.

Every loop runs in a fresh child process (seals last until exit). Fresh
pages land next to each other and sealed neighbours merge
(docs/reference/linux.md rule 15), so the VMA count stays far below
``vm.max_map_count``; each child reports its final count to prove it. Rounds
alternate between the variants and the median per-iteration time is
compared, since this machine is shared and noisy. Target: sealkit at most
1.5x the C loop.

    python benchmarks/bench_mseal.py [--quick]
"""

from __future__ import annotations

import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "src"))

C_SOURCE = r"""
#define _GNU_SOURCE
#include <stdio.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

int main(int argc, char **argv) {
    long n = atol(argv[1]);
    struct timespec a, b;
    if (argc > 2) {  /* the floor: mseal(0, 0, 0), a kernel entry that does nothing */
        clock_gettime(CLOCK_MONOTONIC, &a);
        for (long i = 0; i < n; i++) syscall(462, 0UL, 0UL, 0UL);
        clock_gettime(CLOCK_MONOTONIC, &b);
        printf("%.1f 0\n", ((b.tv_sec - a.tv_sec) * 1e9 + (b.tv_nsec - a.tv_nsec)) / n);
        return 0;
    }
    clock_gettime(CLOCK_MONOTONIC, &a);
    for (long i = 0; i < n; i++) {
        void *p = mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
        if (p == MAP_FAILED) { perror("mmap"); return 1; }
        if (syscall(462, p, 4096UL, 0UL) != 0) { perror("mseal"); return 1; }
    }
    clock_gettime(CLOCK_MONOTONIC, &b);
    FILE *maps = fopen("/proc/self/maps", "r");
    int vmas = 0, c;
    while ((c = fgetc(maps)) != EOF) vmas += c == '\n';
    printf("%.1f %d\n", ((b.tv_sec - a.tv_sec) * 1e9 + (b.tv_nsec - a.tv_nsec)) / n, vmas);
    return 0;
}
"""


def _python_loop(kind: str, n: int) -> tuple[float, int]:
    """Run in a forked child: ns per iteration and the final VMA count."""
    from sealkit import Pages
    from sealkit._os import syscalls

    mmap, mseal = syscalls.mmap, syscalls.mseal
    start = time.perf_counter_ns()
    if kind == "raw":
        for _ in range(n):
            mseal(mmap(0, 4096, 3, 0x22), 4096)
    elif kind == "noop":
        for _ in range(n):
            mseal(0, 0, 0)
    else:
        for _ in range(n):
            Pages(4096).seal()
    elapsed = time.perf_counter_ns() - start
    with open("/proc/self/maps") as fh:
        vmas = sum(1 for _ in fh)
    return elapsed / n, vmas


def run_python(kind: str, n: int) -> tuple[float, int]:
    read_fd, write_fd = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: measure, report, exit without cleanup
        try:
            per, vmas = _python_loop(kind, n)
            os.write(write_fd, f"{per} {vmas}".encode())
        finally:
            os._exit(0)
    os.close(write_fd)
    with os.fdopen(read_fd) as fh:
        text = fh.read()
    os.waitpid(pid, 0)
    per, vmas = text.split()
    return float(per), int(vmas)


def run_c(binary: str, n: int, noop: bool = False) -> tuple[float, int]:
    argv = [binary, str(n)] + (["noop"] if noop else [])
    out = subprocess.run(argv, capture_output=True, text=True, check=True).stdout
    per, vmas = out.split()
    return float(per), int(vmas)


def main(argv: list[str]) -> int:
    quick = "--quick" in argv
    n, rounds = (2_000, 3) if quick else (20_000, 9)
    from sealkit import support

    info = support()
    if not info.available:
        print(f"skipped: {info.reason}")
        return 0
    if shutil.which("gcc") is None:
        print("gcc not found: cannot build the C baseline", file=sys.stderr)
        return 1
    max_map = int(Path("/proc/sys/vm/max_map_count").read_text())
    with tempfile.TemporaryDirectory() as tmp:
        src, binary = os.path.join(tmp, "loop.c"), os.path.join(tmp, "loop")
        Path(src).write_text(C_SOURCE)
        subprocess.run(["gcc", "-O2", "-o", binary, src], check=True)
        results: dict[str, list[float]] = {
            "C": [],
            "raw": [],
            "pages": [],
            "C noop": [],
            "noop": [],
        }
        most_vmas = 0
        for _ in range(rounds):  # interleaved, so noise hits every variant alike
            for kind, times in results.items():
                if kind.startswith("C"):
                    per, vmas = run_c(binary, n, noop=kind == "C noop")
                else:
                    per, vmas = run_python(kind, n)
                times.append(per)
                most_vmas = max(most_vmas, vmas)
    c = statistics.median(results["C"])
    print(f"mseal of a fresh one-page mapping, {n} per child, {rounds} rounds (median ns/iter)")
    print(f"  C (gcc -O2, mmap + syscall(462)):     {c:8.0f} ns")
    for kind, label in (
        ("raw", "sealkit raw (syscalls.mmap + mseal)"),
        ("pages", "sealkit Pages(4096).seal()"),
    ):
        med = statistics.median(results[kind])
        print(f"  {label + ':':38s}{med:8.0f} ns   ratio {med / c:.2f}x")
    floor = statistics.median(results["noop"]) - statistics.median(results["C noop"])
    print(
        f"  floor: mseal(0,0,0) costs {statistics.median(results['C noop']):.0f} ns from C, "
        f"{statistics.median(results['noop']):.0f} ns through sealkit: "
        f"{floor:.0f} ns of Python-side cost per call, x2 calls per iteration"
    )
    from sealkit._os import syscalls

    path = (
        "C extension sealkit._os._fastsys"
        if syscalls.FAST_PATH
        else "ctypes fallback (no _fastsys)"
    )
    print(f"  syscall path: {path}")
    print(f"  most VMAs in a child: {most_vmas} (vm.max_map_count {max_map})")
    for kind, label in (("raw", "syscall layer"), ("pages", "safe Pages object")):
        ratio = statistics.median(results[kind]) / c
        verdict = "met" if ratio <= 1.5 else "MISSED"
        print(f"ratio sealkit {label} / C: {ratio:.2f}x (target <= 1.5x: {verdict})")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

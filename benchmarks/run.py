"""Run sealkit's benchmarks: ``python benchmarks/run.py [NAME...] [--quick]``.

Each ``benchmarks/bench_<name>.py`` is a script that measures sealkit and its
baseline *in the same run* and prints ratios, because these machines are
noisy: absolute times mean little, ratios measured side by side do. Each runs
in its own interpreter so one benchmark's seals and caches cannot colour the
next. ``--quick`` asks every benchmark for a short profile (used by a smoke
test, not for figures).
"""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent


def main(argv: list[str]) -> int:
    quick = "--quick" in argv
    names = [a for a in argv if not a.startswith("-")]
    scripts = sorted(HERE.glob("bench_*.py"))
    if names:
        wanted = {f"bench_{n.removeprefix('bench_').removesuffix('.py')}.py" for n in names}
        unknown = wanted - {s.name for s in scripts}
        if unknown:
            known = ", ".join(s.stem.removeprefix("bench_") for s in scripts)
            print(
                f"unknown benchmark(s): {', '.join(sorted(unknown))} (known: {known})",
                file=sys.stderr,
            )
            return 2
        scripts = [s for s in scripts if s.name in wanted]
    failed = 0
    for script in scripts:
        print(f"\n=== {script.stem.removeprefix('bench_')} ===", flush=True)
        started = time.perf_counter()
        cmd = [sys.executable, str(script)] + (["--quick"] if quick else [])
        rc = subprocess.call(cmd)
        print(f"--- {script.stem}: exit {rc}, {time.perf_counter() - started:.1f}s", flush=True)
        failed += rc != 0
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

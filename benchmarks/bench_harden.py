"""Cost of hardening: ``harden()`` itself, and ``sealkit run`` against ``python``.

Measured in the same run, interleaved round by round, medians reported
(this machine is shared and noisy: ratios and differences of medians taken
side by side mean something, single timings do not):

1. ``harden()`` in fresh interpreters, ``level="code"`` and ``level="all"``
   (timed inside the child around the call; ``level="code"`` also with the
   pinning of each object before it is sealed switched off, to show what
   pinning costs), and in the same child the
   time ``import sealkit`` takes and the first touch of ``sealkit.harden``,
   which imports the hardening machinery (ctypes, libc, the smaps parser):
   lazily, so that ``import sealkit`` alone stays cheap. The cost a program
   pays for hardening is the import plus the call.
2. Start-up to exit, wall clock from the parent: ``python -c pass`` against
   ``python -m sealkit run -c pass`` (and with ``--level all --imports``).
3. The import hook: importing 14 extension-heavy stdlib modules in a fresh
   interpreter, plain against after ``harden(imports=True)``.

Goal (issue 6): ``harden()`` adds under 5 ms.

    python benchmarks/bench_harden.py [--quick] [--rounds N]
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

SRC = str(Path(__file__).resolve().parent.parent / "src")
PY = sys.executable
# Bytecode cached, as in any installed deployment (this machine's environment
# sets PYTHONDONTWRITEBYTECODE, which would time the compiler instead); the
# cache lives outside the source tree.
PYCACHE = tempfile.mkdtemp(prefix="bench-harden-pyc-")
ENV = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
ENV.update(
    PYTHONPATH=SRC + os.pathsep + os.environ.get("PYTHONPATH", ""), PYTHONPYCACHEPREFIX=PYCACHE
)

TIME_HARDEN = """
import time
t0 = time.perf_counter()
import sealkit
t1 = time.perf_counter()
harden = sealkit.harden
{unpin}
t2 = time.perf_counter()
report = harden({level!r})
t3 = time.perf_counter()
assert report.newly_sealed_bytes > 0
print(t1 - t0, t2 - t1, t3 - t2)
"""

IMPORTS = (
    "ssl, sqlite3, decimal, hashlib, zlib, json, select, mmap, array, math, lzma, bz2, csv, uuid"
)
UNPIN = "import sealkit.sealing.hardening as h; h.pin_plans = lambda plans: None"
TIME_IMPORTS = """
import time
{setup}
t0 = time.perf_counter()
import {imports}
print(time.perf_counter() - t0)
"""


def child(code: str) -> list[float]:
    out = subprocess.run(
        [PY, "-c", code], env=ENV, capture_output=True, text=True, check=True
    ).stdout
    return [float(x) for x in out.split()]


def wall(argv: list[str]) -> float:
    started = time.perf_counter()
    subprocess.run(argv, env=ENV, check=True, stdout=subprocess.DEVNULL)
    return time.perf_counter() - started


def ms(values: list[float]) -> str:
    return f"{statistics.median(values) * 1e3:7.2f} ms"


def main(argv: list[str]) -> int:
    quick = "--quick" in argv
    rounds = 5 if quick else 40
    if "--rounds" in argv:
        rounds = int(argv[argv.index("--rounds") + 1])
    print(f"python {sys.version.split()[0]}, {os.cpu_count()} cpus, {rounds} rounds, medians")
    wall([PY, "-m", "sealkit", "run", "-c", "import " + IMPORTS])  # warm the bytecode cache

    harden_code: list[float] = []
    harden_all: list[float] = []
    harden_unpinned: list[float] = []
    import_sealkit: list[float] = []
    import_hardening: list[float] = []
    plain: list[float] = []
    run_code: list[float] = []
    run_all: list[float] = []
    imports_plain: list[float] = []
    imports_hooked: list[float] = []
    for _ in range(rounds):
        imp, first_touch, took = child(TIME_HARDEN.format(level="code", unpin=""))
        import_sealkit.append(imp)
        import_hardening.append(first_touch)
        harden_code.append(took)
        harden_all.append(child(TIME_HARDEN.format(level="all", unpin=""))[2])
        harden_unpinned.append(child(TIME_HARDEN.format(level="code", unpin=UNPIN))[2])
        plain.append(wall([PY, "-c", "pass"]))
        run_code.append(wall([PY, "-m", "sealkit", "run", "-c", "pass"]))
        run_all.append(
            wall([PY, "-m", "sealkit", "run", "--level", "all", "--imports", "-c", "pass"])
        )
        imports_plain.append(child(TIME_IMPORTS.format(setup="import sealkit", imports=IMPORTS))[0])
        imports_hooked.append(
            child(
                TIME_IMPORTS.format(
                    setup="import sealkit; sealkit.harden(imports=True)", imports=IMPORTS
                )
            )[0]
        )

    print("\n1. harden() in a fresh interpreter (timed around the call)")
    print(f"   harden(level='code')          {ms(harden_code)}   goal < 5 ms")
    print(f"   harden(level='all')           {ms(harden_all)}")
    pin_share = statistics.median(harden_code) - statistics.median(harden_unpinned)
    print(
        f"   harden('code'), no pinning    {ms(harden_unpinned)}   (pinning: {pin_share * 1e3:+.2f} ms)"
    )
    print(f"   import sealkit (same child)   {ms(import_sealkit)}")
    print(f"   first sealkit.harden lookup   {ms(import_hardening)}   (imports the machinery)")
    both = [a + b for a, b in zip(import_hardening, harden_code, strict=True)]
    print(f"   lookup + harden('code')       {ms(both)}")
    print("\n2. start-up to exit, wall clock")
    base = statistics.median(plain)
    for label, values in (
        ("python -c pass", plain),
        ("python -m sealkit run -c pass", run_code),
        ("  ... --level all --imports", run_all),
    ):
        med = statistics.median(values)
        print(f"   {label:<34} {ms(values)}   x{med / base:5.2f}  +{(med - base) * 1e3:6.2f} ms")
    print(f"\n3. import {IMPORTS}")
    base = statistics.median(imports_plain)
    for label, values in (("plain", imports_plain), ("after harden(imports=True)", imports_hooked)):
        med = statistics.median(values)
        print(f"   {label:<34} {ms(values)}   x{med / base:5.2f}  +{(med - base) * 1e3:6.2f} ms")
    shutil.rmtree(PYCACHE, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

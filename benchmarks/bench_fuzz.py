"""Differential fuzzing throughput: verified calls per second, with its baselines.

Measured in the same run, on the same generated traces (seed fixed):

* ``model``: the fuzzer's model side alone: generating each call (edge
  biased) and applying it to the ``linux`` model, with the layout and its
  canonical form after every call (re-rendered only when the call changed
  the model's state, as in the fuzzer);
* ``kernel``: the kernel side alone: the same traces in the kernel executor,
  a snapshot after every call (PROCMAP_QUERY, seal probe, /proc/self/mem) and
  VmFlags from smaps at each trace's end;
* ``fuzz``: the differential fuzzer (``sealkit.fidelity.fuzz.campaign``): both sides,
  pipelined, every call compared; once with one kernel worker and once with
  two (the machine has two cores).

Prints calls per second for each and the ratio of the fuzzer to the slower
side alone (1.0 means the comparison and the plumbing cost nothing; above
1.0 the two sides overlap). Goal: at least 10,000 verified calls per second.
``--profile`` adds a cProfile of the fuzzer's controller process.

    python benchmarks/bench_fuzz.py [--quick] [--profile]
"""

from __future__ import annotations

import cProfile
import io
import os
import pstats
import random
import sys
import time
from pathlib import Path

sys.path.insert(
    0, os.environ.get("SEALKIT_SRC") or str(Path(__file__).resolve().parent.parent / "src")
)

from sealkit.fidelity.executor import KernelExecutor
from sealkit.fidelity.fuzz import RandomChooser, campaign, gen_trace
from sealkit.fidelity.target import ModelTarget, Window


def _traces(calls: int, seed: int) -> tuple[list, float]:
    """The model side alone: generate and apply (what the fuzzer's controller does)."""
    rng = random.Random(seed)
    chooser = RandomChooser(rng)
    win = Window()
    model = ModelTarget("linux", win)
    out = []
    made = 0
    started = time.perf_counter()
    while made < calls:
        length = 60 + rng.randrange(141)  # campaign()'s default trace_length (60, 200)
        heap = rng.random() < 0.15
        forks = 1 if rng.random() < 0.08 else 0
        mt = gen_trace(chooser, win, min(length, calls - made), model, heap=heap, forks=forks)
        made += len(mt.ops)
        out.append(mt.ops)
    return out, time.perf_counter() - started


def _kernel(traces: list) -> float:
    with KernelExecutor(Window()) as kx:
        kx.run(traces[0][:1])  # start the worker outside the measurement
        started = time.perf_counter()
        for run in kx.run_many(traces, flags="end", prechecked=True):
            assert run.ok, run.died
        return time.perf_counter() - started


def main(argv: list[str]) -> int:
    quick = "--quick" in argv
    calls = 5_000 if quick else 60_000
    seed = 12345
    print(f"calls per measurement: {calls:,} (seed {seed}); machine load {os.getloadavg()[0]:.1f}")
    traces, model_s = _traces(calls, seed)
    n = sum(len(t) for t in traces)
    kernel_s = _kernel(traces)
    results = {"model alone": n / model_s, "kernel alone": n / kernel_s}
    for workers in (1, 2):
        profile = cProfile.Profile() if "--profile" in argv and workers == 2 else None
        if profile is not None:
            profile.enable()
        res = campaign(calls, seed, workers=workers, max_found=1)
        if profile is not None:
            profile.disable()
            text = io.StringIO()
            pstats.Stats(profile, stream=text).sort_stats("tottime").print_stats(15)
            print(text.getvalue())
        if res.found:
            print(
                f"note: the campaign found {len(res.found)} divergence(s); the rate covers the calls before it"
            )
        results[f"fuzz, {workers} kernel worker{'s' if workers > 1 else ''}"] = res.rate
    slower = min(results["model alone"], results["kernel alone"])
    width = max(len(k) for k in results)
    for name, rate in results.items():
        ratio = rate / slower
        print(f"{name:<{width}}  {rate:>10,.0f} calls/s   {ratio:5.2f}x the slower side alone")
    best = max(v for k, v in results.items() if k.startswith("fuzz"))
    print(f"verified calls per second: {best:,.0f} (goal 10,000)")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

"""Model speed: operations per second with 10^2 .. 10^5 VMAs, and copy() cost.

For each size N the script maps N one-page VMAs (alternating r-- and rw-, so
none merge), then times a fixed mix of calls in the middle of the space
(stores, mprotect there and back, DONTNEED, mlock/munlock, munmap + mmap,
mseal, a refused munmap, madvise flag changes, a layout and a state key of a
16-page window). The baseline is the same mix at N = 10^2: the target is a
cost per call at 10^5 within 2x of it (no linear scans). copy() is compared
with copying the VMA list outright (what a non-persistent store would do).

    python benchmarks/bench_model.py [--quick]
"""

from __future__ import annotations

import sys
import time

from sealkit.model import AddressSpace
from sealkit.ops import MODEL_BASES, Op, parse_op

PAGE = 4096
SIZES = (100, 1_000, 10_000, 100_000)


def build(n: int) -> AddressSpace:
    space = AddressSpace("linux")
    base = MODEL_BASES.arena
    from sealkit.flags import MapFlag, Prot
    from sealkit.ops import Mmap

    flags = MapFlag.PRIVATE | MapFlag.ANONYMOUS | MapFlag.FIXED
    for i in range(n):
        prot = Prot.READ if i % 2 else Prot.READ | Prot.WRITE
        assert space.apply(Mmap(base + i * PAGE, PAGE, prot, flags)) == base + i * PAGE
    assert len(space.vmas) == n
    return space


def mix(k: int) -> list[Op]:
    """Calls around page ``k`` (an even page: rw-) that leave the VMA count as it was."""
    p = f"p{k}"
    q = f"p{k + 2}"
    text = f"""
        write    {p} 1p
        mprotect {p} 1p r-x
        mprotect {p} 1p rw-
        madvise  {p} 1p dontneed
        mlock    {p} 1p
        munlock  {p} 1p
        munmap   {p} 1p
        mmap     {p} 1p rw- private|anon|fixed
        madvise  {p} 1p random
        madvise  {p} 1p normal
        mseal    {q} 1p
        munmap   {q} 1p
        mprotect {p} 3p r--
    """
    return [parse_op(line) for line in text.strip().splitlines()]


def time_mix(space: AddressSpace, rounds: int) -> float:
    """Seconds per call, over ``rounds`` repetitions of the mix (best of 7: the
    machine is shared, and the fastest run is the one least disturbed)."""
    # The same 96-page stretch in the middle of every space, so every size
    # runs exactly the same calls on the same neighbourhood.
    n = len(space.vmas)
    first = max(n // 2 - 48, 0) & ~3
    middle = first + 48
    batches = [mix(first + 4 * (r % 23)) for r in range(rounds)]
    calls = sum(len(b) for b in batches)
    samples = []
    for rep in range(7):
        twin = space.copy()
        start = time.perf_counter()
        for batch in batches:
            for op in batch:
                twin.apply(op)
            twin.layout("p", middle, middle + 16)
            twin.state_key("p", middle, middle + 16)
        samples.append((time.perf_counter() - start) / calls)
        del rep
    return min(samples)


def time_copy(space: AddressSpace, reps: int) -> tuple[float, float]:
    """(seconds per copy(), seconds per list copy of all VMAs)."""
    start = time.perf_counter()
    for _ in range(reps):
        space.copy()
    ours = (time.perf_counter() - start) / reps
    start = time.perf_counter()
    for _ in range(max(reps // 10, 1)):
        list(space.vmas)
    plain = (time.perf_counter() - start) / max(reps // 10, 1)
    return ours, plain


def main(argv: list[str]) -> int:
    quick = "--quick" in argv
    sizes = SIZES[:3] if quick else SIZES
    rounds = 20 if quick else 200
    print(f"{'VMAs':>8} {'calls/s':>10} {'us/call':>9} {'vs 10^2':>8} "
          f"{'copy() us':>10} {'list copy us':>13} {'build s':>8}")  # fmt: skip
    base_cost = None
    worst = 0.0
    for n in sizes:
        t0 = time.perf_counter()
        space = build(n)
        built = time.perf_counter() - t0
        cost = time_mix(space, rounds)
        ours, plain = time_copy(space, 200 if quick else 2000)
        if base_cost is None:
            base_cost = cost
        ratio = cost / base_cost
        worst = max(worst, ratio)
        print(f"{n:>8} {1 / cost:>10.0f} {cost * 1e6:>9.1f} {ratio:>7.2f}x "
              f"{ours * 1e6:>10.1f} {plain * 1e6:>13.1f} {built:>8.2f}")  # fmt: skip
    small = AddressSpace("linux")
    for line in ("mmap p0 4p rw- private|anon|fixed", "write p0 4p", "mseal p1 2p"):
        small.apply(parse_op(line))
    ops = [parse_op(x) for x in ("mprotect p0 1p r--", "munmap p1 1p", "madvise p0 4p dontneed")]
    start = time.perf_counter()
    reps = 2000 if quick else 20000
    for _ in range(reps):
        twin = small.copy()
        for op in ops:
            twin.apply(op)
    per = (time.perf_counter() - start) / reps
    print(
        f"small space: copy() + 3 calls = {per * 1e6:.1f} us ({3 / (per - 0):.0f} calls/s incl. copy)"
    )
    target = 2.0
    verdict = "ok" if worst <= target else "OVER TARGET"
    print(
        f"cost per call at the largest size: {worst:.2f}x the 10^2 cost (target <= {target}x): {verdict}"
    )
    return 0 if worst <= target or quick else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

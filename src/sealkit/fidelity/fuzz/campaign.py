"""Long campaigns (``sealkit fuzz``): generated traces pipelined to the kernel, compared, shrunk."""

from __future__ import annotations

import random
import time
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

from ...ops import (
    Op,
)
from ..differential import Divergence, annotate, compare_runs
from ..target import FlagMode, ModelTarget, SpaceLike, Target, TraceRun, Window, make_target
from .generator import ModelTrace, RandomChooser, gen_trace
from .scope import EXCLUDED, UNDEFINED, VERIFIED
from .shrink import shrink

__all__ = ["CampaignResult", "Found", "campaign"]


@dataclass(slots=True)
class Found:
    """One divergence: the trace as found and as shrunk, both annotated."""

    divergence: Divergence
    trace: str
    shrunk: str
    shrunk_divergence: Divergence | None
    calls: int

    def to_json(self) -> dict[str, Any]:
        return {
            "divergence": self.divergence.to_json(),
            "calls": self.calls,
            "trace": self.trace,
            "shrunk": self.shrunk,
            "shrunk_divergence": None
            if self.shrunk_divergence is None
            else self.shrunk_divergence.to_json(),
        }


@dataclass(slots=True)
class CampaignResult:
    """What a campaign did."""

    seed: int
    calls: int = 0
    traces: int = 0
    seconds: float = 0.0
    found: list[Found] = field(default_factory=list)
    deaths: int = 0
    workers: int = 0
    runners: int = 0
    flags: str = "end"
    exact: bool = False
    window: Window = field(default_factory=Window)

    @property
    def rate(self) -> float:
        """Verified calls per second."""
        return self.calls / self.seconds if self.seconds else 0.0

    def to_json(self) -> dict[str, Any]:
        return {
            "seed": self.seed,
            "calls": self.calls,
            "traces": self.traces,
            "seconds": round(self.seconds, 3),
            "calls_per_second": round(self.rate, 1),
            "divergences": [f.to_json() for f in self.found],
            "worker_deaths": self.deaths,
            "workers_started": self.workers,
            "runners": self.runners,
            "window": {"pages": self.window.pages, "heap_pages": self.window.heap_pages},
            "flags_checked": self.flags,
            "exact": self.exact,
            "verified": VERIFIED,
            "undefined": [{"case": a, "treatment": b} for a, b in UNDEFINED],
            "excluded": [{"case": a, "reason": b} for a, b in EXCLUDED],
        }


def _fails_with(
    reference: Target, model: Target, flags: FlagMode, exact: bool
) -> Callable[[list[Op]], Divergence | None]:
    def fails(candidate: list[Op]) -> Divergence | None:
        if any(reference.refusal(op, True) for op in candidate):
            return None
        run = model.run(candidate)
        kernel = reference.run(candidate, flags=flags)
        return compare_runs(run, kernel, exact=exact)

    return fails


def campaign(
    calls: int,
    seed: int = 0,
    *,
    window: Window | None = None,
    trace_length: tuple[int, int] = (60, 200),
    flags: FlagMode = "end",
    exact: bool = False,
    heap_percent: int = 15,
    fork_percent: int = 8,
    max_found: int = 5,
    progress: Callable[[int], None] | None = None,
    executor: Target | None = None,
    workers: int = 1,
    policy: str = "linux",
    space_factory: Callable[[], SpaceLike] | None = None,
) -> CampaignResult:
    """Run about ``calls`` random calls on the model (``policy``) and on the
    kernel, compare every one, shrink every divergence (up to ``max_found``).
    ``executor``: the :class:`~sealkit.fidelity.target.Target` to hold the
    model to (default: ``workers`` kernel executors).

    The model runs here while ``workers`` kernel workers run the traces
    generated before (each keeps two traces queued), so the model and the
    kernel work in parallel; with two workers the kernel side uses both
    cores when the model leaves room.
    """
    win = window or Window()
    rng = random.Random(seed)
    chooser = RandomChooser(rng)
    result = CampaignResult(seed, flags=flags, exact=exact, window=win)
    model = ModelTarget(policy, win, space_factory=space_factory)
    own = executor is None
    kxs = (
        [executor]
        if executor is not None
        else [make_target("kernel", win, cpu=i if workers > 1 else None) for i in range(workers)]
    )
    refusal = kxs[0].refusal
    queues: list[deque[ModelTrace]] = [deque() for _ in kxs]
    divergent: list[tuple[ModelTrace, TraceRun, Divergence]] = []
    made = 0

    def feeder(queue: deque[ModelTrace]) -> Iterator[list[Op]]:
        nonlocal made
        while made < calls and len(divergent) < max_found:
            length = trace_length[0] + rng.randrange(trace_length[1] - trace_length[0] + 1)
            heap = rng.random() * 100 < heap_percent
            forks = 1 if rng.random() * 100 < fork_percent else 0
            mt = gen_trace(
                chooser, win, min(length, calls - made), model, heap=heap, forks=forks,
                refusal=refusal,
            )  # fmt: skip
            made += len(mt.ops)
            queue.append(mt)
            yield mt.ops

    started = time.perf_counter()
    # The generator already keeps every call where the executor runs it
    # (refusal()), and the worker re-checks before running: no second check here.
    streams = [
        kx.run_many(feeder(q), flags=flags, prechecked=True)
        for kx, q in zip(kxs, queues, strict=True)
    ]
    try:
        active = list(range(len(streams)))
        while active and len(divergent) < max_found:
            for i in list(active):
                try:
                    krun = next(streams[i])
                except StopIteration:
                    active.remove(i)
                    continue
                mt = queues[i].popleft()
                result.traces += 1
                result.calls += len(mt.ops)
                div = compare_runs(mt.run, krun, exact=exact, canon_cache=mt.canon)
                if div is not None:
                    divergent.append((mt, krun, div))
                if progress is not None:
                    progress(len(mt.ops))
        result.seconds = time.perf_counter() - started
        for stream in streams:
            stream.close()
        fails = _fails_with(kxs[0], model, flags, exact)
        for mt, krun, div in divergent[:max_found]:
            small, small_div = shrink(mt.ops, fails)
            small_model = model.run(small)
            small_kernel = kxs[0].run(small, flags=flags)
            result.found.append(
                Found(
                    div,
                    annotate(mt.ops, krun, mt.run, div),
                    annotate(small, small_kernel, small_model, small_div),
                    small_div,
                    len(mt.ops),
                )
            )
    except BaseException as exc:
        if own and not isinstance(exc, Exception):
            # Interrupted (KeyboardInterrupt, SystemExit): kill the workers now
            # rather than let close() wait for the traces they hold.
            for kx in kxs:
                kx.terminate()
        raise
    finally:
        usages = [kx.usage() for kx in kxs]
        result.deaths = sum(u.deaths for u in usages)
        result.workers = sum(u.workers for u in usages)
        result.runners = sum(u.runners for u in usages)
        if own:
            for kx in kxs:
                kx.close()
    return result

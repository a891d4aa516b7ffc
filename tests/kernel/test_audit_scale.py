"""The audit of processes with many mappings: linear work, exact answers.

Real processes (``tests/data/many_vmas.py``) hold 10,000 values frozen with
``sealkit.freeze`` (10,000 contiguous sealed anonymous mappings, the layout
that made classification quadratic) or 16,000 one-page mappings of
alternating kinds, half of them sealed. ``audit --pid`` (the sweep) and
``sealkit maps`` (every mapping classified) must report every sealed
mapping, and the steps they execute (lines of sealkit's own code,
:mod:`tests.steps`) must stay under a fixed number per mapping: the
quadratic code needed thousands per mapping at these sizes. The 65,000
mapping process (``vm.max_map_count``) is in tests/slow/test_audit_scale_max.py.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from sealkit._os.procfs import read_smaps
from sealkit.host import audit
from sealkit.host import maps as maps_module
from tests.conftest import python_env
from tests.steps import count_steps

pytestmark = pytest.mark.kernel

MANY_VMAS = Path(__file__).resolve().parents[1] / "data" / "many_vmas.py"
PER_MAPPING = 200  # measured: at most 80 for the sweep, 62 for maps


@contextmanager
def many_vmas(*args: str) -> Iterator[tuple[int, dict[str, Any]]]:
    """A process built by tests/data/many_vmas.py; its pid and what it reports."""
    with subprocess.Popen(
        [sys.executable, str(MANY_VMAS), *args], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
        stderr=subprocess.PIPE, env=python_env(),
    ) as child:  # fmt: skip
        assert child.stdout is not None and child.stdin is not None
        line = child.stdout.readline()
        if not line:
            assert child.stderr is not None
            raise AssertionError(f"many_vmas.py {args} failed: {child.stderr.read()!r}")
        try:
            yield child.pid, json.loads(line)
        finally:
            child.stdin.close()
            child.wait(30)


def check(pid: int, info: dict[str, Any], kinds: Counter[str]) -> None:
    """Sweep and maps of ``pid``: every sealed mapping, ``kinds`` of them,
    within PER_MAPPING steps per mapping."""
    truth = read_smaps(pid, counters=False)
    sealed = [(v.start, v.end) for v in truth if v.sealed]
    assert len(sealed) == info["sealed"]
    cap = PER_MAPPING * info["vmas"]

    report, _ = count_steps(lambda: audit.scan_host(pids=[pid], jobs=1), cap)
    (proc,) = report.processes
    assert proc.status == "ok" and proc.mappings == len(truth)
    assert [(m.start, m.end) for m in proc.sealed or ()] == sealed
    assert Counter(m.kind for m in proc.sealed or ()) == kinds

    maps, _ = count_steps(lambda: audit.process_maps(pid), cap)
    assert len(maps.regions) == len(truth)
    assert [(r.vma.start, r.vma.end) for r in maps.sealed] == sealed
    assert Counter(r.kind for r in maps.sealed) == kinds
    # sealkit maps --json: the C writer's bytes are the Python writer's
    for sealed_only in (False, True):
        fast = maps_module.maps_json(maps, sealed_only)
        saved, maps_module._FORCE_PYTHON = maps_module._FORCE_PYTHON, True
        try:
            assert maps_module.maps_json(maps, sealed_only) == fast
        finally:
            maps_module._FORCE_PYTHON = saved


def test_ten_thousand_frozen_values() -> None:
    with many_vmas("freeze", "10000") as (pid, info):
        assert info["sealed"] >= 10_000
        # the frozen values, and the [vdso] & co. where the kernel seals them
        extra = info["sealed"] - 10_000
        check(pid, info, Counter({"anon": 10_000, **({"system": extra} if extra else {})}))


def test_sixteen_thousand_mappings_of_alternating_kinds() -> None:
    with many_vmas("alternating", "16000") as (pid, info):
        extra = info["sealed"] - 8_000
        # even pages sealed; kinds cycle anon rw, file, anon r
        kinds = Counter({"anon": 5_334, "file": 2_666, **({"system": extra} if extra else {})})
        check(pid, info, kinds)

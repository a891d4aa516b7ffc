"""The audit of a process at vm.max_map_count: 65,000 mappings, linear work.

The tier above tests/kernel/test_audit_scale.py: the same checks (every
sealed mapping reported, its kind, a fixed number of steps per mapping) on
the largest process the default ``vm.max_map_count`` (65,530) allows, whose
classification took about half an hour before it was made linear. Skipped
where the limit is lower than the process needs.
"""

from __future__ import annotations

from collections import Counter

import pytest

from tests.kernel.test_audit_scale import check, many_vmas

pytestmark = [pytest.mark.slow, pytest.mark.kernel]

N = 65_000


def _max_map_count() -> int:
    with open("/proc/sys/vm/max_map_count") as fh:
        return int(fh.read())


@pytest.mark.skipif(
    _max_map_count() < N + 500,
    reason=f"vm.max_map_count is below {N + 500}: no room for {N} mappings",
)
def test_sixty_five_thousand_mappings_of_alternating_kinds() -> None:
    with many_vmas("alternating", str(N)) as (pid, info):
        assert info["vmas"] > N
        extra = info["sealed"] - N // 2
        sealed_anon = sum(1 for i in range(0, N, 2) if i % 3 != 1)
        kinds = Counter({"anon": sealed_anon, "file": N // 2 - sealed_anon})
        if extra:
            kinds["system"] = extra
        check(pid, info, kinds)

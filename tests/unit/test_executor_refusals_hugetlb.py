"""The executor's window check uses the length the kernel maps for MAP_HUGETLB
(issue 13): ``ksys_mmap_pgoff()`` rounds it up to the huge page size, so a
one-page hugetlb ``MAP_FIXED`` mapping in the window is 512 pages. Pure
arithmetic: nothing runs (tests/kernel/test_executor_hugetlb.py runs them)."""

from __future__ import annotations

from typing import Any

import pytest

from sealkit.fidelity.executor import OutsideArenaError, check_trace
from sealkit.fidelity.executor.refusals import huge_page_size, mmap_length
from sealkit.fidelity.target import Window
from sealkit.flags import PAGE_SIZE as PS
from sealkit.flags import MapFlag
from sealkit.ops import parse_trace

WIN = Window(pages=16, heap_pages=8)
ANON = MapFlag.PRIVATE | MapFlag.ANONYMOUS
HUGE = ANON | MapFlag.HUGETLB


def ops_of(text: str) -> list[Any]:
    return [s.op for s in parse_trace(text)]


@pytest.mark.parametrize(
    "line",
    [
        "mmap p0 1p rw- private|anon|hugetlb|fixed",  # 512 pages from p0
        "mmap p8 1p rw- private|anon|hugetlb|fixed_noreplace",
        "mmap p1 1p rw- private|anon|hugetlb",  # the hint moves up to a 2 MiB boundary
        "mmap 0 513p rw- private|anon|hugetlb",  # two huge pages elsewhere
        "mmap 0 0x40000001 rw- private|anon|hugetlb|0x78000000",  # two 1 GiB pages
    ],
)
def test_hugetlb_mmap_is_checked_with_the_length_the_kernel_maps(line: str) -> None:
    trace = ops_of(f"mmap p0 4p rw- private|anon|fixed\n{line}\n")
    with pytest.raises(OutsideArenaError) as info:
        check_trace(trace, WIN)
    assert info.value.step == 1


@pytest.mark.parametrize(
    "line",
    [
        "mmap 0 1p rw- private|anon|hugetlb",  # one huge page elsewhere, unmapped after
        "mmap 0 512p rw- private|anon|hugetlb|populate",
        "mmap 0 1p rw- private|anon|hugetlb|0x78000000",  # one MAP_HUGE_1GB page
        "mmap p0 1p rw- private|hugetlb|fixed file=f1",  # not hugetlbfs: EINVAL
        "mmap p0 0xfffffffffffff000 rw- private|anon|hugetlb|fixed",  # ALIGN wraps: EINVAL
    ],
)
def test_hugetlb_mmaps_that_stay_bounded_run(line: str) -> None:
    check_trace(ops_of(f"mmap p0 4p rw- private|anon|fixed\n{line}\n"), WIN)


def test_huge_page_size_follows_the_map_huge_bits() -> None:
    assert huge_page_size(int(ANON)) is None
    assert huge_page_size(int(MapFlag.PRIVATE | MapFlag.HUGETLB)) is None  # a file: EINVAL
    assert huge_page_size(int(HUGE) | 21 << 26) == 2 << 20
    assert huge_page_size(int(HUGE) | 30 << 26) == 1 << 30
    default = huge_page_size(int(HUGE))
    assert default is not None and default >= PS and default & (default - 1) == 0
    assert mmap_length(int(ANON), 1) == PS
    assert mmap_length(int(HUGE) | 21 << 26, 1) == 2 << 20
    assert mmap_length(int(HUGE) | 21 << 26, (2 << 20) + 1) == 4 << 20

"""MAP_HUGETLB on the real kernel with huge pages reserved (issue 13).

The fixture reserves two default-size huge pages through
``/proc/sys/vm/nr_hugepages`` (root) and puts the setting back afterwards;
without them the kernel answers every hugetlb mmap ENOMEM and there is
nothing to show, so the tests skip saying why.
"""

from __future__ import annotations

import errno
import os
from collections.abc import Iterator

import pytest

from sealkit._os import syscalls
from sealkit.errors import KernelError
from sealkit.fidelity.executor import KernelExecutor, OutsideArenaError
from sealkit.fidelity.executor.refusals import huge_page_size
from sealkit.fidelity.target import Window
from sealkit.flags import PAGE_SIZE as PS
from sealkit.flags import MapFlag, Prot
from sealkit.ops import ELSEWHERE, parse_trace

pytestmark = pytest.mark.kernel

NR = "/proc/sys/vm/nr_hugepages"
HUGE = int(MapFlag.PRIVATE | MapFlag.ANONYMOUS | MapFlag.HUGETLB)


def _free_huge_pages() -> int:
    with open("/proc/meminfo", encoding="ascii") as fh:
        for line in fh:
            if line.startswith("HugePages_Free:"):
                return int(line.split()[1])
    return 0


@pytest.fixture(scope="module")
def huge() -> Iterator[int]:
    """The default huge page size, with at least two such pages free."""
    try:
        with open(NR, encoding="ascii") as fh:
            before = int(fh.read())
        free = _free_huge_pages()
    except (OSError, ValueError) as exc:
        pytest.skip(f"no hugetlb pool to reserve from ({exc})")
    raised = False
    if free < 2:
        try:
            with open(NR, "w", encoding="ascii") as fh:
                fh.write(str(before + 2 - free))
            raised = True
        except OSError as exc:
            pytest.skip(f"cannot reserve huge pages through {NR} ({exc}; needs root)")
    try:
        if _free_huge_pages() < 2:
            pytest.skip("the kernel could not reserve two huge pages (memory fragmented)")
        size = huge_page_size(HUGE)
        assert size is not None
        yield size
    finally:
        if raised:
            with open(NR, "w", encoding="ascii") as fh:
                fh.write(str(before))


def _vma_of(pid: int | str, addr: int) -> tuple[int, int, str] | None:
    with open(f"/proc/{pid}/maps", encoding="utf-8", errors="replace") as fh:
        for line in fh:
            span, *rest = line.split(maxsplit=5)
            lo, hi = (int(x, 16) for x in span.split("-"))
            if lo <= addr < hi:
                return lo, hi, rest[-1].strip() if len(rest) == 5 else ""
    return None


def test_the_kernel_maps_whole_huge_pages_and_will_not_unmap_part_of_one(huge: int) -> None:
    """What the executor's rules rest on, measured in this process: a one-page
    MAP_HUGETLB|MAP_FIXED mapping covers a whole huge page, and munmap of its
    first 4 KiB is EINVAL."""
    area = syscalls.mmap(0, 2 * huge, int(Prot.NONE), int(MapFlag.PRIVATE | MapFlag.ANONYMOUS))
    try:
        at = (area + huge - 1) // huge * huge
        got = syscalls.mmap(at, PS, int(Prot.READ | Prot.WRITE), HUGE | int(MapFlag.FIXED))
        assert got == at
        vma = _vma_of("self", at)
        assert vma is not None and vma[:2] == (at, at + huge), vma
        with pytest.raises(KernelError) as info:
            syscalls.munmap(at, PS)
        assert info.value.errno == errno.EINVAL
    finally:
        syscalls.munmap(area, 2 * huge)


def test_a_hugetlb_map_fixed_in_the_window_is_refused(huge: int) -> None:
    win = Window(pages=16, heap_pages=8)
    with KernelExecutor(win) as kx:
        with pytest.raises(OutsideArenaError, match="outside the window"):
            kx.run(parse_trace("mmap p0 1p rw- private|anon|hugetlb|fixed\n"))
        assert kx.workers_started == 0, "refused before any call ran"


def test_a_hugetlb_mapping_placed_elsewhere_is_unmapped_after_the_trace(huge: int) -> None:
    free = _free_huge_pages()
    with KernelExecutor(Window(pages=16, heap_pages=8)) as kx:
        run = kx.run(parse_trace("mmap 0 1p rw- private|anon|hugetlb|populate\n"))
        assert run.ok, run.died
        assert run.results == [ELSEWHERE]
        with open(f"/proc/{run.worker}/maps", encoding="utf-8") as fh:
            left = [line for line in fh if "anon_hugepage" in line]
        assert left == [], f"the runner still maps {left}"
        assert _free_huge_pages() == free, "the populated huge page went back to the pool"
        again = kx.run(parse_trace("mmap 0 1p rw- private|anon\n"))
        assert again.worker == run.worker, "the runner was clean: it is kept"
    assert os.path.exists(NR)

"""The kernel executor's calls for what sealing does not cover (issue 14), on the real kernel.

The writers from outside (``pwrite_mem``, ``vm_writev``, ``poke``), the
trace's files (``file_pwrite``, ``ftruncate``, ``punch``), ``msync``,
``mincore``, ``mlockall``, and the ``gu`` flag and ``!`` token in snapshots;
the refusal rules; and that nothing leaks from one trace into the next (the
files are fresh, ``mlockall`` is undone).
"""

from __future__ import annotations

from typing import Any

import pytest

from sealkit._os import procmem
from sealkit.fidelity.differential import compare_runs
from sealkit.fidelity.executor import KernelExecutor, OutsideArenaError, check_trace
from sealkit.fidelity.executor.refusals import proc_mem_force
from sealkit.fidelity.target import ModelTarget, Window
from sealkit.ops import parse_trace

pytestmark = pytest.mark.kernel

WIN = Window(pages=16, heap_pages=8)
ALWAYS = proc_mem_force()[0] == "always"


def ops_of(text: str) -> list[Any]:
    return [s.op for s in parse_trace(text)]


@pytest.fixture(scope="module")
def kx() -> Any:
    with KernelExecutor(WIN) as executor:
        yield executor


def agree(kx: KernelExecutor, text: str) -> Any:
    """Run ``text`` on the kernel (VmFlags after every call) and the model;
    assert the recorded results and that the two agree everywhere."""
    steps = parse_trace(text)
    run = kx.run(steps, flags="every")
    assert run.ok, run.died
    assert run.results == [s.result for s in steps]
    model = ModelTarget("linux", WIN).run(steps)
    div = compare_runs(model, run)
    assert div is None, div.describe()
    return run


@pytest.mark.skipif(not ALWAYS, reason="pwrite_mem runs only under proc_mem.force_override=always")
def test_proc_self_mem_writes_sealed_read_only_memory(kx: KernelExecutor) -> None:
    run = agree(kx, """
        mmap       p0 4p rw- private|anon|fixed = p0
        write      p0 4p                        = 0
        mprotect   p0 4p r--                    = 0
        mseal      p0 4p                        = 0
        pwrite_mem p1 1p x                      = 1p
        vm_writev  p2 1p y                      = EFAULT
        poke       p3 1p z                      = 0
    """)  # fmt: skip
    assert run.final_layout().text() == "[0,4) r--p,sl anon axcz"


def test_poke_writes_code_pages_and_stops_at_a_guard(kx: KernelExecutor) -> None:
    run = agree(kx, """
        mmap    p0 4p r-x private|fixed file=f1 = p0
        madvise p2 1p guard_install             = 0
        mseal   p0 4p                           = 0
        poke    p0 3p z                         = EIO
        poke    p3+8 8 y                        = 0
    """)  # fmt: skip
    assert run.final_layout().text() == "[0,4) r-xp,sl,gu file:f1@0 zz#?"


def test_file_changes_reach_sealed_mappings_and_truncation_raises_sigbus(
    kx: KernelExecutor,
) -> None:
    run = agree(kx, """
        mmap        p0 4p rw- private|fixed file=f1 = p0
        write       p1 1p q                         = 0
        mprotect    p0 4p r--                       = 0
        mmap        p4 4p r-- shared|fixed file=f1:ro = p4
        mseal       p0 8p                           = 0
        file_pwrite f1 2p 1p w                      = 1p
        punch       f1 3p 1p                        = 0
        ftruncate   f1 1p                           = 0
        ftruncate   f1:ro 1p                        = EINVAL
    """)  # fmt: skip
    assert run.layout(5).text().splitlines()[0] == "[0,4) r--p,sl file:f1@0 FqwF"
    assert run.layout(6).text().splitlines()[1] == "[4,8) r--s,sl file:f1@0 FFw0"
    assert run.final_layout().text() == "[0,4) r--p,sl file:f1@0 F!!!\n[4,8) r--s,sl file:f1@0 F!!!"


def test_every_trace_gets_fresh_files(kx: KernelExecutor) -> None:
    agree(kx, "ftruncate f1 1p = 0\nmmap p0 2p r-- shared|fixed file=f1 = p0")
    # A new trace: f1 is 64 pages of F again.
    run = agree(kx, "mmap p0 2p r-- shared|fixed file=f1 = p0")
    assert run.final_layout().text() == "[0,2) r--s file:f1@0 FF"


def test_msync_and_mincore_answer_and_change_nothing(kx: KernelExecutor) -> None:
    agree(kx, """
        mmap    p0 4p rw- shared|fixed file=f1 = p0
        write   p0 4p                          = 0
        mmap    p6 2p rw- private|anon|fixed   = p6
        mlock   p6 2p                          = 0
        mseal   p0 8p                          = ENOMEM
        msync   p0 4p sync|invalidate          = 0
        msync   p0 8p invalidate               = EBUSY
        msync   p0 8p async                    = ENOMEM
        mincore p0 4p                          = 0
        mincore p0 8p                          = ENOMEM
        mincore p0+1 1p                        = EINVAL
    """)  # fmt: skip


def test_mlockall_future_is_undone_before_the_next_trace(kx: KernelExecutor) -> None:
    run = agree(kx, """
        mmap     p0 2p rw- private|anon|fixed = p0
        mseal    p0 2p                        = 0
        mlockall current|future|onfault       = 0
        mmap     p4 2p rw- private|anon|fixed = p4
    """)  # fmt: skip
    assert run.final_layout().text() == "[0,2) rw-p,sl,lf,lo anon 00\n[4,6) rw-p,lf,lo anon 00"
    # Had the runner not called munlockall, this mapping would be locked.
    run = agree(kx, "mmap p0 2p rw- private|anon|fixed = p0")
    assert run.final_layout().text() == "[0,2) rw-p anon 00"


def test_gu_is_read_from_smaps_and_sticks(kx: KernelExecutor) -> None:
    run = agree(kx, """
        mmap    p0 4p rw- private|anon|fixed = p0
        madvise p1 1p guard_install          = 0
        madvise p1 1p guard_remove           = 0
        mprotect p2 2p r--                   = 0
    """)  # fmt: skip
    assert run.final_layout().text() == "[0,2) rw-p,gu anon 00\n[2,4) r--p,gu anon 00"


@pytest.mark.parametrize(
    "line",
    [
        "pwrite_mem p15 2p",  # runs past the window
        "vm_writev p-1 1p",
        "poke p14 3p",
        "poke p0 65p",  # more data than the largest window
        "vm_writev 0 65p",
        "file_pwrite f1 0 65p",
        "ftruncate f1 0x20000000000",  # past 1 TiB: filesystem-dependent
        "punch f1 0x10000000000 1p",
        "file_pwrite f1 0x10000000000 1p",
        "mincore p15 2p",
        "msync p-2 1p sync",
        "mmap 0 65p rw- private|anon",  # elsewhere, and could be faulted in whole
    ],
)
def test_refuses_what_could_reach_outside_the_window(line: str) -> None:
    trace = ops_of(f"mmap p0 4p rw- private|anon|fixed\n{line}\n")
    with pytest.raises(OutsideArenaError) as info:
        check_trace(trace, WIN)
    assert info.value.step == 1


@pytest.mark.parametrize(
    "line",
    [
        "pwrite_mem 0xffff800000000000 1p",  # EINVAL before anything
        "vm_writev 0xffff800000000000 1p",
        "poke 0 8",
        "file_pwrite f1 0x8000000000000000 100p",  # EINVAL before the data is read
        "file_pwrite f1:ro 0 100p",  # EBADF first
        "ftruncate f1 0xffffffffffffffff",  # EINVAL
        "punch f1 0x7ffffffffffff000 0x2000",  # EFBIG: the sum overflows
        "mlockall current",
        "munlockall",
        "msync 0x10000 1p sync",  # below mmap_min_addr
        "mincore p0 0xfffffffffffff000",  # wraps: ENOMEM before the vector
    ],
)
def test_allows_what_cannot_touch_anything_else(line: str) -> None:
    check_trace(ops_of(f"mmap p0 4p rw- private|anon|fixed\n{line}\n"), WIN)


def test_proc_mem_force_override_is_read_from_the_running_kernel() -> None:
    setting, how = procmem.force_override()
    assert setting in ("always", "ptrace", "never", "ptrace or never", "unknown")
    assert how
    # The behaviour agrees with what was read: a child's own read-only page
    # takes a /proc/self/mem write exactly when the setting is "always".
    assert (procmem._probe() == "always") == (setting == "always")


def test_pwrite_mem_is_refused_where_the_kernel_does_not_force(monkeypatch: Any) -> None:
    from sealkit.fidelity.executor import refusals

    trace = ops_of("mmap p0 4p rw- private|anon|fixed\npwrite_mem p0 1p\n")
    monkeypatch.setattr(refusals, "_proc_mem", ("ptrace", "the kernel command line"))
    with pytest.raises(OutsideArenaError, match=r"force_override is 'ptrace'"):
        check_trace(trace, WIN)
    # Nothing to force in an empty write, and a negative offset fails first.
    check_trace(ops_of("pwrite_mem p0 0\npwrite_mem 0xffff800000000000 1p\n"), WIN)
    monkeypatch.setattr(refusals, "_proc_mem", ("always", "the kernel configuration"))
    check_trace(trace, WIN)


def test_a_kept_ptrace_helper_serves_many_pokes_and_forked_children() -> None:
    import os

    from sealkit._os import poke, syscalls

    page = syscalls.mmap(0, 3 * 4096, 1, 0x22)  # read-only private anonymous
    syscalls.munmap(page + 2 * 4096, 4096)  # a hole of our own after it
    poker = poke.Poker()
    try:
        assert poker.poke(page, b"ab") == 0
        helper = poker.pid
        assert poker.poke(page + 4096, b"c" * 4096) == 0
        assert poker.pid == helper  # the same helper
        assert os.pread(os.open("/proc/self/mem", os.O_RDONLY), 3, page) == b"ab\x00"
        pid = os.fork()
        if pid == 0:  # a forked child pokes its own copy through the same helper
            ok = (
                poker.poke(page, b"z") == 0
                and os.pread(os.open("/proc/self/mem", os.O_RDONLY), 1, page) == b"z"
            )
            os._exit(0 if ok else 1)
        assert os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1]) == 0
        assert os.pread(os.open("/proc/self/mem", os.O_RDONLY), 1, page) == b"a"  # ours: unchanged
        assert poker.poke(page + 2 * 4096, b"x" * 8) == -5  # EIO: nothing mapped there
    finally:
        poker.close()
        syscalls.munmap(page, 2 * 4096)
    assert poker.pid == 0

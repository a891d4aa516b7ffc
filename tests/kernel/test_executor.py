"""The kernel executor against the real kernel: refusals, deaths, recycling,
snapshots checked against smaps, and the seal probe it relies on."""

from __future__ import annotations

import errno
import os
import signal
from collections.abc import Callable
from typing import Any

import pytest

from sealkit._os import procfs, syscalls
from sealkit.errors import UnsafeTargetError
from sealkit.fidelity.executor import (
    MAX_WINDOWS,
    KernelExecutor,
    OutsideArenaError,
    WorkerDiedError,
    check_trace,
    raw_to_layout,
)
from sealkit.fidelity.executor.runner import Runner
from sealkit.fidelity.executor.zygote import Zygote
from sealkit.fidelity.target import Window, observed_steps
from sealkit.flags import PAGE_SIZE as PS
from sealkit.flags import Madv, MapFlag, Prot
from sealkit.layout import TRACKED_FLAGS
from sealkit.ops import MODEL_BASES, parse_trace

pytestmark = pytest.mark.kernel


def ops_of(text: str) -> list[Any]:
    return [s.op for s in parse_trace(text)]


@pytest.fixture(scope="module")
def kx() -> Any:
    with KernelExecutor(Window(pages=16, heap_pages=8)) as executor:
        yield executor


# ------------------------------------------------------------------ refusals


@pytest.mark.parametrize(
    "line",
    [
        "munmap p-1 1p",
        "mprotect p15 2p r--",
        "madvise p0 0x400000000000 dontneed",
        "mlock p0 0x100000000000",
        "mmap 0 1p rw- private|anon|fixed",
        "mmap 0x1000 1p rw- private|anon",
        "mmap p14 4p rw- private|anon",
        "mremap p0 1p 1p maymove|fixed p20",
        "mremap p0 1p 20p maymove",
        "madvise p0 1p hwpoison",
        "process_madvise soft_offline p0:1p",
        "process_madvise dontneed p0:1p p17:1p",
        "brk h-1",
        "brk h9",
        "write p16 1p",
        "mseal 0x7f0000000000 1p",
        "madvise p0 0xfffffffffff0000 dontneed",
        "mprotect p2 0x7fffffffffff r--",
    ],
)
def test_refuses_outside_the_arena_before_running(line: str) -> None:
    trace = ops_of(f"mmap p0 4p rw- private|anon|fixed\n{line}\n")
    with pytest.raises(OutsideArenaError) as info:
        check_trace(trace, Window(pages=16, heap_pages=8))
    assert info.value.step == 1
    assert isinstance(info.value, UnsafeTargetError)
    executor = KernelExecutor(Window(pages=16, heap_pages=8))
    with pytest.raises(OutsideArenaError):
        executor.run(trace)
    assert executor.workers_started == 0, "a refused trace must not start a worker"
    executor.close()


@pytest.mark.parametrize(
    ("line", "result"),
    [
        ("mseal 0xffff800000000000 1p", "ENOMEM"),  # kernel half
        ("munmap 0xffffffffff600000 1p", "EINVAL"),  # vsyscall page
        ("mseal 0 1p", "ENOMEM"),  # below mmap_min_addr, nothing created
        ("mprotect p0 0xfffffffffffff000 r--", "ENOMEM"),  # end wraps past 2**64
        ("munmap p0 0x800000000000", "EINVAL"),  # past TASK_SIZE: munmap checks first
        ("mseal p0 0x4000000000000000", "ENOMEM"),  # past TASK_SIZE: mseal checks first
        ("madvise p0 0xffffffffffffffff dontneed", "EINVAL"),
        ("mmap 0 2p rw- private|anon", "elsewhere"),  # no hint: placed far away
        ("mseal p0 0", "0"),
        ("write 0xffff800000000000 1p", "EFAULT"),
    ],
)
def test_far_ranges_run_and_cannot_hit_anything(kx: KernelExecutor, line: str, result: str) -> None:
    steps = parse_trace(f"mmap p0 4p rw- private|anon|fixed = p0\n{line} = {result}\n")
    run = kx.run(steps)
    assert run.ok, run.died
    assert run.results == [s.result for s in steps]
    assert run.layout(1).text() == "[0,4) rw-p anon 0000"


def _wrap_reply(runner: Runner) -> tuple[Any, ...]:
    length = (1 << 64) - MODEL_BASES.arena - PS
    return _handle(runner, [f"madvise p2 {length:#x} dontneed"])


def test_worker_rechecks_wrapping_with_its_own_addresses(in_child: Any) -> None:
    # A length that wraps past 2**64 from the model's p0 but not from a lower
    # base would cover everything above the worker's arena: the worker, which
    # knows its real addresses, must refuse it too.
    length = (1 << 64) - MODEL_BASES.arena - PS
    check_trace(ops_of(f"madvise p2 {length:#x} dontneed"))  # fine in the model's frame
    reply = in_child(_with_runner, _wrap_reply)
    assert reply[0] == "refused"
    assert isinstance(reply[1], OutsideArenaError)
    assert reply[1].step == 0


# ---------------------------------------------------------------- basic runs

BASIC = """
mmap     p0 8p rw- private|anon|fixed             = p0
write    p0 8p                                    = 0
mseal    p4 4p                                    = 0
munmap   p2 6p                                    = EPERM
mprotect p0 8p r--                                = EPERM
madvise  p0 1p dontneed                           = 0
mmap     p10 4p r-- private|fixed file=f1 off=2p  = p10
mmap     p14 2p rw- shared|anon|fixed             = p14
madvise  p1 1p guard_install                      = 0
write    p14 1p q                                 = 0
"""


def test_a_trace_gives_results_and_exact_layouts(kx: KernelExecutor) -> None:
    steps = parse_trace(BASIC)
    run = kx.run(steps, flags="every")
    assert run.ok, run.died
    assert run.results == [s.result for s in steps]
    assert all(run.flags_checked)
    # The leftover split of a refused munmap (docs/reference/linux.md rule 5).
    assert run.layout(3).text() == (
        "[0,2) rw-p anon ab\n[2,4) rw-p anon cd\n[4,8) rw-p,sl anon efgh"
    )
    # mprotect applied before the sealed VMA (rule 7, partial).
    assert run.layout(4).text() == "[0,4) r--p anon abcd\n[4,8) rw-p,sl anon efgh"
    # A guard marker leaves VM_MAYBE_GUARD (smaps gu) on its VMA (6.18).
    assert run.final_layout().text() == (
        "[0,4) r--p,gu anon 0#cd\n"
        "[4,8) rw-p,sl anon efgh\n"
        "[10,14) r--p file:f1@2 FFFF\n"
        "[14,16) rw-s shmem@0 q0"
    )


def test_flags_are_read_only_where_asked(kx: KernelExecutor) -> None:
    steps = parse_trace(
        "mmap p0 4p rw- private|anon|fixed\nmadvise p0 2p dontdump\nmlock p2 1p\nmunlock p2 1p\n"
    )
    run = kx.run(steps, flags="end")
    assert run.flags_checked == [False, False, False, True]
    assert "dd" not in run.layout(1).text()  # not read: no flags claimed
    assert run.layout(3).text() == "[0,2) rw-p,dd anon 00\n[2,4) rw-p anon 00"
    run = kx.run(steps, flags="flag-ops")
    assert run.flags_checked == [True, True, True, True]
    assert run.layout(2).text() == (
        "[0,2) rw-p,dd anon 00\n[2,3) rw-p,lo anon 0\n[3,4) rw-p anon 0"
    )


def test_fork_continues_in_the_child(kx: KernelExecutor) -> None:
    steps = parse_trace(
        """
        mmap    p0 4p rw- private|anon|fixed   = p0
        write   p0 4p                          = 0
        madvise p0 1p wipeonfork               = 0
        madvise p1 1p dontfork                 = 0
        mseal   p0 4p                          = 0
        fork                                   = 0
        munmap  p2 1p                          = EPERM
        madvise p3 1p dontneed                 = 0
        """
    )
    run = kx.run(steps, flags="every")
    assert run.ok, run.died
    assert run.results == [s.result for s in steps]
    # The parent's view just before the fork, then the child's after it.
    assert run.layout(4).text() == (
        "[0,1) rw-p,sl,wf anon a\n[1,2) rw-p,sl,dc anon b\n[2,4) rw-p,sl anon cd"
    )
    assert run.layout(5).text() == "[0,1) rw-p,sl,wf anon 0\n[2,4) rw-p,sl anon cd"
    assert run.layout(7).text() == "[0,1) rw-p,sl,wf anon 0\n[2,4) rw-p,sl anon c0"


def test_addresses_placed_outside_the_window_are_elsewhere(kx: KernelExecutor) -> None:
    steps = parse_trace(
        """
        mmap    p0 2p rw- private|anon|fixed        = p0
        mmap    p1 1p rw- private|anon              = elsewhere
        mmap    p4 2p r-- private|anon              = p4
        mmap    p6 2p rw- shared|anon|fixed         = p6
        mremap  p6 0 2p maymove                     = elsewhere
        mremap  p0 2p 12p maymove                   = elsewhere
        """
    )
    run = kx.run(steps)
    assert run.results == [s.result for s in steps]
    assert run.final_layout().text() == "[4,6) r--p anon 00\n[6,8) rw-s shmem@0 00"


def test_heap_zone_uses_the_real_break(kx: KernelExecutor) -> None:
    steps = parse_trace(
        """
        brk    0                                = h0
        brk    h4                               = h4
        write  h0 4p                            = 0
        mseal  h3 1p                            = 0
        brk    h2                               = h4
        brk    h6                               = h6
        brk    h4                               = h4
        """
    )
    run = kx.run(steps, flags="every")
    assert run.ok, run.died
    assert run.results == [s.result for s in steps]
    assert run.zones == ("p", "h")
    # A refused shrink leaves the heap split at the requested break (scenario probe/8.1; linux.md rule 9).
    assert run.layout(4, "h").text() == (
        "[0,2) rw-p [heap] ab\n[2,3) rw-p [heap] c\n[3,4) rw-p,sl [heap] d"
    )
    assert run.final_layout("h").text() == run.layout(4, "h").text()
    # The sealed heap page means the runner cannot go on: the next trace gets a
    # fresh one with a clean break.
    again = kx.run(steps[:3])
    assert again.worker != run.worker
    assert again.results == [s.result for s in steps[:3]]


# -------------------------------------------------------- deaths, recycling


def test_a_killed_runner_is_reported_and_the_run_goes_on() -> None:
    with KernelExecutor() as executor:
        steps = parse_trace("mmap p0 1p rw- private|anon|fixed = p0\n")
        first = executor.run(steps)
        os.kill(first.worker, signal.SIGKILL)
        runs = list(executor.run_many([steps, steps, steps]))
        assert runs[0].died is not None and "signal 9" in runs[0].died
        assert runs[0].ops == tuple(s.op for s in steps), "the death names its trace"
        assert [r.results for r in runs[1:]] == [[MODEL_BASES.arena]] * 2
        assert executor.deaths == 1


def test_a_killed_worker_is_replaced() -> None:
    with KernelExecutor() as executor:
        steps = parse_trace("mmap p0 1p rw- private|anon|fixed = p0\n")
        executor.run(steps)
        assert executor._proc is not None
        os.killpg(executor._proc.pid, signal.SIGKILL)
        runs = list(executor.run_many([steps] * 3))
        assert runs[0].died is not None
        assert all(r.ok and r.results == [MODEL_BASES.arena] for r in runs[1:])
        assert executor.workers_started == 2


def test_runners_retire_before_sealed_leftovers_pile_up() -> None:
    sealing = parse_trace("mmap p0 2p rw- private|anon|fixed = p0\nmseal p0 1p = 0\n")
    with KernelExecutor() as executor:
        runs = list(executor.run_many([sealing] * (MAX_WINDOWS + 6), flags="never"))
        assert all(r.ok and r.results == [MODEL_BASES.arena, 0] for r in runs)
        assert all(
            r.final_layout().text() == "[0,1) rw-p,sl anon 0\n[1,2) rw-p anon 0" for r in runs
        )
        assert len(executor.runners) >= 2, "a runner must retire when its slots run out"
        assert executor.workers_started == 1


def test_clean_traces_reuse_one_window() -> None:
    clean = parse_trace("mmap p0 2p rw- private|anon|fixed = p0\nmunmap p0 2p = 0\n")
    with KernelExecutor() as executor:
        runs = list(executor.run_many([clean] * 100, flags="never"))
        assert len({r.bases.arena for r in runs}) == 1
        assert len(executor.runners) == 1


def test_workers_and_runners_stay_on_one_cpu() -> None:
    # Per-CPU LRU batches make MADV_FREE + MADV_PAGEOUT depend on the CPU
    # (executor.zygote._pin): the worker, its runners and their fork children
    # never migrate.
    allowed = sorted(os.sched_getaffinity(0))
    steps = parse_trace("mmap p0 1p rw- private|anon|fixed = p0\n")
    for cpu in (0, 1):
        with KernelExecutor(cpu=cpu) as executor:
            run = executor.run(steps)
            assert executor._proc is not None
            want = {allowed[cpu % len(allowed)]}
            assert os.sched_getaffinity(executor._proc.pid) == want
            assert os.sched_getaffinity(run.worker) == want
    with KernelExecutor() as executor:
        run = executor.run(steps)
        assert len(os.sched_getaffinity(run.worker)) == 1


def test_a_worker_that_cannot_start_says_why(monkeypatch: pytest.MonkeyPatch) -> None:
    # A worker whose interpreter cannot even import sealkit.
    executor = KernelExecutor()
    monkeypatch.setenv("PYTHONPATH", "/nonexistent")
    monkeypatch.setattr(
        "sealkit.fidelity.executor.client.__file__",
        "/nonexistent/sealkit/fidelity/executor/client.py",
    )
    with pytest.raises(WorkerDiedError, match="failed to start"):
        executor.run(parse_trace("mmap p0 1p rw- private|anon|fixed\n"))


# ------------------------------------------- snapshots vs smaps, seal probe


def _handle(runner: Runner, lines: list[str], flags: str = "every") -> tuple[Any, ...]:
    ops = ops_of("\n".join(lines))
    n = len(ops)
    msg = ("run", ops, Window(16, 8), observed_steps(n, "every", ops, ""),
           observed_steps(n, flags, ops, ""), False)  # fmt: skip
    return runner.handle(msg)


def _with_runner(fn: Callable[[Runner], Any]) -> Any:
    """In a forked child (``in_child``): a runner in this very process, so the
    test can read its smaps; its seals vanish with the child."""
    return fn(Runner(Zygote()))


STATE = [
    "mmap p0 3p rw- private|anon|fixed",
    "write p0 3p",
    "mprotect p1 1p r--",
    "mseal p1 2p",
    "mmap p4 2p --- private|anon|fixed",
    "mmap p6 3p rw- private|fixed file=f1 off=1p",
    "write p7 1p x",
    "mmap p9 2p r-- shared|fixed file=f2:ro",
    "mmap p11 2p rw- shared|anon|fixed",
    "write p11 1p s",
    "madvise p12 1p dontdump",
    "mlock p6 1p",
    "madvise p4 1p guard_install",
    "mseal p9 2p",
    "mmap p14 2p rw- private|anon|fixed|growsdown",
]


def _snapshot_and_smaps(runner: Runner) -> tuple[str, list[tuple[Any, ...]], int]:
    reply = _handle(runner, STATE)
    assert reply[0] == "done", reply
    base = runner.bases.arena
    layout = raw_to_layout(reply[2][-1][0], "p", 0, 16)
    rows = []
    for vma in procfs.read_smaps("self"):
        if vma.end <= base or vma.start >= base + 16 * PS:
            continue
        rows.append((vma.start, vma.end, vma.perms, vma.offset, vma.inode, vma.vmflags))
    return layout.text(), rows, base


def test_snapshot_agrees_with_smaps_on_the_same_state(in_child: Any) -> None:
    text, rows, base = in_child(_with_runner, _snapshot_and_smaps)
    layout_lines = text.splitlines()
    assert len(layout_lines) == len(rows), (text, rows)
    from sealkit.layout import Layout

    layout = Layout.parse(text, "p", 0, 16)
    for run, (start, end, perms, offset, inode, vmflags) in zip(layout.runs, rows, strict=True):
        assert (run.start, run.end) == ((start - base) // PS, (end - base) // PS)
        assert run.perms == perms
        assert run.sealed == ("sl" in vmflags)
        assert run.flags == vmflags & TRACKED_FLAGS
        if inode:
            assert run.backing.startswith(("file:", "shmem"))
            assert run.pgoff == offset // PS
        else:
            assert run.backing == "anon"
    assert text == (
        "[0,1) rw-p anon a\n"
        "[1,2) r--p,sl anon b\n"
        "[2,3) rw-p,sl anon c\n"
        "[4,6) ---p,gu anon #0\n"
        "[6,7) rw-p,lo file:f1@1 F\n"
        "[7,9) rw-p file:f1@2 xF\n"
        "[9,11) r--s,sl file:f2@0 FF\n"
        "[11,12) rw-s shmem@0 s\n"
        "[12,13) rw-s,dd shmem@1 0\n"
        "[14,16) rw-p,gd anon 00"
    )


def _vma_state(vma: procfs.Vma) -> tuple[object, ...]:
    """What the probe must not change. Not the reclaim-driven counters
    (Referenced, Rss of clean file pages...), which move on their own."""
    stable = ("Size", "Anonymous", "Locked", "Swap", "AnonHugePages")
    return (vma.start, vma.end, vma.perms, vma.offset, vma.vmflags,
            tuple(vma.fields.get(k) for k in stable))  # fmt: skip


def _overlapping(addr: int, length: int) -> list[procfs.Vma]:
    """The VMAs that overlap ``[addr, addr + length)``: a slot that merged with
    its PROT_NONE neighbours is still seen whole."""
    return [v for v in procfs.read_smaps("self") if v.end > addr and v.start < addr + length]


def _probe_claim(_runner: Runner) -> list[tuple[str, bool, bool, bool | str]]:
    """For many VMA kinds: does mprotect(own prot) return EPERM iff sealed, and
    leave every smaps field of an unsealed VMA unchanged (no split either)?"""
    # The slots live in a PROT_NONE reservation that is never unmapped (used
    # slots are reset to PROT_NONE): a hole would let the process's own next
    # allocation (reading smaps allocates) land next to a slot and merge with
    # it, or under a later MAP_FIXED.
    base = syscalls.mmap(0, 65 * PS, 0, MapFlag.PRIVATE | MapFlag.ANONYMOUS) + PS
    fd = os.memfd_create("probe")
    os.ftruncate(fd, 8 * PS)
    kinds: list[tuple[str, int, int, int, int, Callable[[int], None] | None]] = [
        ("anon rw", 3, MapFlag.PRIVATE | MapFlag.ANONYMOUS, -1, 0, None),
        ("anon r", 1, MapFlag.PRIVATE | MapFlag.ANONYMOUS, -1, 0, None),
        ("anon none", 0, MapFlag.PRIVATE | MapFlag.ANONYMOUS, -1, 0, None),
        ("anon rwx", 7, MapFlag.PRIVATE | MapFlag.ANONYMOUS, -1, 0, None),
        ("file private rw", 3, MapFlag.PRIVATE, fd, 0, None),
        ("file shared r", 1, MapFlag.SHARED, fd, 0, None),
        ("shmem rw", 3, MapFlag.SHARED | MapFlag.ANONYMOUS, -1, 0, None),
        ("anon locked", 3, MapFlag.PRIVATE | MapFlag.ANONYMOUS, -1, 0,
         lambda a: syscalls.mlock(a, 4 * PS)),
        ("anon growsdown", 3, MapFlag.PRIVATE | MapFlag.ANONYMOUS | MapFlag.GROWSDOWN, -1, 0,
         None),
        ("anon dontdump", 3, MapFlag.PRIVATE | MapFlag.ANONYMOUS, -1, 0,
         lambda a: syscalls.madvise(a, 4 * PS, Madv.DONTDUMP)),
    ]  # fmt: skip
    out = []
    for i, (name, prot, flags, mfd, off, extra) in enumerate(kinds):
        addr = base + i * 6 * PS
        for sealed in (False, True):
            syscalls.mmap(addr, 4 * PS, prot, flags | MapFlag.FIXED, mfd, off)
            syscalls.mmap(
                addr + 4 * PS, PS, Prot.NONE, MapFlag.PRIVATE | MapFlag.ANONYMOUS | MapFlag.FIXED
            )
            if prot & Prot.WRITE:
                syscalls.process_vm_writev(os.getpid(), [(addr, PS)], b"z" * PS)
            if extra is not None:
                extra(addr)
            if sealed:
                syscalls.mseal(addr, 4 * PS)
            before = _overlapping(addr, 5 * PS)
            whole = syscalls.errno_call("mprotect", addr, 4 * PS, prot)
            part = syscalls.errno_call("mprotect", addr + PS, PS, prot)  # a sub-range
            after = _overlapping(addr, 5 * PS)
            b_state = [_vma_state(v) for v in before]
            a_state = [_vma_state(v) for v in after]
            same = b_state == a_state or f"{b_state} -> {a_state}"
            eperm = whole == part == -errno.EPERM
            ok = whole == 0 and part == 0
            out.append((f"{name} {'sealed' if sealed else 'unsealed'}", sealed, eperm or ok, same))
            if not sealed:  # back to reserved; the sealed copy stays: the child exits
                syscalls.mmap(addr, 5 * PS, 0, MapFlag.PRIVATE | MapFlag.ANONYMOUS | MapFlag.FIXED)
    return out


def test_seal_probe_is_eperm_iff_sealed_and_has_no_side_effect(in_child: Any) -> None:
    rows = in_child(_with_runner, _probe_claim)
    assert len(rows) == 20
    for name, _sealed, answered, unchanged in rows:
        assert answered, f"{name}: mprotect(own prot) gave neither 0 nor EPERM"
        assert unchanged is True, f"{name}: the probe changed smaps: {unchanged}"
    # And the answer itself: EPERM exactly for the sealed ones.
    results = in_child(_with_runner, _probe_answers)
    for name, sealed, eperm in results:
        assert eperm == sealed, name


def _probe_answers(runner: Runner) -> list[tuple[str, bool, bool]]:
    base = runner._slot_base(0)
    out = []
    for i, prot in enumerate((0, 1, 3, 5, 7)):
        a = base + i * 2 * PS
        syscalls.mmap(a, PS, prot, MapFlag.PRIVATE | MapFlag.ANONYMOUS | MapFlag.FIXED)
        syscalls.mmap(a + PS, PS, prot, MapFlag.PRIVATE | MapFlag.ANONYMOUS | MapFlag.FIXED)
        syscalls.mseal(a + PS, PS)
        out.append((f"prot {prot} unsealed", False, runner._sealed(a, PS, prot)))
        out.append((f"prot {prot} sealed", True, runner._sealed(a + PS, PS, prot)))
    return out

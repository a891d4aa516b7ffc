"""The ptrace helpers of ``sealkit._os.poke`` on the real kernel: the one-shot
helper (``poke_self``) and the kept one (``Poker``) write a read-only page, and
when they end, their helper dies before it reads or before it answers, or a
pipe or the fork is refused, they leave no descriptor open and no child unreaped; and they work
for a caller that ignores ``SIGCHLD`` (its children are reaped by the kernel).
"""

from __future__ import annotations

import errno
import os
import signal
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from sealkit._os import poke, syscalls

pytestmark = pytest.mark.kernel

PS = 4096


def open_fds() -> set[str]:
    return set(os.listdir("/proc/self/fd"))


def read_mem(addr: int, n: int) -> bytes:
    fd = os.open("/proc/self/mem", os.O_RDONLY)
    try:
        return os.pread(fd, n, addr)
    finally:
        os.close(fd)


def assert_reaped(pid: int) -> None:
    """``pid`` was our child and has been waited for: no zombie, nothing running."""
    with pytest.raises(ChildProcessError):
        os.waitpid(pid, os.WNOHANG)
    assert not os.path.exists(f"/proc/{pid}")


@pytest.fixture
def page() -> Iterator[int]:
    addr = syscalls.mmap(0, PS, 1, 0x22)  # read-only private anonymous
    yield addr
    syscalls.munmap(addr, PS)


def _record_forks(
    monkeypatch: pytest.MonkeyPatch, after: Callable[[int], None] | None = None
) -> list[int]:
    """The pids of the helpers forked from now on (os.fork, recorded); in the
    parent, ``after(pid)`` runs on each before fork returns."""
    pids: list[int] = []
    real = os.fork

    def fork() -> int:
        pid = real()
        if pid:
            pids.append(pid)
            if after is not None:
                after(pid)
        return pid

    monkeypatch.setattr(os, "fork", fork)
    return pids


@pytest.fixture
def forks(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """The pids of the helpers forked during the test."""
    return _record_forks(monkeypatch)


def test_poke_self_writes_and_leaves_nothing(page: int, forks: list[int]) -> None:
    before = open_fds()
    assert poke.poke_self(page, b"hello") == 0  # a partial word
    assert poke.poke_self(page + 100, b"0123456789abc") == 0  # a word and an overlapping one
    assert poke.poke_self(page, b"") == 0  # nothing to write: no helper at all
    assert read_mem(page, 5) == b"hello" and read_mem(page + 100, 13) == b"0123456789abc"
    assert open_fds() == before
    assert len(forks) == 2
    for pid in forks:
        assert_reaped(pid)


def test_poker_close_ends_its_helper(page: int, forks: list[int]) -> None:
    before = open_fds()
    poker = poke.Poker()
    assert poker.poke(page, b"ab") == 0
    assert poker.poke(page + 8, b"cd") == 0
    assert forks == [poker.pid]  # one helper for both
    helper = poker.pid
    assert open_fds() != before  # the helper's two pipe ends are kept
    poker.close()  # the request pipe closes: the helper exits, and is reaped
    assert poker.pid == 0 and open_fds() == before
    assert_reaped(helper)
    assert read_mem(page, 10) == b"ab\0\0\0\0\0\0cd"


def _dies(*_args: Any) -> int:
    os._exit(3)  # in the helper, after it read the request, before it answers


@pytest.mark.parametrize("use", ["poke_self", "Poker"])
def test_a_helper_dying_before_it_answers_is_echild(
    use: str, page: int, forks: list[int], monkeypatch: pytest.MonkeyPatch
) -> None:
    before = open_fds()
    poker = poke.Poker()
    call: Callable[[int, bytes], int] = poke.poke_self if use == "poke_self" else poker.poke
    real = poke._poke_as_tracer
    monkeypatch.setattr(poke, "_poke_as_tracer", _dies)
    assert call(page, b"x") == -errno.ECHILD
    assert poker.pid == 0  # a dead kept helper is forgotten
    assert open_fds() == before
    assert_reaped(forks[0])
    monkeypatch.setattr(poke, "_poke_as_tracer", real)  # the next call forks a new helper
    assert call(page, b"y") == 0 and read_mem(page, 1) == b"y"
    poker.close()
    assert open_fds() == before
    assert len(forks) == 2
    assert_reaped(forks[1])


def _refuse(*_args: Any) -> Any:
    raise OSError(errno.EAGAIN, "refused by the test")


@pytest.mark.parametrize("use", ["poke_self", "Poker"])
@pytest.mark.parametrize("fault", ["fork", "first pipe", "second pipe"])
def test_a_refused_fork_or_pipe_is_raised_and_leaks_nothing(
    use: str, fault: str, page: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    before = open_fds()
    poker = poke.Poker()
    call: Callable[[int, bytes], int] = poke.poke_self if use == "poke_self" else poker.poke
    if fault == "fork":
        monkeypatch.setattr(os, "fork", _refuse)
    else:
        real_pipe, pipes = os.pipe, [0]

        def pipe() -> tuple[int, int]:
            pipes[0] += 1
            if pipes[0] == (1 if fault == "first pipe" else 2):
                _refuse()
            return real_pipe()

        monkeypatch.setattr(os, "pipe", pipe)
    with pytest.raises(OSError, match="refused by the test"):
        call(page, b"x")
    assert poker.pid == 0
    assert open_fds() == before
    monkeypatch.undo()
    assert call(page, b"y") == 0 and read_mem(page, 1) == b"y"
    poker.close()
    assert open_fds() == before


def _poke_with_sigchld_ignored(page: int) -> tuple[list[int], bytes]:
    signal.signal(signal.SIGCHLD, signal.SIG_IGN)  # children reap themselves: waitpid is ECHILD
    results = []
    for poked in (b"s", b"k"):  # twice: the first call's ending leaves nothing in the way
        results.append(poke.poke_self(page, poked))
        poker = poke.Poker()
        results.append(poker.poke(page + 1, poked))
        poker.close()
    return results, read_mem(page, 2)


def test_both_helpers_work_when_the_caller_ignores_sigchld(
    page: int, in_child: Callable[..., Any]
) -> None:
    assert in_child(_poke_with_sigchld_ignored, page) == ([0, 0, 0, 0], b"kk")


def _wait_until_exited(pid: int) -> None:
    """Until ``pid``, our child, has exited (a zombie: not yet reaped)."""
    for _ in range(10_000):
        with open(f"/proc/{pid}/stat") as f:
            if f.read().rsplit(")", 1)[1].split()[0] == "Z":
                return
        time.sleep(0.001)
    raise AssertionError(f"helper {pid} did not exit within 10 s")


@pytest.mark.parametrize("use", ["poke_self", "Poker"])
def test_a_helper_dead_before_it_reads_is_echild(
    use: str, page: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The helper exits (its PR_SET_PDEATHSIG refused) before the request is
    written: the write is refused with EPIPE, the answer is -ECHILD, as when it
    dies later, and the kept helper is forgotten."""
    before = open_fds()
    poker = poke.Poker()
    call: Callable[[int, bytes], int] = poke.poke_self if use == "poke_self" else poker.poke
    monkeypatch.setattr(syscalls, "set_parent_death_signal", _refuse)
    forked = _record_forks(monkeypatch, _wait_until_exited)
    assert call(page, b"x") == -errno.ECHILD
    assert poker.pid == 0
    assert open_fds() == before
    assert_reaped(forked[0])

"""The worker process: a fresh interpreter that forks the runners.

Seals last until the process exits (nothing unseals: docs/reference/linux.md rule 3), so
traces never run in the caller. A worker is a fresh interpreter
(``python -c 'from sealkit.fidelity.executor.zygote import worker_main; worker_main()'``)
talking pickled frames over two pipes, in its own session (the terminal's
^C goes to the controller, which decides). Every process of the worker's
tree (the worker, its runners, their forked trace children) asks the kernel
for SIGKILL when its parent dies (``PR_SET_PDEATHSIG``), so nothing outlives
the controller however it ends (SIGTERM, SIGKILL, a crash). The signal
follows the controller *thread* that started the worker: an executor must
not outlive the thread that first ran a trace on it. An interrupted
controller (KeyboardInterrupt, SystemExit) kills the worker at once rather
than wait for the traces it holds (:meth:`KernelExecutor.terminate`).
At start the worker reserves an *arena*:
``MAX_WINDOWS`` slots of ``MAX_PAGES`` pages, each flanked by ``GUARD``
guard pages, as one ``PROT_NONE|MAP_SHARED|MAP_ANONYMOUS|MAP_NORESERVE``
mapping far below the kernel's top-down mmap area (so no placement the
kernel chooses, "elsewhere", can ever land in it). The guards are shmem,
a backing object no trace can create, so a trace's mapping never merges
with them (docs/reference/linux.md rule 15).

The zygote never runs a trace itself, so every runner starts from the same
pristine state and a runner's seals vanish with it.
"""

from __future__ import annotations

import contextlib
import os
import pickle
import signal
import sys
import traceback
from typing import Final

from ..._os import syscalls
from ...errors import KernelError, SealkitError
from ...flags import MapFlag, Prot
from .protocol import WorkerDiedError, recv_frame, send, send_frame
from .refusals import PS, limits
from .runner import MAX_WINDOWS, STRIDE, Runner, die_with_parent, status_note

# The worker imports this module too, and every shared library it loads is
# five more VMAs that each smaps read formats (~5 us apiece, see the runner's
# snapshots): controller-only modules (subprocess, tempfile -> shutil -> bz2,
# lzma, zlib; random; select) are imported where the controller uses them.

__all__ = ["Zygote", "worker_main"]

_ARENA_HINTS: Final = (0x2000_0000_0000, 0x2400_0000_0000, 0x2800_0000_0000, 0x1C00_0000_0000)
_TOP_PAD: Final = 64 << 20


class Zygote:
    """The worker process itself: prepares malloc, reserves the arena, and
    forks *runners* that run traces. It never runs a trace, so every runner
    starts from the same pristine state and a runner's seals vanish with it."""

    def __init__(self) -> None:
        self.lim = limits()
        self._prepare_malloc()
        self.arena = self._reserve_arena()

    @staticmethod
    def _prepare_malloc() -> None:
        # Keep glibc malloc off the break for the worker's whole life: never
        # trim (free never lowers the break under a trace), pad every sbrk by
        # 64 MiB, and force one sbrk now so the top chunk has that room.
        with contextlib.suppress(SealkitError):
            syscalls.mallopt(-1, 0x7FFF0000)  # M_TRIM_THRESHOLD
            syscalls.mallopt(-2, _TOP_PAD)  # M_TOP_PAD
            syscalls.mallopt(-3, 128 * 1024)  # M_MMAP_THRESHOLD (fixed: no dynamic growth)
        before = syscalls.brk(0)
        hold = []
        for _ in range(4096):
            hold.append(bytearray(60 * 1024))
            if syscalls.brk(0) != before:
                break
        del hold

    @staticmethod
    def _reserve_arena() -> int:
        size = MAX_WINDOWS * STRIDE * PS
        flags = MapFlag.SHARED | MapFlag.ANONYMOUS | MapFlag.NORESERVE | MapFlag.FIXED_NOREPLACE
        for hint in _ARENA_HINTS:
            try:
                return syscalls.mmap(hint, size, Prot.NONE, flags)
            except KernelError:
                continue
        raise WorkerDiedError("could not reserve an arena at any of the hint addresses")

    def serve(self, rfd: int, wfd: int) -> None:
        runner: tuple[int, int, int] | None = None
        while True:
            frame = recv_frame(rfd)
            if frame is None or pickle.loads(frame[1]) == ("exit",):
                if runner is not None:
                    self._stop(runner)
                return
            if runner is None:
                runner = self._fork_runner(rfd, wfd)
            pid, to_fd, from_fd = runner
            try:
                send_frame(to_fd, frame[1], 0)
                reply = recv_frame(from_fd)
            except OSError:
                reply = None
            if reply is None:
                os.close(to_fd)
                os.close(from_fd)
                _, status = os.waitpid(pid, 0)
                runner = None
                send(wfd, ("died", f"the runner process {status_note(status)}"))
                continue
            retire, payload = reply
            send_frame(wfd, payload, 0)
            if retire:
                self._stop(runner)
                runner = None

    @staticmethod
    def _stop(runner: tuple[int, int, int]) -> None:
        pid, to_fd, from_fd = runner
        os.close(to_fd)  # EOF: the runner exits
        os.close(from_fd)
        os.waitpid(pid, 0)

    def _fork_runner(self, rfd: int, wfd: int) -> tuple[int, int, int]:
        down_r, down_w = os.pipe()
        up_r, up_w = os.pipe()
        me = os.getpid()
        pid = os.fork()
        if pid == 0:
            code = 0
            try:
                die_with_parent(me)
                for fd in (down_w, up_r, rfd, wfd):
                    os.close(fd)
                Runner(self).serve(down_r, up_w)
            except BaseException:
                with contextlib.suppress(BaseException):
                    send(up_w, ("fail", traceback.format_exc()))
                code = 1
            os._exit(code)
        os.close(down_r)
        os.close(up_w)
        return pid, down_w, up_r


def _pin(cpu: int) -> None:
    """Keep this process (and the runners it forks) on one CPU: index ``cpu``
    into the allowed CPUs, or the CPU it runs on now when ``cpu < 0``.

    Why: MADV_FREE and MADV_COLD park folios in per-CPU LRU batches (off the
    LRU), and madvise_pageout()/madvise_cold() drain only the current CPU's
    batches (lru_add_drain()) before walking. A runner that migrated between
    MADV_FREE and MADV_PAGEOUT would find its lazily freed folio still in
    the other CPU's batch and skip it (folio_test_lru() fails), keeping data
    the model (rightly, on one CPU) says is reclaimed."""
    allowed = sorted(os.sched_getaffinity(0))
    if cpu >= 0:
        target = allowed[cpu % len(allowed)]
    else:
        with open("/proc/self/stat", "rb") as fh:
            # Field 39 "processor", counted after the ")" closing comm.
            now = int(fh.read().rsplit(b")", 1)[1].split()[36])
        target = now if now in allowed else allowed[0]
    os.sched_setaffinity(0, {target})


def worker_main() -> None:
    """Entry point of a worker process: ``argv[1:3]`` are the request and reply
    fds, ``argv[3]`` the CPU index to stay on (``-1``: where it starts),
    ``argv[4]`` the controller's pid (the worker dies with it)."""
    rfd, wfd = int(sys.argv[1]), int(sys.argv[2])
    if len(sys.argv) > 4:
        die_with_parent(int(sys.argv[4]))
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the controller decides when we stop
    try:
        _pin(int(sys.argv[3]) if len(sys.argv) > 3 else -1)
        zygote = Zygote()
    except BaseException:
        send(wfd, ("fail", traceback.format_exc()))
        return
    send(wfd, ("ready", os.getpid(), zygote.arena))
    zygote.serve(rfd, wfd)

"""The controller side: :class:`KernelExecutor` starts, feeds and recycles workers."""

from __future__ import annotations

import contextlib
import os
import signal
import sys
import time
from collections.abc import Generator, Iterable, Sequence
from typing import TYPE_CHECKING, Any

from ...layout import Run
from ...ops import Bases, Op, Step
from ..target import (
    FlagMode,
    LayoutMode,
    TraceRun,
    Usage,
    Window,
    observed_steps,
    plain_ops,
    uses_heap,
)
from .protocol import RawRun, WorkerDiedError, recv, send, snapshot_layouts
from .refusals import check_trace, refusal

if TYPE_CHECKING:
    import subprocess

__all__ = ["KernelExecutor"]


class KernelExecutor:
    """Runs traces on the real kernel in a disposable worker process: the
    ``kernel`` :class:`~sealkit.fidelity.target.Target`.

    ``window`` bounds what traces may address. ``timeout`` (seconds) is how
    long one trace may take before its worker is killed and the trace
    reported dead. Use as a context manager (or call :meth:`close`).

    >>> with KernelExecutor() as kx:                      # doctest: +SKIP
    ...     run = kx.run(parse_trace("mmap p0 4p rw- private|anon|fixed"))
    ...     run.results, run.layout(0).text()
    """

    name = "kernel"
    policy = "linux"
    """The design the running kernel implements, as the model names it."""
    reference = True

    def __init__(
        self, window: Window | None = None, *, timeout: float = 60.0, cpu: int | None = None
    ) -> None:
        self.window = window or Window()
        self.timeout = timeout
        self.cpu = cpu
        """Index into the allowed CPUs the worker stays on (``None``: the one it
        starts on); see :func:`_pin`."""
        self._proc: subprocess.Popen[bytes] | None = None
        self._to: int = -1
        self._from: int = -1
        self._stderr: Any = None
        self.workers_started = 0
        self.deaths = 0
        self.runners: set[int] = set()
        self._runs: dict[RawRun, Run] = {}  # raw runs already made Runs (protocol.snapshot_layouts)

    # ----------------------------------------------------------- lifecycle

    def __enter__(self) -> KernelExecutor:
        return self

    def __exit__(self, kind: type[BaseException] | None, *exc: object) -> None:
        if kind is not None and not issubclass(kind, Exception):
            self.terminate()  # KeyboardInterrupt, SystemExit: do not wait
        else:
            self.close()

    def terminate(self) -> None:
        """Kill the worker now (and any runner or child of it), without letting
        it finish the traces it holds: for an interrupted caller. The next
        :meth:`run` starts a new worker."""
        self._kill()
        self._reset()

    def close(self) -> None:
        """Stop the worker (its seals go with it)."""
        proc = self._proc
        if proc is None:
            return
        with contextlib.suppress(OSError):
            send(self._to, ("exit",))
        import subprocess  # noqa: PLC0415 (controller side only, see the imports)

        try:
            proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            self._kill()
        self._reset()

    def _reset(self) -> None:
        for fd in (self._to, self._from):
            if fd >= 0:
                with contextlib.suppress(OSError):
                    os.close(fd)
        if self._stderr is not None:
            self._stderr.close()
        self._proc, self._to, self._from, self._stderr = None, -1, -1, None

    def _kill(self) -> None:
        proc = self._proc
        if proc is None:
            return
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.pid, signal.SIGKILL)  # the worker and any forked child of it
        import subprocess  # noqa: PLC0415 (controller side only, see the imports)

        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(timeout=5)

    def _start(self) -> None:
        import subprocess  # noqa: PLC0415 (controller side only, see the imports)
        import tempfile  # noqa: PLC0415

        req_r, req_w = os.pipe()
        rep_r, rep_w = os.pipe()
        # The directory holding the sealkit package: .../sealkit/fidelity/executor/client.py
        src = os.path.abspath(__file__)
        for _ in range(4):
            src = os.path.dirname(src)
        env = dict(os.environ)
        env["PYTHONPATH"] = src + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
        self._stderr = tempfile.TemporaryFile()  # noqa: SIM115 (closed in _reset)
        code = "from sealkit.fidelity.executor.zygote import worker_main; worker_main()"
        self._proc = subprocess.Popen(
            [sys.executable, "-S", "-c", code, str(req_r), str(rep_w),
             str(-1 if self.cpu is None else self.cpu), str(os.getpid())],
            pass_fds=(req_r, rep_w), stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
            stderr=self._stderr, env=env, start_new_session=True, close_fds=True,
        )  # fmt: skip
        os.close(req_r)
        os.close(rep_w)
        self._to, self._from = req_w, rep_r
        self.workers_started += 1
        try:
            hello = recv(self._from, time.monotonic() + 60)
        except TimeoutError:
            hello = None
        if not hello or hello[0] != "ready":
            detail = hello[1] if hello else self._death_note()
            self._kill()
            self._reset()
            raise WorkerDiedError(
                f"kernel worker failed to start: {_last_line(detail)}", str(detail)
            )

    def _death_note(self) -> str:
        proc = self._proc
        note = "no reply"
        if proc is not None:
            import subprocess  # noqa: PLC0415 (controller side only, see the imports)

            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(timeout=2)
            rc = proc.returncode
            if rc is not None and rc < 0:
                note = f"killed by signal {-rc} ({signal.Signals(-rc).name})"
            elif rc is not None:
                note = f"exited with status {rc}"
        if self._stderr is not None:
            self._stderr.seek(0)
            tail = self._stderr.read()[-2000:].decode("utf-8", "replace").strip()
            if tail:
                note += f"; stderr: {tail}"
        return note

    # ----------------------------------------------------------- running

    def refusal(self, op: Op, heap: bool) -> str | None:
        """Why this executor would refuse ``op`` (model frame), or ``None``
        (:func:`~sealkit.fidelity.executor.refusals.refusal`)."""
        return refusal(op, self.window, heap)

    def check(self, ops: Sequence[Op] | Sequence[Step]) -> None:
        """Raise :class:`OutsideArenaError` if :meth:`run` would refuse ``ops``."""
        check_trace(ops, self.window)

    def usage(self) -> Usage:
        """Workers started, runner processes seen, and traces that died so far."""
        return Usage(self.workers_started, len(self.runners), self.deaths)

    def run(
        self, ops: Sequence[Op] | Sequence[Step], *,
        layouts: LayoutMode | set[int] = "every", flags: FlagMode | set[int] = "end",
    ) -> TraceRun:  # fmt: skip
        """Run one trace; see :class:`~sealkit.fidelity.target.TraceRun`. Raises :class:`OutsideArenaError`
        (before anything runs) for a trace that leaves the arena."""
        return next(iter(self.run_many([ops], layouts=layouts, flags=flags)))

    def run_many(
        self, traces: Iterable[Sequence[Op] | Sequence[Step]], *,
        layouts: LayoutMode | set[int] = "every", flags: FlagMode | set[int] = "end",
        depth: int = 2, prechecked: bool = False,
    ) -> Generator[TraceRun, None, None]:  # fmt: skip
        """Run traces in order, keeping up to ``depth`` of them queued in the
        worker (so it never waits for the caller). Yields one
        :class:`~sealkit.fidelity.target.TraceRun` per trace, in order; a worker death is reported in
        the run that caused it and the next trace gets a fresh worker.
        Refusals raise :class:`OutsideArenaError` when the trace is reached.
        ``prechecked``: the caller already ran :func:`refusal` on every call,
        so only the worker's own check (with its real addresses) runs.
        """
        pending: list[tuple[tuple[Op, ...], tuple[Any, ...], bool]] = []
        source = iter(traces)
        exhausted = False
        try:
            while True:
                while not exhausted and len(pending) < max(1, depth):
                    try:
                        trace = next(source)
                    except StopIteration:
                        exhausted = True
                        break
                    plain = tuple(plain_ops(trace))
                    if not prechecked:
                        check_trace(plain, self.window)
                    heap = uses_heap(plain)
                    msg = (
                        "run", list(plain), self.window,
                        observed_steps(len(plain), layouts, plain, "layouts"),
                        observed_steps(len(plain), flags, plain, "flags"), heap,
                    )  # fmt: skip
                    pending.append((plain, msg, False))
                    self._post(pending, len(pending) - 1)
                if not pending:
                    return
                yield self._collect(pending)
        except BaseException as exc:
            if not isinstance(exc, Exception | GeneratorExit):
                # KeyboardInterrupt / SystemExit: the caller is leaving. Waiting
                # for the queued traces could take the whole timeout (a long
                # trace runs on): kill the worker instead.
                self.terminate()
                pending.clear()
            raise
        finally:
            if any(sent for _, _, sent in pending):
                # Abandoned mid-batch (or a refusal): the queued traces' replies
                # would answer the next run. Drop them, or the worker.
                self._drain(sum(1 for _, _, sent in pending if sent))

    def _drain(self, count: int) -> None:
        if self._proc is None:
            return  # closed or killed meanwhile: nothing to drain
        try:
            for _ in range(count):
                if recv(self._from, time.monotonic() + self.timeout) is None:
                    raise TimeoutError
        except (TimeoutError, OSError):
            self._kill()
            self._reset()

    def _post(self, pending: list[tuple[tuple[Op, ...], tuple[Any, ...], bool]], i: int) -> None:
        plain, msg, sent = pending[i]
        if sent:
            return
        if self._proc is None:
            self._start()
        try:
            send(self._to, msg)
        except OSError:
            return  # the worker is gone; _collect finds out and restarts
        pending[i] = (plain, msg, True)

    def _collect(self, pending: list[tuple[tuple[Op, ...], tuple[Any, ...], bool]]) -> TraceRun:
        while True:
            plain, msg, sent = pending[0]
            if not sent:
                self._post(pending, 0)
            started = time.monotonic()
            zones = ("p", "h") if msg[5] else ("p",)
            try:
                reply = recv(self._from, started + self.timeout) if self._proc else None
            except TimeoutError:
                reply = ("timeout",)
            if reply is None or reply[0] == "timeout":
                # The worker itself is gone (or hung): report this trace, start
                # a new worker, and send again what was queued behind it.
                how = (
                    f"no answer within {self.timeout:g}s (worker killed)"
                    if reply
                    else f"the worker died: {self._death_note()}"
                )
                self._kill()
                self._reset()
                self.deaths += 1
                pending.pop(0)
                pending[:] = [(p, m, False) for p, m, _ in pending]
                for k in range(len(pending)):
                    self._post(pending, k)
                return TraceRun(self.name, plain, self.window, zones, died=how)
            kind = reply[0]
            pending.pop(0)
            if kind == "died":
                # A runner died under this trace; the worker forks a new one.
                self.deaths += 1
                return TraceRun(self.name, plain, self.window, zones, died=reply[1])
            if kind == "refused":
                raise reply[1]
            if kind == "fail":
                raise WorkerDiedError(f"kernel executor failure: {_last_line(reply[1])}", reply[1])
            _, results, snaps, flagged, died, pid, base = reply
            self.runners.add(pid)
            layouts = snapshot_layouts(snaps, zones, self.window, self._runs)
            run = TraceRun(
                self.name, plain, self.window, zones, results, layouts, flagged, worker=pid,
                bases=Bases(base, 0), seconds=time.monotonic() - started,
            )  # fmt: skip
            if died is not None:
                run.died_step, run.died = died
                self.deaths += 1
            return run


def _last_line(text: object) -> str:
    """The last non-blank line of a traceback (the exception itself)."""
    lines = [line for line in str(text).splitlines() if line.strip()]
    return lines[-1].strip() if lines else "no detail"

"""``sealkit replay`` against hostile input: special files, numbers no system
call can take, and interrupts that must not leave kernel workers behind."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import psutil
import pytest

from sealkit.fidelity.executor import (
    MAX_FILES,
    MAX_FORKS,
    KernelExecutor,
    OutsideArenaError,
    WorkerDiedError,
    check_trace,
)
from sealkit.fidelity.replay import MAX_REPLAY_CALLS
from sealkit.fidelity.target import Window
from sealkit.ops import MODEL_BASES, Madvise, PkeyMprotect, ProcessMadvise, Prot, parse_trace

from ..conftest import python_env

pytestmark = pytest.mark.kernel

P0 = MODEL_BASES.arena


def _one_line_usage(done: subprocess.CompletedProcess[str], message: str) -> None:
    assert done.returncode == 2, done.stderr
    assert message in done.stderr, done.stderr
    assert len(done.stderr.strip().splitlines()) == 1 and "Traceback" not in done.stderr


def test_special_files_are_refused_at_once(sealkit_cli: Any, tmp_path: Path) -> None:
    # /dev/zero used to be read until memory ran out; a directory or a socket
    # has nothing to read. (A FIFO is read, with a bound: test_replay_units.)
    sock = socket.socket(socket.AF_UNIX)
    sock.bind(str(tmp_path / "sock"))
    try:
        for path, kind in (
            ("/dev/zero", "character device"), (str(tmp_path), "directory"),
            (str(tmp_path / "sock"), "socket"),
        ):  # fmt: skip
            started = time.monotonic()
            done = sealkit_cli("replay", path, "--on", "model:linux", timeout=20)
            _one_line_usage(done, f"is not a regular file or a FIFO (it is a {kind})")
            assert time.monotonic() - started < 10
    finally:
        sock.close()


@pytest.mark.parametrize("on", ["kernel", "model:linux"])
@pytest.mark.parametrize(
    "call",
    [
        "madvise p0 4p 1180591620717411303424",  # 2**70
        f"pkey_mprotect p0 4p rw- {1 << 70}",
        f"process_madvise {1 << 70} p0:4p",
        "mseal p0 4p flags=" + "9" * 5000,  # past int()'s 4300 digits
        "munmap p" + "9" * 5000 + " 4p",
        "munmap p0 4p = " + "9" * 5000,
    ],
    ids=["advice", "pkey", "process_madvise", "flags", "address", "result"],
)
def test_numbers_past_64_bits_are_a_usage_error_on_both_targets(
    sealkit_cli: Any, tmp_path: Path, on: str, call: str
) -> None:
    path = tmp_path / "t.trace"
    path.write_text(f"mmap p0 4p rw- private|anon|fixed\n{call}\n")
    done = sealkit_cli("replay", str(path), "--on", on, timeout=60)
    _one_line_usage(done, f"{path}:2: ")
    assert "does not fit in 64 bits" in done.stderr


def test_the_executor_refuses_ops_built_with_unpassable_numbers() -> None:
    # Ops built in Python skip the parser: the executor refuses them before
    # anything runs (it used to fail inside the worker with a traceback).
    bad = [
        Madvise(P0, 4096, 1 << 70),
        PkeyMprotect(P0, 4096, Prot.READ, -(1 << 63) - 1),
        ProcessMadvise(4, ((P0, 1 << 64),)),
    ]
    for op in bad:
        with pytest.raises(OutsideArenaError, match="does not fit in 64 bits"):
            check_trace([op])
    with KernelExecutor(Window(4, 4)) as kx:
        with pytest.raises(OutsideArenaError, match="advice does not fit in 64 bits") as info:
            kx.run([Madvise(P0, 4096, 1 << 20000)])  # str() of it would raise ValueError
        assert "\n" not in str(info.value)
        assert kx.run([Madvise(P0, 4096, -1)]).results == [-22]  # -1 is a register value
    err = WorkerDiedError("kernel executor failure: X", "Traceback...\nX")
    assert str(err) == "kernel executor failure: X" and err.detail.endswith("X")


# ----------------------------------------------------------- interrupts

LONG_TRACE_CALLS = (
    4_000  # ~10 s of kernel work (replay takes 4096 at most): still running when signalled
)


def _long_trace(tmp_path: Path, fork: bool = False) -> Path:
    path = tmp_path / "long.trace"
    head = "fork\n" if fork else ""  # the rest runs in a child of the runner
    path.write_text(head + "mmap p0 4p rw- private|anon|fixed\n" * LONG_TRACE_CALLS)
    return path


def _start(args: list[str], tree_size: int = 2) -> tuple[subprocess.Popen[str], list[int]]:
    """Start ``sealkit ARGS``; return it and its worker tree's pids once that
    tree has ``tree_size`` processes (the worker, its runner, a forked child)."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "sealkit", *args],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, env=python_env(),
    )  # fmt: skip
    deadline = time.monotonic() + 30
    tree: list[psutil.Process] = []
    while time.monotonic() < deadline:
        try:
            tree = psutil.Process(proc.pid).children(recursive=True)
        except psutil.NoSuchProcess:
            break
        if len(tree) >= tree_size:
            time.sleep(0.3)  # well into the trace
            return proc, [p.pid for p in tree]
        time.sleep(0.05)
    proc.kill()
    pytest.fail(f"no kernel worker appeared: {proc.communicate()[1]}")


def _running(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def _gone_soon(pids: list[int], seconds: float = 5.0) -> list[int]:
    deadline = time.monotonic() + seconds
    alive = pids
    while alive and time.monotonic() < deadline:
        alive = [pid for pid in alive if _running(pid)]
        time.sleep(0.05)
    return alive


def _reap_leftovers(pids: list[int]) -> None:
    for pid in pids:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


def _start_replay(trace: Path, tree_size: int = 2) -> tuple[subprocess.Popen[str], list[int]]:
    return _start(["replay", str(trace), "--on", "kernel"], tree_size)


def test_sigint_stops_a_kernel_replay_at_once(tmp_path: Path) -> None:
    proc, workers = _start_replay(_long_trace(tmp_path))
    try:
        started = time.monotonic()
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=30)
        took = time.monotonic() - started
        assert proc.returncode == 130 and err.strip() == "sealkit: interrupted", err
        assert took < 5, f"interrupt took {took:.1f}s (used to wait out the 60s timeout)"
        assert _gone_soon(workers) == []
    finally:
        proc.kill()
        proc.communicate()
        _reap_leftovers(workers)


@pytest.mark.parametrize(
    ("sig", "fork"), [(signal.SIGTERM, False), (signal.SIGKILL, False), (signal.SIGKILL, True)]
)
def test_no_worker_outlives_a_killed_replay(
    tmp_path: Path, sig: signal.Signals, fork: bool
) -> None:
    proc, workers = _start_replay(_long_trace(tmp_path, fork), 3 if fork else 2)
    try:
        proc.send_signal(sig)
        proc.communicate(timeout=10)
        # The worker runs in its own session; it used to spin on as an orphan.
        assert _gone_soon(workers) == [], "kernel workers outlived sealkit replay"
    finally:
        proc.kill()
        proc.communicate()
        _reap_leftovers(workers)


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGKILL])
def test_no_fuzz_worker_outlives_its_campaign(sig: signal.Signals) -> None:
    proc, workers = _start(["fuzz", "--ops", "100000000", "--no-progress", "--workers", "2"], 4)
    try:
        started = time.monotonic()
        proc.send_signal(sig)
        _, err = proc.communicate(timeout=30)
        if sig == signal.SIGINT:
            assert proc.returncode == 130 and err.strip() == "sealkit: interrupted", err
            assert time.monotonic() - started < 5
        assert _gone_soon(workers) == [], "fuzz workers outlived sealkit fuzz"
    finally:
        proc.kill()
        proc.communicate()
        _reap_leftovers(workers)


# --- traces from elsewhere: stdin, pipes, scenario files --------------------------


def _scenario_trace(name: str) -> str:
    import tomllib
    from importlib import resources

    folder = resources.files("sealkit.fidelity.conformance").joinpath("scenarios")
    for entry in folder.iterdir():
        if entry.name.endswith(".toml"):
            for table in tomllib.loads(entry.read_text()).get("scenario", []):
                if table["name"] == name:
                    return str(table["trace"])
    raise AssertionError(name)


def test_a_scenario_trace_replays_from_stdin_with_its_layout_lines(sealkit_cli: Any) -> None:
    # Layout lines used to be a parse error, and "-" an unreadable file.
    trace = _scenario_trace("selftest/seal_unmapped_middle")
    assert "\n> [" in trace
    done = subprocess.run(
        [sys.executable, "-m", "sealkit", "replay", "-", "--diff"], input=trace,
        capture_output=True, text=True, env=python_env(), timeout=120, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stdout.count("layout as expected") == trace.count("\n>") // 2
    broken = trace.replace("[3,4) r--p,sl", "[3,4) r--p")
    done = subprocess.run(
        [sys.executable, "-m", "sealkit", "replay", "-"], input=broken,
        capture_output=True, text=True, env=python_env(), timeout=120, check=False,
    )  # fmt: skip
    assert done.returncode == 1 and "differs from the '>' lines" in done.stdout


def test_another_designs_sealing_call_is_a_one_line_error(sealkit_cli: Any, tmp_path: Path) -> None:
    path = tmp_path / "v1.trace"
    path.write_text("mmap p0 4p r-- private|anon|fixed\nmseal_v1 p0 4p munmap\nmunmap p0 4p\n")
    for on in ("kernel", "model:linux"):
        done = sealkit_cli("replay", str(path), "--on", on, timeout=60)
        _one_line_usage(done, "mseal_v1 is the sealing call of proposal-v1")
    ok = sealkit_cli("replay", str(path), "--on", "model:proposal-v1", timeout=60)
    assert ok.returncode == 0, ok.stderr


# --- what one trace may cost ------------------------------------------------------


def _executor_refuses(trace: str, step: int, message: str) -> None:
    ops = [s.op for s in parse_trace(trace)]
    with pytest.raises(OutsideArenaError, match=message) as info:
        check_trace(ops)
    assert info.value.step == step
    with KernelExecutor(Window(4, 4)) as kx:
        # The worker checks too: a caller that "prechecked" call by call
        # (the fuzzer) cannot get such a trace past it.
        with pytest.raises(OutsideArenaError, match=message):
            next(iter(kx.run_many([ops], prechecked=True)))
        assert kx.run([ops[0]]).ok  # and it goes on working


def test_forks_per_trace_are_bounded() -> None:
    # Each fork kept a process alive until the trace ended: 10,000 fork
    # lines meant 10,000 processes.
    fits = "fork\n" * MAX_FORKS + "mmap p0 1p rw- private|anon|fixed\n"
    with KernelExecutor(Window(4, 4)) as kx:
        run = kx.run([s.op for s in parse_trace(fits)])
        assert run.ok and run.results[-1] == P0
    _executor_refuses("fork\n" * (MAX_FORKS + 1), MAX_FORKS, f"more than {MAX_FORKS} fork calls")


def test_file_names_per_trace_are_bounded() -> None:
    # Each name made a 256 KiB file and took two descriptors.
    lines = [f"mmap p0 1p r-- private|fixed file=f{k}" for k in range(MAX_FILES + 1)]
    with KernelExecutor(Window(4, 4)) as kx:
        run = kx.run([s.op for s in parse_trace("\n".join(lines[:MAX_FILES]))])
        assert run.ok and run.results == [P0] * MAX_FILES
    _executor_refuses("\n".join(lines), MAX_FILES, f"more than {MAX_FILES} file names")


def test_costly_traces_are_a_one_line_refusal(sealkit_cli: Any, tmp_path: Path) -> None:
    forks = tmp_path / "forks.trace"
    forks.write_text("fork\n" * 1000)
    done = sealkit_cli("replay", str(forks), timeout=60)
    _one_line_usage(done, f"step {MAX_FORKS + 1} (fork): more than {MAX_FORKS} fork calls")
    files = tmp_path / "files.trace"
    files.write_text("".join(f"mmap p0 1p r-- private|fixed file=f{k}\n" for k in range(1000)))
    done = sealkit_cli("replay", str(files), "--diff", timeout=60)
    _one_line_usage(done, f"more than {MAX_FILES} file names")
    calls = tmp_path / "calls.trace"
    calls.write_text("mmap p0 1p rw- private|anon|fixed\n" * (MAX_REPLAY_CALLS + 1))
    for on in ("kernel", "model:linux"):
        done = sealkit_cli("replay", str(calls), "--on", on, timeout=60)
        _one_line_usage(done, f"has {MAX_REPLAY_CALLS + 1} calls; a replay runs at most")

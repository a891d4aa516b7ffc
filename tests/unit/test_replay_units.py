"""Replay helpers that need no kernel: trace files and windows."""

from __future__ import annotations

import errno
import os
import sys
import threading
from pathlib import Path
from typing import Any

import pytest

from sealkit.errors import ArgumentError, ParseError
from sealkit.fidelity import replay as replay_module
from sealkit.fidelity.conformance import parse_checked_trace
from sealkit.fidelity.replay import (
    MAX_REPLAY_CALLS,
    MAX_TRACE_BYTES,
    load_trace,
    replay,
    window_for,
)
from sealkit.ops import parse_trace


def test_load_trace_errors_are_typed(tmp_path: Path) -> None:
    with pytest.raises(ArgumentError, match="cannot read trace file"):
        load_trace(str(tmp_path / "missing.trace"))
    bad = tmp_path / "bad.trace"
    bad.write_text("# hi\nmunmap p0\n")
    with pytest.raises(ParseError) as info:
        load_trace(str(bad))
    assert info.value.line == 2 and info.value.source == str(bad)
    empty = tmp_path / "empty.trace"
    empty.write_text("# nothing\n")
    with pytest.raises(ParseError, match="no calls"):
        load_trace(str(empty))
    binary = tmp_path / "bin.trace"
    binary.write_bytes(b"\xff\xfe\x00")
    with pytest.raises(ArgumentError):
        load_trace(str(binary))


def test_window_grows_to_the_pages_the_trace_names() -> None:
    ops = [s.op for s in parse_trace("mmap p20 4p rw- private|anon|fixed\nbrk h30\n")]
    win = window_for(ops)
    assert (win.pages, win.heap_pages) == (24, 30)
    small = [s.op for s in parse_trace("mseal p0 0xffffffffffffffff\n")]
    assert window_for(small).pages == 16
    huge = [s.op for s in parse_trace("munmap p0 200p\n")]
    assert window_for(huge).pages == 64


def _feed(fifo: Path, data: bytes) -> threading.Thread:
    """A writer thread that writes ``data`` into ``fifo`` (as much as is read)."""

    def write() -> None:
        with open(fifo, "wb") as fh:
            try:
                fh.write(data)
            except BrokenPipeError:  # the reader stopped at its bound
                pass

    thread = threading.Thread(target=write, daemon=True)
    thread.start()
    return thread


def test_a_fifo_is_read_like_a_file_with_the_same_bound(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # `sealkit replay <(generate)` and named pipes used to be refused.
    fifo = tmp_path / "pipe.trace"
    os.mkfifo(fifo)
    writer = _feed(fifo, b"mmap p0 4p rw- private|anon|fixed\nmseal p0 4p = 0\n")
    steps = load_trace(str(fifo))
    writer.join(5)
    assert [s.op.NAME for s in steps] == ["mmap", "mseal"] and steps[1].result == 0
    # A FIFO has no size to check first: the read itself is bounded.
    monkeypatch.setattr(replay_module, "MAX_TRACE_BYTES", 4096)
    writer = _feed(fifo, b"munmap p0 4p\n" * 1000)
    with pytest.raises(ArgumentError, match="larger than"):
        load_trace(str(fifo))
    writer.join(5)
    assert not writer.is_alive()


def test_stdin_is_read_with_the_bound(monkeypatch: pytest.MonkeyPatch) -> None:
    r, w = os.pipe()
    os.write(w, b"munmap p0 4p = EPERM\n")
    os.close(w)
    monkeypatch.setattr(sys, "stdin", os.fdopen(r, "r"))
    try:
        (step,) = load_trace("-")
    finally:
        sys.stdin.close()
    assert step.op.NAME == "munmap" and step.result == -errno.EPERM


def test_special_files_are_refused_before_reading(tmp_path: Path) -> None:
    # /dev/zero used to be read until memory ran out.
    with pytest.raises(ArgumentError, match=r"not a regular file or a FIFO .*character device"):
        load_trace("/dev/zero")
    with pytest.raises(ArgumentError, match=r"not a regular file or a FIFO .*directory"):
        load_trace(str(tmp_path))


SCENARIO_TRACE = """
mmap     p0 4p r-- private|anon|fixed = p0
munmap   p1 2p                        = 0
> [0,1) r--p anon 0
> [3,4) r--p anon 0
mseal    p0 1p
>h (nothing mapped)
"""


def test_layout_lines_are_checks_not_errors() -> None:
    steps, checks = parse_checked_trace(SCENARIO_TRACE, "scenario")
    assert [s.op.NAME for s in steps] == ["mmap", "munmap", "mseal"]
    assert steps[2].result is None  # results stay optional in a replayed trace
    assert [(c.step, c.zone, len(c.layout.runs)) for c in checks] == [(1, "p", 2), (2, "h", 0)]
    rep = replay(list(steps), "model:linux", checks=[checks[0]])
    assert rep.check_diffs == [None] and rep.failed_checks == []
    wrong = parse_checked_trace(SCENARIO_TRACE.replace("[3,4) r--p", "[3,4) rw-p"))[1]
    rep = replay(list(steps), "model:linux", checks=[wrong[0]])
    assert rep.failed_checks == [0]
    assert rep.check_diffs[0] == "- [3,4) rw-p anon 0\n+ [3,4) r--p anon 0"
    assert rep.to_json()["layout_checks"][0]["diff"] == rep.check_diffs[0]
    with pytest.raises(ArgumentError, match="never touches that zone"):
        replay(list(steps), "model:linux", checks=checks)  # '>h' but no heap call
    with pytest.raises(ParseError, match="layout before any call"):
        parse_checked_trace("> [0,1) r--p anon 0\nmunmap p0 1p\n")


@pytest.mark.parametrize(
    ("call", "owner"),
    [
        ("mseal_v1 p0 4p mprotect", "proposal-v1"),
        ("mseal_v3 p0 4p seal", "proposal-v3"),
        ("mimmutable p0 4p", "mimmutable"),
        ("mseal_split p0 4p unmap", "chrome-split"),
    ],
)
def test_another_designs_sealing_call_fails_loudly(call: str, owner: str) -> None:
    # It used to run: the call gave ENOSYS and the replay exited 0.
    steps = parse_trace(f"mmap p0 4p r-- private|anon|fixed\n{call}\nmunmap p0 4p\n")
    with pytest.raises(ArgumentError, match=rf"step 2: .* sealing call of {owner}.*model:linux"):
        replay(steps, "model:linux")
    with pytest.raises(ArgumentError, match="implements linux"):
        replay(steps, "model:linux-6.10")
    rep = replay(steps, f"model:{owner}")  # on its own design it runs
    assert rep.results[1] != -errno.ENOSYS  # (proposal-v3: EACCES, no MAP_SEALABLE)
    with pytest.raises(ArgumentError, match="model:mimmutable implements mimmutable"):
        replay(parse_trace("mmap p0 4p r-- private|anon|fixed\nmseal p0 4p\n"), "model:mimmutable")


def test_a_trace_file_past_the_size_cap_is_refused(tmp_path: Path) -> None:
    big = tmp_path / "big.trace"
    with open(big, "wb") as fh:
        fh.truncate(MAX_TRACE_BYTES + 1)  # sparse: nothing written
    with pytest.raises(ArgumentError, match="larger than"):
        load_trace(str(big))
    fits = tmp_path / "fits.trace"
    fits.write_text("munmap p0 4p\n")
    assert len(load_trace(str(fits))) == 1


def test_a_replay_runs_a_bounded_number_of_calls(tmp_path: Path) -> None:
    # Each replayed call keeps its layouts (kilobytes on the model): a
    # million-call trace used to be read, run and kept whole.
    line = "mprotect p0 1p r--\n"
    path = tmp_path / "long.trace"
    path.write_text("# comment\n> [0,1) r--p\n" + line * (MAX_REPLAY_CALLS + 1) + "munmap p0\n")
    with pytest.raises(
        ArgumentError, match=f"has {MAX_REPLAY_CALLS + 2} calls; a replay runs at most"
    ):
        load_trace(str(path))  # counted before parsing: the bad last line is never reached
    with pytest.raises(ArgumentError, match=f"at most {MAX_REPLAY_CALLS}"):
        replay(parse_trace(line * (MAX_REPLAY_CALLS + 1)), "model:linux")
    path.write_text(line * MAX_REPLAY_CALLS)
    assert len(load_trace(str(path))) == MAX_REPLAY_CALLS


def test_a_result_alone_is_a_one_line_usage_error(sealkit_cli: Any, tmp_path: Path) -> None:
    # "= EPERM" with no call crashed the parser (IndexError, exit 3).
    path = tmp_path / "t.trace"
    path.write_text("mmap p0 1p rw- private|anon|fixed\n= EPERM\n")
    done = sealkit_cli("replay", str(path), "--on", "model:linux", timeout=60)
    assert done.returncode == 2, done.stderr
    assert (
        done.stderr.strip()
        == f"sealkit replay: {path}:2: a result ('= ...') with no call before it"
    )

"""Replay helpers that need no kernel: trace files and windows."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from sealkit.errors import ArgumentError, ParseError
from sealkit.fidelity.replay import MAX_TRACE_BYTES, load_trace, window_for
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


def test_a_fifo_is_refused_without_waiting_for_a_writer(tmp_path: Path) -> None:
    fifo = tmp_path / "pipe.trace"
    os.mkfifo(fifo)
    with pytest.raises(ArgumentError, match=r"not a regular file .*FIFO"):
        load_trace(str(fifo))  # open() used to block here for ever


def test_a_character_device_is_refused_before_reading(tmp_path: Path) -> None:
    # /dev/zero used to be read until memory ran out.
    with pytest.raises(ArgumentError, match=r"not a regular file .*character device"):
        load_trace("/dev/zero")
    with pytest.raises(ArgumentError, match=r"not a regular file .*directory"):
        load_trace(str(tmp_path))


def test_a_trace_file_past_the_size_cap_is_refused(tmp_path: Path) -> None:
    big = tmp_path / "big.trace"
    with open(big, "wb") as fh:
        fh.truncate(MAX_TRACE_BYTES + 1)  # sparse: nothing written
    with pytest.raises(ArgumentError, match="larger than"):
        load_trace(str(big))
    fits = tmp_path / "fits.trace"
    fits.write_text("munmap p0 4p\n")
    assert len(load_trace(str(fits))) == 1

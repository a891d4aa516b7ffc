"""``sealkit._os.files``: a path swapped for a FIFO or device between the check
and the open is never opened; FIFOs are accepted only where asked for."""

from __future__ import annotations

import os
import stat
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from sealkit._os import files
from sealkit._os.files import NotRegularFile, open_input, open_regular


@contextmanager
def _blocked_writer(fifo: Path) -> Iterator[threading.Event]:
    """A thread blocked in ``open(fifo, O_WRONLY)``: the event is set as soon
    as anyone opens the FIFO for reading (the kernel wakes the writer then)."""
    opened = threading.Event()
    keep = fifo.with_name(fifo.name + ".keep")
    os.link(fifo, keep)  # the same FIFO, wherever a test renames it
    tid: list[int] = []

    def write() -> None:
        tid.append(threading.get_native_id())
        fd = os.open(keep, os.O_WRONLY)
        opened.set()
        os.close(fd)

    thread = threading.Thread(target=write, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:  # until the writer sleeps in open(2)
        if tid and "wait_for_partner" in Path(f"/proc/self/task/{tid[0]}/wchan").read_text():
            break
        time.sleep(0.01)
    else:
        pytest.fail("the writer never blocked in open(2)")
    try:
        yield opened
    finally:
        if not opened.is_set():  # release the writer: open the FIFO ourselves
            fd = os.open(keep, os.O_RDONLY | os.O_NONBLOCK)
            opened.wait(5)
            os.close(fd)
        thread.join(5)


def _swap_after_first(
    monkeypatch: pytest.MonkeyPatch, names: tuple[str, ...], swap: Callable[[], None]
) -> None:
    """Run ``swap`` right after the first call to any of ``os.<names>``: the
    moment between a check and the open that follows it."""
    done: list[bool] = []
    for name in names:
        real = getattr(os, name)

        def hooked(*args: Any, _real: Any = real, **kwargs: Any) -> Any:
            result = _real(*args, **kwargs)
            if not done:
                done.append(True)
                swap()
            return result

        monkeypatch.setattr(files.os, name, hooked)


def test_a_swap_to_a_fifo_after_the_check_is_never_opened(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    target = tmp_path / "trace"
    target.write_bytes(b"regular content\n")
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    with _blocked_writer(fifo) as opened:
        # Whatever checks the path (stat before, fstat after an O_PATH open),
        # the path becomes the FIFO right after that first check.
        _swap_after_first(monkeypatch, ("stat", "fstat"), lambda: os.replace(fifo, target))
        try:
            fd, st = open_regular(str(target))
        except NotRegularFile:
            fd = -1
        monkeypatch.undo()
        # Opening the FIFO for reading would have woken the writer at once.
        woke = opened.wait(1.0)
        if fd >= 0:
            try:
                # What was opened is the file that was checked, not the FIFO.
                assert stat.S_ISREG(st.st_mode)
                assert os.read(fd, 100) == b"regular content\n"
            finally:
                os.close(fd)
        assert not woke, "the FIFO swapped in after the check was opened"


def test_special_files_are_refused_without_being_opened(tmp_path: Path) -> None:
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    with _blocked_writer(fifo) as opened:
        with pytest.raises(NotRegularFile, match="a FIFO"):
            open_regular(str(fifo))
        assert not opened.wait(0.5)
    with pytest.raises(NotRegularFile, match="a character device"):
        open_regular("/dev/zero")
    with pytest.raises(NotRegularFile, match="a directory"):
        open_regular(str(tmp_path))
    link = tmp_path / "link"
    link.symlink_to("/dev/null")
    with pytest.raises(NotRegularFile, match="a character device"):
        open_regular(str(link))
    with pytest.raises(FileNotFoundError):
        open_regular(str(tmp_path / "missing"))


def test_regular_files_open_through_links_and_dir_fds(tmp_path: Path) -> None:
    (tmp_path / "real").write_bytes(b"abc")
    (tmp_path / "link").symlink_to("real")
    dir_fd = os.open(tmp_path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        for path, where in (("link", dir_fd), (str(tmp_path / "link"), None)):
            fd, st = open_regular(path, where)
            try:
                assert st.st_size == 3 and os.read(fd, 10) == b"abc"
                assert os.get_inheritable(fd) is False
            finally:
                os.close(fd)
    finally:
        os.close(dir_fd)
    before = len(os.listdir("/proc/self/fd"))
    for _ in range(20):
        with pytest.raises(NotRegularFile):
            open_regular("/dev/null")
    assert len(os.listdir("/proc/self/fd")) == before  # nothing leaks on refusal


def test_open_input_takes_fifos_and_pipes_but_not_devices(tmp_path: Path) -> None:
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)

    def feed() -> None:
        with open(fifo, "wb") as fh:
            fh.write(b"through a fifo")

    thread = threading.Thread(target=feed)
    thread.start()
    fd, st = open_input(str(fifo))
    try:
        assert stat.S_ISFIFO(st.st_mode)
        assert os.read(fd, 100) == b"through a fifo"
    finally:
        os.close(fd)
        thread.join(5)
    r, w = os.pipe()
    os.write(w, b"piped")
    os.close(w)
    try:
        fd, st = open_input(f"/proc/self/fd/{r}")  # what /dev/stdin and <(...) are
        try:
            assert os.read(fd, 10) == b"piped"
        finally:
            os.close(fd)
    finally:
        os.close(r)
    with pytest.raises(NotRegularFile, match="character device"):
        open_input("/dev/zero")

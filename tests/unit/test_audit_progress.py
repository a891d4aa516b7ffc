"""``sealkit audit --progress auto`` when stderr is not a terminal (cron, a pipe,
a file): quiet for a short sweep, a line every 10 s once a sweep runs long,
and a last line saying where it ended. The clock is the test's."""

from __future__ import annotations

import io

import pytest

from sealkit.cli.commands.audit import _Progress


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def progress(monkeypatch: pytest.MonkeyPatch, mode: str) -> tuple[_Progress, Clock, io.StringIO]:
    err = io.StringIO()  # not a terminal
    monkeypatch.setattr("sys.stderr", err)
    clock = Clock()
    monkeypatch.setattr("time.monotonic", clock)
    return _Progress(mode), clock, err


def test_a_short_sweep_says_nothing(monkeypatch: pytest.MonkeyPatch) -> None:
    bar, clock, err = progress(monkeypatch, "auto")
    for done in range(1, 40):
        clock.now += 0.2  # 7.8 s in all
        bar(done, 40)
    bar.close()
    assert err.getvalue() == ""


def test_a_long_sweep_prints_a_line_every_ten_seconds_and_one_at_the_end(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    bar, clock, err = progress(monkeypatch, "auto")
    for done in range(1, 251):
        clock.now += 0.1  # 25 s in all
        bar(done, 300)
    bar.close()
    lines = err.getvalue().splitlines()
    assert lines == [
        "sealkit audit: 100 of 300 processes audited, 10 s",
        "sealkit audit: 200 of 300 processes audited, 20 s",
        "sealkit audit: 250 of 300 processes audited, 25 s",
    ]


def test_always_prints_from_the_first_second(monkeypatch: pytest.MonkeyPatch) -> None:
    bar, clock, err = progress(monkeypatch, "always")
    for done in range(1, 16):
        clock.now += 0.1
        bar(done, 15)
    bar.close()
    assert err.getvalue().splitlines() == [
        "sealkit audit: 10 of 15 processes audited, 1 s",
        "sealkit audit: 15 of 15 processes audited, 2 s",
    ]

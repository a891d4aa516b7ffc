"""One width rule for every command: a pipe or a file gets whole rows (nothing
folded at 80 columns, no name cut), a terminal gets tables that fit it, and
``--width N`` sets the width everywhere."""

from __future__ import annotations

import argparse
import fcntl
import os
import pty
import select
import shutil
import struct
import subprocess
import sys
import termios
from pathlib import Path

import pytest

from sealkit.cli.main import ArgumentParser, build_parser, discover
from sealkit.fidelity.conformance import load_scenarios
from sealkit.fidelity.fuzz import EXCLUDED
from tests.conftest import python_env

LONG_POLICY = "proposal-v1:mprotect+munmap+mmap"


def _sealkit(*args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    env = python_env()
    env.pop("COLUMNS", None)
    return subprocess.run(
        [sys.executable, "-m", "sealkit", *args], input=stdin, capture_output=True, text=True,
        env=env, timeout=300, check=False,
    )  # fmt: skip


def _line_with(text: str, *words: str) -> str:
    """The one line of ``text`` that has all ``words``; fails if none does."""
    lines = [line for line in text.splitlines() if all(w in line for w in words)]
    assert lines, f"no line holds all of {words!r}:\n{text}"
    return lines[0]


def test_check_rows_stay_whole_in_a_pipe() -> None:
    done = _sealkit("check")
    assert done.returncode == 0, done.stderr
    _line_with(done.stdout, "C fast path", "without it", "dynamic loader's lock")
    _line_with(done.stdout, "CONFIG_MSEAL_SYSTEM_MAPPINGS", "(")


def test_conform_names_and_sources_stay_whole_in_a_pipe() -> None:
    scenarios = load_scenarios("selftest/seal_mprotect_unalign*")
    done = _sealkit(
        "conform", "--target", "model:linux", "--scenario", "selftest/seal_mprotect_unalign*"
    )
    assert done.returncode == 0, done.stderr
    for sc in scenarios:
        _line_with(done.stdout, sc.name, sc.source, "pass")


def test_analyze_keeps_long_policy_names_whole() -> None:
    done = _sealkit("analyze", "--policy", LONG_POLICY, "--depth", "0", "--workers", "1")
    assert done.returncode == 0, done.stderr
    _line_with(done.stdout, LONG_POLICY)


def test_analyze_explain_follows_the_width_rule() -> None:
    # --explain printed on a console of its own: folded at 80 columns in a
    # pipe ("other: mimmutable:permi…") and deaf to --width.
    args = ("analyze", "--explain", "mimmutable", "--depth", "0", "--workers", "1")
    done = _sealkit(*args)
    assert done.returncode == 0, done.stderr
    _line_with(done.stdout, "other: mimmutable:permissive-advice")
    _line_with(done.stdout, "M2 How does immutability treat Linux advice", "access?")
    narrow = _sealkit(*args, "--width", "60")
    assert narrow.returncode == 0, narrow.stderr
    assert max(len(line) for line in narrow.stdout.splitlines()) <= 60, narrow.stdout


def test_replay_keeps_each_result_on_its_call_line(tmp_path: Path) -> None:
    trace = tmp_path / "t.trace"
    trace.write_text(
        "mmap p0 4p rw- private|fixed|populate file=f1 off=2p = ENOMEM\n"
        "madvise p0 4p dontneed = EPERM\n"
    )
    done = _sealkit("replay", str(trace), "--on", "model:linux")
    assert done.returncode == 1, done.stderr  # both recorded results differ
    line = _line_with(done.stdout, "file=f1", "= p0", "recorded ENOMEM")
    assert len(line) > 80
    _line_with(done.stdout, "dontneed", "= 0", "recorded EPERM")


def test_fuzz_explain_rows_stay_whole() -> None:
    done = _sealkit("fuzz", "--explain")
    assert done.returncode == 0, done.stderr
    for case, why in EXCLUDED:
        _line_with(done.stdout, case, why)


def test_width_sets_the_width_of_every_table() -> None:
    for args in (["check"], ["fuzz", "--explain"]):
        done = _sealkit(*args, "--width", "60")
        assert done.returncode == 0, done.stderr
        assert max(len(line) for line in done.stdout.splitlines()) <= 60, done.stdout
    wide = _sealkit("fuzz", "--explain", "--width", "0")
    assert wide.stdout == _sealkit("fuzz", "--explain").stdout  # 0: no limit, as in a pipe


def test_every_command_takes_width_and_refuses_a_bad_one() -> None:
    parser = build_parser(discover())
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    for name, command_parser in sub.choices.items():
        assert any("--width" in a.option_strings for a in command_parser._actions), name
    for bad in ("-1", "wide", "70000"):
        done = _sealkit("check", "--width", bad)
        assert done.returncode == 2 and done.stderr.count("\n") == 1, done.stderr
        assert "--width" in done.stderr


def test_a_terminal_gets_tables_that_fit_it(tmp_path: Path) -> None:
    main, child = pty.openpty()
    fcntl.ioctl(child, termios.TIOCSWINSZ, struct.pack("HHHH", 40, 90, 0, 0))
    env = python_env()
    env.pop("COLUMNS", None)
    proc = subprocess.Popen(
        [sys.executable, "-m", "sealkit", "check"], stdin=child, stdout=child, stderr=child,
        env=env, close_fds=True,
    )  # fmt: skip
    os.close(child)
    out = b""
    while True:
        ready, _, _ = select.select([main], [], [], 60)
        if not ready:
            proc.kill()
            pytest.fail("sealkit check on a terminal did not finish")
        try:
            chunk = os.read(main, 65536)
        except OSError:  # EIO: the child side closed
            break
        if not chunk:
            break
        out += chunk
    os.close(main)
    assert proc.wait(30) == 0
    text = out.decode("utf-8", "replace")
    plain = __import__("re").sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", text)
    lines = [line for line in plain.replace("\r", "").splitlines() if line]
    assert lines and max(len(line) for line in lines) <= 90, plain
    assert "C fast path" in plain


@pytest.mark.parametrize("columns", [None, "50", "133", "0", "-3", "wide"])
def test_help_is_as_wide_as_shutil_says(
    monkeypatch: pytest.MonkeyPatch, columns: str | None
) -> None:
    """The parser asks the terminal's width without importing shutil (about
    2 ms of every run); it must get what shutil.get_terminal_size gives."""
    if columns is None:
        monkeypatch.delenv("COLUMNS", raising=False)
    else:
        monkeypatch.setenv("COLUMNS", columns)
    formatter = ArgumentParser(prog="x")._get_formatter()
    assert formatter._width == shutil.get_terminal_size().columns - 2


def test_the_audit_command_line_does_not_import_shutil() -> None:
    code = (
        "import sys\n"
        "from sealkit.cli.main import main\n"
        "main(['audit', '--json', '--pid', str((1 << 22) + 1)])\n"
        "print('shutil' in sys.modules, file=sys.stderr)\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=False, env=python_env()
    )
    assert done.stderr.splitlines()[-1] == "False", done.stderr

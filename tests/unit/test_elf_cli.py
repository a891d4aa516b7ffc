"""``sealkit elf`` as a command (issue 16): error rows on stderr, one line
each; a summary; rows streamed as they are found, with progress on a
terminal; non-ELF files skipped unless ``--require elf``; the documented
example exits 0 on a stock system.
"""

from __future__ import annotations

import argparse
import glob
import io
import json
import os
import pty
import select
import subprocess
import sys
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

import jsonschema
import pytest

import sealkit
from sealkit._os import elf as elf_file
from sealkit.cli.commands import elf as elf_command
from sealkit.host import elf

from .elf_craft import craft, gnu_note

SCHEMA = json.loads(
    (Path(sealkit.__file__).parent / "data" / "elf.schema.json").read_text(encoding="utf-8")
)
Cli = Callable[..., subprocess.CompletedProcess[str]]


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    (tmp_path / "sub").mkdir()
    (tmp_path / "marked").write_bytes(craft(64, True, [gnu_note([(3, b"")], 64, True)]))
    (tmp_path / "sub" / "be32").write_bytes(craft(32, False, [gnu_note([(3, b"")], 32, False)]))
    (tmp_path / "sub" / "cut").write_bytes(craft(64, True, [])[:100])
    (tmp_path / "sub" / "script.sh").write_text("#!/bin/sh\necho hi\n")
    return tmp_path


def test_error_rows_one_line_each_on_stderr(sealkit_cli: Cli, tree: Path) -> None:
    cut, missing = str(tree / "sub" / "cut"), str(tree / "missing")
    done = sealkit_cli("elf", str(tree / "marked"), cut, missing)
    assert done.returncode == 1
    errors = [line for line in done.stderr.splitlines() if line.startswith(f"sealkit elf: {tree}")]
    assert len(errors) == 2
    assert errors[0].startswith(f"sealkit elf: {cut}: truncated")
    assert errors[1] == f"sealkit elf: {missing}: No such file or directory"
    assert cut not in done.stdout and missing not in done.stdout  # not in the table
    assert str(tree / "marked") in done.stdout


def test_summary_counts_per_verdict(sealkit_cli: Cli, tree: Path) -> None:
    done = sealkit_cli("elf", "-r", str(tree))
    last = done.stderr.strip().splitlines()[-1]
    assert last == (
        "sealkit elf: 2 ELF files: memory seal yes 2, no 0, ignored 0, section-only 0; 1 error"
    )
    done = sealkit_cli("elf", "-r", "--json", str(tree))
    doc = json.loads(done.stdout)
    jsonschema.validate(doc, SCHEMA)
    assert doc["summary"] == {
        "elf_files": 2, "errors": 1, "skipped": 0,
        "memory_seal": {"yes": 2, "no": 0, "ignored": 0, "section-only": 0},
    }  # fmt: skip
    assert "ELF files:" not in done.stderr  # the JSON carries it


def test_non_elf_files_are_skipped_unless_required(sealkit_cli: Cli, tree: Path) -> None:
    script, marked = str(tree / "sub" / "script.sh"), str(tree / "marked")
    done = sealkit_cli("elf", marked, script, str(tree / "sub"))
    assert done.returncode == 0, done.stderr
    assert script not in done.stdout
    assert (
        done.stderr.strip()
        .splitlines()[-1]
        .endswith("; 2 skipped (not ELF: --require elf makes them fail)")
    )
    done = sealkit_cli("elf", "--json", marked, script)
    doc = json.loads(done.stdout)
    jsonschema.validate(doc, SCHEMA)
    assert doc["skipped"] == [{"path": script, "reason": "not an ELF file"}]
    assert [f["path"] for f in doc["files"]] == [marked]
    done = sealkit_cli("elf", "--require", "elf", marked, script)
    assert done.returncode == 1
    assert f"sealkit elf: requirement elf not met by 1 of 2 files ({script})" in done.stderr


def test_documented_example_exits_0(sealkit_cli: Cli) -> None:
    """docs/audit.md: ``sealkit elf /usr/bin/* /usr/lib/x86_64-linux-gnu/libc.so.6``
    (the shell's glob, expanded here), on a system whose /usr/bin holds
    shell scripts and a directory symlink (X11) besides ELF files."""
    libc = "/usr/lib/x86_64-linux-gnu/libc.so.6"
    paths = sorted(glob.glob("/usr/bin/*"))
    if not os.path.exists(libc) or not paths:
        pytest.skip("not a Debian-like x86_64 system (no /usr/bin, or no libc.so.6 there)")
    non_elf = [p for p in paths if os.path.isfile(p) and not elf_file.is_elf(p)]
    done = sealkit_cli("elf", *paths, libc)
    assert done.returncode == 0, done.stderr[-2000:]
    if non_elf:
        assert "skipped" in done.stderr.splitlines()[-1]
        assert non_elf[0] not in done.stdout


def test_rows_stream_as_they_are_found(
    monkeypatch: pytest.MonkeyPatch, tree: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Each row is written before the next file is even looked for."""
    files = [str(tree / "marked"), str(tree / "sub" / "be32"), str(tree / "marked")]
    seen: list[str] = []

    def walk(paths: Sequence[str], recursive: bool, **_: object) -> Iterator[tuple[str, bool]]:
        for index, path in enumerate(files):
            if index:
                seen.append(capsys.readouterr().out)
                assert files[index - 1] in seen[-1], (index, seen)
            yield path, False

    monkeypatch.setattr(elf, "iter_paths", walk)
    for as_json in (False, True):
        seen.clear()
        args = argparse.Namespace(
            paths=[str(tree)], recursive=True, json=as_json, require=[], width=None, output=None,
            progress="never",
        )  # fmt: skip
        assert elf_command.run(args) == 0
        rest = capsys.readouterr().out
        if as_json:
            doc = json.loads("".join(seen) + rest)
            assert [f["path"] for f in doc["files"]] == files


def test_progress_on_a_terminal(tree: Path) -> None:
    """With stderr on a terminal, a progress line (rewritten in place) while
    a tree is walked; it is erased at the end, before the summary. (The
    300-file tree is read in well under ``auto``'s half second: ``always``.)"""
    for i in range(300):
        (tree / f"f{i}.txt").write_text("x")
    primary, secondary = pty.openpty()
    env = dict(os.environ, PYTHONPATH=str(Path(sealkit.__file__).parents[1]))
    proc = subprocess.Popen(
        [sys.executable, "-m", "sealkit", "elf", "-r", "--progress", "always", str(tree)],
        stdout=subprocess.PIPE, stderr=secondary, env=env,
    )  # fmt: skip
    os.close(secondary)
    seen = b""
    while True:
        ready, _, _ = select.select([primary], [], [], 30)
        if not ready:
            break
        try:
            chunk = os.read(primary, 4096)
        except OSError:  # EIO: the child closed the terminal
            break
        if not chunk:
            break
        seen += chunk
    out, _ = proc.communicate(timeout=30)
    os.close(primary)
    text = seen.decode()
    assert "\r" in text and "paths examined" in text, text
    assert (
        text.rstrip()
        .splitlines()[-1]
        .split("\r")[-1]
        .lstrip("\x1b[K")
        .startswith("sealkit elf: 2 ELF files")
    )
    assert b"marked" in out


def test_unmet_requirement_and_io(monkeypatch: pytest.MonkeyPatch, tree: Path) -> None:
    """The command's own run, in-process: the exit code for an unmet
    requirement; stdout holds only the table."""
    out, err = io.StringIO(), io.StringIO()
    monkeypatch.setattr(sys, "stdout", out)
    monkeypatch.setattr(sys, "stderr", err)
    args = argparse.Namespace(
        paths=[str(tree / "marked")], recursive=False, json=False, require=["full-relro"],
        width=None, output=None, progress="auto",
    )  # fmt: skip
    assert elf_command.run(args) == 1
    assert "requirement full-relro not met by 1 of 1 files" in err.getvalue()
    assert "sealkit elf:" not in out.getvalue()


class _Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_progress_in_a_log_follows_the_audit_rule() -> None:
    """stderr to a file or a pipe (cron, CI): nothing in the first 10 s, then
    a plain line every 10 s, and one with the totals at the end; a short run
    prints none, ``never`` none at all, ``always`` one a second."""
    clock = _Clock()

    def run(mode: str, steps: list[float]) -> list[str]:
        out = io.StringIO()
        progress = elf_command.Progress(out, mode, clock=clock)
        for step in steps:
            clock.now += step
            progress.walked += 1
            progress.update()
        progress.close()
        assert "\r" not in out.getvalue()
        return out.getvalue().splitlines()

    assert run("auto", [0.5] * 19) == []  # 9.5 s
    lines = run("auto", [0.5] * 50)  # 25 s
    assert lines == [
        "sealkit elf: 20 paths examined, 0 ELF files, 0 errors, 10 s",
        "sealkit elf: 40 paths examined, 0 ELF files, 0 errors, 20 s",
        "sealkit elf: 50 paths examined, 0 ELF files, 0 errors, 25 s",
    ]
    assert run("never", [0.5] * 50) == []
    assert len(run("always", [0.5] * 10)) == 6  # at 1, 2, 3, 4, 5 s and the end


def test_progress_on_a_terminal_waits_half_a_second() -> None:
    class Terminal(io.StringIO):
        def isatty(self) -> bool:
            return True

    clock = _Clock()
    out = Terminal()
    progress = elf_command.Progress(out, "auto", clock=clock)
    progress.update()
    assert out.getvalue() == ""  # a quick run never draws
    clock.now += 0.6
    progress.files = 3
    progress.update()
    assert out.getvalue().startswith("\r\x1b[Ksealkit elf: 0 paths examined, 3 ELF files")
    progress.close()
    assert out.getvalue().endswith("\r\x1b[K") and "\n" not in out.getvalue()


def test_progress_in_a_log_from_the_command(monkeypatch: pytest.MonkeyPatch, tree: Path) -> None:
    """The command's own run with stderr to a file and a clock that moves
    11 s per path: progress lines on stderr, interleaved with nothing on stdout."""
    clock = _Clock()

    def tick() -> float:
        clock.now += 11
        return clock.now

    out, err = io.StringIO(), io.StringIO()
    monkeypatch.setattr(sys, "stdout", out)
    monkeypatch.setattr(sys, "stderr", err)
    monkeypatch.setattr(elf_command, "CLOCK", tick)
    args = argparse.Namespace(
        paths=[str(tree)], recursive=True, json=False, require=[], width=None, output=None,
        progress="auto",
    )  # fmt: skip
    assert elf_command.run(args) == 1  # the cut file
    lines = err.getvalue().splitlines()
    progress = [line for line in lines if "paths examined" in line]
    assert progress and progress[-1].startswith(
        "sealkit elf: 4 paths examined, 2 ELF files, 1 errors"
    )
    assert "paths examined" not in out.getvalue()
    assert lines[-1].startswith("sealkit elf: 2 ELF files: memory seal")


def test_nothing_found_is_not_a_pass(sealkit_cli: Cli, tree: Path) -> None:
    """A directory named without -r, or only scripts: no requirement can hold
    on an empty set. The directory gets a hint; the exit code is 1."""
    sub, script = str(tree / "sub"), str(tree / "sub" / "script.sh")
    done = sealkit_cli("elf", "--require", "canary", sub)
    assert done.returncode == 1
    assert done.stderr.splitlines() == [
        f"sealkit elf: {sub}: a directory (use -r to walk it)",
        "sealkit elf: no ELF file found (1 skipped: not ELF)",
    ]
    assert done.stdout == ""  # no header, no note for an empty table
    done = sealkit_cli("elf", script)
    assert done.returncode == 1
    assert done.stderr.splitlines() == ["sealkit elf: no ELF file found (1 skipped: not ELF)"]
    done = sealkit_cli("elf", "-r", "--require", "canary", sub)  # with -r: rows, and the error
    assert str(tree / "sub" / "be32") in done.stdout

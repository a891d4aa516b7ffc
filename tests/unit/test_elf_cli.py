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
            paths=[str(tree)], recursive=True, json=as_json, require=[], width=None, output=None
        )
        assert elf_command.run(args) == 0
        rest = capsys.readouterr().out
        if as_json:
            doc = json.loads("".join(seen) + rest)
            assert [f["path"] for f in doc["files"]] == files


def test_progress_on_a_terminal(tree: Path) -> None:
    """With stderr on a terminal, a progress line (rewritten in place) while
    a tree is walked; it is erased at the end, before the summary."""
    for i in range(300):
        (tree / f"f{i}.txt").write_text("x")
    primary, secondary = pty.openpty()
    env = dict(os.environ, PYTHONPATH=str(Path(sealkit.__file__).parents[1]),
               SEALKIT_PROGRESS_INTERVAL="0")  # fmt: skip
    proc = subprocess.Popen(
        [sys.executable, "-m", "sealkit", "elf", "-r", str(tree)],
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
    assert "\r" in text and "walked" in text, text
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
        width=None, output=None,
    )  # fmt: skip
    assert elf_command.run(args) == 1
    assert "requirement full-relro not met by 1 of 1 files" in err.getvalue()
    assert "sealkit elf:" not in out.getvalue()

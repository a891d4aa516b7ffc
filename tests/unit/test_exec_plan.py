"""``sealkit exec``'s Python side without the kernel: the command line split,
the environment it adds, ``--report`` targets, program detection on crafted
files, and reading reports."""

from __future__ import annotations

import json
import os
import struct
from pathlib import Path

import pytest

from sealkit.cli.commands.exec import split_args
from sealkit.errors import ArgumentError, ParseError
from sealkit.sealing.exec import (
    ExecRefused,
    ReportObject,
    check_against_smaps,
    environment,
    inspect_program,
    read_exec_report,
    report_target,
    resolve_program,
)

LIB = "/opt/sk/lib/libsealexec.so"


@pytest.mark.parametrize(
    ("words", "own", "program"),
    [
        (["--", "nginx", "-g", "x"], [], ["nginx", "-g", "x"]),
        (["--level", "all", "nginx", "--level"], ["--level", "all"], ["nginx", "--level"]),
        (["--rep", "r.json", "--no-inherit", "ls"], ["--rep", "r.json", "--no-inherit"], ["ls"]),
        (["--report=r.json", "ls", "--", "x"], ["--report=r.json"], ["ls", "--", "x"]),
        (["--print-env"], ["--print-env"], []),
        (["--marked-only", "--", "--weird-name"], ["--marked-only"], ["--weird-name"]),
    ],
)
def test_split_args_gives_the_program_everything_after_its_name(words, own, program) -> None:
    assert split_args(words) == (own, program)


def test_environment_appends_the_library_once_and_keeps_the_users_entries() -> None:
    base = {
        "PATH": "/bin",
        "LD_PRELOAD": "/usr/lib/libasan.so.8 " + LIB,
        "LD_AUDIT": "",
        "SEALKIT_EXEC_REPORT": "/stale",
    }
    env = environment(LIB, level="all", inherit=False, report="fd:7", base=base)
    assert env == {
        "PATH": "/bin",
        "LD_PRELOAD": f"/usr/lib/libasan.so.8:{LIB}",  # the sanitizer stays first
        "LD_AUDIT": LIB,
        "SEALKIT_EXEC_LIB": LIB,
        "SEALKIT_EXEC_LEVEL": "all",
        "SEALKIT_EXEC_INHERIT": "0",
        "SEALKIT_EXEC_REPORT": "fd:7",
    }
    assert base["SEALKIT_EXEC_REPORT"] == "/stale"  # the caller's mapping is not touched
    only = environment(LIB, marked_only=True, require=True)
    assert only == {
        "LD_AUDIT": LIB,
        "LD_PRELOAD": LIB,
        "SEALKIT_EXEC_LIB": LIB,
        "SEALKIT_EXEC_LEVEL": "code",
        "SEALKIT_EXEC_MARKED_ONLY": "1",
        "SEALKIT_EXEC_REQUIRE": "1",
    }


def test_environment_refuses_what_the_loader_cannot_express() -> None:
    with pytest.raises(ArgumentError, match="level must be one of code, all"):
        environment(LIB, level="most")
    for bad in ("/opt/my lib/libsealexec.so", "/a:b/libsealexec.so", "libsealexec.so"):
        with pytest.raises(ExecRefused) as info:
            environment(bad)
        assert info.value.status == 2 and "\n" not in str(info.value)


def test_a_report_this_user_cannot_write_is_refused_before_the_exec(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The README's `--report /tmp/sealkit-exec.jsonl`, run by a second user
    # after a first one: the library could not replace the other user's file
    # in the sticky /tmp, said nothing, and exec exited 0 without a report.
    shared = tmp_path / "shared"
    shared.mkdir()
    shared.chmod(0o1777)
    theirs = shared / "sealkit-exec.jsonl"
    theirs.write_text("")
    if os.geteuid() == 0:
        os.chown(theirs, 4242, 4242)
        os.chown(shared, 0, 0)
    monkeypatch.setattr(os, "geteuid", lambda: 65534)  # a user who owns neither
    with pytest.raises(ExecRefused, match=r"belongs to another user .* sticky") as info:
        report_target(str(theirs))
    assert info.value.status == 2 and "\n" not in str(info.value)
    # What another user's library would not write is still fine to print
    # for a service manager (--print-env), and a %p name is always new.
    assert report_target(str(theirs), check_fd=False) == str(theirs)
    assert report_target(str(shared / "r-%p.jsonl")) == str(shared / "r-%p.jsonl")
    monkeypatch.setattr(os, "access", lambda *a, **k: False)
    with pytest.raises(ExecRefused, match="is not writable"):
        report_target(str(tmp_path / "r.jsonl"))


def test_report_targets(tmp_path: Path) -> None:
    for fd in (0, 1, 2):
        with pytest.raises(
            ExecRefused, match="never goes to the program's stdin, stdout or stderr"
        ):
            report_target(f"fd:{fd}")
    with pytest.raises(ExecRefused, match="not a file descriptor number"):
        report_target("fd:x")
    assert report_target("fd:987", check_fd=False) == "fd:987"
    with pytest.raises(ExecRefused, match="fd:987: not an open file descriptor"):
        report_target("fd:987")
    with pytest.raises(ExecRefused, match="does not exist"):
        report_target(str(tmp_path / "nope" / "r.jsonl"))
    with pytest.raises(ExecRefused, match="longer than 480 bytes"):
        report_target(str(tmp_path / ("x" * 500)))
    rel = os.path.relpath(tmp_path / "r-%p.jsonl")
    assert report_target(rel) == str(tmp_path / "r-%p.jsonl")


def test_resolve_program_as_execvp(tmp_path: Path) -> None:
    (tmp_path / "bin").mkdir()
    tool = tmp_path / "bin" / "tool"
    tool.write_text("#!/bin/sh\n")
    tool.chmod(0o755)
    (tmp_path / "bin" / "data").write_text("x")
    env = {"PATH": f"{tmp_path / 'empty'}:{tmp_path / 'bin'}"}
    assert resolve_program("tool", env) == str(tool)
    with pytest.raises(ExecRefused) as info:
        resolve_program("nothing-here", env)
    assert (info.value.status, str(info.value)) == (
        127,
        "sealkit exec: nothing-here: command not found",
    )
    with pytest.raises(ExecRefused) as info:
        resolve_program("data", env)
    assert info.value.status == 126 and "permission denied" in str(info.value)
    with pytest.raises(ExecRefused) as info:
        resolve_program("", env)
    assert info.value.status == 127


def _elf(path: Path, interp: bytes | None, elfclass: int = 64, machine: int | None = None) -> str:
    """A minimal ELF executable: header, program headers (PT_INTERP if
    ``interp``), nothing else."""
    machine = machine if machine is not None else {"x86_64": 62, "aarch64": 183}[os.uname().machine]
    wide = elfclass == 64
    ehsize, phentsize = (64, 56) if wide else (52, 32)
    phnum = 1 if interp else 0
    ident = b"\x7fELF" + bytes([2 if wide else 1, 1, 1]) + bytes(9)
    if wide:
        head = ident + struct.pack("<HHIQQQIHHHHHH", 2, machine, 1, 0, ehsize, 0, 0, ehsize,
                                   phentsize, phnum, 64, 0, 0)  # fmt: skip
    else:
        head = ident + struct.pack("<HHIIIIIHHHHHH", 2, machine, 1, 0, ehsize, 0, 0, ehsize,
                                   phentsize, phnum, 40, 0, 0)  # fmt: skip
    body = b""
    if interp:
        at = ehsize + phentsize
        if wide:
            body = struct.pack("<IIQQQQQQ", 3, 4, at, 0, 0, len(interp) + 1, len(interp) + 1, 1)
        else:
            body = struct.pack("<IIIIIIII", 3, at, 0, 0, len(interp) + 1, len(interp) + 1, 4, 1)
        body += interp + b"\0"
    path.write_bytes(head + body)
    path.chmod(0o755)
    return str(path)


def test_programs_that_cannot_be_sealed_are_named_in_one_line(tmp_path: Path) -> None:
    cases = {
        "glibc": (_elf(tmp_path / "g", b"/lib64/ld-linux-x86-64.so.2"), "dynamically linked"),
        "static": (_elf(tmp_path / "s", None), "statically linked: no dynamic loader runs"),
        "musl": (_elf(tmp_path / "m", b"/lib/ld-musl-x86_64.so.1"), "no rtld-audit interface"),
        "foreign": (_elf(tmp_path / "f", b"/system/bin/linker64"), "is not glibc's"),
        "class": (_elf(tmp_path / "c", b"/lib/ld-linux.so.2", elfclass=32, machine=3),
                  "a 32-bit i386 program"),
    }  # fmt: skip
    for kind, (path, words) in cases.items():
        program = inspect_program(path)
        assert (program.kind, program.sealable) == (kind, kind == "glibc"), path
        assert words in program.detail and "\n" not in program.detail
        assert program.detail.startswith(f"{path}: ")


def test_scripts_are_judged_by_their_interpreter_followed_as_the_kernel_does(
    tmp_path: Path,
) -> None:
    static = _elf(tmp_path / "interp", None)
    script = tmp_path / "script"
    script.write_text(f"#!{static} -x\nexit 0\n")
    program = inspect_program(str(script))
    assert program.kind == "static" and program.runs == static
    assert program.detail == (
        f"{script} (a script run by {static}): statically linked: no dynamic loader runs, "
        "so nothing loads libsealexec"
    )
    # five levels of #!: more than the kernel follows (BINPRM_MAX_RECURSION 4)
    previous = static
    for level in range(5):
        nested = tmp_path / f"nest{level}"
        nested.write_text(f"#!{previous}\n")
        previous = str(nested)
    assert inspect_program(previous).kind == "noexec"
    empty = tmp_path / "empty"
    empty.write_text("#!\n")
    assert inspect_program(str(empty)).detail == f"{empty}: empty #! line"
    text = tmp_path / "text"
    text.write_text("hello\n")
    assert inspect_program(str(text)).kind == "noexec"
    with pytest.raises(ExecRefused) as info:
        inspect_program(str(tmp_path))
    assert info.value.status == 126 and "a directory" in str(info.value)


def _line(pid: int, seq: int, objects: list[dict[str, object]]) -> dict[str, object]:
    return {"schema": "sealkit.exec/1", "pid": pid, "seq": seq, "event": "load",
            "level": "code", "marked_only": False, "page_size": 4096, "work_us": 1,
            "objects": objects, "omitted_objects": 0, "untracked_objects": 0,
            "dropped_lines": 0}  # fmt: skip


def _obj(
    base: int, sealed: list[tuple[int, int]], pending: list[tuple[int, int]] | None = None
) -> dict[str, object]:
    return {
        "path": "/lib/x.so", "name": "/lib/x.so", "base": base, "namespace": 0,
        "loaded_by": "dlopen", "dlopen_mode": 4098, "marked": False, "sealing": True,
        "policy": "p",
        "sealed": [{"start": s, "end": e, "kind": "text", "perms": "r-x", "phase": "consistent"}
                   for s, e in sealed],
        "skipped": [],
        "pending": [{"start": s, "end": e, "kind": "relro"} for s, e in pending or []],
    }  # fmt: skip


def test_read_report_keeps_each_objects_last_mention_per_process() -> None:
    lines = [
        _line(10, 0, [_obj(0x1000, [(0x1000, 0x2000)], [(0x3000, 0x4000)])]),
        _line(11, 0, [_obj(0x1000, [])]),
        _line(10, 1, [_obj(0x1000, [(0x1000, 0x2000), (0x3000, 0x4000)])]),
    ]
    data = "\n".join(json.dumps(x) for x in lines).encode() + b"\n\n"
    report = read_exec_report(data)
    assert sorted(report) == [10, 11]
    (latest,) = report[10].values()
    assert latest.pending == () and [r[:2] for r in latest.sealed] == [
        (0x1000, 0x2000),
        (0x3000, 0x4000),
    ]
    assert report[11][(0, 0x1000)].sealed == ()


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (b"{not json\n", "report:1: not JSON"),
        (b'{"schema": "other"}\n', "report:1: not a sealkit.exec/1 record"),
        (b'\n{"schema": "sealkit.exec/1", "pid": 1}\n', "report:2: malformed record"),
    ],
)
def test_read_report_says_which_line_is_wrong(text: bytes, message: str) -> None:
    with pytest.raises(ParseError) as info:
        read_exec_report(text)
    assert str(info.value).startswith(message)


def _report_object(sealed: list[tuple[int, int]], skipped: list[tuple[int, int]]) -> ReportObject:
    return ReportObject(
        1, "/lib/x.so", 0x10000, 0, "initial", True, "p", None,
        tuple((s, e, "text", "r-x", "startup") for s, e in sealed),
        tuple((s, e, "data", "why") for s, e in skipped), (),
    )  # fmt: skip


def test_check_against_smaps_finds_disagreements_both_ways() -> None:
    obj = _report_object([(0x10000, 0x12000), (0x12000, 0x13000)], [(0x13000, 0x15000)])
    agree = [(0x10000, 0x11000, "/lib/x.so"), (0x11000, 0x13000, "/lib/x.so")]
    other = [(0x50000, 0x51000, "/lib/other.so"), (0x60000, 0x61000, "")]
    assert check_against_smaps([obj], agree + other) == []
    assert check_against_smaps([obj], agree[:1]) == [
        "reported sealed but not sealed in smaps: 0x10000-0x13000"
    ]
    # anonymous pages inside the object's span (its .bss) count as its own
    extra = [(0x14000, 0x15000, "")]
    assert check_against_smaps([obj], agree + extra) == [
        "sealed in smaps but not in the report: 0x14000-0x15000"
    ]

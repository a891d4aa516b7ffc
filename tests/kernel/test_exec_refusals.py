"""Every way `sealkit exec` refuses or warns, each checked against what the
loader actually does with such a program."""

from __future__ import annotations

import json
import os
import shutil
import subprocess

import pytest

from sealkit.sealing import exec as sealexec
from tests.exec_support import SRC, C, plain_env, sealkit_argv, sealkit_env

pytestmark = pytest.mark.kernel


def cc(*args: str) -> bool:
    return subprocess.run(["cc", *args], capture_output=True, check=False).returncode == 0


@pytest.fixture(scope="module")
def programs(tmp_path_factory, exec_lib):
    d = tmp_path_factory.mktemp("refusals")
    simple = str(C / "simple.c")
    assert cc("-O2", "-o", str(d / "dynamic"), simple)
    assert cc(
        "-O2", "-o", str(d / "muslish"), simple, "-Wl,--dynamic-linker=/lib/ld-musl-x86_64.so.1"
    )
    assert cc(
        "-O2", "-o", str(d / "bionicish"), simple, "-Wl,--dynamic-linker=/system/bin/linker64"
    )
    script = d / "script.sh"
    script.write_text("#!/bin/sh\necho script $#\n")
    script.chmod(0o755)
    text = d / "text"
    text.write_text("hello\n")
    text.chmod(0o755)
    return d


@pytest.fixture(scope="module")
def static_programs(programs):
    simple = str(C / "simple.c")
    if not cc("-O2", "-static", "-o", str(programs / "static"), simple):
        pytest.skip("no static libc (libc6-dev's libc.a) to build a static program")
    # a Go binary, as far as detection goes: static, with Go's build-id note
    note = programs / "buildid"
    note.write_bytes(b"\x04\x00\x00\x00\x08\x00\x00\x00\x04\x00\x00\x00Go\x00\x00abcdefgh")
    objcopy = ["objcopy", "--add-section", f".note.go.buildid={note}"]
    subprocess.run([*objcopy, str(programs / "static"), str(programs / "gostatic")], check=True)
    return programs


def test_static_program_is_refused_with_require_and_run_unsealed_without(
    static_programs, sealkit_exec
):
    p = str(static_programs / "static")
    done = sealkit_exec("exec", "--require", "sealed", "--", p, env=plain_env())
    assert done.returncode == 1 and done.stdout == ""
    assert done.stderr == (
        f"sealkit exec: {p}: statically linked: no dynamic loader runs, so nothing loads "
        "libsealexec (--require sealed)\n"
    )
    done = sealkit_exec("exec", "--", p, "a", env=plain_env())
    assert done.returncode == 0 and done.stdout == "simple 2\n"
    assert done.stderr.count("\n") == 1 and done.stderr.startswith("sealkit exec: warning: ")
    assert done.stderr.endswith(": running it unsealed\n")


def test_go_static_binary_is_named_as_such(static_programs, sealkit_exec):
    prog = sealexec.inspect_program(str(static_programs / "gostatic"))
    assert prog.kind == "static" and prog.go
    assert "a Go program, statically linked" in prog.detail
    done = sealkit_exec("exec", "--require", "sealed", "--", prog.path)
    assert done.returncode == 1 and "a Go program, statically linked" in done.stderr


def test_musl_and_other_loaders_are_refused(programs, sealkit_exec):
    for name, words in (("muslish", "uses the musl loader /lib/ld-musl-x86_64.so.1, which has no rtld-audit interface"),
                        ("bionicish", "its loader /system/bin/linker64 is not glibc's")):  # fmt: skip
        p = str(programs / name)
        done = sealkit_exec("exec", "--require", "sealed", "--", p, env=plain_env())
        assert (done.returncode, done.stderr) == (
            1,
            f"sealkit exec: {p}: {words} (--require sealed)\n",
        )


def test_setuid_program_detected_and_the_loader_really_ignores_the_library(
    programs, sealkit_exec, exec_lib, tmp_path
):
    if os.getuid() != 0:
        pytest.skip("needs root to make a set-user-ID program of another owner")
    d = tmp_path / "suid"
    d.mkdir()
    d.chmod(0o755)
    tmp_path.chmod(0o755)
    p = d / "suid"
    shutil.copy(programs / "dynamic", p)
    os.chown(p, 65534, 65534)
    p.chmod(0o4755)
    if os.statvfs(p).f_flag & os.ST_NOSUID:
        pytest.skip("the test directory is on a nosuid mount")
    done = sealkit_exec("exec", "--require", "sealed", "--", str(p), env=plain_env())
    assert done.returncode == 1
    assert (
        "set-user-ID: the loader runs it in secure mode and ignores LD_AUDIT and LD_PRELOAD paths"
        in done.stderr
    )
    # what the loader does when asked anyway: runs it, without the library
    report = tmp_path / "r.jsonl"
    env = sealexec.environment(str(exec_lib), report=str(report), base=plain_env())
    ran = subprocess.run([p], env=env, capture_output=True, text=True, check=False)
    assert ran.returncode == 0 and ran.stdout == "simple 1\n"
    assert not report.exists()


def test_a_script_is_judged_by_its_interpreter_and_sealed(programs, sealkit_exec, tmp_path):
    report = tmp_path / "r.jsonl"
    done = sealkit_exec(
        "exec", "--report", str(report), "--", str(programs / "script.sh"), "x", env=plain_env()
    )
    assert done.returncode == 0 and done.stdout == "script 1\n" and done.stderr == ""
    (objs,) = sealexec.read_exec_report(report).values()
    shell = os.path.realpath("/bin/sh")
    assert any(o.path == shell and o.sealed for o in objs.values())


def test_not_found_and_not_executable(programs, sealkit_exec):
    done = sealkit_exec("exec", "--", "no-such-program-sealkit", env=plain_env())
    assert (done.returncode, done.stderr) == (
        127,
        "sealkit exec: no-such-program-sealkit: command not found\n",
    )
    c = str(C / "simple.c")
    done = sealkit_exec("exec", "--", c, env=plain_env())
    assert done.returncode == 126 and done.stderr.startswith(
        f"sealkit exec: {c}: permission denied"
    )
    done = sealkit_exec(
        "exec", "--require", "sealed", "--", str(programs / "text"), env=plain_env()
    )
    assert done.returncode == 1 and "not an ELF executable nor a #! script" in done.stderr


def test_report_never_goes_to_stdout_or_stderr(programs, sealkit_exec):
    for fd in ("0", "1", "2"):
        done = sealkit_exec(
            "exec", "--report", f"fd:{fd}", "--", str(programs / "dynamic"), env=plain_env()
        )
        assert done.returncode == 2
        assert (
            done.stderr
            == f"sealkit exec: --report fd:{fd}: the report never goes to the program's stdin, stdout or stderr\n"
        )
    done = sealkit_exec(
        "exec", "--report", "fd:97", "--", str(programs / "dynamic"), env=plain_env()
    )
    assert (done.returncode, done.stderr) == (
        2,
        "sealkit exec: --report fd:97: not an open file descriptor\n",
    )
    done = sealkit_exec(
        "exec", "--report", "/nonexistent-dir/r", "--", str(programs / "dynamic"), env=plain_env()
    )
    assert done.returncode == 2 and "directory /nonexistent-dir does not exist" in done.stderr


def test_no_library_built_is_one_line_and_exit_2(programs, sealkit_exec, tmp_path):
    # a copy of the package's source without libsealexec.so, as after an
    # install on a machine without a C compiler
    src = tmp_path / "src"
    shutil.copytree(SRC, src, ignore=shutil.ignore_patterns("libsealexec.so", "__pycache__"))
    env = plain_env(PYTHONPATH=str(src))
    expected = (
        "sealkit exec: libsealexec.so was not built when sealkit was installed (no C compiler "
        "then): install gcc and reinstall sealkit\n"
    )
    for words in (("--", str(programs / "dynamic")), ("--print-env",)):
        done = sealkit_exec("exec", *words, env=env)
        assert (done.returncode, done.stdout, done.stderr) == (2, "", expected)
    # sealkit check says so too, and --require exec fails with one line
    check = subprocess.run(sealkit_argv("check", "--json", "--require", "exec"),
                           capture_output=True, text=True, env=env, check=False)  # fmt: skip
    assert check.returncode == 1
    assert json.loads(check.stdout)["exec_library"] is None
    assert check.stderr == (
        "sealkit check: requirement 'exec' not met: libsealexec.so not built (no C compiler at "
        "install time): sealkit exec is unavailable\n"
    )
    table = subprocess.run(sealkit_argv("check"), capture_output=True, text=True,
                           env={**env, "COLUMNS": "200"}, check=False)  # fmt: skip
    (row,) = [line for line in table.stdout.splitlines() if "sealkit exec library" in line]
    assert " absent " in row and "not built (no C compiler at install time)" in row


def test_usage_errors_are_one_line(sealkit_exec):
    done = sealkit_exec("exec", env=plain_env())
    assert (done.returncode, done.stderr) == (2, "sealkit exec: give the program to run after --\n")
    done = sealkit_exec("exec", "--level", "most", "--", "true", env=plain_env())
    assert done.returncode == 2 and done.stderr.count("\n") == 1 and "invalid choice" in done.stderr


def test_print_env_is_what_exec_adds(exec_lib, sealkit_exec):
    done = sealkit_exec("exec", "--print-env", "--level", "all", "--no-inherit", env=plain_env())
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == [
        f"LD_AUDIT={exec_lib}",
        f"LD_PRELOAD={exec_lib}",
        "SEALKIT_EXEC_INHERIT=0",
        "SEALKIT_EXEC_LEVEL=all",
        f"SEALKIT_EXEC_LIB={exec_lib}",
    ]


def test_mseal_denied_by_seccomp(fx, exec_lib, sealkit_exec, tmp_path):
    # the wrapper itself runs under the filter: it refuses before the exec
    nomseal = str(fx.root / "nomseal")
    ran = subprocess.run(
        [nomseal, *sealkit_argv("exec", "--require", "sealed", "--", str(fx.probe), "nss")],
        capture_output=True, text=True, env=sealkit_env(), check=False,
    )  # fmt: skip
    assert (ran.returncode, ran.stdout) == (1, "")
    assert ran.stderr == (
        f"sealkit exec: {fx.probe}: mseal(2) is not available here (Operation not permitted) (--require sealed)\n"
    )
    # without --require: a warning, and the program runs unsealed
    ran = subprocess.run([nomseal, *sealkit_argv("exec", "--", str(fx.probe), "nss")],
                         capture_output=True, text=True, env=sealkit_env(), check=False)  # fmt: skip
    assert (ran.returncode, ran.stdout) == (0, "nss: root uid=0\n")
    assert ran.stderr.startswith("sealkit exec: warning: ") and ran.stderr.count("\n") == 1
    # the variables set by hand (a unit using --print-env): the library stops
    # the program at start-up, before its constructors, with one line. (nomseal
    # is sealed too, before it installs the filter; then it executes the probe
    # in the same PID: the probe's image rewrites the %p file.)
    env = sealexec.environment(
        str(exec_lib), require=True, report=str(tmp_path / "r-%p.jsonl"), base=plain_env()
    )
    ran = subprocess.run(
        [nomseal, str(fx.probe), "nss"], capture_output=True, text=True, env=env, check=False
    )
    assert (ran.returncode, ran.stdout) == (127, "")
    assert ran.stderr == (
        "sealkit exec: cannot seal this program: mseal(2) is not available here (--require sealed)\n"
    )
    (report,) = tmp_path.glob("r-*.jsonl")
    (line,) = [json.loads(x) for x in report.read_text().splitlines()]
    assert (line["event"], line["mseal_errno"]) == ("refused", 1)
    # and without require it runs, reporting why nothing is sealed
    d = tmp_path / "plain"
    d.mkdir()
    env = sealexec.environment(str(exec_lib), report=str(d / "r-%p.jsonl"), base=plain_env())
    ran = subprocess.run(
        [nomseal, str(fx.probe), "nss"], capture_output=True, text=True, env=env, check=False
    )
    assert (ran.returncode, ran.stdout) == (0, "nss: root uid=0\n")
    (report,) = d.glob("r-*.jsonl")  # the probe's image rewrote nomseal's (same PID)
    (objs,) = sealexec.read_exec_report(report).values()
    probe = [o for o in objs.values() if o.path == str(fx.probe)]
    assert probe and probe[0].sealed == ()
    assert probe[0].not_sealed == "mseal(2) refused (EPERM: a seccomp filter?)"

"""Children inherit sealing through the environment (or not, --no-inherit),
and attacks from inside a sealed process fail with EPERM while it runs on."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from sealkit.sealing import exec as sealexec
from tests.exec_support import plain_env, sealkit_argv, sealkit_env

pytestmark = pytest.mark.kernel


def test_the_program_runs_in_sealkits_pid_with_its_argv_and_environment(exec_lib, tmp_path):
    # exec, not spawn: the PID the caller started is the program's; argv[0] as
    # given (not the resolved path); the environment is the caller's plus
    # exactly what --print-env prints
    script = 'echo "$$"; cat /proc/$$/cmdline > "$OUT.argv"; cat /proc/$$/environ > "$OUT.env"'
    env = sealkit_env(plain_env(OUT=str(tmp_path / "o"), KEEP_ME="a b=c"))
    proc = subprocess.Popen(
        sealkit_argv("exec", "--", "sh", "-c", script, "name"),
        env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, err
    assert out == f"{proc.pid}\n"
    assert (tmp_path / "o.argv").read_bytes().split(b"\0")[:-1] == [
        b"sh", b"-c", script.encode(), b"name",
    ]  # fmt: skip
    got = dict(x.split("=", 1) for x in (tmp_path / "o.env").read_text().split("\0")[:-1])
    printed = subprocess.run(
        sealkit_argv("exec", "--print-env"), env=env, capture_output=True, text=True, check=True
    ).stdout
    added = dict(line.split("=", 1) for line in printed.splitlines())
    assert got == {**env, **added}
    assert set(added) == {"LD_AUDIT", "LD_PRELOAD", "SEALKIT_EXEC_LEVEL", "SEALKIT_EXEC_LIB"}


def test_a_child_program_is_sealed_too(fx, sealkit_exec, tmp_path):
    report = tmp_path / "r-%p.jsonl"
    done = sealkit_exec(
        "exec", "--report", str(report), "--",
        str(fx.probe), "spawn", str(fx.probe), "sealed", "libc.so", env=plain_env(),
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert done.stdout == "sealed libc.so: text=sl readonly=sl\nspawn: exit 0\n"
    # %p: one report per process, the child's under its own PID
    files = sorted(tmp_path.glob("r-*.jsonl"))
    assert len(files) == 2
    pids = {pid for f in files for pid in sealexec.read_exec_report(f)}
    assert len(pids) == 2


def test_no_inherit_stops_at_the_first_exec_and_the_report_still_works(fx, sealkit_exec, tmp_path):
    report = tmp_path / "r.jsonl"
    done = sealkit_exec(
        "exec", "--no-inherit", "--report", str(report), "--",
        str(fx.probe), "sealed", "libc.so", "spawn", str(fx.probe), "sealed", "libc.so",
        env=plain_env(LD_PRELOAD="", KEEP_ME="1"),
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == [
        "sealed libc.so: text=sl readonly=sl",
        "sealed libc.so: text=no readonly=no",
        "spawn: exit 0",
    ]
    (_pid,) = sealexec.read_exec_report(report)  # the first process reported, the child did not
    env = sealkit_exec("exec", "--no-inherit", "--", str(fx.probe), "spawn", "/usr/bin/env",
                       env=plain_env(LD_PRELOAD=str(fx.root / "libctorcheck.so"), KEEP_ME="1"))  # fmt: skip
    lines = env.stdout.splitlines()
    assert "KEEP_ME=1" in lines
    # our entries are gone; the user's own preload stays
    assert f"LD_PRELOAD={fx.root / 'libctorcheck.so'}" in lines
    assert not any(x.startswith(("SEALKIT_", "LD_AUDIT=")) for x in lines), lines


def test_inherited_fd_report_lines_carry_each_process_pid(fx, sealkit_exec, tmp_path):
    path = tmp_path / "r.jsonl"
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    try:
        done = sealkit_exec(
            "exec", "--report", f"fd:{fd}", "--", str(fx.probe), "spawn", str(fx.probe), "nss",
            env=plain_env(), pass_fds=(fd,),
        )  # fmt: skip
    finally:
        os.close(fd)
    assert done.returncode == 0, done.stderr
    assert done.stdout == "nss: root uid=0\nspawn: exit 0\n"
    assert len(sealexec.read_exec_report(path)) == 2


ATTACKS = ["mprotect-libc-text", "munmap-exe", "mmap-fixed-relro"]


def test_attacks_succeed_in_an_unsealed_process(fx, tmp_path):
    # the control: the same library, in a child of an unsealed probe
    out = tmp_path / "attack.txt"
    done = subprocess.run(
        [fx.probe, "attack-child", str(fx.root / "libattack.so")],
        env=plain_env(ATTACK_OUT=str(out)), capture_output=True, text=True,
    check=False)  # fmt: skip
    assert done.returncode == 0
    assert out.read_text().splitlines() == [f"{a}=ok" for a in ATTACKS]


def test_attacks_from_a_preloaded_library_fail_with_eperm_and_the_program_runs_on(
    fx, sealkit_exec, tmp_path
):
    # preloaded into the program only (not into sealkit's own Python): a
    # sealed shell adds it in front of the inherited preload and execs the probe
    out = tmp_path / "attack.txt"
    script = 'LD_PRELOAD="$ATTACK_LIB:$LD_PRELOAD" exec "$PROBE" nss cancel'
    done = sealkit_exec(
        "exec", "--", "/bin/sh", "-c", script,
        env=plain_env(ATTACK_LIB=str(fx.root / "libattack.so"), PROBE=str(fx.probe), ATTACK_OUT=str(out)),
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert done.stdout == "nss: root uid=0\ncancel: canceled\n"
    assert out.read_text().splitlines() == [f"{a}=EPERM" for a in ATTACKS]


def test_attacks_from_a_dlopened_library_fail_with_eperm(fx, sealkit_exec, tmp_path):
    out = tmp_path / "attack.txt"
    lib = str(fx.root / "libattack.so")
    done = sealkit_exec("exec", "--", str(fx.probe), "dlopen", lib, "now", "iconv",
                        env=plain_env(ATTACK_OUT=str(out)))  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert done.stdout == f"dlopen {lib} now: ok\niconv: Hello\n"
    assert out.read_text().splitlines() == [f"{a}=EPERM" for a in ATTACKS]


def test_report_file_is_private(fx, sealkit_exec, tmp_path):
    # addresses are what ASLR hides: the report is created 0600
    report = tmp_path / "r.jsonl"
    done = sealkit_exec("exec", "--report", str(report), "--", str(fx.probe), env=plain_env())
    assert done.returncode == 0
    assert Path(report).stat().st_mode & 0o777 == 0o600
    assert not list(tmp_path.glob("*.tmp-sealkit"))

"""When the loader-side library seals, proved on this machine's glibc.

The heart of issue 11: objects are sealed after relocation and RELRO, before
any constructor; sealing RELRO any earlier breaks the loader. These tests
observe it from inside real processes (a constructor reading its own smaps;
a deliberately wrong auditor that the loader then fails on).
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from sealkit.sealing import exec as sealexec
from tests.exec_support import plain_env

pytestmark = pytest.mark.kernel


def test_a_dependency_constructor_finds_its_text_and_relro_already_sealed(
    fx, sealkit_exec, tmp_path
):
    # libctorcheck.so is a DT_NEEDED dependency of ctormain: its constructor
    # runs from _dl_init, after the start-up sweep at la_activity(CONSISTENT).
    out = tmp_path / "ctor.txt"
    done = sealkit_exec("exec", "--", str(fx.ctormain), env=plain_env(CTORCHECK_OUT=str(out)))
    assert done.returncode == 0, done.stderr
    assert done.stdout == "value=42\n"
    assert out.read_text() == "libctorcheck.so text=sealed relro=sealed\n"


def test_unsealed_the_same_constructor_sees_nothing_sealed(fx, tmp_path):
    out = tmp_path / "ctor.txt"
    done = subprocess.run(
        [fx.ctormain],
        env=plain_env(CTORCHECK_OUT=str(out)),
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0 and done.stdout == "value=42\n"
    # RELRO is read-only (the loader protected it) but not sealed
    assert out.read_text() == "libctorcheck.so text=unsealed relro=unsealed\n"


def test_la_preinit_runs_after_the_constructors_so_it_is_too_late(fx, tmp_path):
    # glibc 2.36 csu/libc-start.c calls _dl_audit_preinit after call_init:
    # every constructor (the libraries' and the executable's) has run by then,
    # whereas the first la_activity(LA_ACT_CONSISTENT) comes before any.
    out = tmp_path / "order.txt"
    done = subprocess.run(
        [fx.ctormain],
        env=plain_env(CTORCHECK_OUT=str(out), LD_AUDIT=str(fx.root / "preinit_audit.so")),
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert out.read_text().splitlines() == [
        "consistent ctor-ran=no",
        "libctorcheck.so text=unsealed relro=unsealed",
        "preinit ctor-ran=yes",
    ]


def test_sealing_relro_before_relocation_breaks_start_up(fx):
    # The wrong auditor seals libctorcheck's RELRO at la_objopen, while it is
    # still writable: _dl_protect_relro's mprotect(PROT_READ) then fails and
    # the loader refuses to start the program.
    done = subprocess.run(
        [fx.ctormain],
        env=plain_env(
            LD_AUDIT=str(fx.root / "wrongaudit.so"),
            WRONG_AUDIT_WHEN="objopen",
            WRONG_AUDIT_ONLY="libctorcheck",
        ),
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode != 0
    assert "cannot apply additional memory protection after relocation" in done.stderr
    assert done.stdout == ""


def test_at_start_up_la_activity_consistent_is_after_relro(fx):
    # The same wrong auditor, sealing at the first la_activity(CONSISTENT):
    # at start-up that is after relocation and RELRO, so the program runs.
    done = subprocess.run(
        [fx.ctormain],
        env=plain_env(
            LD_AUDIT=str(fx.root / "wrongaudit.so"),
            WRONG_AUDIT_WHEN="consistent",
            WRONG_AUDIT_ONLY="libctorcheck",
        ),
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout == "value=42\n"


def test_for_dlopen_la_activity_consistent_comes_before_relocation_before_glibc_2_41(
    fx, glibc_version
):
    # glibc < 2.41 signals LA_ACT_CONSISTENT in dl_open_worker_begin before
    # relocating (fixed by commit 43db5e2c06, bug 31986): sealing RELRO there
    # makes dlopen fail. This is why the product waits for RELRO to be
    # read-only instead of trusting the callback.
    done = subprocess.run(
        [fx.probe, "dlopen-fail", str(fx.root / "libctorcheck.so")],
        env=plain_env(
            LD_AUDIT=str(fx.root / "wrongaudit.so"),
            WRONG_AUDIT_WHEN="consistent",
            WRONG_AUDIT_ONLY="libctorcheck",
        ),
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    if glibc_version < (2, 41):
        assert done.stdout == (
            "dlopen-fail: cannot apply additional memory protection after relocation: "
            "Operation not permitted\n"
        )
    else:
        assert done.stdout == "dlopen-fail: loaded\n"


def test_a_dlopened_object_is_sealed_before_dlopen_returns(
    fx, sealkit_exec, tmp_path, glibc_version
):
    out, report = tmp_path / "ctor.txt", tmp_path / "report.jsonl"
    done = sealkit_exec(
        "exec", "--report", str(report), "--",
        str(fx.probe), "dlopen", str(fx.root / "libctorcheck.so"), "now-nodelete", "sealed", "libctorcheck",
        env=plain_env(CTORCHECK_OUT=str(out)),
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    # right after dlopen returned, text and read-only data are sealed
    assert done.stdout.splitlines() == [
        f"dlopen {fx.root / 'libctorcheck.so'} now-nodelete: ok",
        "sealed libctorcheck: text=sl readonly=sl",
    ]
    (obj,) = [
        o
        for o in sealexec.read_exec_report(report)[done_pid(report)].values()
        if o.path.endswith("libctorcheck.so")
    ]
    phases = {kind: phase for _, _, kind, _, phase in obj.sealed}
    assert phases["text"] == "consistent"
    if glibc_version < (2, 41):
        # its constructor ran after relocation: text sealed, RELRO read-only but
        # not yet sealed; the dlopen() wrapper sealed it before returning
        assert out.read_text() == "libctorcheck.so text=sealed relro=unsealed\n"
        assert phases["relro"] == "dlopen-return"
    else:
        assert out.read_text() == "libctorcheck.so text=sealed relro=sealed\n"
        assert phases["relro"] == "consistent"


def done_pid(report: Path) -> int:
    (pid,) = sealexec.read_exec_report(report)
    return pid


def test_preload_alone_seals_only_after_earlier_constructors(fx, exec_lib, tmp_path):
    # The candidate design "LD_PRELOAD constructor": glibc runs the
    # constructors of dependencies first (_dl_init walks l_initfini in reverse
    # dependency order), so libctorcheck's runs before the preloaded library's
    # and sees nothing sealed; the sweep then happens, labelled as such.
    out, report = tmp_path / "ctor.txt", tmp_path / "r.jsonl"
    done = subprocess.run(
        [fx.ctormain],
        env=plain_env(
            LD_PRELOAD=str(exec_lib), SEALKIT_EXEC_REPORT=str(report), CTORCHECK_OUT=str(out)
        ),
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0 and done.stdout == "value=42\n", done.stderr
    assert out.read_text() == "libctorcheck.so text=unsealed relro=unsealed\n"
    (objs,) = sealexec.read_exec_report(report).values()
    (dep,) = [o for o in objs.values() if o.path.endswith("libctorcheck.so")]
    assert dep.sealed and {phase for *_, phase in dep.sealed} == {"preload-constructor"}


@pytest.mark.parametrize(
    ("step", "obj", "expected"),
    [("nss", "libnss_compat", "nss: root uid=0"), ("cancel", "libgcc_s", "cancel: canceled")],
)
def test_la_symbind_gives_no_moment_after_relro_for_libcs_own_loads(
    fx, tmp_path, step, obj, expected
):
    # The candidate "la_symbind64" for the RELRO of what libc loads by itself
    # (glibc < 2.41 relocates after that batch's la_activity(CONSISTENT)):
    # libc loads NSS modules and libgcc_s with RTLD_NOW (__libc_dlopen), so
    # every binding the object makes is done during its relocation, before
    # _dl_protect_relro; libc then finds their functions with __libc_dlsym,
    # which the loader does not audit. After RELRO turns read-only only other
    # objects' lazy PLT bindings come (libc's first call into ld.so, the
    # program's own next new function): what they are depends on what ran
    # before, so they cannot be the moment to seal.
    out = tmp_path / "binds.txt"
    done = subprocess.run(
        [fx.probe, step],
        env=plain_env(
            LD_AUDIT=str(fx.root / "symbind_audit.so"),
            SYMBIND_AUDIT_ONLY=obj,
            SYMBIND_AUDIT_OUT=str(out),
        ),
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout == expected + "\n"
    lines = out.read_text().splitlines()
    own = [line for line in lines if line.startswith("bind ")]
    later = [line.split() for line in lines if line.startswith("later ")]
    assert len(own) >= 10  # the module's own GLOB_DAT/JUMP_SLOT relocations
    assert all(line.endswith(" reloc relro=writable") for line in own), own
    assert not [w for w in later if obj in w[1] or w[3] != "lazy"], later

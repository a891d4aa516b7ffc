"""``sealkit run`` on a mixed fleet: where mseal is blocked (a seccomp filter
returning EPERM, or ENOSYS as an old kernel does) the failure says why and
points at ``sealkit check``; ``--if-supported`` runs unsealed with one
warning; and the program is named after itself, not ``sealkit``."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from tests.conftest import python_env

pytestmark = pytest.mark.kernel

GCC = shutil.which("gcc") or shutil.which("cc")

# Runs argv[2:] under a seccomp filter that fails mseal (462 on every 64-bit
# architecture sealkit supports) with errno argv[1]: what a container profile
# written before mseal existed does (EPERM), or what a kernel without mseal
# answers (ENOSYS).
NOSEAL_C = r"""
#include <errno.h>
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <stddef.h>
#include <stdlib.h>
#include <sys/prctl.h>
#include <unistd.h>
int main(int argc, char **argv) {
    if (argc < 3) return 125;
    unsigned err = (unsigned)atoi(argv[1]);
    struct sock_filter filter[] = {
        BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, nr)),
        BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, 462, 0, 1),
        BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ERRNO | (err & SECCOMP_RET_DATA)),
        BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW),
    };
    struct sock_fprog prog = {sizeof filter / sizeof filter[0], filter};
    if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) || prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, &prog))
        return 126;
    execv(argv[2], argv + 2);
    return 127;
}
"""


@pytest.fixture(scope="module")
def noseal(tmp_path_factory: pytest.TempPathFactory) -> str:
    if GCC is None:
        pytest.skip("a C compiler builds the seccomp wrapper that blocks mseal")
    folder = tmp_path_factory.mktemp("noseal")
    (folder / "noseal.c").write_text(NOSEAL_C)
    exe = folder / "noseal"
    subprocess.run([GCC, "-O1", "-o", str(exe), str(folder / "noseal.c")], check=True)
    return str(exe)


def _blocked(noseal: str, errno_: int, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [noseal, str(errno_), sys.executable, "-m", "sealkit", *args],
        capture_output=True, text=True, env=python_env(), timeout=120, check=False,
    )  # fmt: skip


@pytest.mark.parametrize(("errno_", "name"), [(1, "EPERM"), (38, "ENOSYS")])
def test_blocked_mseal_points_to_check_and_if_supported_runs_unsealed(
    noseal: str, errno_: int, name: str
) -> None:
    program = "import sealkit; print('ran', sealkit.support().available)"
    refused = _blocked(noseal, errno_, "run", "-c", program)
    assert refused.returncode == 1, refused.stderr
    assert refused.stdout == ""  # the program never started
    lines = refused.stderr.splitlines()
    assert len(lines) == 1, refused.stderr
    assert name in lines[0] and "seccomp" in lines[0]
    assert "sealkit check" in lines[0] and "--if-supported" in lines[0]
    assert "Traceback" not in refused.stderr

    check = _blocked(noseal, errno_, "check", "--json")
    assert check.returncode == 0, check.stderr
    explained = json.loads(check.stdout)
    assert explained["mseal_available"] is False
    assert explained["mseal_reason"] in lines[0]  # the same explanation, word for word

    unsealed = _blocked(noseal, errno_, "run", "--if-supported", "-c", program)
    assert (unsealed.returncode, unsealed.stdout) == (0, "ran False\n"), unsealed.stderr
    (warning,) = unsealed.stderr.splitlines()
    assert warning.startswith("sealkit run: warning: running unsealed") and name in warning

    reported = _blocked(noseal, errno_, "run", "--if-supported", "--report=json", "-c", "pass")
    assert reported.returncode == 0, reported.stderr
    warning, doc_line = reported.stderr.splitlines()
    doc = json.loads(doc_line)
    assert doc["hardened"] is False and doc["report"] is None and name in doc["unsupported"]


def test_supported_if_supported_hardens_silently(sealkit_cli: object, tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "sealkit", "run", "--if-supported", "-c",
         "import sealkit; r = sealkit.harden(); print(r.newly_sealed_bytes == 0)"],
        capture_output=True, text=True, env=python_env(), timeout=120, check=False,
    )  # fmt: skip
    assert (done.returncode, done.stdout, done.stderr) == (0, "True\n", "")  # already hardened


APP = textwrap.dedent(
    """
    import json, sys
    with open("/proc/self/comm") as fh:
        comm = fh.read().rstrip("\\n")
    with open("/proc/self/cmdline", "rb") as fh:
        cmdline = [w.decode() for w in fh.read().split(b"\\0")[:-1]]
    print(json.dumps({"comm": comm, "cmdline": cmdline}), flush=True)
    sys.stdin.read()
    """
)


@pytest.mark.parametrize(
    ("selector", "comm"),
    [
        (["my-service.py", "--port", "8080"], "my-service.py"),
        (["-m", "svcpkg.server", "--port", "8080"], "svcpkg.server"),
        (["-c", APP, "--port", "8080"], None),
    ],
    ids=["script", "module", "code"],
)
def test_the_process_is_named_after_its_program(
    tmp_path: Path, selector: list[str], comm: str | None
) -> None:
    (tmp_path / "my-service.py").write_text(APP)
    (tmp_path / "svcpkg").mkdir()
    (tmp_path / "svcpkg" / "__init__.py").write_text("")
    (tmp_path / "svcpkg" / "server.py").write_text(APP)
    # What pip installs: a script named sealkit (the kernel names the process
    # after it: "sealkit" in every row of ps, audit and Prometheus).
    script = tmp_path / "sealkit"
    script.write_text(f"#!{sys.executable}\nfrom sealkit.cli.main import entry\nentry()\n")
    script.chmod(0o755)
    proc = subprocess.Popen(
        [str(script), "run", *selector],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        env=python_env(), cwd=tmp_path,
    )  # fmt: skip
    try:
        assert proc.stdout is not None
        seen = json.loads(proc.stdout.readline())
        # -c: named as python itself would be (the interpreter's file name)
        expected = comm or os.path.basename(sys.executable)
        assert seen["comm"] == expected[:15]
        with open(f"/proc/{proc.pid}/comm") as fh:
            assert fh.read().rstrip("\n") == expected[:15]
        # cmdline is what was run: the interpreter, sealkit run, then the program's words
        assert seen["cmdline"][-2:] == ["--port", "8080"] and "run" in seen["cmdline"]
        audit = subprocess.run(
            [sys.executable, "-m", "sealkit", "audit", "--pid", str(proc.pid), "--json"],
            capture_output=True, text=True, env=python_env(), timeout=120, check=False,
        )  # fmt: skip
        assert audit.returncode == 0, audit.stderr
        (row,) = json.loads(audit.stdout)["processes"]
        assert row["command"] == expected[:15] and row["sealed_mappings"] > 0
        metrics = subprocess.run(
            [sys.executable, "-m", "sealkit", "audit", "--pid", str(proc.pid),
             "--format", "prometheus"],
            capture_output=True, text=True, env=python_env(), timeout=120, check=False,
        )  # fmt: skip
        assert f'command="{expected[:15]}"' in metrics.stdout
        assert 'command="sealkit"' not in metrics.stdout
    finally:
        proc.communicate("", timeout=60)
    assert proc.returncode == 0

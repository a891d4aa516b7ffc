"""The install step: ``libsealexec.so`` is built into the wheel and into the
source tree of an editable install when there is a C compiler; without one
the install still succeeds, and neither ``sealkit exec`` nor ``sealkit
check`` hides it (one line, exit 2; the check's line says "not built").

Each test builds a copy of this checkout with pip, as a user would (build
isolation: setuptools comes from the index, as on a fresh machine).
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from tests.exec_support import ROOT, plain_env

pytestmark = pytest.mark.slow

NO_LIBRARY = (
    "sealkit exec: libsealexec.so was not built when sealkit was installed (no C compiler "
    "then): install gcc and reinstall sealkit\n"
)


def project(tmp_path: Path) -> Path:
    """A copy of the checkout: what is tracked, without built files."""
    proj = tmp_path / "proj"
    ignore = shutil.ignore_patterns(
        "*.so", "__pycache__", "*.egg-info", ".venv", ".git", "build", "dist", ".*cache"
    )
    shutil.copytree(ROOT / "src", proj / "src", ignore=ignore)
    for name in ("pyproject.toml", "README.md", "setup.py"):
        shutil.copy(ROOT / name, proj / name)
    return proj


def pip(*words: str, **env: str) -> str:
    done = subprocess.run(
        [sys.executable, "-m", "pip", *words],
        capture_output=True, text=True, env=plain_env(**env), timeout=600, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    return done.stdout + done.stderr


def wheel(proj: Path, out: Path, **env: str) -> tuple[Path, str]:
    log = pip("wheel", "--no-deps", "-v", "-w", str(out), str(proj), **env)
    (whl,) = out.glob("sealkit-*.whl")
    return whl, log


def sealkit_from(target: Path, *words: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "sealkit", *words],
        capture_output=True, text=True, env=plain_env(PYTHONPATH=str(target)), timeout=120,
        check=False,
    )  # fmt: skip


def test_the_wheel_carries_the_library_and_sealkit_exec_uses_it(tmp_path, exec_lib):
    whl, _ = wheel(project(tmp_path), tmp_path / "dist")
    names = zipfile.ZipFile(whl).namelist()
    assert "sealkit/_os/libsealexec.so" in names
    assert "sealkit/_os/_sealexec.c" in names
    target = tmp_path / "site"
    pip("install", "-q", "--no-deps", "--target", str(target), str(whl))
    installed = target / "sealkit" / "_os" / "libsealexec.so"
    env = sealkit_from(target, "exec", "--print-env")
    assert env.returncode == 0, env.stderr
    assert f"LD_AUDIT={installed}" in env.stdout.splitlines()
    run = sealkit_from(
        target, "exec", "--require", "sealed", "--", "/bin/sh", "-c", 'echo "$LD_AUDIT"'
    )
    assert (run.returncode, run.stdout, run.stderr) == (0, f"{installed}\n", "")
    check = sealkit_from(target, "check", "--require", "exec")
    assert check.returncode == 0, check.stderr


def test_an_editable_install_builds_the_library_into_the_source_tree(tmp_path, exec_lib):
    proj = project(tmp_path)
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=120)
    python = venv / "bin" / "python"
    done = subprocess.run(
        [str(python), "-m", "pip", "install", "-q", "--no-deps", "-e", str(proj)],
        capture_output=True, text=True, env=plain_env(), timeout=600, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-2000:]
    built = proj / "src" / "sealkit" / "_os" / "libsealexec.so"
    assert built.is_file()
    # the venv has no dependencies installed: `sealkit exec` needs none
    run = subprocess.run(
        [str(python), "-m", "sealkit", "exec", "--", "/bin/sh", "-c", 'echo "$LD_PRELOAD"'],
        capture_output=True, text=True, env=plain_env(), timeout=120, check=False,
    )  # fmt: skip
    assert (run.returncode, run.stdout, run.stderr) == (0, f"{built}\n", "")


def test_without_a_compiler_the_install_succeeds_and_exec_says_so(tmp_path):
    # CC=false: setuptools' compiler fails (the optional _fastsys too), and
    # the library's build reports why; pip still produces a working wheel
    whl, log = wheel(project(tmp_path), tmp_path / "dist", CC="false")
    assert "libsealexec.so not built" in log
    assert not any(n.endswith(".so") for n in zipfile.ZipFile(whl).namelist())
    target = tmp_path / "site"
    pip("install", "-q", "--no-deps", "--target", str(target), str(whl))
    for words in (("exec", "--", "/bin/true"), ("exec", "--print-env")):
        done = sealkit_from(target, *words)
        assert (done.returncode, done.stdout, done.stderr) == (2, "", NO_LIBRARY)
    check = sealkit_from(target, "check", "--json")
    assert check.returncode == 0, check.stderr
    report = json.loads(check.stdout)
    assert report["exec_library"] is None
    assert report["exec_library_detail"].startswith("not built (no C compiler at install time)")


def test_the_library_compiles_for_aarch64(tmp_path):
    # its aarch64 paths (system calls, the dlopen trampoline with its BTI
    # landing pad) are written from the architecture's documents and compiled
    # here; running them needs an aarch64 machine
    cc = shutil.which("aarch64-linux-gnu-gcc")
    loader = Path("/usr/aarch64-linux-gnu/lib/ld-linux-aarch64.so.1")
    if cc is None or not loader.exists():
        pytest.skip("no aarch64 cross compiler (gcc-aarch64-linux-gnu, libc6-dev-arm64-cross)")
    from sealkit._os import sealexec

    out = tmp_path / "libsealexec.so"
    flags = (*sealexec.CFLAGS, *sealexec.ARCH_FLAGS["aarch64"], "-Werror")
    done = subprocess.run(
        [cc, *flags, "-o", str(out), sealexec.SOURCE, "-Wl,--no-as-needed", str(loader)],
        capture_output=True, text=True, timeout=300, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    dynsyms = subprocess.run(
        ["aarch64-linux-gnu-nm", "-D", "--defined-only", str(out)], capture_output=True,
        text=True, check=True,
    ).stdout  # fmt: skip
    exported = sorted(f[-1] for f in map(str.split, dynsyms.splitlines()) if f[-2].isupper())
    assert exported == [
        "dlmopen", "dlopen", "la_activity", "la_objclose", "la_objopen", "la_preinit",
        "la_version", "sealkit_exec_bridge",
    ]  # fmt: skip

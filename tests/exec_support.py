"""Fixtures for the ``sealkit exec`` tests (a pytest plugin of tests/conftest.py).

* ``exec_lib``: ``libsealexec.so`` built from the current source into the
  source tree, where an editable install puts it and where ``sealkit exec``
  looks for it; skips, saying why, when the kernel lacks mseal or there is
  no C compiler.
* ``fx``: the C test programs and libraries of ``tests/data/exec``, built
  once per session.
* ``sealkit_exec(*words, env=...)``: the ``sealkit`` command line in a fresh
  interpreter with this checkout's sealkit (``subprocess.run`` keywords pass
  through); ``env`` defaults to :func:`plain_env`.
* ``glibc_version``: this libc's version, as a tuple.
"""

from __future__ import annotations

import os
import shutil
import struct
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parent.parent
SRC = ROOT / "src"
C = Path(__file__).resolve().parent / "data" / "exec"


def plain_env(**extra: str) -> dict[str, str]:
    """This environment without sealkit's or the loader's variables (nor
    PYTHON*), plus ``extra``."""
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("SEALKIT_", "LD_PRELOAD", "LD_AUDIT", "PYTHON"))
    }
    env.update(extra)
    return env


def sealkit_argv(*words: str) -> list[str]:
    """``python -m sealkit WORDS`` (run with :func:`sealkit_env`)."""
    return [sys.executable, "-m", "sealkit", *words]


def sealkit_env(env: dict[str, str] | None = None, src: Path = SRC) -> dict[str, str]:
    """``env`` (default :func:`plain_env`) with this checkout's sealkit
    importable, unless it names another ``PYTHONPATH``."""
    out = dict(plain_env() if env is None else env)
    out.setdefault("PYTHONPATH", str(src))
    return out


def glibc() -> tuple[int, int]:
    version = os.confstr("CS_GNU_LIBC_VERSION") or "glibc 0.0"
    major, minor = version.split()[1].split(".")[:2]
    return int(major), int(minor)


def _mseal_missing() -> str | None:
    from sealkit._os import syscalls
    from sealkit.errors import KernelError

    try:
        syscalls.mseal(0, 0, 0)
    except KernelError as exc:
        return f"this kernel lacks mseal(2): mseal(0, 0, 0) failed with {exc}"
    return None


@pytest.fixture(scope="session")
def glibc_version() -> tuple[int, int]:
    return glibc()


@pytest.fixture(scope="session")
def exec_lib() -> Path:
    why = _mseal_missing()
    if why:
        pytest.skip(why)
    if not (shutil.which("cc") or shutil.which("gcc")):
        pytest.skip("no C compiler: libsealexec.so cannot be built")
    from sealkit._os import sealexec

    out = SRC / "sealkit" / "_os" / sealexec.LIBRARY_NAME
    failed = sealexec.build(
        str(out), extra=("-Werror",)
    )  # installs tolerate warnings; tests do not
    assert failed is None, failed
    return out


class Fixtures:
    """Paths of the built test programs and libraries."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def __getattr__(self, name: str) -> Path:
        return self.root / name


def _cc(*args: str) -> None:
    done = subprocess.run(["cc", *args], capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stderr
    # the marker object makes binutils < 2.45 warn about an unknown property
    assert "error" not in done.stderr, done.stderr


@pytest.fixture(scope="session")
def fx(tmp_path_factory: pytest.TempPathFactory, exec_lib: Path) -> Fixtures:
    d = tmp_path_factory.mktemp("fx")
    (d / "rp").mkdir()
    c = str(C)
    so = ("-shared", "-fPIC", "-O2")
    full_relro = "-Wl,-z,relro,-z,now"
    _cc("-O2", "-o", str(d / "probe"), f"{c}/probe.c", "-ldl", "-lpthread")
    _cc(*so, full_relro, "-o", str(d / "libctorcheck.so"), f"{c}/ctorcheck.c", "-ldl")
    _cc("-O2", "-o", str(d / "ctormain"), f"{c}/ctormain.c", f"-L{d}", "-lctorcheck",
        f"-Wl,-rpath,{d}")  # fmt: skip
    _cc(*so, "-o", str(d / "libattack.so"), f"{c}/attack.c")
    _cc(*so, "-o", str(d / "wrongaudit.so"), f"{c}/wrongaudit.c")
    _cc(*so, "-o", str(d / "preinit_audit.so"), f"{c}/preinit_audit.c")
    _cc(*so, "-o", str(d / "symbind_audit.so"), f"{c}/symbind_audit.c")
    _cc(*so, "-o", str(d / "rp" / "libdep.so"), f"{c}/dep.c")
    _cc("-O2", "-o", str(d / "runpath_main"), f"{c}/runpath_main.c", "-ldl",
        "-Wl,--enable-new-dtags,-rpath,$ORIGIN/rp")  # fmt: skip
    _cc(*so, full_relro, "-o", str(d / "libmarked.so"), f"{c}/marked.c", f"{c}/marker.S",
        "-Wl,--no-warn-execstack")  # fmt: skip
    _cc("-O2", "-o", str(d / "markedmain"), f"{c}/markedmain.c", f"-L{d}", "-lmarked",
        "-lctorcheck", f"-Wl,-rpath,{d}")  # fmt: skip
    _cc(*so, full_relro, "-o", str(d / "libmutable.so"), f"{c}/mutable.c")
    _cc(*so, full_relro, "-o", str(d / "librelrow.so"), f"{c}/relrow.c")
    _cc("-shared", "-O2", "-fno-pic", "-mcmodel=large", "-Wl,-z,notext",
        "-o", str(d / "libtextrel.so"), f"{c}/textrel.c")  # fmt: skip
    _cc(*so, "-Wl,-z,execstack", "-o", str(d / "libexecstack.so"), f"{c}/execstack.c")
    _cc("-O2", "-o", str(d / "nomseal"), f"{c}/nomseal.c")
    _cc(*so, "-Wl,-z,nodelete", "-o", str(d / "libnodelete.so"), f"{c}/dep.c")
    shutil.copy(d / "libctorcheck.so", d / "libwx.so")
    writable_executable(d / "libwx.so")
    shutil.copy(d / "libmutable.so", d / "libnotmutable.so")  # the control: no PT_GNU_MUTABLE
    gnu_mutable(d / "libmutable.so", ".gnu.mutable")
    return Fixtures(d)


PT_NOTE, PT_GNU_MUTABLE = 4, 0x6474F555


def gnu_mutable(path: Path, section: str) -> None:
    """Turn the PT_NOTE program header of the ELF64 file ``path`` into a
    PT_GNU_MUTABLE segment over ``section`` (what binutils' unmerged
    azanella/pt_gnu_mutable branch would emit; no released linker does)."""
    data = bytearray(path.read_bytes())
    phoff, shoff = struct.unpack_from("<QQ", data, 32)
    phentsize, phnum, shentsize, shnum, shstrndx = struct.unpack_from("<HHHHH", data, 54)
    names_off = struct.unpack_from("<Q", data, shoff + shstrndx * shentsize + 24)[0]
    for i in range(shnum):
        sh = shoff + i * shentsize
        name = struct.unpack_from("<I", data, sh)[0]
        if data[names_off + name : names_off + name + len(section) + 1] == section.encode() + b"\0":
            addr, offset, size = struct.unpack_from("<QQQ", data, sh + 16)
            break
    else:
        raise AssertionError(f"no {section} section")
    for i in range(phnum):
        ph = phoff + i * phentsize
        if struct.unpack_from("<I", data, ph)[0] == PT_NOTE:
            struct.pack_into(
                "<IIQQQQQQ", data, ph, PT_GNU_MUTABLE, 6, offset, addr, addr, size, size, 4096
            )
            path.write_bytes(bytes(data))
            return
    raise AssertionError("no PT_NOTE to rewrite")


def writable_executable(path: Path) -> None:
    """Make the writable PT_LOAD of ``path`` also executable (PF_R|PF_W|PF_X):
    the loader then maps it rwx."""
    data = bytearray(path.read_bytes())
    phoff = struct.unpack_from("<Q", data, 32)[0]
    phentsize, phnum = struct.unpack_from("<HH", data, 54)
    for i in range(phnum):
        ph = phoff + i * phentsize
        p_type, p_flags = struct.unpack_from("<II", data, ph)
        if p_type == 1 and p_flags & 2:
            struct.pack_into("<I", data, ph + 4, 7)
            path.write_bytes(bytes(data))
            return
    raise AssertionError("no writable PT_LOAD")


Run = Callable[..., subprocess.CompletedProcess[str]]


@pytest.fixture
def sealkit_exec(exec_lib: Path) -> Run:
    def run(*words: str, env: dict[str, str] | None = None, **kwargs: Any) -> Any:
        kwargs.setdefault("capture_output", True)
        kwargs.setdefault("text", True)
        kwargs.setdefault("timeout", 120)
        return subprocess.run(sealkit_argv(*words), env=sealkit_env(env), **kwargs, check=False)

    return run

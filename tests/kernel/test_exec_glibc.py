"""What depends on the glibc version, checked against the loader itself.

glibc 2.41 (commit 43db5e2c06, bug 31986) moved dlopen's
``la_activity(LA_ACT_CONSISTENT)`` after relocation. Before it, RELRO of a
later load is read-only only after the callback: the ``dlopen()`` wrapper
seals it before returning, and loads the wrapper does not see (libc's own:
NSS modules, libgcc_s) wait for the next loader event. From 2.41 everything
is sealed at the callback. These tests run on this system's loader, and also
on the loaders of other glibc builds named in ``SEALKIT_TEST_GLIBC_ROOTS``
(colon-separated roots of extracted ``libc6`` packages, e.g. Debian 13's
2.41; the program then runs as ``ld.so --library-path ...``), so both sides
of the change can be checked on one machine.
"""

from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path

import pytest

from sealkit.sealing.exec import environment, read_exec_report
from tests.exec_support import plain_env

pytestmark = pytest.mark.kernel


class Loader:
    """This system's glibc loader (``root=None``) or another build's."""

    def __init__(self, root: str | None) -> None:
        self.root = root
        prefix: list[str] = []
        self.env: dict[str, str] = {}
        if root is not None:
            libdir = Path(root) / "usr" / "lib" / "x86_64-linux-gnu"
            prefix = [str(libdir / "ld-linux-x86-64.so.2"), "--library-path", str(libdir)]
            self.env["GCONV_PATH"] = str(libdir / "gconv")
        self.prefix = prefix
        self.version = self._version()

    def _version(self) -> tuple[int, int]:
        if self.root is None:
            text = os.confstr("CS_GNU_LIBC_VERSION") or ""
        else:
            text = subprocess.run(
                [self.prefix[0], "--version"], capture_output=True, text=True, check=True
            ).stdout.splitlines()[0]
        found = re.search(r"(\d+)\.(\d+)", text.split("version")[-1] if self.root else text)
        assert found, text
        return int(found[1]), int(found[2])

    def run(self, argv: list[str], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [*self.prefix, *argv], env={**env, **self.env}, capture_output=True, text=True,
            timeout=60, check=False,
        )  # fmt: skip


def _loaders() -> list[object]:
    roots = [r for r in os.environ.get("SEALKIT_TEST_GLIBC_ROOTS", "").split(":") if r]
    return [pytest.param(None, id="system"), *(pytest.param(r, id=Path(r).name) for r in roots)]


@pytest.fixture(params=_loaders())
def loader(request: pytest.FixtureRequest) -> Loader:
    return Loader(request.param)


def _phases(report: Path, part: str) -> dict[str, set[str]]:
    (objs,) = read_exec_report(report).values()
    (obj,) = [o for o in objs.values() if part in o.path]
    out: dict[str, set[str]] = {}
    for *_, kind, _, phase in obj.sealed:
        out.setdefault(kind, set()).add(phase)
    if obj.pending:
        out.setdefault("relro", set()).add("pending")
    return out


def test_start_up_objects_are_sealed_before_any_constructor(loader, fx, exec_lib, tmp_path):
    out = tmp_path / "ctor.txt"
    env = environment(str(exec_lib), base=plain_env(CTORCHECK_OUT=str(out)))
    done = loader.run([str(fx.ctormain)], env)
    assert (done.returncode, done.stdout) == (0, "value=42\n"), done.stderr
    assert out.read_text() == "libctorcheck.so text=sealed relro=sealed\n"


def test_a_dlopened_objects_relro_is_sealed_before_dlopen_returns(loader, fx, exec_lib, tmp_path):
    out, report = tmp_path / "ctor.txt", tmp_path / "r.jsonl"
    env = environment(str(exec_lib), report=str(report), base=plain_env(CTORCHECK_OUT=str(out)))
    lib = str(fx.root / "libctorcheck.so")
    done = loader.run([str(fx.probe), "dlopen", lib, "now-nodelete", "sealed", "libctorcheck"], env)
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines()[-1] == "sealed libctorcheck: text=sl readonly=sl"
    phases = _phases(report, "libctorcheck")
    assert phases["text"] == {"consistent"}
    if loader.version >= (2, 41):
        # the callback comes after relocation: RELRO sealed there, before the
        # object's constructor ran
        assert phases["relro"] == {"consistent"}
        assert out.read_text() == "libctorcheck.so text=sealed relro=sealed\n"
    else:
        # RELRO became read-only after the callback: the wrapper sealed it
        assert phases["relro"] == {"dlopen-return"}
        assert out.read_text() == "libctorcheck.so text=sealed relro=unsealed\n"


def test_relro_of_libcs_own_loads_waits_for_the_next_loader_event_before_2_41(
    loader, fx, exec_lib, tmp_path
):
    # getpwnam loads libnss_compat through libc's own __libc_dlopen, which the
    # dlopen() wrapper never sees; pthread_cancel then loads libgcc_s the same
    # way: a loader event
    report = tmp_path / "r.jsonl"
    env = environment(str(exec_lib), report=str(report), base=plain_env())
    steps = ["nss", "sealed", "libnss_compat", "cancel", "sealed", "libnss_compat"]
    done = loader.run([str(fx.probe), *steps], env)
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines[0] == "nss: root uid=0" and lines[2] == "cancel: canceled"
    assert lines[3] == "sealed libnss_compat: text=sl readonly=sl"
    phases = _phases(report, "libnss_compat")
    assert phases["text"] == {"consistent"}
    if loader.version >= (2, 41):
        assert lines[1] == "sealed libnss_compat: text=sl readonly=sl"
        assert phases["relro"] == {"consistent"}
    else:
        # the documented window: text sealed when the load returned, RELRO
        # read-only but not sealed until libgcc_s's load
        assert lines[1] == "sealed libnss_compat: text=sl readonly=no"
        assert phases["relro"] == {"later-event"}

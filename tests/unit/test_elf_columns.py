"""checksec's columns in ``sealkit elf`` (issue 16): stack canary, FORTIFY_SOURCE
(fortified / fortifiable), RPATH, RUNPATH, TEXTREL, stripped, CET (IBT,
SHSTK), on programs gcc builds with and without each hardening, and the
``--require`` for each.
"""

from __future__ import annotations

import json
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import jsonschema
import pytest

import sealkit
from sealkit.host import elf

from .elf_craft import GCC, gcc

SCHEMA = json.loads(
    (Path(sealkit.__file__).parent / "data" / "elf.schema.json").read_text(encoding="utf-8")
)
STRIP = "strip"

PROGRAM = r"""
#include <stdio.h>
#include <string.h>
#include <unistd.h>
int main(int argc, char **argv) {
    char buf[32];
    char big[64];
    strcpy(buf, argc > 5 ? argv[1] : "ok");
    snprintf(big, sizeof big, "%s", buf);
    if (argc > 7 && read(0, big, sizeof big) < 0)
        return 1;
    printf("%s %d\n", big, argc);
    return 0;
}
"""
TEXTREL_S = """\
\t.text
\t.globl f
f:
\t.quad f
\tret
\t.section .note.GNU-stack,"",@progbits
"""


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    if GCC is None:
        pytest.skip("gcc is needed to build test binaries")
    tmp = tmp_path_factory.mktemp("columns")
    c = str(tmp / "p.c")
    Path(c).write_text(PROGRAM)
    (tmp / "t.s").write_text(TEXTREL_S)
    out = {
        "hardened": gcc(tmp, "hardened", "-O2", "-D_FORTIFY_SOURCE=2", "-fstack-protector-strong",
                        "-fcf-protection=full", "-Wl,-z,ibt", "-Wl,-z,shstk", "-Wl,-z,now", c),
        "plain": gcc(tmp, "plain", "-O0", "-U_FORTIFY_SOURCE", "-fno-stack-protector",
                     "-fcf-protection=none", c),
        "ibt-only": gcc(tmp, "ibt-only", "-fcf-protection=branch", "-Wl,-z,ibt", c),
        "rpath": gcc(tmp, "rpath", "-Wl,-rpath,/opt/a:/opt/b", "-Wl,--disable-new-dtags", c),
        "runpath": gcc(tmp, "runpath", "-Wl,-rpath,/opt/c", "-Wl,--enable-new-dtags", c),
        "textrel": gcc(tmp, "libtextrel.so", "-shared", "-Wl,-z,notext", str(tmp / "t.s")),
        "static": gcc(tmp, "static", "-static", "-fstack-protector-all", c),
    }  # fmt: skip
    subprocess.run([GCC, "-c", "-O2", "-D_FORTIFY_SOURCE=2", "-fstack-protector-strong",
                    "-o", str(tmp / "p.o"), c], check=True, capture_output=True)  # fmt: skip
    out["object"] = str(tmp / "p.o")
    subprocess.run([STRIP, out["hardened"]], check=True, capture_output=True)
    return out


COLUMNS = ("canary", "fortified", "fortifiable", "rpath", "runpath", "textrel", "stripped",
           "ibt", "shstk")  # fmt: skip


def _columns(path: str) -> dict[str, Any]:
    report = elf.inspect(path)
    assert report.error is None, report.error
    return {c: getattr(report, c) for c in COLUMNS}


def test_hardened_program(built: dict[str, str]) -> None:
    got = _columns(built["hardened"])
    # strcpy, snprintf and printf become __strcpy_chk (or __stpcpy_chk),
    # __snprintf_chk, __printf_chk; read into a buffer of known size stays
    # plain: fortifiable counts every fortifiable function, checked or not.
    assert got["canary"] is True
    assert got["fortified"] >= 2 and got["fortifiable"] >= got["fortified"]
    assert (got["rpath"], got["runpath"], got["textrel"]) == (None, None, False)
    assert got["stripped"] is True
    assert (got["ibt"], got["shstk"]) == (True, True)


def test_plain_program(built: dict[str, str]) -> None:
    got = _columns(built["plain"])
    assert got["canary"] is False
    assert got["fortified"] == 0 and got["fortifiable"] >= 3  # strcpy, snprintf, read, printf
    assert got["stripped"] is False
    assert (got["ibt"], got["shstk"]) == (False, False)


def test_ibt_only(built: dict[str, str]) -> None:
    got = _columns(built["ibt-only"])
    assert (got["ibt"], got["shstk"]) == (True, False)


def test_rpath_runpath_textrel(built: dict[str, str]) -> None:
    assert _columns(built["rpath"])["rpath"] == "/opt/a:/opt/b"
    assert _columns(built["rpath"])["runpath"] is None
    assert _columns(built["runpath"])["runpath"] == "/opt/c"
    assert _columns(built["runpath"])["rpath"] is None
    assert _columns(built["textrel"])["textrel"] is True


def test_static_program_canary_from_symtab(built: dict[str, str]) -> None:
    got = _columns(built["static"])
    assert got["canary"] is True  # __stack_chk_fail is defined in .symtab, no dynamic symbols
    assert got["stripped"] is False


def test_object_file_columns(built: dict[str, str]) -> None:
    report = elf.inspect(built["object"])
    assert report.canary is True
    assert report.fortified is not None and report.fortified >= 2  # from .symtab's undefined
    for column in ("relro", "bind_now", "textrel", "rpath", "runpath"):
        assert column in report.not_applicable
    doc = report.as_dict()
    assert doc["textrel"] is None and "textrel" in doc["not_applicable"]


def test_json_carries_every_column(built: dict[str, str]) -> None:
    doc = elf.inspect(built["hardened"]).as_dict()
    for key in ("canary", "fortify_source", "fortified", "fortifiable", "rpath", "runpath",
                "textrel", "stripped", "ibt", "shstk", "not_applicable", "unknown"):  # fmt: skip
        assert key in doc, key
    assert doc["fortify_source"] is True


REQUIREMENTS = {
    # requirement: (file that meets it, file that does not)
    "canary": ("hardened", "plain"),
    "fortify": ("hardened", "plain"),
    "no-rpath": ("runpath", "rpath"),
    "no-runpath": ("rpath", "runpath"),
    "no-textrel": ("hardened", "textrel"),
    "stripped": ("hardened", "plain"),
    "ibt": ("ibt-only", "plain"),
    "shstk": ("hardened", "ibt-only"),
}


@pytest.mark.parametrize("requirement", sorted(REQUIREMENTS))
def test_require_each_column(
    sealkit_cli: Callable[..., subprocess.CompletedProcess[str]],
    built: dict[str, str],
    requirement: str,
) -> None:
    good, bad = REQUIREMENTS[requirement]
    ok = sealkit_cli("elf", "--require", requirement, built[good])
    assert ok.returncode == 0, ok.stderr
    fail = sealkit_cli("elf", "--require", requirement, "--json", built[good], built[bad])
    assert fail.returncode == 1
    lines = [line for line in fail.stderr.splitlines() if "requirement" in line]
    assert lines == [
        f"sealkit elf: requirement {requirement} not met by 1 of 2 files ({built[bad]})"
    ]
    doc = json.loads(fail.stdout)
    jsonschema.validate(doc, SCHEMA)
    assert doc["requirements"] == [
        {"requirement": requirement, "met": False, "unmet_by": [built[bad]]}
    ]


def test_table_shows_the_columns(
    sealkit_cli: Callable[..., subprocess.CompletedProcess[str]], built: dict[str, str]
) -> None:
    done = sealkit_cli("elf", built["hardened"], built["object"])
    assert done.returncode == 0, done.stderr
    header = done.stdout.splitlines()[0].split()
    for column in ("CANARY", "FORTIFY", "RPATH", "RUNPATH", "TEXTREL", "SYMTAB", "CET"):
        assert column in header, header
    rows = {line.split()[-1]: line.split() for line in done.stdout.splitlines()[1:] if line.strip()
            and not line.startswith("note")}  # fmt: skip
    hardened = rows[built["hardened"]]
    assert "ibt+shstk" in hardened
    obj = rows[built["object"]]
    assert "n/a" in obj

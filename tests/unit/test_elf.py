"""``sealkit.host.elf``, ``sealkit._os.elf`` and ``sealkit elf`` on real files.

Binaries come from gcc (binutils 2.40 here has no ``-z memory-seal``, so the
marker is assembled as a note and, where the linker leaves it out of order,
the notes are reordered with ``objcopy --update-section``; the marked
program still runs). ELF32 and big-endian files are written byte by byte
with :mod:`struct`. Truncated and non-ELF files get error rows.
"""

from __future__ import annotations

import json
import os
import struct
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import jsonschema
import pytest

import sealkit
from sealkit._os import elf as elf_file
from sealkit.errors import ParseError
from sealkit.host import elf

from .elf_craft import (
    CLASS_IDS,
    CLASSES,
    ET_EXEC,
    GCC,
    MARKER_NOTE_S,
    OBJCOPY,
    X86_ISA_1_NEEDED,
    align,
    craft,
    gnu_note,
    marker_first,
    patched,
    write,
)

SCHEMA = json.loads(
    (Path(sealkit.__file__).parent / "data" / "elf.schema.json").read_text(encoding="utf-8")
)
needs_gcc = pytest.mark.skipif(
    GCC is None or OBJCOPY is None, reason="gcc and objcopy are needed to build test binaries"
)
_write = write
_align = align


def _doc(*files: dict[str, Any]) -> dict[str, Any]:
    """A ``sealkit elf --json`` document around ``files``."""
    return {
        "schema": "sealkit.elf/2", "note": "", "files": list(files), "skipped": [],
        "requirements": [],
        "summary": {"elf_files": len(files), "errors": 0, "skipped": 0,
                    "memory_seal": {"yes": 0, "no": 0, "ignored": 0, "section-only": 0}},
    }  # fmt: skip


@pytest.mark.parametrize(("elfclass", "little"), CLASSES, ids=CLASS_IDS)
@pytest.mark.parametrize(
    ("case", "expected"),
    [
        ("marked", ("yes", "")),
        ("sorted with neighbours", ("yes", "")),
        ("unmarked", ("no", "")),
        ("pr_datasz 4", ("ignored", "pr_datasz is 4, the loader requires 0")),
        ("wrong alignment", ("ignored", "aligned to")),
        ("out of order", ("ignored", "types must ascend")),
        ("section only", ("section-only", "no PT_GNU_PROPERTY segment")),
        ("no property note", ("no", "")),
    ],
)
def test_marker_in_crafted_files(
    tmp_path: Path, elfclass: int, little: bool, case: str, expected: tuple[str, str]
) -> None:
    word = elfclass // 8
    isa = (X86_ISA_1_NEEDED, b"\1\0\0\0" if little else b"\0\0\0\1")
    notes: list[bytes] = [gnu_note([(3, b"")], elfclass, little)]
    kwargs: dict[str, Any] = {}
    if case == "sorted with neighbours":
        notes = [gnu_note([(2, b""), (3, b""), isa], elfclass, little)]
    elif case == "unmarked":
        notes = [gnu_note([isa], elfclass, little)]
    elif case == "pr_datasz 4":
        notes = [gnu_note([(3, b"\0\0\0\0")], elfclass, little)]
    elif case == "wrong alignment":
        kwargs["align_to"] = 12 - word  # 4 on ELF64, 8 on ELF32
    elif case == "out of order":
        notes = [gnu_note([isa], elfclass, little), gnu_note([(3, b"")], elfclass, little)]
    elif case == "section only":
        kwargs["segment"] = False
    elif case == "no property note":
        notes = []
    path = _write(tmp_path, "crafted", craft(elfclass, little, notes, **kwargs))
    report = elf.inspect(path)
    assert report.error is None, report.error
    assert (report.elfclass, report.endian) == (elfclass, "little" if little else "big")
    marker, detail = expected
    assert report.seal_marker == marker
    assert detail in report.seal_detail
    assert report.marked is (marker == "yes")
    jsonschema.validate(_doc(report.as_dict()), SCHEMA)


@pytest.mark.parametrize(("elfclass", "little"), CLASSES, ids=CLASS_IDS)
def test_neighbours_in_crafted_files(tmp_path: Path, elfclass: int, little: bool) -> None:
    note = [gnu_note([(3, b"")], elfclass, little)]
    cases = {
        "pie-full": craft(elfclass, little, note, relro=True, dyn_flags_1=0x08000001),
        "dso-partial-execstack": craft(
            elfclass, little, note, relro=True, dyn_flags_1=0, execstack=True
        ),
        "exec-norelro": craft(elfclass, little, note, e_type=ET_EXEC),
    }
    got = {
        name: (r.pie, r.relro, r.bind_now, r.nx)
        for name, r in ((n, elf.inspect(_write(tmp_path, n, d))) for n, d in cases.items())
    }
    assert got == {
        "pie-full": ("yes", "full", True, True),
        "dso-partial-execstack": ("dso", "partial", False, False),
        "exec-norelro": ("no", "no", False, True),
    }


def test_walk_properties_follows_the_loader() -> None:
    le64 = gnu_note([(1, b"\0" * 8), (3, b"")], 64, True)
    assert elf.walk_properties(le64, 64, True, 8) == ([(1, 8), (3, 0)], None)
    assert elf.walk_properties(le64, 64, True, 4)[1] == (
        "PT_GNU_PROPERTY is aligned to 4, the loader needs 8"
    )
    bad = struct.pack("<III", 4, 12, 5) + b"GNU\0" + bytes(12)  # n_descsz not a multiple of 8
    assert "n_descsz 12" in (elf.walk_properties(bad, 64, True, 8)[1] or "")
    overrun = struct.pack("<III", 4, 8, 5) + b"GNU\0" + struct.pack("<II", 3, 64)
    assert "overruns" in (elf.walk_properties(overrun, 64, True, 8)[1] or "")
    short = gnu_note([(3, b"")], 64, True)[:-4]
    assert elf.walk_properties(short, 64, True, 8)[1] == "property note runs past the segment"
    # An ABI-tag note first (4 bytes of desc, padded to the segment's 8): skipped.
    other = struct.pack("<III", 4, 4, 1) + b"GNU\0" + bytes(8) + gnu_note([(3, b"")], 64, True)
    assert elf.walk_properties(other, 64, True, 8) == ([(3, 0)], None)


# --- real binaries built with gcc -------------------------------------------

HELLO = '#include <stdio.h>\nint main(void) { puts("hello from a marked binary"); return 0; }\n'
NOTE_S = MARKER_NOTE_S


def _gcc(tmp: Path, out: str, *args: str) -> str:
    assert GCC is not None
    subprocess.run([GCC, "-O1", "-o", str(tmp / out), *args], check=True, capture_output=True)
    return str(tmp / out)


@pytest.fixture(scope="module")
def binaries(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    if GCC is None or OBJCOPY is None:
        pytest.skip("gcc and objcopy are needed to build test binaries")
    tmp = tmp_path_factory.mktemp("elf")
    (tmp / "hello.c").write_text(HELLO)
    (tmp / "note.s").write_text(NOTE_S)
    c, s = str(tmp / "hello.c"), str(tmp / "note.s")
    out = {
        "plain": _gcc(tmp, "plain", c),
        "linked-note": _gcc(tmp, "linked-note", c, s),
        "marked": _gcc(tmp, "marked", c, s),
        "now": _gcc(tmp, "now", c, "-Wl,-z,now"),
        "nopie": _gcc(tmp, "nopie", c, "-no-pie"),
        "execstack": _gcc(tmp, "execstack", c, "-Wl,-z,execstack"),
        "norelro": _gcc(tmp, "norelro", c, "-Wl,-z,norelro"),
        "lib": _gcc(tmp, "lib.so", "-shared", "-fPIC", c),
    }
    marker_first(out["marked"], tmp)
    subprocess.run([GCC, "-c", "-o", str(tmp / "note.o"), s], check=True, capture_output=True)
    out["object"] = str(tmp / "note.o")
    return out


@needs_gcc
def test_marked_binary_runs_and_is_marked(binaries: dict[str, str]) -> None:
    run = subprocess.run([binaries["marked"]], capture_output=True, text=True, check=False)
    assert (run.returncode, run.stdout) == (0, "hello from a marked binary\n")
    report = elf.inspect(binaries["marked"])
    assert (report.seal_marker, report.seal_detail) == ("yes", "")
    assert (report.pie, report.nx, report.elfclass, report.machine) == ("yes", True, 64, "X86_64")


@needs_gcc
def test_a_linker_that_does_not_know_the_property_leaves_it_unreachable(
    binaries: dict[str, str],
) -> None:
    # ld 2.40 warns "unsupported GNU_PROPERTY_TYPE" and appends our note after
    # its merged one (x86 ISA needed, 0xc0008002): the loader's walk stops at 3.
    report = elf.inspect(binaries["linked-note"])
    assert report.seal_marker == "ignored"
    assert "types must ascend" in report.seal_detail


@needs_gcc
@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("plain", ("no", "partial", False, "yes", True)),
        ("now", ("no", "full", True, "yes", True)),
        ("nopie", ("no", "partial", False, "no", True)),
        ("execstack", ("no", "partial", False, "yes", False)),
        ("norelro", ("no", "no", False, "yes", True)),
        ("lib", ("no", "partial", False, "dso", True)),
        # an object file: no RELRO or BIND_NOW (not applicable), NX from .note.GNU-stack
        ("object", ("section-only", None, None, "rel", True)),
    ],
)
def test_gcc_binaries(binaries: dict[str, str], name: str, expected: tuple[Any, ...]) -> None:
    r = elf.inspect(binaries[name])
    assert r.error is None
    assert (r.seal_marker, r.relro, r.bind_now, r.pie, r.nx) == expected


@needs_gcc
def test_load_layout_agrees_with_pyelftools(binaries: dict[str, str], tmp_path: Path) -> None:
    from elftools.elf.elffile import ELFFile

    crafted = [
        _write(tmp_path, f"c{i}", craft(c, le, [gnu_note([(3, b"")], c, le)], relro=True))
        for i, (c, le) in enumerate(CLASSES)
    ]
    paths = [*binaries.values(), *crafted, "/bin/ls", os.path.realpath("/proc/self/exe")]
    for path in paths:
        layout = elf_file.load_layout(path)
        with open(path, "rb") as fh:
            ref = ELFFile(fh)
            expected = [
                (
                    s["p_offset"],
                    s["p_vaddr"],
                    s["p_filesz"],
                    s["p_memsz"],
                    s["p_flags"],
                    s["p_align"],
                )
                for s in ref.iter_segments()
            ]
            assert layout.elfclass == ref.elfclass and layout.little == ref.little_endian
        got = [(s.offset, s.vaddr, s.filesz, s.memsz, s.flags, s.align) for s in layout.segments]
        assert got == expected, path
        assert len(layout.loads) == sum(1 for s in layout.segments if s.type == 1)


def test_load_layout_refuses_what_is_not_an_elf(tmp_path: Path) -> None:
    with pytest.raises(ParseError, match="not an ELF file"):
        elf_file.load_layout(_write(tmp_path, "text", b"hello\n"))
    with pytest.raises(ParseError, match="truncated"):
        elf_file.load_layout(_write(tmp_path, "cut", craft(64, True, [])[:80]))
    with pytest.raises(ParseError, match="inode"):
        path = _write(tmp_path, "x", craft(64, True, []))
        elf_file.load_layout(path, inode=os.stat(path).st_ino + 1)


# --- bad files: error rows, never a crash ------------------------------------


def _truncations(size: int) -> list[int]:
    return sorted({0, 1, 3, 4, 15, 16, 40, 52, 63, 64, 100, 200, 300, size // 2, size - 1})


@pytest.mark.parametrize(("elfclass", "little"), CLASSES, ids=CLASS_IDS)
def test_truncated_crafted_files_get_error_rows(
    tmp_path: Path, elfclass: int, little: bool
) -> None:
    data = craft(elfclass, little, [gnu_note([(3, b"")], elfclass, little)], relro=True)
    for cut in _truncations(len(data)):
        report = elf.inspect(_write(tmp_path, f"cut{cut}", data[:cut]))
        assert report.error is not None, cut
        assert report.seal_marker is None


@needs_gcc
def test_truncated_binaries_get_error_rows(binaries: dict[str, str], tmp_path: Path) -> None:
    """Cut short of what the program headers map: an error row. Cut after
    it (in .symtab or the section headers, which the loader never reads):
    the loader's columns stand and the symbol table is unknown, saying why."""
    data = Path(binaries["marked"]).read_bytes()
    segments = elf_file.load_layout(binaries["marked"]).segments
    mapped = max(s.offset + s.filesz for s in segments)
    cuts = [*_truncations(len(data)), 0x338, 0x338 + 20, 4096, 8192, 12000, mapped + 1]
    for cut in cuts:
        report = elf.inspect(_write(tmp_path, f"cut{cut}", data[:cut]))
        if cut < mapped:
            assert report.error is not None, cut
        else:
            assert report.error is None and report.seal_marker == "yes", cut
            assert "truncated" in dict(report.unknown)["stripped"], (cut, report.unknown)


def test_non_elf_files_get_error_rows(tmp_path: Path) -> None:
    assert (
        elf.inspect(_write(tmp_path, "t.txt", b"#!/bin/sh\necho hi\n")).error == "not an ELF file"
    )
    assert elf.inspect(_write(tmp_path, "e", b"")).error == "not an ELF file"
    bad_class = b"\x7fELF\x05\x01\x01" + bytes(57)
    assert "unknown ELF class" in (elf.inspect(_write(tmp_path, "c", bad_class)).error or "")
    assert elf.inspect(str(tmp_path / "missing")).error == "No such file or directory"
    assert "directory" in (elf.inspect(str(tmp_path)).error or "")


def test_crafted_offsets_and_sizes_are_malformed_files(tmp_path: Path) -> None:
    """Headers that point past the file or claim gigabytes: an error, not an
    OverflowError from pread, a MemoryError, or a long read."""
    data = craft(64, True, [gnu_note([(3, b"")], 64, True)])
    far = _write(tmp_path, "far_phoff", patched(data, 0x20, "<Q", (1 << 64) - 1))
    with pytest.raises(ParseError, match="truncated program headers"):
        elf_file.load_layout(far)
    assert elf.inspect(far).error is not None
    # PT_GNU_PROPERTY is the second program header; p_filesz at +32
    huge_segment = patched(data, 64 + 56 + 32, "<Q", 1 << 30)
    sparse = tmp_path / "sparse"
    with open(sparse, "wb") as fh:  # a 1 GiB sparse file, so the claim is "inside" it
        fh.write(huge_segment)
        fh.truncate((1 << 30) + 4096)
    report = elf.inspect(str(sparse))
    assert "more than sealkit reads" in (report.error or ""), report
    # the .note.gnu.property section header is the second one; sh_size at +32
    # (in a file without PT_GNU_PROPERTY, so the section is what is read): no
    # loader reads sections, so the loader's answer ("no") stands, with why
    # the section could not be read
    section_only = craft(64, True, [gnu_note([(3, b"")], 64, True)], segment=False)
    sh_off = struct.unpack_from("<Q", section_only, 0x28)[0]
    huge_section = patched(section_only, sh_off + 64 + 32, "<Q", 1 << 40)
    report = elf.inspect(_write(tmp_path, "huge_section", huge_section))
    assert report.error is None and report.seal_marker == "no", report
    assert "no section was read" in report.seal_detail, report


def test_non_regular_files_are_refused_without_blocking(tmp_path: Path) -> None:
    fifo = str(tmp_path / "fifo")
    os.mkfifo(fifo)  # opening or reading it plainly would block forever
    assert elf.inspect(fifo).error == "not a regular file"
    assert not elf_file.is_elf(fifo)
    with pytest.raises(ParseError, match="not a regular file"):
        elf_file.load_layout(fifo)
    assert elf.inspect("/dev/zero").error == "not a regular file"
    link = tmp_path / "tree" / "kmsg"
    link.parent.mkdir()
    link.symlink_to(fifo)
    assert list(elf.iter_paths([str(link.parent)], recursive=True)) == []


# --- the command line -------------------------------------------------------


@pytest.fixture
def elf_tree(tmp_path: Path) -> Path:
    (tmp_path / "sub").mkdir()
    (tmp_path / "marked").write_bytes(craft(64, True, [gnu_note([(3, b"")], 64, True)]))
    (tmp_path / "sub" / "be32").write_bytes(craft(32, False, [gnu_note([(3, b"")], 32, False)]))
    (tmp_path / "sub" / "cut").write_bytes(craft(64, True, [])[:100])
    (tmp_path / "sub" / "README").write_text("not an ELF file\n")
    return tmp_path


def _cli(run: Callable[..., subprocess.CompletedProcess[str]], *args: str) -> tuple[int, str, str]:
    done = run("elf", *args)
    assert "Traceback" not in done.stderr
    return done.returncode, done.stdout, done.stderr


def test_cli_recursive_json(sealkit_cli: Callable[..., Any], elf_tree: Path) -> None:
    code, out, err = _cli(sealkit_cli, "-r", "--json", str(elf_tree))
    doc = json.loads(out)
    jsonschema.validate(doc, SCHEMA)
    rows = {Path(f["path"]).name: f for f in doc["files"]}
    assert set(rows) == {"marked", "be32", "cut"}  # README is skipped by the walk
    assert rows["marked"]["memory_seal"] == rows["be32"]["memory_seal"] == "yes"
    assert rows["be32"]["class"] == 32 and rows["be32"]["endian"] == "big"
    assert rows["cut"]["error"] and rows["cut"]["memory_seal"] is None
    assert "glibc" in doc["note"]
    assert code == 1  # an error row ...
    cut = elf_tree / "sub" / "cut"
    assert err.splitlines() == [f"sealkit elf: {cut}: {rows['cut']['error']}"]  # ... on stderr


def test_cli_table_exit_codes_and_requirements(
    sealkit_cli: Callable[..., Any], elf_tree: Path
) -> None:
    marked, be32 = str(elf_tree / "marked"), str(elf_tree / "sub" / "be32")
    code, out, err = _cli(sealkit_cli, marked, be32)
    assert code == 0
    assert err.splitlines() == [
        "sealkit elf: 2 ELF files: memory seal yes 2, no 0, ignored 0, section-only 0; 0 errors"
    ]
    assert "no released glibc acts on GNU_PROPERTY_MEMORY_SEAL" in " ".join(out.split())
    code, out, err = _cli(sealkit_cli, "--require", "memory-seal", "--require", "nx", marked)
    assert code == 0, err
    code, out, err = _cli(sealkit_cli, "--require", "full-relro", marked, be32)
    assert code == 1
    assert err.strip().splitlines()[0] == (
        f"sealkit elf: requirement full-relro not met by 2 of 2 files ({marked}, {be32})"
    )
    readme = str(elf_tree / "sub" / "README")
    code, out, err = _cli(sealkit_cli, marked, readme)  # not an ELF file: skipped, not an error
    assert code == 0 and readme not in out and "1 skipped" in err
    code, out, err = _cli(sealkit_cli, readme)  # but nothing at all was found
    assert code == 1 and err.splitlines() == ["sealkit elf: no ELF file found (1 skipped: not ELF)"]
    code, out, err = _cli(sealkit_cli, "--require", "bogus", marked)
    assert code == 2 and len(err.strip().splitlines()) == 1
    code, out, err = _cli(sealkit_cli, "-r", readme, "--json")
    doc = json.loads(out)
    assert code == 1 and doc["files"] == []
    assert doc["skipped"] == [{"path": readme, "reason": "not an ELF file"}]

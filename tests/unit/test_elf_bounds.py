"""``sealkit elf`` and the shared ELF reader on hostile files (issue 13).

Every file here is one a user or another process can put in front of the
reader: the answers follow the loader (the last PT_GNU_STACK; program
headers only for the sealing columns), and every read and loop is bounded,
which each test checks in a child under a memory and CPU bound
(:func:`elf_craft.bounded`) and by counting the bytes the reader asks
``pread`` for.
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
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import sealkit
from sealkit._os import elf as elf_file
from sealkit.errors import ParseError
from sealkit.host import elf

from .elf_craft import (
    CLASS_IDS,
    CLASSES,
    GCC,
    MARKER_NOTE_S,
    OBJCOPY,
    PT_GNU_RELRO,
    PT_GNU_STACK,
    PT_NOTE,
    bounded,
    craft,
    gcc,
    gnu_note,
    marker_first,
    patched,
    pn_xnum_file,
    write,
)

SCHEMA = json.loads(
    (Path(sealkit.__file__).parent / "data" / "elf.schema.json").read_text(encoding="utf-8")
)
needs_gcc = pytest.mark.skipif(
    GCC is None or OBJCOPY is None, reason="gcc and objcopy are needed to build test binaries"
)
GIB4 = 4 << 30


def _counting(fn: Callable[..., Any], *args: Any) -> tuple[Any, int, int]:
    """``fn(*args)`` with every ``os.pread`` counted: (result or the
    exception, total bytes asked for, largest single request). A request
    over 64 MiB is refused outright, so an unbounded reader fails here
    instead of allocating gigabytes."""
    real = os.pread
    asked = [0, 0]

    def pread(fd: int, length: int, offset: int) -> bytes:
        asked[0] += length
        asked[1] = max(asked[1], length)
        if length > 64 << 20:
            raise AssertionError(f"pread of {length} bytes at {offset}")
        return real(fd, length, offset)

    os.pread = pread
    try:
        try:
            result: Any = fn(*args)
        except Exception as exc:
            result = exc
    finally:
        os.pread = real
    return result, asked[0], asked[1]


# --- NX: the last PT_GNU_STACK, as the kernel and glibc read it ---------------


@pytest.mark.parametrize(("elfclass", "little"), CLASSES, ids=CLASS_IDS)
def test_nx_follows_the_last_pt_gnu_stack(tmp_path: Path, elfclass: int, little: bool) -> None:
    note = [gnu_note([(3, b"")], elfclass, little)]
    hidden = elf.inspect(write(tmp_path, "hidden", craft(elfclass, little, note, stacks=[6, 7])))
    shown = elf.inspect(write(tmp_path, "shown", craft(elfclass, little, note, stacks=[7, 6])))
    assert (hidden.error, shown.error) == (None, None)
    assert hidden.nx is False  # RW first, RWX last: the stack is executable
    assert shown.nx is True


def _retype(data: bytes, index: int, p_type: int, p_flags: int) -> bytes:
    """Program header ``index`` of an ELF64-LE file becomes ``p_type`` with ``p_flags``."""
    phoff = struct.unpack_from("<Q", data, 0x20)[0]
    out = patched(data, phoff + 56 * index, "<I", p_type)
    return patched(out, phoff + 56 * index + 4, "<I", p_flags)


STACK_C = r"""
#include <stdio.h>
#include <string.h>
int main(void) {
    char line[512];
    FILE *f = fopen("/proc/self/maps", "r");
    while (fgets(line, sizeof line, f))
        if (strstr(line, "[stack]")) printf("%.4s\n", strchr(line, ' ') + 1);
    return 0;
}
"""


@needs_gcc
def test_nx_agrees_with_the_kernel_on_two_pt_gnu_stack_headers(tmp_path: Path) -> None:
    """Two PT_GNU_STACK headers in a real program: the kernel's
    load_elf_binary() takes the last one (its loop does not stop at the
    first), and so does sealkit; the program prints its own [stack]."""
    (tmp_path / "stack.c").write_text(STACK_C)
    data = Path(gcc(tmp_path, "stack", str(tmp_path / "stack.c"))).read_bytes()
    layout = elf_file.load_layout(str(tmp_path / "stack"))
    types = [s.type for s in layout.segments]
    stack = types.index(PT_GNU_STACK)
    before = types.index(PT_NOTE)  # ld puts the notes before PT_GNU_STACK ...
    after = types.index(PT_GNU_RELRO)  # ... and PT_GNU_RELRO after it
    assert before < stack < after
    cases = {
        "rwx-last": _retype(data, after, PT_GNU_STACK, 7),
        "rwx-first": _retype(data, before, PT_GNU_STACK, 7),
    }
    for name, blob in cases.items():
        path = write(tmp_path, name, blob)
        os.chmod(path, 0o755)
        run = subprocess.run([path], capture_output=True, text=True, check=True)
        executable = run.stdout.strip()[2] == "x"
        assert elf.inspect(path).nx is (not executable), (name, run.stdout)
    assert elf.inspect(str(tmp_path / "rwx-last")).nx is False


# --- PN_XNUM and file-controlled counts --------------------------------------


def test_pn_xnum_203_byte_file_is_bounded(tmp_path: Path) -> None:
    """e_phnum = PN_XNUM: the real count is section 0's sh_info. With 2^32-1
    there (and e_phentsize 0, so the table "fits"), pyelftools walked the
    same header four billion times; the reader answers at once."""
    hostile = pn_xnum_file(0xFFFFFFFF, phentsize=0, phoff=0)
    assert len(hostile) == 203
    path = write(tmp_path, "xnum", hostile)
    report, asked, _ = bounded(_counting, elf.inspect, path)
    assert report.error is not None and report.seal_marker is None
    assert "program header" in report.error
    assert asked <= 1 << 17
    raised, asked, _ = bounded(_counting, elf_file.load_layout, path)
    assert isinstance(raised, ParseError) and asked <= 1 << 17
    wide = write(tmp_path, "xnum56", pn_xnum_file(0xFFFFFFFF, phentsize=56))
    report, asked, _ = bounded(_counting, elf.inspect, wide)
    assert report.error is not None and asked <= 1 << 17


def test_pn_xnum_with_a_real_count_is_read(tmp_path: Path) -> None:
    path = write(tmp_path, "xnum1", pn_xnum_file(1, phentsize=56))
    layout = elf_file.load_layout(path)
    assert [(s.type, s.flags) for s in layout.segments] == [(PT_GNU_STACK, 6)]
    report = elf.inspect(path)
    assert report.error is None, report.error
    assert report.nx is True and report.seal_marker == "no"


def test_load_layout_of_a_sparse_4_gib_file_reads_little(tmp_path: Path) -> None:
    """The audit reads the program headers of every mapped file: e_phentsize
    0xffff and e_phnum 0xfffe claim a 4 GiB table inside a 4 GiB sparse file
    (e_phnum 0xffff would be PN_XNUM).
    The loader needs e_phentsize == sizeof(Elf64_Phdr) and at most 64 KiB of
    headers (fs/binfmt_elf.c load_elf_phdrs); so does the reader."""
    data = craft(64, True, [gnu_note([(3, b"")], 64, True)])
    data = patched(patched(data, 0x36, "<H", 0xFFFF), 0x38, "<H", 0xFFFE)
    path = tmp_path / "sparse"
    with open(path, "wb") as fh:
        fh.write(data)
        fh.truncate(GIB4)
    raised, asked, largest = bounded(_counting, elf_file.load_layout, str(path))
    assert isinstance(raised, ParseError), raised
    assert asked <= 1 << 17 and largest <= 1 << 16
    report, asked, _ = bounded(_counting, elf.inspect, str(path))
    assert report.error is not None and asked <= 1 << 17


def test_huge_claims_in_a_sparse_file_are_bounded(tmp_path: Path) -> None:
    """A real binary whose dynamic segment and section headers claim
    gigabytes, inside a sparse 4 GiB file: the sealing columns still come
    from the program headers; nothing reads more than the reader's bounds."""
    if GCC is None:
        pytest.skip("gcc is needed to build the test binary")
    (tmp_path / "stack.c").write_text(STACK_C)
    base = Path(gcc(tmp_path, "base", str(tmp_path / "stack.c"))).read_bytes()
    layout = elf_file.load_layout(str(tmp_path / "base"))
    phoff = struct.unpack_from("<Q", base, 0x20)[0]
    dyn = next(i for i, s in enumerate(layout.segments) if s.type == 2)
    huge = patched(base, phoff + 56 * dyn + 32, "<Q", 3 << 30)  # PT_DYNAMIC p_filesz
    huge = patched(huge, 0x3C, "<H", 0)  # e_shnum 0: the count is section 0's sh_size
    shoff = struct.unpack_from("<Q", huge, 0x28)[0]
    huge = patched(huge, shoff + 32, "<Q", 1 << 40)  # section 0's sh_size
    path = tmp_path / "sparse"
    with open(path, "wb") as fh:
        fh.write(huge)
        fh.truncate(GIB4)
    report, asked, _ = bounded(_counting, elf.inspect, str(path))
    assert asked <= elf_file.MAX_READ
    assert report.error is not None and "PT_DYNAMIC" in report.error


# --- object files -------------------------------------------------------------


@needs_gcc
def test_object_files_take_nx_from_note_gnu_stack(tmp_path: Path) -> None:
    (tmp_path / "f.c").write_text("int f(int x) { return x + 1; }\n")
    (tmp_path / "bare.s").write_text("\t.text\n\t.globl g\ng:\n\tret\n")
    assert GCC is not None
    for name, args in {
        "plain.o": [],
        "exec.o": ["-Wa,--execstack"],
    }.items():
        subprocess.run([GCC, "-c", "-o", str(tmp_path / name), *args, str(tmp_path / "f.c")],
                       check=True, capture_output=True)  # fmt: skip
    subprocess.run([GCC, "-c", "-o", str(tmp_path / "bare.o"), str(tmp_path / "bare.s")],
                   check=True, capture_output=True)  # fmt: skip
    plain, execstack, bare = (
        elf.inspect(str(tmp_path / n)) for n in ("plain.o", "exec.o", "bare.o")
    )
    assert (plain.error, execstack.error, bare.error) == (None, None, None)
    assert plain.nx is True  # .note.GNU-stack without SHF_EXECINSTR
    assert execstack.nx is False  # .note.GNU-stack with SHF_EXECINSTR
    assert bare.nx is False  # no .note.GNU-stack: ld gives the program an executable stack
    for report in (plain, execstack, bare):
        assert report.pie == "rel"
        assert report.relro is None and "relro" in report.not_applicable
        assert report.bind_now is None and "bind_now" in report.not_applicable
        doc = report.as_dict()
        assert doc["relro"] is None and "relro" in doc["not_applicable"]
        jsonschema.validate(
            {"schema": "sealkit.elf/2", "note": "", "files": [doc], "skipped": [],
             "requirements": [], "summary": _summary(1)},
            SCHEMA,
        )  # fmt: skip


def _summary(files: int) -> dict[str, Any]:
    return {
        "elf_files": files, "errors": 0, "skipped": 0,
        "memory_seal": {"yes": 0, "no": files, "ignored": 0, "section-only": 0},
    }  # fmt: skip


# --- damaged section headers: the loader does not read them -------------------

HELLO = r"""
#include <stdio.h>
#include <string.h>
int main(int argc, char **argv) {
    char buf[32];
    strcpy(buf, argc > 5 ? argv[1] : "ok");
    printf("%s\n", buf);
    return 0;
}
"""
LOADER_COLUMNS = ("seal_marker", "relro", "bind_now", "pie", "nx", "ibt", "shstk", "textrel",
                  "rpath", "runpath", "canary", "fortified", "fortifiable")  # fmt: skip


def _shdr_offsets(data: bytes) -> tuple[int, int, int]:
    shoff = struct.unpack_from("<Q", data, 0x28)[0]
    shnum, shstrndx = struct.unpack_from("<HH", data, 0x3C)
    return shoff, shnum, shstrndx


def _sections_of_type(data: bytes, sh_type: int) -> list[int]:
    shoff, shnum, _ = _shdr_offsets(data)
    return [
        shoff + 64 * i
        for i in range(shnum)
        if struct.unpack_from("<I", data, shoff + 64 * i + 4)[0] == sh_type
    ]


@needs_gcc
def test_damaged_section_headers_keep_the_loader_columns(tmp_path: Path) -> None:
    (tmp_path / "hello.c").write_text(HELLO)
    (tmp_path / "note.s").write_text(MARKER_NOTE_S)
    good = gcc(tmp_path, "good", "-O2", "-D_FORTIFY_SOURCE=2", "-fstack-protector-strong",
               "-Wl,-z,now", str(tmp_path / "hello.c"), str(tmp_path / "note.s"))  # fmt: skip
    marker_first(good, tmp_path)  # the marker, where the loader's walk reaches it
    data = Path(good).read_bytes()
    _, shnum, _ = _shdr_offsets(data)
    entsize_zero = data
    for offset in _sections_of_type(data, 11) + _sections_of_type(data, 2):  # DYNSYM SYMTAB
        entsize_zero = patched(entsize_zero, offset + 56, "<Q", 0)
    damaged = {
        "shstrndx-out-of-range": patched(data, 0x3E, "<H", shnum + 7),
        "sh-entsize-0": entsize_zero,
        "shoff-past-the-end": patched(data, 0x28, "<Q", len(data) + 4096),
        "shentsize-0": patched(data, 0x3A, "<H", 0),
    }
    expected = elf.inspect(good)
    assert expected.error is None and expected.canary is True and expected.fortified
    assert expected.seal_marker == "yes" and expected.relro == "full"
    assert expected.stripped is False
    for name, blob in damaged.items():
        path = write(tmp_path, name, blob)
        os.chmod(path, 0o755)
        run = subprocess.run([path], capture_output=True, text=True, check=False)
        assert (run.returncode, run.stdout) == (0, "ok\n"), name  # the loader accepts it
        report = elf.inspect(path)
        assert report.error is None, (name, report.error)
        got = {c: getattr(report, c) for c in LOADER_COLUMNS}
        assert got == {c: getattr(expected, c) for c in LOADER_COLUMNS}, name
        if name in ("shoff-past-the-end", "shentsize-0"):
            # what only the section headers say is unknown, and says why
            assert report.stripped is None
            assert "stripped" in dict(report.unknown), report.unknown
            assert "section header" in dict(report.unknown)["stripped"]
        else:
            assert report.stripped is False, name


# --- fuzzing the reader with generated headers --------------------------------

INTERESTING = [0, 1, 2, 3, 4, 7, 8, 16, 56, 64, 0x7F, 0xFF00, 0xFFFF, 0x10000,
               0x7FFFFFFF, 0xFFFFFFFF, 1 << 32, 1 << 40, (1 << 63) - 1, (1 << 64) - 1]  # fmt: skip


def _regions(data: bytes) -> list[tuple[int, int]]:
    """Where the reader looks: ELF header, program headers, section headers,
    the dynamic and property segments (from pyelftools, as a second opinion)."""
    import io

    from elftools.elf.elffile import ELFFile

    elf_ = ELFFile(io.BytesIO(data))
    h = elf_.header
    regions = [(16, h["e_ehsize"]), (h["e_phoff"], h["e_phnum"] * h["e_phentsize"])]
    if h["e_shoff"]:
        regions.append((h["e_shoff"], h["e_shnum"] * h["e_shentsize"]))
    for seg in elf_.iter_segments():
        if seg["p_type"] in ("PT_DYNAMIC", "PT_GNU_PROPERTY", "PT_NOTE"):
            regions.append((seg["p_offset"], seg["p_filesz"]))
    return [(start, size) for start, size in regions if size > 0]


def _bases() -> list[bytes]:
    bases = [
        craft(c, le, [gnu_note([(3, b""), (0xC0000002, b"\3\0\0\0")], c, le)], relro=True,
              dyn_flags_1=0x08000001)
        for c, le in CLASSES
    ]  # fmt: skip
    for binary in ("/bin/true", "/usr/lib/x86_64-linux-gnu/crt1.o"):
        if os.path.exists(binary):
            bases.append(Path(binary).read_bytes())
    return bases


BASES = _bases()
REGIONS = [_regions(b) for b in BASES]


@st.composite
def hostile_files(draw: st.DrawFn) -> tuple[bytes, bool]:
    index = draw(st.integers(0, len(BASES) - 1))
    data = bytearray(BASES[index])
    little = data[5] == 1
    for _ in range(draw(st.integers(1, 6))):
        start, size = draw(st.sampled_from(REGIONS[index]))
        offset = start + 2 * draw(st.integers(0, max(0, size // 2 - 1)))
        width = draw(st.sampled_from([2, 4, 8]))
        if offset + width > len(data):
            continue
        value = draw(st.one_of(st.sampled_from(INTERESTING), st.integers(0, (1 << 64) - 1)))
        value &= (1 << (8 * width)) - 1
        data[offset : offset + width] = value.to_bytes(width, "little" if little else "big")
    return bytes(data), draw(st.booleans())


def _read_everything(path: str) -> tuple[Any, Any]:
    report = elf.inspect(path)
    assert isinstance(report, elf.ElfReport)
    report.as_dict()
    try:
        layout: Any = elf_file.load_layout(path)
    except ParseError as exc:
        layout = exc
    return report, layout


@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(hostile_files())
def test_generated_headers_cost_little(tmp_path_factory: pytest.TempPathFactory,
                                       case: tuple[bytes, bool]) -> None:  # fmt: skip
    data, sparse = case
    path = tmp_path_factory.mktemp("fuzz") / "f"
    with open(path, "wb") as fh:
        fh.write(data)
        if sparse:
            fh.truncate(GIB4)
    result, asked, largest = bounded(
        _counting, _read_everything, str(path), cpu_seconds=10, memory=256 << 20
    )
    assert not isinstance(result, BaseException), repr(result)
    assert asked <= elf_file.MAX_READ and largest <= elf_file.MAX_READ

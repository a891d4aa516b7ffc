"""The C smaps scanner and maps --json writer against the Python ones.

``scan_smaps`` hands well-formed smaps text to the C extension and keeps
the regular-expression scanner for a build without a compiler and for any
text the C scanner does not take (it returns None, never a different
answer). Both must give identical columns, sealed indices and errors: on
the real smaps of several processes, on a process whose mapped files have
hostile names (newlines, bytes that are not UTF-8, " (deleted)", blanks
and Unicode white space), on crafted text, and on generated text. The same for ``sealkit maps --json``'s region lines
(``_fastsys.maps_json_rows`` against the Python writer): byte for byte.
"""

from __future__ import annotations

import contextlib
import json
import mmap
import os
import random
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sealkit._os import procfs
from sealkit._os.procfs import ProcessDir, Vma, scan_smaps
from sealkit.errors import AccessDeniedError, ParseError, ProcessGoneError
from sealkit.host import maps as maps_module
from sealkit.host.maps import MappedRegion, ProcessMaps, maps_json, process_maps
from tests.conftest import python_env

fastsys = pytest.importorskip(
    "sealkit._os._fastsys", reason="the C extension was not built (no compiler at install)"
)


@contextlib.contextmanager
def _python_only() -> Iterator[None]:
    saved = procfs._FORCE_PYTHON
    procfs._FORCE_PYTHON = True
    try:
        yield
    finally:
        procfs._FORCE_PYTHON = saved


def _answer(data: bytes, every: bool) -> object:
    """Everything scan_smaps says about ``data``: counts, sealed indices,
    every column, or the error it raises."""
    try:
        count, vmas = scan_smaps(data, "src", every=every)
        if not len(vmas):
            return count, vmas.sealed_indices, ()
        columns = vmas.columns()
        built = [tuple(vmas[i]) for i in range(len(vmas))]
        return count, vmas.sealed_indices, tuple(list(c) for c in columns), built
    except ParseError as exc:
        return "ParseError", str(exc)


def _layout_alike(data: bytes, chunks: tuple[int, ...] = (7, 65536)) -> None:
    """_fastsys.read_smaps_layout, reading ``data`` in pieces of each size,
    keeps text that smaps_columns reads as it reads all of ``data``, or,
    exactly where smaps_columns refuses ``data``, refuses it (status 3)."""
    full = fastsys.smaps_columns(data)
    fd = os.memfd_create("smaps")
    try:
        os.write(fd, data)
        for chunk in chunks:
            os.lseek(fd, 0, os.SEEK_SET)
            first = os.read(fd, chunk)
            if not first:
                continue  # the first read stays the caller's: nothing to keep
            kept, status = fastsys.read_smaps_layout(fd, chunk, 0, -1.0, 64, first)
            os.lseek(fd, len(first), os.SEEK_SET)
            again = fastsys.read_smaps_layout(fd, chunk, 0, -1.0, 64, first, True)
            if full is None:
                assert (kept, status) == (None, 3)
                assert again == (None, 3, 0, False)
            else:
                assert status == 0 and kept is not None
                assert len(kept) <= len(data) + 1
                assert fastsys.smaps_columns(kept) == full
                counted = fastsys.smaps_columns(data, False)
                assert fastsys.smaps_columns(kept, False) == counted
                # counted on the way: what the scan without columns says
                assert again == (kept, 0, counted[0], bool(counted[1]))
    finally:
        os.close(fd)


def _same(data: bytes) -> object:
    _layout_alike(data)
    for every in (True, False):
        fast = _answer(data, every)
        with _python_only():
            slow = _answer(data, every)
        assert fast == slow
    return fast


def _counted_alike(data: bytes) -> object:
    """The C scanner's count mode takes what its columns mode takes, and
    says the same (how many mappings, which are sealed)."""
    full = fastsys.smaps_columns(data)
    counted = fastsys.smaps_columns(data, False)
    when_sealed = fastsys.smaps_columns(data, 2)
    assert (counted is None) == (full is None) == (when_sealed is None)
    if full is not None:
        assert counted == (len(full[0]), full[8])
        # mode 2: the columns once a mapping is sealed, else only the count
        assert when_sealed == (full if full[8] else (len(full[0]), []))
    return full


def _real(data: bytes) -> None:
    """Real text: the C scanner takes it, and agrees with the Python one."""
    assert _counted_alike(data) is not None or not data.strip()
    _same(data)
    _layout_alike(data, (1, 13, 4096))


def test_the_c_scanner_is_in_use() -> None:
    assert procfs._smaps_columns is fastsys.smaps_columns
    with ProcessDir("self") as proc:
        data = proc.read("smaps")
    found = fastsys.smaps_columns(data)
    assert found is not None
    assert len(found[0]) == data.count(b"\nVmFlags:")


@contextlib.contextmanager
def _readable_pids() -> Iterator[list[str]]:
    """The pid "self", four processes of our own (so that five address spaces are
    readable on any machine: the first pids are often kernel threads, with
    empty smaps, or out of reach in a container), then up to 40 others."""
    code = "import sys; print('ready', flush=True); sys.stdin.read()"
    children = [
        subprocess.Popen(
            [sys.executable, "-c", code], stdin=subprocess.PIPE, stdout=subprocess.PIPE
        )
        for _ in range(4)
    ]
    try:
        for child in children:
            assert child.stdout is not None and child.stdout.readline() == b"ready\n"
        others = sorted((n for n in os.listdir("/proc") if n.isdigit()), key=int)[:40]
        yield ["self", *(str(c.pid) for c in children), *others]
    finally:
        for child in children:
            child.communicate(timeout=60)


def test_real_processes_agree() -> None:
    checked = 0
    with _readable_pids() as pids:
        for name in pids:
            try:
                with ProcessDir(name) as proc:
                    data = proc.read("smaps")
            except (ProcessGoneError, AccessDeniedError):
                continue
            if data:
                _real(data)
                checked += 1
    assert checked >= 5


def test_a_layout_read_counts_what_the_scan_counts() -> None:
    """ProcessDir.smaps(layout=True) learns, in its C read, what
    scan_smaps says of a process without columns (the sweep then scans
    nothing more of a process without seals): on real processes, one of
    them with sealed memory."""
    code = (
        "import sys, sealkit; keep = sealkit.freeze(b'x' * 100)\n"
        "print('ready', flush=True); sys.stdin.read()"
    )
    sealer = subprocess.Popen(
        [sys.executable, "-c", code], stdin=subprocess.PIPE, stdout=subprocess.PIPE
    )
    seen = set()
    try:
        assert sealer.stdout is not None and sealer.stdout.readline() == b"ready\n"
        with _readable_pids() as pids:
            for name in [*pids, str(sealer.pid)]:
                try:
                    with ProcessDir(name) as proc:
                        data = proc.smaps(proc.status().state, layout=True)
                        counted = proc.counted
                except (ProcessGoneError, AccessDeniedError):
                    continue
                if not data:
                    continue
                count, vmas = scan_smaps(data)
                assert counted == (count, bool(vmas.sealed_indices)), name
                seen.add(counted[1])
    finally:
        sealer.communicate(timeout=60)
    assert seen == {False, True}


HOSTILE = [
    "new\nline",
    "x (deleted)",
    "  two leading blanks",
    "\ttab first",
    "trailing blank ",
    "\x1cfile separator",
    "\u2028line separator",
    "\u3000ideographic space",
    "\x85next line",
    "VmFlags: rd sl ",
    "7f0000000000-7f0000001000 r--p 00000000 00:00 0",
    "back\\slash",
]


def test_hostile_names_agree(tmp_path: Path) -> None:
    names: list[bytes] = [os.fsencode(tmp_path / n) for n in HOSTILE]
    names.append(os.fsencode(tmp_path) + b"/not utf-8 \xff\xfe\xc3")
    names.append(os.fsencode(tmp_path) + b"/\xa0 lone byte after a blank")
    gone = os.fsencode(tmp_path) + b"/deleted for real"
    names.append(gone)
    maps = []
    try:
        for name in names:
            fd = os.open(name, os.O_RDWR | os.O_CREAT, 0o600)
            try:
                os.write(fd, b"x" * mmap.PAGESIZE)
                maps.append(mmap.mmap(fd, mmap.PAGESIZE, prot=mmap.PROT_READ))
            finally:
                os.close(fd)
        os.unlink(gone)
        with ProcessDir("self") as proc:
            data = proc.read("smaps")
        _real(data)
        _, vmas = scan_smaps(data, every=True)
        paths = set(vmas.columns().path)
        assert os.fsdecode(gone) + " (deleted)" in paths
        assert os.fsdecode(names[1]) in paths  # a live file whose name ends " (deleted)"
        assert os.fsdecode(names[-3]) in paths  # not UTF-8: surrogate escapes, as parse_smaps
        # the kernel escapes a newline in a name (seq_file_path(..., "\n"))
        assert str(tmp_path / "new\\012line") in paths
    finally:
        for m in maps:
            m.close()


HEADER = "7f0000000000-7f0000002000 r--p 00000000 fe:00 1234                       /lib/x.so"


def _vma(header: str = HEADER, flags: str = "rd mr mw me sl ") -> str:
    return f"{header}\nSize:                  8 kB\nVmFlags: {flags}\n"


@pytest.mark.parametrize(
    ("text", "c_takes_it"),
    [
        pytest.param(_vma(), True, id="one sealed"),
        pytest.param(_vma() + _vma(flags="rd "), True, id="two"),
        pytest.param(_vma().rstrip("\n"), True, id="no final newline"),
        pytest.param(_vma(flags="rd sl"), True, id="trailing blank trimmed"),
        pytest.param(_vma(flags=""), True, id="no flags"),
        pytest.param(_vma(HEADER.replace("/lib", "\u2028/lib")), True, id="unicode blank"),
        pytest.param(_vma("7f00-7f01 r--p 0 00:00 0"), True, id="no name"),
        pytest.param(_vma("7f00-7f01 r--p 0 00:00 0 "), True, id="no name, a blank"),
        pytest.param(_vma("7f00-7f01 r--p 0 00:00 0\t\t/x"), True, id="tab before the name"),
        pytest.param(_vma() + "\n", False, id="blank line at the end"),
        pytest.param(_vma() + "Rss: 4 kB\n", False, id="a field after the last VmFlags"),
        pytest.param(_vma() + "garbage\n" + _vma(), False, id="bad header later"),
        pytest.param(_vma("7f00-7f01 r--p 0 00:00 12x /x"), False, id="junk after the inode"),
        pytest.param(_vma("7F00-7F01 r--p 0 00:00 0"), False, id="upper-case hex"),
        pytest.param(_vma("7f02-7f01 r--p 0 00:00 0"), False, id="ends before it starts"),
        pytest.param(_vma(f"{'0' * 17}-7f01 r--p 0 00:00 0"), False, id="17 hex digits"),
        pytest.param(_vma(f"7f00-7f01 r--p 0 00:00 {'9' * 20}"), False, id="20-digit inode"),
        pytest.param(_vma("7f00-7f01 rw-x 0 00:00 0"), False, id="bad permissions"),
        pytest.param("VmFlags: sl \n" + _vma(), False, id="a field first"),
        pytest.param(HEADER + "\nSize: 8 kB\n", False, id="no VmFlags"),
        pytest.param(HEADER, False, id="one line, no newline"),
        pytest.param("", False, id="empty"),
    ],
)
def test_crafted_text_agrees(text: str, c_takes_it: bool) -> None:
    data = text.encode()
    assert (_counted_alike(data) is not None) is c_takes_it
    _same(data)


def test_not_bytes_is_refused() -> None:
    with pytest.raises(TypeError):
        fastsys.smaps_columns("text")  # type: ignore[arg-type]


_flag = st.sampled_from(
    ["rd", "wr", "ex", "mr", "mw", "me", "gd", "sl", "\xff", "s\x1cl", "ssl", "sl", "s", "slV"]
)
# lines between a header and its VmFlags line, some with the 'V' the C
# scanner looks for first, or with most of the tag
_counters = st.sampled_from(
    [b"Rss: 4 kB\n", b"V: 1 kB\n", b"VmFlag: x\n", b"xVmFlags: y\n", b"Rss: 4 kB\nV"]
)
_name = st.one_of(
    st.just(b""),
    st.sampled_from(
        [b"[heap]", b"[vdso]", b"/usr/lib/libc.so.6", b"/tmp/a sl b", b"/x (deleted)", b"/VmFlags:"]
    ),
    st.binary(max_size=12).map(lambda b: b.replace(b"\n", b"")),
    st.text(max_size=8).map(lambda s: s.replace("\n", "").encode("utf-8", "surrogateescape")),
)


@st.composite
def _smaps(draw: st.DrawFn) -> bytes:
    out = []
    addr = 0x7F0000000000
    for _ in range(draw(st.integers(0, 6))):
        size = draw(st.integers(-1, 4)) * 4096
        perms = draw(st.sampled_from(["r--p", "rw-s", "---p", "r-xp", "rwxq"]))
        name = draw(_name)
        blanks = draw(st.sampled_from([b"", b" ", b"     ", b"\t", b" \t "]))
        header = f"{addr:x}-{addr + size:x} {perms} {0:08x} fe:00 {len(name)}".encode()
        flags = "".join(f + " " for f in draw(st.lists(_flag, max_size=4)))
        if draw(st.booleans()):
            flags = flags.rstrip(" ")  # a capture whose trailing blank was trimmed
        counters = draw(_counters)
        out.append(
            header + blanks + name + b"\n" + counters + b"VmFlags: " + flags.encode() + b"\n"
        )
        addr += max(size, 0)
    text = b"".join(out)
    return text + draw(st.sampled_from([b"", b"\n", b" ", b"Rss: 1 kB\n"]))


@settings(max_examples=300, deadline=None)
@given(_smaps())
def test_generated_text_agrees(data: bytes) -> None:
    _counted_alike(data)
    _same(data)


# --- maps --json: the C row writer against the Python one -------------------------------


def _both_writers(maps: ProcessMaps, sealed_only: bool) -> str:
    fast = maps_json(maps, sealed_only)
    saved = maps_module._FORCE_PYTHON
    maps_module._FORCE_PYTHON = True
    try:
        slow = maps_json(maps, sealed_only)
    finally:
        maps_module._FORCE_PYTHON = saved
    assert fast == slow
    return fast


def test_maps_json_writers_agree_on_real_processes(tmp_path: Path) -> None:
    fd = os.open(os.fsencode(tmp_path) + b"/odd \xff name\n", os.O_RDWR | os.O_CREAT, 0o600)
    try:
        os.write(fd, b"x" * mmap.PAGESIZE)
        held = mmap.mmap(fd, mmap.PAGESIZE, prot=mmap.PROT_READ)
    finally:
        os.close(fd)
    try:
        checked = 0
        with _readable_pids() as pids:
            for pid in pids[:25]:
                try:
                    maps = process_maps(pid)
                except (ProcessGoneError, AccessDeniedError):
                    continue
                assert isinstance(maps.regions, maps_module.MappedRegions)
                c = maps.regions.columns
                taken = fastsys.maps_json_rows(
                    c.start, c.end, c.perms, c.offset, c.inode, c.path, c.vmflags,
                    maps.regions.kinds, False, maps_module._text_of,
                )  # fmt: skip
                assert taken is not None  # real columns are the C writer's
                for sealed_only in (False, True):
                    text = _both_writers(maps, sealed_only)
                    if not sealed_only:
                        assert json.loads(text) == maps.as_dict()
                checked += 1
        assert checked >= 3
    finally:
        held.close()


def _region(start: int, end: int, flags: frozenset[str] | None, kind: str = "anon") -> MappedRegion:
    return MappedRegion(Vma(start, end, "rw-p", 0, "00:00", 0, "", flags), kind)


@pytest.mark.parametrize(
    "regions",
    [
        pytest.param([], id="none"),
        pytest.param(
            [_region(0, 4096, frozenset({"rd", "sl"})), _region(4096, 8192, None)],
            id="address 0, unknown flags",
        ),
        pytest.param([_region(2**64 - 8192, 2**64 - 4096, frozenset())], id="top of 64 bits"),
        pytest.param([_region(2**70, 2**70 + 4096, frozenset({"sl"}))], id="wider than 64 bits"),
        pytest.param([_region(True, 4096, frozenset({"sl"}))], id="a bool"),  # type: ignore[arg-type]
        pytest.param([_region(4096, 8192, frozenset(), "not a kind \u00e9")], id="odd kind"),
        pytest.param(
            [_region(4096, 8192, frozenset(), ["x"])],  # type: ignore[arg-type]
            id="unhashable kind",
        ),
        pytest.param(
            [_region(1, 2**64 - 1, frozenset({"sl"})), _region(0, 2**63, frozenset({"sl"}))],
            id="sealed bytes past 64 bits",  # the sum, not any one number, is too wide
        ),
    ],
)
def test_maps_json_writers_agree_on_crafted_regions(regions: list[MappedRegion]) -> None:
    maps = ProcessMaps(1, "x", regions)
    for sealed_only in (False, True):
        text = _both_writers(maps, sealed_only)
        assert json.loads(text)["mappings"] == len(regions)


def test_long_lines_and_many_rows_agree() -> None:
    """The C scanner steps forward through the text whatever is in it: a
    1 MiB name, a 1 MiB VmFlags line and 50,000 rows are read in one pass
    each, with the same answers as the Python scanner."""
    long_name = _vma(HEADER.replace("/lib/x.so", "/" + "n" * (1 << 20)))
    long_flags = _vma(flags="sl " * (1 << 18))
    rows = "".join(
        _vma(f"{0x1000 * k:x}-{0x1000 * (k + 1):x} r--p 0 00:00 0", "rd sl " if k % 2 else "rd ")
        for k in range(50_000)
    )
    for text in (long_name, long_flags, rows):
        data = text.encode()
        assert _counted_alike(data) is not None
        _same(data)
    found = fastsys.smaps_columns(rows.encode())
    assert found is not None and len(found[0]) == 50_000 and len(found[8]) == 25_000


# --- the read loop: _fastsys.read_fd against the Python loop ---------------------------


def _read_both(path: str, limits: procfs.Limits) -> object:
    """What _read_verified says for ``path`` (an address-space file's read:
    verify=True) through the C loop and the Python loop: the same."""
    answers = []
    for force in (False, True):
        saved = procfs._FORCE_PYTHON
        procfs._FORCE_PYTHON = force
        try:
            answers.append(procfs._read_verified(path, "42", None, limits, verify=True))
        except (procfs.CutShortError, OSError) as exc:
            answers.append((type(exc).__name__, str(exc)))
        finally:
            procfs._FORCE_PYTHON = saved
    assert answers[0] == answers[1]
    return answers[0]


@pytest.mark.parametrize("size", [0, 1, 65535, 65536, 65537, 5 * 2**20 + 3])
def test_read_fd_reads_what_the_python_loop_reads(tmp_path: Path, size: int) -> None:
    content = os.urandom(size)
    path = tmp_path / "f"
    path.write_bytes(content)
    assert _read_both(str(path), procfs.Limits()) == (content, size > 0)


def test_read_fd_keeps_the_bounds(tmp_path: Path) -> None:
    path = tmp_path / "smaps"
    path.write_bytes(b"x" * (3 * 2**20))
    past = time.monotonic() - 1
    assert _read_both(str(path), procfs.Limits(size=1000)) == (
        "CutShortError", "process 42: cut short (its smaps text is larger than 1000 bytes)"
    )  # fmt: skip
    assert _read_both(str(path), procfs.Limits(size=2 << 20)) == (
        "CutShortError", "process 42: cut short (its smaps text is larger than 2 MiB)"
    )  # fmt: skip
    assert _read_both(str(path), procfs.Limits(past, "its time budget ran out", None)) == (
        "CutShortError", "process 42: cut short (its time budget ran out)"
    )  # fmt: skip
    # within the bounds: all of it
    assert _read_both(str(path), procfs.Limits(time.monotonic() + 60, "", 4 << 20))[0] == (
        b"x" * (3 * 2**20)
    )  # type: ignore[index]
    assert _read_both(str(tmp_path), procfs.Limits())[0] == "IsADirectoryError"  # type: ignore[index]


def test_read_fd_refuses_bad_arguments() -> None:
    for args in ((0, 0, 0, -1.0, 64), (0, 4096, -1, -1.0, 64), (0, 4096, 0, -1.0, 0)):
        with pytest.raises(ValueError):
            fastsys.read_fd(*args, b"")
    with pytest.raises(ValueError):
        fastsys.read_fd(0, 4096, 0, -1.0, 64, bytes(33 << 20))  # a first piece that large
    with pytest.raises(OSError):
        fastsys.read_fd(-1, 4096, 0, -1.0, 64, b"")  # EBADF


def test_read_fd_without_64_mib_of_address_space(tmp_path: Path) -> None:
    """Where 64 MiB of address space is refused (strict overcommit, ulimit
    -v), read_fd starts small and grows: the read succeeds all the same."""
    path = tmp_path / "f"
    content = os.urandom(3 << 20)
    path.write_bytes(content)
    code = f"""
import os, resource
from sealkit._os import _fastsys
with open("/proc/self/statm") as fh:
    used = int(fh.read().split()[0]) * os.sysconf("SC_PAGESIZE")
resource.setrlimit(resource.RLIMIT_AS, (used + (40 << 20),) * 2)
try:
    bytearray(64 << 20)
except MemoryError:
    pass
else:
    raise SystemExit("the limit did not bite")
fd = os.open({str(path)!r}, os.O_RDONLY)
first = os.read(fd, 65536)
data, stop = _fastsys.read_fd(fd, 65536, 0, -1.0, 64, first)
assert stop == 0 and data == open({str(path)!r}, "rb").read(), (stop, len(data or b""))
print("ok")
"""
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=False
    )
    assert (done.returncode, done.stdout.strip()) == (0, "ok"), done.stderr


def test_read_fd_stops_at_its_size_limit_within_that_much_memory() -> None:
    """A read past its size limit stops with status 1 (the Python loop's
    one-line "larger than" error), never with a MemoryError from a buffer
    grown past what the limit needs: with 64 MiB allowed and room for 100
    MiB more, doubling the buffer to 128 MiB would be refused."""
    code = """
import os, resource
from sealkit._os import _fastsys
with open("/proc/self/statm") as fh:
    used = int(fh.read().split()[0]) * os.sysconf("SC_PAGESIZE")
resource.setrlimit(resource.RLIMIT_AS, (used + (100 << 20),) * 2)
fd = os.open("/dev/zero", os.O_RDONLY)
first = os.read(fd, 65536)
data, stop = _fastsys.read_fd(fd, 65536, 64 << 20, -1.0, 64, first)
assert (data, stop) == (None, 1), stop
print("ok")
"""
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=False
    )
    assert (done.returncode, done.stdout.strip()) == (0, "ok"), done.stderr


_MUTATING_TEXT_OF = r"""
import sys
from sealkit._os import _fastsys

start, end, perms, offset, inode = [0, 4096], [4096, 8192], ["r--p", "r--p"], [0, 0], [0, 0]
path = ["a", "b"]
# distinct sets held by the list alone: replacing them frees them
flags = [frozenset({"rd", "sl", str(k)}) for k in range(2)]
kinds = ["anon", "anon"]


def text_of(kind, value):
    if kind == 0 and len(kinds) == 2:
        flags[:] = [frozenset({"x"}) for _ in flags]  # frees the row's flag sets
        kinds.extend(["guard"] * 10_000)  # moves the list's items elsewhere
        del kinds[2:]
    if kind == 2:
        return '"' + ",".join(sorted(value)) + '"'
    return '"' + str(value) + '"'


found = _fastsys.maps_json_rows(start, end, perms, offset, inode, path, flags, kinds, False, text_of)
sys.stdout.write(found[0])
"""


def test_maps_json_rows_survives_a_text_of_that_changes_the_columns() -> None:
    """text_of is Python code: it may replace a column's items (freeing
    them) or move a list's storage while a row is being written. The C
    writer must hold what a row uses from before any of it runs, and look at
    the columns afresh for the next row, never read freed memory: run under
    the debug allocator, which fills freed memory, a borrowed item is a
    crash. Each row is whole: the first as the columns were when it began,
    the second as text_of left them."""
    done = subprocess.run(
        [sys.executable, "-c", _MUTATING_TEXT_OF],
        env={**os.environ, "PYTHONMALLOC": "debug"},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    rows = done.stdout.split(",\n  ")
    assert len(rows) == 2
    assert '"sealed": true' in rows[0] and '"vmflags": "0,rd,sl"' in rows[0]
    assert '"sealed": false' in rows[1] and '"vmflags": "x"' in rows[1]
    assert all('"kind": "anon"' in row for row in rows)


_number = st.one_of(
    st.integers(0, 2**16),
    st.sampled_from([2**47, 2**63 - 1, 2**63, 2**64 - 1, 2**64, -1, 2**70]),
)
_flagsets = st.one_of(
    st.none(), st.frozensets(st.sampled_from(["rd", "sl", "wr", "\xff", "\udcff"]))
)


@st.composite
def _regions(draw: st.DrawFn) -> list[MappedRegion]:
    out = []
    for _ in range(draw(st.integers(0, 5))):
        vma = Vma(
            draw(_number), draw(_number), draw(st.sampled_from(["r--p", "rw-s", "\u00e9"])),
            draw(_number), "00:00", draw(_number),
            draw(st.sampled_from(["", "/x", "a\nb", "\udcff", "\u2028y", "[heap]"])),
            draw(_flagsets),
        )  # fmt: skip
        out.append(MappedRegion(vma, draw(st.sampled_from(sorted(maps_module._KINDS)))))
    return out


@settings(max_examples=300, deadline=None)
@given(_regions(), st.booleans())
def test_generated_regions_agree(regions: list[MappedRegion], sealed_only: bool) -> None:
    """Any columns, through both writers: the same text, or the same error
    (numbers past 64 bits, alone or summed, are the Python writer's)."""
    maps = ProcessMaps(1, "x", regions)
    try:
        fast: object = maps_json(maps, sealed_only)
    except Exception as exc:  # compared with the Python writer's below
        fast = (type(exc), str(exc))
    saved = maps_module._FORCE_PYTHON
    maps_module._FORCE_PYTHON = True
    try:
        slow: object = maps_json(maps, sealed_only)
    except Exception as exc:
        slow = (type(exc), str(exc))
    finally:
        maps_module._FORCE_PYTHON = saved
    assert fast == slow


def test_real_text_cut_and_mutated_agrees() -> None:
    """Real smaps text cut at every byte of its first mappings (a read that
    stopped anywhere) and changed at random places (seeded): the C scanner
    takes it and agrees, or refuses it and the Python scanner answers."""
    with ProcessDir("self") as proc:
        data = proc.read("smaps")
    head = data[:3000]
    for cut in range(len(head) + 1):
        _same(head[:cut])
        _counted_alike(head[:cut])
    rng = random.Random(1)
    pieces = [b"\n", b" ", b"-", b":", b"0", b"f", b"\xc2\x85", b"\xff", b"\x00", b"\t", b"\r"]
    pieces += [b" sl", b"sl ", b"\nVmFlags:", b"9" * 20, b"f" * 17, b"\x1c"]
    for _ in range(200):
        text = bytearray(data[: rng.randrange(len(data) + 1)])
        for _ in range(rng.randrange(1, 4)):
            at = rng.randrange(len(text) + 1)
            if rng.random() < 0.6:
                text[at:at] = rng.choice(pieces)
            else:
                del text[at : at + rng.randrange(1, 8)]
        _same(bytes(text))
        _counted_alike(bytes(text))


# --- the layout read: _fastsys.read_smaps_layout and _read_verified(layout=True) -------


def test_layout_reads_say_what_whole_reads_say(tmp_path: Path) -> None:
    """A process's smaps read keeping only its layout lines gives the same
    scan as the whole text; text of another shape is read again whole; the
    bounds and errors are the whole read's."""
    code = "import sys; print('ready', flush=True); sys.stdin.read()"
    child = subprocess.Popen(
        [sys.executable, "-c", code], stdin=subprocess.PIPE, stdout=subprocess.PIPE
    )
    try:
        assert child.stdout is not None and child.stdout.readline() == b"ready\n"
        with ProcessDir(child.pid) as proc:  # waiting: its mappings stay as they are
            whole = proc.smaps("S")
            kept = proc.smaps("S", layout=True)
    finally:
        child.communicate(timeout=60)
    assert len(kept) < len(whole) / 2
    assert scan_smaps(kept, every=True)[1].columns() == scan_smaps(whole, every=True)[1].columns()
    odd = tmp_path / "smaps"
    text = (_vma() + "garbage\n" + _vma()).encode()
    odd.write_bytes(text)
    assert procfs._read_verified(str(odd), "42", None, procfs.Limits(), True, True) == (text, True)
    good = tmp_path / "good"
    good.write_bytes((_vma() * 3).encode())
    assert procfs._read_verified(str(good), "42", None, procfs.Limits(), True, True) == (
        (HEADER + "\nVmFlags: rd mr mw me sl \n").encode() * 3, True
    )  # fmt: skip
    big = tmp_path / "big"
    big.write_bytes((_vma() * 20000).encode())
    for limits, why in (
        (procfs.Limits(size=100_000), "its big text is larger than 100000 bytes"),
        (
            procfs.Limits(time.monotonic() - 1, "its time budget ran out", None),
            "its time budget ran out",
        ),
    ):
        with pytest.raises(procfs.CutShortError, match=why):
            procfs._read_verified(str(big), "42", None, limits, True, True)


def test_read_smaps_layout_keeps_the_bounds(tmp_path: Path) -> None:
    fd = os.memfd_create("smaps")
    try:
        os.write(fd, (_vma() * 20000).encode())
        for size, deadline, every, status in ((100_000, -1.0, 64, 1), (0, 0.0, 1, 2)):
            os.lseek(fd, 0, os.SEEK_SET)
            first = os.read(fd, 4096)
            assert fastsys.read_smaps_layout(fd, 4096, size, deadline, every, first) == (
                None, status
            )  # fmt: skip
    finally:
        os.close(fd)
    for args in ((0, 0, 0, -1.0, 64), (0, 4096, -1, -1.0, 64), (0, 4096, 0, -1.0, 0)):
        with pytest.raises(ValueError):
            fastsys.read_smaps_layout(*args, b"x")
    with pytest.raises(OSError):
        fastsys.read_smaps_layout(-1, 4096, 0, -1.0, 64, b"x")  # EBADF
    with pytest.raises(OSError):
        directory = os.open(tmp_path, os.O_RDONLY)
        try:
            fastsys.read_smaps_layout(directory, 4096, 0, -1.0, 64, b"x")  # EISDIR
        finally:
            os.close(directory)


def test_a_mapping_longer_than_the_buffer(tmp_path: Path) -> None:
    """A mapping whose lines pass the first buffer (a name of 1 MiB): the
    buffer grows, and the kept text scans as the whole does."""
    name = "/" + "n" * (1 << 20)
    data = (_vma() + _vma(HEADER.replace("/lib/x.so", name)) + _vma()).encode()
    _layout_alike(data, (4096, 65536))


# A stand-in for an extension built from main's older source: the same
# functions with their older signatures (read_smaps_layout without
# `counted`, smaps_columns taking its second argument as a truth value,
# sealed_json_rows without the sums), and nothing the newer source added.
_OLDER_EXTENSION = """
import importlib, json, subprocess, sys, types
real = importlib.import_module("sealkit._os._fastsys")
old = types.ModuleType(real.__name__)
old.__file__ = real.__file__
for name in dir(real):
    if not name.startswith("_") and not name.isupper():
        setattr(old, name, getattr(real, name))
def read_smaps_layout(fd, chunk, size_limit, deadline, clock_every, first, /):
    return real.read_smaps_layout(fd, chunk, size_limit, deadline, clock_every, first)
def smaps_columns(data, columns=True, /):
    return real.smaps_columns(data, bool(columns))
def sealed_json_rows(sealed, text_of, /):
    return real.sealed_json_rows(sealed, text_of)
old.read_smaps_layout = read_smaps_layout
old.smaps_columns = smaps_columns
old.sealed_json_rows = sealed_json_rows
sys.modules[real.__name__] = old
import sealkit._os
sealkit._os._fastsys = old
from sealkit.host import outputs
from sealkit.host.sweep import scan_host
code = "import sys, sealkit; k = sealkit.freeze(b'x' * 100); print(1, flush=True); sys.stdin.read()"
child = subprocess.Popen([sys.executable, "-c", code], stdin=subprocess.PIPE, stdout=subprocess.PIPE)
try:
    child.stdout.readline()
    audit = scan_host(pids=[child.pid, 1])
finally:
    child.communicate(timeout=60)
fast = outputs.audit_json_text(audit)
outputs._FORCE_PYTHON = True
print(json.dumps([fast == outputs.audit_json_text(audit), [p.sealed_mappings for p in audit.processes]]))
"""


def test_an_extension_built_from_an_older_source_still_serves_the_audit() -> None:
    """An editable install whose extension was built before the newer
    source (pulled, not rebuilt) keeps working, as the modules promise:
    the forms the older functions lack (a counted layout read, the scan
    that builds columns only once a mapping is sealed, the sealed list's
    sums) are not asked of it, and the audit says the same."""
    done = subprocess.run(
        [sys.executable, "-c", _OLDER_EXTENSION],
        capture_output=True, text=True, check=False, env=python_env(), timeout=120,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-2000:]
    same, sealed = json.loads(done.stdout)
    assert same and sealed[-1] >= 1, done.stdout

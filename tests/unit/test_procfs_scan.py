"""The sweep's fast smaps scanner against the general parser, and /proc/PID/status.

``scan_smaps`` must give the same answers as ``parse_smaps`` (the general
parser): on real captures (``tests/data/audit/``: a process that sealed an
anonymous page, a file mapping, every mapping of an extension module and
its vDSO; and a plain interpreter), on the live processes of this host, on
inline edge cases, and on generated text.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sealkit._os.procfs import ProcessDir, parse_smaps, parse_status, scan_smaps, task_status
from sealkit.errors import ParseError, ProcessGoneError

DATA = Path(__file__).resolve().parent.parent / "data" / "audit"


def _key(vmas: object) -> list[tuple[object, ...]]:
    return [
        (v.start, v.end, v.perms, v.offset, v.dev, v.inode, v.path, v.vmflags)
        for v in vmas  # type: ignore[attr-defined]
    ]


def _same_answers(data: bytes) -> tuple[int, int]:
    """Assert scan_smaps agrees with parse_smaps; return (mappings, sealed)."""
    full = parse_smaps(data.decode("utf-8", "surrogateescape"))
    count, vmas = scan_smaps(data)
    assert count == len(full)
    sealed = tuple(i for i, v in enumerate(full) if v.sealed)
    assert vmas.sealed_indices == sealed
    if sealed:
        assert _key(vmas) == _key(full)
        assert [v.fields for v in vmas] == [{}] * len(full)  # the scan skips counters
    else:
        assert len(vmas) == 0
    return count, len(sealed)


def test_capture_with_seals_agrees_with_the_general_parser() -> None:
    data = (DATA / "smaps-sealed.txt").read_bytes()
    count, sealed = _same_answers(data)
    assert count == 141
    # anon page, file mapping, five mappings of _json, the vDSO
    assert sealed == 8
    _, vmas = scan_smaps(data)
    paths = [vmas[i].path for i in vmas.sealed_indices]
    assert paths.count("/tmp/auditproto/data.bin") == 1
    assert paths.count("[vdso]") == 1
    assert sum(p.endswith("_json.cpython-311-x86_64-linux-gnu.so") for p in paths) == 5


def test_capture_without_seals_agrees_with_the_general_parser() -> None:
    data = (DATA / "smaps-plain.txt").read_bytes()
    assert _same_answers(data) == (39, 0)


def test_every_live_process_agrees_with_the_general_parser() -> None:
    checked = 0
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            with ProcessDir(name) as proc:
                data = proc.read("smaps")
        except (ProcessGoneError, PermissionError):
            continue
        _same_answers(data)
        checked += 1
    assert checked >= 3


HEADER = "7f0000000000-7f0000002000 r--p 00000000 fe:00 1234                       /lib/x.so"
FIELDS = "Size:                  8 kB\nRss:                   4 kB\n"


def _vma(header: str = HEADER, flags: str = "rd mr mw me ") -> str:
    return f"{header}\n{FIELDS}VmFlags: {flags}\n"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        pytest.param("", (0, 0), id="empty (a kernel thread)"),
        pytest.param("\n\n", (0, 0), id="blank"),
        pytest.param(_vma(), (1, 0), id="one unsealed"),
        pytest.param(_vma(flags="rd mr mw me sl "), (1, 1), id="one sealed"),
        pytest.param(_vma(flags="sl "), (1, 1), id="sl first"),
        pytest.param(_vma(flags="rd sl"), (1, 1), id="trailing blank trimmed"),
        pytest.param(
            _vma("7f0000000000-7f0000001000 rw-p 00000000 00:00 0 ")
            + _vma("7f0000001000-7f0000002000 r--p 00000000 00:00 0", "rd mr sl "),
            (2, 1),
            id="anonymous, no path",
        ),
        pytest.param(
            _vma(HEADER.replace("/lib/x.so", "/tmp/a sl b")), (1, 0), id="' sl ' in a path only"
        ),
        pytest.param(
            _vma(HEADER.replace("/lib/x.so", "/tmp/x (deleted)"), "rd sl ")
            + _vma("7f0000003000-7f0000004000 ---p 00000000 00:00 0", "mr "),
            (2, 1),
            id="deleted file",
        ),
        pytest.param(
            _vma("7F0000000000-7F0000001000 r--p 00000000 00:00 0", "rd sl "),
            (1, 1),
            id="upper-case hex (the general parser's path)",
        ),
        pytest.param(
            _vma("7f0000000000-7f0000001000 r--p 00000000 00:00 0 \t [weird name ]", "rd sl "),
            (1, 1),
            id="odd blanks around a name",
        ),
        pytest.param(_vma().rstrip("\n"), (1, 0), id="no final newline"),
    ],
)
def test_edge_cases_agree_with_the_general_parser(text: str, expected: tuple[int, int]) -> None:
    assert _same_answers(text.encode()) == expected


@pytest.mark.parametrize(
    "text",
    [
        pytest.param("VmFlags: rd sl \n" + _vma(), id="field before any header"),
        pytest.param("garbage line\n" + FIELDS + "VmFlags: rd sl \n", id="malformed header"),
        pytest.param(_vma("7f00-7f01 r--p 0 00:00", "rd sl "), id="header without inode"),
        pytest.param(HEADER + "\n" + FIELDS, id="no VmFlags at all"),
        pytest.param(
            _vma() + "not a header\n" + FIELDS + "VmFlags: rd sl \n", id="bad header later"
        ),
    ],
)
def test_malformed_text_raises_parse_error(text: str) -> None:
    with pytest.raises(ParseError):
        scan_smaps(text.encode())


def test_a_range_that_ends_before_it_starts_raises_when_read() -> None:
    data = _vma("7f0000002000-7f0000001000 r--p 00000000 00:00 0", "rd sl ").encode()
    with pytest.raises(ParseError):
        parse_smaps(data.decode())
    count, vmas = scan_smaps(data)  # headers are parsed on demand
    assert count == 1
    with pytest.raises(ParseError, match="ends before it starts"):
        vmas[0]


_flag = st.sampled_from(["rd", "wr", "ex", "sh", "mr", "mw", "me", "ms", "gd", "ac", "dd", "sl"])
_path = st.one_of(
    st.just(""),
    st.sampled_from(["[heap]", "[stack]", "[vdso]", "/usr/lib/libc.so.6", "/tmp/a sl b"]),
    st.text(alphabet="abc /._-", min_size=1, max_size=12).map(lambda s: "/" + s.strip()),
)


@st.composite
def _smaps(draw: st.DrawFn) -> bytes:
    out = []
    addr = 0x7F0000000000
    for _ in range(draw(st.integers(0, 8))):
        addr += draw(st.integers(0, 4)) * 4096
        size = draw(st.integers(1, 16)) * 4096
        perms = draw(st.sampled_from(["r--p", "rw-p", "r-xp", "---p", "rw-s", "r--s"]))
        path = draw(_path)
        inode = 0 if not path.startswith("/") else draw(st.integers(1, 10**6))
        header = f"{addr:x}-{addr + size:x} {perms} {0:08x} fe:00 {inode}"
        header += (" " * draw(st.integers(1, 30)) + path) if path else " "
        flags = draw(st.lists(_flag, max_size=6, unique=True))
        out.append(f"{header}\n{FIELDS}VmFlags: {''.join(f + ' ' for f in flags)}\n")
        addr += size
    return "".join(out).encode()


@settings(max_examples=300, deadline=None)
@given(_smaps())
def test_generated_text_agrees_with_the_general_parser(data: bytes) -> None:
    _same_answers(data)


STATUS = (
    "Name:\t{name}\nUmask:\t0022\nState:\t{state}\nTgid:\t42\nNgid:\t0\nPid:\t42\nPPid:\t1\n"
    "Uid:\t1000\t1001\t1001\t1001\nGid:\t100\t100\t100\t100\n{extra}"
)


@pytest.mark.parametrize(
    ("name", "state", "extra", "expected"),
    [
        ("python3", "S (sleeping)", "VmSize:\t 1000 kB\nKthread:\t0\n", ("python3", "S", False)),
        ("kworker/0:1", "I (idle)", "Kthread:\t1\n", ("kworker/0:1", "I", True)),
        ("kthreadd", "S (sleeping)", "", ("kthreadd", "S", True)),  # before Kthread existed
        ("gone", "Z (zombie)", "", ("gone", "Z", False)),
        ("a\\\\b\\nc", "R (running)", "VmSize:\t1 kB\n", ("a\\b\nc", "R", False)),
        ("my prog", "S (sleeping)", "VmSize:\t1 kB\n", ("my prog", "S", False)),
    ],
)
def test_task_status(name: str, state: str, extra: str, expected: tuple[str, str, bool]) -> None:
    status = task_status(parse_status(STATUS.format(name=name, state=state, extra=extra)))
    assert (status.name, status.state, status.kthread) == expected
    assert (status.pid, status.uid, status.ruid) == (42, 1001, 1000)


@pytest.mark.parametrize("text", ["", "Name:\tx\n", "Name:\tx\nState:\tS\nPid:\tx\nUid:\t1 1\n"])
def test_task_status_rejects_incomplete_text(text: str) -> None:
    with pytest.raises(ParseError):
        task_status(parse_status(text))


def test_process_dir_reads_the_same_process() -> None:
    with ProcessDir("self") as proc:
        status = proc.status()
        assert status.pid == os.getpid()
        assert proc.readlink("exe") == os.path.realpath("/proc/self/exe")
    with pytest.raises(ProcessGoneError):
        proc.read("status")  # closed
    with pytest.raises(ProcessGoneError):
        ProcessDir(2**22 + 1)  # above pid_max: never a process

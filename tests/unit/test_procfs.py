"""procfs parsers, three ways: inline edge cases, a real capture, a second source."""

from __future__ import annotations

import gzip
from pathlib import Path

import pytest

from sealkit._os import procfs
from sealkit.errors import (
    ArgumentError,
    ArgumentTypeError,
    ParseError,
    ProcessGoneError,
)

DATA = Path(__file__).resolve().parent.parent / "data"

HEADER = "7f0000000000-7f0000002000 rw-p 00000000 00:00 0"


def smaps_entry(header: str, vmflags: str | None = "rd wr mr mw me ac", **fields: str) -> str:
    lines = [header, "Size:                  8 kB", "Rss:                   4 kB"]
    lines += [f"{key}: {value}" for key, value in fields.items()]
    if vmflags is not None:
        lines.append(f"VmFlags: {vmflags}")
    return "\n".join(lines) + "\n"


# --- maps ---------------------------------------------------------------------


def test_maps_path_with_spaces_and_deleted() -> None:
    text = (
        "00400000-00401000 r-xp 00000000 08:01 1234   /opt/my app/bin with space\n"
        "7f0000000000-7f0000001000 rw-s 00000000 00:01 99 /dev/shm/x (deleted)\n"
    )
    first, second = procfs.parse_maps(text)
    assert first.path == "/opt/my app/bin with space"
    assert (first.start, first.end, first.size) == (0x400000, 0x401000, 0x1000)
    assert first.executable and not first.writable and first.readable and not first.shared
    assert second.path == "/dev/shm/x (deleted)"
    assert second.shared and second.inode == 99
    # maps has no seal information: unknown, never False.
    assert first.sealed is None and first.vmflags is None


def test_maps_no_path_and_vsyscall() -> None:
    text = (
        "7f0000000000-7f0000001000 rw-p 00000000 00:00 0 \n"
        "ffffffffff600000-ffffffffff601000 --xp 00000000 00:00 0                  [vsyscall]\n"
    )
    anon, vsyscall = procfs.parse_maps(text)
    assert anon.path == "" and anon.inode == 0
    assert vsyscall.path == "[vsyscall]"
    assert vsyscall.start == 0xFFFFFFFFFF600000 and vsyscall.perms == "--xp"


@pytest.mark.parametrize(
    ("text", "line"),
    [
        ("not a mapping\n", 1),
        (f"{HEADER}\n7f00-7f01 rw-p\n", 2),  # too few fields
        ("zz00-7f01 rw-p 00000000 00:00 0\n", 1),  # not hex
        ("7f01-7f00 rw-p 00000000 00:00 0\n", 1),  # ends before it starts
        ("7f00-7f01 rw-pX 00000000 00:00 0\n", 1),  # perms not 4 chars
        ("7f00-7f01 rw-p 00000000 0000 0\n", 1),  # dev without ':'
        (f"\n\n{HEADER}\n7f00-7f01 rw-p 00000000 00:00 x\n", 4),  # inode not a number
    ],
)
def test_maps_malformed_header_has_line_number(text: str, line: int) -> None:
    with pytest.raises(ParseError) as info:
        procfs.parse_maps(text, source="fixture")
    assert info.value.line == line
    assert str(info.value).startswith(f"fixture:{line}: ")


# --- smaps --------------------------------------------------------------------


def test_smaps_vmflags_sealed_and_unknown_fields_kept() -> None:
    text = smaps_entry(HEADER, "rd wr mr mw me ac sl", NewField="17 kB", Weird="text value")
    (vma,) = procfs.parse_smaps(text)
    assert vma.sealed is True
    assert vma.vmflags == frozenset({"rd", "wr", "mr", "mw", "me", "ac", "sl"})
    assert vma.fields["Size"] == 8 and vma.fields["Rss"] == 4
    assert vma.fields["NewField"] == 17
    assert vma.fields["Weird"] == "text value"


def test_smaps_unsealed_and_missing_vmflags() -> None:
    text = smaps_entry(HEADER) + smaps_entry(
        "7f0000002000-7f0000003000 r--p 00000000 00:00 0", vmflags=None
    )
    unsealed, no_flags = procfs.parse_smaps(text)
    assert unsealed.sealed is False
    # smaps without a VmFlags line (kernels before 3.8) still parses: empty set.
    assert no_flags.vmflags == frozenset() and no_flags.sealed is False


def test_smaps_paths_deleted_vsyscall() -> None:
    text = (
        smaps_entry("7f0000000000-7f0000001000 r--p 00000000 08:01 5 /tmp/a b (deleted)")
        + smaps_entry("ffffffffff600000-ffffffffff601000 --xp 00000000 00:00 0 [vsyscall]", "ex")
        + smaps_entry("7f0000003000-7f0000004000 rw-p 00000000 00:00 0")
    )
    deleted, vsyscall, anon = procfs.parse_smaps(text)
    assert deleted.path == "/tmp/a b (deleted)"
    assert vsyscall.path == "[vsyscall]" and vsyscall.vmflags == frozenset({"ex"})
    assert anon.path == ""


def test_smaps_field_before_header_is_parse_error() -> None:
    with pytest.raises(ParseError) as info:
        procfs.parse_smaps("Size: 4 kB\n" + smaps_entry(HEADER))
    assert info.value.line == 1
    assert "before any mapping header" in info.value.message


def test_smaps_malformed_header_line_number() -> None:
    text = smaps_entry(HEADER) + "garbage line here\n"
    with pytest.raises(ParseError) as info:
        procfs.parse_smaps(text)
    assert info.value.line == 5  # header, Size, Rss, VmFlags, then the garbage


def test_parsers_refuse_non_text() -> None:
    for parse in (procfs.parse_maps, procfs.parse_smaps, procfs.parse_status):
        with pytest.raises(ArgumentTypeError):
            parse(b"bytes are not text")  # type: ignore[arg-type]
    with pytest.raises(ArgumentTypeError):
        procfs.parse_maps("", source=3)  # type: ignore[arg-type]


# --- a real capture -------------------------------------------------------------


def test_captured_smaps_with_sealed_vmas() -> None:
    """tests/data/smaps_sealed.txt: 8 rw pages with [2,4) sealed, a sealed r-- page at 10."""
    vmas = procfs.parse_smaps((DATA / "smaps_sealed.txt").read_text(), "smaps_sealed.txt")
    assert len(vmas) > 20
    sealed = [v for v in vmas if v.sealed]
    assert [(v.size, v.perms) for v in sealed] == [(0x2000, "rw-p"), (0x1000, "r--p")]
    middle, ro = sealed
    base = middle.start - 0x2000
    by_start = {v.start: v for v in vmas}
    # The seal split one VMA into three: [0,2) and [4,8) stay unsealed.
    assert by_start[base].end == middle.start and by_start[base].sealed is False
    assert by_start[middle.end].end == base + 0x8000 and by_start[middle.end].sealed is False
    assert ro.start == base + 10 * 0x1000
    assert "sl" in (ro.vmflags or ()) and "wr" not in (ro.vmflags or ())
    # Every VMA has the counters smaps always prints, and VmFlags.
    assert all("Size" in v.fields and "Rss" in v.fields and v.vmflags for v in vmas)
    assert any(v.path == "[vdso]" for v in vmas)


# --- status and kernel config -------------------------------------------------------


def test_parse_status() -> None:
    status = procfs.parse_status("Name:\tpython3\nSeccomp:\t2\nSeccomp_filters:\t1\n\n")
    assert status == {"Name": "python3", "Seccomp": "2", "Seccomp_filters": "1"}
    with pytest.raises(ParseError) as info:
        procfs.parse_status("Name:\tx\nno colon here\n")
    assert info.value.line == 2


def test_parse_kernel_config() -> None:
    config = procfs.parse_kernel_config(
        "#\n# Automatically generated\nCONFIG_CHECKPOINT_RESTORE=y\n"
        '# CONFIG_MSEAL_SYSTEM_MAPPINGS is not set\nCONFIG_LOCALVERSION="-x"\nCONFIG_M=m\n'
    )
    assert config == {
        "CONFIG_CHECKPOINT_RESTORE": "y",
        "CONFIG_MSEAL_SYSTEM_MAPPINGS": "n",
        "CONFIG_LOCALVERSION": "-x",
        "CONFIG_M": "m",
    }


def test_read_kernel_config_prefers_proc_then_boot(tmp_path: Path) -> None:
    proc, boot = tmp_path / "proc", tmp_path / "boot"
    proc.mkdir()
    boot.mkdir()
    (boot / "config-6.99").write_text("CONFIG_MSEAL_SYSTEM_MAPPINGS=y\n")
    assert procfs.read_kernel_config("6.99", str(proc), str(boot)) == (
        {"CONFIG_MSEAL_SYSTEM_MAPPINGS": "y"},
        str(boot / "config-6.99"),
    )
    (proc / "config.gz").write_bytes(gzip.compress(b"CONFIG_CHECKPOINT_RESTORE=y\n"))
    config, source = procfs.read_kernel_config("6.99", str(proc), str(boot)) or ({}, "")
    assert source == str(proc / "config.gz") and config == {"CONFIG_CHECKPOINT_RESTORE": "y"}
    (proc / "config.gz").write_bytes(b"not gzip")  # corrupt: fall through to /boot
    assert procfs.read_kernel_config("6.99", str(proc), str(boot)) is not None
    assert procfs.read_kernel_config("1.0", str(tmp_path / "none"), str(tmp_path / "none")) is None
    with pytest.raises(ArgumentError):
        procfs.read_kernel_config("../etc/passwd", str(proc), str(boot))


# --- I/O boundary --------------------------------------------------------------------


def test_read_smaps_from_recorded_tree(tmp_path: Path) -> None:
    (tmp_path / "42").mkdir()
    (tmp_path / "42" / "smaps").write_text((DATA / "smaps_sealed.txt").read_text())
    vmas = procfs.read_smaps(42, procfs=str(tmp_path))
    assert sum(1 for v in vmas if v.sealed) == 2
    with pytest.raises(ProcessGoneError):
        procfs.read_smaps(43, procfs=str(tmp_path))


@pytest.mark.parametrize("pid", [0, -1, "abc", "1/2", 1.5, None, True, b"1"])
def test_bad_pids(pid: object) -> None:
    with pytest.raises((ArgumentError, ArgumentTypeError)):
        procfs.read_smaps(pid)  # type: ignore[arg-type]

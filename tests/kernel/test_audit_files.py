"""What the audit reads from the files behind mappings is bounded.

A process maps (and seals) the first page of a sparse 4 GiB file whose ELF
header claims 65,535 program headers of 65,535 bytes each: 4 GiB of them,
which the old reader allocated and read (21 s, 2 GiB, and ``MemoryError``
ending the sweep where memory was short). The audit and ``maps`` must read
at most the first page and 64 KiB of program headers from it, keep their
memory small, still classify the mapping, and say nothing false about it.
"""

from __future__ import annotations

import os
import shutil
import struct
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from sealkit._os.elf import MAX_PHDR_TABLE
from sealkit.host import audit
from tests.conftest import python_env
from tests.kernel.test_audit import running

pytestmark = pytest.mark.kernel

SPARSE_SIZE = (4 << 30) + 4096

# A private read-only mapping of the file's first page, sealed: the audit
# looks up the program headers of private file mappings to tell what they are.
MAPPER = r"""
import json, os, sys
from sealkit._os import syscalls
from sealkit.flags import MapFlag, Prot
fd = os.open(sys.argv[1], os.O_RDONLY)
addr = syscalls.mmap(0, 4096, int(Prot.READ), int(MapFlag.PRIVATE), fd, 0)
syscalls.mseal(addr, 4096)
open("/proc/self/comm", "w").write("sk-sparse")
print(json.dumps([addr, addr + 4096]), flush=True)
sys.stdin.read()
"""


@pytest.fixture
def sparse_elf(tmp_path: Path) -> Path:
    """A 4 GiB sparse file with a real ELF header claiming 4 GiB of program headers."""
    path = tmp_path / "huge.so"
    head = bytearray(Path(shutil.which("true") or "/bin/true").read_bytes()[:64])
    assert head[:4] == b"\x7fELF" and head[4] == 2  # ELF64
    struct.pack_into("<Q", head, 0x20, 64)  # e_phoff
    struct.pack_into("<HH", head, 0x36, 0xFFFF, 0xFFFF)  # e_phentsize, e_phnum
    with open(path, "wb") as fh:
        fh.write(head)
        fh.truncate(SPARSE_SIZE)
    assert os.stat(path).st_blocks * 512 < 1 << 20  # sparse: nothing on disk
    return path


@pytest.fixture
def pread_sizes(monkeypatch: pytest.MonkeyPatch, sparse_elf: Path) -> Iterator[list[int]]:
    """The sizes of every ``os.pread`` of the sparse file (failing at once
    past the bound, before a huge buffer is allocated)."""
    sizes: list[int] = []
    real: Callable[[int, int, int], bytes] = os.pread
    inode = os.stat(sparse_elf).st_ino

    def pread(fd: int, size: int, offset: int) -> bytes:
        if os.fstat(fd).st_ino == inode:
            sizes.append(size)
            assert size <= MAX_PHDR_TABLE, f"a read of {size} bytes from the sparse file"
        return real(fd, size, offset)

    monkeypatch.setattr(os, "pread", pread)
    yield sizes


def test_the_sweep_and_maps_read_little_of_a_huge_file(
    sparse_elf: Path, pread_sizes: list[int]
) -> None:
    with running([sys.executable, "-c", MAPPER, str(sparse_elf)]) as (pid, (lo, hi)):
        report = audit.scan_host(pids=[pid], jobs=1)
        maps = audit.process_maps(pid)
    (proc,) = report.processes
    assert proc.status == "ok"
    (sealed,) = [m for m in proc.sealed or () if m.path == str(sparse_elf)]
    assert (sealed.start, sealed.end, sealed.kind) == (lo, hi, "file")
    (region,) = [r for r in maps.regions if r.vma.path == str(sparse_elf)]
    assert (region.kind, region.vma.sealed) == ("file", True)
    assert pread_sizes and sum(pread_sizes) <= 2 * (4096 + MAX_PHDR_TABLE)


def test_the_command_line_stays_small(sparse_elf: Path) -> None:
    """Peak memory of ``sealkit maps`` and ``sealkit audit`` on that process
    (the old reader allocated the 4 GiB it was told to read)."""
    measure = (
        "import resource, subprocess, sys\n"
        "subprocess.run(sys.argv[1:], stdout=subprocess.DEVNULL, check=True)\n"
        "print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)\n"
    )
    with running([sys.executable, "-c", MAPPER, str(sparse_elf)]) as (pid, _):
        for args in (["maps", str(pid), "--json"], ["audit", "--json", "--pid", str(pid)]):
            done = subprocess.run(
                [sys.executable, "-c", measure, sys.executable, "-m", "sealkit", *args],
                capture_output=True, text=True, env=python_env(), timeout=120, check=False,
            )  # fmt: skip
            assert done.returncode == 0, done.stderr
            peak_kib = int(done.stdout)
            assert peak_kib < 200 * 1024, (args, peak_kib)


def test_smaps_text_past_the_size_bound_is_cut_short(monkeypatch: pytest.MonkeyPatch) -> None:
    """The sweep and ``sealkit maps`` stop reading a process's smaps at
    :data:`sealkit.host.sweep.SMAPS_LIMIT` (a process whose mapped files have
    long names could make hundreds of MiB): the sweep says cut short, maps
    raises :class:`CutShortError` (one line, exit 1, on the command line).
    The bound is lowered here to what this process's smaps exceeds."""
    from sealkit.errors import CutShortError
    from sealkit.host import sweep

    monkeypatch.setattr(sweep, "SMAPS_LIMIT", 4096)
    (proc,) = audit.scan_host(pids=[os.getpid()], jobs=1).processes
    assert proc.status == "cut_short" and proc.sealed is None and proc.mappings is None
    assert "smaps text is larger than" in proc.reason
    with pytest.raises(CutShortError, match="smaps text is larger than"):
        audit.process_maps(os.getpid())
    monkeypatch.undo()
    assert len(audit.process_maps(os.getpid()).regions) > 10


def test_maps_says_cut_short_in_one_line() -> None:
    code = (
        "import sys; from sealkit.host import sweep; sweep.SMAPS_LIMIT = 4096; "
        "from sealkit.cli.main import main; sys.exit(main(['maps', 'self']))"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=python_env(),
        timeout=120, check=False,
    )  # fmt: skip
    assert (done.returncode, done.stdout) == (1, "")
    assert done.stderr.startswith("sealkit maps: process self: its smaps text is larger than")
    assert done.stderr.count("\n") == 1

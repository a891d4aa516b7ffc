"""Which VMAs seal_mmap treats as anonymous (safe: no file CPython can truncate).

Headers as /proc/PID/maps prints them; ``00:01`` stands for the kernel's
internal shm mount that backs MAP_SHARED|MAP_ANONYMOUS (and memfds).
"""

from __future__ import annotations

import pytest

from sealkit._os.procfs import parse_maps
from sealkit.sealing.mmaps import _is_anonymous

SHMEM = "00:01"

CASES = {
    # private anonymous: mmap.mmap(-1, n, flags=MAP_PRIVATE), named or not
    "7f0000000000-7f0000002000 rw-p 00000000 00:00 0 ": True,
    "7f0000000000-7f0000002000 r--p 00000000 00:00 0 [anon:sealkit]": True,
    # shared anonymous: mmap.mmap(-1, n), named or not
    "7f0000000000-7f0000002000 rw-s 00000000 00:01 54954 /dev/zero (deleted)": True,
    "7f0000000000-7f0000002000 rw-s 00000000 00:01 54954 [anon_shmem:x]": True,
    # a truncatable memfd on the same shm mount: refused by its name
    "7f0000000000-7f0000002000 rw-s 00000000 00:01 54956 /memfd:x (deleted)": False,
    # a regular file named like shared anonymous memory: refused by its device
    "7f0000000000-7f0000002000 rw-s 00000000 fe:00 123 /dev/zero (deleted)": False,
    # ordinary files, shared and private, read-only or not
    "7f0000000000-7f0000002000 r--s 00000000 fe:00 2148914 /tmp/f (deleted)": False,
    "7f0000000000-7f0000002000 rw-p 00000000 fe:00 2148914 /tmp/f": False,
    "7f0000000000-7f0000002000 r--p 00001000 fe:00 2148914 /usr/lib/libc.so.6": False,
    # a private file mapping whose inode reads 0 is still not anonymous
    "7f0000000000-7f0000002000 rw-p 00000000 00:00 0 /weird": False,
    # SysV shared memory and /dev/shm files can be truncated or removed by others
    "7f0000000000-7f0000002000 rw-s 00000000 00:01 32768 /SYSV00000000 (deleted)": False,
    "7f0000000000-7f0000002000 rw-s 00000000 00:19 7 /dev/shm/x": False,
}


@pytest.mark.parametrize(("header", "anonymous"), CASES.items())
def test_anonymous_classification(header: str, anonymous: bool) -> None:
    [vma] = parse_maps(header + "\n")
    assert _is_anonymous(vma, SHMEM) is anonymous


def test_shared_vma_without_a_measured_shmem_device_is_not_anonymous() -> None:
    [vma] = parse_maps("7f0000000000-7f0000002000 rw-s 00000000 00:01 1 /dev/zero (deleted)\n")
    assert _is_anonymous(vma, None) is False

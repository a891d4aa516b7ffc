"""Regenerate ``smaps_sealed.txt``: a real /proc/PID/smaps with sealed VMAs.

Run ``PYTHONPATH=src python tests/data/capture_smaps_sealed.py`` on a kernel
with mseal. A forked child maps 8 pages of one private anonymous mapping,
seals pages [2, 4) (splitting it into three VMAs), maps one more page,
makes it read-only and seals it, then copies its whole smaps unchanged
(addresses differ between captures; tests find the window through its
sealed VMAs).
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

from sealkit._os import syscalls
from sealkit.flags import MapFlag, Prot

OUT = Path(__file__).with_name("smaps_sealed.txt")
PAGE = 4096


def child() -> str:
    rw, anon = int(Prot.READ | Prot.WRITE), int(MapFlag.PRIVATE | MapFlag.ANONYMOUS)
    # Reserve 16 pages so nothing else lands in the window, then replace them.
    base = syscalls.mmap(0, 16 * PAGE, 0, anon | int(MapFlag.NORESERVE))
    syscalls.mmap(base, 8 * PAGE, rw, anon | int(MapFlag.FIXED))
    syscalls.mseal(base + 2 * PAGE, 2 * PAGE)
    ro = base + 10 * PAGE
    syscalls.mmap(ro, PAGE, rw, anon | int(MapFlag.FIXED))
    syscalls.mprotect(ro, PAGE, int(Prot.READ))
    syscalls.mseal(ro, PAGE)
    text = Path("/proc/self/smaps").read_text()
    return f"{base:x}\n{text}"


def main() -> int:
    read_fd, write_fd = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.close(read_fd)
        with os.fdopen(write_fd, "w") as out:
            out.write(child())
        os._exit(0)
    os.close(write_fd)
    with os.fdopen(read_fd) as inp:
        base_hex, _, smaps = inp.read().partition("\n")
    os.waitpid(pid, 0)
    OUT.write_text(smaps)
    print(
        f"wrote {OUT} (window base 0x{base_hex}: VMAs [0,2) [2,4)sl [4,8) [8,10)--- [10]sl [11,16)---)"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())

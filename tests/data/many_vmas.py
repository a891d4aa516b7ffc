"""A process with many mappings, for the audit's complexity tests and benchmark.

``python tests/data/many_vmas.py LAYOUT N [FILE] [--untouched]`` (sealkit importable) builds
the layout, prints one JSON line ``{"vmas": V, "sealed": S}`` (counted from
its own ``/proc/self/smaps``) and waits until its stdin closes.

``freeze``
    ``N`` values frozen with :func:`sealkit.freeze`: each is a one-page
    read-only sealed anonymous mapping, and they land next to each other
    (the kernel places new mappings top down), so they form one run of ``N``
    contiguous anonymous VMAs, which freeze() never merges (each page was
    written, so each has its own anon_vma).
``alternating``
    ``N`` one-page VMAs in one region, their kinds cycling anonymous
    read-write, a private read-only mapping of FILE (default: this
    interpreter's executable, an ELF file, mapped at an offset where the
    loader would not place it) and anonymous read-only; every other one
    sealed. Neighbours never share a kind, so none merge. Every page is
    used before it is sealed (anonymous pages written, file pages read), as
    a program seals memory that holds something; ``--untouched`` leaves
    them as mapped, which makes the kernel's smaps text cheaper to generate.

vm.max_map_count (65530 by default) bounds ``N``: the interpreter itself
has about 100 mappings.
"""

from __future__ import annotations

import ctypes
import json
import os
import sys

import sealkit
from sealkit._os import syscalls
from sealkit.flags import MapFlag, Prot

PAGE = os.sysconf("SC_PAGESIZE")


def freeze(n: int) -> list[memoryview]:
    return [sealkit.freeze(i.to_bytes(8, "little")) for i in range(n)]


def alternating(n: int, path: str, touch: bool) -> None:
    private, anon = int(MapFlag.PRIVATE), int(MapFlag.PRIVATE | MapFlag.ANONYMOUS)
    rw, ro = int(Prot.READ | Prot.WRITE), int(Prot.READ)
    base = syscalls.mmap(0, n * PAGE, rw, anon | int(MapFlag.NORESERVE))
    fd = os.open(path, os.O_RDONLY)
    try:
        file_pages = max(1, os.fstat(fd).st_size // PAGE - 1)
        for i in range(n):
            addr = base + i * PAGE
            kind = i % 3
            if kind == 1:
                # offsets 1, 2, ...: never the first PT_LOAD's, so never placed
                offset = (1 + (i // 3) % file_pages) * PAGE
                syscalls.mmap(addr, PAGE, ro, private | int(MapFlag.FIXED), fd, offset)
                if touch:
                    ctypes.string_at(addr, 1)
            else:
                if touch:
                    ctypes.memset(addr, 1, 1)
                if kind == 2:
                    syscalls.mprotect(addr, PAGE, ro)
            if i % 2 == 0:
                syscalls.mseal(addr, PAGE)
    finally:
        os.close(fd)


def main() -> None:
    args = [a for a in sys.argv[1:] if a != "--untouched"]
    layout, n = args[0], int(args[1])
    keep = None
    if layout == "freeze":
        keep = freeze(n)
    elif layout == "alternating":
        path = args[2] if len(args) > 2 else os.path.realpath(sys.executable)
        alternating(n, path, touch="--untouched" not in sys.argv)
    else:
        raise SystemExit(f"unknown layout {layout!r}")
    vmas = sealed = 0
    with open("/proc/self/smaps", "rb") as fh:
        for line in fh:
            if line.startswith(b"VmFlags:"):
                vmas += 1
                sealed += b"sl" in line.split()
    print(json.dumps({"vmas": vmas, "sealed": sealed}), flush=True)
    sys.stdin.buffer.read()
    del keep


if __name__ == "__main__":
    main()

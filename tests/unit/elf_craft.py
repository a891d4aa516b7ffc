"""Building ELF files for the ``sealkit elf`` tests: crafted byte by byte
(ELF32/ELF64, LE/BE) with :mod:`struct`, or compiled with gcc; and running a
reader in a child under a memory and CPU bound.
"""

from __future__ import annotations

import os
import pickle
import resource
import select
import shutil
import signal
import struct
import subprocess
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

GCC = shutil.which("gcc")
OBJCOPY = shutil.which("objcopy")
READELF = shutil.which("readelf")

ET_REL, ET_EXEC, ET_DYN = 1, 2, 3
PT_LOAD, PT_DYNAMIC, PT_INTERP, PT_NOTE = 1, 2, 3, 4
PT_GNU_STACK, PT_GNU_RELRO, PT_GNU_PROPERTY = 0x6474E551, 0x6474E552, 0x6474E553
X86_ISA_1_NEEDED = 0xC0008002
X86_FEATURE_1_AND = 0xC0000002
MACHINES = {(32, True): 3, (32, False): 20, (64, True): 62, (64, False): 22}  # 386 PPC X86_64 S390
CLASSES = [(32, True), (32, False), (64, True), (64, False)]
CLASS_IDS = ["ELF32-LE", "ELF32-BE", "ELF64-LE", "ELF64-BE"]


def align(n: int, a: int) -> int:
    return (n + a - 1) // a * a


def gnu_note(props: Sequence[tuple[int, bytes]], elfclass: int, little: bool) -> bytes:
    """One NT_GNU_PROPERTY_TYPE_0 note holding ``props`` (type, data)."""
    o = "<" if little else ">"
    word = elfclass // 8
    desc = b"".join(
        struct.pack(o + "II", t, len(d)) + d.ljust(align(len(d), word), b"\0") for t, d in props
    )
    return struct.pack(o + "III", 4, len(desc), 5) + b"GNU\0" + desc


def craft(
    elfclass: int,
    little: bool,
    notes: Sequence[bytes],
    *,
    segment: bool = True,
    section: bool = True,
    align_to: int | None = None,
    e_type: int = ET_DYN,
    relro: bool = False,
    execstack: bool = False,
    stacks: Sequence[int] | None = None,
    dyn_flags_1: int | None = None,
) -> bytes:
    """A minimal ELF file: header, program headers, a .note.gnu.property
    section (optionally covered by PT_GNU_PROPERTY), .shstrtab.

    ``stacks`` gives the ``p_flags`` of each PT_GNU_STACK header, in order
    (default: one, RWX when ``execstack`` else RW)."""
    o = "<" if little else ">"
    word = elfclass // 8
    ehsize, phentsize, shentsize = (52, 32, 40) if elfclass == 32 else (64, 56, 64)
    if stacks is None:
        stacks = [7 if execstack else 6]
    blob = b"".join(notes)
    dynamic = b""
    if dyn_flags_1 is not None:
        fmt = o + ("iI" if elfclass == 32 else "qQ")
        dynamic = struct.pack(fmt, 0x6FFFFFFB, dyn_flags_1) + struct.pack(fmt, 0, 0)
    phdrs: list[tuple[int, int, int, int, int, int]] = []  # type, flags, off, size, align, vaddr
    nph = 1 + len(stacks) + segment + relro + bool(dynamic)
    note_off = align(ehsize + nph * phentsize, 8)
    dyn_off = align(note_off + len(blob), 8)
    shstr = b"\0.note.gnu.property\0.shstrtab\0"
    shstr_off = dyn_off + len(dynamic)
    sh_off = align(shstr_off + len(shstr), 8)
    total = sh_off + (3 * shentsize if section else 0)
    phdrs.append((PT_LOAD, 5, 0, total, 0x1000, 0))
    if segment:
        phdrs.append((PT_GNU_PROPERTY, 4, note_off, len(blob), align_to or word, note_off))
    if dynamic:
        phdrs.append((PT_DYNAMIC, 6, dyn_off, len(dynamic), word, dyn_off))
    if relro:
        phdrs.append((PT_GNU_RELRO, 4, dyn_off, len(dynamic) or 8, 1, dyn_off))
    phdrs.extend((PT_GNU_STACK, flags, 0, 0, 16, 0) for flags in stacks)
    ident = b"\x7fELF" + bytes([1 if elfclass == 32 else 2, 1 if little else 2, 1]) + bytes(9)
    if elfclass == 32:
        ehdr = ident + struct.pack(
            o + "HHIIIIIHHHHHH", e_type, MACHINES[32, little], 1, 0, ehsize,
            sh_off if section else 0, 0, ehsize, phentsize, len(phdrs), shentsize,
            3 if section else 0, 2 if section else 0,
        )  # fmt: skip
    else:
        ehdr = ident + struct.pack(
            o + "HHIQQQIHHHHHH", e_type, MACHINES[64, little], 1, 0, ehsize,
            sh_off if section else 0, 0, ehsize, phentsize, len(phdrs), shentsize,
            3 if section else 0, 2 if section else 0,
        )  # fmt: skip
    ph = b""
    for ptype, flags, off, size, palign, vaddr in phdrs:
        if elfclass == 32:
            ph += struct.pack(o + "IIIIIIII", ptype, off, vaddr, vaddr, size, size, flags, palign)
        else:
            ph += struct.pack(o + "IIQQQQQQ", ptype, flags, off, vaddr, vaddr, size, size, palign)
    out = bytearray(total)
    out[: len(ehdr)] = ehdr
    out[ehsize : ehsize + len(ph)] = ph
    out[note_off : note_off + len(blob)] = blob
    out[dyn_off : dyn_off + len(dynamic)] = dynamic
    out[shstr_off : shstr_off + len(shstr)] = shstr
    if section:
        sh = "IIIIIIIIII" if elfclass == 32 else "IIQQQQIIQQ"
        note = (1, 7, 2, note_off, note_off, len(blob), 0, 0, word, 0)
        strtab = (20, 3, 0, 0, shstr_off, len(shstr), 0, 0, 1, 0)
        out[sh_off + shentsize : sh_off + 2 * shentsize] = struct.pack(o + sh, *note)
        out[sh_off + 2 * shentsize : sh_off + 3 * shentsize] = struct.pack(o + sh, *strtab)
    return bytes(out)


def pn_xnum_file(real_count: int, phentsize: int = 56, phoff: int = 128) -> bytes:
    """The 203-byte ELF64 file of issue 13: ``e_phnum`` is PN_XNUM (0xffff),
    so the real count is section 0's ``sh_info`` (``real_count``). One real
    program header (PT_GNU_STACK, RW) follows section 0. With ``phentsize``
    0 and ``phoff`` 0 a table of any count "fits" in the file (pyelftools
    checks ``e_phentsize`` only when ``e_phoff`` is not 0)."""
    ehdr = (
        b"\x7fELF\x02\x01\x01"
        + bytes(9)
        + struct.pack(
            "<HHIQQQIHHHHHH", ET_DYN, 62, 1, 0, phoff, 64, 0, 64, phentsize, 0xFFFF, 64, 1, 0
        )
    )  # shoff 64, one section header; the real header at 128, after section 0
    section0 = struct.pack("<IIQQQQIIQQ", 0, 0, 0, 0, 0, 0, 0, real_count, 0, 0)
    phdr = struct.pack("<IIQQQQQQ", PT_GNU_STACK, 6, 0, 0, 0, 0, 0, 16)
    data = ehdr + section0 + phdr
    return data + bytes(203 - len(data))


def patched(data: bytes, offset: int, fmt: str, value: int) -> bytes:
    out = bytearray(data)
    struct.pack_into(fmt, out, offset, value)
    return bytes(out)


def write(tmp_path: Path, name: str, data: bytes) -> str:
    path = tmp_path / name
    path.write_bytes(data)
    return str(path)


def gcc(tmp: Path, out: str, *args: str) -> str:
    assert GCC is not None
    subprocess.run([GCC, "-O1", "-o", str(tmp / out), *args], check=True, capture_output=True)
    return str(tmp / out)


MARKER_NOTE_S = """\
\t.section .note.gnu.property,"a",@note
\t.p2align 3
\t.long 4
\t.long 8
\t.long 5
\t.asciz "GNU"
\t.long 3
\t.long 0
\t.section .note.GNU-stack,"",@progbits
"""
"""Assembly for an object carrying GNU_PROPERTY_MEMORY_SEAL (binutils 2.40
has no ``-z memory-seal``): linked in, ld appends it after its own note."""


def marker_first(path: str, tmp: Path) -> None:
    """Reorder the two property notes the linker left in ``path`` (its own,
    then :data:`MARKER_NOTE_S`'s) so the marker comes first, as a linker
    that knows property 3 would merge them: the loader's walk then reaches
    it. Same section size, so objcopy keeps the layout and the segment."""
    assert OBJCOPY is not None
    raw = tmp / "notes.bin"
    subprocess.run([OBJCOPY, "-O", "binary", "--only-section=.note.gnu.property", path,
                    str(raw)], check=True, capture_output=True)  # fmt: skip
    data = raw.read_bytes()
    first = 16 + align(struct.unpack_from("<I", data, 4)[0], 8)
    raw.write_bytes(data[first:] + data[:first])
    subprocess.run([OBJCOPY, f"--update-section=.note.gnu.property={raw}", path],
                   check=True, capture_output=True)  # fmt: skip


# --- a reader in a child, under bounds ---------------------------------------


class Unbounded(AssertionError):
    """The call in the child ran past its CPU or memory bound."""


def bounded(
    fn: Callable[..., Any], *args: Any, cpu_seconds: int = 20, memory: int = 256 << 20
) -> Any:
    """``fn(*args)`` in a forked child whose address space may grow by at
    most ``memory`` bytes and which may use ``cpu_seconds`` of CPU; its
    result, or :class:`Unbounded` when it went past either (killed by
    SIGXCPU/SIGKILL, or MemoryError), or its exception re-raised.

    These are hang and runaway detectors, generous by orders of magnitude,
    not speed claims: a bounded reader needs milliseconds and megabytes."""
    read_fd, write_fd = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - runs in the child
        os.close(read_fd)
        try:
            with open("/proc/self/statm") as fh:
                vsize = int(fh.read().split()[0]) * os.sysconf("SC_PAGE_SIZE")
            resource.setrlimit(resource.RLIMIT_AS, (vsize + memory, vsize + memory))
            resource.setrlimit(resource.RLIMIT_CPU, (cpu_seconds, cpu_seconds + 1))
            payload = pickle.dumps(("ok", fn(*args)))
        except MemoryError:
            payload = pickle.dumps(("err", Unbounded(f"MemoryError past {memory >> 20} MiB")))
        except BaseException as exc:
            try:
                payload = pickle.dumps(("err", exc))
            except Exception:
                payload = pickle.dumps(("err", AssertionError(f"{type(exc).__name__}: {exc}")))
        with os.fdopen(write_fd, "wb") as out:
            out.write(payload)
        os._exit(0)
    os.close(write_fd)
    deadline = time.monotonic() + 4 * cpu_seconds  # wall-clock backstop (blocked child)
    chunks: list[bytes] = []
    try:
        while True:
            ready, _, _ = select.select([read_fd], [], [], max(0.0, deadline - time.monotonic()))
            if not ready:
                os.kill(pid, signal.SIGKILL)
                raise Unbounded(f"still running after {4 * cpu_seconds} s")
            chunk = os.read(read_fd, 1 << 16)
            if not chunk:
                break
            chunks.append(chunk)
    finally:
        os.close(read_fd)
        _, status = os.waitpid(pid, 0)
    data = b"".join(chunks)
    if os.WIFSIGNALED(status):
        raise Unbounded(f"child killed by signal {os.WTERMSIG(status)} (CPU or memory bound)")
    if not data:
        raise Unbounded(f"child exited with status {os.waitstatus_to_exitcode(status)}")
    kind, value = pickle.loads(data)
    if kind == "err":
        raise value
    return value

"""What each mapping of a process is: its kind, from /proc and the ELF program headers.

Kinds, and how they are told apart (first rule that matches):

==========  ================================================================
``system``  a kernel-provided mapping: ``[vdso]``, ``[vvar]``,
            ``[vvar_vclock]``, ``[vsyscall]``, ``[uprobes]``, ``[sigpage]``,
            ``[vectors]`` (sealed by ``CONFIG_MSEAL_SYSTEM_MAPPINGS``)
``heap``    ``[heap]`` (the brk area)
``stack``   ``[stack]`` (the main thread's stack)
``shm``     shared memory: a shared mapping (``s`` in the permissions) of
            shared anonymous memory, SysV or POSIX shared memory, or a memfd
            (told apart by the names the kernel gives them)
``guard``   a private mapping with no access (``---p``): the loader's holes
            between an object's segments, guard pages, reservations
``text``    a private file mapping with execute permission
``data``    a private file mapping with write permission, or anonymous
            memory that is an ELF object's ``.bss`` (past ``p_filesz`` up
            to ``p_memsz`` of its writable ``PT_LOAD``)
``relro``   a read-only private mapping of an ELF object that lies inside
            its ``PT_GNU_RELRO`` range (data the loader made read-only
            after relocation)
``rodata``  any other read-only private mapping of a loaded ELF object
``file``    a mapping of a file that is not an ELF object placed by the
            loader: an ``mmap`` of a data file, private or shared
``anon``    other private anonymous memory
==========  ================================================================

Text, rodata, RELRO and data are told apart with the permissions, then the
file's ELF program headers (:func:`sealkit._os.elf.load_layout`): the mapping's
file offset gives its ``PT_LOAD`` and the load bias, and the bias places
``PT_GNU_RELRO`` and ``.bss`` in the address space. The file is opened
through ``/proc/PID/map_files`` (the very file mapped, root only), else
``/proc/PID/root/PATH`` checked against the mapping's inode. When neither
can be read, a heuristic stands in: a read-only mapping directly followed by
a writable one of the same file is RELRO, one of a file that also has an
executable mapping is rodata, others are ``file``; anonymous memory right
after a writable file mapping is ``.bss`` data.
"""

# ruff: noqa: PLC0415 (elf is imported lazily: most sweeps never classify a file mapping)

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from typing import Any, Final

from .._os.procfs import ProcessDir, ScannedVmas, Vma
from ..errors import ArgumentError, ArgumentTypeError, ParseError
from ..flags import PAGE_SIZE

__all__ = ["KINDS", "SYSTEM_MAPPINGS", "FileLayouts", "classify"]

KINDS: Final = (
    "text", "rodata", "relro", "data", "file", "heap", "stack", "anon", "shm", "system", "guard",
)  # fmt: skip
"""Every kind a mapping can be classified as (see the module docstring)."""

SYSTEM_MAPPINGS: Final = frozenset(
    {"[vdso]", "[vvar]", "[vvar_vclock]", "[vsyscall]", "[uprobes]", "[sigpage]", "[vectors]"}
)
"""Names of kernel-provided mappings (spec other-systems §7.2)."""

_PAGE_MASK: Final = PAGE_SIZE - 1
# How shared memory names itself in /proc/PID/maps: POSIX shm, SysV shm
# (ipc/shm.c "SYSV%08x"), memfd (mm/memfd.c "memfd:"), shared anonymous memory
# (mm/shmem.c shmem_zero_setup: "/dev/zero (deleted)", or [anon_shmem:NAME]).
_SHM_PATHS: Final = ("/dev/shm/", "/SYSV", "/memfd:", "/dev/zero", "[anon_shmem")


def _down(value: int) -> int:
    return value & ~_PAGE_MASK


def _up(value: int) -> int:
    return (value + _PAGE_MASK) & ~_PAGE_MASK


# What a file behind a mapping turned out to be: its program headers, "not-elf"
# (a data file), or "unknown" (unreadable, replaced, gone).
FileLayout = Any  # elf.LoadLayout | Literal["not-elf", "unknown"]; elf is imported lazily
LayoutOf = Callable[[Vma], FileLayout]


def _is_file(vma: Vma) -> bool:
    return vma.inode != 0 and not vma.path.startswith("[")


def _object_bias(vmas: Sequence[Vma], i: int, layout: Any) -> int | None:
    """The load bias of the ELF object that mapping ``i`` belongs to, or
    ``None`` when it does not sit inside a placement of that object.

    The loader maps the first ``PT_LOAD`` first, at the object's lowest
    address, from file offset ``p_offset`` rounded down; the nearest such
    mapping of the same file at or below ``i`` fixes the bias, and mapping
    ``i`` must fall inside the object's span (its ``PT_LOAD`` s) at that bias.
    """
    if not layout.loads:
        return None
    first = layout.loads[0]
    key = (vmas[i].dev, vmas[i].inode)
    for j in range(i, -1, -1):
        v = vmas[j]
        if (v.dev, v.inode) == key and v.offset == _down(first.offset):
            bias = v.start - _down(first.vaddr)
            hi = _up(bias + max(s.vaddr + s.memsz for s in layout.loads))
            if _placed(vmas, j, key, bias, hi, layout):
                return bias if vmas[i].start < hi else None
    return None


def _placed(
    vmas: Sequence[Vma], j: int, key: tuple[str, int], bias: int, hi: int, layout: Any
) -> bool:
    """Whether mapping ``j`` starts a placement of the object by the loader:
    another of its ``PT_LOAD`` s is mapped from the same file where the bias
    puts it. The file mmapped as data (``mmap(fd, offset 0)``, a program
    reading its own ``/proc/self/exe``) has no such neighbour."""
    others = {(_down(bias + s.vaddr), _down(s.offset)) for s in layout.loads[1:]}
    if not others:
        return True  # a single PT_LOAD: nothing to tell them apart
    k = j + 1
    while k < len(vmas) and vmas[k].start < hi:
        v = vmas[k]
        if (v.dev, v.inode) == key and (v.start, v.offset) in others:
            return True
        k += 1
    return False


def classify(
    vmas: Sequence[Vma],
    layout_of: LayoutOf | None = None,
    indices: Iterable[int] | None = None,
) -> list[str]:
    """The kind of mappings of one process, per the rules in the module
    docstring: of every mapping, or of those at ``indices`` (the others are
    context). ``layout_of(vma)`` returns the program headers of the file a
    mapping maps (:class:`sealkit._os.elf.LoadLayout`), ``"not-elf"`` or
    ``"unknown"``; without it the heuristics apply. Files are looked up only
    for the mappings being classified and the neighbours they need.
    """
    # A ScannedVmas builds its VMAs on demand: checking each would build all.
    if not isinstance(vmas, ScannedVmas) and (
        not isinstance(vmas, Sequence) or not all(isinstance(v, Vma) for v in vmas)
    ):
        raise ArgumentTypeError("vmas must be a sequence of procfs.Vma")
    if layout_of is not None and not callable(layout_of):
        raise ArgumentTypeError("layout_of must be callable or None")
    wanted = range(len(vmas)) if indices is None else int_list(indices, "indices", 0)
    if any(i >= len(vmas) for i in wanted):
        raise ArgumentError("indices must point into vmas")
    cache: dict[int, FileLayout] = {}

    def layout(j: int) -> FileLayout:
        if j not in cache:
            v = vmas[j]
            cache[j] = layout_of(v) if (layout_of is not None and _is_file(v)) else "unknown"
        return cache[j]

    exec_files: set[tuple[str, int]] | None = None

    def executable_files() -> set[tuple[str, int]]:
        nonlocal exec_files
        if exec_files is None:
            exec_files = {(v.dev, v.inode) for v in vmas if _is_file(v) and v.executable}
        return exec_files

    return [_kind(vmas, i, layout, executable_files) for i in wanted]


def _kind(
    vmas: Sequence[Vma],
    i: int,
    layout_at: Callable[[int], FileLayout],
    executable_files: Callable[[], set[tuple[str, int]]],
) -> str:
    vma = vmas[i]
    path = vma.path
    if path in SYSTEM_MAPPINGS:
        return "system"
    if path == "[heap]":
        return "heap"
    if path.startswith("[stack") or (vma.vmflags is not None and "gd" in vma.vmflags):
        # gd (VM_GROWSDOWN) marks the main stack even where mprotect or mseal
        # split off a piece that lost the [stack] name
        return "stack"
    if vma.shared:
        return "shm" if path.startswith(_SHM_PATHS) or not _is_file(vma) else "file"
    if vma.perms.startswith("---"):
        return "guard"
    if _is_file(vma):
        return _file_kind(vmas, i, layout_at(i), executable_files)
    return _anon_kind(vmas, i, layout_at)


def _file_kind(
    vmas: Sequence[Vma],
    i: int,
    layout: FileLayout,
    executable_files: Callable[[], set[tuple[str, int]]],
) -> str:
    vma = vmas[i]
    if layout == "not-elf":
        return "file"
    bias = None if isinstance(layout, str) else _object_bias(vmas, i, layout)
    if bias is None and not isinstance(layout, str):
        return "file"  # an ELF file, but not placed by the loader here: plain data
    if bias is not None:
        if not any(
            _down(bias + s.vaddr) <= vma.start < _up(bias + s.vaddr + s.memsz) for s in layout.loads
        ):
            return "file"  # the file mapped outside its object: plain data
        if vma.executable:
            return "text"
        if vma.writable:
            return "data"
        relro = layout.relro
        # ld.so's _dl_protect_relro: start and end both rounded down.
        if (
            relro is not None
            and _down(bias + relro.vaddr) <= vma.start
            and vma.end <= _down(bias + relro.vaddr + relro.memsz)
        ):
            return "relro"
        return "rodata"
    # Program headers unknown: the heuristic.
    if vma.executable:
        return "text"
    if vma.writable:
        return "data"
    nxt = vmas[i + 1] if i + 1 < len(vmas) else None
    if (
        nxt is not None
        and nxt.start == vma.end
        and (nxt.dev, nxt.inode) == (vma.dev, vma.inode)
        and nxt.writable
    ):
        return "relro"
    return "rodata" if (vma.dev, vma.inode) in executable_files() else "file"


def _anon_kind(vmas: Sequence[Vma], i: int, layout_at: Callable[[int], FileLayout]) -> str:
    """``"data"`` for an ELF object's ``.bss``, else ``"anon"``.

    The loader maps ``.bss`` as anonymous memory right after the last file
    page of the writable ``PT_LOAD`` (elf/dl-map-segments.h): walk back over
    contiguous anonymous pieces (mprotect or mseal may have split it) to the
    file mapping before them.
    """
    vma = vmas[i]
    j = i - 1
    while (
        j >= 0
        and vmas[j].end == vmas[j + 1].start
        and not _is_file(vmas[j])
        and not vmas[j].path
        and not vmas[j].shared
    ):
        j -= 1
    if j < 0 or vmas[j].end != vmas[j + 1].start or not _is_file(vmas[j]) or vmas[j].shared:
        return "anon"
    layout = layout_at(j)
    if layout == "not-elf":
        return "anon"
    if isinstance(layout, str):
        # Unknown program headers: .bss directly follows a writable file
        # mapping, in one piece or split into several by mprotect or mseal.
        return "data" if vmas[j].writable else "anon"
    bias = _object_bias(vmas, j, layout)
    if bias is None:
        return "anon"
    for seg in layout.loads:
        if seg.memsz > seg.filesz and seg.flags & 2:  # PF_W
            lo = _up(bias + seg.vaddr + seg.filesz)
            hi = _up(bias + seg.vaddr + seg.memsz)
            if lo <= vma.start and vma.end <= hi:
                return "data"
    return "anon"


class FileLayouts:
    """Program headers by file, shared by the sweep's threads.

    Keyed by (device, inode): a library mapped by a hundred processes is
    read once. Concurrent first reads of the same file may both read it;
    the answers are equal, so the race is harmless.
    """

    def __init__(self) -> None:
        self._cache: dict[tuple[str, int], FileLayout] = {}

    def lookup(self, proc: ProcessDir, vma: Vma) -> FileLayout:
        key = (vma.dev, vma.inode)
        if key in self._cache:
            return self._cache[key]
        from .._os import elf

        result: FileLayout = "unknown"
        candidates = [f"{proc.task}map_files/{vma.start:x}-{vma.end:x}"]
        path = vma.path.removesuffix(" (deleted)")
        if path.startswith("/"):
            candidates.append(f"{proc.task}root{path}")
        for name in candidates:
            try:
                result = elf.load_layout(name, dir_fd=proc.fd, inode=vma.inode)
                break
            except ParseError as exc:
                if exc.message in ("not an ELF file", elf.NOT_REGULAR):
                    result = "not-elf"
                    break
            except (OSError, ValueError, OverflowError):
                # Unreadable, or malformed beyond what load_layout checks: a
                # crafted file must not stop the host-wide sweep.
                continue
        if result != "unknown":
            self._cache[key] = result
        return result


def int_list(values: object, name: str, minimum: int) -> list[int]:
    if isinstance(values, str | bytes) or not isinstance(values, Iterable):
        raise ArgumentTypeError(f"{name} must be an iterable of ints, not {type(values).__name__}")
    out = list(values)
    for value in out:
        if type(value) is not int:
            raise ArgumentTypeError(f"{name} must hold ints, not {type(value).__name__}")
        if value < minimum or value >= 1 << 32:
            raise ArgumentError(f"{name}: {value} is out of range")
    return out

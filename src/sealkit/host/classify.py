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

import operator
import os
from bisect import bisect_left, bisect_right
from collections.abc import Callable, Iterable, Sequence
from itertools import compress, islice, repeat
from typing import Any, Final

from .._os.procfs import ProcessDir, ScannedVmas, Vma, VmaColumns
from ..errors import ArgumentError, ArgumentTypeError, ParseError
from ..flags import PAGE_SIZE

__all__ = ["KINDS", "SYSTEM_MAPPINGS", "FileLayouts", "classify"]

# The same rules in C (sealkit/_os/_fastsys.c classify_kinds), for columns of
# the shape the smaps scanner makes; what depends on a file's program headers
# it asks of _Process._facts, once per file. Without it (no compiler at
# install, no 128-bit integers, an extension built from an older source), or
# with SEALKIT_NO_FASTSYS=1, _Process.kinds below does it all: the same
# answers (tests/unit/test_classify_c.py holds the two equal).
_classify_kinds: Callable[..., list[str] | None] | None
try:
    from .._os import _fastsys
except ImportError:  # pragma: no cover - depends on how sealkit was installed
    _classify_kinds = None
else:
    _classify_kinds = getattr(_fastsys, "classify_kinds", None)

_FORCE_PYTHON = bool(os.environ.get("SEALKIT_NO_FASTSYS"))
"""Classify in Python only (``SEALKIT_NO_FASTSYS=1``; tests set it to
compare the two)."""

KINDS: Final = (
    "text", "rodata", "relro", "data", "file", "heap", "stack", "anon", "shm", "system", "guard",
)  # fmt: skip
"""Every kind a mapping can be classified as (see the module docstring)."""

SYSTEM_MAPPINGS: Final = frozenset(
    {"[vdso]", "[vvar]", "[vvar_vclock]", "[vsyscall]", "[uprobes]", "[sigpage]", "[vectors]"}
)
"""Names of kernel-provided mappings (``_install_special_mapping()`` names:
arch/x86/entry/vdso/vma.c, arch/x86/entry/vsyscall/vsyscall_64.c,
kernel/events/uprobes.c, arch/arm/kernel/process.c)."""

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


_OFFSETS_INDEXED: Final = 4
"""Offsets :meth:`_Process._candidates` indexes one by one before it
indexes every file mapping."""

MAX_LOADS: Final = 64
"""Most ``PT_LOAD`` segments a layout may have to place an object (real
objects have two to five): one with more is treated as unreadable, so that
placing each mapping costs a bounded number of steps whatever a crafted
file says."""


class _Spans:
    """What one ELF layout says, relative to the load bias, ready for
    queries in O(log segments): where its ``PT_LOAD`` s lie, its ``.bss``
    ranges, the other segments' (address, offset) pairs, and its top."""

    __slots__ = ("bss_hi", "bss_lo", "first_offset", "first_vaddr", "load_hi", "load_lo",
                 "others", "relro", "top")  # fmt: skip

    def __init__(self, layout: Any) -> None:
        loads = layout.loads
        first = loads[0]
        self.first_offset = _down(first.offset)
        self.first_vaddr = _down(first.vaddr)
        self.top = _up(max(s.vaddr + s.memsz for s in loads))
        self.others = {(_down(s.vaddr), _down(s.offset)) for s in loads[1:]}
        self.load_lo, self.load_hi = _prefix_max(
            (_down(s.vaddr), _up(s.vaddr + s.memsz)) for s in loads
        )
        self.bss_lo, self.bss_hi = _prefix_max(
            (_up(s.vaddr + s.filesz), _up(s.vaddr + s.memsz))
            for s in loads
            if s.memsz > s.filesz and s.flags & 2  # PF_W
        )
        relro = layout.relro
        self.relro = (
            None if relro is None else (_down(relro.vaddr), _down(relro.vaddr + relro.memsz))
        )

    def in_load(self, rel: int) -> bool:
        """Whether ``rel`` (an address minus the bias) lies in some ``PT_LOAD``."""
        k = bisect_right(self.load_lo, rel)
        return k > 0 and self.load_hi[k - 1] > rel

    def in_bss(self, lo: int, hi: int) -> bool:
        """Whether ``[lo, hi)`` (minus the bias) lies inside one ``.bss`` range."""
        k = bisect_right(self.bss_lo, lo)
        return k > 0 and self.bss_hi[k - 1] >= hi


def _prefix_max(spans: Iterable[tuple[int, int]]) -> tuple[list[int], list[int]]:
    """Spans sorted by start, with the running maximum of their ends: the
    spans that start at or below x are a prefix, and the prefix's maximum
    end tells whether one of them reaches past x."""
    los: list[int] = []
    his: list[int] = []
    top = -1
    for lo, hi in sorted(spans):
        top = max(top, hi)
        los.append(lo)
        his.append(top)
    return los, his


class _Process:
    """One process's mappings (as columns) while they are classified, and
    what has been learnt about them: each question that many mappings ask
    (the file's program headers, where a run of anonymous pieces starts,
    where an object was placed) is answered once, so classifying every
    mapping of a process costs O(n log n) steps, however the mappings are
    laid out.
    """

    __slots__ = (
        "_after_head",
        "_at",
        "_bias",
        "_by_file",
        "_exec_files",
        "_file_rows",
        "_files",
        "_heads",
        "_increasing",
        "_layout_of",
        "_nearest",
        "_placed",
        "_spans",
        "_where",
        "_where_at",
        "dev",
        "end",
        "inode",
        "offset",
        "path",
        "perms",
        "start",
        "vmas",
        "vmflags",
    )  # fmt: skip

    def __init__(self, vmas: Sequence[Vma], layout_of: LayoutOf | None) -> None:
        self.vmas = vmas
        columns = VmaColumns.of(vmas)
        self.start, self.end, self.perms, self.offset = columns[:4]
        self.dev, self.inode, self.path, self.vmflags = columns[4:]
        self._layout_of = layout_of
        self._files: dict[tuple[str, int], FileLayout] = {}
        self._spans: dict[int, tuple[Any, _Spans]] = {}
        self._heads: dict[int, int] = {}
        self._after_head: dict[int, str | tuple[int, _Spans]] = {}
        self._bias: dict[int, int | None] = {}
        self._by_file: dict[tuple[str, int, int], tuple[_Spans, list[int], list[int]]] = {}
        self._exec_files: set[tuple[str, int]] | None = None
        # (dev, inode, offset) -> indices of that file's mappings at that offset:
        # of every offset, or (_where_at) of the few offsets asked about
        self._where: dict[tuple[str, int, int], list[int]] | None = None
        self._where_at: dict[int, dict[tuple[str, int, int], list[int]]] = {}
        self._file_rows: list[int] | None = None
        # whether the mappings' starts increase (as in any /proc text); if not,
        # (dev, inode, start, offset) of every file mapping
        self._increasing: bool | None = None
        self._at: set[tuple[str, int, int, int]] = set()
        self._placed: dict[int, bool] = {}
        # (dev, inode, offset) -> for each candidate, the nearest placed one at or before it
        self._nearest: dict[tuple[str, int, int], list[int]] = {}

    def is_file(self, i: int) -> bool:
        return self.inode[i] != 0 and not self.path[i].startswith("[")

    # --- what is known about files -----------------------------------------------

    def layout(self, j: int) -> FileLayout:
        """The program headers of the file mapping ``j`` maps (once per file).

        An ELF file that no mapping of this process places as the loader
        would (mapped as data only, or without ``PT_LOAD``) reads as
        ``"not-elf"``: every rule treats both alike, and it is decided once
        per file instead of once per mapping."""
        if self._layout_of is None or not self.is_file(j):
            return "unknown"
        key = (self.dev[j], self.inode[j])
        found = self._files.get(key)
        if found is None:
            found = self._layout_of(self.vmas[j])
            if not isinstance(found, str):
                if len(found.loads) > MAX_LOADS:
                    found = "unknown"
                elif not found.loads or not self._placed_somewhere(key, found):
                    found = "not-elf"
            self._files[key] = found
        return found

    def _placed_somewhere(self, key: tuple[str, int], layout: Any) -> bool:
        spans = self.spans(layout)
        candidates = self._candidates((*key, spans.first_offset))
        return any(self.placed(k, spans) for k in candidates)

    def spans(self, layout: Any) -> _Spans:
        entry = self._spans.get(id(layout))
        if entry is None:
            entry = self._spans[id(layout)] = (layout, _Spans(layout))  # keeps the id alive
        return entry[1]

    def executable_files(self) -> set[tuple[str, int]]:
        if self._exec_files is None:
            self._exec_files = {
                (self.dev[k], self.inode[k])
                for k, perms in enumerate(self.perms)
                if perms[2] == "x" and self.is_file(k)
            }
        return self._exec_files

    # --- where objects were placed -----------------------------------------------------

    def _candidates(self, key: tuple[str, int, int]) -> list[int]:
        """The file mappings at (device, inode, offset) ``key``, in address
        order. Indexed per offset asked about (the first ``PT_LOAD`` s'
        offsets: nearly always 0), so that a process with 20,000 mappings of
        one file at other offsets costs one filter, not 20,000 entries; past
        :data:`_OFFSETS_INDEXED` offsets, every file mapping once (linear
        either way)."""
        if self._where is not None:
            return self._where.get(key, [])
        table = self._where_at.get(key[2])
        if table is None:
            if len(self._where_at) >= _OFFSETS_INDEXED:
                self._where = self._file_index(None)
                return self._where.get(key, [])
            table = self._where_at[key[2]] = self._file_index(key[2])
        return table.get(key, [])

    def _file_index(self, only: int | None) -> dict[tuple[str, int, int], list[int]]:
        """File mappings by (device, inode, offset): all, or those at offset ``only``."""
        dev, inode, offset = self.dev, self.inode, self.offset
        if self._file_rows is None:
            self._file_rows = list(compress(range(len(inode)), map(operator.ne, inode, repeat(0))))
        rows = self._file_rows
        if only is not None:
            # operator.eq, not only.__eq__: NotImplemented (an offset of
            # another type) is no answer
            rows = list(
                compress(rows, map(operator.eq, map(offset.__getitem__, rows), repeat(only)))
            )
        where: dict[tuple[str, int, int], list[int]] = {}
        for k in rows:
            where.setdefault((dev[k], inode[k], offset[k]), []).append(k)
        return where

    def _mapped_at(self, dev: str, inode: int, start: int, offset: int) -> bool:
        """Whether a mapping of file (``dev``, ``inode``) starts at ``start``
        with file offset ``offset``: a bisection where the starts increase
        (as /proc prints them), else a set of every file mapping."""
        starts = self.start
        if self._increasing is None:
            self._increasing = all(map(operator.lt, starts, islice(starts, 1, None)))
            if not self._increasing:
                self._file_index(None)  # the file rows
                self._at = {
                    (self.dev[k], self.inode[k], starts[k], self.offset[k])
                    for k in self._file_rows or ()
                }
        if not self._increasing:
            return (dev, inode, start, offset) in self._at
        k = bisect_left(starts, start)
        return (
            k < len(starts)
            and starts[k] == start
            and self.inode[k] != 0
            and self.inode[k] == inode
            and self.dev[k] == dev
            and self.offset[k] == offset
        )

    def placed(self, j: int, spans: _Spans) -> bool:
        """Whether mapping ``j`` starts a placement of its object by the
        loader: another of its ``PT_LOAD`` s is mapped from the same file
        where the bias puts it. The file mmapped as data (``mmap(fd, offset
        0)``, a program reading its own ``/proc/self/exe``) has no such
        neighbour."""
        known = self._placed.get(j)
        if known is None:
            mapped_at = self._mapped_at
            start, dev, inode = self.start[j], self.dev[j], self.inode[j]
            bias = start - spans.first_vaddr
            hi = bias + spans.top
            # another PT_LOAD mapped above this one, inside the object's span
            known = not spans.others or any(
                start < bias + rel < hi and mapped_at(dev, inode, bias + rel, off)
                for rel, off in spans.others
            )
            self._placed[j] = known
        return known

    def object_bias(self, i: int, layout: Any) -> int | None:
        """The load bias of the ELF object that mapping ``i`` belongs to, or
        ``None`` when it does not sit inside a placement of that object.

        The loader maps the first ``PT_LOAD`` first, at the object's lowest
        address, from file offset ``p_offset`` rounded down; the nearest
        such mapping of the same file at or below ``i`` that is a placement
        fixes the bias, and mapping ``i`` must fall inside the object's span
        (its ``PT_LOAD`` s) at that bias.
        """
        if i in self._bias:
            return self._bias[i]
        bias = self._object_bias(i, layout)
        self._bias[i] = bias
        return bias

    def _object_bias(self, i: int, layout: Any) -> int | None:
        if not layout.loads:
            return None
        # What this file's mappings share, looked up once per file and layout.
        file_key = (self.dev[i], self.inode[i], id(layout))
        known = self._by_file.get(file_key)
        if known is None:
            known = self._by_file[file_key] = self._file_placements(i, layout)
        spans, candidates, nearest = known
        if not candidates:
            return None
        if nearest[-1] < 0:
            return None  # the file is placed nowhere: mapped as data only
        pos = bisect_right(candidates, i) - 1
        if pos < 0 or nearest[pos] < 0:
            return None
        bias = self.start[nearest[pos]] - spans.first_vaddr
        return bias if self.start[i] < bias + spans.top else None

    def _file_placements(self, i: int, layout: Any) -> tuple[_Spans, list[int], list[int]]:
        """The spans of ``layout``, the mappings of ``i`` 's file at its first
        ``PT_LOAD`` 's offset (candidates for a placement), and for each of
        them the nearest actual placement at or before it (-1: none)."""
        spans = self.spans(layout)
        key = (self.dev[i], self.inode[i], spans.first_offset)
        candidates = self._candidates(key)
        nearest = self._nearest.get(key)
        if nearest is None:
            # one pass: the nearest placement at or before each candidate
            nearest = []
            last = -1
            for k in candidates:
                if self.placed(k, spans):
                    last = k
                nearest.append(last)
            self._nearest[key] = nearest
        return spans, candidates, nearest

    def _facts(self, j: int) -> int | tuple[Any, ...]:
        """What the C classifier (``_fastsys.classify_kinds``) needs to know
        about the file that mapping ``j`` maps, asked once per file: ``0``
        when it is no ELF object placed by the loader (``"not-elf"``), ``1``
        or ``2`` when its program headers are unknown (``1``: the file also
        has an executable mapping), else its spans, and the candidates for a
        placement with the nearest placement at or before each (what
        :meth:`file_kind`, :meth:`object_bias` and :meth:`_head_says` use)."""
        key = (self.dev[j], self.inode[j])
        layout = self._files.get(key)
        if layout is None:
            layout = self.layout(j)
        if layout == "not-elf":
            return 0
        if isinstance(layout, str):
            return 1 if key in self.executable_files() else 2
        file_key = (self.dev[j], self.inode[j], id(layout))
        known = self._by_file.get(file_key)
        if known is None:
            known = self._by_file[file_key] = self._file_placements(j, layout)
        spans, candidates, nearest = known
        return (
            spans.first_vaddr, spans.top, spans.load_lo, spans.load_hi, spans.bss_lo,
            spans.bss_hi, spans.relro, candidates, nearest,
        )  # fmt: skip

    # --- anonymous runs ---------------------------------------------------------------

    def run_head(self, i: int) -> int:
        """The index of the mapping before the run of contiguous anonymous
        pieces that ends at ``i`` (mprotect or mseal may have split one
        mapping into many), or -1. Each index is walked over once per
        process: the answer is remembered for every piece of the run."""
        start, end, path, perms, inode = self.start, self.end, self.path, self.perms, self.inode
        heads = self._heads
        walked = []
        j = i - 1
        head = None
        while j >= 0:
            if (
                end[j] != start[j + 1]
                or (inode[j] != 0 and not path[j].startswith("["))  # a file mapping
                or path[j]
                or perms[j][3] == "s"
            ):
                break
            head = heads.get(j)
            if head is not None:
                break
            walked.append(j)
            j -= 1
        if head is None:
            head = j
        heads[i] = head
        for k in walked:
            heads[k] = head
        return head

    # --- the rules --------------------------------------------------------------------

    def kinds(self, wanted: Iterable[int]) -> list[str]:
        """The kind of each mapping in ``wanted`` (the module docstring's
        rules, in their order)."""
        path, perms, inode, vmflags = self.path, self.perms, self.inode, self.vmflags
        start, end = self.start, self.end
        heads, after_head = self._heads, self._after_head
        file_kind = self.file_kind
        out: list[str] = []
        append = out.append
        for i in wanted:
            name = path[i]
            if not name:
                # Anonymous memory, the common case of a process with many
                # mappings: anon_kind inlined, with run_head's first step (a
                # mapping whose predecessor is not an anonymous piece of the
                # same run heads its own run; one that is shares its head).
                flags = vmflags[i]
                mode = perms[i]
                if flags is not None and "gd" in flags:
                    append("stack")
                elif mode[3] == "s":
                    append("shm" if inode[i] == 0 else "file")  # is_file: inode, no "["
                elif mode.startswith("---"):
                    append("guard")
                elif inode[i] != 0:
                    append(file_kind(i))
                else:
                    j = i - 1
                    if j < 0:
                        head: int | None = -1
                    elif end[j] != start[i] or path[j] or inode[j] != 0 or perms[j][3] == "s":
                        head = j  # the predecessor ends the run (run_head's first test)
                    else:
                        head = heads.get(j)
                    if head is None:
                        head = self.run_head(i)
                    else:
                        heads[i] = head
                    after = after_head.get(head)
                    if after is None:
                        after = after_head[head] = self._head_says(head)
                    if isinstance(after, str):
                        append(after)
                    else:
                        bias, spans = after
                        append("data" if spans.in_bss(start[i] - bias, end[i] - bias) else "anon")
                continue
            if name.startswith("["):
                if name in SYSTEM_MAPPINGS:
                    out.append("system")
                    continue
                if name == "[heap]":
                    out.append("heap")
                    continue
                if name.startswith("[stack"):
                    out.append("stack")
                    continue
            flags = vmflags[i]
            if flags is not None and "gd" in flags:
                # gd (VM_GROWSDOWN) marks the main stack even where mprotect or
                # mseal split off a piece that lost the [stack] name
                out.append("stack")
                continue
            mode = perms[i]
            is_file = inode[i] != 0 and not name.startswith("[")
            if mode[3] == "s":
                out.append("shm" if name.startswith(_SHM_PATHS) or not is_file else "file")
            elif mode.startswith("---"):
                out.append("guard")
            elif is_file:
                out.append(self.file_kind(i))
            else:
                out.append(self.anon_kind(i))
        return out

    def kinds_in_c(self, wanted: list[int] | None) -> list[str] | None:
        """:meth:`kinds` by the C classifier, of every mapping (``None``) or
        of those in ``wanted``; ``None`` when the columns are not of the
        shape it takes (Python then classifies)."""
        assert _classify_kinds is not None
        return _classify_kinds(
            self.start, self.end, self.perms, self.path, self.dev, self.inode, self.vmflags,
            wanted, self._facts, KINDS,
        )  # fmt: skip

    def file_kind(self, i: int) -> str:
        layout = self._files.get((self.dev[i], self.inode[i]))
        if layout is None:
            layout = self.layout(i)
        if layout == "not-elf":
            return "file"
        mode = self.perms[i]
        if not isinstance(layout, str):
            bias = self.object_bias(i, layout)
            if bias is None:
                return "file"  # an ELF file, but not placed by the loader here: plain data
            spans = self.spans(layout)
            if not spans.in_load(self.start[i] - bias):
                return "file"  # the file mapped outside its object: plain data
            if mode[2] == "x":
                return "text"
            if mode[1] == "w":
                return "data"
            # ld.so's _dl_protect_relro: start and end both rounded down.
            relro = spans.relro
            if (
                relro is not None
                and relro[0] <= self.start[i] - bias
                and self.end[i] - bias <= relro[1]
            ):
                return "relro"
            return "rodata"
        # Program headers unknown: the heuristic.
        if mode[2] == "x":
            return "text"
        if mode[1] == "w":
            return "data"
        key = (self.dev[i], self.inode[i])
        k = i + 1
        if (
            k < len(self.start)
            and self.start[k] == self.end[i]
            and (self.dev[k], self.inode[k]) == key
            and self.perms[k][1] == "w"
        ):
            return "relro"
        return "rodata" if key in self.executable_files() else "file"

    def anon_kind(self, i: int) -> str:
        """``"data"`` for an ELF object's ``.bss``, else ``"anon"``.

        The loader maps ``.bss`` as anonymous memory right after the last
        file page of the writable ``PT_LOAD`` (elf/dl-map-segments.h): walk
        back over contiguous anonymous pieces (mprotect or mseal may have
        split it) to the file mapping before them.
        """
        j = self.run_head(i)
        # What the run's head says, once per head: a kind for every piece of
        # the run, or the bias and spans to place each piece against .bss.
        after = self._after_head.get(j)
        if after is None:
            after = self._after_head[j] = self._head_says(j)
        if isinstance(after, str):
            return after
        bias, spans = after
        return "data" if spans.in_bss(self.start[i] - bias, self.end[i] - bias) else "anon"

    def _head_says(self, j: int) -> str | tuple[int, _Spans]:
        if (
            j < 0
            or self.end[j] != self.start[j + 1]
            or not self.is_file(j)
            or self.perms[j][3] == "s"
        ):
            return "anon"
        layout = self._files.get((self.dev[j], self.inode[j]))
        if layout is None:
            layout = self.layout(j)
        if layout == "not-elf":
            return "anon"
        if isinstance(layout, str):
            # Unknown program headers: .bss directly follows a writable file
            # mapping, in one piece or split into several by mprotect or mseal.
            return "data" if self.perms[j][1] == "w" else "anon"
        bias = self.object_bias(j, layout)
        if bias is None:
            return "anon"
        return bias, self.spans(layout)


def classify(
    vmas: Sequence[Vma],
    layout_of: LayoutOf | None = None,
    indices: Iterable[int] | None = None,
) -> list[str]:
    """The kind of mappings of one process, per the rules in the module
    docstring: of every mapping, or of those at ``indices`` (the others are
    context). ``layout_of(vma)`` returns the program headers of the file a
    mapping maps (:class:`sealkit._os.elf.LoadLayout`), ``"not-elf"`` or
    ``"unknown"``; without it the heuristics apply. Files are looked up
    only for the mappings being classified and the neighbours they need,
    once per file. O(n log n) in the number of mappings.
    """
    # A ScannedVmas holds its mappings as raw text: checking each would build all.
    if not isinstance(vmas, ScannedVmas) and (
        not isinstance(vmas, Sequence) or not all(isinstance(v, Vma) for v in vmas)
    ):
        raise ArgumentTypeError("vmas must be a sequence of procfs.Vma")
    if layout_of is not None and not callable(layout_of):
        raise ArgumentTypeError("layout_of must be callable or None")
    count = len(vmas)
    if isinstance(vmas, ScannedVmas) and vmas._scanned is not None and indices is vmas._scanned:
        asked: list[int] | None = list(vmas._scanned)  # the scanner's own: ints, in range
    else:
        asked = None if indices is None else int_list(indices, "indices", 0)
        if asked and max(asked) >= count:
            raise ArgumentError("indices must point into vmas")
    process = _Process(vmas, layout_of)
    if _classify_kinds is not None and not _FORCE_PYTHON:
        found = process.kinds_in_c(asked)
        if found is not None:
            return found
    return process.kinds(range(count) if asked is None else asked)


class FileLayouts:
    """Program headers by file, shared by the sweep's threads.

    Keyed by (device, inode): a library mapped by a hundred processes is
    read once, and so is a malformed one (what it holds is the file's, not
    the reader's). What is read is bounded: the first 4 KiB and at most
    :data:`sealkit._os.elf.MAX_PHDR_TABLE` bytes of program headers, whatever
    the file claims (a sparse 4 GiB file costs what a small one does).
    Concurrent first reads of the same file may both read it; the answers
    are equal, so the race is harmless.
    """

    def __init__(self) -> None:
        self._cache: dict[tuple[str, int], FileLayout] = {}

    def lookup(self, proc: ProcessDir, vma: Vma) -> FileLayout:
        key = (vma.dev, vma.inode)
        if key in self._cache:
            return self._cache[key]
        from .._os import elf

        result: FileLayout = "unknown"
        settled = False
        candidates = [f"{proc.task}map_files/{vma.start:x}-{vma.end:x}"]
        path = vma.path.removesuffix(" (deleted)")
        if path.startswith("/"):
            candidates.append(f"{proc.task}root{path}")
        for name in candidates:
            try:
                result = elf.load_layout(name, dir_fd=proc.fd, inode=vma.inode)
                settled = True
                break
            except ParseError as exc:
                if exc.message.startswith("not inode"):
                    continue  # another file at that path now: try the next way in
                # not ELF, or malformed: the file says so, whoever reads it
                result = "not-elf" if exc.message in ("not an ELF file", elf.NOT_REGULAR) else (
                    "unknown"
                )  # fmt: skip
                settled = True
                break
            except (OSError, ValueError, OverflowError):
                # Unreadable here (another way in may work), or malformed
                # beyond what load_layout checks: a crafted file must not stop
                # the host-wide sweep.
                continue
        if settled:
            self._cache[key] = result
        return result


def int_list(values: object, name: str, minimum: int) -> list[int]:
    if isinstance(values, str | bytes) or not isinstance(values, Iterable):
        raise ArgumentTypeError(f"{name} must be an iterable of ints, not {type(values).__name__}")
    out = list(values)
    # at C speed when all is well (a sweep passes 30,000 sealed indices of
    # one process); else the loop names the first value that is not
    if not out or (set(map(type, out)) == {int} and min(out) >= minimum and max(out) < 1 << 32):
        return out
    for value in out:
        if type(value) is not int:
            raise ArgumentTypeError(f"{name} must hold ints, not {type(value).__name__}")
        if value < minimum or value >= 1 << 32:
            raise ArgumentError(f"{name}: {value} is out of range")
    return out

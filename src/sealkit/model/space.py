"""The address space: VMAs, backing objects, the program break.

:class:`AddressSpace` is the model's public face (see CONTRIBUTING, "The
model's interface"). The system calls live in modules named after the kernel
files they mirror (``mapping`` for mm/mmap.c, ``mprotect``, ``mremap``,
``madvise``, ``mseal``, ``mlock``, ``fork``, ``gup``); this module holds the
VMA-level machinery of mm/vma.c they share: lookups, split, modify-and-merge
(``vma_modify()``), merging a new range (``vma_merge_new_range()``) and the
munmap gather (``vms_gather_munmap_vmas()``).
"""

from __future__ import annotations

import errno
from collections.abc import Callable, Hashable
from typing import Final, TypeAlias

from .. import ops as _ops
from ..errors import ArgumentError, ArgumentTypeError
from ..flags import Prot
from ..layout import Layout, Run
from ..ops import FILE_PAGES, MODEL_BASES, Op
from . import (
    content,
    files,
    fork,
    gup,
    madvise,
    mapping,
    mincore,
    mlock,
    mprotect,
    mremap,
    msync,
    remote,
)
from .content import Runs
from .policies import POLICIES, Policy
from .store import VmaStore
from .vma import (
    M64,
    MMAP_MIN_ADDR,
    MNEMONICS,
    PAGE,
    PAGE_SHIFT,
    TASK_SIZE,
    VM_ACCESS_FLAGS,
    VM_SHARED,
    VM_SPECIAL,
    AnonVma,
    Vma,
    anon_reusable,
    can_merge,
    is_anonymous,
    merge,
)

__all__ = ["AddressSpace", "VmaView"]

VmaView: TypeAlias = tuple[
    int,
    int,
    tuple[int, int, str | None, int, bool],
    str | None,
    Hashable,
    str | None,
    tuple[str | None, ...],
]
"""One VMA of :meth:`AddressSpace.vma_view`: start and end page, attributes
(flags, seal, open file, page offset, forked), object, anon_vma, layout name,
data."""

DEFAULT_RAM_PAGES: Final = 1 << 21
"""RAM + swap in pages (8 GiB) for the overcommit heuristic: a private
writable mapping bigger than this is ENOMEM (``__vm_enough_memory()``)."""

ELSEWHERE_TOP: Final = 0x7F00_0000_0000
"""Mappings the kernel would place outside the arena go below this, top-down."""

_OPS: Final[dict[type, Callable[[AddressSpace, Op], int]]] = {}


def _register() -> None:
    o = _ops
    _OPS.update(
        {
            o.Mmap: mapping.sys_mmap,
            o.Munmap: mapping.sys_munmap,
            o.Brk: mapping.sys_brk,
            o.Mprotect: mprotect.sys_mprotect,
            o.PkeyMprotect: mprotect.sys_pkey_mprotect,
            o.Mremap: mremap.sys_mremap,
            o.Madvise: madvise.sys_madvise,
            o.ProcessMadvise: madvise.sys_process_madvise,
            o.Mlock: mlock.sys_mlock,
            o.Munlock: mlock.sys_munlock,
            o.Write: gup.sys_write,
            o.Fork: fork.sys_fork,
            o.PwriteMem: remote.sys_pwrite_mem,
            o.VmWritev: remote.sys_vm_writev,
            o.Poke: remote.sys_poke,
            o.FilePwrite: files.sys_file_pwrite,
            o.Ftruncate: files.sys_ftruncate,
            o.Punch: files.sys_punch,
            o.Msync: msync.sys_msync,
            o.Mincore: mincore.sys_mincore,
            o.Mlockall: mlock.sys_mlockall,
            o.Munlockall: mlock.sys_munlockall,
        }
    )


PROC_MEM_FORCE: Final = ("always", "ptrace", "never")
"""The values of the kernel's ``proc_mem.force_override=`` (fs/proc/base.c
``proc_mem_force_override``, Linux 6.12+; earlier kernels always force)."""


class AddressSpace:
    """A Linux process address space under a sealing policy.

    ``AddressSpace(policy="linux")`` starts with nothing mapped; the arena
    zone ``p`` and the heap zone ``h`` sit at :data:`sealkit.ops.MODEL_BASES`
    and the program break starts at the heap base. Every system call goes
    through :meth:`apply` and answers as the kernel would (an ``int``,
    ``-errno`` on error), whatever the op's values.
    """

    __slots__ = (
        "brk",
        "def_flags",
        "elsewhere",
        "objects",
        "policy",
        "proc_mem_force",
        "ram_pages",
        "serial",
        "start_brk",
        "vmas",
    )

    def __init__(
        self,
        policy: str | Policy = "linux",
        *,
        ram_pages: int = DEFAULT_RAM_PAGES,
        proc_mem_force: str = "always",
    ) -> None:
        if isinstance(policy, str):
            try:
                policy = POLICIES[policy]
            except KeyError:
                raise ArgumentError(
                    f"unknown policy {policy!r} (known: {', '.join(POLICIES)})"
                ) from None
        elif not isinstance(policy, Policy):
            raise ArgumentTypeError(
                f"policy must be a name or a Policy, not {type(policy).__name__}"
            )
        if proc_mem_force not in PROC_MEM_FORCE:
            raise ArgumentError(
                f"proc_mem_force must be one of {', '.join(PROC_MEM_FORCE)}, not {proc_mem_force!r}"
            )
        self.policy: Policy = policy
        self.proc_mem_force = proc_mem_force
        """The kernel's ``proc_mem.force_override``: whether a write to
        ``/proc/self/mem`` is forced (``always``) or not (``ptrace``: only
        for the process's active tracer, never the process itself;
        ``never``). Only the running kernel's setting can be held to it."""
        self.def_flags = 0
        """``mm->def_flags``: ``VM_LOCKED`` (and ``VM_LOCKONFAULT``) after
        ``mlockall(MCL_FUTURE)``; every new mapping takes them."""
        self.vmas: VmaStore[Vma] = VmaStore()
        self.objects: dict[str, tuple[int, Runs]] = {}
        """Backing object contents: ``"f:NAME"`` files and ``"s:N"`` shmem, as
        (size in pages, runs over object pages); pages no run covers are zero."""
        self.start_brk = MODEL_BASES.heap
        self.brk = MODEL_BASES.heap
        self.elsewhere = ELSEWHERE_TOP
        self.serial = 0
        self.ram_pages = ram_pages

    def __repr__(self) -> str:
        return f"<AddressSpace policy={self.policy.name!r} vmas={len(self.vmas)}>"

    # ------------------------------------------------------------ interface

    def apply(self, op: Op) -> int:
        """Run one call; the result is an ``int`` in the kernel's convention."""
        if not _OPS:
            _register()
        if isinstance(op, self.policy.seal_op):
            return self.policy.seal_call(self, op)
        handler = _OPS.get(type(op))
        if handler is None:
            return -errno.ENOSYS  # a call this policy's world does not have
        return handler(self, op)

    def copy(self) -> AddressSpace:
        """An independent twin (cheap: VMAs and contents are shared until changed)."""
        twin = AddressSpace.__new__(AddressSpace)
        twin.policy = self.policy
        twin.vmas = self.vmas.copy()
        twin.objects = self.objects.copy()
        twin.start_brk = self.start_brk
        twin.brk = self.brk
        twin.elsewhere = self.elsewhere
        twin.serial = self.serial
        twin.ram_pages = self.ram_pages
        twin.def_flags = self.def_flags
        twin.proc_mem_force = self.proc_mem_force
        return twin

    def expand_stack(self, addr: int) -> int:
        """A fault at ``addr`` below a grows-down VMA (``expand_stack()``):
        0 if ``addr`` is mapped or the stack grew to cover it, else ``-errno``."""
        return mapping.expand_stack(self, addr & M64)

    def layout(self, zone: str, lo: int, hi: int) -> Layout:
        """Pages ``[lo, hi)`` of zone ``zone`` (``"p"`` or ``"h"``), one run per VMA."""
        base = _zone_base(zone, lo, hi)
        start, end = base + lo * PAGE, base + hi * PAGE
        names: dict[object, str] = {}
        runs = []
        for v in self.vmas.range(start, end):
            s, e = max(v.start, start), min(v.end, end)
            off = (s - v.start) >> PAGE_SHIFT
            runs.append(
                Run(
                    (s - base) >> PAGE_SHIFT,
                    (e - base) >> PAGE_SHIFT,
                    _prot(v.flags),
                    bool(v.flags & 0x80),  # VM_MAYSHARE: the 's' of /proc/PID/maps
                    self._backing(v),
                    v.pgoff + off,
                    self._obj_name(v, names),
                    self.policy.seal_text(v.seal) if v.seal else "",
                    frozenset(m for bit, m in MNEMONICS if v.flags & bit),
                    "".join(self.tokens(v, s, e)),
                )
            )
        return Layout(zone, lo, hi, tuple(runs))

    def state_key(self, zone: str, lo: int, hi: int) -> Hashable:
        """A hashable summary of pages ``[lo, hi)`` of ``zone`` and of what can
        still influence them (object contents, the break), equal for states
        that behave the same; object identities are renumbered canonically."""
        base = _zone_base(zone, lo, hi)
        start, end = base + lo * PAGE, base + hi * PAGE
        names: dict[object, int] = {}
        items = []
        for v in self.vmas.range(start, end):
            s, e = max(v.start, start), min(v.end, end)
            off = (s - v.start) >> PAGE_SHIFT
            if v.file is None:
                where: object = None
                pgoff = v.pgoff - (v.start >> PAGE_SHIFT)
            elif v.file.startswith("s:"):
                where = ("s", names.setdefault(v.file, len(names)))
                pgoff = v.pgoff + off
            else:
                where = v.file
                pgoff = v.pgoff + off
            anon = None if v.anon is None else (names.setdefault(v.anon, len(names)), v.anon.forked)
            items.append(
                (
                    (s - start) >> PAGE_SHIFT,
                    (e - start) >> PAGE_SHIFT,
                    v.flags,
                    v.seal,
                    where,
                    pgoff,
                    anon,
                    "".join(self.tokens(v, s, e)),
                )
            )
        shm = tuple((names[key], self.objects[key]) for key in names if isinstance(key, str))
        files = tuple(sorted((k, v) for k, v in self.objects.items() if k.startswith("f:")))
        return (
            zone, lo, hi, tuple(items), self.brk - self.start_brk, shm, files, self.def_flags,
            self.proc_mem_force,
        )  # fmt: skip

    def vma_view(self, zone: str, lo: int, hi: int) -> tuple[VmaView, ...]:
        """Everything a call can read of pages ``[lo, hi)`` of ``zone``, one
        entry per VMA that meets the window: ``(start page, end page,
        attributes, object, anon_vma, name, data)``.

        ``start``/``end`` are the VMA's own bounds (zone page indices, not
        clipped). ``attributes`` is every field of the VMA but its objects and
        pages: ``vm_flags`` (all of them, ``VM_ACCOUNT``, ``VM_SEALABLE``...
        that no layout shows), the seal, the open file (``"f:NAME"`` /
        ``"F:NAME"`` for read-write / read-only, ``"s"`` for shmem, ``None`` for
        anonymous memory), the page offset of ``start`` and whether the
        anon_vma comes from ``fork()``. ``object`` is the backing object's
        content key (``"f:NAME"``, ``"s:N"``; ``None`` for anonymous memory);
        ``anon_vma`` is the anon_vma itself (compared by identity, as the
        kernel compares the pointer; a private file mapping has one once a
        page was copied) or ``None``; ``name`` is what layouts call the
        object (``Run.obj``). ``data`` has one entry per page of the window
        the VMA covers: the page's own content token (lazily freed content as
        ``?`` followed by the letter a write fault would bring back), or
        ``None`` where the page shows its object (or zeroes).

        With :meth:`backing_view` this is the whole state a call can read or
        change in the window: the analyzer's search keys its caches on it.
        """
        base = _zone_base(zone, lo, hi)
        start, end = base + lo * PAGE, base + hi * PAGE
        out: list[VmaView] = []
        for v in self.vmas.between(start, end):
            # A VMA never changes once built (copies share it), so its entry
            # for a window is computed once (the analyzer asks for the same
            # windows of the same VMAs millions of times, and compares the
            # answers: equal entries are then the same object).
            s = v.start if v.start > start else start
            e = v.end if v.end < end else end
            views = v.views
            if views is None:
                views = v.views = {}
            key = (base, s, e)
            entry = views.get(key)
            if entry is None:
                entry = views[key] = _view_entry(v, base, s, e)
            out.append(entry)  # type: ignore[arg-type]
        return tuple(out)

    def backing_view(self) -> tuple[int, tuple[tuple[str, int, Runs], ...]]:
        """What calls can read outside the VMAs: the break (pages above its
        start) and every backing object's contents ``(key, size in pages,
        runs)``, sorted by key. A file no call has touched yet is not listed
        (it holds ``ops.FILE_PAGES`` pages of ``F``); once listed it stays."""
        objects = tuple(sorted((k, size, runs) for k, (size, runs) in self.objects.items()))
        return ((self.brk - self.start_brk) >> PAGE_SHIFT, objects)

    # ------------------------------------------------------- layout helpers

    def _backing(self, v: Vma) -> str:
        if v.file is None:
            # fs/proc/task_mmu.c: an anonymous VMA around the break is "[heap]"
            # (vma_is_initial_heap()).
            if v.start < self.brk and v.end > self.start_brk:
                return "[heap]"
            return "anon"
        if v.file.startswith("s:"):
            return "shmem"
        return "file:" + v.file[2:]

    @staticmethod
    def _obj_name(v: Vma, names: dict[object, str]) -> str | None:
        # Stable names (the object's serial), not first-appearance numbers: the
        # same object must have the same name in the layouts before and after a
        # trace, and a new object a new name (Run.obj identifies the object).
        if v.file is not None and v.file.startswith("s:"):
            return names.setdefault(v.file, f"shm{v.file[2:]}")
        if v.file is None and v.anon is not None:
            return names.setdefault(v.anon, f"av{v.anon.serial}")
        return None

    def tokens(self, v: Vma, s: int, e: int) -> list[str]:
        """Content tokens of pages ``[s, e)`` (bytes) of ``v``."""
        lo, hi = (s - v.start) >> PAGE_SHIFT, (e - v.start) >> PAGE_SHIFT
        if v.file is None:
            base = ["0"] * (hi - lo)
        else:
            base = self.object_tokens(v.file, v.pgoff + lo, v.pgoff + hi)
        return content.render(v.priv, lo, hi, base)

    # ------------------------------------------------------ backing objects

    @staticmethod
    def object_key(file: str) -> str:
        """The content key of a backing: both opens of a file (``f:`` read-write,
        ``F:`` read-only) share its pages."""
        return "f:" + file[2:] if file.startswith("F:") else file

    def object(self, file: str) -> tuple[int, Runs]:
        """(size in pages, runs) of a backing object (files start as ``F`` pages)."""
        key = self.object_key(file)
        found = self.objects.get(key)
        if found is None:
            found = (FILE_PAGES, ((0, FILE_PAGES, "F"),))
            self.objects[key] = found
        return found

    def object_tokens(self, file: str, lo: int, hi: int) -> list[str]:
        """Tokens of object pages ``[lo, hi)``: ``!`` beyond the end
        (``filemap_fault()``/``shmem_fault()`` answer SIGBUS there)."""
        size, runs = self.object(file)
        inside = max(0, min(hi, size) - lo)
        toks = content.render(runs, lo, lo + inside, ["0"] * inside) if inside else []
        return toks + [content.SIGBUS] * (hi - lo - inside)

    def set_object(self, file: str, runs: Runs, size: int | None = None) -> None:
        """Replace a backing object's contents (and, when given, its size in pages)."""
        key = self.object_key(file)
        old, _ = self.object(file)
        self.objects[key] = (old if size is None else size, runs)

    def new_shmem(self, pages: int) -> str:
        """A fresh shmem object (``shmem_zero_setup()``) of ``pages`` pages."""
        self.serial += 1
        key = f"s:{self.serial}"
        self.objects[key] = (pages, ())
        return key

    def enough_memory(self, pages: int) -> bool:
        """``security_vm_enough_memory_mm()`` under the default overcommit heuristic."""
        return pages <= self.ram_pages

    # -------------------------------------------------------------- lookups

    def find_vma(self, addr: int) -> Vma | None:
        """The first VMA ending above ``addr`` (``find_vma()``)."""
        return self.vmas.find(addr)

    def vma_lookup(self, addr: int) -> Vma | None:
        """The VMA containing ``addr`` (``vma_lookup()``)."""
        return self.vmas.lookup(addr)

    def intersect(self, start: int, end: int) -> Vma | None:
        """The first VMA intersecting ``[start, end)`` (``find_vma_intersection()``)."""
        v = self.vmas.find(start)
        return v if v is not None and v.start < end else None

    def vma_prev(self, v: Vma) -> Vma | None:
        """The VMA before ``v`` (adjacent or not)."""
        return self.vmas.before(v.start)

    def vma_next(self, v: Vma) -> Vma | None:
        """The VMA after ``v`` (adjacent or not)."""
        return self.vmas.find(v.end)

    # --------------------------------------------------------------- editing

    def put(self, old: Vma, new: list[Vma]) -> None:
        """Replace ``old`` by ``new`` (which cover part or all of its range)."""
        self.vmas.replace(old.start, old.end, new)

    def split(self, v: Vma, addr: int) -> tuple[Vma, Vma]:
        """``__split_vma()``: ``v`` becomes ``[start, addr)`` and ``[addr, end)``."""
        a, b = v.cut(v.start, addr), v.cut(addr, v.end)
        self.vmas.replace(v.start, v.end, [a, b])
        return a, b

    def vma_modify(
        self, v: Vma, start: int, end: int, flags: int, seal: int, *, merge: bool = True
    ) -> Vma:
        """``vma_modify_flags()``: give ``[start, end)`` of ``v`` new flags and seal,
        splitting at ``start``/``end`` and merging with the neighbours when the
        modified part starts or ends where ``v`` does (``vma_merge_existing_range()``;
        ``merge=False`` only splits). Returns the VMA now covering ``[start, end)``."""
        mid = v.cut(start, end).with_flags(flags, seal)
        pieces = []
        lo, hi = v.start, v.end
        if start > v.start:
            pieces.append(v.cut(v.start, start))
        elif merge:
            prev = self.vmas.before(start)
            if prev is not None and prev.end == start:
                joined = self.merged(prev, mid, prev)
                if joined is not None:
                    mid = joined
                    lo = prev.start
        right = v.cut(end, v.end) if end < v.end else None
        if right is None and merge:
            nxt = self.vmas.lookup(end)
            if nxt is not None and nxt.start == end:
                joined = self.merged(mid, nxt, nxt)
                if joined is not None:
                    mid = joined
                    hi = nxt.end
        pieces.append(mid)
        if right is not None:
            pieces.append(right)
        self.vmas.replace(lo, hi, pieces)
        return mid

    def merge_new(self, new: Vma, *, prev_only: bool = False) -> Vma:
        """Insert ``new`` into a gap, merging with the VMA ending at its start
        and the one starting at its end when compatible (``vma_merge_new_range()``;
        ``prev_only`` is brk's ``just_expand``). Returns the VMA covering it."""
        lo, hi = new.start, new.end
        merged = new
        if not new.flags & VM_SPECIAL:
            prev = self.vmas.before(new.start)
            if prev is not None and prev.end == new.start:
                joined = self.merged(prev, merged, prev)
                if joined is not None:
                    merged = joined
                    lo = prev.start
            if not prev_only:
                nxt = self.vmas.lookup(new.end)
                if nxt is not None and nxt.start == new.end:
                    joined = self.merged(merged, nxt, nxt)
                    if joined is not None:
                        merged = joined
                        hi = nxt.end
        self.vmas.replace(lo, hi, [merged])
        return merged

    def merged(self, a: Vma, b: Vma, neighbour: Vma) -> Vma | None:
        """``a`` and ``b`` (adjacent) as one VMA, or ``None`` when the kernel
        keeps them apart. ``neighbour`` (``a`` or ``b``) is the VMA already in
        place that the merge code asks ``is_mergeable_vma()`` about; the
        policy's ``merge_rule`` says what seals do (see :class:`Policy`)."""
        rule = self.policy.merge_rule
        if rule == "equal":
            return merge(a, b) if can_merge(a, b) else None
        other = b if neighbour is a else a
        if neighbour.seal or (rule == "never-sealed" and other.seal):
            return None
        # "kept-neighbour": the changed side's seals are not asked about, and
        # the merged VMA is the neighbour's, with its (absent) seals.
        a, b = a.with_flags(a.flags, neighbour.seal), b.with_flags(b.flags, neighbour.seal)
        return merge(a, b) if can_merge(a, b) else None

    def anon_vma_prepare(self, v: Vma) -> Vma:
        """Give ``v`` an anon_vma (``anon_vma_prepare()``), reusing a neighbour's
        when ``find_mergeable_anon_vma()`` would (next first, then prev)."""
        if v.anon is not None:
            return v
        anon = None
        nxt = self.vmas.lookup(v.end)
        if (
            nxt is not None
            and nxt.anon is not None
            and not nxt.anon.forked
            and anon_reusable(v, nxt, seals=self.policy.seal_in_flags)
        ):
            anon = nxt.anon
        if anon is None:
            prev = self.vmas.before(v.start)
            if (
                prev is not None
                and prev.anon is not None
                and not prev.anon.forked
                and anon_reusable(prev, v, seals=self.policy.seal_in_flags)
            ):
                anon = prev.anon
        if anon is None:
            self.serial += 1
            anon = AnonVma(serial=self.serial)
        new = v.with_priv(v.priv, anon)
        self.put(v, [new])
        return new

    def set_flags(self, v: Vma, flags: int) -> Vma:
        """``v`` with other flags, in place (no split or merge: the kernel's
        atomic flag updates, ``vma_flag_set_atomic()``)."""
        new = v.with_flags(flags, v.seal)
        self.put(v, [new])
        return new

    def set_priv(self, v: Vma, priv: Runs) -> Vma:
        """``v`` with other private pages (same range, no split or merge)."""
        new = v.with_priv(priv, v.anon)
        self.put(v, [new])
        return new

    # ------------------------------------------------------------- munmap

    def gather(self, start: int, end: int, purpose: str) -> int:
        """``vms_gather_munmap_vmas()`` for ``[start, end)``: split the first
        VMA at ``start`` (unless it is sealed: "don't bother splitting the VMA
        if we can't unmap it anyway"), then check every VMA in range and
        split the last at ``end``. A refusal leaves the leading split in
        place (docs/reference/linux.md rule 5). The caller removes the range
        with :meth:`unmap` once nothing else can fail."""
        first = self.intersect(start, end)
        if first is None:
            return 0
        policy = self.policy
        check = purpose not in policy.precheck
        if start > first.start:
            if check and policy.blocks(purpose, first.seal):
                return -policy.refusal
            self.split(first, start)
        for v in list(self.vmas.range(start, end)):
            if check and policy.blocks(purpose, v.seal):
                return -policy.refusal
            if v.end > end:
                self.split(v, end)
        return 0

    def precheck_blocked(self, start: int, end: int, purpose: str) -> bool:
        """``can_modify_mm()``-style whole-range check for pre-check policies."""
        policy = self.policy
        if purpose not in policy.precheck:
            return False
        return any(policy.blocks(purpose, v.seal) for v in self.vmas.range(start, end))

    def unmap(self, start: int, end: int) -> None:
        """Remove ``[start, end)`` (every VMA in it, trimming the ends)."""
        keep = []
        first = self.intersect(start, end)
        if first is None:
            return
        lo = first.start
        hi = lo
        for v in self.vmas.range(start, end):
            hi = v.end
            if v.start < start:
                keep.append(v.cut(v.start, start))
            if v.end > end:
                keep.append(v.cut(end, v.end))
        self.vmas.replace(lo, hi, keep)

    def do_vmi_align_munmap(self, start: int, end: int, purpose: str) -> int:
        """Gather then remove ``[start, end)`` (aligned; mm/vma.c)."""
        err = self.gather(start, end, purpose)
        if err:
            return err
        self.unmap(start, end)
        return 0

    def do_vmi_munmap(self, start: int, length: int, purpose: str) -> int:
        """``do_vmi_munmap()``: validate, then unmap ``[start, start+len)``."""
        if start & (PAGE - 1) or start > TASK_SIZE or length > TASK_SIZE - start:
            return -errno.EINVAL
        end = start + ((length + PAGE - 1) & ~(PAGE - 1))
        if end == start:
            return -errno.EINVAL
        # 6.10-style policies check the whole range before touching anything.
        if self.precheck_blocked(start, end, purpose):
            return -self.policy.refusal
        return self.do_vmi_align_munmap(start, end, purpose)

    # --------------------------------------------------------- placement

    def place_elsewhere(self, length: int) -> int:
        """An address for a mapping the kernel would put outside the arena
        (top-down, never reusing space): such mappings exist in the model but
        sit outside both zones, and the call returns ``ops.ELSEWHERE``.
        ``-ENOMEM`` when no room is left above ``mmap_min_addr``."""
        addr = (self.elsewhere - length) & ~(PAGE - 1)
        while addr >= MMAP_MIN_ADDR:
            clash = self.intersect(addr, addr + length)
            if clash is None:
                self.elsewhere = addr
                return addr
            addr = (clash.start - length) & ~(PAGE - 1)
        return -errno.ENOMEM

    # ------------------------------------------------------------ checking

    def check(self) -> None:
        """Raise ``AssertionError`` unless the VMA store is sorted,
        non-overlapping and page-aligned and every VMA is well formed."""
        self.vmas.check()
        for v in self.vmas:
            assert v.start % PAGE == 0 and v.end % PAGE == 0, f"unaligned {v}"
            assert v.end <= 1 << 64, f"beyond 2^64 {v}"
            for a, b, _ in v.priv:
                assert 0 <= a < b <= v.pages, f"private run outside {v}"
            if v.file is None:
                assert not v.flags & VM_SHARED, f"shared anonymous without object {v}"
            if v.priv and not is_anonymous(v):
                assert not v.flags & VM_SHARED or all(k == "#" for _, _, k in v.priv), (
                    f"private pages in a shared mapping {v}"
                )


def _view_entry(v: Vma, base: int, s: int, e: int) -> VmaView:
    """The :meth:`AddressSpace.vma_view` entry of ``v`` seen through the
    window ``[s, e)`` (bytes, inside ``v``) of the zone at ``base``."""
    off, n = (s - v.start) >> PAGE_SHIFT, (e - s) >> PAGE_SHIFT
    if v.file is None:
        opened: str | None = None
        obj: str | None = None
    else:
        opened = "s" if v.file.startswith("s:") else v.file
        obj = AddressSpace.object_key(v.file)
    data: list[str | None] = [None] * n
    for a, b, k in v.priv:
        if b <= off or a >= off + n:
            continue
        lazy = content.is_lazy(k)
        kind = content.unlazy(k) if lazy else k
        for o in range(max(a, off), min(b, off + n)):
            token = content.token(kind, o)
            data[o - off] = content.LAZY + token if lazy else token
    anon = v.anon
    return (
        (v.start - base) >> PAGE_SHIFT,
        (v.end - base) >> PAGE_SHIFT,
        (v.flags, int(v.seal), opened, v.pgoff, anon is not None and anon.forked),
        obj,
        anon,
        AddressSpace._obj_name(v, {}),
        tuple(data),
    )


_ZONE_BASES: Final = {"p": MODEL_BASES.arena, "h": MODEL_BASES.heap}


def _zone_base(zone: str, lo: int, hi: int) -> int:
    if type(lo) is int and type(hi) is int and lo <= hi:
        base = _ZONE_BASES.get(zone)
        if base is not None:
            return base
    if zone not in ("p", "h"):
        raise ArgumentError(f"zone must be 'p' (arena) or 'h' (heap), not {zone!r}")
    if not isinstance(lo, int) or not isinstance(hi, int) or isinstance(lo, bool):
        raise ArgumentTypeError("page bounds must be integers")
    if lo > hi:
        raise ArgumentError(f"empty window: lo={lo} > hi={hi}")
    return MODEL_BASES.base(zone)


def _prot(flags: int) -> Prot:
    return Prot(flags & VM_ACCESS_FLAGS)

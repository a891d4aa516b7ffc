"""A naive page-map model of the same kernel, written apart from ``sealkit.model``.

State is a dict page number -> :class:`Page` (every attribute per page), the
backing objects as dicts page -> token, and a set of *forced boundaries*:
page numbers ``b`` where pages ``b-1`` and ``b`` could be one VMA but the
kernel left two (a split nothing merged again). A VMA is then simply a
maximal run of mapped pages where each page continues the previous one
(same flags, seal, object and anon_vma-compatible, next page offset) and no
forced boundary intervenes; a change to pages drops the forced boundaries
around them, because the kernel tries to merge what it modifies.

It shares nothing with the model but constants and the policies' small
predicates; it is slow (O(pages) everywhere) and refuses ranges of more than
:data:`LIMIT` pages (``TooBig``), which the property tests discard.
"""

from __future__ import annotations

import errno
from dataclasses import dataclass, replace

from sealkit import ops as O
from sealkit.flags import Madv, Prot
from sealkit.layout import Layout, Run
from sealkit.model import POLICIES
from sealkit.model.vma import (
    MNEMONICS,
    VM_ACCOUNT,
    VM_DONTCOPY,
    VM_DONTDUMP,
    VM_DROPPABLE,
    VM_EXEC,
    VM_GROWSDOWN,
    VM_HUGEPAGE,
    VM_LOCKED,
    VM_LOCKED_MASK,
    VM_LOCKONFAULT,
    VM_MAYBE_GUARD,
    VM_MAYEXEC,
    VM_MAYREAD,
    VM_MAYSHARE,
    VM_MAYWRITE,
    VM_MERGEABLE,
    VM_NOHUGEPAGE,
    VM_NORESERVE,
    VM_RAND_READ,
    VM_READ,
    VM_SEALABLE,
    VM_SEQ_READ,
    VM_SHARED,
    VM_SYNC,
    VM_WIPEONFORK,
    VM_WRITE,
)

LIMIT = 2048
GU = VM_MAYBE_GUARD
VM_STACK_GAP_PAGES = 256
TASK = 0x7FFF_FFFF_F000 >> 12  # TASK_SIZE in pages
M64 = (1 << 64) - 1
PG = 4096
MIN_PAGE = 0x10000 >> 12


class TooBig(Exception):
    """The naive model will not walk this many pages."""


@dataclass
class Page:
    flags: int
    seal: int
    file: str | None
    pgoff: int
    anon: int | None = None
    tok: str | None = None  # a private page's token
    lazy: bool = False
    guard: bool = False


def _align_up(n: int) -> int:
    return ((n + PG - 1) // PG * PG) & M64


class Naive:
    def __init__(self, policy: str = "linux", ram_pages: int = 1 << 21) -> None:
        self.policy = POLICIES[policy]
        self.pages: dict[int, Page] = {}
        self.forced: set[int] = set()
        self.objects: dict[str, dict[int, str]] = {}
        self.sizes: dict[str, int] = {}
        self.start_brk = self.brk = O.MODEL_BASES.heap
        self.elsewhere = 0x7F00_0000_0000
        self.serial = 0
        self.anons = 0
        self.forked: set[int] = set()
        self.ram = ram_pages
        self.def_flags = 0

    # ------------------------------------------------------------ structure

    def joins(self, p: int) -> bool:
        """Pages p-1 and p are in one VMA."""
        a, b = self.pages.get(p - 1), self.pages.get(p)
        if a is None or b is None or p in self.forced:
            return False
        if (a.flags & ~GU, a.seal, a.file) != (b.flags & ~GU, b.seal, b.file):
            return False
        if b.pgoff != a.pgoff + 1:
            return False
        if a.anon is None:
            return b.anon is None or b.anon not in self.forked
        if b.anon is None:
            return a.anon not in self.forked
        return a.anon == b.anon

    def vma(self, p: int) -> tuple[int, int]:
        lo = p
        while self.joins(lo):
            lo -= 1
        hi = p + 1
        while self.joins(hi):
            hi += 1
        return lo, hi

    def mapped(self, lo: int, hi: int) -> list[int]:
        return sorted(p for p in self.pages if lo <= p < hi)

    def vmas(self, lo: int, hi: int) -> list[tuple[int, int]]:
        out: list[tuple[int, int]] = []
        for p in self.mapped(lo, hi):
            if out and p < out[-1][1]:
                continue
            out.append(self.vma(p))
        return out

    def first_after(self, p: int) -> tuple[int, int] | None:
        """The first VMA ending after page p."""
        if p in self.pages:
            return self.vma(p)
        later = [q for q in self.pages if q >= p]
        return self.vma(min(later)) if later else None

    def changed(self, lo: int, hi: int) -> None:
        """Pages [lo, hi) got new attributes through a merge-attempting path."""
        rule = self.policy.merge_rule
        if rule == "kept-neighbour":
            self.absorb(lo, hi)
        for b in range(lo, hi + 1):
            self.forced.discard(b)
        if rule != "equal":
            # Only the neighbour is asked (is_mergeable_vma()): a sealed one
            # never merges; under "never-sealed" a sealed changed range neither.
            for b, neighbour, other in ((lo, lo - 1, lo), (hi, hi, hi - 1)):
                n, o = self.pages.get(neighbour), self.pages.get(other)
                if (
                    n is not None
                    and o is not None
                    and (n.seal or (rule == "never-sealed" and o.seal))
                ):
                    self.forced.add(b)
        if lo in self.pages:
            # The kernel merges a changed range with the VMA before it first,
            # and with the one after it only if their anon_vmas agree
            # (can_vma_merge_right()): anon-less pages cannot bridge two.
            vlo, vhi = self.vma(lo)
            if len({self.pages[q].anon for q in range(vlo, vhi)} - {None}) > 1:
                self.forced.add(hi)
        self.unify(lo, hi)

    def fits(self, a: Page, b: Page) -> bool:
        """Page ``b`` could continue page ``a`` in one VMA, seals aside."""
        if (a.flags, a.file) != (b.flags, b.file) or b.pgoff != a.pgoff + 1:
            return False
        if a.anon is None:
            return b.anon is None or b.anon not in self.forked
        if b.anon is None:
            return a.anon not in self.forked
        return a.anon == b.anon

    def absorb(self, lo: int, hi: int) -> None:
        """RFC v1 as coded: an unsealed neighbour that the changed pages now
        continue takes them in, and they keep the neighbour's (no) seals."""
        left, right = self.pages.get(lo - 1), self.pages.get(hi)
        if (left is not None and not left.seal and self.fits(left, self.pages[lo])) or (
            right is not None and not right.seal and self.fits(self.pages[hi - 1], right)
        ):
            for q in range(lo, hi):
                self.pages[q].seal = 0

    def unify(self, lo: int, hi: int) -> None:
        """A VMA has one anon_vma: once pages join, the merged VMA takes the one
        some of them had (``vma_merge`` keeps it)."""
        for vlo, vhi in self.vmas(lo - 1, hi + 1):
            anons = {self.pages[q].anon for q in range(vlo, vhi)} - {None}
            if len(anons) == 1:
                (anon,) = anons
                for q in range(vlo, vhi):
                    self.pages[q].anon = anon

    def keep_edges(self, lo: int, hi: int) -> None:
        """Attributes changed without a merge attempt: the VMA keeps its edges."""
        self.forced.add(lo)
        self.forced.add(hi)

    def remove(self, lo: int, hi: int) -> None:
        """Pages [lo, hi) unmapped: the boundaries between them go too."""
        if hi - lo > LIMIT:
            for p in self.mapped(lo, hi):
                del self.pages[p]
        else:
            for p in range(lo, hi):
                self.pages.pop(p, None)
        self.forced = {b for b in self.forced if not lo < b < hi}

    def add(self, lo: int, hi: int, make: object) -> None:
        """New pages [lo, hi): one new VMA, so no boundary inside it."""
        if hi - lo > LIMIT:
            raise TooBig
        for i, p in enumerate(range(lo, hi)):
            self.pages[p] = make(i)  # type: ignore[operator]
            if i:
                self.forced.discard(p)

    # ------------------------------------------------------------ objects

    def okey(self, file: str) -> str:
        return "f:" + file[2:] if file.startswith("F:") else file

    def obj(self, file: str) -> dict[int, str]:
        key = self.okey(file)
        if key not in self.objects:
            self.objects[key] = dict.fromkeys(range(O.FILE_PAGES), "F")
            self.sizes[key] = O.FILE_PAGES
        return self.objects[key]

    def size(self, file: str) -> int:
        self.obj(file)
        return self.sizes[self.okey(file)]

    def default(self, pg: Page) -> str:
        if pg.file is None:
            return "0"
        if pg.pgoff >= self.size(pg.file):
            return "!"
        return self.obj(pg.file).get(pg.pgoff, "0")

    def token(self, pg: Page) -> str:
        if pg.guard:
            return "#"
        if pg.lazy:
            return "?"
        return pg.tok if pg.tok is not None else self.default(pg)

    # --------------------------------------------------------------- anon

    def anon_prepare(self, p: int) -> None:
        lo, hi = self.vma(p)
        if self.pages[lo].anon is not None:
            return
        chosen = None
        for other, near, far in ((hi, hi - 1, hi), (lo - 1, lo - 1, lo)):
            o = self.pages.get(other)
            if o is None or o.anon is None or o.anon in self.forked:
                continue
            a, b = self.pages[near], self.pages[far]
            if (
                a.file == b.file
                and (a.seal == b.seal or not self.policy.seal_in_flags)
                and not (a.flags ^ b.flags) & ~(7 | GU)
                and b.pgoff == a.pgoff + 1
            ):
                chosen = o.anon
                break
        if chosen is None:
            self.anons += 1
            chosen = self.anons
        for q in range(lo, hi):
            self.pages[q].anon = chosen

    # ------------------------------------------------------------ faults

    def fault_ok(self, pg: Page) -> bool:
        return not pg.guard and not (pg.file is not None and pg.pgoff >= self.size(pg.file))

    def write_fault(self, p: int) -> None:
        pg = self.pages[p]
        self.anon_prepare(p)
        if pg.lazy:
            pg.lazy = False
        elif pg.tok is None and pg.file is not None:
            pg.tok = self.default(pg)

    def populate(self, lo: int, hi: int, ignore: bool) -> int:
        p = lo
        while p < hi:
            if p not in self.pages:
                later = [q for q in self.pages if p <= q < hi]
                if not later:
                    return 0
                p = min(later)
            pg = self.pages[p]
            if pg.flags & VM_LOCKONFAULT:
                p += 1
                continue
            # No FOLL_FORCE for a PROT_NONE VMA: GUP fails (mlock: ENOMEM).
            if not self.fault_ok(pg) or not pg.flags & (VM_READ | VM_WRITE | VM_EXEC):
                if (pg.flags & (VM_WRITE | VM_SHARED)) == VM_WRITE and not pg.guard:
                    self.anon_prepare(p)  # do_cow_fault() prepares it before the SIGBUS
                if ignore:
                    p = self.vma(p)[1]
                    continue
                return -errno.EFAULT
            if (pg.flags & (VM_WRITE | VM_SHARED)) == VM_WRITE:
                self.write_fault(p)
            p += 1
        return 0

    # ----------------------------------------------------------- dispatch

    def apply(self, op: O.Op) -> int:
        result = self._apply(op)
        self.sticky()
        return result

    def sticky(self) -> None:
        """A VMA is one VMA: if any of its pages has ``gu``, all have (a merge
        keeps the sticky flags of every VMA it joins)."""
        for vlo, vhi in self.vmas(0, 1 << 52):
            if any(self.pages[q].flags & GU for q in range(vlo, vhi)):
                for q in range(vlo, vhi):
                    self.pages[q].flags |= GU

    def _apply(self, op: O.Op) -> int:
        policy = self.policy
        if isinstance(op, policy.seal_op):
            return self.seal(op)
        for kind, fn in (
            (O.Mmap, self.mmap), (O.Munmap, self.munmap), (O.Mprotect, self.mprotect),
            (O.PkeyMprotect, self.mprotect), (O.Mremap, self.mremap),
            (O.Madvise, self.madvise), (O.ProcessMadvise, self.process_madvise),
            (O.Brk, self.sbrk), (O.Mlock, self.mlock), (O.Munlock, self.mlock),
            (O.Write, self.write), (O.Fork, self.fork),
            (O.PwriteMem, self.pwrite_mem), (O.VmWritev, self.vm_writev), (O.Poke, self.poke),
            (O.FilePwrite, self.file_pwrite), (O.Ftruncate, self.ftruncate),
            (O.Punch, self.punch), (O.Msync, self.msync), (O.Mincore, self.mincore),
            (O.Mlockall, self.mlockall), (O.Munlockall, self.mlockall),
        ):  # fmt: skip
            if isinstance(op, kind):
                return fn(op)  # type: ignore[operator]
        return -errno.ENOSYS

    # --------------------------------------------------------------- seal

    def seal(self, op: O.Op) -> int:
        pol = self.policy
        if isinstance(op, O.Mimmutable):
            addr, size = op.addr & M64, op.length & M64
            off = addr % PG
            if off:
                if size > M64 - off:
                    return -errno.EINVAL
                addr, size = addr - off, size + off
            if size:
                size = _align_up(size)
                if size == 0:
                    return -errno.EINVAL
            if addr > M64 - size:
                return -errno.EINVAL
            lo, hi = addr // PG, min((addr + size) // PG, TASK)
            if lo >= hi:
                return 0
            inherit_zero = pol.name != "mimmutable-7.3"  # the test came with 114aad1
            if inherit_zero and any(
                self.pages[p].flags & VM_WIPEONFORK for p in self.mapped(lo, hi)
            ):
                return -errno.EPERM
            self.add_seal(lo, hi, 1)
            return 0
        flags = getattr(op, "flags", 0)
        bits = {O.Mseal: 1, O.MsealV1: 0, O.MsealV3: 0, O.MsealSplit: 0}[type(op)]
        known = {O.MsealV1: 0x1F, O.MsealV3: 0xF, O.MsealSplit: 3}.get(type(op))
        if isinstance(op, O.MsealSplit):
            flags = 0
        if flags & M64:
            return -errno.EINVAL
        if known is not None:
            bits = int(getattr(op, "types", getattr(op, "seals", 0))) & M64
            if isinstance(op, O.MsealV3) and bits & 0xC:
                bits |= 2  # PROT_PKEY and DISCARD_RO_ANON imply BASE
            if bits & ~known or (isinstance(op, O.MsealSplit) and not bits):
                return -errno.EINVAL
        start, length = op.addr & M64, op.length & M64  # type: ignore[attr-defined]
        if start % PG:
            return -errno.EINVAL
        alen = _align_up(length)
        if length and not alen:
            return -errno.EINVAL
        if start + alen > M64:
            return -errno.EINVAL
        if alen == 0:
            return 0
        lo, hi = start // PG, (start + alen) // PG
        if isinstance(op, (O.MsealV1, O.MsealV3)):
            # One walk in address order: a hole or a refusing page, first wins.
            expect = lo
            for p in self.mapped(lo, hi):
                pg = self.pages[p]
                if p > expect:
                    return -errno.ENOMEM
                if isinstance(op, O.MsealV3) and not pg.flags & VM_SEALABLE:
                    return -pol.refusal
                if pg.seal & 1 and bits & ~pg.seal:
                    return -pol.refusal
                expect = p + 1
            if expect < hi:
                return -errno.ENOMEM
        elif hi - lo > LIMIT or len(self.mapped(lo, hi)) != hi - lo:
            return -errno.ENOMEM
        if pol.name == "none":
            return 0
        self.add_seal(lo, hi, bits, merge=not isinstance(op, O.MsealV1))
        return 0

    def add_seal(self, lo: int, hi: int, bits: int, merge: bool = True) -> None:
        for p in self.mapped(lo, hi):
            pg = self.pages[p]
            if pg.seal | bits != pg.seal:
                vlo, vhi = self.vma(p)
                a, b = max(vlo, lo), min(vhi, hi)
                for q in range(a, b):
                    self.pages[q].seal |= bits
                if merge:
                    self.changed(a, b)
                else:
                    self.keep_edges(a, b)  # RFC v1 mseal_fixup(): split only

    # ------------------------------------------------------------- munmap

    def gather(self, lo: int, hi: int, purpose: str) -> int:
        pol = self.policy
        vs = self.vmas(lo, hi)
        if not vs:
            return 0
        check = purpose not in pol.precheck
        if lo > vs[0][0]:
            if check and pol.blocks(purpose, self.pages[vs[0][0]].seal):
                return -pol.refusal
            self.forced.add(lo)
        for vlo, _ in vs:
            if check and pol.blocks(purpose, self.pages[vlo].seal):
                return -pol.refusal
        return 0

    def blocked_range(self, lo: int, hi: int, purpose: str) -> bool:
        pol = self.policy
        return purpose in pol.precheck and any(
            pol.blocks(purpose, self.pages[p].seal) for p in self.mapped(lo, hi)
        )

    def do_munmap(self, start: int, length: int, purpose: str) -> int:
        if start % PG or start > TASK * PG or length > TASK * PG - start:
            return -errno.EINVAL
        end = start + _align_up(length)
        if end == start:
            return -errno.EINVAL
        lo, hi = start // PG, end // PG
        if self.blocked_range(lo, hi, purpose):
            return -self.policy.refusal
        err = self.gather(lo, hi, purpose)
        if err:
            return err
        self.remove(lo, hi)
        return 0

    def munmap(self, op: O.Munmap) -> int:
        return self.do_munmap(op.addr & M64, op.length & M64, "munmap")

    # --------------------------------------------------------------- mmap

    def free(self, lo: int, hi: int) -> bool:
        return not self.mapped(lo, hi)

    def place(self, hint: int, length: int, fixed: bool) -> tuple[int, bool]:
        if length > TASK * PG:
            return -errno.ENOMEM, False
        if fixed:
            if hint > TASK * PG - length:
                return -errno.ENOMEM, False
            if hint % PG:
                return -errno.EINVAL, False
            return hint, False
        if hint:
            hint -= hint % PG
            if hint <= TASK * PG - length:
                nxt = self.first_after(hint // PG)
                if nxt is None:
                    return hint, False
                start = nxt[0] * PG
                if self.pages[nxt[0]].flags & VM_GROWSDOWN:
                    start = max(start - VM_STACK_GAP_PAGES * PG, 0)
                if nxt[0] * PG > hint and hint + length <= start:
                    return hint, False
        addr = (self.elsewhere - length) // PG * PG
        while addr >= MIN_PAGE * PG:
            if self.free(addr // PG, (addr + length) // PG):
                self.elsewhere = addr
                return addr, True
            clash = self.mapped(addr // PG, (addr + length) // PG)[0]
            addr = (self.vma(clash)[0] * PG - length) // PG * PG
        return -errno.ENOMEM, False

    def mmap(self, op: O.Mmap) -> int:
        pol = self.policy
        addr, length = op.addr & M64, op.length & M64
        prot, flags, off = int(op.prot) & M64, int(op.flags) & M64, op.offset & M64
        if off % PG:
            return -errno.EINVAL
        pgoff = off // PG
        file = None
        if not flags & 0x20:
            if op.file is None:
                return -errno.EBADF
            file = ("F:" if op.file_ro else "f:") + op.file
            if flags & 0x40000:
                return -errno.EINVAL
        elif flags & 0x40000:
            return -errno.EINVAL if (flags >> 26) & 0x3F not in (0, 21, 30) else -errno.ENOMEM
        if not length:
            return -errno.EINVAL
        if flags & 0x100000:
            flags |= 0x10
        if not flags & 0x10:
            addr -= addr % PG
            if addr and addr < MIN_PAGE * PG:
                addr = MIN_PAGE * PG
        length = _align_up(length)
        if not length:
            return -errno.ENOMEM
        if pgoff + length // PG > M64:
            return -errno.EOVERFLOW
        vmf = (prot & 7) | self.def_flags | VM_MAYREAD | VM_MAYWRITE | VM_MAYEXEC
        vmf |= VM_GROWSDOWN if flags & 0x100 else 0
        vmf |= VM_LOCKED if flags & 0x2000 else 0
        vmf |= VM_SYNC if flags & 0x80000 else 0
        vmf |= VM_NOHUGEPAGE if flags & 0x20000 else 0
        vmf |= VM_SEALABLE if flags & 0x8000000 and pol.map_sealable else 0
        start, elsewhere = self.place(addr, length, bool(flags & 0x10))
        if start < 0:
            return start
        lo, hi = start // PG, (start + length) // PG
        if flags & 0x100000 and self.mapped(lo, hi):
            return -errno.EEXIST
        legacy = 0x7C000000 | 0x3 | 0x10 | 0x20 | 0x40 | 0x80 | 0x100 | 0x800 | 0x1000
        legacy |= 0x2000 | 0x4000 | 0x8000 | 0x10000 | 0x20000 | 0x40000
        mtype = flags & 0xF
        if file is not None:
            if pgoff > ((1 << 63) - 1 - length) // PG:
                return -errno.EOVERFLOW
            if mtype == 1:
                flags &= legacy
            if mtype in (1, 3):
                if flags & ~(legacy | 0x80000):
                    return -errno.EOPNOTSUPP
                if prot & 2 and file.startswith("F:"):
                    return -errno.EACCES
                vmf |= VM_SHARED | VM_MAYSHARE
                if file.startswith("F:"):
                    vmf &= ~(VM_MAYWRITE | VM_SHARED)
            elif mtype != 2:
                return -errno.EINVAL
            if vmf & VM_GROWSDOWN:
                return -errno.EINVAL
        elif mtype == 1:
            if vmf & VM_GROWSDOWN:
                return -errno.EINVAL
            pgoff = 0
            vmf |= VM_SHARED | VM_MAYSHARE
        elif mtype in (2, 8):
            if mtype == 8:
                if flags & 0x42000 or vmf & VM_GROWSDOWN:
                    return -errno.EINVAL
                vmf |= VM_DROPPABLE | VM_NORESERVE | VM_WIPEONFORK | VM_DONTDUMP
            pgoff = lo
        else:
            return -errno.EINVAL
        if flags & 0x4000:
            vmf |= VM_NORESERVE
        accountable = (vmf & (VM_NORESERVE | VM_SHARED | VM_WRITE)) == VM_WRITE
        if "mmap" in pol.precheck:
            if self.blocked_range(lo, hi, "mmap"):
                return -pol.refusal
            err = self.gather(lo, hi, "mmap")
            if err:
                return err
            self.remove(lo, hi)
            if accountable:
                if length // PG > self.ram:
                    return -errno.ENOMEM
                vmf |= VM_ACCOUNT
        else:
            err = self.gather(lo, hi, "mmap")
            if err:
                return err
            if accountable:
                charged = (
                    hi
                    - lo
                    - sum(1 for p in self.mapped(lo, hi) if self.pages[p].flags & VM_ACCOUNT)
                )
                if charged > 0 and charged > self.ram:
                    if hi in self.pages and self.joins(hi):
                        self.forced.add(hi)
                    return -errno.ENOMEM
                vmf |= VM_ACCOUNT
            self.remove(lo, hi)
        if file is not None and vmf & VM_SYNC:
            return -errno.EOPNOTSUPP
        if file is not None:
            self.obj(file)
        elif vmf & VM_SHARED:
            self.serial += 1
            file = f"s:{self.serial}"
            self.objects[file] = {}
            self.sizes[file] = hi - lo
        self.add(lo, hi, lambda i: Page(vmf, 0, file, pgoff + i))
        self.changed(lo, hi)
        if vmf & VM_LOCKED or (flags & 0x18000) == 0x8000:
            self.populate(lo, hi, True)
        return O.ELSEWHERE if elsewhere else start

    # ------------------------------------------------------------ mprotect

    def mprotect(self, op: O.Mprotect | O.PkeyMprotect) -> int:
        pol = self.policy
        start, length, prot = op.addr & M64, op.length & M64, int(op.prot) & M64
        pkey = -1
        if isinstance(op, O.PkeyMprotect):
            pkey = op.pkey & 0xFFFFFFFF
            pkey = pkey - (1 << 32) if pkey & 0x80000000 else pkey
        grows = prot & 0x3000000
        prot &= ~0x3000000
        if grows == 0x3000000 or start % PG:
            return -errno.EINVAL
        if not length:
            return 0
        end = (start + _align_up(length)) & M64
        if end <= start:
            return -errno.ENOMEM
        if prot & ~0xF:
            return -errno.EINVAL
        if pkey != -1:  # no PKU: not even pkey 0 is allocated
            return -errno.EINVAL
        lo, hi = start // PG, end // PG
        first = self.mapped(lo, hi)
        if not first:
            return -errno.ENOMEM
        vlo, _ = self.vma(first[0])
        if grows & 0x1000000:
            lo = vlo
            if not self.pages[vlo].flags & VM_GROWSDOWN:
                return -errno.EINVAL
        else:
            if vlo > lo:
                return -errno.ENOMEM
            if grows:
                return -errno.EINVAL

        def new(pg: Page) -> int:
            return (prot & 7) | (pg.flags & ~7)

        if "mprotect" in pol.precheck:
            for p in self.mapped(lo, hi):
                from sealkit.model.vma import Vma

                probe = Vma(
                    0, PG, self.pages[p].flags, 0, self.pages[p].file, None, self.pages[p].seal, ()
                )
                if pol.blocks_mprotect(probe, new(self.pages[p])):
                    return -pol.refusal
        cur, tmp = lo, vlo
        while cur < hi:
            nxt = self.first_after(cur)
            if nxt is None or nxt[0] >= hi:
                break
            if nxt[0] != tmp:
                return -errno.ENOMEM
            vlo, vhi = nxt
            pg = self.pages[vlo]
            nf = new(pg)
            if (nf & ~(nf >> 4)) & 7:
                return -errno.EACCES
            a, b = max(vlo, cur), min(vhi, hi)
            from sealkit.model.vma import Vma

            probe = Vma(0, PG, pg.flags, 0, pg.file, None, pg.seal, ())
            if "mprotect" not in pol.precheck and pol.blocks_mprotect(probe, nf):
                return -pol.refusal
            if nf != pg.flags:
                if nf & VM_WRITE:
                    if not pg.flags & (VM_ACCOUNT | VM_WRITE | VM_SHARED | VM_NORESERVE):
                        if b - a > self.ram:
                            return -errno.ENOMEM
                        nf |= VM_ACCOUNT
                elif pg.flags & VM_ACCOUNT and pg.file is None and pg.anon is None:
                    nf &= ~VM_ACCOUNT
                old = pg.flags
                for q in range(a, b):
                    self.pages[q].flags = nf
                self.changed(a, b)
                if (old & (VM_WRITE | VM_SHARED | VM_LOCKED)) == VM_LOCKED and nf & VM_WRITE:
                    self.populate(a, b, False)
            tmp = self.vma(a)[1]
            cur = tmp
        if tmp < hi:
            return -errno.ENOMEM
        return 0

    # --------------------------------------------------------------- brk

    def sbrk(self, op: O.Brk) -> int:
        brk = op.addr & M64
        orig = self.brk
        if brk < self.start_brk:
            return orig
        new, old = _align_up(brk), _align_up(self.brk)
        if new == old:
            self.brk = brk
            return brk
        lo, hi = new // PG, old // PG
        if brk <= self.brk:
            if not self.mapped(lo, hi):
                return orig
            if self.blocked_range(lo, hi, "brk") or self.gather(lo, hi, "brk"):
                return orig
            self.remove(lo, hi)
            self.brk = brk
            return brk
        if (new - old) % (1 << 64) > TASK * PG or old > TASK * PG - (new - old):
            return orig
        nxt = self.first_after(old // PG)
        if nxt is not None:
            gap = nxt[0] * PG
            if self.pages[nxt[0]].flags & VM_GROWSDOWN:
                gap = max(gap - VM_STACK_GAP_PAGES * PG, 0)
            if nxt[0] * PG < new + PG + VM_STACK_GAP_PAGES * PG and new + PG > gap:
                return orig
        if (new - old) // PG > self.ram:
            return orig
        below = self.pages.get(old // PG - 1)
        usable = below is not None and (old // PG) * PG > self.start_brk
        flags = VM_READ | VM_WRITE | VM_MAYREAD | VM_MAYWRITE | VM_MAYEXEC | VM_ACCOUNT
        flags |= self.def_flags
        self.add(old // PG, new // PG, lambda i: Page(flags, 0, None, old // PG + i))
        if usable:
            self.changed(old // PG, new // PG)
            self.forced.add(new // PG)
        else:
            self.forced.add(old // PG)
        self.brk = brk
        if self.def_flags & VM_LOCKED:
            self.populate(old // PG, new // PG, True)
        return brk

    # -------------------------------------------------------------- mlock

    def mlock(self, op: O.Mlock | O.Munlock) -> int:
        start, length = op.addr & M64, op.length & M64
        length = _align_up((length + start % PG) & M64)
        start -= start % PG
        flags = 0
        if isinstance(op, O.Mlock):
            flags = VM_LOCKED | (VM_LOCKONFAULT if op.onfault else 0)
        end = start + length
        if end > M64:
            return -errno.EINVAL
        if end == start:
            return 0
        lo, hi = start // PG, end // PG
        if lo not in self.pages:
            return -errno.ENOMEM
        cur, tmp = lo, self.vma(lo)[0]
        while cur < hi:
            nxt = self.first_after(cur)
            if nxt is None or nxt[0] >= hi:
                break
            if nxt[0] != tmp:
                return -errno.ENOMEM
            vlo, vhi = nxt
            pg = self.pages[vlo]
            nf = (pg.flags & ~VM_LOCKED_MASK) | flags
            a, b = max(vlo, cur), min(vhi, hi)
            if nf != pg.flags and not pg.flags & VM_DROPPABLE:
                for q in range(a, b):
                    self.pages[q].flags = nf
                self.changed(a, b)
            tmp = self.vma(a)[1]
            cur = tmp
        if tmp < hi:
            return -errno.ENOMEM
        if flags:
            err = self.populate(lo, hi, False)
            if err == -errno.EFAULT:
                return -errno.ENOMEM
        return 0

    # -------------------------------------------------------------- write

    def write(self, op: O.Write) -> int:
        addr, length = op.addr & M64, op.length & M64
        if not length:
            return 0
        lo, hi = addr // PG, min(-(-(addr + length) // PG), 1 << 52)
        for p in range(lo, hi):
            pg = self.pages.get(p)
            if pg is None or not pg.flags & VM_WRITE:
                return -errno.EFAULT
            if not self.fault_ok(pg):
                if not pg.flags & VM_SHARED and not pg.guard:
                    self.anon_prepare(p)  # do_cow_fault() prepares it before the SIGBUS
                return -errno.EFAULT
            z = O.MODEL_BASES.zone_of(p * PG)
            tok = O.write_token(op.tag[:1] if op.tag else None, z[1] // PG if z else p)
            if pg.flags & VM_SHARED:
                assert pg.file is not None
                self.obj(pg.file)[pg.pgoff] = tok
            else:
                self.anon_prepare(p)
                pg.tok, pg.lazy = tok, False
        return 0

    # --------------------------------------------------------------- fork

    def fork(self, op: O.Fork) -> int:
        self.def_flags = 0  # not inherited
        vmas = self.vmas(0, 1 << 52)
        for vlo, vhi in vmas:
            self.forced.add(vlo)
            self.forced.add(vhi)
        for vlo, vhi in vmas:
            pg = self.pages[vlo]
            if pg.flags & VM_DONTCOPY:
                for q in range(vlo, vhi):
                    del self.pages[q]
                continue
            new_anon = None
            if pg.anon is not None and not pg.flags & VM_WIPEONFORK:
                self.anons += 1
                new_anon = self.anons
                self.forked.add(new_anon)
            for q in range(vlo, vhi):
                p = self.pages[q]
                p.flags &= ~VM_LOCKED_MASK
                p.anon = new_anon
                if pg.flags & VM_WIPEONFORK:
                    p.tok, p.lazy, p.guard = None, False, False
        return 0

    # ------------------------------------------------------------- madvise

    def madvise(self, op: O.Madvise) -> int:
        adv = int(op.advice) & 0xFFFFFFFF
        adv = adv - (1 << 32) if adv & 0x80000000 else adv
        return self.do_madvise(op.addr & M64, op.length & M64, adv)

    def skip(self, start: int, length: int, adv: int) -> int | None:
        if adv not in self.policy.valid_advice or start % PG:
            return -errno.EINVAL
        alen = _align_up(length)
        if length and not alen:
            return -errno.EINVAL
        if start + alen > M64:
            return -errno.EINVAL
        return 0 if alen == 0 else None

    def do_madvise(self, start: int, length: int, adv: int) -> int:
        s = self.skip(start, length, adv)
        if s is not None:
            return s
        return self.behave(start // PG, (start + _align_up(length)) // PG, adv)

    def _blocks(self, p: int, adv: int) -> bool:
        from sealkit.model.vma import Vma

        pg = self.pages[p]
        probe = Vma(0, PG, pg.flags, 0, pg.file, None, pg.seal, ())
        return self.policy.blocks_madvise(probe, adv)

    def behave(self, lo: int, hi: int, adv: int) -> int:
        pol = self.policy
        mode = pol.madvise_mode(adv)
        sealed_range = False
        if mode in ("precheck", "amap"):
            sealed_range = any(self._blocks(p, adv) for p in self.mapped(lo, hi))
            if mode == "precheck" and sealed_range:
                return -pol.refusal
        if adv in (Madv.POPULATE_READ, Madv.POPULATE_WRITE):
            write = adv == Madv.POPULATE_WRITE
            for p in range(lo, hi):
                if p - lo > LIMIT:
                    raise TooBig
                pg = self.pages.get(p)
                if pg is None:
                    return -errno.ENOMEM
                if not pg.flags & (VM_WRITE if write else VM_READ):
                    return -errno.EINVAL
                if not self.fault_ok(pg):
                    if write and not pg.flags & VM_SHARED and not pg.guard:
                        self.anon_prepare(p)  # do_cow_fault() prepares it before the SIGBUS
                    return -errno.EFAULT
                if write and not pg.flags & VM_SHARED:
                    self.write_fault(p)
            return 0
        unmapped = 0
        cur = lo
        while True:
            v = self.first_after(cur)
            if v is None:
                return -errno.ENOMEM
            if cur < v[0]:
                unmapped = -errno.ENOMEM
                cur = v[0]
                if cur >= hi:
                    break
            vlo, vhi = v
            b = min(vhi, hi)
            pg = self.pages[vlo]
            if mode == "walk" and self._blocks(vlo, adv):
                return -pol.refusal
            amap = pg.anon is not None or (pg.file or "").startswith("s:")
            if mode == "amap" and sealed_range and amap:
                return -pol.refusal
            err = self.advise(vlo, cur, b, adv)
            if err:
                return err
            end = self.vma(cur)[1] if cur in self.pages else b
            b = max(b, end)
            if b >= hi:
                break
            cur = b
        return unmapped

    def advise(self, vlo: int, a: int, b: int, adv: int) -> int:
        pg = self.pages[vlo]
        f = pg.flags
        pages = [self.pages[q] for q in range(a, b)]
        locked = f & VM_LOCKED
        if adv == Madv.REMOVE:
            if locked or pg.file is None:
                return -errno.EINVAL
            if (f & (VM_SHARED | VM_MAYWRITE)) != (VM_SHARED | VM_MAYWRITE):
                return -errno.EACCES
            o = self.obj(pg.file)
            for q in pages:
                if q.pgoff < self.size(pg.file):
                    o[q.pgoff] = "0"
            return 0
        if adv in (Madv.WILLNEED,):
            return 0
        if adv in (Madv.COLD, Madv.PAGEOUT):
            if locked:
                return -errno.EINVAL
            if adv == Madv.PAGEOUT:
                # Pages a fork child still shares with its parent are skipped
                # by reclaim; like the model, lazily freed pages in a forked
                # anon_vma stay unknown.
                for q in pages:
                    if q.lazy and q.anon not in self.forked:
                        q.lazy, q.tok = False, None
            return 0
        if adv in (Madv.DONTNEED, Madv.DONTNEED_LOCKED, Madv.FREE):
            if locked and adv != Madv.DONTNEED_LOCKED:
                return -errno.EINVAL
            if adv == Madv.FREE:
                if pg.file is not None:
                    return -errno.EINVAL
                for q in pages:
                    if q.tok is not None and not q.guard and q.tok != "0":
                        q.lazy = True
                return 0
            for q in pages:
                q.tok, q.lazy = None, False
            return 0
        if adv == Madv.COLLAPSE:
            return -errno.EINVAL
        if adv == Madv.GUARD_INSTALL:
            if locked:
                return -errno.EINVAL
            lo_v, hi_v = self.vma(vlo)
            for q in range(lo_v, hi_v):  # gu on the whole VMA, before the markers
                self.pages[q].flags |= GU
            if self.pages[vlo].file is None:  # 6.18.44: anonymous VMAs only
                self.anon_prepare(vlo)
            for q in pages:
                q.tok, q.lazy, q.guard = None, False, True
            return 0
        if adv == Madv.GUARD_REMOVE:
            for q in pages:
                q.guard = False
            return 0
        nf = f
        if adv == Madv.NORMAL:
            nf &= ~(VM_RAND_READ | VM_SEQ_READ)
        elif adv == Madv.SEQUENTIAL:
            nf = (nf & ~VM_RAND_READ) | VM_SEQ_READ
        elif adv == Madv.RANDOM:
            nf = (nf & ~VM_SEQ_READ) | VM_RAND_READ
        elif adv == Madv.DONTFORK:
            nf |= VM_DONTCOPY
        elif adv == Madv.DOFORK:
            nf &= ~VM_DONTCOPY
        elif adv == Madv.WIPEONFORK:
            if pg.file is not None or nf & VM_SHARED:
                return -errno.EINVAL
            nf |= VM_WIPEONFORK
        elif adv == Madv.KEEPONFORK:
            if nf & VM_DROPPABLE:
                return -errno.EINVAL
            nf &= ~VM_WIPEONFORK
        elif adv == Madv.DONTDUMP:
            nf |= VM_DONTDUMP
        elif adv == Madv.DODUMP:
            if nf & VM_DROPPABLE:
                return -errno.EINVAL
            nf &= ~VM_DONTDUMP
        elif adv == Madv.MERGEABLE:
            if not nf & (VM_SHARED | VM_MAYSHARE | VM_DROPPABLE):
                nf |= VM_MERGEABLE
        elif adv == Madv.UNMERGEABLE:
            nf &= ~VM_MERGEABLE
        elif adv == Madv.HUGEPAGE:
            nf = (nf & ~VM_NOHUGEPAGE) | VM_HUGEPAGE
        elif adv == Madv.NOHUGEPAGE:
            nf = (nf & ~VM_HUGEPAGE) | VM_NOHUGEPAGE
        if nf != f:
            for q in pages:
                q.flags = nf
            self.changed(a, b)
        return 0

    def process_madvise(self, op: O.ProcessMadvise) -> int:
        adv = int(op.advice) & 0xFFFFFFFF
        adv = adv - (1 << 32) if adv & 0x80000000 else adv
        rs = [(a & M64, n & M64) for a, n in op.ranges]
        if len(rs) > 1024 or any(n >= 1 << 63 for _, n in rs):
            return -errno.EINVAL
        total, iovs = 0, []
        for a, n in rs:
            if len(rs) == 1:
                n = min(n, 0x7FFFF000)
            if a + n > TASK * PG:
                return -errno.EFAULT
            n = min(n, 0x7FFFF000 - total)
            total += n
            iovs.append((a, n))
        if not total:
            return 0
        done, ret = 0, 0
        for k, (a, n) in enumerate(iovs):
            if k and not n:
                continue  # iov_iter_advance() skips empty iovecs after the first
            ret = self.do_madvise(a, n, adv)
            if ret < 0:
                break
            done += n
        return done or ret

    # -------------------------------------------------------------- mremap

    def mremap(self, op: O.Mremap) -> int:
        addr, old, new = op.addr & M64, op.old_length & M64, op.new_length & M64
        flags, naddr = int(op.flags) & M64, op.new_addr & M64
        if "mremap" in self.policy.precheck:
            return self.mremap_610(addr, old, new, flags, naddr)
        old, new = _align_up(old), _align_up(new)
        implies = flags & 6
        if flags & ~7 or addr % PG or not new or new > TASK * PG:
            return -errno.EINVAL
        if implies:
            if naddr > TASK * PG - new or naddr % PG or not flags & 1:
                return -errno.EINVAL
            if flags & 4 and old != new:
                return -errno.EINVAL
            if addr + old > naddr and naddr + new > addr:
                return -errno.EINVAL
        if flags & 2 and old == new:
            return self.remap_move(addr, old, flags, naddr)
        return self.remap_one(addr, old, new, flags, naddr, implies)

    def remap_move(self, addr: int, length: int, flags: int, naddr: int) -> int:
        lo, hi = addr // PG, (addr + length) // PG
        # The source VMAs as they are before anything moves: with DONTUNMAP
        # the moved part stays mapped, so walking the live layout would meet
        # it again (the kernel's remap_move() resumes after each source VMA's
        # original end).
        spans, cur = [], lo
        while (v := self.first_after(cur)) is not None and v[0] < hi:
            spans.append(v)
            cur = v[1]
        if not spans:
            return -errno.EFAULT
        if lo < spans[0][0]:
            return -errno.EFAULT
        target, res, last_end = naddr, -errno.EFAULT, None
        for v0, v1 in spans:
            a, b = max(v0, lo), min(hi, v1)
            offset = (v0 - last_end) * PG if last_end is not None else 0
            r = self.remap_one(a * PG, (b - a) * PG, (b - a) * PG, flags, target + offset, True)
            if r < 0:
                return r
            if last_end is None:
                res = r
            last_end, target = v1, r + (b - a) * PG
        return res

    def remap_one(self, addr: int, old: int, new: int, flags: int, naddr: int, implies: int) -> int:
        pol = self.policy
        p = addr // PG
        if p not in self.pages:
            return -errno.EFAULT
        vlo, vhi = self.vma(p)
        pg = self.pages[vlo]
        if pol.blocks("mremap", pg.seal):
            return -pol.refusal
        kind = "same" if old == new else ("shrink" if old > new else "grow")
        if not implies:
            naddr = addr
        if kind == "grow" or implies:
            err = self.remap_valid(vlo, vhi, addr, old, new, flags, kind)
            if err:
                return err
        if implies:
            return self.remap_to(addr, old, new, flags, naddr, kind)
        if kind == "same":
            return addr
        if kind == "shrink":
            err = self.do_munmap(addr + new, old - new, "mremap")
            return err or addr
        return self.expand(addr, old, new, flags)

    def remap_valid(
        self, vlo: int, vhi: int, addr: int, old: int, new: int, flags: int, kind: str
    ) -> int:
        pg = self.pages[vlo]
        if not old and not pg.flags & (VM_SHARED | VM_MAYSHARE):
            return -errno.EINVAL
        o = new if kind == "shrink" else old
        if o > vhi * PG - addr:
            return -errno.EFAULT
        if new == o:
            return 0
        if (addr // PG - vlo) + pg.pgoff + new // PG > M64:
            return -errno.EINVAL
        return 0

    def expand(self, addr: int, old: int, new: int, flags: int) -> int:
        p = addr // PG
        vlo, vhi = self.vma(p)
        delta = new - old
        if (
            vhi * PG - addr == old
            and self.free(vhi, vhi + delta // PG)
            and vlo * PG + (vhi * PG - vlo * PG + delta) <= TASK * PG
            and (vhi * PG - vlo * PG + delta) <= TASK * PG
        ):
            pg = self.pages[vlo]
            if pg.flags & VM_ACCOUNT and delta // PG > self.ram:
                return -errno.ENOMEM
            if pg.seal and self.policy.merge_rule != "equal":
                return -errno.ENOMEM  # the extension cannot merge into a sealed VMA
            last = self.pages[vhi - 1]
            self.add(
                vhi,
                vhi + delta // PG,
                lambda i: Page(pg.flags, pg.seal, pg.file, last.pgoff + 1 + i, pg.anon),
            )
            self.changed(vhi, vhi + delta // PG)
            if pg.flags & VM_LOCKED:
                self.populate(vhi, vhi + delta // PG, True)
            return addr
        if not flags & 1:
            return -errno.ENOMEM
        dest, elsewhere = self.place(0, new, False)
        if dest < 0:
            return dest
        r = self.move(addr, old, new, dest, flags)
        return O.ELSEWHERE if elsewhere and r >= 0 else r

    def remap_to(self, addr: int, old: int, new: int, flags: int, naddr: int, kind: str) -> int:
        if flags & 2:
            err = self.do_munmap(naddr, new, "mremap")
            if err:
                return err
            if addr // PG not in self.pages:
                return -errno.EFAULT
        if kind == "shrink":
            err = self.do_munmap(addr + new, old - new, "mremap")
            if err:
                return err
            if addr // PG not in self.pages:
                return -errno.EFAULT
            old = new
        dest, elsewhere = self.place(naddr, new, bool(flags & 2))
        if dest < 0:
            return dest
        r = self.move(addr, old, new, dest, flags)
        return O.ELSEWHERE if elsewhere and r >= 0 else r

    def move(self, addr: int, old: int, new: int, dest: int, flags: int) -> int:
        p = addr // PG
        vlo, vhi = self.vma(p)
        src = self.pages[vlo]
        if src.flags & VM_ACCOUNT:
            charged = new if flags & 4 else abs(new - old)
            if charged // PG > self.ram:
                return -errno.ENOMEM
        n_old, n_new = old // PG, new // PG
        d = dest // PG
        base = self.pages[p].pgoff
        if src.file is None and src.anon is None:
            base = d
        moved = [self.pages[p + i] for i in range(n_old)]
        self.add(
            d,
            d + n_new,
            lambda i: (
                replace(moved[i], pgoff=base + i)
                if i < n_old
                else Page(src.flags, src.seal, src.file, base + i, src.anon)
            ),
        )
        self.changed(d, d + n_new)
        if flags & 4:
            vlo, vhi = self.vma(p)
            whole = vlo == p and vhi == p + n_old
            for i in range(n_old):
                q = self.pages[p + i]
                q.tok, q.lazy, q.guard = None, False, False
            for q_i in range(vlo, vhi):
                q = self.pages[q_i]
                q.flags &= ~VM_LOCKED_MASK  # 6.18 keeps VM_ACCOUNT on the source
                if whole:
                    q.anon = None
            self.keep_edges(vlo, vhi)
        else:
            self.do_munmap(addr, old, "mremap")
        if src.flags & VM_LOCKED and n_new > n_old:
            self.populate(d + n_old, d + n_new, True)
        return dest

    def mremap_610(self, addr: int, old: int, new: int, flags: int, naddr: int) -> int:
        pol = self.policy
        if flags & ~7 or (flags & 2 and not flags & 1):
            return -errno.EINVAL
        if flags & 4 and (not flags & 1 or old != new):
            return -errno.EINVAL
        if addr % PG:
            return -errno.EINVAL
        old, new = _align_up(old), _align_up(new)
        if not new:
            return -errno.EINVAL
        p = addr // PG
        if p not in self.pages:
            return -errno.EFAULT
        lo, hi = p, (addr + old) // PG
        if flags & 6:
            if naddr % PG or new > TASK * PG or naddr > TASK * PG - new:
                return -errno.EINVAL
            if addr + old > naddr and naddr + new > addr:
                return -errno.EINVAL
            if self.blocked_range(lo, hi, "mremap"):
                return -pol.refusal
            if flags & 2:
                err = self.do_munmap(naddr, new, "mremap")
                if err:
                    return err
            if old > new:
                err = self.do_munmap(addr + new, old - new, "mremap")
                if err:
                    return err
                old = new
            if p not in self.pages:
                return -errno.EFAULT
            vlo, vhi = self.vma(p)
            err = self.remap_valid(vlo, vhi, addr, old, new, flags, "grow" if new > old else "same")
            if err:
                return err
            dest, elsewhere = self.place(naddr, new, bool(flags & 2))
            if dest < 0:
                return dest
            r = self.move(addr, old, new, dest, flags)
            return O.ELSEWHERE if elsewhere and r >= 0 else r
        if self.blocked_range(lo, hi, "mremap"):
            return -pol.refusal
        if old >= new:
            if old == new:
                return addr
            err = self.do_munmap(addr + new, old - new, "mremap")
            return err or addr
        vlo, vhi = self.vma(p)
        err = self.remap_valid(vlo, vhi, addr, old, new, flags, "grow")
        if err:
            return err
        return self.expand(addr, old, new, flags)

    # --------------------------------------------------------- stack growth

    def expand_stack(self, addr: int) -> int:
        p = (addr & M64) // PG
        if p in self.pages:
            return 0
        v = self.first_after(p)
        if v is None or not self.pages[v[0]].flags & VM_GROWSDOWN:
            return -errno.EFAULT
        if p < MIN_PAGE:
            return -errno.EPERM
        below = [q for q in self.pages if q < v[0]]
        heap = self.start_brk // PG  # an accessible heap VMA ends at the initial break
        if below and max(below) + 1 > heap:
            pv = self.pages[max(below)]
            prev_end = max(below) + 1
            if not pv.flags & VM_GROWSDOWN and pv.flags & 7 and p - prev_end < VM_STACK_GAP_PAGES:
                return -errno.ENOMEM
        elif heap <= p < heap + VM_STACK_GAP_PAGES:
            return -errno.ENOMEM
        top = self.pages[v[0]]
        grow = v[0] - p
        if grow > top.pgoff or v[1] - p > (8 << 20) // PG:
            return -errno.ENOMEM
        self.anon_prepare(v[0])
        top = self.pages[v[0]]
        self.add(
            p, v[0], lambda i: Page(top.flags, top.seal, top.file, top.pgoff - grow + i, top.anon)
        )
        self.forced.add(p)
        return 0

    # -------------------------------------------- writes from outside (issue 14)

    def remote(self, addr: int, length: int, tag: str | None, force: bool, grow: bool) -> int:
        """Bytes written page by page until a page refuses (``check_vma_flags``
        then the fault); a page written in part holds mixed bytes (``?``).
        ``grow``: /proc/PID/mem and ptrace grow a stack to reach a page below it."""
        end, cur = addr + length, addr
        while cur < end:
            p = cur // PG
            pg = self.pages.get(p) if p < TASK else None
            if pg is None and grow and p < TASK and self.expand_stack(p * PG) == 0:
                pg = self.pages.get(p)
            if pg is None:
                break
            cow = (pg.flags & (VM_SHARED | VM_MAYWRITE)) == VM_MAYWRITE
            if not (pg.flags & VM_WRITE or (force and cow)):
                break
            if not self.fault_ok(pg):
                if not pg.flags & VM_SHARED and not pg.guard:
                    self.anon_prepare(p)
                break
            stop = min(end, (p + 1) * PG)
            if cur == p * PG and stop == (p + 1) * PG:
                z = O.MODEL_BASES.zone_of(p * PG)
                tok = O.write_token(tag, z[1] // PG if z else p)
            else:
                tok = "?"
            if pg.flags & VM_SHARED:
                assert pg.file is not None
                self.obj(pg.file)[pg.pgoff] = tok
            else:
                self.anon_prepare(p)
                pg.tok, pg.lazy = tok, False
            cur = stop
        return cur - addr

    def pwrite_mem(self, op: O.PwriteMem) -> int:
        addr, length = op.addr & M64, op.length & M64
        if addr >= 1 << 63:
            return -errno.EINVAL
        if length > TASK * PG:
            return -errno.EFAULT
        length = min(length, 0x7FFF_F000)
        if not length:
            return 0
        return self.remote(addr, length, op.tag, True, True) or -errno.EIO

    def vm_writev(self, op: O.VmWritev) -> int:
        addr, length = op.addr & M64, op.length & M64
        if length >= 1 << 63:
            return -errno.EINVAL
        length = min(length, 0x7FFF_F000)
        if not length:
            return 0
        return self.remote(addr, length, op.tag, False, False) or -errno.EFAULT

    def poke(self, op: O.Poke) -> int:
        addr, length = op.addr & M64, op.length & M64
        if not length:
            return 0
        return 0 if self.remote(addr, length, op.tag, True, True) == length else -errno.EIO

    # ------------------------------------------------------ the trace's files

    FILE_MAX = 0xFFF_FFFF_F000

    def file_bytes(self, key: str, start: int, end: int, whole: object) -> None:
        o = self.obj(key)
        for p in range(start // PG, -(-end // PG)):
            if p * PG >= start and (p + 1) * PG <= end:
                o[p] = whole(p) if callable(whole) else str(whole)
            elif not (whole == "0" and o.get(p, "0") == "0"):
                o[p] = "?"

    def file_pwrite(self, op: O.FilePwrite) -> int:
        pos, count = op.offset & M64, op.length & M64
        if pos >= 1 << 63:
            return -errno.EINVAL
        if op.file_ro:
            return -errno.EBADF
        if count > TASK * PG:
            return -errno.EFAULT
        if pos + count >= 1 << 63:
            return -errno.EINVAL
        count = min(count, 0x7FFF_F000)
        if not count:
            return 0
        if pos >= self.FILE_MAX:
            return -errno.EFBIG
        count = min(count, self.FILE_MAX - pos)
        if count > LIMIT * PG:
            raise TooBig
        key = "f:" + op.file
        self.obj(key)
        tag = op.tag
        self.file_bytes(key, pos, pos + count, tag if tag else (lambda p: O.write_token(None, p)))
        self.sizes[key] = max(self.sizes[key], -(-(pos + count) // PG))
        return count

    def ftruncate(self, op: O.Ftruncate) -> int:
        length = op.length & M64
        if length >= 1 << 63 or op.file_ro:
            return -errno.EINVAL
        if length > self.FILE_MAX:
            return -errno.EFBIG
        key = "f:" + op.file
        o = self.obj(key)
        pages = -(-length // PG)
        for p in [p for p in o if p >= pages]:
            del o[p]
        if pages < self.sizes[key]:
            for pg in self.pages.values():
                if (
                    pg.file is not None
                    and self.okey(pg.file) == key
                    and not pg.flags & VM_SHARED
                    and pg.pgoff >= pages
                ):
                    pg.tok, pg.lazy = None, False  # even_cows; guard markers stay
        self.sizes[key] = pages
        if length % PG and o.get(length // PG, "0") != "0":
            o[length // PG] = "?"
        return 0

    def punch(self, op: O.Punch) -> int:
        offset, length = op.offset & M64, op.length & M64
        if offset >= 1 << 63 or length >= 1 << 63 or not length:
            return -errno.EINVAL
        if op.file_ro:
            return -errno.EBADF
        if offset + length >= 1 << 63 or offset + length > self.FILE_MAX:
            return -errno.EFBIG
        key = "f:" + op.file
        self.obj(key)
        end = min(offset + length, self.sizes[key] * PG)
        if offset < end:
            self.file_bytes(key, offset, end, "0")
        return 0

    # ---------------------------------------------- msync, mincore, mlockall

    def msync(self, op: O.Msync) -> int:
        start, length = op.addr & M64, op.length & M64
        flags = int(op.flags) & 0xFFFFFFFF
        if flags & ~7 or start % PG or (flags & 1 and flags & 4):
            return -errno.EINVAL
        length = _align_up(length)
        if start + length > M64:
            return -errno.ENOMEM
        if not length:
            return 0
        lo, hi = start // PG, (start + length) // PG
        if hi - lo > LIMIT and not self.mapped(lo, hi):
            return -errno.ENOMEM
        sealed = self.policy.msync_amap and any(self.pages[p].seal for p in self.mapped(lo, hi))
        hole = False
        p = lo
        while p < hi:
            if p not in self.pages:
                later = self.mapped(p, hi)
                if flags == 1 or not later:
                    return -errno.ENOMEM
                hole, p = True, later[0]
                continue
            vlo, vhi = self.vma(p)
            if flags & 2 and sealed and self.pages[vlo].anon is not None:
                return -self.policy.refusal
            if flags & 2 and self.pages[vlo].flags & VM_LOCKED:
                return -errno.EBUSY
            p = vhi
        return -errno.ENOMEM if hole else 0

    def mincore(self, op: O.Mincore) -> int:
        start, length = op.addr & M64, op.length & M64
        if start % PG:
            return -errno.EINVAL
        if start + length > TASK * PG:
            return -errno.ENOMEM
        lo, hi = start // PG, -(-(start + length) // PG)
        if hi - lo > LIMIT:
            return 0 if len(self.mapped(lo, hi)) == hi - lo else -errno.ENOMEM
        return 0 if all(p in self.pages for p in range(lo, hi)) else -errno.ENOMEM

    def mlockall(self, op: O.Mlockall | O.Munlockall) -> int:
        flags = int(op.flags) & 0xFFFFFFFF if isinstance(op, O.Mlockall) else 0
        if isinstance(op, O.Mlockall) and (not flags or flags & ~7 or flags == 4):
            return -errno.EINVAL
        self.def_flags = 0
        if flags & 2:
            self.def_flags = VM_LOCKED | (VM_LOCKONFAULT if flags & 4 else 0)
        if flags & 2 and not flags & 1:
            return 0
        add = VM_LOCKED | (VM_LOCKONFAULT if flags & 4 else 0) if flags & 1 else 0
        for vlo, vhi in self.vmas(0, 1 << 52):
            pg = self.pages[vlo]
            nf = (pg.flags & ~VM_LOCKED_MASK) | add
            if nf != pg.flags and not pg.flags & VM_DROPPABLE:
                for q in range(vlo, vhi):
                    self.pages[q].flags = nf | (self.pages[q].flags & GU)
                self.changed(vlo, vhi)
        if flags & 1:
            self.populate(0, 1 << 52, True)
        return 0

    # -------------------------------------------------------------- layout

    def layout(self, zone: str, lo: int, hi: int) -> Layout:
        base = O.MODEL_BASES.base(zone) // PG
        runs = []
        p = base + lo
        while p < base + hi:
            if p not in self.pages:
                p += 1
                continue
            vlo, vhi = self.vma(p)
            a, b = max(vlo, base + lo), min(vhi, base + hi)
            pg = self.pages[vlo]
            if pg.file is None:
                backing = "[heap]" if vlo * PG < self.brk and vhi * PG > self.start_brk else "anon"
            elif pg.file.startswith("s:"):
                backing = "shmem"
            else:
                backing = "file:" + pg.file[2:]
            runs.append(
                Run(
                    a - base,
                    b - base,
                    Prot(pg.flags & 7),
                    bool(pg.flags & VM_MAYSHARE),
                    backing,
                    self.pages[a].pgoff,
                    None,
                    self.policy.seal_text(pg.seal) if pg.seal else "",
                    frozenset(m for bit, m in MNEMONICS if pg.flags & bit),
                    "".join(self.token(self.pages[q]) for q in range(a, b)),
                )
            )
            p = b
        return Layout(zone, lo, hi, tuple(runs))

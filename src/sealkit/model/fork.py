"""fork (kernel/fork.c ``dup_mmap()``): the rest of the trace runs in the child.

The child gets every VMA except VM_DONTCOPY ones, with VM_LOCKED and
VM_LOCKONFAULT cleared and seals kept (docs/reference/linux.md rule 14), and no
``mlockall(MCL_FUTURE)``. Guard markers are copied in every kept VMA, file
mappings included (6.18.37+: ``VM_MAYBE_GUARD`` is ``VM_COPY_ON_FORK``,
mm/memory.c ``vma_needs_copy()``). A VM_WIPEONFORK VMA
starts empty (no pages, no anon_vma); every other VMA keeps its pages (the
copy-on-write copies are the child's own from now on) and gets a new anon_vma
chained to its parent's (``anon_vma_fork()``), which then refuses to merge
with VMAs that have none. Shared memory stays shared.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ..ops import Fork
from .content import Runs
from .store import VmaStore
from .vma import VM_DONTCOPY, VM_LOCKED_MASK, VM_WIPEONFORK, AnonVma, Vma

if TYPE_CHECKING:
    from ..ops import Op
    from .space import AddressSpace


def sys_fork(mm: AddressSpace, op: Op) -> int:
    """``fork()`` seen from the child: returns 0."""
    assert isinstance(op, Fork)
    child = []
    for v in mm.vmas:
        if v.flags & VM_DONTCOPY:
            continue
        flags = v.flags & ~VM_LOCKED_MASK
        priv: Runs = ()
        anon = None
        if not v.flags & VM_WIPEONFORK:
            anon = AnonVma(forked=True, serial=v.anon.serial) if v.anon is not None else None
            priv = v.priv
        child.append(Vma(v.start, v.end, flags, v.pgoff, v.file, anon, v.seal, priv))
    mm.vmas = VmaStore(child)
    # kernel/fork.c mm_init(): the child's def_flags keep only VM_INIT_DEF_MASK
    # (VM_NOHUGEPAGE, which the model never sets): mlockall(MCL_FUTURE) is not
    # inherited.
    mm.def_flags = 0
    return 0

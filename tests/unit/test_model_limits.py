"""What sealing does not cover (issue 14), under ``linux`` and the other designs.

Writes from outside the process (``pwrite_mem``, ``vm_writev``, ``poke``),
changes to a mapping's file through its descriptor (``file_pwrite``,
``ftruncate``, ``punch``), ``msync``, ``mincore``, ``mlockall`` and the
``gu`` VmFlag. Every kernel answer here was measured on Linux 6.18.44 (the
conformance scenarios ``limits/*`` hold the model and the kernel to the same
measurements); what the kernel cannot show (``proc_mem.force_override`` other
than ``always``, the other designs) is the model's documented choice. Pictures
read as in the kernel's VMA harness: one letter per VMA, UPPERCASE when
sealed; then one content token per page (``!``: past the end of the file,
SIGBUS; ``#``: a guard marker; ``?``: mixed bytes).
"""

from __future__ import annotations

import errno

import pytest

from sealkit import ops as O
from sealkit.errors import ArgumentError
from sealkit.model import POLICIES, AddressSpace

from .model_helpers import ascii, data, expect, make, run

ANON_RW = "mmap p0 4p rw- private|anon|fixed = p0\nwrite p0 4p = 0"
ANON_RO = ANON_RW + "\nmprotect p0 4p r-- = 0"
ANON_NONE = ANON_RW + "\nmprotect p0 4p --- = 0"
FILE_RO = "mmap p0 4p r-- private|fixed file=f1 = p0"
SHM_RO = ANON_RW.replace("private", "shared") + "\nmprotect p0 4p r-- = 0"
SHARED_RO = "mmap p0 4p r-- shared|fixed file=f1 = p0"
SHARED_RW = "mmap p0 4p rw- shared|fixed file=f1 = p0"


# ------------------------------------------------------------------ writers

# (set-up, pwrite_mem, vm_writev, poke, content after a successful forced write)
WRITERS = {
    "anon rw": (ANON_RW, "1p", "1p", "0", "axcd"),
    "anon r--": (ANON_RO, "1p", "EFAULT", "0", "axcd"),
    "anon ---": (ANON_NONE, "1p", "EFAULT", "0", "axcd"),
    "anon r-- untouched": ("mmap p0 4p r-- private|anon|fixed = p0", "1p", "EFAULT", "0", "0x00"),
    "file private r--": (FILE_RO, "1p", "EFAULT", "0", "FxFF"),
    "file private r--, O_RDONLY fd": (FILE_RO.replace("f1", "f1:ro"), "1p", "EFAULT", "0", "FxFF"),
    "shmem r--": (SHM_RO, "EIO", "EFAULT", "EIO", "abcd"),
    "file shared r--": (SHARED_RO, "EIO", "EFAULT", "EIO", "FFFF"),
    "file shared r--, O_RDONLY fd": (SHARED_RO.replace("f1", "f1:ro"), "EIO", "EFAULT", "EIO", "FFFF"),
    "file shared rw": (SHARED_RW, "1p", "1p", "0", "FxFF"),
    "guard page": (ANON_RW + "\nmadvise p1 1p guard_install = 0", "EIO", "EFAULT", "EIO", "a#cd"),
    "a hole": (ANON_RW + "\nmunmap p1 1p = 0", "EIO", "EFAULT", "EIO", "a-cd"),
}  # fmt: skip


@pytest.mark.parametrize("sealed", [False, True], ids=["unsealed", "sealed"])
@pytest.mark.parametrize("case", list(WRITERS))
def test_writers_ignore_the_seal_and_force_only_copy_on_write_mappings(
    case: str, sealed: bool
) -> None:
    setup, pwrite, vm, poke, after = WRITERS[case]
    setup += "\nmseal p0 4p = 0" if sealed and case != "a hole" else ""
    for call, result in (("pwrite_mem p1 1p x", pwrite), ("vm_writev p1 1p x", vm),
                         ("poke p1 1p x", poke)):  # fmt: skip
        s = make(setup)
        before = data(s, 0, 4)
        run(s, f"{call} = {result}")
        ok = result in ("0", "1p")
        assert data(s, 0, 4) == (after if ok else before), (case, call)


def test_a_forced_write_copies_a_private_file_page_and_leaves_the_file() -> None:
    s = make(FILE_RO + "\nmseal p0 4p = 0\nmmap p4 4p r-- shared|fixed file=f1:ro = p4")
    run(s, "pwrite_mem p1 1p x = 1p\npoke p2 1p z = 0")
    assert ascii(s, 0, 8) == ("AAAAbbbb", "FxzFFFFF")  # the shared view: the file, unchanged


def test_writers_stop_at_the_first_page_that_refuses() -> None:
    # [0,2) anon rw + [2,4) anon r-- sealed, write [1,3): the forced writers
    # write both pages, process_vm_writev stops at the read-only one (W31).
    setup = ANON_RW + "\nmprotect p2 2p r-- = 0\nmseal p2 2p = 0"
    s = make(setup)
    run(s, "pwrite_mem p1 2p x = 2p")
    assert data(s, 0, 4) == "axxd"
    s = make(setup)
    run(s, "vm_writev p1 2p y = 1p")
    assert data(s, 0, 4) == "aycd"
    # A guard at p2 stops all three after p1 (W33); poke says EIO, p1 written.
    g = ANON_RW + "\nmadvise p2 1p guard_install = 0"
    for call, result in (("pwrite_mem", "1p"), ("vm_writev", "1p"), ("poke", "EIO")):
        s = make(g)
        run(s, f"{call} p1 3p z = {result}")
        assert data(s, 0, 4) == "az#d", call


def test_writer_edges() -> None:
    s = make(ANON_RW + "\nmseal p0 4p = 0")
    run(s, """
        pwrite_mem p0 0                    = 0
        pwrite_mem 0 1p                    = EIO
        pwrite_mem 0xffff800000000000 1p   = EINVAL
        vm_writev  0 1p                    = EFAULT
        vm_writev  p0 0x8000000000000000   = EINVAL
        poke       0xffff800000000000 1p   = EIO
        poke       p0 0                    = 0
        pwrite_mem p1+100 100 x            = 100
        poke       p3+8 8 z                = 0
    """)  # fmt: skip
    assert data(s, 0, 4) == "a?c?"  # pages written in part hold mixed bytes


@pytest.mark.parametrize("setting", ["ptrace", "never"])
def test_without_forced_proc_mem_writes_only_writable_pages_take_them(setting: str) -> None:
    """Under ``proc_mem.force_override=ptrace`` or ``never`` the process writing
    its own ``/proc/self/mem`` gets no ``FOLL_FORCE`` (``proc_mem_foll_force()``):
    the sealed read-only page stays; ``poke`` (ptrace) is forced whatever the
    setting. Only ``always`` can be held to the reference kernel."""
    s = AddressSpace(proc_mem_force=setting)
    run(s, ANON_RO + "\nmmap p4 2p rw- private|anon|fixed = p4\nmseal p0 6p = 0")
    run(s, "pwrite_mem p1 1p x = EIO\npwrite_mem p4 1p x = 1p\npoke p2 1p z = 0")
    assert data(s, 0, 6) == "abzdx0"
    twin = s.copy()
    assert twin.proc_mem_force == setting
    assert twin.state_key("p", 0, 8) != make(ANON_RO).state_key("p", 0, 8)
    with pytest.raises(ArgumentError, match="proc_mem_force must be one of"):
        AddressSpace(proc_mem_force="sometimes")


# ------------------------------------------------------------ backing files

PRIVATE_COW = "mmap p0 4p rw- private|fixed file=f1 = p0\nwrite p1 1p q = 0\nmprotect p0 4p r-- = 0"


def test_a_file_write_shows_in_shared_views_and_in_private_pages_not_yet_copied() -> None:
    s = make(PRIVATE_COW + "\nmmap p4 4p r-- shared|fixed file=f1:ro = p4\nmseal p0 8p = 0")
    run(s, "file_pwrite f1 1p 2p w = 2p")
    assert ascii(s, 0, 8) == ("AAAABBBB", "FqwFFwwF")


def test_truncation_discards_sealed_private_copies_and_regrowth_reads_zero() -> None:
    s = make(PRIVATE_COW + "\nmmap p4 4p rw- shared|fixed file=f1 = p4\nmseal p0 8p = 0")
    run(s, "ftruncate f1 1p = 0")
    assert ascii(s, 0, 8) == ("AAAABBBB", "F!!!F!!!")  # even_cows: the q page is gone
    run(s, "ftruncate f1 64p = 0\nfile_pwrite f1 1p 2p w = 2p")
    assert data(s, 0, 8) == "Fww0Fww0"  # attacker data where the process wrote q
    # The writers fail past the end (SIGBUS); a forced write's fault takes
    # the anon_vma first (do_cow_fault()).
    t = make(FILE_RO + "\nftruncate f1 2p = 0")
    run(t, "pwrite_mem p3 1p x = EIO\npoke p2 1p x = EIO\nwrite p3 1p = EFAULT")
    assert data(t, 0, 4) == "FF!!"


def test_a_partial_truncation_keeps_the_page_it_cuts() -> None:
    s = make(PRIVATE_COW + "\nmmap p4 4p r-- shared|fixed file=f1:ro = p4")
    run(s, "ftruncate f1 1p+2048 = 0")
    assert data(s, 0, 8) == "Fq!!F?!!"  # p1 of the file: F then zeroes


def test_punching_a_hole_zeroes_the_file_but_keeps_private_copies() -> None:
    s = make(PRIVATE_COW + "\nmmap p4 4p rw- shared|fixed file=f1 = p4\nmseal p0 8p = 0")
    run(s, "punch f1 1p 2p = 0")
    assert data(s, 0, 8) == "Fq0FF00F"
    run(s, "punch f1 70p 2p = 0\npunch f1 63p 4p = 0\npunch f1 1p 0 = EINVAL")
    run(s, "punch f1 0xfffffffffffff000 1p = EINVAL\npunch f1 0x7ffffffffffff000 2p = EFBIG")


def test_guard_markers_survive_truncation_and_punching() -> None:
    s = make("""
        mmap    p0 4p r-- private|fixed file=f1 = p0
        madvise p2 1p guard_install              = 0
        mmap    p4 4p r-- shared|fixed file=f1   = p4
        madvise p6 1p guard_install              = 0
        mseal   p0 8p                            = 0
        ftruncate f1 1p                          = 0
    """)  # fmt: skip
    assert data(s, 0, 8) == "F!#!F!#!"  # the marker still wins over SIGBUS
    run(s, "ftruncate f1 64p = 0\npunch f1 3p 1p = 0")
    expect(s, "[0,4) r--p,sl,gu file:f1@0 F0#0\n[4,8) r--s,sl,gu file:f1@0 F0#0", 0, 8)


def test_file_call_argument_checks() -> None:
    s = make(SHARED_RO.replace("f1", "f1:ro"))
    run(s, """
        file_pwrite f1:ro 0 1p            = EBADF
        ftruncate   f1:ro 1p              = EINVAL
        punch       f1:ro 0 1p            = EBADF
        ftruncate   f1 0xffffffffffffffff = EINVAL
        file_pwrite f1 0x7ffffffffffff000 1p = EINVAL
        file_pwrite f1 0x8000000000000000 1p = EINVAL
        file_pwrite f1 0 0                = 0
        ftruncate   f1 0x100000000000     = EFBIG
        file_pwrite f1 62p 4p w           = 4p
    """)  # fmt: skip
    assert s.object("f:f1")[0] == 66  # the write grew the file
    assert data(s, 0, 4) == "FFFF"


def test_untagged_file_writes_give_each_file_page_its_letter() -> None:
    s = make(SHARED_RO)
    run(s, "file_pwrite f1 1p 2p = 2p")
    assert data(s, 0, 4) == "FbcF"


# ------------------------------------------------------------ msync, mincore


def test_msync_answers_and_never_changes_anything() -> None:
    s = make(ANON_RW + "\nmmap p6 2p rw- private|anon|fixed = p6\nmlock p6 2p = 0")
    before = s.layout("p", 0, 8)
    run(s, """
        msync p0 4p async|sync        = EINVAL
        msync p0 4p 8                 = EINVAL
        msync p0+1 1p sync            = EINVAL
        msync p0 0 sync               = 0
        msync p0 0xffffffffffffffff sync = 0
        msync p0 0xfffffffffffff000 sync = ENOMEM
        msync p0 8p async             = ENOMEM
        msync p0 8p sync              = ENOMEM
        msync p0 8p invalidate        = EBUSY
        msync p4 1p sync              = ENOMEM
        msync p6 2p async             = 0
        msync 0x800000000000 1p sync  = ENOMEM
    """)  # fmt: skip
    assert s.layout("p", 0, 8) == before


def test_mincore_answers_enomem_for_any_hole() -> None:
    s = make(ANON_RW + "\nmunmap p2 1p = 0")
    run(s, """
        mincore p0 2p                 = 0
        mincore p0 4p                 = ENOMEM
        mincore p0+1 1p               = EINVAL
        mincore p2 0                  = 0
        mincore p0 0xfffffffffffff000 = ENOMEM
        mincore 0x800000000000 1p     = ENOMEM
    """)  # fmt: skip


# ---------------------------------------------------------------- mlockall


def test_mlockall_current_locks_and_merges_sealed_vmas_like_any_other() -> None:
    s = make("mmap p0 8p rw- private|anon|fixed = p0\nwrite p0 8p = 0\nmlock p0 4p = 0")
    assert ascii(s, 0, 8)[0] == "aaaabbbb"
    run(s, "mlockall current = 0")
    expect(s, "[0,8) rw-p,lo anon abcdefgh", 0, 8)  # merged back (L2)
    s = make("mmap p0 8p rw- private|anon|fixed = p0\nmseal p0 4p = 0")
    run(s, "mlockall current|onfault = 0")
    expect(s, "[0,4) rw-p,sl,lf,lo anon 0000\n[4,8) rw-p,lf,lo anon 0000", 0, 8)
    run(s, "munlockall = 0\nmunlockall = 0")
    assert ascii(s, 0, 8)[0] == "AAAAbbbb"


def test_mlockall_future_locks_new_mappings_and_the_heap_until_munlockall() -> None:
    s = make("mmap p0 2p rw- private|anon|fixed = p0")
    run(s, """
        mlockall future                    = 0
        mmap     p4 2p rw- private|anon|fixed = p4
        mmap     p8 2p --- private|anon|fixed = p8
        brk      h1                        = h1
    """)  # fmt: skip
    expect(s, "[0,2) rw-p anon 00\n[4,6) rw-p,lo anon 00\n[8,10) ---p,lo anon 00", 0, 10)
    expect(s, "[0,1) rw-p,lo [heap] 0", 0, 4, "h")
    child = s.copy()
    run(child, "fork = 0\nmmap p12 1p rw- private|anon|fixed = p12")
    expect(child, "[12,13) rw-p anon 0", 12, 13)  # def_flags are not inherited
    run(s, "munlockall = 0\nmmap p12 1p rw- private|anon|fixed = p12")
    expect(s, "[12,13) rw-p anon 0", 12, 13)
    for flags in ("0", "onfault", "8", "0x10"):
        run(s, f"mlockall {flags} = EINVAL")


def test_mlockall_copies_private_writable_file_pages_so_they_stop_following_the_file() -> None:
    s = make("""
        mmap p0 4p rw- private|fixed file=f1 = p0
        mmap p4 4p r-- private|fixed file=f1 = p4
        mseal p0 8p = 0
        mlockall current = 0
        file_pwrite f1 1p 1p w = 1p
    """)  # fmt: skip
    assert data(s, 0, 8) == "FFFFFwFF"  # populate wrote-faulted [0,4): its own copies (L6)


# ---------------------------------------------------------------------- gu


def test_gu_is_set_on_the_whole_vma_and_never_cleared() -> None:
    s = make(ANON_RW)
    run(s, "madvise p1 1p guard_install = 0\nmadvise p1 1p guard_remove = 0")
    expect(s, "[0,4) rw-p,gu anon a0cd", 0, 4)
    run(s, "mprotect p2 2p r-- = 0\nmunmap p0 1p = 0\nmseal p3 1p = 0")
    expect(s, "[1,2) rw-p,gu anon 0\n[2,3) r--p,gu anon c\n[3,4) r--p,sl,gu anon d", 0, 4)


def test_gu_does_not_stop_merging_and_spreads_to_what_merges() -> None:
    s = make("mmap p4 4p rw- private|anon|fixed = p4\nmadvise p5 1p guard_install = 0")
    run(s, "madvise p5 1p guard_remove = 0")
    run(s, "mmap p0 4p rw- private|anon|fixed = p0\nmmap p8 4p rw- private|anon|fixed = p8")
    expect(s, "[0,12) rw-p,gu anon 000000000000", 0, 12)  # G5
    t = make("mmap p0 8p r-- private|anon|fixed = p0\nmprotect p4 4p rw- = 0")
    run(t, "madvise p5 1p guard_install = 0\nmprotect p0 4p rw- = 0")
    expect(t, "[0,8) rw-p,gu anon 00000#00", 0, 8)  # G6: the page-0 VMA now says gu


def test_a_refused_guard_install_sets_no_gu() -> None:
    s = make(ANON_RO + "\nmseal p0 4p = 0\nmmap p4 2p rw- private|anon|fixed = p4\nmlock p4 2p = 0")
    run(s, "madvise p0 1p guard_install = EPERM\nmadvise p4 1p guard_install = EINVAL")
    expect(s, "[0,4) r--p,sl anon abcd\n[4,6) rw-p,lo anon 00", 0, 6)


# -------------------------------------------------------- the other designs


@pytest.mark.parametrize("policy", list(POLICIES))
def test_every_design_answers_the_calls_sealing_does_not_cover(policy: str) -> None:
    """No design of the debate restricts these calls (``_UNSEALED_CALLS`` in
    the policies), except mimmutable's msync rule below: each answers as
    Linux does, never ENOSYS."""
    calls = """
        pwrite_mem p1 1p x = 1p
        vm_writev  p1 1p y = EFAULT
        poke       p2 1p z = 0
        file_pwrite f1 0 1p w = 1p
        punch      f1 0 1p = 0
        ftruncate  f1 64p = 0
        msync      p0 4p sync = 0
        mincore    p0 4p = 0
        mlockall   current = 0
        munlockall = 0
    """
    s = make(ANON_RO.replace("private|anon|fixed", "private|anon|fixed|sealable"), policy)
    run(s, calls)
    assert data(s, 0, 4) == "axzd"
    for name in ("pwrite_mem", "poke", "file_pwrite", "ftruncate", "msync", "mlockall"):
        assert name in POLICIES[policy].refusals, (policy, name)


def test_mimmutable_refuses_msync_invalidate_where_immutable_meets_anonymous_memory() -> None:
    setup = ANON_RW + "\nmmap p4 4p rw- shared|fixed file=f1 = p4\nmimmutable p4 4p = 0"
    s = make(setup, "mimmutable")
    run(s, """
        msync p4 4p invalidate = 0
        msync p0 8p invalidate = EPERM
        msync p0 8p sync       = 0
        msync p0 4p invalidate = 0
    """)  # fmt: skip
    run(make(setup, "mimmutable-7.3"), "msync p0 8p invalidate = 0")
    run(make(ANON_RW + "\nmseal p0 4p = 0"), "msync p0 4p invalidate = 0")


# ----------------------------------------------------------- the op language


def test_each_new_call_names_the_attacker_it_needs() -> None:
    assert O.ATTACKERS == ("syscalls", "procmem", "ptrace", "file-write")
    need = {
        O.PwriteMem: "procmem", O.VmWritev: "procmem", O.Poke: "ptrace",
        O.FilePwrite: "file-write", O.Ftruncate: "file-write", O.Punch: "file-write",
        O.Msync: "syscalls", O.Mincore: "syscalls", O.Mlockall: "syscalls",
        O.Munlockall: "syscalls", O.Mmap: "syscalls", O.Write: "syscalls",
    }  # fmt: skip
    for kind, attacker in need.items():
        assert O.attacker_of(kind) == attacker
    assert O.attacker_of(O.Poke(0, 8)) == "ptrace"
    assert {O.attacker_of(t) for t in O.OP_TYPES} == set(O.ATTACKERS)


def test_results_are_kernel_convention() -> None:
    s = make(ANON_RW)
    assert s.apply(O.PwriteMem(O.MODEL_BASES.arena, 5000, "x")) == 5000
    assert s.apply(O.Poke(O.MODEL_BASES.arena + 4 * 4096, 8)) == -errno.EIO


def test_proc_mem_and_ptrace_writes_grow_a_stack_process_vm_writev_does_not() -> None:
    # __access_remote_vm() calls expand_stack() where vma_lookup() finds nothing.
    s = make("mmap p6 2p rw- private|anon|fixed|growsdown = p6")
    run(s, "vm_writev p5 1p = EFAULT")
    assert ascii(s, 4, 8) == ("  aa", "--00")
    run(s, "pwrite_mem p5 1p x = 1p\npoke p3 2p z = 0")
    assert ascii(s, 2, 8) == (" aaaaa", "-zzx00")
    # In the heap zone the heap below the break keeps its guard gap (256 pages).
    h = make("mmap h15 1p r-- private|anon|fixed|growsdown = h15")
    run(h, "pwrite_mem h14 1p = EIO\npoke h0 1p = EIO")
    assert data(h, 0, 16, "h") == "-" * 15 + "0"

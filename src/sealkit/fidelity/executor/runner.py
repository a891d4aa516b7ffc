"""Runs traces, each in a fresh window slot of the worker's arena.

Each trace gets a fresh window: ``p0`` is the base of an empty slot, ``h0``
the worker's program break at trace start. Ops are rebased from the model's
bases to the worker's (:func:`~sealkit.ops.rebase`) and results back;
addresses the kernel chose outside the window come back as
:data:`~sealkit.ops.ELSEWHERE` (and are unmapped after the trace). After a
trace the slot is unmapped whole; if sealed leftovers refuse that, the
unsealed VMAs are unmapped one by one, the slot is abandoned and the next
trace takes the next one. The worker is recycled (a new interpreter) before
abandoned slots, leftover VMAs or leftover files approach
``vm.max_map_count`` or the arena's end, and whenever the heap cannot be put
back.

The heap zone ``h``
-------------------
``brk`` runs against the worker's real program break. glibc malloc is kept
off it: at start the worker sets ``M_TRIM_THRESHOLD`` huge (malloc never
shrinks the break), ``M_TOP_PAD`` to 64 MiB and grows the break once, so
malloc's top chunk has room for the worker's whole life and never calls
``sbrk`` during a trace. ``h0`` is the break at trace start; a ``brk`` below
``h0`` is refused. After a trace the worker puts the break back to ``h0``
and unmaps the heap window; when a seal prevents that, the worker is
recycled, since glibc's cached break would now be wrong.

Snapshots
---------
Reading ``/proc/self/smaps`` costs ~800 µs (it walks every VMA of the
process), so per-call snapshots use cheaper measurements:

* VMA boundaries, rwx, shared, inode/device and file offset from the
  ``PROCMAP_QUERY`` ioctl on ``/proc/self/maps`` (Linux 6.11+): no page walk;
* the sealed bit from ``mprotect(vma, len, <its own prot>)``: EPERM iff
  sealed, a no-op otherwise (``mprotect_fixup`` tests the seal before its
  ``newflags == oldflags`` early return, docs/reference/linux.md rule 7;
  verified by ``tests/kernel/test_executor.py``), asked once per stretch of
  adjacent VMAs with the same protection (no VMA of it changes, and
  ``mprotect_fixup`` answers EPERM at the first sealed one), and VMA by VMA
  only where a stretch answers EPERM;
* content from ``pread`` on ``/proc/self/mem``, one read per run of
  adjacent VMAs (reads PROT_NONE pages too; EIO on a guard marker gives
  ``#``, on a page past the end of its file ``!``), each page
  mapped to its token by comparing the whole page with
  :func:`~sealkit.ops.token_page`;
* the tracked VmFlags (``dc wf lo lf hg nh dd rr sr mg gd gu``), which only
  smaps shows, at the steps the caller asks for (``flags=``: ``"end"``,
  ``"flag-ops"``, ``"every"``, ``"never"`` or a set of step indices). At
  those steps the sealed bit from the probe is also cross-checked against
  smaps ``sl``; a disagreement is reported as an executor failure.
  :attr:`~sealkit.fidelity.target.TraceRun.flags_checked` says, step by step, what was verified.

``write`` ops are ``process_vm_writev`` on the worker itself: a user-space
store that honours page permissions (EFAULT), never a forced write, and never
expands a stack.

What sealing does not cover (issue 14): ``pwrite_mem`` is ``pwrite`` on the
runner's own ``/proc/self/mem`` opened read-write (the snapshots keep their
read-only descriptor); ``vm_writev`` is ``process_vm_writev`` to itself with
the exact byte range; ``poke`` is ``PTRACE_POKEDATA`` from a helper the
runner forks on its first poke and keeps (:class:`sealkit._os.poke.Poker`;
a forked trace child uses its parent's helper). The file calls act on
the trace's files (fresh unnamed files, made on first use, closed after the
trace): ``pwrite``, ``ftruncate`` and ``fallocate(PUNCH_HOLE|KEEP_SIZE)`` on
the read-write descriptor (``f1:ro``: the read-only one). ``mincore`` gets a
vector of one byte per page of its range. After a trace that called
``mlockall`` the runner calls ``munlockall`` (``mm->def_flags`` would
otherwise lock every later mapping). A snapshot tells the two kinds of
unreadable page apart with ``/proc/self/pagemap`` (bit 58,
``PM_GUARD_REGION``): a guard marker is ``#``, any other page that cannot be
read (past the end of its file) ``!``.

``fork`` forks the worker; the rest of the trace runs in the child (which
opens its own ``/proc/self`` files and pidfd), sends its results to the
parent and exits. A child that dies is reported as the trace's death.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno as _errno
import os
import pickle
import signal
import struct
import traceback
from typing import TYPE_CHECKING, Any, Final

from ..._os import poke, procfs, syscalls
from ...errors import KernelError, SealkitError
from ...layout import TRACKED_FLAGS
from ...ops import (
    ELSEWHERE,
    FILE_PAGES,
    MODEL_BASES,
    Bases,
    Brk,
    FilePwrite,
    Fork,
    Ftruncate,
    Madvise,
    MemoryWrite,
    Mincore,
    Mlock,
    Mlockall,
    Mmap,
    Mprotect,
    Mremap,
    Mseal,
    Msync,
    Munlock,
    Munlockall,
    Munmap,
    Op,
    PkeyMprotect,
    Poke,
    ProcessMadvise,
    Punch,
    PwriteMem,
    VmWritev,
    Write,
    rebase,
    token_page,
    write_token,
)
from ..target import MAX_PAGES, Window
from .protocol import RawRun, RawSnap, WorkerDiedError, recv, send
from .refusals import PS, OutsideArenaError, mmap_length, refusal_at, trace_refusal

if TYPE_CHECKING:
    from .zygote import Zygote

# The worker imports this module too, and every shared library it loads is
# five more VMAs that each smaps read formats (~5 us apiece, see the runner's
# snapshots): controller-only modules (subprocess, tempfile -> shutil -> bz2,
# lzma, zlib; random; select) are imported where the controller uses them.

__all__ = ["GUARD", "MAX_WINDOWS", "STRIDE", "Runner", "die_with_parent", "status_note"]

GUARD: Final = 4
"""Guard pages on each side of every window slot."""
STRIDE: Final = MAX_PAGES + 2 * GUARD
MAX_WINDOWS: Final = 64
"""Window slots in the arena; a runner retires when it has used them all."""

_PROCMAP_COVERING_OR_NEXT: Final = 0x10


_TOKEN_PAGES: Final = {
    tok[0]: (tok, token_page(tok)) for tok in ("0", "F", *"abcdefghijklmnopqrstuvwxyz")
}
_TOKEN_BY_BYTE: Final = {page[0]: (tok, page) for tok, page in _TOKEN_PAGES.values()}
_WRITE_PAGES: Final = dict(_TOKEN_PAGES.values())
_FILE_OPS: Final = frozenset({FilePwrite, Ftruncate, Punch})
_PUNCH_HOLE_KEEP_SIZE: Final = 0x02 | 0x01  # FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE
_M64: Final = (1 << 64) - 1
_PM_GUARD_REGION: Final = 1 << 58
"""``/proc/PID/pagemap``: the page holds a guard marker (fs/proc/task_mmu.c, 6.14+)."""
_RUNNER_LEFTOVER_VMAS: Final = 128
_RUNNER_LEFTOVER_FILES: Final = 64
_call_ = syscalls.errno_call


_FIRST_BYTE_TOKEN: Final = bytes.maketrans(b"\x00", b"0")


def _tokens(data: bytes, pages: int) -> str:
    """One content token per page of ``data``: a page is a token only if every
    byte of it is that token's byte (:func:`~sealkit.ops.token_page`), else ``?``."""
    firsts = data[::PS]
    # Fast path: build what the pages would be if each were uniform, compare at once.
    try:
        expected = b"".join([_TOKEN_BY_BYTE[b][1] for b in firsts])
    except KeyError:
        expected = b""
    if expected == data:
        return firsts.translate(_FIRST_BYTE_TOKEN).decode("ascii")
    out = []
    for k in range(0, pages * PS, PS):
        entry = _TOKEN_BY_BYTE.get(data[k])
        out.append(entry[0] if entry is not None and data[k : k + PS] == entry[1] else "?")
    return "".join(out)


class _ChildDied(Exception):
    def __init__(self, step: int, how: str) -> None:
        super().__init__(step, how)
        self.step = step
        self.how = how


def status_note(status: int) -> str:
    if os.WIFSIGNALED(status):
        sig = os.WTERMSIG(status)
        name = signal.Signals(sig).name if sig in signal.Signals._value2member_map_ else str(sig)
        return f"killed by signal {sig} ({name})"
    return f"exited with status {os.waitstatus_to_exitcode(status)}"


def die_with_parent(parent: int) -> None:
    """Have the kernel SIGKILL this process when ``parent`` dies, and exit now
    if it already has (it died between our fork and the prctl: we were
    reparented). Each generation (worker, runner, forked trace child) sets it,
    since fork clears it: whatever kills the controller (SIGTERM, SIGKILL, a
    crash) takes the whole tree with it; the worker runs in its own session,
    out of reach of the terminal's signals. A kernel that refuses the prctl
    (a seccomp filter) leaves only the pipes: the worker then notices its
    controller's end only when it next reads or writes."""
    with contextlib.suppress(SealkitError):
        syscalls.set_parent_death_signal(signal.SIGKILL)
    if os.getppid() != parent:
        os._exit(1)


class Runner:
    """Runs traces, each in a fresh window slot of the arena it inherited.
    Lives until its sealed leftovers, leftover files, window slots or heap
    say it should retire; then the zygote forks a new one."""

    def __init__(self, zygote: Zygote) -> None:
        self.lim = zygote.lim
        self.arena = zygote.arena
        self.h0 = self._aligned_break()
        self.slot = 0
        self.leftover_vmas = 0
        self.leftover_files = 0
        self.retire = ""
        self.query = syscalls.ProcmapQuery()
        self.tmpdir = os.environ.get("TMPDIR") or "/tmp"
        self.elsewhere: list[tuple[int, int]] = []
        self.files: dict[str, tuple[int, int, tuple[int, int, int]]] = {}
        self.file_keys: dict[tuple[int, int, int], str] = {}
        self.heap = False
        self.mlocked = False
        self.poker = poke.Poker()  # its ptrace helper is forked on the first poke
        self._open_self()
        self._check_low_area_empty()
        self._open_slot(self.slot)

    # ---------------------------------------------------------- set-up

    def _open_self(self) -> None:
        """Open this process's /proc files and pidfd (again after a fork:
        they are tied to the process that opened them)."""
        self.pid = os.getpid()
        self.maps_fd = os.open("/proc/self/maps", os.O_RDONLY | os.O_CLOEXEC)
        self.mem_fd = os.open("/proc/self/mem", os.O_RDONLY | os.O_CLOEXEC)
        # pwrite_mem's own descriptor: the snapshots' stays read-only.
        self.mem_rw_fd = os.open("/proc/self/mem", os.O_RDWR | os.O_CLOEXEC)
        self.pagemap_fd = os.open("/proc/self/pagemap", os.O_RDONLY | os.O_CLOEXEC)
        self.pidfd = _call_("pidfd_open", self.pid, 0)

    @staticmethod
    def _aligned_break() -> int:
        cur = syscalls.brk(0)
        if cur % PS:
            cur = syscalls.brk((cur + PS - 1) & ~(PS - 1))
        return cur

    def _check_low_area_empty(self) -> None:
        q = self.query
        if syscalls.procmap_query(self.maps_fd, 0, _PROCMAP_COVERING_OR_NEXT, q) and (
            q.vma_start < self.lim.min_addr
        ):
            raise WorkerDiedError(
                f"something is mapped below {self.lim.min_addr:#x}: far low addresses "
                "would not be safe"
            )

    def _slot_base(self, slot: int) -> int:
        return self.arena + (slot * STRIDE + GUARD) * PS

    def _open_slot(self, slot: int) -> None:
        syscalls.munmap(self._slot_base(slot), MAX_PAGES * PS)

    def serve(self, rfd: int, wfd: int) -> None:
        while True:
            msg = recv(rfd)
            if msg is None:
                return
            reply = self.handle(msg)
            if reply[0] in ("done", "refused"):
                try:
                    self.cleanup()
                except Exception:
                    self.retire = "cleanup failed:\n" + traceback.format_exc()
            send(wfd, reply, 1 if self.retire or reply[0] == "fail" else 0)
            if self.retire:
                return

    # --------------------------------------------------------- tracing

    def handle(self, msg: tuple[Any, ...]) -> tuple[Any, ...]:
        _, ops_model, win, snap_steps, flag_steps, heap = msg
        try:
            return self._run(ops_model, win, snap_steps, flag_steps, heap)
        except Exception:
            return ("fail", traceback.format_exc())

    def _run(
        self, ops_model: list[Op], win: Window, snap_steps: bytes, flag_steps: bytes, heap: bool
    ) -> tuple[Any, ...]:
        base = self._slot_base(self.slot)
        if heap:
            self.h0 = self._aligned_break()
            if self._has_vma(self.h0, self.h0 + MAX_PAGES * PS):
                raise RuntimeError("the heap window above the program break is not empty")
        self.bases = Bases(arena=base, heap=self.h0)
        self.win = win
        self.heap = heap
        self.zones = (
            (("p", base, win.pages), ("h", self.h0, win.heap_pages))
            if heap
            else (("p", base, win.pages),)
        )
        ops = [rebase(op, MODEL_BASES, self.bases) for op in ops_model]
        for i, op in enumerate(ops):
            reason = refusal_at(op, win, self.bases, heap, self.lim)
            if reason:
                return ("refused", OutsideArenaError(i, ops_model[i], reason))
        too_much = trace_refusal(ops)
        if too_much is not None:
            step, reason = too_much
            return ("refused", OutsideArenaError(step, ops_model[step], reason))
        for op in ops:
            if type(op) is Mmap and op.file is not None and op.file not in self.files:
                self._make_file(op.file)
            elif type(op) in _FILE_OPS and op.file not in self.files:  # type: ignore[attr-defined]
                self._make_file(op.file)  # type: ignore[attr-defined]
        results: list[int] = []
        snaps: list[RawSnap | int | None] = []
        flagged: list[bool] = []
        died: tuple[int, str] | None = None
        try:
            self._exec(ops, 0, snap_steps, flag_steps, results, snaps, flagged)
        except _ChildDied as exc:
            died = (exc.step, exc.how)
        out = [self._result_back(ops[i], r) for i, r in enumerate(results)]
        return ("done", out, snaps, flagged, died, self.pid, base)

    def _make_file(self, name: str) -> None:
        try:
            fd = os.open(self.tmpdir, os.O_TMPFILE | os.O_RDWR | os.O_CLOEXEC, 0o600)
        except OSError:
            fd = os.memfd_create(f"sealkit-{name}", os.MFD_CLOEXEC)
        os.pwrite(fd, token_page("F") * FILE_PAGES, 0)
        ro = os.open(f"/proc/self/fd/{fd}", os.O_RDONLY | os.O_CLOEXEC)
        st = os.fstat(fd)
        key = (os.major(st.st_dev), os.minor(st.st_dev), st.st_ino)
        self.files[name] = (fd, ro, key)
        self.file_keys[key] = name

    def _result_back(self, op: Op, result: int) -> int:
        if result < 0 or not op.RETURNS_ADDRESS:
            return result
        b = self.bases
        if b.arena <= result < b.arena + self.win.pages * PS:
            return MODEL_BASES.arena + (result - b.arena)
        if type(op) is Brk or (self.heap and b.heap <= result <= b.heap + self.win.heap_pages * PS):
            return MODEL_BASES.heap + (result - b.heap)  # the break, wherever it is
        return ELSEWHERE

    def _exec(
        self, ops: list[Op], first: int, snap_steps: bytes, flag_steps: bytes,
        results: list[int], snaps: list[RawSnap | int | None], flagged: list[bool],
    ) -> None:  # fmt: skip
        last: RawSnap | None = None
        call = self._call
        for i in range(first, len(ops)):
            op = ops[i]
            if type(op) is Fork:
                self._fork(ops, i, snap_steps, flag_steps, results, snaps, flagged)
                return
            results.append(call(op))
            flags = bool(flag_steps[i])
            if snap_steps[i] or flags:
                snap = self._snapshot(flags)
                # An unchanged snapshot travels as 0 (the controller repeats the last).
                snaps.append(0 if snap == last and not flags else snap)
                last = snap
            else:
                snaps.append(None)
            flagged.append(flags)

    def _fork(
        self, ops: list[Op], i: int, snap_steps: bytes, flag_steps: bytes,
        results: list[int], snaps: list[RawSnap | int | None], flagged: list[bool],
    ) -> None:  # fmt: skip
        read_fd, write_fd = os.pipe()
        me = os.getpid()
        pid = os.fork()
        if pid == 0:  # the child: run the rest of the trace here
            os.close(read_fd)
            code = 0
            try:
                die_with_parent(me)
                for fd in (
                    self.maps_fd, self.mem_fd, self.mem_rw_fd, self.pagemap_fd, self.pidfd
                ):  # fmt: skip
                    if fd >= 0:
                        os.close(fd)
                self._open_self()
                mine: list[int] = [0]
                my_snaps: list[RawSnap | int | None] = []
                my_flags: list[bool] = [bool(flag_steps[i])]
                if snap_steps[i] or flag_steps[i]:
                    my_snaps.append(self._snapshot(bool(flag_steps[i])))
                else:
                    my_snaps.append(None)
                died: tuple[int, str] | None = None
                try:
                    self._exec(ops, i + 1, snap_steps, flag_steps, mine, my_snaps, my_flags)
                except _ChildDied as exc:
                    died = (exc.step, exc.how)
                payload = pickle.dumps(("ok", mine, my_snaps, my_flags, died))
            except BaseException:
                payload = pickle.dumps(("err", traceback.format_exc()))
                code = 1
            try:
                view = memoryview(payload)
                while view:
                    view = view[os.write(write_fd, view) :]
            finally:
                os._exit(code)
        os.close(write_fd)
        with os.fdopen(read_fd, "rb") as pipe:
            data = pipe.read()
        _, status = os.waitpid(pid, 0)
        if not data:
            raise _ChildDied(i, f"the forked child {status_note(status)}")
        kind, *rest = pickle.loads(data)
        if kind == "err":
            raise _ChildDied(i, f"the forked child failed:\n{rest[0]}")
        mine, my_snaps, my_flags, died = rest
        results.extend(mine)
        snaps.extend(my_snaps)
        flagged.extend(my_flags)
        if died is not None:
            raise _ChildDied(*died)

    # ----------------------------------------------------------- calls

    def _call(self, op: Op) -> int:
        kind = type(op)
        if kind is Mmap:
            assert isinstance(op, Mmap)
            fd = -1
            if op.file is not None:
                entry = self.files[op.file]
                fd = entry[1] if op.file_ro else entry[0]
            ret = _call_("mmap", op.addr, op.length, int(op.prot), int(op.flags), fd, op.offset)
            if ret >= 0:
                # MAP_HUGETLB: the kernel mapped whole huge pages, and munmap
                # of a part of one is EINVAL (hugetlb_vm_op_split).
                self._note_elsewhere(ret, mmap_length(op.flags, op.length))
            return ret
        if kind is Munmap:
            return _call_("munmap", op.addr, op.length)  # type: ignore[attr-defined]
        if kind is Mprotect:
            assert isinstance(op, Mprotect)
            return _call_("mprotect", op.addr, op.length, int(op.prot))
        if kind is Write:
            assert isinstance(op, Write)
            return self._write(op)
        if kind is Mseal:
            assert isinstance(op, Mseal)
            return _call_("mseal", op.addr, op.length, op.flags)
        if kind is Madvise:
            assert isinstance(op, Madvise)
            return _call_("madvise", op.addr, op.length, int(op.advice))
        if kind is Mremap:
            assert isinstance(op, Mremap)
            ret = _call_(
                "mremap", op.addr, op.old_length, op.new_length, int(op.flags), op.new_addr
            )
            if ret >= 0:
                self._note_elsewhere(ret, op.new_length)
            return ret
        if kind is PkeyMprotect:
            assert isinstance(op, PkeyMprotect)
            return _call_("pkey_mprotect", op.addr, op.length, int(op.prot), op.pkey)
        if kind is Mlock:
            assert isinstance(op, Mlock)
            if op.onfault:
                return _call_("mlock2", op.addr, op.length, 1)  # MLOCK_ONFAULT
            return _call_("mlock", op.addr, op.length)
        if kind is Munlock:
            return _call_("munlock", op.addr, op.length)  # type: ignore[attr-defined]
        if kind is Brk:
            return _call_("brk", op.addr)  # type: ignore[attr-defined]
        if kind is ProcessMadvise:
            assert isinstance(op, ProcessMadvise)
            if self.pidfd < 0:
                return self.pidfd
            try:
                return syscalls.process_madvise(self.pidfd, op.ranges, int(op.advice), 0)
            except KernelError as exc:
                return -(exc.errno or _errno.EIO)
        if kind in _FILE_OPS:
            return self._file_call(op)
        if issubclass(kind, MemoryWrite):
            return self._remote_write(op)
        if kind is Msync:
            assert isinstance(op, Msync)
            return _call_("msync", op.addr, op.length, int(op.flags) & _M64)
        if kind is Mincore:
            assert isinstance(op, Mincore)
            # One byte per page of the range (the kernel writes the vector up
            # to the first hole); the refusal rules keep every range the
            # kernel walks within the window (the others fail before the
            # vector is looked at), so this is never short.
            pages = min((op.length + PS - 1) // PS, 1 << 16)
            vec = ctypes.create_string_buffer(max(pages, 1))
            return _call_("mincore", op.addr, op.length, ctypes.addressof(vec))
        if kind is Mlockall:
            assert isinstance(op, Mlockall)
            self.mlocked = True
            return _call_("mlockall", int(op.flags) & _M64)
        if kind is Munlockall:
            return _call_("munlockall")
        # mseal_v1/v3, mimmutable, mseal_split: calls Linux does not have.
        return -_errno.ENOSYS

    def _data(self, addr: int, length: int, tag: str | None) -> bytes:
        """The bytes a writer stores at ``[addr, addr+length)``: the tag, or
        each page's zone letter (:func:`~sealkit.ops.write_token`)."""
        out = bytearray()
        cur, end = addr, addr + length
        while cur < end:
            page = cur & ~(PS - 1)
            stop = min(page + PS, end)
            out += write_token(tag, self._zone_page(page)).encode("ascii") * (stop - cur)
            cur = stop
        return bytes(out)

    def _remote_write(self, op: Op) -> int:
        addr, length = op.addr, op.length  # type: ignore[attr-defined]
        tag = op.tag  # type: ignore[attr-defined]
        if type(op) is PwriteMem and addr >= 1 << 63:
            # pwrite(2) refuses a negative offset before reading the buffer.
            return _call_("pwrite64", self.mem_rw_fd, 0, length, addr)
        data = self._data(addr, length, tag)  # at most MAX_PAGES pages (refusals)
        if type(op) is VmWritev:
            try:
                return syscalls.process_vm_writev(self.pid, [(addr, length)], data)
            except KernelError as exc:
                return -(exc.errno or _errno.EIO)
        if type(op) is Poke:
            ret = self.poker.poke(addr, data)
            if ret not in (0, -_errno.EIO):
                raise RuntimeError(
                    f"poke: the runner's ptrace helper could not write ({_errno.errorcode.get(-ret, ret)}); "
                    "is ptrace forbidden here (yama ptrace_scope=3, a security module)?"
                )
            return ret
        buf = ctypes.create_string_buffer(data, len(data))
        return _call_("pwrite64", self.mem_rw_fd, ctypes.addressof(buf), length, addr)

    def _file_call(self, op: Op) -> int:
        fd, ro, _key = self.files[op.file]  # type: ignore[attr-defined]
        if op.file_ro:  # type: ignore[attr-defined]
            fd = ro
        if type(op) is Ftruncate:
            assert isinstance(op, Ftruncate)
            return _call_("ftruncate", fd, op.length)
        if type(op) is Punch:
            assert isinstance(op, Punch)
            return _call_("fallocate", fd, _PUNCH_HOLE_KEEP_SIZE, op.offset, op.length)
        assert isinstance(op, FilePwrite)
        if op.length > MAX_PAGES * PS:
            # Refused unless the kernel answers before reading the buffer
            # (a negative offset, the read-only descriptor).
            return _call_("pwrite64", fd, 0, op.length, op.offset)
        data = bytearray()
        cur, end = op.offset, op.offset + op.length
        while cur < end:
            page = cur // PS
            stop = min((page + 1) * PS, end)
            tok = op.tag if op.tag is not None else write_token(None, page)
            data += tok.encode("ascii") * (stop - cur)
            cur = stop
        buf = ctypes.create_string_buffer(bytes(data), len(data))
        return _call_("pwrite64", fd, ctypes.addressof(buf), op.length, op.offset)

    def _note_elsewhere(self, addr: int, length: int) -> None:
        b = self.bases
        inside = b.arena <= addr < b.arena + MAX_PAGES * PS or (
            self.heap and b.heap <= addr < b.heap + MAX_PAGES * PS
        )
        if not inside:
            self.elsewhere.append((addr, (length + PS - 1) & ~(PS - 1)))

    def _zone_page(self, addr: int) -> int:
        for _, base, _pages in self.zones:
            if base - MAX_PAGES * PS <= addr < base + 2 * MAX_PAGES * PS:
                return (addr - base) // PS
        return 0

    def _write(self, op: Write) -> int:
        if op.length == 0:
            return 0
        first = op.addr & ~(PS - 1)
        last = (op.addr + op.length + PS - 1) & ~(PS - 1)  # may pass 2**64: then it runs out
        # A store goes page by page until a page refuses it (ops.Write). Past the
        # window there is nothing writable (the slot's unused pages, then a
        # guard), and far targets fail at their first page: no giant buffer.
        pages = min((last - first) // PS, MAX_PAGES + 1)
        data = b"".join(
            _WRITE_PAGES[write_token(op.tag, self._zone_page(first + k * PS))] for k in range(pages)
        )
        try:
            done = syscalls.process_vm_writev(self.pid, [(first, len(data))], data)
        except KernelError as exc:
            return -(exc.errno or _errno.EIO)
        return 0 if done == len(data) and pages * PS == last - first else -_errno.EFAULT

    # ------------------------------------------------------- snapshots

    def _has_vma(self, lo: int, hi: int) -> bool:
        q = self.query
        return syscalls.procmap_query(self.maps_fd, lo, _PROCMAP_COVERING_OR_NEXT, q) and (
            q.vma_start < hi
        )

    def _vmas(
        self, lo: int, hi: int, names: bool = False
    ) -> list[tuple[int, int, int, int, int, int, int, str]]:
        """(start, end, flags, offset, major, minor, inode, name) of VMAs meeting [lo, hi)."""
        return syscalls.procmap_vmas(self.maps_fd, lo, hi, names)

    @staticmethod
    def _sealed(start: int, length: int, prot: int) -> bool:
        # mprotect to the VMA's own protection: EPERM iff sealed, else a no-op
        # (mprotect_fixup checks the seal before `newflags == oldflags`).
        ret = _call_("mprotect", start, length, prot)
        if ret == 0:
            return False
        if ret == -_errno.EPERM:
            return True
        raise RuntimeError(f"seal probe mprotect({start:#x}, {length:#x}) failed: {ret}")

    def _content(self, start: int, end: int) -> str:
        out: list[str] = []
        addr = start
        mem = self.mem_fd
        while addr < end:
            try:
                data = os.pread(mem, end - addr, addr)
            except OSError:
                data = b""
            got = len(data) // PS
            if got:
                out.append(_tokens(data, got))
            addr += got * PS
            if addr < end:
                out.append(self._unreadable(addr))
                addr += PS
        return "".join(out)

    def _unreadable(self, addr: int) -> str:
        """The token of a page ``/proc/self/mem`` cannot read: ``#`` for a guard
        marker (pagemap's ``PM_GUARD_REGION``), ``!`` otherwise (a file page
        past the end of its file: SIGBUS)."""
        try:
            entry = os.pread(self.pagemap_fd, 8, (addr // PS) * 8)
        except OSError:
            return "#"
        if len(entry) == 8 and not struct.unpack("<Q", entry)[0] & _PM_GUARD_REGION:
            return "!"
        return "#"

    def _snapshot(self, with_flags: bool) -> RawSnap:
        zones: list[list[RawRun]] = []
        all_vmas = []
        for zone, base, pages in self.zones:
            lo, hi = base, base + pages * PS
            # The heap zone asks the kernel for VMA names: "[heap]" is its call
            # (vma_is_initial_heap(), which depends on the current break).
            vmas = self._vmas(lo, hi, zone == "h")
            n = len(vmas)
            clip = [(max(v[0], lo), min(v[1], hi)) for v in vmas]
            content = [""] * n
            sealed = [False] * n
            i = 0
            while i < n:
                # A run of contiguous VMAs: their content in one pread ...
                j = i + 1
                while j < n and clip[j][0] == clip[j - 1][1]:
                    j += 1
                first = clip[i][0]
                text = self._content(first, clip[j - 1][1])
                for k in range(i, j):
                    content[k] = text[(clip[k][0] - first) // PS : (clip[k][1] - first) // PS]
                # ... and their seals with one probe per stretch of equal
                # protection: mprotect to a VMA's own protection changes
                # nothing (mprotect_fixup returns before any split or merge),
                # so one call answers "none sealed"; EPERM: probe each.
                k = i
                while k < j:
                    prot = vmas[k][2] & 7
                    m = k + 1
                    while m < j and vmas[m][2] & 7 == prot:
                        m += 1
                    if self._sealed(clip[k][0], clip[m - 1][1] - clip[k][0], prot):
                        if m - k == 1:
                            sealed[k] = True
                        else:
                            for q in range(k, m):
                                sealed[q] = self._sealed(clip[q][0], clip[q][1] - clip[q][0], prot)
                    k = m
                i = j
            runs: list[RawRun] = []
            for k, (start, end, vflags, offset, major, minor, inode, name) in enumerate(vmas):
                s, e = clip[k]
                pgoff: int | None = None
                if inode:
                    file = self.file_keys.get((major, minor, inode))
                    backing = f"file:{file}" if file is not None else "shmem"
                    pgoff = (offset + (s - start)) // PS
                else:
                    backing = "[heap]" if name == "[heap]" else "anon"
                runs.append(
                    ((s - base) // PS, (e - base) // PS, vflags & 7, bool(vflags & 8), backing,
                     pgoff, sealed[k], None, content[k])
                )  # fmt: skip
                all_vmas.append((start, end, len(zones), k))
            zones.append(runs)
        if with_flags and all_vmas:
            self._add_flags(zones, all_vmas)
        return tuple(tuple(z) for z in zones)

    def _add_flags(self, zones: list[list[RawRun]], vmas: list[tuple[int, int, int, int]]) -> None:
        with open("/proc/self/smaps", "rb") as fh:
            text = fh.read().decode("ascii", "replace")
        for start, end, zi, ri in vmas:
            head = f"{start:x}-{end:x} "
            at = 0 if text.startswith(head) else text.find("\n" + head) + 1
            if at == 0 and not text.startswith(head):
                raise RuntimeError(f"VMA {head.strip()} is missing from smaps")
            stop = text.find("\n", text.find("\nVmFlags:", at) + 1)
            parsed = procfs.parse_smaps(text[at : stop if stop > 0 else len(text)])
            if len(parsed) != 1 or parsed[0].vmflags is None:
                raise RuntimeError(f"could not read VmFlags of {head.strip()}")
            vmflags = parsed[0].vmflags
            run = zones[zi][ri]
            if ("sl" in vmflags) != run[6]:
                raise RuntimeError(
                    f"seal probe says {'sealed' if run[6] else 'unsealed'} but smaps VmFlags "
                    f"say {' '.join(sorted(vmflags))} for zone pages [{run[0]},{run[1]})"
                )
            zones[zi][ri] = (*run[:7], frozenset(vmflags & TRACKED_FLAGS), run[8])

    # --------------------------------------------------------- cleanup

    def cleanup(self) -> None:
        """Put the runner back to a clean state for the next trace, or decide to retire."""
        for addr, size in self.elsewhere:
            if _call_("munmap", addr, size) != 0:
                # Nothing of a trace can seal it (its address is not in the
                # window): a failure means the runner's bookkeeping is wrong.
                self.retire = f"could not unmap [{addr:#x}, {addr + size:#x}) placed elsewhere"
        self.elsewhere = []
        base = self._slot_base(self.slot)
        if _call_("munmap", base, MAX_PAGES * PS) != 0:
            # Sealed leftovers: drop what can go, abandon the slot.
            for start, end, vflags, *_ in self._vmas(base, base + MAX_PAGES * PS):
                s, e = max(start, base), min(end, base + MAX_PAGES * PS)
                if self._sealed(s, e - s, vflags & 7):
                    self.leftover_vmas += 1
                else:
                    _call_("munmap", s, e - s)
            self.leftover_files += len(self.files)
            self.slot += 1
            if self.slot >= MAX_WINDOWS:
                self.retire = "every window slot holds sealed leftovers"
            else:
                self._open_slot(self.slot)
        if self.mlocked:
            # mlockall(MCL_FUTURE) would lock every later mapping of the runner.
            self.mlocked = False
            if _call_("munlockall") != 0:
                self.retire = "munlockall failed after a trace that called mlockall"
        for fd, ro, _key in self.files.values():
            os.close(fd)
            os.close(ro)
        self.files = {}
        self.file_keys = {}
        if self.heap:
            self.heap = False
            if syscalls.brk(self.h0) != self.h0:
                self.retire = "a seal keeps the program break above h0"
            elif _call_("munmap", self.h0, MAX_PAGES * PS) != 0:
                self.retire = "sealed mappings remain in the heap window"
        if self.leftover_vmas > _RUNNER_LEFTOVER_VMAS:
            self.retire = "sealed leftovers make smaps slow; a fresh runner is cheaper"
        if self.leftover_files > _RUNNER_LEFTOVER_FILES:
            self.retire = "too many files held by sealed leftovers"

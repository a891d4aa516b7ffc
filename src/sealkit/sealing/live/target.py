"""The running process, read from outside: its /proc directory, its memory, its loader.

Nothing here stops or changes the target. :class:`Process` pins it: its
``/proc/PID`` directory and ``/proc/PID/mem`` are opened once (every read
through them belongs to that process, even if it exits and the pid is
reused), and a pidfd tells, after each attach, whether the process that was
checked is still the one the pid names.

The loader's state comes from the target's own memory: ``r_debug`` (found
through ``DT_DEBUG`` of the executable), the ``link_map`` list of every
namespace, each object's program headers from the ELF header it has mapped,
its dynamic section (``DT_TEXTREL``), and glibc's loader lock
(``_rtld_global._dl_load_lock``, see :class:`LoadLock`). Every read is
bounded; garbage (a loop, an absurd count, an unmapped pointer) is an
:class:`Unreadable`, never a hang or a crash.
"""

from __future__ import annotations

import os
import re
import select
import struct
from bisect import bisect_right
from collections.abc import Sequence
from typing import Final, NamedTuple, Protocol

from ..._os import procfs, syscalls
from ..._os.procfs import Vma
from ..._os.syscalls import LoadedObject, Phdr
from ...errors import AccessDeniedError, KernelError, ProcessGoneError, TargetRefusedError

__all__ = [
    "RT_STATES",
    "LoadLock",
    "Loader",
    "Namespace",
    "Node",
    "ObjectInfo",
    "Process",
    "Unreadable",
    "find_syscall_insn",
    "walk_loader",
]

PAGE: Final = 4096

# struct r_debug / r_debug_extended (glibc elf/link.h) and the public head of
# struct link_map, on x86_64.
_RDEBUG: Final = struct.Struct("<i4xQQi4xQ")  # r_version, r_map, r_brk, r_state, r_ldbase
_RDEBUG_NEXT_OFF: Final = 40  # r_debug_extended.r_next (r_version >= 2)
_RDEBUG_READ: Final = 48
_LINK_MAP: Final = struct.Struct("<QQQQQ")  # l_addr, l_name, l_ld, l_next, l_prev
RT_STATES: Final = {0: "RT_CONSISTENT", 1: "RT_ADD", 2: "RT_DELETE"}
_EHDR: Final = struct.Struct("<16sHHIQQQIHHHHHH")
_PHDR: Final = struct.Struct("<IIQQQQQQ")
_DYN: Final = struct.Struct("<qQ")
_SYM: Final = struct.Struct("<IBBHQQ")  # Elf64_Sym: name, info, other, shndx, value, size
DT_NULL, DT_STRTAB, DT_SYMTAB, DT_STRSZ, DT_DEBUG = 0, 5, 6, 10, 21
DT_GNU_HASH: Final = 0x6FFFFEF5
PT_LOAD, PT_DYNAMIC, PT_INTERP, PT_PHDR = 1, 2, 3, 6
AT_PHDR, AT_PHNUM, AT_BASE, AT_SYSINFO_EHDR = 3, 5, 7, 33
EM_X86_64: Final = 62

_MAX_OBJECTS: Final = 4096
_MAX_NAMESPACES: Final = 16  # DL_NNS
_MAX_DYN: Final = 2048
_MAX_NAME: Final = 4096


class Unreadable(Exception):
    """The target's memory could not be read where its loader data said."""


class Reader(Protocol):
    def read(self, addr: int, size: int) -> bytes: ...


# --- the process ----------------------------------------------------------------------


class Process:
    """One running process, pinned (see the module docstring). Raises
    :class:`~sealkit.errors.TargetRefusedError` (``gone``, ``permission``,
    ``thread``) when it cannot be opened. A context manager."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.pidfd = -1
        self.mem_fd = -1
        try:
            self.dir = procfs.ProcessDir(pid)
        except ProcessGoneError:
            raise TargetRefusedError(pid, "gone", "no such process") from None
        except AccessDeniedError:
            raise TargetRefusedError(pid, "permission", f"/proc/{pid} is not readable") from None
        try:
            status = self.status()
            tgid = int(status.get("Tgid", str(pid)))
            if tgid != pid:
                raise TargetRefusedError(
                    pid, "thread", f"thread of process {tgid}; seal the process (--pid {tgid})"
                )
            try:
                self.pidfd = syscalls.pidfd_open(pid)
            except KernelError:
                raise TargetRefusedError(pid, "gone", "no such process") from None
            # The directory pins the process that had this pid when it was
            # opened; the pidfd, the one that had it a moment later. Reading
            # the directory again proves that is still the same process.
            self.status()
        except BaseException:
            self.close()
            raise

    def __enter__(self) -> Process:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        for name in ("mem_fd", "pidfd"):
            fd = getattr(self, name)
            if fd >= 0:
                os.close(fd)
                setattr(self, name, -1)
        if hasattr(self, "dir"):
            self.dir.close()

    # /proc, through the pinned directory

    def read(self, name: str) -> bytes:
        """``/proc/PID/<name>``: raises ProcessGoneError once the process is gone."""
        return self.dir.read(name)

    def status(self, tid: int | None = None) -> dict[str, str]:
        """``/proc/PID/status`` (or a thread's): raises TargetRefusedError("gone")."""
        name = f"task/{tid}/status" if tid else "status"
        try:
            text = self.read(name).decode("utf-8", "surrogateescape")
        except ProcessGoneError:
            raise TargetRefusedError(self.pid, "gone", "the process exited") from None
        return procfs.parse_status(text, f"/proc/{self.pid}/{name}")

    def tasks(self) -> list[int]:
        """The thread ids of the process, now (empty once it is gone)."""
        try:
            fd = os.open("task", os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC, dir_fd=self.dir.fd)
        except OSError:
            return []
        try:
            return sorted(int(t) for t in os.listdir(fd) if t.isdigit())
        except OSError:
            return []
        finally:
            os.close(fd)

    def task_state(self, tid: int) -> str:
        """The one-letter state of thread ``tid`` (``""`` when it is gone)."""
        return _stat_state(self._try_read(f"task/{tid}/stat"))

    def state(self) -> str:
        """The one-letter state of the process (``""`` when it is gone)."""
        return _stat_state(self._try_read("stat"))

    def ppid(self) -> int:
        data = self._try_read("stat")
        try:
            return int(data[data.rfind(b")") + 2 :].split()[1])
        except (ValueError, IndexError):
            return 0

    def _try_read(self, name: str) -> bytes:
        try:
            return self.read(name)
        except (ProcessGoneError, AccessDeniedError):
            return b""

    def exited(self) -> bool:
        """The process the pidfd names has exited (a zombie counts): from
        then on the pid may name another process. Never blocks."""
        poller = select.poll()
        poller.register(self.pidfd, select.POLLIN)
        return bool(poller.poll(0))

    def alive(self) -> bool:
        """Still a process with an address space (not gone, not a zombie)."""
        return not self.exited() and self.state() not in ("", "Z", "X")

    def maps(self) -> bytes:
        """``/proc/PID/maps`` as bytes (raises ProcessGoneError)."""
        return self.read("maps")

    def vmas(self, smaps: bool) -> list[Vma]:
        """The mappings from maps, or from smaps (with the seal bit)."""
        try:
            if not smaps:
                return procfs.parse_maps(self.maps().decode("utf-8", "surrogateescape"))
            text = self.read("smaps").decode("utf-8", "surrogateescape")
        except ProcessGoneError:
            raise TargetRefusedError(self.pid, "gone", "the process exited") from None
        return procfs.parse_smaps("\n".join(_LAYOUT_LINE.findall(text)))

    def auxv(self) -> dict[int, int]:
        data = self.read("auxv")
        out: dict[int, int] = {}
        for key, value in struct.iter_unpack("<QQ", data[: len(data) // 16 * 16]):
            if key == 0:
                break
            out[key] = value
        return out

    def exe_head(self) -> bytes:
        """The first 20 bytes of the executable (its ELF identity and machine)."""
        fd = os.open("exe", os.O_RDONLY | os.O_CLOEXEC, dir_fd=self.dir.fd)
        try:
            return os.read(fd, 20)
        finally:
            os.close(fd)

    # memory

    def open_memory(self) -> None:
        """(Re)open ``/proc/PID/mem`` through the pinned directory. The file
        is bound to the address space the process has at this moment: once
        it executes another program, reads through it end (see
        :meth:`image_gone`) and never show the new program's memory."""
        if self.mem_fd >= 0:
            os.close(self.mem_fd)
            self.mem_fd = -1
        try:
            self.mem_fd = os.open("mem", os.O_RDONLY | os.O_CLOEXEC, dir_fd=self.dir.fd)
        except (FileNotFoundError, ProcessLookupError):  # ESRCH: exited, or no mm any more
            raise TargetRefusedError(self.pid, "gone", "the process exited") from None
        except PermissionError:
            raise TargetRefusedError(
                self.pid, "permission", f"/proc/{self.pid}/mem is not readable"
            ) from None

    def image_gone(self) -> bool:
        """The address space ``/proc/PID/mem`` was opened on is gone: the
        process executed a new program (or exited) since. A read through the
        file of an address space nobody uses any more returns end-of-file,
        while a live one gives bytes or EIO (``mem_rw()`` in fs/proc/base.c:
        ``mmget_not_zero()`` fails). Never blocks."""
        if self.mem_fd < 0:
            return False
        try:
            return os.pread(self.mem_fd, 1, PAGE) == b""
        except OSError:
            return False

    def read_memory(self, addr: int, size: int) -> bytes:
        """``size`` bytes at ``addr`` of the target (``/proc/PID/mem``, opened
        once through the pinned directory): :class:`Unreadable` otherwise."""
        if self.mem_fd < 0:
            self.open_memory()
        if not 0 < addr < (1 << 63) - size or size <= 0:
            raise Unreadable(f"address {addr:#x}")
        try:
            data = os.pread(self.mem_fd, size, addr)
        except OSError as exc:
            raise Unreadable(f"{addr:#x}: {exc.strerror}") from None
        if len(data) != size:
            raise Unreadable(f"{addr:#x}: short read")
        return data

    def read_spans(self, spans: Sequence[tuple[int, int]]) -> bytes | None:
        """The bytes of ``spans``, batched (``process_vm_readv``, which names
        the process by pid: only while it is attached, when the pid is
        known to be ours), or ``None`` if any is unreadable."""
        out = b""
        try:
            for i in range(0, len(spans), 1024):
                chunk = list(spans[i : i + 1024])
                want = sum(n for _, n in chunk)
                got = syscalls.process_vm_readv(self.pid, chunk, want)
                if len(got) != want:
                    return None
                out += got
        except KernelError:
            return None
        return out


class Memory:
    """The target's memory as a :class:`Reader` (``/proc/PID/mem``)."""

    def __init__(self, process: Process) -> None:
        self.process = process

    def read(self, addr: int, size: int) -> bytes:
        return self.process.read_memory(addr, size)


# A mapping header or the VmFlags line: what smaps says about layout and seals.
_LAYOUT_LINE: Final = re.compile(r"^(?:[0-9a-f]+-[0-9a-f]+ .*|VmFlags:.*)$", re.MULTILINE)


def _stat_state(data: bytes) -> str:
    end = data.rfind(b")")
    return data[end + 2 : end + 3].decode() if end >= 0 else ""


# --- the loader's list ------------------------------------------------------------------


class Namespace(NamedTuple):
    addr: int
    version: int
    state: int


class Node(NamedTuple):
    node: int
    l_addr: int
    l_name: int
    l_ld: int


def cstr(mem: Reader, addr: int) -> str:
    """The NUL-terminated string at ``addr`` (bounded)."""
    out = b""
    while len(out) < _MAX_NAME:
        chunk = mem.read(addr + len(out), 256) if addr else b"\0"
        end = chunk.find(b"\0")
        if end >= 0:
            return os.fsdecode(out + chunk[:end])
        out += chunk
    raise Unreadable(f"name at {addr:#x} longer than {_MAX_NAME} bytes")


def dynamic(mem: Reader, addr: int) -> dict[int, int]:
    """The first value of each tag of the dynamic section at ``addr``."""
    out: dict[int, int] = {}
    for start in range(0, _MAX_DYN, 64):
        block = mem.read(addr + start * _DYN.size, 64 * _DYN.size)
        for tag, value in _DYN.iter_unpack(block):
            if tag == DT_NULL:
                return out
            out.setdefault(tag, value)
    raise Unreadable(f"dynamic section at {addr:#x} has no end")


def dynamic_bytes(mem: Reader, addr: int) -> bytes:
    """The raw dynamic section at ``addr``, up to and including ``DT_NULL``."""
    out = b""
    for start in range(0, _MAX_DYN, 64):
        block = mem.read(addr + start * _DYN.size, 64 * _DYN.size)
        for k, (tag, _value) in enumerate(_DYN.iter_unpack(block)):
            if tag == DT_NULL:
                return out + block[: (k + 1) * _DYN.size]
        out += block
    raise Unreadable(f"dynamic section at {addr:#x} has no end")


def walk_loader(mem: Reader, rdebug: int) -> tuple[list[Namespace], list[Node]]:
    """Every namespace's ``r_debug`` (``r_next`` chain) and its link_map nodes."""
    namespaces: list[Namespace] = []
    nodes: list[Node] = []
    seen: set[int] = set()
    addr = rdebug
    while addr and len(namespaces) < _MAX_NAMESPACES:
        head = mem.read(addr, _RDEBUG_READ)
        version, r_map, _brk, state, _ldbase = _RDEBUG.unpack_from(head)
        namespaces.append(Namespace(addr, version, state))
        node = r_map
        while node:
            if node in seen or len(nodes) >= _MAX_OBJECTS:
                raise Unreadable("link_map list loops or is implausibly long")
            seen.add(node)
            l_addr, l_name, l_ld, l_next, _prev = _LINK_MAP.unpack(mem.read(node, _LINK_MAP.size))
            nodes.append(Node(node, l_addr, l_name, l_ld))
            node = l_next
        if version < 2:
            break
        (addr,) = struct.unpack_from("<Q", head, _RDEBUG_NEXT_OFF)
    return namespaces, nodes


def snapshot_spans(namespaces: Sequence[Namespace], nodes: Sequence[Node]) -> list[tuple[int, int]]:
    """The bytes that fix the loader's state: each ``r_debug`` (version, list
    head, r_state, r_next) and each link_map head (l_addr, l_name, l_ld,
    l_next). Equal bytes at the stop mean the same objects, still
    RT_CONSISTENT: one read instead of a walk."""
    return [(ns.addr, _RDEBUG_READ) for ns in namespaces] + [
        (n.node, _LINK_MAP.size) for n in nodes
    ]


def vma_at(vmas: Sequence[Vma], starts: Sequence[int], addr: int) -> Vma | None:
    i = bisect_right(starts, addr) - 1
    if i >= 0 and vmas[i].start <= addr < vmas[i].end:
        return vmas[i]
    return None


class ObjectInfo(NamedTuple):
    """One loaded object as read from the target: ``problem`` says why it
    cannot be planned (``""`` if it can)."""

    name: str
    obj: LoadedObject
    problem: str


def read_phdrs(mem: Reader, header: int) -> tuple[Phdr, ...]:
    """The program headers of the 64-bit x86_64 ELF header mapped at ``header``."""
    ehdr = _EHDR.unpack(mem.read(header, _EHDR.size))
    ident, _type, machine, _v, _entry, phoff, _sh, _fl, _eh, phentsize, phnum = ehdr[:11]
    if ident[:4] != b"\x7fELF" or ident[4] != 2 or ident[5] != 1:
        raise Unreadable(f"no 64-bit little-endian ELF header at {header:#x}")
    if machine != EM_X86_64:
        raise Unreadable(f"ELF header at {header:#x} is not x86_64 (e_machine {machine})")
    if phentsize != _PHDR.size or not 0 < phnum <= 256 or phoff > PAGE * 16:
        raise Unreadable(f"implausible program headers at {header:#x}")
    blob = mem.read(header + phoff, phnum * phentsize)
    return tuple(
        Phdr(t, f, off, vaddr, filesz, memsz, align)
        for t, f, off, vaddr, _paddr, filesz, memsz, align in _PHDR.iter_unpack(blob)
    )


def read_object(
    mem: Reader,
    node: Node,
    name: str,
    vmas: Sequence[Vma],
    starts: Sequence[int],
    aux: dict[int, int],
) -> ObjectInfo:
    """The program headers and TEXTREL flag of one link_map entry.

    The ELF header is found where the object's file is mapped at offset 0:
    the mapping (same device and inode as the one holding ``l_ld``) that
    starts closest below ``l_ld``, cross-checked against ``l_addr``; the
    vDSO's comes from ``AT_SYSINFO_EHDR``.
    """
    empty = LoadedObject(node.l_addr, name, ())
    try:
        dyn_vma = vma_at(vmas, starts, node.l_ld)
        if dyn_vma is None:
            return ObjectInfo(name, empty, "dynamic section not mapped")
        if dyn_vma.path == "[vdso]" and AT_SYSINFO_EHDR in aux:
            phdrs = read_phdrs(mem, aux[AT_SYSINFO_EHDR])
        elif dyn_vma.inode == 0:
            return ObjectInfo(name, empty, "dynamic section not in a file mapping")
        else:
            header_vma = None
            for vma in vmas:
                if vma.start > node.l_ld:
                    break
                if vma.inode == dyn_vma.inode and vma.dev == dyn_vma.dev and vma.offset == 0:
                    header_vma = vma
            if header_vma is None:
                return ObjectInfo(name, empty, "ELF header not mapped")
            phdrs = read_phdrs(mem, header_vma.start)
            first = min(
                (p for p in phdrs if p.type == PT_LOAD), key=lambda p: p.vaddr, default=None
            )
            if first is None or (node.l_addr + first.vaddr) & ~(PAGE - 1) != header_vma.start:
                return ObjectInfo(
                    name, empty, "l_addr does not match where the ELF header is mapped"
                )
        textrel = syscalls.dynamic_has_textrel(dynamic_bytes(mem, node.l_ld))
    except Unreadable as exc:
        return ObjectInfo(name, empty, f"unreadable: {exc}")
    return ObjectInfo(name, LoadedObject(node.l_addr, name, phdrs, textrel), "")


def span(obj: LoadedObject) -> tuple[int, int]:
    """The page range an object's PT_LOAD segments cover."""
    loads = [p for p in obj.phdrs if p.type == PT_LOAD and p.memsz]
    if not loads:
        return obj.addr, obj.addr
    lo = min(obj.addr + p.vaddr for p in loads) & ~(PAGE - 1)
    hi = max(obj.addr + p.vaddr + p.memsz for p in loads)
    return lo, (hi + PAGE - 1) & ~(PAGE - 1)


# --- glibc's loader lock -----------------------------------------------------------------

# Where _dl_load_lock sits in struct rtld_global (glibc sysdeps/generic/ldsodefs.h)
# on x86_64: after _dl_ns[DL_NNS] (16 struct link_namespaces) and size_t _dl_nns.
# A link_namespaces is _ns_loaded (8), _ns_nloaded (4+4), _ns_main_searchlist (8),
# _ns_global_scope_alloc (4), _ns_global_scope_pending_adds (4), libc_map (8),
# _ns_unique_sym_table (a 40-byte pthread_mutex_t, entries, size, n_elements,
# free: 72) = 112 bytes, plus _ns_debug (struct r_debug_extended, 48) from
# glibc 2.35 (commit "elf: Add r_debug_extended", dlmopen debugging) until
# 2.42 moved it out: 160 bytes in 2.35 to 2.41, 112 in 2.42. Read from the
# glibc sources of each release; tested on 2.36 (Debian 12).
_NS_SIZE: Final = {**dict.fromkeys(((2, v) for v in range(35, 42)), 160), (2, 42): 112}
_DL_NNS: Final = 16
_MUTEX: Final = struct.Struct("<iIiIi")  # __lock, __count, __owner, __nusers, __kind
_MUTEX_SIZE: Final = 40
_RECURSIVE: Final = 1  # PTHREAD_MUTEX_RECURSIVE_NP: _RTLD_LOCK_RECURSIVE_INITIALIZER
_VERSION: Final = re.compile(rb"release version (\d+)\.(\d+)")


class LoadLock(NamedTuple):
    """Where glibc's ``_dl_load_lock`` (a recursive ``pthread_mutex_t`` in
    ``_rtld_global``) lives in the target, or why it is not checked.

    glibc holds it for the whole of ``dlopen`` and ``dlclose``
    (``_dl_open``/``_dl_close`` in elf/dl-open.c, elf/dl-close.c): mapping,
    relocation, RELRO protection, constructors. Its ``__owner`` is the id
    of the thread holding it, ``__lock`` is non-zero while it is taken
    (both are read: the owner is set just after the lock word, and cleared
    just before it). ``addr`` is 0 when the lock is not checked (a static
    program, an unknown glibc, a layout that does not validate); ``note``
    says what was found.
    """

    addr: int
    note: str

    def held_by(self, data: bytes) -> int | None:
        """The owner's thread id (-1 if taken with no owner yet) from the
        lock's first 20 bytes, or ``None`` if free."""
        lock, _count, owner, _nusers, _kind = _MUTEX.unpack_from(data)
        if lock == 0 and owner == 0:
            return None
        return owner or -1


def _gnu_hash(name: bytes) -> int:
    h = 5381
    for c in name:
        h = (h * 33 + c) & 0xFFFFFFFF
    return h


def _lookup(mem: Reader, base: int, lo: int, hi: int, dyn: dict[int, int], name: bytes) -> int:
    """The value of symbol ``name`` in the object at load bias ``base`` whose
    pages are ``[lo, hi)`` (DT_GNU_HASH lookup in the target's memory), or 0."""

    def ptr(value: int) -> int:
        # glibc rewrites d_ptr entries to absolute addresses in a writable
        # dynamic section (elf/get-dynamic-info.h); either form is accepted.
        addr = value if lo <= value < hi else base + value
        if not lo <= addr < hi:
            raise Unreadable(f"dynamic pointer {value:#x} outside the object")
        return addr

    if DT_GNU_HASH not in dyn or DT_SYMTAB not in dyn or DT_STRTAB not in dyn:
        return 0
    table, symtab, strtab = ptr(dyn[DT_GNU_HASH]), ptr(dyn[DT_SYMTAB]), ptr(dyn[DT_STRTAB])
    strsz = dyn.get(DT_STRSZ, 0)
    nbuckets, symoffset, bloom_size, _shift = struct.unpack("<IIII", mem.read(table, 16))
    if not 0 < nbuckets <= 1 << 16 or bloom_size > 1 << 16:
        raise Unreadable("implausible GNU hash table")
    h = _gnu_hash(name)
    buckets = table + 16 + 8 * bloom_size
    (index,) = struct.unpack("<I", mem.read(buckets + 4 * (h % nbuckets), 4))
    chain = buckets + 4 * nbuckets
    for _ in range(4096):
        if index < symoffset:
            return 0
        (value,) = struct.unpack("<I", mem.read(chain + 4 * (index - symoffset), 4))
        if (value | 1) == (h | 1):
            st_name, _info, _other, _shndx, st_value, _size = _SYM.unpack(
                mem.read(symtab + index * _SYM.size, _SYM.size)
            )
            if st_name < strsz and mem.read(strtab + st_name, len(name) + 1) == name + b"\0":
                return int(st_value)
        if value & 1:
            return 0
        index += 1
    raise Unreadable("GNU hash chain does not end")


def _glibc_version(mem: Reader, vmas: Sequence[Vma], interp: tuple[str, int]) -> tuple[int, int]:
    """glibc's version from the loader's read-only data ("... release version
    2.36."), or (0, 0)."""
    budget = 4 << 20
    for vma in vmas:
        if (vma.dev, vma.inode) != interp or vma.perms[:3] != "r--" or budget <= 0:
            continue
        size = min(vma.size, budget)
        budget -= size
        try:
            data = mem.read(vma.start, size)
        except Unreadable:
            continue
        found = _VERSION.search(data)
        if found:
            return int(found.group(1)), int(found.group(2))
    return 0, 0


def locate_load_lock(
    mem: Reader,
    ld: Node | None,
    vmas: Sequence[Vma],
    interp: tuple[str, int] | None,
    first_node: int,
) -> LoadLock:
    """Find ``_rtld_global._dl_load_lock`` in the target and validate the
    layout: ``_dl_ns[0]._ns_loaded`` is the loader list's head, ``_dl_nns``
    is between 1 and 16, and both this lock and the next one
    (``_dl_load_write_lock``) are recursive mutexes, as
    ``_RTLD_LOCK_RECURSIVE_INITIALIZER`` makes them."""
    if ld is None or interp is None:
        return LoadLock(0, "not checked: the dynamic loader's link_map entry was not found")
    version = _glibc_version(mem, vmas, interp)
    ns_size = _NS_SIZE.get(version)
    shown = f"glibc {version[0]}.{version[1]}" if version != (0, 0) else "an unknown loader"
    if ns_size is None:
        return LoadLock(0, f"not checked: {shown} (the layout is known for glibc 2.35 to 2.42)")
    try:
        starts = [v.start for v in vmas]
        mine = [v for v in vmas if (v.dev, v.inode) == interp]
        lo, hi = min(v.start for v in mine), max(v.end for v in mine)
        if vma_at(vmas, starts, ld.l_ld) is None:
            raise Unreadable("its dynamic section is not mapped")
        value = _lookup(mem, ld.l_addr, lo, hi, dynamic(mem, ld.l_ld), b"_rtld_global")
        if not value:
            return LoadLock(0, f"not checked: {shown} exports no _rtld_global")
        rtld = ld.l_addr + value
        offset = _DL_NNS * ns_size + 8
        (loaded,) = struct.unpack("<Q", mem.read(rtld, 8))
        (nns,) = struct.unpack("<Q", mem.read(rtld + offset - 8, 8))
        locks = mem.read(rtld + offset, 2 * _MUTEX_SIZE)
    except Unreadable as exc:
        return LoadLock(0, f"not checked: _rtld_global unreadable ({exc})")
    kinds = _MUTEX.unpack_from(locks)[4], _MUTEX.unpack_from(locks, _MUTEX_SIZE)[4]
    if loaded != first_node or not 1 <= nns <= _DL_NNS or kinds != (_RECURSIVE, _RECURSIVE):
        return LoadLock(0, f"not checked: _rtld_global of {shown} does not have the known layout")
    return LoadLock(rtld + offset, f"checked ({shown})")


# --- the loader ------------------------------------------------------------------------


class Loader:
    """The target's loader state: where ``r_debug`` is, and the objects."""

    def __init__(self, process: Process) -> None:
        self.process = process
        self.mem = Memory(process)
        self.aux = process.auxv()
        self.rdebug = 0
        self.static = False
        self.interp: tuple[str, int] | None = None  # (dev, inode) of ld.so
        self.lock = LoadLock(0, "not checked: a static program has no dynamic loader")
        self._lock_for: tuple[int, int] = (0, 0)
        self._cache: dict[tuple[int, int, int, int], ObjectInfo] = {}

    def locate(self, vmas: Sequence[Vma]) -> str:
        """Find ``r_debug`` (``""``) or say why not. Static programs have none."""
        phdr, phnum = self.aux.get(AT_PHDR, 0), self.aux.get(AT_PHNUM, 0)
        if not phdr or not 0 < phnum <= 256:
            return "no AT_PHDR in the auxiliary vector"
        try:
            blob = self.mem.read(phdr, phnum * _PHDR.size)
        except Unreadable as exc:
            return f"program headers unreadable: {exc}"
        phdrs = [
            Phdr(t, f, o, v, fs, ms, a) for t, f, o, v, _p, fs, ms, a in _PHDR.iter_unpack(blob)
        ]
        self_ph = next((p for p in phdrs if p.type == PT_PHDR), None)
        dyn_ph = next((p for p in phdrs if p.type == PT_DYNAMIC), None)
        interp = next((p for p in phdrs if p.type == PT_INTERP), None)
        if interp is None:
            self.static = True
            return ""
        base = self.aux.get(AT_BASE, 0)
        starts = [v.start for v in vmas]
        ld = vma_at(vmas, starts, base) if base else None
        if ld is not None and ld.inode:
            self.interp = (ld.dev, ld.inode)
        if dyn_ph is None or self_ph is None:
            return "the executable has no PT_DYNAMIC or PT_PHDR"
        bias = phdr - self_ph.vaddr
        try:
            dyn = dynamic(self.mem, bias + dyn_ph.vaddr)
        except Unreadable as exc:
            return f"dynamic section unreadable: {exc}"
        self.rdebug = dyn.get(DT_DEBUG, 0)
        if not self.rdebug:
            return "DT_DEBUG is not set (the loader has not started, or the executable has none)"
        return ""

    def walk(self) -> tuple[list[Namespace], list[Node]]:
        return walk_loader(self.mem, self.rdebug)

    def objects(self, nodes: Sequence[Node], vmas: Sequence[Vma]) -> list[ObjectInfo]:
        """One :class:`ObjectInfo` per node; cached by node identity (address,
        l_addr, l_name, l_ld), so a second walk reads only what changed."""
        starts = [v.start for v in vmas]
        out = []
        for node in nodes:
            key = (node.node, node.l_addr, node.l_name, node.l_ld)
            hit = self._cache.get(key)
            if hit is None:
                try:
                    name = cstr(self.mem, node.l_name) if node.l_name else ""
                except Unreadable as exc:
                    name = f"(unreadable name: {exc})"
                hit = read_object(self.mem, node, name, vmas, starts, self.aux)
                if not hit.problem:
                    self._cache[key] = hit
            out.append(hit)
        return out

    def load_lock(self, nodes: Sequence[Node], vmas: Sequence[Vma]) -> LoadLock:
        """The loader lock (located once per loader and list head)."""
        if self.static or not nodes:
            return self.lock
        starts = [v.start for v in vmas]
        ld = None
        if self.interp is not None:
            for node in nodes:
                vma = vma_at(vmas, starts, node.l_ld)
                if vma is not None and (vma.dev, vma.inode) == self.interp:
                    ld = node
                    break
        key = (nodes[0].node, ld.node if ld is not None else 0)
        if key != self._lock_for:
            self.lock = locate_load_lock(self.mem, ld, vmas, self.interp, nodes[0].node)
            self._lock_for = key
        return self.lock

    def static_objects(self) -> list[ObjectInfo]:
        """A static executable: itself (from AT_PHDR), no loader list."""
        phdr, phnum = self.aux[AT_PHDR], self.aux[AT_PHNUM]
        blob = self.mem.read(phdr, phnum * _PHDR.size)
        phdrs = tuple(
            Phdr(t, f, o, v, fs, ms, a) for t, f, o, v, _p, fs, ms, a in _PHDR.iter_unpack(blob)
        )
        self_ph = next((p for p in phdrs if p.type == PT_PHDR), None)
        bias = phdr - self_ph.vaddr if self_ph is not None else 0
        return [ObjectInfo("", LoadedObject(bias, "", phdrs), "")]


def find_syscall_insn(mem: Reader, vmas: Sequence[Vma], interp: tuple[str, int] | None) -> int:
    """The address of a ``syscall`` instruction (0f 05) in the target's
    executable text: its vDSO, else its loader's text; 0 if none. Only that
    one instruction is ever executed there.

    Raises :class:`Unreadable` when there were such texts and none could be
    read: an address space being replaced by ``execve`` reads as nothing
    for a while, which says nothing about the program that comes next."""
    candidates = [v for v in vmas if v.path == "[vdso]" and v.perms.startswith("r-x")]
    if interp is not None:
        candidates += [v for v in vmas if (v.dev, v.inode) == interp and v.perms[:3] == "r-x"]
    failed: list[str] = []
    for vma in candidates:
        size = min(vma.size, 1 << 20)
        try:
            text = mem.read(vma.start, size)
        except Unreadable as exc:
            failed.append(str(exc))
            continue
        at = text.find(b"\x0f\x05")
        if at >= 0:
            return vma.start + at
    if candidates and len(failed) == len(candidates):
        raise Unreadable(f"no text to look in could be read ({failed[0]})")
    return 0

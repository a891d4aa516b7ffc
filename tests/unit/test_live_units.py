"""Pure parts of live sealing: the seccomp BPF evaluator, wait-status decoding,
call merging, coverage, the maps filter, the loader walk and the loader-lock
lookup on made-up memory (bounded on loops and garbage), text relocations,
the report and its JSON schema, argument checks."""

from __future__ import annotations

import importlib
import json
import os
import struct
from pathlib import Path

import jsonschema
import pytest

import sealkit
from sealkit._os import ptrace, syscalls
from sealkit._os.procfs import Vma
from sealkit.errors import ArgumentError, ArgumentTypeError, TargetRefusedError
from sealkit.sealing.hardening.report import ObjectReport, SealedRange, SkippedRange
from sealkit.sealing.live import LiveReport, MsealCall, _bpf, plan, seal_process, target

# --- BPF --------------------------------------------------------------------------------

LD_ABS, JEQ, JGT, RET_K, RET_A = 0x20, 0x15, 0x25, 0x06, 0x16
ALLOW, KILL, ERRNO = _bpf.RET_ALLOW, _bpf.RET_KILL_PROCESS, _bpf.RET_ERRNO


def data(nr: int, args: tuple[int, ...] = (0,) * 6, arch: int = _bpf.AUDIT_ARCH_X86_64) -> bytes:
    return _bpf.seccomp_data(nr, arch, 0x1000, args)


def deny(nr: int, action: int) -> list[tuple[int, int, int, int]]:
    return [(LD_ABS, 0, 0, 0), (JEQ, 0, 1, nr), (RET_K, 0, 0, action), (RET_K, 0, 0, ALLOW)]


def test_bpf_answers_per_system_call() -> None:
    program = deny(462, KILL)
    assert _bpf.run(program, data(462)).ret == KILL
    assert _bpf.run(program, data(39)).ret == ALLOW
    assert not _bpf.run(program, data(462)).depends_on_call_site


def test_bpf_argument_filters_are_marked_call_site_dependent() -> None:
    # args[1] (the length) above 1 MiB -> kill; offset 24 is args[1]'s low word
    program = [
        (LD_ABS, 0, 0, 0), (JEQ, 0, 3, 462), (LD_ABS, 0, 0, 24), (JGT, 0, 1, 1 << 20),
        (RET_K, 0, 0, KILL), (RET_K, 0, 0, ALLOW),
    ]  # fmt: skip
    small = _bpf.run(program, data(462, (0x1000, 4096, 0, 0, 0, 0)))
    big = _bpf.run(program, data(462, (0x1000, 8 << 20, 0, 0, 0, 0)))
    assert (small.ret, big.ret) == (ALLOW, KILL)
    assert small.depends_on_call_site and 24 in small.offsets


def test_bpf_precedence_is_the_kernels() -> None:
    assert _bpf.combine([ALLOW, ERRNO | 1, _bpf.RET_LOG]) == ERRNO | 1
    assert _bpf.combine([ERRNO | 1, KILL]) == KILL  # KILL_PROCESS outranks everything
    assert _bpf.combine([_bpf.RET_KILL_THREAD, ERRNO | 1]) == _bpf.RET_KILL_THREAD
    assert _bpf.combine([_bpf.RET_TRACE | 5, _bpf.RET_USER_NOTIF]) == _bpf.RET_USER_NOTIF
    assert _bpf.action_name(ERRNO | 1) == "ERRNO(1)" and _bpf.action_name(KILL) == "KILL_PROCESS"


def test_bpf_alu_memory_and_misc() -> None:
    # A = nr; A += 10; M[3] = A; X = 5; A = X; A = M[3] via LDX/TXA; ret A
    program = [
        (LD_ABS, 0, 0, 0), (0x04, 0, 0, 10), (0x02, 0, 0, 3), (0x01, 0, 0, 5), (0x87, 0, 0, 0),
        (0x61, 0, 0, 3), (0x87, 0, 0, 0), (RET_A, 0, 0, 0),
    ]  # fmt: skip
    assert _bpf.run(program, data(452)).ret == 462
    division_by_zero = [(0x01, 0, 0, 0), (0x3C, 0, 0, 0), (RET_K, 0, 0, ALLOW)]  # X=0; A/=X
    assert _bpf.run(division_by_zero, data(1)).ret == 0  # the kernel's answer: 0, KILL_THREAD


@pytest.mark.parametrize(
    "program",
    [
        [(LD_ABS, 0, 0, 2), (RET_K, 0, 0, ALLOW)],  # unaligned load
        [(LD_ABS, 0, 0, 64), (RET_K, 0, 0, ALLOW)],  # past seccomp_data
        [(0x28, 0, 0, 0), (RET_K, 0, 0, ALLOW)],  # LD H ABS: not allowed
        [(LD_ABS, 0, 0, 0)],  # runs off the end
        [],
    ],
)
def test_bpf_rejects_what_the_kernel_rejects(program: list[tuple[int, int, int, int]]) -> None:
    with pytest.raises(_bpf.BpfError):
        _bpf.run(program, data(462))


def test_seccomp_data_layout() -> None:
    raw = _bpf.seccomp_data(462, _bpf.AUDIT_ARCH_X86_64, 0x7F00, (1, 2, 3, 4, 5, -1))
    nr, arch, ip, *args = struct.unpack("<iIQ6Q", raw)
    assert (nr, arch, ip, args) == (462, 0xC000003E, 0x7F00, [1, 2, 3, 4, 5, (1 << 64) - 1])


# --- wait statuses ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("status", "kind", "sig"),
    [
        (0x0000, "exited", 0),
        (0x0009, "exited", 9),  # killed by SIGKILL
        ((ptrace.EVENT_STOP << 16) | (5 << 8) | 0x7F, "event-stop", 5),
        ((ptrace.EVENT_STOP << 16) | (19 << 8) | 0x7F, "event-stop", 19),
        ((ptrace.EVENT_CLONE << 16) | (5 << 8) | 0x7F, "clone", 5),
        (((5 | 0x80) << 8) | 0x7F, "syscall", 5),
        ((10 << 8) | 0x7F, "signal", 10),
        ((5 << 8) | 0x7F, "signal", 5),
    ],
)
def test_wait_status_decoding(status: int, kind: str, sig: int) -> None:
    stop = ptrace.decode(7, status)
    assert (stop.kind, stop.sig) == (kind, sig)
    assert stop.group_stop == (kind == "event-stop" and sig == 19)


def test_regs_layout_is_user_regs_struct() -> None:
    assert ptrace.Regs.__name__ and len(ptrace.Regs._fields_) == 27
    regs = ptrace.Regs()
    regs.orig_rax = (1 << 64) - 1
    assert bytes(regs)[15 * 8 : 16 * 8] == b"\xff" * 8  # orig_rax is the 16th word
    assert regs.copy().as_tuple() == regs.as_tuple()


# --- planning helpers -----------------------------------------------------------------------


def report(*ranges: tuple[int, int, bool]) -> ObjectReport:
    return ObjectReport(
        "/lib/x.so", "x", 0,
        tuple(SealedRange(lo, hi, "text", "r-x", already) for lo, hi, already in ranges), (),
    )  # fmt: skip


def test_calls_merge_adjacent_ranges_and_skip_what_is_sealed() -> None:
    calls = plan.merge_calls(
        [
            report((0x1000, 0x2000, False), (0x2000, 0x5000, True)),
            report((0x5000, 0x6000, False), (0x8000, 0x9000, True), (0xA000, 0xB000, False)),
        ]
    )
    assert [(c.start, c.end) for c in calls] == [(0x1000, 0x6000), (0xA000, 0xB000)]


def test_covered() -> None:
    spans = [(0, 10), (10, 20), (30, 40)]
    assert plan.covered(spans, 0, 20) == 20
    assert plan.covered(spans, 5, 35) == 20
    assert plan.covered(spans, 25, 30) == 25
    assert plan.covered([], 1, 2) == 1


def test_layout_lines_picks_the_lines_that_matter() -> None:
    raw = (
        b"1000-2000 r-xp 00000000 fe:00 1 /a\n"
        b"2000-3000 rw-p 00000000 00:00 0 \n"
        b"5000-6000 r--p 00001000 fe:00 1 /a\n"
    )
    assert plan.layout_lines(raw, [(0x1800, 0x2000), (0x5FFF, 0x7000)]) == [
        raw.splitlines()[0],
        raw.splitlines()[2],
    ]


def test_verify_reports_missing_and_unexpected_seals() -> None:
    def vma(lo: int, hi: int, sealed: bool) -> Vma:
        return Vma(lo, hi, "r-xp", 0, "fe:00", 1, "/a", frozenset({"sl"} if sealed else set()))

    calls = [MsealCall(0x1000, 0x3000, 0)]
    assert plan.verify(calls, [], [vma(0x1000, 0x3000, True)]) == []
    assert plan.verify(calls, [], [vma(0x1000, 0x2000, True)])[0].startswith("0x2000")
    extra = plan.verify(calls, [], [vma(0x1000, 0x3000, True), vma(0x9000, 0xA000, True)])
    assert "neither sealed before nor planned" in extra[0]
    before = [vma(0x9000, 0xA000, True)]  # sealed by the target itself, earlier: fine
    assert plan.verify(calls, before, [vma(0x1000, 0x3000, True), *before]) == []


# --- the loader walk on made-up memory ---------------------------------------------------


class FakeMem:
    def __init__(self, blobs: dict[int, bytes]) -> None:
        self.blobs = blobs

    def read(self, addr: int, size: int) -> bytes:
        for base, blob in self.blobs.items():
            if base <= addr and addr + size <= base + len(blob):
                return blob[addr - base : addr - base + size]
        raise target.Unreadable(f"{addr:#x}")


def rdebug(r_map: int, state: int = 0, version: int = 1, r_next: int = 0) -> bytes:
    return struct.pack("<i4xQQi4xQQ", version, r_map, 0, state, 0, r_next)


def node(l_next: int, l_addr: int = 0x7000) -> bytes:
    return struct.pack("<QQQQQ", l_addr, 0, 0x7100, l_next, 0)


def test_walk_follows_the_list_and_namespaces() -> None:
    mem = FakeMem(
        {
            0x100: rdebug(0x200, version=2, r_next=0x400),
            0x200: node(0x300),
            0x300: node(0),
            0x400: rdebug(0x500, state=1, version=2),
            0x500: node(0),
        }
    )
    namespaces, nodes = target.walk_loader(mem, 0x100)
    assert [(n.addr, n.state) for n in namespaces] == [(0x100, 0), (0x400, 1)]
    assert [n.node for n in nodes] == [0x200, 0x300, 0x500]


def test_walk_refuses_a_loop() -> None:
    mem = FakeMem({0x100: rdebug(0x200), 0x200: node(0x300), 0x300: node(0x200)})
    with pytest.raises(target.Unreadable, match="loops"):
        target.walk_loader(mem, 0x100)


def test_dynamic_section_without_end_is_bounded() -> None:
    mem = FakeMem({0x1000: struct.pack("<qQ", 5, 1) * 4096})
    with pytest.raises(target.Unreadable, match="no end"):
        target.dynamic(mem, 0x1000)
    ok = FakeMem({0x1000: struct.pack("<qQqQqQ", 22, 0, 21, 0xBEEF, 0, 0) + bytes(64 * 16)})
    assert target.dynamic(ok, 0x1000) == {22: 0, 21: 0xBEEF}


# --- text relocations ------------------------------------------------------------------------

DYN = struct.Struct("<qQ")


@pytest.mark.parametrize(
    ("entries", "textrel"),
    [
        ([(22, 0), (0, 0)], True),  # DT_TEXTREL
        ([(5, 1), (30, 0x4), (0, 0)], True),  # DT_FLAGS with DF_TEXTREL
        ([(5, 1), (30, 0x8), (0, 0)], False),  # DT_FLAGS with DF_BIND_NOW only
        ([(5, 22), (6, 30), (0, 0)], False),  # the numbers as values, not tags
        ([(0, 0), (22, 0)], False),  # after DT_NULL: not part of the section
        ([(30, 0x8), (30, 0x4)], True),  # every DT_FLAGS entry counts
        ([], False),
    ],
)
def test_dynamic_has_textrel(entries: list[tuple[int, int]], textrel: bool) -> None:
    data = b"".join(DYN.pack(t, v) for t, v in entries)
    assert syscalls.dynamic_has_textrel(data) is textrel
    assert syscalls.dynamic_has_textrel(data + b"\x16\x00\x00") is textrel  # a torn tail


# --- the loader lock, on made-up memory ------------------------------------------------------


def gnu_hash_object(symbols: dict[bytes, int]) -> tuple[dict[int, bytes], dict[int, int]]:
    """A made-up object at 0x10000 with a DT_GNU_HASH table of one bucket:
    (memory blobs, dynamic tags as the loader leaves them: relative)."""
    names = list(symbols)
    strtab = b"\0" + b"".join(n + b"\0" for n in names)
    offsets = [1 + sum(len(n) + 1 for n in names[:i]) for i in range(len(names))]
    syms = bytes(24) + b"".join(
        struct.pack("<IBBHQQ", off, 0x11, 0, 1, symbols[n], 8)
        for n, off in zip(names, offsets, strict=True)
    )
    hashes = [target._gnu_hash(n) for n in names]
    chain = [h & ~1 for h in hashes]
    chain[-1] |= 1
    table = struct.pack("<IIII", 1, 1, 1, 0) + bytes(8) + struct.pack("<I", 1)
    table += b"".join(struct.pack("<I", c) for c in chain)
    base = 0x10000
    blobs = {base + 0x100: table, base + 0x400: syms, base + 0x800: strtab}
    dyn = {target.DT_GNU_HASH: 0x100, target.DT_SYMTAB: 0x400, target.DT_STRTAB: 0x800,
           target.DT_STRSZ: len(strtab)}  # fmt: skip
    return blobs, dyn


def test_gnu_hash_lookup_finds_symbols_and_only_them() -> None:
    blobs, dyn = gnu_hash_object({b"_r_debug": 0x2000, b"_rtld_global": 0x3000})
    mem = FakeMem(blobs)
    lo, hi = 0x10000, 0x20000
    assert target._lookup(mem, lo, lo, hi, dyn, b"_rtld_global") == 0x3000
    assert target._lookup(mem, lo, lo, hi, dyn, b"_r_debug") == 0x2000
    assert target._lookup(mem, lo, lo, hi, dyn, b"_rtld_global_ro") == 0
    absolute = {k: (v + lo if k != target.DT_STRSZ else v) for k, v in dyn.items()}
    assert target._lookup(mem, lo, lo, hi, absolute, b"_rtld_global") == 0x3000  # either form
    with pytest.raises(target.Unreadable, match="outside the object"):
        target._lookup(mem, lo, lo, lo + 0x200, dyn, b"_rtld_global")


def test_load_lock_owner() -> None:
    lock = target.LoadLock(0x1000, "checked")
    free = struct.pack("<iIiIi", 0, 0, 0, 0, 1)
    assert lock.held_by(free) is None
    assert lock.held_by(struct.pack("<iIiIi", 1, 1, 4242, 0, 1)) == 4242
    assert lock.held_by(struct.pack("<iIiIi", 1, 0, 0, 0, 1)) == -1  # taken, owner not yet set
    assert lock.held_by(struct.pack("<iIiIi", 0, 0, 4242, 0, 1)) == 4242  # owner set, word not yet


def test_load_lock_layout_must_validate() -> None:
    """An unknown glibc, or a layout whose fields do not look like glibc
    2.36's, means "not checked" (and says so), never a guess."""
    vmas = [Vma(0x10000, 0x20000, "r--p", 0, "fe:00", 7, "/lib/ld.so", None)]
    node = target.Node(0x9000, 0x10000, 0, 0x10000)
    assert "not found" in target.locate_load_lock(FakeMem({}), None, vmas, None, 0x9000).note
    text = b"ld.so (GNU libc) stable release version 2.99.\0"
    unknown = FakeMem({0x10000: text + bytes(0x10000 - len(text))})
    note = target.locate_load_lock(unknown, node, vmas, ("fe:00", 7), 0x9000).note
    assert note == "not checked: glibc 2.99 (the layout is known for glibc 2.35 to 2.42)"


# --- the report and its schema ------------------------------------------------------------------

SCHEMA = json.loads((Path(sealkit.__file__).parent / "data" / "seal.schema.json").read_text())


def test_report_summary_json_and_text() -> None:
    objects = (
        ObjectReport("/lib/libc.so.6", "libc.so.6", 0x7F0000000000,
                     (SealedRange(0x7F0000000000, 0x7F0000002000, "text", "r-x"),),
                     (SkippedRange(0x7F0000002000, 0x7F0000003000, "data", "not code"),)),
    )  # fmt: skip
    report = LiveReport(
        42, "svc\x1b[31m", "code", False, False, objects,
        (MsealCall(0x7F0000000000, 0x7F0000002000, 0),), 3, (0.0021,), ("busy",), True, (),
        "RT_CONSISTENT", "checked (glibc 2.36)", 0.01, (("attach", 0.001),),
    )  # fmt: skip
    assert report.ok and report.newly_sealed_bytes == 0x2000
    line = report.summary()
    assert line.startswith("pid 42 (svc\\x1b[31m): level=code: sealed 8.0 KiB in 1 ranges")
    assert "1 mseal calls, 3 threads stopped 2.10 ms (after 1 retries" in line
    assert "\x1b" not in str(report)  # the target's name cannot drive the terminal
    doc = {"schema": "sealkit.seal/1", "processes": [report.as_dict()], "refused": []}
    jsonschema.validate(doc, SCHEMA)
    failed = report._replace(calls=(MsealCall(0x7F0000000000, 0x7F0000002000, -1),))
    assert not failed.ok
    moved = plan.apply_results(objects, failed.calls)
    assert moved[0].sealed == () and "EPERM" in moved[0].skipped[-1].reason


@pytest.mark.parametrize(
    ("kwargs", "error"),
    [
        ({"pid": True}, ArgumentTypeError),
        ({"pid": "1"}, ArgumentTypeError),
        ({"pid": 0}, ArgumentError),
        ({"pid": 1, "level": "everything"}, ArgumentError),
        ({"pid": 1, "level": 3}, ArgumentTypeError),
        ({"pid": 1, "system": 1}, ArgumentTypeError),
        ({"pid": 1, "timeout": 0}, ArgumentError),
        ({"pid": 1, "timeout": float("nan")}, ArgumentError),
        ({"pid": 1, "timeout": 1e9}, ArgumentError),
        ({"pid": 1, "timeout": "5"}, ArgumentTypeError),
    ],
)
def test_bad_arguments_are_refused_before_anything_happens(
    kwargs: dict[str, object], error: type[Exception]
) -> None:
    with pytest.raises(error):
        seal_process(**kwargs)  # type: ignore[arg-type]


@pytest.mark.parametrize("held", [True, False])
def test_an_unreadable_exe_names_cap_sys_ptrace_only_when_it_is_missing(
    held: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Root got "needs CAP_SYS_PTRACE" for a process refused even to root
    # (this machine's pid 1), where the audit says "refused even to root".
    pre = importlib.import_module(
        "sealkit.sealing.live.preflight"
    )  # the package exports a function of that name

    class Unreadable:
        pid = os.getppid()

        def status(self) -> dict[str, str]:
            me = str(os.geteuid())
            return {"State": "S (sleeping)", "VmSize": "1 kB", "Uid": " ".join([me] * 4)}

        def exe_head(self) -> bytes:
            raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(pre, "kernel_lacks_mseal", lambda: "")
    monkeypatch.setattr(pre, "ptrace_scope", lambda: None)
    monkeypatch.setattr(pre, "_caps", lambda: (1 << 19) if held else 0)
    with pytest.raises(TargetRefusedError) as info:
        pre.preflight(Unreadable(), dry_run=True)  # type: ignore[arg-type]
    text = str(info.value)
    assert "\n" not in text and "ptrace access refused" in text
    assert ("needs CAP_SYS_PTRACE" in text) is not held
    assert ("refused even with CAP_SYS_PTRACE" in text) is held


class _Texts:
    """A target's memory as ``find_syscall_insn`` reads it: given texts, or
    unreadable where none is given."""

    def __init__(self, texts: dict[int, bytes]) -> None:
        self.texts = texts
        self.asked: list[int] = []

    def read(self, addr: int, size: int) -> bytes:
        self.asked.append(addr)
        if addr not in self.texts:
            raise target.Unreadable(f"{addr:#x}: short read")
        return self.texts[addr][:size]


_VDSO = Vma(0x7000, 0x9000, "r-xp", 0, "00:00", 0, "[vdso]")
_LD_TEXT = Vma(0x1000, 0x3000, "r-xp", 0x1000, "08:01", 42, "/lib64/ld-linux-x86-64.so.2")


def test_a_text_read_as_nothing_is_not_a_missing_instruction() -> None:
    # A process in the middle of execve reads as nothing for a while: that
    # was answered "no-loader" (the program has no syscall instruction), a
    # refusal, where the next plan would find the new image's instruction.
    with pytest.raises(target.Unreadable, match="no text to look in could be read"):
        target.find_syscall_insn(_Texts({}), [_VDSO, _LD_TEXT], ("08:01", 42))
    # One readable text is enough: its instruction, or an honest "none".
    found = _Texts({0x1000: b"\x90" * 7 + b"\x0f\x05"})
    assert target.find_syscall_insn(found, [_VDSO, _LD_TEXT], ("08:01", 42)) == 0x1007
    assert found.asked == [0x7000, 0x1000]
    plain = _Texts({0x7000: b"\x90" * 64})
    assert target.find_syscall_insn(plain, [_VDSO], None) == 0
    assert target.find_syscall_insn(_Texts({}), [], None) == 0

"""Run a seccomp classic-BPF program on one system call, as the kernel would.

Pure (no I/O). Live sealing reads the target's filters with
``PTRACE_SECCOMP_GET_FILTER`` and asks, before it makes the target call
``mseal``, what each filter answers for exactly that call. A filter that
would kill, trap, trace, notify or fail the call means: refuse. The subset of
classic BPF is the one seccomp accepts (kernel/seccomp.c
``seccomp_check_filter``): 32-bit absolute loads from ``struct seccomp_data``,
``LEN`` loads, immediate and scratch-memory loads and stores, ALU, jumps and
returns. Anything else is rejected here as the kernel would reject it.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Final, NamedTuple

__all__ = [
    "AUDIT_ARCH_X86_64",
    "RET_ALLOW",
    "RET_LOG",
    "BpfError",
    "Verdict",
    "action_name",
    "combine",
    "run",
]

AUDIT_ARCH_X86_64: Final = 0xC000003E
SECCOMP_DATA_SIZE: Final = 64  # nr, arch, instruction_pointer, args[6]

RET_KILL_PROCESS: Final = 0x80000000
RET_KILL_THREAD: Final = 0x00000000
RET_TRAP: Final = 0x00030000
RET_ERRNO: Final = 0x00050000
RET_USER_NOTIF: Final = 0x7FC00000
RET_TRACE: Final = 0x7FF00000
RET_LOG: Final = 0x7FFC0000
RET_ALLOW: Final = 0x7FFF0000
_ACTION_FULL: Final = 0xFFFF0000

_ACTIONS: Final = {
    RET_KILL_PROCESS: "KILL_PROCESS",
    RET_KILL_THREAD: "KILL_THREAD",
    RET_TRAP: "TRAP",
    RET_ERRNO: "ERRNO",
    RET_USER_NOTIF: "USER_NOTIF",
    RET_TRACE: "TRACE",
    RET_LOG: "LOG",
    RET_ALLOW: "ALLOW",
}

_M32: Final = 0xFFFFFFFF
_MAX_STEPS: Final = 4096  # BPF_MAXINSNS; jumps only go forward, so this bounds a run


class BpfError(ValueError):
    """A program the kernel would not have accepted (or would not run)."""


class Verdict(NamedTuple):
    """What a program returned, and which ``seccomp_data`` offsets it read."""

    ret: int
    offsets: frozenset[int]

    @property
    def depends_on_call_site(self) -> bool:
        """True when the answer used the instruction pointer or an argument
        (offsets 8 and up), so it may differ for other arguments."""
        return any(off >= 8 for off in self.offsets)


def action_name(ret: int) -> str:
    """``"ERRNO(1)"``, ``"KILL_PROCESS"``, ``"ALLOW"``..."""
    action = ret & _ACTION_FULL
    name = _ACTIONS.get(action, f"{action:#x}")
    if action in (RET_ERRNO, RET_TRACE, RET_TRAP):
        return f"{name}({ret & 0xFFFF})"
    return name


def _signed(action: int) -> int:
    return action - (1 << 32) if action & 0x80000000 else action


def combine(rets: Sequence[int]) -> int:
    """The effective answer of several filters: the kernel keeps the one whose
    action, read as a signed 32-bit number, is lowest (seccomp_run_filters)."""
    best = RET_ALLOW
    for ret in rets:
        if _signed(ret & _ACTION_FULL) < _signed(best & _ACTION_FULL):
            best = ret
    return best


def seccomp_data(nr: int, arch: int, ip: int, args: Sequence[int]) -> bytes:
    """``struct seccomp_data`` for one call (little-endian, x86_64)."""
    if len(args) != 6:
        raise ValueError("seccomp_data takes exactly 6 arguments")
    out = nr.to_bytes(4, "little", signed=nr < 0) + arch.to_bytes(4, "little")
    out += (ip & (1 << 64) - 1).to_bytes(8, "little")
    for a in args:
        out += (a & (1 << 64) - 1).to_bytes(8, "little")
    return out


def run(program: Sequence[tuple[int, int, int, int]], data: bytes) -> Verdict:
    """Run ``program`` (``(code, jt, jf, k)`` rows) on ``data`` (64 bytes)."""
    if not 0 < len(program) <= 4096:
        raise BpfError(f"a program of {len(program)} instructions")
    if len(data) != SECCOMP_DATA_SIZE:
        raise BpfError("seccomp_data must be 64 bytes")
    a = x = 0
    mem = [0] * 16
    offsets: set[int] = set()
    pc = 0
    for _ in range(_MAX_STEPS):
        if pc >= len(program):
            raise BpfError("ran off the end of the program")
        code, jt, jf, k = program[pc]
        pc += 1
        cls = code & 0x07
        if cls in {0, 1}:  # LD / LDX
            mode, size = code & 0xE0, code & 0x18
            if mode == 0x20 and cls == 0x00 and size == 0x00:  # LD W ABS
                if k & 3 or k >= SECCOMP_DATA_SIZE:
                    raise BpfError(f"load at offset {k}")
                offsets.add(k)
                value = int.from_bytes(data[k : k + 4], "little")
            elif mode == 0x80 and size == 0x00:  # LEN
                value = SECCOMP_DATA_SIZE
            elif mode == 0x00:  # IMM
                value = k & _M32
            elif mode == 0x60:  # MEM
                if k >= 16:
                    raise BpfError(f"scratch slot {k}")
                value = mem[k]
            else:
                raise BpfError(f"load mode {code:#x} not allowed in seccomp")
            if cls == 0x00:
                a = value
            else:
                x = value
        elif cls in {2, 3}:  # ST / STX
            if k >= 16:
                raise BpfError(f"scratch slot {k}")
            mem[k] = a if cls == 0x02 else x
        elif cls == 0x04:  # ALU
            op = code & 0xF0
            operand = x if code & 0x08 else k & _M32
            if op == 0x00:
                a = (a + operand) & _M32
            elif op == 0x10:
                a = (a - operand) & _M32
            elif op == 0x20:
                a = (a * operand) & _M32
            elif op == 0x30:
                if operand == 0:
                    return Verdict(0, frozenset(offsets))  # the kernel returns 0: KILL
                a = a // operand
            elif op == 0x90:
                if operand == 0:
                    return Verdict(0, frozenset(offsets))
                a = a % operand
            elif op == 0x40:
                a |= operand
            elif op == 0x50:
                a &= operand
            elif op == 0xA0:
                a ^= operand
            elif op == 0x60:
                a = (a << operand) & _M32 if operand < 32 else 0
            elif op == 0x70:
                a = a >> operand if operand < 32 else 0
            elif op == 0x80:
                a = (-a) & _M32
            else:
                raise BpfError(f"ALU op {code:#x}")
        elif cls == 0x05:  # JMP
            op = code & 0xF0
            if op == 0x00:
                pc += k
                continue
            operand = x if code & 0x08 else k & _M32
            if op == 0x10:
                taken = a == operand
            elif op == 0x20:
                taken = a > operand
            elif op == 0x30:
                taken = a >= operand
            elif op == 0x40:
                taken = bool(a & operand)
            else:
                raise BpfError(f"jump op {code:#x}")
            pc += jt if taken else jf
        elif cls == 0x06:  # RET
            src = code & 0x18
            ret = a if src == 0x10 else x if src == 0x08 else k
            return Verdict(ret & _M32, frozenset(offsets))
        elif code & 0xF8 == 0x00:
            x = a
        elif code & 0xF8 == 0x80:
            a = x
        else:
            raise BpfError(f"misc op {code:#x}")
    raise BpfError("program did not return")

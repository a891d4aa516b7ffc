"""The op language: text form round-trips exactly (Hypothesis), reprs are Python."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from sealkit import ops
from sealkit.errors import ParseError
from sealkit.flags import Madv, MapFlag, MremapFlag, Prot, SealV1, SealV3, SplitSeal
from sealkit.ops import (
    ELSEWHERE,
    MODEL_BASES,
    Bases,
    Step,
    format_trace,
    parse_trace,
    rebase,
)

U64 = (1 << 64) - 1
B = MODEL_BASES

page = st.integers(-8, 64)
zone_addr = st.builds(
    lambda zone, p, off: (B.base(zone) + p * 4096 + off) & U64,
    st.sampled_from("ph"),
    page,
    st.sampled_from([0, 0, 0, 1, 100, 2048, 4095]),
)
far_addr = st.sampled_from([0, 0x1000, 0xFFFFFFFFFFFFF000, 0xFFFF800000000000, 0x7FFFFFFFF000])
addr = st.one_of(zone_addr, zone_addr, far_addr)
length = st.one_of(
    st.builds(
        lambda p, r: p * 4096 + r, st.integers(0, 300), st.sampled_from([0, 0, 1, 4095, 100])
    ),
    st.sampled_from([U64, U64 - 4094, U64 - 4095, 1 << 47, 1 << 62]),
)
prot = st.builds(Prot, st.sampled_from([0, 1, 2, 3, 4, 5, 7, 0x1000001, 0x8]))
mapflags = st.builds(
    MapFlag, st.integers(0, 0x3FFFFF) | st.sampled_from([0x22, 0x12, 0x32, 0x8000022])
)
advice = st.sampled_from(list(Madv)) | st.integers(0, 20000)
tag = st.none() | st.sampled_from("abcvz")


def _advice(v: int) -> int:
    try:
        return Madv(v)
    except ValueError:
        return v


op_strategy = st.one_of(
    st.builds(
        ops.Mmap,
        addr,
        length,
        prot,
        mapflags,
        st.none() | st.sampled_from(["f1", "f2"]),
        st.sampled_from([0, 4096, 8192]),
        st.booleans(),
    ).map(
        lambda o: (
            o if o.file else ops.Mmap(o.addr, o.length, o.prot, o.flags, None, o.offset, False)
        )
    ),
    st.builds(ops.Munmap, addr, length),
    st.builds(ops.Mprotect, addr, length, prot),
    st.builds(ops.PkeyMprotect, addr, length, prot, st.integers(-1, 15)),
    st.builds(ops.Mremap, addr, length, length, st.builds(MremapFlag, st.integers(0, 7)), addr),
    st.builds(ops.Madvise, addr, length, advice.map(_advice)),
    st.builds(
        ops.ProcessMadvise,
        advice.map(_advice),
        st.lists(st.tuples(addr, length), max_size=3).map(tuple),
    ),
    st.builds(ops.Mseal, addr, length, st.sampled_from([0, 0, 1, U64])),
    st.builds(
        ops.MsealV1, addr, length, st.builds(SealV1, st.integers(0, 0x3F)), st.sampled_from([0, 2])
    ),
    st.builds(ops.MsealV3, addr, length, st.builds(SealV3, st.integers(0, 0x1F))),
    st.builds(ops.Mimmutable, addr, length),
    st.builds(ops.MsealSplit, addr, length, st.builds(SplitSeal, st.integers(0, 3))),
    st.builds(ops.Brk, addr),
    st.builds(ops.Mlock, addr, length, st.booleans()),
    st.builds(ops.Munlock, addr, length),
    st.builds(ops.Write, addr, length, tag),
    st.just(ops.Fork()),
)


def _result(op: ops.Op, draw_value: int) -> int:
    return draw_value


results = st.one_of(
    st.none(),
    st.sampled_from([0, -1, -12, -22, -17, -14, ELSEWHERE]),
    zone_addr,
    st.integers(0, 1 << 20),
)


@given(st.lists(st.tuples(op_strategy, results), max_size=12))
def test_trace_text_round_trips(pairs: list[tuple[ops.Op, int | None]]) -> None:
    steps = []
    for op, result in pairs:
        if result is not None and result >= 0 and result != ELSEWHERE:
            if op.RETURNS_ADDRESS and B.zone_of(result) is None:
                result = 0
            if isinstance(op, ops.ProcessMadvise):
                result = result % (1 << 40)
            elif not op.RETURNS_ADDRESS:
                result = result % (1 << 20)
        steps.append(Step(op, result))
    text = format_trace(steps)
    again = parse_trace(text)
    assert again == steps
    assert format_trace(again) == text


@given(op_strategy)
def test_repr_is_python(op: ops.Op) -> None:
    namespace = {
        **{t.__name__: t for t in ops.OP_TYPES},
        "Prot": Prot, "MapFlag": MapFlag, "MremapFlag": MremapFlag, "Madv": Madv,
        "SealV1": SealV1, "SealV3": SealV3, "SplitSeal": SplitSeal,
    }  # fmt: skip
    assert eval(repr(op), namespace) == op


@given(op_strategy)
def test_rebase_moves_only_zone_addresses(op: ops.Op) -> None:
    other = Bases(arena=0x7F12_3456_0000, heap=0x5600_0000_0000)
    moved = rebase(op, B, other)
    assert rebase(moved, other, B) == op
    assert ops.format_op(moved, other) == ops.format_op(op, B)


def test_example_from_design() -> None:
    text = (
        "mmap     p0 4p r-- private|anon|fixed            = p0\n"
        "mseal    p1 2p                                   = 0\n"
        "munmap   p0 4p                                   = EPERM\n"
    )
    steps = parse_trace(text)
    assert steps[0].op == ops.Mmap(
        B.arena, 4 * 4096, Prot.READ, MapFlag.PRIVATE | MapFlag.ANONYMOUS | MapFlag.FIXED
    )
    assert steps[1].op == ops.Mseal(B.arena + 4096, 8192)
    assert steps[2].result == -1
    assert format_trace(steps) == text


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ("mmap p0 4p", "expected: mmap"),
        ("frobnicate p0", "unknown call"),
        ("munmap q0 4p", "expected an address"),
        ("mprotect p0 4p rwz", "expected a protection"),
        ("madvise p0 4p dontwant", "unknown advice"),
        ("munmap p0 4p = EWHAT", "bad result"),
        ("write p0 1p VV", "one lowercase letter"),
        ("mmap p0 4p rw- private|anon|bogus", "unknown MapFlag flag"),
        ("mmap p0 4p rw- private file=../x", "bad file= value"),
        ("pwrite_mem p0", "expected: pwrite_mem ADDR LEN"),
        ("poke p0 1p XY", "one lowercase letter"),
        ("file_pwrite ../etc/passwd 0 1p", "bad file"),
        ("ftruncate f1:rw 1p", "bad file"),
        ("punch f1 0", "expected: punch FILE"),
        ("msync p0 4p sometimes", "unknown MsFlag flag"),
        ("mlockall everything", "unknown MclFlag flag"),
        ("munlockall now", "expected: munlockall"),
        ("mincore p0", "expected: mincore ADDR LEN"),
    ],
)
def test_bad_lines_name_the_problem_and_line(line: str, message: str) -> None:
    with pytest.raises(ParseError, match=message) as info:
        parse_trace(f"# header\n{line}\n")
    assert info.value.line == 2


def test_the_calls_sealing_does_not_cover_round_trip() -> None:
    text = (
        "pwrite_mem p1 1p x                               = 1p\n"
        "vm_writev p1+100 100                             = 100\n"
        "poke     p3 8 z                                  = EIO\n"
        "file_pwrite f1:ro 62p 4p w                       = EBADF\n"
        "ftruncate f2 1p+2048                             = 0\n"
        "punch    f1 1p 0x7ffffffffffff000                = EFBIG\n"
        "msync    p0 4p async|invalidate                  = 0\n"
        "mincore  p0 0xfffffffffffff000                   = ENOMEM\n"
        "mlockall current|future|onfault                  = 0\n"
        "munlockall                                       = 0\n"
    )
    steps = parse_trace(text)
    assert format_trace(steps) == text
    assert steps[3].op == ops.FilePwrite("f1", 62 * 4096, 4 * 4096, "w", True)
    assert list(ops.iter_ranges(steps[3].op)) == []  # no memory range
    assert list(ops.iter_ranges(steps[0].op)) == [(ops.MODEL_BASES.arena + 4096, 4096)]
    assert steps[1].result == 100 and steps[0].result == 4096

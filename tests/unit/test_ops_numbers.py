"""Numbers in the op language's text form: every number position refuses a
value that is not a 64-bit system-call argument with a ParseError naming the
line (never Python's "Exceeds the limit (4300 digits)" ValueError, never a
silent wrap), and accepts the whole 64-bit range."""

from __future__ import annotations

import pytest

from sealkit import ops
from sealkit.errors import ParseError
from sealkit.ops import MODEL_BASES, Munmap, format_result, format_trace, parse_result, parse_trace

HUGE = "9" * 5000  # more digits than int() converts (sys.get_int_max_str_digits: 4300)
OVER = str(1 << 70)  # fits int(), not a register
TOP = str(1 << 64)  # the first value past 64 bits

# One line per number position of the text form; "{N}" is where the number goes.
POSITIONS = [
    ("address", "munmap {N} 4p"),
    ("address zone page", "munmap p{N} 4p"),
    ("address zone offset", "munmap p0+{N} 4p"),
    ("heap address zone page", "brk h{N}"),
    ("length", "munmap p0 {N}"),
    ("length pages", "munmap p0 {N}p"),
    ("length offset", "munmap p0 4p+{N}"),
    ("mmap off=", "mmap p0 4p rw- private|fixed file=f1 off={N}"),
    ("protection", "mprotect p0 4p {N}"),
    ("mmap flags", "mmap p0 4p rw- private|anon|{N}"),
    ("mremap flags", "mremap p0 4p 8p maymove|{N}"),
    ("mremap new address", "mremap p0 4p 8p maymove|fixed {N}"),
    ("mseal_v1 types", "mseal_v1 p0 4p mseal|{N}"),
    ("mseal_v3 types", "mseal_v3 p0 4p seal|{N}"),
    ("mseal_split seals", "mseal_split p0 4p unmap|{N}"),
    ("mseal flags=", "mseal p0 4p flags={N}"),
    ("mseal_v1 flags=", "mseal_v1 p0 4p mseal flags={N}"),
    ("pkey", "pkey_mprotect p0 4p rw- {N}"),
    ("madvise advice", "madvise p0 4p {N}"),
    ("process_madvise advice", "process_madvise {N} p0:4p"),
    ("process_madvise range address", "process_madvise dontneed {N}:4p"),
    ("process_madvise range length", "process_madvise dontneed p0:{N}"),
    ("plain result", "munmap p0 4p = {N}"),
    ("address result", "mmap p0 4p rw- private|anon = {N}"),
    ("address result zone page", "mmap p0 4p rw- private|anon = p{N}"),
    ("length result", "process_madvise dontneed p0:4p = {N}p"),
    ("pwrite_mem address", "pwrite_mem {N} 1p"),
    ("vm_writev length", "vm_writev p0 {N}"),
    ("poke length", "poke p0 {N}"),
    ("file_pwrite offset", "file_pwrite f1 {N} 1p"),
    ("file_pwrite length", "file_pwrite f1 0 {N}"),
    ("ftruncate length", "ftruncate f1 {N}"),
    ("punch offset", "punch f1 {N} 1p"),
    ("punch length", "punch f1 0 {N}"),
    ("msync flags", "msync p0 4p sync|{N}"),
    ("mincore length", "mincore p0 {N}"),
    ("mlockall flags", "mlockall current|{N}"),
    ("byte-count result", "pwrite_mem p0 1p = {N}"),
]
IDS = [name for name, _ in POSITIONS]
LINES = [line for _, line in POSITIONS]


def _refused(line: str) -> ParseError:
    with pytest.raises(ParseError) as info:
        parse_trace(f"# header\n{line}\n", source="t.trace")
    assert info.value.line == 2 and info.value.source == "t.trace"
    text = str(info.value)
    assert text.startswith("t.trace:2: ") and "\n" not in text
    assert len(text) < 300, "the message quotes the number, not all 5000 digits of it"
    return info.value


@pytest.mark.parametrize("line", LINES, ids=IDS)
def test_more_digits_than_python_converts_is_a_parse_error(line: str) -> None:
    assert "64 bits" in str(_refused(line.format(N=HUGE)))


@pytest.mark.parametrize("line", LINES, ids=IDS)
def test_a_value_past_64_bits_is_a_parse_error(line: str) -> None:
    # 2**70 used to be masked to 0 (flags, lengths) or passed on as it is
    # (advice, pkey) until the kernel executor failed with a traceback.
    assert "64 bits" in str(_refused(line.format(N=OVER)))
    assert "64 bits" in str(_refused(line.format(N=TOP)))


@pytest.mark.parametrize(
    "line",
    [
        "madvise p0 4p 18446744073709551615",
        "madvise p0 4p -9223372036854775808",
        "pkey_mprotect p0 4p rw- -1",
        "mseal p0 4p flags=0xffffffffffffffff",
        "munmap 0x00000000000000000000000000001000 4p",  # leading zeros are not digits
        "munmap p0 000000000000000000000000000004p",
        "mprotect p0 4p 07",  # a decimal with a leading zero (int(text, 0) refuses it)
        "munmap p0+010 4p",
        "mmap p0 4p rw- private|anon = 0x7e0000000000",
    ],
)
def test_the_whole_64_bit_range_parses(line: str) -> None:
    steps = parse_trace(line)
    assert len(steps) == 1
    # and round-trips through the formatter
    assert parse_trace(format_trace(steps)) == steps


def test_values_just_inside_the_range_keep_their_meaning() -> None:
    (step,) = parse_trace("madvise p0 4p 18446744073709551615\n")
    assert isinstance(step.op, ops.Madvise) and step.op.advice == (1 << 64) - 1
    (step,) = parse_trace("munmap p0 000000000000000000000000000004p\n")
    assert isinstance(step.op, ops.Munmap) and step.op.length == 4 * 4096
    (step,) = parse_trace("mprotect p0 4p 07\n")
    assert isinstance(step.op, ops.Mprotect) and int(step.op.prot) == 7
    (step,) = parse_trace("munmap p0+010 4p\n")
    assert step.op.addr == MODEL_BASES.arena + 10  # type: ignore[attr-defined]


def test_below_minus_2_to_the_63_is_refused() -> None:
    assert "64 bits" in str(_refused("madvise p0 4p -9223372036854775809"))
    assert "64 bits" in str(_refused(f"munmap p-{1 << 52} 4p"))


def test_unnamed_errnos_round_trip() -> None:
    """errno_name() writes E<n> for a number the errno module does not name
    (the kernel has a few, e.g. 512-530 inside, up to 4095): it parses back."""
    op = Munmap(0, 4096)
    for err in (1, 12, 530, 4095):
        assert parse_result(op, format_result(op, -err)) == -err


# Results: what a 64-bit register holds (negative: -errno; the kernel's are
# 1..4095, a hand-written trace may hold any), or ELSEWHERE. Every one goes
# through the text form and comes back the same; anything else is refused on
# both sides, never printed as something that reads back differently.
RESULT_OPS = [
    ops.parse_op("munmap p0 4p"),
    ops.parse_op("mmap p0 4p rw- private|anon"),
    ops.parse_op("brk h4"),
    ops.parse_op("process_madvise cold p0:4p"),
    ops.parse_op("fork"),
]
RESULTS = [
    -(1 << 63), -(1 << 63) + 1, -100_000, -4096, -4095, -530, -512, -133, -12, -1,
    0, 1, 4095, 4096, MODEL_BASES.arena + 3 * 4096 + 5, MODEL_BASES.heap,
    (1 << 63) - 1, 1 << 63, (1 << 64) - 4096, (1 << 64) - 1, ops.ELSEWHERE,
]  # fmt: skip


@pytest.mark.parametrize("op", RESULT_OPS, ids=[op.NAME for op in RESULT_OPS])
def test_every_result_round_trips(op: ops.Op) -> None:
    # -100000 was written E100000, which did not parse back.
    for result in RESULTS:
        text = format_result(op, result)
        assert parse_result(op, text) == result, (result, text)
        line = ops.format_step(ops.Step(op, result))
        assert parse_trace(line)[0].result == result, line


@pytest.mark.parametrize("op", RESULT_OPS, ids=[op.NAME for op in RESULT_OPS])
def test_results_no_register_holds_are_refused_not_misprinted(op: ops.Op) -> None:
    # 2**64 + 1 was written 0x1 for an address, which read back as 1.
    for result in (-(1 << 63) - 1, ops.ELSEWHERE + 1, 1 << 70):
        with pytest.raises(ValueError, match="result"):
            format_result(op, result)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("E0", "an errno is 1 or more"),
        ("E-5", "bad result"),
        ("E" + "9" * 5000, "64 bits"),
        ("E9223372036854775809", "64 bits"),
        ("-9223372036854775809", "64 bits"),
    ],
)
def test_results_past_the_range_are_a_parse_error(text: str, message: str) -> None:
    assert message in str(_refused(f"munmap p0 4p = {text}"))


def test_a_result_without_a_call_is_a_parse_error() -> None:
    # "= EPERM" alone used to raise IndexError (exit 3 from sealkit replay).
    for line in ("= EPERM", "  =0", "= ", "="):
        assert "no call before" in str(_refused(line))

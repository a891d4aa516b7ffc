"""The fuzzer's pure parts: the generator, the shrinker, the comparison."""

from __future__ import annotations

import errno
import random
from collections import Counter

from sealkit.fidelity.differential import Divergence, canonical, compare_runs, diff_layouts
from sealkit.fidelity.executor import raw_to_layout, refusal
from sealkit.fidelity.fuzz import ADVICES, GenState, RandomChooser, gen_op, shrink
from sealkit.fidelity.target import ModelTarget, TraceRun, Window
from sealkit.flags import Madv, MremapFlag
from sealkit.layout import Layout
from sealkit.ops import (
    Brk,
    Fork,
    Madvise,
    Mmap,
    Mremap,
    Mseal,
    Op,
    Step,
    Write,
    format_trace,
    parse_trace,
)


def _ops(n: int, seed: int = 1, heap: bool = False) -> list[Op]:
    chooser = RandomChooser(random.Random(seed))
    out = []
    for _ in range(n):
        st = GenState(Window(), heap=heap, fork_budget=1)
        out.append(gen_op(chooser, st))
    return out


def test_generated_calls_stay_where_the_executor_runs_them() -> None:
    ops = _ops(4000)
    refused = [op for op in ops if refusal(op, Window(), False) is not None]
    assert len(refused) < 0.03 * len(ops), refused[:5]
    heap_ops = _ops(2000, seed=2, heap=True)
    assert any(isinstance(op, Brk) for op in heap_ops)
    assert sum(refusal(op, Window(), True) is not None for op in heap_ops) < 0.03 * 2000


def test_generated_calls_round_trip_through_the_text_form() -> None:
    steps = [Step(op) for op in _ops(3000, seed=3)]
    assert parse_trace(format_trace(steps)) == steps


def test_generator_reaches_every_call_advice_and_mremap_form() -> None:
    ops = _ops(20000, seed=4, heap=True)
    kinds = Counter(type(op).__name__ for op in ops)
    for name in ("Mmap", "Munmap", "Mprotect", "PkeyMprotect", "Mremap", "Madvise",
                 "ProcessMadvise", "Mseal", "Brk", "Mlock", "Munlock", "Write", "Fork"):  # fmt: skip
        assert kinds[name] > 0, name
    advices = {op.advice for op in ops if isinstance(op, Madvise)}
    assert set(ADVICES) <= advices
    assert Madv.HWPOISON not in advices and Madv.SOFT_OFFLINE not in advices
    forms = {int(op.flags) for op in ops if isinstance(op, Mremap)}
    for form in (0, MremapFlag.MAYMOVE, MremapFlag.MAYMOVE | MremapFlag.FIXED,
                 MremapFlag.MAYMOVE | MremapFlag.DONTUNMAP,
                 MremapFlag.MAYMOVE | MremapFlag.FIXED | MremapFlag.DONTUNMAP):  # fmt: skip
        assert int(form) in forms
    assert any(isinstance(op, Mremap) and op.old_length == 0 for op in ops)
    mmaps = [op for op in ops if isinstance(op, Mmap)]
    assert any(op.file is not None and op.file_ro for op in mmaps)
    assert any(op.flags & 0x100000 for op in mmaps)  # FIXED_NOREPLACE
    assert any(op.addr % 4096 for op in ops if isinstance(op, Mseal))  # unaligned
    assert any(op.length >= 1 << 63 for op in ops if isinstance(op, Mseal))  # overflow


def test_fork_budget_bounds_forks() -> None:
    chooser = RandomChooser(random.Random(5))
    st = GenState(Window(), fork_budget=1)
    ops = [gen_op(chooser, st) for _ in range(3000)]
    assert sum(isinstance(op, Fork) for op in ops) == 1


def test_shrink_finds_the_minimal_failing_trace() -> None:
    text = """
    mmap  p0 4p rw- private|anon|fixed
    write p0 2p q
    mseal p1 1p flags=0x1
    munmap p3 1p
    mseal p0+1 3p
    mmap  p8 2p r-- private|anon|fixed|populate
    write p9 1p
    """
    ops = [s.op for s in parse_trace(text)]

    def fails(candidate: list[Op]) -> Divergence | None:
        # "Diverges" when an unaligned mseal follows a write.
        seen_write = False
        for i, op in enumerate(candidate):
            if isinstance(op, Write):
                seen_write = True
            if seen_write and isinstance(op, Mseal) and op.addr % 4096:
                return Divergence(i, "result", "p", "EINVAL", "0")
        return None

    small, div = shrink(ops, fails)
    assert div is not None
    assert [type(op).__name__ for op in small] == ["Write", "Mseal"]
    assert isinstance(small[0], Write) and small[0].tag is None  # simplified
    assert isinstance(small[1], Mseal) and small[1].addr % 4096


def _model(ops: list[Op], results: list[int], layouts: list[str]) -> TraceRun:
    run = TraceRun("model:linux", tuple(ops), Window(), ("p",))
    run.results = results
    run.layouts = [{"p": Layout.parse(t, "p", 0, 16)} for t in layouts]
    run.flags_checked = [True] * len(ops)  # the model always knows its flags
    return run


def _kernel(
    ops: list[Op], results: list[int], runs: list[tuple], flagged: bool = False
) -> TraceRun:
    """A kernel run from the worker's raw runs (flags None: not read at that step)."""
    layouts: list[dict[str, Layout] | None] = [{"p": raw_to_layout(r, "p", 0, 16)} for r in runs]
    return TraceRun("kernel", tuple(ops), Window(), ("p",), results, layouts, [flagged] * len(ops))


def test_compare_uses_the_merged_form_and_model_wildcards() -> None:
    ops = [s.op for s in parse_trace("mmap p0 4p rw- private|anon|fixed\nmadvise p0 2p free\n")]
    model = _model(ops, [ops[0].addr, 0], ["[0,4) rw-p anon 0000", "[0,4) rw-p anon ??00"])
    raw = (
        (0, 2, 3, False, "anon", None, False, None, "ab"),
        (2, 4, 3, False, "anon", None, False, None, "00"),
    )
    snaps = [((0, 4, 3, False, "anon", None, False, None, "0000"),), raw]
    kernel = _kernel(ops, [ops[0].addr, 0], snaps)
    assert compare_runs(model, kernel) is None  # split VMAs merge; '?' matches 'ab'
    wrong = _kernel(ops, [ops[0].addr, -errno.EPERM], snaps)
    div = compare_runs(model, wrong)
    assert div is not None and div.kind == "result" and div.step == 1
    assert (div.model, div.kernel) == ("0", "EPERM")


def test_compare_checks_exact_boundaries_of_a_refused_munmap() -> None:
    ops = [s.op for s in parse_trace("mmap p0 8p rw- private|anon|fixed\nmunmap p2 6p\n")]
    merged = "[0,4) rw-p anon 0000\n[4,8) rw-p,sl anon 0000"
    model = _model(ops, [ops[0].addr, -errno.EPERM], [merged, merged])
    snap = (
        (0, 2, 3, False, "anon", None, False, None, "00"),
        (2, 4, 3, False, "anon", None, False, None, "00"),
        (4, 8, 3, False, "anon", None, True, None, "0000"),
    )
    kernel = _kernel(ops, [ops[0].addr, -errno.EPERM], [snap, snap])
    div = compare_runs(model, kernel)
    assert div is not None and div.kind == "boundaries" and div.step == 1
    assert div.kernel == "VMA boundaries at [2, 8]: [2, 8]"
    assert div.model == "VMA boundaries at [2, 8]: [8]"


def test_boundaries_inside_a_refused_range_are_only_compared_with_exact() -> None:
    ops = [s.op for s in parse_trace("mmap p0 8p rw- private|anon|fixed\nmunmap p2 6p\n")]
    text = "[0,2) rw-p anon 00\n[2,4) rw-p anon 00\n[4,8) rw-p,sl anon 0000"
    model = _model(ops, [ops[0].addr, -errno.EPERM], [text, text])
    snap = (
        (0, 2, 3, False, "anon", None, False, None, "00"),
        (2, 4, 3, False, "anon", None, False, None, "00"),
        (4, 6, 3, False, "anon", None, True, None, "00"),  # the kernel did not merge here
        (6, 8, 3, False, "anon", None, True, None, "00"),
    )
    kernel = _kernel(ops, [ops[0].addr, -errno.EPERM], [snap, snap])
    assert compare_runs(model, kernel) is None
    div = compare_runs(model, kernel, exact=True)
    assert div is not None and div.kind == "layout" and div.step == 0
    assert div.model == "[4,8) rw-p,sl anon 0000" and div.kernel == "[4,6) rw-p,sl anon 00"


def test_flags_compared_only_where_the_kernel_read_them() -> None:
    ops = [s.op for s in parse_trace("mmap p0 4p rw- private|anon|fixed\n")]
    model = _model(ops, [ops[0].addr], ["[0,4) rw-p,dd anon 0000"])
    snap = ((0, 4, 3, False, "anon", None, False, frozenset(), "0000"),)
    assert compare_runs(model, _kernel(ops, [ops[0].addr], [snap], flagged=False)) is None
    div = compare_runs(model, _kernel(ops, [ops[0].addr], [snap], flagged=True))
    assert div is not None and div.kind == "flags"


def test_canonical_keeps_file_offsets_and_drops_anon_ones() -> None:
    lay = Layout.parse("[0,2) r--p file:f1@3 FF\n[2,4) r--p file:f1@5 FF\n[4,6) rw-p anon@9 00",
                       "p", 0, 16)  # fmt: skip
    canon = canonical(lay.runs, flags=False)
    assert [[*c[:2], c[3]] for c in canon] == [[0, 4, 3], [4, 6, None]]
    other = Layout.parse("[0,4) r--p file:f1@3 FFFF\n[4,6) rw-p anon 00", "p", 0, 16)
    assert diff_layouts(lay, other, flags=False) is None
    moved = Layout.parse("[0,4) r--p file:f1@4 FFFF\n[4,6) rw-p anon 00", "p", 0, 16)
    assert diff_layouts(lay, moved, flags=False) == (
        "- [0,4) r--p file:f1@3 FFFF\n+ [0,4) r--p file:f1@4 FFFF"
    )


def test_reused_model_layouts_equal_fresh_ones() -> None:
    """gen_trace reuses the model's layout when a call left its state untouched;
    every reused layout must equal the one rendered afresh by replaying."""
    from sealkit.fidelity.fuzz import gen_trace

    chooser = RandomChooser(random.Random(5))
    win = Window()
    reused = 0
    for k in range(12):
        model = ModelTarget("linux", win)
        mt = gen_trace(chooser, win, 150, model, heap=k % 3 == 0, forks=k % 2)
        fresh = model.run(mt.ops)
        assert fresh.results == mt.run.results
        for i, lays in enumerate(mt.run.layouts):
            assert lays is not None
            if i and lays is mt.run.layouts[i - 1]:
                reused += 1
            for zone, lay in lays.items():
                assert lay == fresh.layout(i, zone), (i, zone)
    assert reused > 200  # refusals are common: the shortcut is exercised

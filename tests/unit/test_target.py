"""The Target interface and its registry, on the model (no kernel needed)."""

from __future__ import annotations

import pytest

from sealkit.errors import ArgumentError, StateError
from sealkit.fidelity.target import (
    TARGET_FORMS,
    ModelTarget,
    Target,
    TraceRun,
    Usage,
    Window,
    check_target,
    counterpart,
    make_target,
    target_kind,
    target_names,
)
from sealkit.model import POLICIES
from sealkit.ops import MODEL_BASES, parse_trace

TRACE = """
mmap   p0 8p rw- private|anon|fixed
write  p0 8p
mseal  p4 4p
munmap p2 6p
brk    h2
"""


def test_every_target_has_a_name_of_a_registered_form() -> None:
    names = target_names()
    assert names[:2] == ["kernel", "model:linux"]
    assert sorted(names[1:]) == sorted(f"model:{p}" for p in POLICIES)
    assert TARGET_FORMS == ("kernel", "model:POLICY")
    assert {target_kind(n) for n in names} == set(TARGET_FORMS)
    for bad in ("bogus", "model", "kernel:6.10", "Kernel", ""):
        assert target_kind(bad) is None
        with pytest.raises(ArgumentError, match="unknown target"):
            make_target(bad)


def test_a_name_of_the_right_form_may_still_name_nothing() -> None:
    with pytest.raises(ArgumentError, match=r"unknown policy 'nope' \(known: linux, "):
        check_target("model:nope")
    check_target("model:mimmutable")
    check_target("kernel")  # no worker is started for a check


def test_counterparts_pair_a_model_with_the_reference() -> None:
    assert counterpart("kernel") == "model:linux"
    assert counterpart("model:mimmutable") == "kernel"
    assert counterpart("model:linux") == "kernel"
    with pytest.raises(ArgumentError):
        counterpart("bogus")


def test_a_model_target_answers_in_the_one_shape() -> None:
    ops = [s.op for s in parse_trace(TRACE)]
    with make_target("model:linux", Window(16, 8)) as target:
        assert isinstance(target, ModelTarget)
        assert (target.name, target.policy, target.reference) == ("model:linux", "linux", False)
        assert target.refusal(ops[0], False) is None
        target.check(ops)
        run = target.run(ops, layouts={1, 3}, flags="never")
        assert target.usage() == Usage()
    assert isinstance(run, TraceRun)
    assert (run.target, run.ops, run.window, run.zones) == (
        "model:linux",
        tuple(ops),
        Window(16, 8),
        ("p", "h"),
    )
    assert run.results == [MODEL_BASES.arena, 0, 0, -1, MODEL_BASES.heap + 2 * 4096]
    assert [lays is not None for lays in run.layouts] == [False, True, False, True, False]
    assert run.flags_checked == [True] * 5  # the model always knows its VmFlags
    assert run.layout(3, "p").render() == "aabbCCCC        "
    assert run.layout(3, "h").hi == 8
    assert run.final_layout("p") is run.layout(3, "p")
    assert run.ok and run.died is None and run.worker == 0 and run.bases == MODEL_BASES
    with pytest.raises(StateError, match="no snapshot was taken after step 1"):
        run.layout(0)
    with pytest.raises(StateError, match="did not use zone 'x'"):
        run.layout(1, "x")


def test_run_many_runs_each_trace_on_a_fresh_space() -> None:
    ops = [s.op for s in parse_trace(TRACE)]
    target = ModelTarget("mimmutable")
    first, second = target.run_many([ops, ops], layouts="end")
    assert first.results == second.results
    assert first.results[2] == -38  # mimmutable's world has no mseal: ENOSYS
    assert first.layouts[-1] is not None and first.layouts[-1] is not second.layouts[-1]


def test_both_kinds_have_what_the_interface_names() -> None:
    members = {
        name
        for name in vars(Target)
        if not name.startswith("_") or name in ("__enter__", "__exit__")
    } | set(Target.__annotations__)
    assert {"run", "run_many", "refusal", "check", "usage", "close", "terminate"} <= members
    # Made, never started: no worker runs for these checks.
    for target in (make_target("kernel", Window(8, 8)), make_target("model:none", Window(8, 8))):
        missing = {m for m in members if not hasattr(target, m)}
        assert missing == set(), (target.name, missing)
        assert target.window == Window(8, 8)
        assert target.reference is (target.name == "kernel")

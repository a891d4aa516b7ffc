"""The kernel and the model answer a trace in the same shape, through the registry."""

from __future__ import annotations

import pytest

from sealkit.fidelity.differential import compare_runs
from sealkit.fidelity.executor import OutsideArenaError
from sealkit.fidelity.target import TraceRun, Usage, Window, counterpart, make_target
from sealkit.ops import parse_trace

pytestmark = pytest.mark.kernel

TRACE = """
mmap     p0 8p rw- private|anon|fixed
write    p0 8p
mseal    p4 4p
munmap   p2 6p
madvise  p0 2p dontdump
brk      h3
"""


def test_kernel_and_model_runs_have_one_shape_and_agree() -> None:
    ops = [s.op for s in parse_trace(TRACE)]
    window = Window(16, 8)
    runs: dict[str, TraceRun] = {}
    for name in ("kernel", counterpart("kernel")):
        with make_target(name, window) as target:
            runs[name] = target.run(ops, layouts="every", flags="end")
            usage = target.usage()
        assert usage == (Usage(1, 1, 0) if target.reference else Usage())
    kernel, model = runs["kernel"], runs["model:linux"]
    for run in (kernel, model):
        assert (run.ops, run.window, run.zones) == (tuple(ops), window, ("p", "h"))
        assert len(run.results) == len(run.layouts) == len(run.flags_checked) == len(ops)
        assert all(lays is not None and set(lays) == {"p", "h"} for lays in run.layouts)
    assert kernel.results == model.results
    assert kernel.flags_checked == [False] * (len(ops) - 1) + [True]
    assert kernel.worker > 0 and model.worker == 0
    assert kernel.layout(3).render() == model.layout(3).render() == "aabbCCCC        "
    assert "dd" in kernel.final_layout().runs[0].flags  # read from smaps at the end
    assert compare_runs(model, kernel) is None


def test_the_kernel_target_refuses_what_the_model_runs() -> None:
    ops = [s.op for s in parse_trace("munmap p0 100p\n")]
    with make_target("model:linux") as model:
        assert model.refusal(ops[0], False) is None
        assert model.run(ops).results == [0]
    with make_target("kernel") as kernel:
        reason = kernel.refusal(ops[0], False)
        assert reason is not None and "outside the window" in reason
        with pytest.raises(OutsideArenaError):
            kernel.run(ops)
        assert kernel.usage().workers == 0  # refused before any worker starts

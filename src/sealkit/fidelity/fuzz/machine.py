"""The Hypothesis state machine: calls drawn on the model, the trace held to the kernel at teardown.

Hypothesis is an optional dependency (``sealkit[hypothesis]``); the campaign
(``sealkit fuzz``) does not use this module.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

try:
    from hypothesis import strategies as st
except ModuleNotFoundError as _exc:  # pragma: no cover - depends on the installation
    raise ModuleNotFoundError(
        f"{__name__} needs Hypothesis, an optional dependency: pip install 'sealkit[hypothesis]'",
        name=_exc.name,
    ) from None
from hypothesis.stateful import RuleBasedStateMachine, rule

from ...ops import (
    Brk,
    Op,
)
from ..differential import annotate, canonical, compare_runs
from ..executor import refusal as kernel_refusal
from ..target import FlagMode, ModelTarget, SpaceLike, Target, TraceRun, Window
from .generator import DataChooser, GenState, gen_op

__all__ = ["DifferentialMachine"]


class DifferentialMachine(RuleBasedStateMachine):
    """Hypothesis state machine: random calls on the ``linux`` model, the whole
    trace replayed on the kernel at teardown and compared step by step.

    Configure through class attributes (``executor`` must be set; tests share
    one worker): ``window``, ``flags``, ``exact``, ``heap``, ``policy``.
    """

    executor: Target | None = None
    window: Window = Window()
    flags: FlagMode = "end"
    exact: bool = False
    heap: bool = False
    policy: str = "linux"
    space_factory: Callable[[], SpaceLike] | None = None

    def __init__(self) -> None:
        super().__init__()
        cls = type(self)
        target = ModelTarget(cls.policy, cls.window, space_factory=cls.space_factory)
        self.space = target.space()
        self.state = GenState(cls.window, heap=cls.heap)
        zones = ("p", "h") if cls.heap else ("p",)
        self.model = TraceRun(target.name, (), cls.window, zones)
        self.ops: list[Op] = []

    @rule(data=st.data())
    def call(self, data: Any) -> None:
        """Draw one call, apply it to the model, remember it for teardown."""
        cls = type(self)
        op = gen_op(DataChooser(data), self.state)
        refused = (
            cls.executor.refusal(op, cls.heap)
            if cls.executor is not None
            else kernel_refusal(op, cls.window, cls.heap)
        )
        if refused is not None or (not cls.heap and isinstance(op, Brk)):
            return
        self.ops.append(op)
        self.model.results.append(self.space.apply(op))
        self.model.flags_checked.append(True)
        lays = {}
        for z in self.model.zones:
            lay = self.space.layout(z, 0, cls.window.pages if z == "p" else cls.window.heap_pages)
            lays[z] = lay
            self.state.observe(canonical(lay.runs, flags=False), z)
        self.model.layouts.append(lays)

    def teardown(self) -> None:
        cls = type(self)
        if not self.ops or cls.executor is None:
            return
        ops = list(self.ops)
        if cls.heap and not any(isinstance(op, Brk) for op in ops):
            ops.append(Brk(0))
            self.model.results.append(self.space.apply(ops[-1]))
            self.model.flags_checked.append(True)
            self.model.layouts.append(
                {
                    z: self.space.layout(
                        z, 0, cls.window.pages if z == "p" else cls.window.heap_pages
                    )
                    for z in self.model.zones
                }
            )
        self.model.ops = tuple(ops)
        kernel = cls.executor.run(ops, flags=cls.flags)
        div = compare_runs(self.model, kernel, exact=cls.exact)
        if div is not None:
            raise AssertionError(
                f"model and kernel diverge\n{div.describe()}\n\ntrace (kernel results; "
                f"replay with `sealkit replay FILE --diff`):\n"
                + annotate(ops, kernel, self.model, div)
            )

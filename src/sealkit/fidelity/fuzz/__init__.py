"""Differential fuzzing: random calls on the model and on the kernel, compared.

Two engines share one generator (:func:`gen_op`), which picks calls and
arguments biased toward the edges where implementations go wrong: VMA
borders, sealed/unsealed borders and holes of the model's current layout,
the window's edges, unaligned addresses and lengths, lengths that overflow,
far addresses, every mapping type, every mremap form and every madvise
advice.

* :class:`DifferentialMachine`, a Hypothesis ``RuleBasedStateMachine``: each
  rule draws a call (through Hypothesis, so failures shrink) and applies it to
  the ``linux`` model; at teardown the whole trace runs on the kernel executor
  in one batch and every step is compared (result, layout, exact boundaries
  where defined, VmFlags at the end). A failure prints the minimal trace in
  the text form, ready for ``sealkit replay``. pytest runs it with a short
  profile (``tests/slow/test_fuzz.py``).
* :func:`campaign`, for long runs (``sealkit fuzz``): the same generator
  driven by ``random.Random(seed)``, traces pipelined so the model (and the
  generator) work on the next trace while the kernel worker runs the
  current one; each divergence is shrunk with :func:`shrink`.

What the kernel leaves undefined, and what the fuzzer does not generate, is
listed once, in :data:`UNDEFINED` and :data:`EXCLUDED`.

Where each part lives: :mod:`.generator` (the choosers, :func:`gen_op`,
:func:`gen_trace`), :mod:`.shrink`, :mod:`.campaign`, :mod:`.machine` (the
Hypothesis state machine) and :mod:`.scope` (what is compared, undefined,
excluded).
"""

from __future__ import annotations

from typing import Any

from .campaign import CampaignResult, Found, campaign
from .generator import (
    ADVICES,
    Chooser,
    DataChooser,
    GenState,
    ModelTrace,
    RandomChooser,
    gen_op,
    gen_trace,
)
from .scope import EXCLUDED, UNDEFINED, VERIFIED
from .shrink import shrink

__all__ = [
    "ADVICES",
    "EXCLUDED",
    "UNDEFINED",
    "VERIFIED",
    "CampaignResult",
    "Chooser",
    "DataChooser",
    "DifferentialMachine",
    "Found",
    "GenState",
    "ModelTrace",
    "RandomChooser",
    "campaign",
    "gen_op",
    "gen_trace",
    "shrink",
]


def __getattr__(name: str) -> Any:
    # The state machine subclasses Hypothesis's, an optional dependency: it is
    # imported on first use, so the campaign (sealkit fuzz) runs without it.
    if name == "DifferentialMachine":
        from .machine import DifferentialMachine  # noqa: PLC0415

        return DifferentialMachine
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")

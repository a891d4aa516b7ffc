"""Run op traces on the real kernel, in disposable worker processes.

The kernel side of the differential machinery: the conformance suite, the
fuzzer and ``sealkit replay`` hand traces (lists of :class:`~sealkit.ops.Op`,
written against :data:`~sealkit.ops.MODEL_BASES`) to a
:class:`KernelExecutor` and get back every call's result and a
:class:`~sealkit.layout.Layout` of the window after each call, as a
:class:`~sealkit.fidelity.target.TraceRun`: the executor is the ``kernel``
:class:`~sealkit.fidelity.target.Target`.

Where each part lives
---------------------
==================  ==========================================================
:mod:`.client`      :class:`KernelExecutor`, the controller side (starts,
                    feeds and recycles workers)
:mod:`.zygote`      the worker process: malloc prepared, arena reserved,
                    runners forked
:mod:`.runner`      runs traces in window slots: the calls, the snapshots,
                    the clean-up
:mod:`.refusals`    what the executor will not run, checked before anything
                    runs
:mod:`.protocol`    what crosses the pipes: frames, messages, raw snapshots
==================  ==========================================================
"""

from __future__ import annotations

from .client import KernelExecutor
from .protocol import RawRun, RawSnap, WorkerDiedError, raw_to_layout
from .refusals import (
    MAX_FILES,
    MAX_FORKS,
    OutsideArenaError,
    check_trace,
    host_refusal,
    refusal,
)
from .runner import GUARD, MAX_WINDOWS
from .zygote import worker_main

__all__ = [
    "GUARD",
    "MAX_FILES",
    "MAX_FORKS",
    "MAX_WINDOWS",
    "KernelExecutor",
    "OutsideArenaError",
    "RawRun",
    "RawSnap",
    "WorkerDiedError",
    "check_trace",
    "host_refusal",
    "raw_to_layout",
    "refusal",
    "worker_main",
]

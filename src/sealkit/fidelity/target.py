"""One way to run a trace anywhere: the :class:`Target` interface and its registry.

A *target* runs traces (sequences of :class:`~sealkit.ops.Op`, written
against :data:`~sealkit.ops.MODEL_BASES`) and answers in one shape, a
:class:`TraceRun`: every call's result (kernel convention, model frame) and,
after the calls it was asked to observe, a :class:`~sealkit.layout.Layout`
of each zone of the :class:`Window`. Two kinds implement it:

==================  ===========================================================
``kernel``          the running kernel, in disposable workers
                    (:class:`sealkit.fidelity.executor.KernelExecutor`)
``model:POLICY``    the model under a sealing design (:class:`ModelTarget`;
                    the policies are :data:`sealkit.model.POLICIES`)
==================  ===========================================================

Replay, the differential comparison, the conformance suite, the fuzzer and
the analyzer's ``--replay`` only use this interface. :func:`make_target`
builds a target from its name; a new kind of target (another kernel, in a
VM) is one more entry in :data:`_KINDS` and a class with :class:`Target`'s
methods.

This module is imported by the kernel executor's worker processes: it loads
the model only when a model target is made.
"""

from __future__ import annotations

from collections.abc import Callable, Generator, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, Final, Literal, NamedTuple, Protocol

from ..errors import ArgumentError, StateError
from ..layout import Layout
from ..ops import (
    MODEL_BASES,
    Bases,
    Brk,
    Fork,
    Madvise,
    Mlock,
    Mlockall,
    Mmap,
    Mremap,
    Munlock,
    Munlockall,
    Op,
    ProcessMadvise,
    Step,
    iter_ranges,
)

__all__ = [
    "FLAG_OPS",
    "MAX_PAGES",
    "TARGET_FORMS",
    "FlagMode",
    "LayoutMode",
    "ModelTarget",
    "SpaceLike",
    "Target",
    "TraceRun",
    "Usage",
    "Window",
    "check_target",
    "counterpart",
    "make_target",
    "observed_steps",
    "plain_ops",
    "target_kind",
    "target_names",
    "uses_heap",
    "zones_of",
]

MAX_PAGES: Final = 64
"""Largest window (pages of the ``p`` zone, and of the ``h`` zone) a trace may use."""

LayoutMode = Literal["none", "end", "every"]
"""After which calls a run records the layouts (or a set of 0-based step indices)."""
FlagMode = Literal["never", "end", "flag-ops", "every"]
"""After which calls the tracked VmFlags are observed (or a set of step indices)."""

FLAG_OPS: Final[tuple[type[Op], ...]] = (
    Madvise,
    ProcessMadvise,
    Mlock,
    Munlock,
    Mlockall,
    Munlockall,
    Mmap,
    Mremap,
    Fork,
)
"""Calls after which ``flags="flag-ops"`` reads smaps: the ones that can set,
clear or move a tracked VmFlag (madvise advice incl. a guard's ``gu``,
mlock, mlockall, MAP_LOCKED/GROWSDOWN/STACK, a moved VMA, a fork that drops
DONTCOPY VMAs and VM_LOCKED)."""


# ------------------------------------------------------------------- traces


@dataclass(frozen=True, slots=True)
class Window:
    """The pages a trace may address: ``p`` pages ``[0, pages)`` and, when the
    trace uses the heap zone, ``h`` pages ``[0, heap_pages)``."""

    pages: int = 16
    heap_pages: int = 16

    def __post_init__(self) -> None:
        for name, value in (("pages", self.pages), ("heap_pages", self.heap_pages)):
            if isinstance(value, bool) or not isinstance(value, int):
                raise TypeError(f"Window.{name} must be an int")
            if not 1 <= value <= MAX_PAGES:
                raise ValueError(f"Window.{name} must be in 1..{MAX_PAGES}, not {value}")

    def hi(self, zone: str) -> int:
        """The pages of ``zone`` a layout covers: ``[0, hi)``."""
        return self.pages if zone == "p" else self.heap_pages


def uses_heap(ops: Iterable[Op], bases: Bases = MODEL_BASES) -> bool:
    """Whether a trace needs the heap zone (a ``brk``, or an ``h`` address)."""
    for op in ops:
        if isinstance(op, Brk):
            return True
        for addr, _ in iter_ranges(op):
            zoned = bases.zone_of(addr)
            if zoned is not None and zoned[0] == "h":
                return True
    return False


def zones_of(ops: Iterable[Op]) -> tuple[str, ...]:
    """The zones a trace's layouts cover: ``("p", "h")`` when it uses the heap."""
    return ("p", "h") if uses_heap(ops) else ("p",)


def plain_ops(ops: Sequence[Op] | Sequence[Step]) -> list[Op]:
    """The calls of a trace given as :class:`~sealkit.ops.Op` or
    :class:`~sealkit.ops.Step` values (``TypeError`` for anything else)."""
    out: list[Op] = []
    for item in ops:
        if isinstance(item, Step):
            out.append(item.op)
        elif isinstance(item, Op):
            out.append(item)
        else:
            raise TypeError(f"a trace holds Op or Step values, not {type(item).__name__}")
    return out


def observed_steps(n: int, which: object, ops: Sequence[Op], kind: str) -> bytes:
    """One byte per call of a trace of ``n`` calls: 1 where ``which`` (a
    :data:`LayoutMode` or :data:`FlagMode`, or a set of step indices) asks
    for an observation. ``kind`` names the argument in errors."""
    if which in ("every",):
        return b"\x01" * n
    if which in ("none", "never"):
        return b"\x00" * n
    if which == "end":
        return b"\x00" * (n - 1) + b"\x01" if n else b""
    if which == "flag-ops":
        marks = bytearray(n)
        for i, op in enumerate(ops):
            if isinstance(op, FLAG_OPS):
                marks[i] = 1
        if n:
            marks[-1] = 1
        return bytes(marks)
    if isinstance(which, set | frozenset):
        marks = bytearray(n)
        for i in which:
            if not isinstance(i, int) or not 0 <= i < n:
                raise ValueError(f"{kind} step {i!r} is not a step of this trace")
            marks[i] = 1
        return bytes(marks)
    raise ValueError(f"bad {kind} mode {which!r}")


# ------------------------------------------------------------------- a run


@dataclass(slots=True)
class TraceRun:
    """One trace on one target, in the one shape every target answers in.

    ``results[i]`` is call ``i``'s result in the model's frame (addresses
    rebased, :data:`~sealkit.ops.ELSEWHERE` for placements outside the
    window). ``layouts[i]`` maps each zone in :attr:`zones` to its exact (one
    run per VMA) :class:`~sealkit.layout.Layout` after call ``i``, or is
    ``None`` when the target was not asked to observe that step.
    ``flags_checked[i]`` says whether those layouts carry the tracked VmFlags
    (the model always knows them; the kernel reads smaps only where asked):
    comparisons ignore flags where it is false.

    When the target (a kernel worker, a forked child) died, ``died`` says how
    and ``died_step`` at which call; ``results`` then covers the calls before
    it. ``worker`` is the process that ran the trace (0: in this process) and
    ``bases`` where the zones were on the target.
    """

    target: str
    ops: tuple[Op, ...]
    window: Window
    zones: tuple[str, ...]
    results: list[int] = field(default_factory=list)
    layouts: list[dict[str, Layout] | None] = field(default_factory=list)
    flags_checked: list[bool] = field(default_factory=list)
    died: str | None = None
    died_step: int | None = None
    worker: int = 0
    bases: Bases = MODEL_BASES
    seconds: float = 0.0

    @property
    def ok(self) -> bool:
        """Whether every call ran (no death)."""
        return self.died is None

    def steps(self) -> list[Step]:
        """The trace with this run's results, as :class:`~sealkit.ops.Step` values."""
        return [Step(op, r) for op, r in zip(self.ops, self.results, strict=False)]

    def layout(self, step: int, zone: str = "p") -> Layout:
        """The exact layout of ``zone`` after call ``step``."""
        lays = self.layouts[step]
        if lays is None:
            raise StateError(f"no snapshot was taken after step {step + 1}")
        if zone not in self.zones:
            raise StateError(f"this trace did not use zone {zone!r}")
        return lays[zone]

    def final_layout(self, zone: str = "p") -> Layout:
        """The layout after the last observed call that ran."""
        for i in range(len(self.results) - 1, -1, -1):
            if self.layouts[i] is not None:
                return self.layout(i, zone)
        raise StateError("no snapshot was taken")


class Usage(NamedTuple):
    """What running traces has cost a target so far."""

    workers: int = 0
    """Worker processes started."""
    runners: int = 0
    """Distinct processes that ran traces."""
    deaths: int = 0
    """Traces during which the process running them died."""


# ------------------------------------------------------------------- the interface


class Target(Protocol):
    """What every target offers: the kernel executor and every model policy.

    Use as a context manager (or call :meth:`close`). A target is made for
    one :class:`Window`; traces it runs may address only that window.
    """

    name: str
    """The target's name: ``"kernel"``, ``"model:linux"``, ..."""
    policy: str
    """The sealing design it implements (the running kernel: ``"linux"``)."""
    reference: bool
    """Whether it is the ground truth the others are held to (the running kernel)."""
    window: Window

    def refusal(self, op: Op, heap: bool) -> str | None:
        """Why this target would refuse to run ``op`` (``heap``: whether the
        trace uses the heap zone), or ``None``."""
        ...

    def check(self, ops: Sequence[Op] | Sequence[Step]) -> None:
        """Raise :class:`~sealkit.errors.UnsafeTargetError` if :meth:`run`
        would refuse ``ops``; nothing runs."""
        ...

    def run(
        self, ops: Sequence[Op] | Sequence[Step], *,
        layouts: LayoutMode | set[int] = "every", flags: FlagMode | set[int] = "end",
    ) -> TraceRun:  # fmt: skip
        """Run one trace; layouts are recorded after the calls ``layouts``
        and ``flags`` name (the tracked VmFlags after those ``flags`` names)."""
        ...

    def run_many(
        self, traces: Iterable[Sequence[Op] | Sequence[Step]], *,
        layouts: LayoutMode | set[int] = "every", flags: FlagMode | set[int] = "end",
        depth: int = 2, prechecked: bool = False,
    ) -> Generator[TraceRun, None, None]:  # fmt: skip
        """Run traces in order, one :class:`TraceRun` each. ``depth``: how many
        a target running elsewhere may hold queued; ``prechecked``: the caller
        already asked :meth:`refusal` about every call."""
        ...

    def usage(self) -> Usage:
        """What running traces has cost so far."""
        ...

    def close(self) -> None:
        """Release what the target holds (worker processes); it can run again later."""
        ...

    def terminate(self) -> None:
        """Stop at once, abandoning queued traces: for an interrupted caller."""
        ...

    def __enter__(self) -> Target: ...

    def __exit__(self, kind: type[BaseException] | None, *exc: object) -> None: ...


# ------------------------------------------------------------------- the model


class SpaceLike(Protocol):
    """What a model target needs from an address space (:class:`sealkit.model.AddressSpace`)."""

    def apply(self, op: Op) -> int: ...

    def layout(self, zone: str, lo: int, hi: int) -> Layout: ...


class ModelTarget:
    """The model (:class:`sealkit.model.AddressSpace`) under ``policy``, as a :class:`Target`.

    Each trace runs on a fresh address space. ``space_factory`` replaces the
    model (tests plant a lying one). :meth:`space` gives a fresh address
    space to code that steers by the model's state as it goes (the fuzzer's
    generator); a trace run that way is this target's :class:`TraceRun` too.
    """

    reference = False

    def __init__(
        self,
        policy: str = "linux",
        window: Window | None = None,
        *,
        space_factory: Callable[[], SpaceLike] | None = None,
    ) -> None:
        from ..model import POLICIES  # noqa: PLC0415 (the model is loaded when used)

        if policy not in POLICIES:
            raise ArgumentError(f"unknown policy {policy!r} (known: {', '.join(POLICIES)})")
        self.policy = policy
        self.name = f"model:{policy}"
        self.window = window or Window()
        self._factory = space_factory

    def space(self) -> SpaceLike:
        """A fresh address space under this target's policy."""
        if self._factory is not None:
            return self._factory()
        from ..model import AddressSpace  # noqa: PLC0415

        space: SpaceLike = AddressSpace(policy=self.policy)
        return space

    def refusal(self, op: Op, heap: bool) -> str | None:
        return None  # the model answers every call, in the kernel convention

    def check(self, ops: Sequence[Op] | Sequence[Step]) -> None:
        plain_ops(ops)

    def run(
        self, ops: Sequence[Op] | Sequence[Step], *,
        layouts: LayoutMode | set[int] = "every", flags: FlagMode | set[int] = "end",
    ) -> TraceRun:  # fmt: skip
        plain = plain_ops(ops)
        n = len(plain)
        wanted = observed_steps(n, layouts, plain, "layouts")
        read = observed_steps(n, flags, plain, "flags")
        win = self.window
        zones = zones_of(plain)
        space = self.space()
        run = TraceRun(self.name, tuple(plain), win, zones, flags_checked=[True] * n)
        results, lays = run.results, run.layouts
        for i, op in enumerate(plain):
            results.append(space.apply(op))
            if wanted[i] or read[i]:
                lays.append({z: space.layout(z, 0, win.hi(z)) for z in zones})
            else:
                lays.append(None)
        return run

    def run_many(
        self, traces: Iterable[Sequence[Op] | Sequence[Step]], *,
        layouts: LayoutMode | set[int] = "every", flags: FlagMode | set[int] = "end",
        depth: int = 2, prechecked: bool = False,
    ) -> Generator[TraceRun, None, None]:  # fmt: skip
        for ops in traces:
            yield self.run(ops, layouts=layouts, flags=flags)

    def usage(self) -> Usage:
        return Usage()

    def close(self) -> None:
        pass

    def terminate(self) -> None:
        pass

    def __enter__(self) -> ModelTarget:
        return self

    def __exit__(self, kind: type[BaseException] | None, *exc: object) -> None:
        self.close()


# ------------------------------------------------------------------- the registry


class _Kind(NamedTuple):
    """A kind of target: how its names look and how one is made."""

    form: str
    """How its names are spelled, for messages: ``kernel``, ``model:POLICY``."""
    matches: Callable[[str], bool]
    names: Callable[[], list[str]]
    """Every name of this kind, for ``--target all``."""
    make: Callable[..., Target]
    """``make(name, window, **options)``; raises ArgumentError for a bad name."""
    reference: bool
    """Whether its targets are the ground truth (the running kernel)."""
    policy: Callable[[str], str]
    """The sealing design a target of this name implements."""


def _make_kernel(name: str, window: Window, **options: Any) -> Target:
    from .executor import KernelExecutor  # noqa: PLC0415 (the executor's worker imports this module)

    return KernelExecutor(window, **options)


def _model_names() -> list[str]:
    from ..model import POLICIES  # noqa: PLC0415

    return ["model:linux", *(f"model:{p}" for p in POLICIES if p != "linux")]


def _make_model(name: str, window: Window, *, timeout: float = 0.0, **options: Any) -> Target:
    # timeout: the model runs in this process and always finishes.
    return ModelTarget(name.split(":", 1)[1], window, **options)


_KINDS: Final[tuple[_Kind, ...]] = (
    _Kind("kernel", lambda name: name == "kernel", lambda: ["kernel"], _make_kernel, True,
          lambda name: "linux"),
    _Kind("model:POLICY", lambda name: name.startswith("model:"), _model_names, _make_model,
          False, lambda name: name.split(":", 1)[1]),
)  # fmt: skip
"""Every kind of target. Adding one (another kernel, in a VM) is adding it here."""

TARGET_FORMS: Final = tuple(kind.form for kind in _KINDS)
"""How target names are spelled: ``("kernel", "model:POLICY")``."""


def target_kind(name: str) -> str | None:
    """The form of ``name``'s kind (``"kernel"``, ``"model:POLICY"``), or
    ``None`` when no kind of target is spelled that way."""
    kind = _kind(name)
    return None if kind is None else kind.form


def _kind(name: str) -> _Kind | None:
    return next((kind for kind in _KINDS if kind.matches(name)), None)


def target_names() -> list[str]:
    """Every target: ``kernel``, ``model:linux``, then the other policies."""
    return [name for kind in _KINDS for name in kind.names()]


def make_target(name: str, window: Window | None = None, **options: Any) -> Target:
    """The target called ``name`` for traces in ``window``. ``options`` go to
    its kind: ``timeout`` (seconds a trace may take; every kind accepts it),
    the kernel's ``cpu``, a model's ``space_factory``.
    Raises :class:`~sealkit.errors.ArgumentError` for a name no kind has."""
    kind = _kind(name)
    if kind is None:
        forms = ", ".join(TARGET_FORMS)
        raise ArgumentError(f"unknown target {name!r} (targets are {forms})")
    return kind.make(name, window or Window(), **options)


def check_target(name: str) -> None:
    """Raise :class:`~sealkit.errors.ArgumentError` unless ``name`` names a
    target (a name of the right form may still name nothing: ``model:nope``)."""
    make_target(name).close()


def counterpart(name: str) -> str:
    """The target a ``--diff`` holds ``name`` against: a model to the
    reference (the kernel), the reference to the model of its design."""
    kind = _kind(name)
    if kind is None:
        raise ArgumentError(f"unknown target {name!r} (targets are {', '.join(TARGET_FORMS)})")
    if kind.reference:
        return f"model:{kind.policy(name)}"
    return next(k.names()[0] for k in _KINDS if k.reference)

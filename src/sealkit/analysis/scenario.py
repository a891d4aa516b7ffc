"""Starting scenarios and policy specifications for the analyzer.

A :class:`Scenario` is a policy-agnostic setup trace (op-language text) that
builds a small arena, plus the regions it seals. A :class:`PolicySpec` says
how one sealing design seals a region: which call, with which seal types
(the *seal variant*). The start state of a search is the model after the
setup trace and one seal call per sealed region, made with the policy's own
call, so each design is judged on the same memory, sealed its own way.

Variants (``POLICY[:WORDS]``, words joined with ``+``): seal types, and for
a rule no source settles, the other reading (a ``POLICIES`` entry named
``DESIGN:READING``; the default reading is the bare design name):

==================  =====================================  ======================
policy              seal call                              words
==================  =====================================  ======================
``linux``           ``mseal(addr, len, 0)``                 none
``linux-6.10``      ``mseal(addr, len, 0)``                 none
``linux-6.10.y``    ``mseal(addr, len, 0)``                 none
``proposal-v1``     ``mseal_v1(addr, len, types)``          types ``mseal``,
                                                           ``mprotect``, ``munmap``,
                                                           ``mmap``, ``mremap``
                                                           (default all five);
                                                           reading ``merge-as-coded``
``proposal-v3``     ``mseal_v3(addr, len, types)``, and     types ``seal``, ``base``,
                    ``MAP_SEALABLE`` on the setup mmaps     ``prot_pkey``,
                                                           ``discard_ro_anon``
                                                           (default all four)
``mimmutable``      ``mimmutable(addr, len)``               reading
                                                           ``permissive-advice``
``mimmutable-7.3``  ``mimmutable(addr, len)``               none
``chrome-split``    ``mseal_split(addr, len, seals)``       seals ``unmap``, ``prot``
                                                           (default both); reading
                                                           ``unmap-refuses-discard``
``none``            ``mseal(addr, len, 0)``, which changes  none
                    nothing (the baseline)
==================  =====================================  ======================

So ``proposal-v1:munmap`` is the Oct 2023 RFC with only ``MM_SEAL_MUNMAP``,
``proposal-v1`` the same RFC with all five types, ``chrome-split:unmap``
Chrome's unmap seal alone and ``chrome-split:unmap+unmap-refuses-discard``
the same seal under the other reading of its discard rule. The seal call is
the model policy's own (``Policy.seal_op``).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, replace
from typing import Final

from ..errors import ArgumentError, StateError
from ..flags import PAGE_SIZE, MapFlag, SealV1, SealV3, SplitSeal
from ..layout import Layout
from ..model import POLICIES, AddressSpace
from ..ops import (
    MODEL_BASES,
    Mimmutable,
    Mmap,
    Mseal,
    MsealSplit,
    MsealV1,
    MsealV3,
    Op,
    Step,
    format_step,
    parse_trace,
)
from .properties import Page, PermissionPromise
from .space import Space

__all__ = [
    "DEBATE_POLICIES",
    "DEFAULT_SCENARIO",
    "SCENARIOS",
    "SEAL_TYPES",
    "PolicySpec",
    "Region",
    "Scenario",
    "parse_policy",
    "readings",
]

# --------------------------------------------------------------- policies

SEAL_TYPES: Final[dict[type[Op], type[SealV1] | type[SealV3] | type[SplitSeal] | None]] = {
    Mseal: None,
    Mimmutable: None,
    MsealV1: SealV1,
    MsealV3: SealV3,
    MsealSplit: SplitSeal,
}
"""The seal calls of the op language and the seal-type enum each one takes."""


def _seal_op(policy: str) -> type[Op]:
    """The seal call of a model policy (``Policy.seal_op``)."""
    return POLICIES[policy].seal_op


def _kind(policy: str) -> type[SealV1] | type[SealV3] | type[SplitSeal] | None:
    return SEAL_TYPES.get(_seal_op(policy))


def readings(design: str) -> dict[str, str]:
    """The other readings of ``design``'s unsettled rules: word -> ``POLICIES`` name."""
    return {
        POLICIES[name].reading: name
        for name in POLICIES
        if POLICIES[name].design == design and POLICIES[name].reading
    }


@dataclass(frozen=True, slots=True)
class PolicySpec:
    """A model policy plus the seal variant its scenario seals with.

    ``policy`` is a :data:`~sealkit.model.POLICIES` name, a design or one of
    its readings (``mimmutable:permissive-advice``). ``types`` is the
    seal-type value for designs that have types (``None`` otherwise); it
    defaults to every type the design has.
    """

    policy: str
    types: int | None = None

    @property
    def name(self) -> str:
        """``proposal-v1:munmap``, ``chrome-split:unmap+unmap-refuses-discard``,
        ``linux``: the spelling :func:`parse_policy` reads (types, then the reading)."""
        model = POLICIES[self.policy]
        kind = _kind(self.policy)
        words = []
        if kind is not None and self.types is not None and self.types != _all_types(kind):
            words = [(m.name or "").lower() for m in kind if m.value and self.types & m.value]
        if model.reading:
            words.append(model.reading)
        return f"{model.design}:{'+'.join(words)}" if words else model.design

    @property
    def seal_call(self) -> str:
        """The op-language name of the design's seal call."""
        return _seal_op(self.policy).NAME

    def seal_op(self, addr: int, length: int) -> Op:
        """The call that seals ``[addr, addr+length)`` under this design."""
        call = _seal_op(self.policy)
        if call is MsealV1:
            return MsealV1(addr, length, SealV1(self.types or 0))
        if call is MsealV3:
            return MsealV3(addr, length, SealV3(self.types or 0))
        if call is MsealSplit:
            return MsealSplit(addr, length, SplitSeal(self.types or 0))
        if call is Mimmutable:
            return Mimmutable(addr, length)
        return Mseal(addr, length)

    def seal_variants(self, addr: int, length: int) -> list[Op]:
        """Every seal call an attacker could make on a range: each single
        type and all of them (the design's call with no types: one)."""
        kind = _kind(self.policy)
        if kind is None:
            return [self.seal_op(addr, length)]
        values = [m.value for m in kind if m.value]
        everything = _all_types(kind)
        out = []
        for value in [*values, everything]:
            op = replace(self, types=value).seal_op(addr, length)
            if op not in out:
                out.append(op)
        return out

    def reading_of(self, policy: str) -> PolicySpec:
        """The same design and seal types under another reading (``policy``)."""
        if POLICIES[policy].design != POLICIES[self.policy].design:
            raise ArgumentError(f"{policy!r} is not a reading of {POLICIES[self.policy].design}")
        return PolicySpec(policy, self.types)

    @property
    def map_flags(self) -> MapFlag:
        """Extra mmap flags a mapping needs to be sealable (v3's ``MAP_SEALABLE``)."""
        return MapFlag.SEALABLE if POLICIES[self.policy].map_sealable else MapFlag(0)

    @property
    def promise(self) -> PermissionPromise:
        """What this design promises about the protection of sealed pages.

        No change when the policy refuses every mprotect on a VMA sealed the
        way the scenario seals (:meth:`sealkit.model.Policy.refuses_every_mprotect`,
        downgrades and same-protection no-ops included), else no gain: Linux
        (``mprotect_fixup()`` tests the seal before ``newflags == oldflags``,
        docs/reference/linux.md rule 7), OpenBSD today (``uvm_map_protect()``,
        uvm_map.c rev 1.346), v1 with ``MM_SEAL_MPROTECT``, v3 with
        ``MM_SEAL_PROT_PKEY`` and Chrome's protection seal promise no change;
        OpenBSD 7.3 (RW -> R allowed), the designs sealed without their
        protection type and ``none`` are checked for no gain, the weakest
        reading. It comes from the policy, never from its name.
        """
        seal = self.types if self.types is not None else 1
        if POLICIES[self.policy].refuses_every_mprotect(seal):
            return PermissionPromise.NO_CHANGE
        return PermissionPromise.NO_GAIN


DEBATE_POLICIES: Final = (
    "none",
    "proposal-v1:munmap",
    "proposal-v1",
    "proposal-v1:merge-as-coded",
    "proposal-v3",
    "chrome-split:unmap",
    "chrome-split",
    "chrome-split:unmap-refuses-discard",
    "mimmutable-7.3",
    "mimmutable",
    "mimmutable:permissive-advice",
    "linux-6.10",
    "linux",
)
"""The designs of the 2023 debate in the order it met them (the default table
rows), each unsettled rule's other reading right after its default."""


def _all_types(kind: type[SealV1] | type[SealV3] | type[SplitSeal]) -> int:
    value = 0
    for member in kind:
        value |= member.value
    return value


def parse_policy(text: str) -> PolicySpec:
    """``"proposal-v1:munmap"`` -> ``PolicySpec("proposal-v1", SealV1.MUNMAP)``;
    ``"chrome-split:unmap+unmap-refuses-discard"`` ->
    ``PolicySpec("chrome-split:unmap-refuses-discard", SplitSeal.UNMAP)``.

    The design must be one of the model's (:data:`sealkit.model.POLICIES`);
    the words after ``:`` are its seal types and at most one of its readings.
    Raises :class:`~sealkit.errors.ArgumentError` with the accepted spellings.
    """
    if not isinstance(text, str):
        raise ArgumentError(f"a policy is a string such as 'linux', not {type(text).__name__}")
    name, colon, variant = text.strip().partition(":")
    designs = [n for n in POLICIES if not POLICIES[n].reading]
    if name not in designs:
        raise ArgumentError(f"unknown policy {name!r} (known: {', '.join(designs)})")
    others = readings(name)
    kind = _kind(name)
    types = {(m.name or "").lower(): m.value for m in kind if m.value} if kind else {}
    known = ", ".join([*types, *(["all"] if types else []), *others]) or "none"
    if colon and not variant.strip():
        raise ArgumentError(f"empty variant for {name} (known: {known})")
    value = 0
    policy = name
    for word in filter(None, re.split(r"[+|,]", variant)):
        if word in others:
            if policy != name:
                raise ArgumentError(f"{name}: one reading at a time (got {policy} and {word})")
            policy = others[word]
        elif word == "all" and kind is not None:
            value |= _all_types(kind)
        elif word in types:
            value |= types[word]
        elif not types and not others:
            raise ArgumentError(f"policy {name!r} has no seal types or readings (got ':{variant}')")
        else:
            raise ArgumentError(
                f"unknown seal type or reading {word!r} for {name} (known: {known})"
            )
    if kind is None:
        return PolicySpec(policy)
    return PolicySpec(policy, value or _all_types(kind))


# -------------------------------------------------------------- scenarios


@dataclass(frozen=True, slots=True)
class Region:
    """A named run of arena pages ``[start, start+pages)`` the scenario builds."""

    name: str
    start: int
    pages: int
    sealed: bool
    what: str

    @property
    def end(self) -> int:
        """One past the last page."""
        return self.start + self.pages


@dataclass(frozen=True, slots=True)
class Scenario:
    """A starting point for the search.

    ``setup`` is an op-language trace (model bases) that builds the arena
    window ``[0, pages)``; ``regions`` names what it built, and the
    ``sealed`` ones are sealed afterwards with the policy's own call.
    ``heap_pages`` is how far ``brk`` may move the break (the heap window).
    """

    name: str
    description: str
    pages: int
    setup: str
    regions: tuple[Region, ...]
    heap_pages: int = 2

    @property
    def protected(self) -> frozenset[Page]:
        """The pages the scenario seals (the properties are checked there)."""
        return frozenset(("p", p) for r in self.regions if r.sealed for p in range(r.start, r.end))

    def setup_ops(self, spec: PolicySpec) -> list[Op]:
        """The setup trace for ``spec`` (``MAP_SEALABLE`` added where needed),
        then one seal call per sealed region."""
        extra = spec.map_flags
        out: list[Op] = []
        for step in parse_trace(self.setup, source=f"scenario {self.name}"):
            op = step.op
            if isinstance(op, Mmap) and extra:
                op = replace(op, flags=MapFlag(op.flags | extra))
            out.append(op)
        for region in self.regions:
            if region.sealed:
                seal = spec.seal_op(
                    MODEL_BASES.arena + region.start * PAGE_SIZE, region.pages * PAGE_SIZE
                )
                if seal is not None:
                    out.append(seal)
        return out

    def files(self) -> dict[str, bool]:
        """Files the setup maps: name -> whether it is only ever opened read-only."""
        found: dict[str, bool] = {}
        for step in parse_trace(self.setup):
            op = step.op
            if isinstance(op, Mmap) and op.file is not None:
                found[op.file] = found.get(op.file, True) and op.file_ro
        return found

    def build(self, spec: PolicySpec) -> tuple[Space, list[Step]]:
        """Run the setup on a fresh model under ``spec``; returns the space and
        the steps with results. Raises :class:`~sealkit.errors.StateError`
        if a setup call fails (the design cannot build this scenario).
        """
        space: Space = AddressSpace(policy=spec.policy)
        steps: list[Step] = []
        for op in self.setup_ops(spec):
            result = space.apply(op)
            step = Step(op, result)
            steps.append(step)
            if result < 0:
                raise StateError(
                    f"scenario {self.name!r} cannot be built under {spec.name}: "
                    f"{format_step(step).strip()}"
                )
        return space, steps

    def start_layout(self, space: Space) -> Layout:
        """The arena window of ``space`` as an exact-VMA layout."""
        return space.layout("p", 0, self.pages)


DEFAULT_SCENARIO: Final = Scenario(
    name="default",
    description=(
        "12-page arena: an unsealed rw neighbour, a sealed read-only anonymous region written "
        "before sealing, a sealed read-only private file region modified before sealing, a hole, "
        "a sealed read-write anonymous region, an unsealed rw neighbour, a sealed executable "
        "file region (text, mapped from a read-only descriptor), a hole"
    ),
    pages=12,
    setup="""\
mmap     p0 3p rw- private|anon|fixed
write    p0 3p
mprotect p1 2p r--
mmap     p3 2p rw- private|fixed file=f1
write    p3 2p
mprotect p3 2p r--
mmap     p6 3p rw- private|anon|fixed
write    p6 3p
mmap     p9 2p r-x private|fixed file=f2:ro
""",
    regions=(
        Region("neighbour", 0, 1, False, "unsealed anonymous rw, written"),
        Region("ro-anon", 1, 2, True, "anonymous, written while rw, then r--"),
        Region("ro-file", 3, 2, True, "private file f1, written while rw (CoW), then r--"),
        Region("hole", 5, 1, False, "unmapped"),
        Region("rw-anon", 6, 2, True, "anonymous rw, written"),
        Region("neighbour", 8, 1, False, "unsealed anonymous rw, written"),
        Region("text", 9, 2, True, "private file f2 r-x from a read-only descriptor"),
        Region("hole", 11, 1, False, "unmapped"),
    ),
)
"""The default scenario: one sealed region of each interesting kind."""

SCENARIOS: Final = {DEFAULT_SCENARIO.name: DEFAULT_SCENARIO}

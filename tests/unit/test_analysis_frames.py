"""The two facts about calls the search's reductions rest on, checked on the model.

* **locality**: a call changes only the pages it names and the pages mapping
  the same file or shared object (VMA boundaries next to them may move, a
  merge; page attributes elsewhere never change);
* **call frames** (``alphabet.EFFECTS``): a call never changes what its
  frame says it cannot (mlock never moves, re-protects or rewrites a page;
  madvise never changes a mapping or a protection; ...).

Checked for every design on states a few calls away from the default
scenario, for a seeded sample of the whole alphabet.
"""

from __future__ import annotations

import random

import pytest

from sealkit.analysis import parse_policy
from sealkit.analysis.alphabet import EFFECTS
from sealkit.analysis.analyzer import make_problem
from sealkit.analysis.properties import PageFact, Property, page_facts
from sealkit.analysis.scenario import DEFAULT_SCENARIO
from sealkit.analysis.space import Space
from sealkit.ops import Op, format_op, parse_trace

WINDOWS = (("p", -1, DEFAULT_SCENARIO.pages + 1), ("h", -1, DEFAULT_SCENARIO.heap_pages + 1))


def facts(space: Space) -> dict[tuple[str, int], PageFact]:
    return page_facts([space.layout(z, lo, hi) for z, lo, hi in WINDOWS])


def flags(space: Space) -> dict[tuple[str, int], frozenset[str]]:
    """Per-page VmFlags, except ``gu``: a guard install marks the whole VMA
    (``VM_MAYBE_GUARD``, sticky), pages it does not name included, so it is
    not local (and a guard install does not commute with a split of its VMA)."""
    out = {}
    for z, lo, hi in WINDOWS:
        for page, run, _ in space.layout(z, lo, hi).pages():
            out[(z, page)] = run.flags - {"gu"}
    return out


def aliases(
    f: dict[tuple[str, int], PageFact], pages: frozenset[tuple[str, int]]
) -> set[tuple[str, int]]:
    objects = {
        (f[p].backing, f[p].obj)
        for p in pages
        if p in f and (f[p].shared or f[p].backing != "anon")
    }
    return {p for p, x in f.items() if (x.backing, x.obj) in objects}


@pytest.mark.parametrize(
    "policy", ["linux", "none", "proposal-v1:munmap", "chrome-split:unmap", "mimmutable-7.3"]
)
def test_calls_are_local_and_stay_in_their_frames(policy: str) -> None:
    rng = random.Random(f"frames {policy}")
    problem, _ = make_problem(DEFAULT_SCENARIO, parse_policy(policy))
    alphabet = problem.alphabet
    states = [problem.start]
    for _ in range(6):  # a few states one or two calls away
        s = rng.choice(states).copy()
        s.apply(rng.choice(alphabet.ops))
        states.append(s)
    checked = 0
    for state in states:
        before, before_flags = facts(state), flags(state)
        for i in rng.sample(range(len(alphabet.ops)), 120):
            op, named = alphabet.ops[i], alphabet.windows[i]
            if named is None:
                continue
            twin = state.copy()
            twin.apply(op)
            after, after_flags = facts(twin), flags(twin)
            reach = set(named) | aliases(before, named) | aliases(after, named)
            where = f"{policy}: {format_op(op)}"
            for page in set(before) | set(after):
                if page in reach:
                    continue
                a, b = before.get(page), after.get(page)
                assert a == b, f"{where} changed unnamed page {page}: {a} -> {b}"
                assert before_flags.get(page) == after_flags.get(page), f"{where} flags {page}"
            frame = EFFECTS[op.NAME]
            for page in reach:
                a, b = before.get(page), after.get(page)
                if a is None or b is None:
                    assert a is b or Property.MAPPING in frame, f"{where} (un)mapped {page}"
                    continue
                if Property.MAPPING not in frame:
                    assert a.identity() == b.identity(), f"{where} remapped {page}"
                if Property.PERMISSION not in frame:
                    assert a.prot == b.prot, f"{where} re-protected {page}"
                if Property.CONTENT not in frame:
                    assert a.token == b.token, f"{where} changed data at {page}"
            checked += 1
    assert checked > 500


MAPPING_CALLS = ("mmap", "munmap", "mprotect", "pkey_mprotect", "mremap", "brk")


def without_tokens(space: Space) -> tuple[object, ...]:
    out = []
    for z, lo, hi in WINDOWS:
        for run in space.layout(z, lo, hi).runs:
            out.append((z, run.start, run.end, run.prot, run.shared, run.backing, run.obj,
                        run.pgoff, run.seal, run.flags))  # fmt: skip
    return tuple(out)


@pytest.mark.parametrize("policy", ["linux", "none", "chrome-split:unmap", "mimmutable"])
def test_mapping_calls_do_not_read_page_data(policy: str) -> None:
    # Two states that differ only in page data (the attacker overwrote or
    # discarded writable pages): every mapping/permission call does the same
    # to mappings and protections in both.
    rng = random.Random(f"data-blind {policy}")
    problem, _ = make_problem(DEFAULT_SCENARIO, parse_policy(policy))
    ops = [op for op in problem.alphabet.ops if op.NAME in MAPPING_CALLS]
    base = problem.start
    variants = []
    for text in ("write p0 1p z\nwrite p6 3p z", "madvise p6 3p dontneed", "write p7 2p y"):
        twin = base.copy()
        for step in parse_trace(text):
            twin.apply(step.op)
        assert without_tokens(twin) == without_tokens(base), text
        variants.append(twin)
    for op in rng.sample(ops, 400):
        a = base.copy()
        ra = a.apply(op)
        for variant in variants:
            b = variant.copy()
            assert b.apply(op) == ra, format_op(op)
            assert without_tokens(b) == without_tokens(a), format_op(op)


def state(space: Space) -> tuple[object, ...]:
    return (*(space.vma_view(z, lo, hi) for z, lo, hi in WINDOWS), space.backing_view())


def refused(space: Space, op: Op) -> bool:
    """Whether ``op`` fails without changing anything."""
    twin = space.copy()
    return twin.apply(op) < 0 and state(twin) == state(space)


def test_refusals_depend_on_the_madvise_hint_bits() -> None:
    # The search remembers calls that fail without a change per view of the
    # pages they name, with every vm_flags bit. Leaving out the bits that
    # only record a hint (VM_MERGEABLE, VM_DONTDUMP, ...) would be wrong:
    # madvise over a hole sets the hint on the mapped part and fails with
    # ENOMEM, a change where the bit was clear and none where it was set.
    problem, _ = make_problem(DEFAULT_SCENARIO, parse_policy("linux"))
    (advise,) = (step.op for step in parse_trace("madvise p10 2p mergeable"))
    plain = problem.start
    hinted = plain.copy()
    assert hinted.apply(advise) < 0 and not refused(plain, advise)
    assert refused(hinted, advise)
    # The states differ in p10's VMA: split off, with VM_MERGEABLE.
    assert state(hinted) != state(plain)

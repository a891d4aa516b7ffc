"""Property tests of the model (Hypothesis).

* the VMA model against the independent naive page-map model
  (``naive_model.py``) for random call sequences under every policy: same
  results and the same exact layout after every call (so the same VMA
  boundaries: the store is merged exactly where the kernel merges), and the
  store always sorted, non-overlapping and page-aligned;
* ``apply`` never raises, whatever the op's values;
* copies are independent; ``state_key`` is canonical;
* each policy's declared atomic refusals change nothing;
* the building blocks (the chunked VMA store, content run lists) against
  plain lists and dicts.

The slow tier (``tests/slow/test_model_cross_slow.py``) runs the cross-check
with many more examples.
"""

from __future__ import annotations

import errno
import itertools

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sealkit import ops as O
from sealkit.fidelity.strategies import traces
from sealkit.flags import Madv, MapFlag, MremapFlag, Prot, SealV1, SealV3, SplitSeal
from sealkit.model import POLICIES, AddressSpace
from sealkit.model import content as C
from sealkit.model.store import VmaStore

from .naive_model import Naive, TooBig

FAST = settings(max_examples=40, deadline=None, suppress_health_check=list(HealthCheck))
WINDOWS = (("p", -2, 12), ("h", -2, 10))


def cross_check(policy: str, trace: list[O.Op]) -> None:
    """Run ``trace`` on both models, comparing after every call."""
    model, naive = AddressSpace(policy), Naive(policy)
    for i, op in enumerate(trace):
        try:
            want = naive.apply(op)
        except TooBig:
            return  # the naive model does not walk huge ranges
        got = model.apply(op)
        shown = "\n".join(O.format_op(o) for o in trace[: i + 1])
        assert got == want, (
            f"{policy}: results differ at the last call\n{shown}\nmodel {got} naive {want}"
        )
        model.check()
        for zone, lo, hi in WINDOWS:
            a, b = model.layout(zone, lo, hi).project(), naive.layout(zone, lo, hi).project()
            assert a == b, (
                f"{policy}: layouts differ\n{shown}\nmodel:\n{a.text()}\nnaive:\n{b.text()}"
            )


@pytest.mark.parametrize("policy", list(POLICIES))
def test_vma_model_matches_naive_page_model(policy: str) -> None:
    @FAST
    @given(traces(policy, pages=8, max_size=18))
    def check(trace: list[O.Op]) -> None:
        cross_check(policy, trace)

    check()


# --------------------------------------------------------------- never raises

U = st.integers(-(1 << 70), 1 << 70)
WILD = st.one_of(
    st.builds(
        O.Mmap, U, U, st.builds(Prot, st.integers(0, (1 << 64) - 1)),
        st.builds(MapFlag, st.integers(0, (1 << 64) - 1)),
        st.none() | st.sampled_from(["f1", "x:ro", ""]), U, st.booleans(),
    ),
    st.builds(O.Munmap, U, U),
    st.builds(O.Mprotect, U, U, st.builds(Prot, st.integers(0, (1 << 64) - 1))),
    st.builds(O.PkeyMprotect, U, U, st.builds(Prot, st.integers(0, 7)), U),
    st.builds(O.Mremap, U, U, U, st.builds(MremapFlag, st.integers(0, (1 << 64) - 1)), U),
    st.builds(O.Madvise, U, U, U),
    st.builds(O.ProcessMadvise, U, st.lists(st.tuples(U, U), max_size=3).map(tuple)),
    st.builds(O.Mseal, U, U, U),
    st.builds(O.MsealV1, U, U, st.builds(SealV1, st.integers(0, (1 << 64) - 1)), U),
    st.builds(O.MsealV3, U, U, st.builds(SealV3, st.integers(0, (1 << 64) - 1)), U),
    st.builds(O.Mimmutable, U, U),
    st.builds(O.MsealSplit, U, U, st.builds(SplitSeal, st.integers(0, (1 << 64) - 1))),
    st.builds(O.Brk, U),
    st.builds(O.Mlock, U, U, st.booleans()),
    st.builds(O.Munlock, U, U),
    st.builds(O.Write, U, U, st.none() | st.text(max_size=3)),
    st.just(O.Fork()),
)  # fmt: skip


@pytest.mark.parametrize("policy", list(POLICIES))
def test_apply_never_raises_and_returns_an_int(policy: str) -> None:
    @FAST
    @given(traces(policy, pages=6, max_size=4), st.lists(WILD, max_size=12))
    def check(setup: list[O.Op], wild: list[O.Op]) -> None:
        space = AddressSpace(policy)
        for op in setup + wild:
            result = space.apply(op)
            assert isinstance(result, int)
            assert result == O.ELSEWHERE or -4095 <= result < 1 << 64
        space.check()
        space.layout("p", -4, 12)
        hash(space.state_key("p", -4, 12))

    check()


def test_unknown_op_is_enosys() -> None:
    class Frobnicate(O.Op):
        pass

    assert AddressSpace().apply(Frobnicate()) == -errno.ENOSYS


# --------------------------------------------------------- copies, state keys


@FAST
@given(traces("linux", pages=8, max_size=10), traces("linux", pages=8, max_size=10))
def test_copies_are_independent(first: list[O.Op], then: list[O.Op]) -> None:
    space = AddressSpace()
    for op in first:
        space.apply(op)
    before = space.layout("p", -2, 12), space.state_key("p", -2, 12)
    twin = space.copy()
    for op in then:
        twin.apply(op)
    assert (space.layout("p", -2, 12), space.state_key("p", -2, 12)) == before
    replay = space.copy()
    for op in then:
        replay.apply(op)
    assert replay.state_key("p", -2, 12) == twin.state_key("p", -2, 12)


def test_state_key_is_canonical_and_sees_content() -> None:
    def build(extra: str) -> AddressSpace:
        s = AddressSpace()
        for step in O.parse_trace(extra + "mmap p0 4p rw- shared|anon|fixed\nwrite p0 2p\n"):
            s.apply(step.op)
        return s

    # A shmem object created and thrown away first renumbers nothing visible.
    a = build("")
    b = build("mmap p8 1p rw- shared|anon|fixed\nmunmap p8 1p\n")
    assert a.state_key("p", 0, 8) == b.state_key("p", 0, 8)
    c = build("")
    c.apply(O.Write(O.MODEL_BASES.arena, 4096, "z"))
    assert c.state_key("p", 0, 8) != a.state_key("p", 0, 8)
    assert len({a.state_key("p", 0, 8), b.state_key("p", 0, 8), c.state_key("p", 0, 8)}) == 2


# ----------------------------------------------------------- atomic refusals

REFUSAL_KEY = {
    O.Munmap: "munmap",
    O.Mprotect: "mprotect",
    O.PkeyMprotect: "pkey_mprotect",
    O.Mremap: "mremap",
    O.Madvise: "madvise",
    O.Brk: "brk",
}


@pytest.mark.parametrize("policy", [p for p in POLICIES if p != "none"])
def test_atomic_refusals_change_nothing(policy: str) -> None:
    """Where a policy declares an operation's refusal atomic, a refusal *caused
    by a seal* leaves every page as it was (VMA boundaries aside: Linux
    keeps a leading split). A refusal is the seal's doing when the same call
    on a copy that ignores seals (policy ``none``) answers differently."""
    pol = POLICIES[policy]

    @FAST
    @given(traces(policy, pages=8, max_size=18))
    def check(trace: list[O.Op]) -> None:
        space = AddressSpace(policy)
        for op in trace:
            key = REFUSAL_KEY.get(type(op))
            if isinstance(op, O.Mmap) and op.flags & MapFlag.FIXED:
                key = "mmap MAP_FIXED"
            before = space.copy()
            result = space.apply(op)
            if key is None or result != -pol.refusal:
                continue
            blind = before.copy()
            blind.policy = POLICIES["none"]
            if blind.apply(op) == result:
                continue  # refused for another reason (a permission, say)
            kind = pol.refusals[key][1]
            if kind.startswith("atomic"):
                for zone, lo, hi in WINDOWS:
                    was = before.layout(zone, lo, hi).project().merged()
                    now = space.layout(zone, lo, hi).project().merged()
                    assert was == now, f"{policy} {O.format_op(op)}: declared {kind}"

    check()


@FAST
@given(traces("linux", pages=8, max_size=14))
def test_none_policy_is_linux_without_seals(trace: list[O.Op]) -> None:
    """``none`` runs a trace as ``linux`` runs it with the mseal calls taken
    out, and never answers EPERM."""
    none, linux = AddressSpace("none"), AddressSpace("linux")
    for op in trace:
        got = none.apply(op)
        assert got != -errno.EPERM, O.format_op(op)
        if not isinstance(op, O.Mseal):
            assert got == linux.apply(op), O.format_op(op)
    assert none.layout("p", -2, 12) == linux.layout("p", -2, 12)


# -------------------------------------------------------------- the store


class Item:
    __slots__ = ("end", "start")

    def __init__(self, start: int, end: int) -> None:
        self.start, self.end = start, end

    def __repr__(self) -> str:
        return f"[{self.start},{self.end})"


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 400), st.integers(0, 30), st.integers(0, 3)), max_size=60))
def test_store_matches_a_sorted_list(edits: list[tuple[int, int, int]]) -> None:
    store: VmaStore[Item] = VmaStore()
    plain: list[Item] = []
    snapshots = []
    for lo, span, count in edits:
        hi = lo + span
        # Remove items starting in [lo, hi), insert `count` 1-wide items inside the gap.
        plain = [it for it in plain if not lo <= it.start < hi]
        taken = {x for it in plain for x in range(it.start, it.end)}
        new = [Item(x, x + 1) for x in range(lo, hi) if x not in taken][:count]
        if new and any(n.start < it.end and it.start < n.end for n in new for it in plain):
            continue
        store.replace(lo, hi, new)
        plain = sorted(plain + new, key=lambda it: it.start)
        store.check()
        assert [(i.start, i.end) for i in store] == [(i.start, i.end) for i in plain]
        snapshots.append((store.copy(), [(i.start, i.end) for i in plain]))
        for probe in (lo, hi, lo + 1, 0, 500):
            after = [i for i in plain if i.end > probe]
            assert store.find(probe) is (after[0] if after else None)
            inside = [i for i in plain if i.start <= probe < i.end]
            assert store.lookup(probe) is (inside[0] if inside else None)
            earlier = [i for i in plain if i.start < probe]
            assert store.before(probe) is (earlier[-1] if earlier else None)
        assert list(store.range(lo, hi + 1)) == [
            i for i in plain if i.end > lo and i.start < hi + 1
        ]
        for a, b in ((lo, hi + 1), (lo, lo), (hi, lo), (0, 500)):
            assert store.between(a, b) == list(store.range(a, b))
    for twin, items in snapshots:  # earlier copies never saw later edits
        assert [(i.start, i.end) for i in twin] == items


def test_store_scales_in_chunks() -> None:
    store: VmaStore[Item] = VmaStore([Item(2 * i, 2 * i + 1) for i in range(10_000)])
    store.check()
    assert len(store) == 10_000
    twin = store.copy()
    store.replace(5000, 5002, [])
    assert len(store) == 9_999 and len(twin) == 10_000
    assert store.lookup(5000) is None and twin.lookup(5000) is not None
    # across chunk boundaries, from inside an item and from a gap
    for a, b in ((0, 20_000), (3, 9_000), (4_999, 5_004), (6_399, 6_402), (19_998, 30_000)):
        assert store.between(a, b) == list(store.range(a, b))
        assert [(i.start, i.end) for i in twin.between(a, b)] == [
            (i.start, i.end) for i in twin.range(a, b)
        ]


# ------------------------------------------------------------ content runs

KINDS = st.one_of(st.sampled_from(["F", "0", "x", "#", "?F"]), st.integers(0, 51))


def _pages(runs: C.Runs, n: int = 40) -> list[str | None]:
    return [C.token(C.find(runs, o), o) if C.find(runs, o) is not None else None for o in range(n)]


@settings(max_examples=300, deadline=None)
@given(
    st.lists(
        st.tuples(
            st.sampled_from(["put", "drop", "lazy", "unlazy"]),
            st.integers(0, 40),
            st.integers(0, 40),
            KINDS,
        ),
        max_size=12,
    )
)
def test_content_runs_match_a_page_dict(edits: list[tuple[str, int, int, C.Kind]]) -> None:
    runs: C.Runs = ()
    pages: dict[int, str] = {}
    for what, a, b, kind in edits:
        lo, hi = min(a, b), max(a, b)
        if what == "put":
            runs = C.put(runs, lo, hi, kind)
            for o in range(lo, hi):
                pages[o] = C.token(kind, o)
        elif what == "drop":
            runs = C.drop(runs, lo, hi)
            for o in range(lo, hi):
                pages.pop(o, None)
        elif what == "lazy":
            runs = C.edit(runs, lo, hi, C.lazy)
            for o in range(lo, hi):
                if o in pages and pages[o] not in ("#", "0"):
                    pages[o] = "?"
        assert all(x[0] < x[1] for x in runs)
        assert all(x[1] <= y[0] for x, y in itertools.pairwise(runs))
        if what != "unlazy":
            assert _pages(runs) == [pages.get(o) for o in range(40)]
    # cut/move/concat keep every page's token.
    left, right = C.cut(runs, 0, 17), C.cut(runs, 17, 40)
    assert _pages(C.concat(left, right, 17)) == _pages(runs)
    assert _pages(C.move(runs, 5), 45)[5:] == _pages(runs)


def test_pattern_runs_give_each_page_its_zone_letter() -> None:
    for zone_page in (-3, 0, 7, 25, 26, 1000):
        kind = C.pattern_base(zone_page, 4)
        assert C.token(kind, 4) == O.write_token(None, zone_page)
        assert C.token(kind, 5) == O.write_token(None, zone_page + 1)


def test_free_and_pageout_advice_are_modelled_through_lazy_pages() -> None:
    s = AddressSpace()
    for step in O.parse_trace("mmap p0 2p rw- private|anon|fixed\nwrite p0 2p\n"):
        s.apply(step.op)
    s.apply(O.Madvise(O.MODEL_BASES.arena, 8192, Madv.FREE))
    assert s.layout("p", 0, 2).render_content() == "??"
    s.apply(O.Madvise(O.MODEL_BASES.arena, 4096, Madv.POPULATE_WRITE))  # dirtied again
    s.apply(O.Madvise(O.MODEL_BASES.arena, 8192, Madv.PAGEOUT))
    assert s.layout("p", 0, 2).render_content() == "a0"

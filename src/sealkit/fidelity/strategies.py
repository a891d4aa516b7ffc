"""Hypothesis strategies for ops and traces over a small window.

Shared by the model's property tests, the differential fuzzer and the
analyzer. Addresses are page-granular inside a window of the arena zone
(``p0`` .. ``p<pages>``), with a few unaligned, far away, kernel-half and
overflowing values mixed in so argument checking is exercised too; each
policy has its own alphabet (its sealing call, and for ``proposal-v3``
mappings made with ``MAP_SEALABLE``).

    from sealkit.fidelity.strategies import traces
    @given(traces("linux", pages=12))
    def test_something(ops): ...

Some generated calls reach far outside the arena (``0``, the kernel half,
huge lengths): that is their purpose on the model. A kernel executor must
check every range with ``ops.iter_ranges`` before running a call.

Hypothesis is an optional dependency: ``pip install 'sealkit[hypothesis]'``.
"""

from __future__ import annotations

from typing import Final, TypeVar

try:
    from hypothesis import strategies as st
except ModuleNotFoundError as _exc:  # pragma: no cover - depends on the installation
    raise ModuleNotFoundError(
        f"{__name__} needs Hypothesis, an optional dependency: pip install 'sealkit[hypothesis]'",
        name=_exc.name,
    ) from None

from ..flags import (
    PAGE_SIZE,
    Madv,
    MapFlag,
    MclFlag,
    MremapFlag,
    MsFlag,
    Prot,
    SealV1,
    SealV3,
    SplitSeal,
)
from ..ops import (
    MODEL_BASES,
    Brk,
    FilePwrite,
    Fork,
    Ftruncate,
    Madvise,
    Mimmutable,
    Mincore,
    Mlock,
    Mlockall,
    Mmap,
    Mprotect,
    Mremap,
    Mseal,
    MsealSplit,
    MsealV1,
    MsealV3,
    Msync,
    Munlock,
    Munlockall,
    Munmap,
    Op,
    PkeyMprotect,
    Poke,
    ProcessMadvise,
    Punch,
    PwriteMem,
    VmWritev,
    Write,
)

__all__ = ["addresses", "lengths", "ops", "outside_ops", "prots", "seal_ops", "traces"]

T = TypeVar("T")
U64: Final = (1 << 64) - 1
FAR: Final = (0, 0xFFFF_FFFF_FFFF_F000, 0xFFFF_8000_0000_0000, 0x7FFF_FFFF_F000)
HUGE: Final = (U64, U64 - 4094, U64 - 4095, 1 << 47, 1 << 62)

FILES: Final = ("f1", "f2")


def _odd(usual: st.SearchStrategy[T], odd: st.SearchStrategy[T]) -> st.SearchStrategy[T]:
    # About one value in sixteen is odd: enough to exercise argument checks
    # without drowning the sequences that build interesting layouts. (A plain
    # one_of would draw both sides equally often.)
    return _dice(1, 16).flatmap(lambda is_odd: odd if is_odd else usual)


def _dice(hits: int, sides: int) -> st.SearchStrategy[bool]:
    """True about ``hits`` times in ``sides`` (shrinks towards False)."""
    return st.integers(0, sides - 1).map(lambda n: n >= sides - hits)


def addresses(pages: int = 16, zone: str = "p", odd: bool = True) -> st.SearchStrategy[int]:
    """Page addresses of the window ``[0, pages)`` of ``zone`` (sometimes just
    outside it); with ``odd``, now and then an unaligned one or one far
    outside the arena (NULL, the kernel half, the top user page)."""
    base = MODEL_BASES.base(zone)
    inside = st.integers(0, pages - 1).map(lambda p: (base + p * PAGE_SIZE) & U64)
    edge = st.sampled_from([-1, pages, pages + 1]).map(lambda p: (base + p * PAGE_SIZE) & U64)
    page = _dice(1, 10).flatmap(lambda e: edge if e else inside)
    if not odd:
        return page
    unaligned = st.builds(
        lambda p, off: (base + p * PAGE_SIZE + off) & U64,
        st.integers(0, pages),
        st.sampled_from([1, 2048, 4095]),
    )
    return _odd(page, st.one_of(unaligned, st.sampled_from(FAR)))


def lengths(pages: int = 16, odd: bool = True) -> st.SearchStrategy[int]:
    """Lengths of ``0 .. pages+2`` pages; with ``odd``, sometimes a byte more
    or less, or a huge/overflowing value."""
    whole = (
        _dice(1, 7)
        .flatmap(
            lambda wide: st.integers(0, pages + 2) if wide else st.integers(1, max(pages // 2, 1))
        )
        .map(lambda n: n * PAGE_SIZE)
    )
    if not odd:
        return whole
    ragged = st.builds(
        lambda n, d: max(n * PAGE_SIZE + d, 0), st.integers(0, pages), st.sampled_from([1, -1])
    )
    return _odd(whole, st.one_of(ragged, st.sampled_from(HUGE)))


def prots(odd: bool = True) -> st.SearchStrategy[Prot]:
    """Protections: the usual ones, sometimes PROT_SEM/GROWSDOWN or junk bits."""
    usual = st.sampled_from(
        [Prot.NONE, Prot.READ, Prot.READ, Prot.READ | Prot.WRITE, Prot.READ | Prot.WRITE,
         Prot.READ | Prot.EXEC, Prot.WRITE]
    )  # fmt: skip
    if not odd:
        return usual
    weird = st.sampled_from(
        [Prot.SEM, Prot.GROWSDOWN | Prot.READ, Prot(0x10), Prot.GROWSDOWN | Prot.GROWSUP]
    )
    return _odd(usual, weird)


def _seal_call(policy: str) -> type[Op]:
    """The sealing call of ``policy``'s world (``Policy.seal_op``)."""
    from ..model import POLICIES  # noqa: PLC0415 (the model is loaded when used)

    return POLICIES[policy].seal_op if policy in POLICIES else Mseal


def _sealable(policy: str) -> bool:
    """Whether ``policy``'s mappings need ``MAP_SEALABLE`` to be sealed."""
    from ..model import POLICIES  # noqa: PLC0415

    return policy in POLICIES and POLICIES[policy].map_sealable


def _mmap_flags(policy: str, odd: bool) -> st.SearchStrategy[MapFlag]:
    kind = st.sampled_from(
        [
            MapFlag.PRIVATE | MapFlag.ANONYMOUS,
            MapFlag.PRIVATE | MapFlag.ANONYMOUS,
            MapFlag.PRIVATE | MapFlag.ANONYMOUS,
            MapFlag.SHARED | MapFlag.ANONYMOUS,
            MapFlag.PRIVATE,
            MapFlag.SHARED,
        ]
    )
    place = st.sampled_from([MapFlag.FIXED] * 8 + [MapFlag.FIXED_NOREPLACE, MapFlag(0)])
    extras = [MapFlag(0)] * 12 + [MapFlag.POPULATE, MapFlag.LOCKED, MapFlag.NORESERVE]
    extras += [MapFlag.STACK, MapFlag.GROWSDOWN]
    if odd:
        extras += [MapFlag.SHARED_VALIDATE, MapFlag.SYNC, MapFlag.HUGETLB]
    if _sealable(policy):
        extras += [MapFlag.SEALABLE] * 16
    extra = st.sampled_from(extras)
    return st.builds(lambda k, p, e: MapFlag(int(k) | int(p) | int(e)), kind, place, extra)


def _mmaps(policy: str, pages: int, odd: bool) -> st.SearchStrategy[Op]:
    def build(
        addr: int, length: int, prot: Prot, flags: MapFlag, file: str, ro: bool, off: int
    ) -> Mmap:
        if flags & MapFlag.ANONYMOUS:
            return Mmap(addr, length, prot, flags)
        return Mmap(addr, length, prot, flags, file, off * PAGE_SIZE, ro)

    return st.builds(
        build,
        addresses(pages, odd=odd),
        lengths(pages, odd=odd),
        prots(odd),
        _mmap_flags(policy, odd),
        st.sampled_from(FILES),
        st.booleans(),
        st.sampled_from([0, 0, 0, 0, 1, 2, 60]),
    )


def seal_ops(policy: str, pages: int = 16, odd: bool = True) -> st.SearchStrategy[Op]:
    """The sealing call of ``policy``'s world, over the window."""
    a, n = addresses(pages, odd=odd), lengths(pages, odd=odd)
    call = _seal_call(policy)
    if call is MsealV1:
        return st.builds(MsealV1, a, n, st.builds(SealV1, st.integers(1 if not odd else 0, 0x1F)))
    if call is MsealV3:
        return st.builds(MsealV3, a, n, st.builds(SealV3, st.integers(1 if not odd else 0, 0xF)))
    if call is Mimmutable:
        return st.builds(Mimmutable, a, n)
    if call is MsealSplit:
        return st.builds(
            MsealSplit, a, n, st.builds(SplitSeal, st.integers(1 if not odd else 0, 3))
        )
    flags = _odd(st.just(0), st.just(1)) if odd else st.just(0)
    return st.builds(Mseal, a, n, flags)


ADVICE: Final = [a for a in Madv if a not in (Madv.HWPOISON, Madv.SOFT_OFFLINE)]


def ops(policy: str = "linux", pages: int = 16, odd: bool = True) -> st.SearchStrategy[Op]:
    """One call of any kind, weighted towards the ones that change the layout."""
    a, n = addresses(pages, odd=odd), lengths(pages, odd=odd)
    advice: st.SearchStrategy[int] = st.sampled_from(ADVICE)
    if odd:
        advice = _odd(advice, st.sampled_from([12345, -1, 1 << 32 | 4, 100]))
    heap = addresses(max(pages // 2, 4), zone="h", odd=False)
    flags = st.builds(
        MremapFlag, st.sampled_from([0, 1, 1, 3, 3, 3, 5, 7, 4, 2] + ([8] if odd else []))
    )
    mremap = st.builds(Mremap, a, n, n, flags, addresses(pages, odd=False))
    seal = seal_ops(policy, pages, odd)
    mmaps = _mmaps(policy, pages, odd)
    writes = st.builds(Write, a, n, st.none() | st.sampled_from("xyz"))
    return st.one_of(
        mmaps,
        mmaps,
        mmaps,
        writes,
        writes,
        st.builds(Munmap, a, n),
        st.builds(Mprotect, a, n, prots(odd)),
        st.builds(PkeyMprotect, a, n, prots(odd), st.sampled_from([-1, -1, 0, 1])),
        mremap,
        st.builds(Madvise, a, n, advice),
        st.builds(Madvise, a, n, advice),
        st.builds(
            ProcessMadvise,
            advice,
            st.lists(st.tuples(a, n), max_size=3).map(tuple),
        ),
        seal,
        seal,
        seal,
        seal,
        st.builds(Munmap, a, n),
        st.builds(Mprotect, a, n, prots(odd)),
        st.builds(Madvise, a, n, advice),
        mremap,
        st.builds(Brk, st.one_of(heap, st.just(0))),
        st.builds(Mlock, a, n, st.booleans()),
        st.builds(Munlock, a, n),
        st.just(Fork()),
        outside_ops(pages, odd),
        outside_ops(pages, odd),
    )


def outside_ops(pages: int = 16, odd: bool = True) -> st.SearchStrategy[Op]:
    """The calls sealing does not cover (issue 14): writers from outside
    (``pwrite_mem``, ``vm_writev``, ``poke``) over the window, changes to the
    trace's files (offsets and sizes around the file's 64 pages, now and then
    a page cut in part or a negative value), ``msync``, ``mincore``,
    ``mlockall``/``munlockall``."""
    a, n = addresses(pages, odd=odd), lengths(pages, odd=odd)
    tag = st.none() | st.sampled_from("xyz")
    file = st.sampled_from(FILES)
    ro = _dice(1, 8) if odd else st.just(False)
    pages_at = st.integers(0, 70).map(lambda p: p * PAGE_SIZE)
    ragged = st.builds(
        lambda p, d: p * PAGE_SIZE + d, st.integers(0, 70), st.sampled_from([1, 2048])
    )
    negative = st.sampled_from([U64, U64 - 4095, (1 << 63) - 4096])
    size = _odd(pages_at, st.one_of(ragged, negative)) if odd else pages_at
    span = st.integers(0, 8).map(lambda p: p * PAGE_SIZE)
    ms = st.sampled_from([1, 4, 2, 3, 6, 0] + ([5, 8, -1] if odd else []))
    mcl = st.sampled_from([1, 1, 2, 3, 5, 7, 6] + ([0, 4, 8] if odd else []))
    return st.one_of(
        st.builds(PwriteMem, a, n, tag),
        st.builds(VmWritev, a, n, tag),
        st.builds(Poke, a, n, tag),
        st.builds(FilePwrite, file, size, span, tag, ro),
        st.builds(Ftruncate, file, size, ro),
        st.builds(Punch, file, size, _odd(span, st.one_of(span, negative)), ro),
        st.builds(Msync, a, n, st.builds(MsFlag, ms)),
        st.builds(Mincore, a, n),
        st.builds(Mlockall, st.builds(MclFlag, mcl)),
        st.just(Munlockall()),
    )


def traces(
    policy: str = "linux", pages: int = 16, max_size: int = 25, odd: bool = True
) -> st.SearchStrategy[list[Op]]:
    """Call sequences for ``policy`` over a window of ``pages`` pages: a
    mapping over most of the window, up to two more valid mappings (and
    stores into them) first, then any calls."""
    base = MODEL_BASES.arena
    flags = MapFlag.PRIVATE | MapFlag.ANONYMOUS | MapFlag.FIXED
    if _sealable(policy):
        flags |= MapFlag.SEALABLE
    first = st.builds(
        lambda n, prot, fill: (
            [Mmap(base, n * PAGE_SIZE, prot, flags)]
            + ([Write(base, n * PAGE_SIZE)] if fill else [])
        ),
        st.integers(max(pages - 4, 1), pages),
        st.sampled_from([Prot.READ | Prot.WRITE, Prot.READ | Prot.WRITE, Prot.READ]),
        st.booleans(),
    )
    more = st.lists(st.tuples(_mmaps(policy, pages, odd=False), st.booleans()), max_size=2).map(
        lambda maps: [
            op
            for m, fill in maps
            for op in ([m, Write(m.addr, m.length)] if fill else [m])  # type: ignore[attr-defined]
        ]
    )
    rest = st.lists(ops(policy, pages, odd), max_size=max_size)
    return st.builds(lambda a, b, c: a + b + c, first, more, rest)

"""The audit's per-process work grows linearly with the number of mappings.

Each layout below is built at n and at 4n mappings and classified whole
(as ``sealkit maps`` does); the steps sealkit executes (lines of its own
code, :mod:`tests.steps`) must grow about fourfold, never sixteenfold, and
stay under a fixed number per mapping. The layouts are the ones that made
the audit quadratic: a run of contiguous anonymous mappings (what
``freeze()`` makes), an ELF file mapped page by page where the loader would
not place it, a ``.bss`` split into many pieces, many placements of one
library and many different libraries.

Every test runs twice: with the C classifier (``_fastsys.classify_kinds``,
when it was built) and with the Python one it must agree with.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sealkit._os import elf as elf_file
from sealkit._os.elf import LoadLayout, Segment
from sealkit._os.procfs import Vma
from sealkit.host import audit
from sealkit.host import classify as classify_module
from tests.steps import count_steps
from tests.unit.naive_classify import naive_classify

PAGE = 4096
PER_MAPPING = 150  # steps per mapping allowed; the quadratic code took 1,700 to 5,500 at n = 1000

LAYOUT = LoadLayout.of(64, True, 3, (
    Segment(1, 4, 0x0000, 0x0000, 0x0800, 0x0800, 0x1000),
    Segment(1, 5, 0x1000, 0x1000, 0x2000, 0x2000, 0x1000),
    Segment(1, 4, 0x3000, 0x3000, 0x1000, 0x1000, 0x1000),
    Segment(1, 6, 0x4DB0, 0x5DB0, 0x1260, 0x4260, 0x1000),
    Segment(elf_file.PT_GNU_RELRO, 4, 0x4DB0, 0x5DB0, 0x1250, 0x1250, 1),
))  # fmt: skip


def vma(start: int, pages: int, perms: str, path: str = "", inode: int = 0,
        offset: int = 0, flags: frozenset[str] = frozenset()) -> Vma:  # fmt: skip
    return Vma(start, start + pages * PAGE, perms, offset, "fe:00" if inode else "00:00",
               inode, path, flags)  # fmt: skip


def lib(base: int, inode: int = 9, path: str = "/usr/lib/libx.so") -> list[Vma]:
    return [
        vma(base + 0x0000, 1, "r--p", path, inode, 0x0000),
        vma(base + 0x1000, 2, "r-xp", path, inode, 0x1000),
        vma(base + 0x3000, 1, "r--p", path, inode, 0x3000),
        vma(base + 0x5000, 2, "r--p", path, inode, 0x4000),
        vma(base + 0x7000, 1, "rw-p", path, inode, 0x6000),
    ]


SEALED = frozenset({"sl"})


@pytest.fixture(autouse=True, params=["c", "python"])
def classifier(request: pytest.FixtureRequest) -> Iterator[str]:
    """Classify with the C rules, then with the Python ones."""
    if request.param == "c" and classify_module._classify_kinds is None:
        pytest.skip("the C classifier was not built (no compiler, or no 128-bit integers)")
    saved = classify_module._FORCE_PYTHON
    classify_module._FORCE_PYTHON = request.param == "python"
    try:
        yield request.param
    finally:
        classify_module._FORCE_PYTHON = saved


def frozen(n: int) -> list[Vma]:
    """A library, then n contiguous one-page anonymous mappings (freeze())."""
    out = lib(0x10000000)
    top = out[-1].end
    out += [vma(top + i * PAGE, 1, "r--p", flags=SEALED) for i in range(n)]
    return out


def elf_as_data(n: int) -> list[Vma]:
    """n pages alternating anonymous rw, a page of an ELF file, anonymous r."""
    out = []
    for i in range(n):
        start = 0x20000000 + i * PAGE
        if i % 3 == 1:
            out.append(vma(start, 1, "r--p", "/usr/bin/python3", 7, (1 + i // 3) * PAGE, SEALED))
        else:
            out.append(vma(start, 1, "rw-p" if i % 3 == 0 else "r--p", flags=SEALED))
    return out


def split_bss(n: int) -> list[Vma]:
    """A library whose .bss (n pages) is split into n pieces."""
    big = LoadLayout.of(64, True, 3, (*LAYOUT.segments[:3],
        Segment(1, 6, 0x4DB0, 0x5DB0, 0x1260, 0x4260 + n * PAGE, 0x1000),
        LAYOUT.segments[4]))  # fmt: skip
    LAYOUTS["/usr/lib/libbig.so"] = big
    out = lib(0x30000000, 11, "/usr/lib/libbig.so")
    top = out[-1].end
    out += [vma(top + i * PAGE, 1, "rw-p" if i % 2 else "r--p", flags=SEALED) for i in range(n)]
    return out


def many_placements(n: int) -> list[Vma]:
    """One library placed n / 5 times (dlmopen), back to back."""
    out: list[Vma] = []
    for k in range(n // 5):
        out += lib(0x40000000 + k * 0x10000)
    return out


def many_libraries(n: int) -> list[Vma]:
    """n / 5 different libraries."""
    out: list[Vma] = []
    for k in range(n // 5):
        path = f"/usr/lib/lib{k}.so"
        LAYOUTS[path] = LAYOUT
        out += lib(0x50000000 + k * 0x10000, 1000 + k, path)
    return out


LAYOUTS: dict[str, object] = {"/usr/lib/libx.so": LAYOUT}


def layout_of(v: Vma) -> object:
    if v.path == "/usr/bin/python3":
        return LAYOUT  # an ELF file, never placed here
    return LAYOUTS.get(v.path, "not-elf")


BUILDERS: dict[str, Callable[[int], list[Vma]]] = {
    "frozen": frozen,
    "elf_as_data": elf_as_data,
    "split_bss": split_bss,
    "many_placements": many_placements,
    "many_libraries": many_libraries,
}


def steps_to_classify(vmas: list[Vma], cap: int) -> tuple[list[str], int]:
    return count_steps(lambda: audit.classify(vmas, layout_of), cap)


@pytest.mark.parametrize("name", sorted(BUILDERS))
def test_classification_is_linear(name: str) -> None:
    n = 1000
    small, big = BUILDERS[name](n), BUILDERS[name](4 * n)
    _, steps_small = steps_to_classify(small, PER_MAPPING * len(small))
    kinds_big, steps_big = steps_to_classify(big, PER_MAPPING * len(big))
    assert len(kinds_big) == len(big)
    # n log n at most: 4n log 4n / (n log n) is below 5 for these n
    assert steps_big <= 5 * steps_small, (steps_small, steps_big)


@pytest.mark.parametrize("name", sorted(BUILDERS))
def test_the_layouts_are_classified_as_the_simple_rules_say(name: str) -> None:
    vmas = BUILDERS[name](60)
    assert audit.classify(vmas, layout_of) == naive_classify(vmas, layout_of)
    some = list(range(0, len(vmas), 7))
    assert audit.classify(vmas, layout_of, some) == naive_classify(vmas, layout_of, some)


# --- random layouts: the remembered answers are the simple rules' answers ----------

NO_LOADS = LoadLayout.of(64, True, 1, ())  # an object file: no PT_LOAD
# two PT_LOADs that start on the same page, from the same file page
SHARED_PAGE = LoadLayout.of(64, True, 3, (
    Segment(1, 4, 0x0000, 0x0000, 0x0800, 0x0800, 0x1000),
    Segment(1, 6, 0x0800, 0x0800, 0x0800, 0x2800, 0x1000),
))  # fmt: skip
FILES = {1: LAYOUT, 2: "not-elf", 3: "unknown", 4: NO_LOADS, 5: SHARED_PAGE}


def _random_layout_of(v: Vma) -> object:
    return FILES[v.inode]


piece = st.one_of(
    # a placement of file 1 (or of another file with the same headers), maybe partial
    st.tuples(st.just("lib"), st.sampled_from([1, 4, 5]), st.integers(1, 5)),
    st.tuples(
        st.just("file"), st.sampled_from(sorted(FILES)),
        st.sampled_from([0x0000, 0x1000, 0x3000, 0x4000, 0x6000]),
        st.sampled_from(["r--p", "r-xp", "rw-p", "---p", "r--s"]),
    ),
    st.tuples(
        st.just("anon"), st.sampled_from(["", "", "", "[heap]", "[anon:x]", "[stack]"]),
        st.sampled_from(["r--p", "rw-p", "---p", "rw-s"]),
        st.sampled_from([frozenset(), frozenset({"gd"})]),
    ),
)  # fmt: skip


def _build(pieces: list[tuple[object, ...]], gaps: list[int]) -> list[Vma]:
    out: list[Vma] = []
    at = 0x10000000
    for (kind, *args), gap in zip(pieces, gaps, strict=False):
        at += gap * PAGE
        if kind == "lib":
            inode, count = args
            placed = lib(at, inode, f"/lib/f{inode}")[: int(count)]  # type: ignore[call-overload]
            out += placed
            at = placed[-1].end
        elif kind == "file":
            inode, offset, perms = args
            out.append(vma(at, 1, perms, f"/lib/f{inode}", inode, offset))  # type: ignore[arg-type]
            at += PAGE
        else:
            path, perms, flags = args
            out.append(vma(at, 1, perms, path, flags=flags))  # type: ignore[arg-type]
            at += PAGE
    return out


@settings(max_examples=300, deadline=None)
@given(st.lists(piece, max_size=25), st.lists(st.sampled_from([0, 0, 0, 1, 3]), min_size=25,
                                             max_size=25))  # fmt: skip
def test_random_layouts_agree_with_the_simple_rules(
    pieces: list[tuple[object, ...]], gaps: list[int]
) -> None:
    vmas = _build(pieces, gaps)
    assert audit.classify(vmas, _random_layout_of) == naive_classify(vmas, _random_layout_of)
    assert audit.classify(vmas) == naive_classify(vmas)


# --- how placements are looked up: by bisection where starts increase, else a set -----


def test_mappings_out_of_address_order_are_placed_as_before() -> None:
    """/proc lists mappings by address; a caller's list may not be. Where the
    starts do not increase, placements are looked up in a set of every file
    mapping (what every order got before bisection was used): the answers
    here are that code's."""
    placed = [*lib(0x10000000), vma(0x10008000, 2, "rw-p")]
    assert audit.classify(placed, layout_of) == naive_classify(placed, layout_of)
    assert audit.classify(placed, layout_of) == [
        "rodata",
        "text",
        "rodata",
        "relro",
        "data",
        "data",
    ]
    assert audit.classify(placed[::-1], layout_of) == [
        "anon",
        "file",
        "file",
        "file",
        "file",
        "rodata",
    ]
    assert audit.classify(placed[2:] + placed[:2], layout_of) == [
        "file", "file", "file", "anon", "rodata", "text",
    ]  # fmt: skip


def test_many_first_offsets_are_indexed_alike() -> None:
    """Objects whose first PT_LOAD lies at six different file offsets: more
    than are indexed one offset at a time, so the last ones go through the
    index of every file mapping; each is placed as the simple rules say."""
    layouts: dict[int, object] = {}
    vmas: list[Vma] = []
    for k in range(6):
        off = k * 0x1000
        layouts[100 + k] = LoadLayout.of(64, True, 3, (
            Segment(1, 5, off, 0, 0x1000, 0x1000, 0x1000),
            Segment(1, 6, off + 0x1000, 0x1000, 0x800, 0x3000, 0x1000),
        ))  # fmt: skip
        base = 0x20000000 + k * 0x100000
        vmas += [
            vma(base, 1, "r-xp", f"/lib/o{k}", 100 + k, off),
            vma(base + PAGE, 1, "rw-p", f"/lib/o{k}", 100 + k, off + 0x1000),
            vma(base + 2 * PAGE, 2, "rw-p"),
        ]

    def layout(v: Vma) -> object:
        return layouts[v.inode]

    assert audit.classify(vmas, layout) == naive_classify(vmas, layout)
    assert audit.classify(vmas, layout) == ["text", "data", "data"] * 6

"""What the analyzer needs of the model: object names that are identities."""

from __future__ import annotations

from sealkit.analysis.properties import check_mapping
from sealkit.model import AddressSpace
from sealkit.ops import Fork, parse_trace


def run(space: AddressSpace, text: str) -> list[int]:
    return [space.apply(step.op) for step in parse_trace(text)]


def test_a_new_anon_vma_never_takes_an_old_objects_name() -> None:
    # Regression: layouts used to number objects by first appearance in each
    # call, so after unmapping the first page a fresh anon_vma at the same
    # address and offset was "av1" again and the replacement went unseen.
    space = AddressSpace("none")
    run(space, "mmap p0 3p rw- private|anon|fixed\nwrite p0 3p")
    before = space.layout("p", 0, 3)
    assert run(space, "munmap p0 1p\nmmap p1 2p rw- private|anon|fixed\nwrite p1 2p z")[0] == 0
    after = space.layout("p", 0, 3)
    assert before.runs[0].obj != after.runs[0].obj
    v = check_mapping(before, after, [("p", 1), ("p", 2)])
    assert v is not None and v.kinds == {"replaced"}


def test_names_are_stable_across_calls_and_copies() -> None:
    space = AddressSpace("linux")
    run(space, "mmap p0 4p rw- private|anon|fixed\nwrite p0 4p\nmmap p6 2p rw- shared|anon|fixed")
    first = space.layout("p", 0, 8)
    run(space, "munmap p0 1p")  # the first object now appears second... it must keep its name
    later = space.copy().layout("p", 0, 8)
    assert [r.obj for r in later.runs] == [r.obj for r in first.runs]


def test_a_fork_child_keeps_its_parents_object_names() -> None:
    space = AddressSpace("linux")
    run(space, "mmap p0 2p rw- private|anon|fixed\nwrite p0 2p")
    before = space.layout("p", 0, 2)
    assert space.apply(Fork()) == 0
    assert check_mapping(before, space.layout("p", 0, 2), [("p", 0), ("p", 1)]) is None


def test_dontunmap_move_onto_the_page_before_terminates() -> None:
    # Regression: remap_move() resumed at the end of the moved part; the moved
    # page merged back into a VMA spanning the range, so the same VMA was
    # found again and moved backwards forever (found by the analyzer's search).
    for policy in ("linux", "none"):
        space = AddressSpace(policy)
        [mapped, moved] = run(
            space, "mmap p0 3p rw- private|anon|fixed\nmremap p1 1p 1p maymove|fixed|dontunmap p0"
        )
        assert moved == mapped  # moved to p0
        runs = space.layout("p", -4, 4).runs
        # Nothing was moved below the arena; pages 0-2 are still mapped.
        assert runs[0].start == 0 and runs[-1].end == 3

"""Integrity properties on hand-built layouts (the analyzer's judges)."""

from __future__ import annotations

import pytest

from sealkit.analysis.properties import (
    PermissionPromise,
    Property,
    check,
    check_content,
    check_mapping,
    check_permission,
)
from sealkit.layout import Layout

# Before: [0,1) unsealed neighbour; [1,3) sealed read-only anon with data;
# [3,5) sealed read-only private file pages modified before sealing;
# [5,6) hole; [6,8) sealed rw anon.
BEFORE = Layout.parse(
    """
    [0,1) rw-p anon#a1@0 a
    [1,3) r--p,sl anon#a1@1 bc
    [3,5) r--p,sl file:f1@0 de
    [6,8) rw-p,sl anon#a2@6 gh
    """,
    hi=8,
)


def after(text: str) -> Layout:
    return Layout.parse(text, hi=8)


UNCHANGED = after(
    """
    [0,1) rw-p anon#a1@0 a
    [1,3) r--p,sl anon#a1@1 bc
    [3,5) r--p,sl file:f1@0 de
    [6,8) rw-p,sl anon#a2@6 gh
    """
)


@pytest.mark.parametrize("prop", list(Property))
def test_unchanged_layout_keeps_every_property(prop: Property) -> None:
    assert check(prop, BEFORE, UNCHANGED, promise=PermissionPromise.NO_CHANGE) is None


def test_unsealed_neighbour_may_change_freely() -> None:
    changed = after(
        """
        [0,1) rwxp anon#a9@0 z
        [1,3) r--p,sl anon#a1@1 bc
        [3,5) r--p,sl file:f1@0 de
        [6,8) rw-p,sl anon#a2@6 gh
        """
    )
    for prop in Property:
        assert check(prop, BEFORE, changed, promise=PermissionPromise.NO_CHANGE) is None


def test_mapping_replaced_by_another_object() -> None:
    # MAP_FIXED over the first sealed page: a new anonymous object, zero page.
    replaced = after(
        """
        [0,2) ---p anon#a7@0 00
        [2,3) r--p,sl anon#a1@2 c
        [3,5) r--p,sl file:f1@0 de
        [6,8) rw-p,sl anon#a2@6 gh
        """
    )
    v = check_mapping(BEFORE, replaced)
    assert v is not None
    assert v.pages == (("p", 1),)
    assert v.kinds == {"replaced"}
    assert "anon#a1@1 private -> anon#a7@1 private" in v.details[0]


def test_mapping_unmapped_and_moved_offset() -> None:
    moved = after(
        """
        [0,1) rw-p anon#a1@0 a
        [3,5) r--p,sl file:f1@1 de
        [6,8) rw-p,sl anon#a2@6 gh
        """
    )
    v = check_mapping(BEFORE, moved)
    assert v is not None
    assert v.pages == (("p", 1), ("p", 2), ("p", 3), ("p", 4))
    assert v.kinds == {"unmapped", "replaced"}


def test_mapping_private_to_shared_is_a_different_mapping() -> None:
    shared = after(
        """
        [0,1) rw-p anon#a1@0 a
        [1,3) r--p,sl anon#a1@1 bc
        [3,5) r--s,sl file:f1@0 FF
        [6,8) rw-p,sl anon#a2@6 gh
        """
    )
    v = check_mapping(BEFORE, shared)
    assert v is not None and v.pages == (("p", 3), ("p", 4))


def test_mapping_ignores_object_names_the_layout_does_not_carry() -> None:
    # The kernel side cannot name anonymous objects: obj None compares equal to None only.
    kernel_before = BEFORE.project()
    kernel_after = UNCHANGED.project()
    assert check_mapping(kernel_before, kernel_after) is None


def test_permission_gain_is_always_a_violation() -> None:
    gained = after(
        """
        [0,1) rw-p anon#a1@0 a
        [1,3) rw-p,sl anon#a1@1 bc
        [3,5) r--p,sl file:f1@0 de
        [6,8) rw-p,sl anon#a2@6 gh
        """
    )
    for promise in PermissionPromise:
        v = check_permission(BEFORE, gained, promise=promise)
        assert v is not None
        assert v.kinds == {"gained w"}
        assert v.details == ("p1: r-- -> rw-", "p2: r-- -> rw-")


def test_permission_downgrade_only_breaks_a_no_change_promise() -> None:
    downgraded = after(
        """
        [0,1) rw-p anon#a1@0 a
        [1,3) r--p,sl anon#a1@1 bc
        [3,5) r--p,sl file:f1@0 de
        [6,8) r--p,sl anon#a2@6 gh
        """
    )
    assert check_permission(BEFORE, downgraded, promise=PermissionPromise.NO_GAIN) is None
    v = check_permission(BEFORE, downgraded, promise=PermissionPromise.NO_CHANGE)
    assert v is not None and v.kinds == {"changed"} and v.pages == (("p", 6), ("p", 7))


def test_permission_unmapped_page_is_a_mapping_matter() -> None:
    gone = after(
        """
        [0,1) rw-p anon#a1@0 a
        [3,5) r--p,sl file:f1@0 de
        [6,8) rw-p,sl anon#a2@6 gh
        """
    )
    assert check_permission(BEFORE, gone, promise=PermissionPromise.NO_CHANGE) is None
    assert check_mapping(BEFORE, gone) is not None


def test_permission_replacement_with_more_rights_counts_by_address() -> None:
    replaced = after(
        """
        [0,1) rw-p anon#a1@0 a
        [1,3) rwxp anon#a5@1 00
        [3,5) r--p,sl file:f1@0 de
        [6,8) rw-p,sl anon#a2@6 gh
        """
    )
    v = check_permission(BEFORE, replaced)
    assert v is not None and v.kinds == {"gained wx"}


@pytest.mark.parametrize(
    ("tokens", "kind"),
    [("F", "reverted to file"), ("0", "zeroed"), ("#", "discarded (guard)"),
     ("?", "discarded (undefined until reclaim)"), ("z", "overwritten"),
     ("!", "discarded (past the end of the file: SIGBUS)")],
)  # fmt: skip
def test_content_changes_are_classified(tokens: str, kind: str) -> None:
    changed = after(
        f"""
        [0,1) rw-p anon#a1@0 a
        [1,3) r--p,sl anon#a1@1 bc
        [3,5) r--p,sl file:f1@0 {tokens}e
        [6,8) rw-p,sl anon#a2@6 gh
        """
    )
    v = check_content(BEFORE, changed)
    assert v is not None
    assert v.pages == (("p", 3),)
    assert v.kinds == {kind}


def test_content_of_writable_sealed_pages_is_not_promised() -> None:
    # Linux lets MADV_DONTNEED zero a sealed rw mapping (test_seal_discard_ro_anon_on_rw):
    # the program could have written it itself.
    zeroed = after(
        """
        [0,1) rw-p anon#a1@0 a
        [1,3) r--p,sl anon#a1@1 bc
        [3,5) r--p,sl file:f1@0 de
        [6,8) rw-p,sl anon#a2@6 00
        """
    )
    assert check_content(BEFORE, zeroed) is None


def test_content_unmapped_counts_as_discarded() -> None:
    gone = after(
        """
        [0,1) rw-p anon#a1@0 a
        [3,5) r--p,sl file:f1@0 de
        [6,8) rw-p,sl anon#a2@6 gh
        """
    )
    v = check_content(BEFORE, gone)
    assert v is not None and v.kinds == {"discarded (unmapped)"} and len(v.pages) == 2


def test_explicit_protected_set_checks_unsealed_pages_too() -> None:
    # Under the `none` baseline nothing is sealed: the scenario says which pages to judge.
    plain = Layout.parse("[0,2) r--p anon#a1@0 bc", hi=2)
    zeroed = Layout.parse("[0,2) r--p anon#a1@0 0c", hi=2)
    assert check_content(plain, zeroed) is None  # nothing sealed, nothing protected
    v = check_content(plain, zeroed, protected=[("p", 0), ("p", 1)])
    assert v is not None and v.pages == (("p", 0),)


def test_violation_summary_names_property_kind_and_pages() -> None:
    v = check(Property.CONTENT, BEFORE, after("[0,1) rw-p anon#a1@0 a\n[1,3) r--p,sl anon#a1@1 0c"))
    assert v is not None
    assert v.summary().startswith("content integrity broken (")
    assert "at p1,p3,p4" in v.summary()

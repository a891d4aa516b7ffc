"""The worker's raw snapshots as TraceRun layouts (no kernel needed)."""

from __future__ import annotations

from sealkit.fidelity.executor.protocol import RawRun, RawSnap, raw_to_layout, snapshot_layouts
from sealkit.fidelity.target import Window
from sealkit.layout import Run

P1: tuple[RawRun, ...] = ((0, 4, 3, False, "anon", None, False, None, "abcd"),)
P2: tuple[RawRun, ...] = (
    (0, 2, 3, False, "anon", None, False, None, "ab"),
    (2, 4, 1, False, "anon", None, True, None, "cd"),
)
H: tuple[RawRun, ...] = ((0, 1, 3, False, "[heap]", None, False, frozenset({"dd"}), "0"),)


def test_layouts_follow_the_snapshots_and_share_what_did_not_change() -> None:
    cache: dict[RawRun, Run] = {}
    snaps: list[RawSnap | int | None] = [None, (P1, H), 0, (P2, tuple(H)), (P2, H)]
    lays = snapshot_layouts(snaps, ("p", "h"), Window(16, 8), cache)
    assert lays[0] is None
    first, same, second, third = lays[1], lays[2], lays[3], lays[4]
    assert first is not None and second is not None and third is not None
    assert same is first  # "0": the worker's unchanged step
    assert first["p"] == raw_to_layout(P1, "p", 0, 16)
    assert second["p"] == raw_to_layout(P2, "p", 0, 16) and second["p"].hi == 16
    assert second["h"] is first["h"] and first["h"].hi == 8  # the heap did not change
    assert third["p"] is second["p"]  # equal raw runs: the same Layout
    assert third["h"].runs[0].flags == frozenset({"dd"})
    assert second["p"].runs[1].seal == "sl" and second["p"].runs[1].prot == 1
    assert len(cache) == 4  # each distinct raw run became a Run once
    again = snapshot_layouts([(P1, H)], ("p", "h"), Window(16, 8), cache)[0]
    assert again is not None and again["p"].runs[0] is first["p"].runs[0]

"""Helpers for the model tests: run trace text, compare layouts.

Traces use the op language (``sealkit.ops``), results after ``=`` are
asserted. Layouts compare in the text form of ``sealkit.layout`` projected to
what the probe run observed through /proc/self/smaps (no object names, no
anonymous page offsets), so an expected layout reads like the probe's
"layout after" plus the page contents.
"""

from __future__ import annotations

import textwrap

from sealkit.layout import Layout
from sealkit.model import AddressSpace
from sealkit.ops import format_result, format_step, parse_trace


def run(space: AddressSpace, text: str) -> list[int]:
    """Apply every call of ``text``; assert the results written after ``=``."""
    results = []
    for step in parse_trace(textwrap.dedent(text)):
        got = space.apply(step.op)
        if step.result is not None:
            assert got == step.result, (
                f"{format_step(step)}\n  got {format_result(step.op, got)} "
                f"under {space.policy.name}\n{space.layout('p', 0, 16).picture()}"
            )
        space.check()
        results.append(got)
    return results


def make(text: str = "", policy: str = "linux") -> AddressSpace:
    """A fresh space with ``text`` applied."""
    space = AddressSpace(policy)
    if text:
        run(space, text)
    return space


def view(space: AddressSpace, lo: int = 0, hi: int = 16, zone: str = "p") -> Layout:
    """The exact-VMA layout as the probe sees it."""
    return space.layout(zone, lo, hi).project()


def expect(space: AddressSpace, text: str, lo: int = 0, hi: int = 16, zone: str = "p") -> None:
    """Assert the exact-VMA layout of ``[lo, hi)`` is ``text`` (one run per line)."""
    want = Layout.parse(textwrap.dedent(text).strip(), zone, lo, hi)
    got = view(space, lo, hi, zone)
    assert got == want, f"\nexpected:\n{want.text()}\ngot:\n{got.text()}\n{got.picture()}"


def ascii(space: AddressSpace, lo: int = 0, hi: int = 16, zone: str = "p") -> tuple[str, str]:
    """``(render(), render_content())``: one character per page, like the
    kernel's VMA harness (a letter per VMA, uppercase when sealed; then the
    content tokens, ``-`` where unmapped)."""
    lay = space.layout(zone, lo, hi)
    return lay.render(), lay.render_content()


def data(space: AddressSpace, lo: int = 0, hi: int = 16, zone: str = "p") -> str:
    """The content tokens of ``[lo, hi)`` (``-`` unmapped)."""
    return space.layout(zone, lo, hi).render_content()

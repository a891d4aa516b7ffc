"""What the analyzer needs of an address space (the model's interface,
CONTRIBUTING "The model's interface"): four methods, nothing else."""

from __future__ import annotations

from collections.abc import Hashable
from typing import Protocol

from ..layout import Layout
from ..ops import Op

__all__ = ["Space"]


class Space(Protocol):
    """An address space the search can drive: ``sealkit.model.AddressSpace``."""

    def apply(self, op: Op) -> int:
        """Run one call; the result in the kernel convention (never raises)."""
        ...

    def copy(self) -> Space:
        """An independent copy."""
        ...

    def state_key(self, zone: str, lo: int, hi: int) -> Hashable:
        """A hashable canonical state of pages ``[lo, hi)`` of ``zone``."""
        ...

    def layout(self, zone: str, lo: int, hi: int) -> Layout:
        """The exact-VMA layout of pages ``[lo, hi)`` of ``zone``."""
        ...

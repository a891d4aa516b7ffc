"""What the analyzer needs of an address space (the model's interface,
CONTRIBUTING "The model's interface"): six methods, nothing else."""

from __future__ import annotations

from collections.abc import Hashable
from typing import Any, Protocol

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

    def vma_view(self, zone: str, lo: int, hi: int) -> tuple[tuple[Any, ...], ...]:
        """Every VMA meeting pages ``[lo, hi)`` of ``zone`` with everything a
        call can read of it: ``(start page, end page, (flags, seal, open file,
        page offset, forked), object, anon_vma, layout name, per-page data)``
        (``AddressSpace.vma_view``)."""
        ...

    def backing_view(self) -> tuple[int, tuple[Any, ...]]:
        """The break and the backing objects' contents (``AddressSpace.backing_view``)."""
        ...

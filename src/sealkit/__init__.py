"""sealkit: memory sealing (``mseal(2)``) for Linux, from Python.

The public API is re-exported here; everything else is private to its module.
"""

from __future__ import annotations

__version__ = "0.1.0"

from .errors import (
    AccessDeniedError,
    ArgumentError,
    ArgumentTypeError,
    InvalidArgumentError,
    KernelError,
    NotSupportedError,
    ParseError,
    ProcessGoneError,
    SealedError,
    SealingDeniedError,
    SealkitError,
    StateError,
    UnmappedError,
    UnsafeTargetError,
)
from .flags import PAGE_SIZE, Madv, MapFlag, MremapFlag, Prot

# --- memory: the safe sealing API (issue 2) ---
from .memory import (
    CodePages,
    Pages,
    PageState,
    SealedMmap,
    Support,
    freeze,
    is_sealed,
    seal,
    seal_mmap,
    sealed_ranges,
    support,
)

# --- hardening (issue 6) ---

__all__ = [
    "PAGE_SIZE",
    "AccessDeniedError",
    "ArgumentError",
    "ArgumentTypeError",
    "CodePages",
    "InvalidArgumentError",
    "KernelError",
    "Madv",
    "MapFlag",
    "MremapFlag",
    "NotSupportedError",
    "PageState",
    "Pages",
    "ParseError",
    "ProcessGoneError",
    "Prot",
    "SealedError",
    "SealedMmap",
    "SealingDeniedError",
    "SealkitError",
    "StateError",
    "Support",
    "UnmappedError",
    "UnsafeTargetError",
    "__version__",
    "freeze",
    "is_sealed",
    "seal",
    "seal_mmap",
    "sealed_ranges",
    "support",
]

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

# --- hardening (issue 6) ---
from .hardening import HardenReport, harden

# --- memory: the safe sealing API (issue 2) ---
from .memory import (
    CodePages,
    Pages,
    PageState,
    SealedFile,
    SealedMmap,
    Support,
    freeze,
    is_sealed,
    map_file,
    seal,
    seal_mmap,
    sealed_ranges,
    support,
)

__all__ = [
    "PAGE_SIZE",
    "AccessDeniedError",
    "ArgumentError",
    "ArgumentTypeError",
    "CodePages",
    "HardenReport",
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
    "SealedFile",
    "SealedMmap",
    "SealingDeniedError",
    "SealkitError",
    "StateError",
    "Support",
    "UnmappedError",
    "UnsafeTargetError",
    "__version__",
    "freeze",
    "harden",
    "is_sealed",
    "map_file",
    "seal",
    "seal_mmap",
    "sealed_ranges",
    "support",
]

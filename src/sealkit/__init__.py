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
# --- hardening (issue 6) ---
from .hardening import HardenReport, harden

__all__ = [
    "PAGE_SIZE",
    "AccessDeniedError",
    "ArgumentError",
    "ArgumentTypeError",
    "HardenReport",
    "InvalidArgumentError",
    "KernelError",
    "Madv",
    "MapFlag",
    "MremapFlag",
    "NotSupportedError",
    "ParseError",
    "ProcessGoneError",
    "Prot",
    "SealedError",
    "SealingDeniedError",
    "SealkitError",
    "StateError",
    "UnmappedError",
    "UnsafeTargetError",
    "__version__",
    "harden",
]

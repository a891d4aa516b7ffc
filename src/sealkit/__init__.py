"""sealkit: memory sealing (``mseal(2)``) for Linux, from Python.

The public API is re-exported here; everything else is private to its module.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

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
# Loaded on first use (PEP 562 module __getattr__): importing memory loads
# ctypes and libc, which costs more start-up time than a whole host audit
# spends in Python; `import sealkit` and every `sealkit` command pay only for
# what they use.
_LAZY: dict[str, str] = dict.fromkeys(
    (
        "CodePages", "Pages", "PageState", "SealedMmap", "Support", "freeze", "is_sealed",
        "seal", "seal_mmap", "sealed_ranges", "support",
    ),
    "memory",
)  # fmt: skip

if TYPE_CHECKING:
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


def __getattr__(name: str) -> object:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{module}", __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *_LAZY})


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

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

# --- hardening (issue 6) and memory, the safe sealing API (issue 2) ---
# Loaded on first use (PEP 562 module __getattr__): they load ctypes, libc and
# the hardening planner, which cost more start-up time than a whole host
# `sealkit audit` spends in Python; `import sealkit` and each `sealkit`
# command pay only for what they use.
_LAZY: dict[str, str] = {
    "HardenReport": "hardening",
    "harden": "hardening",
    **dict.fromkeys(
        (
            "CodePages", "Pages", "PageState", "SealedFile", "SealedMmap", "Support", "freeze",
            "is_sealed", "map_file", "seal", "seal_mmap", "sealed_ranges", "support",
        ),
        "memory",
    ),
}  # fmt: skip

if TYPE_CHECKING:
    from .hardening import HardenReport, harden
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


# Submodules an eager `import sealkit` used to load, still reachable as
# attributes (`sealkit.hardening.hook_reports()` after `import sealkit`).
_SUBMODULES: frozenset[str] = frozenset({"hardening", "memory"})


def __getattr__(name: str) -> object:
    if name in _SUBMODULES:
        return importlib.import_module(f".{name}", __name__)  # sets the attribute
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{module}", __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *_LAZY})


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

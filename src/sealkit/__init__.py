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
    CutShortError,
    InvalidArgumentError,
    KernelError,
    NotSupportedError,
    ParseError,
    ProcessChangedError,
    ProcessGoneError,
    SealedError,
    SealingDeniedError,
    SealkitError,
    StateError,
    TargetRefusedError,
    UnmappedError,
    UnsafeTargetError,
)
from .flags import PAGE_SIZE, Madv, MapFlag, MremapFlag, Prot

# --- the sealing faces (sealkit.sealing) and the mseal probe (sealkit._os.support) ---
# Loaded on first use (PEP 562 module __getattr__): they load ctypes, libc and
# the hardening planner, which cost more start-up time than a whole host
# `sealkit audit` spends in Python; `import sealkit` and each `sealkit`
# command pay only for what they use.
_LAZY: dict[str, str] = {
    "CodePages": "sealing.code",
    "HardenReport": "sealing.hardening",
    "LiveReport": "sealing.live",
    "PageState": "sealing.pages",
    "Pages": "sealing.pages",
    "SealedFile": "sealing.files",
    "SealedMmap": "sealing.mmaps",
    "Support": "_os.support",
    "exec_environment": "sealing.exec.plan",
    "freeze": "sealing.pages",
    "harden": "sealing.hardening",
    "is_sealed": "sealing.questions",
    "map_file": "sealing.files",
    "read_exec_report": "sealing.exec.report",
    "seal": "sealing.entry",
    "seal_mmap": "sealing.mmaps",
    "seal_process": "sealing.live",
    "sealed_ranges": "sealing.questions",
    "support": "_os.support",
}

if TYPE_CHECKING:
    from ._os.support import Support, support
    from .sealing.code import CodePages
    from .sealing.entry import seal
    from .sealing.exec.plan import exec_environment
    from .sealing.exec.report import read_exec_report
    from .sealing.files import SealedFile, map_file
    from .sealing.hardening import HardenReport, harden
    from .sealing.live import LiveReport, seal_process
    from .sealing.mmaps import SealedMmap, seal_mmap
    from .sealing.pages import Pages, PageState, freeze
    from .sealing.questions import is_sealed, sealed_ranges


def __getattr__(name: str) -> object:
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
    "CutShortError",
    "HardenReport",
    "InvalidArgumentError",
    "KernelError",
    "LiveReport",
    "Madv",
    "MapFlag",
    "MremapFlag",
    "NotSupportedError",
    "PageState",
    "Pages",
    "ParseError",
    "ProcessChangedError",
    "ProcessGoneError",
    "Prot",
    "SealedError",
    "SealedFile",
    "SealedMmap",
    "SealingDeniedError",
    "SealkitError",
    "StateError",
    "Support",
    "TargetRefusedError",
    "UnmappedError",
    "UnsafeTargetError",
    "__version__",
    "exec_environment",
    "freeze",
    "harden",
    "is_sealed",
    "map_file",
    "read_exec_report",
    "seal",
    "seal_mmap",
    "seal_process",
    "sealed_ranges",
    "support",
]

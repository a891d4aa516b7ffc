"""sealkit: memory sealing (``mseal(2)``) for Linux, from Python.

The public API is re-exported here; everything else is private to its module.
"""

from __future__ import annotations

import importlib
import sys
import types
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

# --- the sealing faces (sealkit.seal) and the mseal probe (sealkit._os.support) ---
# Loaded on first use (PEP 562 module __getattr__): they load ctypes, libc and
# the hardening planner, which cost more start-up time than a whole host
# `sealkit audit` spends in Python; `import sealkit` and each `sealkit`
# command pay only for what they use.
_LAZY: dict[str, str] = {
    "CodePages": "seal.code",
    "HardenReport": "seal.hardening",
    "PageState": "seal.pages",
    "Pages": "seal.pages",
    "SealedFile": "seal.files",
    "SealedMmap": "seal.mmaps",
    "Support": "_os.support",
    "freeze": "seal.pages",
    "harden": "seal.hardening",
    "is_sealed": "seal.questions",
    "map_file": "seal.files",
    "seal": "seal.entry",
    "seal_mmap": "seal.mmaps",
    "sealed_ranges": "seal.questions",
    "support": "_os.support",
}

if TYPE_CHECKING:
    from ._os.support import Support, support
    from .seal.code import CodePages
    from .seal.entry import seal
    from .seal.files import SealedFile, map_file
    from .seal.hardening import HardenReport, harden
    from .seal.mmaps import SealedMmap, seal_mmap
    from .seal.pages import Pages, PageState, freeze
    from .seal.questions import is_sealed, sealed_ranges


class _Package(types.ModuleType):
    """The class of this module: ``sealkit.seal`` stays the public function.

    The sealing faces live in the subpackage ``sealkit.seal``, and importing a
    submodule binds it as an attribute of its parent: without this,
    ``sealkit.seal(target)`` would become a module after the first lazy
    import. The subpackage is reached with ``from sealkit.seal.NAME import
    ...`` (``sys.modules``); ``import sealkit.seal.NAME as X`` does not work.
    """

    def __setattr__(self, name: str, value: object) -> None:
        if name == "seal" and isinstance(value, types.ModuleType):
            return
        super().__setattr__(name, value)


sys.modules[__name__].__class__ = _Package


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

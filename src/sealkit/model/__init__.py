"""The address-space model: a pure-Python Linux address space under a sealing policy.

::

    from sealkit.model import AddressSpace, POLICIES
    space = AddressSpace(policy="linux")       # zones at ops.MODEL_BASES; nothing mapped
    result = space.apply(op)                   # int, kernel convention; never raises
    lay = space.layout("p", lo, hi)            # exact-VMA Layout of pages [lo, hi)
    twin = space.copy()                        # independent and cheap
    key = space.state_key("p", lo, hi)         # hashable canonical state

Pure: no ctypes, no /proc, no I/O (``tests/unit/test_layers.py`` checks).
"""

from __future__ import annotations

from .policies import POLICIES, Policy
from .space import AddressSpace

__all__ = ["POLICIES", "AddressSpace", "Policy"]

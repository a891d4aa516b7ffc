"""Argument checks shared by the safe sealing API, and its refusals.

Every public function of :mod:`sealkit.sealing` checks what it is given before
any system call: exact ints (not ``bool``, not an ``int`` subclass that
lies), sizes that can be mapped, protections without W^X, contiguous
byte buffers, spans inside a mapping. :func:`refuse` says why an object is
not something sealkit can prove it owns.
"""

from __future__ import annotations

import mmap as _mmap
import operator
from typing import Final, NoReturn

from ..errors import ArgumentError, ArgumentTypeError, StateError, UnsafeTargetError
from ..flags import Prot

PAGE: Final = _mmap.PAGESIZE
"""The running system's page size (sealing works on whole pages)."""

MAX_LENGTH: Final = (1 << 63) - PAGE  # larger lengths cannot be mapped at all
PROTS: Final[dict[str, int]] = {
    "none": int(Prot.NONE),
    "r": int(Prot.READ),
    "rw": int(Prot.READ | Prot.WRITE),
    "rx": int(Prot.READ | Prot.EXEC),
}


def round_up(n: int) -> int:
    return (n + PAGE - 1) // PAGE * PAGE


def exact_int(value: object, name: str) -> int:
    """``value`` as an exact ``int``, or :class:`ArgumentTypeError`.

    ``operator.index`` yields the integer value itself, even for an ``int``
    subclass whose ``__int__`` or ``__index__`` says otherwise, so what is
    checked is what is used.
    """
    if isinstance(value, bool) or not isinstance(value, int):
        raise ArgumentTypeError(f"{name} must be an int, not {type(value).__name__}")
    return operator.index(value)


def check_size(size: object, name: str = "size") -> int:
    size = exact_int(size, name)
    if not 0 < size <= MAX_LENGTH:
        raise ArgumentError(f"{name}={size} must be between 1 and {MAX_LENGTH}")
    return size


def check_prot(prot: object) -> int:
    if not isinstance(prot, str):
        raise ArgumentTypeError(
            f"protection must be one of {sorted(PROTS)}, not {type(prot).__name__}"
        )
    try:
        return PROTS[prot]
    except KeyError:
        raise ArgumentError(
            f"protection must be one of {sorted(PROTS)}, not {prot!r}"
            + (" (W^X: use CodePages for code)" if "x" in prot and "w" in prot else "")
        ) from None


def bytes_like(data: object) -> memoryview:
    """``data`` as a flat byte view, or a typed error (``str`` is not bytes)."""
    if isinstance(data, str):
        raise ArgumentTypeError("data must be bytes-like, not str (encode it first)")
    try:
        view = memoryview(data)  # type: ignore[arg-type]
    except TypeError:
        raise ArgumentTypeError(f"data must be bytes-like, not {type(data).__name__}") from None
    if not view.c_contiguous:
        raise ArgumentError("data must be a contiguous buffer")
    return view.cast("B") if view.format != "B" or view.ndim != 1 else view


def check_offset(offset: object, limit: int) -> int:
    offset = exact_int(offset, "offset")
    if not 0 <= offset <= limit:
        raise ArgumentError(f"offset={offset} is outside 0..{limit}")
    return offset


def check_span(offset: object, size: object, limit: int, what: str) -> tuple[int, int]:
    """``(start, size)`` of a read of ``size`` bytes (``-1``: to the end) at
    ``offset`` inside ``limit`` bytes, or a typed error."""
    start = check_offset(offset, limit)
    size = exact_int(size, "size")
    if size < 0:
        size = limit - start
    if start + size > limit:
        raise ArgumentError(f"[{start}, {start + size}) is outside {what} {limit} bytes")
    return start, size


def no_copy(obj: object) -> NoReturn:
    """``__reduce_ex__`` of the objects that own a mapping: copying or
    pickling one would give two objects the same pages, and the second
    would read, unmap or seal memory the first had unmapped (and someone
    else mapped since)."""
    raise ArgumentTypeError(
        f"cannot copy or pickle a {type(obj).__name__}: it owns a mapping in this process "
        "(copy its bytes with read() instead)"
    )


def uninitialised(obj: object, name: str, slots: tuple[str, ...]) -> NoReturn:
    """``__getattr__`` of those objects: only reached when a slot was never
    set, i.e. ``__init__`` did not run (a subclass that skips it,
    ``cls.__new__(cls)``)."""
    if name in slots:
        raise StateError(
            f"this {type(obj).__name__} was never initialised (its __init__ did not run)"
        )
    raise AttributeError(f"{type(obj).__name__!r} object has no attribute {name!r}")


def refuse(target: object) -> UnsafeTargetError:
    """Why ``target`` is refused, and, for data, the call that gives a sealed
    read-only copy instead (written for the object as ``x``; each one is
    executed by ``tests/kernel/test_memory_robust.py``)."""
    kind = type(target).__name__
    module = type(target).__module__
    copy = "sealkit.freeze(x)"
    if isinstance(target, int):
        why = "an integer address: sealkit cannot know who owns that memory (use sealkit._os.syscalls.mseal at your own risk)"
        copy = ""
    elif isinstance(target, str):
        why = "a str is not bytes, and its buffer lives on the heap"
        copy = "sealkit.freeze(x.encode())"
    elif isinstance(target, bytes | bytearray):
        why = "its buffer lives on the heap, shared with other objects the allocator will free or move"
    elif isinstance(target, memoryview):
        why = "a memoryview does not own its memory; seal the Pages or mmap it came from"
    elif module == "array":
        why = "its buffer lives on the heap and moves when the array grows"
        copy = "sealkit.freeze(x).cast(x.typecode)"
    elif module.startswith("numpy"):
        why = "numpy buffers come from the heap allocator, shared with other objects"
        contiguous = getattr(getattr(target, "flags", None), "c_contiguous", True)
        data = "x" if contiguous else "numpy.ascontiguousarray(x)"
        copy = f"numpy.frombuffer(sealkit.freeze({data}), dtype=x.dtype).reshape(x.shape)"
    elif module == "ctypes" or module.startswith("_ctypes"):
        why = "ctypes buffers come from the heap allocator"
    else:
        why = (
            "only Pages, CodePages and anonymous mmap.mmap objects are known to own "
            "whole pages (for files use sealkit.map_file)"
        )
        copy = ""
    advice = f". Instead, a sealed read-only copy of it (x): {copy}" if copy else ""
    return UnsafeTargetError(f"refusing to seal this {kind}: {why}; nothing was sealed{advice}")


# smaps names a MAP_SHARED|MAP_ANONYMOUS mapping "/dev/zero (deleted)":
# shmem_zero_setup() (mm/shmem.c) backs it with an unlinked shmem file of

from collections.abc import Callable, Sequence
from typing import Any, Literal, TypeAlias, overload

COUNTED_FORMS: int

def syscall(number: int, /, *args: int) -> int: ...
def loaded_objects() -> list[tuple[bytes, int, tuple[tuple[int, ...], ...]]]: ...
def seal_verified(
    maps_fd: int, ranges: list[tuple[int, int, int, int, int, int, int, bytes | None]], /
) -> list[tuple[int, int]] | None: ...

# start, end, perms, offset, dev, inode, path, VmFlags text, sealed indices
_Columns: TypeAlias = tuple[
    list[int], list[int], list[str], list[int], list[str], list[int], list[str], list[bytes],
    list[int],
]  # fmt: skip

@overload
def smaps_columns(data: bytes, columns: Literal[True, 1] = ..., /) -> _Columns | None: ...
@overload
def smaps_columns(data: bytes, columns: Literal[False, 0], /) -> tuple[int, list[int]] | None: ...
@overload
def smaps_columns(
    data: bytes, columns: Literal[2], /
) -> tuple[int, list[int]] | _Columns | None: ...
def maps_json_rows(
    start: Sequence[int],
    end: Sequence[int],
    perms: Sequence[str],
    offset: Sequence[int],
    inode: Sequence[int],
    path: Sequence[str],
    vmflags: Sequence[frozenset[str] | None],
    kinds: Sequence[str],
    sealed_only: bool,
    text_of: Callable[[int, Any], str],
    /,
) -> tuple[str, int, int, int] | None: ...
def read_fd(
    fd: int, chunk: int, size_limit: int, deadline: float, clock_every: int, first: bytes, /
) -> tuple[bytes | None, int]: ...
def classify_kinds(
    start: Sequence[int],
    end: Sequence[int],
    perms: Sequence[str],
    path: Sequence[str],
    dev: Sequence[str],
    inode: Sequence[int],
    vmflags: Sequence[frozenset[str] | None],
    wanted: list[int] | None,
    facts: Callable[[int], int | tuple[Any, ...]],
    kinds: tuple[str, ...],
    /,
) -> list[str] | None: ...
@overload
def read_smaps_layout(
    fd: int, chunk: int, size_limit: int, deadline: float, clock_every: int, first: bytes, /
) -> tuple[bytes | None, int]: ...
@overload
def read_smaps_layout(
    fd: int,
    chunk: int,
    size_limit: int,
    deadline: float,
    clock_every: int,
    first: bytes,
    counted: Literal[True],
    /,
) -> tuple[bytes | None, int, int, bool]: ...
@overload
def sealed_json_rows(
    sealed: tuple[tuple[int, int, str, str, str], ...], text_of: Callable[[int, str], str], /
) -> str | None: ...
@overload
def sealed_json_rows(
    sealed: tuple[tuple[int, int, str, str, str], ...],
    text_of: Callable[[int, str], str],
    kinds: tuple[str, ...],
    row_type: type,
    /,
) -> tuple[str, list[int], list[int]] | None: ...

def syscall(number: int, /, *args: int) -> int: ...
def loaded_objects() -> list[tuple[bytes, int, tuple[tuple[int, ...], ...]]]: ...
def seal_verified(
    maps_fd: int, ranges: list[tuple[int, int, int, int, int, int, int, bytes | None]], /
) -> list[tuple[int, int]] | None: ...
def smaps_columns(
    data: bytes, /
) -> (
    tuple[
        list[int], list[int], list[str], list[int], list[str], list[int], list[str],
        list[bytes], list[int],
    ]
    | None
): ...

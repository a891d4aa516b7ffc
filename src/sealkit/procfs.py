"""Reading ``/proc/PID/maps`` and ``/proc/PID/smaps``.

Parsing is pure (``parse_maps(text)``, ``parse_smaps(text)``) and keyed on
field names; I/O is separate (``read_maps``, ``read_smaps``) and takes a
``procfs`` root so tests can point at recorded trees. Sealing shows up only
in smaps, as ``sl`` in ``VmFlags`` (spec linux-mseal §5); maps has no seal
information, so entries parsed from maps have ``vmflags=None`` and
``sealed=None`` ("unknown"), never ``False``.

OS errors become :class:`~sealkit.errors.ProcessGoneError` or
:class:`~sealkit.errors.AccessDeniedError` at one boundary
(:func:`_read_text`), as psutil does.
"""

from __future__ import annotations

import errno as _errno
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Final

from .errors import (
    AccessDeniedError,
    ArgumentError,
    ArgumentTypeError,
    ParseError,
    ProcessGoneError,
)

__all__ = [
    "Vma",
    "parse_kernel_config",
    "parse_maps",
    "parse_smaps",
    "parse_status",
    "read_kernel_config",
    "read_maps",
    "read_smaps",
    "read_status",
    "resolve_pid",
]


@dataclass(frozen=True, slots=True)
class Vma:
    """One VMA as /proc reports it.

    ``fields`` holds the smaps counters by name (``{"Rss": 12, ...}``, in kB
    as printed; non-numeric values kept as text), including fields this
    module does not know. ``vmflags`` is the set of two-letter VmFlags
    mnemonics, or ``None`` when parsed from maps.
    """

    start: int
    end: int
    perms: str
    offset: int
    dev: str
    inode: int
    path: str
    vmflags: frozenset[str] | None = None
    fields: Mapping[str, int | str] = field(default_factory=dict)

    @property
    def size(self) -> int:
        """Bytes covered."""
        return self.end - self.start

    @property
    def sealed(self) -> bool | None:
        """``True``/``False`` from smaps VmFlags ``sl``; ``None`` when unknown (maps)."""
        return None if self.vmflags is None else "sl" in self.vmflags

    @property
    def readable(self) -> bool:
        return self.perms[0] == "r"

    @property
    def writable(self) -> bool:
        return self.perms[1] == "w"

    @property
    def executable(self) -> bool:
        return self.perms[2] == "x"

    @property
    def shared(self) -> bool:
        return self.perms[3] == "s"


_HEX: Final = frozenset("0123456789abcdefABCDEF")


def _parse_header(line: str, number: int, source: str | None) -> Vma:
    parts = line.split(None, 5)
    if len(parts) < 5:
        raise ParseError(f"malformed mapping header {line!r}", number, source)
    span, perms, offset, dev, inode = parts[:5]
    path = parts[5].strip() if len(parts) == 6 else ""
    start_s, dash, end_s = span.partition("-")
    if (
        not dash
        or not start_s
        or not end_s
        or not set(start_s) <= _HEX
        or not set(end_s) <= _HEX
        or len(perms) != 4
        or not set(offset) <= _HEX
        or ":" not in dev
        or not inode.isdigit()
    ):
        raise ParseError(f"malformed mapping header {line!r}", number, source)
    start, end = int(start_s, 16), int(end_s, 16)
    if end < start:
        raise ParseError(f"mapping ends before it starts: {line!r}", number, source)
    return Vma(start, end, perms, int(offset, 16), dev, int(inode), path)


def _check_text(text: object, source: object) -> None:
    if not isinstance(text, str):
        raise ArgumentTypeError(f"text must be a str, not {type(text).__name__}")
    if source is not None and not isinstance(source, str):
        raise ArgumentTypeError(f"source must be a str or None, not {type(source).__name__}")


def parse_maps(text: str, source: str | None = None) -> list[Vma]:
    """Parse ``/proc/PID/maps`` text. Raises :class:`ParseError` with the line number."""
    _check_text(text, source)
    return [
        _parse_header(line, number, source)
        for number, line in enumerate(text.splitlines(), 1)
        if line.strip()
    ]


def parse_smaps(text: str, source: str | None = None) -> list[Vma]:
    """Parse ``/proc/PID/smaps`` text.

    A line ``Key: value`` belongs to the mapping above it; any other
    non-blank line must be a mapping header. ``VmFlags`` becomes a set;
    every other field is kept under its name. Raises :class:`ParseError`
    (with the line number) on a malformed header or a field before any
    header.
    """
    _check_text(text, source)
    out: list[Vma] = []
    header: Vma | None = None
    fields: dict[str, int | str] = {}
    vmflags: frozenset[str] | None = None

    def flush() -> None:
        if header is not None:
            out.append(
                Vma(header.start, header.end, header.perms, header.offset, header.dev,
                    header.inode, header.path, vmflags if vmflags is not None else frozenset(), fields)
            )  # fmt: skip

    for number, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        key, colon, value = line.partition(":")
        # Field keys never contain spaces; headers always do (before any ':').
        if colon and key and " " not in key and "-" not in key:
            if header is None:
                raise ParseError(f"field {key!r} before any mapping header", number, source)
            value = value.strip()
            if key == "VmFlags":
                vmflags = frozenset(value.split())
            else:
                number_part = value[:-3].strip() if value.endswith(" kB") else value
                fields[key] = int(number_part) if number_part.isdigit() else value
            continue
        flush()
        header = _parse_header(line, number, source)
        fields = {}
        vmflags = None
    flush()
    return out


def resolve_pid(pid: int | str) -> str:
    """``"self"`` or a positive pid, as the /proc path component."""
    if pid == "self":
        return "self"
    if isinstance(pid, bool) or not isinstance(pid, int | str):
        raise ArgumentTypeError(f"pid must be an int or 'self', not {type(pid).__name__}")
    text = str(pid).strip()
    if not text.isdigit() or int(text) <= 0:
        raise ArgumentError(f"pid must be a positive integer or 'self', not {pid!r}")
    return str(int(text))


def _read_text(path: str, pid: str) -> str:
    """Read a /proc file; the one place OS errors become sealkit errors."""
    try:
        with open(path, "rb") as fh:
            return fh.read().decode("utf-8", "surrogateescape")
    except FileNotFoundError:
        raise ProcessGoneError(pid) from None
    except ProcessLookupError:
        raise ProcessGoneError(pid) from None
    except PermissionError:
        raise AccessDeniedError(pid) from None
    except OSError as exc:
        # ESRCH mid-read: the task exited while the kernel generated the text.
        if exc.errno in (_errno.ESRCH, _errno.ENOENT):
            raise ProcessGoneError(pid) from None
        if exc.errno in (_errno.EACCES, _errno.EPERM):
            raise AccessDeniedError(pid) from None
        raise


def _check_root(procfs: object) -> str:
    if not isinstance(procfs, str):
        raise ArgumentTypeError(f"procfs must be a str, not {type(procfs).__name__}")
    if not procfs or "\0" in procfs:
        raise ArgumentError(f"procfs must be a directory path, not {procfs!r}")
    return procfs


def read_maps(pid: int | str = "self", procfs: str = "/proc") -> list[Vma]:
    """Parsed ``/proc/PID/maps`` (no seal information)."""
    procfs = _check_root(procfs)
    name = resolve_pid(pid)
    return parse_maps(_read_text(os.path.join(procfs, name, "maps"), name), f"{procfs}/{name}/maps")


# A mapping header or the VmFlags line: what smaps says about layout and seals.
_LAYOUT_LINE: Final = re.compile(r"^(?:[0-9a-f]+-[0-9a-f]+ .*|VmFlags:.*)$", re.MULTILINE)


def read_smaps(
    pid: int | str = "self", procfs: str = "/proc", *, counters: bool = True
) -> list[Vma]:
    """Parsed ``/proc/PID/smaps``, with ``VmFlags`` (and so ``sealed``).

    ``counters=False`` parses only the mapping lines and ``VmFlags``, leaving
    ``fields`` empty: about three times faster, for callers that need the
    layout and the seal bits only (``harden()``, on the start-up path of
    ``sealkit run``). A ``ParseError``'s line number then counts those lines
    only.
    """
    procfs = _check_root(procfs)
    name = resolve_pid(pid)
    text = _read_text(os.path.join(procfs, name, "smaps"), name)
    if not counters:
        text = "\n".join(_LAYOUT_LINE.findall(text))
    return parse_smaps(text, f"{procfs}/{name}/smaps")


def parse_status(text: str, source: str | None = None) -> dict[str, str]:
    """Parse ``/proc/PID/status`` (``Key:\tvalue`` lines) into ``{key: value}``.

    Values are kept as text (``"Seccomp": "2"``); a line without ``:`` is a
    :class:`ParseError` with its line number.
    """
    _check_text(text, source)
    out: dict[str, str] = {}
    for number, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        key, colon, value = line.partition(":")
        if not colon or not key.strip():
            raise ParseError(f"malformed status line {line!r}", number, source)
        out[key.strip()] = value.strip()
    return out


def read_status(pid: int | str = "self", procfs: str = "/proc") -> dict[str, str]:
    """Parsed ``/proc/PID/status`` (seccomp mode, ``Seccomp_filters``, ...)."""
    procfs = _check_root(procfs)
    name = resolve_pid(pid)
    path = os.path.join(procfs, name, "status")
    return parse_status(_read_text(path, name), path)


def parse_kernel_config(text: str) -> dict[str, str]:
    """Parse a kernel ``.config``: ``{"CONFIG_X": "y" | "m" | "n" | value}``.

    ``# CONFIG_X is not set`` becomes ``"n"``; other comments and blank
    lines are skipped; an option absent from the text is absent from the dict
    (on a real config that means its dependencies were not met).
    """
    _check_text(text, None)
    out: dict[str, str] = {}
    for raw in text.splitlines():
        line = raw.strip()
        if line.startswith("# CONFIG_") and line.endswith(" is not set"):
            out[line[2 : -len(" is not set")]] = "n"
        elif line.startswith("CONFIG_") and "=" in line:
            key, _, value = line.partition("=")
            out[key] = value.strip('"')
    return out


def read_kernel_config(
    release: str, procfs: str = "/proc", boot: str = "/boot"
) -> tuple[dict[str, str], str] | None:
    """The running kernel's config and where it was read from:
    ``/proc/config.gz`` (``CONFIG_IKCONFIG_PROC``) first, then
    ``/boot/config-RELEASE``. ``None`` when neither is readable.
    """
    procfs = _check_root(procfs)
    boot = _check_root(boot)
    if not isinstance(release, str) or "/" in release or "\0" in release:
        raise ArgumentError(f"not a kernel release: {release!r}")
    candidates = [(os.path.join(procfs, "config.gz"), True)]
    if release:
        candidates.append((os.path.join(boot, f"config-{release}"), False))
    import gzip  # noqa: PLC0415 - only `sealkit check` reads kernel configs; keeps `import sealkit` lean

    for path, compressed in candidates:
        try:
            with open(path, "rb") as fh:
                raw = fh.read()
            data = gzip.decompress(raw) if compressed else raw
        except (OSError, EOFError, gzip.BadGzipFile):
            continue
        return parse_kernel_config(data.decode("utf-8", "replace")), path
    return None

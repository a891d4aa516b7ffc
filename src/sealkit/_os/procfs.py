"""Reading ``/proc/PID/maps`` and ``/proc/PID/smaps``.

Parsing is pure (``parse_maps(text)``, ``parse_smaps(text)``) and keyed on
field names; I/O is separate (``read_maps``, ``read_smaps``) and takes a
``procfs`` root so tests can point at recorded trees. Sealing shows up only
in smaps, as ``sl`` in ``VmFlags`` (fs/proc/task_mmu.c ``show_smap_vma_flags()``); maps has no seal
information, so entries parsed from maps have ``vmflags=None`` and
``sealed=None`` ("unknown"), never ``False``.

OS errors become :class:`~sealkit.errors.ProcessGoneError` or
:class:`~sealkit.errors.AccessDeniedError` at one boundary
(:func:`_read_text`), as psutil does.
"""

from __future__ import annotations

import errno as _errno
import operator
import os
import re
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from types import MappingProxyType
from typing import Any, Final, NamedTuple, cast, overload

from ..errors import (
    AccessDeniedError,
    ArgumentError,
    ArgumentTypeError,
    CutShortError,
    ParseError,
    ProcessChangedError,
    ProcessGoneError,
)

__all__ = [
    "ProcessDir",
    "Vma",
    "parse_kernel_config",
    "parse_maps",
    "parse_mountinfo_line",
    "parse_smaps",
    "parse_status",
    "pid_namespace_inode",
    "proc_mount_options",
    "read_kernel_config",
    "read_maps",
    "read_smaps",
    "read_status",
    "resolve_pid",
    "scan_smaps",
    "task_status",
]


_NO_FIELDS: Final[Mapping[str, int | str]] = MappingProxyType({})


class Vma(NamedTuple):
    """One VMA as /proc reports it.

    ``fields`` holds the smaps counters by name (``{"Rss": 12, ...}``, in kB
    as printed; non-numeric values kept as text), including fields this
    module does not know. ``vmflags`` is the set of two-letter VmFlags
    mnemonics, or ``None`` when parsed from maps.

    A NamedTuple rather than a dataclass: ``dataclasses`` imports
    ``inspect``, 5 ms of start-up that ``harden()`` and ``sealkit run``
    would pay before the program runs (benchmarks/bench_harden.py).
    """

    start: int
    end: int
    perms: str
    offset: int
    dev: str
    inode: int
    path: str
    vmflags: frozenset[str] | None = None
    fields: Mapping[str, int | str] = _NO_FIELDS

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
_CHUNK: Final = 1 << 16


def _parse_header(line: str, number: int, source: str | None) -> Vma:
    parts = line.split(None, 5)
    if len(parts) < 5:
        raise ParseError(f"malformed mapping header {line!r}", number, source)
    span, perms, offset, dev, inode = parts[:5]
    # The kernel pads the header to a fixed width, then prints the name as
    # it is: the split drops the padding, and trailing spaces are the name's.
    path = parts[5] if len(parts) == 6 else ""
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
        # split("\n"), not splitlines(): a mapped file's name may hold \r,
        # \x1c or \u2028, which the kernel prints as they are
        for number, line in enumerate(text.split("\n"), 1)
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

    for number, line in enumerate(text.split("\n"), 1):  # as in parse_maps
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
    """Read a /proc file as text (see :func:`_read_bytes`)."""
    return _read_bytes(path, pid).decode("utf-8", "surrogateescape")


class Limits(NamedTuple):
    """Bounds on reading one process: stop at monotonic time ``deadline``
    (saying ``why``), or once the text passes ``size`` bytes."""

    deadline: float | None = None
    why: str = "its time budget ran out"
    size: int | None = None


_NO_LIMITS: Final = Limits()
# The read loop and the smaps scanner in C (sealkit/_os/_fastsys.c read_fd,
# smaps_columns): without them (no compiler at install, or an extension built
# from an older source) the Python loop and the regular expressions below do
# it all, giving the same answers.
_read_fd: Callable[[int, int, int, float, int, bytes], tuple[bytes | None, int]] | None
_read_layout: Callable[..., tuple[Any, ...]] | None
_smaps_columns: Callable[..., object] | None
# Whether the extension has the counted forms (read_smaps_layout's
# `counted`, smaps_columns(data, 2)): one built from an older source has
# the same names with fewer arguments, and is asked only what it knows.
_counted_forms = False
try:
    from . import _fastsys
except ImportError:  # pragma: no cover - depends on how sealkit was installed
    _read_fd = _read_layout = _smaps_columns = None
else:
    _read_fd = getattr(_fastsys, "read_fd", None)
    _read_layout = getattr(_fastsys, "read_smaps_layout", None)
    _smaps_columns = getattr(_fastsys, "smaps_columns", None)
    _counted_forms = bool(getattr(_fastsys, "COUNTED_FORMS", 0))

_FORCE_PYTHON = bool(os.environ.get("SEALKIT_NO_FASTSYS"))
"""Read and scan in Python only (``SEALKIT_NO_FASTSYS=1``, as for the
syscall fast path; tests set it to compare the two)."""
# How often (in read calls) the clock is looked at, after the first read: each
# read hands out about a page, so this is every 256 KiB or so.
_CLOCK_EVERY: Final = 64


def _read_bytes(
    path: str, pid: str, dir_fd: int | None = None, limits: Limits = _NO_LIMITS
) -> bytes:
    """Read a /proc file; the one place OS errors become sealkit errors.

    See :func:`_read_verified`, which also says whether the process's
    address space outlived the read.
    """
    return _read_verified(path, pid, dir_fd, limits, verify=False)[0]


def _read_verified(
    path: str,
    pid: str,
    dir_fd: int | None,
    limits: Limits,
    verify: bool,
    layout: bool = False,
    counted: list[tuple[int, bool]] | None = None,
) -> tuple[bytes, bool]:
    """The bytes of a /proc file, and (with ``verify``) whether what the
    file shows was still there once it had been read to the end.

    One ``open`` and a loop of ``read`` calls straight into bytes: seq_file
    hands out at most about a page per ``read`` (fs/seq_file.c
    ``seq_read_iter``), so a larger buffer would not save system calls.
    ``dir_fd`` (an open ``/proc/PID`` directory) pins the process, so every
    file read through it belongs to the same process even if the pid is
    reused meanwhile. ``limits`` stop the read with :class:`CutShortError`.

    An address-space file (``smaps``, ``maps``) is bound to the process's
    memory when it is opened; each ``read`` takes a reference to it again,
    and finds nothing once the memory was released: after an ``execve`` (or
    the exit) mid-read the text just stops, early, looking complete. So
    ``verify`` reads the first byte again once the end was reached: the
    memory was alive at the end (and so during the whole read) if and only
    if that byte is still there.

    ``layout`` (an smaps file, read by :func:`scan_smaps` only) keeps only
    each mapping's header and ``VmFlags`` lines, where the C extension can
    (``_fastsys.read_smaps_layout``): what ``scan_smaps`` reads of it is the
    same, without holding the counters (most of the text). Text of another
    shape than the kernel's is read again whole. When the C loop kept the
    text, it appends to ``counted`` what :func:`scan_smaps` would say of it
    without columns: (how many mappings, whether one is sealed).
    """
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC, dir_fd=dir_fd)
        try:
            chunks = []
            total = calls = 0
            while chunk := os.read(fd, _CHUNK):
                if (
                    verify
                    and layout
                    and not calls
                    and _read_layout is not None
                    and not (_FORCE_PYTHON)
                ):
                    _check_read(path, pid, limits, len(chunk), 1)
                    deadline = -1.0 if limits.deadline is None else limits.deadline
                    args = (fd, _CHUNK, limits.size or 0, deadline, _CLOCK_EVERY, chunk)
                    if _counted_forms:
                        data, stop, mappings, sealed = _read_layout(*args, True)
                    else:  # an older extension: nothing counted
                        data, stop = _read_layout(*args)
                        mappings = None
                    if data is None and stop == 3:  # not the kernel's shape: all of it
                        os.close(fd)
                        fd = -1
                        return _read_verified(path, pid, dir_fd, limits, verify)
                    if data is None:
                        raise _cut_short(path, pid, limits, stop == 1)
                    if counted is not None and mappings is not None:
                        counted.append((mappings, sealed))
                    return data, bool(os.pread(fd, 1, 0))
                if verify and not calls and _read_fd is not None and not _FORCE_PYTHON:
                    # An address-space file, which may be tens of MB: the
                    # rest of this loop in C (its checks included), into one
                    # buffer instead of pieces to join; once the first piece
                    # passed the checks below.
                    _check_read(path, pid, limits, len(chunk), 1)
                    deadline = -1.0 if limits.deadline is None else limits.deadline
                    data, stop = _read_fd(
                        fd, _CHUNK, limits.size or 0, deadline, _CLOCK_EVERY, chunk
                    )
                    if data is None:
                        raise _cut_short(path, pid, limits, stop == 1)
                    return data, bool(os.pread(fd, 1, 0))
                chunks.append(chunk)
                if limits is not _NO_LIMITS:
                    total += len(chunk)
                    calls += 1
                    _check_read(path, pid, limits, total, calls)
            alive = not verify or bool(os.pread(fd, 1, 0))
        finally:
            if fd >= 0:
                os.close(fd)
        return (chunks[0] if len(chunks) == 1 else b"".join(chunks)), alive
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


def _check_read(path: str, pid: str, limits: Limits, total: int, calls: int) -> None:
    """Raise :class:`CutShortError` once ``total`` bytes read in ``calls``
    reads are past ``limits`` (the clock is looked at after the first read
    and every :data:`_CLOCK_EVERY` th)."""
    if limits.size is not None and total > limits.size:
        raise _cut_short(path, pid, limits, True)
    if (
        limits.deadline is not None
        and (calls == 1 or calls % _CLOCK_EVERY == 0)
        and time.monotonic() > limits.deadline
    ):
        raise _cut_short(path, pid, limits, False)


def _cut_short(path: str, pid: str, limits: Limits, too_large: bool) -> CutShortError:
    """What stopped a bounded read: its size (``too_large``) or its time."""
    if not too_large or limits.size is None:
        return CutShortError(pid, limits.why)
    bound = f"{limits.size >> 20} MiB" if limits.size >= 1 << 20 else f"{limits.size} bytes"
    return CutShortError(pid, f"its {path.rsplit('/', 1)[-1]} text is larger than {bound}")


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
_LAYOUT_LINE: Final = r"(?m)^(?:[0-9a-f]+-[0-9a-f]+ .*|VmFlags:.*)$"


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
        text = "\n".join(re.compile(_LAYOUT_LINE).findall(text))
    return parse_smaps(text, f"{procfs}/{name}/smaps")


def parse_status(text: str, source: str | None = None) -> dict[str, str]:
    """Parse ``/proc/PID/status`` (``Key:\tvalue`` lines) into ``{key: value}``.

    Values are kept as text (``"Seccomp": "2"``); a line without ``:`` is a
    :class:`ParseError` with its line number.
    """
    _check_text(text, source)
    out: dict[str, str] = {}
    for number, line in enumerate(text.split("\n"), 1):  # as in parse_maps
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


# --- The fast path of host-wide sweeps (sealkit.host.sweep) ------------------
#
# A sweep reads every process's smaps; the kernel generating that text is the
# floor (fs/proc/task_mmu.c show_smap walks every page table). What sealkit
# adds on top must stay small: one regular-expression pass over the buffer
# collects the VmFlags lines (sre finds the literal prefix at memchr-like
# speed, measured at about 0.5 ns a byte here, where ``b" sl " in data``
# costs three times that because spaces are everywhere in smaps), and Python
# objects are built only for processes that have a sealed mapping.

# The patterns of this module are text, compiled on first use (re caches
# them): the C scanner reads what the kernel prints, and compiling them at
# import would cost every `sealkit audit` run about 1 ms.
_FLAGS_LINES: Final = rb"\nVmFlags:[^\n]*"
# A mapping header's fields, as show_vma_header_prefix prints them
# (fs/proc/task_mmu.c).
_HEADER_FIELDS: Final = (
    rb"([0-9a-f]+)-([0-9a-f]+) ([r-][w-][x-][ps]) ([0-9a-f]+) ([0-9a-f]+:[0-9a-f]+) ([0-9]+)"
    rb"(?:[ \t]([^\n]*))?"
)
# A VmFlags line and the fields of the well-formed header line after it (the
# next mapping's); the fields are empty when no well-formed header follows.
_FLAGS_THEN_HEADER: Final = rb"\nVmFlags:([^\n]*)(?:\n" + _HEADER_FIELDS + rb")?"


class VmaColumns(NamedTuple):
    """The mappings of one process as columns: ``start[i]``, ``end[i]``,
    ... describe mapping ``i`` as a :class:`Vma` would (``fields`` aside).
    Built in bulk (a regular expression and a few list comprehensions, no
    object per mapping), for code that looks at every mapping."""

    start: Sequence[int]
    end: Sequence[int]
    perms: Sequence[str]
    offset: Sequence[int]
    dev: Sequence[str]
    inode: Sequence[int]
    path: Sequence[str]
    vmflags: Sequence[frozenset[str] | None]

    def vma(self, i: int) -> Vma:
        """Mapping ``i`` as a :class:`Vma`."""
        return Vma(
            self.start[i], self.end[i], self.perms[i], self.offset[i], self.dev[i],
            self.inode[i], self.path[i], self.vmflags[i],
        )  # fmt: skip

    @classmethod
    def of(cls, vmas: Sequence[Vma]) -> VmaColumns:
        """The columns of a sequence of :class:`Vma` (a transposition)."""
        if isinstance(vmas, ScannedVmas):
            return vmas.columns()
        if not vmas:
            return cls((), (), (), (), (), (), (), ())
        start, end, perms, offset, dev, inode, path, vmflags, _ = zip(*vmas, strict=True)
        return cls(start, end, perms, offset, dev, inode, path, vmflags)


_CColumns = tuple[
    list[int], list[int], list[str], list[int], list[str], list[int], list[str], list[bytes],
    list[int],
]  # fmt: skip

Row = tuple[bytes, bytes, bytes, bytes, bytes, bytes, bytes]
"""A mapping header's fields as the kernel printed them: start, end,
permissions, offset, device, inode, name (with its leading blanks)."""


class ScannedVmas(Sequence[Vma]):
    """The mappings found by :func:`scan_smaps`, built on demand.

    A sequence of :class:`Vma` (``fields`` empty) that turns a mapping's
    header fields into a :class:`Vma` only when that mapping is read: a
    sweep classifies a few sealed mappings and their neighbours, not all of
    them; :meth:`columns` turns them all at once, in bulk.
    ``sealed_indices`` are the positions of the sealed mappings, known
    without building any. Mappings with the same ``VmFlags`` line share one
    ``vmflags`` set.
    """

    __slots__ = (
        "_built", "_columns", "_flags", "_flagsets", "_rows", "_scanned", "_source",
        "sealed_indices",
    )  # fmt: skip

    def __init__(
        self,
        rows: Sequence[Row],
        flags: Sequence[bytes],
        sealed_indices: tuple[int, ...],
        source: str | None = None,
    ) -> None:
        self._rows = rows
        self._flags = flags
        self._built: list[Vma | None] = [None] * len(rows)
        self._flagsets: dict[bytes, frozenset[str]] = {}
        self._columns: VmaColumns | None = None
        self._source = source
        self.sealed_indices = sealed_indices
        # the C scanner's own sealed_indices (increasing, in range), which
        # classify() need not check again; None for any other
        self._scanned: tuple[int, ...] | None = None

    @classmethod
    def _of_columns(cls, found: _CColumns, source: str | None) -> ScannedVmas:
        """The answer of the C scanner (``_fastsys.smaps_columns``) as a
        ScannedVmas whose columns are already built."""
        start, end, perms, offset, dev, inode, path, flags, sealed = found
        vmas = cls(range(len(start)), flags, tuple(sealed), source)  # type: ignore[arg-type]
        vmas._scanned = vmas.sealed_indices
        flagset = vmas._flagset
        sets = {raw: flagset(raw) for raw in set(flags)}
        vmflags = list(map(sets.__getitem__, flags))  # the loop in C: 65,000 rows
        vmas._columns = VmaColumns(start, end, perms, offset, dev, inode, path, vmflags)
        return vmas

    def __len__(self) -> int:
        return len(self._rows)

    @overload
    def __getitem__(self, index: int) -> Vma: ...

    @overload
    def __getitem__(self, index: slice) -> list[Vma]: ...

    def __getitem__(self, index: int | slice) -> Vma | list[Vma]:
        if isinstance(index, slice):
            return [self[i] for i in range(*index.indices(len(self)))]
        vma = self._built[index]
        if vma is None:
            vma = self._built[index] = self._build(index)
        return vma

    def __iter__(self) -> Iterator[Vma]:
        built = self._built
        for i, vma in enumerate(built):
            yield vma if vma is not None else self[i]

    def _flagset(self, raw: bytes) -> frozenset[str]:
        vmflags = self._flagsets.get(raw)
        if vmflags is None:
            vmflags = self._flagsets[raw] = frozenset(raw.decode("ascii", "replace").split())
        return vmflags

    def _ends_before_it_starts(self, i: int) -> ParseError:
        start, end, *_ = self._rows[i]
        return ParseError(
            f"mapping ends before it starts: {start.decode()}-{end.decode()}", None, self._source
        )

    def columns(self) -> VmaColumns:
        """Every mapping as :class:`VmaColumns`, built once, in bulk."""
        if self._columns is not None:
            return self._columns
        if self._rows and not self._rows[0][0]:  # built by _scan_slowly
            self._columns = VmaColumns.of(list(self))
            return self._columns
        if not self._rows:
            self._columns = VmaColumns.of([])
            return self._columns
        fields = list(zip(*self._rows, strict=True))
        start = [int(x, 16) for x in fields[0]]
        end = [int(x, 16) for x in fields[1]]
        if any(map(operator.lt, end, start)):
            raise self._ends_before_it_starts(next(i for i, lo in enumerate(start) if end[i] < lo))
        # Permissions, devices, names and flag lines repeat: decode each once.
        perms = {raw: raw.decode("ascii") for raw in set(fields[2])}
        devs = {raw: raw.decode("ascii") for raw in set(fields[4])}
        # the name as parse_smaps's split() leaves it: padding gone, the rest kept
        paths = {raw: raw.decode("utf-8", "surrogateescape").lstrip() for raw in set(fields[6])}
        flagsets = self._flagsets
        for raw in set(self._flags):
            if raw not in flagsets:
                flagsets[raw] = frozenset(raw.decode("ascii", "replace").split())
        self._columns = VmaColumns(
            start,
            end,
            [perms[x] for x in fields[2]],
            [int(x, 16) for x in fields[3]],
            [devs[x] for x in fields[4]],
            [int(x) for x in fields[5]],
            [paths[x] for x in fields[6]],
            [flagsets[x] for x in self._flags],
        )
        return self._columns

    def _build(self, index: int) -> Vma:
        if self._columns is not None:
            return self._columns.vma(index)
        start_s, end_s, perms, offset, dev, inode, path = self._rows[index]
        start, end = int(start_s, 16), int(end_s, 16)
        if end < start:
            raise self._ends_before_it_starts(index)
        return Vma(
            start, end, _ascii(perms), int(offset, 16), _ascii(dev), int(inode),
            path.decode("utf-8", "surrogateescape").lstrip(), self._flagset(self._flags[index]),
        )  # fmt: skip


_ASCII: Final[dict[bytes, str]] = {}


def _ascii(raw: bytes) -> str:
    """Short ASCII fields (permissions, device), decoded once each."""
    text = _ASCII.get(raw)
    if text is None:
        text = raw.decode("ascii")
        if len(_ASCII) < 4096:
            _ASCII[raw] = text
    return text


def scan_smaps(
    data: bytes, source: str | None = None, *, every: bool = False
) -> tuple[int, ScannedVmas]:
    """Fast scan of raw ``/proc/PID/smaps`` bytes: ``(mappings, vmas)``.

    ``mappings`` is the number of VMAs. ``vmas`` is empty when no mapping is
    sealed (the common case, decided with one pass over the buffer and no
    object per mapping) unless ``every`` is true. When at least one is
    sealed (or ``every``) it holds every VMA, in order, built on demand
    (:class:`ScannedVmas`), with ``vmflags`` set and ``fields`` empty:
    classifying a sealed mapping needs its neighbours, not its counters.
    For the same text, the VMAs equal those of :func:`parse_smaps` except
    for ``fields``. Raises :class:`ParseError` on malformed text, as
    :func:`parse_smaps` does (a header whose end precedes its start, when
    that mapping is read).
    """
    if not isinstance(data, bytes | bytearray):
        raise ArgumentTypeError(f"data must be bytes, not {type(data).__name__}")
    if source is not None and not isinstance(source, str):
        raise ArgumentTypeError(f"source must be a str or None, not {type(source).__name__}")
    data = bytes(data)
    if _smaps_columns is not None and not _FORCE_PYTHON:
        # The C scanner: only a count when no mapping is sealed (no object
        # per mapping), the columns when one is (mode 2) or all are wanted.
        # It returns None for text it does not take, which the regular
        # expressions below then read.
        # (An extension built from an older source has no mode 2: a count
        # first, then the columns when one is sealed.)
        mode = 1 if every else 2 if _counted_forms else 0
        found = cast("_CColumns | tuple[int, list[int]] | None", _smaps_columns(data, mode))
        if found is not None and len(found) == 2:
            if not found[1]:
                return found[0], ScannedVmas((), (), ())
            found = cast("_CColumns | None", _smaps_columns(data))
        if found is not None:
            return len(found[0]), ScannedVmas._of_columns(found, source)
    if not every:
        lines = re.compile(_FLAGS_LINES).findall(data)
        # Only VmFlags lines are searched, not paths. show_smap_vma_flags
        # prints each mnemonic as "%c%c ", so a sealed mapping's line holds
        # " sl "; the end-of-line spellings cover captures whose trailing
        # blanks were trimmed.
        joined = b"".join(lines)
        if (
            lines
            and not data.startswith(b"VmFlags:")
            and not (b" sl " in joined or b" sl\n" in joined or joined.endswith(b" sl"))
        ):
            return len(lines), ScannedVmas((), (), ())
    # Some mapping is sealed (or every one is wanted): the headers come from
    # the line after each VmFlags line (and the first line), in the same kind
    # of pass. Anything unusual goes to the general parser, so the answers
    # stay parse_smaps's.
    pairs = re.compile(_FLAGS_THEN_HEADER).findall(data)
    if not pairs:
        if not data.strip():
            return 0, ScannedVmas((), (), ())
        # VmFlags exists since Linux 3.8; without it nothing can be said about
        # seals, and guessing "not sealed" would be a lie.
        parse_smaps(data.decode("utf-8", "surrogateescape"), source)  # names a bad line
        raise ParseError("smaps text has no VmFlags lines: seals cannot be read", None, source)
    if data.startswith(b"VmFlags:"):
        return _scan_slowly(data, source, every)  # a field before any header: let it say so
    first = re.compile(_HEADER_FIELDS).fullmatch(data, 0, max(data.find(b"\n"), 0))
    flags = [p[0] for p in pairs]
    last = b"\nVmFlags:" + flags[-1]
    tail = data[-len(last) - 16 :].rstrip(b" \t\n")  # the end only, not a copy of all
    starts = list(map(operator.itemgetter(1), pairs))
    if (
        first is None
        or starts[-1]
        or not tail.endswith(last.rstrip(b" \t"))
        or b"" in starts[:-1]  # a VmFlags line not followed by a well-formed header
    ):
        return _scan_slowly(data, source, every)
    head = first.groups(b"")
    rows: list[Row] = [head]  # type: ignore[list-item]
    rows += map(operator.itemgetter(slice(1, 8)), pairs[:-1])
    sealed = tuple(i for i, f in enumerate(flags) if b" sl " in f or f.endswith(b" sl"))
    return len(rows), ScannedVmas(rows, flags, sealed, source)


def _scan_slowly(data: bytes, source: str | None, every: bool) -> tuple[int, ScannedVmas]:
    """The general parser's answer in :func:`scan_smaps`'s shape (odd text only)."""
    parsed = parse_smaps(data.decode("utf-8", "surrogateescape"), source)
    sealed = tuple(i for i, v in enumerate(parsed) if v.sealed)
    if not sealed and not every:
        return len(parsed), ScannedVmas((), (), ())
    empty: Row = (b"", b"", b"", b"", b"", b"", b"")
    vmas = ScannedVmas([empty] * len(parsed), [b""] * len(parsed), sealed, source)
    vmas._built[:] = [
        Vma(v.start, v.end, v.perms, v.offset, v.dev, v.inode, v.path, v.vmflags) for v in parsed
    ]
    return len(parsed), vmas


class TaskStatus(NamedTuple):
    """What a sweep needs from ``/proc/PID/status``.

    ``name`` is the command name (``comm``) with the kernel's escapes undone;
    ``uid`` the effective and ``ruid`` the real user id; ``state`` the one
    letter state (``R``, ``S``, ``Z``...); ``kthread`` is true for kernel
    threads, which have no user address space to audit.
    """

    pid: int
    name: str
    state: str
    uid: int
    ruid: int
    kthread: bool


_COMM_ESCAPE: Final = r"\\[n\\]"


def task_status(fields: Mapping[str, str], source: str | None = None) -> TaskStatus:
    """The :class:`TaskStatus` in parsed ``/proc/PID/status`` fields (from
    :func:`parse_status`). Raises :class:`ParseError` when ``Name``,
    ``State``, ``Pid`` or ``Uid`` is missing or malformed.
    """
    if not isinstance(fields, Mapping):
        raise ArgumentTypeError(f"fields must be a mapping, not {type(fields).__name__}")
    if not all(
        isinstance(fields.get(k, ""), str)
        for k in ("Name", "State", "Pid", "Uid", "Kthread", "VmSize")
    ):
        raise ArgumentTypeError("status fields must be strings (as parse_status returns)")
    try:
        raw_name = fields["Name"]
        state = fields["State"][:1]
        pid = int(fields["Pid"])
        ruid, euid = (int(x) for x in fields["Uid"].split()[:2])
    except (KeyError, ValueError) as exc:
        raise ParseError(f"malformed status text ({exc})", None, source) from None
    # proc_task_name escapes only "\n" and "\\" (fs/proc/array.c,
    # seq_escape_str(..., "\n\\")): undo exactly those.
    name = re.sub(_COMM_ESCAPE, lambda m: "\n" if m.group() == "\\n" else "\\", raw_name)
    if "Kthread" in fields:
        kthread = fields["Kthread"] == "1"
    else:
        # Before the Kthread line (Linux 6.0?) a task without VmSize has no mm:
        # a kernel thread, unless it is a zombie (which has lost its mm).
        kthread = "VmSize" not in fields and state not in ("Z", "X")
    return TaskStatus(pid, name, state, euid, ruid, kthread)


class ProcessDir:
    """An open ``/proc/PID`` directory: every file read through it belongs to
    the same process (the directory pins the task; a reused pid cannot slip
    in between two reads). A context manager.

    Opening raises :class:`ProcessGoneError` when the process does not exist;
    :meth:`read` raises :class:`ProcessGoneError` or
    :class:`AccessDeniedError` (the same boundary as :func:`read_smaps`).
    """

    __slots__ = ("_fd", "counted", "pid", "restatus", "task")

    _fd: int | None
    pid: str
    task: str
    """Where the address space is read: ``""`` (``/proc/PID/`` itself) or,
    once :meth:`smaps` found the leader a zombie, ``"task/TID/"`` of a live
    thread (for ``map_files/`` and ``root/`` too)."""
    restatus: TaskStatus | None
    """The status :meth:`smaps` read again after the process changed its
    program (or exited) during a read: who the bytes it returned belong to."""
    counted: tuple[int, bool] | None
    """What :func:`scan_smaps` would say, without columns, of the bytes
    :meth:`smaps` last returned, when the C read learnt it on the way
    (``layout`` reads): (how many mappings, whether one is sealed). ``None``
    when it was not learnt."""

    def __init__(self, pid: int | str, procfs: str = "/proc") -> None:
        self._fd = None
        self.task = ""
        self.restatus = None
        self.counted = None
        procfs = _check_root(procfs)
        self.pid = resolve_pid(pid)
        path = os.path.join(procfs, self.pid)
        try:
            self._fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        except (FileNotFoundError, ProcessLookupError, NotADirectoryError):
            raise ProcessGoneError(self.pid) from None
        except PermissionError:
            raise AccessDeniedError(self.pid) from None
        except OSError as exc:
            raise ArgumentError(f"cannot open {path}: {exc.strerror}") from None

    @property
    def fd(self) -> int:
        """The directory's file descriptor (for ``dir_fd=`` calls)."""
        if self._fd is None:
            raise ProcessGoneError(self.pid, f"process {self.pid}: directory already closed")
        return self._fd

    def read(self, name: str) -> bytes:
        """The bytes of ``/proc/PID/<name>``."""
        if self._fd is None:
            raise ProcessGoneError(self.pid, f"process {self.pid}: directory already closed")
        return _read_bytes(name, self.pid, self._fd)

    def status(self) -> TaskStatus:
        """The process's :class:`TaskStatus` (``/proc/PID/status``)."""
        source = f"/proc/{self.pid}/status"
        text = self.read("status").decode("utf-8", "surrogateescape")
        # Everything TaskStatus needs (Name ... Kthread, VmPeak, VmSize) comes
        # before VmLck, and Threads follows even in a kernel thread's status
        # (fs/proc/array.c proc_pid_status): parse only that head, a third of
        # the text, since a sweep does this for every process.
        for marker in ("\nVmLck:", "\nThreads:"):
            end = text.find(marker)
            if end > 0:
                text = text[:end]
                break
        return task_status(parse_status(text, source), source)

    def smaps(
        self, state: str, limits: Limits = _NO_LIMITS, tries: int = 3, *, layout: bool = False
    ) -> bytes:
        """The ``smaps`` bytes of the process, whose status says ``state``;
        with ``layout``, only each mapping's header and ``VmFlags`` lines
        where they can be kept alone (all :func:`scan_smaps` reads, in a
        fraction of the memory: see :func:`_read_verified`).

        A process whose main thread exited (``pthread_exit``) while others
        run on is a zombie leader: ``/proc/PID/smaps`` is empty, yet the
        address space lives on, visible through any live thread's
        ``task/TID/smaps``. For a zombie (``Z``) this reads those; ``b""``
        when no thread has an address space left (the process exited).

        Each read is verified (:func:`_read_verified`): when the address
        space was released before the end, the process either exited
        (``b""``: its status now says ``Z``, or it has no address space left
        when read again) or replaced its program with ``execve``, and is
        read again (:attr:`restatus` says who it is now), up to ``tries``
        times in all; then :class:`ProcessChangedError`. ``limits`` bound
        each read (:class:`CutShortError`).
        """
        self.counted = None
        for attempt in range(tries):
            data, alive, counted = self._smaps_once(state, limits, layout)
            if alive:
                self.counted = counted
                return data
            self.restatus = self.status()  # ProcessGoneError once it is reaped
            state = self.restatus.state
            if state in ("Z", "X"):
                data, alive, counted = self._smaps_once(state, limits, layout)
                self.counted = counted if alive else None
                return data if alive else b""
            if not data and attempt:
                return b""  # no address space at all, twice: it is exiting
        raise ProcessChangedError(self.pid)

    def _smaps_once(
        self, state: str, limits: Limits, layout: bool
    ) -> tuple[bytes, bool, tuple[int, bool] | None]:
        if self._fd is None:
            raise ProcessGoneError(self.pid, f"process {self.pid}: directory already closed")
        counted: list[tuple[int, bool]] = []
        if state not in ("Z", "X"):
            self.task = ""
            data, alive = _read_verified("smaps", self.pid, self._fd, limits, True, layout, counted)
            return data, alive, counted[-1] if counted else None
        try:
            task = os.open("task", os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC, dir_fd=self.fd)
        except (FileNotFoundError, ProcessLookupError):
            raise ProcessGoneError(self.pid) from None
        try:
            tids = sorted(name for name in os.listdir(task) if name != self.pid)
        finally:
            os.close(task)
        for tid in tids:
            counted.clear()
            try:
                data, alive = _read_verified(
                    f"task/{tid}/smaps", self.pid, self._fd, limits, True, layout, counted
                )
            except ProcessGoneError:
                continue
            if data and alive:
                self.task = f"task/{tid}/"
                return data, True, counted[-1] if counted else None
        return b"", True, None

    def readlink(self, name: str) -> str:
        """The target of the symlink ``/proc/PID/<name>`` (``exe``, ``map_files/...``)."""
        if self._fd is None:
            raise ProcessGoneError(self.pid, f"process {self.pid}: directory already closed")
        try:
            return os.readlink(name, dir_fd=self._fd)
        except (FileNotFoundError, ProcessLookupError):
            raise ProcessGoneError(self.pid) from None
        except PermissionError:
            raise AccessDeniedError(self.pid) from None

    def close(self) -> None:
        """Close the directory (idempotent)."""
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None

    def __enter__(self) -> ProcessDir:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


# --- What a sweep of /proc can see -------------------------------------------------
#
# A process the auditor may not see is not even listed: a PID namespace shows
# only its own processes, and procfs mounted with hidepid=invisible (2) or
# hidepid=ptraceable (4) leaves out the processes the reader may not ptrace
# (fs/proc/base.c has_pid_permissions, proc_pid_readdir, proc_pid_lookup).
# With hidepid=noaccess (1) they are listed but closed: denied.

PROC_PID_INIT_INO: Final = 0xEFFFFFFC
"""The inode of the initial PID namespace (include/linux/proc_ns.h)."""

_HIDEPID_NAMES: Final = {"0": "off", "1": "noaccess", "2": "invisible", "4": "ptraceable"}
_MOUNTINFO_ESCAPE: Final = r"\\([0-7]{3})"


def parse_mountinfo_line(line: str) -> tuple[str, str, dict[str, str]] | None:
    """``(mount point, file system type, super options)`` of one line of
    ``/proc/PID/mountinfo`` (proc(5)); ``None`` when it is malformed. The
    mount point's octal escapes (``\\040`` for a space) are undone."""
    _check_text(line, None)
    head, sep, tail = line.partition(" - ")
    fields = head.split()
    rest = tail.split()
    if not sep or len(fields) < 6 or len(rest) < 3:
        return None
    point = re.sub(_MOUNTINFO_ESCAPE, lambda m: chr(int(m.group(1), 8)), fields[4])
    options = {}
    for option in rest[2].split(","):
        key, _, value = option.partition("=")
        options[key] = value
    return point, rest[0], options


def proc_mount_options(procfs: str = "/proc", mountinfo: str = "/proc/self/mountinfo") -> (
    dict[str, str] | None
):  # fmt: skip
    """The super options of the ``proc`` mount at ``procfs`` (the last one
    mounted there, which hides the others), from ``mountinfo``: for example
    ``{"rw": "", "hidepid": "invisible", "gid": "27"}``, with ``hidepid``
    spelt as a name even where the kernel printed its number. ``None`` when
    ``procfs`` is not a proc mount point or mountinfo cannot be read."""
    procfs = os.path.realpath(_check_root(procfs))
    mountinfo = _check_root(mountinfo)
    try:
        with open(mountinfo, encoding="utf-8", errors="surrogateescape") as fh:
            lines = fh.read().split("\n")
    except OSError:
        return None
    found = None
    for line in lines:
        parsed = parse_mountinfo_line(line)
        if parsed is not None and parsed[0] == procfs and parsed[1] == "proc":
            found = parsed[2]
    if found is not None and "hidepid" in found:
        found["hidepid"] = _HIDEPID_NAMES.get(found["hidepid"], found["hidepid"])
    return found


def pid_namespace_inode(procfs: str = "/proc") -> int | None:
    """The inode of the PID namespace this process lives in (as seen
    through ``procfs``, else ``/proc``); compare with
    :data:`PROC_PID_INIT_INO`. ``None`` when neither can tell."""
    for root in (_check_root(procfs), "/proc"):
        try:
            return os.stat(os.path.join(root, "self", "ns", "pid")).st_ino
        except OSError:
            continue
    return None

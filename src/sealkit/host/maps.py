"""Every mapping of one process, classified (``sealkit maps``).

A process may have 65,000 mappings (``vm.max_map_count``). Everything here
is O(n log n) in their number, and the mappings are kept as columns
(:class:`sealkit._os.procfs.VmaColumns`) until someone asks for them one by
one: ``sealkit maps --json`` (:func:`maps_json`) writes straight from the
columns, so that it costs a small multiple of what the kernel spends
generating the smaps text (``benchmarks/bench_audit.py``).
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterator, Sequence
from json.encoder import encode_basestring_ascii
from typing import Any, Final, NamedTuple, overload

from .._os.procfs import Limits, ProcessDir, Vma, VmaColumns, scan_smaps
from ..text import label
from . import sweep
from .classify import KINDS, FileLayouts, classify

# The C writer of the region lines (sealkit/_os/_fastsys.c maps_json_rows):
# without it (no compiler at install, or an extension built from an older
# source) maps_json writes them in Python, the same bytes.
_json_rows: Callable[..., tuple[str, int, int, int] | None] | None
try:
    from .._os import _fastsys
except ImportError:  # pragma: no cover - depends on how sealkit was installed
    _json_rows = None
else:
    _json_rows = getattr(_fastsys, "maps_json_rows", None)

_FORCE_PYTHON = bool(os.environ.get("SEALKIT_NO_FASTSYS"))
"""Write the rows in Python only (``SEALKIT_NO_FASTSYS=1``; tests set it
to compare the two writers)."""
_KINDS: Final = frozenset(KINDS)

__all__ = ["MappedRegion", "MappedRegions", "ProcessMaps", "maps_json", "process_maps"]


class MappedRegion(NamedTuple):
    """One mapping of :func:`process_maps`: the VMA and its kind."""

    vma: Vma
    kind: str

    def as_dict(self) -> dict[str, Any]:
        v = self.vma
        flags = v.vmflags or frozenset()
        return {
            "start": f"{v.start:#x}",
            "end": f"{v.end:#x}",
            "size": v.end - v.start,
            "perms": v.perms,
            "sealed": "sl" in flags,
            "kind": self.kind,
            "path": label(v.path),
            "offset": v.offset,
            "inode": v.inode,
            "vmflags": sorted(flags),
        }


class MappedRegions(Sequence[MappedRegion]):
    """The regions of a process, as :class:`MappedRegion` s built on demand
    from ``columns`` and ``kinds`` (which stay readable as they are)."""

    __slots__ = ("columns", "kinds")

    def __init__(self, columns: VmaColumns, kinds: Sequence[str]) -> None:
        self.columns = columns
        self.kinds = kinds

    def __len__(self) -> int:
        return len(self.kinds)

    @overload
    def __getitem__(self, index: int) -> MappedRegion: ...

    @overload
    def __getitem__(self, index: slice) -> list[MappedRegion]: ...

    def __getitem__(self, index: int | slice) -> MappedRegion | list[MappedRegion]:
        if isinstance(index, slice):
            return [self[i] for i in range(*index.indices(len(self)))]
        return MappedRegion(self.columns.vma(index), self.kinds[index])

    def __iter__(self) -> Iterator[MappedRegion]:
        for i, kind in enumerate(self.kinds):
            yield MappedRegion(self.columns.vma(i), kind)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Sequence):
            return NotImplemented
        return len(self) == len(other) and all(a == b for a, b in zip(self, other, strict=True))

    __hash__ = None  # type: ignore[assignment]

    def sealed_indices(self) -> list[int]:
        return [i for i, flags in enumerate(self.columns.vmflags) if flags and "sl" in flags]


class ProcessMaps(NamedTuple):
    """Every mapping of one process, classified."""

    pid: int
    command: str
    regions: Sequence[MappedRegion]

    @property
    def sealed(self) -> tuple[MappedRegion, ...]:
        regions = self.regions
        if isinstance(regions, MappedRegions):
            return tuple(regions[i] for i in regions.sealed_indices())
        return tuple(r for r in regions if r.vma.sealed)

    def as_dict(self) -> dict[str, Any]:
        sealed = self.sealed
        return {
            "schema": "sealkit.maps/1",
            "pid": self.pid,
            "command": label(self.command),
            "mappings": len(self.regions),
            "sealed_mappings": len(sealed),
            "sealed_bytes": sum(r.vma.size for r in sealed),
            "regions": [r.as_dict() for r in self.regions],
        }


def _columns(regions: Sequence[MappedRegion]) -> tuple[VmaColumns, Sequence[str]]:
    if isinstance(regions, MappedRegions):
        return regions.columns, regions.kinds
    return VmaColumns.of([r.vma for r in regions]), [r.kind for r in regions]


def maps_json(maps: ProcessMaps, sealed_only: bool = False) -> str:
    """``maps.as_dict()`` as JSON text (``sealkit maps --json``), one
    region a line; with ``sealed_only`` only the sealed regions are listed
    (the counts stay the process's).

    Written row by row from the columns rather than through dicts and the
    ``json`` module: a process may have 65,000 mappings, and this is what
    ``sealkit maps --json`` adds to the kernel's own work of generating
    smaps. Each distinct path, permission string and flag set is encoded
    once (paths through :func:`sealkit.text.label` and the JSON module's C
    string encoder); everything else is a number, an address or a fixed
    word. (An f-string a row measured faster than ``str.format`` mapped
    over the columns; ``zip`` without ``strict``, checked by VmaColumns.)
    """
    if not isinstance(maps, ProcessMaps):
        raise TypeError(f"maps must be a ProcessMaps, not {type(maps).__name__}")
    columns, kinds = _columns(maps.regions)
    rows: str | None = None
    try:
        known_kinds = set(kinds) <= _KINDS  # the C writer prints kinds as they are
    except TypeError:  # an unhashable kind: the Python writer prints it as it can
        known_kinds = False
    if _json_rows is not None and not _FORCE_PYTHON and known_kinds:
        found = _json_rows(
            columns.start, columns.end, columns.perms, columns.offset, columns.inode,
            columns.path, columns.vmflags, kinds, sealed_only, _text_of,
        )  # fmt: skip
        if found is not None:
            rows, count, sealed_count, sealed_bytes = found
    if rows is None:
        lines, count, sealed_count, sealed_bytes = _json_lines(columns, kinds, sealed_only)
        rows = ",\n  ".join(lines)
    head = json.dumps(
        {
            "schema": "sealkit.maps/1",
            "pid": maps.pid,
            "command": label(maps.command),
            "mappings": count,
            "sealed_mappings": sealed_count,
            "sealed_bytes": sealed_bytes,
        }
    )
    if not rows:
        return head[:-1] + ', "regions": []}\n'
    # one copy of the 14 MB of a large process's rows, not two
    return "".join((head[:-1], ',\n "regions": [\n  ', rows, "\n ]}\n"))


def _text_of(kind: int, value: Any) -> str:
    """The JSON text of a permission string (0), a path (1) or a VmFlags
    set (2), for the C writer (``_fastsys.maps_json_rows``)."""
    encode = encode_basestring_ascii
    if kind == 0:
        return encode(value)
    if kind == 1:
        return encode(label(value))
    return "[" + ", ".join(map(encode, sorted(value or ()))) + "]"


def _json_lines(
    columns: VmaColumns, kinds: Sequence[str], sealed_only: bool
) -> tuple[list[str], int, int, int]:
    """maps_json's region lines, written in Python (no C extension, or
    columns it does not take): the lines, mappings, sealed ones, their bytes."""
    encode = encode_basestring_ascii
    paths: dict[str, str] = {}
    flag_lists: dict[frozenset[str] | None, str] = {}
    lines = []
    count = sealed_count = sealed_bytes = 0
    for start, end, mode, offset, _, inode, path, flags, kind in zip(*columns, kinds):  # noqa: B905
        count += 1
        sealed = flags is not None and "sl" in flags
        if sealed:
            sealed_count += 1
            sealed_bytes += end - start
        elif sealed_only:
            continue
        text = paths.get(path)
        if text is None:
            text = paths[path] = encode(label(path))
        flag_list = flag_lists.get(flags)
        if flag_list is None:
            flag_list = flag_lists[flags] = "[" + ", ".join(map(encode, sorted(flags or ()))) + "]"
        lines.append(
            f'{{"start": "{start:#x}", "end": "{end:#x}", "size": {end - start}, '
            f'"perms": {encode(mode)}, "sealed": {"true" if sealed else "false"}, '
            f'"kind": "{kind}", "path": {text}, "offset": {offset}, '
            f'"inode": {inode}, "vmflags": {flag_list}}}'
        )
    return lines, count, sealed_count, sealed_bytes


def process_maps(pid: int | str = "self", procfs: str = "/proc") -> ProcessMaps:
    """Every mapping of process ``pid`` (``"self"``: the calling process),
    with its kind. The VMAs carry ``vmflags`` (and so ``sealed``) but not
    the smaps counters (``fields`` is empty): what a mapping is and whether
    it is sealed, in O(n log n) for n mappings. Raises
    :class:`ProcessGoneError`, :class:`AccessDeniedError`, or
    :class:`CutShortError` past the sweep's bound on smaps text
    (:data:`sealkit.host.sweep.SMAPS_LIMIT`).
    """
    with ProcessDir(pid, procfs) as proc:
        status = proc.status()
        data = proc.smaps(status.state, Limits(None, "", sweep.SMAPS_LIMIT), layout=True)
        _, vmas = scan_smaps(data, f"{procfs}/{proc.pid}/smaps", every=True)
        layouts = FileLayouts()
        kinds = classify(vmas, lambda v: layouts.lookup(proc, v))
    return ProcessMaps(status.pid, status.name, MappedRegions(vmas.columns(), kinds))

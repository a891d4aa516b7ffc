"""Every mapping of one process, classified (``sealkit maps``)."""

from __future__ import annotations

from typing import Any, NamedTuple

from .._os.procfs import ProcessDir, Vma, parse_smaps
from .classify import FileLayouts, classify

__all__ = ["MappedRegion", "ProcessMaps", "process_maps"]


class MappedRegion(NamedTuple):
    """One mapping of :func:`process_maps`: the VMA and its kind."""

    vma: Vma
    kind: str

    def as_dict(self) -> dict[str, Any]:
        v = self.vma
        return {
            "start": f"{v.start:#x}",
            "end": f"{v.end:#x}",
            "size": v.size,
            "perms": v.perms,
            "sealed": v.sealed,
            "kind": self.kind,
            "path": v.path,
            "offset": v.offset,
            "inode": v.inode,
            "vmflags": sorted(v.vmflags or ()),
        }


class ProcessMaps(NamedTuple):
    """Every mapping of one process, classified."""

    pid: int
    command: str
    regions: tuple[MappedRegion, ...]

    @property
    def sealed(self) -> tuple[MappedRegion, ...]:
        return tuple(r for r in self.regions if r.vma.sealed)

    def as_dict(self) -> dict[str, Any]:
        return {
            "schema": "sealkit.maps/1",
            "pid": self.pid,
            "command": self.command,
            "mappings": len(self.regions),
            "sealed_mappings": len(self.sealed),
            "sealed_bytes": sum(r.vma.size for r in self.sealed),
            "regions": [r.as_dict() for r in self.regions],
        }


def process_maps(pid: int | str = "self", procfs: str = "/proc") -> ProcessMaps:
    """Every mapping of process ``pid`` (``"self"``: the calling process),
    with its kind. Raises :class:`ProcessGoneError` or
    :class:`AccessDeniedError`.
    """
    with ProcessDir(pid, procfs) as proc:
        status = proc.status()
        text = proc.smaps(status.state).decode("utf-8", "surrogateescape")
        vmas = parse_smaps(text, f"{procfs}/{proc.pid}/smaps")
        layouts = FileLayouts()
        kinds = classify(vmas, lambda v: layouts.lookup(proc, v))
    return ProcessMaps(
        status.pid,
        status.name,
        tuple(MappedRegion(v, k) for v, k in zip(vmas, kinds, strict=True)),
    )

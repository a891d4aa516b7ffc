"""What harden() reports: per object, the ranges sealed and the ranges skipped, and why."""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any, Final, NamedTuple

if TYPE_CHECKING:
    from rich.console import RenderableType

__all__ = ["KINDS", "HardenReport", "ObjectReport", "SealedRange", "SkippedRange"]

KINDS: Final = ("text", "rodata", "relro", "data", "bss", "gap", "system")
"""What a range of an object is: ``text`` (executable), ``rodata``
(read-only), ``relro`` (read-only after relocation), ``data`` (writable, from
the file), ``bss`` (writable zero-fill beyond the file), ``gap`` (``PROT_NONE``
hole between segments), ``system`` (``[vdso]``, ``[vvar]``, ``[vvar_vclock]``).
"""


class SealedRange(NamedTuple):
    """A page range that was sealed (or, in a dry run, would be).

    ``perms`` is the protection ``/proc/self/smaps`` showed; ``already_sealed``
    is true when the range was sealed before this call (``harden`` is
    idempotent: such ranges are not sealed again).
    """

    start: int
    end: int
    kind: str
    perms: str
    already_sealed: bool = False

    @property
    def size(self) -> int:
        """Bytes covered."""
        return self.end - self.start


class SkippedRange(NamedTuple):
    """A page range of an object that was left unsealed, and why."""

    start: int
    end: int
    kind: str
    reason: str

    @property
    def size(self) -> int:
        """Bytes covered."""
        return self.end - self.start


class ObjectReport(NamedTuple):
    """What happened to one loaded object (or one system mapping).

    ``path`` is the file as ``/proc/self/smaps`` names it (or ``[vdso]``...);
    ``name`` is the loader's ``dlpi_name`` (``""`` for the main program);
    ``base`` is the load bias (the start of the mapping for system mappings).
    """

    path: str
    name: str
    base: int
    sealed: tuple[SealedRange, ...]
    skipped: tuple[SkippedRange, ...]

    @property
    def sealed_bytes(self) -> int:
        """Bytes sealed, counting those that were already sealed."""
        return sum(r.size for r in self.sealed)

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready: every field, addresses as integers."""
        return {
            "path": self.path,
            "name": self.name,
            "base": self.base,
            "sealed_bytes": self.sealed_bytes,
            "sealed": [
                {
                    "start": r.start,
                    "end": r.end,
                    "bytes": r.size,
                    "kind": r.kind,
                    "perms": r.perms,
                    "already_sealed": r.already_sealed,
                }
                for r in self.sealed
            ],
            "skipped": [
                {
                    "start": r.start,
                    "end": r.end,
                    "bytes": r.size,
                    "kind": r.kind,
                    "reason": r.reason,
                }
                for r in self.skipped
            ],
        }


class HardenReport(NamedTuple):
    """The result of :func:`harden` (or of one import-hook event).

    ``objects`` lists every object considered, in the loader's order, then the
    system mappings. In a dry run ``sealed`` ranges are what *would* be
    sealed and nothing changed. ``trigger`` says what caused the sweep:
    ``"harden()"``, ``"import NAME"`` or ``"ctypes NAME"``.
    """

    level: str
    system: bool
    imports: bool
    dry_run: bool
    trigger: str
    page_size: int
    objects: tuple[ObjectReport, ...]
    seconds: float

    @property
    def sealed_bytes(self) -> int:
        """Bytes sealed by now in the objects covered (including already sealed ones)."""
        return sum(o.sealed_bytes for o in self.objects)

    @property
    def newly_sealed_bytes(self) -> int:
        """Bytes this call sealed (or would seal) that were not sealed before."""
        return sum(r.size for o in self.objects for r in o.sealed if not r.already_sealed)

    @property
    def skipped(self) -> tuple[tuple[ObjectReport, SkippedRange], ...]:
        """Every skipped range with its object."""
        return tuple((o, r) for o in self.objects for r in o.skipped)

    def find(self, path_part: str) -> list[ObjectReport]:
        """The objects whose path or loader name contains ``path_part``."""
        return [o for o in self.objects if path_part in o.path or path_part in o.name]

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready: everything ``str()`` shows, and more."""
        return {
            "level": self.level,
            "system": self.system,
            "imports": self.imports,
            "dry_run": self.dry_run,
            "trigger": self.trigger,
            "page_size": self.page_size,
            "seconds": self.seconds,
            "sealed_bytes": self.sealed_bytes,
            "newly_sealed_bytes": self.newly_sealed_bytes,
            "skipped_ranges": len(self.skipped),
            "objects": [o.as_dict() for o in self.objects],
        }

    def summary(self) -> str:
        """One line: what was sealed, how much, how many ranges skipped."""
        verb = "would seal" if self.dry_run else "sealed"
        ranges = sum(len(o.sealed) for o in self.objects)
        objects = sum(1 for o in self.objects if o.sealed)
        already = self.sealed_bytes - self.newly_sealed_bytes
        text = (
            f"{self.trigger}: level={self.level}: {verb} {_size(self.newly_sealed_bytes)} "
            f"in {ranges} ranges of {objects} objects"
        )
        if already:
            text += f" ({_size(already)} already sealed)"
        text += f", {len(self.skipped)} ranges skipped"
        if self.imports:
            text += (
                ", would seal later imports as they load"
                if self.dry_run
                else ", later imports sealed as they load"
            )
        return text + f" [{self.seconds * 1e3:.1f} ms]"

    def _rows(self, obj: ObjectReport) -> list[tuple[int, int, str, str, int, str]]:
        """``(start, end, kind, perms, size, status)`` per range of ``obj``, by address."""
        state = "would seal" if self.dry_run else "sealed"
        rows = [
            (r.start, r.end, r.kind, r.perms, r.size,
             "already sealed" if r.already_sealed else state)
            for r in obj.sealed
        ]  # fmt: skip
        rows += [(r.start, r.end, r.kind, "", r.size, f"skipped: {r.reason}") for r in obj.skipped]
        return sorted(rows)

    def __str__(self) -> str:
        lines = [self.summary()]
        for obj in self.objects:
            lines.append(f"  {obj.path}  (base {obj.base:#x})")
            lines += [
                f"    {start:#014x}-{end:#014x} {kind:<6} {perms:<3} {_size(size):>10}  {status}"
                for start, end, kind, perms, size, status in self._rows(obj)
            ]
        return "\n".join(lines)

    def __rich__(self) -> RenderableType:
        """A rich table (rich is imported only when a report is rendered)."""
        from rich.table import Table  # noqa: PLC0415 - keep `import sealkit` light
        from rich.text import Text  # noqa: PLC0415

        table = Table(title=Text(self.summary()), title_justify="left", expand=False)
        for column in ("object", "range", "kind", "perms", "size", "status"):
            table.add_column(column, justify="right" if column == "size" else "left")
        styles = {"sealed": "green", "would seal": "green", "already sealed": "dim"}
        for obj in self.objects:
            name = os.path.basename(obj.path) or obj.path
            for start, end, kind, perms, size, status in self._rows(obj):
                table.add_row(
                    # Text, not markup: "[vdso]" and reasons naming "[heap]"
                    # would otherwise be read as style tags.
                    Text(name),
                    f"{start:#x}-{end:#x}",
                    kind,
                    perms,
                    _size(size),
                    Text(status, style=styles.get(status, "yellow")),
                )
                name = ""
        return table


def _size(n: int) -> str:
    if n < 1024:
        return f"{n} B"
    if n < 1024 * 1024:
        return f"{n / 1024:.1f} KiB"
    return f"{n / (1024 * 1024):.1f} MiB"
